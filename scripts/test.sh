#!/usr/bin/env bash
# Installs what is missing, then runs every test suite of Fooocus Guard (CI runs this through
# .ci/run), or only the suites named: scripts/test.sh [--list] [SUITE...]. Each suite prints its
# own summary and the script stops at the first failing suite; the end shows each suite's time.
#
# One check of a suite, by name: scripts/test.sh SUITE -- CHECK... (one suite: app, gateway,
# install, upstream or real). An unknown name fails and lists that suite's checks:
#   gateway  graceful-stop ignored-stop transfer port-taken lan-port-taken (tests/gateway/e2e.py), waking-page
#   install  install (download to detect), run (install, then ready under the guard)
#   app      tray dashboard first-install
#   upstream argv ui injection sleep (tests/upstream/README.md)
#   real     A B C M (tests/real/test_real.py)
# The rust suite's tests that serve the upstream snapshots (../shared/upstream, or FOOOCUS_UPSTREAM)
# skip without them, except in CI (CI=true) or with FG_REQUIRE_SHARED=1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# The built-in suites, then one per scripts/test.d/NN-NAME.sh, in this order.
builtin=(ui lint rust sim)
declare -A about=(
  [ui]="the front end: unit tests (Vitest) and builds (the app's build embeds ui/dist)"
  [lint]="cargo fmt and clippy, the libraries and CLI, then the tray app"
  [rust]="cargo test: units, containment on the real cgroups, sampler, fake NVML, CLI end to end; the app's units"
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
wanted=() checks=()
while [ $# -gt 0 ]; do
  [ "$1" = -- ] && { shift; checks=("$@"); break; }
  wanted+=("$1"); shift
done
for w in "${wanted[@]}"; do
  [[ " ${suites[*]} " == *" $w "* ]] || { echo "test.sh: no suite '$w': scripts/test.sh --list names them" >&2; exit 2; }
done
# The suites whose script takes check names.
by_name=(app gateway install upstream real)
if [ ${#checks[@]} -gt 0 ] && { [ ${#wanted[@]} -ne 1 ] || [[ " ${by_name[*]} " != *" ${wanted[0]} "* ]]; }; then
  echo "test.sh: checks by name are for one suite, one of: ${by_name[*]} (scripts/test.sh gateway -- graceful-stop)" >&2
  exit 2
fi
want() { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $1 "* ]]; }

export CARGO_TERM_COLOR=never
# Each suite's time, printed at the end (and as far as it got when a suite fails), so a slow CI
# run shows where its minutes went.
times=()
current="" current_start=0
step() {
  finish_step
  current=${1%%:*} current_start=$(date +%s)
  echo; echo "=== $* ==="
}
finish_step() {
  [ -n "$current" ] && times+=("$(printf '%-14s %5d s' "$current" $(( $(date +%s) - current_start )))")
  current=""
}
print_times() {
  finish_step
  [ ${#times[@]} -gt 0 ] || return 0
  echo; echo "time per suite:"; printf '  %s\n' "${times[@]}"
}
on_exit() {
  # A suite failed before the Windows step: the background build has nothing left to serve.
  [ -n "${windows_build_pid:-}" ] && kill -- -"$windows_build_pid" 2>/dev/null
  print_times
}
trap on_exit EXIT
start=$(date +%s)

step "setup: what building and testing need (scripts/setup.sh)"
"$here/scripts/setup.sh" test

# The app's build (and so lint, the app suite and the app's units in rust) needs ui/dist: built
# here when a suite checks the front end's build, or when there is none.
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

# The Windows step's compiling (lint, test programs, the tray app: about 7 minutes on 2 cores,
# with a compiler of its own and a target dir of its own) runs in the background from when the
# Rust suite's programs are built, beside their tests and the suites that mostly wait on Python,
# browsers and Xvfb (started earlier, it only halves the speed of the Rust suite's own builds);
# the Windows step waits for it and then only runs. The real suite, whose limits are timed
# against real diffusion, runs after it (45-real.sh).
windows_build_pid="" windows_build_log=""
windows_build_start=0
start_windows_build() {
  want windows && [ ${#wanted[@]} -ne 1 ] && [ "$windows_build_start" -eq 0 ] || return 0
  windows_build_log=$(mktemp -t fg-windows-build.XXXXXX)
  windows_build_start=$(date +%s)
  echo "--- windows: building in the background (log $windows_build_log)"
  # A session of its own, so that a failing run can end the build and its compilers at once.
  setsid bash scripts/windows/test.sh build > "$windows_build_log" 2>&1 &
  windows_build_pid=$!
}
# The step that needs the build waits for it; a failed build fails that step with its log.
wait_windows_build() {
  [ -n "$windows_build_pid" ] || return 0
  local rc=0
  wait "$windows_build_pid" || rc=$?
  windows_build_pid=""
  times+=("$(printf '%-14s %5d s' "windows-build" $(( $(date +%s) - windows_build_start )))  (in the background)")
  if [ $rc -ne 0 ]; then
    echo "the Windows build failed (exit $rc):"; tail -n 60 "$windows_build_log"
    return $rc
  fi
  grep -E "^(---|error|warning)" "$windows_build_log" || true
}

if want rust; then
  step "rust: ${about[rust]}"
  # Built first, tested after: the Windows build shares only the tests' waiting.
  cargo test -q --no-run
  cargo test -q --no-run -p fooocus-guard
  start_windows_build
  cargo test --no-fail-fast -- --test-threads=2
  # The tray app's own unit tests (the guard-dashboard channel, the page's inbox, flite's stand-ins
  # loaded with the system's WebKitGTK): not a default member, and tested on its own as clippy is,
  # so Tauri's features are not unified with the CLI's.
  cargo test --no-fail-fast -p fooocus-guard -- --test-threads=2
fi
start_windows_build

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
  [ "$name" = windows ] && wait_windows_build
  bash "$f" "${checks[@]}"
done

print_times; trap - EXIT
echo
echo "suites passed in $(( $(date +%s) - start )) s: ${wanted[*]:-all}"
