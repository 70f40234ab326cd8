# Sourced by the setup scripts. `ensure_debs LABEL PKG...` installs the Debian packages that are
# missing (quick when all are there).
ensure_debs() {
  local label=$1; shift
  local sudo="" missing=() p
  [ "$(id -u)" = 0 ] || sudo=sudo
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "$label: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
