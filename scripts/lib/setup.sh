# Set-up shared by the test scripts (sourced, not run): what a fresh
# Debian 12 lacks is installed idempotently, quietly, into a log.
#
#   setup_init NAME             cargo on PATH; $SETUP_LOG = target/NAME/setup.log (emptied)
#   apt_install PKG...          apt-get install (update first if needed); needs root
#   ensure_venv DIR PIP-ARGS... a venv at DIR with `pip install PIP-ARGS`, rebuilt when
#                               the arguments, a -r file they name or the Python change
#   python_package              the polysocket package built from the workspace (maturin,
#                               release) into target/python-venv (python/tests/requirements.txt)
#   ensure_promtool             Prometheus' promtool from Debian's package, unpacked into
#                               target/promtool (not installed: no service starts); exports $PROMTOOL
#   python_package_current      true when target/python-venv has polysocket built after the
#                               last change to the sources the package is built from

setup_init() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        . "$HOME/.cargo/env"
    fi
    mkdir -p "target/$1"
    SETUP_LOG="$PWD/target/$1/setup.log"
    SETUP_NAME=$1
    : >"$SETUP_LOG"
}

setup_failed() {
    tail -n 30 "$SETUP_LOG" >&2
    echo "$SETUP_NAME: set-up failed (log: $SETUP_LOG)" >&2
    exit 2
}

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$SETUP_NAME: missing $*; install it (needs root and apt-get)" >&2
        exit 2
    fi
    echo "== installing $* (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$@" >>"$SETUP_LOG" 2>&1; then
        apt-get update -q >>"$SETUP_LOG" 2>&1
        apt-get install -y -q "$@" >>"$SETUP_LOG" 2>&1 || setup_failed
    fi
}

ensure_promtool() {
    PROMTOOL="$PWD/target/promtool/usr/bin/promtool"
    if [ ! -x "$PROMTOOL" ]; then
        echo "== unpacking promtool (Debian's prometheus package)"
        rm -rf target/promtool && mkdir -p target/promtool
        (cd target/promtool && { apt-get download prometheus \
            || { apt-get update -q && apt-get download prometheus; }; }) >>"$SETUP_LOG" 2>&1 \
            || setup_failed
        dpkg-deb -x target/promtool/prometheus_*.deb target/promtool >>"$SETUP_LOG" 2>&1 \
            || setup_failed
        rm -f target/promtool/prometheus_*.deb
    fi
    export PROMTOOL
}

ensure_venv() {
    local venv=$1 stamp arg prev=
    shift
    stamp="$* $(python3 -c 'import sys; print(sys.version)')"
    for arg in "$@"; do
        [ "$prev" = -r ] && stamp="$stamp $(cat "$arg")"
        prev=$arg
    done
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    echo "== creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >>"$SETUP_LOG" 2>&1 || setup_failed
    "$venv/bin/pip" install -q --disable-pip-version-check -U pip >>"$SETUP_LOG" 2>&1 || setup_failed
    "$venv/bin/pip" install -q --disable-pip-version-check "$@" >>"$SETUP_LOG" 2>&1 || setup_failed
    printf '%s' "$stamp" >"$venv/.stamp"
}

PYTHON_VENV="$PWD/target/python-venv"
PYTHON_SOURCES=(Cargo.lock core/Cargo.toml core/src python/Cargo.toml python/pyproject.toml
                python/src python/polysocket)

python_package() {
    ensure_venv "$PYTHON_VENV" maturin -r python/tests/requirements.txt
    # A wheel from the workspace's target dir (incremental), installed like `pip install ./python`.
    echo "== building the polysocket wheel (release)"
    rm -rf target/python/wheels
    (cd python && PATH="$PYTHON_VENV/bin:$PATH" maturin build --release -q -o ../target/python/wheels) \
        >>"$SETUP_LOG" 2>&1 || setup_failed
    "$PYTHON_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
        target/python/wheels/*.whl >>"$SETUP_LOG" 2>&1 || setup_failed
    touch "$PYTHON_VENV/.polysocket-built"
}

python_package_current() {
    [ -f "$PYTHON_VENV/.polysocket-built" ] \
        && "$PYTHON_VENV/bin/python" -c 'import polysocket' >/dev/null 2>&1 \
        && [ -z "$(find "${PYTHON_SOURCES[@]}" -newer "$PYTHON_VENV/.polysocket-built" -print -quit)" ]
}
