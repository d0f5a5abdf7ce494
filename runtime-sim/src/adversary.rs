//! What the stronger Byzantine behaviours do to a message, as pure functions of the message, a
//! key and the run's RNG: a block body swapped under its signed header, a re-proposal stripped of
//! its polka, a signature with a small-order component in `R`, a far-height claim, votes for far
//! rounds.
//!
//! The simulation (`sim.rs`) decides when and to whom; this module only forges.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use timed_core::block::{Block, Certificate};
use timed_core::crypto::{self, Domain, Keypair, Signature};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, ValidatorIndex};
use timed_core::validators::ValidatorSet;
use timed_core::votes::MAX_ROUNDS_AHEAD;

use crate::sim::CHAIN_ID;

/// The block with another body under the same header (so the same hash and the same signatures):
/// one transfer removed, two swapped, or one added (signed by `key`, valid in itself).
pub fn swap_body(block: &Block, key: &Keypair, rng: &mut ChaCha8Rng) -> Block {
    let mut b = block.clone();
    let n = b.txs.len();
    match rng.random_range(0..3u8) {
        0 if n >= 1 => {
            b.txs.remove(rng.random_range(0..n));
        }
        1 if n >= 2 => {
            let i = rng.random_range(0..n - 1);
            b.txs.swap(i, i + 1);
        }
        _ => {
            let tx = Transfer {
                from: key.public_key(),
                to: Keypair::insecure_from_name("timed-sim/body-swapper").public_key(),
                amount: Amount(1),
                fee: Amount(0),
                nonce: rng.random_range(0..4u64),
                op: Default::default(),
            }
            .sign(key, CHAIN_ID);
            let at = rng.random_range(0..=n);
            b.txs.insert(at, tx);
        }
    }
    debug_assert_eq!(b.hash(), block.hash());
    b
}

/// A re-proposal without its polka, or with a polka that does not prove it (too few prepares,
/// or one signature broken).
pub fn strip_polka(p: &Proposal, rng: &mut ChaCha8Rng) -> Proposal {
    let mut p = p.clone();
    match (p.polka.as_mut(), rng.random_range(0..3u8)) {
        (Some(polka), 1) if !polka.signatures.is_empty() => {
            let keep = polka.signatures.len() / 3;
            polka.signatures.truncate(keep);
        }
        (Some(polka), 2) if !polka.signatures.is_empty() => {
            let i = rng.random_range(0..polka.signatures.len());
            polka.signatures[i].signature.0[40] ^= 0x10;
        }
        _ => p.polka = None,
    }
    p
}

/// A properly signed prepare `ahead` heights above `height`: a claim to be far ahead.
pub fn far_claim(key: &Keypair, me: ValidatorIndex, height: Height, ahead: u64) -> Message {
    Message::Vote(Vote::sign(
        key,
        CHAIN_ID,
        Height(height.0.saturating_add(ahead)),
        Round::ZERO,
        VoteKind::Prepare,
        None,
        me,
    ))
}

/// How far ahead of its own round a round pusher signs votes at its height: doubling, so that
/// every distance a round end could jump is tried, up to the vote keeper's window
/// (`votes::MAX_ROUNDS_AHEAD`, the farthest a core keeps a vote; `pushed_votes` moves that one to
/// the pusher's own turn to propose), one past it (refused), and the last round there is.
pub const PUSHED_ROUNDS_AHEAD: [u32; 9] = [
    1,
    2,
    4,
    8,
    16,
    32,
    MAX_ROUNDS_AHEAD,
    MAX_ROUNDS_AHEAD + 1,
    u32::MAX,
];

/// The properly signed votes a round pusher at `(height, round)` sends its peers: nil prepares
/// and precommits (alternating) for the rounds `PUSHED_ROUNDS_AHEAD` past its own at its height,
/// and for far rounds of the next two heights (and rounds 0 and 1 of the next, which a core keeps
/// for when it gets there). Each claims that the network is further on than it is:
/// `Timer::RoundEnd` moves a node to the highest round it has seen votes of, so unchecked they
/// would lift every honest node's round, and with it every timeout, as far as the keeper allows.
/// The farthest kept claim is the last round of the window whose proposer is the pusher (its
/// core is elsewhere, so nobody proposes there): a node that jumps there waits out the whole
/// propose timeout of that round.
pub fn pushed_votes(
    key: &Keypair,
    me: ValidatorIndex,
    set: &ValidatorSet,
    height: Height,
    round: Round,
) -> Vec<Message> {
    let ahead = |k: u32| Round(round.0.saturating_add(k));
    let own_turn = (1..=MAX_ROUNDS_AHEAD)
        .rev()
        .map(ahead)
        .find(|r| set.proposer(height, *r) == me)
        .unwrap_or(ahead(MAX_ROUNDS_AHEAD));
    let next = height.next();
    let points = PUSHED_ROUNDS_AHEAD
        .iter()
        .map(|&k| {
            let r = if k == MAX_ROUNDS_AHEAD {
                own_turn
            } else {
                ahead(k)
            };
            (height, r)
        })
        .chain([
            (next, Round::ZERO),
            (next, Round(1)),
            (next, ahead(MAX_ROUNDS_AHEAD)),
            (next.next(), ahead(MAX_ROUNDS_AHEAD)),
        ]);
    points
        .enumerate()
        .map(|(i, (h, r))| {
            let kind = if i % 2 == 0 {
                VoteKind::Prepare
            } else {
                VoteKind::Precommit
            };
            Message::Vote(Vote::sign(key, CHAIN_ID, h, r, kind, None, me))
        })
        .collect()
}

