//! The invariants, checked after every step. Each check records a `Violation` with the step and
//! time; the simulation stops at the first one.
//!
//! Of honest nodes (and silent ones, honest but mute):
//! - agreement: no two finalize different blocks at one height (`fork`);
//! - validity: every finalized block extends the one finalized below it, is later than it, was
//!   built by the proposer of one of the rounds up to its certificate's, has a certificate that
//!   verifies, and applies to the checker's own copy of the ledger to exactly the state root and
//!   outcome it names (`validity`, `bad-certificate`, `state-root`, `rewards`, `ledger-diverged`);
//! - conservation: after height `h` the total of all balances, bonds and unbonding stake, in the
//!   stored ledger and in the live core's, is the genesis total (balances and bonds) plus the
//!   subsidies of heights 1 to `h`, less what was slashed: fees and staking move money, only
//!   subsidies create it (`conservation`);
//! - lock: a node that precommitted block `B` in round `r` (it locked `B`) prepares a different
//!   block `B'` in a later round `r'` only if prepares for `B'` worth a quorum exist from a round
//!   `vr` with `r ≤ vr < r'` (Algorithm 1, L28: `lockedRound ≤ vr`). Its lock is its precommit of
//!   the highest round, kept across crashes. What prepares exist is learned from every delivered
//!   prepare and every polka a delivered proposal carries, whoever sent them, once their
//!   signatures verify: a superset of what the node itself can know, so the check never blames a
//!   node for a quorum it might have seen (`lock`);
//! - no double signing, nothing sent before it is persisted, heights never go back.
//!
//! Every check that needs a validator set takes the set of its height (ADR 0026): the checker
//! learns them from its own ledger (`reference`, the chain it replays), whose staking state holds
//! the set of the next height and of the next epoch (`sets`). Signatures are judged against the
//! registry (every id with its key: ids are never reused, so a signature's verdict does not
//! depend on the set); membership and stake against the set of the height. The Byzantine stake
//! of each set must stay below a third (`byzantine-share`: the scenario broke the fault model).
//!
//! This module owns the checker's memory and its entry points (what the simulation tells it);
//! the rules live by concern in [`validity`] (agreement, validity, conservation), [`locks`] (the
//! lock rule) and [`signatures`] (verdicts computed once per run).

mod locks;
mod signatures;
mod validity;
mod verdicts;

pub use signatures::BATCH;
pub use verdicts::{second_thread_for, verifies_on_one_thread};

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use timed_core::consensus::SignPoint;
use timed_core::crypto::{PublicKey, Signature};
use timed_core::ledger::{BlockOutcome, Ledger};
use timed_core::message::{Message, VoteKind};
use timed_core::types::{Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{ConsensusParams, Genesis, Member, ValidatorSet};

use locks::HeightLocks;

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub step: u64,
    pub time_ms: u64,
    pub node: Option<usize>,
    pub rule: &'static str,
    pub detail: String,
}

/// The slot a signed message fills: one message per point (height, round, step) per validator,
/// the core's own `SignPoint`.
pub fn slot_of(msg: &Message) -> Option<SignPoint> {
    SignPoint::of_signed(msg)
}

/// The signer a signed message names.
pub fn signer_of(msg: &Message) -> Option<ValidatorIndex> {
    match msg {
        Message::Proposal(p) => Some(p.proposer),
        Message::Vote(v) => Some(v.validator),
        _ => None,
    }
}

fn digest(msg: &Message) -> Hash {
    Hash(*blake3::hash(&timed_core::codec::encode(msg)).as_bytes())
}

/// What the checker found of one message on the wire, shared by all its deliveries (the copies
/// of one broadcast): the verdict on its signature, and whether the prepare it is has been
/// learned for good. The copies after the first cost neither a look-up nor a lock-check update.
#[derive(Default)]
pub struct Seen {
    verdict: Cell<Option<bool>>,
    learned: Cell<bool>,
    /// Told to `on_wire` already.
    wired: Cell<bool>,
}

