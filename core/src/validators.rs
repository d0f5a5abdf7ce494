//! The genesis (chain id, validators, balances, consensus parameters; the rules it must pass are
//! in `genesis`), and the `ValidatorSet` it yields: ordered, stake-weighted, with the quorum
//! arithmetic and the proposer schedule (`ValidatorSet::proposer`).
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
    /// The timeout of round 0, in milliseconds.
    pub base_ms: u64,
    /// Milliseconds added per round.
    pub delta_ms: u64,
}

impl TimeoutParams {
    /// The timeout in `round`, in milliseconds (saturating).
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
    /// Pause between finalizing a height and starting the next, in milliseconds
    /// (`Timer::NextHeight`; 0: as fast as possible).
    pub block_time_ms: u64,
    /// How long a round waits for its proposal before preparing nil (L57); set at the start of
    /// every round. Its base must be at least 1 ms.
    pub propose_timeout: TimeoutParams,
    /// How long after prepares of a quorum (any values) the node precommits nil (L34, L61).
    pub prepare_timeout: TimeoutParams,
    /// How long after precommits of a quorum (any values) the node moves to the next round (L47,
    /// L65). A round ends anyway after twice the sum of the three (`Timer::RoundEnd`).
    pub precommit_timeout: TimeoutParams,
    /// How far ahead of the receiver's clock, in milliseconds, a block's timestamp may be for it
    /// to prepare or precommit the block (a certified or polka'd block is exempt).
    pub max_clock_drift_ms: u64,
    /// Transactions per block at most; `Genesis::validate` refuses a value whose largest
    /// proposal would not fit in `codec::MAX_MESSAGE_BYTES`.
    pub max_block_txs: u32,
    /// How often, in milliseconds, a node stuck in a height re-sends its own proposal and votes
    /// (`Timer::Resend`). Also how long it waits on a block request (on a catch-up request:
    /// twice this) before asking another peer, and, halved, the least time between two blocks
    /// or decisions it sends one peer on request.
    pub resend_interval_ms: u64,
    /// Heights per epoch: the validator set changes only after a height that is a multiple of
    /// this, to the set elected one epoch before (ADR 0026). At least 1.
    pub epoch_blocks: u64,
    /// The least bond of a registration (the masternode collateral), in base units. The genesis
    /// validators are exempt: the genesis is trusted.
    pub min_bond: Amount,
    /// Validators per set at most: the largest bonds are elected (ties to the lower id). 1 to
    /// `MAX_VALIDATORS`, and at least the genesis's count.
    pub max_validators: u32,
    /// Heights an unbonded amount waits before it returns to its owner; at least twice
    /// `epoch_blocks`, so stake stays slashable while it still signs. Also the age beyond which
    /// evidence is refused.
    pub unbonding_blocks: u64,
    /// The part of its bond (and of its queued unbonding) a validator proven to double-sign
    /// loses, in thousandths; at most 1000.
    pub slash_permille: u32,
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
            // 100 heights of 8 s: a change signs 13 to 27 minutes after it is made.
            epoch_blocks: 100,
            min_bond: Amount(1_000 * Amount::UNITS_PER_TIME),
            max_validators: 100,
            // About 22 hours of 8 s blocks.
            unbonding_blocks: 10_000,
            slash_permille: 50,
        }
    }
}

/// One validator as the genesis names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// A human name for logs (`validator1`).
    pub name: String,
    /// Its signing key; not a small-order point, and unique in the set.
    pub public_key: PublicKey,
    /// Its voting weight; nonzero.
    pub stake: Stake,
    /// Where peers reach it (`host:port`), if known; not used by consensus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// An initial account balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisBalance {
    /// The account credited; at most once in the genesis.
    pub account: PublicKey,
    /// Base units credited.
    pub amount: Amount,
}

/// Everything a node needs to know before the first block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain's name, 1 to 64 bytes: in every signature and block header.
    pub chain_id: String,
    /// Timestamp of height 0; block 1's timestamp must be after it.
    pub genesis_time_ms: TimestampMs,
    /// The validator set, in index order (`ValidatorIndex` is the position here); fixed for
    /// the life of the chain.
    pub validators: Vec<GenesisValidator>,
    /// Accounts funded at height 0.
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// The protocol's parameters (`ConsensusParams::default()` when absent).
    #[serde(default)]
    pub params: ConsensusParams,
}

