#!/usr/bin/env bash
# `make bench`: every benchmark, printed as markdown tables (copied into docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
PY=.venv/bin/python
echo "# Benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
env -u DATABASE_URL $PY scripts/bench_booking.py
pg_virtualenv -t -o fsync=off sh -c 'DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE" "$0" scripts/bench_booking.py' "$PY"
if [ -f scripts/bench_bridge.py ]; then
    $PY scripts/bench_bridge.py
fi
