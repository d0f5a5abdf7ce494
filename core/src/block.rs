//! Blocks, their headers and certificates.
//!
//! A block's identity is the hash of its header; the header commits to the transactions through
//! `tx_root` and to the ledger after the block through `state_root`. A `Certificate` is the proof
//! that a quorum of stake precommitted a block: anyone holding the validator set can check it, and it
//! is checked as one batch of signatures under the chain's one signature rule (`crypto`), whose
//! batch form gives each signature the verdict it gets alone: a certificate verifies exactly when
//! each of its signatures verifies as a vote (`Vote::verify`), so the certificate an honest node
//! builds from the votes it accepted is accepted by every node and light client. The same form
//! carries a *polka* (prepares worth a quorum for one block in one round), the proof a
//! re-proposal shows.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Signature};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::vote::{Evidence, Vote, VoteKind};

/// What a block's hash, and so every proposal's and vote's signature, commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The genesis's chain id (a block of another chain is refused).
    pub chain_id: String,
    /// The parent's height plus one; the first block is height 1.
    pub height: Height,
    /// The parent block's hash; for block 1, the genesis hash (`Genesis::hash`).
    pub parent_hash: Hash,
    /// When the proposer built it, in Unix milliseconds: strictly after the parent's (for block
    /// 1, after `Genesis::genesis_time_ms`), and refused by a validator whose clock it is more
    /// than `max_clock_drift_ms` ahead of, unless a certificate or a polka vouches for it.
    pub timestamp: TimestampMs,
    /// The validator that built this block; it receives the proposer's share of the reward.
    pub proposer: ValidatorIndex,
    /// `tx_root(&block.txs)`: commits to every transfer and its signature.
    pub tx_root: Hash,
    /// The ledger's state root after this block's transactions and rewards.
    pub state_root: Hash,
    /// `ValidatorSet::hash` of the set that signs the next height (ADR 0026): the current set's
    /// for every block but the last of an epoch, whose header names the new set. A certificate
    /// of this block thus proves the next set to a light client.
    pub next_set_hash: Hash,
    /// `evidence_root(&block.evidence)`: commits to the double votes the block punishes.
    pub evidence_root: Hash,
}

/// A header and the transfers it commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header; its hash is the block's.
    pub header: Header,
    /// The transfers, applied in this order; at most `ConsensusParams::max_block_txs`. Only
    /// `header.tx_root` ties them to the hash: a block whose body does not match it is refused
    /// before anything is keyed by its hash.
    pub txs: Vec<SignedTransfer>,
    /// Double votes to punish (ADR 0026 point 6), strictly ascending by the offender's id, at
    /// most `MAX_BLOCK_EVIDENCE`; tied to the hash by `header.evidence_root`. Almost always
    /// empty.
    pub evidence: Vec<Evidence>,
}

/// At most this many pieces of evidence in one block: each costs two signature checks to
/// every node that checks the block, and one offence needs only one.
pub const MAX_BLOCK_EVIDENCE: usize = 8;

impl Header {
    /// The block's identity: BLAKE3 of `"timed/block"` and the header's encoding.
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/block", &crate::codec::encode(self)])
    }
}

impl Block {
    /// The header's hash. It does not read `txs`: check `tx_root` against them first.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The header's height.
    pub fn height(&self) -> Height {
        self.header.height
    }
}

/// The commitment to a block's transactions: BLAKE3 over, in block order, each one's hash and
/// signature. A transfer's hash leaves out its signature (its identity must not change with the
/// signature's bytes), so the root takes both: the block hash then fixes every byte of the block,
/// and no one can pass around a copy of a certified block with one signature swapped for a bad
/// one, under the same hash (a node that checked such a copy would refuse the block for good).
pub fn tx_root(txs: &[SignedTransfer]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/txs");
    h.update(&(txs.len() as u64).to_be_bytes());
    for tx in txs {
        h.update(&tx.hash().0);
        h.update(&tx.signature.0);
    }
    Hash(*h.finalize().as_bytes())
}