/// What the checker remembers across the whole run.
pub struct Checker {
    chain_id: String,
    /// The set of each epoch known so far (epoch `e` is heights `e·E + 1 ..= (e + 1)·E`): the
    /// genesis set for epochs 0 and 1, then what the reference ledger elects.
    sets: BTreeMap<u64, Arc<ValidatorSet>>,
    /// Registrations the verdicts know (the registry only grows).
    registered: usize,
    /// The key each node signs with (none for a twin: unchecked), and its id once registered.
    keys: Vec<Option<PublicKey>>,
    ids: Vec<Option<ValidatorIndex>>,
    /// Keys of the validators that behave Byzantine (at the start or later): their stake in
    /// every set must stay below a third.
    byzantine: BTreeSet<PublicKey>,
    /// Base units slashed in all, by the height where the total last changed.
    slashed: BTreeMap<Height, u128>,
    params: ConsensusParams,
    /// Hash and timestamp of the genesis (height 0) and of each height's decided block.
    chain: BTreeMap<Height, (Hash, TimestampMs)>,
    /// The checker's own ledger, after the highest decided height.
    reference: Ledger,
    reference_height: Height,
    /// Total supply after each height: the genesis balances, then plus each height's subsidy.
    supply: Vec<u128>,
    /// The first block finalized at each height among checked nodes, and by whom.
    decided: BTreeMap<Height, (Hash, usize)>,
    /// Digest of the outcome (rewards, fees, touched accounts) per height.
    outcomes: BTreeMap<Height, (Hash, usize)>,
    /// The first outcome of the last height decided, whole: a node's outcome that equals it
    /// needs no digest (an encoding and a hash of each node's outcome was 3 % of a scale run).
    last_outcome: Option<BlockOutcome>,
    /// Every signed message each node ever persisted, by slot; never pruned, survives crashes.
    signed: Vec<BTreeMap<SignPoint, Hash>>,
    /// Signature verdicts on proposals and votes by what they depend on, shared by every
    /// node and by the certificate checks: a broadcast is verified once, not once per receiver,
    /// and a precommit once whatever the certificates it appears in. Only looked up, never
    /// iterated, so its order cannot reach an output.
    /// Votes put on the wire (`on_wire`) are verified in batches, at about half the cost of one
    /// by one, on a second thread where there is one (`verdicts`). A batch gives each vote the
    /// verdict it gets alone (the one signature rule), so what is verified together, and where,
    /// changes no verdict.
    verdicts: verdicts::Verdicts,
    /// Certificate signatures found good, per (height, round, block), by validator index: a
    /// certificate that grows by late precommits (`CertificateExtended`, some 30 per node and
    /// height with 100 validators) costs a comparison per signature here instead of an encoding
    /// and a hash of each (two thirds of a 100-validator run went there). Only looked up, never
    /// iterated.
    cert_signatures: HashMap<(Height, Round, Hash), Vec<Option<Signature>>>,
    /// Locks and prepares per height, for the heights above `lock_floor`.
    locks: BTreeMap<Height, HeightLocks>,
    /// Every checked node has stored this height (it signs nothing at or below it any more), and
    /// the lock check has forgotten it. Never goes down.
    lock_floor: Height,
    /// Which nodes are checked (honest, or silent: honest but mute); the others' stores do not
    /// hold `lock_floor` back.
    checked: Vec<bool>,
    /// Highest height each node stored durably.
    stored_top: Vec<Height>,
    /// Height of each node's live core, within one incarnation.
    live_height: Vec<Height>,
    /// Per node, the newest live supply not yet checked: of a height the reference has not
    /// applied yet (`after_step`).
    pending_supply: Vec<Option<(Height, u128)>>,
    pub violations: Vec<Violation>,
    /// Transactions in the blocks decided so far.
    pub txs_decided: u64,
    pub step: u64,
    pub now: u64,
}

