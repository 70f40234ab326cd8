#!/usr/bin/env bash
# The Windows installer under Wine 8 (CI): builds it from BIN_DIR's binaries, installs it silently
# into a Wine prefix of its own, checks the files, the Start-menu shortcut, the registered
# AppUserModelID and the HKCU uninstall entry, runs the installed CLI; then uninstalls silently and
# checks that the program, shortcut, registry entries and the start-with-session entry are gone
# while the settings and history stay; then installs again and uninstalls with /REMOVEDATA, which
# removes those too but keeps a Fooocus the app installed.
#   scripts/windows/installer-test.sh [BIN_DIR]   (default: the debug build in the target dir)
# What Wine cannot show is listed in docs/windows-checklist.md ("The installer").
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/windows/env.sh"
bin_dir=${1:-$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/debug}
start=$(date +%s)
wine=/usr/lib/wine/wine64
work=$CARGO_TARGET_DIR/installer-test
rm -rf "$work" && mkdir -p "$work"

fails=0
since() { echo "($(( $(date +%s) - start )) s)"; }
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

echo "--- installer: build (makensis) from $bin_dir $(since)"
# A debug build's debug info (about 180 MB per program) would make LZMA take minutes: stripped
# copies, as the release build ships them.
mkdir -p "$work/bin"
for f in fooocus-guard.exe fooocus-guard-cli.exe; do
  x86_64-w64-mingw32-strip -o "$work/bin/$f" "$bin_dir/$f"
done
cp "$bin_dir/WebView2Loader.dll" "$work/bin/"
bin_dir=$work/bin
# zlib: LZMA took 74 s of CPU for these two programs; what the installer does is the same.
FG_INSTALLER_COMPRESSOR=zlib bash "$here/scripts/windows/make-installer.sh" "$bin_dir" "$work/dist/fooocus-guard-setup.exe"
echo "installer: $(stat -c %s "$work/dist/fooocus-guard-setup.exe") bytes $(since)"

# Microsoft's WebView2 bootstrapper is not downloaded here: a stand-in beside the installer records
# how the installer runs it (Wine has no WebView2, so the installer finds it missing).
cat > "$work/bootstrapper.c" <<'C'
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    FILE *f;
    char path[1024];
    snprintf(path, sizeof path, "%s.ran", argv[0]);
    f = fopen(path, "w");
    for (int i = 1; i < argc; i++) fprintf(f, "%s%s", i > 1 ? " " : "", argv[i]);
    fclose(f);
    return 0;
}
C
x86_64-w64-mingw32-gcc -O2 -o "$work/dist/MicrosoftEdgeWebview2Setup.exe" "$work/bootstrapper.c"

# A Wine prefix of the test's own, so that the first install starts from nothing.
export WINEPREFIX=$win_root/wineprefix-installer
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  mkdir -p "$WINEPREFIX"
  "$wine" wineboot --init >/dev/null 2>&1 || true
  /usr/lib/wine/wineserver -w || true
fi
echo "installer: Wine prefix ready $(since)"
cp "$win_root/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
user_dir=$WINEPREFIX/drive_c/users/$(id -un)
local_dir=$user_dir/AppData/Local
roaming=$user_dir/AppData/Roaming
inst=$local_dir/Programs/Fooocus\ Guard
lnk="$roaming/Microsoft/Windows/Start Menu/Programs/Fooocus Guard.lnk"
config=$roaming/fooocus-guard/config/config.toml
history=$local_dir/fooocus-guard/data/history.sqlite3
fooocus=$local_dir/fooocus-guard/data/Fooocus/models/checkpoints/model.safetensors
webview_data=$local_dir/dev.fooocus-guard.app/EBWebView/Local\ State
uninstall_key='HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\FooocusGuard'
aumid_key='HKCU\Software\Classes\AppUserModelId\dev.fooocus-guard.app'
run_key='HKCU\Software\Microsoft\Windows\CurrentVersion\Run'
# Leftovers of an earlier run.
rm -rf "$inst" "$lnk" "$roaming/fooocus-guard" "$local_dir/fooocus-guard" "$local_dir/dev.fooocus-guard.app"
for k in "$uninstall_key" "$aumid_key"; do "$wine" reg delete "$k" /f >/dev/null 2>&1 || true; done
"$wine" reg delete "$run_key" /v FooocusGuard /f >/dev/null 2>&1 || true

# `wine` returns when the program has ended; `wineserver -w` also waits for what it started
# (an NSIS uninstaller runs a copy of itself from %TEMP%).
run() { "$wine" "$@"; local rc=$?; /usr/lib/wine/wineserver -w; return $rc; }
reg_value() { "$wine" reg query "$1" /v "$2" 2>/dev/null | tr -d '\r' | sed -n "s/^ *$2 *REG_[A-Z_]* *//p"; }
has_key() { "$wine" reg query "$1" >/dev/null 2>&1; }
absent() { [ ! -e "$1" ]; }
not() { ! "$@"; }
utf16_in() { python3 -c 'import sys; sys.exit(0 if sys.argv[2].encode("utf-16-le") in open(sys.argv[1],"rb").read() else 1)' "$1" "$2"; }

install() {
  run "$work/dist/fooocus-guard-setup.exe" /S
}

echo "--- installer: silent install (/S) $(since)"
check "the installer exits 0" install
for f in fooocus-guard.exe fooocus-guard-cli.exe WebView2Loader.dll fooocus-guard.ico uninstall.exe; do
  check "installed: %LOCALAPPDATA%\\Programs\\Fooocus Guard\\$f" test -f "$inst/$f"
