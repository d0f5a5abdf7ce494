//! The consensus loop: feeds the core its inputs (messages, timers, connections, transactions)
//! and performs its outputs in order, as `timed_core::consensus` prescribes:
//!
//! - consecutive `Persist` records are written in one durable commit (group commit), and that
//!   commit returns before any later output of the same step is performed; so does the update of
//!   the double-sign guard file to the last point the group signed (`guard.rs`);
//! - `Broadcast`/`Send` queue a frame per peer (dropped when a peer's queue is full: the core
//!   re-sends what matters);
//! - `Schedule` goes into a timer heap (never cancelled; stale timers are ignored by the core);
//! - `Finalized`/`CertificateExtended` go to the store, `ServeSync` is answered from it;
//! - events are logged (the design notes' lines) and counted.
//!
//! A storage failure stops the node: going on could send a signed message that is not durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use timed_core::block::Certificate;
use timed_core::consensus::{
    Event, Input, Misbehaviour, Node, Output, SignGuard, Step, Timer, Withheld,
};
use timed_core::ledger::TxError;
use timed_core::message::{Message, Vote, VoteKind, verify_votes};
use timed_core::tx::SignedTransfer;
use timed_core::types::{Hash, Height, TimestampMs, ValidatorIndex};
use timed_core::validators::ValidatorSet;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::ctx::{Chain, CoreInput, Ctx, lock, unix_ms};
use crate::finality::Witness;
use crate::guard::Guard;
use crate::net::{frame_of, queue_frame, send_frame};
use crate::store::{StoreError, StoredBlock};
use crate::syncserve::SyncServer;
use crate::wal::WalRecord;

/// An output of a step still to perform once its WAL group is written.
// Lives for one step only: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Todo {
    Output(Output),
    Finalized(Box<StoredBlock>),
}

/// The outputs of a group of steps, to perform once the group's WAL batch is written.
#[derive(Default)]
struct Group {
    todo: Vec<Todo>,
    /// The batch holds a `Persist` record: sync it.
    sync: bool,
    /// The last point the group's records sign at: the guard file holds it before any output.
    signs: Option<SignGuard>,
}

/// A guard update slower than this (smoothed) runs on a thread beside the WAL's sync.
///
/// Measured at block time 0 with 5 nodes on this VM (2 cores, loaded by other builds; the spread
/// between runs of one binary is wide): on tmpfs the guard costs nothing measurable this way
/// (220 vs 206 blocks/s, 228 vs 274), where a thread every time cost a quarter; on ext4 it costs
/// 15-25 % (93 vs 120, 96 vs 113) with either threshold tried (200 us, 30 us), as it did on a
/// thread every time: that is the price of a second fdatasync per signing group.
const GUARD_SLOW_SECS: f64 = 200e-6;

/// At most this many queued inputs form one group.
const MAX_GROUP: usize = 64;

/// How long a longer certificate may wait for the next block's transaction.
const EXTENSION_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Finalized blocks without transfers are committed to redb together: at most this many...
const STORE_BATCH_BLOCKS: usize = 16;
/// ...and the oldest waits at most this long. One redb transaction per block was a tenth of a
/// node's CPU at block time 0; the WAL already holds these blocks, so waiting risks nothing.
/// A block with transfers is committed at once (with those before it): wallets wait for it.
const STORE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

type TxWaiter = oneshot::Sender<Result<Hash, TxError>>;

