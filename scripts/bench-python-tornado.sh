#!/usr/bin/env bash
# Tornado drop-in benchmark: the same echo handler on Tornado's own
# WebSocketHandler and on polysocket.tornado's (benches/python/tornado_echo.py),
# both served in the same run, driven by the project's loadgen
# (benches/, pinned to another core), rounds alternating the order.
# Rows: 100 × 32 B, 100 × 4 KiB, 10 × 64 KiB, 10 × 1 MiB binary echo,
# connection setup (SETUP_CONC at once), then IDLE_CONNS idle connections
# per server (fresh processes; each echoed one message first). Prints
# per-row medians, ranges and the polysocket/tornado ratio of each round,
# and the host's load average before and after.
#
#   ROUNDS=5 DURATION=3 IDLE_CONNS=2000 scripts/bench-python-tornado.sh
# Needs the venv of scripts/test-python-tornado.sh (run that first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

DURATION=${DURATION:-3}
SERVER_CPU=${SERVER_CPU:-1}
SETUP_CONC=${SETUP_CONC:-32}
IDLE_CONNS=${IDLE_CONNS:-2000}
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

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
echo_rows "100x32:100:32" "100x4KiB:100:4096" "10x64KiB:10:65536" "10x1MiB:10:1048576"
setup_rows
for s in "${SERVERS[@]}"; do stop "$s"; done
for s in "${SERVERS[@]}"; do idle_row "$s" "$IDLE_CONNS"; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

log "raw results: $RESULTS"
echo "Load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after; $(nproc) cores."
echo
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows, idle = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["row"] == "idle":
        idle[r["server"]] = r
        continue
    if r["row"] == "setup":
        r["msgs_per_s"] = r.get("setups_per_s") or 0
        r["server_cpu_us_per_msg"] = r.get("server_cpu_us_per_setup") or 0
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
print()
print("(setup: connections opened and closed per second instead of messages, CPU per connection.)")
print()
print("| idle connections | opened | RSS before | RSS with them | KiB per connection |")
print("|---|---|---|---|---|")
for s, r in idle.items():
    per = r.get("kib_per_conn")
    print(f"| {s} | {r.get('opened', 0):,} | {r['rss_base_kib']:,} KiB | {r['rss_idle_kib']:,} KiB | "
          f"{'—' if per is None else f'{per:.2f}'} |")
PY
