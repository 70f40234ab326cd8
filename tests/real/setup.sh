#!/usr/bin/env bash
# Builds, once, what the real suite runs (tests/real/README.md): a venv with real torch 2.1.0 (CPU)
# and Fooocus 2.5.5's own requirements_versions.txt, the unpacked 2.5.5 source, and the models
# (a Vega-shaped SDXL checkpoint, the GPT-2 expansion, the VAE approximations) generated with
# Fooocus's own classes and random weights. Cached in $FG_REAL_CACHE (default
# ~/.cache/fooocus-guard/real); each part carries a stamp naming what it was built from, so a warm
# run does nothing. Each part is built in a temporary folder and renamed into place when complete:
# an interrupted run leaves nothing that looks built. Cold: about 5-10 min and 6 GB (venv) plus
# 1-2 min and 2 GB (models); warm: under a second. Prints the time and size of each step.
# Environment: FG_REAL_CACHE, FG_REAL_PYTHON (a python 3.10 or 3.11), FOOOCUS_UPSTREAM (the folder
# with fooocus-2.5.5.tar.gz, default ../shared/upstream beside the repository).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${FG_REAL_CACHE:-$HOME/.cache/fooocus-guard/real}
upstream=${FOOOCUS_UPSTREAM:-$repo/../shared/upstream}
tarball=$upstream/fooocus-2.5.5.tar.gz
torch_version=2.1.0 torchvision_version=0.16.0
# What requirements_versions.txt leaves open and today's releases break: gradio 3.41.2 (pinned)
# renders its page through starlette's TemplateResponse, whose signature changed under it (the
# page fails with "unhashable type: 'dict'" and launch() with "When localhost is not accessible").
# Held at the versions tests/upstream/requirements-gradio-3.41.txt runs 3.41.2 with.
held=(fastapi==0.112.2 pydantic==2.8.2)
mkdir -p "$cache"
# One build at a time per cache: a second run waits for the first, then finds its stamps.
exec 9>"$cache/.lock"
flock 9
[ -f "$tarball" ] || { echo "setup: no $tarball (set FOOOCUS_UPSTREAM)" >&2; exit 2; }

size() { du -sh "$1" 2>/dev/null | cut -f1; }
t0=$(date +%s)

# --- Python: 3.10 as Fooocus asks, else 3.11 (torch 2.1.0 has wheels for nothing later). -------
pick_python() {
  local c
  for c in ${FG_REAL_PYTHON:-} python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 \
           python3.11 "$HOME"/.pyenv/versions/3.11*/bin/python3.11 /usr/bin/python3.11 python3; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] in ((3, 10), (3, 11))' 2>/dev/null; then
      "$c" -c 'import sys; print(sys.executable)'; return 0
    fi
  done
  echo "setup: no python 3.10 or 3.11 (torch $torch_version has no wheel for later ones); set FG_REAL_PYTHON" >&2
  return 1
}

# --- 1. The venv. ---------------------------------------------------------------------------------
venv=$cache/venv
req=$(tar -xzOf "$tarball" fooocus-2.5.5/requirements_versions.txt)
req_sum=$(printf '%s' "$req" | sha256sum | cut -c1-16)
# The stamp names what the venv holds; the index torch came from is recorded in it but is not part
# of the comparison (either build is CPU-capable).
want_stamp="torch=$torch_version torchvision=$torchvision_version requirements=fooocus-2.5.5:$req_sum held=${held[*]}"
if [ -f "$venv/.fg-stamp" ] && [ "$(head -n1 "$venv/.fg-stamp")" = "$want_stamp" ]; then
  echo "setup: venv ready ($venv, $(size "$venv"))"