impl Checker {
    /// A checker for the chain of `genesis`, whose validator set is `set`, one node per validator.
    pub fn new(genesis: &Genesis, set: ValidatorSet) -> Checker {
        let n = set.len();
        Checker::with_nodes(genesis, set, n)
    }

    /// As `new`, for `n` nodes: the validators and their twins (nodes that share a key).
    pub fn with_nodes(genesis: &Genesis, set: ValidatorSet, n: usize) -> Checker {
        let reference = Ledger::from_genesis(genesis);
        let parallel = verdicts::second_thread_for(set.len());
        let verdicts = verdicts::Verdicts::new(set.clone(), &genesis.chain_id, parallel);
        let registered = set.len();
        let set = Arc::new(set);
        Checker {
            chain_id: genesis.chain_id.clone(),
            sets: BTreeMap::from([(0, set.clone()), (1, set)]),
            registered,
            keys: vec![None; n],
            ids: (0..n)
                .map(|i| (i < registered).then_some(ValidatorIndex(i as u16)))
                .collect(),
            byzantine: BTreeSet::new(),
            slashed: BTreeMap::new(),
            params: genesis.params.clone(),
            chain: BTreeMap::from([(Height(0), (genesis.hash(), genesis.genesis_time_ms))]),
            supply: vec![reference.total_supply()],
            reference,
            reference_height: Height(0),
            decided: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            last_outcome: None,
            signed: vec![BTreeMap::new(); n],
            verdicts,
            cert_signatures: HashMap::new(),
            locks: BTreeMap::new(),
            lock_floor: Height(0),
            checked: vec![true; n],
            stored_top: vec![Height(0); n],
            live_height: vec![Height(0); n],
            pending_supply: vec![None; n],
            violations: vec![],
            txs_decided: 0,
            step: 0,
            now: 0,
        }
    }

    fn fail(&mut self, node: Option<usize>, rule: &'static str, detail: String) {
        self.violations.push(Violation {
            step: self.step,
            time_ms: self.now,
            node,
            rule,
            detail,
        });
    }

    /// A node persisted a record: a signed message must not contradict any it signed before.
    pub fn on_persist_signed(&mut self, node: usize, height: Height, msg: &Message) {
        let Some(slot) = slot_of(msg) else { return };
        if slot.height != height {
            self.fail(
                Some(node),
                "persist-height",
                format!(
                    "record of height {height} holds a message of {}",
                    slot.height
                ),
            );
        }
        let d = digest(msg);
        match self.signed[node].get(&slot) {
            Some(prev) if *prev != d => self.fail(
                Some(node),
                "double-sign",
                format!(
                    "persisted two different {} for height {} round {}",
                    msg.kind(),
                    slot.height,
                    slot.round
                ),
            ),
            Some(_) => {}
            None => {
                self.signed[node].insert(slot, d);
                if let Message::Vote(v) = msg {
                    self.on_own_vote(node, v);
                }
            }
        }
    }

    /// Whether `node`'s store counts for `lock_floor` (the simulator says so once per node, and
    /// again when a fault changes a node's behaviour). Every node counts until told otherwise.
    pub fn set_checked(&mut self, node: usize, checked: bool) {
        self.checked[node] = checked;
        self.raise_lock_floor();
    }

    /// A message reached a node: the verdict on its signature (see `signature_ok`), and the
    /// prepares it shows, in it or in its polka, join what the lock check knows exists.
    pub fn on_deliver(&mut self, msg: &Message) -> bool {
        self.on_deliver_seen(msg, &Seen::default())
    }

