#!/usr/bin/env bash
# The PHP extension as users install it (needs root: it installs and
# removes a system package).
#
# 1. The Debian package (scripts/build-deb.sh) installed with apt: plain
#    `php -m` lists polysocket with the workspace's version, the echo
#    example runs with plain `php` (no -d extension) and the interop suite
#    passes against it. Removed: no SAPI loads it, no file of the package
#    is left but its conffile. Purged: nothing is left.
# 2. PIE: composer.json passes `composer validate --strict`; the tree is
#    exported as a release archive is (the files git tracks) and, in the
#    build-path composer.json names, PIE's steps run: phpize, ./configure,
#    make, make install (into a staging root, not the system); the
#    installed module loads and reports the workspace's version.
#
#   scripts/test-php-packages.sh
#   POLYSOCKET_PHP_EXT=path ...   # package an extension built already
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
. scripts/lib/setup.sh
setup_init php-packages
command -v composer >/dev/null 2>&1 || apt_install composer
command -v phpize >/dev/null 2>&1 || apt_install php8.2-dev

fail() { echo "test-php-packages: $*" >&2; exit 1; }
VERSION=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "polysocket-php"))')
TARGET=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# --- 1. the .deb ------------------------------------------------------------------------
./scripts/build-deb.sh
DEB=$(ls -t dist/php*-polysocket_"$VERSION"-1_*.deb | head -n 1)
PKG=$(dpkg-deb -f "$DEB" Package)
dpkg -s "$PKG" >/dev/null 2>&1 && fail "$PKG is installed already; remove it first"
# Whatever happens below, the machine is left without the package.
trap 'apt-get purge -y -q "$PKG" >>"$SETUP_LOG" 2>&1 || true' EXIT

t0=$(date +%s%N)
apt-get install -y -q "./$DEB" >>"$SETUP_LOG" 2>&1 || setup_failed
echo "== apt install ./$DEB: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
php -m | grep -x polysocket >/dev/null || fail "plain php -m does not list polysocket after installing $DEB"
got=$(php -r 'echo phpversion("polysocket");')
[ "$got" = "$VERSION" ] || fail "phpversion('polysocket') is '$got', expected $VERSION"
for sapi in $(phpquery -v 8.2 -S); do
    phpquery -v 8.2 -s "$sapi" -m polysocket >/dev/null || fail "polysocket not enabled for the $sapi SAPI"
done

echo "== the interop suite against plain \`php examples/php/echo.php\`"
POLYSOCKET_SKIP_AUTOBAHN=1 POLYSOCKET_SKIP_BROWSER="${POLYSOCKET_SKIP_BROWSER:-}" \
POLYSOCKET_ECHO_CMD="php examples/php/echo.php --host 127.0.0.1 --port {port}" \
    ./scripts/test-interop.sh

mapfile -t files < <(dpkg -L "$PKG" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
apt-get remove -y -q "$PKG" >>"$SETUP_LOG" 2>&1 || setup_failed
php -m | grep -x polysocket >/dev/null && fail "php still loads polysocket after apt remove"
left=()
for f in "${files[@]}"; do [ -e "$f" ] && left+=("$f"); done
[ "${left[*]}" = "/etc/php/8.2/mods-available/polysocket.ini" ] \
    || fail "after apt remove, expected only the conffile to be left, found: ${left[*]:-nothing}"
apt-get purge -y -q "$PKG" >>"$SETUP_LOG" 2>&1 || setup_failed
trap - EXIT
stray=$(find /etc/php /usr/lib/php /var/lib/php/modules -name '*polysocket*' 2>/dev/null || true)
[ -z "$stray" ] || fail "after apt purge, left behind: $stray"
echo "== $DEB: installed, served the interop suite, removed and purged without a trace"

# --- 2. PIE -----------------------------------------------------------------------------
composer validate --strict --no-check-publish composer.json
# Debian's composer (2.5) predates the `php-ext` section; check it against
# what PIE's documentation requires of it.
BUILD_PATH=$(python3 - <<'PY'
import json, re, sys
doc = json.load(open("composer.json"))
ext = doc["php-ext"]
errors = []
if doc.get("type") != "php-ext":
    errors.append("type must be php-ext")
if not re.fullmatch(r"[A-Za-z][a-zA-Z0-9_]+", ext.get("extension-name", "")):
    errors.append("extension-name must match PIE's ^[A-Za-z][a-zA-Z0-9_]+$")
if not isinstance(ext.get("priority", 20), int):
    errors.append("priority must be an integer")
for flag in ("support-zts", "support-nts"):
    if not isinstance(ext.get(flag, True), bool):
        errors.append(f"{flag} must be a boolean")
for opt in ext.get("configure-options", []):
    if not re.fullmatch(r"[a-z][a-z0-9-]*", opt.get("name", "")) or not isinstance(opt.get("description"), str):
        errors.append(f"configure option {opt!r} needs a name and a description")
    if not isinstance(opt.get("needs-value", False), bool):
        errors.append(f"configure option {opt['name']}: needs-value must be a boolean")
path = ext.get("build-path", ".")
try:
    open(f"{path}/config.m4").close()
except OSError:
    errors.append(f"build-path {path!r} has no config.m4")
if errors:
    sys.exit("composer.json php-ext: " + "; ".join(errors))
print(path)
PY
)
OPTIONS=$(python3 -c 'import json; print(" ".join(o["name"] for o in json.load(open("composer.json"))["php-ext"].get("configure-options", [])))')
SRC="$TARGET/pie/src"
rm -rf "$TARGET/pie" && mkdir -p "$SRC" "$TARGET/pie/root"
git ls-files -z | tar --null -T - -cf - | tar -C "$SRC" -xf -
echo "== PIE's steps in $BUILD_PATH/: phpize, ./configure, make, make install"
t0=$(date +%s)
(
    cd "$SRC/$BUILD_PATH"
    phpize >"$TARGET/pie/phpize.log" 2>&1
    ./configure >"$TARGET/pie/configure.log" 2>&1
    # Every option composer.json offers is one ./configure takes.
    for opt in $OPTIONS; do
        ./configure --help | grep -- "--$opt" >/dev/null || { echo "./configure has no --$opt" >&2; exit 1; }
    done
    # The workspace's target dir: the crates' dependencies are built already.
    CARGO_TARGET_DIR="$TARGET" make >"$TARGET/pie/make.log" 2>&1
    CARGO_TARGET_DIR="$TARGET" make install INSTALL_ROOT="$TARGET/pie/root" >>"$TARGET/pie/make.log" 2>&1
) || { tail -n 30 "$TARGET"/pie/*.log >&2; fail "PIE's build failed (logs in $TARGET/pie)"; }
INSTALLED="$TARGET/pie/root$(php-config --extension-dir)/polysocket.so"
[ -f "$INSTALLED" ] || fail "make install did not install $INSTALLED"
got=$(php -n -d "extension=$INSTALLED" -r 'echo phpversion("polysocket");')
[ "$got" = "$VERSION" ] || fail "the module PIE's steps built reports '$got', expected $VERSION"
echo "== PIE's steps built and installed polysocket $got in $(( $(date +%s) - t0 )) s"
echo "== php packages done in $(( $(date +%s) - START )) s"
