#!/usr/bin/env bash
# Windows, from Linux: type-checks the whole workspace (the Tauri app included) and lints it for
# x86_64-pc-windows-gnu, then runs the libraries' tests under Wine -- the Job Object backend's
# integration tests among them -- and builds the installer and tests it under Wine. What Wine
# cannot show (the job memory limit and its message, peak memory, CPU accounting) is tested only
# on real Windows: see docs/windows.md.
#
# `scripts/windows/test.sh build` only compiles (lint, the test programs, the tray app): the
# whole test run starts it in the background while other suites run (scripts/test.sh), and the
# Windows step then finds everything built.
set -euo pipefail
only_build=false
[ "${1:-}" = build ] && only_build=true
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
start=$(date +%s)
bash scripts/windows/setup.sh
. scripts/windows/env.sh
# The Tauri app embeds the built front end.
[ -f ui/dist/index.html ] || (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run -s build)

echo "--- check and lint for x86_64-pc-windows-gnu (workspace, all targets)"
wcargo clippy --workspace --all-targets -q -- -D warnings

# The fake NVIDIA library as nvml.dll (the tests cannot run the Linux compiler from inside Wine).
nvml_dir=$CARGO_TARGET_DIR/fake-nvml
for kind in full omit; do
  mkdir -p "$nvml_dir/$kind"
  flags=(); [ "$kind" = omit ] && flags=(-DOMIT_PROCESSES)
  x86_64-w64-mingw32-gcc -shared -O2 "${flags[@]}" -o "$nvml_dir/$kind/nvml.dll" tests/fake-nvml/fake_nvml.c
done
# Wine sees the Linux file system as drive Z:.
export FAKE_NVML_DLL_DIR="Z:${nvml_dir//\//\\}"

packages=(-p fooocus-console -p guard-contain -p guard-sample -p guard-history -p guard-fooocus
  -p guard-core -p guard-app -p guard-gateway -p guard-installer -p guard-cli)
if $only_build; then
  echo "--- the test programs and the tray app (debug, front end embedded), built"
  wcargo test -q --no-run "${packages[@]}"
  wcargo build -q -p fooocus-guard --features custom-protocol --bin fooocus-guard
  echo "--- windows: set-up, lint and builds in $(( $(date +%s) - start )) s"
  exit 0
fi

echo "--- tests under Wine ($("$CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER" --version))"
wcargo test --no-fail-fast "${packages[@]}" -- --test-threads=2
/usr/lib/wine/wineserver -k 2>/dev/null || true

# The installer, from the tray app and the CLI that the tests above built. Debug, not release: the
# debug build reuses the tests' compiled dependencies, a release build would compile them all again
# with optimisation on CI's 2 cores; what the installer does does not depend on it.
echo "--- the tray app (debug, front end embedded) for the installer"
wcargo build -q -p fooocus-guard --features custom-protocol --bin fooocus-guard
bash scripts/windows/installer-test.sh "$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/debug"
echo "--- windows: set-up, lint and tests in $(( $(date +%s) - start )) s"
