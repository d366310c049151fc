#!/usr/bin/env bash
# `make test`: install what is missing, lint, then run the suite twice —
# every test on SQLite (the embedded default), and every database-touching
# test again on a real PostgreSQL: the one in DATABASE_URL if it answers,
# otherwise a private throw-away cluster (Debian's pg_virtualenv; initdb runs
# as the postgres user, so this works as root too).
# Extra arguments go to pytest, e.g. `make test ARGS="-k booking -x"`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
PY=.venv/bin/python
export PYTHONDONTWRITEBYTECODE=1
# The suite tests the development settings (pyproject.toml's pytest options set
# this too); the production ones are checked below and in tests/test_settings_production.py.
export DEBUG=true
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium || true)}"

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -40; echo "ruff format: run 'make lint'"; exit 1; }
$PY manage.py makemigrations --check --dry-run >/dev/null || { echo "models and migrations differ: run makemigrations"; exit 1; }

echo "== production settings (docs/deploy.env.example, DEBUG unset)"
deploy_var="$(mktemp -d)"
(
    set -a
    . docs/deploy.env.example
    set +a
    unset DEBUG
    SECRET_KEY="$($PY -c 'import secrets; print(secrets.token_urlsafe(50))')"
    FABLAB_VAR_DIR="$deploy_var"  # not /var/lib/fablab on a developer's machine
    $PY manage.py check --deploy --fail-level WARNING
) || { rm -rf "$deploy_var"; echo "the documented production settings fail manage.py check --deploy"; exit 1; }
rm -rf "$deploy_var"

PG_URL="${DATABASE_URL:-}"
unset DATABASE_URL

echo "== tests on SQLite"
rc=0
$PY -m pytest "$@" || rc=$?
[ $rc -eq 0 ] || exit $rc

echo "== database tests on PostgreSQL"
pg_reachable() {
    $PY - "$1" <<'PYEOF'
import sys, dj_database_url, psycopg
cfg = dj_database_url.parse(sys.argv[1])
try:
    psycopg.connect(host=cfg["HOST"] or None, port=cfg["PORT"] or None, user=cfg["USER"] or None,
                    password=cfg["PASSWORD"] or None, dbname=cfg["NAME"] or "postgres", connect_timeout=5).close()
except Exception as exc:
    print(f"PostgreSQL at DATABASE_URL not reachable: {exc}", file=sys.stderr)
    sys.exit(1)
PYEOF
}
if [ -n "$PG_URL" ] && pg_reachable "$PG_URL"; then
    DATABASE_URL="$PG_URL" $PY -m pytest -m "django_db or postgres" "$@"
else
    echo "starting a private PostgreSQL cluster (pg_virtualenv)"
    pg_virtualenv -t -o fsync=off -o full_page_writes=off sh -c \
        'DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE" "$0" -m pytest -m "django_db or postgres" "$@"' \
        "$PY" "$@"
fi
