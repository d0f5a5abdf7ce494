//! Blocks, their headers and certificates.
//!
//! A block's identity is the hash of its header; the header commits to the transactions through
//! `tx_root` and to the ledger after the block through `state_root`. A `Certificate` is the proof
//! that a quorum of stake precommitted a block: anyone holding the validator set can check it, and it
//! is checked as one batch of signatures in ascending validator order.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Domain, Signature};
use crate::message::{Vote, VoteKind};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use crate::validators::ValidatorSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: String,
    pub height: Height,
    pub parent_hash: Hash,
    pub timestamp: TimestampMs,
    /// The validator that built this block; it receives the proposer's share of the reward.
    pub proposer: ValidatorIndex,
    pub tx_root: Hash,
    /// The ledger's state root after this block's transactions and rewards.
    pub state_root: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: Vec<SignedTransfer>,
}

impl Header {
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/block", &crate::codec::encode(self)])
    }
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn height(&self) -> Height {
        self.header.height
    }
}

/// The commitment to a block's transactions: BLAKE3 over their hashes in block order.
pub fn tx_root(txs: &[SignedTransfer]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/txs");
    h.update(&(txs.len() as u64).to_be_bytes());
    for tx in txs {
        h.update(&tx.hash().0);
    }
    Hash(*h.finalize().as_bytes())
}

/// One precommit signature inside a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSignature {
    pub validator: ValidatorIndex,
    pub signature: Signature,
}

/// Precommits for one block worth a quorum of stake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub height: Height,
    pub round: Round,
    pub block_hash: Hash,
    /// Sorted by validator index, no repeats.
    pub signatures: Vec<CommitSignature>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("certificate is for block {got:?}, expected {expected:?}")]
    WrongBlock { expected: Hash, got: Hash },
    #[error("certificate signers are not in strictly ascending order")]
    Unordered,
    #[error("certificate names validator {0}, which is not in the set")]
    UnknownValidator(ValidatorIndex),
    #[error("certificate holds {got} of stake; a quorum needs {needed}")]
    NoQuorum { got: Stake, needed: Stake },
    #[error("a certificate signature does not verify")]
    BadSignature,
}

impl Certificate {
    /// Builds a certificate from precommits for `block_hash` (any order; deduplicated by
    /// validator). Does not check the quorum: `verify` does.
    pub fn from_precommits<'a>(
        height: Height,
        round: Round,
        block_hash: Hash,
        precommits: impl IntoIterator<Item = &'a Vote>,
    ) -> Certificate {
        let mut signatures: Vec<CommitSignature> = precommits
            .into_iter()
            .filter(|v| {
                v.kind == VoteKind::Precommit
                    && v.height == height
                    && v.round == round
                    && v.block == Some(block_hash)
            })
            .map(|v| CommitSignature {
                validator: v.validator,
                signature: v.signature,
            })
            .collect();
        signatures.sort_by_key(|s| s.validator);
        signatures.dedup_by_key(|s| s.validator);
        Certificate {
            height,
            round,
            block_hash,
            signatures,
        }
    }

    /// The stake of the signers, if they are ordered and known.
    pub fn signed_stake(&self, set: &ValidatorSet) -> Result<Stake, CertificateError> {
        let mut stake: u64 = 0;
        let mut previous: Option<ValidatorIndex> = None;
        for s in &self.signatures {
            if previous.is_some_and(|p| p >= s.validator) {
                return Err(CertificateError::Unordered);
            }
            previous = Some(s.validator);
            let v = set
                .get(s.validator)
                .ok_or(CertificateError::UnknownValidator(s.validator))?;
            // Cannot overflow: the set's total fits in u64 and each signer counts once.
            stake += v.stake.0;
        }
        Ok(Stake(stake))
    }

    /// Checks that this certificate proves `block_hash` final at `height` on `chain_id`: ordered,
    /// known signers worth a quorum, every signature valid (one batch).
    pub fn verify(
        &self,
        set: &ValidatorSet,
        chain_id: &str,
        height: Height,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        if self.height != height {
            return Err(CertificateError::WrongHeight {
                expected: height,
                got: self.height,
            });
        }
        if self.block_hash != *block_hash {
            return Err(CertificateError::WrongBlock {
                expected: *block_hash,
                got: self.block_hash,
            });
        }
        let stake = self.signed_stake(set)?;
        if !set.is_quorum(stake) {
            return Err(CertificateError::NoQuorum {
                got: stake,
                needed: set.quorum(),
            });
        }
        let messages: Vec<Vec<u8>> = self
            .signatures
            .iter()
            .map(|s| {
                crypto::signing_message(
                    Domain::Precommit,
                    chain_id,
                    &Vote::signed_fields(
                        self.height,
                        self.round,
                        Some(self.block_hash),
                        s.validator,
                    ),
                )
            })
            .collect();
        let items: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = self
            .signatures
            .iter()
            .zip(&messages)
            .map(|(s, m)| {
                let vk = set
                    .get(s.validator)
                    .expect("checked by signed_stake")
                    .verifying_key;
                (m.as_slice(), s.signature, vk)
            })
            .collect();
        crypto::verify_batch(&items).map_err(|_| CertificateError::BadSignature)
    }
}
