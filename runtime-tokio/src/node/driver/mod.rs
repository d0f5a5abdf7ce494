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
//!
//! Here: the loop itself (inputs, timers, groups, the WAL flush and the guard, storing finalized
//! blocks). Performing each output is `perform.rs`, checking a group's votes in one batch
//! `votes.rs`, each peer's budget of signature checks and the cool-off of a peer whose message
//! proved it faulty `budget.rs`, measuring the peers' clock offsets `offset.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use timed_core::block::Certificate;
use timed_core::consensus::{Event, Input, Node, Output, SignGuard, Timer};
use timed_core::follow::Upstreams;
use timed_core::ledger::TxError;
use timed_core::message::Message;
use timed_core::tx::SignedTransfer;
use timed_core::types::{Hash, Height, TimestampMs, ValidatorIndex};
use tokio::sync::{mpsc, oneshot};

use crate::net::members::Members;
use crate::net::syncserve::SyncServer;
use crate::node::clock::unix_ms;
use crate::node::ctx::{Chain, CoreInput, Ctx, Finalized, ProofReply, Role};
use crate::node::finality::Witness;
use crate::storage::guard::Guard;
use crate::storage::store::{StoreError, StoredBlock};
use crate::storage::wal::WalRecord;

mod budget;
mod offset;
mod perform;
mod precheck;

use budget::{Budget, Suspect};
use precheck::Prechecked;

/// An output of a step still to perform once its WAL group is written.
// Lives for one step only: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Todo {
    Output(Output),
    Finalized(Box<StoredBlock>),
    /// A follower's sync request (`CoreInput::ServeFollower`).
    Serve(crate::net::syncserve::Asker, Height, u32),
}

/// The outputs of a group of steps, to perform once the group's WAL batch is written.
#[derive(Default)]
struct Group {
    todo: Vec<Todo>,
    /// The batch holds a `Persist` record: sync it.
    sync: bool,
    /// The last point the group's records sign at: the guard file holds it before any output.
    signs: Option<SignGuard>,
    /// Account proofs the API asked for (`CoreInput::ProveAccount`), answered after the
    /// group's blocks are stored.
    proofs: Vec<(timed_core::crypto::PublicKey, ProofReply)>,
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

/// A full node looks at least this often whether to ask an upstream for blocks (a request timed
/// out, a probe is due: `timed_core::follow`).
const FOLLOW_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// See `Synced`.
const SYNCED_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// See `Synced`.
const SYNCED_QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// Blocks fetched from peers (not decided here live) since the last line that said so. A node
/// catching up stores thousands a second: it says so once per `SYNCED_LOG_EVERY`, and once
/// more when none came for `SYNCED_QUIET`, at the next block decided live, or at the stop (each
/// block's own lines are DEBUG then). Blocks are finalized in height order and a block decided
/// live says the line first, so the blocks since are exactly `first..=to`.
#[derive(Clone, Copy, Debug)]
struct Synced {
    first: Height,
    /// The last block's height.
    to: Height,
    since: Instant,
    last: Instant,
}

/// See `Driver::foreign_warned`.
const FOREIGN_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Signatures of this validator's key it did not make (`Event::ForeignSignature`): warned
    /// of at most once per `FOREIGN_WARN_EVERY` (a node that lost its records and catches up
    /// sees one in every block it signed before), and how many since went unsaid.
    foreign_warned: Option<Instant>,
    foreign_unsaid: u64,
    /// Blocks fetched from peers not said yet (`Synced`).
    synced: Option<Synced>,
    /// The last sync request the core made: to whom, from which height.
    last_ask: Option<(ValidatorIndex, Height)>,
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
    /// Each peer's budget of signature checks (`budget.rs`).
    budget: Budget,
    /// A full node's upstream links and its sync request in flight (`timed_core::follow`);
    /// `None` on a validator.
    follow: Option<Upstreams>,
    /// The snapshot thread (`--snapshot-interval`); `None` when there is none.
    snapshots: Option<crate::storage::snapshots::Snapshotter>,
}

