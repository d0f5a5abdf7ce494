//! The invariants, checked after every step. Each check records a `Violation` with the step and
//! time; the simulation stops at the first one.
//!
//! Of honest nodes (and silent ones, honest but mute):
//! - agreement: no two finalize different blocks at one height (`fork`);
//! - validity: every finalized block extends the one finalized below it, is later than it, was
//!   built by the proposer of one of the rounds up to its certificate's, has a certificate that
//!   verifies, and applies to the checker's own copy of the ledger to exactly the state root and
//!   outcome it names (`validity`, `bad-certificate`, `state-root`, `rewards`, `ledger-diverged`);
//! - conservation: after height `h` the total of all balances, in the stored ledger and in the
//!   live core's, is the genesis total plus the subsidies of heights 1 to `h`: fees move money,
//!   only subsidies create it (`conservation`);
//! - lock: a node that precommitted block `B` in round `r` (it locked `B`) prepares a different
//!   block `B'` in a later round `r'` only if prepares for `B'` worth a quorum exist from a round
//!   `vr` with `r ≤ vr < r'` (Algorithm 1, L28: `lockedRound ≤ vr`). Its lock is its precommit of
//!   the highest round, kept across crashes. What prepares exist is learned from every delivered
//!   prepare and every polka a delivered proposal carries, whoever sent them, once their
//!   signatures verify: a superset of what the node itself can know, so the check never blames a
//!   node for a quorum it might have seen (`lock`);
//! - no double signing, nothing sent before it is persisted, heights never go back.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use timed_core::block::{self, Certificate, CommitSignature};
use timed_core::consensus::Finalized;
use timed_core::crypto::Signature;
use timed_core::ledger::{BlockOutcome, Ledger, subsidy};
use timed_core::message::{self, Message, Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{ConsensusParams, Genesis, ValidatorSet};

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub step: u64,
    pub time_ms: u64,
    pub node: Option<usize>,
    pub rule: &'static str,
    pub detail: String,
}

/// The slot a signed message fills: one message per (height, round, kind) per validator.
pub fn slot_of(msg: &Message) -> Option<(Height, u32, u8)> {
    match msg {
        Message::Proposal(p) => Some((p.height, p.round.0, 0)),
        Message::Vote(v) => Some((v.height, v.round.0, 1 + v.kind as u8)),
        _ => None,
    }
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

/// What a signature verdict depends on: the fields the signature covers, and the signature (a
/// proposal's body and polka are outside its signature). Cheaper than hashing an encoding of the
/// whole message, which each delivery did (a tenth of a 100-validator run).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum VerdictKey {
    Proposal(
        Height,
        Round,
        Option<Round>,
        Hash,
        ValidatorIndex,
        Signature,
    ),
    Vote(Height, Round, bool, Option<Hash>, ValidatorIndex, Signature),
}

