#!/usr/bin/env bash
# Cluster fan-out benchmark (issue 13): for every system, NODES node
# processes on one real redis-server, SUBS WebSocket subscribers spread
# over them round-robin and one publisher on the first node, all driven by
# benches/src/bin/fanout.rs (every message checked once and in order by
# every subscriber).
#
#   scripts/bench-cluster.sh                       # 3 nodes x 1000 subscribers each, 3 rounds
#   ROUNDS=1 SUBS=300 scripts/bench-cluster.sh     # quick look
#   ONLY="socketio-redis" scripts/bench-cluster.sh # some systems only
#   NODES=1 ONLY="polysocket-rust polysocket-rust-local" scripts/bench-cluster.sh
#                                                  # the bus's cost on one node
#
# Rows, per system and round: `max` (the publisher as fast as a window of
# WINDOW messages ahead of the slowest subscriber allows: the most the
# cluster delivers; its latency is mostly the window's queue), then `paced`
# (a fixed publish rate, PACED x the message rate the same round's `max`
# delivered: latency below saturation), and with RATE=R an `equal` row (R
# messages/s published on every system: latencies compared at one load). A `sanity` row with SANITY_SUBS
# subscribers runs first for each system. Last, unless LOSS_CHECK=0, a
# `kill-node` row shows the generator sees loss: SANITY_SUBS subscribers on
# the first system, whose last node is SIGKILLed mid-run (lost and errors
# must be > 0; the node is restarted).
# Rounds rotate the systems' order. Nothing is pinned: nodes, Redis and
# the generator share the machine's cores (say so when quoting numbers).
#
# Writes the JSON lines to benches/results/cluster-$TAG.jsonl and the table
# (printed on stdout too) to benches/results/cluster-$TAG.md; progress on
# stderr; node and generator logs in $OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

NODES=${NODES:-3}
SUBS=${SUBS:-3000}
SANITY_SUBS=${SANITY_SUBS:-300}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
WINDOW=${WINDOW:-32}
SIZE=${SIZE:-64}
PACED=${PACED:-0.5}
RATE=${RATE:-} # msg/s: an `equal` row per round at this publish rate for every system
GEN_THREADS=${GEN_THREADS:-1} # the generator's threads (1: one core's worth)
ONLY=${ONLY:-}
TAG=${TAG:-$(date -u +%Y%m%d-%H%M)}
IDLE_CONNS=$SUBS # bench_init checks the descriptor limit against it
. scripts/lib/bench.sh
bench_init bench-cluster
JSONL=benches/results/cluster-$TAG.jsonl
TABLE=benches/results/cluster-$TAG.md