impl Driver {
    pub fn new(node: Node, guard: Guard, ctx: Arc<Ctx>, chain: Arc<Chain>) -> Driver {
        let sync_server = SyncServer::start(ctx.clone());
        let follow = (ctx.role == Role::FullNode).then(Upstreams::new);
        ctx.metrics.set_validators(&chain.set, node.me());
        let block_time_ms = chain.genesis.params.block_time_ms;
        let budget = Budget::new(chain.set.len(), block_time_ms, Instant::now());
        // The sets of the ledger as restored, not the genesis's (`handshake::fix_genesis`).
        if let Some(staking) = node.ledger().staking() {
            let height = Height(node.height().0.saturating_sub(1));
            ctx.policy.follow(Members::of(staking, height));
        }
        let snapshots = (ctx.snapshot_interval > 0)
            .then(|| {
                crate::storage::snapshots::Snapshotter::start(
                    ctx.clone(),
                    chain.clone(),
                    ctx.snapshot_interval,
                )
                .map_err(|e| tracing::warn!("No snapshots: cannot start their thread: {e}"))
                .ok()
            })
            .flatten();
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
            foreign_warned: None,
            synced: None,
            last_ask: None,
            foreign_unsaid: 0,
            extended: None,
            unstored: Vec::new(),
            unstored_since: None,
            sync_server,
            witness: Witness::default(),
            budget,
            follow,
            snapshots,
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
            let follow_at = self.follow.as_ref().map(|_| Instant::now() + FOLLOW_TICK);
            let synced_at = self.synced.map(|s| s.last + SYNCED_QUIET);
            let wake = [deadline, store_at, follow_at, synced_at]
                .into_iter()
                .flatten()
                .min();
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
            if synced_at.is_some_and(|t| t <= Instant::now()) {
                self.synced_said();
            }
            self.ask_upstreams();
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
        let inputs = self.admit(inputs);
        let mut group = Group::default();
        for input in self.precheck(inputs) {
            match input {
                Prechecked::Input(input) => self.on_input(input, &mut group),
                Prechecked::Forged { from, .. } if self.cooling_off(from) => {}
                Prechecked::Forged { from, msg } => {
                    // Refused here: the core would only verify it a second time to refuse it.
                    // A message of a validator of the set whose signature fails: a forgery.
                    let (kind, reason) = (msg.kind(), "bad_signature");
                    self.on_event(Event::Rejected { kind, reason });
                    self.on_fault(from, kind, reason);
                }
            }
        }
        self.complete(group)
    }