done
check "the installed fooocus-guard.exe is the one built" cmp -s "$bin_dir/fooocus-guard.exe" "$inst/fooocus-guard.exe"
check "Start-menu shortcut" test -f "$lnk"
check "the shortcut points at the installed app" utf16_in "$lnk" 'Fooocus Guard\fooocus-guard.exe'
if utf16_in "$lnk" "dev.fooocus-guard.app"; then
  ok "the shortcut carries the AppUserModelID dev.fooocus-guard.app"
else
  echo "note the shortcut carries no AppUserModelID under Wine (Wine's shell link does not store it); real Windows: docs/windows-checklist.md"
fi
check "AppUserModelID registered with the name Fooocus Guard" test "$(reg_value "$aumid_key" DisplayName)" = "Fooocus Guard"
check "AppUserModelID's icon is the installed one" test "$(reg_value "$aumid_key" IconUri)" = 'C:\users\'"$(id -un)"'\AppData\Local\Programs\Fooocus Guard\fooocus-guard.ico'
check "uninstall entry: DisplayName" test "$(reg_value "$uninstall_key" DisplayName)" = "Fooocus Guard"
version=$(python3 -c 'import json; print(json.load(open("'"$here"'/src-tauri/tauri.conf.json"))["version"])')
check "uninstall entry: DisplayVersion $version" test "$(reg_value "$uninstall_key" DisplayVersion)" = "$version"
check "uninstall entry: DisplayIcon is the app" test "$(reg_value "$uninstall_key" DisplayIcon)" = 'C:\users\'"$(id -un)"'\AppData\Local\Programs\Fooocus Guard\fooocus-guard.exe,0'
check "uninstall entry: UninstallString" test "$(reg_value "$uninstall_key" UninstallString)" = '"C:\users\'"$(id -un)"'\AppData\Local\Programs\Fooocus Guard\uninstall.exe"'
size_kib=$(( $(reg_value "$uninstall_key" EstimatedSize) ))
installed_kib=$(du -sk --apparent-size "$inst" | cut -f1)
check "uninstall entry: EstimatedSize $size_kib KiB, the folder's $installed_kib KiB" \
  test "$size_kib" -ge $(( installed_kib * 9 / 10 )) -a "$size_kib" -le $(( installed_kib * 11 / 10 + 64 ))
check "WebView2 missing (Wine): Microsoft's bootstrapper beside the installer was run with /silent /install" \
  test "$(cat "$work/dist/MicrosoftEdgeWebview2Setup.exe.ran" 2>/dev/null)" = "/silent /install"
cli_out=$("$wine" "$inst/fooocus-guard-cli.exe" --version 2>&1 | tr -d '\r' || true)
check "the installed CLI runs: $cli_out" grep -q "$version" <<<"$cli_out"

# What the user has by now: settings, a history, the app's start-with-session entry (the same key
# and value crates/app/src/autostart.rs writes), the dashboard's WebView2 data, and a Fooocus the
# app installed.
seed_user_data() {
  mkdir -p "$(dirname "$config")" "$(dirname "$history")" "$(dirname "$fooocus")" "$(dirname "$webview_data")"
  echo 'fooocus_path = "C:\\Fooocus"' > "$config"
  echo history > "$history"
  echo model > "$fooocus"
  echo '{}' > "$webview_data"
  # In other letter case than the install's: Windows paths are compared without regard to it.
  "$wine" reg add "$run_key" /v FooocusGuard /t REG_SZ /f /d "\"C:\\Users\\$(id -un)\\AppData\\Local\\Programs\\Fooocus Guard\\Fooocus-Guard.exe\" --hidden" >/dev/null
}
seed_user_data
check "(set-up) the start-with-session entry is there" has_key "$run_key"
check "(set-up) its value" test -n "$(reg_value "$run_key" FooocusGuard)"

echo "--- installer: silent uninstall (/S) $(since)"
check "the uninstaller exits 0" run "$inst/uninstall.exe" /S
check "the install folder is gone" absent "$inst"
check "the Start-menu shortcut is gone" absent "$lnk"
check "the uninstall entry is gone" not has_key "$uninstall_key"
check "the AppUserModelID registration is gone" not has_key "$aumid_key"
check "the start-with-session entry is gone" test -z "$(reg_value "$run_key" FooocusGuard)"
check "settings kept" test -f "$config"
check "history kept" test -f "$history"
check "the dashboard's WebView2 data kept" test -f "$webview_data"
check "the app-installed Fooocus kept" test -f "$fooocus"

echo "--- installer: install again, uninstall with /REMOVEDATA $(since)"
check "the installer exits 0" install
check "the settings from before are still there after reinstalling" test -f "$config"
other='"D:\Portable\Fooocus Guard\fooocus-guard.exe" --hidden'
"$wine" reg add "$run_key" /v FooocusGuard /t REG_SZ /f /d "$other" >/dev/null
check "the uninstaller with /S /REMOVEDATA exits 0" run "$inst/uninstall.exe" /S /REMOVEDATA
check "the install folder is gone" absent "$inst"
check "the uninstall entry is gone" not has_key "$uninstall_key"
check "settings removed (%APPDATA%\\fooocus-guard)" absent "$roaming/fooocus-guard"
check "history removed" absent "$history"
check "the dashboard's WebView2 data removed" absent "$local_dir/dev.fooocus-guard.app"
check "the app-installed Fooocus kept (models, images)" test -f "$fooocus"
check "a start-with-session entry of another copy is kept" test "$(reg_value "$run_key" FooocusGuard)" = "$other"
"$wine" reg delete "$run_key" /v FooocusGuard /f >/dev/null 2>&1 || true
rm -rf "$local_dir/fooocus-guard"

/usr/lib/wine/wineserver -k 2>/dev/null || true
echo "--- installer: $fails failed, in $(( $(date +%s) - start )) s"
[ "$fails" -eq 0 ]