pub struct Driver {
    node: Node,
    /// The double-sign guard file (the last point this validator signed).
    guard: Guard,
    /// The smoothed duration of a guard update (seconds): above `GUARD_SLOW_SECS`, it runs beside
    /// the WAL's sync (`flush`).
    guard_secs: f64,
    ctx: Arc<Ctx>,
    chain: Arc<Chain>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
    tx_waiters: HashMap<Hash, VecDeque<TxWaiter>>,
    batch: Vec<WalRecord>,
    /// Per peer: last height sampled and the smoothed offset of its clock to ours (ms).
    offsets: BTreeMap<ValidatorIndex, (Height, f64)>,
    last_skew_warning: Option<Instant>,
    /// A longer certificate of a stored block not yet written, and since when.
    extended: Option<(Certificate, Instant)>,
    /// Finalized blocks (in the WAL) not yet committed to redb, oldest first, and since when the
    /// oldest waits. What the API serves, `/status` included, is what redb holds.
    unstored: Vec<StoredBlock>,
    unstored_since: Option<Instant>,
    /// Answers peers' sync requests from the store, on a thread of its own.
    sync_server: SyncServer,
    /// The blocks seen proposed: only those measure finality.
    witness: Witness,
}

impl Driver {
    pub fn new(node: Node, guard: Guard, ctx: Arc<Ctx>, chain: Arc<Chain>) -> Driver {
        let ctx_for_sync = ctx.clone();
        ctx.metrics.set_validators(&chain.set, node.me());
        Driver {
            node,
            guard,
            guard_secs: 0.0,
            ctx,
            chain,
            timers: BinaryHeap::new(),
            seq: 0,
            tx_waiters: HashMap::new(),
            batch: Vec::new(),
            offsets: BTreeMap::new(),
            last_skew_warning: None,
            extended: None,
            unstored: Vec::new(),
            unstored_since: None,
            sync_server: SyncServer::start(ctx_for_sync),
            witness: Witness::default(),
        }
    }

