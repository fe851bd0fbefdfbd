#!/usr/bin/env bash
# The Autobahn|Testsuite CI subset: sections 1-10 plus 12.1.*, 13.1.* and
# 13.7.* (permessage-deflate), about 355 cases, 1-2 minutes on 2 cores.
#
#   scripts/autobahn.sh [URL]
#
# Without URL it starts the echo server itself on a free port of 127.0.0.1
# (POLYSOCKET_ECHO_CMD, a command template with {port}; default: the
# tokio echo example, built if needed) and stops it at the end. Prints the
# per-behaviour summary and fails on any FAILED, NON-STRICT or UNIMPLEMENTED
# case (INFORMATIONAL is accepted). The report is in target/autobahn/ci/.
#
# The suite comes from ../shared/tools/autobahn (beside the repository;
# AUTOBAHN_DIR overrides), installed on first use into /opt/autobahn-py3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CASES="1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,12.1.*,13.1.*,13.7.*"
OUT="$ROOT/target/autobahn/ci"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$ROOT/../shared/tools/autobahn}"
PY="${PYTHON:-python3}"

if [[ ! -x "$AUTOBAHN_DIR/run.sh" ]]; then
    echo "autobahn.sh: $AUTOBAHN_DIR/run.sh not found (set AUTOBAHN_DIR)" >&2
    exit 2
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

# Install first, on its own: on a first install, install.sh prints the port's
# progress on stdout, which run.sh would take for the path of wstest.
mkdir -p "$ROOT/target/autobahn"
if [[ "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]] \
    && ! AB_QUIET=1 bash "$AUTOBAHN_DIR/install.sh" >"$ROOT/target/autobahn/install.log" 2>&1; then
    tail -n 20 "$ROOT/target/autobahn/install.log" >&2
    echo "autobahn.sh: installing the Autobahn|Testsuite failed" >&2
    exit 2
fi

if [[ $# -eq 0 && "${POLYSOCKET_AB_UNDER_HARNESS:-}" != 1 ]]; then
    mkdir -p "$OUT"
    POLYSOCKET_AB_UNDER_HARNESS=1 exec "$PY" tests/harness/echo_server.py \
        --log "$ROOT/target/autobahn/echo-server-ci.log" -- "$ROOT/scripts/autobahn.sh"
fi
URL="${1:-${ECHO_URL:?}}"

set +e
"$AUTOBAHN_DIR/run.sh" --agent polysocket --timeout 900 "$URL" "$CASES" "$OUT"
rc=$?
set -e
if [[ ! -f "$OUT/index.json" || $rc -ge 2 ]]; then
    echo "autobahn.sh: the suite did not run to the end (run.sh status $rc)" >&2
    exit 2
fi
"$PY" tests/harness/autobahn_report.py check "$OUT/index.json"
