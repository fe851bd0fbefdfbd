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

DURATION=${DURATION:-3}
SERVER_CPU=${SERVER_CPU:-1}
PY="$ROOT/target/python-venv-tornado/bin/python"
. scripts/lib/bench.sh
bench_init bench-python-tornado

[ -x "$PY" ] || { log "no venv: run scripts/test-python-tornado.sh first"; exit 2; }
"$PY" -c 'import polysocket.tornado' || { log "polysocket is not installed in $PY"; exit 2; }
command -v jq >/dev/null || { log "needs jq"; exit 2; }
log "building loadgen (release)"
cargo build -q --release -p polysocket-bench --bin loadgen >&2
LOADGEN="$BIN/loadgen"

SERVERS=(tornado polysocket)
CMD[tornado]="$PY benches/python/tornado_echo.py --impl tornado --port"
CMD[polysocket]="$PY benches/python/tornado_echo.py --impl polysocket --port"
PIN=(taskset -c "$SERVER_CPU")

for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
echo_rows "100x32:100:32" "10x64KiB:10:65536"

log "raw results: $RESULTS"
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["row"], {}).setdefault(r["server"], []).append(r)
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