    /// Runs until shutdown or a storage failure.
    pub async fn run(mut self, mut rx: mpsc::Receiver<CoreInput>) -> Result<(), StoreError> {
        let mut shutdown = self.ctx.shutdown.clone();
        self.step(Input::Start)?;
        loop {
            if self
                .unstored_since
                .is_some_and(|t| t.elapsed() >= STORE_DELAY)
            {
                self.store_blocks()?;
            }
            let deadline = self.timers.peek().map(|Reverse((t, _, _))| *t);
            let store_at = self.unstored_since.map(|t| t + STORE_DELAY);
            let wake = match (deadline, store_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A timer already due fires now: tokio's timer wheel has a granularity of 1 ms, and
            // at block time 0 the next height starts from a timer of 0 ms.
            if deadline.is_some_and(|d| d <= Instant::now()) {
                self.fire_timers()?;
                // Let the network and the API run between heights.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return self.close(),
                _ = sleep_until(wake) => self.fire_timers()?,
                input = rx.recv() => match input {
                    None => return self.close(),
                    Some(input) => self.on_inputs(input, &mut rx)?,
                },
            }
            self.flush_old_extension()?;
            // The group's messages wait in the peers' queues until the tasks that write them to
            // QUIC run: on this single-threaded runtime that is when this task yields, which it
            // would not do while inputs keep arriving. Yield after every group.
            tokio::task::yield_now().await;
        }
    }

    fn fire_timers(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut group = Group::default();
        while let Some(Reverse((at, _, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.handle(Input::Timeout(timer), &mut group);
        }
        self.complete(group)
    }

    /// The inputs queued now (at most `MAX_GROUP`) as one group: their votes' signatures checked
    /// in one batch, one WAL write and sync for all of their records, then their outputs.
    fn on_inputs(
        &mut self,
        first: CoreInput,
        rx: &mut mpsc::Receiver<CoreInput>,
    ) -> Result<(), StoreError> {
        let mut inputs = vec![first];
        while inputs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(input) => inputs.push(input),
                Err(_) => break,
            }
        }
        let checked = self.check_votes(&inputs);
        let mut group = Group::default();
        for (input, checked) in inputs.into_iter().zip(checked) {
            self.on_input(input, checked, &mut group);
        }
        self.complete(group)
    }

    fn check_votes(&self, inputs: &[CoreInput]) -> Vec<VoteCheck> {
        let node = &self.node;
        vote_checks(
            inputs,
            node.height(),
            node.validators(),
            node.chain_id(),
            |v| node.holds_vote(v),
        )
    }

    fn on_input(&mut self, input: CoreInput, checked: VoteCheck, group: &mut Group) {
        match input {
            CoreInput::Message { from, msg } => {
                if let Message::Proposal(p) = &msg {
                    self.sample_clock(from, p.height, p.block.header.timestamp);
                }
                let input = match (checked, &msg) {
                    (VoteCheck::Good, _) => Input::SignatureChecked { from, msg },
                    (VoteCheck::Bad, Message::Vote(v)) => {
                        // Refused here: the core would only verify it a second time to refuse it.
                        let kind = v.kind.name();
                        self.on_event(Event::Rejected {
                            kind,
                            reason: "bad_signature",
                        });
                        return;
                    }
                    _ => Input::Message { from, msg },
                };
                self.handle(input, group)
            }
            CoreInput::Checked { from, msg } => {
                self.handle(Input::SignatureChecked { from, msg }, group)
            }
            CoreInput::PeerConnected(peer) => self.handle(Input::PeerConnected(peer), group),
            CoreInput::PendingTx(hash, reply) => {
                let _ = reply.send(self.node.mempool().get(&hash).cloned());
            }
            CoreInput::SubmitTx(tx, reply) => {
                self.wait_for_verdict(&tx, reply);
                self.handle(Input::SubmitTx(tx), group)
            }
            CoreInput::SubmitVerifiedTx(tx, reply) => {
                self.wait_for_verdict(&tx, reply);
                self.handle(Input::SubmitVerifiedTx(tx), group)
            }
        }
    }

    /// Estimates a peer's clock offset from the timestamp of its fresh proposals (one sample per
    /// height, smoothed), and this node's offset to its peers as their `peers_offset`.
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
        let peers = self.chain.set.len() - usize::from(self.node.me().is_some());
        let offset = peers_offset(self.offsets.values().map(|(_, o)| *o), peers);
        {
            let mut live = lock(&self.ctx.live);
            live.clock_offset_ms = offset;
            live.peer_clock_offsets_ms = self
                .offsets
                .iter()
                .map(|(v, (_, o))| (self.chain.name(*v).to_string(), o.round() as i64))
                .collect();
        }
        let Some(offset) = offset else { return };
        self.ctx
            .metrics
            .clock_offset_seconds
            .set(offset as f64 / 1000.0);
        let drift = self.chain.genesis.params.max_clock_drift_ms as i64;
        if offset.abs() > drift / 2
            && self
                .last_skew_warning
                .is_none_or(|t| t.elapsed().as_secs() >= 60)
        {
            self.last_skew_warning = Some(Instant::now());
            let (by, way) = (offset.abs(), if offset < 0 { "ahead of" } else { "behind" });
            warn!(
                clock_offset_ms = offset,
                "Clock skew: this node's clock runs {by} ms {way} its peers' clocks (proposals \
                 more than {drift} ms ahead of a validator's clock are refused); check NTP on \
                 this machine"
            );
        }
    }

    /// Hands one input to the core and sorts its outputs into `group`: `Persist` records and
    /// finalized blocks into the WAL batch, everything else (and the blocks) into the group's
    /// outputs, in order.
    ///
    /// A group is one input, or the inputs queued at once, or the timers due at once. Every
    /// `Persist` record of the group is written in one write and one fdatasync (`complete`)
    /// before any output of the group is performed: each record is then durable before every
    /// later output, as the core requires, with one sync per group (a proposer's proposal and its
    /// own prepare, a lock and its precommit, or the records of several queued messages share
    /// one). Performing an output later than the core allows is always safe; only earlier is not.
    ///
    /// A finalized block goes into the same write, in its place (see `store.rs`: the block of `h`
    /// precedes any record of `h + 1` in the WAL); it is committed to redb when performed.
    fn handle(&mut self, input: Input, group: &mut Group) {
        let outputs = self.node.handle(TimestampMs(unix_ms()), input);
        group.todo.reserve(outputs.len());
        for out in outputs {
            self.witness.note(&out);
            match out {
                Output::Persist(r) => {
                    if let Some(next) = SignGuard::after(group.signs.or(self.guard.last()), &r) {
                        group.signs = Some(next);
                    }
                    self.batch.push(WalRecord::Persist(r));
                    group.sync = true;
                }
                Output::Finalized(f) => {
                    let finality_ms = self.witness.finality(
                        &f.certificate.block_hash,
                        f.block.header.timestamp,
                        unix_ms(),
                    );
                    let f = *f;
                    let stored = Box::new(StoredBlock {
                        block: f.block,
                        certificate: f.certificate,
                        outcome: f.outcome,
                        finality_ms,
                    });
                    self.batch.push(WalRecord::Finalized(stored.clone()));
                    group.todo.push(Todo::Finalized(stored));
                }
                out => group.todo.push(Todo::Output(out)),
            }
        }
    }

