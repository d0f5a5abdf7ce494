//! One signature rule for every validator signature (docs/dependencies.md, trap 4): a signature gets
//! the same verdict alone (`Vote::verify`, `Proposal::verify`), inside a certificate or a polka
//! (`Certificate::verify`, `verify_prepares`) and inside a burst of votes (`verify_votes`),
//! wherever it sits and whatever shares the batch. The hard case is a Byzantine validator that
//! signs with a small-order component in `R` (`Keypair::sign_with_torsion`): `verify_strict`
//! refuses it, dalek's cofactorless batch accepts it or not depending on its companions, and the
//! chain's cofactored rule accepts it everywhere.

use proptest::prelude::*;
use timed_core::block::{Block, Certificate, CertificateError, CommitSignature, Header, tx_root};
use timed_core::crypto::{self, Domain, Keypair, Signature, signing_message};
use timed_core::message::{Proposal, Vote, VoteKind, verify_votes};
use timed_core::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
use timed_core::validators::{ValidatorSet, insecure_dev_validators};

const CHAIN: &str = "one-rule";
const HEIGHT: Height = Height(9);
const ROUND: Round = Round(2);

fn setup(n: usize) -> (ValidatorSet, Vec<Keypair>) {
    let (keys, members) = insecure_dev_validators(&vec![100; n]);
    (ValidatorSet::new(&members).unwrap(), keys)
}

fn block() -> Hash {
    Hash([0xb1; 32])
}

/// A vote of validator `i`, its signature carrying `EIGHT_TORSION[torsion]` in `R` (0: none).
fn vote(keys: &[Keypair], i: usize, kind: VoteKind, torsion: u8) -> Vote {
    let mut v = Vote::sign(
        &keys[i],
        CHAIN,
        HEIGHT,
        ROUND,
        kind,
        Some(block()),
        ValidatorIndex(i as u16),
    );
    if torsion != 0 {
        v.signature = keys[i].sign_with_torsion(
            kind.domain(),
            CHAIN,
            &Vote::signed_fields(HEIGHT, ROUND, Some(block()), v.validator),
            torsion,
        );
    }
    v
}

#[test]
fn a_torsioned_vote_gets_the_same_verdict_alone_in_a_certificate_a_polka_and_a_burst() {
    let n = 7;
    let (set, keys) = setup(n);
    let mut strict_refused = 0;
    for torsion in 1..8u8 {
        // The Byzantine signer first, in the middle, last.
        for byzantine in [0, n / 2, n - 1] {
            for kind in [VoteKind::Precommit, VoteKind::Prepare] {
                let votes: Vec<Vote> = (0..n)
                    .map(|i| vote(&keys, i, kind, if i == byzantine { torsion } else { 0 }))
                    .collect();
                let odd = &votes[byzantine];
                assert_eq!(odd.verify(&set, CHAIN), Ok(()), "t{torsion} at {byzantine}");
                let vk = set.get(odd.validator).unwrap().verifying_key;
                let msg = signing_message(
                    kind.domain(),
                    CHAIN,
                    &Vote::signed_fields(HEIGHT, ROUND, Some(block()), odd.validator),
                );
                let dalek_sig = ed25519_dalek::Signature::from_bytes(&odd.signature.0);
                if vk.verify_strict(&msg, &dalek_sig).is_err() {
                    strict_refused += 1;
                }
                assert_eq!(verify_votes(&votes, &set, CHAIN), vec![true; n]);
                let cert = if kind == VoteKind::Precommit {
                    Certificate::from_precommits(HEIGHT, ROUND, block(), &votes)
                } else {
                    Certificate::from_prepares(HEIGHT, ROUND, block(), &votes)
                };
                assert_eq!(cert.signatures.len(), n);
                let verdict = if kind == VoteKind::Precommit {
                    // What a node checks on a decision, and `timed verify` on every block.
                    cert.verify(&set, CHAIN, HEIGHT, &block())
                } else {
                    // What a node checks on a re-proposal's polka.
                    cert.verify_prepares(&set, CHAIN, HEIGHT, &block())
                };
                assert_eq!(verdict, Ok(()), "t{torsion} at {byzantine} {kind:?}");
                // The smallest quorum holding it, too (5 of 7, the Byzantine signer included).
                let quorum: Vec<CommitSignature> = cert
                    .signatures
                    .iter()
                    .filter(|s| s.validator.0 as usize >= byzantine.min(2))
                    .take(5)
                    .copied()
                    .collect();
                assert!(quorum.iter().any(|s| s.validator == odd.validator));
                let small = Certificate {
                    signatures: quorum,
                    ..cert.clone()
                };
                let verdict = if kind == VoteKind::Precommit {
                    small.verify(&set, CHAIN, HEIGHT, &block())
                } else {
                    small.verify_prepares(&set, CHAIN, HEIGHT, &block())
                };
                assert_eq!(verdict, Ok(()));
            }
        }
    }
    assert_eq!(strict_refused, 7 * 3 * 2, "verify_strict refuses every one");
}

