#!/usr/bin/env bash
# A network that misbehaves (docs/RELIABILITY.md): the echo server on the
# host side of a veth pair, clients in a network namespace behind it, and
# the link impaired one way at a time: 100 ms latency with jitter (a relay
# in the client), 2 % packet loss (iptables statistic), a slow link (tc
# tbf), a cut without FIN or RST (iptables DROP both ways: keepalive must
# close the half-open connection within ping_interval + pong_timeout), a
# client sending one byte per second (handshake timeout; slow frames). A
# control client on the clean path (the host's own address) measures its
# echo round trip all along. Needs root (namespaces, iptables, tc).
#
#   scripts/netem.sh            PING=2 PONG=2 HANDSHAKE=3 MESSAGES=200 CLIENTS=4
#   FACES="rust python" scripts/netem.sh     (python: the standalone server,
#                                             built into target/python-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
setup_init netem

PING=${PING:-2} PONG=${PONG:-2} HANDSHAKE=${HANDSHAKE:-3}
MESSAGES=${MESSAGES:-200} CLIENTS=${CLIENTS:-4}
FACES=${FACES:-rust}
P99_LIMIT_MS=${P99_LIMIT_MS:-50}

if [ "$(id -u)" != 0 ]; then
    echo "netem: needs root (network namespaces, iptables, tc)" >&2
    exit 2
fi
command -v ip >/dev/null && command -v tc >/dev/null || apt_install iproute2
command -v iptables >/dev/null || apt_install iptables
command -v ss >/dev/null || apt_install iproute2

# Unique per run: parallel runs do not collide (the subnet comes from the
# PID too, 10.203-10.210.x.0/24).
NS=psnetem$$ HOSTIF=psn$$a NSIF=psn$$b
NET=10.$((203 + $$ % 8)).$(($$ / 8 % 250)).
HOST_IP=${NET}1 NS_IP=${NET}2
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip link del "$HOSTIF" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$HOSTIF" type veth peer name "$NSIF"
# Segments of one MTU, as on a wire: with offload, TCP hands veth 64 KiB
# super-packets and "2 % of packets" would be a few large bursts.
ip link set "$HOSTIF" gso_max_size 1500
ip link set "$NSIF" gso_max_size 1500
ip link set "$NSIF" netns "$NS"
ip addr add "$HOST_IP/24" dev "$HOSTIF"
ip link set "$HOSTIF" up
ip netns exec "$NS" ip addr add "$NS_IP/24" dev "$NSIF"
ip netns exec "$NS" ip link set "$NSIF" up
ip netns exec "$NS" ip link set lo up
IN_NS=(ip netns exec "$NS")
CLIENT=(python3 tests/harness/netem_client.py)
LOG=target/netem
BOUND=$(python3 -c "print($PING + $PONG)")

start_server() {  # FACE PORT: the server on $HOST_IP:PORT, keepalive $PING/$PONG
    case $1 in
        rust)
            [ -x target/release/examples/echo ] && [ -z "$(find core/src core/examples \
                -newer target/release/examples/echo -print -quit)" ] \
                || cargo build -q --release -p polysocket --features runtime --example echo
            target/release/examples/echo --host "$HOST_IP" --port "$2" --ping-interval "$PING" \
                --pong-timeout "$PONG" --handshake-timeout "$HANDSHAKE" >"$LOG/server-$1.log" 2>&1 &
            ;;
        python)
            # The standalone server's echo demo: its keepalive is the core's.
            python_package_current || python_package
            "$PYTHON_VENV/bin/python" -c 'import sys
from polysocket.demo.echo import main
main(sys.argv[1], int(sys.argv[2]), ping_interval=float(sys.argv[3]),
     ping_timeout=float(sys.argv[4]), handshake_timeout=float(sys.argv[5]))' \
                "$HOST_IP" "$2" "$PING" "$PONG" "$HANDSHAKE" >"$LOG/server-$1.log" 2>&1 &
            ;;
        *) echo "netem: unknown face $1 (rust, python)" >&2; exit 2 ;;
    esac
    SERVER=$!
    PIDS+=("$SERVER")
    for _ in $(seq 100); do
        ss -tlnH "( sport = :$2 )" | grep . >/dev/null && return 0
        sleep 0.1
    done
    echo "netem: the $1 server did not start" >&2
    cat "$LOG/server-$1.log" >&2
    exit 1
}

