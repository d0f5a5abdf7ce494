//! The simulation: N real cores in one thread on a virtual clock, an event queue ordered by
//! (time, sequence), the network model, crashes and restarts from durable state, Byzantine
//! behaviours applied to what a node sends, and the checker after every step.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use timed_core::block::Block;
use timed_core::codec;
use timed_core::consensus::{
    Event, Finalized, Input, Node, NodeConfig, Output, PersistRecord, Restore, RoundChange,
    SignGuard,
};
use timed_core::crypto::Keypair;
use timed_core::ledger::Ledger;
use timed_core::message::{Decision, Message, Proposal, Vote};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{Genesis, GenesisBalance, GenesisValidator, ValidatorSet};
use tracing::{debug, info};

use crate::adversary;
use crate::checker::{Checker, Seen, Violation};
use crate::network::{Fate, Network};
use crate::queue::Queue;
use crate::scenario::{Behaviour, FaultKind, Scenario, ScenarioError, StorageLoss};

/// The chain id of every simulated network.
pub const CHAIN_ID: &str = "timed-sim";

/// Whether the core takes the double-sign guard (`Restore::guard`). Without it, a restart that
/// lost its records can make an honest node sign twice, and `swarm` draws no such faults.
pub const CORE_HAS_SIGN_GUARD: bool = true;

/// Messages a replayer remembers (the oldest are forgotten first).
const REPLAY_MEMORY: usize = 256;

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
}

/// A message on the wire. Every copy of one send or broadcast shares it, and with it what the
/// checker found of it at its first delivery (`Seen`).
pub struct Wire {
    msg: Message,
    seen: Seen,
}

