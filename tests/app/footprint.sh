#!/usr/bin/env bash
# The tray app's memory footprint (issue 16): PSS and RSS of its processes in the tray, with the
# dashboard open, after closing it and after 10 open/close cycles, against the targets.
#   tests/app/footprint.sh [APP_BINARY] [--strict] [--cycles N] [--mappings N] [--hold S]
# Default binary: target/dist/fooocus-guard, the build the .deb ships (the figures the README
# quotes come from it: `cargo build --profile dist -p fooocus-guard --features custom-protocol`).
set -euo pipefail
cd "$(dirname "$0")/../.."
app=target/dist/fooocus-guard
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then app=$1; shift; fi
[ -x "$app" ] || { echo "footprint: no $app: build it first (see the comment at the top of $0)" >&2; exit 2; }
app=$(cd "$(dirname "$app")" && pwd)/$(basename "$app")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export FOOOCUS_GUARD_CONFIG_DIR=$tmp/config FOOOCUS_GUARD_DATA_DIR=$tmp/data XDG_CONFIG_HOME=$tmp/xdg FG_FOOTPRINT_TMP=$tmp
exec dbus-run-session -- xvfb-run -a -s "-screen 0 1280x900x24" bash -c '
  dunst >/dev/null 2>&1 &
  status-notifier-watcher >/dev/null 2>&1 &
  for _ in $(seq 50); do  # the host registers with the watcher: it must be up first
    gdbus introspect --session --dest org.kde.StatusNotifierWatcher --object-path /StatusNotifierWatcher >/dev/null 2>&1 && break
    sleep 0.1
  done
  gtk-sni-tray-standalone >/dev/null 2>&1 &
  python3 tests/app/footprint.py "$@"; rc=$?
  kill $(jobs -p) 2>/dev/null
  exit $rc' footprint "$app" "$@"
