//! `ServerOptions`: the runtime's `ServerConfig` (and the engine's `Config`)
//! built from Python keyword arguments, checked when the server is
//! constructed so that bad configuration fails early with a clear
//! `ValueError` / `TypeError` instead of at the first connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use polysocket::runtime::{tls, ServerConfig};
use polysocket::{Config, Draft, DraftSet};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Validated server options (immutable once built).
#[pyclass(frozen, module = "polysocket._native")]
pub struct ServerOptions {
    pub(crate) config: ServerConfig,
}

fn count(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {value}")))
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds, got {value}"
        )))
    }
}

fn drafts(names: Vec<String>) -> PyResult<DraftSet> {
    let mut set = DraftSet::NONE;
    for name in &names {
        let d: Draft = name
            .parse()
            .map_err(|e| PyValueError::new_err(format!("{e}")))?;
        set = set.with(d);
    }
    if set.is_empty() {
        return Err(PyValueError::new_err("drafts must name at least one draft"));
    }
    Ok(set)
}

#[pymethods]
impl ServerOptions {
    /// Every limit is optional; 0 means "no limit" where the runtime allows it.
    #[new]
    #[pyo3(signature = (*, max_connections=0, max_connections_per_ip=0,
        max_messages_per_minute=0, max_message_size=None, handshake_timeout=10.0,
        ping_interval=None, ping_timeout=20.0, max_send_buffer=64*1024*1024,
        close_timeout=5.0, allowed_origins=None, drafts=None, compression=true,
        ssl_certfile=None, ssl_keyfile=None, workers=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_connections: i64,
        max_connections_per_ip: i64,
        max_messages_per_minute: i64,
        max_message_size: Option<i64>,
        handshake_timeout: f64,
        ping_interval: Option<f64>,
        ping_timeout: f64,
        max_send_buffer: i64,
        close_timeout: f64,
        allowed_origins: Option<Vec<String>>,
        drafts: Option<Vec<String>>,
        compression: bool,
        ssl_certfile: Option<PathBuf>,
        ssl_keyfile: Option<PathBuf>,
        workers: i64,
    ) -> PyResult<Self> {
        let mut protocol = Config::default();
        if let Some(size) = max_message_size {
            let size = count("max_message_size", size)?;
            if size == 0 {
                return Err(PyValueError::new_err("max_message_size must be positive"));
            }
            protocol.max_message_size = size;
            protocol.max_frame_size = size;
            protocol.max_decompressed_size = size;
        }
        if let Some(names) = drafts {
            protocol.drafts = self::drafts(names)?;
        }
        if !compression {
            protocol.extensions.permessage_deflate = None;
            protocol.extensions.deflate_frame = false;
            protocol.extensions.deflate_stream = false;
        }
        let per_minute = count("max_messages_per_minute", max_messages_per_minute)?;
        let tls = match (ssl_certfile, ssl_keyfile) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(
                tls::server_config(&cert, &key)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?,
            ),
            _ => {
                return Err(PyValueError::new_err(
                    "ssl_certfile and ssl_keyfile go together",
                ))
            }
        };
        let max_send_buffer = count("max_send_buffer", max_send_buffer)?;
        if max_send_buffer == 0 {
            return Err(PyValueError::new_err("max_send_buffer must be positive"));
        }
        if let Some(origins) = &allowed_origins {
            if origins.is_empty() {
                return Err(PyValueError::new_err(
                    "allowed_origins is empty (every origin would be refused); use None for any",
                ));
            }
        }
        let config = ServerConfig {
            protocol: Arc::new(protocol),
            max_connections: count("max_connections", max_connections)?,
            max_connections_per_ip: count("max_connections_per_ip", max_connections_per_ip)?,
            max_messages_per_minute: u32::try_from(per_minute)
                .map_err(|_| PyValueError::new_err("max_messages_per_minute is too large"))?,
            allowed_origins,
            handshake_timeout: seconds("handshake_timeout", handshake_timeout)?,
            ping_interval: ping_interval
                .map(|s| seconds("ping_interval", s))
                .transpose()?,
            pong_timeout: seconds("ping_timeout", ping_timeout)?,
            max_send_buffer,
            close_timeout: seconds("close_timeout", close_timeout)?,
            tls,
            workers: count("workers", workers)?,
            ..ServerConfig::default()
        };
        Ok(ServerOptions { config })
    }

    /// Runtime threads asked for (0: the loop's own thread on polysocket's
    /// loop, else one per core).
    #[getter]
    fn workers(&self) -> usize {
        self.config.workers
    }

    /// Whether the server speaks `wss://`.
    #[getter]
    fn secure(&self) -> bool {
        self.config.tls.is_some()
    }
}
