#!/usr/bin/env bash
# Sets up cross-building Fooocus Guard for Windows (x86_64-pc-windows-gnu) and running its tests
# under Wine, on a fresh Debian 12 machine. Idempotent. Why this route: rustup cannot fetch a
# Windows target here, so std is rebuilt from source (-Zbuild-std) with Debian's rustc-web, whose
# version matches its own std source exactly; mingw's dlltool resolves raw-dylib imports; Wine 8
# runs the tests.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/windows/env.sh"
. "$here/scripts/lib/debs.sh"

ensure_debs "windows setup" gcc-mingw-w64-x86-64 wine64 nsis libllvm22 libgit2-1.5 libssh2-1 libcurl4

version=1.96.0+dfsg1-1~deb12u2
if [ "$(cat "$rust_web/.version" 2>/dev/null)" != "$version" ] || [ ! -x "$rust_web/usr/bin/cargo-clippy" ]; then
  echo "windows setup: unpacking rustc-web $version into $rust_web"
  rm -rf "$rust_web" && mkdir -p "$rust_web/debs"
  (cd "$rust_web/debs" && apt-get download -qq \
     "rustc-web=$version" "cargo-web=$version" "rust-web-src=$version" \
     "libstd-rust-web-1.96=$version" "libstd-rust-web-dev=$version" "rust-web-clippy=$version" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  for deb in "$rust_web"/debs/*.deb; do dpkg-deb -x "$deb" "$rust_web"; done
  rm -rf "$rust_web/debs"
  # The sysroot must hold the std source where -Zbuild-std looks for it.
  test -e "$rust_web/usr/lib/rustlib/src/rust/library/std" || {
    echo "windows setup: the std source is not at $rust_web/usr/lib/rustlib/src/rust/library" >&2; exit 1; }
  echo "$version" > "$rust_web/.version"
fi
"$RUSTC" --version

shim=$win_root/bcryptprimitives.dll
if [ ! -f "$shim" ] || [ "$here/scripts/windows/prng-shim.c" -nt "$shim" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$shim" "$here/scripts/windows/prng-shim.c" \
    "$here/scripts/windows/prng-shim.def" -ladvapi32
fi
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "windows setup: creating the Wine prefix $WINEPREFIX"
  mkdir -p "$WINEPREFIX"
  /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
  /usr/lib/wine/wineserver -w || true
fi
cp "$shim" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
echo "windows setup: ready (target dir $CARGO_TARGET_DIR, Wine prefix $WINEPREFIX)"