else
  s=$(date +%s)
  py=$(pick_python)
  tmp=$cache/venv.building
  rm -rf "$tmp" "$venv"
  "$py" -m venv "$tmp"
  # torch's own CPU index when it is reachable (the CPU wheel, 0.2 GB); else PyPI's default linux
  # wheel, which also pulls NVIDIA's CUDA libraries (about 2.7 GB) but runs on CPU all the same.
  if curl -fsS -o /dev/null --max-time 15 https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null; then
    index=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
    from="download.pytorch.org/whl/cpu"
  else
    index=() from="pypi.org (default linux wheel, with CUDA libraries)"
  fi
  echo "setup: venv: torch $torch_version from $from, python $("$py" -c 'import platform; print(platform.python_version())')"
  pip=("$tmp/bin/python" -m pip install -q --disable-pip-version-check --no-input)
  "${pip[@]}" "${index[@]}" "torch==$torch_version" "torchvision==$torchvision_version"
  # The requirements, with torch held where it is (timm wants torchvision; an unpinned one would
  # bring a newer torch).
  printf '%s\n' "$req" > "$tmp/requirements_versions.txt"
  printf 'torch==%s\ntorchvision==%s\n' "$torch_version" "$torchvision_version" > "$tmp/constraints.txt"
  printf '%s\n' "${held[@]}" >> "$tmp/constraints.txt"
  "${pip[@]}" -r "$tmp/requirements_versions.txt" "${held[@]}" -c "$tmp/constraints.txt"
  "$tmp/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('$torch_version'), torch.__version__"
  # A venv's scripts name its folder: point them at the final one before the rename.
  grep -rlI --null "$tmp" "$tmp/bin" | xargs -0 -r sed -i "s|$tmp|$venv|g"
  sed -i "s|$tmp|$venv|g" "$tmp/pyvenv.cfg" 2>/dev/null || true
  printf '%s\nfrom=%s\npython=%s\nbuilt=%s\n' "$want_stamp" "$from" "$py" "$(date -u +%FT%TZ)" > "$tmp/.fg-stamp"
  mv "$tmp" "$venv"
  echo "setup: venv built in $(( $(date +%s) - s )) s, $(size "$venv") ($venv)"
fi
py=$venv/bin/python

# --- 2. The Fooocus 2.5.5 source, unmodified. -----------------------------------------------------
tree=$cache/fooocus-2.5.5
tar_sum=$(sha256sum "$tarball" | cut -c1-16)
if [ -f "$tree/.fg-stamp" ] && [ "$(cat "$tree/.fg-stamp")" = "fooocus-2.5.5.tar.gz:$tar_sum" ]; then
  echo "setup: source ready ($tree)"
else
  s=$(date +%s)
  tmp=$cache/src.building
  rm -rf "$tmp" "$tree"; mkdir -p "$tmp"
  tar -xzf "$tarball" -C "$tmp"
  echo "fooocus-2.5.5.tar.gz:$tar_sum" > "$tmp/fooocus-2.5.5/.fg-stamp"
  mv "$tmp/fooocus-2.5.5" "$tree"; rm -rf "$tmp"
  echo "setup: source unpacked in $(( $(date +%s) - s )) s, $(size "$tree") ($tree)"
fi

# --- 3. The models, generated with the tree's own classes. ----------------------------------------
models=$cache/models
gen_sum=$(sha256sum "$here/make_models.py" | cut -c1-16)
want_models="make_models.py:$gen_sum fooocus-2.5.5.tar.gz:$tar_sum torch=$torch_version"
if [ -f "$models/.fg-stamp" ] && [ "$(cat "$models/.fg-stamp")" = "$want_models" ]; then
  echo "setup: models ready ($models, $(size "$models"))"
else
  s=$(date +%s)
  tmp=$cache/models.building
  rm -rf "$tmp" "$models"; mkdir -p "$tmp"
  "$py" "$here/make_models.py" --fooocus "$tree" --out "$tmp"
  echo "$want_models" > "$tmp/.fg-stamp"
  mv "$tmp" "$models"
  echo "setup: models generated in $(( $(date +%s) - s )) s, $(size "$models") ($models)"
fi
echo "setup: done in $(( $(date +%s) - t0 )) s ($cache, $(size "$cache"))"
