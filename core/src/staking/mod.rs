//! The staking state of the ledger (ADR 0026): the registry of validators (ids are registration
//! numbers, never reused), their bonds, the queue of unbonding stake, and the two validator sets
//! the chain knows at any height: `current` (the set of the epoch being built) and `next` (the
//! set of the epoch after it).
//!
//! It owns the staking rules and nothing else: the accounts' balances are the ledger's (a
//! staking operation's amount leaves or reaches an account there), and signatures are checked
//! before anything reaches here.
//!
//! Rules:
//! - `Register`: the key was never registered, the bond is at least `min_bond`, the name is new;
//!   the registration takes the next id (at most 65,536 ever).
//! - `Bond` / `Unbond`: only the registration's owner; an unbond leaves nothing or at least
//!   `min_bond`, and its amount waits `unbonding_blocks` heights in the queue.
//! - A staking operation that breaks a rule changes nothing here; the ledger then refunds its
//!   amount and keeps its fee (`StakingError` says why). So a block's validity never depends on
//!   staking state, and what the mempool admits can never make a block invalid.
//! - After the last height of an epoch (`height % epoch_blocks == 0`): `current` becomes
//!   `next`, and `next` is elected from the bonds as they stand (`elect`). A genesis validator
//!   is exempt from `min_bond` (the genesis is trusted) and keeps its seat with a smaller bond.
//!
//! - Evidence of a double vote burns part of the offender's bond and queued unbonding and jails
//!   it (`slash`, which has its own rules).
//!
//! Determinism: ordered maps and vectors only; the election sorts by (bond descending, id).

mod slash;

pub use slash::{EvidenceError, check_list};

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::tx::{MAX_ADDRESS_BYTES, MAX_NAME_BYTES, Op, Transfer};
use crate::types::{Amount, Hash, Height, Stake, ValidatorIndex};
use crate::validators::{ConsensusParams, Genesis, Member, ValidatorSet};

/// One registered validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Its signing key; registered once for the life of the chain.
    pub key: PublicKey,
    /// The account that registered it: the only one that may bond or unbond, and the one its
    /// rewards and unbonded stake go to.
    pub owner: PublicKey,
    /// As registered.
    pub name: String,
    /// As registered (`host:port`); empty when unknown.
    pub address: String,
    /// Stake bonded now.
    pub bond: Amount,
    /// Proven to double-sign: never elected again.
    pub jailed: bool,
}

/// Stake on its way back to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbonding {
    /// The validator it was bonded to (a slash of it reaches this too).
    pub validator: ValidatorIndex,
    /// The account it returns to.
    pub owner: PublicKey,
    /// Base units.
    pub amount: Amount,
    /// It returns at the end of this height.
    pub release: Height,
}

/// Why a staking operation changed nothing (it still costs its fee and nonce).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StakingError {
    /// `Register` of a key registered before.
    #[error("validator key {0} is already registered")]
    AlreadyRegistered(PublicKey),
    /// `Register` with a name another registration has.
    #[error("the validator name {0:?} is taken")]
    NameTaken(String),
    /// All 65,536 ids are used.
    #[error("the validator registry is full")]
    RegistryFull,
    /// A bond (after `Register`, `Bond` or `Unbond`) between 0 and `min_bond`.
    #[error(
        "a bond must be 0 or at least {min} ({} base units); this leaves {got} ({} base units)",
        min.0,
        got.0
    )]
    BelowMinimum {
        /// `min_bond`.
        min: Amount,
        /// The bond it would leave.
        got: Amount,
    },
    /// `Bond`/`Unbond` of a key nobody registered.
    #[error("{0} is not a registered validator")]
    NotRegistered(PublicKey),
    /// `Bond`/`Unbond` by an account that does not own the registration.
    #[error("only the validator's owner may change its bond")]
    NotOwner,
    /// `Unbond` of more than is bonded.
    #[error("unbonding {asked} but only {bonded} is bonded")]
    NotEnoughBonded {
        /// The amount asked.
        asked: Amount,
        /// The bond.
        bonded: Amount,
    },
    /// `Bond` to a jailed validator.
    #[error("the validator is jailed for double-signing; its owner can only unbond")]
    Jailed,
    /// A sum passes 64 bits.
    #[error("the bond overflows 64 bits")]
    Overflow,
}

