//! The simulation: N real cores in one thread on a virtual clock, an event queue ordered by
//! (time, sequence), the network model, crashes and restarts from durable state, Byzantine
//! behaviours applied to what a node sends, and the checker after every step.
//!
//! This module owns the world (its nodes, what survives their crashes, the event queue) and the
//! step loop: one event at a time, one call into a core, each output performed in order. The
//! rest, by concern:
//! - [`setup`]: building a run from a scenario and a seed;
//! - [`delivery`]: the wire (network model, connections, routing, the event log's lines);
//! - [`storage`]: stored blocks and ledgers, crashes, restarts, storage losses;
//! - [`byzantine`]: what each Byzantine behaviour does to what its core sends and receives;
//! - [`amnesia`]: the amnesia behaviour, played on its honest core's votes with its key;
//! - [`faults`], [`expect`], [`workload`]: the scenario's faults, expectations and transfers;
//! - [`membership`]: candidates' registrations and the staking operations of the scenario;
//! - [`stats`]: the counters a run reports.

mod amnesia;
mod byzantine;
mod delivery;
mod expect;
mod faults;
mod membership;
mod setup;
mod stats;
mod storage;
mod workload;

pub use delivery::describe;
pub use stats::Stats;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use rand_chacha::ChaCha8Rng;
use timed_core::codec;
use timed_core::consensus::{Event, Input, Node, Output, PersistRecord, RoundChange, SignGuard};
use timed_core::crypto::Keypair;
use timed_core::ledger::Ledger;
use timed_core::message::{Decision, Message, SyncPacker};
use timed_core::types::{Hash, Height, Round, TimestampMs};
use timed_core::validators::{Genesis, ValidatorSet};
use timed_core::verified::{Precheck, Verified, precheck};
use tracing::{debug, info};

use crate::checker::{Checker, Seen};
use crate::network::Network;
use crate::queue::Queue;
use crate::scenario::{Behaviour, Scenario};

use amnesia::Amnesiac;
use byzantine::InvalidKey;
use storage::StoredLedger;

/// The chain id of every simulated network.
pub const CHAIN_ID: &str = "timed-sim";

/// Whether the core takes the double-sign guard (`Restore::guard`). Without it, a restart that
/// lost its records can make an honest node sign twice, and `swarm` draws no such faults.
pub const CORE_HAS_SIGN_GUARD: bool = true;

enum Ev {
    Start {
        node: usize,
        inc: u32,
    },
    Deliver {
        to: usize,
        inc: u32,
        from: usize,
        msg: Rc<Wire>,
    },
    /// Bytes that the receiving runtime must fail to decode.
    Garbage {
        to: usize,
        inc: u32,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        inc: u32,
        timer: timed_core::consensus::Timer,
    },
    Connected {
        node: usize,
        inc: u32,
        peer: usize,
    },
    Fault(usize),
    LivenessDeadline,
    /// A client submits a transfer (the workload).
    Submit,
    /// The scenario's membership event: submitted, or sent again while no block holds it.
    Membership(usize),
}

/// A message on the wire. Every copy of one send or broadcast shares it, and with it what the
/// checker found of it at its first delivery (`Seen`).
pub struct Wire {
    msg: Message,
    seen: Seen,
    /// The message as the core's `Verified`, made at its first delivery that needs one: the
    /// copies of a broadcast share it (a look-up in the verdict cache per copy cost a tenth of
    /// a scale run).
    verified: std::cell::OnceCell<Verified>,
}

impl Wire {
    fn new(msg: Message) -> Rc<Wire> {
        Rc::new(Wire {
            msg,
            seen: Seen::default(),
            verified: std::cell::OnceCell::new(),
        })
    }
}

