#!/usr/bin/env bash
# `make run`: set everything up and start the demo. Safe to run again: it
# reuses the virtualenv, the database, the demo data and the servers' data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh run
# The demo is a development setup: debug pages, plain HTTP on loopback, a
# secret key generated into var/. DEBUG is off unless set (docs/deploy.md).
export DEBUG=true
mkdir -p var
.venv/bin/python manage.py check --fail-level ERROR >/dev/null
exec .venv/bin/python scripts/run_demo.py
