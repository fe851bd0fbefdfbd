#!/usr/bin/env bash
# The ASGI protocol class (polysocket.asgi.WebSocketProtocol) under real
# uvicorn: python/tests/asgi with pytest (uvicorn's own WebSocket test module
# run against the class, every draft through uvicorn's three HTTP
# implementations, the FastAPI / Starlette / Django Channels examples),
# then the repository's interop suite and the Autobahn|Testsuite CI subset
# against examples/asgi/echo.py under uvicorn with the class.
#
# Installs what it lacks, idempotently: a venv in target/python-venv-asgi
# (python/tests/requirements-asgi.txt), the polysocket wheel built by
# scripts/lib/setup.sh (rebuilt only when its sources changed).
#
#   extra arguments go to pytest, e.g. scripts/test-python-asgi.sh -k drafts
#   POLYSOCKET_SKIP_INTEROP=1   pytest only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)

. scripts/lib/setup.sh
setup_init python-asgi

python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv

VENV="$ROOT/target/python-venv-asgi"
ensure_venv "$VENV" -r python/tests/requirements-asgi.txt
python_package_current || python_package
echo "== installing the polysocket wheel into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
    target/python/wheels/*.whl >>"$SETUP_LOG" 2>&1 || setup_failed
echo "== setup done in $(( $(date +%s) - START )) s"

echo "== pytest python/tests/asgi"
# From the tests' folder, so that `polysocket` is the installed package.
(cd python/tests/asgi && timeout --kill-after=10 900 "$VENV/bin/python" -m pytest -q \
    -p no:cacheprovider --durations=5 "$@" .)

if [ "${POLYSOCKET_SKIP_INTEROP:-}" != 1 ]; then
    echo "== interop suite + Autobahn against examples/asgi/echo.py under uvicorn"
    POLYSOCKET_ECHO_CMD="$VENV/bin/python -m uvicorn examples.asgi.echo:app --host 127.0.0.1 --port {port} --ws polysocket.asgi:WebSocketProtocol --ws-max-size 67108864 --log-level warning" \
        ./scripts/test-interop.sh
fi
echo "== ASGI tests done in $(( $(date +%s) - START )) s"