impl StakingError {
    /// A stable label for metrics and the API.
    pub fn reason(&self) -> &'static str {
        match self {
            StakingError::AlreadyRegistered(_) => "already_registered",
            StakingError::NameTaken(_) => "name_taken",
            StakingError::RegistryFull => "registry_full",
            StakingError::BelowMinimum { .. } => "below_min_bond",
            StakingError::NotRegistered(_) => "not_registered",
            StakingError::NotOwner => "not_owner",
            StakingError::NotEnoughBonded { .. } => "not_enough_bonded",
            StakingError::Jailed => "jailed",
            StakingError::Overflow => "overflow",
        }
    }
}

/// The staking state without its parameters (they are the genesis's): what a store keeps
/// (`Staking::record`, `Staking::decode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakingRecord {
    /// By id.
    pub registry: Vec<Registration>,
    /// In queue order.
    pub unbonding: Vec<Unbonding>,
    /// The members of the current set.
    pub current: Vec<Member>,
    /// The members of the next set.
    pub next: Vec<Member>,
}

/// Why stored staking state was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StakingDecodeError {
    /// The bytes do not decode.
    #[error("the staking state does not decode: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// A rule the state always keeps is broken (a key or name twice, a set out of order).
    #[error("the staking state is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The most bytes stored staking state may take: 65,536 registrations of at most about 200
/// bytes, a queue and two sets.
pub const MAX_STAKING_BYTES: usize = 64 * 1024 * 1024;

/// The parameters of the genesis that staking uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StakingParams {
    /// `ConsensusParams::epoch_blocks`.
    pub epoch_blocks: u64,
    /// `ConsensusParams::min_bond`.
    pub min_bond: Amount,
    /// `ConsensusParams::max_validators`.
    pub max_validators: u32,
    /// `ConsensusParams::unbonding_blocks`.
    pub unbonding_blocks: u64,
    /// `ConsensusParams::slash_permille`.
    pub slash_permille: u32,
}

impl From<&ConsensusParams> for StakingParams {
    fn from(p: &ConsensusParams) -> StakingParams {
        StakingParams {
            epoch_blocks: p.epoch_blocks.max(1),
            min_bond: p.min_bond,
            max_validators: p.max_validators,
            unbonding_blocks: p.unbonding_blocks,
            slash_permille: p.slash_permille,
        }
    }
}

/// The staking state (see the module documentation for its rules).
#[derive(Clone, Debug)]
pub struct Staking {
    params: StakingParams,
    /// Indexed by id.
    registry: Vec<Registration>,
    by_key: BTreeMap<PublicKey, ValidatorIndex>,
    by_name: BTreeMap<String, ValidatorIndex>,
    /// In the order the amounts were unbonded (so by release height too: the period is fixed).
    unbonding: Vec<Unbonding>,
    /// The set of the epoch being built.
    current: Arc<ValidatorSet>,
    /// The set of the next epoch.
    next: Arc<ValidatorSet>,
    /// `root()`, computed once per state: every candidate block's state root asks for it.
    root: std::sync::OnceLock<Hash>,
}

impl PartialEq for Staking {
    fn eq(&self, other: &Staking) -> bool {
        self.params == other.params
            && self.registry == other.registry
            && self.unbonding == other.unbonding
            && self.current.members() == other.current.members()
            && self.next.members() == other.next.members()
    }
}

impl Eq for Staking {}

