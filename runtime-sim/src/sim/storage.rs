//! What a node keeps across a crash: storing finalized blocks and the ledger after them (shared
//! between nodes that store the same block), crashes, restarts from the durable state, and
//! storage losses (wiped, an old backup, a cut WAL).
//!
//! Durability: a `Persist` record is durable the moment it is performed, before the next output
//! of its step: the earliest sync the core's recipe allows (`timed_core::consensus`, rule 3a). A
//! crash falls between steps (`Crash`) or right after a persist, before the rest of its step
//! (`CrashAtPersist`: synced, not sent). A runtime that syncs later (the real node syncs the
//! records of several steps at once, before any of their outputs) can lose an unsynced tail
//! whose outputs were never performed: the state of a crash before those steps, their inputs lost
//! as the network may lose them, which this model reaches. A torn log beyond that is
//! `StorageLoss::WalCut`: a random prefix of the records, the blocks kept.
//!
//! `StorageModel::Unsynced` models the real node's later sync of finalized blocks: a block
//! finalized in a step that persists nothing is written but not synced; the node's next
//! record, sync answer or certificate extension syncs it (the real node's one ordered log:
//! a sync covers every earlier write), and so does its store's commit `STORE_COMMIT_MS` later
//! (checked at the node's next step). A crash before loses it, and the checker, told of blocks
//! only once durable, then sees the node store that height again after catching up.

use std::rc::Rc;

use rand::RngExt;
use timed_core::consensus::{Finalized, Node, NodeConfig, Restore};
use timed_core::ledger::Ledger;
use timed_core::message::Decision;
use timed_core::staking::Staking;
use timed_core::types::{Hash, Height};
use tracing::{debug, info};

use crate::checker::Violation;

use crate::scenario::{Behaviour, StorageLoss, StorageModel};

use super::{CHAIN_ID, Ev, Simulation};

/// A ledger stored after a block: what it was stored on (the very allocation, kept alive
/// here, so that sharing it is sound), the accounts the block touched, and the result with its
/// state root and total supply.
pub(super) struct StoredLedger {
    before: Rc<Ledger>,
    touched: Vec<(timed_core::crypto::PublicKey, timed_core::ledger::Account)>,
    after: Rc<Ledger>,
    root: Hash,
    supply: u128,
}

/// Stored ledgers remembered: a few heights' worth, for nodes that store out of step.
pub(super) const STORED_LEDGERS: usize = 4;

/// How long the real node's store waits at most before it commits finalized blocks it holds
/// only in its log (`runtime-tokio`'s driver: 16 blocks or 10 ms).
pub(super) const STORE_COMMIT_MS: u64 = 10;

impl Simulation {
    /// The hash of the block node `i` stored at `h`, if it holds one.
    pub(super) fn stored_hash(&self, i: usize, h: Height) -> Option<Hash> {
        let node = &self.nodes[i];
        let d = node.chain.get(&h)?;
        match node.last_stored {
            Some((at, hash)) if at == h => Some(hash),
            _ => Some(d.block.hash()),
        }
    }

    /// A finalized block written: durable at once, or under `StorageModel::Unsynced` (a step
    /// that persisted nothing) at the node's next sync.
    pub(super) fn write_finalized(&mut self, i: usize, f: Finalized) {
        if self.scenario.storage == StorageModel::Synced {
            return self.store_finalized(i, f);
        }
        let node = &mut self.nodes[i];
        if node.unsynced.is_empty() {
            node.unsynced_since = self.now;
        }
        node.unsynced.push(f);
    }

    /// Makes every write of node `i` durable, in the order written.
    pub(super) fn sync_storage(&mut self, i: usize) {
        for f in std::mem::take(&mut self.nodes[i].unsynced) {
            self.store_finalized(i, f);
        }
    }

    /// The store's commit: blocks written `STORE_COMMIT_MS` ago or more become durable.
    pub(super) fn commit_due(&mut self, i: usize) {
        let node = &self.nodes[i];
        if !node.unsynced.is_empty() && self.now >= node.unsynced_since + STORE_COMMIT_MS {
            self.sync_storage(i);
        }
    }

    pub(super) fn store_finalized(&mut self, i: usize, f: Finalized) {
        let h = f.block.height();
        let node = &mut self.nodes[i];
        node.last_stored = Some((h, f.block.hash()));
        let stored = self.stored_ledgers.iter().find(|s| {
            Rc::ptr_eq(&s.before, &node.ledger)
                && s.touched == f.outcome.touched
                && f.outcome.staking.is_none()
        });
        let (ledger, root, supply) = match stored {
            Some(s) => (s.after.clone(), s.root, s.supply),
            None => {
                // The staking state as a store keeps it: the block's new one, or the one before.
                let staking = match &f.outcome.staking {
                    Some(record) => {
                        Staking::from_record(record.clone(), (&self.genesis.params).into()).ok()
                    }
                    None => node.ledger.staking().cloned(),
                };
                let after = Rc::new(Ledger::from_parts(
                    node.ledger
                        .accounts()
                        .map(|(k, a)| (*k, *a))
                        .chain(f.outcome.touched.iter().copied()),
                    staking,
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
        node.amnesia.forget_up_to(h);
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
        self.on_block_final(&f);
        if let (Some((base, _)), Some(l)) = (self.liveness_base, &self.scenario.expect.liveness)
            && !self.live
        {
            let target = base.0 + l.gain;
            let up: Vec<Height> = self.honest_up().map(|(_, n)| n.height()).collect();
            self.live = !up.is_empty() && up.iter().all(|x| x.0 >= target);
        }
    }

    pub(super) fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.core.take().is_some() {
            let lost = std::mem::take(&mut node.unsynced);
            if let Some(first) = lost.first() {
                info!(
                    "t={} n{i} crash loses {} unsynced block(s) from height {}",
                    self.now,
                    lost.len(),
                    first.block.height()
                );
                self.stats.unsynced_blocks_lost += lost.len() as u64;
            }
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

    pub(super) fn restart(&mut self, i: usize) {
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
            self.keys[node.validator].clone(),
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

    /// The durable state of a crashed node loses what `loss` says; its key and last-signed
    /// point stay.
    pub(super) fn lose(&mut self, i: usize, loss: StorageLoss) {
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
                    let applied = ledger.apply_block(
                        CHAIN_ID,
                        *h,
                        b.header.proposer,
                        &self.set,
                        &b.txs,
                        &b.evidence,
                    );
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
}
