#!/usr/bin/env bash
# Real upstream Fooocus in the loop: every supported version's own parser, UI, queue and worker under the guard
# (the pinned snapshots in ../shared/upstream or FOOOCUS_UPSTREAM; tests/upstream/README.md has the matrix).
# Arguments: the checks to run (argv, ui, injection), or none for all of them.
set -euo pipefail
cd "$(dirname "$0")/../.."
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(argv ui injection sleep)
for c in "${want[@]}"; do
  case $c in argv|ui|injection|sleep) ;; *) echo "unknown check $c: the upstream checks are argv, ui, injection, sleep" >&2; exit 2;; esac
done
has() { [[ " ${want[*]} " == *" $1 "* ]]; }
start=$(date +%s)
bash tests/upstream/setup.sh
cargo build -q -p guard-cli
# Each version's own argument parser on the guard's argv, for every launch option.
if has argv; then
  python3 tests/upstream/test_argv.py target/debug/fooocus-guard-cli | grep -Ev '^ok '
  test "${PIPESTATUS[0]}" -eq 0
  echo "argv checks: $(( $(date +%s) - start )) s"
fi
# Each version's real UI, queue and worker loop under the guard: ready, a timed-out generation
# stopped, the next one completed; and prompts that imitate Fooocus's own lines (injection).
ui=$(date +%s)
for c in ui injection; do
  has $c || continue
  if has ui && has injection; then
    tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_ui.py target/debug/fooocus-guard-cli
    break
  fi
  tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_ui.py target/debug/fooocus-guard-cli --check $c
done
# Sleep and wake (issue 25): 2.5.5's real UI in headless Chromium, a tab from before the sleep and a fresh one.
if has sleep; then tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_sleep.py target/debug/fooocus-guard-cli; fi
echo "UI runs: $(( $(date +%s) - ui )) s; upstream step took $(( $(date +%s) - start )) s"