impl Staking {
    /// The state at height 0: each genesis validator registered (ids in genesis order), owning
    /// itself, with its stake as its bond; both sets are the genesis set. The genesis must be
    /// valid (`Genesis::validate`).
    pub fn from_genesis(genesis: &Genesis, set: &ValidatorSet) -> Staking {
        let registry: Vec<Registration> = genesis
            .validators
            .iter()
            .map(|v| Registration {
                key: v.public_key,
                owner: v.public_key,
                name: v.name.clone(),
                address: v.address.clone().unwrap_or_default(),
                bond: Amount(v.stake.0),
                jailed: false,
            })
            .collect();
        let set = Arc::new(set.clone());
        let mut staking = Staking {
            params: StakingParams::from(&genesis.params),
            registry,
            by_key: BTreeMap::new(),
            by_name: BTreeMap::new(),
            unbonding: Vec::new(),
            current: set.clone(),
            next: set,
            root: std::sync::OnceLock::new(),
        };
        let unique = staking.index();
        debug_assert!(unique, "validated: keys and names unique");
        staking
    }

    /// Rebuilds the look-ups; false if a key or a name is registered twice.
    fn index(&mut self) -> bool {
        self.by_key.clear();
        self.by_name.clear();
        let mut unique = true;
        for (i, r) in self.registry.iter().enumerate() {
            let id = ValidatorIndex(i as u16);
            unique &= self.by_key.insert(r.key, id).is_none();
            unique &= self.by_name.insert(r.name.clone(), id).is_none();
        }
        unique
    }

    /// What a store keeps of it (the parameters are the genesis's).
    pub fn record(&self) -> StakingRecord {
        StakingRecord {
            registry: self.registry.clone(),
            unbonding: self.unbonding.clone(),
            current: self.current.members(),
            next: self.next.members(),
        }
    }

    /// The state a store kept (`record`, wire-encoded), under the genesis's `params`; bounded
    /// and checked (the disk is hostile): every rule the state keeps is checked again.
    pub fn decode(bytes: &[u8], params: &ConsensusParams) -> Result<Staking, StakingDecodeError> {
        let record: StakingRecord = crate::codec::decode(bytes, MAX_STAKING_BYTES)?;
        Staking::from_record(record, StakingParams::from(params))
    }

    /// The state of `record` under the genesis's `params`, every rule checked again.
    pub fn from_record(
        record: StakingRecord,
        params: StakingParams,
    ) -> Result<Staking, StakingDecodeError> {
        let bad = StakingDecodeError::Inconsistent;
        if record.registry.len() > usize::from(u16::MAX) + 1 {
            return Err(bad("more than 65,536 registrations"));
        }
        let set = |members: Vec<Member>| {
            ValidatorSet::from_members(members)
                .map(Arc::new)
                .map_err(|_| bad("a validator set breaks a set rule"))
        };
        let mut staking = Staking {
            params,
            registry: record.registry,
            by_key: BTreeMap::new(),
            by_name: BTreeMap::new(),
            unbonding: record.unbonding,
            current: set(record.current)?,
            next: set(record.next)?,
            root: std::sync::OnceLock::new(),
        };
        if !staking.index() {
            return Err(bad("a key or a name is registered twice"));
        }
        if staking
            .unbonding
            .windows(2)
            .any(|w| w[0].release > w[1].release)
        {
            return Err(bad("the unbonding queue is out of order"));
        }
        Ok(staking)
    }

    /// The set that signs the height after the ledger's last block.
    pub fn current(&self) -> &Arc<ValidatorSet> {
        &self.current
    }

    /// The set of the epoch after the current one.
    pub fn next(&self) -> &Arc<ValidatorSet> {
        &self.next
    }

    /// The parameters it applies.
    pub fn params(&self) -> &StakingParams {
        &self.params
    }

    /// Every registration, by id.
    pub fn registry(&self) -> impl Iterator<Item = (ValidatorIndex, &Registration)> {
        self.registry
            .iter()
            .enumerate()
            .map(|(i, r)| (ValidatorIndex(i as u16), r))
    }

