//! Ed25519 keys and the signature rules of the chain.
//!
//! Every signature covers `"timed/v1/" ‖ kind ‖ CBOR(chain_id) ‖ CBOR(fields)`: the kind keeps a
//! vote from being replayed as a proposal, the chain id keeps it from being replayed on another
//! chain, and CBOR's length prefix on the chain id keeps the concatenation unambiguous.
//!
//! Two rules (DEPENDENCIES.md trap 4: `verify`, `verify_strict` and `verify_batch` disagree on
//! crafted edge cases, so each kind of signature has one rule, the same on every node):
//!
//! - **Validators' messages** (proposals, votes, certificates): a single signature is checked with
//!   `verify_strict`; a set of signatures (a certificate) as one `verify_batch` in the
//!   certificate's canonical signer order, which is deterministic, so every node reaches the same
//!   verdict on the same bytes. Weak (small-order) validator keys are refused at genesis.
//! - **Transfers** (`verify_cofactored`, `verify_batch_cofactored`): the *cofactored* equation
//!   `[8](R − [s]B + [k]A) = 0` (as in Zcash's ZIP 215), with `s` canonical, `R` canonically
//!   encoded, and neither `A` nor `R` of small order. Its batch form gives every signature the
//!   verdict it gets alone, whichever other signatures share the batch (except with probability
//!   below 2⁻¹²⁰), which is what lets a node check a block's transfers as one batch of *those it
//!   has not verified before*: the set differs from node to node, the verdict does not. The
//!   cofactorless `verify_batch` lacks that property: a signature crafted with a small-order
//!   component in its key passes or fails it depending on the coefficients, which depend on the
//!   whole set. Every signature `verify_strict` accepts is accepted here.

use std::collections::BTreeMap;
use std::sync::Mutex;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha512};

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

/// Decompressed public keys, kept between batches: decompressing a key costs about a third of a
/// batched verification, and the senders of transfers repeat. Only speed depends on it: a key's
/// point is a function of its bytes, and only valid keys of large order are kept. Bounded: when
/// full it is emptied. Shareable between threads (a lock held for one lookup or insertion).
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    points: Mutex<BTreeMap<PublicKey, EdwardsPoint>>,
}

impl KeyCache {
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            capacity,
            points: Mutex::new(BTreeMap::new()),
        }
    }

    /// A cache that keeps nothing.
    pub fn none() -> KeyCache {
        KeyCache::new(0)
    }

    /// `key` as a point: valid, and not of small order (`PublicKey::verifying_key`).
    fn point(&self, key: &PublicKey) -> Result<EdwardsPoint, CryptoError> {
        if self.capacity == 0 {
            return Ok(key.verifying_key()?.to_edwards());
        }
        let lock = || self.points.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = lock().get(key) {
            return Ok(*p);
        }
        let p = key.verifying_key()?.to_edwards();
        let mut points = lock();
        if points.len() >= self.capacity {
            points.clear();
        }
        points.insert(*key, p);
        Ok(p)
    }
}

/// A signature parsed for the cofactored rule: its points and scalars, each checked well formed.
struct Prepared {
    r: EdwardsPoint,
    a: EdwardsPoint,
    s: Scalar,
    /// `k = SHA-512(R ‖ A ‖ message) mod ℓ`, as Ed25519 defines it.
    k: Scalar,
}

/// Parses `signature` by `key` on `message`, refusing what the cofactored rule refuses before any
/// curve arithmetic: an invalid or small-order key, a non-canonical `s` (malleability), an `R`
/// that is not the canonical encoding of a curve point, or a small-order `R`.
fn prepare(
    key: &PublicKey,
    message: &[u8],
    signature: &Signature,
    keys: &KeyCache,
) -> Result<Prepared, CryptoError> {
    let a = keys.point(key)?;
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature.0[..32]);
    s_bytes.copy_from_slice(&signature.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(CryptoError::BadSignature)?;
    if !is_canonical_y(&r_bytes) {
        return Err(CryptoError::BadSignature);
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .filter(|r| !r.is_small_order())
        .ok_or(CryptoError::BadSignature)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.0);
    h.update(message);
    let hram: [u8; 64] = h.finalize().into();
    Ok(Prepared {
        r,
        a,
        s,
        k: Scalar::from_bytes_mod_order_wide(&hram),
    })
}

/// True when the 255-bit `y` of a compressed point is below `p = 2^255 − 19`. (The one other
/// non-canonical form, `x = 0` with the sign bit set, is the identity or the point of order 2,
/// both refused as small-order.)
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let high_all_ones = bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f;
    !(high_all_ones && bytes[0] >= 0xed)
}

