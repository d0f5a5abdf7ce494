//! The genesis (chain id, validators, balances, consensus parameters), its validation, and the
//! `ValidatorSet` it yields: ordered, stake-weighted, with the quorum arithmetic and the proposer
//! draw of DESIGN §2.1.
//!
//! Thresholds are always over the total stake `T` of the set, never over the stake online:
//! a quorum is `w` with `3·w ≥ 2·T`, "more than a third" is `3·w > T`. Any two quorums overlap in
//! at least `T/3` of stake, so with Byzantine stake below `T/3` they share an honest validator.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, Keypair, PublicKey};
use crate::types::{Amount, Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};

/// A timeout that grows with the round: `base + delta · round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutParams {
    pub base_ms: u64,
    pub delta_ms: u64,
}

impl TimeoutParams {
    pub fn at(&self, round: Round) -> u64 {
        self.base_ms
            .saturating_add(self.delta_ms.saturating_mul(u64::from(round.0)))
    }
}

/// The knobs of the protocol; every validator of a chain must use the same ones, so they live in
/// the genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsensusParams {
    /// Pause between finalizing a height and starting the next (0: as fast as possible).
    pub block_time_ms: u64,
    pub propose_timeout: TimeoutParams,
    pub prepare_timeout: TimeoutParams,
    pub precommit_timeout: TimeoutParams,
    /// How far ahead of the receiver's clock a proposal's timestamp may be.
    pub max_clock_drift_ms: u64,
    /// Transactions per block at most.
    pub max_block_txs: u32,
    /// How often a node stuck in a height re-sends its own proposal and votes.
    pub resend_interval_ms: u64,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            block_time_ms: 8_000,
            propose_timeout: TimeoutParams {
                base_ms: 3_000,
                delta_ms: 1_000,
            },
            prepare_timeout: TimeoutParams {
                base_ms: 1_000,
                delta_ms: 500,
            },
            precommit_timeout: TimeoutParams {
                base_ms: 1_000,
                delta_ms: 500,
            },
            max_clock_drift_ms: 2_000,
            max_block_txs: 8_000,
            resend_interval_ms: 2_000,
        }
    }
}

/// One validator as the genesis names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// A human name for logs (`validator1`).
    pub name: String,
    pub public_key: PublicKey,
    pub stake: Stake,
    /// Where peers reach it (`host:port`), if known; not used by consensus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// An initial account balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisBalance {
    pub account: PublicKey,
    pub amount: Amount,
}

/// Everything a node needs to know before the first block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    /// Timestamp of height 0; block 1's timestamp must be after it.
    pub genesis_time_ms: TimestampMs,
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    #[serde(default)]
    pub params: ConsensusParams,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("the chain id is empty or longer than 64 bytes")]
    BadChainId,
    #[error("the genesis has no validators")]
    NoValidators,
    #[error("the genesis has {0} validators; at most {max} are supported", max = MAX_VALIDATORS)]
    TooManyValidators(usize),
    #[error("validator {name:?} has zero stake")]
    ZeroStake { name: String },
    #[error("validator {name:?} has the same public key as {other:?}")]
    DuplicateKey { name: String, other: String },
    #[error("two validators are named {0:?}")]
    DuplicateName(String),
    #[error("validator {name:?} has an unusable public key: {error}")]
    BadKey { name: String, error: CryptoError },
    #[error("the total stake overflows 64 bits")]
    StakeOverflow,
    #[error("account {0} appears twice in the balances")]
    DuplicateBalance(PublicKey),
    #[error(
        "the initial balances exceed {} units in all; block rewards need the headroom",
        MAX_GENESIS_SUPPLY
    )]
    BalanceOverflow,
    #[error("the propose timeout must be at least 1 ms")]
    ZeroProposeTimeout,
}

/// The most money a genesis may create: half of what a `u64` holds, leaving billions of blocks of
/// subsidies before any balance could overflow.
pub const MAX_GENESIS_SUPPLY: u64 = u64::MAX / 2;

/// Validators per set at most (indices are 16-bit; certificates stay small).
pub const MAX_VALIDATORS: usize = 1_000;

