#!/usr/bin/env bash
# ASGI benchmark: polysocket's uvicorn WebSocket protocol class
# (polysocket.asgi:WebSocketProtocol) against uvicorn's own WebSocket
# implementations (websockets-sansio, the default, and wsproto), all under
# the same uvicorn (python/tests/requirements-asgi.txt pins it) serving the
# same ASGI app (examples/asgi/echo.py: every message back as it came), all
# driven by the project's load generator (benches/src/bin/loadgen.rs).
#
#   scripts/bench-asgi.sh                                  # full run
#   ROUNDS=3 DURATION=2 scripts/bench-asgi.sh              # docs/BENCHMARKS.md's run
#   ROUNDS=1 DURATION=1 IDLE_CONNS=2000 DEFLATE_CONNS=500 scripts/bench-asgi.sh   # quick look
#
# Every server is `python -m uvicorn examples.asgi.echo:app --ws X` with
# uvicorn's default HTTP and loop choices (`auto`: httptools and uvloop when
# installed, the same for all; the report says which), --ws-max-size 64 MiB,
# no access log, uvicorn's default ws_* settings otherwise (pings every 20 s,
# permessage-deflate offered to clients that ask). One process, one thread
# each: uvicorn's event loop.
#
# Rows: echo of 100 connections × 32 B, 100 × 4 KiB and 10 × 1 MiB (binary
# messages, the loadgen's default; the loadgen does not offer
# permessage-deflate, so these are uncompressed); IDLE_CONNS (default
# 10,000) idle connections, RSS before / with them open (each echoed one
# message first, and echoes once more after the hold); then DEFLATE_CONNS
# (default 2,000; 0 skips the row) idle connections that negotiated
# permessage-deflate: a Python client (websockets' asyncio client,
# compression="deflate", in a process of its own pinned like the loadgen)
# opens them, each echoes one ~1 KiB compressible text message, holds, and
# echoes once more; RSS is read DEFLATE_SETTLE (7) s after the last of them
# opened (idle: polysocket gives a quiet connection's compressor back after
# 5 s). Server CPU per message (/proc/PID/stat) is reported
# beside the throughput. Rounds interleave the servers (order rotating);
# the median round is reported, with the ratio's range over rounds.
#
# The loadgen (one thread) is pinned to core LOADGEN_CPU (default 0), the
# servers to SERVER_CPU (default 1 on a machine with 2 or more cores; set it
# empty for no pinning). UVICORN_LEGACY=1 adds uvicorn's third, legacy
# implementation (--ws websockets). SKIP_SETUP=1 uses
# target/python-venv-asgi as it is (no venv check, no wheel build).
#
# Markdown on stdout (the tables of docs/BENCHMARKS.md), progress on stderr,
# raw JSON lines in $OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=${SERVER_CPU-1}; else SERVER_CPU=${SERVER_CPU-}; fi
DEFLATE_CONNS=${DEFLATE_CONNS:-2000}
DEFLATE_SETTLE=${DEFLATE_SETTLE:-7}
UVICORN_LEGACY=${UVICORN_LEGACY:-0}
SKIP_SETUP=${SKIP_SETUP:-0}

. scripts/lib/setup.sh
setup_init bench-asgi
. scripts/lib/bench.sh
# 10,000 idle connections (and the deflate row's client) need descriptors:
# bench_init raises the soft limit to the hard one and stops if that is
# below IDLE_CONNS + 256.
bench_init bench-asgi
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }

