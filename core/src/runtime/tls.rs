//! rustls configurations from PEM files, for `wss://` servers and clients.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};

use super::RuntimeError;

fn tls_error(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tls(format!("{what}: {e}"))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, RuntimeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("reading {}", path.display()), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("parsing {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(RuntimeError::Tls(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain and a PEM private
/// key (PKCS#8, PKCS#1 or SEC1). ALPN offers `http/1.1`, the only protocol
/// a WebSocket upgrade runs over.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, RuntimeError> {
    let certs = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| tls_error(&format!("reading key {}", key_pem.display()), e))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("certificate and key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting the Mozilla root set (webpki-roots)
/// plus every certificate in `extra_roots` (PEM files, e.g. a private CA
/// or a self-signed test certificate).
pub fn client_config(extra_roots: &[&Path]) -> Result<Arc<ClientConfig>, RuntimeError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_roots {
        for cert in certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| tls_error(&format!("trusting {}", path.display()), e))?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
