//! The consensus loop: feeds the core its inputs (messages, timers, connections, transactions)
//! and performs its outputs in order, as `timed_core::consensus` prescribes:
//!
//! - consecutive `Persist` records are written in one durable commit (group commit), and that
//!   commit returns before any later output of the same step is performed;
//! - `Broadcast`/`Send` queue a frame per peer (dropped when a peer's queue is full: the core
//!   re-sends what matters);
//! - `Schedule` goes into a timer heap (never cancelled; stale timers are ignored by the core);
//! - `Finalized`/`CertificateExtended` go to the store, `ServeSync` is answered from it;
//! - events are logged (the design notes' lines) and counted.
//!
//! A storage failure stops the node: going on could send a signed message that is not durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use timed_core::consensus::{Event, Input, Misbehaviour, Node, Output, PersistRecord, Step, Timer};
use timed_core::ledger::TxError;
use timed_core::message::{Decision, Message, VoteKind};
use timed_core::types::{Hash, Height, TimestampMs, ValidatorIndex};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::ctx::{Chain, CoreInput, Ctx, lock, unix_ms};
use crate::net::frame_of;
use crate::store::StoreError;

/// The byte budget of one sync response, below the message limit.
const SYNC_BUDGET: usize = timed_core::codec::MAX_MESSAGE_BYTES - 256 * 1024;

type TxWaiter = oneshot::Sender<Result<Hash, TxError>>;

pub struct Driver {
    node: Node,
    ctx: Arc<Ctx>,
    chain: Arc<Chain>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
    tx_waiters: HashMap<Hash, Vec<TxWaiter>>,
    batch: Vec<PersistRecord>,
    /// Per peer: last height sampled and the smoothed offset of its clock to ours (ms).
    offsets: BTreeMap<ValidatorIndex, (Height, f64)>,
    last_skew_warning: Option<Instant>,
}

impl Driver {
    pub fn new(node: Node, ctx: Arc<Ctx>, chain: Arc<Chain>) -> Driver {
        Driver {
            node,
            ctx,
            chain,
            timers: BinaryHeap::new(),
            seq: 0,
            tx_waiters: HashMap::new(),
            batch: Vec::new(),
            offsets: BTreeMap::new(),
            last_skew_warning: None,
        }
    }

