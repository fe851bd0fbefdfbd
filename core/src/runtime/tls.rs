//! rustls configurations from PEM files, for `wss://` servers and clients.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use pkcs8::EncryptedPrivateKeyInfoRef;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};

use super::RuntimeError;

/// The rustls these configurations are built with, to name their types.
pub use tokio_rustls::rustls;

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

/// The base64 body of the first `-----BEGIN {label}-----` section of `pem`.
fn pem_section(pem: &[u8], label: &str) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = memchr::memmem::find(pem, begin.as_bytes())? + begin.len();
    let len = memchr::memmem::find(&pem[start..], end.as_bytes())?;
    let body: Vec<u8> = pem[start..start + len]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    Some(base64::engine::general_purpose::STANDARD.decode(body))
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1). An
/// encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`, PBES2) is decrypted with
/// `passphrase`. OpenSSL's legacy encryption (`Proc-Type: 4,ENCRYPTED`
/// inside the PEM body) is refused with the command that decrypts it:
/// otherwise the PEM reader would only report a base64 error.
pub fn private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, RuntimeError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
    let decrypt = format!("decrypt it once with `openssl pkey -in {shown} -out key.pem`");
    if let Some(der) = pem_section(&pem, "ENCRYPTED PRIVATE KEY") {
        let der = der.map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
        let info = EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
        let Some(passphrase) = passphrase else {
            return Err(RuntimeError::Tls(format!(
                "the private key in {shown} is encrypted and no passphrase was given: \
                 give its passphrase or {decrypt}"
            )));
        };
        let key = info.decrypt(passphrase).map_err(|e| {
            RuntimeError::Tls(format!(
                "the private key in {shown} is encrypted and the passphrase does not \
                 decrypt it ({e}): give the right passphrase or {decrypt}"
            ))
        })?;
        return Ok(PrivatePkcs8KeyDer::from(key.as_bytes().to_vec()).into());
    }
    if memchr::memmem::find(&pem, b"Proc-Type: 4,ENCRYPTED").is_some() {
        return Err(RuntimeError::Tls(format!(
            "the private key in {shown} is encrypted in OpenSSL's legacy format \
             (Proc-Type: 4,ENCRYPTED), which cannot be read: {decrypt}, or re-encrypt it \
             as PKCS#8 with `openssl pkcs8 -topk8 -in {shown} -out key.pem`"
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| tls_error(&format!("reading key {shown}"), e))
}

/// A server configuration from a PEM certificate chain and a PEM private
/// key (PKCS#8, PKCS#1 or SEC1, not encrypted). ALPN offers `http/1.1`,
/// the only protocol a WebSocket upgrade runs over.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, RuntimeError> {
    server_config_with_passphrase(cert_pem, key_pem, None)
}

/// [`server_config`] whose key may be an encrypted PKCS#8 key, decrypted
/// with `passphrase` (see [`private_key`]).
pub fn server_config_with_passphrase(
    cert_pem: &Path,
    key_pem: &Path,
    passphrase: Option<&str>,
) -> Result<Arc<ServerConfig>, RuntimeError> {
    // The key first: a legacy-encrypted key in the certificate file would
    // make the certificate reader fail with a bare base64 error.
    let key = private_key(key_pem, passphrase)?;
    let certs = certificates(cert_pem)?;
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
