#!/usr/bin/env bash
# Real upstream Fooocus in the loop: every supported version's own parser, UI, queue and worker under the guard
# (the pinned snapshots in ../shared/upstream or FOOOCUS_UPSTREAM; tests/upstream/README.md has the matrix).
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
bash tests/upstream/setup.sh
cargo build -q -p guard-cli
# Each version's own argument parser on the guard's argv, for every launch option.
python3 tests/upstream/test_argv.py target/debug/fooocus-guard-cli | grep -Ev '^ok '
test "${PIPESTATUS[0]}" -eq 0
echo "argv checks: $(( $(date +%s) - start )) s"
# Each version's real UI, queue and worker loop under the guard: ready, a timed-out generation
# stopped, the next one completed.
ui=$(date +%s)
tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_ui.py target/debug/fooocus-guard-cli
echo "UI runs: $(( $(date +%s) - ui )) s; upstream step took $(( $(date +%s) - start )) s"