/// Why a genesis was refused (`Genesis::validate`, `ValidatorSet::new`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    /// The chain id is empty or longer than 64 bytes.
    #[error("the chain id is empty or longer than 64 bytes")]
    BadChainId,
    /// No validators.
    #[error("the genesis has no validators")]
    NoValidators,
    /// More than `MAX_VALIDATORS` validators (this many).
    #[error("the genesis has {0} validators; at most {max} are supported", max = MAX_VALIDATORS)]
    TooManyValidators(usize),
    /// A validator with zero stake.
    #[error("validator {name:?} has zero stake")]
    ZeroStake {
        /// The validator's name.
        name: String,
    },
    /// Two validators with one key.
    #[error("validator {name:?} has the same public key as {other:?}")]
    DuplicateKey {
        /// The later validator's name.
        name: String,
        /// The earlier one's.
        other: String,
    },
    /// Two validators with one name.
    #[error("two validators are named {0:?}")]
    DuplicateName(String),
    /// A validator key that is not a valid point, or of small order.
    #[error("validator {name:?} has an unusable public key: {error}")]
    BadKey {
        /// The validator's name.
        name: String,
        /// What is wrong with the key.
        error: CryptoError,
    },
    /// The stakes sum past `u64::MAX`.
    #[error("the total stake overflows 64 bits")]
    StakeOverflow,
    /// `params.epoch_blocks` is 0.
    #[error("epoch_blocks must be at least 1")]
    ZeroEpoch,
    /// `params.unbonding_blocks` is below twice `epoch_blocks`.
    #[error(
        "unbonding_blocks = {unbonding} is below twice epoch_blocks ({epoch}): stake would leave \
         before its last signature could be proven against it"
    )]
    UnbondingTooShort {
        /// `unbonding_blocks`.
        unbonding: u64,
        /// `epoch_blocks`.
        epoch: u64,
    },
    /// `params.max_validators` is 0, above `MAX_VALIDATORS` or below the genesis's count.
    #[error("max_validators = {max} must be between the genesis's {genesis} validators and {limit}", limit = MAX_VALIDATORS)]
    BadMaxValidators {
        /// `max_validators`.
        max: u32,
        /// Validators in the genesis.
        genesis: usize,
    },
    /// `params.slash_permille` is above 1000.
    #[error("slash_permille = {0} is above 1000 (all of the bond)")]
    BadSlash(u32),
    /// Members of a set not in strictly ascending id order (an election bug, never a genesis's).
    #[error("validator id {0} is out of order in the set")]
    UnorderedIds(ValidatorIndex),
    /// An account funded twice.
    #[error("account {0} appears twice in the balances")]
    DuplicateBalance(PublicKey),
    /// The balances sum past `MAX_GENESIS_SUPPLY`.
    #[error(
        "the initial balances exceed {} units in all; block rewards need the headroom",
        MAX_GENESIS_SUPPLY
    )]
    BalanceOverflow,
    /// `params.propose_timeout.base_ms` is 0.
    #[error("the propose timeout must be at least 1 ms")]
    ZeroProposeTimeout,
    /// `params.max_block_txs` allows a proposal larger than `codec::MAX_MESSAGE_BYTES`.
    #[error(
        "max_block_txs = {max_block_txs} allows proposals of up to {bytes} bytes, over the \
         {limit}-byte message limit (a block nobody could send would halt the chain); at most \
         {fits} transfers fit"
    )]
    BlockTooLarge {
        /// The value refused.
        max_block_txs: u32,
        /// The largest proposal it allows, in bytes.
        bytes: usize,
        /// `codec::MAX_MESSAGE_BYTES`.
        limit: usize,
        /// The largest `max_block_txs` that fits.
        fits: u64,
    },
}

/// `ValidatorSet::hash` of the set of `members` (without building it).
pub fn members_hash(members: &[Member]) -> Hash {
    set_hash(
        members.len(),
        members.iter().map(|m| (m.id, &m.public_key, m.stake)),
    )
}

