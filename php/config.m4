dnl What PIE (and PECL-style installs) run in this directory:
dnl `phpize && ./configure && make && make install`. The extension is Rust:
dnl configure finds cargo, make builds the crate with cargo against the PHP
dnl that phpize belongs to, and installs modules/polysocket.so like any
dnl shared extension.

PHP_ARG_ENABLE([polysocket],
  [whether to enable polysocket],
  [AS_HELP_STRING([--enable-polysocket],
    [Enable polysocket, the WebSocket daemon extension (default: yes)])],
  [yes])

PHP_ARG_WITH([cargo],
  [for the cargo to build polysocket with],
  [AS_HELP_STRING([--with-cargo=PATH],
    [cargo, Rust's build tool (default: cargo on PATH or in ~/.cargo/bin)])],
  [no], [no])

if test "$PHP_POLYSOCKET" != "no"; then
  if test "$PHP_CARGO" != "no" && test "$PHP_CARGO" != "yes"; then
    CARGO="$PHP_CARGO"
  else
    AC_PATH_PROG([CARGO], [cargo], [no], [$PATH$PATH_SEPARATOR$HOME/.cargo/bin])
  fi
  if test "$CARGO" = "no" || ! test -x "$CARGO"; then
    AC_MSG_ERROR([polysocket is written in Rust: install a Rust toolchain (https://rustup.rs, 1.85 or newer) or name one with --with-cargo=PATH])
  fi
  AC_MSG_CHECKING([for libclang (the extension's bindings to PHP's headers are generated with it)])
  if ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || test -n "$LIBCLANG_PATH"; then
    AC_MSG_RESULT([yes])
  else
    AC_MSG_RESULT([not found; install libclang-dev or set LIBCLANG_PATH])
  fi
  dnl ext-php-rs asks this php-config which PHP to build for.
  POLYSOCKET_PHP_CONFIG=`command -v "$PHP_CONFIG"`
  PHP_SUBST([CARGO])
  PHP_SUBST([POLYSOCKET_PHP_CONFIG])
  PHP_ADD_MAKEFILE_FRAGMENT([$abs_srcdir/Makefile.frag])
fi
