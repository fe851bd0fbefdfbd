//! php.ini settings:
//!
//! * `polysocket.verbose` (0): log every connect and disconnect, as
//!   php-websocket did (costly with thousands of clients).
//! * `polysocket.cluster_url` (empty: no cluster) and
//!   `polysocket.cluster_namespace` (`polysocket`): the cluster a new
//!   `\WebSocket\Server` joins unless `setCluster()` says otherwise, so N
//!   copies of one daemon script join one cluster by configuration alone.
//! * `polysocket.reuse_port` (0): bind new servers with `SO_REUSEPORT`, so
//!   N daemons share one port (the constructor binds, so it must be known
//!   there).
//! * `polysocket.max_buffered_total` (268435456, 256 MiB): bytes all
//!   connections of a server may hold for their clients (partial frames,
//!   reassembly, inflation, unsent output); past it the connection asking
//!   for more is closed with 1013. 0: no budget. `setMaxBufferedTotal()`
//!   overrides it per server.

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};

pub static ENTRIES: IniEntryDefs<6> = IniEntryDefs::new([
    IniEntryDef::new(c"polysocket.verbose", c"0", IniEntryPermission::All),
    IniEntryDef::new(c"polysocket.cluster_url", c"", IniEntryPermission::All),
    IniEntryDef::new(
        c"polysocket.cluster_namespace",
        c"polysocket",
        IniEntryPermission::All,
    ),
    IniEntryDef::new(c"polysocket.reuse_port", c"0", IniEntryPermission::All),
    IniEntryDef::new(
        c"polysocket.max_buffered_total",
        c"268435456",
        IniEntryPermission::All,
    ),
    IniEntryDef::end(),
]);

fn value(name: &str) -> Option<String> {
    ExecutorGlobals::get().ini_values().remove(name).flatten()
}

fn flag(name: &str) -> bool {
    matches!(
        value(name).as_deref().map(str::trim),
        Some("1" | "on" | "On" | "true" | "yes")
    )
}

pub fn verbose() -> bool {
    flag("polysocket.verbose")
}

pub fn reuse_port() -> bool {
    flag("polysocket.reuse_port")
}

/// `polysocket.cluster_url`, when set.
pub fn cluster_url() -> Option<String> {
    value("polysocket.cluster_url")
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty())
}

pub fn cluster_namespace() -> String {
    value("polysocket.cluster_namespace").unwrap_or_else(|| "polysocket".into())
}

/// `polysocket.max_buffered_total` in bytes; a value that is not a
/// non-negative integer gives the runtime's default (and a warning).
pub fn max_buffered_total() -> i64 {
    let default = polysocket::runtime::ServerConfig::default().max_buffered_total as i64;
    match value("polysocket.max_buffered_total").map(|v| v.trim().parse::<i64>()) {
        None => default,
        Some(Ok(bytes)) if bytes >= 0 => bytes,
        Some(_) => {
            crate::log::warning(
                "polysocket.max_buffered_total is not a byte count; using 268435456 (256 MiB)",
            );
            default
        }
    }
}