fn set_hash<'a>(
    len: usize,
    members: impl Iterator<Item = (ValidatorIndex, &'a PublicKey, Stake)>,
) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/set");
    h.update(&(len as u64).to_be_bytes());
    for (id, key, stake) in members {
        h.update(&id.0.to_be_bytes());
        h.update(&key.0);
        h.update(&stake.0.to_be_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

/// The most money a genesis may create: half of what a `u64` holds, leaving billions of blocks of
/// subsidies before any balance could overflow.
pub const MAX_GENESIS_SUPPLY: u64 = u64::MAX / 2;

/// The proposer schedule multiplies two weights and a small factor in 128 bits, so its weights
/// total at most this: stakes of a larger total are scaled down for the schedule (by a power of
/// two, each at least 1), which moves a share by less than one part in 2^50.
const MAX_SCHEDULE_TOTAL: u64 = 1 << 62;

/// Validators per set at most (indices are 16-bit; certificates stay small).
pub const MAX_VALIDATORS: usize = 1_000;

impl Genesis {
    /// BLAKE3 of the canonical encoding: two nodes with different genesis hashes are on different
    /// chains and refuse each other.
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/genesis", &crate::codec::encode(self)])
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
    /// Its id: its registration number, stable for the life of the chain (ADR 0026).
    pub id: ValidatorIndex,
    /// As registered (the genesis, or a `Register` transfer).
    pub name: String,
    /// Its signing key.
    pub public_key: PublicKey,
    /// `public_key` decompressed (checked not weak).
    pub verifying_key: VerifyingKey,
    /// Its voting weight in this set; nonzero.
    pub stake: Stake,
    /// The account its rewards are paid to: the registration's owner (a genesis validator owns
    /// itself).
    pub owner: PublicKey,
}

/// A member as a set is built from: the genesis's validators (ids `0..n`) or an election
/// (`staking`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Registration number; members are given in strictly ascending id order.
    pub id: ValidatorIndex,
    /// Its name, for logs.
    pub name: String,
    /// Its signing key.
    pub public_key: PublicKey,
    /// Its weight; nonzero.
    pub stake: Stake,
    /// Where its rewards go.
    pub owner: PublicKey,
}

/// The ordered, stake-weighted set of validators of some heights. Immutable once built. Members
/// are kept in ascending id order; their *position* (0-based rank in that order) indexes the
/// per-member tables of the core (vote slots, flags), and their *id* is what messages carry.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total: Stake,
    by_key: BTreeMap<PublicKey, ValidatorIndex>,
    /// The stakes as the proposer schedule weighs them, and their total (`MAX_SCHEDULE_TOTAL`).
    weights: Vec<u128>,
    weight_total: u128,
    positions: Positions,
    /// `hash`, computed once: the set is immutable, and every block's check asks for it
    /// (`Header::next_set_hash`), at a hundred validators some 70 µs of hashing each time.
    hash: Hash,
}

/// Maps a member's id to its position in its set; cheap to clone, so the per-height tables of
/// the core (the vote keeper's slots) carry their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Positions {
    len: usize,
    /// The ids in ascending order; `None` when they are exactly `0..len` (every genesis set),
    /// and an id is then its own position.
    sparse: Option<Vec<ValidatorIndex>>,
}

