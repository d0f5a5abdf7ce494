//! Ed25519 keys and the one signature rule of the chain.
//!
//! Every signature covers `"timed/v1/" ‖ kind ‖ CBOR(chain_id) ‖ CBOR(fields)`: the kind keeps a
//! vote from being replayed as a proposal, the chain id keeps it from being replayed on another
//! chain, and CBOR's length prefix on the chain id keeps the concatenation unambiguous.
//!
//! The rule (DEPENDENCIES.md trap 4): a single signature is checked with `verify_strict`; a set of
//! signatures (a certificate) is checked as one `verify_batch` in the certificate's canonical signer
//! order, which is deterministic, so every node reaches the same verdict on the same bytes. Weak
//! (small-order) validator keys are refused at genesis.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Serialize;

use crate::types::fixed_bytes_serde;

/// An Ed25519 public key; also the address of its owner's account.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);
fixed_bytes_serde!(PublicKey, 32);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0[..4]))
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);
fixed_bytes_serde!(Signature, 64);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..4]))
    }
}

/// What a signature is for; part of every signed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Proposal,
    Prepare,
    Precommit,
    Transfer,
}

impl Domain {
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Proposal => "proposal",
            Domain::Prepare => "prepare",
            Domain::Precommit => "precommit",
            Domain::Transfer => "transfer",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the public key is not a valid Ed25519 point")]
    InvalidKey,
    #[error("the public key has small order (weak); it could sign for anyone")]
    WeakKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// The bytes a signature of `domain` covers.
pub fn signing_message<F: Serialize + ?Sized>(
    domain: Domain,
    chain_id: &str,
    fields: &F,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    out.extend_from_slice(b"timed/v1/");
    out.extend_from_slice(domain.as_str().as_bytes());
    crate::codec::encode_into(chain_id, &mut out);
    crate::codec::encode_into(fields, &mut out);
    out
}

impl PublicKey {
    /// The decompressed key, checked to be a valid point of large order.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::InvalidKey)?;
        if vk.is_weak() {
            return Err(CryptoError::WeakKey);
        }
        Ok(vk)
    }
}

/// A signing key. The seed is the secret; keep it out of logs.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?})", self.public_key())
    }
}

impl Keypair {
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A key derived from a name. For development networks and tests only: anyone who knows the
    /// name knows the key.
    pub fn insecure_from_name(name: &str) -> Keypair {
        Keypair::from_seed(crate::types::Hash::of(&[b"timed/insecure-dev-key/", name.as_bytes()]).0)
    }

    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign<F: Serialize + ?Sized>(
        &self,
        domain: Domain,
        chain_id: &str,
        fields: &F,
    ) -> Signature {
        self.sign_raw(&signing_message(domain, chain_id, fields))
    }

    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

/// Checks one signature with the chain's single-signature rule (`verify_strict`).
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// Checks many signatures as one batch (about twice as fast per signature as one by one). The
/// order of `items` is part of the verdict's input; callers pass a canonical order.
pub fn verify_batch(items: &[(&[u8], Signature, VerifyingKey)]) -> Result<(), CryptoError> {
    let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, s, _)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(_, _, k)| *k).collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_bound_to_domain_and_chain() {
        let k = Keypair::insecure_from_name("validator1");
        let vk = k.public_key().verifying_key().unwrap();
        let sig = k.sign(Domain::Prepare, "chain-a", &(1u64, 2u32));
        let msg = signing_message(Domain::Prepare, "chain-a", &(1u64, 2u32));
        assert!(verify(&vk, &msg, &sig).is_ok());
        let other_kind = signing_message(Domain::Precommit, "chain-a", &(1u64, 2u32));
        assert_eq!(
            verify(&vk, &other_kind, &sig),
            Err(CryptoError::BadSignature)
        );
        let other_chain = signing_message(Domain::Prepare, "chain-b", &(1u64, 2u32));
        assert_eq!(
            verify(&vk, &other_chain, &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn signing_is_deterministic() {
        let k = Keypair::insecure_from_name("v");
        assert_eq!(
            k.sign(Domain::Proposal, "c", &1u8),
            k.sign(Domain::Proposal, "c", &1u8)
        );
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey(identity).verifying_key().unwrap_err(),
            CryptoError::WeakKey
        );
        // Find some bytes that do not decompress to a curve point.
        let invalid = (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("some constant pattern is off the curve");
        assert_eq!(
            PublicKey(invalid).verifying_key().unwrap_err(),
            CryptoError::InvalidKey
        );
    }

    #[test]
    fn batch_fails_when_any_signature_is_forged() {
        let keys: Vec<Keypair> = (0..4)
            .map(|i| Keypair::insecure_from_name(&format!("v{i}")))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(&[u8], Signature, VerifyingKey)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| {
                (
                    m.as_slice(),
                    k.sign_raw(m),
                    k.public_key().verifying_key().unwrap(),
                )
            })
            .collect();
        assert!(verify_batch(&items).is_ok());
        items[2].1.0[0] ^= 1;
        assert!(verify_batch(&items).is_err());
    }
}