/// The commitment to a block's evidence: BLAKE3 over, in block order, each piece's encoding.
pub fn evidence_root(evidence: &[Evidence]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/evidence");
    h.update(&(evidence.len() as u64).to_be_bytes());
    for e in evidence {
        h.update(&crate::codec::encode(e));
    }
    Hash(*h.finalize().as_bytes())
}

/// One precommit signature inside a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSignature {
    /// The signer.
    pub validator: ValidatorIndex,
    /// Its vote's signature for the certificate's height, round and block (`Vote::sign`, in the
    /// domain of the certificate's kind).
    pub signature: Signature,
}

/// Votes of one kind for one block worth a quorum of stake: precommits (the finality proof,
/// `verify`) or prepares (a polka, `verify_prepares`). Which kind is not stored: the signatures
/// only verify against the domain of the kind they were signed as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The height of the votes.
    pub height: Height,
    /// The round of the votes: every signature is of this one round.
    pub round: Round,
    /// The block voted for.
    pub block_hash: Hash,
    /// Sorted by validator index, no repeats.
    pub signatures: Vec<CommitSignature>,
}

/// Why a certificate or a polka does not prove what was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    /// Of another height.
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight {
        /// The height asked about.
        expected: Height,
        /// The certificate's.
        got: Height,
    },
    /// For another block.
    #[error("certificate is for block {got:?}, expected {expected:?}")]
    WrongBlock {
        /// The block asked about.
        expected: Hash,
        /// The certificate's.
        got: Hash,
    },
    /// Signers repeated or out of order.
    #[error("certificate signers are not in strictly ascending order")]
    Unordered,
    /// A signer outside the validator set.
    #[error("certificate names validator {0}, which is not in the set")]
    UnknownValidator(ValidatorIndex),
    /// The signers' stake is not a quorum.
    #[error("certificate holds {got} of stake; a quorum needs {needed}")]
    NoQuorum {
        /// The signers' stake.
        got: Stake,
        /// `ValidatorSet::quorum`.
        needed: Stake,
    },
    /// At least one signature fails.
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
        Certificate::from_votes(VoteKind::Precommit, height, round, block_hash, precommits)
    }

    /// Builds a polka from prepares for `block_hash`, as `from_precommits` does.
    pub fn from_prepares<'a>(
        height: Height,
        round: Round,
        block_hash: Hash,
        prepares: impl IntoIterator<Item = &'a Vote>,
    ) -> Certificate {
        Certificate::from_votes(VoteKind::Prepare, height, round, block_hash, prepares)
    }

    fn from_votes<'a>(
        kind: VoteKind,
        height: Height,
        round: Round,
        block_hash: Hash,
        votes: impl IntoIterator<Item = &'a Vote>,
    ) -> Certificate {
        let mut signatures: Vec<CommitSignature> = votes
            .into_iter()
            .filter(|v| {
                v.kind == kind
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
    /// known signers worth a quorum, every signature a valid precommit (one batch, with the
    /// verdict each signature gets alone).
    pub fn verify(
        &self,
        set: &ValidatorSet,
        chain_id: &str,
        height: Height,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        self.verify_kind(VoteKind::Precommit, set, chain_id, height, block_hash)
    }

    /// Checks that this is a polka: prepares for `block_hash` at `height` worth a quorum, signed
    /// in round `self.round`.
    pub fn verify_prepares(
        &self,
        set: &ValidatorSet,
        chain_id: &str,
        height: Height,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        self.verify_kind(VoteKind::Prepare, set, chain_id, height, block_hash)
    }

    fn verify_kind(
        &self,
        kind: VoteKind,
        set: &ValidatorSet,
        chain_id: &str,
        height: Height,
        block_hash: &Hash,
    ) -> Result<(), CertificateError> {
        self.precheck(set, height, block_hash)?;
        let messages = self.signing_messages(kind, chain_id);
        let items = self.signature_items(set, &messages);
        // The one rule's batch form: the same verdict as `Vote::verify` on each signature.
        crypto::verify_batch(&items).map_err(|_| CertificateError::BadSignature)
    }

    /// Every check of `verify_kind` but the signatures: height, block, known signers in order,
    /// a quorum of stake.
    fn precheck(
        &self,
        set: &ValidatorSet,
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
        Ok(())
    }

    /// The message each signature signs, in the certificate's order.
    fn signing_messages(&self, kind: VoteKind, chain_id: &str) -> Vec<Vec<u8>> {
        self.signatures
            .iter()
            .map(|s| {
                crypto::signing_message(
                    kind.domain(),
                    chain_id,
                    &Vote::signed_fields(
                        self.height,
                        self.round,
                        Some(self.block_hash),
                        s.validator,
                    ),
                )
            })
            .collect()
    }

    /// (message, signature, key) of each signature, once `precheck` found every signer in `set`.
    fn signature_items<'m>(
        &self,
        set: &ValidatorSet,
        messages: &'m [Vec<u8>],
    ) -> Vec<(&'m [u8], Signature, ed25519_dalek::VerifyingKey)> {
        self.signatures
            .iter()
            .zip(messages)
            .filter_map(|(s, m)| {
                let member = set.get(s.validator);
                debug_assert!(member.is_some(), "checked by signed_stake");
                Some((m.as_slice(), s.signature, member?.verifying_key))
            })
            .collect()
    }
}

/// One certificate of a batch (`verify_certificates`): what `Certificate::verify` is given.
#[derive(Clone, Copy, Debug)]
pub struct CertificateCheck<'a> {
    /// The certificate.
    pub certificate: &'a Certificate,
    /// The set of its height.
    pub set: &'a ValidatorSet,
    /// The height it must prove.
    pub height: Height,
    /// The block it must prove final.
    pub block_hash: &'a Hash,
}

