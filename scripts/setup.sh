#!/usr/bin/env bash
# Installs what building and testing Fooocus Guard needs on a fresh Debian/Ubuntu machine.
# Idempotent: quick when everything is already there. Usage: scripts/setup.sh [app|test]
set -euo pipefail
what=${1:-test}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib/debs.sh"

# Debian packages: the Rust build (C toolchain, pkg-config), the Tauri app (WebKitGTK, the tray's
# appindicator), and for tests a real X server, D-Bus session, notification daemon and tray host.
pkgs=(build-essential pkg-config python3 python3-venv curl ca-certificates
      libwebkit2gtk-4.1-dev libayatana-appindicator3-dev libgtk-3-dev librsvg2-dev libssl-dev
      libxdo-dev xdg-utils)   # xdg-utils: xdg-open, how the guard opens the user's browser
if [ "$what" = test ]; then
  pkgs+=(xvfb xauth dbus dbus-x11 webkit2gtk-driver xdotool imagemagick dunst libnotify-bin
         haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils chromium procps psmisc
         libglib2.0-bin
         mmdebstrap eatmydata)   # the .deb installed into a clean Debian root (50-package.sh)
fi
ensure_debs setup "${pkgs[@]}"

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
command -v npm >/dev/null || ensure_debs setup nodejs npm

# The front end must exist before any cargo step that builds the Tauri app.
if [ -f "$here/ui/package.json" ]; then
  (cd "$here/ui" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
fi
