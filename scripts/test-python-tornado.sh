#!/usr/bin/env bash
# The Tornado drop-in (polysocket.tornado) and the Python client
# (polysocket.connect): builds the package into a venv and runs
# python/tests/tornado with pytest, which includes Tornado's own websocket
# test module run against the drop-in, older-draft clients against a
# handler in a Tornado application, and interop with websockets and
# websocket-client.
#
# Installs what a fresh Debian 12 lacks, idempotently: python3-venv (apt),
# a venv in target/python-venv-tornado (python/tests/requirements-tornado.txt),
# then the package from ./python (release build through maturin).
#
#   extra arguments go to pytest, e.g. scripts/test-python-tornado.sh -k drafts
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi
mkdir -p target
LOG="$ROOT/target/python-tornado-setup.log"
: >"$LOG"
fail_setup() { tail -n 30 "$LOG" >&2; exit 2; }

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test-python-tornado: python3-venv is missing (needs root and apt-get)" >&2
        exit 2
    fi
    echo "== installing python3-venv (apt)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q python3 python3-venv || { apt-get update -q &&
        apt-get install -y -q python3 python3-venv; }; } >>"$LOG" 2>&1 || fail_setup
fi

VENV="$ROOT/target/python-venv-tornado"
STAMP="$(cat python/tests/requirements-tornado.txt; python3 -c 'import sys; print(sys.version)')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$STAMP" ]; then
    echo "== creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >>"$LOG" 2>&1 || fail_setup
    "$VENV/bin/pip" install -q --disable-pip-version-check -U pip >>"$LOG" 2>&1 || fail_setup
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        -r python/tests/requirements-tornado.txt >>"$LOG" 2>&1 || fail_setup
    printf '%s' "$STAMP" >"$VENV/.stamp"
fi

echo "== building and installing ./python into $VENV"
# Not editable: the tests import the installed wheel, as users would.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
    ./python >>"$LOG" 2>&1 || fail_setup

echo "== pytest python/tests/tornado"
cd "$ROOT/python/tests/tornado"
# From the tests' folder, so that `polysocket` is the installed package,
# not the source tree (which holds no compiled module).
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" .
