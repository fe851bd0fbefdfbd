#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: the
# server runs under valgrind while the loadgen drives it. Unlike a
# throughput run, the count hardly depends on what else the machine is
# doing (repeat runs agree within 0.1 %), so it shows a change of a few
# percent in the server's own work that throughput noise would hide. The
# kernel's share (most of the time at 32 B) is not in it. Only the steady
# state is counted: callgrind instruments the server from SETTLE seconds
# after the loadgen starts, for DURATION seconds.
#
#   scripts/bench-instructions.sh                    # polysocket and fastwebsockets, 100 x 32 B
#   CONNS=1000 SIZE=32 CACHE=1 scripts/bench-instructions.sh   # with simulated L1 misses
#   SERVERS=polysocket TOP=30 scripts/bench-instructions.sh    # the 30 costliest functions
#
# Needs valgrind (apt install valgrind). Prints, per server, instructions
# (and with CACHE=1 L1 read misses) per message and the TOP functions by
# their own instructions; callgrind's files stay in $OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v valgrind > /dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 1; }

CONNS=${CONNS:-100}
SIZE=${SIZE:-32}
DURATION=${DURATION:-3}
SETTLE=${SETTLE:-3}
TOP=${TOP:-15}
SERVERS=${SERVERS:-"polysocket fastwebsockets"}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/bench-instructions.XXXXXX)}
mkdir -p "$OUT_DIR"

cargo build --release -q -p polysocket --features runtime --example echo >&2
cargo build --release -q -p polysocket-bench --bins >&2
BIN=${CARGO_TARGET_DIR:-target}/release
declare -A CMD=([polysocket]="$BIN/examples/echo" [fastwebsockets]="$BIN/echo-fastwebsockets"
                [tokio-tungstenite]="$BIN/echo-tungstenite")
OPTS=()
[ "${CACHE:-0}" = 1 ] && OPTS+=(--cache-sim=yes)

for s in $SERVERS; do
    out="$OUT_DIR/callgrind.$s"
    port=$((20000 + RANDOM % 20000))
    valgrind --tool=callgrind --instr-atstart=no "${OPTS[@]}" --callgrind-out-file="$out" \
        "${CMD[$s]}" --host 127.0.0.1 --workers 1 --port "$port" > /dev/null 2> "$OUT_DIR/$s.log" &
    pid=$!
    # Under valgrind the server takes a while to listen.
    for _ in $(seq 1 100); do
        (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
        sleep 0.1
    done
    # Counted only in the steady state: connection set-up and the first
    # messages (cold caches, growing buffers) stay out of the figures.
    "$BIN/loadgen" echo --port "$port" --conns "$CONNS" --size "$SIZE" \
        --duration "$((SETTLE + DURATION + 1))" --warmup 0.5 > "$OUT_DIR/$s.json" 2>> "$OUT_DIR/$s.log" &
    lg=$!
    sleep "$SETTLE"
    callgrind_control -i on "$pid" > /dev/null 2>&1
    sleep "$DURATION"
    callgrind_control -i off "$pid" > /dev/null 2>&1
    wait "$lg"
    # SIGINT stops polysocket's example cleanly; the peers may need more
    # (callgrind writes its file on SIGINT and SIGTERM).
    for sig in INT TERM KILL; do
        kill "-$sig" "$pid" 2> /dev/null || break
        for _ in $(seq 1 50); do kill -0 "$pid" 2> /dev/null || break 2; sleep 0.1; done
    done
    wait "$pid" 2> /dev/null || true
    python3 - "$out" "$s" "$TOP" <<'PY'
import re, subprocess, sys
path, server, top = sys.argv[1], sys.argv[2], int(sys.argv[3])
def annotate(*args):
    return subprocess.run(["callgrind_annotate", *args, path], capture_output=True, text=True).stdout
# Messages: the calls of libc's send (one per echo at this size).
calls = [int(m.group(1).replace(",", "")) for m in
         re.finditer(r"< \S*send\.c:send \(([\d,]+)x\)", annotate("--tree=caller"))]
if not calls:
    sys.exit(f"{server}: no send() calls found")
msgs = max(calls)
events = annotate().split("\n")
shown = next(l for l in events if l.startswith("Events shown")).split()[2:]
totals = next(l for l in events if "PROGRAM TOTALS" in l)
values = [int(v.replace(",", "")) for v in re.findall(r"([\d,]+) \(", totals)]
per = dict(zip(shown, (v / msgs for v in values)))
line = f"{server}: {per['Ir']:,.0f} instructions per message over {msgs:,} messages"
if "D1mr" in per:
    line += f"; L1 misses per message: data {per['D1mr']:.1f} read / {per['D1mw']:.1f} write, instructions {per['I1mr']:.1f}"
print(line)
for l in events:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(?:[\d,]+ \([^)]*\)\s+)*(.*)", l)
    if m and "PROGRAM TOTALS" not in l and top > 0:
        name = re.sub(r"\s*\[.*$", "", m.group(2)).replace("???:", "")
        print(f"  {int(m.group(1).replace(',', '')) / msgs:8.0f}  {name[:120]}")
        top -= 1
PY
done
echo "callgrind files: $OUT_DIR" >&2
