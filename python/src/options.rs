//! Every engine and server setting a Python caller can choose, built once
//! here: [`Options`] (the engine's `Config`, shared by a handshake and the
//! connection it opens: the Tornado drop-in, the client) and
//! [`ServerOptions`] (the runtime's `ServerConfig` of the standalone server,
//! whose engine part goes through [`Options`] too). Everything is checked
//! when built, so bad configuration fails early with a clear `ValueError` /
//! `TypeError` instead of at the first connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use polysocket::runtime::tls::{self, CertificateFiles};
use polysocket::runtime::{parse_trusted_proxies, ClusterConfig, ServerConfig};
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
    /// Server: answer permessage-deflate with `server_no_context_takeover`,
    /// so that a quiet connection can give its compressor back
    /// (`Engine.release_buffers`).
    pub no_context_takeover: bool,
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
                    permessage_deflate: has(EXTENSIONS[0]).then(|| PerMessageDeflateConfig {
                        server_no_context_takeover: self.no_context_takeover,
                        ..PerMessageDeflateConfig::default()
                    }),
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
            "no draft allowed: no client could connect",
        ));
    }
    names
        .iter()
        .try_fold(DraftSet::NONE, |set, n| Ok(set.with(parse_draft(n)?)))
}

/// Validated options of the standalone server (immutable once built).
#[pyclass(frozen, module = "polysocket._native")]
pub struct ServerOptions {
    pub(crate) config: ServerConfig,
}

pub(crate) fn count(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {value}")))
}

pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be a positive number of seconds, got {value}"
        )))
    }
}

const NO_DEFAULT_CERTIFICATE: &str =
    "ssl_certificates needs a default certificate: ssl_certfile and ssl_keyfile";

/// The default certificate and those chosen by server name (SNI), read now:
/// a file that cannot be used is a `ValueError` naming it.
fn certificates(
    cert: PathBuf,
    key: PathBuf,
    named: Option<Vec<(Vec<String>, PathBuf, PathBuf)>>,
) -> PyResult<Arc<tls::Certificates>> {
    let named = named
        .unwrap_or_default()
        .into_iter()
        .map(|(server_names, cert, key)| CertificateFiles {
            server_names,
            ..CertificateFiles::new(cert, key)
        })
        .collect();
    tls::Certificates::load(CertificateFiles::new(cert, key), named)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymethods]
