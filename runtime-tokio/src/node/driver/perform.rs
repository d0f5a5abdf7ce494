//! How the consensus loop performs the core's outputs (`perform`): frames queued for the peers,
//! timers, certificates extended, sync requests answered, evidence and transfer verdicts, and the
//! events logged and counted (`on_event`); and what it tells the rest of the node about a
//! finalized block (`on_finalized`) and about its progress (`update_live`).

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Instant;

use timed_core::consensus::{Event, Misbehaviour, Output, Step, Withheld};
use timed_core::message::VoteKind;
use timed_core::types::Hash;
use tracing::{debug, error, info, warn};

use crate::net::queue::frame_of;
use crate::net::twins::{broadcast_frame, send_frame};
use crate::node::ctx::{Finalized, lock};
use crate::storage::store::{StoreError, StoredBlock};

use super::{Driver, TxWaiter};

impl Driver {
    pub(super) fn perform(&mut self, out: Output) -> Result<(), StoreError> {
        match out {
            // Taken apart in `step`.
            Output::Persist(_) | Output::Finalized(_) => {}
            Output::Broadcast(msg) => {
                let frame = frame_of(&msg);
                if matches!(msg, timed_core::message::Message::Transaction(_)) {
                    // A full node's clients' transfers go to the nodes it follows.
                    self.ctx.upstreams.broadcast(&self.ctx, frame.clone());
                }
                broadcast_frame(&self.ctx, frame)
            }
            Output::Send {
                to,
                msg: msg @ timed_core::message::Message::SyncRequest { from, .. },
            } => {
                // Not again when a read-ahead asked already (`synccheck.rs`).
                if self.ctx.sync_check.core_asks(to, from) {
                    send_frame(&self.ctx, to, frame_of(&msg))
                }
            }
            Output::Send { to, msg } => send_frame(&self.ctx, to, frame_of(&msg)),
            Output::Schedule { timer, after_ms } => {
                self.seq += 1;
                let at = Instant::now() + std::time::Duration::from_millis(after_ms);
                self.timers.push(Reverse((at, self.seq, timer)));
            }
            Output::CertificateExtended(cert) => {
                let _ = self
                    .ctx
                    .finalized
                    .send(Finalized::Extended(Arc::new(cert.clone())));
                self.extend_certificate(cert)?
            }
            Output::ServeSync {
                to,
                from,
                max_blocks,
            } => {
                let to = crate::net::syncserve::Asker::Validator(to);
                self.serve_sync(to, from, max_blocks)?
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

    /// Hands a sync request to the sync thread. A peer catching up gets every block this node
    /// finalized: those waiting for their redb commit are committed first (the store is read on
    /// the sync thread, not here).
    pub(super) fn serve_sync(
        &mut self,
        to: crate::net::syncserve::Asker,
        from: timed_core::types::Height,
        max_blocks: u32,
    ) -> Result<(), StoreError> {
        if self
            .unstored
            .first()
            .is_some_and(|b| b.block.height().0 < from.0.saturating_add(u64::from(max_blocks)))
        {
            self.store_blocks()?;
        }
        if !self.sync_server.serve(to, from, max_blocks) {
            self.ctx
                .metrics
                .dropped(crate::node::metrics::Dropped::SyncBusy);
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

    pub(super) fn on_finalized(&mut self, f: &StoredBlock) {
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
            // With its hash: `/status` reads the two together (the block is in the store).
            live.height = h.0;
            live.last_block_hash = Some(hash.clone());
            live.finality_latency_ms = finality_ms.0.or(live.finality_latency_ms);
            live.blocks_finalized_here += 1;
        }
        if finality_ms.0.is_none() {
            return self.on_synced(f, &hash);
        }
        self.synced_said();
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

    /// A block fetched from a peer (catching up, or following as a full node): one DEBUG
    /// line, and the progress line (`Synced`) at most once per `SYNCED_LOG_EVERY`.
    fn on_synced(&mut self, f: &StoredBlock, hash: &str) {
        let h = f.block.height();
        debug!(
            height = h.0,
            hash = %&hash[..16],
            txs = f.block.txs.len(),
            reward = f.outcome.total_reward.0,
            "Block synced at height {h}"
        );
        let now = Instant::now();
        let s = self.synced.get_or_insert(super::Synced {
            first: h,
            to: h,
            since: now,
            last: now,
        });
        s.to = h;
        s.last = now;
        if now.duration_since(s.since) >= super::SYNCED_LOG_EVERY {
            self.synced_said();
        }
    }

    /// Says how many blocks were fetched from peers since the last such line, if any.
    pub(super) fn synced_said(&mut self) {
        let Some(s) = self.synced.take() else {
            return;
        };
        let secs = s.last.duration_since(s.since).as_secs_f64();
        let (first, to) = (s.first, s.to);
        let count = to.0.saturating_sub(first.0).saturating_add(1);
        // A rate over less than a tenth of a second says nothing.
        let rate = if secs >= 0.1 {
            format!(" ({:.0} blocks/s)", count as f64 / secs)
        } else {
            String::new()
        };
        info!(
            height = to.0,
            blocks = count,
            "⛓️  Synced {count} blocks from peers, heights {first} to {to}, in {secs:.1} s{rate}"
        );
    }

    pub(super) fn on_event(&mut self, e: Event) {
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
            Event::ForeignSignature { point } => {
                if self
                    .foreign_warned
                    .is_some_and(|t| t.elapsed() < super::FOREIGN_WARN_EVERY)
                {
                    self.foreign_unsaid += 1;
                    return;
                }
                self.foreign_warned = Some(Instant::now());
                let unsaid = std::mem::take(&mut self.foreign_unsaid);
                warn!(
                    "a signature of this validator's key at {point} that this node did not make \
                     ({unsaid} more since the last such warning): another instance uses the key, \
                     or the data directory was restored from a backup"
                )
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
                // The next request to the same peer, past the last: catch-up going on, which
                // the progress line says (`on_synced`). A first request, another peer or the
                // same height again (no answer, no progress) is worth a line of its own.
                let going_on = self.last_ask.is_some_and(|(p, f)| p == peer && f < from);
                self.last_ask = Some((peer, from));
                let peer = self.chain.name(peer);
                if going_on {
                    debug!(
                        peer,
                        from = from.0,
                        "Catching up: asked {peer} for blocks from height {from}"
                    );
                } else {
                    info!(
                        peer,
                        from = from.0,
                        "Catching up: asked {peer} for blocks from height {from}"
                    );
                }
            }
        }
    }

    pub(super) fn update_live(&self) {
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
        drop(live);
        // The heights whose sets the sync answers are checked under (`synccheck.rs`).
        self.ctx
            .sync_check
            .publish(n.height(), || n.certificate_checker());
    }
}
