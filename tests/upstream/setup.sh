#!/usr/bin/env bash
# The venvs the upstream tests run Fooocus in (idempotent, PyPI only): one per Gradio version that
# Fooocus pins. tests/upstream/.venv-gradio-3.39 and .venv-gradio-3.41.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for g in 3.39 3.41; do
  venv="$here/.venv-gradio-$g"
  req="$here/requirements-gradio-$g.txt"
  stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
done
