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
mod metrics;
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
    log::install();
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

/// The PHP build the extension was compiled for, e.g. "API20220829,TS
/// (thread-safe: XAMPP, WAMP)": a ZTS and an NTS build are different files.
fn php_build() -> String {
    // SAFETY: the function returns ZEND_MODULE_BUILD_ID, a string literal
    // compiled into ext-php-rs's C wrapper: static and NUL-terminated.
    let id = unsafe { std::ffi::CStr::from_ptr(ext_php_rs::ffi::ext_php_rs_php_build_id()) };
    let id = id.to_string_lossy();
    let kind = if id.split(',').any(|part| part == "TS") {
        "thread-safe: XAMPP, WAMP, ZTS builds"
    } else {
        "non-thread-safe: Debian, most Linux builds"
    };
    format!("{id} ({kind})")
}

extern "C" fn info(_module: *mut ModuleEntry) {
    info_table_start!();
    info_table_row!("polysocket support", "enabled");
    info_table_row!("version", env!("CARGO_PKG_VERSION"));
    info_table_row!("built for", php_build());
    info_table_row!(
        "protocols",
        "hixie-75, hixie-76/hybi-00, hybi-01..17, RFC 6455"
    );
    info_table_row!(
        "compression",
        "permessage-deflate, deflate-frame, deflate-stream"
    );
    info_table_row!("TLS (wss)", "rustls (ring)");
    let defaults = polysocket::runtime::ServerConfig::default();
    info_table_row!(
        "HTTP/2 (RFC 8441)",
        format!(
            "{} by default with wss (setHttp2()), {} streams per connection (setHttp2MaxStreams()), \
             {} streams reset before they were taken up (setHttp2MaxPendingResets())",
            if defaults.http2 { "on" } else { "off" },
            defaults.http2_max_streams,
            defaults.http2_max_pending_resets
        )
    );
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
    info_table_row!(
        "polysocket.max_buffered_total",
        ini::max_buffered_total().to_string()
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