impl Positions {
    /// The position of `id`, if it is a member.
    pub fn of(&self, id: ValidatorIndex) -> Option<usize> {
        match &self.sparse {
            None => (id.as_usize() < self.len).then_some(id.as_usize()),
            Some(ids) => ids.binary_search(&id).ok(),
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for no members (never for a built set).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ValidatorSet {
    /// The genesis set: `members` in their order, with ids `0..n`. 1 to `MAX_VALIDATORS` of
    /// them, each with a nonzero stake, a usable key of its own and a name of its own, the
    /// stakes summing within `u64`. Each genesis validator owns its own rewards.
    pub fn new(members: &[GenesisValidator]) -> Result<ValidatorSet, GenesisError> {
        if members.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators(members.len()));
        }
        let members: Vec<Member> = members
            .iter()
            .enumerate()
            .map(|(i, m)| Member {
                id: ValidatorIndex(u16::try_from(i).expect("bounded by MAX_VALIDATORS")),
                name: m.name.clone(),
                public_key: m.public_key,
                stake: m.stake,
                owner: m.public_key,
            })
            .collect();
        ValidatorSet::from_members(members)
    }

    /// A set of `members` in strictly ascending id order, under the rules of `new`.
    pub fn from_members(members: Vec<Member>) -> Result<ValidatorSet, GenesisError> {
        if members.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if members.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators(members.len()));
        }
        let mut validators: Vec<Validator> = Vec::with_capacity(members.len());
        let mut by_key = BTreeMap::new();
        let mut names = BTreeMap::new();
        let mut total: u64 = 0;
        for m in members {
            if validators.last().is_some_and(|last| last.id >= m.id) {
                return Err(GenesisError::UnorderedIds(m.id));
            }
            if m.stake.0 == 0 {
                return Err(GenesisError::ZeroStake { name: m.name });
            }
            let verifying_key =
                m.public_key
                    .verifying_key()
                    .map_err(|error| GenesisError::BadKey {
                        name: m.name.clone(),
                        error,
                    })?;
            if let Some(other) = by_key.insert(m.public_key, m.id) {
                let other = validators
                    .iter()
                    .find(|v| v.id == other)
                    .map(|v| v.name.clone())
                    .unwrap_or_default();
                return Err(GenesisError::DuplicateKey {
                    name: m.name,
                    other,
                });
            }
            if names.insert(m.name.clone(), ()).is_some() {
                return Err(GenesisError::DuplicateName(m.name));
            }
            total = total
                .checked_add(m.stake.0)
                .ok_or(GenesisError::StakeOverflow)?;
            validators.push(Validator {
                id: m.id,
                name: m.name,
                public_key: m.public_key,
                verifying_key,
                stake: m.stake,
                owner: m.owner,
            });
        }
        let shift = (0..64)
            .find(|shift| {
                let scaled: u64 = validators.iter().map(|v| (v.stake.0 >> shift).max(1)).sum();
                scaled <= MAX_SCHEDULE_TOTAL
            })
            .expect("at most 1000 validators of weight 1 fit");
        let weights: Vec<u128> = validators
            .iter()
            .map(|v| u128::from((v.stake.0 >> shift).max(1)))
            .collect();
        let dense = validators
            .iter()
            .enumerate()
            .all(|(p, v)| v.id.as_usize() == p);
        let positions = Positions {
            len: validators.len(),
            sparse: (!dense).then(|| validators.iter().map(|v| v.id).collect()),
        };
        let hash = set_hash(
            validators.len(),
            validators.iter().map(|v| (v.id, &v.public_key, v.stake)),
        );
        Ok(ValidatorSet {
            validators,
            total: Stake(total),
            by_key,
            weight_total: weights.iter().sum(),
            weights,
            positions,
            hash,
        })
    }

    /// The members, in ascending id order, as `from_members` takes them.
    pub fn members(&self) -> Vec<Member> {
        self.validators
            .iter()
            .map(|v| Member {
                id: v.id,
                name: v.name.clone(),
                public_key: v.public_key,
                stake: v.stake,
                owner: v.owner,
            })
            .collect()
    }

    /// Whether a certificate gets the same verdict under `other` as under this set: the same
    /// members' ids, keys and stakes in the same order (what `hash` commits to; names and
    /// reward accounts play no part). Two epochs elect equal sets as distinct values.
    pub fn signs_as(&self, other: &ValidatorSet) -> bool {
        std::ptr::eq(self, other)
            || (self.total == other.total
                && self.validators.len() == other.validators.len()
                && self.validators.iter().zip(&other.validators).all(|(a, b)| {
                    a.id == b.id && a.public_key == b.public_key && a.stake == b.stake
                }))
    }

    /// The commitment to the set that a header's `next_set_hash` holds: BLAKE3 of
    /// `"timed/set"` and, in id order, each member's id, key and stake (what a certificate's
    /// check needs; the reward accounts are in the state root).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The position of `id` in the set (its rank by id), if it is a member.
    pub fn position(&self, id: ValidatorIndex) -> Option<usize> {
        self.positions.of(id)
    }

    /// The id-to-position map, for tables indexed by position.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The member at `position` (0-based rank by id).
    pub fn at(&self, position: usize) -> Option<&Validator> {
        self.validators.get(position)
    }

    /// The number of validators (at least 1).
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set has at least one validator.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// `T`, the sum of all stakes: the base of every threshold.
    pub fn total_stake(&self) -> Stake {
        self.total
    }

    /// The member with id `id`, if any.
    pub fn get(&self, id: ValidatorIndex) -> Option<&Validator> {
        self.position(id).map(|p| &self.validators[p])
    }

    /// The stake of `index`; 0 for an index outside the set.
    pub fn stake_of(&self, index: ValidatorIndex) -> Stake {
        self.get(index).map_or(Stake(0), |v| v.stake)
    }

    /// The id of the member with this key, if it is one.
    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.by_key.get(key).copied()
    }

    /// Every member with its id, in ascending id order (so the n-th item is at position n).
    pub fn iter(&self) -> impl Iterator<Item = (ValidatorIndex, &Validator)> {
        self.validators.iter().map(|v| (v.id, v))
    }

    /// The smallest stake that is a quorum: the least `w` with `3·w ≥ 2·T`.
    pub fn quorum(&self) -> Stake {
        Stake((2 * u128::from(self.total.0)).div_ceil(3) as u64)
    }

    /// `3·w ≥ 2·T`: enough stake to prepare or precommit a value.
    pub fn is_quorum(&self, w: Stake) -> bool {
        3 * u128::from(w.0) >= 2 * u128::from(self.total.0)
    }

    /// `3·w > T`: at least one honest validator is among them (round skip, docs/design.md §2.1).
    pub fn is_more_than_third(&self, w: Stake) -> bool {
        3 * u128::from(w.0) > u128::from(self.total.0)
    }

    /// The proposer of `(height, round)`: entry `height - 1 + round` of the set's proposer schedule.
    ///
    /// Decision record (issue 12, defect 8). The draw used to hash the parent block, which the
    /// previous proposer chooses (its timestamp, its transfers): a validator could grind its block
    /// until the draw named itself again, height after height. The schedule depends on the set
    /// alone, so nobody can steer it. It is Tendermint's idea (a weighted round-robin in which
    /// round `r` of height `h` takes the turn `h - 1 + r`, as CometBFT's proposer priority does)
    /// computed without state: the turns form the sequence of the Sainte-Laguë (Webster) divisor
    /// method. Validator `i` of stake `w_i` owns the points `(k + 1/2) / w_i` for `k = 0, 1, …`;
    /// all points of all validators, in increasing order (ties to the lower index), are the
    /// schedule. Up to any turn `s`, validator `i` has had `s·w_i/T` turns within
    /// `1/2 + n/2·w_i/T` (n validators, T total stake), so every share of proposals converges to
    /// the share of stake, and after `T` turns the schedule repeats exactly (`T` the total of
    /// the scaled weights when stakes total more than 2^62, see `MAX_SCHEDULE_TOTAL`). A turn
    /// costs O(n) (a window of O(n) points, and a selection in it), independent of the height:
    /// no history is replayed after a restart.
    pub fn proposer(&self, height: Height, round: Round) -> ValidatorIndex {
        let turn = u128::from(height.0.saturating_sub(1)) + u128::from(round.0);
        self.schedule_turn(turn)
    }

    /// The validator holding turn `turn` (0-based) of the schedule of `proposer`.
    pub fn schedule_turn(&self, turn: u128) -> ValidatorIndex {
        let total = self.weight_total;
        let s = turn % total;
        let n = self.validators.len() as u128;
        // The point of turn `s` lies within n/2 + 1 turns of `s / T`; collect every point in a
        // wider window around it, which then holds turns `first..first + len` contiguously.
        let mut margin = n + 2;
        loop {
            let lo = s.saturating_sub(margin);
            let hi = s + margin + 1;
            // Points m / (2·w) with m odd and lo/T ≤ m/(2w) ≤ hi/T. Products stay below 2^126:
            // weights total at most 2^62 and m at most 2w + O(n).
            let mut points: Vec<(u128, usize)> =
                Vec::with_capacity(2 * usize::try_from(margin).unwrap_or(0) + 2);
            for (i, &w) in self.weights.iter().enumerate() {
                let mut m = (2 * w * lo).div_ceil(total);
                if m.is_multiple_of(2) {
                    m += 1;
                }
                let m_hi = 2 * w * hi / total;
                while m <= m_hi {
                    points.push((m, i));
                    m += 2;
                }
            }
            // The window's points in order are turns `at..`; only the `s - at`-th is wanted, so
            // it is selected rather than the window sorted (the order is total: ties go by index).
            let compare = |a: &(u128, usize), b: &(u128, usize)| self.compare_points(*a, *b);
            if let Some(&first) = points.iter().min_by(|a, b| compare(a, b)) {
                let at = self.points_before(first);
                if let Some(d) = s
                    .checked_sub(at)
                    .and_then(|d| usize::try_from(d).ok())
                    .filter(|d| *d < points.len())
                {
                    let (_, &mut (_, i), _) = points.select_nth_unstable_by(d, compare);
                    return self.validators[i].id;
                }
            }
            // Not reached by the bound above; a wider window is always correct.
            debug_assert!(false, "proposer schedule window too narrow");
            margin *= 2;
        }
    }

    /// Orders the points `a.0 / (2·w_a)` and `b.0 / (2·w_b)`; equal points by validator index.
    fn compare_points(&self, a: (u128, usize), b: (u128, usize)) -> std::cmp::Ordering {
        let (wa, wb) = (self.weights[a.1], self.weights[b.1]);
        (a.0 * wb).cmp(&(b.0 * wa)).then(a.1.cmp(&b.1))
    }

    /// How many points of the schedule come before the point `m / (2·w_i)` of validator `i`.
    fn points_before(&self, (m, i): (u128, usize)) -> u128 {
        let wi = self.weights[i];
        self.weights
            .iter()
            .enumerate()
            .map(|(j, &wj)| {
                // Odd m' with m'/(2w_j) < m/(2w_i), i.e. m'·w_i < m·w_j (≤ for a lower index,
                // which wins ties).
                let a = m * wj;
                let bound = if j < i { a / wi } else { (a - 1) / wi };
                bound.div_ceil(2)
            })
            .sum()
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

    /// A set after changes: ids are registration numbers, sparse and not positions.
    fn sparse(ids_stakes: &[(u16, u64)]) -> ValidatorSet {
        let members = ids_stakes
            .iter()
            .map(|&(id, stake)| {
                let name = format!("v{id}");
                Member {
                    id: ValidatorIndex(id),
                    public_key: Keypair::insecure_from_name(&name).public_key(),
                    name,
                    stake: Stake(stake),
                    owner: Keypair::insecure_from_name(&format!("owner{id}")).public_key(),
                }
            })
            .collect();
        ValidatorSet::from_members(members).unwrap()
    }

    #[test]
    fn a_set_of_sparse_ids_maps_ids_to_positions_and_proposes_members_only() {
        let set = sparse(&[(2, 100), (5, 300), (9, 50)]);
        assert_eq!(set.position(ValidatorIndex(2)), Some(0));
        assert_eq!(set.position(ValidatorIndex(9)), Some(2));
        for absent in [0, 1, 3, 8, 10, u16::MAX] {
            assert_eq!(set.position(ValidatorIndex(absent)), None);
            assert!(set.get(ValidatorIndex(absent)).is_none());
            assert_eq!(set.stake_of(ValidatorIndex(absent)), Stake(0));
        }
        assert_eq!(set.stake_of(ValidatorIndex(5)), Stake(300));
        let key5 = Keypair::insecure_from_name("v5").public_key();
        assert_eq!(set.index_of(&key5), Some(ValidatorIndex(5)));
        let ids: Vec<u16> = set.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, vec![2, 5, 9]);
        // The schedule is the one of the same stakes at positions, named by id.
        let dense = ValidatorSet::new(&members(&[100, 300, 50])).unwrap();
        for turn in 0..900u128 {
            let p = dense.schedule_turn(turn).as_usize();
            assert_eq!(set.schedule_turn(turn), ValidatorIndex([2, 5, 9][p]));
        }
        // Members out of order, or an id twice, are refused.
        let mut twice = set.members();
        twice[1].id = ValidatorIndex(2);
        assert_eq!(
            ValidatorSet::from_members(twice).unwrap_err(),
            GenesisError::UnorderedIds(ValidatorIndex(2))
        );
        // The hash commits to ids, keys and stakes.
        let other_ids = sparse(&[(2, 100), (6, 300), (9, 50)]);
        let other_stake = sparse(&[(2, 100), (5, 301), (9, 50)]);
        assert_ne!(set.hash(), other_ids.hash());
        assert_ne!(set.hash(), other_stake.hash());
        assert_eq!(
            set.hash(),
            ValidatorSet::from_members(set.members()).unwrap().hash()
        );
    }

    fn schedule_by_brute_force(stakes: &[u64]) -> Vec<usize> {
        let total: u64 = stakes.iter().sum();
        let mut points: Vec<(u128, usize)> = Vec::new();
        for (i, w) in stakes.iter().enumerate() {
            for k in 0..2 * u128::from(*w) {
                points.push((2 * k + 1, i));
            }
        }
        points.sort_by(|a, b| {
            (a.0 * u128::from(stakes[b.1]))
                .cmp(&(b.0 * u128::from(stakes[a.1])))
                .then(a.1.cmp(&b.1))
        });
        assert_eq!(points.len() as u64, 2 * total);
        points.into_iter().map(|(_, i)| i).collect()
    }

    #[test]
    fn the_proposer_share_follows_the_stake_share_at_every_turn() {
        for stakes in [
            vec![100, 300],
            vec![100, 100, 100, 100],
            vec![1, 2, 3, 5, 8, 13, 21],
            vec![550, 300, 100, 50],
            vec![1_000_000, 1, 1],
        ] {
            let set = ValidatorSet::new(&members(&stakes)).unwrap();
            let total: u64 = stakes.iter().sum();
            let n = stakes.len() as f64;
            let mut counts = vec![0u64; stakes.len()];
            for turn in 0..20_000u64 {
                let p = set.proposer(Height(turn + 1), Round::ZERO).as_usize();
                counts[p] += 1;
                for (i, w) in stakes.iter().enumerate() {
                    let share = (turn + 1) as f64 * *w as f64 / total as f64;
                    let bound = 0.5 + n / 2.0 * (*w as f64 / total as f64) + 1e-9;
                    assert!(
                        (counts[i] as f64 - share).abs() <= bound,
                        "stakes {stakes:?}, turn {turn}: validator {i} had {} turns for a share of {share}",
                        counts[i]
                    );
                }
            }
        }
    }

    #[test]
    fn round_r_of_height_h_is_turn_h_minus_1_plus_r_and_nobody_chooses_it() {
        let set = ValidatorSet::new(&members(&[100, 300, 50])).unwrap();
        for h in 1..50u64 {
            for r in 0..5u32 {
                assert_eq!(
                    set.proposer(Height(h), Round(r)),
                    set.schedule_turn(u128::from(h - 1) + u128::from(r))
                );
            }
        }
        // A new round is another turn: a proposer that does not propose hands over.
        let distinct: std::collections::BTreeSet<_> =
            (0..20).map(|r| set.proposer(Height(1), Round(r))).collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn the_schedule_holds_with_the_largest_stakes() {
        let big = u64::MAX / 2;
        let set = ValidatorSet::new(&members(&[big, big - 1, 1])).unwrap();
        let mut counts = [0u32; 3];
        for turn in 0..1_000u128 {
            counts[set.schedule_turn(turn).as_usize()] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!(counts[0].abs_diff(counts[1]) <= 1, "{counts:?}");
        let far = u128::from(u64::MAX) * 7;
        // The schedule repeats after its weights' total (the stakes scaled to the bound).
        assert_eq!(
            set.schedule_turn(far),
            set.schedule_turn(far % set.weight_total)
        );
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
        fn the_schedule_is_the_sorted_points_of_every_validator(stakes in proptest::collection::vec(1u64..40, 1..8)) {
            let set = ValidatorSet::new(&members(&stakes)).unwrap();
            let expected = schedule_by_brute_force(&stakes);
            for (turn, want) in expected.iter().enumerate() {
                prop_assert_eq!(set.schedule_turn(turn as u128).as_usize(), *want, "turn {}", turn);
            }
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