    /// The registration of `id`, if any.
    pub fn registration(&self, id: ValidatorIndex) -> Option<&Registration> {
        self.registry.get(id.as_usize())
    }

    /// The id registered for `key`, if any.
    pub fn id_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.by_key.get(key).copied()
    }

    /// The stake waiting to return, in the order it was unbonded.
    pub fn unbonding(&self) -> &[Unbonding] {
        &self.unbonding
    }

    /// Base units bonded or unbonding: money that is in no account's balance.
    pub fn locked_total(&self) -> u128 {
        let bonded: u128 = self.registry.iter().map(|r| u128::from(r.bond.0)).sum();
        let queued: u128 = self.unbonding.iter().map(|u| u128::from(u.amount.0)).sum();
        bonded + queued
    }

    /// The staking rules of `t` (an `Op::Register`, `Bond` or `Unbond`) at `height`, applied if
    /// they hold. The ledger has already taken `amount` (for `Register` and `Bond`) and the fee
    /// from `t.from`; on error nothing here changed.
    pub fn apply_op(&mut self, t: &Transfer, height: Height) -> Result<(), StakingError> {
        self.root = std::sync::OnceLock::new();
        let min = self.params.min_bond;
        match &t.op {
            Op::Pay => Ok(()),
            Op::Register { name, address } => {
                if self.by_key.contains_key(&t.to) {
                    return Err(StakingError::AlreadyRegistered(t.to));
                }
                if self.by_name.contains_key(name) {
                    return Err(StakingError::NameTaken(name.clone()));
                }
                if t.amount < min {
                    return Err(StakingError::BelowMinimum { min, got: t.amount });
                }
                let id = u16::try_from(self.registry.len())
                    .map(ValidatorIndex)
                    .map_err(|_| StakingError::RegistryFull)?;
                debug_assert!(name.len() <= MAX_NAME_BYTES && address.len() <= MAX_ADDRESS_BYTES);
                self.registry.push(Registration {
                    key: t.to,
                    owner: t.from,
                    name: name.clone(),
                    address: address.clone(),
                    bond: t.amount,
                    jailed: false,
                });
                self.by_key.insert(t.to, id);
                self.by_name.insert(name.clone(), id);
                Ok(())
            }
            Op::Bond => {
                let id = self.owned(t)?;
                let r = &mut self.registry[id.as_usize()];
                if r.jailed {
                    return Err(StakingError::Jailed);
                }
                let bond = r.bond.checked_add(t.amount).ok_or(StakingError::Overflow)?;
                if bond < min {
                    return Err(StakingError::BelowMinimum { min, got: bond });
                }
                r.bond = bond;
                Ok(())
            }
            Op::Unbond => {
                let id = self.owned(t)?;
                let r = &mut self.registry[id.as_usize()];
                let left = r
                    .bond
                    .checked_sub(t.amount)
                    .ok_or(StakingError::NotEnoughBonded {
                        asked: t.amount,
                        bonded: r.bond,
                    })?;
                if left.0 != 0 && left < min && !r.jailed {
                    return Err(StakingError::BelowMinimum { min, got: left });
                }
                r.bond = left;
                self.unbonding.push(Unbonding {
                    validator: id,
                    owner: r.owner,
                    amount: t.amount,
                    release: Height(height.0.saturating_add(self.params.unbonding_blocks)),
                });
                Ok(())
            }
        }
    }

    /// The id of `t.to`, if `t.from` owns it.
    fn owned(&self, t: &Transfer) -> Result<ValidatorIndex, StakingError> {
        let id = self.id_of(&t.to).ok_or(StakingError::NotRegistered(t.to))?;
        if self.registry[id.as_usize()].owner != t.from {
            return Err(StakingError::NotOwner);
        }
        Ok(id)
    }

    /// Whether `height` is the last of its epoch (the sets change after it).
    pub fn ends_epoch(&self, height: Height) -> bool {
        height.0.is_multiple_of(self.params.epoch_blocks)
    }

    /// Takes out the unbonding entries released at the end of `height` (their owners are to be
    /// credited), in queue order.
    pub fn release(&mut self, height: Height) -> Vec<Unbonding> {
        self.root = std::sync::OnceLock::new();
        let due = self
            .unbonding
            .iter()
            .take_while(|u| u.release <= height)
            .count();
        self.unbonding.drain(..due).collect()
    }

    /// The end of `height`: at the last height of an epoch, `current` becomes `next` and `next`
    /// is elected. Returns true when the set of the following epoch (`next`) was elected.
    pub fn end_height(&mut self, height: Height) -> bool {
        if !self.ends_epoch(height) {
            return false;
        }
        let elected = self.elect();
        self.current = std::mem::replace(&mut self.next, elected);
        self.root = std::sync::OnceLock::new();
        true
    }

    /// The set the bonds elect now: registrations not jailed with a bond, the `max_validators`
    /// largest bonds (ties to the lower id), in id order. The operations keep every bond 0 or at
    /// least `min_bond`, except a genesis validator's (trusted, exempt), so the minimum is not
    /// asked again here: a genesis validator below it keeps its seat.
    /// With nobody electable (every validator left or was jailed) the set stays as it is: a
    /// chain with no validators could never sign again.
    fn elect(&self) -> Arc<ValidatorSet> {
        let mut candidates: Vec<(ValidatorIndex, &Registration)> = self
            .registry()
            .filter(|(_, r)| !r.jailed && r.bond.0 > 0)
            .collect();
        candidates.sort_by(|a, b| b.1.bond.cmp(&a.1.bond).then(a.0.cmp(&b.0)));
        candidates.truncate(self.params.max_validators as usize);
        candidates.sort_by_key(|(id, _)| *id);
        let members: Vec<Member> = candidates
            .into_iter()
            .map(|(id, r)| Member {
                id,
                name: r.name.clone(),
                public_key: r.key,
                stake: Stake(r.bond.0),
                owner: r.owner,
            })
            .collect();
        match ValidatorSet::from_members(members) {
            Ok(set) => Arc::new(set),
            // Empty, or (never, the rules keep keys and names unique) malformed.
            Err(_) => self.next.clone(),
        }
    }

    /// The commitment the state root takes (`StakingRecord::root`).
    pub fn root(&self) -> Hash {
        *self.root.get_or_init(|| {
            staking_root(
                &self.registry,
                &self.unbonding,
                self.current.hash(),
                self.next.hash(),
            )
        })
    }
}