impl std::ops::Deref for Wire {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// One simulated validator: its live core (if running) and what survives a crash.
pub struct SimNode {
    pub core: Option<Node>,
    pub incarnation: u32,
    pub behaviour: Behaviour,
    crash_at_persist: bool,
    /// Durable: finalized blocks with their (possibly extended) certificates.
    pub chain: BTreeMap<Height, Decision>,
    /// Durable: the ledger after the last stored block (shared with the nodes that stored the
    /// same blocks: see `Simulation::stored_ledgers`).
    pub ledger: Rc<Ledger>,
    /// Durable: records persisted since the last stored block.
    pub records: Vec<PersistRecord>,
    pub crashes: u32,
    /// Checked as if honest whatever its behaviour (`Simulation::audit`).
    audited: bool,
    /// The validator whose key this node holds (a twin shares its validator's).
    pub validator: usize,
    /// Kept beside the key, so it survives every storage loss: the double-sign guard file (the
    /// last point this node signed and its last lock), handed back in `Restore::guard`.
    pub guard: Option<SignGuard>,
    /// A replayer's memory of messages it saw.
    memory: VecDeque<Rc<Wire>>,
    /// For each validator with a twin: the instance this node last heard from, which its
    /// messages to that validator go to (its connection to that key).
    route: BTreeMap<usize, usize>,
    /// A round pusher's last (height, round) whose far votes it sent: once per round.
    pushed_at: Option<(Height, Round)>,
    /// An amnesiac's memory of its height (`amnesia`): empty for every other node.
    amnesia: Amnesiac,
    /// The height and hash of the block it stored last: the certificate extensions name it
    /// (some 30 per node and height with 100 validators; hashing the block for each was a
    /// tenth of a scale run).
    last_stored: Option<(Height, Hash)>,
    /// The certificate checker its sync answers are checked with (`Input::SyncChecked`), made
    /// at its previous answer, as the real node's lags its loop: a set changed since (an
    /// epoch's hand-over, a validator jailed, a restart) must make the core check again.
    checker: Option<timed_core::verified::CertificateChecker>,
    /// Under `StorageModel::Unsynced`: blocks finalized and written but not yet synced, oldest
    /// first, and when the oldest was written (`storage.rs`).
    unsynced: Vec<timed_core::consensus::Finalized>,
    unsynced_since: u64,
}

impl SimNode {
    pub fn height(&self) -> Height {
        self.chain.keys().next_back().copied().unwrap_or(Height(0))
    }
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }
    /// Whether this node's own messages are honest (silent nodes are honest but mute), or the
    /// checker is told to treat them so.
    fn checked(&self) -> bool {
        self.audited || matches!(self.behaviour, Behaviour::Honest | Behaviour::Silent)
    }
    /// Whether a durable record of this node holds the block `hash` (its own proposal, a block
    /// it prepared, or its lock).
    fn holds_block(&self, hash: Hash) -> bool {
        self.records.iter().any(|r| match r {
            PersistRecord::Signed {
                msg: Message::Proposal(p),
                ..
            } => p.block.hash() == hash,
            PersistRecord::Locked { block, .. } | PersistRecord::Prepared { block, .. } => {
                block.hash() == hash
            }
            PersistRecord::Signed { .. } => false,
        })
    }
}

/// A run in progress.
pub struct Simulation {
    pub scenario: Scenario,
    pub seed: u64,
    genesis: Genesis,
    /// The genesis validators' keys (ids `0..n`), then the candidates'.
    keys: Vec<Keypair>,
    /// The genesis set (the checker knows the set of every height: `Checker::set_at`).
    set: ValidatorSet,
    pub nodes: Vec<SimNode>,
    network: Network,
    rng: ChaCha8Rng,
    queue: Queue<Ev>,
    now: u64,
    pub checker: Checker,
    pub stats: Stats,
    /// Failed expectations (not invariants): reported and make the run fail.
    pub expectation_failures: Vec<String>,
    height_faults: Vec<usize>,
    /// The node whose finalization fired each height fault.
    fired_by: BTreeMap<usize, usize>,
    partition_base: Option<Height>,
    liveness_base: Option<(Height, u64)>,
    /// The liveness phase reached its target.
    pub live: bool,
    transcript: Option<blake3::Hasher>,
    mean_delay_ms: f64,
    /// The workload's client keys, its own random stream, and the next nonce it will use per
    /// sender (validators' keys send too).
    clients: Vec<Keypair>,
    workload_rng: ChaCha8Rng,
    /// The last invalid proposal forged, by (node, height, round, valid round).
    invalid_cache: Option<(InvalidKey, Rc<Wire>)>,
    next_nonce: BTreeMap<timed_core::crypto::PublicKey, u64>,
    /// The last ledgers stored, each with the ledger it was stored on and the accounts its block
    /// touched: the next node storing the same block on the same ledger shares the result
    /// instead of rebuilding it and hashing it again (per node and height, 4 % of a scale run).
    stored_ledgers: VecDeque<StoredLedger>,
    /// The buffer a step's outputs are handed over in (`Node::handle_into`), emptied and kept
    /// for the next step: a step then allocates nothing for them.
    outputs: Vec<Output>,
    /// Whether restarts hand the core its guard file (the double-sign guard); a test
    /// turns it off to show that the storage faults would make nodes sign twice without it.
    pub sign_guard: bool,
    /// The membership events' progress (`membership`).
    pub membership: membership::Progress,
}

