#!/usr/bin/env bash
# Scale (issue 14, point 1): many concurrent connections on every face, on
# a mix of drafts (hixie-75, hixie-76, hybi-07, RFC 6455), each handshaken,
# held idle while the server's memory is read, then each echoing a message.
#
#   scripts/scale.sh                      # 19,000 connections on each face, one process each
#   FACES=rust CONNS=2000 scripts/scale.sh
#   SPREAD=6 CONNS=100000 FACES=python scripts/scale.sh
#                                         # 100,000 over 6 server processes on one port
#
# Faces: rust (core/examples/echo.rs), python (`python -m polysocket echo`,
# the standalone server; with SPREAD=N, `--processes N` on one port through
# SO_REUSEPORT), php (examples/php/echo.php). The load comes from
# tests/harness/scale_client.py processes of at most PER_GEN connections
# each (this machine's descriptor limit is 20,000 per process), from source
# addresses 127.0.0.2, .3, … (about 28,000 ephemeral ports per address on
# loopback), round-robin.
#
# Per face: the servers' RSS (summed over their processes) after a warm-up
# and with every connection open, the kernel's memory for them reported
# apart (the growth of /proc/meminfo `Slab` plus /proc/net/sockstat's TCP
# `mem` pages: socket structures and buffers of both ends of every
# connection, the generators' included; the machine's other activity moves
# it too), and whether every connection echoed. Exits non-zero if a
# connection failed or a face's server RSS per connection is above its
# target (MAX_KIB_RUST, MAX_KIB_SCRIPTED).
# Needs: the release echo example, the venv of scripts/test-python-tornado.sh
# (or PY=...), the PHP extension (`cargo build --release -p polysocket-php`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

FACES=${FACES:-rust python php}
CONNS=${CONNS:-19000}
SPREAD=${SPREAD:-1}
PER_GEN=${PER_GEN:-15000}
# The targets, server RSS per connection: 3 KiB for the Rust runtime, 5 for
# the Python and PHP servers.
MAX_KIB_RUST=${MAX_KIB_RUST:-3}
MAX_KIB_SCRIPTED=${MAX_KIB_SCRIPTED:-5}
PY=${PY:-$ROOT/target/python-venv-tornado/bin/python}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/scale.XXXXXX)}
mkdir -p "$OUT_DIR"
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PHP_EXT=${PHP_EXT:-$TARGET/release/libpolysocket_php.so}
log() { echo "[scale] $*" >&2; }

