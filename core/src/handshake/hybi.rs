//! The `Sec-WebSocket-Key` family (hybi-04 .. RFC 6455): the Accept
//! answer, and hybi-04's nonce and connection mask key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use sha1::{Digest as _, Sha1};

/// RFC 6455 §1.3: appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// hybi-04 §4.2: appended to key and nonce for the connection mask key.
const MASK_KEY_GUID: &[u8] = b"61AC5F19-FBBA-4540-B96F-6561F1AB40A8";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA1(key ‖
/// GUID)), computed over the key's base64 *text* (trimmed), not its bytes.
pub fn accept_key(key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.trim().as_bytes())
        .chain_update(ACCEPT_GUID)
        .finalize();
    STANDARD.encode(digest)
}

/// hybi-04's connection mask key: SHA1(key ‖ nonce ‖ GUID) over the base64
/// texts of `Sec-WebSocket-Key` and `Sec-WebSocket-Nonce`. Every client
/// frame key is derived from it.
pub fn connection_mask_key(key: &str, nonce: &str) -> [u8; 20] {
    Sha1::new()
        .chain_update(key.trim().as_bytes())
        .chain_update(nonce.trim().as_bytes())
        .chain_update(MASK_KEY_GUID)
        .finalize()
        .into()
}

/// A fresh `Sec-WebSocket-Key` or hybi-04 `Sec-WebSocket-Nonce`: 16 random
/// bytes, base64.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// Whether a key or nonce is the base64 of exactly 16 bytes (canonical
/// padding), as the drafts require.
pub fn is_valid_key(value: &str) -> bool {
    let value = value.trim();
    // 16 bytes are always 24 base64 characters, the last two being "==".
    let mut out = [0u8; 18];
    value.len() == 24 && matches!(STANDARD.decode_slice(value, &mut out), Ok(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_vectors() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key("x3JJHMbDL1EzLkh9GBhXDw=="),
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
        // The key is trimmed before hashing.
        assert_eq!(
            accept_key(" dGhlIHNhbXBsZSBub25jZQ== "),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn hybi04_mask_key_vector() {
        let nonce: Vec<u8> = (1..=16).collect();
        let nonce = STANDARD.encode(nonce);
        assert_eq!(nonce, "AQIDBAUGBwgJCgsMDQ4PEA==");
        assert_eq!(
            hex::encode(connection_mask_key("dGhlIHNhbXBsZSBub25jZQ==", &nonce)),
            "23222d4ecf9af2084f4d83043abf7747dd56c5b7"
        );
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_key(&random_key()));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ=")); // 23 chars
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZSE=")); // 17 bytes
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZR==")); // non-canonical bits
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!is_valid_key(""));
        assert_ne!(random_key(), random_key());
    }
}