    /// Runs until shutdown or a storage failure.
    pub async fn run(mut self, mut rx: mpsc::Receiver<CoreInput>) -> Result<(), StoreError> {
        let mut shutdown = self.ctx.shutdown.clone();
        self.step(Input::Start)?;
        loop {
            let deadline = self.timers.peek().map(|Reverse((t, _, _))| *t);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                _ = sleep_until(deadline) => self.fire_timers()?,
                input = rx.recv() => match input {
                    None => return Ok(()),
                    Some(input) => self.on_input(input)?,
                },
            }
        }
    }

    fn fire_timers(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        while let Some(Reverse((at, _, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.step(Input::Timeout(timer))?;
        }
        Ok(())
    }

    fn on_input(&mut self, input: CoreInput) -> Result<(), StoreError> {
        match input {
            CoreInput::Message { from, msg } => {
                if let Message::Proposal(p) = &msg {
                    self.sample_clock(from, p.height, p.block.header.timestamp);
                }
                self.step(Input::Message { from, msg })
            }
            CoreInput::PeerConnected(peer) => self.step(Input::PeerConnected(peer)),
            CoreInput::SubmitTx(tx, reply) => {
                self.tx_waiters.entry(tx.hash()).or_default().push(reply);
                self.step(Input::SubmitTx(tx))
            }
        }
    }

    /// Estimates a peer's clock offset from the timestamp of its fresh proposals.
    fn sample_clock(&mut self, from: ValidatorIndex, height: Height, ts: TimestampMs) {
        if height != self.node.height() {
            return;
        }
        let sample = ts.0 as f64 - unix_ms() as f64;
        let entry = self.offsets.entry(from).or_insert((Height(0), sample));
        if entry.0 >= height {
            return;
        }
        entry.0 = height;
        entry.1 = 0.8 * entry.1 + 0.2 * sample;
        let mut all: Vec<f64> = self.offsets.values().map(|(_, o)| *o).collect();
        all.sort_by(f64::total_cmp);
        let median = all[all.len() / 2].round() as i64;
        self.ctx.metrics.clock_offset_ms.set(median);
        lock(&self.ctx.live).clock_offset_ms = median;
        let drift = self.chain.genesis.params.max_clock_drift_ms as i64;
        if median.abs() > drift / 2
            && self
                .last_skew_warning
                .is_none_or(|t| t.elapsed().as_secs() >= 60)
        {
            self.last_skew_warning = Some(Instant::now());
            warn!(
                "Clock skew: the peers' clocks are {median} ms off ours (proposals more than \
                 {drift} ms ahead are refused); check NTP on this machine"
            );
        }
    }

    fn step(&mut self, input: Input) -> Result<(), StoreError> {
        let outputs = self.node.handle(TimestampMs(unix_ms()), input);
        for out in outputs {
            if let Output::Persist(r) = out {
                self.batch.push(r);
                continue;
            }
            self.flush()?;
            self.perform(out)?;
        }
        self.flush()?;
        self.update_live();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.ctx.store.persist(&self.batch)?;
        self.ctx
            .metrics
            .persist_seconds
            .observe(start.elapsed().as_secs_f64());
        self.batch.clear();
        Ok(())
    }

    fn send_to(&self, to: ValidatorIndex, frame: bytes::Bytes) {
        let peers = lock(&self.ctx.peers);
        if let Some(p) = peers.get(&to) {
            self.queue(p, frame);
        }
    }

    fn queue(&self, p: &crate::ctx::PeerQueue, frame: bytes::Bytes) {
        let len = frame.len() as u64;
        if p.tx.try_send(frame).is_ok() {
            self.ctx.metrics.bytes_out.inc_by(len);
        } else {
            self.ctx
                .metrics
                .frames_dropped
                .get_or_create(&[("reason", "peer_queue_full")])
                .inc();
        }
    }

    fn perform(&mut self, out: Output) -> Result<(), StoreError> {
        match out {
            Output::Persist(r) => self.batch.push(r),
            Output::Broadcast(msg) => {
                let frame = frame_of(&msg);
                let peers = lock(&self.ctx.peers);
                for p in peers.values() {
                    self.queue(p, frame.clone());
                }
            }
            Output::Send { to, msg } => self.send_to(to, frame_of(&msg)),
            Output::Schedule { timer, after_ms } => {
                self.seq += 1;
                let at = Instant::now() + std::time::Duration::from_millis(after_ms);
                self.timers.push(Reverse((at, self.seq, timer)));
            }
            Output::Finalized(f) => self.on_finalized(&f)?,
            Output::CertificateExtended(cert) => self.ctx.store.extend_certificate(&cert)?,
            Output::ServeSync {
                to,
                from,
                max_blocks,
            } => {
                let blocks = self
                    .ctx
                    .store
                    .range(from, max_blocks as usize, SYNC_BUDGET)?
                    .into_iter()
                    .map(|s| Decision {
                        block: s.block,
                        certificate: s.certificate,
                    })
                    .collect();
                self.send_to(to, frame_of(&Message::SyncResponse { blocks }));
            }
            Output::Evidence(m) => {
                self.ctx.metrics.evidence.inc();
                lock(&self.ctx.live).evidence += 1;
                let who = self.chain.name(m.validator()).to_string();
                match *m {
                    Misbehaviour::DoubleVote(_) => {
                        warn!("⚠️ Equivocation: {who} signed two different votes for one slot")
                    }
                    Misbehaviour::DoubleProposal { .. } => {
                        warn!("⚠️ Equivocation: {who} signed two different proposals for one round")
                    }
                }
            }
            Output::TxAccepted { hash } => {
                for w in self.tx_waiters.remove(&hash).unwrap_or_default() {
                    let _ = w.send(Ok(hash));
                }
            }
            Output::TxRejected { hash, error } => {
                for w in self.tx_waiters.remove(&hash).unwrap_or_default() {
                    let _ = w.send(Err(error.clone()));
                }
            }
            Output::Event(e) => self.on_event(e),
        }
        Ok(())
    }

    fn on_finalized(&mut self, f: &timed_core::consensus::Finalized) -> Result<(), StoreError> {
        let now = unix_ms();
        let finality_ms = now.saturating_sub(f.block.header.timestamp.0);
        self.ctx.store.finalize(f, finality_ms)?;
        let h = f.block.height();
        let hash = hex::encode(f.block.hash().0);
        self.ctx.metrics.blocks_finalized.inc();
        self.ctx
            .metrics
            .finality_seconds
            .observe(finality_ms as f64 / 1000.0);
        {
            let mut live = lock(&self.ctx.live);
            live.last_block_hash = Some(hash.clone());
            live.finality_latency_ms = Some(finality_ms);
            live.blocks_finalized_here += 1;
        }
        info!(
            hash = %&hash[..16],
            round = f.certificate.round.0,
            signatures = f.certificate.signatures.len(),
            finality_ms,
            "⛓️  Block finalized at height {h}"
        );
        let o = &f.outcome;
        let shares: Vec<String> = o
            .rewards
            .iter()
            .map(|r| format!("{}: {}", self.chain.name(r.validator), r.amount))
            .collect();
        info!(
            "💰 Block {h} rewards - subsidy: {}, fees: {}, proposer: {}, shares: {}",
            o.subsidy,
            o.fees,
            self.chain.name(f.block.header.proposer),
            shares.join(", ")
        );
        info!(
            "🎉 Block finalization complete: {} distributed, {} txs archived",
            o.total_reward,
            o.archived.len()
        );
        Ok(())
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Proposing {
                height,
                round,
                txs,
                reproposal,
                ..
            } => {
                info!(
                    round = round.0,
                    txs, reproposal, "📦 Proposing block at height {height}"
                )
            }
            Event::ProposalAccepted {
                height,
                round,
                proposer,
                ..
            } => debug!(
                "Proposal accepted at height {height} round {round} from {}",
                self.chain.name(proposer)
            ),
            Event::VoteCounted {
                kind,
                validator,
                weight,
                total,
                height,
                round,
                ..
            } => {
                let label = match kind {
                    VoteKind::Prepare => "prepare",
                    VoteKind::Precommit => "precommit",
                };
                self.ctx
                    .metrics
                    .votes_received
                    .get_or_create(&[("kind", label)])
                    .inc();
                let who = self.chain.name(validator);
                match kind {
                    VoteKind::Prepare => info!(
                        height = height.0,
                        round = round.0,
                        "Prepare vote from {who} - weight: {weight}/{total}"
                    ),
                    VoteKind::Precommit => info!(
                        height = height.0,
                        round = round.0,
                        "Precommit vote from {who} - weight: {weight}/{total}"
                    ),
                }
            }
            Event::Rejected { kind, reason } => {
                self.ctx
                    .metrics
                    .rejected
                    .get_or_create(&[("kind", kind), ("reason", reason)])
                    .inc();
                debug!(kind, reason, "message rejected");
            }
            Event::PrepareQuorum {
                height,
                round,
                block,
            } => match block {
                Some(_) => info!(
                    height = height.0,
                    round = round.0,
                    "✅ Prepare consensus reached!"
                ),
                None => info!(height = height.0, round = round.0, "Prepare quorum for nil"),
            },
            Event::PrecommitQuorum {
                height,
                round,
                block,
            } => match block {
                Some(_) => info!(
                    height = height.0,
                    round = round.0,
                    "✅ Precommit consensus reached!"
                ),
                None => info!(
                    height = height.0,
                    round = round.0,
                    "Precommit quorum for nil"
                ),
            },
            Event::RoundChanged {
                height,
                round,
                reason,
            } => {
                info!("Round {round} at height {height} ({reason:?}): a new proposer")
            }
            Event::SyncRequested { peer, from } => {
                self.ctx.metrics.sync_requests.inc();
                info!(
                    "Catching up: asked {} for blocks from height {from}",
                    self.chain.name(peer)
                );
            }
        }
    }

    fn update_live(&self) {
        let n = &self.node;
        let height = n.height().0;
        self.ctx.metrics.height.set(height as i64);
        self.ctx.metrics.round.set(i64::from(n.round().0));
        let mut live = lock(&self.ctx.live);
        live.height = n.last_decision().map_or(0, |d| d.block.height().0);
        live.deciding_height = height;
        live.round = n.round().0;
        live.pending_blocks = u64::from(n.step() != Step::NewHeight);
        live.pending_transactions = n.mempool().len();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
