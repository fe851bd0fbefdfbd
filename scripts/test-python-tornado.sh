#!/usr/bin/env bash
# The Tornado drop-in (polysocket.tornado) and the Python client
# (polysocket.connect): builds the package into a venv and runs
# python/tests/tornado with pytest, which includes Tornado's own websocket
# test module run against the drop-in, older-draft clients against a
# handler in a Tornado application, and interop with websockets and
# websocket-client; then the Autobahn|Testsuite CI subset (scripts/autobahn.sh)
# against the drop-in server (a plain Tornado application), and against the
# drop-in client and polysocket.connect (the suite's fuzzing server).
#
# Installs what a fresh Debian 12 lacks, idempotently: python3-venv (apt),
# a venv in target/python-venv-tornado (python/tests/requirements-tornado.txt),
# then the package from ./python (release build through maturin).
#
#   extra arguments go to pytest, e.g. scripts/test-python-tornado.sh -k drafts
#   POLYSOCKET_SKIP_AUTOBAHN=1   pytest only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

. scripts/lib/setup.sh
setup_init python-tornado

python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv

VENV="$ROOT/target/python-venv-tornado"
ensure_venv "$VENV" -r python/tests/requirements-tornado.txt

echo "== building and installing ./python into $VENV"
# Not editable: the tests import the installed wheel, as users would.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
    ./python >>"$SETUP_LOG" 2>&1 || setup_failed

echo "== pytest python/tests/tornado"
status=0
# From the tests' folder, so that `polysocket` is the installed package,
# not the source tree (which holds no compiled module).
(cd "$ROOT/python/tests/tornado" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" .) \
    || status=1

if [ "${POLYSOCKET_SKIP_AUTOBAHN:-}" != 1 ]; then
    PEER="$VENV/bin/python $ROOT/python/tests/tornado/autobahn_peer.py"
    echo "== Autobahn CI subset: the drop-in server"
    POLYSOCKET_ECHO_CMD="$PEER server --port {port}" scripts/autobahn.sh || status=1
    for impl in tornado polysocket; do
        echo "== Autobahn CI subset: the $impl client"
        AB_TARGET=client AB_AGENT="$impl-client" POLYSOCKET_AB_CLIENT_CMD="$PEER client $impl {url} {agent}" \
            scripts/autobahn.sh || status=1
    done
fi
exit $status
