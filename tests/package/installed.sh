#!/usr/bin/env bash
# Runs inside a clean Debian root where `apt-get install ./fooocus-guard_*.deb` just ran
# (scripts/test.d/50-package.sh): what a user gets from the package, started from the installed
# paths, without Fooocus installed. Prints "ok"/"FAIL" lines, then "N passed, M failed".
set -uo pipefail
passed=0; failed=0
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; fi
}
export HOME=/tmp/user
mkdir -p "$HOME"

echo "fooocus-guard $(dpkg-query -W -f='${Version}: ${Installed-Size} KiB installed' fooocus-guard)"
check "the app is installed as /usr/bin/fooocus-guard" test -x /usr/bin/fooocus-guard
check "its dashboard is installed beside it (the guard starts it from there)" test -x /usr/bin/fooocus-guard-dashboard
check "fooocus-guard-cli is installed beside it" test -x /usr/bin/fooocus-guard-cli
desktop=$(dpkg -L fooocus-guard | grep '\.desktop$' | head -n1)
check "a desktop entry that starts the app" grep -q '^Exec=fooocus-guard' "$desktop"
for s in 16x16 24x24 32x32 48x48 64x64 128x128 256x256 512x512; do
  check "an icon of $s" test -s "/usr/share/icons/hicolor/$s/apps/fooocus-guard.png"
done
check "no Fooocus here" bash -c '! ls -d /root/Fooocus* /tmp/user/Fooocus* 2>/dev/null'

echo "--- fooocus-guard-cli doctor"
doctor=$(fooocus-guard-cli doctor 2>&1); rc=$?
echo "$doctor" | sed 's/^/  /'
check "doctor runs from the installed path" test "$rc" -eq 0
check "doctor names the containment backend" grep -qi "containment" <<<"$doctor"

echo "--- the app under Xvfb, from /usr/bin"
start=$(date +%s%N)
dbus-run-session -- xvfb-run -a -s "-screen 0 1280x900x24" bash -c '
  /usr/bin/fooocus-guard >/tmp/app.log 2>&1 &
  pid=$!
  until=$(( $(date +%s) + 90 ))
  until win=$(xdotool search --name "^Fooocus Guard$" 2>/dev/null); do
    if ! kill -0 $pid 2>/dev/null || [ "$(date +%s)" -ge $until ]; then echo "no window"; kill $pid 2>/dev/null; exit 1; fi
    sleep 0.3
  done
  echo "window shown"
  # The window is the dashboard process the guard started from the installed path.
  owner=$(xdotool getwindowpid "$(echo "$win" | head -n1)" 2>/dev/null) &&
    echo "the window belongs to $(readlink /proc/$owner/exe)"
  sleep 3
  kill -0 $pid && echo "still running 3 s later"
  grep -qx WebKitWebProces /proc/[0-9]*/comm 2>/dev/null && echo "WebKit web process running"
  kill $pid; wait $pid 2>/dev/null
  exit 0
' >/tmp/session.out 2>&1
cat /tmp/session.out | sed 's/^/  /'
echo "  the session took $(( ($(date +%s%N) - start) / 1000000 )) ms"
check "the app shows its window 'Fooocus Guard'" grep -q "window shown" /tmp/session.out
check "the window is /usr/bin/fooocus-guard-dashboard's" grep -q "belongs to /usr/bin/fooocus-guard-dashboard$" /tmp/session.out
check "and the guard keeps running" grep -q "still running" /tmp/session.out
check "WebKit's web process draws the page (it needs EGL; the window's process goes without)" grep -q "WebKit web process running" /tmp/session.out
if [ "$failed" -gt 0 ]; then echo "--- app log"; tail -n 30 /tmp/app.log; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
