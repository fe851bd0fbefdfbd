#!/usr/bin/env bash
# Builds and runs the example echo server (every draft, permessage-deflate)
# on 127.0.0.1:9001; open http://127.0.0.1:9001/ in a browser for a test page.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
exec cargo run --release -p polysocket --example echo_blocking -- --host 127.0.0.1 --port "${PORT:-9001}" "$@"