    /// As `on_deliver`, for one copy of a message whose other copies may have been delivered
    /// before: what `seen` holds of them is not computed again.
    pub fn on_deliver_seen(&mut self, msg: &Message, seen: &Seen) -> bool {
        let ok = match seen.verdict.get() {
            Some(ok) => ok,
            None => {
                let ok = self.signature_ok(msg);
                seen.verdict.set(Some(ok));
                ok
            }
        };
        match msg {
            Message::Vote(v) if ok && v.kind == VoteKind::Prepare && !seen.learned.get() => {
                if let Some(block) = v.block {
                    let learned = self.learn_prepare(v.height, v.round, block, v.validator);
                    seen.learned.set(learned);
                }
            }
            Message::Proposal(p) => {
                if let Some(polka) = &p.polka {
                    self.learn_polka(polka);
                }
            }
            _ => {}
        }
        ok
    }

    /// A node sent a message: its own signed ones must have been persisted first, unchanged.
    pub fn on_send(&mut self, node: usize, msg: &Message) {
        let Some(slot) = slot_of(msg) else { return };
        if signer_of(msg).is_none() || signer_of(msg) != self.ids[node] {
            return;
        }
        match self.signed[node].get(&slot) {
            None => self.fail(
                Some(node),
                "send-before-persist",
                format!(
                    "sent its {} for height {} round {} before persisting it",
                    msg.kind(),
                    slot.height,
                    slot.round
                ),
            ),
            Some(d) if *d != digest(msg) => self.fail(
                Some(node),
                "double-sign",
                format!(
                    "sent a {} for height {} round {} other than the one it persisted",
                    msg.kind(),
                    slot.height,
                    slot.round
                ),
            ),
            Some(_) => {}
        }
    }

    /// After a step of a live node: its core's height never goes back within an incarnation,
    /// and (`ledger`, of honest nodes) when it moved up, its ledger conserves money.
    pub fn after_step(&mut self, node: usize, height: Height, ledger: Option<&Ledger>) {
        if height < self.live_height[node] {
            let detail = format!(
                "core height went from {} to {height}",
                self.live_height[node]
            );
            self.fail(Some(node), "height-regressed", detail);
        }
        if height != self.live_height[node]
            && let Some(ledger) = ledger
        {
            let supply = ledger.total_supply();
            let h = Height(height.0 - 1);
            if h <= self.reference_height {
                self.check_supply(node, "the core's ledger", h, supply);
            } else {
                // What the block burnt is known once the reference applies it (the store, and
                // so the reference, may lag the live core): checked then (`check_pending`).
                self.pending_supply[node] = Some((h, supply));
            }
        }
        self.live_height[node] = height;
    }

    /// A node's storage lost blocks or records: it now holds blocks up to `top` only. What it
    /// signed is still remembered here, so signing again differently is still double signing.
    pub fn on_storage_lost(&mut self, node: usize, top: Height) {
        self.stored_top[node] = top;
        self.live_height[node] = Height(0);
    }

    /// A node restarted from its durable state (`checked`: an honest node, whose store the
    /// checker follows).
    pub fn on_restart(&mut self, node: usize, height: Height, checked: bool) {
        self.live_height[node] = height;
        if checked && height.0 != self.stored_top[node].0 + 1 {
            let detail = format!(
                "restored at height {height} but its store ends at {}",
                self.stored_top[node]
            );
            self.fail(Some(node), "restore-height", detail);
        }
    }

    pub fn decided(&self) -> &BTreeMap<Height, (Hash, usize)> {
        &self.decided
    }

    /// The key node `node` signs with (a candidate's id is learned when it registers); `None`
    /// for a twin, whose messages are not its own to check.
    pub fn set_key(&mut self, node: usize, key: Option<PublicKey>) {
        self.keys[node] = key;
        self.ids[node] = key.and_then(|k| self.reference.staking()?.id_of(&k));
    }

    /// `key` belongs to a validator that behaves Byzantine: its stake counts against the third.
    pub fn set_byzantine(&mut self, key: PublicKey) {
        self.byzantine.insert(key);
    }

