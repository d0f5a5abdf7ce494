//! Ed25519 keys and the signature rules of the chain.
//!
//! Every signature covers `"timed/v2/" ‖ kind ‖ chain_id ‖ fields` (`signing_message`), the
//! chain id and the fields in the `codec` encoding: the kind keeps a vote from being replayed as a
//! proposal, the chain id keeps it from being replayed on another chain, and the length prefix on
//! the chain id keeps the concatenation unambiguous.
//!
//! Which signatures are accepted is one rule, in `rule` (re-exported here): see its documentation.

mod rule;

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::types::fixed_bytes_serde;

pub use rule::{
    KeyCache, verify, verify_batch, verify_batch_cofactored, verify_batch_cofactored_with,
    verify_cofactored,
};

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
    /// A proposal (`message::Proposal`).
    Proposal,
    /// A prepare vote.
    Prepare,
    /// A precommit vote, also each signature of a certificate.
    Precommit,
    /// A transfer (`tx::Transfer`).
    Transfer,
}

impl Domain {
    /// The tag written into the signed bytes (`signing_message`): part of the signature format.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Proposal => "proposal",
            Domain::Prepare => "prepare",
            Domain::Precommit => "precommit",
            Domain::Transfer => "transfer",
        }
    }
}

/// Why a key or a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The key's bytes do not decompress to a curve point.
    #[error("the public key is not a valid Ed25519 point")]
    InvalidKey,
    /// The key is a point of small order.
    #[error("the public key has small order (weak); it could sign for anyone")]
    WeakKey,
    /// The signature is malformed or fails the chain's rule (in a batch: at least one does).
    #[error("the signature does not verify")]
    BadSignature,
}

/// The bytes a signature of `domain` covers.
pub fn signing_message<F: crate::codec::Wire>(
    domain: Domain,
    chain_id: &str,
    fields: &F,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    out.extend_from_slice(b"timed/v2/");
    out.extend_from_slice(domain.as_str().as_bytes());
    crate::codec::put_str(chain_id, &mut out);
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
    /// The key of a 32-byte Ed25519 seed (the secret).
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

    /// The secret seed, for writing the key file. Never log it.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key (and account address).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `fields` for `domain` on `chain_id` (the bytes of `signing_message`). Deterministic
    /// (Ed25519): the same fields always give the same signature.
    pub fn sign<F: crate::codec::Wire>(
        &self,
        domain: Domain,
        chain_id: &str,
        fields: &F,
    ) -> Signature {
        self.sign_raw(&signing_message(domain, chain_id, fields))
    }

    /// Signs `message` as given, without domain or chain id: for tests and benchmarks; what the
    /// chain checks is always signed through `sign`.
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// **For adversary tests.** As `sign`, but with a small-order point added to the signature's
    /// `R` (`sign_raw_with_torsion`).
    pub fn sign_with_torsion<F: crate::codec::Wire>(
        &self,
        domain: Domain,
        chain_id: &str,
        fields: &F,
        torsion_index: u8,
    ) -> Signature {
        self.sign_raw_with_torsion(&signing_message(domain, chain_id, fields), torsion_index)
    }

    /// **For adversary tests** (a Byzantine validator that signs with small-order components):
    /// a signature of `message` whose `R` is `[r]B + T`, with `T` the small-order point
    /// `EIGHT_TORSION[torsion_index % 8]` (index 0 is the identity: an ordinary signature; 4 has
    /// order 2; 2 and 6 order 4; the odd ones order 8).
    ///
    /// The chain's rule accepts it, alone and in any batch (the cofactor erases `T`), while
    /// `ed25519_dalek`'s `verify_strict` refuses it for any index but 0, and its cofactorless
    /// `verify_batch` accepts a batch holding it only when the batch's coefficient for it happens
    /// to be a multiple of `T`'s order: the disagreement the one rule exists to remove. It
    /// produces nothing the rule would not accept from an honest signer, so it may stay public.
    ///
    /// Deterministic: the nonce `r` is derived from the seed, the message and the index.
    pub fn sign_raw_with_torsion(&self, message: &[u8], torsion_index: u8) -> Signature {
        let t = curve25519_dalek::constants::EIGHT_TORSION[usize::from(torsion_index % 8)];
        let mut nonce = Sha512::new();
        nonce.update(b"timed/v1/torsion-nonce");
        nonce.update(self.signing.to_bytes());
        nonce.update([torsion_index]);
        nonce.update(message);
        let r = Scalar::from_bytes_mod_order_wide(&nonce.finalize().into());
        let big_r = (EdwardsPoint::mul_base(&r) + t).compress();
        let key = self.public_key();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(key.0);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * self.signing.to_scalar();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        Signature(sig)
    }
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
}
