//! The messages validators exchange, how each is signed and checked, and the envelope they
//! travel in (`encode_message`, `decode_message`).
//!
//! Votes and proposals are signed by their author (`"timed/v2/" ‖ kind ‖ chain_id ‖ fields`,
//! `crypto::signing_message`);
//! decisions and sync responses carry certificates and need no signature of their sender.

use serde::{Deserialize, Serialize};

use crate::block::{Block, Certificate};
use crate::codec::{self, CodecError, MAX_MESSAGE_BYTES, WIRE_VERSION, Wire};
use crate::crypto::{self, Domain, Keypair, Signature};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;
pub use crate::vote::{SignedMessageError, Vote, VoteKind, verify_votes};

/// A proposer's block for `(height, round)`. `valid_round` is Tendermint's `validRound`: the round
/// in which the block gathered a prepare quorum, when the proposer re-proposes it.
///
/// A re-proposal carries that quorum as `polka` (the prepares of `valid_round`, in certificate
/// form). Algorithm 1 assumes every honest node eventually receives every vote; a double voter
/// breaks that (prepare to some, nil to others), and the nodes that counted its nil would never see
/// the quorum the proposer locked on, so the height could stall for good. The polka is not covered
/// by the proposer's signature: its own signatures prove it, and a bad one only fails to help.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The height; must equal `block.header.height`.
    pub height: Height,
    /// The round; its proposer is `ValidatorSet::proposer(height, round)`.
    pub round: Round,
    /// `validRound` (L19), below `round`; `None` is −1, a fresh block (L22), `Some` a
    /// re-proposal (L28).
    pub valid_round: Option<Round>,
    /// The block proposed, whole.
    pub block: Block,
    /// The signer.
    pub proposer: ValidatorIndex,
    /// Over height, round, `valid_round`, the block's hash and the proposer: the header, not the
    /// body (bound by `tx_root`), nor the polka.
    pub signature: Signature,
    /// For a re-proposal, the prepares of `valid_round` for the block; unsigned by the proposer.
    pub polka: Option<Certificate>,
}

impl Proposal {
    fn signed_fields(
        height: Height,
        round: Round,
        valid_round: Option<Round>,
        block_hash: Hash,
        proposer: ValidatorIndex,
    ) -> (Height, Round, Option<Round>, Hash, ValidatorIndex) {
        (height, round, valid_round, block_hash, proposer)
    }

    /// A proposal of `block` (at its height) signed with `key`, which should be the key of
    /// `proposer` (not checked); without a polka (`with_polka` adds one).
    pub fn sign(
        key: &Keypair,
        chain_id: &str,
        round: Round,
        valid_round: Option<Round>,
        block: Block,
        proposer: ValidatorIndex,
    ) -> Proposal {
        let height = block.height();
        let fields = Proposal::signed_fields(height, round, valid_round, block.hash(), proposer);
        let signature = key.sign(Domain::Proposal, chain_id, &fields);
        Proposal {
            height,
            round,
            valid_round,
            block,
            proposer,
            signature,
            polka: None,
        }
    }

    /// The same proposal carrying the prepares that justify its `valid_round`.
    pub fn with_polka(self, polka: Certificate) -> Proposal {
        Proposal {
            polka: Some(polka),
            ..self
        }
    }

    /// Checks the signature of the named proposer with the chain's one rule (whether it is the
    /// right proposer for the round is the consensus module's business).
    pub fn verify(&self, set: &ValidatorSet, chain_id: &str) -> Result<(), SignedMessageError> {
        let v = set
            .get(self.proposer)
            .ok_or(SignedMessageError::UnknownValidator(self.proposer))?;
        let fields = Proposal::signed_fields(
            self.height,
            self.round,
            self.valid_round,
            self.block.hash(),
            self.proposer,
        );
        let msg = crypto::signing_message(Domain::Proposal, chain_id, &fields);
        Ok(crypto::verify(&v.verifying_key, &msg, &self.signature)?)
    }
}

/// A finalized block with the certificate that proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The block.
    pub block: Block,
    /// Precommits worth a quorum for the block's hash at its height.
    pub certificate: Certificate,
}

/// How many blocks one `SyncResponse` may carry.
pub const MAX_SYNC_BLOCKS: u32 = 64;

