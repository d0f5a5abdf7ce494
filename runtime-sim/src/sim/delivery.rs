//! Messages on the wire: sending through the network model (partitions, loss, delay,
//! duplication), an adversary's fast path, raw bytes, connections learned after a link delay, the
//! routing of a twin's messages, and one line per message for the event log.

use std::rc::Rc;

use timed_core::message::Message;
use timed_core::types::ValidatorIndex;

use crate::network::Fate;

use super::{Ev, Simulation, Wire};

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

impl Simulation {
    /// A copy of `msg` will be delivered to node `to` if it is still up by then: the checker
    /// awaits its verdict (once per message, whatever its copies).
    pub(super) fn in_flight(&mut self, to: usize, msg: &Wire) {
        if self.nodes[to].is_up() {
            self.checker.on_wire(&msg.msg, &msg.seen);
        }
    }

    /// Puts a message on the wire: partition, loss, delay, duplication.
    pub(super) fn send(&mut self, from: usize, to: usize, msg: Rc<Wire>) {
        self.send_after(from, to, msg, 0);
    }

    /// A relayed forgery on the adversary's own fast path: delivered one millisecond later,
    /// never lost (a partition still stops it), so that it can overtake the real copy.
    pub(super) fn send_fast(&mut self, from: usize, to: usize, msg: Rc<Wire>) {
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
    pub(super) fn send_after(&mut self, from: usize, to: usize, msg: Rc<Wire>, extra_ms: u64) {
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

    /// Raw bytes from `i` reach `j` a millisecond later (its current incarnation).
    pub(super) fn push_garbage(&mut self, i: usize, j: usize, bytes: Vec<u8>) {
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

    /// Both ends learn of a (re-)established connection after one link delay.
    pub(super) fn connect(&mut self, a: usize, b: usize) {
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

    pub(super) fn connectivity(&self) -> Vec<Vec<bool>> {
        let n = self.nodes.len();
        (0..n)
            .map(|a| (0..n).map(|b| self.network.connected(a, b)).collect())
            .collect()
    }

    pub(super) fn reconnect_newly_connected(&mut self, before: &[Vec<bool>]) {
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

    /// Who node `from` is to node `to` (the `from` of its inputs): a genesis validator (or its
    /// twin) is its id; a candidate is its registration id once `to`'s ledger holds it, as the
    /// real node's handshake names a peer by the registry, and before that a number no
    /// registration takes (counted down from `u16::MAX`).
    pub(super) fn peer_id(&self, to: usize, from: usize) -> ValidatorIndex {
        let v = self.nodes[from].validator;
        let n = self.set.len();
        if v < n {
            return ValidatorIndex(v as u16);
        }
        let key = self.keys[v].public_key();
        let node = &self.nodes[to];
        let ledger = node.core.as_ref().map_or(&*node.ledger, |c| c.ledger());
        ledger
            .staking()
            .and_then(|s| s.id_of(&key))
            .unwrap_or(ValidatorIndex(u16::MAX - (v - n) as u16))
    }

    /// The node a message from `i` to validator `v` reaches: `v` itself, or the twin `i` last
    /// heard from as `v` (a broadcast reaches both instances); a candidate by the number
    /// `peer_id` gave it, or by its registration in `i`'s ledger. None for an id `i` cannot
    /// place (nothing is sent).
    pub(super) fn route_to(&self, i: usize, v: ValidatorIndex) -> Option<usize> {
        let id = v.as_usize();
        if let Some(&j) = self.nodes[i].route.get(&id) {
            return Some(j);
        }
        let n = self.set.len();
        if id < n {
            return Some(id);
        }
        let candidates = self.scenario.candidates.len();
        let k = usize::from(u16::MAX - v.0);
        if k < candidates {
            return Some(self.scenario.candidate_node(k));
        }
        let node = &self.nodes[i];
        let ledger = node.core.as_ref().map_or(&*node.ledger, |c| c.ledger());
        let key = ledger.staking()?.registration(v)?.key;
        self.node_of_key(&key)
    }

    /// The node holding `key` (its first instance).
    pub(super) fn node_of_key(&self, key: &timed_core::crypto::PublicKey) -> Option<usize> {
        let v = self.keys.iter().position(|k| k.public_key() == *key)?;
        if v < self.set.len() {
            return Some(v);
        }
        Some(self.scenario.candidate_node(v - self.set.len()))
    }
}
