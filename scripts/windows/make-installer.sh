#!/usr/bin/env bash
# Builds the Windows installer with makensis (Debian's nsis) from already-built binaries:
#   scripts/windows/make-installer.sh BIN_DIR OUT.exe
# BIN_DIR holds fooocus-guard.exe, fooocus-guard-cli.exe and WebView2Loader.dll (the target dir
# of an x86_64-pc-windows-gnu build). Used by scripts/package.sh windows (release) and by
# scripts/windows/installer-test.sh (CI).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${1:?usage: make-installer.sh BIN_DIR OUT.exe}
out=${2:?usage: make-installer.sh BIN_DIR OUT.exe}
for f in fooocus-guard.exe fooocus-guard-cli.exe WebView2Loader.dll; do
  [ -f "$bin_dir/$f" ] || { echo "make-installer: $bin_dir/$f is missing: build the app and the CLI for x86_64-pc-windows-gnu first (scripts/package.sh windows does)" >&2; exit 1; }
done
command -v makensis >/dev/null || { echo "make-installer: makensis is missing: run scripts/windows/setup.sh (Debian package nsis)" >&2; exit 1; }
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$here/src-tauri/tauri.conf.json")
# The app's own constant, so that the shortcut and the app's toasts carry the same id.
aumid=$(sed -n 's/^pub const APP_USER_MODEL_ID: &str = "\(.*\)";$/\1/p' "$here/src-tauri/src/lib.rs")
[ -n "$aumid" ] || { echo "make-installer: APP_USER_MODEL_ID not found in src-tauri/src/lib.rs" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
# FG_INSTALLER_COMPRESSOR=zlib (CI's test) builds in seconds; the default, LZMA, takes minutes.
makensis -V2 -WX -INPUTCHARSET UTF8 "-DCOMPRESSOR=${FG_INSTALLER_COMPRESSOR:-lzma}" \
  "-DVERSION=$version" "-DAUMID=$aumid" "-DBIN_DIR=$bin_dir" "-DICON=$here/icons/icon.ico" \
  "-DOUT_FILE=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")" \
  "$here/packaging/windows/installer.nsi"
