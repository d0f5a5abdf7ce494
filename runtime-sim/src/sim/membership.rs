//! The scenario's membership events (ADR 0026): registrations, bonds and unbonds, each a signed
//! transfer with its `tx::Op`, handed to a random live node as a client would hand it, through
//! the mempool path the workload's transfers take.
//!
//! Every simulated validator owns itself: the operation is signed by the validator's own key and
//! paid from its own account (a candidate's `funds`, a genesis validator's rewards). Events go
//! in order, each once the one before is in a finalized block and not before its `at`: an
//! operator that waits for its receipt. So the sets the chain elects are those of the bonds after
//! a prefix of the events, which is what a scenario (and the swarm's draw) can reason about. An
//! event no block holds yet is sent again every `RETRY_MS` to another random live node (its node
//! may have crashed with it, or a partition kept it from the proposers), signed anew when its
//! nonce was taken by another transfer of the same account.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use timed_core::consensus::{Finalized, Input};
use timed_core::crypto::PublicKey;
use timed_core::tx::{Op, SignedTransfer, Transfer};
use timed_core::types::{Amount, Height};
use tracing::info;

use crate::scenario::MembershipKind;

use super::{CHAIN_ID, Ev, Simulation};

/// How long an event waits for a block to hold it before it is sent again.
pub const RETRY_MS: u64 = 2_000;

/// Where the membership events stand.
pub struct Progress {
    /// The event being carried out; every one before it is final.
    pub next: usize,
    /// Its signed transfer, once submitted.
    pending: Option<SignedTransfer>,
    /// A stream of its own: runs without membership events draw nothing from it, so their other
    /// streams are what they were.
    rng: ChaCha8Rng,
    /// Per event carried out: the height of the block that holds it, and whether the ledger
    /// applied it (false: a staking rule refused it, and it cost only its fee).
    pub done: Vec<(Height, bool)>,
}

impl Progress {
    pub fn new(seed: u64) -> Progress {
        Progress {
            next: 0,
            pending: None,
            // "member" in ASCII.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6d65_6d62_6572),
            done: Vec::new(),
        }
    }
}

impl Simulation {
    /// The key index (into `keys`) of a genesis validator's or a candidate's node.
    fn key_index(&self, node: usize) -> usize {
        match self.scenario.candidate_of(node) {
            Some(k) => self.set.len() + k,
            None => node,
        }
    }

    /// Event `k` is due, or its retry: submit it (again) to a random live node.
    pub(super) fn membership_event(&mut self, k: usize) {
        if k != self.membership.next || k >= self.scenario.membership.len() {
            return; // a retry of an event carried out since
        }
        self.push(self.now + RETRY_MS, Ev::Membership(k));
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let target = up[self.membership.rng.random_range(0..up.len())];
        let m = self.scenario.membership[k].clone();
        let key = self.keys[self.key_index(m.node)].clone();
        let owner = key.public_key();
        // The target's stored ledger: a block it stored was seen by `on_block_final`, so a nonce
        // taken there and not by the pending transfer was taken by another one.
        let taken = self.nodes[target].ledger.account(&owner).nonce;
        let tx = match &self.membership.pending {
            Some(tx) if tx.transfer.nonce >= taken => tx.clone(),
            _ => {
                let issued = self.next_nonce.entry(owner).or_insert(0);
                let nonce = (*issued).max(taken);
                *issued = nonce + 1;
                let op = match m.kind {
                    MembershipKind::Register => Op::Register {
                        name: self
                            .scenario
                            .candidate_of(m.node)
                            .map(|c| self.scenario.candidate_name(c))
                            .unwrap_or_default(),
                        address: String::new(),
                    },
                    MembershipKind::Bond => Op::Bond,
                    MembershipKind::Unbond => Op::Unbond,
                };
                let tx = Transfer {
                    from: owner,
                    to: owner,
                    amount: Amount(m.amount),
                    fee: Amount(0),
                    nonce,
                    op,
                }
                .sign(&key, CHAIN_ID);
                self.membership.pending = Some(tx.clone());
                tx
            }
        };
        info!(
            "t={} n{target} membership event {k}: {:?} {} of node {} (transfer {})",
            self.now,
            m.kind,
            m.amount,
            m.node,
            tx.hash().short()
        );
        self.step(target, Input::SubmitTx(tx));
    }

    /// A node stored block `f`: if it holds the pending event, that event is carried out and the
    /// next one is due.
    pub(super) fn on_block_final(&mut self, f: &Finalized) {
        let Some(tx) = &self.membership.pending else {
            return;
        };
        if !f.block.txs.contains(tx) {
            return;
        }
        let applied = !f.outcome.staking_refused.contains(&tx.hash());
        let k = self.membership.next;
        info!(
            "t={} membership event {k} final at height {} ({})",
            self.now,
            f.block.height(),
            if applied { "applied" } else { "refused" }
        );
        self.membership.done.push((f.block.height(), applied));
        self.membership.pending = None;
        self.membership.next += 1;
        if let Some(m) = self.scenario.membership.get(k + 1) {
            self.push(m.at.0.max(self.now), Ev::Membership(k + 1));
        }
    }

    /// The key a membership event's node signs with.
    pub fn membership_key(&self, node: usize) -> PublicKey {
        self.keys[self.key_index(node)].public_key()
    }
}
