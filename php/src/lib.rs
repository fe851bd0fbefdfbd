#![cfg_attr(windows, feature(abi_vectorcall))]
//! polysocket's PHP extension: php-websocket's `\WebSocket\` daemon API
//! (Server, Application, Connection) on polysocket's Rust runtime, which
//! runs on the PHP thread itself (current-thread tokio), so PHP is only
//! ever entered from its own thread and a message costs no thread hop.

mod cluster;
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
        "cluster",
        "Redis pub/sub (redis://, rediss://): broadcastAll, broadcastGroup, sendTo, closeTo, presence"
    );
    info_table_row!("reuse_port", "SO_REUSEPORT (N daemons on one port)");
    let url = ini::cluster_url().map(|u| cluster::redacted(&u));
    info_table_row!(
        "polysocket.cluster_url",
        url.as_deref().unwrap_or("(none: single node)")
    );
    info_table_row!("polysocket.cluster_namespace", ini::cluster_namespace());
    info_table_row!(
        "polysocket.reuse_port",
        if ini::reuse_port() { "1" } else { "0" }
    );
    info_table_row!("polysocket.verbose", if ini::verbose() { "1" } else { "0" });
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
