//! The rules a genesis must pass (`Genesis::validate`), which build its `ValidatorSet`. One of them
//! needs the wire layout of the largest proposal the genesis allows, so they sit here, above the
//! blocks and messages, while `Genesis` itself is in `validators` below them.

use crate::block::{Block, Certificate, CommitSignature, Header, MAX_BLOCK_EVIDENCE};
use crate::crypto::{PublicKey, Signature};
use crate::message::{Message, Proposal};
use crate::tx::{Op, SignedTransfer, Transfer};
use crate::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};
use crate::validators::{Genesis, GenesisError, MAX_GENESIS_SUPPLY, MAX_VALIDATORS, ValidatorSet};
use crate::vote::{Evidence, Vote, VoteKind};

impl Genesis {
    /// Checks every rule and builds the validator set.
    pub fn validate(&self) -> Result<ValidatorSet, GenesisError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(GenesisError::BadChainId);
        }
        if self.params.propose_timeout.base_ms == 0 {
            return Err(GenesisError::ZeroProposeTimeout);
        }
        let set = ValidatorSet::new(&self.validators)?;
        let p = &self.params;
        if p.epoch_blocks == 0 {
            return Err(GenesisError::ZeroEpoch);
        }
        if p.unbonding_blocks < p.epoch_blocks.saturating_mul(2) {
            return Err(GenesisError::UnbondingTooShort {
                unbonding: p.unbonding_blocks,
                epoch: p.epoch_blocks,
            });
        }
        if p.max_validators == 0
            || p.max_validators as usize > MAX_VALIDATORS
            || (p.max_validators as usize) < set.len()
        {
            return Err(GenesisError::BadMaxValidators {
                max: p.max_validators,
                genesis: set.len(),
            });
        }
        if p.slash_permille > 1000 {
            return Err(GenesisError::BadSlash(p.slash_permille));
        }
        // Sorted, a duplicate is a neighbour: a few times faster than a map of a million.
        let mut accounts: Vec<&PublicKey> = self.balances.iter().map(|b| &b.account).collect();
        accounts.sort_unstable();
        if let Some(twice) = accounts.windows(2).find(|w| w[0] == w[1]) {
            return Err(GenesisError::DuplicateBalance(*twice[0]));
        }
        let mut total: u64 = 0;
        for b in &self.balances {
            total = total
                .checked_add(b.amount.0)
                .ok_or(GenesisError::BalanceOverflow)?;
        }
        if total > MAX_GENESIS_SUPPLY {
            return Err(GenesisError::BalanceOverflow);
        }
        // Any later set may hold up to `max_validators`: its polkas are the widest.
        let (fixed, per_tx) = self.proposal_size_bound(p.max_validators as usize);
        let limit = crate::codec::MAX_MESSAGE_BYTES;
        let bytes = fixed.saturating_add(per_tx.saturating_mul(self.params.max_block_txs as usize));
        if bytes > limit {
            return Err(GenesisError::BlockTooLarge {
                max_block_txs: self.params.max_block_txs,
                bytes,
                limit,
                fits: (limit.saturating_sub(fixed) / per_tx) as u64,
            });
        }
        Ok(set)
    }

    /// The most bytes a proposal of this chain can take on the wire: `fixed + per_tx · txs`.
    /// `fixed` is a proposal of a block with no transfers, every number at its widest, as much
    /// evidence as a block may carry and a polka signed by every validator, in its envelope, plus room for the transfer list's length;
    /// `per_tx` is the widest encoded transfer (its fields have fixed sizes). A `Decision` (the
    /// block and a certificate) is no larger. Issue 12, defect 11: `max_block_txs` is refused
    /// where this passes `codec::MAX_MESSAGE_BYTES`, so no valid block is too large to send.
    pub fn proposal_size_bound(&self, validators: usize) -> (usize, usize) {
        let widest = PublicKey([0xff; 32]);
        let tx = SignedTransfer {
            transfer: Transfer {
                from: widest,
                to: widest,
                amount: Amount(u64::MAX),
                fee: Amount(u64::MAX),
                nonce: u64::MAX,
                op: Op::Register {
                    name: "x".repeat(crate::tx::MAX_NAME_BYTES),
                    address: "x".repeat(crate::tx::MAX_ADDRESS_BYTES),
                },
            },
            signature: Signature([0xff; 64]),
        };
        let per_tx = crate::codec::encode(&tx).len();
        let proposal = Proposal {
            height: Height(u64::MAX),
            round: Round(u32::MAX),
            valid_round: Some(Round(u32::MAX)),
            block: Block {
                header: Header {
                    chain_id: self.chain_id.clone(),
                    height: Height(u64::MAX),
                    parent_hash: Hash([0xff; 32]),
                    timestamp: TimestampMs(u64::MAX),
                    proposer: ValidatorIndex(u16::MAX),
                    tx_root: Hash([0xff; 32]),
                    state_root: Hash([0xff; 32]),
                    next_set_hash: Hash([0xff; 32]),
                    evidence_root: Hash([0xff; 32]),
                },
                txs: Vec::new(),
                evidence: vec![widest_evidence(); MAX_BLOCK_EVIDENCE],
            },
            proposer: ValidatorIndex(u16::MAX),
            signature: Signature([0xff; 64]),
            polka: Some(Certificate {
                height: Height(u64::MAX),
                round: Round(u32::MAX),
                block_hash: Hash([0xff; 32]),
                signatures: vec![
                    CommitSignature {
                        validator: ValidatorIndex(u16::MAX),
                        signature: Signature([0xff; 64]),
                    };
                    validators
                ],
            }),
        };
        // + 8: the list's length grows from one byte to at most nine.
        let fixed = crate::codec::encode_message(&Message::Proposal(proposal)).len() + 8;
        (fixed, per_tx)
    }
}

