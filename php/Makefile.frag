# Appended by config.m4 to phpize's Makefile: `make` builds the crate with
# cargo (release), against the PHP of this phpize (ext-php-rs reads
# PHP_CONFIG), and `make install` copies modules/polysocket.so to PHP's
# extension directory. CARGO_TARGET_DIR, if set, is where cargo builds.

all: $(phplibdir)/polysocket.so
install-modules: $(phplibdir)/polysocket.so

$(phplibdir)/polysocket.so: FORCE
	cd "$(top_srcdir)/.." && PHP_CONFIG="$(POLYSOCKET_PHP_CONFIG)" PHP="$(PHP_EXECUTABLE)" \
		"$(CARGO)" build --release --locked -p polysocket-php
	$(mkinstalldirs) $(phplibdir)
	cp "$$(cd "$(top_srcdir)/.." && "$(CARGO)" metadata --format-version 1 --no-deps \
		| sed -e 's/.*"target_directory":"\([^"]*\)".*/\1/')/release/libpolysocket_php.so" $@

FORCE:
