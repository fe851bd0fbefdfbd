# Set-up shared by the test scripts (sourced, not run): what a fresh
# Debian 12 lacks is installed idempotently, quietly, into a log.
#
#   setup_init NAME             cargo on PATH; $SETUP_LOG = target/NAME/setup.log (emptied)
#   apt_install PKG...          apt-get install (update first if needed); needs root
#   ensure_venv DIR PIP-ARGS... a venv at DIR with `pip install PIP-ARGS`, rebuilt when
#                               the arguments, a -r file they name or the Python change

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