#[test]
fn a_torsioned_proposal_verifies_and_its_torsioned_polka_proves() {
    let n = 4;
    let (set, keys) = setup(n);
    let header = Header {
        chain_id: CHAIN.into(),
        height: HEIGHT,
        parent_hash: Hash([3; 32]),
        timestamp: TimestampMs(1_000),
        proposer: ValidatorIndex(1),
        tx_root: tx_root(&[]),
        state_root: Hash::ZERO,
        next_set_hash: Hash::ZERO,
        evidence_root: timed_core::block::evidence_root(&[]),
    };
    let b = Block {
        header,
        txs: vec![],
        evidence: Vec::new(),
    };
    let round = Round(3);
    let mut p = Proposal::sign(&keys[1], CHAIN, round, Some(ROUND), b, ValidatorIndex(1));
    for torsion in 1..8u8 {
        p.signature = keys[1].sign_with_torsion(
            Domain::Proposal,
            CHAIN,
            &(
                HEIGHT,
                round,
                Some(ROUND),
                p.block.hash(),
                ValidatorIndex(1),
            ),
            torsion,
        );
        assert_eq!(p.verify(&set, CHAIN), Ok(()), "t{torsion}");
        // Every prepare of the polka torsioned.
        let prepares: Vec<Vote> = (0..n)
            .map(|i| {
                let mut v = Vote::sign(
                    &keys[i],
                    CHAIN,
                    HEIGHT,
                    ROUND,
                    VoteKind::Prepare,
                    Some(p.block.hash()),
                    ValidatorIndex(i as u16),
                );
                v.signature = keys[i].sign_with_torsion(
                    Domain::Prepare,
                    CHAIN,
                    &Vote::signed_fields(HEIGHT, ROUND, Some(p.block.hash()), v.validator),
                    torsion.wrapping_add(i as u8) % 7 + 1,
                );
                v
            })
            .collect();
        let polka = Certificate::from_prepares(HEIGHT, ROUND, p.block.hash(), &prepares);
        assert_eq!(
            polka.verify_prepares(&set, CHAIN, HEIGHT, &p.block.hash()),
            Ok(())
        );
        // A torsioned signature is still bound to what it signed.
        let mut other = p.clone();
        other.round = Round(4);
        assert!(other.verify(&set, CHAIN).is_err());
    }
}

// ----- random mixes ------------------------------------------------------------------------------

/// How one validator's precommit is signed.
#[derive(Clone, Debug)]
enum Make {
    Honest,
    /// A small-order point in `R`: accepted by the rule.
    Torsion(u8),
    /// One bit of the signature flipped (wrong `R`, non-canonical `s`, or a wrong equation).
    Flipped(usize, u8),
    /// A torsioned signature with one bit flipped.
    TorsionFlipped(u8, usize, u8),
    /// A prepare's signature presented as a precommit.
    WrongKind,
    /// `s + ℓ`: the same scalar, a non-canonical encoding (malleability).
    Malleated,
    /// `R` a small-order point itself.
    SmallOrderR(u8),
}

fn make() -> impl Strategy<Value = Make> {
    prop_oneof![
        3 => Just(Make::Honest),
        3 => (1u8..8).prop_map(Make::Torsion),
        1 => (0usize..64, 0u8..8).prop_map(|(at, bit)| Make::Flipped(at, bit)),
        1 => (1u8..8, 0usize..64, 0u8..8).prop_map(|(t, at, bit)| Make::TorsionFlipped(t, at, bit)),
        1 => Just(Make::WrongKind),
        1 => Just(Make::Malleated),
        1 => (0u8..8).prop_map(Make::SmallOrderR),
    ]
}

