#!/usr/bin/env bash
# A thread-safe (ZTS) PHP 8.2, the kind XAMPP and WAMP ship on Windows, built
# from Debian's source package once per machine into a cache outside the
# clone: Debian's own PHP is not thread-safe, so without it a ZTS break in
# the extension would show only on a Windows user's machine.
#
#   scripts/build-php-zts.sh        # prints the cache's bin/php when done
#   PHP_ZTS_CACHE=dir ...           # default /var/cache/polysocket/php8.2-zts
#
# Adds deb-src lines for the machine's Debian release (a file of its own in
# /etc/apt/sources.list.d), fetches the source with `apt-get source
# php8.2/<release>` (the main archive's version, its patches applied; the
# PHP API is the same for every 8.2, and the security archive's sources are
# not always reachable) and builds a CLI with
# what the extension's tests use (pcre, json, mbstring without its regex
# library, pcntl, posix), `--enable-zts`, installed into the cache.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/setup.sh
setup_init php-zts
CACHE="${PHP_ZTS_CACHE:-/var/cache/polysocket/php8.2-zts}"
PHP="$CACHE/bin/php"

if [ -x "$PHP" ] && [ "$("$PHP" -n -r 'echo PHP_ZTS;')" = 1 ]; then
    echo "$PHP"
    exit 0
fi

SOURCES=/etc/apt/sources.list.d/polysocket-deb-src.sources
if ! apt-get source --print-uris -q php8.2 >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "build-php-zts: needs root to add deb-src lines" >&2; exit 2; }
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    cat >"$SOURCES" <<EOF
# Added by polysocket's scripts/build-php-zts.sh: Debian's source packages,
# for \`apt-get source php8.2\`.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

EOF
    echo "== apt-get update (deb-src lines in $SOURCES)"
    apt-get update -q >>"$SETUP_LOG" 2>&1 || setup_failed
fi
missing=()
command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v gcc >/dev/null 2>&1 || missing+=(build-essential)
command -v bison >/dev/null 2>&1 || missing+=(bison)
command -v re2c >/dev/null 2>&1 || missing+=(re2c)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"

WORK="$CACHE.build"
rm -rf "$WORK" && mkdir -p "$WORK"
echo "== apt-get source php8.2 (into $WORK)"
(cd "$WORK" && apt-get source -q "php8.2/$(. /etc/os-release && echo "$VERSION_CODENAME")" >>"$SETUP_LOG" 2>&1) || setup_failed
SRC=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'php8.2-*' | head -n 1)
[ -n "$SRC" ] || { echo "build-php-zts: no source tree in $WORK" >&2; exit 1; }

echo "== configure --enable-zts, make (a few minutes)"
start=$(date +%s)
(
    # Debian's tree: the orig tarball with its patches applied, configure
    # included. (&& throughout: errexit does not apply in a subshell whose
    # status is tested.)
    cd "$SRC" &&
    # -O1 without debug info: a third less compile time on a fresh CI
    # machine; this PHP only runs the extension's tests.
    CFLAGS="-O1 -g0" ./configure --prefix="$CACHE" --enable-zts --disable-all --enable-cli \
        --disable-cgi --disable-phpdbg --without-pear --without-sqlite3 \
        --enable-mbstring --disable-mbregex --enable-pcntl --enable-posix &&
    make -j"$(nproc)" &&
    make install &&
    # Debian's patches leave a placeholder for the PHP API number in
    # php-config and phpize (its packaging substitutes it and installs the
    # headers under include/php/<api>); this install keeps them in
    # include/php and lib/php, as upstream does.
    api=$(sed -n 's/^#define PHP_API_VERSION \([0-9]*\).*/\1/p' "$CACHE/include/php/main/php.h") &&
    sed -i -e 's#/@DEBIAN_PHP_API@##g' -e "s#@DEBIAN_PHP_API@#$api#g" \
        "$CACHE/bin/php-config" "$CACHE/bin/phpize"
) >>"$SETUP_LOG" 2>&1 || setup_failed
rm -rf "$WORK"
[ "$("$PHP" -n -r 'echo PHP_ZTS;')" = 1 ] || { echo "build-php-zts: $PHP is not thread-safe" >&2; exit 1; }
echo "== $("$PHP" -n -v | head -n 1) built in $(( $(date +%s) - start )) s" >&2
echo "$PHP"
