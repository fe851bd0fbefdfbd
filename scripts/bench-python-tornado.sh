#!/usr/bin/env bash
# Tornado drop-in benchmark: the same echo handler on Tornado's own
# WebSocketHandler and on polysocket.tornado's (benches/python/tornado_echo.py),
# both served in the same run, driven by the project's loadgen
# (benches/, pinned to another core), rounds alternating the order.
# Prints per-row medians, ranges and the polysocket/tornado ratio.
#
#   ROUNDS=5 DURATION=3 scripts/bench-python-tornado.sh
# Needs the venv of scripts/test-python-tornado.sh (run that first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
SERVER_CPU=${SERVER_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-0}
PY="$ROOT/target/python-venv-tornado/bin/python"
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/bench-python-tornado.XXXXXX)}
RESULTS="$OUT_DIR/results.jsonl"
: >"$RESULTS"
log() { echo "[bench-python-tornado] $*" >&2; }

[ -x "$PY" ] || { log "no venv: run scripts/test-python-tornado.sh first"; exit 2; }
"$PY" -c 'import polysocket.tornado' || { log "polysocket is not installed in $PY"; exit 2; }
command -v jq >/dev/null || { log "needs jq"; exit 2; }
log "building loadgen (release)"
cargo build -q --release -p polysocket-bench --bin loadgen >&2
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LOADGEN="$TARGET/release/loadgen"

IMPLS=(tornado polysocket)
declare -A PORT PID
STARTED=()
cleanup() {
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

for impl in "${IMPLS[@]}"; do
    port=$(free_port)
    taskset -c "$SERVER_CPU" "$PY" benches/python/tornado_echo.py --impl "$impl" --port "$port" \
        >"$OUT_DIR/$impl.log" 2>&1 &
    PID[$impl]=$!
    PORT[$impl]=$port
    STARTED+=("$!")
    for _ in $(seq 1 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null && break
        kill -0 "${PID[$impl]}" 2>/dev/null || { cat "$OUT_DIR/$impl.log" >&2; exit 1; }
        sleep 0.1
    done
    log "$impl: pid ${PID[$impl]}, port $port"
    taskset -c "$LOADGEN_CPU" "$LOADGEN" echo --port "$port" --conns 10 --size 1024 \
        --duration 0.5 --warmup 0 >/dev/null 2>&1
done

ROWS=("100x32:100:32" "10x64KiB:10:65536")
for spec in "${ROWS[@]}"; do
    IFS=: read -r row conns size <<<"$spec"
    for round in $(seq 1 "$ROUNDS"); do
        order=("${IMPLS[@]}")
        [ $((round % 2)) = 0 ] && order=(polysocket tornado)
        for impl in "${order[@]}"; do
            log "echo $row, round $round, $impl"
            taskset -c "$LOADGEN_CPU" "$LOADGEN" echo --conns "$conns" --size "$size" \
                --duration "$DURATION" --warmup "$WARMUP" --port "${PORT[$impl]}" \
                --server-pid "${PID[$impl]}" 2>/dev/null |
                jq -c --arg row "$row" --arg impl "$impl" --argjson round "$round" \
                    '. + {row: $row, impl: $impl, round: $round}' >>"$RESULTS"
        done
    done
done

log "raw results: $RESULTS"
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["row"], {}).setdefault(r["impl"], []).append(r)
def fmt(v, unit=""):
    return f"{statistics.median(v):,.0f}{unit} ({min(v):,.0f}-{max(v):,.0f})"
def ratios(a, b):
    r = [y / x for x, y in zip(a, b)]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
print("Throughput (msg/s) and server CPU per message (µs; steadier on a shared machine).")
print("Ratios are polysocket over Tornado (throughput) and Tornado over polysocket (CPU), per round.")
print()
print("| echo | Tornado msg/s | polysocket.tornado msg/s | throughput ratio | Tornado µs/msg | polysocket µs/msg | CPU ratio | errors |")
print("|---|---|---|---|---|---|---|---|")
for row, impls in rows.items():
    t = [r["msgs_per_s"] for r in impls["tornado"]]
    p = [r["msgs_per_s"] for r in impls["polysocket"]]
    tc = [r["server_cpu_us_per_msg"] for r in impls["tornado"]]
    pc = [r["server_cpu_us_per_msg"] for r in impls["polysocket"]]
    errors = sum(r.get("errors", 0) for rs in impls.values() for r in rs)
    print(f"| {row} | {fmt(t)} | {fmt(p)} | {ratios(t, p)} | {fmt(tc)} | {fmt(pc)} | {ratios(pc, tc)} | {errors:.0f} |")
PY
