#!/usr/bin/env bash
# The Python package's tests: builds polysocket (release, via maturin) into a
# venv and runs pytest on python/tests/standalone against real sockets and
# real peers (websockets, websocket-client, raw sockets, headless Chromium).
#
# First installs what a fresh Debian 12 lacks, idempotently: python3-venv,
# openssl (TLS test certificate), redis-server (the cluster tests start
# their own), haproxy and nginx-light (test_proxies.py starts them in front
# of the server) and chromium (apt), the venv
# target/python-venv with python/tests/requirements.txt. The package is
# rebuilt every run (cargo's incremental build keeps it quick).
#
#   POLYSOCKET_SKIP_BROWSER=1   no Chromium (neither installed nor tested)
#   extra arguments go to pytest, e.g. scripts/test-python.sh -k limits
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init python

python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
command -v openssl >/dev/null 2>&1 || apt_install openssl
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
# The proxies test_proxies.py starts in front of the server.
[ -x /usr/sbin/haproxy ] || apt_install haproxy
[ -x /usr/sbin/nginx ] || apt_install nginx-light
if [ "${POLYSOCKET_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi

# promtool checks the metrics endpoint's output (test_metrics.py).
ensure_promtool

VENV="$PYTHON_VENV"  # target/python-venv (scripts/test-php.sh's Python node runs in it too)
python_package
# The Rust node of the cluster tests (python/tests/standalone/test_cluster.py).
echo "== building the Rust chat node (core/examples/chat_node.rs)"
cargo build -q -p polysocket --features cluster --example chat_node >>"$SETUP_LOG" 2>&1 \
    || setup_failed
export POLYSOCKET_CHAT_NODE="$ROOT/target/debug/examples/chat_node"
echo "== setup done in $(( $(date +%s) - START )) s"

echo "== pytest python/tests/standalone"
set +e
timeout --kill-after=10 900 "$VENV/bin/python" -m pytest python/tests/standalone -p no:cacheprovider \
    --durations=5 "$@" 2>&1 | tee target/python/pytest.log
rc=${PIPESTATUS[0]}
set -e
grep -E '[0-9]+ (passed|failed|errors?)|no tests ran' target/python/pytest.log \
    | tail -n 1 || echo "pytest: no result line (status $rc)"
[ "$rc" = 0 ] || exit "$rc"

# The repository's interop suite (websockets, websocket-client, Node ws,
# Chromium, raw sockets, 10k connections) and the Autobahn CI subset against
# `python -m polysocket echo` (the echo handler in Python, inline on
# polysocket's loop).
echo "== interop suite + Autobahn against python -m polysocket echo"
POLYSOCKET_ECHO_CMD="$VENV/bin/python -m polysocket echo --host 127.0.0.1 --port {port}" \
    ./scripts/test-interop.sh
echo "== python tests done in $(( $(date +%s) - START )) s"
