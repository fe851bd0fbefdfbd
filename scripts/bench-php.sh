#!/usr/bin/env bash
# PHP extension benchmark: echo through a PHP onData that calls
# $client->send($data) (examples/php/echo.php on polysocket.so) against the
# native Rust echo server (core/examples/echo.rs) and a pure-PHP
# stream_select echo in php-websocket's design (benches/php/select_echo.php,
# a peer, not polysocket), all started by this run and driven by the same
# loadgen (benches/). Then 10,000 idle connections on the extension, and a
# broadcast to 1,000 clients from one onData (benches/php/broadcast.py).
#
#   scripts/bench-php.sh                      # about 3 minutes once built
#   ROUNDS=1 DURATION=1 scripts/bench-php.sh  # quick look
#
# Fairness as in scripts/bench-runtime.sh: every server pinned to core
# SERVER_CPU (default 1) with one runtime worker (the extension's runtime
# runs on its PHP thread), the loadgen pinned to
# LOADGEN_CPU (0); rounds rotate the servers' order; the median round is
# reported with the ratio's range over rounds. Markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

SERVER_CPU=${SERVER_CPU:-1}
. scripts/lib/bench.sh
bench_init bench-php

log "building (release)"
cargo build --release -q -p polysocket --features runtime --example echo >&2
cargo build --release -q -p polysocket-bench --bins >&2
cargo build --release -q -p polysocket-php >&2
cp "$BIN/libpolysocket_php.so" "$BIN/polysocket.so"
LOADGEN="$BIN/loadgen"
PY=${PYTHON:-target/php-venv/bin/python}   # scripts/test-php.sh makes it

SERVERS=(native php-ext php-select)
CMD[native]="$BIN/examples/echo --host 127.0.0.1 --workers 1 --port"
CMD[php-ext]="php -n -d extension=$BIN/polysocket.so examples/php/echo.php --port"
CMD[php-select]="php -n benches/php/select_echo.php --port"
CMD[php-bcast]="php -n -d extension=$BIN/polysocket.so benches/php/broadcast_server.php --port"
PIN=(taskset -c "$SERVER_CPU")

T0=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SERVERS[@]}"; do start "$s"; done
warm_up
echo_rows "100x32:100:32" "100x4KiB:100:4096" "10x1MiB:10:1048576" "1000x32:1000:32"
for s in "${SERVERS[@]}"; do stop "$s"; done

# 10,000 idle connections on the extension (select() stops at 1,024).
idle_row php-ext "$IDLE_CONNS"

# Broadcast to 1,000 clients from one onData.
start php-bcast
for how in b l; do
    "$PY" benches/php/broadcast.py --port "${PORT[php-bcast]}" --how "$how" \
        | jq -c '. + {row: "broadcast", server: "php-bcast", round: 1}' >> "$RESULTS"
done
stop php-bcast
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

export RESULTS ROUNDS DURATION LOAD_BEFORE LOAD_AFTER ELAPSED IDLE_CONNS
python3 - <<'PY'
import json, os, statistics
rows = [json.loads(l) for l in open(os.environ["RESULTS"]) if l.strip()]
E = os.environ
def pick(row, server): return [r for r in rows if r["row"] == row and r["server"] == server]
def med(row, server, key):
    v = [r[key] for r in pick(row, server) if r.get(key) is not None]
    return statistics.median(v) if v else None
def fmt(v, d=0): return "—" if v is None else f"{v:,.{d}f}"
print(f"Command: `scripts/bench-php.sh` (ROUNDS={E['ROUNDS']}, DURATION={E['DURATION']} s; "
      f"{E['ELAPSED']} s; load average before {E['LOAD_BEFORE']}, after {E['LOAD_AFTER']}).\n")
print("| row | native Rust echo | PHP extension | pure-PHP stream_select (peer) | **extension / native** (range over rounds) | server CPU µs/msg (native / ext / select) | errors (native / ext / select) |")
print("|---|---|---|---|---|---|---|")
for row in ["100x32", "100x4KiB", "10x1MiB", "1000x32"]:
    n, x, s = (med(row, k, "msgs_per_s") for k in ("native", "php-ext", "php-select"))
    ratios = []
    for rnd in range(1, int(E["ROUNDS"]) + 1):
        a = [r["msgs_per_s"] for r in pick(row, "php-ext") if r["round"] == rnd]
        b = [r["msgs_per_s"] for r in pick(row, "native") if r["round"] == rnd]
        if a and b and b[0]: ratios.append(a[0] / b[0])
    rng = f" ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else ""
    ratio = f"**{x / n:.2f}**{rng}" if (n and x) else "—"
    cpu = " / ".join(fmt(med(row, k, "server_cpu_us_per_msg"), 2) for k in ("native", "php-ext", "php-select"))
    err = " / ".join(fmt(sum(r.get("errors", 0) for r in pick(row, k))) if pick(row, k) else "failed"
                     for k in ("native", "php-ext", "php-select"))
    unit = " msg/s"
    print(f"| {row.replace('x', ' conns × ')} | {fmt(n)}{unit} | {fmt(x)}{unit} | {fmt(s)}{unit} | {ratio} | {cpu} | {err} |")
idle = pick("idle", "php-ext")
if idle:
    i = idle[0]
    per = (i["rss_idle_kib"] - i["rss_base_kib"]) / i["opened"] if i.get("opened") else None
    print(f"\nIdle: {fmt(i.get('opened'))} of {E['IDLE_CONNS']} connections opened and held by the "
          f"extension, then each echoed once (errors {i.get('errors')}); RSS {fmt(i['rss_base_kib'])} → "
          f"{fmt(i['rss_idle_kib'])} KiB ({fmt(per, 2)} KiB per connection).")
bc = {r["how"]: r for r in pick("broadcast", "php-bcast")}
if bc:
    print("\n| broadcast, 1,000 clients × 32 B, one onData | onData time (median, µs) | end to end (Python client bound) |")
    print("|---|---|---|")
    for how, label in (("b", "`\\WebSocket\\Server::broadcast($clients, $msg)` (encoded once)"),
                       ("l", "`foreach ($clients as $c) $c->send($msg)`")):
        if how in bc:
            r = bc[how]
            print(f"| {label} | {fmt(r['on_data_us_median'])} | {fmt(r['deliveries_per_s'])} deliveries/s |")
PY
