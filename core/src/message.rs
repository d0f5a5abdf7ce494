//! The messages validators exchange, and how each is signed and checked.
//!
//! Votes and proposals are signed by their author (`"timed/v2/" ‖ kind ‖ chain_id ‖ fields`,
//! `crypto::signing_message`);
//! decisions and sync responses carry certificates and need no signature of their sender.

use serde::{Deserialize, Serialize};

use crate::block::{Block, Certificate};
use crate::crypto::{self, CryptoError, Domain, Keypair, Signature};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;

/// Tendermint's prevote is our `Prepare`; its precommit our `Precommit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// Tendermint's prevote (L22-L33, L57-L60).
    Prepare,
    /// Tendermint's precommit (L36-L46, L61-L64).
    Precommit,
}

impl VoteKind {
    /// The signature domain of a vote of this kind (the kind is signed only through it).
    pub fn domain(self) -> Domain {
        match self {
            VoteKind::Prepare => Domain::Prepare,
            VoteKind::Precommit => Domain::Precommit,
        }
    }

    /// Its name in events, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::Prepare => "prepare",
            VoteKind::Precommit => "precommit",
        }
    }
}

/// A signed prepare or precommit for a block (`Some(hash)`) or for nothing (`None`, nil).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The height voted at.
    pub height: Height,
    /// The round voted in.
    pub round: Round,
    /// Prepare or precommit; signed as the signature's domain.
    pub kind: VoteKind,
    /// The block's hash (`id(v)`), or `None` for nil.
    pub block: Option<Hash>,
    /// The voter: its key in the validator set checks the signature.
    pub validator: ValidatorIndex,
    /// Over the kind's domain, the chain id and `Vote::signed_fields`.
    pub signature: Signature,
}

/// Why a vote's or a proposal's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedMessageError {
    /// The named signer is not in the validator set.
    #[error("signer {0} is not a validator of this chain")]
    UnknownValidator(ValidatorIndex),
    /// The signature fails the chain's rule.
    #[error("signature does not verify: {0}")]
    BadSignature(#[from] CryptoError),
}

impl Vote {
    /// What a vote's signature covers (besides domain and chain id).
    pub fn signed_fields(
        height: Height,
        round: Round,
        block: Option<Hash>,
        validator: ValidatorIndex,
    ) -> (Height, Round, Option<Hash>, ValidatorIndex) {
        (height, round, block, validator)
    }

    /// A vote signed with `key`, which should be the key of `validator` (not checked).
    pub fn sign(
        key: &Keypair,
        chain_id: &str,
        height: Height,
        round: Round,
        kind: VoteKind,
        block: Option<Hash>,
        validator: ValidatorIndex,
    ) -> Vote {
        let signature = key.sign(
            kind.domain(),
            chain_id,
            &Vote::signed_fields(height, round, block, validator),
        );
        Vote {
            height,
            round,
            kind,
            block,
            validator,
            signature,
        }
    }

    /// Checks the signature of the named validator with the chain's one rule (`crypto::verify`):
    /// the verdict a certificate or a batch of votes holding it gives it too.
    pub fn verify(&self, set: &ValidatorSet, chain_id: &str) -> Result<(), SignedMessageError> {
        let v = set
            .get(self.validator)
            .ok_or(SignedMessageError::UnknownValidator(self.validator))?;
        let msg = crypto::signing_message(
            self.kind.domain(),
            chain_id,
            &Vote::signed_fields(self.height, self.round, self.block, self.validator),
        );
        Ok(crypto::verify(&v.verifying_key, &msg, &self.signature)?)
    }
}

/// Verifies the signatures of many votes at once: one batch when all are good (the common case,
/// at about the batch rate per signature), and one by one only when the batch fails, to find the
/// bad ones. Returns one verdict per vote, in order: each the verdict `Vote::verify` gives it
/// (the one rule's batch form agrees with it, whatever else the burst holds, so which votes a
/// node happens to check together changes nothing). A driver that receives votes in bursts uses
/// this and hands the good ones to the core as `Input::SignatureChecked`.
pub fn verify_votes(votes: &[Vote], set: &ValidatorSet, chain_id: &str) -> Vec<bool> {
    let keys: Option<Vec<_>> = votes
        .iter()
        .map(|v| set.get(v.validator).map(|info| info.verifying_key))
        .collect();
    if let Some(keys) = keys
        && votes.len() > 1
    {
        let messages: Vec<Vec<u8>> = votes
            .iter()
            .map(|v| {
                crypto::signing_message(
                    v.kind.domain(),
                    chain_id,
                    &Vote::signed_fields(v.height, v.round, v.block, v.validator),
                )
            })
            .collect();
        let items: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = votes
            .iter()
            .zip(&messages)
            .zip(keys)
            .map(|((v, m), k)| (m.as_slice(), v.signature, k))
            .collect();
        if crypto::verify_batch(&items).is_ok() {
            return vec![true; votes.len()];
        }
    }
    votes
        .iter()
        .map(|v| v.verify(set, chain_id).is_ok())
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validators::insecure_dev_validators;

    #[test]
    fn verify_votes_accepts_good_batches_and_names_each_bad_vote() {
        let (keys, members) = insecure_dev_validators(&[100, 100, 100, 100]);
        let set = ValidatorSet::new(&members).unwrap();
        let chain = "verify-votes-test";
        let mut votes: Vec<Vote> = (0..4u16)
            .map(|i| {
                Vote::sign(
                    &keys[i as usize],
                    chain,
                    Height(3),
                    Round(0),
                    VoteKind::Prepare,
                    None,
                    ValidatorIndex(i),
                )
            })
            .collect();
        assert_eq!(verify_votes(&votes, &set, chain), vec![true; 4]);
        votes[1].round = Round(1); // no longer what was signed
        votes[3].validator = ValidatorIndex(9); // not a validator
        assert_eq!(
            verify_votes(&votes, &set, chain),
            vec![true, false, true, false]
        );
        assert_eq!(verify_votes(&votes[..1], &set, chain), vec![true]);
        assert!(verify_votes(&[], &set, chain).is_empty());
        assert_eq!(verify_votes(&votes, &set, "another-chain"), vec![false; 4]);
    }
}
