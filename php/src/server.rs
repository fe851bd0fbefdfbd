//! `\WebSocket\Server`: php-websocket's settings (same defaults, same
//! validation and return values), application registry and `run()`, with
//! the sockets, handshakes, limits and framing in polysocket's runtime.
//!
//! Every method takes `&self` (state in cells): application callbacks may
//! call back into the server (`stop()`, getters) while `run()` is active.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ext_php_rs::binary::Binary;
use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use polysocket::runtime::tls;
use polysocket::runtime::{
    parse_trusted_proxies, ClusterConfig, IpNet, ServerConfig, ServerHandle,
};

use crate::cluster;
use crate::connection::{self, Connection};
use crate::event_loop::{self, Outcome};
use crate::payload;
use crate::policy::{self, Policy};

/// php-websocket's defaults.
const DEFAULT_MAX_CLIENTS: i64 = 30;
const DEFAULT_MAX_PER_IP: i64 = 5;
const DEFAULT_MAX_PER_MINUTE: i64 = 50;
/// php-websocket's certificate file (certificate and key in one PEM) and
/// the passphrase its key was encrypted with.
const DEFAULT_PEM: &str = "server.pem";
const DEFAULT_PASSPHRASE: &str = "shinywss";

struct Settings {
    max_clients: i64,
    check_origin: bool,
    allowed_origins: Vec<String>,
    max_per_ip: i64,
    max_per_minute: i64,
    /// Loaded where the certificate is named (constructor or
    /// `setCertificate()`), so a bad file fails there, not in `run()`.
    tls: Option<Arc<tls::Certificates>>,
    /// `setCluster()` (checked there) or the php.ini default (checked by
    /// core in `run()`).
    cluster: Option<ClusterConfig>,
    reuse_port: bool,
    /// Bytes all connections may hold for their clients (0: no budget).
    max_buffered_total: i64,
    /// `setTrustedProxies()`, `setProxyProtocol()`: see docs/OPERATIONS.md.
    trusted_proxies: Vec<IpNet>,
    proxy_protocol: bool,
    /// `setDrainTimeout()`: what a SIGTERM's drain lets clients have.
    drain_timeout: Duration,
    /// `setMetrics()`, `setMetricsPort()`: `GET /metrics`.
    metrics: bool,
    metrics_port: Option<u16>,
    /// `setHttp2()`, `setHttp2MaxStreams()`, `setHttp2MaxPendingResets()`:
    /// WebSockets over HTTP/2 (RFC 8441) on a `wss://` server; core's
    /// defaults (on, 100 streams, 20 streams reset before they were taken
    /// up).
    http2: bool,
    http2_max_streams: u32,
    http2_max_pending_resets: usize,
}

#[php_class]
#[php(name = "WebSocket\\Server")]
pub struct Server {
    host: String,
    /// The address listened on (with the port the system chose for 0).
    addr: SocketAddr,
    ssl: bool,
    listener: RefCell<Option<TcpListener>>,
    settings: RefCell<Settings>,
    apps: RefCell<HashMap<String, Zval>>,
    /// `registerPage()`: path => the whole HTTP response.
    pages: RefCell<HashMap<String, Vec<u8>>>,
    /// While `run()` is serving: what `stop()` stops.
    running: RefCell<Option<ServerHandle>>,
}

/// A limit for the runtime: 0 (or below) means none.
fn limit(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}

/// The certificate from PEM files, reloadable; the message names the cause
/// (an encrypted key: how to give its passphrase or decrypt it).
fn load_tls(cert: &str, key: &str, passphrase: Option<&str>) -> PhpResult<Arc<tls::Certificates>> {
    let files = tls::CertificateFiles {
        passphrase: passphrase.map(str::to_string),
        ..tls::CertificateFiles::new(cert, key)
    };
    tls::Certificates::load(files, Vec::new()).map_err(|e| {
        payload::exception(format!(
            "wss: cannot use certificate {cert} with key {key}: {e}"
        ))
    })
}