ulimit -n "$(ulimit -Hn)"
STARTED=()
cleanup() { local p; for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_sum() { # KiB: VmRSS of the PIDs given
    local p t=0
    for p in "$@"; do t=$((t + $(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    echo "$t"
}
kernel_kib() { # the kernel's slab (socket structures) plus TCP buffer pages
    local slab tcp
    slab=$(awk '/^Slab:/{print $2}' /proc/meminfo)
    tcp=$(awk '/^TCP:/{for(i=1;i<NF;i++) if($i=="mem") print $(i+1)}' /proc/net/sockstat)
    echo $((slab + tcp * 4))
}
json_lines() { # EXPR over R, the JSON lines on stdin
    python3 -c 'import json, sys; R = [json.loads(l) for l in sys.stdin if l.strip()]; print(eval(sys.argv[1]))' "$1"
}
descendants() { # a PID and its children (the --processes launcher's servers)
    echo "$1"; pgrep -P "$1" || true
}

start_face() { # FACE PORT: starts it in the background, sets SERVER
    local face=$1 port=$2
    case $face in
    rust)
        exec "$TARGET/release/examples/echo" --host 127.0.0.1 --port "$port" ;;
    python)
        exec "$PY" -m polysocket echo --host 127.0.0.1 --port "$port" --processes "$SPREAD" ;;
    php)
        exec php -n -d extension="$PHP_EXT" examples/php/echo.php --host 127.0.0.1 --port "$port" ;;
    esac > "$OUT_DIR/$face.log" 2>&1 &
    SERVER=$!
    STARTED+=("$SERVER")
    for _ in $(seq 1 200); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    log "$face did not start:"; cat "$OUT_DIR/$face.log" >&2; exit 1
}

run_face() {
    [ "$1" = rust ] && cargo build -q --release -p polysocket --features runtime --example echo
    [ "$1" = php ] && [ "$PHP_EXT" = "$TARGET/release/libpolysocket_php.so" ] \
        && cargo build -q --release -p polysocket-php
    local face=$1 port gens i n base held tcp0 tcp1 pids status=0
    port=$(free_port)
    start_face "$face" "$port"
    sleep $((SPREAD > 1 ? 3 : 1))
    # Warm-up: a few connections of every draft, so that what a server
    # allocates once (buffers, code paths) is in the baseline.
    python3 tests/harness/scale_client.py --port "$port" --conns 64 --ready-file "$OUT_DIR/warm" \
        --hold-timeout 0 > /dev/null
    sleep 1
    mapfile -t pids < <(descendants "$SERVER")
    base=$(rss_sum "${pids[@]}")
    tcp0=$(kernel_kib)
    gens=$(((CONNS + PER_GEN - 1) / PER_GEN))
    log "$face: ${#pids[@]} server process(es) on port $port, $CONNS connections from $gens generator(s)"
    local gen_pids=()
    for i in $(seq 0 $((gens - 1))); do
        n=$((CONNS / gens + (i < CONNS % gens ? 1 : 0)))
        rm -f "$OUT_DIR/ready-$i"
        python3 tests/harness/scale_client.py --port "$port" --conns "$n" --ready-file "$OUT_DIR/ready-$i" \
            --source "127.0.0.$((2 * i + 2)),127.0.0.$((2 * i + 3))" --hold-timeout 600 \
            > "$OUT_DIR/$face-gen-$i.json" 2> "$OUT_DIR/$face-gen-$i.err" &
        gen_pids+=("$!")
        STARTED+=("$!")
    done
    for i in $(seq 0 $((gens - 1))); do
        until [ -s "$OUT_DIR/ready-$i" ]; do
            kill -0 "${gen_pids[$i]}" 2>/dev/null || { log "generator $i died:"; cat "$OUT_DIR/$face-gen-$i.err" >&2; exit 1; }
            sleep 0.5
        done
    done
    sleep 2 # let the servers settle
    held=$(rss_sum "${pids[@]}")
    tcp1=$(kernel_kib)
    local open_s
    open_s=$(cat "$OUT_DIR"/ready-* | json_lines 'round(max(r["open_s"] for r in R), 1)')
    rm -f "$OUT_DIR"/ready-*
    for p in "${gen_pids[@]}"; do wait "$p" || status=1; done
    local opened echoed errors first
    opened=$(cat "$OUT_DIR/$face"-gen-*.json | json_lines 'sum(r["opened"] for r in R)')
    echoed=$(cat "$OUT_DIR/$face"-gen-*.json | json_lines 'sum(r["echoed"] for r in R)')
    errors=$(cat "$OUT_DIR/$face"-gen-*.json | json_lines 'sum(r["errors"] for r in R)')
    first=$(cat "$OUT_DIR/$face"-gen-*.json | json_lines 'next((r["first_error"] for r in R if r["first_error"]), "")')
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    local per_conn tcp_per
    per_conn=$(python3 -c "print(f'{($held - $base) / max($opened, 1):.2f}')")
    tcp_per=$(python3 -c "print(f'{($tcp1 - $tcp0) / max($opened, 1):.2f}')")
    echo "| $face | ${#pids[@]} | $CONNS | $opened | ${open_s} s | $base | $held | **$per_conn** | $tcp_per | $echoed | $errors |"
    [ -n "$first" ] && log "$face: first error: $first"
    if [ "$opened" != "$CONNS" ] || [ "$echoed" != "$CONNS" ] || [ "$errors" != 0 ]; then
        log "$face: $opened of $CONNS opened, $echoed echoed, $errors errors"; status=1
    fi
    local max=$MAX_KIB_SCRIPTED
    [ "$face" = rust ] && max=$MAX_KIB_RUST
    if python3 -c "import sys; sys.exit(not $per_conn > $max)"; then
        log "$face: $per_conn KiB per connection is above its target, $max"; status=1
    fi
    return $status
}

echo "Load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; descriptor limit $(ulimit -n) per process."
echo
echo "| face | server processes | connections | opened | opening took | server RSS before (KiB) | with them (KiB) | **KiB per connection** | kernel (slab + TCP buffers), KiB per connection, both ends | echoed | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
status=0
for face in $FACES; do run_face "$face" || status=1; done
log "logs: $OUT_DIR"
exit $status
