#!/usr/bin/env bash
# One desktop session for the tray app, run by e2e.sh inside dbus-run-session and Xvfb: a real
# notification daemon (dunst), a real tray host (status-notifier-watcher + gtk-sni-tray-standalone),
# and the app in demo mode supervising the Fooocus simulator. Prints "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
app=${APP:-target/debug/fooocus-guard}
art=artifacts/app
mkdir -p "$art"
tmp=$(mktemp -d)
export FOOOCUS_GUARD_CONFIG_DIR=$tmp/config FOOOCUS_GUARD_DATA_DIR=$tmp/data XDG_CONFIG_HOME=$tmp/xdg
passed=0; failed=0
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; fi
}
wait_for() { # wait_for SECONDS COMMAND...
  local until=$(( $(date +%s) + $1 )); shift
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$until" ] && return 1
    sleep 0.3
  done
}

dunst >"$tmp/dunst.log" 2>&1 &
status-notifier-watcher >"$tmp/watcher.log" 2>&1 &
sleep 0.5
gtk-sni-tray-standalone >"$tmp/tray-host.log" 2>&1 &
# Start in the tray only (as at login), then open the dashboard from the tray menu.
"$app" --demo --hidden >"$tmp/app.log" 2>&1 &
pid=$!

check "the tray icon registers with the tray host" wait_for 60 python3 tests/app/tray.py items
check "no window while the app sits in the tray" bash -c "sleep 3; ! xdotool search --name '^Fooocus Guard$'"
tray_mib=$(python3 tests/app/rss.py "$pid")
check "'Open dashboard' in the tray menu" python3 tests/app/tray.py click "Open dashboard"
check "the window titled 'Fooocus Guard' opens" wait_for 60 xdotool search --name '^Fooocus Guard$'
sleep 5
open_mib=$(python3 tests/app/rss.py "$pid")
# The real window in each state the README shows (docs/screenshots: copied from here).
shot() { import -window "$(xdotool search --name '^Fooocus Guard$' | head -n1)" "$art/$1" 2>/dev/null; }
shot app-no-gpu.png
generating() { python3 tests/app/tray.py status | grep -Eq "step [0-9]+ of [0-9]+"; }
check "a generation's progress reaches the tray" wait_for 120 generating
shot app-generating.png
check "the tray menu offers what the issue lists" bash -c 'python3 tests/app/tray.py menu | cut -f2 | tr "\n" "|" | grep -q "Open dashboard|Start Fooocus|Stop Fooocus|Restart Fooocus|Open Fooocus in the browser|Stop the current generation|Sleep now|Wake Fooocus|Quit"'
notified() { dunstctl history | grep -q "Generation stopped"; }
check "a timed-out generation raises a friendly notification" wait_for 120 notified
check "the notification says what happens now" bash -c 'dunstctl history | grep -q "your limit is 20 s"'
db=$tmp/data/history.sqlite3
breach() { python3 -c "import sqlite3,sys; c=sqlite3.connect('$db'); sys.exit(0 if c.execute(\"select count(*) from breaches where limit_kind='timeout'\").fetchone()[0] else 1)"; }
check "the breach is in the history store" wait_for 30 breach
stop_recorded() { python3 -c "import sqlite3,sys; c=sqlite3.connect('$db'); sys.exit(0 if c.execute(\"select count(*) from breaches where how is not null\").fetchone()[0] else 1)"; }
check "how the generation was stopped is recorded" wait_for 60 stop_recorded
sleep 1  # the why-card's event arrived with it; give the window a frame to paint it
shot app-why-stopped.png
# The guard and the window are two processes (issue 16): WebKit lives only in the dashboard's.
dash_pid() { pgrep -P "$pid" -x fooocus-guard-d | head -n1; }
check "the dashboard is a process of its own" test -n "$(dash_pid)"
check "the guard's process holds no WebKit or GTK" bash -c "! grep -Eq 'libwebkit2gtk|libgtk-3' /proc/$pid/maps"
check "the tray's status line follows the state" bash -c 'python3 tests/app/tray.py status | grep -Eq "^Fooocus Guard: (Fooocus is ready|image [0-9]+ of [0-9]+|generating)"'
sleep 2
import -window root "$art/dashboard.png" 2>/dev/null
check "a screenshot of the dashboard was taken" test -s "$art/dashboard.png"
# Closing the window (as its close button would) gives its memory back: the dashboard's process
# ends with WebKit's, the guard stays in the tray.
for w in $(xdotool search --name '^Fooocus Guard$'); do python3 tests/app/close_window.py "$w"; done
no_window() { ! xdotool search --name '^Fooocus Guard$' >/dev/null; }
check "the window closes" wait_for 30 no_window
check "the app stays in the tray" kill -0 "$pid"
sleep 5
closed_mib=$(python3 tests/app/rss.py "$pid")
# What stays after the close, process by process (RSS in KiB): the README's breakdown.
ps -o rss=,args= -p "$pid" --ppid "$pid" | cut -c1-100 | sed 's/^/  after closing: /'
echo "memory of the app (its processes, not Fooocus): ${tray_mib} MiB in the tray, ${open_mib} MiB with the dashboard open, ${closed_mib} MiB after closing it"
check "closing the dashboard gives most of its memory back" test "$closed_mib" -lt $(( (tray_mib + open_mib) / 2 ))
no_dash() { [ -z "$(dash_pid)" ]; }
check "closing the window ends the dashboard's process" wait_for 30 no_dash

