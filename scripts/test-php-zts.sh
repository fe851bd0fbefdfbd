#!/usr/bin/env bash
# The extension on a thread-safe (ZTS) PHP, the build XAMPP and WAMP ship:
# PHP 8.2 with --enable-zts from Debian's source (scripts/build-php-zts.sh,
# cached outside the clone), the extension built against it, phpinfo
# checked to say so, then php/tests on it.
#
#   scripts/test-php-zts.sh              # after scripts/test-php.sh (its venv, chat node, Python node)
#   extra arguments go to pytest, e.g. scripts/test-php-zts.sh -k limits
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init php-zts-test

# promtool for test_metrics.py (unpacked by test-php.sh already).
ensure_promtool

PHP_ZTS=$(./scripts/build-php-zts.sh | tail -n 1)
PHP_CONFIG_ZTS="$(dirname "$PHP_ZTS")/php-config"
echo "== $("$PHP_ZTS" -n -v | head -n 1)"

# ext-php-rs generates its bindings for the PHP that PHP and PHP_CONFIG
# name and rebuilds when they change, so the workspace's target dir serves
# both builds (only ext-php-rs and the extension are rebuilt; the next NTS
# build rebuilds them back). The ZTS module is copied out of the way.
TARGET=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "== cargo build --release -p polysocket-php (for the ZTS PHP)"
PHP="$PHP_ZTS" PHP_CONFIG="$PHP_CONFIG_ZTS" cargo build --release -q -p polysocket-php
mkdir -p "$TARGET/zts"
EXT="$TARGET/zts/polysocket.so"
cp "$TARGET/release/libpolysocket_php.so" "$EXT"

built=$("$PHP_ZTS" -n -d "extension=$EXT" -i | sed -n 's/^built for => //p')
case "$built" in
    *,TS\ *) echo "== phpinfo: built for => $built" ;;
    *) echo "test-php-zts: phpinfo says '$built', expected a TS build" >&2; exit 1 ;;
esac

# The peers php/tests needs, as scripts/test-php.sh prepares them.
VENV="$ROOT/target/php-venv"
ensure_venv "$VENV" -r tests/requirements.txt
python_package_current || python_package
echo "== cargo build --release -p polysocket --features cluster --example chat_node"
cargo build --release -q -p polysocket --features cluster --example chat_node

echo "== pytest php/tests on the ZTS PHP"
PHP="$PHP_ZTS" POLYSOCKET_PHP_EXT="$EXT" POLYSOCKET_PYTHON="$PYTHON_VENV/bin/python" \
POLYSOCKET_CHAT_NODE="$ROOT/target/release/examples/chat_node" \
    timeout --kill-after=10 900 "$VENV/bin/python" -m pytest -c php/tests/pytest.ini php/tests -q "$@"
echo "== php (ZTS) done in $(( $(date +%s) - START )) s"
