#!/usr/bin/env bash
# The Autobahn|Testsuite against the echo server.
#
#   scripts/autobahn.sh [URL]        CI subset: sections 1-10 plus 12.1.*,
#                                    13.1.*, 13.7.* (permessage-deflate), about
#                                    355 cases, 1-2 minutes on 2 cores
#   scripts/autobahn-full.sh [URL]   all 517 cases (12-20 minutes); against
#                                    the default server it then writes the
#                                    result into docs/CONFORMANCE.md
#
# Without URL it starts the echo server itself on a free port of 127.0.0.1
# (POLYSOCKET_ECHO_CMD, a command template with {port}; default: the
# tokio echo example, built if needed) and stops it at the end. Prints the
# per-behaviour summary and fails on any FAILED, NON-STRICT or UNIMPLEMENTED
# case (INFORMATIONAL is accepted). Reports: target/autobahn/{ci,full}/.
# AB_CASES overrides the case list (e.g. AB_CASES='1.*').
#
# The CI subset against the default server also runs the tokio client
# (below). AB_TARGET=client tests a client instead: the suite's fuzzing server
# (`wstest -m fuzzingserver`) on a free port, and POLYSOCKET_AB_CLIENT_CMD,
# a command template with {url} and {agent} (default: the tokio client,
# core/examples/autobahn_client.rs, built if needed), which runs every case
# against it. Reports: target/autobahn/client-{ci,full}-AGENT/ (AB_AGENT,
# default polysocket-rust).
#
# The suite comes from ../shared/tools/autobahn (beside the repository;
# AUTOBAHN_DIR overrides), installed on first use into /opt/autobahn-py3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE="${AB_MODE:-ci}"
case "$MODE" in
    ci) CASES="1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,12.1.*,13.1.*,13.7.*"; TIMEOUT=900
        NAME=autobahn.sh ;;
    full) CASES="*"; TIMEOUT=2400; NAME=autobahn-full.sh ;;
    *) echo "autobahn.sh: AB_MODE must be ci or full" >&2; exit 2 ;;
esac
CASES="${AB_CASES:-$CASES}"
OUT="$ROOT/target/autobahn/$MODE"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$ROOT/../shared/tools/autobahn}"
PY="${PYTHON:-python3}"
DEFAULT_SERVER="target/release/examples/echo --host 127.0.0.1 --port {port}"

if [[ ! -x "$AUTOBAHN_DIR/run.sh" ]]; then
    echo "$NAME: $AUTOBAHN_DIR/run.sh not found (set AUTOBAHN_DIR)" >&2
    exit 2
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
    sed -n '2,26p' "$ROOT/scripts/autobahn.sh" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

