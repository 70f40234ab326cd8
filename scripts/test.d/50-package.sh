#!/usr/bin/env bash
# The Linux package as a user gets it: scripts/package.sh builds the .deb, then a clean Debian root made from Debian's own packages (mmdebstrap, the same mirror as this
# machine's apt) installs it with `apt-get install ./fooocus-guard_*.deb` and runs
# tests/package/installed.sh there: doctor, and the app's window under Xvfb. The root is
# thrown away afterwards (mmdebstrap's target /dev/null). CI packages the debug build the other
# suites already made (--debug): the release one's build (the `dist` profile) would add 11 minutes
# from scratch on 2 cores; the bundler, the package's contents and the checks are the same, and
# `scripts/package.sh linux` makes the release .deb (README, "Download and install");
# FG_PACKAGE=release runs this step on that one instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
. scripts/lib/debs.sh
ensure_debs package mmdebstrap eatmydata
log=$(mktemp); trap 'rm -f "$log"' EXIT
flags=(--debug) suffix=-debug
case ${FG_PACKAGE:-debug} in
  debug) ;;
  release) flags=() suffix= ;;
  *) echo "package: FG_PACKAGE=$FG_PACKAGE: say debug or release" >&2; exit 2 ;;
esac
if ! bash scripts/package.sh "${flags[@]}" linux >"$log" 2>&1; then
  tail -n 40 "$log"; echo "package: scripts/package.sh ${flags[*]} linux failed (its output's end is above)" >&2; exit 1
fi
grep -E '^(---|package:|warning: unused)' "$log"
built=$(date +%s)
version=$(python3 -c 'import json; print(json.load(open("src-tauri/tauri.conf.json"))["version"])')
deb=$PWD/dist/fooocus-guard_${version}_amd64${suffix}.deb
test -s "$deb"
echo "--- the .deb's metadata"
dpkg-deb -f "$deb" Package Version Depends Installed-Size | sed 's/^/  /'
# The root comes from the same apt sources as this machine's (its mirror or proxy); Debian's own
# when it has none.
mirrors=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && grep -qE '^[[:space:]]*(deb |Types:)' "$f" && mirrors+=("$f")
done
[ ${#mirrors[@]} -gt 0 ] || mirrors=("deb http://deb.debian.org/debian bookworm main")
echo "--- a clean Debian 12 root: apt-get install ./$(basename "$deb"), then tests/package/installed.sh"
# dpkg without fsync (eatmydata; its hooks come last so that the package's install runs under it
# too): the root is thrown away. Test tools only (a user's desktop has its own X server and bus); the package brings the rest.
mmdebstrap --mode=root --variant=apt --quiet \
  --include=ca-certificates,xvfb,xauth,xdotool,dbus,dbus-x11 \
  --customize-hook="copy-in '$deb' tests/package/installed.sh /tmp" \
  --customize-hook='chroot "$1" sh -c "cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ./fooocus-guard_*.deb >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; exit 1; }; grep -E \"^(Need to get|After this operation)\" /tmp/apt.log"' \
  --customize-hook='chroot "$1" bash /tmp/installed.sh' \
  --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
  bookworm /dev/null "${mirrors[@]}" </dev/null 2>&1 |
  grep -vE '^(W: Download is performed unsandboxed|processing |Get:[0-9]|Fetched |\./usr/)'
echo "--- package: built in $(( built - start )) s, installed and checked in $(( $(date +%s) - built )) s"
