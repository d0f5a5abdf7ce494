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

    #[test]
    fn a_huge_declared_length_in_an_envelope_is_an_error() {
        // A sequence claiming 2^62 items followed by almost nothing.
        let mut msg = vec![WIRE_VERSION];
        codec::put_varint(1 << 62, &mut msg);
        msg.extend_from_slice(&[1, 2, 3]);
        assert!(decode_message(&msg).is_err());
    }
}
