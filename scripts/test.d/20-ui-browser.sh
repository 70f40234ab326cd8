#!/usr/bin/env bash
# The UI in headless Chromium against the mock backend (screenshots in artifacts/ui).
set -euo pipefail
cd "$(dirname "$0")/../../ui"
node tests/browser.mjs