/// Whether two signatures are the same bytes: without a call to `memcmp` per comparison, which
/// a certificate extension makes for each of its signatures (4 % of a scale run's time).
fn same(a: &Signature, b: &Signature) -> bool {
    a.0.iter().zip(&b.0).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn vote_key(v: &Vote) -> VerdictKey {
    VerdictKey::Vote(
        v.height,
        v.round,
        v.kind == VoteKind::Prepare,
        v.block,
        v.validator,
        v.signature,
    )
}

/// Signature verdicts kept before the cache starts over (about 40 bytes each).
const MAX_VERDICTS: usize = 1 << 20;

/// Certificates (height, round, block) whose good signatures are kept before that cache starts
/// over (6.5 kB each with 100 validators).
const MAX_CERTIFICATES: usize = 4 * 1024;

/// Votes verified as one batch at most: a bad signature in a batch costs a single check of each
/// of its votes (`message::verify_votes`), and beyond a few dozen a batch is hardly cheaper per
/// signature.
pub const BATCH: usize = 32;

/// Votes waiting for a batch at most; more are verified at once.
const MAX_PENDING: usize = 4 * 1024;

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

/// What the lock check knows of one height.
#[derive(Default)]
struct HeightLocks {
    /// Each checked node's lock: the highest round in which it precommitted a block, and the block.
    locks: BTreeMap<usize, (Round, Hash)>,
    /// Validators whose prepare for a block in a round was delivered somewhere (or shown in a
    /// polka) with a good signature, by (round, block).
    prepares: BTreeMap<(Round, Hash), BTreeSet<ValidatorIndex>>,
}

/// What the checker remembers across the whole run.
pub struct Checker {
    chain_id: String,
    set: ValidatorSet,
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
    signed: Vec<BTreeMap<(Height, u32, u8), Hash>>,
    /// Signature verdicts on proposals and votes by what they depend on, shared by every
    /// node and by the certificate checks: a broadcast is verified once, not once per receiver,
    /// and a precommit once whatever the certificates it appears in. Only looked up, never
    /// iterated, so its order cannot reach an output.
    verdicts: HashMap<VerdictKey, bool>,
    /// Votes put on the wire whose verdict is not known yet (`on_wire`): the first delivery that
    /// needs a verdict the cache lacks verifies them all, in batches, at about half the cost of
    /// one by one. A batch gives each vote the verdict it gets alone (the one signature rule), so
    /// what is verified together changes no verdict.
    pending: Vec<Vote>,
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
        Checker {
            chain_id: genesis.chain_id.clone(),
            set,
            params: genesis.params.clone(),
            chain: BTreeMap::from([(Height(0), (genesis.hash(), genesis.genesis_time_ms))]),
            supply: vec![reference.total_supply()],
            reference,
            reference_height: Height(0),
            decided: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            last_outcome: None,
            signed: vec![BTreeMap::new(); n],
            verdicts: HashMap::new(),
            pending: vec![],
            cert_signatures: HashMap::new(),
            locks: BTreeMap::new(),
            lock_floor: Height(0),
            checked: vec![true; n],
            stored_top: vec![Height(0); n],
            live_height: vec![Height(0); n],
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
        if slot.0 != height {
            self.fail(
                Some(node),
                "persist-height",
                format!("record of height {height} holds a message of {}", slot.0),
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
                    slot.0,
                    slot.1
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

    /// A vote is on its way to a node: its verdict will be needed, and is computed with the
    /// others' at the first delivery that needs one (`signature_ok`). Once per message (`seen`
    /// is shared by its copies); a vote that reaches nobody is never verified.
    pub fn on_wire(&mut self, msg: &Message, seen: &Seen) {
        if seen.wired.replace(true) || seen.verdict.get().is_some() {
            return;
        }
        if let Message::Vote(v) = msg
            && !self.verdicts.contains_key(&vote_key(v))
        {
            self.pending.push(v.clone());
            if self.pending.len() >= MAX_PENDING {
                self.verify_pending();
            }
        }
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

    /// The prepares of a polka (a certificate of prepares), each once its signature verifies.
    fn learn_polka(&mut self, polka: &Certificate) {
        if polka.height <= self.lock_floor {
            return;
        }
        for s in &polka.signatures {
            let known = self.locks.get(&polka.height).is_some_and(|l| {
                l.prepares
                    .get(&(polka.round, polka.block_hash))
                    .is_some_and(|who| who.contains(&s.validator))
            });
            if known {
                continue;
            }
            let vote = Vote {
                height: polka.height,
                round: polka.round,
                kind: VoteKind::Prepare,
                block: Some(polka.block_hash),
                validator: s.validator,
                signature: s.signature,
            };
            if self.signature_ok(&Message::Vote(vote)) {
                self.learn_prepare(polka.height, polka.round, polka.block_hash, s.validator);
            }
        }
    }

    /// Whether the prepare is known for good: learned, or of a height the lock check is done
    /// with (false: too far ahead now, it may count later).
    fn learn_prepare(&mut self, h: Height, round: Round, block: Hash, who: ValidatorIndex) -> bool {
        // A checked node counts prepares of its own height, one above its store, and keeps those
        // of the next height for later: prepares further ahead (a garbage sender's) never count.
        let top = self.stored_top.iter().max().copied().unwrap_or(Height(0));
        if h <= self.lock_floor {
            return true;
        }
        if h.0 > top.0 + 2 {
            return false;
        }
        self.locks
            .entry(h)
            .or_default()
            .prepares
            .entry((round, block))
            .or_default()
            .insert(who);
        true
    }

    /// A checked node signed a vote (the first time for its slot): a precommit for a block locks
    /// it; a prepare for another block than its lock, in a later round, needs a polka from a
    /// round at or after the lock's.
    fn on_own_vote(&mut self, node: usize, v: &Vote) {
        let (h, round) = (v.height, v.round);
        let Some(block) = v.block else { return };
        if h <= self.lock_floor {
            return;
        }
        if v.kind == VoteKind::Precommit {
            let locks = &mut self.locks.entry(h).or_default().locks;
            if locks.get(&node).is_none_or(|(r, _)| round > *r) {
                locks.insert(node, (round, block));
            }
            return;
        }
        self.learn_prepare(h, round, block, v.validator);
        let Some(at) = self.locks.get(&h) else { return };
        let Some(&(lr, locked)) = at.locks.get(&node) else {
            return;
        };
        if locked == block || lr >= round {
            return;
        }
        let polka = (lr.0..round.0).find(|&vr| {
            at.prepares.get(&(Round(vr), block)).is_some_and(|who| {
                let stake = who.iter().map(|w| self.set.stake_of(*w).0).sum();
                self.set.is_quorum(Stake(stake))
            })
        });
        if polka.is_none() {
            let detail = format!(
                "locked on {} in round {lr} of height {h}, it prepared {} in round {round} with no \
                 prepare quorum for it in rounds {lr} to {}",
                locked.short(),
                block.short(),
                round.0 - 1
            );
            self.fail(Some(node), "lock", detail);
        }
    }

    /// Forgets the heights every checked node has stored.
    fn raise_lock_floor(&mut self) {
        let floor = (0..self.checked.len())
            .filter(|i| self.checked[*i])
            .map(|i| self.stored_top[i])
            .min()
            .unwrap_or(Height(0));
        if floor > self.lock_floor {
            self.lock_floor = floor;
            self.locks = self.locks.split_off(&floor.next());
        }
    }

    /// A node sent a message: its own signed ones must have been persisted first, unchanged.
    pub fn on_send(&mut self, node: usize, msg: &Message) {
        let Some(slot) = slot_of(msg) else { return };
        if signer_of(msg).map(|s| s.as_usize()) != Some(node) {
            return;
        }
        match self.signed[node].get(&slot) {
            None => self.fail(
                Some(node),
                "send-before-persist",
                format!(
                    "sent its {} for height {} round {} before persisting it",
                    msg.kind(),
                    slot.0,
                    slot.1
                ),
            ),
            Some(d) if *d != digest(msg) => self.fail(
                Some(node),
                "double-sign",
                format!(
                    "sent a {} for height {} round {} other than the one it persisted",
                    msg.kind(),
                    slot.0,
                    slot.1
                ),
            ),
            Some(_) => {}
        }
    }

    /// Verifies a certificate as `Certificate::verify` would, but each precommit signature once
    /// for the whole run: the nodes' certificates share most of their signatures, and checking
    /// every node's certificate as a fresh batch was a quarter of the simulator's time.
    fn certificate_ok(&mut self, cert: &Certificate, height: Height, block: &Hash) -> bool {
        if cert.height != height || cert.block_hash != *block {
            return false;
        }
        // Also: every signer is in the set, so its index is in range below.
        match cert.signed_stake(&self.set) {
            Ok(stake) if self.set.is_quorum(stake) => {}
            _ => return false,
        }
        let slot = (height, cert.round, *block);
        let new: Vec<&CommitSignature> = match self.cert_signatures.get(&slot) {
            Some(known) => cert
                .signatures
                .iter()
                .filter(|s| {
                    !known[s.validator.as_usize()]
                        .as_ref()
                        .is_some_and(|k| same(k, &s.signature))
                })
                .collect(),
            None => cert.signatures.iter().collect(),
        };
        if new.is_empty() {
            return true;
        }
        let mut good = vec![];
        let mut ok = true;
        for s in new {
            let vote = Vote {
                height,
                round: cert.round,
                kind: VoteKind::Precommit,
                block: Some(*block),
                validator: s.validator,
                signature: s.signature,
            };
            if !self.signature_ok(&Message::Vote(vote)) {
                ok = false;
                break;
            }
            good.push((s.validator, s.signature));
        }
        if self.cert_signatures.len() >= MAX_CERTIFICATES
            && !self.cert_signatures.contains_key(&slot)
        {
            self.cert_signatures.clear();
        }
        let n = self.set.len();
        let known = self
            .cert_signatures
            .entry(slot)
            .or_insert_with(|| vec![None; n]);
        for (v, signature) in good {
            known[v.as_usize()] = Some(signature);
        }
        ok
    }

    /// Distinct proposals and votes whose signature was verified so far: the verifications the
    /// workload needs (one per distinct message), for `timed-sim bench`'s crypto floor.
    pub fn distinct_signed_messages(&self) -> usize {
        self.verdicts.len()
    }

    /// Whether the author's signature of a proposal or vote verifies (false for other messages),
    /// remembered for the run. A forged signature still fails: the verdict is computed, not assumed.
    pub fn signature_ok(&mut self, msg: &Message) -> bool {
        if !matches!(msg, Message::Proposal(_) | Message::Vote(_)) {
            return false;
        }
        let key = match msg {
            Message::Proposal(p) => VerdictKey::Proposal(
                p.height,
                p.round,
                p.valid_round,
                p.block.hash(),
                p.proposer,
                p.signature,
            ),
            Message::Vote(v) => vote_key(v),
            _ => return false,
        };
        if let Some(&ok) = self.verdicts.get(&key) {
            return ok;
        }
        if let Message::Vote(_) = msg
            && !self.pending.is_empty()
        {
            self.verify_pending();
            if let Some(&ok) = self.verdicts.get(&key) {
                return ok;
            }
        }
        // Not put on the wire (a vote of a certificate or a polka), or a proposal: alone.
        let ok = match msg {
            Message::Proposal(p) => p.verify(&self.set, &self.chain_id).is_ok(),
            Message::Vote(v) => v.verify(&self.set, &self.chain_id).is_ok(),
            _ => false,
        };
        self.remember(key, ok);
        ok
    }

    /// Verifies the votes waiting for a verdict, in batches of `BATCH`.
    fn verify_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for batch in pending.chunks(BATCH) {
            let verdicts = message::verify_votes(batch, &self.set, &self.chain_id);
            for (v, ok) in batch.iter().zip(verdicts) {
                self.remember(vote_key(v), ok);
            }
        }
    }

    fn remember(&mut self, key: VerdictKey, ok: bool) {
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, ok);
    }

    /// The total supply there must be after height `h`.
    fn supply_after(&mut self, h: Height) -> u128 {
        while self.supply.len() as u64 <= h.0 {
            let next = Height(self.supply.len() as u64);
            let last = *self.supply.last().expect("the genesis supply is there");
            self.supply.push(last + u128::from(subsidy(next).0));
        }
        self.supply[h.0 as usize]
    }

    /// A live honest core's ledger after it finalized `height - 1`: conservation.
    fn check_supply(&mut self, node: usize, what: &str, h: Height, supply: u128) {
        let expected = self.supply_after(h);
        if supply != expected {
            let detail = format!(
                "{what} after height {h} holds {supply} units in all, but genesis and subsidies \
                 make {expected}"
            );
            self.fail(Some(node), "conservation", detail);
        }
    }

    /// Validity of the first block decided at a height, against the checker's own chain and
    /// ledger (later copies are compared with it by the fork and ledger-diverged checks).
    fn check_valid(&mut self, node: usize, f: &Finalized) {
        let b = &f.block;
        let h = b.height();
        let mut faults: Vec<String> = vec![];
        if b.header.chain_id != self.chain_id {
            faults.push(format!("chain id {:?}", b.header.chain_id));
        }
        match self.chain.get(&Height(h.0 - 1)) {
            None => faults.push(format!("height {} was never decided", h.0 - 1)),
            Some((parent, time)) => {
                if b.header.parent_hash != *parent {
                    faults.push(format!(
                        "parent {} is not the block below",
                        b.header.parent_hash.short()
                    ));
                }
                if b.header.timestamp <= *time {
                    faults.push(format!(
                        "timestamp {} not after its parent's {}",
                        b.header.timestamp.0, time.0
                    ));
                }
            }
        }
        let proposer_ok = (0..=f.certificate.round.0)
            .any(|r| self.set.proposer(h, Round(r)) == b.header.proposer);
        if !proposer_ok {
            faults.push(format!(
                "its proposer {} proposes none of rounds 0 to {}",
                b.header.proposer, f.certificate.round
            ));
        }
        if b.txs.len() > self.params.max_block_txs as usize {
            faults.push(format!("{} transactions", b.txs.len()));
        }
        if block::tx_root(&b.txs) != b.header.tx_root {
            faults.push("wrong transaction root".into());
        }
        if self.reference_height.0 + 1 != h.0 {
            faults.push(format!("decided after height {}", self.reference_height));
        } else if self.set.get(b.header.proposer).is_some() {
            let mut after = self.reference.clone();
            match after.apply_block(&self.chain_id, h, b.header.proposer, &self.set, &b.txs) {
                Err(e) => faults.push(format!("its transactions do not apply: {e}")),
                Ok(outcome) => {
                    if after.state_root() != b.header.state_root {
                        faults.push("state root is not the ledger's after it".into());
                    }
                    if outcome != f.outcome {
                        faults.push("outcome differs from the ledger's".into());
                    }
                    self.reference = after;
                    self.reference_height = h;
                    self.txs_decided += b.txs.len() as u64;
                }
            }
        }
        if !faults.is_empty() {
            let detail = format!("invalid block at height {h}: {}", faults.join("; "));
            self.fail(Some(node), "validity", detail);
        }
    }

    /// A node stored a finalized block: no fork, a valid block and certificate, heights only go
    /// up, the same rewards everywhere, and `supply_after` (the stored ledger's total) conserved.
    pub fn on_finalized(
        &mut self,
        node: usize,
        f: &Finalized,
        state_root_after: Hash,
        supply_after: u128,
    ) {
        let h = f.block.height();
        let hash = f.block.hash();
        if h <= self.stored_top[node] {
            self.fail(
                Some(node),
                "height-regressed",
                format!("stored height {h} after height {}", self.stored_top[node]),
            );
        }
        self.stored_top[node] = h;
        self.raise_lock_floor();
        match self.decided.get(&h) {
            Some((other, by)) if *other != hash => {
                let detail = format!(
                    "fork at height {h}: node {node} finalized {} but node {by} finalized {}",
                    hash.short(),
                    other.short()
                );
                self.fail(Some(node), "fork", detail);
            }
            Some(_) => {}
            None => {
                self.decided.insert(h, (hash, node));
                self.check_valid(node, f);
                self.chain.insert(h, (hash, f.block.header.timestamp));
            }
        }
        self.check_supply(node, "the stored ledger", h, supply_after);
        if !self.certificate_ok(&f.certificate, h, &hash) {
            self.fail(
                Some(node),
                "bad-certificate",
                format!("certificate of height {h} does not verify"),
            );
        }
        if state_root_after != f.block.header.state_root {
            self.fail(
                Some(node),
                "state-root",
                format!(
                    "stored ledger after height {h} has root {} but the block says {}",
                    state_root_after.short(),
                    f.block.header.state_root.short()
                ),
            );
        }
        let o = &f.outcome;
        let paid: u64 = o.rewards.iter().map(|r| r.amount.0).sum();
        if o.height != h
            || o.subsidy != subsidy(h)
            || paid != o.total_reward.0
            || o.total_reward.0 != o.subsidy.0.saturating_add(o.fees.0)
        {
            self.fail(
                Some(node),
                "rewards",
                format!("outcome of height {h} does not pay subsidy + fees exactly"),
            );
        }
        if self.last_outcome.as_ref() == Some(o) {
            return;
        }
        let od = Hash(*blake3::hash(&timed_core::codec::encode(o)).as_bytes());
        match self.outcomes.get(&h) {
            Some((other, by)) if *other != od => {
                let detail = format!("rewards or balances of height {h} differ from node {by}'s");
                self.fail(Some(node), "ledger-diverged", detail);
            }
            Some(_) => {}
            None => {
                self.outcomes.insert(h, (od, node));
                self.last_outcome = Some(o.clone());
            }
        }
    }

    /// A late precommit extended a stored certificate: it must still verify.
    pub fn on_extended(&mut self, node: usize, cert: &Certificate, block: Option<Hash>) {
        match block {
            None => self.fail(
                Some(node),
                "extended-unknown",
                format!("extended height {} it never stored", cert.height),
            ),
            Some(b) => {
                if !self.certificate_ok(cert, cert.height, &b) {
                    self.fail(
                        Some(node),
                        "bad-certificate",
                        format!(
                            "extended certificate of height {} does not verify",
                            cert.height
                        ),
                    );
                }
            }
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
            self.check_supply(node, "the core's ledger", Height(height.0 - 1), supply);
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
}
