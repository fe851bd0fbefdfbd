//! php.ini settings:
//!
//! * `polysocket.verbose` (0): log every connect and disconnect, as
//!   php-websocket did (costly with thousands of clients).

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{ExecutorGlobals, IniEntryDef, IniEntryDefs};

pub static ENTRIES: IniEntryDefs<2> = IniEntryDefs::new([
    IniEntryDef::new(c"polysocket.verbose", c"0", IniEntryPermission::All),
    IniEntryDef::end(),
]);

fn value(name: &str) -> Option<String> {
    ExecutorGlobals::get().ini_values().remove(name).flatten()
}

pub fn verbose() -> bool {
    matches!(
        value("polysocket.verbose").as_deref().map(str::trim),
        Some("1" | "on" | "On" | "true" | "yes")
    )
}
