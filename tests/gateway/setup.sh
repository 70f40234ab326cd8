#!/usr/bin/env bash
# A venv with Gradio 3.41.2 for the gateway's tests (idempotent): tests/gateway/.venv; and
# iproute2, whose `ip netns` gives the fail-closed test a network of its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/lib/debs.sh"
ensure_debs "gateway tests" iproute2
if [ ! -x "$here/.venv/bin/python" ] || ! "$here/.venv/bin/python" -c "import gradio, gradio_client" 2>/dev/null; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi
