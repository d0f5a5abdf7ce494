//! Evidence acted on (ADR 0026 point 6): which double votes a block may punish, and what the
//! punishment does to the staking state — a part of the bond and of the queued unbonding burnt,
//! the validator jailed (never elected again) and taken out of the next set.
//!
//! Rules for one piece of evidence in a block at height `h` (`Staking::slash`):
//! - the two votes are a double vote: one validator, height, round and kind, two values
//!   (`Evidence::conflicts`; two signatures of one value are not, anyone can re-encode one);
//! - their height is below `h` and not more than `unbonding_blocks` below it: older stake may
//!   have left, and the window is what keeps unbonded stake slashable;
//! - the validator is registered and not jailed: one slash per validator, ever;
//! - both signatures verify under its registered key with the chain's one rule. Membership of
//!   the set of that height is not asked: a registered key that signed two values misbehaved,
//!   and the registry alone says whose key it is.
//!
//! Unlike a staking operation (which a block may carry and have refused), evidence that breaks a
//! rule makes the whole block invalid: only the proposer chooses it, from what it checked itself,
//! so an honest proposer never includes any that fails, and a Byzantine one cannot slash by it.

use std::sync::Arc;

use super::{Staking, Unbonding};
use crate::types::{Amount, Height, ValidatorIndex};
use crate::validators::{Member, ValidatorSet};
use crate::vote::Evidence;

/// Why a block's evidence is refused (the block is then invalid).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The two votes are not of one validator, height, round and kind for two values.
    #[error(
        "evidence against validator {0} is not a double vote (one validator, height, round and kind, two values)"
    )]
    NotConflicting(ValidatorIndex),
    /// Of a height not below the block's.
    #[error("evidence of height {evidence} is not below the block's height {block}")]
    NotBefore {
        /// The votes' height.
        evidence: Height,
        /// The block's.
        block: Height,
    },
    /// Of a height more than `unbonding_blocks` below the block's.
    #[error(
        "evidence of height {evidence} is too old: a block at this height takes evidence from height {oldest}"
    )]
    TooOld {
        /// The votes' height.
        evidence: Height,
        /// The oldest height still punished.
        oldest: Height,
    },
    /// Against an id nobody registered.
    #[error("evidence names validator {0}, which is not registered")]
    NotRegistered(ValidatorIndex),
    /// Against a validator already jailed (slashed once before, or earlier in this block).
    #[error("validator {0} is already jailed: it is slashed once")]
    AlreadyJailed(ValidatorIndex),
    /// A signature fails under the registered key.
    #[error(
        "a signature of the evidence against validator {0} does not verify under its registered key"
    )]
    BadSignature(ValidatorIndex),
    /// The block's evidence is not strictly ascending by offender, or is too long.
    #[error("a block carries at most {max} pieces of evidence, strictly ascending by validator")]
    BadList {
        /// `block::MAX_BLOCK_EVIDENCE`.
        max: usize,
    },
    /// The ledger has no staking state (a ledger of accounts alone).
    #[error("this ledger has no validator registry to act on evidence")]
    NoRegistry,
}

impl EvidenceError {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EvidenceError::NotConflicting(_) => "not_conflicting",
            EvidenceError::NotBefore { .. } => "not_before",
            EvidenceError::TooOld { .. } => "too_old",
            EvidenceError::NotRegistered(_) => "not_registered",
            EvidenceError::AlreadyJailed(_) => "already_jailed",
            EvidenceError::BadSignature(_) => "bad_signature",
            EvidenceError::BadList { .. } => "bad_list",
            EvidenceError::NoRegistry => "no_registry",
        }
    }
}

/// Whether a block's evidence list has the shape the rules ask: at most
/// `block::MAX_BLOCK_EVIDENCE`, strictly ascending by offender (so no validator twice).
pub fn check_list(evidence: &[Evidence]) -> Result<(), EvidenceError> {
    let max = crate::block::MAX_BLOCK_EVIDENCE;
    if evidence.len() > max
        || evidence
            .windows(2)
            .any(|w| w[0].first.validator >= w[1].first.validator)
    {
        return Err(EvidenceError::BadList { max });
    }
    Ok(())
}

impl Staking {
    /// Whether `e` may be punished by a block at `height` on this state (the module's rules),
    /// signatures included.
    pub fn check_evidence(
        &self,
        e: &Evidence,
        height: Height,
        chain_id: &str,
    ) -> Result<(), EvidenceError> {
        let id = e.first.validator;
        if !e.conflicts() {
            return Err(EvidenceError::NotConflicting(id));
        }
        let at = e.first.height;
        if at >= height {
            return Err(EvidenceError::NotBefore {
                evidence: at,
                block: height,
            });
        }
        let oldest = Height(height.0.saturating_sub(self.params.unbonding_blocks));
        if at < oldest {
            return Err(EvidenceError::TooOld {
                evidence: at,
                oldest,
            });
        }
        let r = self
            .registration(id)
            .ok_or(EvidenceError::NotRegistered(id))?;
        if r.jailed {
            return Err(EvidenceError::AlreadyJailed(id));
        }
        e.verify_with(&r.key, chain_id)
            .map_err(|_| EvidenceError::BadSignature(id))
    }

