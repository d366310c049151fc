#!/usr/bin/env bash
# Make the project runnable on a fresh Debian/Ubuntu machine: system packages
# that are missing, a virtualenv in .venv, and the pinned Python packages.
# Idempotent and quiet when everything is already there.
#   scripts/bootstrap.sh            runtime only (make run)
#   scripts/bootstrap.sh dev        plus test tools, PostgreSQL, Chromium (make test)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
PY="${PYTHON:-python3}"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
want() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }

if ! have "$PY"; then want python3; fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then want python3-venv; fi
have msgfmt || want gettext
# The servers `make run` starts privately (issue: device hub) and the tests use.
[ -x /usr/sbin/mosquitto ] || want mosquitto
have openssl || want openssl
have mosquitto_pub || want mosquitto-clients
have influxd || want influxdb
have redis-server || want redis-server
if [ "$MODE" = dev ]; then
    have pg_virtualenv || want postgresql-common
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want postgresql
    have chromium || want chromium
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing system packages: ${need_pkgs[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "bootstrap: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Install the servers without starting system-wide instances: the project
    # starts its own, on its own ports, with its data under var/.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PY" -m venv .venv
fi
req=requirements.txt
[ "$MODE" = dev ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt "$req" | sha256sum | cut -c1-16)-$MODE"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing Python packages from $req"
    .venv/bin/pip install -q --disable-pip-version-check -r "$req"
    touch "$stamp"
fi
