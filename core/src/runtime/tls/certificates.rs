//! Certificates a server can replace while it runs, chosen per handshake by
//! the name the client asks for (SNI).
//!
//! The current set sits behind a lock read once per handshake: a reload
//! builds the new set completely (every file read, every key checked
//! against its certificate) and only then swaps it in, so a broken file
//! leaves the old set serving. Open connections keep the session they
//! made; nothing is read per message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;

use super::{certificates, private_key, tls_error, too_small};
use crate::runtime::RuntimeError;

/// The PEM files of one certificate chain and its key, and the server
/// names (SNI) it answers for.
#[derive(Clone)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1; encrypted ones need
    /// `passphrase`).
    pub key: PathBuf,
    /// Decrypts an encrypted key.
    pub passphrase: Option<String>,
    /// Names served with this certificate (`example.com`, or
    /// `*.example.com` for one label below it). Ignored for the default.
    pub server_names: Vec<String>,
}

/// Without the passphrase, which must not reach a log.
impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("server_names", &self.server_names)
            .finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// A certificate and key, with no passphrase and no server names.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertificateFiles {
            cert: cert.into(),
            key: key.into(),
            passphrase: None,
            server_names: Vec::new(),
        }
    }

    /// The chain and key read, decrypted and checked against each other.
    fn load(&self) -> Result<Arc<CertifiedKey>, RuntimeError> {
        let key = private_key(&self.key, self.passphrase.as_deref())?;
        let chain = certificates(&self.cert)?;
        let provider = ring::default_provider();
        CertifiedKey::from_der(chain, key.clone_key(), &provider)
            .map(Arc::new)
            .map_err(|e| match too_small(&key) {
                true => RuntimeError::Tls(format!(
                    "the RSA key in {} has fewer than 2048 bits, which rustls refuses: make a \
                     new one, e.g. `openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem \
                     -out cert.pem`",
                    self.key.display()
                )),
                false => tls_error(
                    &format!(
                        "certificate {} and key {}",
                        self.cert.display(),
                        self.key.display()
                    ),
                    e,
                ),
            })
    }
}

/// One loaded set: the default and the certificates by lowercase name.
#[derive(Debug)]
struct Loaded {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl Loaded {
    fn read(default: &CertificateFiles, named: &[CertificateFiles]) -> Result<Self, RuntimeError> {
        let mut by_name = HashMap::new();
        for files in named {
            let key = files.load()?;
            for name in &files.server_names {
                by_name.insert(name.to_ascii_lowercase(), key.clone());
            }
        }
        Ok(Loaded {
            default: default.load()?,
            by_name,
        })
    }

    /// The certificate for `name`: exact, else `*.` and its parent, else
    /// the default.
    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.by_name.get(&format!("*.{parent}"))
        };
        self.by_name
            .get(&name)
            .or_else(wildcard)
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Reloadable certificates: a default and any number chosen by server
/// name. Serve them with [`server_config`](Self::server_config); replace
/// the files and call [`reload`](Self::reload).
#[derive(Debug)]
pub struct Certificates {
    default: CertificateFiles,
    named: Vec<CertificateFiles>,
    current: RwLock<Arc<Loaded>>,
}

impl Certificates {
    /// Read every file now; an error names the file and the cause.
    pub fn load(
        default: CertificateFiles,
        named: Vec<CertificateFiles>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let loaded = Loaded::read(&default, &named)?;
        Ok(Arc::new(Certificates {
            default,
            named,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Read the files again. On success new handshakes get the new
    /// certificates (open connections carry on); on error nothing changes
    /// and the error names the file and the cause.
    pub fn reload(&self) -> Result<(), RuntimeError> {
        match Loaded::read(&self.default, &self.named) {
            Ok(loaded) => {
                *self.current.write().expect("certificates lock") = Arc::new(loaded);
                tracing::info!(cert = %self.default.cert.display(), "TLS certificates reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificates not reloaded; the old ones stay");
                Err(e)
            }
        }
    }

    /// A rustls server configuration serving these certificates. ALPN
    /// offers `http/1.1`, the only protocol a WebSocket upgrade runs over.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, RuntimeError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("protocol versions", e))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().expect("certificates lock").clone();
        Some(current.choose(hello.server_name()))
    }
}
