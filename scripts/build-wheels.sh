#!/usr/bin/env bash
# Builds the Python package's wheels and sdist into dist/, for people
# without a Rust toolchain: manylinux2014 wheels (glibc 2.17+, linked by
# zig from PyPI, no container), checked with auditwheel.
#
#   polysocket-V-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl   CPython 3.9+
#   polysocket-V-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl  CPython 3.10+
#   polysocket-V-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl  CPython 3.11+
#   polysocket-V.tar.gz                                sdist (needs Rust)
#
# pip picks the highest abi3 floor the interpreter allows; why three floors:
# python/Cargo.toml. Installs maturin, ziglang and auditwheel into
# target/wheel-venv; needs Rust (rustup) and pyenv's CPython 3.9 and 3.11
# (or python3.9/python3.11 on PATH).
#
#   WHEEL_FLOORS="39 311"   build only these wheels (default: 39 310 311)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init wheels

WHEEL_VENV="$ROOT/target/wheel-venv"
ensure_venv "$WHEEL_VENV" "maturin>=1.9,<2" ziglang auditwheel
export PATH="$WHEEL_VENV/bin:$PATH"

# An interpreter of version $1 (e.g. 3.9): pyenv's, else one on PATH.
python_of() {
    local v=$1 p
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v"; do
        [ -x "$p" ] && { echo "$p"; return 0; }
    done
    command -v "python$v" && return 0
    echo "build-wheels: no CPython $v (pyenv install $v, or put python$v on PATH)" >&2
    exit 2
}

build() {  # build FLOOR MATURIN-ARGS...: one wheel, timed
    local floor=$1 t0=$(date +%s)
    shift
    echo "== wheel cp$floor-abi3"
    rm -f dist/polysocket-*-cp"$floor"-abi3-*.whl
    (cd python && maturin build --release --zig --compatibility manylinux2014 -o ../dist "$@") \
        >>"$SETUP_LOG" 2>&1 || setup_failed
    echo "   built in $(( $(date +%s) - t0 )) s"
}

mkdir -p dist
for floor in ${WHEEL_FLOORS:-39 310 311}; do
    case $floor in
        39) build 39 -i "$(python_of 3.9)" ;;
        310) build 310 -i "$(python_of 3.11)" --features abi3-py310 ;;
        311) build 311 -i "$(python_of 3.11)" ;;
        *) echo "build-wheels: unknown floor $floor (39, 310, 311)" >&2; exit 2 ;;
    esac
done
echo "== sdist"
(cd python && maturin sdist -o ../dist) >>"$SETUP_LOG" 2>&1 || setup_failed

status=0
for whl in dist/*.whl; do
    # auditwheel exits 0 even for a wheel it cannot repair: read its verdict.
    report=$(auditwheel show "$whl" 2>&1) || { echo "$report" >&2; status=1; continue; }
    if ! tr -s ' \n' '  ' <<<"$report" | grep 'platform tag: "manylinux_2_17_x86_64"' >/dev/null; then
        echo "build-wheels: $whl is not manylinux2014:" >&2
        echo "$report" >&2
        status=1
    fi
done
[ "$status" = 0 ] || exit 1
ls -l dist/polysocket-* | awk '{printf "   %-75s %7.1f KiB\n", $9, $5/1024}'
echo "== wheels built in $(( $(date +%s) - START )) s (auditwheel: manylinux_2_17)"
