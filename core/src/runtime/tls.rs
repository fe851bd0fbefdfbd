//! rustls configurations from PEM files, for `wss://` servers and clients.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use pkcs8::EncryptedPrivateKeyInfoRef;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use tokio_rustls::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};

use super::RuntimeError;

mod certificates;
pub use certificates::{CertificateFiles, Certificates};

/// The rustls these configurations are built with, to name their types.
pub use tokio_rustls::rustls;

fn tls_error(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tls(format!("{what}: {e}"))
}

/// The bodies of every `-----BEGIN {label}-----` section of `pem` (header
/// lines included, `\r` removed).
fn pem_sections(pem: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    pem.split(begin.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(end.as_str()))
        .map(|(body, _)| body.replace('\r', ""))
        .collect()
}

fn base64_decode(body: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let body: String = body.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body)
}

/// Every `CERTIFICATE` section of a PEM file. Read by label, so that an
/// encrypted key beside them (php-websocket's `server.pem` holds both) is
/// not parsed here.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, RuntimeError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| tls_error(&format!("reading {shown}"), e))?;
    let certs = pem_sections(&String::from_utf8_lossy(&pem), "CERTIFICATE")
        .iter()
        .map(|body| base64_decode(body).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("parsing {shown}"), e))?;
    if certs.is_empty() {
        return Err(RuntimeError::Tls(format!("no certificate in {shown}")));
    }
    Ok(certs)
}

type CbcDecrypt = fn(key: &[u8], iv: &[u8], data: &mut [u8]) -> Option<Vec<u8>>;

/// `data` decrypted with `C` in CBC mode, without its PKCS#7 padding; `None`
/// when the padding is wrong.
fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &mut [u8]) -> Option<Vec<u8>>
where
    C: cbc::cipher::BlockCipherDecrypt + cbc::cipher::KeyInit,
{
    use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
    let cipher = cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?;
    cipher
        .decrypt_padded::<Pkcs7>(data)
        .ok()
        .map(<[u8]>::to_vec)
}

/// OpenSSL's legacy PEM encryption of a PKCS#1 or SEC1 key: headers
/// `Proc-Type: 4,ENCRYPTED` and `DEK-Info: <cipher>,<iv hex>` in the body,
/// the key EVP_BytesToKey(MD5, passphrase, salt = the IV's first 8 bytes,
/// one round), CBC with PKCS#7 padding. php-websocket ships its
/// `server.pem` this way (DES-EDE3-CBC).
fn legacy_decrypt(body: &str, passphrase: &str) -> Result<Vec<u8>, String> {
    use md5::{Digest as _, Md5};

    let malformed = || "its PEM headers are malformed".to_string();
    let (headers, data) = body.trim_start().split_once("\n\n").ok_or_else(malformed)?;
    let dek = headers
        .lines()
        .find_map(|line| line.strip_prefix("DEK-Info:"))
        .ok_or_else(malformed)?;
    let (cipher, iv) = dek.trim().split_once(',').ok_or_else(malformed)?;
    let iv = (0..iv.len())
        .step_by(2)
        .map(|i| {
            iv.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|iv| iv.len() >= 8)
        .ok_or_else(malformed)?;
    let (key_len, decrypt): (usize, CbcDecrypt) = match cipher {
        "DES-EDE3-CBC" => (24, cbc_decrypt::<des::TdesEde3>),
        "AES-128-CBC" => (16, cbc_decrypt::<aes::Aes128>),
        "AES-192-CBC" => (24, cbc_decrypt::<aes::Aes192>),
        "AES-256-CBC" => (32, cbc_decrypt::<aes::Aes256>),
        other => return Err(format!("its cipher {other} is not supported")),
    };
    let mut key = Vec::with_capacity(key_len + 16);
    let mut block = Vec::new();
    while key.len() < key_len {
        block = Md5::new()
            .chain_update(&block)
            .chain_update(passphrase)
            .chain_update(&iv[..8])
            .finalize()
            .to_vec();
        key.extend_from_slice(&block);
    }
    key.truncate(key_len);
    let mut data = base64_decode(data).map_err(|_| malformed())?;
    // A wrong key almost always breaks the padding; else the DER check.
    decrypt(&key, &iv, &mut data)
        .filter(|der| der.first() == Some(&0x30))
        .ok_or_else(|| "the passphrase does not decrypt it".to_string())
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1). An
/// encrypted one is decrypted with `passphrase`: PKCS#8 (`ENCRYPTED
/// PRIVATE KEY`, PBES2 with AES or 3DES, as `openssl pkcs8 -topk8` and
/// PHP's `openssl_pkey_export` write) and OpenSSL's legacy encryption
/// (`Proc-Type: 4,ENCRYPTED`). An error names the cause and the command
/// that decrypts the key for good.
pub fn private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, RuntimeError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
    let pem = String::from_utf8_lossy(&bytes);
    let encrypted = |why: &str| {
        RuntimeError::Tls(format!(
            "the private key in {shown} is encrypted{why}: give the right passphrase or \
             decrypt it once with `openssl pkey -in {shown} -out key.pem`"
        ))
    };
    let no_passphrase = || encrypted(" and no passphrase was given");
    if let Some(body) = pem_sections(&pem, "ENCRYPTED PRIVATE KEY").first() {
        let der = base64_decode(body).map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
        let info = EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| tls_error(&format!("reading key {shown}"), e))?;
        let key = info
            .decrypt(passphrase.ok_or_else(no_passphrase)?)
            .map_err(|e| encrypted(&format!(" and the passphrase does not decrypt it ({e})")))?;
        return Ok(PrivatePkcs8KeyDer::from(key.as_bytes().to_vec()).into());
    }
    for label in ["RSA PRIVATE KEY", "EC PRIVATE KEY"] {
        let Some(body) = pem_sections(&pem, label).into_iter().next() else {
            continue;
        };
        if !body.contains("Proc-Type: 4,ENCRYPTED") {
            break;
        }
        let der = legacy_decrypt(&body, passphrase.ok_or_else(no_passphrase)?)
            .map_err(|e| encrypted(&format!(" (OpenSSL's legacy format) and {e}")))?;
        return Ok(match label {
            "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(der).into(),
            _ => PrivateSec1KeyDer::from(der).into(),
        });
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| tls_error(&format!("reading key {shown}"), e))
}