/// Everything a validator may send to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The round's proposal, from its proposer or forwarded.
    Proposal(Proposal),
    /// A prepare or precommit, from its signer or forwarded.
    Vote(Vote),
    /// Broadcast on finalizing a height; lets lagging nodes finalize at once.
    Decision(Decision),
    /// "Send me the finalized blocks from `from` on, at most `max_blocks` of them."
    SyncRequest {
        /// The first height wanted: the asker's own.
        from: Height,
        /// The most blocks wanted; the answerer sends at most `MAX_SYNC_BLOCKS`.
        max_blocks: u32,
    },
    /// Finalized blocks in ascending height order, each with its certificate.
    SyncResponse {
        /// Consecutive heights from the request's `from`; the receiver applies at most
        /// `MAX_SYNC_BLOCKS` and stops at the first that does not apply.
        blocks: Vec<Decision>,
    },
    /// A transfer gossiped from the node a client submitted it to.
    Transaction(SignedTransfer),
    /// "Send me the block of `height` whose hash is `hash`": asked by a node that counted a
    /// quorum of prepares in an earlier round for a block it never received, of a validator
    /// that prepared it. (A precommit quorum needs no fetch: a `Decision` brings the block.)
    BlockRequest {
        /// The asker's height, which the answerer must be at too.
        height: Height,
        /// The block's hash.
        hash: Hash,
    },
    /// The answer to a `BlockRequest`. It needs no signature: the receiver keeps the block only
    /// if its hash is the one it asked for, and that hash is named by a quorum's signed votes.
    BlockResponse {
        /// The block asked for.
        block: Block,
    },
}

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal(_) => "proposal",
            Message::Vote(v) => v.kind.name(),
            Message::Decision(_) => "decision",
            Message::SyncRequest { .. } => "sync_request",
            Message::SyncResponse { .. } => "sync_response",
            Message::Transaction(_) => "transaction",
            Message::BlockRequest { .. } => "block_request",
            Message::BlockResponse { .. } => "block_response",
        }
    }
}

// ----- packing a sync answer ---------------------------------------------------------------------

/// A `SyncResponse` being filled: the one packing rule every runtime answers `Output::ServeSync`
/// by. Blocks go in, in ascending height order, while the sealed message (`encode_message`)
/// stays within `codec::MAX_MESSAGE_BYTES` and the caller's own byte budget (the room in the
/// peer's send queue, say), and while there are fewer than `MAX_SYNC_BLOCKS` and the number
/// asked for. The first block that does not fit ends it: the asker asks again from there.
#[derive(Debug)]
pub struct SyncPacker {
    blocks: Vec<Decision>,
    /// The sealed size of the answer so far.
    bytes: usize,
    budget: usize,
    max_blocks: usize,
    full: bool,
}

/// The sealed size of an empty `SyncResponse` and the most its block count's varint can add.
const SYNC_RESPONSE_OVERHEAD: usize = 1 + 1 + 10;

impl SyncPacker {
    /// An empty answer for a request of `max_blocks`, within `budget` bytes sealed (and never
    /// more than `codec::MAX_MESSAGE_BYTES`).
    pub fn new(max_blocks: u32, budget: usize) -> SyncPacker {
        SyncPacker {
            blocks: Vec::new(),
            bytes: SYNC_RESPONSE_OVERHEAD,
            budget: budget.min(MAX_MESSAGE_BYTES),
            max_blocks: max_blocks.min(MAX_SYNC_BLOCKS) as usize,
            full: false,
        }
    }

    /// Adds the next block; false, and nothing added, once the answer is full (then stop
    /// reading: no later block goes in either).
    pub fn push(&mut self, decision: Decision) -> bool {
        if self.full || self.blocks.len() >= self.max_blocks {
            self.full = true;
            return false;
        }
        let size = codec::encode(&decision).len();
        if self.bytes + size > self.budget {
            self.full = true;
            return false;
        }
        self.bytes += size;
        self.blocks.push(decision);
        true
    }

    /// Whether another block may still fit.
    pub fn is_full(&self) -> bool {
        self.full || self.blocks.len() >= self.max_blocks
    }

    /// The blocks packed, in the order given.
    pub fn into_blocks(self) -> Vec<Decision> {
        debug_assert!(
            self.blocks.is_empty()
                || encode_message(&Message::SyncResponse {
                    blocks: self.blocks.clone()
                })
                .len()
                    <= self.budget,
            "a packed sync answer stays within its budget"
        );
        self.blocks
    }
}