struct HashWriter<'a>(&'a mut blake3::Hasher);
impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl Simulation {
    /// Checks `node` as if it were honest, whatever its behaviour: shows that a check catches what
    /// a Byzantine behaviour does (an amnesia validator breaks its lock). Call before `run`.
    pub fn audit(&mut self, node: usize) {
        self.nodes[node].audited = true;
        self.checker.set_checked(node, true);
    }

    /// Verifies every signature on the simulation's own thread instead of handing the votes on
    /// the wire to a second core (`checker::verdicts`): the same outputs, byte for byte, more
    /// slowly. Call before `run`.
    pub fn verify_on_this_thread(&mut self) {
        self.checker.verify_on_this_thread();
    }

    /// Verifies the votes on the wire on a second thread (if the machine has a second core)
    /// even for a set smaller than a batch, which otherwise verifies on this one. Call before
    /// `run`.
    pub fn verify_on_second_thread(&mut self) {
        self.checker.verify_on_second_thread();
    }

    /// Hash every output of every node (for `--check-determinism`).
    pub fn record_transcript(&mut self) {
        self.transcript = Some(blake3::Hasher::new());
    }

    pub fn transcript(&self) -> Option<Hash> {
        self.transcript
            .as_ref()
            .map(|h| Hash(*h.finalize().as_bytes()))
    }

    pub fn now_ms(&self) -> u64 {
        self.now
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    pub fn mean_delay_ms(&self) -> f64 {
        self.mean_delay_ms
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// Runs until the scenario's duration or the first violation.
    pub fn run(&mut self) {
        let end = self.scenario.duration.0;
        self.run_until(end);
        if self.checker.violations.is_empty() {
            self.check_end();
        }
    }

    /// Processes every event up to `until_ms` (stops early at a violation).
    pub fn run_until(&mut self, until_ms: u64) {
        while self.checker.violations.is_empty() {
            if self.live && self.scenario.expect.stop_at_liveness {
                return;
            }
            if self.queue.next_time().is_none_or(|at| at > until_ms) {
                break;
            }
            let Some((at, ev)) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.checker.now = at;
            self.event(ev);
        }
        if self.checker.violations.is_empty() {
            self.now = self.now.max(until_ms);
        }
        self.checker.settle_verdicts();
    }

    fn alive(&self, node: usize, inc: u32) -> bool {
        let n = &self.nodes[node];
        n.core.is_some() && n.incarnation == inc
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Start { node, inc } => {
                if self.alive(node, inc) {
                    debug!("t={} n{node} start", self.now);
                    self.step(node, Input::Start);
                }
            }
            Ev::Deliver { to, inc, from, msg } => {
                if !self.alive(to, inc) || !self.network.connected(from, to) {
                    self.stats.dropped += 1;
                    return;
                }
                debug!("t={} n{to} <- n{from} {}", self.now, describe(&msg));
                self.note_pushed(from, to, &msg);
                let signature_ok = self.checker.on_deliver_seen(&msg, &msg.seen);
                if self.is_amnesiac(to) && !self.amnesia_hears(to, &msg, signature_ok) {
                    return;
                }
                let relay = self.relays(to).then(|| msg.clone());
                if self.nodes.len() > self.keys.len() && self.nodes[from].validator < self.set.len()
                {
                    // Twins: replies go back over the connection this came by.
                    let v = self.nodes[from].validator;
                    self.nodes[to].route.insert(v, from);
                }
                let sender = self.peer_id(to, from);
                let msg = match self.checked_answer(to, msg) {
                    Ok(answer) => {
                        self.step(
                            to,
                            Input::SyncChecked {
                                from: sender,
                                answer,
                            },
                        );
                        if let Some(msg) = relay {
                            self.relay(to, from, &msg);
                        }
                        return;
                    }
                    Err(msg) => msg,
                };
                // The core's one pre-check policy, as the real node's driver follows it (the
                // verdict cache makes a vote the node holds free to check, so `holds` is no
                // concern here). What it leaves out, and a bad signature, the core checks itself.
                let checks = signature_ok
                    && self.nodes[to].core.as_ref().is_some_and(|core| {
                        precheck(&msg, core.height(), |h| core.set_for(h), |_| false)
                            == Precheck::Check
                    });
                let input = if checks {
                    match self.verified(msg) {
                        Ok(msg) => Input::SignatureChecked { from: sender, msg },
                        Err(msg) => Input::Message { from: sender, msg },
                    }
                } else {
                    let msg = Rc::try_unwrap(msg).map_or_else(|rc| rc.msg.clone(), |w| w.msg);
                    Input::Message { from: sender, msg }
                };
                self.step(to, input);
                if let Some(msg) = relay {
                    self.relay(to, from, &msg);
                }
            }
            Ev::Garbage {
                to,
                inc,
                from,
                bytes,
            } => {
                if !self.alive(to, inc) {
                    return;
                }
                match codec::decode_message(&bytes) {
                    Err(e) => debug!("t={} n{to} <- n{from} garbage refused: {e}", self.now),
                    Ok(msg) => {
                        // Astronomically unlikely; the core must then cope with the message.
                        self.stats.garbage_decoded += 1;
                        let from = self.peer_id(to, from);
                        self.step(to, Input::Message { from, msg });
                    }
                }
            }
            Ev::Timer { node, inc, timer } => {
                if self.alive(node, inc) {
                    debug!("t={} n{node} timeout {timer:?}", self.now);
                    self.step(node, Input::Timeout(timer));
                }
            }
            Ev::Connected { node, inc, peer } => {
                if self.alive(node, inc) && self.network.connected(node, peer) {
                    debug!("t={} n{node} connected to n{peer}", self.now);
                    let peer = self.peer_id(node, peer);
                    self.step(node, Input::PeerConnected(peer));
                }
            }
            Ev::Fault(k) => self.fault(k),
            Ev::LivenessDeadline => self.liveness_event(),
            Ev::Submit => self.submit(),
            Ev::Membership(k) => self.membership_event(k),
        }
    }

    /// One call into a core and the performing of its outputs, then the step checks.
    fn step(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.stats.steps += 1;
        self.checker.step = self.stats.steps;
        self.commit_due(i);
        let honest = self.nodes[i].behaviour == Behaviour::Honest;
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let (height, round) = (core.height(), core.round());
        let mut outputs = std::mem::take(&mut self.outputs);
        core.handle_into(TimestampMs(now), input, &mut outputs);
        for out in outputs.drain(..) {
            if let Some(h) = self.transcript.as_mut() {
                let _ = writeln!(HashWriter(h), "{i}@{now}:{out:?}");
            }
            if let Output::Event(Event::RoundChanged {
                height: at,
                round: to,
                reason: RoundChange::Timeout,
            }) = &out
                && honest
                && *at == height
                && to.0 > round.0.saturating_add(1)
            {
                self.stats.round_jumps += 1;
            }
            if !self.perform(i, out) {
                break;
            }
        }
        self.outputs = outputs;
        if self.is_amnesiac(i) {
            self.amnesia_precommit(i);
        }
        if let Some(core) = self.nodes[i].core.as_ref() {
            if honest {
                self.stats.max_round = self.stats.max_round.max(core.round().0);
            }
            let h = core.height();
            let ledger = self.nodes[i].checked().then(|| core.ledger());
            self.checker.after_step(i, h, ledger);
        }
    }

    /// A sync answer to node `i`, its certificates checked as the real node checks them off its
    /// loop (`node/synccheck.rs`): with the checker made at its previous answer, then a new one
    /// kept for the next. Anything else back.
    fn checked_answer(
        &mut self,
        i: usize,
        wire: Rc<Wire>,
    ) -> Result<timed_core::verified::CheckedDecisions, Rc<Wire>> {
        let Some(core) = self.nodes[i].core.as_ref() else {
            return Err(wire);
        };
        if !matches!(wire.msg, Message::SyncResponse { .. }) {
            return Err(wire);
        }
        let now = core.certificate_checker();
        let checker = self.nodes[i].checker.replace(now.clone()).unwrap_or(now);
        let msg = Rc::try_unwrap(wire).map_or_else(|rc| rc.msg.clone(), |w| w.msg);
        match msg {
            Message::SyncResponse { blocks } => Ok(checker.check(blocks)),
            other => Err(Wire::new(other)), // matched above: not reached
        }
    }

    /// One copy of `wire` as the core's `Verified` (from the verdict cache, once per message), or
    /// its message if its signature fails.
    #[allow(clippy::result_large_err)] // the message back, moved, as `VerdictCache::check`
    fn verified(&mut self, wire: Rc<Wire>) -> Result<Verified, Message> {
        match Rc::try_unwrap(wire) {
            Ok(w) => match w.verified.into_inner() {
                Some(v) => Ok(v),
                None => self.checker.verified(w.msg),
            },
            Err(rc) => match rc.verified.get() {
                Some(v) => Ok(v.clone()),
                None => {
                    let checked = self.checker.verified(rc.msg.clone());
                    if let Ok(v) = &checked {
                        let _ = rc.verified.set(v.clone());
                    }
                    checked
                }
            },
        }
    }

    /// Performs one output, through an amnesiac's rewriting of its votes; false when the node
    /// crashed and the rest of the step is lost.
    fn perform(&mut self, i: usize, out: Output) -> bool {
        if !self.is_amnesiac(i) {
            return self.perform_output(i, out);
        }
        match self.amnesia_rewrite(i, out) {
            Some(out) => self.perform_output(i, out),
            None => true,
        }
    }

    /// Performs one output as it is; false when the node crashed and the rest of the step is
    /// lost.
    fn perform_output(&mut self, i: usize, out: Output) -> bool {
        match out {
            Output::Persist(r) => {
                // Its sync makes every earlier write durable too, the blocks first (rule 3c).
                self.sync_storage(i);
                if let PersistRecord::Signed { height, msg } = &r {
                    if self.nodes[i].checked() {
                        self.checker.on_persist_signed(i, *height, msg);
                    }
                    if let Some(next) = SignGuard::after(self.nodes[i].guard, &r) {
                        self.nodes[i].guard = Some(next);
                    }
                }
                self.nodes[i].records.push(r);
                if self.nodes[i].crash_at_persist {
                    info!("t={} n{i} crashes right after a persist", self.now);
                    self.crash(i);
                    return false;
                }
            }
            Output::Broadcast(msg) => {
                if self.nodes[i].checked() {
                    self.checker.on_send(i, &msg);
                }
                let msg = self.disguise(i, msg);
                let me = self.nodes[i].validator;
                for j in 0..self.nodes.len() {
                    if self.nodes[j].validator != me {
                        self.send_as(i, j, &msg);
                    }
                }
                self.garbage(i, &msg);
                self.adversary_extras(i, &msg);
            }
            Output::Send { to, msg } => {
                if self.nodes[i].checked() {
                    self.checker.on_send(i, &msg);
                }
                let msg = self.disguise(i, msg);
                if let Some(j) = self.route_to(i, to) {
                    self.send_as(i, j, &msg);
                }
            }
            Output::Schedule { timer, after_ms } => {
                let inc = self.nodes[i].incarnation;
                // A timer fires one virtual millisecond later at the earliest: a validator that
                // finalizes alone with block time 0 would otherwise loop forever at one instant.
                self.push(
                    self.now + after_ms.max(1),
                    Ev::Timer {
                        node: i,
                        inc,
                        timer,
                    },
                );
            }
            Output::Finalized(f) => self.write_finalized(i, *f),
            Output::CertificateExtended(cert) => {
                self.sync_storage(i);
                if self.nodes[i].checked() {
                    let block = self.stored_hash(i, cert.height);
                    self.checker.on_extended(i, &cert, block);
                }
                if let Some(d) = self.nodes[i].chain.get_mut(&cert.height) {
                    d.certificate = cert;
                }
            }
            Output::ServeSync {
                to,
                from,
                max_blocks,
            } => {
                // The real node stores what it finalized before it answers.
                self.sync_storage(i);
                // The core's packing rule, as the real node's (its queue's room aside).
                let mut answer = SyncPacker::new(max_blocks, codec::MAX_MESSAGE_BYTES);
                for d in self.nodes[i].chain.range(from..).map(|(_, d)| d) {
                    if answer.is_full() || !answer.push(d.clone()) {
                        break;
                    }
                }
                if let Some(j) = self.route_to(i, to) {
                    self.serve_sync(i, j, from, answer.into_blocks());
                }
            }
            Output::Evidence(e) => {
                if self.nodes[i].behaviour == Behaviour::Honest {
                    self.stats.evidence += 1;
                }
                info!(
                    "t={} n{i} reports evidence against validator {}",
                    self.now,
                    e.validator()
                );
            }
            Output::TxAccepted { .. } | Output::TxRejected { .. } => {}
            Output::Event(e) => debug!("t={} n{i} {e:?}", self.now),
        }
        true
    }

    /// Whether no invariant broke and every expectation held.
    pub fn passed(&self) -> bool {
        self.checker.violations.is_empty() && self.expectation_failures.is_empty()
    }
}