/// An RSA key under 2048 bits, which ring refuses and rustls reports only as
/// "failed to parse private key" (php-websocket's shipped `server.pem` has
/// a 1024-bit key).
fn too_small(key: &PrivateKeyDer<'_>) -> bool {
    let rejected = match key {
        PrivateKeyDer::Pkcs1(k) => {
            ::ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()).err()
        }
        PrivateKeyDer::Pkcs8(k) => {
            ::ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).err()
        }
        _ => None,
    };
    rejected.is_some_and(|e| e.to_string() == "TooSmall")
}

/// A server configuration from a PEM certificate chain and a PEM private
/// key (PKCS#8, PKCS#1 or SEC1, not encrypted). ALPN offers `http/1.1`,
/// the only protocol a WebSocket upgrade runs over. For certificates that
/// can be reloaded, or several chosen by name, see [`Certificates`].
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
    let mut files = CertificateFiles::new(cert_pem, key_pem);
    files.passphrase = passphrase.map(str::to_string);
    Certificates::load(files, Vec::new())?.server_config()
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    // A throwaway P-256 key, made for these tests with OpenSSL 3.0: plain
    // (SEC1 and PKCS#8), in OpenSSL's legacy encryption (`openssl ec -aes128`
    // / `-des3`) and as encrypted PKCS#8 (`openssl pkcs8 -topk8 -v2 des3`).
    const PASSPHRASE: &str = "polysocket";
    const PLAIN: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILsrauj3dtuUjW0eJ8ryouPIS6X5Q3u9mA1iVraqHcKwoAoGCCqGSM49
AwEHoUQDQgAED8QGsgvmbWS7uiAoAMEbMbUCaf7+FlN17AlL3FngPWRFlsc3joE1
aK9CY/yvh0BVGIUl++3lKKg1s+Y/RKvC4w==
-----END EC PRIVATE KEY-----";
    const PLAIN_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguytq6Pd225SNbR4n
yvKi48hLpflDe72YDWJWtqodwrChRANCAAQPxAayC+ZtZLu6ICgAwRsxtQJp/v4W
U3XsCUvcWeA9ZEWWxzeOgTVor0Jj/K+HQFUYhSX77eUoqDWz5j9Eq8Lj
-----END PRIVATE KEY-----";
    const LEGACY_AES: &str = "\
-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,E23DAF771A3EC95841CEE835BCBB5614

ZVbC/r6Mm/Uhb6w3OKwF1Oa3xTpLoV22USZhk4nTLYc4+GvV2maHmfwwjZFBd9Pz
KAaHrzkhMZhJv0ojFbhKGoA8Iu8RauoPdge2MsNFY01uUEXhoFL+x2mLl62s5VQZ
nqKsmkA8FYNmw3AWZ3RGkrMnzHUxanvPlmXjnpMkN88=
-----END EC PRIVATE KEY-----";
    const LEGACY_DES3: &str = "\
-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: DES-EDE3-CBC,3EDBE02C544046E2

