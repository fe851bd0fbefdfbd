#!/usr/bin/env bash
# Leak checks of the glue (docs/RELIABILITY.md, "Leak checks"):
#
#   php     the PHP extension under valgrind memcheck (USE_ZEND_ALLOC=0):
#           php/tests/leak_daemon.php driven by tests/harness/leak_php.py
#           through every event kind and error path, ended by exit() in a
#           callback; fails on any definitely/indirectly lost record or
#           memory error whose stack goes through the extension.
#   python  tests/harness/leak_py.py: the standalone server and the Tornado
#           drop-in in one process, N rounds of every event kind and error
#           path; fails when allocated blocks, gc objects or a tracemalloc
#           trace in polysocket grow per round, or a handler outlives its
#           connection.
#
#   scripts/leak-check.sh                  # both
#   LEAK_FACES=php scripts/leak-check.sh   # one of php, python
#   PHP_ROUNDS=2 PY_WARMUP=5 PY_ROUNDS=20  # the defaults
#
# Installs what is missing (valgrind, php8.2-cli/-dev, libclang-dev via apt;
# the venvs of scripts/test-php.sh and scripts/test-python.sh) and builds the
# extensions when missing or stale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init leaks
FACES="${LEAK_FACES:-php python}"

if [[ " $FACES " == *" php "* ]]; then
    missing=()
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
    command -v php >/dev/null 2>&1 || missing+=(php8.2-cli)
    command -v php-config >/dev/null 2>&1 || missing+=(php8.2-dev)
    dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
    ensure_venv "$ROOT/target/php-venv" -r tests/requirements.txt
    echo "== cargo build --release -p polysocket-php"
    cargo build --release -q -p polysocket-php
    TARGET=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    cp "$TARGET/release/libpolysocket_php.so" "$TARGET/release/polysocket.so"
    echo "== php: leak_daemon.php under valgrind memcheck"
    (cd tests/harness && "$ROOT/target/php-venv/bin/python" leak_php.py \
        --ext "$TARGET/release/polysocket.so" --rounds "${PHP_ROUNDS:-2}" \
        --log "$ROOT/target/leaks/valgrind-php.log" --supp "$ROOT/scripts/leak-check.supp")
fi

if [[ " $FACES " == *" python "* ]]; then
    if python_package_current; then
        echo "== polysocket in target/python-venv is current"
    else
        python_package
    fi
    echo "== python: standalone + Tornado drop-in, tracemalloc / gc / weakrefs"
    (cd tests/harness && timeout --kill-after=10 300 "$PYTHON_VENV/bin/python" leak_py.py \
        --warmup "${PY_WARMUP:-5}" --rounds "${PY_ROUNDS:-20}")
fi
echo "== leak checks passed in $(( $(date +%s) - START )) s"
