//! The engine settings a Python caller can choose, turned into one core
//! `Config` (shared by a handshake and the connection it opens).

use std::sync::Arc;

use polysocket::{Config, Draft, DraftSet, ExtensionsConfig, PerMessageDeflateConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// What a binding decides per connection; everything else is core's default.
pub struct Options {
    /// Largest message, on the wire and after inflation (1009 beyond).
    pub max_message_size: usize,
    /// `None`: no compression extension at all. `Some(level)`: every
    /// extension the draft has, at this zlib level.
    pub compression_level: Option<u32>,
    /// Drafts a server accepts (`None`: all).
    pub drafts: Option<Vec<String>>,
    /// Answer pings in the engine. Tornado answers them itself (it
    /// coalesces pongs and lets tests watch them), so it turns this off.
    pub auto_pong: bool,
    /// A client offers permessage-deflate only (what Tornado's client
    /// offers), not deflate-frame / deflate-stream too.
    pub permessage_deflate_only: bool,
}

impl Options {
    pub fn into_config(self) -> PyResult<Arc<Config>> {
        if self.max_message_size == 0 {
            return Err(PyValueError::new_err("max_message_size must be positive"));
        }
        let defaults = Config::default();
        let extensions = match self.compression_level {
            None => ExtensionsConfig {
                permessage_deflate: None,
                deflate_frame: false,
                deflate_stream: false,
                ..ExtensionsConfig::default()
            },
            Some(level) if level > 9 => {
                return Err(PyValueError::new_err(format!(
                    "compression_level must be 0..9, not {level}"
                )))
            }
            Some(level) => ExtensionsConfig {
                permessage_deflate: Some(PerMessageDeflateConfig::default()),
                deflate_frame: !self.permessage_deflate_only,
                deflate_stream: !self.permessage_deflate_only,
                compression_level: level,
                ..ExtensionsConfig::default()
            },
        };
        Ok(Arc::new(Config {
            max_frame_size: self.max_message_size,
            max_message_size: self.max_message_size,
            max_decompressed_size: self.max_message_size,
            drafts: match &self.drafts {
                None => DraftSet::ALL,
                Some(names) => draft_set(names)?,
            },
            auto_pong: self.auto_pong,
            extensions,
            ..defaults
        }))
    }
}

/// A draft by any of its names (`"hixie-76"`, `"hybi-00"`, `"13"`, `"rfc6455"`).
pub fn parse_draft(name: &str) -> PyResult<Draft> {
    name.parse::<Draft>().map_err(|e| {
        let known: Vec<&str> = Draft::ALL.iter().map(|d| d.name()).collect();
        PyValueError::new_err(format!("{e}; known drafts: {}", known.join(", ")))
    })
}

fn draft_set(names: &[String]) -> PyResult<DraftSet> {
    if names.is_empty() {
        return Err(PyValueError::new_err(
            "allowed_drafts is empty: no client could connect",
        ));
    }
    names
        .iter()
        .try_fold(DraftSet::NONE, |set, n| Ok(set.with(parse_draft(n)?)))
}
