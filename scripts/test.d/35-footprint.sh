#!/usr/bin/env bash
# The tray app's memory footprint (issue 16): PSS/RSS in the tray, dashboard open, after closing.
# Prints the figures of the debug build against the targets; the targets themselves are checked
# on the build the .deb ships, the `dist` profile (tests/app/footprint.sh --strict, README "What
# was measured"), which CI does not build.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p fooocus-guard
bash tests/app/footprint.sh target/debug/fooocus-guard