    fn on_input(&mut self, input: CoreInput, group: &mut Group) {
        match input {
            CoreInput::Message { from, .. }
            | CoreInput::Checked { from, .. }
            | CoreInput::SyncChecked { from, .. }
                if self.cooling_off(from) => {}
            CoreInput::Message { from, msg } => {
                if let Message::Proposal(p) = &msg {
                    self.sample_clock(from, p.height, p.block.header.timestamp);
                }
                let suspect = Suspect::of(&msg, self.node.validators());
                self.handle_suspect(from, suspect, Input::Message { from, msg }, group)
            }
            CoreInput::Checked { from, msg } => {
                if let Message::Proposal(p) = msg.message() {
                    self.sample_clock(from, p.height, p.block.header.timestamp);
                }
                // Its signature is good, but not necessarily the rest (a swapped body, a
                // forged polka): the core's refusal may still prove its sender faulty.
                let suspect = Suspect::of(msg.message(), self.node.validators());
                self.handle_suspect(from, suspect, Input::SignatureChecked { from, msg }, group)
            }
            CoreInput::SyncChecked { from, answer } => {
                let suspect = Suspect::of_answer(answer.blocks(), self.node.validators());
                self.handle_suspect(from, suspect, Input::SyncChecked { from, answer }, group)
            }
            CoreInput::PeerConnected(peer) => self.handle(Input::PeerConnected(peer), group),
            CoreInput::PendingTx(hash, reply) => {
                let _ = reply.send(self.node.mempool().get(&hash).cloned());
            }
            CoreInput::ProveAccount(key, reply) => group.proofs.push((key, reply)),
            CoreInput::SubmitTx(tx, reply) => {
                self.wait_for_verdict(&tx, reply);
                self.handle(Input::SubmitTx(tx), group)
            }
            CoreInput::SubmitVerifiedTx(v, reply) => {
                if let Message::Transaction(tx) = v.message() {
                    self.wait_for_verdict(tx, reply);
                }
                self.handle(Input::SubmitVerifiedTx(v), group)
            }
            CoreInput::ServeFollower {
                to,
                from,
                max_blocks,
            } => group.todo.push(Todo::Serve(to, from, max_blocks)),
            CoreInput::UpstreamUp(link) => {
                if let Some(f) = &mut self.follow {
                    f.connected(link);
                }
            }
            CoreInput::UpstreamDown(link) => {
                if let Some(f) = &mut self.follow {
                    f.disconnected(link);
                }
            }
            CoreInput::Upstream {
                link,
                blocks,
                answer,
            } => {
                if self.follow.is_none() {
                    return; // a validator has no upstream
                }
                let last = blocks.last().map(|d| d.block.height());
                let before = self.node.height();
                self.handle(Input::Certified(blocks), group);
                let after = self.node.height();
                if let Some(f) = &mut self.follow {
                    if let Some(h) = last {
                        f.heard(link, h);
                    }
                    if answer {
                        f.answered(link, after, after > before);
                    }
                }
            }
        }
    }

