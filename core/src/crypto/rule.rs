//! The chain's rule for accepting a signature, alone or in a batch, and the key cache of the
//! batch form.
//!
//! **One rule for every signature** (docs/dependencies.md, trap 4). `ed25519-dalek`'s `verify`,
//! `verify_strict` and cofactorless `verify_batch` disagree on crafted edge cases: a signature
//! whose `R` carries a small-order component passes that batch or not depending on the
//! coefficients, which depend on every other signature in the batch, while `verify_strict`
//! refuses it always. Honest nodes would then build certificates that other nodes (and light
//! clients) call forged. So every signature that matters — validators' proposals, votes,
//! certificates and polkas, and transfers — is checked with the *cofactored* equation of Zcash's
//! ZIP 215:
//!
//! `[8](R − [s]B + [k]A) = 0`, `k = SHA-512(R ‖ A ‖ message) mod ℓ`,
//!
//! with, before any curve arithmetic, `s` canonical (below `ℓ`: no malleability), `R` the
//! canonical encoding of a curve point, and neither `A` nor `R` of small order. Its batch form
//! (`verify_batch`, `verify_batch_cofactored`) gives every signature the verdict it gets alone,
//! whichever other signatures share the batch (except with probability below 2⁻¹²⁰), so a
//! certificate is accepted exactly when each of its signatures is, by every node, in any order,
//! alone or batched, and a node may batch whatever set of messages it happens to hold.
//!
//! **Torsion.** The rule accepts a signature whose `R` (or key) has a small-order component, as
//! long as it is otherwise right: multiplying by the cofactor 8 erases that component. Such a
//! signature can only come from the key's owner (the equation still ties `s` to the key's
//! secret), proves as much as an ordinary one, and gets the same verdict everywhere, which is all
//! consensus needs. `Keypair::sign_raw_with_torsion` makes them, for adversary tests. Every
//! signature `verify_strict` accepts is accepted here. Weak (small-order) keys are refused here
//! and, for validators, at genesis.
//!
//! Two forms of each check, one rule: `verify` / `verify_batch` take keys already decompressed
//! (`ed25519_dalek::VerifyingKey`, as a `ValidatorSet` keeps them); `verify_cofactored` /
//! `verify_batch_cofactored[_with]` take key bytes (a transfer's sender is an address), decompressed
//! on the way or taken from a `KeyCache`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

use super::{CryptoError, PublicKey, Signature};

/// Checks one signature with the chain's rule (the module documentation), the key already
/// decompressed: how a validator's proposal or vote is checked. Deterministic, and a pure
/// function of its inputs.
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    check_one(&prepare(Key::from_verifying(key)?, message, signature)?)
}

