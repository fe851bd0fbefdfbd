#!/usr/bin/env bash
# Runs every cargo-fuzz target of core/fuzz for FUZZ_SECONDS each, one at a
# time and one job each, and prints what libFuzzer reports per target:
# executions, exec/s, edge coverage (cov), features (ft), corpus entries.
#
#   scripts/fuzz.sh                        # every target, 60 s each
#   FUZZ_SECONDS=240 scripts/fuzz.sh       # the round in docs/RELIABILITY.md
#   FUZZ_TARGETS="envelope http" scripts/fuzz.sh
#   FUZZ_WRITE_SEEDS=1 scripts/fuzz.sh     # first rewrite regressions/*/seed-*
#
# Each run mutates core/fuzz/corpus/<target> (kept between runs, not in git)
# and reads core/fuzz/regressions/<target> (the seeds and past crashes, in
# git) as a second corpus, so a clean clone starts from the stored inputs.
# A crash stops that target's run; its input is in core/fuzz/artifacts/
# (see core/fuzz/README.md for reproducing and minimising it). The script
# exits non-zero if any target crashed. Logs: core/fuzz/logs/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/../core"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    . "$HOME/.cargo/env"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz 0.13.2"
    cargo install cargo-fuzz --version 0.13.2 --locked || exit 1
fi
# cargo-fuzz passes -Z flags; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

if [ "${FUZZ_WRITE_SEEDS:-0}" = 1 ]; then
    echo "== rewriting the seeds in core/fuzz/regressions"
    cargo test -p polysocket --features cluster --test fuzz_regressions -- --ignored write_seeds || exit 1
fi

# Options per target: the dictionary of its text format, and the cargo
# features its harness needs.
dict_of() {
    case $1 in
        request | response | http) echo "-dict=fuzz/dict/handshake.dict" ;;
        extensions | negotiation) echo "-dict=fuzz/dict/extensions.dict" ;;
    esac
}
features_of() {
    case $1 in
        envelope) echo "--features cluster" ;;
        proxy) echo "--features runtime" ;;
    esac
}

mkdir -p fuzz/logs
summary=()
failed=0
for t in $targets; do
    echo "== fuzz $t for ${seconds}s"
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
    log="fuzz/logs/$t.log"
    # shellcheck disable=SC2046 # the options are words on purpose
    cargo fuzz run $(features_of "$t") "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 $(dict_of "$t") >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
    status=ok
    if [ $rc -ne 0 ]; then
        status="FAILED (exit $rc, see core/$log)"
        failed=1
        grep -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written' "$log" | head -5
    fi
    line=$(printf '%-12s %6ss %12s execs %7s exec/s  cov %6s  ft %7s  corpus %-12s %s' \
        "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$status")
    echo "$line"
    summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