    /// A full node: asks an upstream for the blocks it lacks, when the core's rule says so
    /// (`timed_core::follow::Upstreams::poll`).
    fn ask_upstreams(&mut self) {
        let Some(f) = &mut self.follow else {
            return;
        };
        let next = self.node.height();
        if let Some(ask) = f.poll(TimestampMs(unix_ms()), next) {
            let frame = crate::net::queue::frame_of(&Message::SyncRequest {
                from: ask.start,
                max_blocks: timed_core::message::MAX_SYNC_BLOCKS,
            });
            self.ctx.upstreams.send(&self.ctx, ask.link, frame);
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
                    // The moment of finality here, for `timed bench follow` (off by default).
                    tracing::debug!(target: "timed::finalized", height = f.block.height().0, "finalized");
                    // Recipe rule 3c, kept by the order of this one file: no record of a later
                    // height may precede its parent block in the WAL.
                    debug_assert!(
                        !self.batch.iter().any(|r| matches!(r,
                            WalRecord::Persist(p) if p.height() > f.block.height())),
                        "a record of a later height logged before block {}",
                        f.block.height()
                    );
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
                Todo::Serve(to, from, max_blocks) => self.serve_sync(to, from, max_blocks)?,
                Todo::Finalized(stored) => {
                    // In the WAL now: the followers need not wait for redb.
                    self.ctx
                        .followers
                        .publish(&self.ctx, &stored.block, &stored.certificate);
                    blocks.push(stored)
                }
            }
        }
        if !blocks.is_empty() {
            // After the group's messages are on their way: the WAL already holds the blocks.
            let now_too = blocks.iter().any(|b| !b.block.txs.is_empty());
            self.unstored_since.get_or_insert_with(Instant::now);
            self.unstored.extend(blocks.into_iter().map(|b| *b));
            if now_too || self.unstored.len() >= STORE_BATCH_BLOCKS {
                self.store_blocks()?; // updates the live state
                return self.prove_accounts(group.proofs);
            }
        }
        self.update_live();
        self.prove_accounts(group.proofs)
    }

    /// Answers the API's account proofs: against the ledger after the last finalized block,
    /// which is stored first so that a client can fetch its certified header next (nobody is
    /// answered before height 1: the genesis has no header to prove against).
    fn prove_accounts(
        &mut self,
        proofs: Vec<(timed_core::crypto::PublicKey, ProofReply)>,
    ) -> Result<(), StoreError> {
        if proofs.is_empty() {
            return Ok(());
        }
        self.store_blocks()?;
        let height = Height(self.node.height().0.saturating_sub(1));
        if height == Height::GENESIS {
            return Ok(());
        }
        let ledger = self.node.ledger();
        for (key, reply) in proofs {
            let _ = reply.send((height, ledger.prove(&key)));
        }
        Ok(())
    }

    /// Commits the waiting finalized blocks (and a pending longer certificate) in one redb
    /// transaction, then announces them (logs, metrics, `Ctx::finalized`).
    fn store_blocks(&mut self) -> Result<(), StoreError> {
        self.unstored_since = None;
        if self.unstored.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.unstored);
        let start = Instant::now();
        let mut extended = self.extended.take().map(|(c, _)| c);
        // Cut after each snapshot height: the snapshot thread reads the store as it is right
        // after that height's commit.
        let mut rest = &blocks[..];
        while !rest.is_empty() {
            let due = self.snapshots.as_ref().and_then(|s| {
                rest.iter()
                    .position(|b| s.due(b.block.height()))
                    .map(|i| (s, i))
            });
            let (now, later) = rest.split_at(due.map_or(rest.len(), |(_, i)| i + 1));
            self.ctx
                .store
                .commit_blocks(now.iter(), extended.take().as_ref())?;
            if let Some((s, i)) = due {
                // A snapshot is a service to others: one that cannot start is skipped, the
                // chain goes on.
                let height = rest[i].block.height();
                match self.ctx.store.view() {
                    Ok(view) => s.offer(height, view),
                    Err(e) => tracing::warn!("Snapshot of height {height} skipped: {e}"),
                }
            }
            rest = later;
        }
        self.ctx
            .metrics
            .store_seconds
            .observe(start.elapsed().as_secs_f64());
        for b in blocks {
            self.on_finalized(&b);
            // Announced, not shown: the API keeps its own view of the latest blocks.
            let _ = self.ctx.finalized.send(Finalized::Block(Arc::new(b)));
        }
        self.follow_sets();
        self.update_live();
        Ok(())
    }

    /// The last finalized height (0 before block 1).
    fn finalized_height(&self) -> Height {
        Height(self.node.height().0.saturating_sub(1))
    }

    /// Tells the network which validator sets to admit after the blocks just stored
    /// (`net::members`): changed only when a set changed or a grace ended.
    fn follow_sets(&self) {
        let (Some(staking), Some(now)) = (self.node.ledger().staking(), self.ctx.policy.members())
        else {
            return;
        };
        if let Some(next) = now.follow(staking, self.finalized_height()) {
            self.ctx.policy.follow(next);
        }
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
        self.synced_said();
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
}

/// The genesis of four development validators of stake 100 on `chain_id`, default parameters,
/// no balances, and their keys: for the runtime's unit tests.
#[cfg(test)]
pub(crate) fn test_genesis(
    chain_id: &str,
) -> (
    Vec<timed_core::crypto::Keypair>,
    timed_core::validators::Genesis,
) {
    let (keys, validators) = timed_core::validators::insecure_dev_validators(&[100; 4]);
    let genesis = timed_core::validators::Genesis {
        chain_id: chain_id.into(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![],
        params: Default::default(),
    };
    (keys, genesis)
}

/// `test_genesis("test")`'s keys and set, for the driver's tests.
#[cfg(test)]
fn test_validators() -> (
    Vec<timed_core::crypto::Keypair>,
    timed_core::validators::ValidatorSet,
) {
    let (keys, genesis) = test_genesis("test");
    (keys, genesis.validate().expect("a valid genesis"))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