impl Genesis {
    /// BLAKE3 of the canonical encoding: two nodes with different genesis hashes are on different
    /// chains and refuse each other.
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/genesis", &crate::codec::encode(self)])
    }

    /// Checks every rule and builds the validator set.
    pub fn validate(&self) -> Result<ValidatorSet, GenesisError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(GenesisError::BadChainId);
        }
        if self.params.propose_timeout.base_ms == 0 {
            return Err(GenesisError::ZeroProposeTimeout);
        }
        let set = ValidatorSet::new(&self.validators)?;
        let mut seen = BTreeMap::new();
        let mut total: u64 = 0;
        for b in &self.balances {
            if seen.insert(b.account, ()).is_some() {
                return Err(GenesisError::DuplicateBalance(b.account));
            }
            total = total
                .checked_add(b.amount.0)
                .ok_or(GenesisError::BalanceOverflow)?;
        }
        if total > MAX_GENESIS_SUPPLY {
            return Err(GenesisError::BalanceOverflow);
        }
        Ok(set)
    }
}

/// `validator1`, `validator2`, … with the given stakes and keys derived from their names.
/// Insecure — anyone can derive the keys — and meant for devnets, the simulator, tests and
/// benchmarks.
pub fn insecure_dev_validators(stakes: &[u64]) -> (Vec<Keypair>, Vec<GenesisValidator>) {
    stakes
        .iter()
        .enumerate()
        .map(|(i, stake)| {
            let name = format!("validator{}", i + 1);
            let key = Keypair::insecure_from_name(&name);
            let member = GenesisValidator {
                name,
                public_key: key.public_key(),
                stake: Stake(*stake),
                address: None,
            };
            (key, member)
        })
        .unzip()
}

/// One member of the set, with its key decompressed once.
#[derive(Clone, Debug)]
pub struct Validator {
    pub name: String,
    pub public_key: PublicKey,
    pub verifying_key: VerifyingKey,
    pub stake: Stake,
}

/// The ordered, stake-weighted set of validators. Immutable once built.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total: Stake,
    by_key: BTreeMap<PublicKey, ValidatorIndex>,
}

