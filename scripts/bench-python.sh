#!/usr/bin/env bash
# Python benchmark: the standalone server (`python -m polysocket echo`: I/O
# and framing in the Rust runtime, the echo handler in Python) against
# picows (Cython frames on asyncio), Tornado's own WebSocketHandler and the
# native Rust echo example, all driven by the project's load generator
# (benches/src/bin/loadgen.rs).
#
#   scripts/bench-python.sh                 # full run
#   ROUNDS=1 DURATION=1 IDLE_CONNS=2000 scripts/bench-python.sh   # quick look
#
# The standalone server runs as `python -m polysocket echo` does by default:
# its runtime on the asyncio loop's thread (PY_WORKERS=0; PY_WORKERS=N gives
# it N runtime threads instead). The Rust echo gets WORKERS runtime threads
# (default 1); the other Python servers run one asyncio loop. The load generator (one thread) is pinned to core
# LOADGEN_CPU (default 0); servers are pinned to SERVER_CPU if set (default:
# not pinned, so the standalone server's Python thread and its runtime
# thread can run side by side). Every server's CPU time per message (all its
# threads, /proc/PID/stat) is reported besides the throughput: it does not
# depend on which side was the bottleneck. Rounds interleave the servers
# (order rotating); the median round is reported, with the ratio's range.
# Idle memory: fresh process, VmRSS before and with IDLE_CONNS idle
# connections open (each echoed one message first, and echoes once more
# after the hold).
#
# Markdown on stdout (the tables of docs/BENCHMARKS.md), progress on stderr,
# raw JSON lines in $OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

WORKERS=${WORKERS:-1}
PY_WORKERS=${PY_WORKERS:-0}
SERVER_CPU=${SERVER_CPU:-}
. scripts/lib/bench.sh
bench_init bench-python
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }

