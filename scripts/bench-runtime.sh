#!/usr/bin/env bash
# Runtime benchmark (issue 3): polysocket's tokio echo server against the
# tokio-tungstenite and fastwebsockets echo servers, all built in this run,
# all driven by the same load generator (benches/src/bin/loadgen.rs).
#
#   scripts/bench-runtime.sh            # full run (about 4 minutes here, once built)
#   ROUNDS=1 DURATION=1 scripts/bench-runtime.sh   # quick look
#   ROWS="1x32" ROUNDS=20 scripts/bench-runtime.sh # one row, more rounds
#
# Fairness: every server runs a multi-threaded tokio runtime with WORKERS
# worker threads (default 1) and is pinned to core SERVER_CPU (default 1);
# the load generator runs a single-threaded runtime pinned to the other
# core (LOADGEN_CPU, default 0). The servers are started once and run side
# by side (an idle server costs nothing); each row is measured ROUNDS times
# per server, the servers' order rotating between rounds, and the median
# round is reported. The loadgen also reads each server's CPU time from
# /proc/PID/stat over the measured window, so the table shows the server's
# CPU cost per message whether or not the server was the bottleneck.
# Idle memory is measured on fresh server processes, one at a time: VmRSS
# from /proc/PID/status after a short warm-up, then with IDLE_CONNS idle
# connections open, each having echoed one message first (what a server
# keeps per connection after traffic counts); every idle connection then
# has to echo one more message.
#
# Prints the markdown tables of docs/BENCHMARKS.md on stdout; progress goes
# to stderr, the loadgen's own summaries to $OUT_DIR/loadgen.log. Raw results (JSON lines) are
# kept in $OUT_DIR (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

WORKERS=${WORKERS:-1}
# The rows to measure (all by default), e.g. ROWS="1x32" ROUNDS=20 for one
# row with more rounds.
ROWS=${ROWS:-"1x32 100x32 1000x32 100x4KiB 10x1MiB setup idle"}
wanted() { [[ " $ROWS " == *" $1 "* ]]; }
SERVER_CPU=${SERVER_CPU:-1}
SETUP_CONC=${SETUP_CONC:-32}
. scripts/lib/bench.sh
bench_init bench-runtime

log "building (release)"
cargo build --release -p polysocket --features runtime --example echo >&2
cargo build --release -p polysocket-bench --bins >&2
LOADGEN="$BIN/loadgen"

SERVERS=(polysocket fastwebsockets tokio-tungstenite)
CMD[polysocket]="$BIN/examples/echo --host 127.0.0.1 --workers $WORKERS --port"
CMD[fastwebsockets]="$BIN/echo-fastwebsockets --host 127.0.0.1 --workers $WORKERS --port"
CMD[tokio-tungstenite]="$BIN/echo-tungstenite --host 127.0.0.1 --workers $WORKERS --port"
PIN=(taskset -c "$SERVER_CPU")

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
specs=()
for spec in "1x32:1:32" "100x32:100:32" "1000x32:1000:32" "100x4KiB:100:4096" "10x1MiB:10:1048576"; do
    wanted "${spec%%:*}" && specs+=("$spec")
done
echo_rows "${specs[@]}"
wanted setup && setup_rows
for s in "${SERVERS[@]}"; do stop "$s"; done

# Idle memory: a fresh process per server.
if wanted idle; then
    for s in "${SERVERS[@]}"; do idle_row "$s" "$IDLE_CONNS"; done
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

export RESULTS ROUNDS DURATION WARMUP WORKERS SERVER_CPU LOADGEN_CPU IDLE_CONNS SETUP_CONC LOAD_BEFORE LOAD_AFTER ELAPSED
python3 - <<'PY'
import json, os, statistics, platform, subprocess, sys
rows = [json.loads(l) for l in open(os.environ["RESULTS"]) if l.strip()]
PS, FW, TT = "polysocket", "fastwebsockets", "tokio-tungstenite"
ALL, PEERS = [PS, FW, TT], [FW, TT]
E = os.environ

def pick(row, server):
    return [r for r in rows if r["row"] == row and r["server"] == server]

def med(row, server, key):
    vals = [r[key] for r in pick(row, server) if r.get(key) is not None]
    return statistics.median(vals) if vals else None

def fmt(v, d=0):
    return "—" if v is None else f"{v:,.{d}f}"

def ratio(a, b):
    return a / b if (a and b) else None

def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem = sh("free -g | awk '/Mem:/ {print $2}'")
print(f"Machine: {os.cpu_count()} cores \"{cpu}\", {mem} GiB, kernel {platform.release()}, "
      f"{sh('rustc --version')}. Load average {E['LOAD_BEFORE']} before the run, {E['LOAD_AFTER']} after; "
      f"the run took {E['ELAPSED']} s.")
print(f"Servers pinned to core {E['SERVER_CPU']}, {E['WORKERS']} tokio worker thread each; loadgen "
      f"(single-threaded) pinned to core {E['LOADGEN_CPU']}. {E['ROUNDS']} rounds × {E['DURATION']} s per server "
      f"and row (after {E['WARMUP']} s of warm-up), servers interleaved; the median round is reported.")
