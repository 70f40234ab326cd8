#!/usr/bin/env bash
# The gateway against a real Gradio 3.41.2 app wired like Fooocus 2.5, driven by gradio_client;
# its waking page in headless Chromium (crates/gateway/tests/browser.rs).
# Arguments: the checks to run (tests/gateway/e2e.py names them, and `waking-page`), or none for all.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/gateway/setup.sh
cargo build -q -p guard-cli
checks=() waking_page=$(( $# == 0 ))
for c in "$@"; do
  if [ "$c" = waking-page ]; then waking_page=1; else checks+=(--check "$c"); fi
done
if [ "$waking_page" = 1 ]; then
  echo "--- the waking page in headless Chromium"
  cargo test -q -p guard-gateway --test browser -- --ignored 2>&1 | grep -E '^(test |test result|thread|  left|  right|error)'
  test "${PIPESTATUS[0]}" -eq 0
  [ ${#checks[@]} -gt 0 ] || [ $# -eq 0 ] || exit 0
fi
tests/gateway/.venv/bin/python tests/gateway/e2e.py target/debug/fooocus-guard-cli "${checks[@]}" 2>&1 | grep -Ev '^( *[0-9]+%\|| *$)' | grep -E '^(ok|FAIL|gateway latency|[0-9]+ passed|unknown check|usage:|Traceback|  File |[A-Za-z.]*(Error|Exception|Expired))' 
test "${PIPESTATUS[0]}" -eq 0
