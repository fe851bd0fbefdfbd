#![cfg_attr(windows, feature(abi_vectorcall))]
//! polysocket's PHP extension: php-websocket's `\WebSocket\` daemon API
//! (Server, Application, Connection) on polysocket's Rust runtime, which
//! runs on the PHP thread itself (current-thread tokio), so PHP is only
//! ever entered from its own thread and a message costs no thread hop.

mod connection;
mod event_loop;
mod ini;
mod log;
mod payload;
mod policy;
mod server;
#[cfg_attr(windows, path = "signals_windows.rs")]
mod signals;

use ext_php_rs::prelude::*;
use ext_php_rs::zend::{IniEntryDef, ModuleEntry};
use ext_php_rs::{info_table_end, info_table_row, info_table_start};

/// Classes written in PHP: the application base class (user subclasses
/// declare untyped methods, which a Rust-declared base would forbid) and
/// php-websocket's StatusApplication, as fallbacks a user's own copies
/// replace (an autoloader declares them on first use). Run at every
/// request start.
const PRELUDE: &str = include_str!("prelude.php");

// The engine's hooks below are safe functions: ext-php-rs's hook types are
// `unsafe extern "C" fn`, which a safe `extern "C" fn` coerces to, and the
// bodies only use safe APIs.

extern "C" fn startup(_type: i32, module_number: i32) -> i32 {
    IniEntryDef::register(ini::ENTRIES.as_slice(), module_number);
    0
}

extern "C" fn request_startup(_type: i32, _module_number: i32) -> i32 {
    if let Err(e) = ext_php_rs::php_eval::execute(PRELUDE) {
        log::warning(&format!(
            "polysocket: defining WebSocket\\Application classes failed: {e}"
        ));
    }
    0
}

extern "C" fn info(_module: *mut ModuleEntry) {
    info_table_start!();
    info_table_row!("polysocket support", "enabled");
    info_table_row!("version", env!("CARGO_PKG_VERSION"));
    info_table_row!(
        "protocols",
        "hixie-75, hixie-76/hybi-00, hybi-01..17, RFC 6455"
    );
    info_table_row!(
        "compression",
        "permessage-deflate, deflate-frame, deflate-stream"
    );
    info_table_row!("TLS (wss)", "rustls (ring)");
    info_table_row!(
        "thread safety",
        if ext_php_rs::PHP_ZTS { "ZTS" } else { "NTS" }
    );
    info_table_end!();
}

#[php_module]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    module
        .name("polysocket")
        .version(env!("CARGO_PKG_VERSION"))
        .startup_function(startup)
        .request_startup_function(request_startup)
        .info_function(info)
        .class::<connection::Connection>()
        .class::<server::Server>()
}