print()
# Only the rows measured (see ROWS).
measured = {r["row"] for r in rows}
ECHO = [(row, label) for row, label in [
    ("1x32", "1 conn × 32 B"), ("100x32", "100 conns × 32 B"), ("1000x32", "1000 conns × 32 B"),
    ("100x4KiB", "100 conns × 4 KiB"), ("10x1MiB", "10 conns × 1 MiB")] if row in measured]
SETUP = [("setup", f"connection setup, {E['SETUP_CONC']} at once")] if "setup" in measured else []
print("| row | polysocket | fastwebsockets | tokio-tungstenite | **polysocket / faster peer** (range over rounds) | p99 latency µs (ps / fws / tt) | verified | errors |")
print("|---|---|---|---|---|---|---|---|")
for row, label in ECHO + SETUP:
    key = "setups_per_s" if row == "setup" else "msgs_per_s"
    unit = " conn/s" if row == "setup" else " msg/s"
    m = {s: med(row, s, key) for s in ALL}
    p99 = {s: med(row, s, "p99_us") for s in ALL}
    best = max((m[p] for p in PEERS if m[p]), default=None)
    verified = sum(int(r["verified"]) for r in rows if r["row"] == row)
    errs = sum(int(r["errors"]) + int(r.get("close_errors", 0)) for r in rows if r["row"] == row)
    cells = []
    for s in ALL:
        c = fmt(m[s]) + unit
        if row == "10x1MiB" and m[s]:
            c += f" ({fmt(med(row, s, 'mb_per_s'))} MB/s)"
        cells.append(c)
    # The same ratio round by round (servers measured back to back).
    per_round = []
    for rnd in sorted({r["round"] for r in rows if r["row"] == row}):
        v = {s: next((r[key] for r in pick(row, s) if r["round"] == rnd), None) for s in ALL}
        b = max((v[p] for p in PEERS if v[p]), default=None)
        if v[PS] and b:
            per_round.append(v[PS] / b)
    spread = f" ({min(per_round):.2f}–{max(per_round):.2f})" if len(per_round) > 1 else ""
    print(f"| {label} | " + " | ".join(cells) + f" | **{fmt(ratio(m[PS], best), 2)}**{spread} | "
          f"{fmt(p99[PS])} / {fmt(p99[FW])} / {fmt(p99[TT])} | {verified:,} | {errs} |")
print()
print("Server CPU time per message (per connection for setup), from /proc/PID/stat over the measured window; "
      "lower is better and does not depend on which side was the bottleneck. \"busy\": share of one core used by "
      "the server / by the loadgen.")
print()
print("| row | polysocket µs | fastwebsockets µs | tokio-tungstenite µs | **polysocket / fastwebsockets CPU** | busy ps / fws / tt | loadgen busy (ps / fws / tt run) |")
print("|---|---|---|---|---|---|---|")
for row, label in ECHO + SETUP:
    key = "server_cpu_us_per_setup" if row == "setup" else "server_cpu_us_per_msg"
    c = {s: med(row, s, key) for s in ALL}
    busy = {s: med(row, s, "server_cpu") for s in ALL}
    lg = {s: med(row, s, "loadgen_cpu") for s in ALL}
    print(f"| {label} | {fmt(c[PS], 2)} | {fmt(c[FW], 2)} | {fmt(c[TT], 2)} | **{fmt(ratio(c[PS], c[FW]), 2)}** | "
          f"{fmt(busy[PS], 2)} / {fmt(busy[FW], 2)} / {fmt(busy[TT], 2)} | {fmt(lg[PS], 2)} / {fmt(lg[FW], 2)} / {fmt(lg[TT], 2)} |")
fair = [e for e in ECHO if e[0] != "1x32"]
if fair:
    print()
    print("Fairness (median round): messages each connection got echoed in the window, min / median / max.")
    print()
    print("| row | polysocket | fastwebsockets | tokio-tungstenite |")
    print("|---|---|---|---|")
for row, label in fair:
    cells = []
    for s in ALL:
        rs = sorted(pick(row, s), key=lambda r: r["msgs_per_s"])
        r = rs[len(rs) // 2] if rs else None
        cells.append("—" if not r or r.get("conn_msgs_min") is None else
                     f"{int(r['conn_msgs_min']):,} / {int(r['conn_msgs_median']):,} / {int(r['conn_msgs_max']):,}")
    print(f"| {label} | " + " | ".join(cells) + " |")
if "idle" not in measured:
    sys.exit(0)
print()
print(f"| {int(E['IDLE_CONNS']):,} idle connections | RSS before | RSS with them open | **KiB per connection** | echoed after the hold | errors |")
print("|---|---|---|---|---|---|")
for s in ALL:
    r = next(iter(pick("idle", s)), None)
    if not r:
        print(f"| {s} | — | — | — | — | — |")
        continue
    print(f"| {s} | {r['rss_base_kib']:,} KiB | {r['rss_idle_kib']:,} KiB | **{fmt(r['kib_per_conn'], 2)}** | "
          f"{int(r['verified']):,} / {int(r['opened']):,} | {int(r['errors'])} |")
PY
log "raw results: $RESULTS"