/// Checks one signature with the transfers' rule: `[8](R − ([s]B − [k]A)) = 0` (see the module
/// documentation). Deterministic, and a pure function of its inputs.
pub fn verify_cofactored(
    key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let p = prepare(key, message, signature, &KeyCache::none())?;
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-p.a), &p.s);
    if (p.r - expected).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Checks many signatures with the transfers' rule as one random linear combination:
/// `[8](Σ zᵢ·Rᵢ + Σ zᵢkᵢ·Aᵢ − (Σ zᵢsᵢ)·B) = 0`, about twice as fast per signature as one by one.
///
/// Ok exactly when `verify_cofactored` accepts every item, except with probability below 2⁻¹²⁰:
/// multiplied by the cofactor, each item's residue `Rᵢ − [sᵢ]B + [kᵢ]Aᵢ` lies in the prime-order
/// group, so a bad item survives only if the 128-bit coefficients `zᵢ` solve a linear equation
/// modulo ℓ. The `zᵢ` are BLAKE3 output over every item's key, signature and `k` (so over its
/// message): deterministic, and not choosable by whoever chose the items. An empty batch is Ok.
pub fn verify_batch_cofactored(items: &[(&[u8], Signature, PublicKey)]) -> Result<(), CryptoError> {
    verify_batch_cofactored_with(items, &KeyCache::none())
}