    /// Checks `e` (`check_evidence`) and punishes its validator: burns `slash_permille`‰ of its
    /// bond and of each of its queued unbondings, jails it, and takes it out of the next set
    /// (unless it is that set's only member: a chain with no validators could never sign again).
    /// The current set keeps it until the epoch ends: the set of a height never changes once
    /// the height is known. Returns the amount burnt.
    pub fn slash(
        &mut self,
        e: &Evidence,
        height: Height,
        chain_id: &str,
    ) -> Result<Amount, EvidenceError> {
        self.check_evidence(e, height, chain_id)?;
        self.root = std::sync::OnceLock::new();
        let id = e.first.validator;
        let permille = u128::from(self.params.slash_permille.min(1000));
        let cut = |amount: Amount| Amount((u128::from(amount.0) * permille / 1000) as u64);
        let mut burnt: u128 = 0;
        let r = &mut self.registry[id.as_usize()];
        let from_bond = cut(r.bond);
        r.bond = Amount(r.bond.0 - from_bond.0);
        r.jailed = true;
        burnt += u128::from(from_bond.0);
        for u in self.unbonding.iter_mut().filter(|u| u.validator == id) {
            let c = cut(u.amount);
            u.amount = Amount(u.amount.0 - c.0);
            burnt += u128::from(c.0);
        }
        self.unbonding.retain(|u: &Unbonding| u.amount.0 > 0);
        if self.next.get(id).is_some() {
            let rest: Vec<Member> = self
                .next
                .members()
                .into_iter()
                .filter(|m| m.id != id)
                .collect();
            if let Ok(set) = ValidatorSet::from_members(rest) {
                self.next = Arc::new(set);
            }
        }
        // At most a bond and the queue, each of which fits the supply's 64 bits.
        Ok(Amount(burnt.min(u128::from(u64::MAX)) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::ledger::{Ledger, TxError};
    use crate::tx::{Op, SignedTransfer, Transfer};
    use crate::types::{Hash, Round, TimestampMs};
    use crate::validators::{ConsensusParams, Genesis, insecure_dev_validators};
    use crate::vote::{Vote, VoteKind};

    const CHAIN: &str = "slash-test";

    /// Three genesis validators of 100, epochs of 2, unbonding after 4, min bond 50, 5% slash.
    fn setup() -> (Genesis, Vec<Keypair>) {
        let (keys, validators) = insecure_dev_validators(&[100, 100, 100]);
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: ConsensusParams {
                epoch_blocks: 2,
                unbonding_blocks: 4,
                min_bond: Amount(50),
                slash_permille: 50,
                ..ConsensusParams::default()
            },
        };
        (genesis, keys)
    }

    fn vote(key: &Keypair, id: u16, height: u64, block: Option<Hash>) -> Vote {
        Vote::sign(
            key,
            CHAIN,
            Height(height),
            Round(0),
            VoteKind::Precommit,
            block,
            ValidatorIndex(id),
        )
    }

    fn double_vote(key: &Keypair, id: u16, height: u64) -> Evidence {
        Evidence {
            first: vote(key, id, height, Some(Hash([1; 32]))),
            second: vote(key, id, height, None),
        }
    }

    fn unbond(key: &Keypair, amount: u64, nonce: u64) -> SignedTransfer {
        Transfer {
            from: key.public_key(),
            to: key.public_key(),
            amount: Amount(amount),
            fee: Amount(0),
            nonce,
            op: Op::Unbond,
        }
        .sign(key, CHAIN)
    }

    fn block(
        ledger: &mut Ledger,
        height: u64,
        txs: &[SignedTransfer],
        evidence: &[Evidence],
    ) -> Result<crate::ledger::BlockOutcome, TxError> {
        let set = ledger.staking().unwrap().current().clone();
        ledger.apply_block(
            CHAIN,
            Height(height),
            ValidatorIndex(0),
            &set,
            txs,
            evidence,
        )
    }

    fn ids(set: &ValidatorSet) -> Vec<u16> {
        set.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn a_double_vote_burns_its_share_of_bond_and_queue_jails_and_leaves_the_next_set() {
        let (genesis, keys) = setup();
        let mut ledger = Ledger::from_genesis(&genesis);
        let supply = ledger.total_supply();
        // Height 1: validator 2 unbonds 50 (its fee is 0), which waits in the queue.
        let out = block(&mut ledger, 1, &[unbond(&keys[2], 50, 0)], &[]).unwrap();
        assert!(out.staking_refused.is_empty());
        // Height 2 punishes its double vote of height 1.
        let out = block(&mut ledger, 2, &[], &[double_vote(&keys[2], 2, 1)]).unwrap();
        // 5% of the bond left (50 → 2 burnt, rounded down) and of the queued 50 (2 burnt).
        assert_eq!(out.slashed, Amount(4));
        assert_eq!(out.jailed, vec![ValidatorIndex(2)]);
        let subsidies = u128::from(crate::ledger::subsidy(Height(1)).0)
            + u128::from(crate::ledger::subsidy(Height(2)).0);
        assert_eq!(ledger.total_supply(), supply + subsidies - 4);
        let staking = ledger.staking().unwrap();
        let r = staking.registration(ValidatorIndex(2)).unwrap();
        assert!(r.jailed);
        assert_eq!(r.bond, Amount(48));
        assert_eq!(staking.unbonding()[0].amount, Amount(48));
        // Height 2 ended epoch 0: the next set (epoch 2) was elected without it, and the set
        // of epoch 1 it was in at the time of the slash lost it too.
        assert_eq!(ids(staking.current()), vec![0, 1]);
        assert_eq!(ids(staking.next()), vec![0, 1]);
        // Its owner may still unbond what is left (below the minimum bond: jailed), not bond.
        let out = block(&mut ledger, 3, &[unbond(&keys[2], 48, 1)], &[]).unwrap();
        assert!(out.staking_refused.is_empty());
        let rebond = Transfer {
            from: keys[2].public_key(),
            to: keys[2].public_key(),
            amount: Amount(60),
            fee: Amount(0),
            nonce: 2,
            op: Op::Bond,
        }
        .sign(&keys[2], CHAIN);
        let out = block(&mut ledger, 4, &[rebond], &[]).unwrap();
        assert_eq!(
            out.staking_refused.len(),
            1,
            "a jailed validator cannot bond"
        );
        assert!(!ids(ledger.staking().unwrap().next()).contains(&2));
    }

    #[test]
    fn evidence_that_breaks_a_rule_fails_the_block_and_changes_nothing() {
        let (genesis, keys) = setup();
        let mut ledger = Ledger::from_genesis(&genesis);
        for h in 1..=9 {
            block(&mut ledger, h, &[], &[]).unwrap();
        }
        let mut same_value = double_vote(&keys[1], 1, 8);
        same_value.second = same_value.first.clone();
        let mut other_round = double_vote(&keys[1], 1, 8);
        other_round.second = Vote::sign(
            &keys[1],
            CHAIN,
            Height(8),
            Round(1),
            VoteKind::Precommit,
            None,
            ValidatorIndex(1),
        );
        let mut forged = double_vote(&keys[1], 1, 8);
        forged.second.signature.0[0] ^= 1;
        let cases: Vec<(Vec<Evidence>, EvidenceError)> = vec![
            (
                vec![same_value],
                EvidenceError::NotConflicting(ValidatorIndex(1)),
            ),
            (
                vec![other_round],
                EvidenceError::NotConflicting(ValidatorIndex(1)),
            ),
            (
                vec![double_vote(&keys[1], 1, 10)],
                EvidenceError::NotBefore {
                    evidence: Height(10),
                    block: Height(10),
                },
            ),
            (
                vec![double_vote(&keys[1], 1, 5)],
                EvidenceError::TooOld {
                    evidence: Height(5),
                    oldest: Height(6),
                },
            ),
            (vec![forged], EvidenceError::BadSignature(ValidatorIndex(1))),
            (
                // Validator 0's key signing as validator 1: not its registered key.
                vec![double_vote(&keys[0], 1, 8)],
                EvidenceError::BadSignature(ValidatorIndex(1)),
            ),
            (
                vec![double_vote(&keys[0], 7, 8)],
                EvidenceError::NotRegistered(ValidatorIndex(7)),
            ),
            (
                vec![double_vote(&keys[1], 1, 8), double_vote(&keys[1], 1, 9)],
                EvidenceError::BadList { max: 8 },
            ),
            (
                vec![double_vote(&keys[1], 1, 8), double_vote(&keys[0], 0, 8)],
                EvidenceError::BadList { max: 8 },
            ),
        ];
        for (evidence, expected) in cases {
            let before = ledger.clone();
            assert_eq!(
                block(&mut ledger, 10, &[], &evidence),
                Err(TxError::Evidence(expected.clone())),
                "{expected}"
            );
            assert_eq!(ledger, before, "{expected}: the ledger is unchanged");
        }
        // Slashed once, a validator is not slashed again.
        block(&mut ledger, 10, &[], &[double_vote(&keys[1], 1, 8)]).unwrap();
        assert_eq!(
            block(&mut ledger, 11, &[], &[double_vote(&keys[1], 1, 9)]),
            Err(TxError::Evidence(EvidenceError::AlreadyJailed(
                ValidatorIndex(1)
            )))
        );
    }

    #[test]
    fn the_only_member_of_the_next_set_keeps_its_seat_when_slashed() {
        let (keys, validators) = insecure_dev_validators(&[100]);
        let (genesis, _) = setup();
        let genesis = Genesis {
            validators,
            ..genesis
        };
        let mut ledger = Ledger::from_genesis(&genesis);
        block(&mut ledger, 1, &[], &[]).unwrap();
        let out = block(&mut ledger, 2, &[], &[double_vote(&keys[0], 0, 1)]).unwrap();
        assert_eq!(out.slashed, Amount(5));
        let staking = ledger.staking().unwrap();
        assert!(staking.registration(ValidatorIndex(0)).unwrap().jailed);
        assert_eq!(ids(staking.next()), vec![0], "a chain keeps a validator");
    }
}