/// An Ed25519 signature of `message` by `key` whose `R` carries a point of order 8:
/// `R' = [r]B + T`, `s = r + k·a` with `k = H(R' ‖ A ‖ M)`. The chain's cofactored equation
/// `[8](R' − [s]B + [k]A) = [8]T = 0` accepts it alone, in a certificate and in a batch; the
/// cofactorless one (`verify_strict`, dalek's `verify_batch`) does not. The core's helper.
pub fn torsion_sign(key: &Keypair, message: &[u8]) -> Signature {
    key.sign_raw_with_torsion(message, 1)
}

fn vote_message(v: &Vote) -> Vec<u8> {
    crypto::signing_message(
        v.kind.domain(),
        CHAIN_ID,
        &Vote::signed_fields(v.height, v.round, v.block, v.validator),
    )
}

/// The precommit or prepare signatures of `me` in a certificate, signed again with torsion.
fn torsion_certificate(cert: &mut Certificate, kind: VoteKind, key: &Keypair, me: ValidatorIndex) {
    for s in cert.signatures.iter_mut().filter(|s| s.validator == me) {
        let v = Vote {
            height: cert.height,
            round: cert.round,
            kind,
            block: Some(cert.block_hash),
            validator: me,
            signature: s.signature,
        };
        s.signature = torsion_sign(key, &vote_message(&v));
    }
}

/// `msg` with every signature of `me` in it made again with a torsion component: its own
/// proposals and votes, and its signatures inside the polkas and certificates it sends.
/// `None` when the message holds no signature of `me`.
pub fn torsion_rewrite(msg: &Message, key: &Keypair, me: ValidatorIndex) -> Option<Message> {
    match msg {
        Message::Vote(v) if v.validator == me => {
            let mut v = v.clone();
            v.signature = torsion_sign(key, &vote_message(&v));
            Some(Message::Vote(v))
        }
        Message::Proposal(p) if p.proposer == me => {
            let mut p = p.clone();
            // The fields `Proposal::sign` covers, in its order.
            let fields = (p.height, p.round, p.valid_round, p.block.hash(), p.proposer);
            p.signature = torsion_sign(
                key,
                &crypto::signing_message(Domain::Proposal, CHAIN_ID, &fields),
            );
            if let Some(polka) = p.polka.as_mut() {
                torsion_certificate(polka, VoteKind::Prepare, key, me);
            }
            Some(Message::Proposal(p))
        }
        Message::Decision(d) if d.certificate.signatures.iter().any(|s| s.validator == me) => {
            let mut d: Decision = d.clone();
            torsion_certificate(&mut d.certificate, VoteKind::Precommit, key, me);
            Some(Message::Decision(d))
        }
        _ => None,
    }
}

/// Whether a message is worth replaying (signed, or carrying a certificate).
pub fn replayable(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Proposal(_) | Message::Vote(_) | Message::Decision(_)
    )
}

/// A tag for forged sync answers: a hash no real block has.
pub fn bogus_hash(what: &[u8], h: Height) -> Hash {
    Hash::of(&[b"timed-sim/sync-liar", what, &h.0.to_be_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torsion_signatures_carry_torsion_and_pass_the_chain_rule() {
        let key = Keypair::insecure_from_name("torsion");
        let msg = b"a message";
        let sig = torsion_sign(&key, msg);
        let vk = key.public_key().verifying_key().unwrap();
        assert!(crypto::verify(&vk, msg, &sig).is_ok());
        assert!(crypto::verify_cofactored(&key.public_key(), msg, &sig).is_ok());
        let dalek = ed25519_dalek::Signature::from_bytes(&sig.0);
        assert!(vk.verify_strict(msg, &dalek).is_err(), "no torsion in R");
        assert_ne!(sig, key.sign_raw(msg));
    }
}
