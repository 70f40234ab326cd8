#!/usr/bin/env bash
# Builds the packages a user installs, into dist/:
#   linux    fooocus-guard_VERSION_amd64.deb (Tauri's bundler: the app, fooocus-guard-cli beside
#            it, the desktop entry, icons at every size, the Debian dependencies declared)
#   windows  fooocus-guard_VERSION_x64-setup.exe (our NSIS script, built with Debian's makensis: both
#            programs, per user, Start-menu shortcut, uninstaller; docs/windows.md "The installer")
# Usage: scripts/package.sh [linux] [windows]. Prints each step's time and the package's size.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
what=("$@"); [ ${#what[@]} -gt 0 ] || what=(linux)
dist=$here/dist
mkdir -p "$dist"
version=$(python3 -c 'import json; print(json.load(open("src-tauri/tauri.conf.json"))["version"])')
t0=$(date +%s)
step() { echo "--- package: $* ($(( $(date +%s) - t0 )) s so far)"; }
size() { echo "package: $(basename "$1"): $(du -k "$1" | cut -f1) KiB ($(stat -c %s "$1") bytes)"; }

# Shipped binaries carry no debug info (the release profile keeps some for benchmarks).
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols

frontend() {
  (cd ui && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run -s build)
}

linux() {
  bash scripts/setup.sh app
  (cd packaging && { [ -x node_modules/.bin/tauri ] || npm ci --no-audit --no-fund --loglevel=error; })
  step "front end"
  frontend
  step "fooocus-guard-cli (release)"
  local s=$(date +%s)
  cargo build -q --release --locked -p guard-cli
  echo "package: fooocus-guard-cli built in $(( $(date +%s) - s )) s"
  step "the app (release) and the .deb (Tauri's bundler)"
  s=$(date +%s)
  # The bundler puts target/release/fooocus-guard-cli into /usr/bin (bundle.linux.deb.files).
  (cd src-tauri && ../packaging/node_modules/.bin/tauri build --ci --bundles deb -- --locked)
  echo "package: app and .deb built in $(( $(date +%s) - s )) s"
  local deb
  deb=$(ls -t "target/release/bundle/deb/"*"_${version}_amd64.deb" | head -n1)
  cp "$deb" "$dist/fooocus-guard_${version}_amd64.deb"
  size "$dist/fooocus-guard_${version}_amd64.deb"
}

# Windows, cross-built here: both programs (release) and the per-user installer (makensis;
# packaging/windows/installer.nsi, built by scripts/windows/make-installer.sh).
windows_installer() {
  bash scripts/windows/setup.sh
  step "front end"
  frontend
  step "fooocus-guard.exe and fooocus-guard-cli.exe (release, x86_64-pc-windows-gnu)"
  local s=$(date +%s)
  (. scripts/windows/env.sh
   wcargo build -q --release --locked -p fooocus-guard --features custom-protocol --bin fooocus-guard
   wcargo build -q --release --locked -p guard-cli)
  echo "package: Windows programs built in $(( $(date +%s) - s )) s"
  step "the installer (makensis)"
  local target_dir
  target_dir=$(. scripts/windows/env.sh && echo "$CARGO_TARGET_DIR")
  s=$(date +%s)
  bash scripts/windows/make-installer.sh "$target_dir/x86_64-pc-windows-gnu/release" \
    "$dist/fooocus-guard_${version}_x64-setup.exe"
  echo "package: installer built in $(( $(date +%s) - s )) s"
  size "$dist/fooocus-guard_${version}_x64-setup.exe"
}

for w in "${what[@]}"; do
  case $w in
    linux) linux ;;
    windows) windows_installer ;;
    *) echo "package: unknown package '$w': say linux or windows" >&2; exit 2 ;;
  esac
done
step "done"
