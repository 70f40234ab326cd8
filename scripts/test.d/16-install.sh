#!/usr/bin/env bash
# Installing Fooocus, end to end and offline: the CLI installs the pinned 2.5.5 snapshot from a
# loopback server (a truncated body resumed, the checksum checked), its venv from a wheelhouse of
# stand-ins; detect finds it; the guard runs it until ready. (The installer's own cases --
# ranges, checksums, dropped connections, cancel and resume -- are in `cargo test -p guard-installer
# --test installer`, part of the rust suite.) Arguments: the check to run (tests/install/test_install.py
# names them), or none for all.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
bash tests/upstream/setup.sh
cargo build -q -p guard-cli
checks=()
for c in "$@"; do checks+=(--check "$c"); done
python3 tests/install/test_install.py target/debug/fooocus-guard-cli "${checks[@]}"
echo "install step took $(( $(date +%s) - start )) s"