// ----- the envelope -------------------------------------------------------------------------------

/// A message as it travels: the version byte, then the message.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(WIRE_VERSION);
    msg.put(&mut out);
    out
}

/// Opens an envelope from a peer. Size is checked first, then version, then content.
pub fn decode_message(bytes: &[u8]) -> Result<Message, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&WIRE_VERSION, body)) => codec::decode(body, MAX_MESSAGE_BYTES),
        Some((&v, _)) => Err(CodecError::UnsupportedVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_message(&big),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_version_and_empty_input_are_refused() {
        assert_eq!(decode_message(&[]).unwrap_err(), CodecError::Empty);
        assert_eq!(
            decode_message(&[9, 0]).unwrap_err(),
            CodecError::UnsupportedVersion(9)
        );
    }

    /// A decision of `height` whose certificate holds `signers` (unchecked) signatures: its
    /// size grows with them.
    fn decision(height: u64, signers: u16) -> Decision {
        use crate::block::{Block, Certificate, CommitSignature, Header};
        use crate::crypto::Signature;
        use crate::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
        let block = Block {
            header: Header {
                chain_id: "pack".into(),
                height: Height(height),
                parent_hash: Hash([1; 32]),
                timestamp: TimestampMs(height),
                proposer: ValidatorIndex(0),
                tx_root: Hash([2; 32]),
                state_root: Hash([3; 32]),
                next_set_hash: Hash([3; 32]),
                evidence_root: crate::block::evidence_root(&[]),
            },
            txs: vec![],
            evidence: Vec::new(),
        };
        let certificate = Certificate {
            height: Height(height),
            round: Round(0),
            block_hash: block.hash(),
            signatures: (0..signers)
                .map(|v| CommitSignature {
                    validator: ValidatorIndex(v),
                    signature: Signature([7; 64]),
                })
                .collect(),
        };
        Decision { block, certificate }
    }

    fn sealed(blocks: Vec<Decision>) -> usize {
        encode_message(&Message::SyncResponse { blocks }).len()
    }

    #[test]
    fn a_sync_answer_holds_at_most_the_blocks_asked_for_and_sync_blocks() {
        let mut p = SyncPacker::new(3, MAX_MESSAGE_BYTES);
        assert!((1..=3).all(|h| p.push(decision(h, 4))));
        assert!(p.is_full());
        assert!(!p.push(decision(4, 4)));
        assert_eq!(p.into_blocks().len(), 3);
        let mut p = SyncPacker::new(u32::MAX, usize::MAX);
        let mut h = 1;
        while p.push(decision(h, 1)) {
            h += 1;
        }
        assert_eq!(p.into_blocks().len(), MAX_SYNC_BLOCKS as usize);
    }

    #[test]
    fn a_sync_answer_stays_within_its_byte_budget_sealed() {
        let one = sealed(vec![decision(1, 100)]);
        for budget in [one - 1, one, 2 * one, 5 * one + 7, 64 * one] {
            let mut p = SyncPacker::new(MAX_SYNC_BLOCKS, budget);
            let mut h = 1;
            while p.push(decision(h, 100)) {
                h += 1;
            }
            // Once full, nothing more goes in, even a smaller block.
            assert!(!p.push(decision(h + 1, 0)));
            let blocks = p.into_blocks();
            let n = blocks.len();
            assert!(n == 0 || sealed(blocks) <= budget, "budget {budget}");
            // Full only because the next block would not have fitted (or the count).
            let next = sealed((1..=n as u64 + 1).map(|h| decision(h, 100)).collect());
            assert!(
                n == MAX_SYNC_BLOCKS as usize || next > budget - 10,
                "budget {budget}"
            );
        }
        // A block larger than the whole budget: an empty answer, not an oversized one.
        let mut p = SyncPacker::new(MAX_SYNC_BLOCKS, one - 1);
        assert!(!p.push(decision(1, 100)));
        assert!(p.into_blocks().is_empty());
    }

    #[test]
    fn a_huge_declared_length_in_an_envelope_is_an_error() {
        // A sequence claiming 2^62 items followed by almost nothing.
        let mut msg = vec![WIRE_VERSION];
        codec::put_varint(1 << 62, &mut msg);
        msg.extend_from_slice(&[1, 2, 3]);
        assert!(decode_message(&msg).is_err());
    }
}