    /// The ledger the checker replays, after the highest height decided.
    pub fn reference(&self) -> &Ledger {
        &self.reference
    }

    fn epoch(&self, h: Height) -> u64 {
        h.0.saturating_sub(1) / self.params.epoch_blocks.max(1)
    }

    /// The set of height `h` if the checker knows it (up to the end of the epoch after the
    /// reference's).
    pub fn set_known(&self, h: Height) -> Option<&Arc<ValidatorSet>> {
        self.sets.get(&self.epoch(h))
    }

    /// The set of height `h`, or for a height beyond what the checker knows, the newest set it
    /// knows (what a node that far ahead would have to go by, too).
    pub fn set_at(&self, h: Height) -> &Arc<ValidatorSet> {
        let e = self.epoch(h);
        self.sets
            .range(..=e)
            .next_back()
            .map(|(_, s)| s)
            .expect("the genesis set is epoch 0's")
    }

    /// The stake of `set` held by Byzantine validators.
    fn byzantine_stake(&self, set: &ValidatorSet) -> u64 {
        set.iter()
            .filter(|(_, v)| self.byzantine.contains(&v.public_key))
            .map(|(_, v)| v.stake.0)
            .sum()
    }

    /// Whether Byzantine validators hold less than a third of `set`'s stake.
    fn byzantine_within(&self, set: &ValidatorSet) -> bool {
        3 * u128::from(self.byzantine_stake(set)) < u128::from(set.total_stake().0)
    }

    /// After the reference applied height `h`: the sets its staking state names (the set of
    /// `h + 1` and of the epoch after), new registrations' keys for the verdicts, and the
    /// Byzantine share of a new set.
    fn learn_sets(&mut self, h: Height) {
        let Some(staking) = self.reference.staking() else {
            return;
        };
        let e = self.epoch(h.next());
        let (current, next) = (staking.current().clone(), staking.next().clone());
        let mut new_sets = vec![];
        // The next epoch's set is final only once its epoch starts: evidence that jails a member
        // takes it out before then (ADR 0026 point 6), so the newest word replaces the old.
        for (epoch, set) in [(e, current), (e + 1, next)] {
            if self.sets.get(&epoch).map(|s| s.hash()) != Some(set.hash()) {
                self.sets.insert(epoch, set.clone());
                new_sets.push((epoch, set));
            }
        }
        let grown = staking
            .registration(ValidatorIndex(self.registered as u16))
            .is_some();
        if grown {
            let members: Vec<Member> = staking
                .registry()
                .map(|(id, r)| Member {
                    id,
                    name: r.name.clone(),
                    public_key: r.key,
                    stake: Stake(1),
                    owner: r.owner,
                })
                .collect();
            let count = members.len();
            // Ids are never reused and a key is registered once: a signature verifies against
            // the registry exactly when it does against any set holding its id.
            if let Ok(registry) = ValidatorSet::from_members(members) {
                self.verdicts.renewed(registry);
                self.registered = count;
            }
            for i in 0..self.keys.len() {
                if let Some(k) = self.keys[i] {
                    self.ids[i] = self.reference.staking().and_then(|s| s.id_of(&k));
                }
            }
        }
        // A scenario beyond the model from the genesis on (a test of what breaks then) is its
        // own business; a change that takes the Byzantine share to a third is the draw's fault.
        let genesis_within = self.byzantine_within(&self.sets[&0]);
        for (epoch, set) in new_sets {
            let byzantine = self.byzantine_stake(&set);
            if genesis_within && !self.byzantine_within(&set) {
                let detail = format!(
                    "the set of epoch {epoch} (from height {}) gives Byzantine validators {byzantine} \
                     of {} stake: a third or more, beyond the fault model",
                    epoch * self.params.epoch_blocks.max(1) + 1,
                    set.total_stake().0
                );
                self.fail(None, "byzantine-share", detail);
            }
        }
    }
}