ctfpKEvBMjFLEWPyzUBSb9j4QgCBN9ScD5mpYRwcg8q/TSh7dVxGbn5spdm20bJk
eVBc4gr4vQlDNsn4FMQqylhUIlBh7HT+P7TcRbwcYRgPF+tgD8sO8+vf0qd1wRQc
l8zD8n3wVBMFJWffMQ3nB2p0COa8GrSSmjALbaJ5/QQ=
-----END EC PRIVATE KEY-----";
    const PKCS8_DES3: &str = "\
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHjME4GCSqGSIb3DQEFDTBBMCkGCSqGSIb3DQEFDDAcBAhTYqI0ZBpgrQICCAAw
DAYIKoZIhvcNAgkFADAUBggqhkiG9w0DBwQI39COIldhfvEEgZBHT6laGG/vXLoZ
M3IY3eLGxlQwgT1YOTxu/3ya6lWLH528OvQXtqnK3wcV8hhrzpjjBx1wALqr5/mb
12al0vnyJWZWkWJwroNX7GLY8bstNJzMo5nqfrL9BYQYwp3moJCERbFG/tLXYuUA
KDiV/dNs+NmlkasOsyEKgy1WWlIdfGbUC0O572bw/qtA3QHRdlI=
-----END ENCRYPTED PRIVATE KEY-----";

    /// A throwaway 1024-bit RSA key, as in php-websocket's shipped server.pem.
    const RSA_1024: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQCoDCa1HWne2vJdj9QPHtsswpTQMq2QWR/mnmoejdE6cs3Moyj8
86Zh8EWYWXmScm4OQtjNbzP3zDr3P5Se2FVPBe97JnAwOHRMSREEM/3Okq2WQICo
opkCrQtA/qQXygNQg9e2ZurwpW1wlL5vLSjrNnwHRX2YhczFQygQEjgyuQIDAQAB
AoGAd0BgO4iK972x3llRqAVCjcnrZq9/4X6Nl891CQekoXCUwJJMZOzWdovWJ13f
WuBfXzlqtqYiX8eLVKfG5M4qAon3Ie7vhrddaxTokjZIF2oY3u8Hxj+/Vpf2vrcK
aDpHIfroV7e68bPt8FzFHua3rqAR7MgxKaNyyhvOGupvjXECQQDdbAtmsTpbdakN
T0vqT/ew/J2UELmCkD0AYBwjattFX6ZoGAGYvZMW3LAAJVBYTTf5G9bcE6xlTvZb
rEITwivNAkEAwkpPledBb5BDc9bGK8x35kwKMfI21Hsqcc/iEiLi7u+G2JYJ9dhH
ftA6pqJFU18bu+Ok3u+oAqHmAlEt0daunQJBAIbIHwSKu0AzFg2hCFAAD4EvtGgN
6i58yHUzC83PXNwUxkG04zvrod6XxZbBH/AwSPMdLCPY4eblMvdImwxV9L0CQFBK
/ZDpvTUp3XZl8AfxvCtEiYISo240aFoYm0j7eeVcv9GKUBt1gjZ6P4LV1OibiY6g
iWZIjJpp5fBXNCRgIFECQQCZ3B1DuytIriIjTvo4dkJPTJwNL+Q/WSOnU6K5LuFm
AEJ4C8XoaVMxx2/mqczk5rQtWM7mfJsXGnT9wzscqFrm
-----END RSA PRIVATE KEY-----";

    fn load(pem: &str, passphrase: Option<&str>) -> Result<Vec<u8>, RuntimeError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(pem.as_bytes()).unwrap();
        private_key(file.path(), passphrase).map(|key| key.secret_der().to_vec())
    }

    #[test]
    fn encrypted_keys_are_decrypted_with_their_passphrase() {
        let plain = load(PLAIN, None).unwrap();
        assert_eq!(load(LEGACY_AES, Some(PASSPHRASE)).unwrap(), plain);
        assert_eq!(load(LEGACY_DES3, Some(PASSPHRASE)).unwrap(), plain);
        let plain = load(PLAIN_PKCS8, None).unwrap();
        assert_eq!(load(PKCS8_DES3, Some(PASSPHRASE)).unwrap(), plain);
    }

    #[test]
    fn an_encrypted_key_without_its_passphrase_names_the_cause() {
        for pem in [LEGACY_AES, LEGACY_DES3, PKCS8_DES3] {
            for (passphrase, cause) in [
                (None, "is encrypted and no passphrase was given"),
                (Some("wrong"), "the passphrase does not decrypt it"),
            ] {
                let error = load(pem, passphrase).unwrap_err().to_string();
                assert!(error.contains(cause), "{error}");
                assert!(
                    error.contains("decrypt it once with `openssl pkey -in "),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_named() {
        let key = |pem| PrivateKeyDer::try_from(load(pem, None).unwrap()).unwrap();
        assert!(too_small(&key(RSA_1024)));
        assert!(!too_small(&key(PLAIN_PKCS8)));
    }
}
