#!/usr/bin/env bash
# Builds the packages a user installs, into dist/:
#   linux    fooocus-guard_VERSION_amd64.deb (Tauri's bundler: the app, fooocus-guard-cli beside
#            it, the desktop entry, icons at every size, the Debian dependencies declared)
#   windows  fooocus-guard_VERSION_x64-setup.exe (our NSIS script, built with Debian's makensis: both
#            programs, per user, Start-menu shortcut, uninstaller; docs/windows.md "The installer")
# Usage: scripts/package.sh [--debug] [linux] [windows]. Prints each step's time and the package's
# size. --debug (linux only) packages the debug build instead, as fooocus-guard_VERSION_amd64-debug.deb:
# CI installs that one: the dist build would add 11 minutes (from scratch, 2 cores) to its run;
# the bundler, the package's contents and its checks are the same.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
debug=0 what=()
for a in "$@"; do
  case $a in --debug) debug=1 ;; *) what+=("$a") ;; esac
done
[ ${#what[@]} -gt 0 ] || what=(linux)
dist=$here/dist
mkdir -p "$dist"
version=$(python3 -c 'import json; print(json.load(open("src-tauri/tauri.conf.json"))["version"])')
t0=$(date +%s)
step() { echo "--- package: $* ($(( $(date +%s) - t0 )) s so far)"; }
size() { echo "package: $(basename "$1"): $(du -k "$1" | cut -f1) KiB ($(stat -c %s "$1") bytes)"; }

# Shipped binaries carry no debug info (the release profile keeps some for benchmarks). The
# Linux package is built with the `dist` profile (Cargo.toml: one LTO unit, the UI's crates
# optimised for size); the Windows one still with `release`, the profile its Wine checks ran.
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols

frontend() {
  (cd ui && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run -s build)
}

linux() {
  bash scripts/setup.sh app
  (cd packaging && { [ -x node_modules/.bin/tauri ] || npm ci --no-audit --no-fund --loglevel=error; })
  step "front end"
  frontend
  local dir=dist bundle_flags=(--features custom-protocol)
  [ "$debug" = 1 ] && dir=debug bundle_flags=(--debug)
  step "fooocus-guard, its dashboard and fooocus-guard-cli ($dir)"
  local s=$(date +%s)
  if [ "$debug" = 1 ]; then
    # Built exactly as the test suites build them (each on its own, no features), so after
    # them this builds nothing: the debug app serves its embedded front end all the same.
    cargo build -q --locked -p guard-cli
    cargo build -q --locked -p fooocus-guard
  else
    # One cargo run for all three: the CLI and the app share most crates, and separate runs
    # built 73 of the CLI's 167 again (other features).
    cargo build -q --profile dist --locked -p guard-cli -p fooocus-guard --features fooocus-guard/custom-protocol
  fi
  echo "package: programs built in $(( $(date +%s) - s )) s"
  step "the .deb (Tauri's bundler, from what was just built)"
  s=$(date +%s)
  # Where cargo put them (CARGO_TARGET_DIR is honoured).
  local target
  target=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  # The CLI goes into /usr/bin beside the app (bundle.linux.deb.files names the release one).
  # The bundler then warns "Failed to add bundler type to the binary": expected, the main program
  # (the guard) holds no Tauri on Linux; it only matters to Tauri's updater, which we do not use.
  # The bundler knows only the release and debug folders: it is shown the dist build's three
  # programs as a release build, in a folder of their own.
  local from=$target
  if [ "$dir" = dist ]; then
    from=$target/package
    rm -rf "$from" && mkdir -p "$from/release"
    cp "$target/dist/fooocus-guard" "$target/dist/fooocus-guard-dashboard" "$target/dist/fooocus-guard-cli" "$from/release/"
    dir=release
  fi
  (cd src-tauri && CARGO_TARGET_DIR=$from ../packaging/node_modules/.bin/tauri bundle --ci --bundles deb "${bundle_flags[@]}" \
     --config "{\"bundle\":{\"linux\":{\"deb\":{\"files\":{\"/usr/bin/fooocus-guard-cli\":\"$from/$dir/fooocus-guard-cli\"}}}}}")
  echo "package: .deb made in $(( $(date +%s) - s )) s"
  local deb out=$dist/fooocus-guard_${version}_amd64.deb
  deb=$(ls -t "$from/$dir/bundle/deb/"*"_${version}_amd64.deb" | head -n1)
  [ "$debug" = 1 ] && out=$dist/fooocus-guard_${version}_amd64-debug.deb
  cp "$deb" "$out"
  size "$out"
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
