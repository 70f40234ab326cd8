#!/usr/bin/env bash
# Installs what is missing, builds, and runs Fooocus Guard.
#   scripts/run.sh                      the tray app in demo mode (the Fooocus simulator), or the
#                                       headless CLI supervising the simulator when there is no display
#   scripts/run.sh --install ~/Fooocus  the CLI supervising your install (any `run` options follow)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh" app

if [ $# -gt 0 ]; then
  cargo build -q -p guard-cli
  exec target/debug/fooocus-guard-cli run "$@"
fi

if [ -f src-tauri/Cargo.toml ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  (cd ui && npm run -s build)
  cargo build -q -p fooocus-guard
  exec target/debug/fooocus-guard --demo
fi

# No display: the CLI supervises the simulator, with a short timeout so a limit fires soon.
cargo build -q -p guard-cli
demo=$(mktemp -d)
cat > "$demo/scenario.json" <<'JSON'
{"startup_seconds": 0.2,
 "tasks": [{"delay": 2, "images": 2, "steps": 10, "step_seconds": 0.3, "session_hash": "demo"},
           {"delay": 3, "images": 1, "steps": 1000, "step_seconds": 0.3, "session_hash": "demo"}]}
JSON
python3 tests/sim/fooocus_sim.py make-install "$demo/Fooocus" --sim-version 2.1 --layout venv \
  --scenario "$demo/scenario.json" >/dev/null
echo "Demo: supervising the Fooocus simulator in $demo/Fooocus with a 20 s generation timeout (Ctrl-C stops)" >&2
exec target/debug/fooocus-guard-cli run --install "$demo/Fooocus" --timeout 20s --memory 2G --events -
