#!/usr/bin/env bash
# WebSockets over HTTP/2 (RFC 8441) against the same WebSockets over
# HTTP/1.1, both over TLS, both served by the runtime's echo example and
# driven by the same client (core/examples/h2_load.rs, polysocket's own
# client; the neutral loadgen speaks neither TLS nor HTTP/2).
#
#   scripts/bench-http2.sh                       # full run
#   ROUNDS=1 DURATION=1 IDLE_SESSIONS=500 scripts/bench-http2.sh   # quick look
#
# Client modes (h2_load --mode):
#   h1     one wss:// HTTP/1.1 connection per WebSocket
#   h2     one HTTP/2 connection per WebSocket (one stream each)
#   h2mux  STREAMS WebSockets per HTTP/2 connection (default 100, the
#          server's default SETTINGS_MAX_CONCURRENT_STREAMS)
#
# Echo rows: 100 WebSockets × 32 B and 10 × 1 MiB, each WebSocket sending
# one binary message and waiting for its echo (no extension offered). One
# server process (WORKERS worker threads, default 1, pinned to SERVER_CPU,
# default 1) serves every mode; the client is single-threaded, pinned to
# LOADGEN_CPU (default 0). ROUNDS rounds per row, the modes' order
# rotating; the median round is reported, with the server's and the
# client's CPU time per message over the same window (/proc/PID/stat).
#
# Idle rows: a fresh server per mode; VmRSS after a short warm-up, then
# with IDLE_SESSIONS WebSockets open (each echoed one 32 B message first,
# and one more after the reading): the delta per session.
#
# Prints the markdown tables of docs/BENCHMARKS.md on stdout; progress on
# stderr; raw JSON lines and logs in $OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

WORKERS=${WORKERS:-1}
SERVER_CPU=${SERVER_CPU:-1}
STREAMS=${STREAMS:-100}
MODES=${MODES:-"h1 h2 h2mux"}
IDLE_SESSIONS=${IDLE_SESSIONS:-2000}
IDLE_CONNS=$IDLE_SESSIONS
. scripts/lib/bench.sh
bench_init bench-http2

log "building (release): the echo example and h2_load"
cargo build --release -q -p polysocket --features runtime --example echo --example h2_load >&2
LOADGEN="$BIN/examples/h2_load"

# A self-signed end-entity certificate for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$OUT_DIR/key.pem" -out "$OUT_DIR/cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE 2>/dev/null
export H2_LOAD_CERT="$OUT_DIR/cert.pem" # h2_load's --cert, also for bench.sh's warm-ups

ECHO_CMD="$BIN/examples/echo --host 127.0.0.1 --workers $WORKERS --tls-cert $OUT_DIR/cert.pem --tls-key $OUT_DIR/key.pem --port"
SERVERS=(echo)
CMD[echo]=$ECHO_CMD
PIN=(taskset -c "$SERVER_CPU")
read -r -a modes <<< "$MODES"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

start echo
warm_up
for spec in "100x32:100:32" "10x1MiB:10:1048576"; do
    IFS=: read -r row conns size <<< "$spec"
    for round in $(seq 1 "$ROUNDS"); do
        n=${#modes[@]}
        for i in $(seq 0 $((n - 1))); do
            m=${modes[$(((i + round) % n))]}
            log "echo $row, round $round, $m"
            run "$row" "$round" echo echo --mode "$m" --conns "$conns" --size "$size" \
                --streams "$STREAMS" --duration "$DURATION" --warmup "$WARMUP"
        done
    done
done
stop echo

# Idle sessions: a fresh server per mode.
idle_client() { # MODE PORT CONNS READY_FILE
    "$LOADGEN" idle --mode "$1" --port "$2" --conns "$3" --ready-file "$4" \
        --streams "$STREAMS" --hold-timeout 120
}
for m in "${modes[@]}"; do
    CMD[idle-$m]=$ECHO_CMD
    eval "idle_$m() { idle_client $m \"\$@\"; }"
    idle_row "idle-$m" "$IDLE_SESSIONS" idle 1 "idle_$m"
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))

export RESULTS ROUNDS DURATION WARMUP WORKERS SERVER_CPU LOADGEN_CPU STREAMS IDLE_SESSIONS LOAD_BEFORE LOAD_AFTER ELAPSED MODES
python3 - <<'PY'
import json, os, statistics, platform, subprocess
E = os.environ
rows = [json.loads(l) for l in open(E["RESULTS"]) if l.strip()]
modes = E["MODES"].split()
label = {"h1": "HTTP/1.1 (1 WebSocket per TCP)", "h2": "HTTP/2 (1 stream per TCP)",
         "h2mux": f"HTTP/2 ({E['STREAMS']} streams per TCP)"}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print(f"Machine: {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}. "
      f"Server: echo example, {E['WORKERS']} worker, pinned to core {E['SERVER_CPU']}; "
      f"client h2_load (one thread) pinned to core {E['LOADGEN_CPU']}. "
      f"{E['ROUNDS']} rounds × {E['DURATION']} s per mode and row, interleaved; median round. "
      f"Load average before {E['LOAD_BEFORE']}, after {E['LOAD_AFTER']}; {E['ELAPSED']} s.")
print()
print("| row | transport | TCP conns | msgs/s | MB/s | vs HTTP/1.1 | server µs/msg | client µs/msg | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for row in ["100x32", "10x1MiB"]:
    med = {}
    for m in modes:
        rs = sorted((r for r in rows if r.get("row") == row and r.get("mode") == m), key=lambda r: r["rate"])
        if rs:
            med[m] = (rs[len(rs) // 2], sum(r["errors"] for r in rs))
    base = med.get("h1", (None,))[0]
    for m in modes:
        if m not in med:
            continue
        r, errs = med[m]
        ratio = f"{r['rate'] / base['rate']:.2f}" if base and base["rate"] else "–"
        fmt = lambda v: "–" if v is None else f"{v:.1f}"
        print(f"| {row} | {label[m]} | {r['tcp']} | {r['rate']:,.0f} | {r['mb_s']:.1f} | {ratio} | "
              f"{fmt(r['server_us_per_msg'])} | {fmt(r['client_us_per_msg'])} | {errs} |")
print()
print("| idle | transport | sessions | TCP conns | RSS before (KiB) | RSS held (KiB) | KiB per session | vs HTTP/1.1 | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
idle = {r["mode"]: r for r in rows if r.get("row") == "idle"}
b = idle.get("h1", {}).get("kib_per_conn")
for m in modes:
    r = idle.get(m)
    if not r:
        continue
    k = r["kib_per_conn"]
    print(f"| idle | {label[m]} | {r['opened']} | {r['tcp']} | {r['rss_base_kib']:,} | {r['rss_idle_kib']:,} | "
          f"{k:.2f} | {k / b:.2f} | {r['errors']} |" if k is not None and b else
          f"| idle | {label[m]} | {r['opened']} | {r['tcp']} | – | – | – | – | {r['errors']} |")
PY
log "raw results: $RESULTS"
