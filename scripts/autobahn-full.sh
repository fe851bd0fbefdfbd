#!/usr/bin/env bash
# All 517 Autobahn|Testsuite cases (12-20 minutes on 2 cores), then writes
# the result into docs/CONFORMANCE.md.
#
#   scripts/autobahn-full.sh [URL]
#
# Without URL it starts the echo server itself (POLYSOCKET_ECHO_CMD, see
# scripts/autobahn.sh). Exit status 1 if any case is FAILED, NON-STRICT or
# UNIMPLEMENTED (docs/CONFORMANCE.md is written either way). The HTML report
# is in target/autobahn/full/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="$ROOT/target/autobahn/full"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$ROOT/../shared/tools/autobahn}"
PY="${PYTHON:-python3}"
DEFAULT_SERVER="target/release/examples/echo --host 127.0.0.1 --port {port}"

if [[ ! -x "$AUTOBAHN_DIR/run.sh" ]]; then
    echo "autobahn-full.sh: $AUTOBAHN_DIR/run.sh not found (set AUTOBAHN_DIR)" >&2
    exit 2
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

# Install first, on its own: on a first install, install.sh prints the port's
# progress on stdout, which run.sh would take for the path of wstest.
mkdir -p "$ROOT/target/autobahn"
if [[ "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]] \
    && ! AB_QUIET=1 bash "$AUTOBAHN_DIR/install.sh" >"$ROOT/target/autobahn/install.log" 2>&1; then
    tail -n 20 "$ROOT/target/autobahn/install.log" >&2
    echo "autobahn-full.sh: installing the Autobahn|Testsuite failed" >&2
    exit 2
fi

if [[ $# -eq 0 && "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]]; then
    mkdir -p "$OUT"
    POLYSOCKET_AB_UNDER_HARNESS=1 exec "$PY" tests/harness/echo_server.py \
        --log "$ROOT/target/autobahn/echo-server-full.log" -- "$ROOT/scripts/autobahn-full.sh"
fi
if [[ $# -eq 1 ]]; then
    URL="$1"; SERVER="external server at $1"
else
    URL="${ECHO_URL:?}"; SERVER="${POLYSOCKET_ECHO_CMD:-$DEFAULT_SERVER}"
fi

start=$(date +%s)
set +e
"$AUTOBAHN_DIR/run.sh" --agent polysocket --timeout 2400 "$URL" "*" "$OUT"
rc=$?
set -e
wall=$(( $(date +%s) - start ))
if [[ ! -f "$OUT/index.json" || $rc -ge 2 ]]; then
    echo "autobahn-full.sh: the suite did not run to the end (run.sh status $rc)" >&2
    exit 2
fi
set +e
"$PY" tests/harness/autobahn_report.py check "$OUT/index.json"
verdict=$?
set -e
"$PY" tests/harness/autobahn_report.py markdown "$OUT/index.json" docs/CONFORMANCE.md \
    --command "scripts/autobahn-full.sh" --server "$SERVER" \
    --wall "$((wall / 60)) min $((wall % 60)) s" >/dev/null
echo "autobahn-full.sh: wrote docs/CONFORMANCE.md"
exit $verdict