# Install first, on its own: on a first install, install.sh prints the port's
# progress on stdout, which run.sh would take for the path of wstest.
mkdir -p "$ROOT/target/autobahn"
if [[ "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]] \
    && ! AB_QUIET=1 bash "$AUTOBAHN_DIR/install.sh" >"$ROOT/target/autobahn/install.log" 2>&1; then
    tail -n 20 "$ROOT/target/autobahn/install.log" >&2
    echo "$NAME: installing the Autobahn|Testsuite failed" >&2
    exit 2
fi

if [[ "${AB_TARGET:-server}" == client ]]; then
    AGENT="${AB_AGENT:-polysocket-rust}"
    OUT="$ROOT/target/autobahn/client-$MODE-$AGENT"
    DEFAULT_CLIENT="target/release/examples/autobahn_client {url} {agent}"
    CLIENT="${POLYSOCKET_AB_CLIENT_CMD:-$DEFAULT_CLIENT}"
    if [[ -z "${POLYSOCKET_AB_CLIENT_CMD:-}" ]]; then
        cargo build --release -q -p polysocket --features runtime --example autobahn_client
    fi
    WSTEST="$(AB_QUIET=1 bash "$AUTOBAHN_DIR/install.sh" | tail -n 1)"
    PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    rm -rf "$OUT"; mkdir -p "$OUT"
    "$PY" - "$OUT/fuzzingserver.json" "$PORT" "$OUT" "$CASES" <<'PYSPEC'
import json, sys
path, port, out, cases = sys.argv[1:]
json.dump({"url": f"ws://127.0.0.1:{port}", "outdir": out, "cases": cases.split(","),
           "exclude-cases": [], "exclude-agent-cases": {}}, open(path, "w"))
PYSPEC
    (cd "$OUT" && exec "$WSTEST" -m fuzzingserver --webport 0 -s "$OUT/fuzzingserver.json" >"$OUT/wstest.log" 2>&1) &
    WSTEST_PID=$!
    trap 'kill "$WSTEST_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 300); do
        "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2).close()" 2>/dev/null && break
        kill -0 "$WSTEST_PID" 2>/dev/null || { tail -n 5 "$OUT/wstest.log" >&2; exit 2; }
        sleep 0.2
    done
    CMD="$(printf '%s' "$CLIENT" | sed "s|{url}|ws://127.0.0.1:$PORT|g; s|{agent}|$AGENT|g")"
    echo "$NAME: client $CMD against wstest -m fuzzingserver (cases $CASES)"
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2086
    # A Python client takes longer than wstest's own client: twice the time.
    timeout "$((TIMEOUT * 2))" $CMD >"$OUT/client.log" 2>&1
    rc=$?
    set -e
    wall=$(( $(date +%s) - start ))
    kill "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
    if [[ ! -f "$OUT/index.json" || $rc -ne 0 ]]; then
        tail -n 20 "$OUT/client.log" >&2
        echo "$NAME: the client did not run to the end (status $rc)" >&2
        exit 2
    fi
    echo "$NAME: $AGENT: $((wall / 60)) min $((wall % 60)) s"
    exec "$PY" tests/harness/autobahn_report.py check "$OUT/index.json"
fi

if [[ $# -eq 0 && "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]]; then
    mkdir -p "$OUT"
    AB_MODE="$MODE" POLYSOCKET_AB_UNDER_HARNESS=1 exec "$PY" tests/harness/echo_server.py \
        --log "$ROOT/target/autobahn/echo-server-$MODE.log" -- "$ROOT/scripts/autobahn.sh"
fi
if [[ $# -eq 1 ]]; then
    URL="$1"; SERVER="external server at $1"
else
    URL="${ECHO_URL:?}"; SERVER="${POLYSOCKET_ECHO_CMD:-$DEFAULT_SERVER}"
fi

start=$(date +%s)
set +e
"$AUTOBAHN_DIR/run.sh" --agent polysocket --timeout "$TIMEOUT" "$URL" "$CASES" "$OUT"
rc=$?
set -e
wall=$(( $(date +%s) - start ))
if [[ ! -f "$OUT/index.json" || $rc -ge 2 ]]; then
    echo "$NAME: the suite did not run to the end (run.sh status $rc)" >&2
    exit 2
fi
set +e
"$PY" tests/harness/autobahn_report.py check "$OUT/index.json"
verdict=$?
set -e
if [[ "$MODE" == full && $# -eq 0 && -z "${POLYSOCKET_ECHO_CMD:-}" ]]; then
    # The file's part from "## Every face" on is kept (written by hand
    # from the other faces' full runs).
    faces="$(sed -n '/^## Every face/,$p' docs/CONFORMANCE.md)"
    "$PY" tests/harness/autobahn_report.py markdown "$OUT/index.json" docs/CONFORMANCE.md \
        --command "scripts/autobahn-full.sh" --server "$SERVER" \
        --wall "$((wall / 60)) min $((wall % 60)) s" >/dev/null
    if [[ -n "$faces" ]]; then printf '\n%s\n' "$faces" >> docs/CONFORMANCE.md; fi
    echo "$NAME: wrote docs/CONFORMANCE.md"
fi
if [[ "$MODE" == ci && $# -eq 0 && -z "${POLYSOCKET_ECHO_CMD:-}" ]]; then
    # The Rust face: its client next to its server.
    AB_TARGET=client "$ROOT/scripts/autobahn.sh" || verdict=1
fi
exit $verdict
