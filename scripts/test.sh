#!/usr/bin/env bash
# Sets up what a fresh Debian machine lacks, then runs every test of the
# workspace. .ci/run calls this; so can you.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust >= 1.85 (rustup) and re-run." >&2
    exit 1
fi
echo "== $(cargo --version), $(rustc --version)"

# Each step's wall time, so a slow step shows in CI's log.
step_start=$SECONDS
step_name=""
step() {
    if [ -n "$step_name" ]; then
        echo "== $step_name: $((SECONDS - step_start)) s (total $((SECONDS / 60)) min)"
    fi
    step_name="$1"
    step_start=$SECONDS
    echo "== $1"
}

# The sans-I/O core alone, with its default features (no tokio), as a crate
# that embeds only the engine uses it: it must build and pass on its own.
step "cargo test -p polysocket"
cargo test -p polysocket

# The protocol core, its tokio runtime and the cluster over Redis pub/sub
# (`cluster` implies `runtime`): unit, integration, property,
# fuzz-regression and real-socket tests, and the cluster tests against a
# real redis-server (Debian package; the tests start it on free ports and
# fail without it). The runtime without the bus is built just below.
step "cargo test -p polysocket --features cluster"
if ! command -v redis-server >/dev/null 2>&1; then
    . scripts/lib/setup.sh
    setup_init cluster
    apt_install redis-server
fi
cargo test -p polysocket --features cluster

# Benchmarks and examples must keep compiling (they are run by hand).
step "cargo build --benches --examples"
cargo build -p polysocket --features runtime --benches --examples --release

# Real peers against the tokio echo server: Python websockets and
# websocket-client, Node ws, headless Chromium, raw sockets, and the
# Autobahn testsuite CI subset (sections 1-10, 12.1, 13.1, 13.7).
step "scripts/test-interop.sh"
./scripts/test-interop.sh
# The same Autobahn subset against the server's HTTP/2 stream sessions
# (RFC 8441), through a bridge that carries each HTTP/1.1 client as a stream
# of one shared HTTP/2 connection.
step "scripts/test-autobahn-h2.sh"
./scripts/test-autobahn-h2.sh

# Python: `pip install ./python` in fresh venvs; the standalone server
# (websockets, websocket-client, Chromium, old drafts, limits, signals) and
# the Tornado drop-in (Tornado's own websocket test module, old drafts,
# interop).
step "scripts/test-python.sh"
./scripts/test-python.sh
step "scripts/test-python-tornado.sh"
./scripts/test-python-tornado.sh
# ASGI: polysocket.asgi under uvicorn (uvicorn's own WebSocket tests, every
# draft, FastAPI / Starlette / Django Channels, interop and Autobahn).
step "scripts/test-python-asgi.sh"
./scripts/test-python-asgi.sh

# PHP: the extension built and loaded with `php -d extension=...`: its
# tests, then the interop suite against the PHP echo daemon. Its three-face
# cluster test runs a Python node in the venv test-python.sh built above.
step "scripts/test-php.sh"
./scripts/test-php.sh

# The PHP extension as users install it: the .deb (installed with apt,
# the interop suite against plain `php`, removed and purged without a
# trace) and PIE's phpize/configure/make/make install on an exported tree.
step "scripts/test-php-packages.sh"
./scripts/test-php-packages.sh

# Scale, short: 6,000 connections on a mix of drafts per face, server
# memory per connection against the targets, every connection echoing;
# then 6,000 over two Python worker processes sharing one port (fewer
# would let the three processes' own growth weigh on the figure). The long
# runs (19,000 per face, 100,000 over six processes) are in
# docs/RELIABILITY.md.
step "scripts/scale.sh (short)"
CONNS=6000 PER_GEN=3000 ./scripts/scale.sh
SPREAD=2 CONNS=6000 PER_GEN=3000 FACES=python ./scripts/scale.sh

# The Python wheels as users install them: manylinux (auditwheel), into
# fresh CPython 3.9 and 3.13 venvs without Rust on PATH, smoke-tested.
# CI builds the cp39-abi3 wheel only (both interpreters install it): each
# floor is a release build of its own, minutes on two cores.
step "scripts/test-wheels.sh"
WHEEL_FLOORS=39 ./scripts/test-wheels.sh

# Leak checks of the glue: the PHP extension under valgrind memcheck and
# the Python extension under tracemalloc / gc counts, each through every
# event kind and error path (docs/RELIABILITY.md, "Leak checks").
step "scripts/leak-check.sh"
./scripts/leak-check.sh

# A network that misbehaves: clients in a network namespace behind a veth
# pair with latency (relay), 2 % loss (iptables), a slow link (tc tbf), a
# cut without FIN/RST (keepalive must notice) and one-byte-per-second
# senders; a control client on the clean path must not stall (root).
step "scripts/netem.sh"
FACES="rust python" ./scripts/netem.sh

# Soak, short: every face under a steady mixed load for 3 minutes (all at
# once), its memory, descriptors, tasks and object counts sampled; nothing
# may grow after the warm-up, every echo must come back whole and in order.
# The 30-minute runs are in docs/RELIABILITY.md.
step "scripts/soak.sh (3 minutes)"
DURATION=180 ./scripts/soak.sh

# The extension on a thread-safe (ZTS) PHP, the build XAMPP and WAMP ship:
# PHP 8.2 --enable-zts from Debian's source (built once per machine into
# /var/cache/polysocket), the extension built against it, php/tests there.
# Last: it leaves target/release's extension built for that PHP (the next
# NTS build rebuilds it, as every script that loads it does).
step "scripts/test-php-zts.sh"
./scripts/test-php-zts.sh

step "all tests passed"
