#!/usr/bin/env bash
# The tray app end to end, in a real X server (Xvfb) and a private D-Bus session.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec dbus-run-session -- xvfb-run -a -s "-screen 0 1280x900x24" bash tests/app/session.sh
