//! The cluster from PHP: `setCluster()`'s settings and the static
//! `\WebSocket\Server` calls that reach every node (broadcastAll,
//! broadcastGroup, sendTo, closeTo, presence, nodes, clusterStats).
//!
//! The calls are static, like php-websocket's application code expects
//! (an application has its clients, not the server): they act on the
//! server whose `run()` is serving on this thread. What comes from the bus
//! is delivered by the runtime itself and never enters PHP.

use std::cell::RefCell;
use std::time::Duration;

use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use polysocket::runtime::{ClusterConfig, ServerHandle};

use crate::payload;

thread_local! {
    /// The handle of the server whose `run()` is serving on this thread.
    static RUNNING: RefCell<Option<ServerHandle>> = const { RefCell::new(None) };
}

/// Makes `handle` the running server until dropped (then the previous one,
/// should a callback have run another server).
pub struct Running(Option<ServerHandle>);

impl Running {
    pub fn enter(handle: ServerHandle) -> Running {
        Running(RUNNING.with(|r| r.borrow_mut().replace(handle)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let previous = self.0.take();
        RUNNING.with(|r| *r.borrow_mut() = previous);
    }
}

/// Whether a server's `run()` is serving on this thread (PHP may be
/// called: this is the PHP thread, between callbacks).
pub fn is_running() -> bool {
    RUNNING.with(|r| r.try_borrow().is_ok_and(|r| r.is_some()))
}

/// The running server, or an exception naming `method`.
pub fn running(method: &str) -> PhpResult<ServerHandle> {
    RUNNING.with(|r| r.borrow().clone()).ok_or_else(|| {
        format!(
            "WebSocket\\Server::{method}(): no server is running (call it while run() serves, \
                 e.g. from a callback)"
        )
        .into()
    })
}

/// `setCluster()`'s `$options`: `heartbeat` and `expiry` in seconds (int or
/// float), `queue` (messages). Core checks that they fit together when the
/// server starts; an unknown key or a value of the wrong kind is refused
/// here.
pub fn apply_options(config: &mut ClusterConfig, options: &ZendHashTable) -> PhpResult<()> {
    for (key, value) in options.iter() {
        let key = key.to_string();
        match key.as_str() {
            "heartbeat" => config.heartbeat_interval = seconds(&key, value)?,
            "expiry" => config.node_expiry = seconds(&key, value)?,
            "queue" => {
                config.queue = value
                    .long()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad_option(&key, "a positive int"))?
            }
            _ => {
                return Err(payload::invalid_argument(format!(
                    "setCluster(): unknown option '{key}' (heartbeat, expiry, queue)"
                )))
            }
        }
    }
    Ok(())
}

fn seconds(key: &str, value: &Zval) -> PhpResult<Duration> {
    value
        .double()
        .or_else(|| value.long().map(|n| n as f64))
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| bad_option(key, "a positive number of seconds"))
}

fn bad_option(key: &str, what: &str) -> PhpException {
    payload::invalid_argument(format!("setCluster(): option '{key}' must be {what}"))
}

/// `getCluster()`: the settings as given (the password of the URL too: it
/// is the caller's own).
pub fn describe(config: &ClusterConfig) -> PhpResult<ZBox<ZendHashTable>> {
    let mut out = ZendHashTable::new();
    out.insert("url", config.url.as_str())?;
    out.insert("namespace", config.namespace.as_str())?;
    out.insert("heartbeat", config.heartbeat_interval.as_secs_f64())?;
    out.insert("expiry", config.node_expiry.as_secs_f64())?;
    out.insert("queue", config.queue as i64)?;
    Ok(out)
}

/// `clusterStats()`: the bus's counters, null when not clustered.
pub fn stats(handle: &ServerHandle) -> PhpResult<Option<ZBox<ZendHashTable>>> {
    let Some(s) = handle.cluster_stats() else {
        return Ok(None);
    };
    let mut out = ZendHashTable::new();
    out.insert("node_id", i64::from(s.node_id))?;
    out.insert("connected", s.connected)?;
    for (name, n) in [
        ("published", s.published),
        ("received", s.received),
        ("dropped", s.dropped),
        ("malformed", s.malformed),
        ("unroutable", s.unroutable),
        ("reconnects", s.reconnects),
    ] {
        out.insert(name, i64::try_from(n).unwrap_or(i64::MAX))?;
    }
    out.insert("last_outage", s.last_outage.map(|d| d.as_secs_f64()))?;
    Ok(Some(out))
}

/// A URL fit for phpinfo: the password replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) if auth.contains(':') => {
            let user = auth.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_stay_out_of_phpinfo() {
        assert_eq!(redacted("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("rediss://u:pw@h"), "rediss://u:***@h");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }
}
