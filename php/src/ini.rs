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

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};

pub static ENTRIES: IniEntryDefs<5> = IniEntryDefs::new([
    IniEntryDef::new(c"polysocket.verbose", c"0", IniEntryPermission::All),
    IniEntryDef::new(c"polysocket.cluster_url", c"", IniEntryPermission::All),
    IniEntryDef::new(
        c"polysocket.cluster_namespace",
        c"polysocket",
        IniEntryPermission::All,
    ),
    IniEntryDef::new(c"polysocket.reuse_port", c"0", IniEntryPermission::All),
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