# The supervisor never shares the web view's fate: kill WebKit's web process, then the
# dashboard's own, and Fooocus is still supervised (the next runaway generation is still stopped
# at its limit and recorded) and the dashboard opens again.
breaches() { python3 -c "import sqlite3; print(sqlite3.connect('$db').execute(\"select count(*) from breaches\").fetchone()[0])"; }
python3 tests/app/tray.py click "Open dashboard"
check "the dashboard opens again from the tray" wait_for 60 xdotool search --name '^Fooocus Guard$'
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
web_pid() { local d p; d=$(dash_pid); [ -n "$d" ] || return 1
  for p in $(descendants "$d"); do grep -q WebKitWebProcess "/proc/$p/cmdline" 2>/dev/null && { echo "$p"; return 0; }; done; return 1; }
wait_for 60 web_pid
check "WebKit's web process is killed" kill -9 "$(web_pid)"
before=$(breaches)
check "the dashboard's process is killed" kill -9 "$(dash_pid)"
check "the guard lives on" kill -0 "$pid"
more_breaches() { [ "$(breaches)" -gt "$before" ]; }
check "Fooocus is still supervised: the next runaway is stopped at its limit and recorded" wait_for 150 more_breaches
check "the tray still follows the state" bash -c 'python3 tests/app/tray.py status | grep -q "^Fooocus Guard: "'
python3 tests/app/tray.py click "Open dashboard"
check "the dashboard opens again after its process was killed" wait_for 60 xdotool search --name '^Fooocus Guard$'
for w in $(xdotool search --name '^Fooocus Guard$'); do python3 tests/app/close_window.py "$w"; done
wait_for 30 no_window
check "Quit from the tray menu" python3 tests/app/tray.py click Quit
gone() { ! kill -0 "$pid" 2>/dev/null; }
check "the app exits" wait_for 30 gone
sim_gone() { ! pgrep -f "$tmp/data/demo" >/dev/null; }
check "no Fooocus process outlives the app" wait_for 10 sim_gone
if [ "$failed" -gt 0 ]; then
  echo "--- app log"; tail -n 40 "$tmp/app.log"; echo "--- dunst"; dunstctl history 2>/dev/null | head -c 2000; echo
fi
kill "$pid" 2>/dev/null; pkill -P $$ 2>/dev/null
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