scenario() {  # NAME COMMAND...: runs it, records its JSON line and span
    echo "-- $1"
    local name=$1 start
    shift
    start=$(date +%s.%N)
    if ! "$@" >"$LOG/$name.json"; then
        echo "netem: scenario $name failed" >&2
        exit 1
    fi
    echo "$name $start $(date +%s.%N)" >>"$SPANS"
    echo "   $(cat "$LOG/$name.json")"
}

dropped() {  # CHAIN: packets the statistic rule dropped in the namespace
    "${IN_NS[@]}" iptables -L "$1" -v -x -n | awk '/statistic/ {print $1}'
}

mkdir -p "$LOG"
for face in $FACES; do
    port=$((20000 + $$ % 20000))
    echo "== netem: $face server on $HOST_IP:$port (ping $PING s, pong timeout $PONG s," \
        "handshake timeout $HANDSHAKE s), clients in namespace $NS ($NS_IP)"
    start_server "$face" "$port"
    # The control client: the host's own address, no impairment.
    SPANS=$LOG/spans-$face
    : >"$SPANS"
    "${CLIENT[@]}" control "$HOST_IP" "$port" --out "$LOG/control-$face.json" --spans "$SPANS" &
    CONTROL=$!
    PIDS+=("$CONTROL")

    scenario "$face-clean" "${IN_NS[@]}" "${CLIENT[@]}" echo "$HOST_IP" "$port" \
        --clients "$CLIENTS" --messages "$MESSAGES"
    scenario "$face-latency" "${IN_NS[@]}" "${CLIENT[@]}" echo "$HOST_IP" "$port" \
        --clients "$CLIENTS" --messages "$MESSAGES" --relay

    for chain in INPUT OUTPUT; do
        "${IN_NS[@]}" iptables -A $chain -m statistic --mode random --probability 0.02 -j DROP
    done
    scenario "$face-loss" "${IN_NS[@]}" "${CLIENT[@]}" echo "$HOST_IP" "$port" \
        --clients "$CLIENTS" --messages "$MESSAGES"
    echo "   dropped by the 2 % rule: $(dropped INPUT) packets in, $(dropped OUTPUT) out"
    [ "$(dropped INPUT)" -gt 0 ] && [ "$(dropped OUTPUT)" -gt 0 ] \
        || { echo "netem: the loss rule dropped nothing" >&2; exit 1; }
    "${IN_NS[@]}" iptables -F

    # 1 Mbit/s each way: the namespace's egress and the host side's.
    "${IN_NS[@]}" tc qdisc add dev "$NSIF" root tbf rate 1mbit burst 16kb latency 100ms
    tc qdisc add dev "$HOSTIF" root tbf rate 1mbit burst 16kb latency 100ms
    scenario "$face-slow-link" "${IN_NS[@]}" "${CLIENT[@]}" echo "$HOST_IP" "$port" \
        --clients 2 --messages 40
    "${IN_NS[@]}" tc qdisc del dev "$NSIF" root
    tc qdisc del dev "$HOSTIF" root

    scenario "$face-cut-idle" "${CLIENT[@]}" cut "$HOST_IP" "$port" --netns "$NS" \
        --peer "$NS_IP" --bound "$BOUND"
    scenario "$face-cut-busy" "${CLIENT[@]}" cut "$HOST_IP" "$port" --netns "$NS" \
        --peer "$NS_IP" --bound "$BOUND" --busy

    scenario "$face-slow-handshake" "${IN_NS[@]}" "${CLIENT[@]}" slow-handshake "$HOST_IP" \
        "$port" --timeout "$HANDSHAKE"
    scenario "$face-slow-frames" "${IN_NS[@]}" "${CLIENT[@]}" slow-frames "$HOST_IP" "$port" \
        --messages 1

    kill -TERM "$CONTROL"
    wait "$CONTROL" || { echo "netem: the control client failed" >&2; exit 1; }
    echo "-- $face control client on the clean path, echo round trip per scenario:"
    python3 - "$LOG/control-$face.json" "$P99_LIMIT_MS" <<'EOF'
import json, sys
figures, limit = json.load(open(sys.argv[1])), float(sys.argv[2])
for name, f in figures.items():
    print("   %-24s %5d round trips  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"
          % (name, f["round_trips"], f["p50_ms"], f["p99_ms"], f["max_ms"]))
if figures["all"]["p99_ms"] > limit:
    sys.exit("netem: the control client's p99 is over %g ms" % limit)
EOF
    kill "$SERVER"
    wait "$SERVER" || true
done
echo "== netem: every scenario passed"
