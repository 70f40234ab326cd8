#!/usr/bin/env bash
# The tray app for real: built, started in demo mode under Xvfb with a D-Bus session, a
# notification daemon and a tray host; then driven through tauri-driver (WebDriver).
# Arguments: the checks to run, or none for all of them: tray (the tray, notifications, the
# dashboard's process and memory: tests/app/session.sh), dashboard (the page through WebDriver:
# tests/app/webdriver.py), first-install (a fresh app installs Fooocus: tests/app/install.py).
# Its unit tests are in the rust suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
known=(tray dashboard first-install)
for c in "$@"; do
  [[ " ${known[*]} " == *" $c "* ]] || { echo "unknown check $c: the app's checks are ${known[*]}" >&2; exit 2; }
done
checks=("$@")
want() { [ ${#checks[@]} -eq 0 ] || [[ " ${checks[*]} " == *" $1 "* ]]; }
cargo build -q -p fooocus-guard
app=$(pwd)/target/debug/fooocus-guard

if want tray; then
  bash tests/app/e2e.sh
fi

if want dashboard || want first-install; then
  command -v tauri-driver >/dev/null || cargo install tauri-driver --version '^2' --locked -q
fi

if want dashboard; then
  tmp=$(mktemp -d)
  # The guard runs (demo mode, in the tray); tauri-driver starts its dashboard, which talks to it.
  FOOOCUS_GUARD_CONFIG_DIR=$tmp/config FOOOCUS_GUARD_DATA_DIR=$tmp/data \
    dbus-run-session -- xvfb-run -a -s "-screen 0 1280x900x24" bash -c "
      '$app' --demo --hidden >$tmp/guard.log 2>&1 &
      tauri-driver --port 4444 >$tmp/driver.log 2>&1 &
      for _ in \$(seq 150); do [ -S $tmp/data/ipc/guard.sock ] && break; sleep 0.2; done
      python3 tests/app/webdriver.py '$app-dashboard'; rc=\$?
      # A failure here is often the driver's: show its side of the story.
      [ \$rc -eq 0 ] || { echo '--- tauri-driver log'; tail -n 40 $tmp/driver.log; echo '--- guard log'; tail -n 20 $tmp/guard.log; }
      kill %1 %2 2>/dev/null; exit \$rc"
fi

if want first-install; then
  # The app installs Fooocus on its first run (issue 15): a fresh guard with no install is given
  # a package "already downloaded" (the pinned 2.5.5 snapshot), installs it offline and starts it.
  bash tests/upstream/setup.sh  # the real Gradio the installed Fooocus runs with
  inst=$(mktemp -d)
  mkdir -p "$inst/t"
  python3 tests/app/install.py prepare "$inst/fixture"
  FOOOCUS_GUARD_CONFIG_DIR=$inst/config FOOOCUS_GUARD_DATA_DIR=$inst/data \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=$inst/fixture/wheels GRADIO_ANALYTICS_ENABLED=False BROWSER=true \
    dbus-run-session -- xvfb-run -a -s "-screen 0 1280x900x24" bash -c "
      TMPDIR=$inst/t '$app' --hidden >$inst/guard.log 2>&1 &
      tauri-driver --port 4444 >$inst/driver.log 2>&1 &
      for _ in \$(seq 150); do [ -S $inst/data/ipc/guard.sock ] && break; sleep 0.2; done
      python3 tests/app/install.py '$app-dashboard' '$inst/fixture'; rc=\$?
      [ \$rc -eq 0 ] || { echo '--- tauri-driver log'; tail -n 40 $inst/driver.log; echo '--- guard log'; tail -n 60 $inst/guard.log; }
      kill %1 %2 2>/dev/null; exit \$rc"
fi
