#!/usr/bin/env bash
# The PHP extension: install what a fresh Debian 12 lacks (idempotently),
# build it, run its tests, then the repository's interop suite against the
# PHP echo daemon (pytest part and the Autobahn CI subset).
#
#   scripts/test-php.sh                   # everything
#   POLYSOCKET_SKIP_INTEROP=1 ...         # only php/tests
#   POLYSOCKET_SKIP_AUTOBAHN=1 ...        # no Autobahn subset (the interop pytest part only)
#   POLYSOCKET_SKIP_BROWSER=1 ...         # no Chromium (neither installed nor tested)
#   extra arguments go to pytest for php/tests, e.g. scripts/test-php.sh -k limits
#
# apt (only when missing): php8.2-cli php8.2-dev libclang-dev, python3-venv,
# redis-server (test_cluster.py, test_three_faces.py), chromium. The Python
# node of test_three_faces.py runs in target/python-venv, the venv of
# scripts/test-python.sh, built here too when it is missing or stale. The extension is built with `cargo build --release -p
# polysocket-php` and copied to target/release/polysocket.so; PATH is the
# same for every cargo call (ext-php-rs re-runs bindgen when it changes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init php

# --- system packages -------------------------------------------------------------
missing=()
command -v php >/dev/null 2>&1 || missing+=(php8.2-cli)
command -v php-config >/dev/null 2>&1 || missing+=(php8.2-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${POLYSOCKET_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
# promtool checks the metrics endpoint's output (test_metrics.py).
ensure_promtool

# --- Python venv for the clients -------------------------------------------------
VENV="$ROOT/target/php-venv"
ensure_venv "$VENV" -r tests/requirements.txt

# --- the Python node of test_three_faces.py -------------------------------------------
# It runs in the venv with the polysocket package that scripts/test-python.sh
# builds (scripts/test.sh runs that first); built here only when that is
# missing or older than its sources, so CI does not build it twice.
if python_package_current; then
    echo "== polysocket in target/python-venv is current (scripts/test-python.sh built it)"
else
    python_package
fi
export POLYSOCKET_PYTHON="$PYTHON_VENV/bin/python"

# --- build ---------------------------------------------------------------------------
echo "== cargo build --release -p polysocket-php"
cargo build --release -q -p polysocket-php
TARGET=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
EXT="$TARGET/release/polysocket.so"
cp "$TARGET/release/libpolysocket_php.so" "$EXT"
export POLYSOCKET_PHP_EXT="$EXT"
# The Rust node of test_cluster.py's three-node cluster.
echo "== cargo build --release -p polysocket --features cluster --example chat_node"
cargo build --release -q -p polysocket --features cluster --example chat_node
export POLYSOCKET_CHAT_NODE="$TARGET/release/examples/chat_node"
echo "== cargo test --release -p polysocket-php"
cargo test --release -q -p polysocket-php >target/php/cargo-test.log 2>&1 \
    || { tail -n 30 target/php/cargo-test.log >&2; echo "test-php: cargo test failed" >&2; exit 1; }
grep -E "^test result" target/php/cargo-test.log || true
echo "== setup and build done in $(( $(date +%s) - START )) s"

# --- php/tests -------------------------------------------------------------------------
status=0
echo "== pytest php/tests"
set +e
timeout --kill-after=10 900 "$VENV/bin/python" -m pytest -c php/tests/pytest.ini php/tests \
    --durations=5 "$@" 2>&1 | tee target/php/pytest.log
rc=${PIPESTATUS[0]}
set -e
php_line="$(grep -E '^=+ .*( passed| failed| error| skipped).* =+$' target/php/pytest.log | tail -n 1 || true)"
[ "$rc" = 0 ] || status=1

# --- the interop suite against the PHP echo daemon ------------------------------------
interop_line="interop: skipped (POLYSOCKET_SKIP_INTEROP=1)"
if [ "${POLYSOCKET_SKIP_INTEROP:-}" != 1 ]; then
    echo "== scripts/test-interop.sh against examples/php/echo.php"
    set +e
    POLYSOCKET_SKIP_AUTOBAHN="${POLYSOCKET_SKIP_AUTOBAHN:-}" \
    POLYSOCKET_ECHO_CMD="php -n -d extension=$EXT examples/php/echo.php --host 127.0.0.1 --port {port}" \
        ./scripts/test-interop.sh 2>&1 | tee target/php/interop.log
    irc=${PIPESTATUS[0]}
    set -e
    interop_line="interop: $(grep -E '^(autobahn: |=+ .*(passed|failed))' target/php/interop.log | tail -n 2 | tr '\n' ' ')"
    [ "$irc" = 0 ] || status=1
fi

echo "== php done in $(( $(date +%s) - START )) s"
echo "php/tests: ${php_line:-no result line (status $rc)}"
echo "$interop_line"
exit $status