/// Checks many signatures with the chain's rule as one batch, keys already decompressed: how a
/// certificate, a polka or a burst of votes is checked. Ok exactly when `verify` accepts every
/// item (see `verify_batch_cofactored`), whatever their number and order. An empty batch is Ok.
pub fn verify_batch(items: &[(&[u8], Signature, VerifyingKey)]) -> Result<(), CryptoError> {
    // A batch's keys repeat (a run of certificates of a few validators): each distinct key is
    // checked once (`Key::from_verifying`), the last few remembered.
    let mut checked: Vec<[u8; 32]> = Vec::new();
    let prepared = items
        .iter()
        .map(|(m, s, k)| {
            let bytes = k.to_bytes();
            let key = if checked.contains(&bytes) {
                Key {
                    point: k.to_edwards(),
                    bytes,
                }
            } else {
                let key = Key::from_verifying(k)?;
                if checked.len() == KEYS_REMEMBERED {
                    checked.remove(0);
                }
                checked.push(bytes);
                key
            };
            prepare(key, m, s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_batch(&prepared)
}

/// Keys `verify_batch` remembers as checked.
const KEYS_REMEMBERED: usize = 8;

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
    /// A cache of at most `capacity` keys (0: keeps nothing).
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

/// A public key as the rule uses it: its point (valid, not of small order) and the bytes it was
/// given as, which enter `k`.
struct Key {
    point: EdwardsPoint,
    bytes: [u8; 32],
}

impl Key {
    fn from_verifying(key: &VerifyingKey) -> Result<Key, CryptoError> {
        // A `ValidatorSet` holds no weak key (refused at genesis); checked again here (three
        // doublings) so that the rule does not depend on where the key came from.
        if key.is_weak() {
            return Err(CryptoError::WeakKey);
        }
        Ok(Key {
            point: key.to_edwards(),
            bytes: key.to_bytes(),
        })
    }

    fn from_public(key: &PublicKey, keys: &KeyCache) -> Result<Key, CryptoError> {
        Ok(Key {
            point: keys.point(key)?,
            bytes: key.0,
        })
    }
}

/// A signature parsed for the rule: its points and scalars, each checked well formed, and the
/// bytes the batch coefficients are derived from.
struct Prepared {
    r: EdwardsPoint,
    a: EdwardsPoint,
    s: Scalar,
    /// `k = SHA-512(R ‖ A ‖ message) mod ℓ`, as Ed25519 defines it.
    k: Scalar,
    key_bytes: [u8; 32],
    signature: [u8; 64],
}

/// Parses `signature` by `key` on `message`, refusing what the rule refuses before any curve
/// arithmetic: a non-canonical `s` (malleability), an `R` that is not the canonical encoding of a
/// curve point, or a small-order `R`. (The key was checked by `Key`'s constructors.)
fn prepare(key: Key, message: &[u8], signature: &Signature) -> Result<Prepared, CryptoError> {
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature.0[..32]);
    s_bytes.copy_from_slice(&signature.0[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(CryptoError::BadSignature)?;
    if !is_canonical_y(&r_bytes) {
        return Err(CryptoError::BadSignature);
    }
    // `R` of small order, found by its encoding: the same verdict as `is_small_order` on the
    // point decoded (`a_small_order_encoding_is_one_of_the_listed`), without its three
    // doublings (a tenth of a batch's cost).
    if small_order_encoding(&r_bytes) {
        return Err(CryptoError::BadSignature);
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(CryptoError::BadSignature)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.bytes);
    h.update(message);
    let hram: [u8; 64] = h.finalize().into();
    Ok(Prepared {
        r,
        a: key.point,
        s,
        k: Scalar::from_bytes_mod_order_wide(&hram),
        key_bytes: key.bytes,
        signature: signature.0,
    })
}

/// Whether `bytes`, whose `y` is canonical (`is_canonical_y`), encode a point of small order:
/// one of the eight points of the torsion subgroup, each by its one encoding, and the two with
/// `x = 0` (the identity, the point of order 2) also with the sign bit set, which decodes to the
/// same point.
fn small_order_encoding(bytes: &[u8; 32]) -> bool {
    static ENCODINGS: std::sync::LazyLock<Vec<[u8; 32]>> = std::sync::LazyLock::new(|| {
        let mut all = Vec::new();
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            let c = t.compress().to_bytes();
            all.push(c);
            let mut signed = c;
            signed[31] |= 0x80;
            if signed != c && CompressedEdwardsY(signed).decompress() == Some(t) {
                all.push(signed);
            }
        }
        all
    });
    ENCODINGS.iter().any(|e| e == bytes)
}

/// True when the 255-bit `y` of a compressed point is below `p = 2^255 − 19`. (The one other
/// non-canonical form, `x = 0` with the sign bit set, is the identity or the point of order 2,
/// both refused as small-order.)
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let high_all_ones = bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f;
    !(high_all_ones && bytes[0] >= 0xed)
}

/// The single equation: `[8](R − ([s]B − [k]A)) = 0`.
fn check_one(p: &Prepared) -> Result<(), CryptoError> {
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-p.a), &p.s);
    if (p.r - expected).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// The batch equation: `[8](Σ zᵢ·Rᵢ + Σ zᵢkᵢ·Aᵢ − (Σ zᵢsᵢ)·B) = 0` (see
/// `verify_batch_cofactored` for why it agrees with `check_one` on every item).
fn check_batch(prepared: &[Prepared]) -> Result<(), CryptoError> {
    match prepared {
        [] => return Ok(()),
        // One equation is cheaper than a multiscalar multiplication of three points.
        [one] => return check_one(one),
        _ => {}
    }
    let mut transcript = blake3::Hasher::new_derive_key("timed/v1 ed25519 cofactored batch");
    for p in prepared {
        transcript.update(&p.key_bytes);
        transcript.update(&p.signature);
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
    // The `Aᵢ` of one key add up: `Σ zᵢkᵢ·A` over its signatures is `(Σ zᵢkᵢ)·A`, one point
    // of the multiplication per key instead of per signature. The same equation, so the same
    // verdict; a batch of many blocks' certificates, signed by a few validators, then costs
    // about one point per signature instead of two.
    let mut keys: BTreeMap<[u8; 32], (EdwardsPoint, Scalar)> = BTreeMap::new();
    for (p, z) in prepared.iter().zip(&zs) {
        let (_, sum) = keys.entry(p.key_bytes).or_insert((p.a, Scalar::ZERO));
        *sum += z * p.k;
    }
    let scalars = std::iter::once(-b)
        .chain(zs.iter().copied())
        .chain(keys.values().map(|(_, sum)| *sum));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(prepared.iter().map(|p| p.r))
        .chain(keys.values().map(|(a, _)| *a));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Checks one signature with the chain's rule, the key given as bytes (a transfer's sender):
/// `verify` after decompressing the key. Deterministic, and a pure function of its inputs.
pub fn verify_cofactored(
    key: &PublicKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    check_one(&prepare(
        Key::from_public(key, &KeyCache::none())?,
        message,
        signature,
    )?)
}

/// Checks many signatures with the chain's rule as one random linear combination:
/// `[8](Σ zᵢ·Rᵢ + Σ zᵢkᵢ·Aᵢ − (Σ zᵢsᵢ)·B) = 0`, about twice as fast per signature as one by one.
///
/// Ok exactly when `verify_cofactored` accepts every item, except with probability below 2⁻¹²⁰:
/// the well-formedness checks are the same item by item, and multiplied by the cofactor, each
/// item's residue `Rᵢ − [sᵢ]B + [kᵢ]Aᵢ` lies in the prime-order group (its small-order part, the
/// only thing a coefficient could cancel or not, is gone), so a bad item survives only if the
/// 128-bit coefficients `zᵢ` solve a linear equation modulo ℓ. The `zᵢ` are BLAKE3 output over
/// every item's key, signature and `k` (so over its message): deterministic — every node derives
/// the same ones from the same batch — and not choosable by whoever chose the items. An empty
/// batch is Ok.
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
        .map(|(m, s, k)| prepare(Key::from_public(k, keys)?, m, s))
        .collect::<Result<Vec<_>, _>>()?;
    check_batch(&prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Domain, Keypair, signing_message};

    /// The encodings `small_order_encoding` lists are exactly those whose point
    /// `is_small_order`: every torsion point with either sign bit, the torsion points added to
    /// points of large order, and a thousand encodings of pseudo-random `y`.
    #[test]
    fn a_small_order_encoding_is_one_of_the_listed() {
        let agree = |bytes: [u8; 32]| {
            if !is_canonical_y(&bytes) {
                return;
            }
            if let Some(p) = CompressedEdwardsY(bytes).decompress() {
                assert_eq!(
                    small_order_encoding(&bytes),
                    p.is_small_order(),
                    "{bytes:?}"
                );
            }
        };
        let mut small = std::collections::BTreeSet::new();
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            for sign in [0u8, 0x80] {
                let mut b = t.compress().to_bytes();
                b[31] ^= sign;
                agree(b);
                if small_order_encoding(&b) {
                    small.insert(b);
                }
            }
            for k in 1..20u64 {
                agree(
                    (ED25519_BASEPOINT_POINT * Scalar::from(k) + t)
                        .compress()
                        .to_bytes(),
                );
            }
        }
        // Flipping the sign of a point with `x ≠ 0` gives its negation, another torsion point.
        assert_eq!(
            small.len(),
            10,
            "8 points, 2 of them also with the sign bit set"
        );
        let mut xof = blake3::Hasher::new().finalize_xof();
        for _ in 0..1000 {
            let mut b = [0u8; 32];
            xof.fill(&mut b);
            agree(b);
        }
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

    // ---- the one rule, against dalek's other rules ----

    /// `ed25519_dalek`'s `verify_strict`, which the chain no longer uses.
    fn strict(
        key: &VerifyingKey,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), ed25519_dalek::SignatureError> {
        key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
    }

    /// `ed25519_dalek`'s cofactorless `verify_batch`, which the chain no longer uses.
    fn dalek_batch(
        items: &[(&[u8], Signature, VerifyingKey)],
    ) -> Result<(), ed25519_dalek::SignatureError> {
        let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
        let sigs: Vec<ed25519_dalek::Signature> = items
            .iter()
            .map(|(_, s, _)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|(_, _, k)| *k).collect();
        ed25519_dalek::verify_batch(&messages, &sigs, &keys)
    }

    #[test]
    fn a_torsion_component_in_r_is_accepted_alone_and_in_every_batch_position() {
        let key = Keypair::insecure_from_name("byzantine");
        let vk = key.public_key().verifying_key().unwrap();
        let honest: Vec<(Vec<u8>, Signature, VerifyingKey)> = (0..5u8)
            .map(|i| {
                let k = Keypair::insecure_from_name(&format!("h{i}"));
                let m = vec![i; 20];
                let s = k.sign_raw(&m);
                (m, s, k.public_key().verifying_key().unwrap())
            })
            .collect();
        let mut dalek_verdicts = Vec::new();
        for index in 0..8u8 {
            for n in 0..16u8 {
                let msg = [b"torsion ".as_slice(), &[index, n]].concat();
                let sig = key.sign_raw_with_torsion(&msg, index);
                assert_eq!(verify(&vk, &msg, &sig), Ok(()), "index {index}");
                assert_eq!(verify_cofactored(&key.public_key(), &msg, &sig), Ok(()));
                assert_eq!(strict(&vk, &msg, &sig).is_ok(), index == 0, "index {index}");
                let mut other = msg.clone();
                other[0] ^= 1;
                assert!(verify(&vk, &other, &sig).is_err());
                for at in 0..=honest.len() {
                    let mut items: Vec<(&[u8], Signature, VerifyingKey)> = honest
                        .iter()
                        .map(|(m, s, k)| (m.as_slice(), *s, *k))
                        .collect();
                    items.insert(at, (msg.as_slice(), sig, vk));
                    assert_eq!(verify_batch(&items), Ok(()), "index {index} at {at}");
                    if index != 0 {
                        dalek_verdicts.push(dalek_batch(&items).is_ok());
                    }
                    // Still refused when a companion is bad, wherever the torsion sits.
                    let bad = (at + 1) % items.len();
                    items[bad].1.0[33] ^= 1;
                    assert!(verify_batch(&items).is_err());
                }
            }
        }
        // The cofactorless batch's verdict on these signatures depends on their companions.
        assert!(
            dalek_verdicts.contains(&true) && dalek_verdicts.contains(&false),
            "{dalek_verdicts:?}"
        );
    }

    #[test]
    fn a_torsion_signature_is_bound_to_its_key_and_message() {
        let key = Keypair::insecure_from_name("byzantine");
        let sig = key.sign_with_torsion(Domain::Precommit, "c", &(1u64, 2u32), 3);
        let msg = signing_message(Domain::Precommit, "c", &(1u64, 2u32));
        assert_eq!(verify_cofactored(&key.public_key(), &msg, &sig), Ok(()));
        let other = Keypair::insecure_from_name("other").public_key();
        assert!(verify_cofactored(&other, &msg, &sig).is_err());
        // Deterministic, and distinct per index.
        assert_eq!(
            sig,
            key.sign_with_torsion(Domain::Precommit, "c", &(1u64, 2u32), 3)
        );
        assert_ne!(
            sig,
            key.sign_with_torsion(Domain::Precommit, "c", &(1u64, 2u32), 5)
        );
    }

    // ---- key bytes and the key cache (the transfers' form) ----

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
            let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
            assert!(vk.verify_strict(&msg, &dalek_sig).is_ok());
            assert_eq!(verify(&vk, &msg, &sig), Ok(()));
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
        assert!(strict(&vk, &msg, &sig).is_err(), "strict refuses it");
        assert_eq!(verify_cofactored(&key, &msg, &sig), Ok(()));
        assert_eq!(verify(&vk, &msg, &sig), Ok(()));
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
            assert_eq!(verify_batch(&theirs), Ok(()));
            dalek.push(dalek_batch(&theirs).is_ok());
        }
        // The cofactorless batch's verdict on the very same signature depends on the set.
        assert!(dalek.contains(&true) && dalek.contains(&false), "{dalek:?}");
    }

    /// The batch adds up the terms of one key (`check_batch`): a batch of many signatures by
    /// three keys (one with a small-order component, signing several messages the rule accepts
    /// alone) holds, and a forgery at any position, of any key, fails it.
    #[test]
    fn a_batch_of_few_keys_signing_many_messages_refuses_each_forgery() {
        let msgs: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 20]).collect();
        let mut items: Vec<(&[u8], Signature, PublicKey)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (k, s) = match i % 3 {
                    0 => signed("alice", m),
                    1 => signed("bob", m),
                    _ => {
                        let (k, s, _) = torsion_signed(m, i as u8);
                        (k, s)
                    }
                };
                assert_eq!(verify_cofactored(&k, m, &s), Ok(()), "item {i} alone");
                (m.as_slice(), s, k)
            })
            .collect();
        assert_eq!(verify_batch_cofactored(&items), Ok(()));
        for i in 0..items.len() {
            items[i].1.0[40] ^= 1;
            assert!(verify_batch_cofactored(&items).is_err(), "forged item {i}");
            items[i].1.0[40] ^= 1;
        }
        // A signature moved to another key's message: each key's sum is then wrong.
        let (s0, s3) = (items[0].1, items[3].1);
        items[0].1 = s3;
        items[3].1 = s0;
        assert!(verify_batch_cofactored(&items).is_err());
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