/// A piece of evidence with every field at its widest.
fn widest_evidence() -> Evidence {
    let vote = Vote {
        height: Height(u64::MAX),
        round: Round(u32::MAX),
        kind: VoteKind::Precommit,
        block: Some(Hash([0xff; 32])),
        validator: ValidatorIndex(u16::MAX),
        signature: Signature([0xff; 64]),
    };
    Evidence {
        first: vote.clone(),
        second: vote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoError;
    use crate::validators::{
        ConsensusParams, GenesisBalance, GenesisValidator, insecure_dev_validators,
    };

    fn members(stakes: &[u64]) -> Vec<GenesisValidator> {
        insecure_dev_validators(stakes).1
    }

    #[test]
    fn genesis_rules_are_enforced() {
        assert_eq!(
            ValidatorSet::new(&[]).unwrap_err(),
            GenesisError::NoValidators
        );
        assert!(matches!(
            ValidatorSet::new(&members(&[100, 0])),
            Err(GenesisError::ZeroStake { .. })
        ));
        let mut dup = members(&[1, 2]);
        dup[1].public_key = dup[0].public_key;
        assert!(matches!(
            ValidatorSet::new(&dup),
            Err(GenesisError::DuplicateKey { .. })
        ));
        assert_eq!(
            ValidatorSet::new(&members(&[u64::MAX, 1])).unwrap_err(),
            GenesisError::StakeOverflow
        );
        let mut weak = members(&[1]);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        weak[0].public_key = PublicKey(identity);
        assert!(matches!(
            ValidatorSet::new(&weak),
            Err(GenesisError::BadKey {
                error: CryptoError::WeakKey,
                ..
            })
        ));
    }

    #[test]
    fn genesis_money_leaves_headroom_for_rewards() {
        let set_members = members(&[100]);
        let key = set_members[0].public_key;
        let genesis = |amount: u64| Genesis {
            chain_id: "c".into(),
            genesis_time_ms: TimestampMs(0),
            validators: set_members.clone(),
            balances: vec![GenesisBalance {
                account: key,
                amount: Amount(amount),
            }],
            params: ConsensusParams::default(),
        };
        assert!(genesis(MAX_GENESIS_SUPPLY).validate().is_ok());
        assert_eq!(
            genesis(MAX_GENESIS_SUPPLY + 1).validate().unwrap_err(),
            GenesisError::BalanceOverflow
        );
    }

    /// The schedule from its definition: every point of two periods, sorted.
    #[test]
    fn a_genesis_whose_largest_block_cannot_be_sent_is_refused() {
        let (_, validators) = insecure_dev_validators(&[100; 4]);
        let mut genesis = Genesis {
            chain_id: "size".into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: ConsensusParams::default(),
        };
        assert!(genesis.validate().is_ok(), "the default fits");
        // Sized for the largest set the chain may elect, not the genesis's four.
        let (fixed, per_tx) = genesis.proposal_size_bound(genesis.params.max_validators as usize);
        let fits = (crate::codec::MAX_MESSAGE_BYTES - fixed) / per_tx;
        genesis.params.max_block_txs = fits as u32;
        assert!(genesis.validate().is_ok());
        genesis.params.max_block_txs = fits as u32 + 1;
        let err = genesis.validate().unwrap_err();
        assert!(
            matches!(err, GenesisError::BlockTooLarge { fits: f, .. } if f == fits as u64),
            "{err}"
        );
        genesis.params.max_block_txs = u32::MAX;
        assert!(genesis.validate().is_err());
    }

    #[test]
    fn the_largest_block_a_genesis_allows_fits_in_a_message() {
        // The bound holds for a real proposal of the widest transfers, with a full polka.
        use crate::block::{Block, Certificate, Header};
        use crate::message::{Message, Proposal, Vote, VoteKind};
        use crate::tx::Transfer;
        let (keys, validators) = insecure_dev_validators(&[100; 7]);
        let genesis = Genesis {
            chain_id: "size".into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: ConsensusParams {
                max_block_txs: 500,
                ..ConsensusParams::default()
            },
        };
        let (fixed, per_tx) = genesis.proposal_size_bound(7);
        let tx = Transfer {
            from: keys[0].public_key(),
            to: keys[1].public_key(),
            amount: Amount(u64::MAX),
            fee: Amount(u64::MAX),
            nonce: u64::MAX,
            op: Default::default(),
        }
        .sign(&keys[0], "size");
        let block = Block {
            header: Header {
                chain_id: "size".into(),
                height: Height(u64::MAX),
                parent_hash: Hash::ZERO,
                timestamp: TimestampMs(u64::MAX),
                proposer: ValidatorIndex(6),
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                next_set_hash: Hash::ZERO,
                evidence_root: crate::block::evidence_root(&[]),
            },
            txs: vec![tx; 500],
            evidence: Vec::new(),
        };
        let votes: Vec<Vote> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Vote::sign(
                    k,
                    "size",
                    Height(u64::MAX),
                    Round(u32::MAX - 1),
                    VoteKind::Prepare,
                    Some(block.hash()),
                    ValidatorIndex(i as u16),
                )
            })
            .collect();
        let polka =
            Certificate::from_prepares(Height(u64::MAX), Round(u32::MAX - 1), block.hash(), &votes);
        let p = Proposal::sign(
            &keys[6],
            "size",
            Round(u32::MAX),
            Some(Round(u32::MAX - 1)),
            block,
            ValidatorIndex(6),
        )
        .with_polka(polka);
        let bytes = crate::codec::encode_message(&Message::Proposal(p)).len();
        assert!(
            bytes <= fixed + 500 * per_tx,
            "{bytes} > {fixed} + 500 × {per_tx}"
        );
    }
}