impl Wire {
    fn new(msg: Message) -> Rc<Wire> {
        Rc::new(Wire {
            msg,
            seen: Seen::default(),
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
    /// The height and hash of the block it stored last: the certificate extensions name it
    /// (some 30 per node and height with 100 validators; hashing the block for each was a
    /// tenth of a scale run).
    last_stored: Option<(Height, Hash)>,
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

/// Counters the summary reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub messages: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub garbage_sent: u64,
    pub garbage_decoded: u64,
    pub evidence: u64,
    pub crashes: u64,
    /// Transfers the workload submitted (valid or not).
    pub txs_submitted: u64,
    /// Locks an amnesia validator held and forgot.
    pub locks_forgotten: u64,
    /// Messages the stronger adversaries forged or replayed (bodies swapped, polkas stripped,
    /// far claims, sync lies, replays, torsion signatures).
    pub forged: u64,
    /// Restarts that lost durable records.
    pub storage_losses: u64,
    /// Votes of round pushers delivered to honest nodes at their height for a round more than
    /// one past theirs: where an uncapped round end would take them.
    pub pushed_votes_delivered: u64,
    /// Rounds of honest nodes that ended (`Timer::RoundEnd`) more than one round on.
    pub round_jumps: u64,
    /// The highest round an honest node entered.
    pub max_round: u32,
    /// Finality latency of each (honest node, height): time of finalizing minus block timestamp.
    pub finality_ms: Vec<u64>,
}

/// A run in progress.
pub struct Simulation {
    pub scenario: Scenario,
    pub seed: u64,
    genesis: Genesis,
    keys: Vec<Keypair>,
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
    /// Whether restarts hand the core its guard file (the double-sign guard); a test
    /// turns it off to show that the storage faults would make nodes sign twice without it.
    pub sign_guard: bool,
}

/// A ledger stored after a block: what it was stored on (the very allocation, kept alive
/// here, so that sharing it is sound), the accounts the block touched, and the result with its
/// state root and total supply.
struct StoredLedger {
    before: Rc<Ledger>,
    touched: Vec<(timed_core::crypto::PublicKey, timed_core::ledger::Account)>,
    after: Rc<Ledger>,
    root: Hash,
    supply: u128,
}

/// Stored ledgers remembered: a few heights' worth, for nodes that store out of step.
const STORED_LEDGERS: usize = 4;

/// Which proposal an invalid proposer forged: (node, height, round, valid round).
type InvalidKey = (usize, Height, Round, Option<Round>);

struct HashWriter<'a>(&'a mut blake3::Hasher);
impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl Simulation {
    /// Builds the network of `scenario`; every random choice flows from `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Simulation, ScenarioError> {
        scenario
            .validate()
            .map_err(|(f, m)| ScenarioError(format!("field `{f}`: {m}")))?;
        let n = scenario.validators.len();
        let names: Vec<String> = scenario
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.name
                    .clone()
                    .unwrap_or_else(|| format!("validator{}", i + 1))
            })
            .collect();
        let keys: Vec<Keypair> = names
            .iter()
            .map(|name| Keypair::insecure_from_name(name))
            .collect();
        let clients: Vec<Keypair> = (0..scenario.transactions.as_ref().map_or(0, |w| w.clients))
            .map(|i| Keypair::insecure_from_name(&format!("client{}", i + 1)))
            .collect();
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            genesis_time_ms: TimestampMs(0),
            validators: scenario
                .validators
                .iter()
                .zip(&names)
                .zip(&keys)
                .map(|((v, name), k)| GenesisValidator {
                    name: name.clone(),
                    public_key: k.public_key(),
                    stake: Stake(v.stake),
                    address: None,
                })
                .collect(),
            balances: clients
                .iter()
                .map(|k| GenesisBalance {
                    account: k.public_key(),
                    amount: Amount(scenario.transactions.as_ref().map_or(0, |w| w.balance)),
                })
                .collect(),
            params: scenario.consensus.params(),
        };
        let set = genesis
            .validate()
            .map_err(|e| ScenarioError(format!("invalid genesis: {e}")))?;
        let twins = scenario.twins();
        let instances = n + twins.len();
        let mut network = Network::new(instances, &scenario.network.default_link());
        for l in &scenario.network.links {
            network.set_link(
                l.from,
                l.to,
                crate::network::LinkModel {
                    latency: l.latency.clone(),
                    jitter_ms: l.jitter_ms,
                    loss: l.loss,
                    duplicate: l.duplicate,
                },
            );
        }
        let genesis_ledger = Rc::new(Ledger::from_genesis(&genesis));
        let mut nodes = Vec::with_capacity(instances);
        for i in (0..n).chain(twins.iter().copied()) {
            let core = Node::new(&genesis, keys[i].clone(), NodeConfig::default())
                .map_err(|e| ScenarioError(format!("validator {i}: {e}")))?;
            nodes.push(SimNode {
                core: Some(core),
                incarnation: 0,
                behaviour: scenario.validators[i].behaviour,
                crash_at_persist: false,
                chain: BTreeMap::new(),
                ledger: genesis_ledger.clone(),
                records: vec![],
                crashes: 0,
                audited: false,
                validator: i,
                guard: None,
                memory: VecDeque::new(),
                route: BTreeMap::new(),
                pushed_at: None,
                last_stored: None,
            });
        }
        let mean_delay_ms = network.mean_delay_ms();
        let mut sim = Simulation {
            scenario: scenario.clone(),
            seed,
            checker: Checker::with_nodes(&genesis, set.clone(), instances),
            genesis,
            keys,
            set,
            nodes,
            network,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: Queue::default(),
            now: 0,
            stats: Stats::default(),
            expectation_failures: vec![],
            height_faults: vec![],
            fired_by: BTreeMap::new(),
            partition_base: None,
            liveness_base: None,
            live: false,
            transcript: None,
            mean_delay_ms,
            clients,
            // A stream of its own: the network's draws are the same with or without clients.
            workload_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7e57_c11e),
            next_nonce: BTreeMap::new(),
            invalid_cache: None,
            stored_ledgers: VecDeque::new(),
            sign_guard: true,
        };
        for i in 0..instances {
            let checked = sim.nodes[i].checked();
            sim.checker.set_checked(i, checked);
            sim.push(0, Ev::Start { node: i, inc: 0 });
        }
        for (k, f) in scenario.faults.iter().enumerate() {
            match (f.at, f.at_height) {
                (Some(t), _) => sim.push(t.0, Ev::Fault(k)),
                (None, Some(_)) => sim.height_faults.push(k),
                (None, None) => {}
            }
        }
        if let Some(l) = &scenario.expect.liveness {
            sim.push(l.after.0, Ev::LivenessDeadline);
        }
        if scenario.transactions.is_some() {
            sim.schedule_submit();
        }
        info!(
            seed,
            scenario = %scenario.name,
            validators = n,
            mean_delay_ms,
            "simulation options: {}",
            serde_json::to_string(scenario).unwrap_or_default()
        );
        Ok(sim)
    }

    /// Checks `node` as if it were honest, whatever its behaviour: shows that a check catches what
    /// a Byzantine behaviour does (an amnesia validator breaks its lock). Call before `run`.
    pub fn audit(&mut self, node: usize) {
        self.nodes[node].audited = true;
        self.checker.set_checked(node, true);
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

    /// A copy of `msg` will be delivered to node `to` if it is still up by then: the checker
    /// awaits its verdict (once per message, whatever its copies).
    fn in_flight(&mut self, to: usize, msg: &Wire) {
        if self.nodes[to].is_up() {
            self.checker.on_wire(&msg.msg, &msg.seen);
        }
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
                let relay = self.relays(to).then(|| msg.clone());
                if self.nodes.len() > self.keys.len() {
                    // Twins: replies go back over the connection this came by.
                    let v = self.nodes[from].validator;
                    self.nodes[to].route.insert(v, from);
                }
                let msg = Rc::try_unwrap(msg).map_or_else(|rc| rc.msg.clone(), |w| w.msg);
                let sender = self.index_of(from);
                let input = if signature_ok {
                    Input::SignatureChecked { from: sender, msg }
                } else {
                    // Not signed (a decision, a sync message), or a bad signature: the core
                    // checks and refuses it itself.
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
                        let from = self.index_of(from);
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
                    let peer = self.index_of(peer);
                    self.step(node, Input::PeerConnected(peer));
                }
            }
            Ev::Fault(k) => self.fault(k),
            Ev::LivenessDeadline => self.liveness_event(),
            Ev::Submit => self.submit(),
        }
    }

    /// Counts a round pusher's vote reaching an honest node at its height, far ahead of its round.
    fn note_pushed(&mut self, from: usize, to: usize, msg: &Message) {
        if self.nodes[from].behaviour != Behaviour::RoundPusher
            || self.nodes[to].behaviour != Behaviour::Honest
        {
            return;
        }
        if let (Message::Vote(v), Some(core)) = (msg, self.nodes[to].core.as_ref())
            && v.height == core.height()
            && v.round.0 > core.round().0.saturating_add(1)
        {
            self.stats.pushed_votes_delivered += 1;
        }
    }

    /// One call into a core and the performing of its outputs, then the step checks.
    fn step(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.stats.steps += 1;
        self.checker.step = self.stats.steps;
        let amnesia = self.nodes[i].behaviour == Behaviour::Amnesia;
        let honest = self.nodes[i].behaviour == Behaviour::Honest;
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let (height, round) = (core.height(), core.round());
        if amnesia {
            // Before every step, so also right after a restart restored the lock from the WAL.
            if core.locked().is_some() {
                self.stats.locks_forgotten += 1;
            }
            core.forget_lock();
        }
        let outputs = core.handle(TimestampMs(now), input);
        for out in outputs {
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
        if let Some(core) = self.nodes[i].core.as_ref() {
            if honest {
                self.stats.max_round = self.stats.max_round.max(core.round().0);
            }
            let h = core.height();
            let ledger = self.nodes[i].checked().then(|| core.ledger());
            self.checker.after_step(i, h, ledger);
        }
    }

    /// Performs one output; false when the node crashed and the rest of the step is lost.
    fn perform(&mut self, i: usize, out: Output) -> bool {
        match out {
            Output::Persist(r) => {
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
                let j = self.route_to(i, to);
                self.send_as(i, j, &msg);
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
            Output::Finalized(f) => self.store_finalized(i, *f),
            Output::CertificateExtended(cert) => {
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
                let mut blocks = vec![];
                let mut size = 0;
                for d in self.nodes[i]
                    .chain
                    .range(from..)
                    .take(max_blocks as usize)
                    .map(|(_, d)| d)
                {
                    size += codec::encode(d).len();
                    if size > codec::MAX_MESSAGE_BYTES - 1024 {
                        break;
                    }
                    blocks.push(d.clone());
                }
                let j = self.route_to(i, to);
                self.serve_sync(i, j, from, blocks);
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

    /// The hash of the block node `i` stored at `h`, if it holds one.
    fn stored_hash(&self, i: usize, h: Height) -> Option<Hash> {
        let node = &self.nodes[i];
        let d = node.chain.get(&h)?;
        match node.last_stored {
            Some((at, hash)) if at == h => Some(hash),
            _ => Some(d.block.hash()),
        }
    }

    fn store_finalized(&mut self, i: usize, f: Finalized) {
        let h = f.block.height();
        let node = &mut self.nodes[i];
        node.last_stored = Some((h, f.block.hash()));
        let stored = self
            .stored_ledgers
            .iter()
            .find(|s| Rc::ptr_eq(&s.before, &node.ledger) && s.touched == f.outcome.touched);
        let (ledger, root, supply) = match stored {
            Some(s) => (s.after.clone(), s.root, s.supply),
            None => {
                let after = Rc::new(Ledger::from_accounts(
                    node.ledger
                        .accounts()
                        .map(|(k, a)| (*k, *a))
                        .chain(f.outcome.touched.iter().copied()),
                ));
                let (root, supply) = (after.state_root(), after.total_supply());
                if self.stored_ledgers.len() >= STORED_LEDGERS {
                    self.stored_ledgers.pop_front();
                }
                self.stored_ledgers.push_back(StoredLedger {
                    before: node.ledger.clone(),
                    touched: f.outcome.touched.clone(),
                    after: after.clone(),
                    root,
                    supply,
                });
                (after, root, supply)
            }
        };
        node.ledger = ledger;
        node.records.retain(|r| r.height() > h);
        node.chain.insert(
            h,
            Decision {
                block: f.block.clone(),
                certificate: f.certificate.clone(),
            },
        );
        let honest = node.behaviour == Behaviour::Honest;
        let checked = node.checked();
        if checked {
            self.checker.on_finalized(i, &f, root, supply);
        }
        if honest {
            let latency = self.now.saturating_sub(f.block.header.timestamp.0);
            self.stats.finality_ms.push(latency);
            if let Some(max) = self.scenario.expect.max_finality_ms
                && latency > max
                && self.expectation_failures.len() < 10
            {
                self.expectation_failures.push(format!(
                    "node {i} finalized height {h} {latency} ms after its proposal (limit {max} ms)"
                ));
            }
        }
        if i == 0 || tracing::enabled!(tracing::Level::DEBUG) {
            debug!(
                "t={} n{i} finalized height {h} block {} with {} signatures",
                self.now,
                f.block.hash().short(),
                f.certificate.signatures.len()
            );
        }
        if checked
            && self.scenario.expect.no_progress_while_partitioned
            && self.network.is_partitioned()
            && let Some(base) = self.partition_base
            && h > base
        {
            self.checker.violations.push(Violation {
                step: self.stats.steps,
                time_ms: self.now,
                node: Some(i),
                rule: "progress-while-partitioned",
                detail: format!("finalized height {h} while split (at most {base} before)"),
            });
        }
        self.fire_height_faults(h, i);
        if let (Some((base, _)), Some(l)) = (self.liveness_base, &self.scenario.expect.liveness)
            && !self.live
        {
            let target = base.0 + l.gain;
            let up: Vec<Height> = self.honest_up().map(|(_, n)| n.height()).collect();
            self.live = !up.is_empty() && up.iter().all(|x| x.0 >= target);
        }
    }

    fn fire_height_faults(&mut self, h: Height, node: usize) {
        if self.height_faults.is_empty() {
            return;
        }
        let due: Vec<usize> = self
            .height_faults
            .iter()
            .copied()
            .filter(|k| self.scenario.faults[*k].at_height.is_some_and(|x| h.0 >= x))
            .collect();
        self.height_faults.retain(|k| !due.contains(k));
        for k in due {
            self.fired_by.insert(k, node);
            self.push(self.now, Ev::Fault(k));
        }
    }

    /// The validator index node `i` speaks as (a twin speaks as its validator).
    fn index_of(&self, i: usize) -> ValidatorIndex {
        ValidatorIndex(self.nodes[i].validator as u16)
    }

    /// The node a message from `i` to validator `v` reaches: `v` itself, or the twin `i` last
    /// heard from as `v` (a broadcast reaches both instances).
    fn route_to(&self, i: usize, v: ValidatorIndex) -> usize {
        let v = v.as_usize();
        self.nodes[i].route.get(&v).copied().unwrap_or(v)
    }

    /// Whether node `i` does something with the messages it receives besides handing them to
    /// its core.
    fn relays(&self, i: usize) -> bool {
        matches!(
            self.nodes[i].behaviour,
            Behaviour::BodySwapper | Behaviour::ProofStripper | Behaviour::Replayer
        )
    }

    /// What an adversary does with a message it received from node `from`: a body swapper
    /// forwards others' proposals and decisions with another body, a proof stripper others'
    /// re-proposals without a valid polka, a replayer remembers it.
    fn relay(&mut self, a: usize, from: usize, msg: &Rc<Wire>) {
        let me = self.nodes[a].validator;
        let peers: Vec<usize> = (0..self.nodes.len())
            .filter(|j| *j != from && self.nodes[*j].validator != me)
            .collect();
        match self.nodes[a].behaviour {
            Behaviour::Replayer => self.remember(a, msg),
            Behaviour::BodySwapper => {
                let forged = match &msg.msg {
                    Message::Proposal(p) if p.proposer.as_usize() != me => {
                        let mut p = p.clone();
                        p.block = adversary::swap_body(&p.block, &self.keys[me], &mut self.rng);
                        Message::Proposal(p)
                    }
                    Message::Decision(d) => {
                        let mut d = d.clone();
                        d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                        Message::Decision(d)
                    }
                    _ => return,
                };
                let forged = Wire::new(forged);
                for j in peers {
                    if self.rng.random_bool(0.5) {
                        self.stats.forged += 1;
                        self.send_fast(a, j, forged.clone());
                    }
                }
            }
            Behaviour::ProofStripper => {
                let Message::Proposal(p) = &msg.msg else {
                    return;
                };
                if p.valid_round.is_none() || p.proposer.as_usize() == me {
                    return;
                }
                let stripped =
                    Wire::new(Message::Proposal(adversary::strip_polka(p, &mut self.rng)));
                for j in peers {
                    self.stats.forged += 1;
                    self.send_fast(a, j, stripped.clone());
                }
            }
            _ => {}
        }
    }

    /// A replayer keeps the last `REPLAY_MEMORY` messages worth replaying.
    fn remember(&mut self, i: usize, msg: &Rc<Wire>) {
        if adversary::replayable(msg) {
            let memory = &mut self.nodes[i].memory;
            if memory.len() >= REPLAY_MEMORY {
                memory.pop_front();
            }
            memory.push_back(msg.clone());
        }
    }

    /// A torsion signer's messages leave with its signatures made again with a torsion point.
    fn disguise(&mut self, i: usize, msg: Message) -> Rc<Wire> {
        if self.nodes[i].behaviour != Behaviour::TorsionSigner {
            return Wire::new(msg);
        }
        let v = self.nodes[i].validator;
        match adversary::torsion_rewrite(&msg, &self.keys[v], ValidatorIndex(v as u16)) {
            Some(m) => {
                self.stats.forged += 1;
                Wire::new(m)
            }
            None => Wire::new(msg),
        }
    }

    /// After a broadcast: a sync liar claims a far height to some peers; a replayer re-sends an
    /// old message to a random peer now and then (and remembers its own); a round pusher, at its
    /// first vote of a round, sends every peer its votes for far rounds.
    fn adversary_extras(&mut self, i: usize, msg: &Rc<Wire>) {
        let me = self.nodes[i].validator;
        match self.nodes[i].behaviour {
            Behaviour::SyncLiar => {
                let Message::Vote(v) = &msg.msg else { return };
                if v.validator.as_usize() != me {
                    return;
                }
                for j in 0..self.nodes.len() {
                    if self.nodes[j].validator != me && self.rng.random_bool(0.5) {
                        let ahead = self.rng.random_range(1_000..1_000_000u64);
                        let claim =
                            adversary::far_claim(&self.keys[me], v.validator, v.height, ahead);
                        self.stats.forged += 1;
                        self.send(i, j, Wire::new(claim));
                    }
                }
            }
            Behaviour::RoundPusher => {
                let Message::Vote(v) = &msg.msg else { return };
                let at = (v.height, v.round);
                if v.validator.as_usize() != me || self.nodes[i].pushed_at >= Some(at) {
                    return;
                }
                self.nodes[i].pushed_at = Some(at);
                let key = &self.keys[me];
                let votes = adversary::pushed_votes(key, v.validator, &self.set, v.height, v.round);
                for vote in votes {
                    let vote = Wire::new(vote);
                    for j in 0..self.nodes.len() {
                        if self.nodes[j].validator != me {
                            self.stats.forged += 1;
                            self.send(i, j, vote.clone());
                        }
                    }
                }
            }
            Behaviour::Replayer => {
                self.remember(i, msg);
                let len = self.nodes[i].memory.len();
                if len == 0 || !self.rng.random_bool(0.3) {
                    return;
                }
                let old = self.nodes[i].memory[self.rng.random_range(0..len)].clone();
                let mut j = self.rng.random_range(0..self.nodes.len());
                if self.nodes[j].validator == me {
                    j = (j + 1) % self.nodes.len();
                }
                if self.nodes[j].validator != me {
                    self.stats.forged += 1;
                    self.send(i, j, old);
                }
            }
            _ => {}
        }
    }

    /// Node `i` answers node `j`'s sync request with `blocks`, through its behaviour: a sync
    /// liar answers nothing, an empty answer, blocks whose certificates are broken, or bytes; a
    /// body swapper the blocks with other bodies.
    fn serve_sync(&mut self, i: usize, j: usize, from: Height, mut blocks: Vec<Decision>) {
        let me = self.nodes[i].validator;
        match self.nodes[i].behaviour {
            Behaviour::SyncLiar => {
                self.stats.forged += 1;
                match self.rng.random_range(0..4u8) {
                    0 => return,
                    1 => blocks.clear(),
                    2 => {
                        for d in &mut blocks {
                            d.certificate.signatures.truncate(1);
                            d.certificate.block_hash = adversary::bogus_hash(b"cert", from);
                        }
                        if blocks.is_empty() {
                            return;
                        }
                    }
                    _ => {
                        let len = self.rng.random_range(1..128usize);
                        let mut bytes = vec![0u8; len];
                        self.rng.fill(&mut bytes[..]);
                        bytes[0] = codec::WIRE_VERSION;
                        if self.network.connected(i, j) {
                            self.push_garbage(i, j, bytes);
                        }
                        return;
                    }
                }
            }
            Behaviour::BodySwapper => {
                for d in &mut blocks {
                    d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                }
                self.stats.forged += blocks.len() as u64;
            }
            _ => {}
        }
        let msg = Wire::new(Message::SyncResponse { blocks });
        self.send_as(i, j, &msg);
    }

    /// Sends one message from `i` to `j`, through `i`'s Byzantine behaviour and the network.
    fn send_as(&mut self, i: usize, j: usize, msg: &Rc<Wire>) {
        match self.nodes[i].behaviour {
            Behaviour::Honest
            | Behaviour::GarbageSender
            | Behaviour::Amnesia
            | Behaviour::SyncLiar
            | Behaviour::Replayer
            | Behaviour::TorsionSigner
            | Behaviour::Twins
            | Behaviour::RoundPusher => self.send(i, j, msg.clone()),
            Behaviour::BodySwapper | Behaviour::ProofStripper => {
                let me = self.nodes[i].validator;
                let forged = match (&msg.msg, self.nodes[i].behaviour) {
                    (Message::Proposal(p), Behaviour::BodySwapper)
                        if p.proposer.as_usize() == me =>
                    {
                        let mut p = p.clone();
                        p.block = adversary::swap_body(&p.block, &self.keys[me], &mut self.rng);
                        Some(Message::Proposal(p))
                    }
                    (Message::Decision(d), Behaviour::BodySwapper) => {
                        let mut d = d.clone();
                        d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                        Some(Message::Decision(d))
                    }
                    (Message::Proposal(p), Behaviour::ProofStripper)
                        if p.proposer.as_usize() == me && p.valid_round.is_some() =>
                    {
                        Some(Message::Proposal(adversary::strip_polka(p, &mut self.rng)))
                    }
                    _ => None,
                };
                match forged {
                    // The forged copy first; the real one a mean link delay later.
                    Some(f) if self.second_half(i, j) => {
                        self.stats.forged += 1;
                        self.send(i, j, Wire::new(f));
                        let later = self.network.link(i, j).latency.mean_ms().round() as u64 + 1;
                        self.send_after(i, j, msg.clone(), later);
                    }
                    _ => self.send(i, j, msg.clone()),
                }
            }
            Behaviour::InvalidProposer => match &msg.msg {
                Message::Proposal(p) if p.proposer.as_usize() == i => {
                    let bad = self.invalid_proposal(i, p);
                    self.send(i, j, bad);
                }
                _ => self.send(i, j, msg.clone()),
            },
            Behaviour::Silent => {}
            Behaviour::EquivocatingProposer => {
                if let Message::Proposal(p) = &msg.msg
                    && p.proposer.as_usize() == i
                    && self.second_half(i, j)
                {
                    let forged = self.forge_proposal(i, p);
                    self.send(i, j, Wire::new(Message::Proposal(forged)));
                }
                self.send(i, j, msg.clone());
            }
            Behaviour::DoubleVoter => {
                if let Message::Vote(v) = &msg.msg
                    && v.validator.as_usize() == i
                    && self.second_half(i, j)
                {
                    let other = match v.block {
                        Some(_) => None,
                        None => Some(Hash::of(&[b"timed-sim/forged", &v.height.0.to_be_bytes()])),
                    };
                    let forged = Vote::sign(
                        &self.keys[i],
                        CHAIN_ID,
                        v.height,
                        v.round,
                        v.kind,
                        other,
                        v.validator,
                    );
                    self.send(i, j, Wire::new(Message::Vote(forged)));
                }
                self.send(i, j, msg.clone());
            }
        }
    }

    /// The peers of `i` in the upper half of the index order get the forged messages first.
    fn second_half(&self, i: usize, j: usize) -> bool {
        let pos = if j > i { j - 1 } else { j };
        pos >= (self.nodes.len() - 1) / 2
    }

    /// The same block one millisecond later: a different hash, still valid, properly signed.
    fn forge_proposal(&self, i: usize, p: &Proposal) -> Proposal {
        let mut block: Block = p.block.clone();
        block.header.timestamp = TimestampMs(block.header.timestamp.0 + 1);
        Proposal::sign(
            &self.keys[i],
            CHAIN_ID,
            p.round,
            p.valid_round,
            block,
            p.proposer,
        )
    }

    /// `p` with its block broken in one way (chosen by height and round), signed again: what an
    /// invalid proposer sends instead of its proposal. The same for every peer.
    fn invalid_proposal(&mut self, i: usize, p: &Proposal) -> Rc<Wire> {
        let key = (i, p.height, p.round, p.valid_round);
        if let Some((k, m)) = &self.invalid_cache
            && *k == key
        {
            return m.clone();
        }
        let n = self.keys.len();
        let core = self.nodes[i].core.as_ref();
        let parent_time = core
            .and_then(|c| c.last_decision())
            .map_or(self.genesis.genesis_time_ms, |d| d.block.header.timestamp);
        let ledger = core
            .filter(|c| c.height() == p.height)
            .map(|c| c.ledger().clone());
        let mut block: Block = p.block.clone();
        let tag = |what: &[u8]| Hash::of(&[b"timed-sim/invalid", what, &p.height.0.to_be_bytes()]);
        match (p.height.0 + u64::from(p.round.0)) % 7 {
            0 => {
                // Valid in every other respect: the reward goes where the header says.
                let other = ValidatorIndex(((p.proposer.as_usize() + 1) % n) as u16);
                block.header.proposer = other;
                if let Some(mut l) = ledger
                    && l.apply_block(CHAIN_ID, p.height, other, &self.set, &block.txs)
                        .is_ok()
                {
                    block.header.state_root = l.state_root();
                }
            }
            1 => block.header.timestamp = parent_time,
            2 => block.header.state_root = tag(b"state"),
            3 => block.header.tx_root = tag(b"txs"),
            4 => block.header.parent_hash = tag(b"parent"),
            5 => {
                let me = &self.keys[i];
                let nonce = ledger.map_or(0, |l| l.account(&me.public_key()).nonce);
                let tx = Transfer {
                    from: me.public_key(),
                    to: self.keys[(i + 1) % n].public_key(),
                    amount: Amount(u64::MAX / 2),
                    fee: Amount(0),
                    nonce,
                }
                .sign(me, CHAIN_ID);
                block.txs.push(tx);
                block.header.tx_root = timed_core::block::tx_root(&block.txs);
            }
            _ => block.header.timestamp = TimestampMs(block.header.timestamp.0 + 3_600_000),
        }
        let mut forged = Proposal::sign(
            &self.keys[i],
            CHAIN_ID,
            p.round,
            p.valid_round,
            block,
            p.proposer,
        );
        forged.polka = p.polka.clone();
        let m = Wire::new(Message::Proposal(forged));
        self.invalid_cache = Some((key, m.clone()));
        m
    }

    /// A garbage sender adds, to one random peer per broadcast, one of: random bytes, its message
    /// with a broken signature, or a properly signed vote for a far-future height or round.
    fn garbage(&mut self, i: usize, msg: &Rc<Wire>) {
        if self.nodes[i].behaviour != Behaviour::GarbageSender || self.nodes.len() < 2 {
            return;
        }
        let mut j = self.rng.random_range(0..self.nodes.len() - 1);
        if j >= i {
            j += 1;
        }
        self.stats.garbage_sent += 1;
        let me = ValidatorIndex(i as u16);
        match self.rng.random_range(0..4u8) {
            0 => {
                let len = self.rng.random_range(0..256usize);
                let mut bytes = vec![0u8; len];
                self.rng.fill(&mut bytes[..]);
                // Keep the version byte right half of the time so the CBOR parser is reached.
                if self.rng.random_bool(0.5) && !bytes.is_empty() {
                    bytes[0] = codec::WIRE_VERSION;
                }
                self.push_garbage(i, j, bytes);
            }
            1 => {
                let mut bad = msg.msg.clone();
                let bit = self.rng.random_range(0..64usize);
                match &mut bad {
                    Message::Vote(v) => v.signature.0[bit] ^= 1,
                    Message::Proposal(p) => p.signature.0[bit] ^= 1,
                    _ => return,
                }
                self.send(i, j, Wire::new(bad));
            }
            k => {
                let (height, round) = match &msg.msg {
                    Message::Vote(v) => (v.height, v.round),
                    Message::Proposal(p) => (p.height, p.round),
                    _ => return,
                };
                let (height, round) = if k == 2 {
                    (Height(height.0 + 1_000_000), round)
                } else {
                    (height, Round(round.0.saturating_add(1_000_000)))
                };
                let vote = Vote::sign(
                    &self.keys[i],
                    CHAIN_ID,
                    height,
                    round,
                    timed_core::message::VoteKind::Prepare,
                    None,
                    me,
                );
                self.send(i, j, Wire::new(Message::Vote(vote)));
            }
        }
    }

    /// Puts a message on the wire: partition, loss, delay, duplication.
    fn send(&mut self, from: usize, to: usize, msg: Rc<Wire>) {
        self.send_after(from, to, msg, 0);
    }

    /// A relayed forgery on the adversary's own fast path: delivered one millisecond later,
    /// never lost (a partition still stops it), so that it can overtake the real copy.
    fn send_fast(&mut self, from: usize, to: usize, msg: Rc<Wire>) {
        self.stats.messages += 1;
        if !self.network.connected(from, to) {
            self.stats.dropped += 1;
            return;
        }
        self.in_flight(to, &msg);
        let inc = self.nodes[to].incarnation;
        self.push(self.now + 1, Ev::Deliver { to, inc, from, msg });
    }

    /// As `send`, `extra_ms` later than the network alone would deliver it.
    fn send_after(&mut self, from: usize, to: usize, msg: Rc<Wire>, extra_ms: u64) {
        if from == to {
            return;
        }
        self.stats.messages += 1;
        if !self.network.connected(from, to) {
            self.stats.dropped += 1;
            return;
        }
        match self.network.fate(from, to, &mut self.rng) {
            Fate::Lost => self.stats.dropped += 1,
            Fate::Delivered(d1, d2) => {
                self.in_flight(to, &msg);
                let inc = self.nodes[to].incarnation;
                if let Some(d2) = d2 {
                    self.stats.duplicated += 1;
                    self.push(
                        self.now + d2 + extra_ms,
                        Ev::Deliver {
                            to,
                            inc,
                            from,
                            msg: msg.clone(),
                        },
                    );
                }
                self.push(self.now + d1 + extra_ms, Ev::Deliver { to, inc, from, msg });
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.core.take().is_some() {
            node.incarnation += 1;
            node.crashes += 1;
            node.crash_at_persist = false;
            self.stats.crashes += 1;
            info!(
                "t={} n{i} crashed at stored height {}",
                self.now,
                node.height()
            );
        }
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].core.is_some() {
            // A crash-at-persist armed while the node had nothing to persist (partitioned, say)
            // would otherwise fire after the schedule's last restart and leave the node down for
            // good, when the scenario promised that everything heals.
            self.nodes[i].crash_at_persist = false;
            return;
        }
        let node = &self.nodes[i];
        let restore = Restore {
            last: node.chain.values().next_back().cloned(),
            ledger: Some((*node.ledger).clone()),
            records: node.records.clone(),
            guard: if self.sign_guard { node.guard } else { None },
        };
        match Node::restore(
            &self.genesis,
            self.keys[i].clone(),
            NodeConfig::default(),
            restore,
        ) {
            Ok(core) => {
                let h = core.height();
                let node = &mut self.nodes[i];
                node.incarnation += 1;
                node.core = Some(core);
                let inc = node.incarnation;
                info!("t={} n{i} restarted at height {h}", self.now);
                let checked = self.nodes[i].checked();
                self.checker.on_restart(i, h, checked);
                self.push(self.now, Ev::Start { node: i, inc });
                for j in 0..self.nodes.len() {
                    if j != i && self.nodes[j].is_up() {
                        self.connect(i, j);
                    }
                }
            }
            Err(e) => self.checker.violations.push(Violation {
                step: self.stats.steps,
                time_ms: self.now,
                node: Some(i),
                rule: "restore-failed",
                detail: e.to_string(),
            }),
        }
    }

    /// Raw bytes from `i` reach `j` a millisecond later (its current incarnation).
    fn push_garbage(&mut self, i: usize, j: usize, bytes: Vec<u8>) {
        let inc = self.nodes[j].incarnation;
        self.push(
            self.now + 1,
            Ev::Garbage {
                to: j,
                inc,
                from: i,
                bytes,
            },
        );
    }

    /// The durable state of a crashed node loses what `loss` says; its key and last-signed
    /// point stay.
    fn lose(&mut self, i: usize, loss: StorageLoss) {
        self.stats.storage_losses += 1;
        let top = self.nodes[i].height();
        match loss {
            StorageLoss::Wiped => {
                let node = &mut self.nodes[i];
                node.chain.clear();
                node.ledger = Rc::new(Ledger::from_genesis(&self.genesis));
                node.records.clear();
            }
            StorageLoss::Backup => {
                let keep = Height(self.rng.random_range(0..top.0.max(1)));
                let mut ledger = Ledger::from_genesis(&self.genesis);
                for (h, d) in self.nodes[i].chain.range(..=keep) {
                    let b = &d.block;
                    let applied =
                        ledger.apply_block(CHAIN_ID, *h, b.header.proposer, &self.set, &b.txs);
                    debug_assert!(applied.is_ok(), "a stored block applies again");
                }
                let node = &mut self.nodes[i];
                node.chain.split_off(&keep.next());
                node.ledger = Rc::new(ledger);
                node.records.clear();
            }
            StorageLoss::WalCut => {
                let len = self.nodes[i].records.len();
                let keep = self.rng.random_range(0..len.max(1));
                self.nodes[i].records.truncate(keep);
            }
        }
        let top = self.nodes[i].height();
        info!(
            "t={} n{i} lost storage ({loss:?}), now at stored height {top}",
            self.now
        );
        self.checker.on_storage_lost(i, top);
    }

    fn schedule_submit(&mut self) {
        let Some(w) = &self.scenario.transactions else {
            return;
        };
        let next = self.now + self.workload_rng.random_range(1..=2 * w.interval.0);
        if w.until.is_none_or(|u| next <= u.0) {
            self.push(next, Ev::Submit);
        }
    }

    /// One transfer from a random sender (a client or a validator) to another account, handed
    /// to a random live node; about one in ten is invalid on purpose.
    fn submit(&mut self) {
        self.schedule_submit();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let rng = &mut self.workload_rng;
        let target = up[rng.random_range(0..up.len())];
        let senders = self.clients.len() + self.keys.len();
        let from = rng.random_range(0..senders);
        let mut to = rng.random_range(0..senders - 1);
        if to >= from {
            to += 1;
        }
        let key_of = |k: usize| {
            if k < self.clients.len() {
                &self.clients[k]
            } else {
                &self.keys[k - self.clients.len()]
            }
        };
        let (sender, receiver) = (key_of(from).clone(), key_of(to).public_key());
        let Some(core) = self.nodes[target].core.as_ref() else {
            return;
        };
        let account = core.ledger().account(&sender.public_key());
        // Nonces run ahead of the target's ledger while transfers are pending; when they run too
        // far (transfers lost with a crashed node or a full mempool), start again from the ledger.
        let issued = self.next_nonce.entry(sender.public_key()).or_insert(0);
        if *issued < account.nonce || *issued > account.nonce + 8 {
            *issued = account.nonce;
        }
        let mut nonce = *issued;
        let balance = account.balance.0;
        let mut amount = rng.random_range(0..=balance / 8) + 1;
        let fee = rng.random_range(0..=1_000u64.min(balance / 16));
        let mut broken = false;
        match rng.random_range(0..30u8) {
            0 => nonce += rng.random_range(1..100u64),
            1 => amount = balance.saturating_add(1),
            2 => broken = true,
            _ => *issued += 1,
        }
        let mut tx = Transfer {
            from: sender.public_key(),
            to: receiver,
            amount: Amount(amount),
            fee: Amount(fee),
            nonce,
        }
        .sign(&sender, CHAIN_ID);
        if broken {
            tx.signature.0[0] ^= 1;
        }
        debug!("t={} n{target} submit {}", self.now, tx.hash().short());
        self.stats.txs_submitted += 1;
        self.step(target, Input::SubmitTx(tx));
    }

    /// Both ends learn of a (re-)established connection after one link delay.
    fn connect(&mut self, a: usize, b: usize) {
        if !self.network.connected(a, b) || self.nodes[a].validator == self.nodes[b].validator {
            return;
        }
        let d = self.network.link(a, b).latency.mean_ms().round() as u64;
        let (ia, ib) = (self.nodes[a].incarnation, self.nodes[b].incarnation);
        self.push(
            self.now + d,
            Ev::Connected {
                node: a,
                inc: ia,
                peer: b,
            },
        );
        self.push(
            self.now + d,
            Ev::Connected {
                node: b,
                inc: ib,
                peer: a,
            },
        );
    }

    fn max_decided(&self) -> Height {
        self.checker
            .decided()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Height(0))
    }

    fn fault(&mut self, k: usize) {
        let kind = self.scenario.faults[k].kind.clone();
        info!("t={} fault: {kind:?}", self.now);
        match kind {
            FaultKind::Partition { groups } => {
                let before: Vec<Vec<bool>> = self.connectivity();
                self.network.partition(&groups);
                self.partition_base = Some(self.max_decided());
                self.reconnect_newly_connected(&before);
            }
            FaultKind::Heal => {
                let before = self.connectivity();
                self.network.heal();
                self.partition_base = None;
                self.reconnect_newly_connected(&before);
            }
            FaultKind::Crash { node } => self.crash(node),
            FaultKind::CrashAtPersist { node } => {
                if self.nodes[node].is_up() {
                    self.nodes[node].crash_at_persist = true;
                }
            }
            FaultKind::Restart { node } => self.restart(node),
            FaultKind::RestartLost { node, loss } => {
                self.crash(node);
                // Losing the last copy of a block is beyond any fault model (nobody can sign it
                // again, nor should): blocks are lost only while another honest node stores
                // every block this one does. A cut WAL loses records, never blocks.
                let top = |n: &SimNode| n.chain.keys().next_back().copied().unwrap_or(Height(0));
                let held = top(&self.nodes[node]);
                let copied =
                    self.nodes.iter().enumerate().any(|(j, n)| {
                        j != node && n.behaviour == Behaviour::Honest && top(n) >= held
                    });
                // The same holds for the block its guard is locked on at a height not yet final:
                // with every copy gone nobody can propose it or prove its polka again, and the
                // lock holds every other block off (swarm seed 7628: both of two validators lost
                // their records in one height, the last copies of the locked block with them).
                let lock_kept = match self.nodes[node].guard.and_then(|g| g.lock) {
                    Some(lock) if lock.height > held => {
                        self.nodes.iter().enumerate().any(|(j, n)| {
                            j != node
                                && n.behaviour == Behaviour::Honest
                                && (top(n) >= lock.height || n.holds_block(lock.block))
                        })
                    }
                    _ => true,
                };
                if (copied || loss == StorageLoss::WalCut) && lock_kept {
                    self.lose(node, loss);
                } else {
                    info!(
                        "t={} n{node} keeps its storage ({loss:?} skipped): no other honest node holds its {held} blocks, or the block it is locked on",
                        self.now
                    );
                }
                self.restart(node);
            }
            FaultKind::Behave { node, behaviour } => {
                self.nodes[node].behaviour = behaviour;
                let checked = self.nodes[node].checked();
                self.checker.set_checked(node, checked);
            }
            FaultKind::Reliable { on } => self.network.loss_enabled = !on,
            FaultKind::IsolateFinalizer => {
                if let Some(&node) = self.fired_by.get(&k) {
                    let before = self.connectivity();
                    self.network.partition(&[vec![node]]);
                    self.partition_base = Some(self.max_decided());
                    self.reconnect_newly_connected(&before);
                }
            }
        }
    }

    fn connectivity(&self) -> Vec<Vec<bool>> {
        let n = self.nodes.len();
        (0..n)
            .map(|a| (0..n).map(|b| self.network.connected(a, b)).collect())
            .collect()
    }

    fn reconnect_newly_connected(&mut self, before: &[Vec<bool>]) {
        for (a, row) in before.iter().enumerate() {
            for (b, was) in row.iter().enumerate().skip(a + 1) {
                if !*was
                    && self.network.connected(a, b)
                    && self.nodes[a].is_up()
                    && self.nodes[b].is_up()
                {
                    self.connect(a, b);
                }
            }
        }
    }

    fn honest_up(&self) -> impl Iterator<Item = (usize, &SimNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.behaviour == Behaviour::Honest && n.is_up())
    }

    /// At `after` the liveness phase starts; at `after + within` it is judged.
    fn liveness_event(&mut self) {
        let Some(l) = self.scenario.expect.liveness.clone() else {
            return;
        };
        match self.liveness_base {
            None => {
                let base = self.max_decided();
                // The rule holds once a quorum of honest stake is up and connected; a scenario
                // whose phase starts otherwise promises what no protocol can keep.
                let connected = self
                    .honest_up()
                    .map(|(a, _)| {
                        let stake = self
                            .honest_up()
                            .filter(|(b, _)| self.network.connected(a, *b))
                            .map(|(b, _)| self.set.stake_of(self.index_of(b)).0)
                            .sum::<u64>();
                        Stake(stake)
                    })
                    .max()
                    .unwrap_or(Stake(0));
                if !self.set.is_quorum(connected) {
                    self.expectation_failures.push(format!(
                        "the liveness phase starts at {} ms with {} of {} stake honest, up and \
                         connected: less than two thirds, so it cannot be judged",
                        self.now,
                        connected.0,
                        self.set.total_stake().0
                    ));
                }
                info!(
                    "t={} liveness phase: every honest node must reach {} within {} ms",
                    self.now,
                    base.0 + l.gain,
                    l.within.0
                );
                self.liveness_base = Some((base, self.now + l.within.0));
                self.push(self.now + l.within.0, Ev::LivenessDeadline);
            }
            Some((base, _)) => {
                let target = base.0 + l.gain;
                let laggards: Vec<String> = self
                    .honest_up()
                    .filter(|(_, n)| n.height().0 < target)
                    .map(|(i, n)| format!("node {i} at {}", n.height()))
                    .collect();
                let none_up = self.honest_up().next().is_none();
                if !laggards.is_empty() || none_up {
                    self.checker.violations.push(Violation {
                        step: self.stats.steps,
                        time_ms: self.now,
                        node: None,
                        rule: "liveness",
                        detail: format!(
                            "{} ms after all faults healed, height {target} is not reached: {}",
                            l.within.0,
                            if none_up {
                                "no honest node is up".to_string()
                            } else {
                                laggards.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    }

    /// The scenario's expectations, judged at the end of a run without violations.
    fn check_end(&mut self) {
        let e = self.scenario.expect.clone();
        if let Some(min) = e.min_height {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.behaviour == Behaviour::Honest && n.height().0 < min {
                    self.expectation_failures.push(format!(
                        "node {i} reached height {}, expected at least {min}",
                        n.height()
                    ));
                }
            }
        }
        if let Some(min) = e.min_evidence
            && self.stats.evidence < min
        {
            self.expectation_failures.push(format!(
                "{} pieces of evidence reported, expected at least {min}",
                self.stats.evidence
            ));
        }
        if e.full_certificates {
            let n = self.nodes.len();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.behaviour != Behaviour::Honest {
                    continue;
                }
                let top = node.height();
                for (h, d) in node.chain.range(..top) {
                    if d.certificate.signatures.len() != n {
                        self.expectation_failures.push(format!(
                            "node {i}: certificate of height {h} has {} of {n} signatures",
                            d.certificate.signatures.len()
                        ));
                        break;
                    }
                }
            }
        }
    }

    /// Whether no invariant broke and every expectation held.
    pub fn passed(&self) -> bool {
        self.checker.violations.is_empty() && self.expectation_failures.is_empty()
    }
}

/// One short line for a message in the event log.
pub fn describe(msg: &Message) -> String {
    match msg {
        Message::Proposal(p) => format!(
            "proposal h={} r={} by v{} block {}",
            p.height,
            p.round,
            p.proposer,
            p.block.hash().short()
        ),
        Message::Vote(v) => format!(
            "{} h={} r={} by v{} for {}",
            msg.kind(),
            v.height,
            v.round,
            v.validator,
            v.block.map_or("nil".to_string(), |b| b.short())
        ),
        Message::Decision(d) => format!(
            "decision h={} block {} ({} sigs)",
            d.block.height(),
            d.block.hash().short(),
            d.certificate.signatures.len()
        ),
        Message::SyncRequest { from, max_blocks } => {
            format!("sync request from {from} (up to {max_blocks})")
        }
        Message::SyncResponse { blocks } => format!("sync response of {} blocks", blocks.len()),
        Message::Transaction(tx) => format!("transaction {}", tx.hash().short()),
        Message::BlockRequest { height, hash } => {
            format!("block request h={height} block {}", hash.short())
        }
        Message::BlockResponse { block } => format!(
            "block response h={} block {}",
            block.height(),
            block.hash().short()
        ),
    }
}
