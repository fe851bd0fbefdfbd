#!/usr/bin/env bash
# Cross-language interop tests: the echo server (POLYSOCKET_ECHO_CMD, a
# command template with {port}; default the tokio echo example) against
# Python websockets and websocket-client, Node ws, headless Chromium (and Firefox ESR over HTTP/2) and raw
# sockets (pytest, tests/), then the Autobahn|Testsuite CI subset
# (scripts/autobahn.sh).
#
# First installs what a fresh Debian 12 lacks, idempotently and quietly:
# python3-venv, nodejs/npm and chromium, firefox-esr, libnss3-tools (apt), a venv in target/interop-venv
# (tests/requirements.txt) and ws in tests/node (npm ci).
#
#   POLYSOCKET_SKIP_AUTOBAHN=1   pytest only
#   POLYSOCKET_SKIP_BROWSER=1    no browsers (neither installed nor tested)
#   extra arguments go to pytest, e.g. scripts/test-interop.sh -k raw
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)

. scripts/lib/setup.sh
setup_init interop

# --- system packages ---------------------------------------------------------
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
{ command -v node && command -v npm; } >/dev/null 2>&1 || apt_install nodejs npm
if [ "${POLYSOCKET_SKIP_BROWSER:-}" != 1 ] && { [ ! -x /usr/bin/chromium ] \
    || [ ! -x /usr/bin/firefox-esr ] || ! command -v certutil >/dev/null 2>&1; }; then
    apt_install chromium firefox-esr libnss3-tools
fi

# --- Python venv ---------------------------------------------------------------
VENV="$ROOT/target/interop-venv"
ensure_venv "$VENV" -r tests/requirements.txt
PY="$VENV/bin/python"

# --- Node ws ---------------------------------------------------------------------
NODE_STAMP="$(sha256sum tests/node/package-lock.json | cut -d' ' -f1) $(node --version)"
if [ "$(cat tests/node/node_modules/.stamp 2>/dev/null)" != "$NODE_STAMP" ]; then
    echo "== npm ci in tests/node"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >>"$SETUP_LOG" 2>&1) \
        || setup_failed
    printf '%s' "$NODE_STAMP" >tests/node/node_modules/.stamp
fi

# --- the echo server ---------------------------------------------------------------
if [ -z "${POLYSOCKET_ECHO_CMD:-}" ]; then
    echo "== cargo build --release -p polysocket --features runtime --example echo"
    cargo build --release -q -p polysocket --features runtime --example echo
else
    echo "== echo server: $POLYSOCKET_ECHO_CMD"
fi
echo "== setup done in $(( $(date +%s) - START )) s"

# --- pytest --------------------------------------------------------------------------
status=0
echo "== pytest tests/"
set +e
timeout --kill-after=10 600 "$PY" -m pytest tests/ --durations=5 "$@" 2>&1 \
    | tee target/interop/pytest.log
pytest_rc=${PIPESTATUS[0]}
set -e
pytest_line="$(grep -E '^=+ .*( passed| failed| error| skipped| no tests ran).* =+$' \
    target/interop/pytest.log | tail -n 1 || true)"
[ "$pytest_rc" = 0 ] || status=1

# --- Autobahn --------------------------------------------------------------------------
ab_line="autobahn: skipped (POLYSOCKET_SKIP_AUTOBAHN=1)"
if [ "${POLYSOCKET_SKIP_AUTOBAHN:-}" != 1 ]; then
    echo "== scripts/autobahn.sh (sections 1-10, 12.1, 13.1, 13.7)"
    set +e
    PYTHON="$PY" ./scripts/autobahn.sh 2>&1 | tee target/interop/autobahn.log
    ab_rc=${PIPESTATUS[0]}
    set -e
    ab_line="$(grep -E '^autobahn: (PASS|FAIL)' target/interop/autobahn.log | tail -n 1 || true)"
    [ -n "$ab_line" ] || ab_line="autobahn: did not complete (status $ab_rc)"
    [ "$ab_rc" = 0 ] || status=1
fi

echo "== interop done in $(( $(date +%s) - START )) s"
echo "$ab_line"
echo "${pytest_line:-pytest: no result line (status $pytest_rc)}"
exit $status