/// Checks certificates (those of consecutive blocks, as a node catching up or syncing state
/// receives them) as `Certificate::verify` checks each, with all their signatures in one batch:
/// a run of blocks costs one batch verification instead of one per block, and a large batch
/// costs less per signature than a small one. The verdict is each certificate's own: when the
/// batch fails, each is checked alone and the first that fails is returned with its position.
pub fn verify_certificates(
    chain_id: &str,
    checks: &[CertificateCheck<'_>],
) -> Result<(), (usize, CertificateError)> {
    for (i, c) in checks.iter().enumerate() {
        c.certificate
            .precheck(c.set, c.height, c.block_hash)
            .map_err(|e| (i, e))?;
    }
    let messages: Vec<Vec<Vec<u8>>> = checks
        .iter()
        .map(|c| {
            c.certificate
                .signing_messages(VoteKind::Precommit, chain_id)
        })
        .collect();
    let items: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = checks
        .iter()
        .zip(&messages)
        .flat_map(|(c, m)| c.certificate.signature_items(c.set, m))
        .collect();
    if crypto::verify_batch(&items).is_ok() {
        return Ok(());
    }
    for (i, c) in checks.iter().enumerate() {
        c.certificate
            .verify(c.set, chain_id, c.height, c.block_hash)
            .map_err(|e| (i, e))?;
    }
    // The batch's verdict is each signature's own (the one rule): some certificate failed above.
    Err((0, CertificateError::BadSignature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::types::Stake;

    const CHAIN: &str = "cert-test";

    fn setup(stakes: &[u64]) -> (ValidatorSet, Vec<Keypair>) {
        let (keys, members) = crate::validators::insecure_dev_validators(stakes);
        (ValidatorSet::new(&members).unwrap(), keys)
    }

    fn precommits(keys: &[Keypair], signers: &[u16], block: Hash) -> Vec<Vote> {
        signers
            .iter()
            .map(|&i| {
                Vote::sign(
                    &keys[usize::from(i)],
                    CHAIN,
                    Height(7),
                    Round(1),
                    VoteKind::Precommit,
                    Some(block),
                    ValidatorIndex(i),
                )
            })
            .collect()
    }

    /// Certificates of several heights checked in one batch: all good passes; each fault is
    /// named at its position, whether the precheck finds it (a short certificate, another
    /// height) or only the signatures do (one bit of one signature).
    #[test]
    fn certificates_in_one_batch_name_the_first_that_fails() {
        let (set, keys) = setup(&[1, 1, 1, 1]);
        let chain: Vec<(Height, Hash, Certificate)> = (1..=6u64)
            .map(|h| {
                let hash = Hash::of(&[b"block", &h.to_be_bytes()]);
                let votes: Vec<Vote> = (0..3u16)
                    .map(|i| {
                        Vote::sign(
                            &keys[usize::from(i)],
                            CHAIN,
                            Height(h),
                            Round(0),
                            VoteKind::Precommit,
                            Some(hash),
                            ValidatorIndex(i),
                        )
                    })
                    .collect();
                let cert = Certificate::from_precommits(Height(h), Round(0), hash, &votes);
                (Height(h), hash, cert)
            })
            .collect();
        let run_on = |chain_id: &str, chain: &[(Height, Hash, Certificate)]| {
            let list: Vec<CertificateCheck<'_>> = chain
                .iter()
                .map(|(h, hash, c)| CertificateCheck {
                    certificate: c,
                    set: &set,
                    height: *h,
                    block_hash: hash,
                })
                .collect();
            verify_certificates(chain_id, &list)
        };
        let run = |chain: &[(Height, Hash, Certificate)]| run_on(CHAIN, chain);
        assert_eq!(run(&chain), Ok(()));
        let mut forged = chain.clone();
        forged[3].2.signatures[1].signature.0[7] ^= 1;
        assert_eq!(run(&forged), Err((3, CertificateError::BadSignature)));
        let mut short = chain.clone();
        short[4].2.signatures.truncate(2);
        assert!(matches!(
            run(&short),
            Err((4, CertificateError::NoQuorum { .. }))
        ));
        let mut moved = chain.clone();
        moved[2].0 = Height(99);
        assert!(matches!(
            run(&moved),
            Err((2, CertificateError::WrongHeight { .. }))
        ));
        // Another chain's signatures.
        assert_eq!(
            run_on("another-chain", &chain),
            Err((0, CertificateError::BadSignature))
        );
    }

    #[test]
    fn the_tx_root_covers_each_signature() {
        let alice = Keypair::insecure_from_name("alice");
        let tx = crate::tx::Transfer {
            from: alice.public_key(),
            to: Keypair::insecure_from_name("bob").public_key(),
            amount: crate::types::Amount(1),
            fee: crate::types::Amount(1),
            nonce: 0,
            op: Default::default(),
        }
        .sign(&alice, CHAIN);
        let mut other = tx.clone();
        other.signature.0[10] ^= 1;
        assert_eq!(tx.hash(), other.hash());
        let one = std::slice::from_ref(&tx);
        assert_ne!(tx_root(one), tx_root(&[other]));
        assert_ne!(tx_root(one), tx_root(&[tx.clone(), tx.clone()]));
    }

    #[test]
    fn a_quorum_of_precommits_verifies_and_less_does_not() {
        let (set, keys) = setup(&[100, 100, 100, 100]);
        let block = Hash([5; 32]);
        let votes = precommits(&keys, &[3, 0, 2], block);
        let cert = Certificate::from_precommits(Height(7), Round(1), block, &votes);
        assert_eq!(
            cert.signatures
                .iter()
                .map(|s| s.validator.0)
                .collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        assert_eq!(cert.verify(&set, CHAIN, Height(7), &block), Ok(()));
        let short = Certificate::from_precommits(Height(7), Round(1), block, &votes[..2]);
        assert_eq!(
            short.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::NoQuorum {
                got: Stake(200),
                needed: Stake(267)
            })
        );
    }

    #[test]
    fn forged_duplicated_or_misplaced_certificates_never_verify() {
        let (set, keys) = setup(&[100, 100, 100]);
        let block = Hash([5; 32]);
        let good = Certificate::from_precommits(
            Height(7),
            Round(1),
            block,
            &precommits(&keys, &[0, 1], block),
        );
        assert!(good.verify(&set, CHAIN, Height(7), &block).is_ok());

        let mut forged = good.clone();
        forged.signatures[1].signature.0[10] ^= 0x40;
        assert_eq!(
            forged.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::BadSignature)
        );

        // The same signer twice does not count twice.
        let mut doubled = good.clone();
        doubled.signatures[1] = doubled.signatures[0];
        assert_eq!(
            doubled.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::Unordered)
        );

        let mut unknown = good.clone();
        unknown.signatures[1].validator = ValidatorIndex(9);
        assert_eq!(
            unknown.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::UnknownValidator(ValidatorIndex(9)))
        );

        assert!(matches!(
            good.verify(&set, CHAIN, Height(8), &block),
            Err(CertificateError::WrongHeight { .. })
        ));
        assert!(matches!(
            good.verify(&set, CHAIN, Height(7), &Hash([6; 32])),
            Err(CertificateError::WrongBlock { .. })
        ));
        // Same signatures claimed for another round: the signed fields differ.
        let mut other_round = good.clone();
        other_round.round = Round(2);
        assert_eq!(
            other_round.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::BadSignature)
        );
        assert_eq!(
            good.verify(&set, "another-chain", Height(7), &block),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn prepares_and_other_blocks_do_not_enter_a_certificate() {
        let (_, keys) = setup(&[100, 100, 100]);
        let block = Hash([5; 32]);
        let mut votes = precommits(&keys, &[0], block);
        votes.push(Vote::sign(
            &keys[1],
            CHAIN,
            Height(7),
            Round(1),
            VoteKind::Prepare,
            Some(block),
            ValidatorIndex(1),
        ));
        votes.extend(precommits(&keys, &[2], Hash([6; 32])));
        let cert = Certificate::from_precommits(Height(7), Round(1), block, &votes);
        assert_eq!(cert.signatures.len(), 1);
    }

    #[test]
    fn a_polka_verifies_only_as_prepares_and_a_certificate_only_as_precommits() {
        let (set, keys) = setup(&[100, 100, 100]);
        let block = Hash([5; 32]);
        let prepares: Vec<Vote> = (0..3u16)
            .map(|i| {
                Vote::sign(
                    &keys[i as usize],
                    CHAIN,
                    Height(7),
                    Round(1),
                    VoteKind::Prepare,
                    Some(block),
                    ValidatorIndex(i),
                )
            })
            .collect();
        let polka = Certificate::from_prepares(Height(7), Round(1), block, &prepares);
        assert_eq!(polka.signatures.len(), 3);
        assert_eq!(
            polka.verify_prepares(&set, CHAIN, Height(7), &block),
            Ok(())
        );
        // Prepare signatures are no finality proof, and precommits are no polka.
        assert_eq!(
            polka.verify(&set, CHAIN, Height(7), &block),
            Err(CertificateError::BadSignature)
        );
        let cert = Certificate::from_precommits(
            Height(7),
            Round(1),
            block,
            &precommits(&keys, &[0, 1, 2], block),
        );
        assert_eq!(
            cert.verify_prepares(&set, CHAIN, Height(7), &block),
            Err(CertificateError::BadSignature)
        );
        let short = Certificate::from_prepares(Height(7), Round(1), block, &prepares[..1]);
        assert!(matches!(
            short.verify_prepares(&set, CHAIN, Height(7), &block),
            Err(CertificateError::NoQuorum { .. })
        ));
    }

    #[test]
    fn the_block_hash_commits_to_every_header_field() {
        let header = Header {
            chain_id: CHAIN.into(),
            height: Height(1),
            parent_hash: Hash::ZERO,
            timestamp: TimestampMs(1),
            proposer: ValidatorIndex(0),
            tx_root: tx_root(&[]),
            state_root: Hash::ZERO,
            next_set_hash: Hash::ZERO,
            evidence_root: crate::block::evidence_root(&[]),
        };
        let base = header.hash();
        let mut changed = header.clone();
        changed.timestamp = TimestampMs(2);
        assert_ne!(changed.hash(), base);
        let mut changed = header.clone();
        changed.state_root = Hash([1; 32]);
        assert_ne!(changed.hash(), base);
        let mut changed = header.clone();
        changed.next_set_hash = Hash([1; 32]);
        assert_ne!(changed.hash(), base);
        let mut changed = header.clone();
        changed.evidence_root = Hash([1; 32]);
        assert_ne!(changed.hash(), base);
        let mut changed = header;
        changed.proposer = ValidatorIndex(1);
        assert_ne!(changed.hash(), base);
    }
}
