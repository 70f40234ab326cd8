#!/usr/bin/env bash
# Installs what is missing, then runs every test suite of Fooocus Guard. CI runs this through
# .ci/run. Each suite prints its own summary; the script stops at the first failing suite.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh" test

export CARGO_TERM_COLOR=never
step() { echo; echo "=== $* ==="; }
start=$(date +%s)

step "The front end: unit tests and builds (the app's build embeds ui/dist)"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run -s build && npm run -s build:mock)

step "Rust: formatting and lints"
cargo fmt --all -- --check
# The libraries and the CLI (default members), then the tray app on its own: building them
# together would unify features and build Tauri twice.
cargo clippy --all-targets -q -- -D warnings
cargo clippy -p fooocus-guard --all-targets -q -- -D warnings

step "Rust: library, CLI and end-to-end suites (real cgroups, the simulator, the fake NVML)"
cargo test --no-fail-fast -- --test-threads=2

step "The Fooocus simulator's own tests"
python3 -m unittest discover -s tests/sim -v 2>&1 | tail -n 5

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra" .sh)"
  bash "$extra"
done

echo
echo "all suites passed in $(( $(date +%s) - start )) s"