    /// Writes the group's WAL batch (synced if it holds a `Persist` record) and, if the group
    /// signed anything, makes the double-sign guard hold its last point; only then performs its
    /// outputs in order (a signed message leaves here), then stores its finalized blocks in one
    /// redb transaction.
    fn complete(&mut self, group: Group) -> Result<(), StoreError> {
        self.flush(group.sync, group.signs)?;
        let mut blocks = Vec::new();
        for todo in group.todo {
            match todo {
                Todo::Output(out) => self.perform(out)?,
                Todo::Finalized(stored) => blocks.push(stored),
            }
        }
        if !blocks.is_empty() {
            // After the group's messages are on their way: the WAL already holds the blocks.
            let now_too = blocks.iter().any(|b| !b.block.txs.is_empty());
            self.unstored_since.get_or_insert_with(Instant::now);
            self.unstored.extend(blocks.into_iter().map(|b| *b));
            if now_too || self.unstored.len() >= STORE_BATCH_BLOCKS {
                return self.store_blocks(); // updates the live state
            }
        }
        self.update_live();
        Ok(())
    }

    /// Commits the waiting finalized blocks (and a pending longer certificate) in one redb
    /// transaction, then announces them (logs, metrics, summaries).
    fn store_blocks(&mut self) -> Result<(), StoreError> {
        self.unstored_since = None;
        if self.unstored.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.unstored);
        let start = Instant::now();
        let extended = self.extended.take().map(|(c, _)| c);
        self.ctx
            .store
            .commit_blocks(blocks.iter(), extended.as_ref())?;
        self.ctx
            .metrics
            .store_seconds
            .observe(start.elapsed().as_secs_f64());
        for b in &blocks {
            self.on_finalized(b);
        }
        self.update_live();
        Ok(())
    }

    /// `reply` gets the core's verdict on `tx` (each verdict answers the oldest waiter of its hash).
    fn wait_for_verdict(&mut self, tx: &SignedTransfer, reply: TxWaiter) {
        self.tx_waiters
            .entry(tx.hash())
            .or_default()
            .push_back(reply);
    }

    fn step(&mut self, input: Input) -> Result<(), StoreError> {
        let mut group = Group::default();
        self.handle(input, &mut group);
        self.complete(group)
    }

    /// A longer certificate for a stored block waits for the next block's transaction, or is
    /// written alone after `EXTENSION_DELAY`.
    fn extend_certificate(&mut self, cert: Certificate) -> Result<(), StoreError> {
        if let Some(b) = self
            .unstored
            .iter_mut()
            .find(|b| b.block.height() == cert.height)
        {
            // Not stored yet: it will be, with this certificate (the WAL's shorter one is valid).
            if b.certificate.block_hash == cert.block_hash
                && cert.signatures.len() > b.certificate.signatures.len()
            {
                b.certificate = cert;
            }
            return Ok(());
        }
        match self.extended.take() {
            Some((old, since)) if old.height == cert.height => {
                self.extended = Some((cert, since));
            }
            Some((old, _)) => {
                self.ctx.store.commit_blocks([], Some(&old))?;
                self.extended = Some((cert, Instant::now()));
            }
            None => self.extended = Some((cert, Instant::now())),
        }
        Ok(())
    }

    fn flush_old_extension(&mut self) -> Result<(), StoreError> {
        if self
            .extended
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= EXTENSION_DELAY)
            && let Some((cert, _)) = self.extended.take()
        {
            self.ctx.store.commit_blocks([], Some(&cert))?;
        }
        Ok(())
    }

    /// At shutdown: the waiting blocks, the pending certificate, then a durable point.
    fn close(&mut self) -> Result<(), StoreError> {
        self.store_blocks()?;
        if let Some((cert, _)) = self.extended.take() {
            self.ctx.store.commit_blocks([], Some(&cert))?;
        }
        self.ctx.store.close()
    }

    /// Writes the WAL batch (with one fdatasync if `sync`) and, if the group signed at `signs`,
    /// the guard file (its own fdatasync); both are durable when this returns.
    ///
    /// Where a guard update is slow (a real disk), the two syncs run at once, the guard's on a
    /// scoped thread: one after the other they cost a quarter of the blocks per second of a
    /// devnet on disk. Where it is fast (tmpfs), the thread itself cost as much, so the update is
    /// made here, after the WAL's (`GUARD_SLOW_SECS`, on a smoothed measure). A crash between the
    /// two is safe either way, since no output of the group was performed yet: a guard behind the
    /// last record is read as nothing lost, a guard ahead of it as lost records (the node watches
    /// before signing, then signs nothing at or below the guard).
    fn flush(&mut self, sync: bool, signs: Option<SignGuard>) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let (ctx, batch, guard) = (&self.ctx, &self.batch, &mut self.guard);
        let timed_record = |guard: &mut Guard, point| {
            let t = Instant::now();
            guard.record(point).map(|()| t.elapsed().as_secs_f64())
        };
        let (logged, guarded) = match signs {
            Some(point) if self.guard_secs > GUARD_SLOW_SECS => std::thread::scope(|s| {
                let h = s.spawn(move || timed_record(guard, point));
                let logged = ctx.store.log(batch, sync);
                let guarded = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                (logged, Some(guarded))
            }),
            Some(point) => {
                let logged = ctx.store.log(batch, sync);
                let guarded = logged.is_ok().then(|| timed_record(guard, point));
                (logged, guarded)
            }
            None => (ctx.store.log(batch, sync), None),
        };
        logged?;
        if let Some(secs) = guarded.transpose()? {
            self.guard_secs = 0.9 * self.guard_secs + 0.1 * secs;
        }
        if sync {
            self.ctx
                .metrics
                .persist_seconds
                .observe(start.elapsed().as_secs_f64());
        }
        self.batch.clear();
        Ok(())
    }

    fn perform(&mut self, out: Output) -> Result<(), StoreError> {
        match out {
            // Taken apart in `step`.
            Output::Persist(_) | Output::Finalized(_) => {}
            Output::Broadcast(msg) => {
                let frame = frame_of(&msg);
                let peers = lock(&self.ctx.peers);
                for p in peers.values() {
                    queue_frame(&self.ctx, p, frame.clone());
                }
            }
            Output::Send { to, msg } => send_frame(&self.ctx, to, frame_of(&msg)),
            Output::Schedule { timer, after_ms } => {
                self.seq += 1;
                let at = Instant::now() + std::time::Duration::from_millis(after_ms);
                self.timers.push(Reverse((at, self.seq, timer)));
            }
            Output::CertificateExtended(cert) => {
                crate::dashboard::extend(&self.chain, &cert);
                self.extend_certificate(cert)?
            }
            Output::ServeSync {
                to,
                from,
                max_blocks,
            } => {
                // A peer catching up gets every block we finalized; the store is read on the
                // sync thread, not here.
                self.store_blocks()?;
                if !self.sync_server.serve(to, from, max_blocks) {
                    self.ctx.metrics.dropped(crate::metrics::Dropped::SyncBusy);
                }
            }
            Output::Evidence(m) => {
                self.ctx.metrics.evidence.inc();
                lock(&self.ctx.live).evidence += 1;
                self.ctx.metrics.on_evidence(&self.chain.set, m.validator());
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
                if let Some(w) = self.next_tx_waiter(&hash) {
                    let _ = w.send(Ok(hash));
                }
            }
            Output::TxRejected { hash, error } => {
                if let Some(w) = self.next_tx_waiter(&hash) {
                    let _ = w.send(Err(error));
                }
            }
            Output::Event(e) => self.on_event(e),
        }
        Ok(())
    }

    /// The submitter an output about transfer `hash` answers. The core answers every
    /// `SubmitTx` once, in order, and a group performs its outputs only after all its inputs are
    /// in: the same transfer submitted twice in one group has two waiters, the first accepted,
    /// the second a duplicate, so each verdict goes to the oldest waiter only.
    fn next_tx_waiter(&mut self, hash: &Hash) -> Option<TxWaiter> {
        let waiters = self.tx_waiters.get_mut(hash)?;
        let first = waiters.pop_front();
        if waiters.is_empty() {
            self.tx_waiters.remove(hash);
        }
        first
    }

    fn on_finalized(&mut self, f: &StoredBlock) {
        crate::dashboard::remember(&self.chain, f);
        let finality_ms = f.finality_ms;
        let h = f.block.height();
        let hash = hex::encode(f.block.hash().0);
        self.ctx.metrics.blocks_finalized.inc();
        self.ctx
            .metrics
            .on_block(&self.chain.set, self.node.me(), f);
        if let Some(ms) = finality_ms.0 {
            self.ctx
                .metrics
                .finality_seconds
                .observe(ms as f64 / 1000.0);
        }
        {
            let mut live = lock(&self.ctx.live);
            live.last_block_hash = Some(hash.clone());
            live.finality_latency_ms = finality_ms.0.or(live.finality_latency_ms);
            live.blocks_finalized_here += 1;
        }
        info!(
            height = h.0,
            hash = %&hash[..16],
            round = f.certificate.round.0,
            signatures = f.certificate.signatures.len(),
            finality_ms = ?finality_ms.0,
            "⛓️  Block finalized at height {h}"
        );
        if !tracing::enabled!(tracing::Level::INFO) {
            return; // the lines below cost more than the rest of this at block time 0
        }
        let o = &f.outcome;
        let shares: Vec<String> = o
            .rewards
            .iter()
            .map(|r| format!("{}: {}", self.chain.name(r.validator), r.amount))
            .collect();
        let proposer = self.chain.name(f.block.header.proposer);
        info!(
            height = h.0,
            proposer,
            subsidy = o.subsidy.0,
            fees = o.fees.0,
            reward = o.total_reward.0,
            "💰 Block {h} rewards - subsidy: {}, fees: {}, proposer: {proposer}, shares: {}",
            o.subsidy,
            o.fees,
            shares.join(", ")
        );
        info!(
            height = h.0,
            reward = o.total_reward.0,
            txs = o.archived.len(),
            "🎉 Block finalization complete: {} distributed, {} txs archived",
            o.total_reward,
            o.archived.len()
        );
        info!(height = h.0 + 1, "Moving to height {}...", h.next());
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
                    height = height.0,
                    round = round.0,
                    txs,
                    reproposal,
                    "📦 Proposing block at height {height}"
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
                // DEBUG: one line per vote per validator was ~19 MiB a day at 8 s blocks.
                let who = self.chain.name(validator);
                match kind {
                    VoteKind::Prepare => debug!(
                        height = height.0,
                        round = round.0,
                        peer = who,
                        "Prepare vote from {who} - weight: {weight}/{total}"
                    ),
                    VoteKind::Precommit => debug!(
                        height = height.0,
                        round = round.0,
                        peer = who,
                        "Precommit vote from {who} - weight: {weight}/{total}"
                    ),
                }
            }
            Event::SigningWithheld { point, reason } => match reason {
                Withheld::KeyActiveElsewhere => error!(
                    "not signing at {point}: another instance is running with this validator's key; stop one of them, then restart this node"
                ),
                Withheld::Watching => info!(
                    "not signing at {point}: watching for signatures of this key made elsewhere before signing again (started without its records)"
                ),
                Withheld::BelowGuard => warn!(
                    "not signing at {point}: this validator signed at or past it before (double-sign guard), and its records of that are lost"
                ),
            },
            Event::ForeignSignature { point } => warn!(
                "a signature of this validator's key at {point} that this node did not make: another instance uses the key, or the data directory was restored from a backup"
            ),
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
                info!(
                    height = height.0,
                    round = round.0,
                    "Round {round} at height {height} ({reason:?}): a new proposer"
                )
            }
            Event::BlockRequested {
                peer,
                height,
                block,
            } => debug!(
                "Asked {} for block {block} of height {height}",
                self.chain.name(peer)
            ),
            Event::SyncRequested { peer, from } => {
                self.ctx.metrics.sync_requests.inc();
                let peer = self.chain.name(peer);
                info!(
                    peer,
                    from = from.0,
                    "Catching up: asked {peer} for blocks from height {from}"
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
        // What redb holds: the API serves blocks from there.
        live.height = match self.unstored.first() {
            Some(b) => b.block.height().0 - 1,
            None => n.last_decision().map_or(0, |d| d.block.height().0),
        };
        live.deciding_height = height;
        live.round = n.round().0;
        live.pending_blocks = n.pending_blocks() as u64;
        live.step = match n.step() {
            Step::NewHeight => "new_height",
            Step::Propose => "propose",
            Step::Prepare => "prepare",
            Step::Precommit => "precommit",
        };
        live.pending_transactions = n.mempool().len();
        self.ctx.metrics.mempool(n.mempool().len());
    }
}

