#!/usr/bin/env bash
# The wheels as a user gets them: scripts/build-wheels.sh's dist/ (rebuilt
# unless newer than every source it is built from), checked by auditwheel
# (manylinux), installed with `pip install --no-index --find-links dist
# polysocket` into fresh venvs of CPython 3.9 and 3.13 with no Rust
# toolchain on PATH, then python/tests/smoke_installed.py in each: the
# standalone echo server answers an RFC 6455 and a hixie-76 client, the
# Tornado drop-in answers Tornado's client. Prints sizes and install times.
#
# The interpreters are pyenv's (installed with `pyenv install` when
# missing). Tornado and websockets are downloaded from PyPI into
# dist/deps first: the install itself uses no index.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

fresh=1
ls dist/polysocket-"$VERSION"-*.whl dist/polysocket-"$VERSION".tar.gz >/dev/null 2>&1 || fresh=0
for w in dist/*.whl; do
    [ "$fresh" = 1 ] && [ -n "$(find "${PYTHON_SOURCES[@]}" Cargo.toml -newer "$w" -print -quit)" ] && fresh=0
done
if [ "$fresh" = 1 ]; then
    echo "== dist/ is newer than the sources: not rebuilt"
else
    scripts/build-wheels.sh
fi
setup_init test-wheels
T="$ROOT/target/test-wheels"

echo "== auditwheel show"
for whl in dist/*.whl; do
    report=$("$ROOT/target/wheel-venv/bin/auditwheel" show "$whl" 2>&1) || { echo "$report"; exit 1; }
    tr -s ' \n' '  ' <<<"$report" | grep 'platform tag: "manylinux_2_17_x86_64"' >/dev/null \
        || { echo "test-wheels: $whl is not manylinux2014:"; echo "$report"; exit 1; }
    printf '   %-58s %6.1f KiB  manylinux_2_17_x86_64\n' "${whl#dist/}" "$(( $(stat -c %s "$whl") / 1024 ))"
done

# PATH without cargo, rustc or rustup: whatever pip does, it cannot compile.
NO_RUST_PATH=$(tr : '\n' <<<"$PATH" | grep -v -e '\.cargo' -e rustup | paste -sd:)

for v in 3.9 3.13; do
    py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" 2>/dev/null | tail -n 1)
    if [ -z "$py" ]; then
        command -v pyenv >/dev/null || { echo "test-wheels: no CPython $v and no pyenv to install it" >&2; exit 2; }
        echo "== pyenv install $v"
        pyenv install -s "$v" >>"$SETUP_LOG" 2>&1 || setup_failed
        py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" | tail -n 1)
    fi
    venv="$T/venv-$v"
    echo "== CPython $v: fresh venv $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv" >>"$SETUP_LOG" 2>&1 || setup_failed
    # The dependencies for this interpreter, fetched with the index (the only step that uses it).
    "$venv/bin/pip" download -q --disable-pip-version-check -d dist/deps "tornado>=6.3" websockets \
        >>"$SETUP_LOG" 2>&1 || setup_failed
    env -i HOME="$HOME" PATH="$NO_RUST_PATH" sh -c '! command -v cargo && ! command -v rustc' \
        >/dev/null || { echo "test-wheels: a Rust toolchain is still on PATH" >&2; exit 1; }
    echo "   PATH without Rust: command -v cargo, rustc fail"
    t0=$(date +%s%N)
    env -i HOME="$HOME" PATH="$NO_RUST_PATH" "$venv/bin/pip" install -q --disable-pip-version-check \
        --no-index --find-links dist --find-links dist/deps polysocket >>"$SETUP_LOG" 2>&1 \
        || setup_failed
    t1=$(date +%s%N)
    tag=$(sed -n 's/^Tag: //p' "$venv"/lib/python*/site-packages/polysocket-*.dist-info/WHEEL \
        | paste -sd' ')
    echo "   pip install --no-index polysocket (no cargo on PATH): $(( (t1 - t0) / 1000000 )) ms, wheel $tag"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links dist/deps websockets \
        >>"$SETUP_LOG" 2>&1 || setup_failed
    # From the venv's directory, so that python/polysocket cannot shadow the installed package.
    (cd "$venv" && env -i HOME="$HOME" PATH="$NO_RUST_PATH" timeout 120 \
        "$venv/bin/python" "$ROOT/python/tests/smoke_installed.py" "$VERSION")
done
echo "== wheels tested in $(( $(date +%s) - START )) s"