VENV="$ROOT/target/python-venv-asgi"
PY="$VENV/bin/python"
if [ "$SKIP_SETUP" != 1 ]; then
    {
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
        ensure_venv "$VENV" -r python/tests/requirements-asgi.txt
        python_package_current || python_package
        echo "== installing the polysocket wheel into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
            target/python/wheels/*.whl >>"$SETUP_LOG" 2>&1 || setup_failed
    } >&2
fi
"$PY" -c 'import polysocket.asgi, uvicorn, wsproto, websockets' \
    || { log "$VENV lacks polysocket.asgi, uvicorn, wsproto or websockets"; exit 1; }

log "building (release): loadgen"
cargo build --release -q -p polysocket-bench --bin loadgen >&2
LOADGEN="$BIN/loadgen"

UVICORN="$PY -m uvicorn examples.asgi.echo:app --log-level warning --ws-max-size 67108864 --no-access-log"
SERVERS=(polysocket websockets-sansio wsproto)
CMD[polysocket]="$UVICORN --ws polysocket.asgi:WebSocketProtocol --host 127.0.0.1 --port"
CMD[websockets-sansio]="$UVICORN --ws websockets-sansio --host 127.0.0.1 --port"
CMD[wsproto]="$UVICORN --ws wsproto --host 127.0.0.1 --port"
if [ "$UVICORN_LEGACY" = 1 ]; then
    SERVERS+=(websockets-legacy)
    CMD[websockets-legacy]="$UVICORN --ws websockets --host 127.0.0.1 --port"
fi
[ -n "$SERVER_CPU" ] && PIN=(taskset -c "$SERVER_CPU")

# The deflate row's client: N connections with permessage-deflate
# negotiated, each echoes one message, holds until the ready file is
# removed, echoes once more and closes. One JSON line on stdout.
DEFLATE_CLIENT="$OUT_DIR/deflate_idle.py"
cat > "$DEFLATE_CLIENT" <<'PY'
import asyncio, json, sys, time
from websockets.asyncio.client import connect

port, n, ready, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
tally = {"mode": "idle-deflate", "conns": n, "opened": 0, "negotiated": 0, "verified": 0,
         "errors": 0, "held_out": 0, "first_error": None}

def error(e):
    tally["errors"] += 1
    tally["first_error"] = tally["first_error"] or repr(e)[:200]

def message(i, round):
    # ~1 KiB of text that compresses, different on every connection.
    return f"{i}/{round} " + " ".join(f"item-{i}-{k}:{k * k % 97}" for k in range(90))

async def echo(ws, i, round):
    m = message(i, round)
    await ws.send(m)
    if await asyncio.wait_for(ws.recv(), 20) != m:
        raise ValueError("echo differs")

async def open_one(i, sem):
    async with sem:
        try:
            ws = await asyncio.wait_for(connect(
                f"ws://127.0.0.1:{port}/", compression="deflate", max_size=None,
                ping_interval=None, open_timeout=20, close_timeout=5), 30)
        except Exception as e:
            error(e)
            return None
        tally["opened"] += 1
        if any(type(x).__name__ == "PerMessageDeflate" for x in ws.protocol.extensions):
            tally["negotiated"] += 1
        try:
            await echo(ws, i, 0)
        except Exception as e:
            error(e)
        return ws

async def last(ws, i, sem):
    async with sem:
        try:
            await echo(ws, i, 1)
            tally["verified"] += 1
            await ws.close()
        except Exception as e:
            error(e)

async def main():
    t0 = time.monotonic()
    sem = asyncio.Semaphore(128)
    conns = await asyncio.gather(*(open_one(i, sem) for i in range(n)))
    tally["open_s"] = round(time.monotonic() - t0, 2)
    print(f"idle-deflate: {tally['opened']} open ({tally['negotiated']} with permessage-deflate) "
          f"in {tally['open_s']} s, errors {tally['errors']}", file=sys.stderr)
    import os
    with open(ready, "w") as f:
        f.write(f"{tally['opened']}\n")
    deadline = time.monotonic() + hold
    while os.path.exists(ready):
        if time.monotonic() > deadline:
            tally["held_out"] = 1
            os.remove(ready)
            break
        await asyncio.sleep(0.02)
    await asyncio.gather(*(last(ws, i, sem) for i, ws in enumerate(conns) if ws is not None))
    print(json.dumps(tally))

asyncio.run(main())
PY

deflate_client() { # PORT CONNS READY_FILE: idle_row's client for the deflate row
    "$PY" "$DEFLATE_CLIENT" "$1" "$2" "$3" 120
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
echo_rows "100x32:100:32" "100x4KiB:100:4096" "10x1MiB:10:1048576"
for s in "${SERVERS[@]}"; do stop "$s"; done

for s in "${SERVERS[@]}"; do idle_row "$s" "$IDLE_CONNS"; done
if [ "$DEFLATE_CONNS" -gt 0 ]; then
    # Idle means quiet for a while: polysocket gives a connection's
    # compressor back after 5 s without a message (the same wait for all).
    for s in "${SERVERS[@]}"; do
        idle_row "$s" "$DEFLATE_CONNS" idle-deflate "$DEFLATE_SETTLE" deflate_client
    done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- python/polysocket python/src core/src 2>/dev/null || echo '+changes')"
SERVER_LIST="${SERVERS[*]}"
export RESULTS ROUNDS DURATION WARMUP SERVER_CPU LOADGEN_CPU IDLE_CONNS DEFLATE_CONNS LOAD_BEFORE LOAD_AFTER ELAPSED
export COMMIT SERVER_LIST
"$PY" - <<'PY'
import importlib.metadata as md, json, os, platform, statistics, subprocess
rows = [json.loads(l) for l in open(os.environ["RESULTS"]) if l.strip()]
E = os.environ
PS = "polysocket"
ALL = E["SERVER_LIST"].split()
UV = [s for s in ALL if s != PS]
ECHO = (("100x32", "100 conns × 32 B"), ("100x4KiB", "100 conns × 4 KiB"), ("10x1MiB", "10 conns × 1 MiB"))
TARGET = 1.3

def pick(row, s): return [r for r in rows if r["row"] == row and r["server"] == s]
def med(row, s, key):
    v = [r[key] for r in pick(row, s) if r.get(key) is not None]
    return statistics.median(v) if v else None
def fmt(v, d=0): return "—" if v is None else f"{v:,.{d}f}"
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
def per_round(row, key, other, invert=False):
    per = []
    for rnd in sorted({r["round"] for r in rows if r["row"] == row}):
        a = next((r[key] for r in pick(row, PS) if r["round"] == rnd), None)
        b = next((r[key] for r in pick(row, other) if r["round"] == rnd), None)
        if a and b:
            per.append(b / a if invert else a / b)
    return per
def ratio(per):
    if not per:
        return "—"
    m = statistics.median(per)
    return f"**{m:.2f}** ({min(per):.2f}–{max(per):.2f})" if len(per) > 1 else f"**{m:.2f}**"
def best(row, key, low=False):
    """The uvicorn implementation with the best median on this row."""
    have = [(med(row, s, key), s) for s in UV if med(row, s, key) is not None]
    if not have:
        return None
    return (min if low else max)(have)[1]
def ver(p):
    try:
        return md.version(p)
    except md.PackageNotFoundError:
        return None

from uvicorn.protocols.http.auto import AutoHTTPProtocol
http = {"HttpToolsProtocol": f"httptools {ver('httptools')}", "H11Protocol": f"h11 {ver('h11')}"}.get(
    AutoHTTPProtocol.__name__, AutoHTTPProtocol.__name__)
loop = f"uvloop {ver('uvloop')}" if ver("uvloop") else "asyncio"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
pin = f"pinned to core {E['SERVER_CPU']}" if E["SERVER_CPU"] else "not pinned"
print(f"Machine: {os.cpu_count()} cores \"{cpu}\", kernel {platform.release()}, Python {platform.python_version()}, "
      f"{sh('rustc --version')}. Load average {E['LOAD_BEFORE']} before, {E['LOAD_AFTER']} after; {E['ELAPSED']} s.")
print(f"uvicorn {ver('uvicorn')} with its defaults `--http auto` → {http}, `--loop auto` → {loop}, for every server; "
      f"websockets {ver('websockets')}, wsproto {ver('wsproto')}, polysocket {ver('polysocket')} (commit {E['COMMIT']}). "
      f"Servers {pin}, loadgen pinned to core {E['LOADGEN_CPU']}. {E['ROUNDS']} rounds × {E['DURATION']} s per server "
      f"and row, interleaved; median round. Echo messages are binary and uncompressed (the loadgen offers no extension).")
print()
head = " | ".join(ALL)
print(f"| row | {head} | **polysocket / faster uvicorn** (range) | target ≥ {TARGET} |")
print("|---|" + "---|" * len(ALL) + "---|---|")
for row, label in ECHO:
    cells = [fmt(med(row, s, "msgs_per_s")) + " msg/s" for s in ALL]
    b = best(row, "msgs_per_s")
    per = per_round(row, "msgs_per_s", b) if b else []
    met = "—" if not per else ("met" if statistics.median(per) >= TARGET else "**missed**")
    print(f"| {label} | " + " | ".join(cells) + f" | {ratio(per)} vs {b} | {met} |")
print()
print("Server CPU per message (the uvicorn process, µs; lower is better), and the ratio computed from it "
      "(the cheaper uvicorn implementation's µs / polysocket's µs, so > 1 means polysocket is cheaper):")
print()
print(f"| row | {head} | **cheaper uvicorn µs / polysocket µs** (range) |")
print("|---|" + "---|" * len(ALL) + "---|")
for row, label in ECHO:
    cells = [fmt(med(row, s, "server_cpu_us_per_msg"), 2) for s in ALL]
    b = best(row, "server_cpu_us_per_msg", low=True)
    per = per_round(row, "server_cpu_us_per_msg", b, invert=True) if b else []
    print(f"| {label} | " + " | ".join(cells) + f" | {ratio(per)} vs {b} |")

def idle_table(row, n, extra):
    if not any(pick(row, s) for s in ALL):
        return
    print()
    print(f"| {int(n):,} idle connections{extra} | RSS before | RSS with them open | **KiB per connection** | "
          f"polysocket / it | echoed after the hold | errors |")
    print("|---|---|---|---|---|---|---|")
    ps = next(iter(pick(row, PS)), None)
    for s in ALL:
        r = next(iter(pick(row, s)), None)
        if not r:
            continue
        rel = "—"
        if s != PS and ps and ps.get("kib_per_conn") and r.get("kib_per_conn"):
            rel = f"{ps['kib_per_conn'] / r['kib_per_conn']:.2f}"
        neg = f" ({int(r['negotiated']):,} with permessage-deflate)" if "negotiated" in r else ""
        print(f"| {s} | {r['rss_base_kib']:,} KiB | {r['rss_idle_kib']:,} KiB | **{fmt(r.get('kib_per_conn'), 2)}** | "
              f"{rel} | {int(r['verified']):,} / {int(r['opened']):,}{neg} | {int(r['errors'])} |")
    others = [r.get("kib_per_conn") for s in UV for r in pick(row, s)]
    if ps and ps.get("kib_per_conn") and others and all(others):
        verdict = "met" if all(ps["kib_per_conn"] < o for o in others) else "**missed**"
        print()
        print(f"Target (less memory per idle connection than each of uvicorn's): {verdict} — polysocket "
              f"{ps['kib_per_conn']:.2f} KiB against " + ", ".join(f"{o:.2f}" for o in others) + " KiB.")

idle_table("idle", E["IDLE_CONNS"], " (no extension: the loadgen offers none)")
idle_table("idle-deflate", E["DEFLATE_CONNS"], ", permessage-deflate (websockets client)")
errors = sum(int(r.get("errors", 0)) for r in rows)
print()
print(f"Errors over all runs: {errors}.")
firsts = sorted({f"{r['server']} {r['row']}: {r['first_error']}" for r in rows if r.get("first_error")})
for f in firsts[:10]:
    print(f"- {f}")
PY
log "raw results: $RESULTS"
