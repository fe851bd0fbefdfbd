//! The engine settings a Python caller can choose, turned into one core
//! `Config` (shared by a handshake and the connection it opens).

use std::sync::Arc;

use polysocket::{Config, Draft, DraftSet, ExtensionsConfig, PerMessageDeflateConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The compression extensions by the names bindings use.
const EXTENSIONS: [&str; 3] = ["permessage-deflate", "deflate-frame", "deflate-stream"];

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
    /// Which compression extensions to offer or accept, by name
    /// (`permessage-deflate`, `deflate-frame`, `deflate-stream`); `None`:
    /// all of them (Tornado's client offers permessage-deflate only).
    pub extensions: Option<Vec<String>>,
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
            Some(level) => {
                let names = self
                    .extensions
                    .unwrap_or_else(|| EXTENSIONS.iter().map(|n| n.to_string()).collect());
                if let Some(bad) = names.iter().find(|n| !EXTENSIONS.contains(&n.as_str())) {
                    return Err(PyValueError::new_err(format!(
                        "unknown extension {bad:?}; known: {}",
                        EXTENSIONS.join(", ")
                    )));
                }
                let has = |name: &str| names.iter().any(|n| n == name);
                ExtensionsConfig {
                    permessage_deflate: has(EXTENSIONS[0]).then(PerMessageDeflateConfig::default),
                    deflate_frame: has(EXTENSIONS[1]),
                    deflate_stream: has(EXTENSIONS[2]),
                    compression_level: level,
                    ..ExtensionsConfig::default()
                }
            }
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
