#!/usr/bin/env bash
# core + runtime built for Windows (x86_64-pc-windows-gnu, cross-compiled
# with MinGW) and their tests run under Wine: the closest this Debian
# machine gets to the php-windows workflow. Not part of scripts/test.sh
# (a second full build); run it after touching cfg(unix) code.
#
#   scripts/test-windows-wine.sh              # clippy for the target, then the tests
#   scripts/test-windows-wine.sh events       # extra arguments filter the tests
#
# Installs when missing: the rustup target, gcc-mingw-w64-x86-64 (ring's C
# code) and wine64 (apt). Wine 8 (Debian 12) lacks bcryptprimitives.dll,
# whose ProcessPrng Rust's std calls for random numbers since 1.78: a
# stub forwarding to RtlGenRandom goes into the script's own Wine prefix
# (target/windows-wine/prefix), nowhere else.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/setup.sh
setup_init windows-wine
TARGET=x86_64-pc-windows-gnu

missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
rustup target list --installed | grep -x "$TARGET" >/dev/null || rustup target add "$TARGET"

export WINEPREFIX="$ROOT/target/windows-wine/prefix" WINEDEBUG=-all
STUB="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$STUB" ]; then
    echo "== Wine prefix and bcryptprimitives.dll stub"
    /usr/lib/wine/wine64 cmd /c exit >>"$SETUP_LOG" 2>&1 || true
    cat >target/windows-wine/bcryptprimitives.c <<'EOF'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
EOF
    x86_64-w64-mingw32-gcc -shared -Wl,--kill-at -o "$STUB" \
        target/windows-wine/bcryptprimitives.c -ladvapi32
fi

echo "== cargo clippy -p polysocket --features runtime --all-targets --target $TARGET"
cargo clippy -q -p polysocket --features runtime --all-targets --target "$TARGET" -- -D warnings

echo "== cargo test -p polysocket --features runtime --target $TARGET (under Wine)"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64
cargo test -q -p polysocket --features runtime --target "$TARGET" \
    --lib --test engine --test handshake --test runtime_server --test runtime_pair \
    --test runtime_client -- "$@"
echo "== windows (wine) tests passed"
