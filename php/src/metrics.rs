//! `getStats()`: the server's metrics (core's `Stats`) as a PHP array, with
//! the keys Python's `Server.stats()` uses (docs/OPERATIONS.md, "Metrics").

use ext_php_rs::boxed::ZBox;
use ext_php_rs::error::Result;
use ext_php_rs::types::ZendHashTable;
use polysocket::runtime::Stats;

/// An integer as PHP holds one (counters past `i64::MAX` saturate).
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `{key: count}` with string keys (drafts, extensions, limits).
fn named<'a, N: TryInto<i64> + Copy + 'a>(
    pairs: impl IntoIterator<Item = (&'a &'static str, &'a N)>,
) -> Result<ZBox<ZendHashTable>> {
    let mut out = ZendHashTable::new();
    for (name, n) in pairs {
        out.insert(*name, int(*n))?;
    }
    Ok(out)
}

/// `{code: count}` with integer keys (HTTP statuses, close codes).
fn coded<'a>(pairs: impl IntoIterator<Item = (&'a u16, &'a u64)>) -> Result<ZBox<ZendHashTable>> {
    let mut out = ZendHashTable::new();
    for (code, n) in pairs {
        out.insert_at_index(i64::from(*code), int(*n))?;
    }
    Ok(out)
}

pub fn stats_array(s: &Stats) -> Result<ZBox<ZendHashTable>> {
    let mut out = ZendHashTable::new();
    out.insert("connections", int(s.connections))?;
    out.insert("by_draft", named(&s.by_draft)?)?;
    out.insert("by_extension", named(&s.by_extension)?)?;
    out.insert("by_http_version", named(&s.by_http_version)?)?;
    out.insert("handshakes_accepted", int(s.handshakes_accepted))?;
    out.insert("handshakes_refused", coded(&s.handshakes_refused)?)?;
    out.insert("messages_in", int(s.tally.messages_in))?;
    out.insert("bytes_in", int(s.tally.bytes_in))?;
    out.insert("messages_out", int(s.tally.messages_out))?;
    out.insert("bytes_out", int(s.tally.bytes_out))?;
    out.insert("closes", coded(&s.closes)?)?;
    out.insert("limits", named(&s.limits)?)?;
    out.insert("buffered_bytes", int(s.buffered_bytes))?;
    Ok(out)
}
