#!/usr/bin/env bash
# Installs what building and testing Fooocus Guard needs on a fresh Debian/Ubuntu machine.
# Idempotent: quick when everything is already there. Usage: scripts/setup.sh [app|test]
set -euo pipefail
what=${1:-test}
here=$(cd "$(dirname "$0")/.." && pwd)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages: the Rust build (C toolchain, pkg-config), the Tauri app (WebKitGTK, the tray's
# appindicator), and for tests a real X server, D-Bus session, notification daemon and tray host.
pkgs=(build-essential pkg-config python3 python3-venv curl ca-certificates
      libwebkit2gtk-4.1-dev libayatana-appindicator3-dev libgtk-3-dev librsvg2-dev libssl-dev
      libxdo-dev)
if [ "$what" = test ]; then
  pkgs+=(xvfb xauth dbus dbus-x11 webkit2gtk-driver xdotool imagemagick dunst libnotify-bin
         haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils chromium procps psmisc
         libglib2.0-bin)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
if ! command -v npm >/dev/null; then
  echo "setup: installing Node.js and npm"
  $SUDO apt-get install -y -qq nodejs npm
fi

# The front end must exist before any cargo step that builds the Tauri app.
if [ -f "$here/ui/package.json" ]; then
  (cd "$here/ui" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
fi
