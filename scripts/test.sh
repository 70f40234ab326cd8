#!/usr/bin/env bash
# Installs what is missing, then runs every test suite of Fooocus Guard (CI runs this through
# .ci/run), or only the suites named: scripts/test.sh [--list] [SUITE...]. Each suite prints its
# own summary; the script stops at the first failing suite.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# The built-in suites, then one per scripts/test.d/NN-NAME.sh, in this order.
builtin=(ui lint rust sim)
declare -A about=(
  [ui]="the front end: unit tests (Vitest) and builds (the app's build embeds ui/dist)"
  [lint]="cargo fmt and clippy, the libraries and CLI, then the tray app"
  [rust]="cargo test: units, containment on the real cgroups, sampler, fake NVML, CLI end to end"
  [sim]="the Fooocus simulator's own tests (and its lines against upstream's format strings)"
)
suites=("${builtin[@]}")
for f in scripts/test.d/*.sh; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .sh); name=${name#[0-9][0-9]-}
  suites+=("$name")
  about[$name]=$(sed -n '2s/^# *//p' "$f")
done

if [ "${1:-}" = --list ]; then
  for s in "${suites[@]}"; do printf '%-14s %s\n' "$s" "${about[$s]}"; done
  exit 0
fi
wanted=("$@")
for w in "${wanted[@]}"; do
  [[ " ${suites[*]} " == *" $w "* ]] || { echo "test.sh: no suite '$w': scripts/test.sh --list names them" >&2; exit 2; }
done
want() { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $1 "* ]]; }

"$here/scripts/setup.sh" test

export CARGO_TERM_COLOR=never
step() { echo; echo "=== $* ==="; }
start=$(date +%s)

# The app's build (and so lint and the app suite) needs ui/dist.
if want ui || want lint || want app || want windows || [ ! -d ui/dist ]; then
  step "ui: ${about[ui]}"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run -s build && npm run -s build:mock)
fi

if want lint; then
  step "lint: ${about[lint]}"
  cargo fmt --all -- --check
  # The libraries and the CLI (default members), then the tray app on its own: building them
  # together would unify features and build Tauri twice.
  cargo clippy --all-targets -q -- -D warnings
  cargo clippy -p fooocus-guard --all-targets -q -- -D warnings
fi

if want rust; then
  step "rust: ${about[rust]}"
  cargo test --no-fail-fast -- --test-threads=2
fi

if want sim; then
  step "sim: ${about[sim]}"
  python3 -m unittest discover -s tests/sim -v 2>&1 | tail -n 5
  test "${PIPESTATUS[0]}" -eq 0
fi

for f in scripts/test.d/*.sh; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .sh); name=${name#[0-9][0-9]-}
  want "$name" || continue
  step "$name: ${about[$name]}"
  bash "$f"
done

echo
echo "suites passed in $(( $(date +%s) - start )) s: ${wanted[*]:-all}"