impl ValidatorSet {
    pub fn new(members: &[GenesisValidator]) -> Result<ValidatorSet, GenesisError> {
        if members.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if members.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators(members.len()));
        }
        let mut validators = Vec::with_capacity(members.len());
        let mut by_key = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut total: u64 = 0;
        for (i, m) in members.iter().enumerate() {
            if m.stake.0 == 0 {
                return Err(GenesisError::ZeroStake {
                    name: m.name.clone(),
                });
            }
            let verifying_key =
                m.public_key
                    .verifying_key()
                    .map_err(|error| GenesisError::BadKey {
                        name: m.name.clone(),
                        error,
                    })?;
            let index = ValidatorIndex(u16::try_from(i).expect("bounded by MAX_VALIDATORS"));
            if let Some(other) = by_key.insert(m.public_key, index) {
                return Err(GenesisError::DuplicateKey {
                    name: m.name.clone(),
                    other: members[other.as_usize()].name.clone(),
                });
            }
            if names.insert(m.name.as_str(), ()).is_some() {
                return Err(GenesisError::DuplicateName(m.name.clone()));
            }
            total = total
                .checked_add(m.stake.0)
                .ok_or(GenesisError::StakeOverflow)?;
            validators.push(Validator {
                name: m.name.clone(),
                public_key: m.public_key,
                verifying_key,
                stake: m.stake,
            });
        }
        Ok(ValidatorSet {
            validators,
            total: Stake(total),
            by_key,
        })
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_stake(&self) -> Stake {
        self.total
    }

    pub fn get(&self, index: ValidatorIndex) -> Option<&Validator> {
        self.validators.get(index.as_usize())
    }

    pub fn stake_of(&self, index: ValidatorIndex) -> Stake {
        self.get(index).map_or(Stake(0), |v| v.stake)
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.by_key.get(key).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ValidatorIndex, &Validator)> {
        self.validators
            .iter()
            .enumerate()
            .map(|(i, v)| (ValidatorIndex(i as u16), v))
    }

    /// The smallest stake that is a quorum: the least `w` with `3·w ≥ 2·T`.
    pub fn quorum(&self) -> Stake {
        Stake((2 * u128::from(self.total.0)).div_ceil(3) as u64)
    }

    /// `3·w ≥ 2·T`: enough stake to prepare or precommit a value.
    pub fn is_quorum(&self, w: Stake) -> bool {
        3 * u128::from(w.0) >= 2 * u128::from(self.total.0)
    }

    /// `3·w > T`: at least one honest validator is among them (round skip, DESIGN §2.1).
    pub fn is_more_than_third(&self, w: Stake) -> bool {
        3 * u128::from(w.0) > u128::from(self.total.0)
    }

    /// The proposer of `(height, round)`: a stake-weighted draw from
    /// `BLAKE3("timed/proposer" ‖ chain_id ‖ parent_hash ‖ height ‖ round)`.
    pub fn proposer(
        &self,
        chain_id: &str,
        parent: &Hash,
        height: Height,
        round: Round,
    ) -> ValidatorIndex {
        let digest = Hash::of(&[
            b"timed/proposer",
            chain_id.as_bytes(),
            &parent.0,
            &height.0.to_be_bytes(),
            &round.0.to_be_bytes(),
        ]);
        let x = u128::from_be_bytes(digest.0[..16].try_into().expect("16 bytes"))
            % u128::from(self.total.0);
        let mut cumulative: u128 = 0;
        for (index, v) in self.iter() {
            cumulative += u128::from(v.stake.0);
            if x < cumulative {
                return index;
            }
        }
        unreachable!("x < total stake, so some validator's cumulative stake exceeds it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(stakes: &[u64]) -> Vec<GenesisValidator> {
        insecure_dev_validators(stakes).1
    }

    #[test]
    fn two_hundred_of_three_hundred_is_a_quorum_and_199_is_not() {
        let set = ValidatorSet::new(&members(&[100, 100, 100])).unwrap();
        assert!(set.is_quorum(Stake(200)));
        assert!(!set.is_quorum(Stake(199)));
        assert_eq!(set.quorum(), Stake(200));
        assert!(set.is_more_than_third(Stake(101)));
        assert!(!set.is_more_than_third(Stake(100)));
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

    #[test]
    fn proposer_draw_is_stake_weighted() {
        let set = ValidatorSet::new(&members(&[100, 300])).unwrap();
        let mut counts = [0u32; 2];
        for h in 1..4001u64 {
            counts[set
                .proposer("c", &Hash::ZERO, Height(h), Round(0))
                .as_usize()] += 1;
        }
        // Expect about 1000 / 3000; allow a wide margin, the draw is a hash.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        // A new round is a new draw: not always the same proposer.
        let distinct: std::collections::BTreeSet<_> = (0..20)
            .map(|r| set.proposer("c", &Hash::ZERO, Height(1), Round(r)))
            .collect();
        assert_eq!(distinct.len(), 2);
    }

    proptest! {
        #[test]
        fn any_two_quorums_overlap_in_more_than_a_third(stakes in proptest::collection::vec(1u64..1_000_000, 1..40),
                                                        a in any::<u64>(), b in any::<u64>()) {
            // Two arbitrary subsets, each grown until it is a quorum; their intersection must weigh
            // at least T/3 (3·overlap ≥ T), so with Byzantine stake < T/3 it holds an honest validator.
            let set = ValidatorSet::new(&members(&stakes)).unwrap();
            let n = stakes.len();
            // Add validators in a seed-dependent order until the subset is a quorum.
            let pick = |seed: u64| {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&i| Hash::of(&[&seed.to_be_bytes(), &(i as u64).to_be_bytes()]));
                let mut chosen = vec![false; n];
                let mut w = 0u64;
                for i in order {
                    if set.is_quorum(Stake(w)) { break; }
                    chosen[i] = true;
                    w += stakes[i];
                }
                chosen
            };
            let qa = pick(a);
            let qb = pick(b);
            let overlap: u128 = (0..n).filter(|&i| qa[i] && qb[i]).map(|i| u128::from(stakes[i])).sum();
            prop_assert!(3 * overlap >= u128::from(set.total_stake().0));
        }

        #[test]
        fn quorum_is_the_least_stake_that_passes(stakes in proptest::collection::vec(1u64..u64::MAX / 2000, 1..30)) {
            let set = ValidatorSet::new(&members(&stakes)).unwrap();
            let q = set.quorum();
            prop_assert!(set.is_quorum(q));
            prop_assert!(!set.is_quorum(Stake(q.0 - 1)));
        }
    }
}
