#!/usr/bin/env bash
# Builds and runs the echo server on the tokio runtime (every draft,
# permessage-deflate) on 127.0.0.1:9001; open http://127.0.0.1:9001/ in a
# browser for a test page. Ctrl-C closes every connection with 1001.
#   PORT=9002 scripts/run-echo.sh [--tls-cert cert.pem --tls-key key.pem] [--workers N]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
exec cargo run --release -p polysocket --features runtime --example echo -- --host 127.0.0.1 --port "${PORT:-9001}" "$@"
