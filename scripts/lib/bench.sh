# Server processes and loadgen runs shared by the benchmark scripts
# (sourced, not run).
#
#   bench_init NAME             the knobs' defaults (a script sets its own
#                               first), OUT_DIR and RESULTS, log(), BIN (the
#                               release directory), descriptors for IDLE_CONNS
#
# Then the caller sets, before calling anything below:
#   LOADGEN            the load generator
#   SERVERS            the servers compared, in their first-round order
#   CMD[name]          each server's command, ending just before the port
#   PIN                a command prefix for the servers (e.g. taskset), may be empty
#
#   start NAME / stop NAME      a fresh process on a fresh port / TERM, then KILL
#   run ROW ROUND NAME ARGS...  one loadgen run, its JSON line tagged and appended
#   warm_up                     every server handles connections and messages once
#   echo_rows SPEC...           "row:conns:size" rows, ROUNDS rounds, order rotating
#   idle_row NAME CONNS         RSS of a fresh NAME before / with CONNS idle connections
#                               (each echoed one message before going quiet)

bench_init() {
    BENCH_NAME=$1
    ROUNDS=${ROUNDS:-5}
    DURATION=${DURATION:-2}
    WARMUP=${WARMUP:-0.5}
    LOADGEN_CPU=${LOADGEN_CPU:-0}
    IDLE_CONNS=${IDLE_CONNS:-10000}
    OUT_DIR=${OUT_DIR:-$(mktemp -d "/tmp/$BENCH_NAME.XXXXXX")}
    mkdir -p "$OUT_DIR"
    RESULTS="$OUT_DIR/results.jsonl"
    : > "$RESULTS"
    BIN="$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
    # 10k idle connections need more descriptors than the default soft
    # limit (the servers inherit this; the loadgen also raises its own).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 256)) ]; then
        log "RLIMIT_NOFILE $(ulimit -n) is below $((IDLE_CONNS + 256)): lower IDLE_CONNS"
        exit 1
    fi
}

log() { echo "[$BENCH_NAME] $*" >&2; }

declare -A CMD PORT PID
PIN=()
STARTED=()

bench_cleanup() {
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap bench_cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local name=$1 port
    port=$(free_port)
    # shellcheck disable=SC2086
    "${PIN[@]}" ${CMD[$name]} "$port" > "$OUT_DIR/$name.log" 2>&1 &
    PID[$name]=$!
    PORT[$name]=$port
    STARTED+=("$!")
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null; then
            log "$name: pid ${PID[$name]}, port $port"
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start; log:"; cat "$OUT_DIR/$name.log" >&2
    exit 1
}

stop() {
    local p=${PID[$1]}
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

run() {
    local row=$1 round=$2 name=$3
    shift 3
    # A server that fails a row (e.g. a peer that cannot take 1 MiB) still
    # yields its JSON line with the errors counted; the run goes on.
    taskset -c "$LOADGEN_CPU" "$LOADGEN" "$@" --port "${PORT[$name]}" --server-pid "${PID[$name]}" \
        2>>"$OUT_DIR/loadgen.log" \
        | jq -c --arg row "$row" --arg server "$name" --argjson round "$round" \
            '. + {row: $row, server: $server, round: $round}' >> "$RESULTS" \
        || log "loadgen: $row round $round on $name exited with an error (see $OUT_DIR/loadgen.log)"
}

rotate() { # the servers' order for round $1
    local r=$1 n=${#SERVERS[@]} i
    for i in $(seq 0 $((n - 1))); do echo "${SERVERS[$(((i + r) % n))]}"; done
}

warm_up() {
    local s
    for s in "${SERVERS[@]}"; do
        taskset -c "$LOADGEN_CPU" "$LOADGEN" echo --port "${PORT[$s]}" --conns 10 --size 1024 \
            --duration 0.5 --warmup 0 > /dev/null 2>&1 || true
    done
}

echo_rows() {
    local spec row conns size round s
    for spec in "$@"; do
        IFS=: read -r row conns size <<< "$spec"
        for round in $(seq 1 "$ROUNDS"); do
            for s in $(rotate "$round"); do
                log "echo $row, round $round, $s"
                run "$row" "$round" "$s" echo --conns "$conns" --size "$size" \
                    --duration "$DURATION" --warmup "$WARMUP"
            done
        done
    done
}

setup_rows() { # connection set-ups per second, $SETUP_CONC at once
    local round s
    for round in $(seq 1 "$ROUNDS"); do
        for s in $(rotate "$round"); do
            log "setup, round $round, $s"
            run setup "$round" "$s" setup --conns "$SETUP_CONC" --duration "$DURATION" --warmup "$WARMUP"
        done
    done
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The idle row's default client: the loadgen holds N connections (each
# echoes one message first and once more after the hold).
loadgen_idle() { # PORT CONNS READY_FILE
    "$LOADGEN" idle --port "$1" --conns "$2" --talk-first 1 --ready-file "$3" --hold-timeout 120
}

# idle_row SERVER CONNS [ROW] [SETTLE_S] [CLIENT]: RSS of a fresh server
# before and with CONNS idle connections that CLIENT (a command taking
# PORT CONNS READY_FILE, printing its JSON tally; default loadgen_idle)
# holds, read SETTLE_S seconds after they are all open.
idle_row() {
    local s=$1 conns=$2 row=${3:-idle} settle=${4:-1} client=${5:-loadgen_idle} base held ready lg
    start "$s"
    taskset -c "$LOADGEN_CPU" "$LOADGEN" echo --port "${PORT[$s]}" --conns 10 --size 1024 \
        --duration 0.5 --warmup 0 > /dev/null 2>&1 || true
    sleep 0.5
    base=$(rss_kib "${PID[$s]}")
    ready="$OUT_DIR/$row-$s.ready"
    rm -f "$ready"
    log "$row: $conns connections to $s (baseline RSS $base KiB)"
    # The subshell pins itself (a function cannot be run by taskset); the
    # client inherits it.
    (taskset -cp "$LOADGEN_CPU" "$BASHPID" > /dev/null && "$client" "${PORT[$s]}" "$conns" "$ready") \
        > "$OUT_DIR/$row-$s.json" 2>>"$OUT_DIR/loadgen.log" &
    lg=$!
    for _ in $(seq 1 1200); do [ -f "$ready" ] && break; kill -0 "$lg" 2>/dev/null || break; sleep 0.1; done
    sleep "$settle" # let the server settle
    held=$(rss_kib "${PID[$s]}")
    rm -f "$ready"
    wait "$lg" || log "$row client on $s exited with an error (see $OUT_DIR/loadgen.log)"
    jq -c --arg server "$s" --arg row "$row" --argjson base "$base" --argjson held "$held" \
        '. + {row: $row, server: $server, round: 1, rss_base_kib: $base, rss_idle_kib: $held,
              kib_per_conn: (if .opened > 0 then ($held - $base) / .opened else null end)}' \
        "$OUT_DIR/$row-$s.json" >> "$RESULTS"
    stop "$s"
}
