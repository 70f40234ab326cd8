#!/usr/bin/env bash
# Real upstream Fooocus in the loop: every supported version's and fork's own code, unpacked from
# the pinned snapshots (../shared/upstream, or FOOOCUS_UPSTREAM), against what the guard does with
# it. See tests/upstream/README.md for the version matrix.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
cargo build -q -p guard-cli
# Each version's argument parser on the guard's argv for every launch option (stdlib only).
python3 tests/upstream/test_argv.py target/debug/fooocus-guard-cli | grep -Ev '^ok '
test "${PIPESTATUS[0]}" -eq 0
echo "upstream step took $(( $(date +%s) - start )) s"
