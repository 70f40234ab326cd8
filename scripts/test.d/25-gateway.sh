#!/usr/bin/env bash
# The gateway against a real Gradio 3.41.2 app wired like Fooocus 2.5, driven by gradio_client.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/gateway/setup.sh
cargo build -q -p guard-cli
tests/gateway/.venv/bin/python tests/gateway/e2e.py target/debug/fooocus-guard-cli 2>&1 | grep -Ev '^( *[0-9]+%\|| *$)' | grep -E '^(ok|FAIL|gateway latency|[0-9]+ passed|Traceback|  File |[A-Za-z.]*(Error|Exception|Expired))' 
test "${PIPESTATUS[0]}" -eq 0