# ---- Systems ---------------------------------------------------------------
# A system is one `add_system NAME PROTO PATH NODE_FUNCTION` line: PROTO is
# the generator's --proto (plain: a node broadcasts every text message a
# client sends, the sender included; socketio: Socket.IO 4 events), PATH the
# WebSocket path on every node, NODE_FUNCTION a function that `exec`s one
# node in the foreground on port $1 (the script runs it in the background,
# records its PID, waits for the port, stops it by PID). $REDIS_URL is the
# run's Redis.
declare -A PROTO WSPATH NODE_FN URLS NODE_PIDS
SYSTEMS=()
add_system() {
    if [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; then
        SYSTEMS+=("$1"); PROTO[$1]=$2; WSPATH[$1]=$3; NODE_FN[$1]=$4
    fi
}

node_socketio() {
    NODE_PATH="$PWD/target/bench-node/node_modules" exec node benches/cluster/socketio/server.js \
        --host 127.0.0.1 --port "$1" --cluster "$REDIS_URL"
}
node_django() {
    exec env REDIS_URL="$REDIS_URL" target/bench-django-venv/bin/uvicorn fanout_site.asgi:application \
        --app-dir benches/cluster/django --host 127.0.0.1 --port "$1" --log-level warning --no-access-log
}
# polysocket's own nodes: the cluster chat example (core/examples/chat_node.rs,
# `cargo build --release -p polysocket --features cluster --example
# chat_node`), room at /chat. The generator finds its messages inside the
# JSON events a node wraps them in and counts the rest (join and leave
# notices) as `other`; note that a chat node announcing every join to the
# room sends ~S²/2 notices (4.5 M for 3,000) while the subscribers connect.
CHAT_PATH=${CHAT_PATH:-/chat}
node_polysocket_rust() {
    exec "$BIN/examples/chat_node" --host 127.0.0.1 --port "$1" \
        --cluster "$REDIS_URL" --namespace bench
}

add_system socketio-redis socketio / node_socketio
add_system django-channels plain /ws node_django
node_polysocket_rust_local() {
    exec "$BIN/examples/chat_node" --host 127.0.0.1 --port "$1"
}
if [ -x "$BIN/examples/chat_node" ]; then
    add_system polysocket-rust plain "$CHAT_PATH" node_polysocket_rust
    # One node alone (no bus), for the cost of the bus: compare its node CPU
    # per delivery with polysocket-rust's at NODES=1.
    [ "$NODES" = 1 ] && add_system polysocket-rust-local plain "$CHAT_PATH" node_polysocket_rust_local
fi
# The Python chat demo (python/polysocket/demo/chat.py: one Python call per
# published message, fan-out in Rust) from the venv of
# scripts/test-python-tornado.sh, and the PHP chat node
# (examples/php/chat_node.php, the same) with the extension that
# `cargo build --release -p polysocket-php` makes; each joins when its build
# is there. Same room, path and JSON events as the Rust node.
PS_PY=${PS_PY:-target/python-venv-tornado/bin/python}
PS_PHP_EXT=${PS_PHP_EXT:-$BIN/libpolysocket_php.so}
node_polysocket_python() {
    exec "$PS_PY" -m polysocket chat --host 127.0.0.1 --port "$1" --max-connections 20000 \
        --cluster "$REDIS_URL" --namespace bench
}
node_polysocket_php() {
    exec php -n -d extension="$PS_PHP_EXT" examples/php/chat_node.php --host 127.0.0.1 --port "$1" \
        --cluster "$REDIS_URL" --namespace bench
}
if [ -x "$PS_PY" ] && "$PS_PY" -c 'import polysocket' 2> /dev/null; then
    add_system polysocket-python plain "$CHAT_PATH" node_polysocket_python
fi
if [ -f "$PS_PHP_EXT" ] && command -v php > /dev/null; then
    add_system polysocket-php plain "$CHAT_PATH" node_polysocket_php
fi
# ------------------------------------------------------------------------------

install_anchors() {
    command -v redis-server > /dev/null || { log "installing redis-server"; apt-get install -y redis-server >&2; }
    if [[ " ${SYSTEMS[*]} " == *" socketio-redis "* ]] &&
        ! cmp -s benches/cluster/socketio/package-lock.json target/bench-node/package-lock.json; then
        log "npm ci: Socket.IO + redis adapter into target/bench-node"
        mkdir -p target/bench-node
        cp benches/cluster/socketio/package.json benches/cluster/socketio/package-lock.json target/bench-node/
        (cd target/bench-node && npm ci --no-audit --no-fund >&2)
    fi
    local venv=target/bench-django-venv req=benches/cluster/django/requirements.txt
    if [[ " ${SYSTEMS[*]} " == *" django-channels "* ]] && ! cmp -s "$req" "$venv/requirements.txt"; then
        log "pip: Django Channels + channels_redis + uvicorn into $venv"
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install -q -r "$req" >&2
        cp "$req" "$venv/requirements.txt"
    fi
}

wait_port() { # PORT PID: true once the port accepts, false if PID dies or 30 s pass
    for _ in $(seq 1 300); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_system() {
    local s=$1 i port urls=() pids=()
    for i in $(seq 1 "$NODES"); do
        port=$(free_port)
        "${NODE_FN[$s]}" "$port" > "$OUT_DIR/$s-$i.log" 2>&1 &
        STARTED+=("$!")
        pids+=("$!")
        urls+=("ws://127.0.0.1:$port${WSPATH[$s]}")
        wait_port "$port" "$!" || { log "$s node $i did not start:"; cat "$OUT_DIR/$s-$i.log" >&2; exit 1; }
    done
    URLS[$s]=$(IFS=,; echo "${urls[*]}")
    NODE_PIDS[$s]=$(IFS=,; echo "${pids[*]}")
    log "$s: pids ${NODE_PIDS[$s]}, ${URLS[$s]}"
}

stop_system() {
    local p
    for p in ${NODE_PIDS[$1]//,/ }; do kill "$p" 2>/dev/null || true; done
    for p in ${NODE_PIDS[$1]//,/ }; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

cpu_ticks() { # total utime + stime of the PIDs in $1 (comma-separated)
    local p t=0
    for p in ${1//,/ }; do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

wait_idle() { # until the system's nodes use < 5 % of a core over 0.5 s (at most 60 s):
    # what a run leaves behind (a backlog, leave notices) must not overlap the next run
    local a b i
    for i in $(seq 1 120); do
        a=$(cpu_ticks "${NODE_PIDS[$1]}"); sleep 0.5; b=$(cpu_ticks "${NODE_PIDS[$1]}")
        [ $((b - a)) -le 2 ] && { [ "$i" -gt 1 ] && log "$1 idle after $((i / 2)) s"; return 0; }
    done
    log "$1 still busy after 60 s"
}

alive() { local p n=0; for p in ${NODE_PIDS[$1]//,/ }; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo "$n"; }

fanout() { # ROW ROUND SYSTEM ARGS...: one generator run, its JSON line tagged and kept
    # (not in a subshell: it may restart the system)
    local row=$1 round=$2 s=$3 line n
    shift 3
    line=$("$BIN/fanout" --proto "${PROTO[$s]}" --nodes "${URLS[$s]}" --pids "${NODE_PIDS[$s]}" \
        --redis-pid "$REDIS_PID" --window "$WINDOW" --size "$SIZE" --warmup "$WARMUP" \
        --duration "$DURATION" --threads "$GEN_THREADS" "$@" 2>> "$OUT_DIR/fanout.log") ||
        log "fanout: $row round $round on $s failed"
    n=$(alive "$s")
    wait_idle "$s"
    [ -n "$line" ] && jq -c --arg row "$row" --arg system "$s" --argjson round "$round" --argjson alive "$n" \
        '. + {row: $row, system: $system, round: $round, nodes_alive: $alive}' <<< "$line" >> "$RESULTS"
    if [ "$n" -lt "$NODES" ]; then
        log "$s: only $n of $NODES nodes alive after $row round $round; restarting them"
        stop_system "$s"; start_system "$s"
    fi
}

install_anchors
log "building the generator (release)"
cargo build --release -p polysocket-bench --bin fanout >&2

REDIS_PORT=$(free_port)
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > "$OUT_DIR/redis.log" 2>&1 &
REDIS_PID=$!
STARTED+=("$REDIS_PID")
wait_port "$REDIS_PORT" "$REDIS_PID" || { log "redis-server did not start"; cat "$OUT_DIR/redis.log" >&2; exit 1; }
log "redis-server $(redis-server --version | grep -o 'v=[0-9.]*'): pid $REDIS_PID, $REDIS_URL"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for s in "${SYSTEMS[@]}"; do start_system "$s"; done
for s in "${SYSTEMS[@]}"; do
    log "sanity: $s, $SANITY_SUBS subscribers"
    fanout sanity 0 "$s" --subs "$SANITY_SUBS"
done
SERVERS=("${SYSTEMS[@]}") # rotate's list
for round in $(seq 1 "$ROUNDS"); do
    for s in $(rotate "$round"); do
        log "max, round $round: $s, $SUBS subscribers"
        fanout max "$round" "$s" --subs "$SUBS"
        # messages/s the subscribers got (the publisher may run ahead by the window)
        rate=$(tail -n 1 "$RESULTS" | jq -r --arg s "$s" --argjson r "$round" \
            'select(.row == "max" and .system == $s and .round == $r)
             | .deliveries_per_s / ([.opened, 1] | max) * '"$PACED"' * 100 | round / 100')
        if [ -n "$rate" ] && [ "$rate" != 0 ]; then
            log "paced, round $round: $s at $rate msg/s"
            fanout paced "$round" "$s" --subs "$SUBS" --rate "$rate"
        fi
        if [ -n "$RATE" ]; then
            log "equal, round $round: $s at $RATE msg/s"
            fanout equal "$round" "$s" --subs "$SUBS" --rate "$RATE"
        fi
    done
done
if [ "${LOSS_CHECK:-1}" != 0 ]; then
    s=${SYSTEMS[0]}
    victim=${NODE_PIDS[$s]##*,}
    log "kill-node: $s, $SANITY_SUBS subscribers, node pid $victim SIGKILLed mid-run"
    (sleep "$(python3 -c "print(1 + $WARMUP + $DURATION / 2)")"; kill -9 "$victim") &
    killer=$!
    fanout kill-node 0 "$s" --subs "$SANITY_SUBS"
    wait "$killer" || true
fi
for s in "${SYSTEMS[@]}"; do stop_system "$s"; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))
cp "$RESULTS" "$JSONL"

export RESULTS NODES SUBS ROUNDS DURATION WARMUP WINDOW SIZE PACED RATE LOAD_BEFORE LOAD_AFTER ELAPSED
python3 benches/cluster/summarize.py | tee "$TABLE"
log "raw results: $JSONL, table: $TABLE, logs: $OUT_DIR"
