#!/usr/bin/env bash
# `make bench`: every benchmark, printed as markdown tables (copied into docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
PY=.venv/bin/python
# The figures in docs/benchmarks.md were measured with the development settings
# (DEBUG was on by default then); bench_board.py runs its web server with DEBUG off.
export DEBUG=true
echo "# Benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
env -u DATABASE_URL $PY scripts/bench_booking.py
pg_virtualenv -t -o fsync=off sh -c 'DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE" "$0" scripts/bench_booking.py' "$PY"
$PY scripts/bench_bridge.py
# The hub (1 and 2 workers) then its peer, Node-RED (pinned, installed under var/bench/ on the
# first run): 50,000 queued QoS 1 messages each, timed from the process start.
$PY scripts/bench_hub.py --messages 50000 --workers 1,2 --peer node-red
$PY scripts/bench_board.py --machines 200,20 --duration 60
# Bookings meet machines (issue 9): check-in → `enable` acknowledged through a real hub, bridge and
# plugs, one scheduler pass with 200 machines and 5,000 bookings, attribution per session; on SQLite,
# then on a throw-away PostgreSQL (each script makes and drops its own database there).
env -u DATABASE_URL $PY scripts/bench_checkin.py
env -u DATABASE_URL $PY scripts/bench_attribution.py
pg_virtualenv -t -o fsync=off sh -c 'export DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"; "$0" scripts/bench_checkin.py && "$0" scripts/bench_attribution.py' "$PY"
# Programme reports (issue 12): the one-year network report over 200 machines and 2,000 members' rollups.
env -u DATABASE_URL $PY scripts/bench_reports.py
pg_virtualenv -t -o fsync=off sh -c 'DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE" "$0" scripts/bench_reports.py' "$PY"