/// This node's clock offset to its `peers` from their individual offsets (peer clock minus
/// ours): the median; with an even count, of the two middle values the one nearer zero, so that
/// one skewed peer out of two does not make this node look skewed. `None` until more than half
/// of the peers have been measured: one skewed peer heard first says nothing about this clock.
fn peers_offset(offsets: impl Iterator<Item = f64>, peers: usize) -> Option<i64> {
    let mut all: Vec<f64> = offsets.collect();
    if all.is_empty() || 2 * all.len() <= peers {
        return None;
    }
    all.sort_by(f64::total_cmp);
    let n = all.len();
    let m = if n % 2 == 1 {
        all[n / 2]
    } else {
        let (a, b) = (all[n / 2 - 1], all[n / 2]);
        if a.abs() <= b.abs() { a } else { b }
    };
    Some(m.round() as i64)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// What the driver's batch check says of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VoteCheck {
    /// Not a vote this check covers: the core checks it as usual.
    Unchecked,
    /// A vote whose signature is good under the one rule.
    Good,
    /// A vote of a validator of the set whose signature is not: refused without the core.
    Bad,
}

/// Which inputs are votes with a good signature, checked as one batch (`message::verify_votes`:
/// one `verify_batch`, one by one only if it fails), and which have a bad one: each validator
/// signature of the vote path is verified once per node, here (issue 12). Only votes of the
/// deciding height or later: the core checks an older one only if it extends a certificate. A
/// vote of a validator outside the set is left to the core, which refuses it before any
/// signature check; so is one the core `holds` already (a resend, which it does not check
/// again): a peer repeating a vote costs no verification.
fn vote_checks(
    inputs: &[CoreInput],
    height: Height,
    set: &ValidatorSet,
    chain_id: &str,
    holds: impl Fn(&Vote) -> bool,
) -> Vec<VoteCheck> {
    let at: Vec<(usize, &Vote)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match input {
            CoreInput::Message {
                msg: Message::Vote(v),
                ..
            } if v.height >= height && set.get(v.validator).is_some() && !holds(v) => Some((i, v)),
            _ => None,
        })
        .collect();
    let mut checks = vec![VoteCheck::Unchecked; inputs.len()];
    if at.is_empty() {
        return checks;
    }
    let votes: Vec<Vote> = at.iter().map(|(_, v)| (*v).clone()).collect();
    let good = verify_votes(&votes, set, chain_id);
    for ((i, _), ok) in at.into_iter().zip(good) {
        checks[i] = if ok { VoteCheck::Good } else { VoteCheck::Bad };
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::{VoteCheck, peers_offset, vote_checks};
    use crate::ctx::CoreInput;
    use timed_core::crypto::Keypair;
    use timed_core::message::{Message, Vote, VoteKind};
    use timed_core::types::{Hash, Height, Round, ValidatorIndex};
    use timed_core::validators::{Genesis, insecure_dev_validators};

    /// A burst with one forged vote: the others are good in one batch, the forged one is known
    /// bad (so the core never verifies it again), and what the batch does not cover — an older
    /// height, a validator outside the set, anything but a vote — is left to the core.
    #[test]
    fn a_burst_is_verified_once_and_a_forged_vote_is_refused_here() {
        let (keys, validators) = insecure_dev_validators(&[100; 4]);
        let genesis = Genesis {
            chain_id: "test".into(),
            genesis_time_ms: timed_core::types::TimestampMs(0),
            validators,
            balances: vec![],
            params: Default::default(),
        };
        let set = genesis.validate().unwrap();
        let vote = |key: &Keypair, height: u64, v: u16| {
            let vote = Vote::sign(
                key,
                "test",
                Height(height),
                Round(0),
                VoteKind::Prepare,
                Some(Hash([1; 32])),
                ValidatorIndex(v),
            );
            CoreInput::Message {
                from: ValidatorIndex(v),
                msg: Message::Vote(vote),
            }
        };
        let inputs = vec![
            vote(&keys[0], 5, 0),
            vote(&keys[2], 5, 1), // validator 1's vote, signed with validator 2's key
            vote(&keys[2], 5, 2),
            vote(&keys[3], 4, 3),                          // an older height
            vote(&Keypair::insecure_from_name("x"), 5, 9), // outside the set
            CoreInput::PeerConnected(ValidatorIndex(1)),
        ];
        use VoteCheck::*;
        let none = |_: &Vote| false;
        assert_eq!(
            vote_checks(&inputs, Height(5), &set, "test", none),
            vec![Good, Bad, Good, Unchecked, Unchecked, Unchecked]
        );
        // Alone, a good vote is still good (no batch of one).
        assert_eq!(
            vote_checks(&inputs[..1], Height(5), &set, "test", none),
            vec![Good]
        );
        // One the core holds already is a resend: not checked again.
        let CoreInput::Message {
            msg: Message::Vote(held),
            ..
        } = &inputs[2]
        else {
            unreachable!()
        };
        assert_eq!(
            vote_checks(&inputs[..3], Height(5), &set, "test", |v| v == held),
            vec![Good, Bad, Unchecked]
        );
    }

    #[test]
    fn the_offset_to_the_peers_is_their_median_nearest_zero() {
        let of = |v: &[f64], peers| peers_offset(v.iter().copied(), peers);
        assert_eq!(of(&[], 0), None);
        assert_eq!(of(&[-5000.4], 1), Some(-5000));
        // One skewed peer of two: this node's clock is not the odd one.
        assert_eq!(of(&[5000.0, 3.0], 2), Some(3));
        assert_eq!(of(&[-5000.0, -3.0], 2), Some(-3));
        // ...and before the second is measured, nothing is concluded.
        assert_eq!(of(&[5000.0], 2), None);
        assert_eq!(of(&[5000.0, 4.0], 4), None);
        // Every peer disagrees with this node: it is the odd one.
        assert_eq!(of(&[-5001.0, -4990.0], 2), Some(-4990));
        assert_eq!(of(&[7.0, 5000.0, 4.0], 4), Some(7));
        assert_eq!(of(&[10.0, -20.0, 5000.0, 0.0], 4), Some(0));
    }
}
