#!/usr/bin/env bash
# The Autobahn|Testsuite CI subset (sections 1-10, 12.1, 13.1, 13.7: the
# cases of scripts/autobahn.sh) against the echo server's WebSockets over
# HTTP/2 (RFC 8441).
#
# The fuzzing client speaks HTTP/1.1 only, so it connects to
# tests/harness/h2_bridge.py, which opens an extended CONNECT stream to the
# echo server (TLS, ALPN h2) for each of its connections, all multiplexed on
# one HTTP/2 connection, and copies the WebSocket bytes both ways unchanged
# (HTTP/2 flow control honoured; END_STREAM <-> FIN, RST_STREAM <-> RST).
#
# Builds the tokio echo example, makes a self-signed certificate (openssl),
# starts the server with it and the bridge (free ports on 127.0.0.1), runs
# the cases, stops both by PID. Fails on any FAILED, NON-STRICT or
# UNIMPLEMENTED case, and unless every case's session was a stream the
# server answered 200 (the bridge's count of upgraded sessions). No case is
# excluded. Report and logs: target/autobahn/h2/.
#
#   AB_CASES='1.*,2.*'    another case list
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)

. scripts/lib/setup.sh
setup_init autobahn-h2

CASES="${AB_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,12.1.*,13.1.*,13.7.*}"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$ROOT/../shared/tools/autobahn}"
WORK="$ROOT/target/autobahn/h2"
OUT="$WORK/report"
NAME=test-autobahn-h2.sh

# --- set-up: the venv of the interop tests (h2 is in tests/requirements.txt),
# the suite, openssl, the echo example ------------------------------------------
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
command -v openssl >/dev/null 2>&1 || apt_install openssl
VENV="$ROOT/target/interop-venv"
ensure_venv "$VENV" -r tests/requirements.txt
PY="$VENV/bin/python"
if [[ ! -x "$AUTOBAHN_DIR/run.sh" ]]; then
    echo "$NAME: $AUTOBAHN_DIR/run.sh not found (set AUTOBAHN_DIR)" >&2
    exit 2
fi
if ! AB_QUIET=1 bash "$AUTOBAHN_DIR/install.sh" >>"$SETUP_LOG" 2>&1; then
    setup_failed
fi
echo "== cargo build --release -p polysocket --features runtime --example echo"
cargo build --release -q -p polysocket --features runtime --example echo

rm -rf "$WORK"; mkdir -p "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >>"$SETUP_LOG" 2>&1 || setup_failed
echo "== setup done in $(( $(date +%s) - START )) s"

# --- the server and the bridge ---------------------------------------------------
SERVER_PID=; BRIDGE_PID=
stop() {
    # By the PIDs started here; SIGTERM, then SIGKILL after 10 s.
    local pid
    for pid in "$@"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap 'stop "$BRIDGE_PID" "$SERVER_PID"' EXIT

# Waits until FILE holds "... 127.0.0.1:PORT" on its first line; prints PORT.
await_port() {
    local file=$1 pid=$2 what=$3 port
    for _ in $(seq 1 300); do
        port="$(sed -n '1s/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$file" 2>/dev/null)"
        if [[ -n "$port" ]]; then echo "$port"; return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "$NAME: $what did not start:" >&2
    cat "$file" "${file%.out}.err" 2>/dev/null | tail -n 20 >&2
    return 1
}

SERVER_CMD=(target/release/examples/echo --host 127.0.0.1 --port 0
            --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
"${SERVER_CMD[@]}" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
SERVER_PORT="$(await_port "$WORK/server.out" "$SERVER_PID" "the echo server")"

"$PY" tests/harness/h2_bridge.py --server "127.0.0.1:$SERVER_PORT" --ca "$WORK/cert.pem" \
    >"$WORK/bridge.out" 2>"$WORK/bridge.err" &
BRIDGE_PID=$!
BRIDGE_PORT="$(await_port "$WORK/bridge.out" "$BRIDGE_PID" "the bridge")"
echo "== echo server https://127.0.0.1:$SERVER_PORT (h2), bridge ws://127.0.0.1:$BRIDGE_PORT"

# --- the suite -------------------------------------------------------------------------
echo "== Autobahn fuzzingclient through the bridge (cases $CASES)"
start=$(date +%s)
set +e
"$AUTOBAHN_DIR/run.sh" --agent polysocket-h2 --timeout 900 \
    "ws://127.0.0.1:$BRIDGE_PORT" "$CASES" "$OUT" >"$WORK/run.log" 2>&1
rc=$?
set -e
wall=$(( $(date +%s) - start ))
server_alive=1; kill -0 "$SERVER_PID" 2>/dev/null || server_alive=0
bridge_alive=1; kill -0 "$BRIDGE_PID" 2>/dev/null || bridge_alive=0
stop "$BRIDGE_PID" "$SERVER_PID"
BRIDGE_PID=; SERVER_PID=
tail -n 8 "$WORK/run.log"
if [[ ! -f "$OUT/index.json" || $rc -ge 2 ]]; then
    echo "$NAME: the suite did not run to the end (run.sh status $rc; log $WORK/run.log)" >&2
    exit 2
fi

status=0
"$PY" tests/harness/autobahn_report.py check "$OUT/index.json" || status=1

# Every case's connection must have been an HTTP/2 stream the server
# accepted: the bridge counts them (it speaks nothing but h2 to the server).
summary="$(grep -E '^h2_bridge: [0-9]+ sessions' "$WORK/bridge.out" || true)"
echo "${summary:-h2_bridge: no summary (see $WORK/bridge.err)}"
cases="$("$PY" -c 'import json,sys; print(sum(len(v) for v in json.load(open(sys.argv[1])).values()))' "$OUT/index.json")"
upgraded="$(sed -n 's/^h2_bridge: [0-9]* sessions (\([0-9]*\) upgraded.*/\1/p' <<<"$summary")"
if [[ "${upgraded:-0}" -lt "$cases" ]]; then
    echo "$NAME: only ${upgraded:-0} of $cases cases went over HTTP/2 streams" >&2
    status=1
fi
if [[ $server_alive != 1 || $bridge_alive != 1 ]]; then
    echo "$NAME: the echo server or the bridge exited during the run (logs in $WORK)" >&2
    status=1
fi
if grep -q 'session (' "$WORK/bridge.err"; then
    echo "$NAME: the bridge failed sessions:" >&2
    grep 'session (' "$WORK/bridge.err" | head -n 5 >&2
    status=1
fi
echo "$NAME: $cases cases in $((wall / 60)) min $((wall % 60)) s over HTTP/2 (report $OUT/index.html)"
if [[ $status == 0 ]]; then
    echo "autobahn-h2: PASS"
else
    echo "autobahn-h2: FAIL"
fi
exit $status
