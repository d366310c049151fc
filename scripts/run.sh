#!/usr/bin/env bash
# `make run`: set everything up and start the demo. Safe to run again: it
# reuses the virtualenv, the database and the demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh run
PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p var
$PY manage.py check --fail-level ERROR >/dev/null
$PY manage.py migrate --no-input -v 0
$PY manage.py seed_demo
$PY manage.py collectstatic --no-input -v 0
cat <<MSG

  FabLab platform demo: http://$HOST:$PORT/
  API docs:            http://$HOST:$PORT/api/docs/
  Admin:               http://$HOST:$PORT/admin/

  Demo logins (password demo1234 for all):
    maker    certified on every training
    newbie   no certification yet
    manager  lab manager of both labs (also admin)
    officer  programme officer

  Stop with Ctrl-C.
MSG
exec .venv/bin/uvicorn fablab.asgi:application --host "$HOST" --port "$PORT" --log-level warning
