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

# The sans-I/O core alone, with its default features (no tokio), as a crate
# that embeds only the engine uses it: it must build and pass on its own.
echo "== cargo test -p polysocket"
cargo test -p polysocket

# The protocol core and its tokio runtime: unit, integration, property,
# fuzz-regression and real-socket tests.
echo "== cargo test -p polysocket --features runtime"
cargo test -p polysocket --features runtime

# The cluster over Redis pub/sub: every test above again with the bus
# compiled in (and chat_node, the example that needs it), and the cluster
# tests against a real redis-server (Debian package; the tests start it on
# free ports and fail without it).
echo "== cargo test -p polysocket --features cluster"
if ! command -v redis-server >/dev/null 2>&1; then
    . scripts/lib/setup.sh
    setup_init cluster
    apt_install redis-server
fi
cargo test -p polysocket --features cluster

# Benchmarks and examples must keep compiling (they are run by hand).
echo "== cargo build --benches --examples"
cargo build -p polysocket --features runtime --benches --examples --release

# Real peers against the tokio echo server: Python websockets and
# websocket-client, Node ws, headless Chromium, raw sockets, and the
# Autobahn testsuite CI subset (sections 1-10, 12.1, 13.1, 13.7).
echo "== scripts/test-interop.sh"
./scripts/test-interop.sh

# Python: `pip install ./python` in fresh venvs; the standalone server
# (websockets, websocket-client, Chromium, old drafts, limits, signals) and
# the Tornado drop-in (Tornado's own websocket test module, old drafts,
# interop).
echo "== scripts/test-python.sh"
./scripts/test-python.sh
echo "== scripts/test-python-tornado.sh"
./scripts/test-python-tornado.sh

# PHP: the extension built and loaded with `php -d extension=...`: its
# tests, then the interop suite against the PHP echo daemon. Its three-face
# cluster test runs a Python node in the venv test-python.sh built above.
echo "== scripts/test-php.sh"
./scripts/test-php.sh

echo "== all tests passed"