/// ℓ, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn signed(keys: &[Keypair], i: usize, how: &Make) -> Vote {
    let mut v = vote(keys, i, VoteKind::Precommit, 0);
    let flip = |sig: &mut Signature, at: usize, bit: u8| sig.0[at] ^= 1 << bit;
    match how {
        Make::Honest => {}
        Make::Torsion(t) => v = vote(keys, i, VoteKind::Precommit, *t),
        Make::Flipped(at, bit) => flip(&mut v.signature, *at, *bit),
        Make::TorsionFlipped(t, at, bit) => {
            v = vote(keys, i, VoteKind::Precommit, *t);
            flip(&mut v.signature, *at, *bit);
        }
        Make::WrongKind => v.signature = vote(keys, i, VoteKind::Prepare, 0).signature,
        Make::Malleated => {
            let mut carry = 0u16;
            for (b, l) in v.signature.0[32..].iter_mut().zip(L) {
                let sum = u16::from(*b) + u16::from(l) + carry;
                *b = sum as u8;
                carry = sum >> 8;
            }
        }
        Make::SmallOrderR(t) => {
            let point = curve25519_dalek::constants::EIGHT_TORSION[usize::from(*t)];
            v.signature.0[..32].copy_from_slice(point.compress().as_bytes());
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Whatever shares a batch, and in whatever order: the batch accepts exactly when every
    /// signature is accepted alone, a burst of votes gets each vote's own verdict, and a
    /// certificate is accepted exactly when each of its signatures is.
    #[test]
    fn a_batch_verdict_is_the_and_of_the_single_verdicts(
        makes in proptest::collection::vec(make(), 1..12),
        rotate in 0usize..12,
    ) {
        let n = makes.len();
        let (set, keys) = setup(n);
        let votes: Vec<Vote> = makes.iter().enumerate().map(|(i, m)| signed(&keys, i, m)).collect();
        let alone: Vec<bool> = votes.iter().map(|v| v.verify(&set, CHAIN).is_ok()).collect();
        for (m, ok) in makes.iter().zip(&alone) {
            if matches!(m, Make::Honest | Make::Torsion(_)) {
                prop_assert!(*ok, "{m:?} refused");
            }
            if matches!(m, Make::WrongKind | Make::Malleated | Make::SmallOrderR(_)) {
                prop_assert!(!*ok, "{m:?} accepted");
            }
        }
        let all = alone.iter().all(|ok| *ok);

        // The raw batch, in a rotated order.
        let messages: Vec<Vec<u8>> = votes
            .iter()
            .map(|v| {
                signing_message(
                    Domain::Precommit,
                    CHAIN,
                    &Vote::signed_fields(v.height, v.round, v.block, v.validator),
                )
            })
            .collect();
        let mut items: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = votes
            .iter()
            .zip(&messages)
            .map(|(v, m)| (m.as_slice(), v.signature, set.get(v.validator).unwrap().verifying_key))
            .collect();
        items.rotate_left(rotate % n);
        prop_assert_eq!(crypto::verify_batch(&items).is_ok(), all);
        let by_bytes: Vec<(&[u8], Signature, crypto::PublicKey)> = votes
            .iter()
            .zip(&messages)
            .map(|(v, m)| (m.as_slice(), v.signature, set.get(v.validator).unwrap().public_key))
            .collect();
        prop_assert_eq!(crypto::verify_batch_cofactored(&by_bytes).is_ok(), all);

        // A burst of votes: each vote's own verdict.
        prop_assert_eq!(verify_votes(&votes, &set, CHAIN), alone.clone());

        // A certificate of all of them (a quorum by stake): accepted iff each signature is.
        let cert = Certificate::from_precommits(HEIGHT, ROUND, block(), &votes);
        let verdict = cert.verify(&set, CHAIN, HEIGHT, &block());
        if all {
            prop_assert_eq!(verdict, Ok(()));
        } else {
            prop_assert_eq!(verdict, Err(CertificateError::BadSignature));
        }
    }
}
