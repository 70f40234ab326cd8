#!/usr/bin/env bash
# Real Fooocus 2.5.5 generating under the guard (real torch 2.1.0 on CPU, generated random weights)
# -- only the weights stand in (tests/real/README.md). tests/real/setup.sh builds, once, a venv
# with torch and 2.5.5's requirements (2-4 min and 5.8 GB from PyPI), the unpacked tree and the
# generated models (about 80 s, 2.4 GB), cached in ~/.cache/fooocus-guard/real (FG_REAL_CACHE);
# a warm run pays nothing. Then the CLI runs Fooocus through each scenario: A ready with its model
# load, B a timeout mid-sampling stopped gracefully and the next generation without a reload, C a
# timeout during preparation, M a RAM cap below the load, S a stall (Fooocus frozen with SIGSTOP
# mid-sampling: the stall limit, a kill, a restart), R the start-up race (the ready line never
# prints: the guard must still see Fooocus ready). Warm: 4-6 min on 2 busy cores for A B C M
# (235-355 s measured), S about 5 min, R about 2.5 min. Arguments: the checks to run
# (A B C M S R), or none for all.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
bash tests/real/setup.sh
cargo build -q -p guard-cli
cache=${FG_REAL_CACHE:-$HOME/.cache/fooocus-guard/real}
checks=()
for c in "$@"; do checks+=(--check "$c"); done
"$cache/venv/bin/python" tests/real/test_real.py target/debug/fooocus-guard-cli "${checks[@]}"
echo "real step took $(( $(date +%s) - start )) s"
