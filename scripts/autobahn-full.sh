#!/usr/bin/env bash
# All 517 Autobahn|Testsuite cases, then docs/CONFORMANCE.md: see
# scripts/autobahn.sh (the same script in its `full` mode).
exec env AB_MODE=full "$(dirname "${BASH_SOURCE[0]}")/autobahn.sh" "$@"