impl StakingRecord {
    /// The commitment the state root takes: the registry, the queue and both sets' hashes, the
    /// integers as fixed-width big-endian bytes and the strings length-prefixed. Computed from
    /// the record alone, so a staged block's state root needs no set built.
    pub fn root(&self) -> Hash {
        staking_root(
            &self.registry,
            &self.unbonding,
            crate::validators::members_hash(&self.current),
            crate::validators::members_hash(&self.next),
        )
    }
}

fn staking_root(
    registry: &[Registration],
    unbonding: &[Unbonding],
    current: Hash,
    next: Hash,
) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/staking");
    h.update(&(registry.len() as u64).to_be_bytes());
    for r in registry {
        h.update(&r.key.0);
        h.update(&r.owner.0);
        for s in [&r.name, &r.address] {
            h.update(&(s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        h.update(&r.bond.0.to_be_bytes());
        h.update(&[u8::from(r.jailed)]);
    }
    h.update(&(unbonding.len() as u64).to_be_bytes());
    for u in unbonding {
        h.update(&u.validator.0.to_be_bytes());
        h.update(&u.owner.0);
        h.update(&u.amount.0.to_be_bytes());
        h.update(&u.release.0.to_be_bytes());
    }
    h.update(&current.0);
    h.update(&next.0);
    Hash(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::ledger::Ledger;
    use crate::tx::SignedTransfer;
    use crate::types::TimestampMs;
    use crate::validators::{GenesisBalance, insecure_dev_validators};

    const CHAIN: &str = "staking-test";

    fn key(name: &str) -> Keypair {
        Keypair::insecure_from_name(name)
    }

    /// Two genesis validators of stake 100, epochs of 2 heights, unbonding after 4, a minimum
    /// bond of 50, and alice funded with 1,000.
    fn genesis() -> Genesis {
        let (_, validators) = insecure_dev_validators(&[100, 100]);
        Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![GenesisBalance {
                account: key("alice").public_key(),
                amount: Amount(1_000),
            }],
            params: ConsensusParams {
                epoch_blocks: 2,
                unbonding_blocks: 4,
                min_bond: Amount(50),
                max_validators: 3,
                ..ConsensusParams::default()
            },
        }
    }

    fn op(from: &str, to: &str, amount: u64, nonce: u64, op: Op) -> SignedTransfer {
        Transfer {
            from: key(from).public_key(),
            to: key(to).public_key(),
            amount: Amount(amount),
            fee: Amount(1),
            nonce,
            op,
        }
        .sign(&key(from), CHAIN)
    }

    fn register(from: &str, validator: &str, amount: u64, nonce: u64) -> SignedTransfer {
        let name = validator.to_string();
        let address = "127.0.0.1:9000".to_string();
        op(
            from,
            validator,
            amount,
            nonce,
            Op::Register { name, address },
        )
    }

    /// Applies a block of `txs` at `height`, proposed by the first member of the current set.
    fn apply(
        ledger: &mut Ledger,
        height: u64,
        txs: &[SignedTransfer],
    ) -> crate::ledger::BlockOutcome {
        let set = ledger.staking().unwrap().current().clone();
        let proposer = set.iter().next().unwrap().0;
        ledger
            .apply_block(CHAIN, Height(height), proposer, &set, txs, &[])
            .unwrap()
    }

    fn ids(set: &ValidatorSet) -> Vec<u16> {
        set.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn a_registered_validator_joins_the_set_one_epoch_after_the_next_and_conservation_holds() {
        let g = genesis();
        let mut ledger = Ledger::from_genesis(&g);
        let supply = ledger.total_supply();
        assert_eq!(supply, 1_000 + 200, "balances and genesis bonds");
        // Height 1 (epoch 0): alice registers validator3 with 60.
        let out = apply(&mut ledger, 1, &[register("alice", "validator3", 60, 0)]);
        assert!(out.staking_refused.is_empty());
        assert!(out.staking.is_some(), "the store keeps the new state");
        let staking = ledger.staking().unwrap();
        let id = staking.id_of(&key("validator3").public_key()).unwrap();
        assert_eq!(id, ValidatorIndex(2), "the next registration number");
        assert_eq!(
            staking.registration(id).unwrap().owner,
            key("alice").public_key()
        );
        assert_eq!(
            ledger.account(&key("alice").public_key()).balance,
            Amount(1_000 - 61)
        );
        // End of epoch 0 (height 2): elected into `next`, not yet signing.
        apply(&mut ledger, 2, &[]);
        let staking = ledger.staking().unwrap();
        assert_eq!(ids(staking.current()), vec![0, 1]);
        assert_eq!(ids(staking.next()), vec![0, 1, 2]);
        // End of epoch 1 (height 4): it signs from height 5.
        apply(&mut ledger, 3, &[]);
        apply(&mut ledger, 4, &[]);
        let current = ledger.staking().unwrap().current().clone();
        assert_eq!(ids(&current), vec![0, 1, 2]);
        assert_eq!(current.stake_of(ValidatorIndex(2)), Stake(60));
        // Its reward goes to its owner.
        let before = ledger.account(&key("alice").public_key()).balance;
        let out = apply(&mut ledger, 5, &[]);
        let paid = out.rewards.iter().find(|r| r.validator == id).unwrap();
        assert_eq!(paid.account, key("alice").public_key());
        assert_eq!(
            ledger.account(&key("alice").public_key()).balance,
            Amount(before.0 + paid.amount.0)
        );
        // Money is created only by subsidies.
        let minted: u128 = (1..=5)
            .map(|h| u128::from(crate::ledger::subsidy(Height(h)).0))
            .sum();
        assert_eq!(ledger.total_supply(), supply + minted);
    }

    #[test]
    fn an_owner_of_two_validators_is_paid_once_their_sum() {
        let mut g = genesis();
        g.params.max_validators = 4;
        let mut ledger = Ledger::from_genesis(&g);
        let alice = key("alice").public_key();
        apply(
            &mut ledger,
            1,
            &[
                register("alice", "validator3", 60, 0),
                register("alice", "validator4", 70, 1),
            ],
        );
        for h in 2..=4 {
            apply(&mut ledger, h, &[]);
        }
        assert_eq!(ids(ledger.staking().unwrap().current()), vec![0, 1, 2, 3]);
        let before = ledger.account(&alice).balance;
        let out = apply(&mut ledger, 5, &[]);
        let to_alice: u64 = out
            .rewards
            .iter()
            .filter(|r| r.account == alice)
            .map(|r| r.amount.0)
            .sum();
        assert_eq!(
            out.rewards.iter().filter(|r| r.account == alice).count(),
            2,
            "two validators' shares"
        );
        assert!(to_alice > 0);
        assert_eq!(out.touched.iter().filter(|(k, _)| *k == alice).count(), 1);
        assert_eq!(ledger.account(&alice).balance, Amount(before.0 + to_alice));
    }

    #[test]
    fn genesis_validators_below_the_minimum_bond_keep_their_seats() {
        let mut g = genesis();
        g.params.min_bond = Amount(1_000_000);
        let mut ledger = Ledger::from_genesis(&g);
        apply(&mut ledger, 1, &[]);
        apply(&mut ledger, 2, &[]);
        assert_eq!(ids(ledger.staking().unwrap().next()), vec![0, 1]);
    }

    #[test]
    fn the_largest_bonds_are_elected_up_to_the_maximum() {
        let g = genesis(); // max_validators 3
        let mut ledger = Ledger::from_genesis(&g);
        apply(
            &mut ledger,
            1,
            &[
                register("alice", "validator3", 60, 0),
                register("alice", "validator4", 70, 1),
            ],
        );
        apply(&mut ledger, 2, &[]);
        // 100, 100 and 70: ids 0, 1 and 3; validator3's 60 waits.
        assert_eq!(ids(ledger.staking().unwrap().next()), vec![0, 1, 3]);
    }

    #[test]
    fn a_refused_staking_operation_costs_its_fee_and_nonce_and_changes_nothing_else() {
        let g = genesis();
        let mut ledger = Ledger::from_genesis(&g);
        let alice = key("alice").public_key();
        let cases = [
            // Below the minimum bond.
            register("alice", "validator3", 49, 0),
            // A genesis validator's key again.
            register("alice", "validator1", 60, 1),
            // Bonding to a validator alice does not own.
            op("alice", "validator1", 10, 2, Op::Bond),
            // Unbonding from an unregistered key.
            op("alice", "nobody", 10, 3, Op::Unbond),
        ];
        let before = ledger.staking().unwrap().clone();
        let out = apply(&mut ledger, 1, &cases);
        assert_eq!(
            out.staking_refused,
            cases.iter().map(SignedTransfer::hash).collect::<Vec<_>>()
        );
        assert_eq!(ledger.staking().unwrap(), &before);
        assert_eq!(ledger.account(&alice).balance, Amount(1_000 - 4));
        assert_eq!(ledger.account(&alice).nonce, 4);
        let mut staking = before.clone();
        let t = &cases[2].transfer;
        assert_eq!(staking.apply_op(t, Height(1)), Err(StakingError::NotOwner));
    }

    #[test]
    fn unbonded_stake_returns_to_the_owner_after_the_period_and_leaves_the_set() {
        let g = genesis();
        let mut ledger = Ledger::from_genesis(&g);
        let v1 = key("validator1").public_key();
        // validator1 owns itself (a genesis validator) but has no balance for the fee yet: give
        // it one block of rewards first.
        apply(&mut ledger, 1, &[]);
        let balance = ledger.account(&v1).balance;
        // Partial unbond below the minimum is refused; a full one is taken.
        let out = apply(
            &mut ledger,
            2,
            &[
                op("validator1", "validator1", 60, 0, Op::Unbond),
                op("validator1", "validator1", 100, 1, Op::Unbond),
            ],
        );
        assert_eq!(out.staking_refused.len(), 1);
        let staking = ledger.staking().unwrap();
        assert_eq!(
            staking.registration(ValidatorIndex(0)).unwrap().bond,
            Amount(0)
        );
        assert_eq!(staking.unbonding()[0].release, Height(6));
        // Elected at the end of height 2 without it; it still signs epoch 1 (heights 3 and 4).
        assert_eq!(ids(staking.next()), vec![1]);
        assert_eq!(ids(staking.current()), vec![0, 1]);
        for h in 3..=5 {
            apply(&mut ledger, h, &[]);
        }
        assert_eq!(ids(ledger.staking().unwrap().current()), vec![1]);
        assert_eq!(
            ledger.staking().unwrap().unbonding().len(),
            1,
            "not yet due"
        );
        let before = ledger.account(&v1).balance;
        let out = apply(&mut ledger, 6, &[]);
        assert!(ledger.staking().unwrap().unbonding().is_empty());
        let reward: u64 = out
            .rewards
            .iter()
            .filter(|r| r.account == v1)
            .map(|r| r.amount.0)
            .sum();
        assert_eq!(reward, 0, "no longer in the set");
        assert_eq!(ledger.account(&v1).balance, Amount(before.0 + 100));
        assert!(balance.0 > 0);
    }

    #[test]
    fn with_every_validator_gone_the_set_stays_rather_than_empty() {
        let g = genesis();
        let mut ledger = Ledger::from_genesis(&g);
        apply(&mut ledger, 1, &[]);
        apply(
            &mut ledger,
            2,
            &[
                op("validator1", "validator1", 100, 0, Op::Unbond),
                op("validator2", "validator2", 100, 0, Op::Unbond),
            ],
        );
        assert_eq!(ids(ledger.staking().unwrap().next()), vec![0, 1]);
    }

    #[test]
    fn the_stored_state_round_trips_and_a_hostile_one_is_refused() {
        let g = genesis();
        let mut ledger = Ledger::from_genesis(&g);
        apply(&mut ledger, 1, &[register("alice", "validator3", 60, 0)]);
        let staking = ledger.staking().unwrap();
        let bytes = crate::codec::encode(&staking.record());
        let back = Staking::decode(&bytes, &g.params).unwrap();
        assert_eq!(&back, staking);
        assert_eq!(back.root(), staking.root());
        // A key registered twice.
        let mut record = staking.record();
        record.registry[2].key = record.registry[0].key;
        let bytes = crate::codec::encode(&record);
        assert!(matches!(
            Staking::decode(&bytes, &g.params),
            Err(StakingDecodeError::Inconsistent(_))
        ));
        // Truncated bytes.
        let bytes = crate::codec::encode(&staking.record());
        assert!(Staking::decode(&bytes[..bytes.len() - 3], &g.params).is_err());
        // The state root commits to the staking state.
        let mut other = ledger.clone();
        apply(&mut other, 2, &[]);
        assert_ne!(other.state_root(), ledger.state_root());
    }
}