impl ServerOptions {
    /// Every limit is optional; 0 means "no limit" where the runtime allows it.
    #[new]
    #[pyo3(signature = (*, max_connections=0, max_connections_per_ip=0,
        max_messages_per_minute=0, max_message_size=None, handshake_timeout=10.0,
        ping_interval=None, ping_timeout=20.0, max_send_buffer=64*1024*1024,
        max_buffered_total=256*1024*1024, close_timeout=5.0, drain_timeout=0.0, allowed_origins=None, drafts=None, compression=true,
        ssl_certfile=None, ssl_keyfile=None, ssl_certificates=None, workers=0, reuse_port=false,
        trusted_proxies=None, proxy_protocol=false, metrics=false, metrics_port=None, cluster=None,
        namespace=None, cluster_heartbeat=1.0, cluster_expiry=3.0, cluster_queue=65536,
        http2=true, http2_max_streams=100, http2_max_pending_resets=20))]
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
        max_buffered_total: i64,
        close_timeout: f64,
        drain_timeout: f64,
        allowed_origins: Option<Vec<String>>,
        drafts: Option<Vec<String>>,
        compression: bool,
        ssl_certfile: Option<PathBuf>,
        ssl_keyfile: Option<PathBuf>,
        ssl_certificates: Option<Vec<(Vec<String>, PathBuf, PathBuf)>>,
        workers: i64,
        reuse_port: bool,
        trusted_proxies: Option<Vec<String>>,
        proxy_protocol: bool,
        metrics: bool,
        metrics_port: Option<i64>,
        cluster: Option<String>,
        namespace: Option<String>,
        cluster_heartbeat: f64,
        cluster_expiry: f64,
        cluster_queue: i64,
        http2: bool,
        http2_max_streams: i64,
        http2_max_pending_resets: i64,
    ) -> PyResult<Self> {
        let protocol = Options {
            max_message_size: match max_message_size {
                Some(size) => count("max_message_size", size)?,
                None => Config::default().max_message_size,
            },
            compression_level: compression.then(|| ExtensionsConfig::default().compression_level),
            drafts,
            auto_pong: true,
            extensions: None,
            no_context_takeover: false,
        }
        .into_config()?;
        let per_minute = count("max_messages_per_minute", max_messages_per_minute)?;
        let certificates = match (ssl_certfile, ssl_keyfile) {
            (Some(cert), Some(key)) => Some(certificates(cert, key, ssl_certificates)?),
            (None, None) if ssl_certificates.is_none() => None,
            (None, None) => return Err(PyValueError::new_err(NO_DEFAULT_CERTIFICATE)),
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
        if allowed_origins.as_ref().is_some_and(Vec::is_empty) {
            return Err(PyValueError::new_err(
                "allowed_origins is empty (every origin would be refused); use None for any",
            ));
        }
        let trusted_proxies = parse_trusted_proxies(&trusted_proxies.unwrap_or_default())
            .map_err(PyValueError::new_err)?;
        if proxy_protocol && trusted_proxies.is_empty() {
            return Err(PyValueError::new_err(
                "proxy_protocol needs trusted_proxies (whose PROXY headers to believe)",
            ));
        }
        let metrics_port = metrics_port
            .map(|p| {
                u16::try_from(p).map_err(|_| {
                    PyValueError::new_err(format!("metrics_port must be in 0..65535, got {p}"))
                })
            })
            .transpose()?;
        // 0 would refuse every stream while ALPN still offers h2.
        let http2_max_streams = u32::try_from(http2_max_streams)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "http2_max_streams must be in 1..{}, got {http2_max_streams}",
                    u32::MAX
                ))
            })?;
        // 0 would close the connection at the first stream a client resets.
        let http2_max_pending_resets = usize::try_from(http2_max_pending_resets)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "http2_max_pending_resets must be >= 1, got {http2_max_pending_resets}"
                ))
            })?;
        let mut config = ServerConfig {
            protocol,
            http2,
            http2_max_streams,
            http2_max_pending_resets,
            trusted_proxies,
            proxy_protocol,
            metrics,
            metrics_port,
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
            max_buffered_total: count("max_buffered_total", max_buffered_total)?,
            close_timeout: seconds("close_timeout", close_timeout)?,
            // 0: no drain (SIGTERM stops at once).
            drain_timeout: match drain_timeout {
                0.0 => Duration::ZERO,
                s => seconds("drain_timeout", s)?,
            },
            workers: count("workers", workers)?,
            reuse_port,
            cluster: match cluster {
                None => None,
                Some(url) => Some(cluster_config(
                    url,
                    namespace,
                    seconds("cluster_heartbeat", cluster_heartbeat)?,
                    seconds("cluster_expiry", cluster_expiry)?,
                    count("cluster_queue", cluster_queue)?,
                )?),
            },
            ..ServerConfig::default()
        };
        if let Some(certificates) = certificates {
            config
                .serve_certificates(certificates)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok(ServerOptions { config })
    }

    /// Runtime threads asked for (0: the loop's own thread on polysocket's
    /// loop, else one per core).
    #[getter]
    fn workers(&self) -> usize {
        self.config.workers
    }

    /// Seconds a drain lets open connections carry on.
    #[getter]
    fn drain_timeout(&self) -> f64 {
        self.config.drain_timeout.as_secs_f64()
    }

    /// Whether the server belongs to a cluster.
    #[getter]
    fn clustered(&self) -> bool {
        self.config.cluster.is_some()
    }

    /// Whether the server speaks `wss://`.
    #[getter]
    fn secure(&self) -> bool {
        self.config.tls.is_some()
    }
}

/// A cluster on `url` (see docs/CLUSTER.md), checked now: a bad URL,
/// namespace or limit is a `ValueError` when the options are built, not
/// when the server starts.
pub(crate) fn cluster_config(
    url: String,
    namespace: Option<String>,
    heartbeat: Duration,
    expiry: Duration,
    queue: usize,
) -> PyResult<ClusterConfig> {
    let namespace = namespace.ok_or_else(|| {
        PyValueError::new_err("cluster needs a namespace (e.g. namespace=\"chat\")")
    })?;
    let config = ClusterConfig {
        heartbeat_interval: heartbeat,
        node_expiry: expiry,
        queue,
        ..ClusterConfig::new(url, namespace)
    };
    config
        .check()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(config)
}
