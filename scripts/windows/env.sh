# Sourced by scripts/windows/*.sh: the cross toolchain (Debian's rustc-web 1.96 unpacked into a
# prefix of its own, so the machine's rustup toolchain is untouched) and a Wine prefix of our own.
here=${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
win_root=${FG_WINDOWS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/fooocus-guard-windows}
rust_web=$win_root/rust-web
export WINEPREFIX=${FG_WINEPREFIX:-$win_root/wineprefix}
export WINEDEBUG=-all
export WINEDLLOVERRIDES="bcryptprimitives=n;mscoree,mshtml="
export LD_LIBRARY_PATH="$rust_web/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTC=$rust_web/usr/bin/rustc
export RUSTDOC=$rust_web/usr/bin/rustdoc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
# A target dir apart from the host build: a different compiler would invalidate it every time.
export CARGO_TARGET_DIR=${FG_WINDOWS_TARGET_DIR:-$here/target/windows}
# rust-web's bin first, so that `cargo clippy` finds its own cargo-clippy rather than rustup's.
wcargo() {
  # The target flags go right after the subcommand: anything after `--` belongs to the tool.
  local sub=$1; shift
  PATH="$rust_web/usr/bin:$PATH" "$rust_web/usr/bin/cargo" "$sub" \
    -Zbuild-std=std,panic_abort --target x86_64-pc-windows-gnu "$@"
}
