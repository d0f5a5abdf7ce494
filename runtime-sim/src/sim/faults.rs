//! The scenario's fault schedule: faults at a time or at the first finalization of a height
//! (partitions, heals, crashes, restarts with or without storage loss, behaviour changes, reliable
//! links, isolating the finalizer).

use timed_core::types::Height;
use tracing::info;

use crate::scenario::{Behaviour, FaultKind, StorageLoss};

use super::{Ev, SimNode, Simulation};

impl Simulation {
    /// Whether node `j`'s key is a registered validator in the ledger it stored last: a genesis
    /// validator always, a candidate once a block it holds registered it.
    fn registered(&self, j: usize) -> bool {
        let n = &self.nodes[j];
        let key = self.keys[n.validator].public_key();
        match n.ledger.staking() {
            Some(staking) => staking.id_of(&key).is_some(),
            None => self.scenario.candidate_of(j).is_none(),
        }
    }

    pub(super) fn fault(&mut self, k: usize) {
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
                // every block this one does. A cut WAL loses records, never blocks. That node
                // must be a registered validator: a node learns whom to ask for blocks from the
                // registered validators' claims, so a candidate's copy (registration not final
                // yet) helps nobody who lost the chain (swarm-membership seed 2049: both genesis
                // validators wiped, the blocks left only with three unregistered candidates).
                let top = |n: &SimNode| n.chain.keys().next_back().copied().unwrap_or(Height(0));
                let held = top(&self.nodes[node]);
                let copied = self.nodes.iter().enumerate().any(|(j, n)| {
                    j != node
                        && n.behaviour == Behaviour::Honest
                        && top(n) >= held
                        && self.registered(j)
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
                                && self.registered(j)
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

    pub(super) fn fire_height_faults(&mut self, h: Height, node: usize) {
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

    pub(super) fn max_decided(&self) -> Height {
        self.checker
            .decided()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Height(0))
    }
}