/// The first address of `host` (IPv4 preferred, as PHP's `tcp://localhost`).
fn resolve(host: &str, port: u16) -> PhpResult<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| payload::exception(format!("cannot resolve {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| payload::exception(format!("cannot resolve {host}")))
}

impl Server {
    fn config(&self) -> PhpResult<ServerConfig> {
        let s = self.settings.borrow();
        let mut config = ServerConfig {
            max_connections: limit(s.max_clients),
            max_connections_per_ip: limit(s.max_per_ip),
            max_messages_per_minute: u32::try_from(s.max_per_minute.max(0)).unwrap_or(u32::MAX),
            cluster: s.cluster.clone(),
            reuse_port: s.reuse_port,
            max_buffered_total: limit(s.max_buffered_total),
            trusted_proxies: s.trusted_proxies.clone(),
            proxy_protocol: s.proxy_protocol,
            metrics: s.metrics,
            metrics_port: s.metrics_port,
            drain_timeout: s.drain_timeout,
            http2: s.http2,
            http2_max_streams: s.http2_max_streams,
            http2_max_pending_resets: s.http2_max_pending_resets,
            ..ServerConfig::default()
        };
        if self.ssl {
            let Some(tls) = s.tls.clone() else {
                return Err(format!(
                    "wss: no certificate ({DEFAULT_PEM}, php-websocket's default, was not found \
                     when the server was created): pass $options['cert'] or call setCertificate()"
                )
                .into());
            };
            config
                .serve_certificates(tls)
                .map_err(|e| format!("wss: {e}"))?;
        }
        Ok(config)
    }

    fn policy(&self) -> Policy {
        let s = self.settings.borrow();
        Policy {
            apps: self.apps.borrow().keys().cloned().collect(),
            check_origin: s.check_origin,
            allowed_origins: s.allowed_origins.iter().cloned().collect::<HashSet<_>>(),
            pages: self.pages.borrow().clone(),
        }
    }

    fn server_info(&self) -> PhpResult<Zval> {
        let s = self.settings.borrow();
        let mut info = ZendHashTable::new();
        info.insert("maxClients", s.max_clients)?;
        info.insert("maxConnectionsPerIp", s.max_per_ip)?;
        // sic: php-websocket's key, which its status page reads.
        info.insert("maxRequetsPerMinute", s.max_per_minute)?;
        let mut zval = Zval::new();
        zval.set_hashtable(info);
        Ok(zval)
    }

    fn url(&self) -> String {
        let scheme = if self.ssl { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }
}

#[php_impl]
impl Server {
    /// Binds at once, as php-websocket did (an exception instead of `die`
    /// when the address is taken). `$options` for `$ssl`: `cert` and `key`
    /// (PEM file paths; `local_cert`/`local_pk` as in a stream context)
    /// and `passphrase` for an encrypted key; by default php-websocket's
    /// `server.pem` (certificate and key in one file) with its passphrase
    /// `shinywss`. A certificate or key that cannot be used throws here.
    #[php(defaults(host = "localhost".to_string(), port = 8000, ssl = false))]
    pub fn __construct(
        host: String,
        port: i64,
        ssl: bool,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<Self> {
        let port = u16::try_from(port).map_err(|_| format!("invalid port {port}"))?;
        let option = |names: &[&str]| {
            options.and_then(|o| names.iter().find_map(|n| o.get(*n).and_then(Zval::string)))
        };
        let (cert, key) = (
            option(&["cert", "local_cert"]),
            option(&["key", "local_pk"]),
        );
        let named = cert.is_some() || key.is_some();
        // Without a named file: php-websocket's server.pem if there is one
        // (setCertificate() may still name another before run()).
        let tls = if ssl && (named || Path::new(DEFAULT_PEM).is_file()) {
            let cert = cert.unwrap_or_else(|| DEFAULT_PEM.into());
            let key = key.unwrap_or_else(|| cert.clone());
            let passphrase =
                option(&["passphrase"]).or_else(|| (!named).then(|| DEFAULT_PASSPHRASE.into()));
            Some(load_tls(&cert, &key, passphrase.as_deref())?)
        } else {
            None
        };
        let reuse_port = match options.and_then(|o| o.get("reuse_port")) {
            Some(v) => v.bool().unwrap_or(false),
            None => crate::ini::reuse_port(),
        };
        let addr = resolve(&host, port)?;
        let listener = polysocket::runtime::bind_listener(addr, reuse_port)
            .map_err(|e| format!("Error creating socket {addr}: {e}"))?;
        // The port the system chose, for port 0.
        let addr = listener.local_addr().unwrap_or(addr);
        let defaults = ServerConfig::default();
        let server = Server {
            host,
            addr,
            ssl,
            listener: RefCell::new(Some(listener)),
            settings: RefCell::new(Settings {
                max_clients: DEFAULT_MAX_CLIENTS,
                check_origin: true,
                allowed_origins: Vec::new(),
                max_per_ip: DEFAULT_MAX_PER_IP,
                max_per_minute: DEFAULT_MAX_PER_MINUTE,
                tls,
                cluster: crate::ini::cluster_url()
                    .map(|url| ClusterConfig::new(url, crate::ini::cluster_namespace())),
                reuse_port,
                max_buffered_total: crate::ini::max_buffered_total(),
                trusted_proxies: Vec::new(),
                proxy_protocol: false,
                metrics: false,
                metrics_port: None,
                drain_timeout: Duration::ZERO,
                http2: defaults.http2,
                http2_max_streams: defaults.http2_max_streams,
                http2_max_pending_resets: defaults.http2_max_pending_resets,
            }),
            apps: RefCell::new(HashMap::new()),
            pages: RefCell::new(HashMap::new()),
            running: RefCell::new(None),
        };
        crate::log::write(&format!("Server created on {}", server.url()), "info");
        Ok(server)
    }

    /// Serve until `stop()` or SIGINT/SIGTERM, then close every client
    /// with 1001 and return. The runtime and the callbacks run here, on the
    /// PHP thread.
    pub fn run(&self) -> PhpResult<()> {
        let config = self.config()?;
        let Some(listener) = self.listener.borrow_mut().take() else {
            return Err("WebSocket\\Server::run(): this server already ran".into());
        };
        let apps = self
            .apps
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        let url = self.url();
        let mut entered = None;
        let outcome = event_loop::run(listener, config, self.policy(), apps, |handle| {
            let node = handle
                .node_id()
                .map(|n| format!(" (cluster node {n})"))
                .unwrap_or_default();
            entered = Some(cluster::Running::enter(handle.clone()));
            *self.running.borrow_mut() = Some(handle);
            crate::log::write(&format!("Server running on {url}{node}"), "info");
        });
        drop(entered);
        self.running.borrow_mut().take();
        match outcome? {
            Outcome::Stopped => {
                crate::log::write("Server stopped", "info");
                Ok(())
            }
            // exit() in a callback: the exception it left pending ends the
            // script once run() returns.
            Outcome::Exit => Ok(()),
            Outcome::Bailout => {
                // A fatal error in a callback: the server is down; let the
                // engine carry on with its bailout.
                // SAFETY: bailout() longjmps to the engine's enclosing
                // zend_try (php_execute_script's, where the fatal error was
                // headed), skipping destructors. Nothing owned is left to
                // skip: event_loop::run dropped the runtime and every PHP
                // value, the closure took `url`, and no cell borrow is held.
                unsafe { ext_php_rs::zend::bailout() }
            }
        }
    }

    /// End `run()`: every client gets 1001 once the current callback
    /// returns.
    pub fn stop(&self) {
        if let Some(handle) = self.running.borrow().as_ref() {
            handle.stop();
        }
    }

    /// Serve `$application` at `ws://host:port/$key` (`*`: every path no
    /// other application claims). The application registered as `status`
    /// gets `setServerInfo()` with the current limits, so set them first.
    pub fn register_application(&self, key: String, application: &Zval) -> PhpResult<()> {
        if !application.is_object() {
            return Err(
                "WebSocket\\Server::registerApplication(): the application must be an object"
                    .into(),
            );
        }
        if key == "status" {
            let info = self.server_info()?;
            if let Some(app) = application.object() {
                // Only the StatusApplication protocol has this method.
                let _ = app.try_call_method("setServerInfo", vec![&info]);
            }
        }
        self.apps
            .borrow_mut()
            .insert(key, application.shallow_clone());
        Ok(())
    }

    /// The application registered under `$key`, or false.
    pub fn get_application(&self, key: &Zval) -> Zval {
        let found = key
            .string()
            .filter(|k| !k.is_empty())
            .and_then(|k| self.apps.borrow().get(&k).map(Zval::shallow_clone));
        found.unwrap_or_else(|| {
            let mut no = Zval::new();
            no.set_bool(false);
            no
        })
    }

    /// False (nothing changed) when `(int)$max` is 0.
    pub fn set_max_clients(&self, max: &Zval) -> bool {
        let max = max.coerce_to_long().unwrap_or(0);
        if max == 0 {
            return false;
        }
        self.settings.borrow_mut().max_clients = max;
        true
    }

    pub fn get_max_clients(&self) -> i64 {
        self.settings.borrow().max_clients
    }

    /// False unless `$doOriginCheck` is a bool.
    pub fn set_check_origin(&self, do_origin_check: &Zval) -> bool {
        let Some(check) = do_origin_check.bool() else {
            return false;
        };
        self.settings.borrow_mut().check_origin = check;
        true
    }

    pub fn get_check_origin(&self) -> bool {
        self.settings.borrow().check_origin
    }

    /// Allow browsers from `$domain` (`http://` and `www.` and any path are
    /// dropped, as php-websocket did); false when nothing is left.
    pub fn set_allowed_origin(&self, domain: &Zval) -> bool {
        let domain = policy::allowed_origin(&domain.coerce_to_string().unwrap_or_default());
        if domain.is_empty() || domain == "0" {
            return false;
        }
        let mut s = self.settings.borrow_mut();
        if !s.allowed_origins.contains(&domain) {
            s.allowed_origins.push(domain);
        }
        true
    }

    /// The allowed origins, as stored.
    pub fn get_allowed_origins(&self) -> Vec<String> {
        self.settings.borrow().allowed_origins.clone()
    }

    /// Whether a browser from `$domain` would be let in.
    pub fn check_origin(&self, domain: String) -> bool {
        let key = policy::origin_key(&domain);
        self.settings.borrow().allowed_origins.contains(&key)
    }

    /// False unless `$limit` is an int. 0: no limit.
    pub fn set_max_connections_per_ip(&self, limit: &Zval) -> bool {
        let Some(limit) = limit.long() else {
            return false;
        };
        self.settings.borrow_mut().max_per_ip = limit;
        true
    }

    pub fn get_max_connections_per_ip(&self) -> i64 {
        self.settings.borrow().max_per_ip
    }

    /// Messages per client per minute; the next one closes it with 1008.
    /// False unless `$limit` is an int. 0: no limit.
    pub fn set_max_requests_per_minute(&self, limit: &Zval) -> bool {
        let Some(limit) = limit.long() else {
            return false;
        };
        self.settings.borrow_mut().max_per_minute = limit;
        true
    }

    pub fn get_max_requests_per_minute(&self) -> i64 {
        self.settings.borrow().max_per_minute
    }

    /// Bytes all connections together may hold for their clients (partial
    /// frames, reassembly, inflation, unsent output); the connection whose
    /// data would pass it is closed with 1013 (try again later), the others
    /// keep working. 0: no budget. Default: php.ini's
    /// `polysocket.max_buffered_total` (256 MiB). False unless an int >= 0.
    pub fn set_max_buffered_total(&self, bytes: &Zval) -> bool {
        match bytes.long() {
            Some(bytes) if bytes >= 0 => {
                self.settings.borrow_mut().max_buffered_total = bytes;
                true
            }
            _ => false,
        }
    }

    pub fn get_max_buffered_total(&self) -> i64 {
        self.settings.borrow().max_buffered_total
    }

    /// The certificate chain and private key (PEM files; the key may be in
    /// the certificate file; `$passphrase` decrypts an encrypted PKCS#8
    /// key) for a server created with `$ssl = true`. Loaded at once: a
    /// file that cannot be used throws, naming the cause.
    #[php(optional = key_file)]
    pub fn set_certificate(
        &self,
        cert_file: String,
        key_file: Option<String>,
        passphrase: Option<String>,
    ) -> PhpResult<bool> {
        let key_file = key_file.unwrap_or_else(|| cert_file.clone());
        let tls = load_tls(&cert_file, &key_file, passphrase.as_deref())?;
        self.settings.borrow_mut().tls = Some(tls);
        Ok(true)
    }

    /// Read the certificate and key files named by the constructor or
    /// `setCertificate()` again, e.g. after a renewal: new handshakes get
    /// the new certificate, open connections carry on. A broken, missing or
    /// mismatched file changes nothing: false, with the cause in the log
    /// and a warning. Also what SIGHUP does while `run()` serves `wss://`.
    pub fn reload_certificate(&self) -> bool {
        let Some(certificates) = self.settings.borrow().tls.clone() else {
            crate::log::warning("reloadCertificate(): this server has no certificate");
            return false;
        };
        match certificates.reload() {
            Ok(()) => {
                crate::log::write("TLS certificate reloaded", "info");
                true
            }
            Err(e) => {
                let message = format!("TLS certificate not reloaded (the old one stays): {e}");
                crate::log::write(&message, "error");
                crate::log::warning(&format!("reloadCertificate(): {message}"));
                false
            }
        }
    }

    /// Join a cluster (docs/CLUSTER.md): every node on the same Redis and
    /// `$namespace` shares broadcasts, groups, connection ids and presence.
    /// `$options`: `heartbeat` and `expiry` (seconds), `queue` (messages).
    /// `$url` null or empty: no cluster (whatever php.ini says). A bad URL
    /// or namespace, or an option of the wrong kind, throws
    /// `\InvalidArgumentException` here, naming the cause.
    #[php(optional = namespace)]
    pub fn set_cluster(
        &self,
        url: Option<String>,
        namespace: Option<String>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<bool> {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            self.settings.borrow_mut().cluster = None;
            return Ok(true);
        };
        let namespace = namespace.unwrap_or_else(crate::ini::cluster_namespace);
        let mut config = ClusterConfig::new(url, namespace);
        if let Some(options) = options {
            cluster::apply_options(&mut config, options)?;
        }
        // A bad URL or namespace fails here, where it is set, not in run().
        config
            .check()
            .map_err(|e| crate::payload::invalid_argument(format!("setCluster(): {e}")))?;
        self.settings.borrow_mut().cluster = Some(config);
        Ok(true)
    }

    /// The cluster settings (`url`, `namespace`, `heartbeat`, `expiry`,
    /// `queue`), or null.
    pub fn get_cluster(&self) -> PhpResult<Option<ZBox<ZendHashTable>>> {
        let s = self.settings.borrow();
        s.cluster.as_ref().map(cluster::describe).transpose()
    }

    /// The proxies (IP addresses or CIDRs) whose `X-Forwarded-For` /
    /// `Forwarded` headers, or PROXY header with `setProxyProtocol(true)`,
    /// name the client that `getClientIp()` and the per-IP limit use
    /// (docs/OPERATIONS.md). Replaces the list; `[]` trusts nobody. An entry
    /// that is no address or CIDR throws `\InvalidArgumentException`
    /// naming it.
    pub fn set_trusted_proxies(&self, proxies: &ZendHashTable) -> PhpResult<bool> {
        let entries = proxies
            .values()
            .map(|entry| {
                entry.string().ok_or_else(|| {
                    crate::payload::invalid_argument(format!(
                        "setTrustedProxies(): entries must be strings, got {:?}",
                        entry.get_type()
                    ))
                })
            })
            .collect::<PhpResult<Vec<String>>>()?;
        let nets = parse_trusted_proxies(&entries)
            .map_err(|e| crate::payload::invalid_argument(format!("setTrustedProxies(): {e}")))?;
        self.settings.borrow_mut().trusted_proxies = nets;
        Ok(true)
    }

    /// The trusted proxies, as CIDRs.
    pub fn get_trusted_proxies(&self) -> Vec<String> {
        let s = self.settings.borrow();
        s.trusted_proxies.iter().map(ToString::to_string).collect()
    }

    /// Every connection starts with a PROXY protocol header (v1 or v2,
    /// HAProxy's `send-proxy` / `send-proxy-v2`) from a trusted proxy;
    /// others are closed. False unless a bool.
    pub fn set_proxy_protocol(&self, on: &Zval) -> bool {
        let Some(on) = on.bool() else {
            return false;
        };
        self.settings.borrow_mut().proxy_protocol = on;
        true
    }

    pub fn get_proxy_protocol(&self) -> bool {
        self.settings.borrow().proxy_protocol
    }

    /// Rolling restarts: on SIGTERM/SIGINT, `run()` first closes the
    /// listening socket (a new daemon on the port, `reuse_port`, takes the
    /// new clients) and serves the open connections for up to `$seconds`
    /// (int or float), then closes the rest with 1001. 0, the default: at
    /// once. False unless a number >= 0.
    pub fn set_drain_timeout(&self, seconds: &Zval) -> bool {
        let seconds = match (seconds.long(), seconds.double()) {
            (Some(n), _) => n as f64,
            (None, Some(f)) => f,
            _ => return false,
        };
        match Duration::try_from_secs_f64(seconds) {
            Ok(d) => {
                self.settings.borrow_mut().drain_timeout = d;
                true
            }
            Err(_) => false,
        }
    }

    pub fn get_drain_timeout(&self) -> f64 {
        self.settings.borrow().drain_timeout.as_secs_f64()
    }

    /// Answer `GET /metrics` on the server's port with `getStats()` in
    /// Prometheus' text format. False unless a bool.
    pub fn set_metrics(&self, on: &Zval) -> bool {
        let Some(on) = on.bool() else {
            return false;
        };
        self.settings.borrow_mut().metrics = on;
        true
    }

    pub fn get_metrics(&self) -> bool {
        self.settings.borrow().metrics
    }

    /// Offer HTTP/2 by ALPN on a `wss://` server (default: on), so that a
    /// browser opens its WebSockets as streams of one connection (RFC
    /// 8441); each stream counts as a connection for the limits. Off:
    /// HTTP/1.1 only, as php-websocket. No effect on `ws://`. False unless
    /// a bool.
    pub fn set_http2(&self, on: &Zval) -> bool {
        let Some(on) = on.bool() else {
            return false;
        };
        self.settings.borrow_mut().http2 = on;
        true
    }

    pub fn get_http2(&self) -> bool {
        self.settings.borrow().http2
    }

    /// WebSockets one HTTP/2 connection may have open at once (default
    /// 100); further streams are refused (`REFUSED_STREAM`) and the client
    /// opens another connection. False unless an int in 1..4294967295.
    pub fn set_http2_max_streams(&self, max: &Zval) -> bool {
        match max.long().and_then(|n| u32::try_from(n).ok()) {
            Some(max) if max >= 1 => {
                self.settings.borrow_mut().http2_max_streams = max;
                true
            }
            _ => false,
        }
    }

    pub fn get_http2_max_streams(&self) -> i64 {
        i64::from(self.settings.borrow().http2_max_streams)
    }

    /// Streams an HTTP/2 client may reset before the server took them up
    /// (default 20): past it the connection is closed with `GOAWAY`
    /// (`ENHANCE_YOUR_CALM`), the "rapid reset" attack (CVE-2023-44487).
    /// False unless an int >= 1 (0 would close the connection at the first
    /// stream a client resets).
    pub fn set_http2_max_pending_resets(&self, max: &Zval) -> bool {
        match max.long().and_then(|n| usize::try_from(n).ok()) {
            Some(max) if max >= 1 => {
                self.settings.borrow_mut().http2_max_pending_resets = max;
                true
            }
            _ => false,
        }
    }

    pub fn get_http2_max_pending_resets(&self) -> i64 {
        i64::try_from(self.settings.borrow().http2_max_pending_resets).unwrap_or(i64::MAX)
    }

    /// Serve `GET /metrics` on this port of the server's address instead
    /// (0: a free one; null: none). False unless null or an int in
    /// 0..65535.
    pub fn set_metrics_port(&self, port: &Zval) -> bool {
        let port = match port.long() {
            _ if port.is_null() => None,
            Some(p) => match u16::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => return false,
            },
            None => return false,
        };
        self.settings.borrow_mut().metrics_port = port;
        true
    }

    /// The metrics port: the one listened on while `run()` serves (the
    /// system's choice for 0), else the one asked for; null without one.
    pub fn get_metrics_port(&self) -> Option<i64> {
        if let Some(handle) = self.running.borrow().as_ref() {
            return handle.metrics_addr().map(|a| i64::from(a.port()));
        }
        self.settings.borrow().metrics_port.map(i64::from)
    }

    /// The server's metrics while `run()` serves (docs/OPERATIONS.md,
    /// "Metrics"); `cluster` holds the bus's counters (null when not
    /// clustered). Throws when the server is not running.
    pub fn get_stats(&self) -> PhpResult<ZBox<ZendHashTable>> {
        let Some(handle) = self.running.borrow().clone() else {
            return Err(
                "WebSocket\\Server::getStats(): the server is not running (call it \
                        while run() serves, e.g. from a callback)"
                    .into(),
            );
        };
        let mut out = crate::metrics::stats_array(&handle.stats())?;
        out.insert("cluster", cluster::stats(&handle)?)?;
        Ok(out)
    }

    /// Share the port with other daemons that set it too (`SO_REUSEPORT`;
    /// the kernel spreads new connections). The constructor bound the
    /// socket already, so it is bound again, now: a second daemon's
    /// constructor fails unless it asks in its own constructor
    /// (`$options['reuse_port']` or php.ini's `polysocket.reuse_port`).
    /// False unless a bool or once `run()` started.
    pub fn set_reuse_port(&self, reuse: &Zval) -> PhpResult<bool> {
        let Some(reuse) = reuse.bool() else {
            return Ok(false);
        };
        let mut listener = self.listener.borrow_mut();
        if listener.is_none() {
            return Ok(false);
        }
        if self.settings.borrow().reuse_port != reuse {
            // The old socket goes first: the new one takes its port (or,
            // failing, the old setting gets it back).
            listener.take();
            match polysocket::runtime::bind_listener(self.addr, reuse) {
                Ok(bound) => *listener = Some(bound),
                Err(e) => {
                    *listener = polysocket::runtime::bind_listener(self.addr, !reuse).ok();
                    return Err(format!("Error creating socket {}: {e}", self.addr).into());
                }
            }
            self.settings.borrow_mut().reuse_port = reuse;
        }
        Ok(true)
    }

    pub fn get_reuse_port(&self) -> bool {
        self.settings.borrow().reuse_port
    }

    /// Answer a plain HTTP GET of `$path` with `$body` (e.g. the page
    /// whose script opens the WebSocket). Register before `run()`.
    /// `\InvalidArgumentException` for a content type that would end the
    /// header line.
    #[php(defaults(content_type = "text/html; charset=utf-8".to_string()))]
    pub fn register_page(
        &self,
        path: String,
        body: Binary<u8>,
        content_type: String,
    ) -> PhpResult<()> {
        if content_type.contains(['\r', '\n']) {
            return Err(payload::invalid_argument(
                "registerPage(): a content type is one header line".into(),
            ));
        }
        let body: Vec<u8> = body.into();
        let response = polysocket::http::page_response(&content_type, &body);
        self.pages.borrow_mut().insert(path, response);
        Ok(())
    }

    pub fn get_host(&self) -> String {
        self.host.clone()
    }

    /// The port listened on (the one chosen by the system for port 0).
    pub fn get_port(&self) -> i64 {
        i64::from(self.addr.port())
    }

    pub fn is_ssl(&self) -> bool {
        self.ssl
    }

    /// Write `date('Y-m-d H:i:s') [$type] $message` to the output.
    #[php(defaults(r#type = "info".to_string()))]
    pub fn log(&self, message: String, r#type: String) {
        crate::log::write(&message, &r#type);
    }

    /// Send one message to many clients, encoded once per protocol family
    /// (the fast way to broadcast). Returns how many it was queued for.
    #[php(defaults(r#type = "text".to_string()))]
    pub fn broadcast(clients: &ZendHashTable, payload: &Zval, r#type: String) -> PhpResult<i64> {
        let Some(message) = payload::data_message(payload, &r#type, "broadcast")? else {
            return Ok(0);
        };
        let mut handle = None;
        let mut ids = Vec::with_capacity(clients.len());
        for client in clients.values() {
            if let Some(conn) = client.extract::<&Connection>() {
                ids.push(conn.id);
                handle.get_or_insert_with(|| conn.handle.clone());
            }
        }
        Ok(handle.map_or(0, |h| h.broadcast(&ids, message) as i64))
    }

    /// One message to every open connection of the namespace, on every
    /// node (local ones at once, the others through the bus). Returns how
    /// many local connections it was queued for.
    #[php(defaults(r#type = "text".to_string()))]
    pub fn broadcast_all(payload: &Zval, r#type: String) -> PhpResult<i64> {
        let handle = cluster::running("broadcastAll")?;
        Ok(payload::data_message(payload, &r#type, "broadcastAll")?
            .map_or(0, |m| handle.broadcast_all(m) as i64))
    }

    /// One message to every member of `$group` on every node (see
    /// `$client->join()`). Returns how many local members it was queued for.
    /// `\InvalidArgumentException` for a type other than text or binary, or
    /// a group name over 65535 bytes.
    #[php(defaults(r#type = "text".to_string()))]
    pub fn broadcast_group(group: String, payload: &Zval, r#type: String) -> PhpResult<i64> {
        let handle = cluster::running("broadcastGroup")?;
        let group = connection::group_name(&group)?;
        Ok(payload::data_message(payload, &r#type, "broadcastGroup")?
            .map_or(0, |m| handle.broadcast_group(group, m) as i64))
    }

    /// `$client->send()` for the connection `$id` (`$client->getId()`),
    /// on any node. True when queued, or handed to the bus for the live
    /// node that owns it (at most once); false when no live node has it.
    #[php(defaults(r#type = "text".to_string()))]
    pub fn send_to(id: i64, payload: &Zval, r#type: String) -> PhpResult<bool> {
        let handle = cluster::running("sendTo")?;
        match u64::try_from(id) {
            Ok(id) => connection::send(&handle, id, payload, &r#type),
            Err(_) => Ok(false),
        }
    }

    /// Close the connection `$id` on any node (`$reason` empty:
    /// php-websocket's text for the code). False when no live node has it.
    #[php(defaults(code = 1000, reason = String::new()))]
    pub fn close_to(id: i64, code: i64, reason: String) -> PhpResult<bool> {
        let handle = cluster::running("closeTo")?;
        match u64::try_from(id) {
            Ok(id) => connection::close(&handle, id, code, &reason),
            Err(_) => Ok(false),
        }
    }

    /// Open connections in the namespace (null) or in `$group`, on every
    /// live node (the others as of their last heartbeat).
    pub fn presence(group: Option<String>) -> PhpResult<i64> {
        Ok(cluster::running("presence")?.presence(group.as_deref()) as i64)
    }

    /// The live node ids, this one included (empty when not clustered).
    pub fn nodes() -> PhpResult<Vec<i64>> {
        let handle = cluster::running("nodes")?;
        Ok(handle.nodes().into_iter().map(i64::from).collect())
    }

    /// The bus's counters (`node_id`, `connected`, `published`, `received`,
    /// `dropped`, `malformed`, `unroutable`, `reconnects`, `last_outage` in
    /// seconds or null), or null when not clustered.
    pub fn cluster_stats() -> PhpResult<Option<ZBox<ZendHashTable>>> {
        cluster::stats(&cluster::running("clusterStats")?)
    }
}