log "building (release): loadgen, the Rust echo example, the Python package"
cargo build --release -q -p polysocket --features runtime --example echo >&2
cargo build --release -q -p polysocket-bench --bin loadgen >&2
VENV="$ROOT/target/bench-python-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -U pip maturin >&2
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r benches/python/requirements.txt >&2
rm -rf target/bench-python-wheels
(cd python && PATH="$VENV/bin:$PATH" maturin build --release -q -o ../target/bench-python-wheels) >&2
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
    target/bench-python-wheels/*.whl >&2
PY="$VENV/bin/python"
LOADGEN="$BIN/loadgen"

SERVERS=(polysocket-py picows rust tornado)
CMD[polysocket-py]="$PY -m polysocket echo --host 127.0.0.1 --workers $PY_WORKERS --port"
CMD[picows]="$PY benches/python/picows_echo.py --host 127.0.0.1 --port"
CMD[rust]="$BIN/examples/echo --host 127.0.0.1 --workers $WORKERS --port"
CMD[tornado]="$PY benches/python/tornado_stock_echo.py --host 127.0.0.1 --port"
[ -n "$SERVER_CPU" ] && PIN=(taskset -c "$SERVER_CPU")

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
echo_rows "100x32:100:32" "10x64KiB:10:65536"
for s in "${SERVERS[@]}"; do stop "$s"; done

for s in polysocket-py picows rust; do idle_row "$s" "$IDLE_CONNS"; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

export RESULTS ROUNDS DURATION WARMUP WORKERS PY_WORKERS SERVER_CPU LOADGEN_CPU IDLE_CONNS LOAD_BEFORE LOAD_AFTER ELAPSED
"$PY" - <<'PY'
import json, os, platform, statistics, subprocess, sys
rows = [json.loads(l) for l in open(os.environ["RESULTS"]) if l.strip()]
E = os.environ
PS, PW, RS, TO = "polysocket-py", "picows", "rust", "tornado"
ALL = [PS, PW, RS, TO]

def pick(row, s): return [r for r in rows if r["row"] == row and r["server"] == s]
def med(row, s, key):
    v = [r[key] for r in pick(row, s) if r.get(key) is not None]
    return statistics.median(v) if v else None
def fmt(v, d=0): return "—" if v is None else f"{v:,.{d}f}"
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
def ratios(row, key, other, invert=False):
    """Median-round ratio and the range over rounds (servers back to back)."""
    per = []
    for rnd in sorted({r["round"] for r in rows if r["row"] == row}):
        a = next((r[key] for r in pick(row, PS) if r["round"] == rnd), None)
        b = next((r[key] for r in pick(row, other) if r["round"] == rnd), None)
        if a and b:
            per.append(b / a if invert else a / b)
    if not per:
        return "—"
    m = statistics.median(per)
    return f"**{m:.2f}** ({min(per):.2f}–{max(per):.2f})" if len(per) > 1 else f"**{m:.2f}**"

cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
pin = f"pinned to core {E['SERVER_CPU']}" if E["SERVER_CPU"] else "not pinned"
print(f"Machine: {os.cpu_count()} cores \"{cpu}\", kernel {platform.release()}, Python {platform.python_version()}, "
      f"{sh('rustc --version')}. Load average {E['LOAD_BEFORE']} before, {E['LOAD_AFTER']} after; {E['ELAPSED']} s.")
py_io = "on its asyncio loop's thread" if E["PY_WORKERS"] == "0" else f"on {E['PY_WORKERS']} runtime thread(s)"
print(f"Servers {pin}; polysocket-py's I/O {py_io}, the Rust echo's on {E['WORKERS']} runtime thread(s); loadgen pinned to core "
      f"{E['LOADGEN_CPU']}. {E['ROUNDS']} rounds × {E['DURATION']} s per server and row, interleaved; median round.")
print()
print("| row | polysocket-py | picows | Rust echo | Tornado | **py / picows** (range) | **py / Rust** (range) |")
print("|---|---|---|---|---|---|---|")
for row, label in (("100x32", "100 conns × 32 B"), ("10x64KiB", "10 conns × 64 KiB")):
    cells = [fmt(med(row, s, "msgs_per_s")) + " msg/s" for s in ALL]
    print(f"| {label} | " + " | ".join(cells) + f" | {ratios(row, 'msgs_per_s', PW)} | {ratios(row, 'msgs_per_s', RS)} |")
print()
print("Server CPU per message (all threads of the server process, µs; lower is better), and the same ratios "
      "computed from it (other's µs / polysocket-py's µs, so > 1 means polysocket-py is cheaper):")
print()
print("| row | polysocket-py | picows | Rust echo | Tornado | **picows µs / py µs** | **Rust µs / py µs** |")
print("|---|---|---|---|---|---|---|")
for row, label in (("100x32", "100 conns × 32 B"), ("10x64KiB", "10 conns × 64 KiB")):
    cells = [fmt(med(row, s, "server_cpu_us_per_msg"), 2) for s in ALL]
    print(f"| {label} | " + " | ".join(cells) + f" | {ratios(row, 'server_cpu_us_per_msg', PW, True)} | "
          f"{ratios(row, 'server_cpu_us_per_msg', RS, True)} |")
print()
print(f"| {int(E['IDLE_CONNS']):,} idle connections | RSS before | RSS with them open | **KiB per connection** | echoed after the hold | errors |")
print("|---|---|---|---|---|---|")
for s in (PS, PW, RS):
    r = next(iter(pick("idle", s)), None)
    if r:
        print(f"| {s} | {r['rss_base_kib']:,} KiB | {r['rss_idle_kib']:,} KiB | **{fmt(r['kib_per_conn'], 2)}** | "
              f"{int(r['verified']):,} / {int(r['opened']):,} | {int(r['errors'])} |")
errors = sum(int(r.get("errors", 0)) for r in rows)
print()
print(f"Errors over all runs: {errors}.")
PY
log "raw results: $RESULTS"
