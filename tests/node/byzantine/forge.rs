//! What the Byzantine validator signs and forges, as pure functions of its key, the chain and a
//! few numbers: votes through the core's own signing (`Vote::sign`, `Proposal::sign`), blocks no
//! honest node would build, bodies swapped under a real header, certificates that prove nothing.
//!
//! `attack.rs` decides when and to whom; nothing here sends.

use timed_core::block::{self, Block, Certificate, CommitSignature, Header};
use timed_core::crypto::{Keypair, Signature};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};

/// Who signs: the key of one genesis validator, its index and the chain it signs for.
pub struct Signer {
    pub key: Keypair,
    pub me: ValidatorIndex,
    pub chain_id: String,
}

/// A hash no real block has, different for every `n`.
pub fn bogus_hash(what: &str, n: u64) -> Hash {
    Hash::of(&[b"node-byzantine", what.as_bytes(), &n.to_be_bytes()])
}

impl Signer {
    pub fn vote(&self, height: Height, round: Round, kind: VoteKind, block: Option<Hash>) -> Vote {
        Vote::sign(
            &self.key,
            &self.chain_id,
            height,
            round,
            kind,
            block,
            self.me,
        )
    }

    pub fn vote_msg(
        &self,
        height: Height,
        round: Round,
        kind: VoteKind,
        block: Option<Hash>,
    ) -> Message {
        Message::Vote(self.vote(height, round, kind, block))
    }

    /// `msg` (a vote or a proposal of this validator) with one byte of its signature flipped:
    /// well formed, its signer in the set, and its signature fails.
    pub fn flip_signature(mut msg: Message) -> Message {
        match &mut msg {
            Message::Vote(v) => v.signature.0[9] ^= 0x01,
            Message::Proposal(p) => p.signature.0[9] ^= 0x01,
            _ => {}
        }
        msg
    }

    /// A block of `height` on `parent` that no honest node accepts: its state root is made up
    /// (`salt` makes each one different). Its body matches its header, so it is judged, not
    /// refused at the door.
    pub fn bogus_block(&self, height: Height, parent: Hash, salt: u64) -> Block {
        let txs = Vec::new();
        Block {
            header: Header {
                chain_id: self.chain_id.clone(),
                height,
                parent_hash: parent,
                timestamp: TimestampMs(now_ms()),
                proposer: self.me,
                tx_root: block::tx_root(&txs),
                state_root: bogus_hash("state", salt),
                next_set_hash: bogus_hash("next_set", salt),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs,
            evidence: Vec::new(),
        }
    }

    /// A signed proposal of a bogus block at `height`, `round`.
    pub fn bogus_proposal(&self, height: Height, round: Round, parent: Hash, salt: u64) -> Message {
        let block = self.bogus_block(height, parent, salt);
        Message::Proposal(Proposal::sign(
            &self.key,
            &self.chain_id,
            round,
            None,
            block,
            self.me,
        ))
    }

    /// `block` with one transfer more or less under the same header (same hash, same signatures
    /// over it): the added one is signed by this validator's key, valid in itself.
    pub fn swap_body(&self, block: &Block, n: u64) -> Block {
        let mut b = block.clone();
        if !b.txs.is_empty() && n.is_multiple_of(2) {
            b.txs.remove(n as usize % b.txs.len());
        } else {
            let tx = Transfer {
                from: self.key.public_key(),
                to: Keypair::insecure_from_name("node-byzantine/sink").public_key(),
                amount: Amount(1),
                fee: Amount(0),
                nonce: n,
                op: Default::default(),
            }
            .sign(&self.key, &self.chain_id);
            let at = n as usize % (b.txs.len() + 1);
            b.txs.insert(at, tx);
        }
        debug_assert_eq!(b.hash(), block.hash());
        b
    }

    /// A certificate for `block` at `height` that proves nothing: this validator's real
    /// precommit, and made-up signatures of every other validator.
    pub fn forged_certificate(&self, height: Height, block: Hash, validators: u16) -> Certificate {
        let mine = self.vote(height, Round::ZERO, VoteKind::Precommit, Some(block));
        let signatures = (0..validators)
            .map(|i| CommitSignature {
                validator: ValidatorIndex(i),
                signature: if ValidatorIndex(i) == self.me {
                    mine.signature
                } else {
                    Signature([i as u8 ^ 0x5a; 64])
                },
            })
            .collect();
        Certificate {
            height,
            round: Round::ZERO,
            block_hash: block,
            signatures,
        }
    }

    /// A decision of a bogus block at `height` with a forged certificate.
    pub fn forged_decision(&self, height: Height, parent: Hash, salt: u64, n: u16) -> Decision {
        let block = self.bogus_block(height, parent, salt);
        let certificate = self.forged_certificate(height, block.hash(), n);
        Decision { block, certificate }
    }
}

/// The real decision with its body swapped, or its certificate's signatures broken.
pub fn lying_copy(signer: &Signer, d: &Decision, n: u64) -> Decision {
    let mut d = d.clone();
    if n.is_multiple_of(2) {
        d.block = signer.swap_body(&d.block, n / 2);
    } else {
        for s in &mut d.certificate.signatures {
            s.signature.0[7] ^= 0x21;
        }
    }
    d
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bytes that are no message: a frame the peer must drop and count.
pub fn garbage(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..64 + n % 512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
