#!/usr/bin/env bash
# Builds dist/php<ver>-polysocket_<version>-1_<arch>.deb: the PHP extension
# for this machine's PHP (Debian's php8.2), installed the way Debian's own
# php8.2-* extension packages are:
#
#   /usr/lib/php/<api>/polysocket.so                 the extension (stripped)
#   /etc/php/<ver>/mods-available/polysocket.ini     `extension=polysocket.so`
#                                                    and the ini settings, commented
#   /usr/share/doc/php<ver>-polysocket/              copyright, stubs, examples
#
# postinst enables the module for every SAPI through php-common's
# php-maintscript-helper (what `phpenmod` does, remembered as enabled by the
# package so that a later `phpdismod` by the admin is respected); postrm
# disables it on removal and forgets it on purge. The ini file is a
# conffile: local edits survive upgrades, purge deletes it.
#
#   scripts/build-deb.sh            # build the extension (release) and the .deb
#   POLYSOCKET_PHP_EXT=path ...     # package an extension built already
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. scripts/lib/setup.sh
setup_init deb

missing=()
command -v php-config >/dev/null 2>&1 || missing+=(php8.2-dev)
command -v php >/dev/null 2>&1 || missing+=(php8.2-cli)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg-dev)
[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"

VERSION=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "polysocket-php"))')
PHPVER=$(php-config --version | cut -d. -f1,2)
EXTDIR=$(php-config --extension-dir)
ARCH=$(dpkg --print-architecture)
PKG="php${PHPVER}-polysocket"
DEB="dist/${PKG}_${VERSION}-1_${ARCH}.deb"

if [ -z "${POLYSOCKET_PHP_EXT:-}" ]; then
    echo "== cargo build --release -p polysocket-php"
    cargo build --release -q -p polysocket-php
    TARGET=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    POLYSOCKET_PHP_EXT="$TARGET/release/libpolysocket_php.so"
fi
# The extension must be for this PHP: it says its version when loaded.
loaded=$(php -n -d "extension=$POLYSOCKET_PHP_EXT" -r 'echo phpversion("polysocket");')
[ "$loaded" = "$VERSION" ] || { echo "build-deb: $POLYSOCKET_PHP_EXT reports version '$loaded', the workspace is $VERSION" >&2; exit 1; }

STAGE="target/deb/${PKG}"
rm -rf "$STAGE"
DOC="$STAGE/usr/share/doc/$PKG"
INI="$STAGE/etc/php/$PHPVER/mods-available/polysocket.ini"
mkdir -p "$STAGE/DEBIAN" "$STAGE$EXTDIR" "$(dirname "$INI")" "$DOC/examples"
install -m 0644 "$POLYSOCKET_PHP_EXT" "$STAGE$EXTDIR/polysocket.so"
strip --strip-unneeded "$STAGE$EXTDIR/polysocket.so"
install -m 0644 php/stubs/polysocket.php "$DOC/polysocket.stubs.php"
install -m 0644 examples/php/*.php examples/php/*.html "$DOC/examples/"

cat >"$INI" <<EOF
; configuration for php polysocket module
; priority=20
extension=polysocket.so

; Defaults of new \\WebSocket\\Server objects (each also has a setter):
; a Redis URL makes broadcasts, groups and sends to connection ids reach
; every daemon of the namespace (docs/CLUSTER.md).
;polysocket.cluster_url = redis://127.0.0.1:6379
;polysocket.cluster_namespace = polysocket
; Several daemons on one port (SO_REUSEPORT); the kernel spreads clients.
;polysocket.reuse_port = 0
; Bytes all connections of a server may hold for their clients together
; (partial frames, reassembly, unsent output); 0: no budget.
;polysocket.max_buffered_total = 268435456
EOF
chmod 0644 "$INI"

cat >"$DOC/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: polysocket

Files: *
Copyright: the polysocket maintainers
License: MIT or Apache-2.0
 At your option. On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the
 "Software"), to deal in the Software without restriction, including
 without limitation the rights to use, copy, modify, merge, publish,
 distribute, sublicense, and/or sell copies of the Software, and to permit
 persons to whom the Software is furnished to do so, subject to the
 following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN
 NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
 DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
 USE OR OTHER DEALINGS IN THE SOFTWARE.
EOF

GLIBC=$(objdump -T "$STAGE$EXTDIR/polysocket.so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
PHPAPI=$(php-config --phpapi)
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: ${VERSION}-1
Architecture: $ARCH
Maintainer: polysocket maintainers <maintainers@users.noreply.github.com>
Installed-Size: $SIZE
Depends: php-common (>= 1:81~), php${PHPVER}-common, phpapi-${PHPAPI}, libc6 (>= $GLIBC), libgcc-s1
Section: php
Priority: optional
Description: WebSocket daemons in PHP, every protocol draft (polysocket)
 php-websocket's daemon API (\\WebSocket\\Server, registerApplication,
 applications with onConnect/onData/onDisconnect) served by a Rust core
 that speaks every version of the WebSocket protocol: hixie-75, hixie-76,
 the hybi drafts and RFC 6455 with permessage-deflate, over ws and wss,
 on one port; broadcasts and groups across daemons over Redis.
EOF
echo "/etc/php/$PHPVER/mods-available/polysocket.ini" >"$STAGE/DEBIAN/conffiles"

cat >"$STAGE/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
if [ "\$1" = "configure" ] && [ -e /usr/lib/php/php-maintscript-helper ]; then
    . /usr/lib/php/php-maintscript-helper
    php_invoke enmod $PHPVER ALL polysocket
fi
exit 0
EOF
cat >"$STAGE/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
if { [ "\$1" = "remove" ] || [ "\$1" = "purge" ]; } && [ -e /usr/lib/php/php-maintscript-helper ]; then
    . /usr/lib/php/php-maintscript-helper
    php_invoke dismod $PHPVER ALL polysocket
fi
# On purge dpkg has deleted the ini (a conffile) before this runs, so
# php_invoke no longer sees the module: forget its per-SAPI state here.
if [ "\$1" = "purge" ] && [ -x /usr/sbin/phpdismod ]; then
    for sapi in \$(phpquery -v $PHPVER -S); do
        phpdismod -p -f -v $PHPVER -s "\$sapi" polysocket
    done
fi
exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/postrm"
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"

mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "== $DEB ($(du -k "$DEB" | cut -f1) KiB; installs $SIZE KiB)"