/// As `verify_batch_cofactored`, taking the keys' points from `keys` when it has them (and
/// keeping the new ones there). The verdict is the same.
pub fn verify_batch_cofactored_with(
    items: &[(&[u8], Signature, PublicKey)],
    keys: &KeyCache,
) -> Result<(), CryptoError> {
    let prepared = items
        .iter()
        .map(|(m, s, k)| prepare(k, m, s, keys))
        .collect::<Result<Vec<_>, _>>()?;
    let mut transcript = blake3::Hasher::new_derive_key("timed/v1 ed25519 cofactored batch");
    for ((_, sig, key), p) in items.iter().zip(&prepared) {
        transcript.update(&key.0);
        transcript.update(&sig.0);
        transcript.update(p.k.as_bytes());
    }
    let mut xof = transcript.finalize_xof();
    let zs: Vec<Scalar> = prepared
        .iter()
        .map(|_| {
            let mut z = [0u8; 16];
            xof.fill(&mut z);
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect();
    let b: Scalar = prepared.iter().zip(&zs).map(|(p, z)| z * p.s).sum();
    let scalars = std::iter::once(-b)
        .chain(zs.iter().copied())
        .chain(prepared.iter().zip(&zs).map(|(p, z)| z * p.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(prepared.iter().map(|p| p.r))
        .chain(prepared.iter().map(|p| p.a));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
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

    // ---- the transfers' cofactored rule ----

    fn signed(name: &str, msg: &[u8]) -> (PublicKey, Signature) {
        let k = Keypair::insecure_from_name(name);
        (k.public_key(), k.sign_raw(msg))
    }

    #[test]
    fn cofactored_accepts_what_strict_accepts_and_refuses_tampering() {
        for i in 0..8u8 {
            let msg = vec![i; 40];
            let (key, sig) = signed(&format!("k{i}"), &msg);
            let vk = key.verifying_key().unwrap();
            assert!(verify(&vk, &msg, &sig).is_ok());
            assert_eq!(verify_cofactored(&key, &msg, &sig), Ok(()));
            for byte in [0, 31, 32, 63] {
                let mut bad = sig;
                bad.0[byte] ^= 0x04;
                assert!(verify_cofactored(&key, &msg, &bad).is_err());
            }
            let mut other = msg.clone();
            other[0] ^= 1;
            assert!(verify_cofactored(&key, &other, &sig).is_err());
        }
    }

    #[test]
    fn cofactored_refuses_non_canonical_s_and_r() {
        let msg = b"transfer";
        let (key, sig) = signed("alice", msg);
        // s + ℓ: the same scalar, another encoding (malleability).
        let s = Scalar::from_canonical_bytes(sig.0[32..].try_into().unwrap()).unwrap();
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut l_bytes = [0u8; 32];
        l_bytes[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        l_bytes[31] = 0x10;
        let mut wide = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s.to_bytes()[i]) + u16::from(l_bytes[i]) + carry;
            wide[i] = v as u8;
            carry = v >> 8;
        }
        let mut malleated = sig;
        malleated.0[32..].copy_from_slice(&wide);
        assert_eq!(
            verify_cofactored(&key, msg, &malleated),
            Err(CryptoError::BadSignature)
        );
        // y ≥ p is never a canonical encoding.
        let mut y_p = [0xffu8; 32];
        y_p[0] = 0xed;
        y_p[31] = 0x7f;
        assert!(!is_canonical_y(&y_p));
        y_p[0] = 0xec;
        assert!(is_canonical_y(&y_p));
        let mut bad_r = sig;
        bad_r.0[..32].copy_from_slice(&[0xff; 32]);
        assert!(verify_cofactored(&key, msg, &bad_r).is_err());
    }

    /// A key with a small-order component, `A = [a]B + T` with `T` of order 8, signing honestly
    /// with `a`: its residue is `[k]T`, nonzero unless 8 divides `k`.
    fn torsion_signed(msg: &[u8], attempt: u8) -> (PublicKey, Signature, Scalar) {
        let a = Scalar::from_bytes_mod_order([7; 32]);
        let t = curve25519_dalek::constants::EIGHT_TORSION[1];
        let big_a = EdwardsPoint::mul_base(&a) + t;
        let key = PublicKey(big_a.compress().to_bytes());
        let r = Scalar::from_bytes_mod_order([attempt; 32]);
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(key.0);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        (key, Signature(sig), k)
    }

    #[test]
    fn a_batch_gives_a_crafted_signature_the_same_verdict_whatever_its_companions() {
        let msg = b"crafted".to_vec();
        // An attempt whose k is odd: `verify_strict` refuses it (its residue [k]T is not zero).
        let (key, sig) = (1u8..)
            .map(|i| torsion_signed(&msg, i))
            .find(|(_, _, k)| k.as_bytes()[0] & 1 == 1)
            .map(|(key, sig, _)| (key, sig))
            .unwrap();
        let vk = key.verifying_key().unwrap();
        assert!(verify(&vk, &msg, &sig).is_err(), "strict refuses it");
        assert_eq!(verify_cofactored(&key, &msg, &sig), Ok(()));
        let companions: Vec<(Vec<u8>, PublicKey, Signature)> = (0..24u8)
            .map(|i| {
                let m = vec![i; 12];
                let (k, s) = signed(&format!("c{i}"), &m);
                (m, k, s)
            })
            .collect();
        let mut dalek = Vec::new();
        for (m, k, s) in &companions {
            let ours = [(msg.as_slice(), sig, key), (m.as_slice(), *s, *k)];
            assert_eq!(verify_batch_cofactored(&ours), Ok(()));
            let theirs = [
                (msg.as_slice(), sig, vk),
                (m.as_slice(), *s, k.verifying_key().unwrap()),
            ];
            dalek.push(verify_batch(&theirs).is_ok());
        }
        // The cofactorless batch's verdict on the very same signature depends on the set.
        assert!(dalek.contains(&true) && dalek.contains(&false), "{dalek:?}");
    }

    #[test]
    fn a_key_cache_changes_no_verdict_and_stays_bounded() {
        let msgs: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 30]).collect();
        let mut items: Vec<(&[u8], Signature, PublicKey)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (k, s) = signed(&format!("c{}", i % 5), m);
                (m.as_slice(), s, k)
            })
            .collect();
        let cache = KeyCache::new(3);
        for _ in 0..3 {
            assert_eq!(verify_batch_cofactored_with(&items, &cache), Ok(()));
            assert!(cache.points.lock().unwrap().len() <= 3);
        }
        items[5].1.0[50] ^= 1;
        assert!(verify_batch_cofactored_with(&items, &cache).is_err());
        // A weak key is refused, and not remembered.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        items[5].2 = PublicKey(identity);
        assert_eq!(
            verify_batch_cofactored_with(&items, &cache),
            Err(CryptoError::WeakKey)
        );
        assert!(
            !cache
                .points
                .lock()
                .unwrap()
                .contains_key(&PublicKey(identity))
        );
    }

    #[test]
    fn a_cofactored_batch_fails_when_any_signature_is_forged() {
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 30]).collect();
        let mut items: Vec<(&[u8], Signature, PublicKey)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (k, s) = signed(&format!("b{i}"), m);
                (m.as_slice(), s, k)
            })
            .collect();
        assert_eq!(verify_batch_cofactored(&[]), Ok(()));
        assert_eq!(verify_batch_cofactored(&items), Ok(()));
        for i in [0, 7, 19] {
            let mut forged = items.clone();
            forged[i].1.0[40] ^= 0x10;
            assert!(verify_batch_cofactored(&forged).is_err());
        }
        // The right signature under another key (a valid point): refused.
        items[3].2 = items[4].2;
        assert!(verify_batch_cofactored(&items).is_err());
    }
}
