//! Validator key files and the key encodings the transport needs.
//!
//! A key file is JSON: `{"public_key": "<hex>", "secret_seed": "<hex>"}`, written with mode 0600.
//! The seed is the whole secret (Ed25519); the public key is stored beside it so a typo in either
//! is caught when the file is read.

use std::path::Path;

use serde::{Deserialize, Serialize};
use timed_core::crypto::{Keypair, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: String },
    #[error("no randomness available for key generation: {0}")]
    Random(String),
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    public_key: String,
    secret_seed: String,
}

/// Reads a key file and checks that its public key matches its seed.
pub fn load(path: &Path) -> Result<Keypair, KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    let invalid = |reason: String| KeyError::Invalid {
        path: shown.clone(),
        reason,
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let seed: [u8; 32] = hex::decode(file.secret_seed.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("secret_seed must be 64 hex digits".into()))?;
    let key = Keypair::from_seed(seed);
    if hex::encode(key.public_key().0) != file.public_key.trim().to_ascii_lowercase() {
        return Err(invalid(
            "public_key does not match secret_seed (the file is corrupt or edited)".into(),
        ));
    }
    Ok(key)
}

/// A fresh key from the operating system's randomness.
pub fn generate() -> Result<Keypair, KeyError> {
    use rand::TryRng;
    let mut seed = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(Keypair::from_seed(seed))
}

/// Writes `key` to a new file (never overwrites), readable by its owner only.
pub fn save(path: &Path, key: &Keypair) -> Result<(), KeyError> {
    use std::io::Write;
    let shown = path.display().to_string();
    if path.exists() {
        return Err(KeyError::Exists { path: shown });
    }
    let file = KeyFile {
        public_key: hex::encode(key.public_key().0),
        secret_seed: hex::encode(key.seed()),
    };
    let text = serde_json::to_string_pretty(&file).expect("a key file serializes");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = |source| KeyError::Write {
        path: shown.clone(),
        source,
    };
    let mut f = options.open(path).map_err(write)?;
    f.write_all(text.as_bytes()).map_err(write)?;
    f.write_all(b"\n").map_err(write)?;
    f.sync_all().map_err(write)
}

/// Parses a public key written as 64 hex digits.
pub fn parse_public_key(text: &str) -> Option<PublicKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    Some(PublicKey(bytes))
}

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32-byte key.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The validator key as PKCS#8 DER, for rcgen and rustls.
pub fn pkcs8_der(key: &Keypair) -> Vec<u8> {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&key.seed());
    der
}

/// The Ed25519 key inside a SubjectPublicKeyInfo, if that is what it holds.
pub fn key_from_spki(spki: &[u8]) -> Option<PublicKey> {
    let rest = spki.strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    let bytes: [u8; 32] = rest.try_into().ok()?;
    Some(PublicKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_detects_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = generate().unwrap();
        save(&path, &key).unwrap();
        assert_eq!(load(&path).unwrap().public_key(), key.public_key());
        assert!(matches!(save(&path, &key), Err(KeyError::Exists { .. })));
        let other = generate().unwrap();
        let forged = format!(
            "{{\"public_key\":\"{}\",\"secret_seed\":\"{}\"}}",
            hex::encode(other.public_key().0),
            hex::encode(key.seed())
        );
        std::fs::write(&path, forged).unwrap();
        assert!(matches!(load(&path), Err(KeyError::Invalid { .. })));
    }
}
