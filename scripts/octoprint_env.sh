#!/usr/bin/env bash
# Build OctoPrint (the exact version pinned in firmware_bridge/simulators/octoprint_server.py)
# in its own virtualenv, once; later calls return at once. The tests and the demo's printers
# run this OctoPrint with its Virtual Printer.
#   scripts/octoprint_env.sh              -> var/octoprint-venv
#   scripts/octoprint_env.sh PATH         -> another location
# Needs python3 with the venv module, and PyPI (about 45 s and 200 MB the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-var/octoprint-venv}"
# The builder needs the standard library and requests: the project's .venv (bootstrap.sh) has both.
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec "$PY" -m firmware_bridge.simulators.octoprint_server --venv "$VENV"
