//! Amnesia played from outside the core: a validator that forgot its lock, with no hook into
//! the core (the core has no test-only API, so no build of the `timed` binary can carry one).
//!
//! The amnesiac runs the honest core; the simulator holds its key, as it does for every
//! Byzantine behaviour, and rewrites the votes the core signs as a validator without a lock
//! would sign them:
//! - a nil prepare of a core locked on another block than the round's proposal becomes a
//!   prepare for that proposal (L22/L28 without `lockedRound`): the lock is forgotten;
//! - a nil precommit becomes a precommit for the round's proposal when the prepares the
//!   amnesiac holds for it, its own rewritten one included, make a quorum (L36), and that
//!   precommit is signed as soon as they do (`Simulation::amnesia_precommit`), not at the
//!   prepare timeout the core would wait for, its own tally lacking its rewritten prepare;
//! - a re-proposal of its valid value becomes a fresh block of its own (`amnesia_proposal`),
//!   which it prepares, as a validator that forgot its valid value too would propose.
//!
//! Never two votes for one (height, round, kind): the first vote sent for a slot is the one
//! sent again on every resend, and the one kept in the node's records, so a restart resends it
//! too. Amnesia is not equivocation. The core never sees its own rewritten votes come back
//! (`Simulation::amnesia_hears` drops them): it would take them for its key used elsewhere. A
//! certificate holding a precommit it sent in its core's place reloads the core from its records
//! first (`amnesia_certified`), so that the core owns that precommit.
//!
//! Stronger than a forgetful honest validator at two edges, which only helps the attack: it may
//! prepare a proposal its lock kept the core from checking (an invalid one gathers no honest
//! prepare), and a re-proposal whose polka it has not seen.

use std::collections::{BTreeMap, BTreeSet};

use timed_core::block::Block;
use timed_core::consensus::{Output, PersistRecord};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::ValidatorSet;
use tracing::info;

use super::{CHAIN_ID, Simulation};
use crate::scenario::Behaviour;

/// What the simulator remembers of an amnesia validator's heights not yet stored: what it sent,
/// the proposals and the prepares it holds.
#[derive(Default)]
pub struct Amnesiac {
    /// The vote sent for each slot, and whether it is not the core's own (rewritten).
    sent: BTreeMap<(Height, Round, VoteKind), (Vote, bool)>,
    /// The block of each round's proposal, the first from the round's proposer it received or
    /// signed.
    proposals: BTreeMap<(Height, Round), Hash>,
    /// The proposal sent for each (height, round) it proposed in.
    sent_proposals: BTreeMap<(Height, Round), Proposal>,
    /// The signers of the prepares it holds, by (height, round, block).
    prepares: BTreeMap<(Height, Round, Hash), BTreeSet<ValidatorIndex>>,
}

impl Amnesiac {
    /// Whether the prepares it holds for `block` in `round` make a quorum.
    fn polka(&self, set: &ValidatorSet, h: Height, round: Round, block: Hash) -> bool {
        self.prepares.get(&(h, round, block)).is_some_and(|who| {
            let stake = who.iter().map(|v| set.stake_of(*v).0).sum();
            set.is_quorum(Stake(stake))
        })
    }

    fn hold_prepare(&mut self, v: &Vote) {
        if let (VoteKind::Prepare, Some(block)) = (v.kind, v.block) {
            let key = (v.height, v.round, block);
            self.prepares.entry(key).or_default().insert(v.validator);
        }
    }

    fn hold_proposal(&mut self, set: &ValidatorSet, msg: &Message) {
        if let Message::Proposal(p) = msg
            && p.proposer == set.proposer(p.height, p.round)
        {
            self.proposals
                .entry((p.height, p.round))
                .or_insert_with(|| p.block.hash());
        }
    }

    /// Forgets the heights up to `h` (stored).
    pub fn forget_up_to(&mut self, h: Height) {
        self.sent.retain(|k, _| k.0 > h);
        self.sent_proposals.retain(|k, _| k.0 > h);
        self.proposals.retain(|k, _| k.0 > h);
        self.prepares.retain(|k, _| k.0 > h);
    }
}

impl Simulation {
    /// What a message reaching amnesiac `i` teaches it; false for its own rewritten votes, which
    /// must not reach its core.
    pub(super) fn amnesia_hears(&mut self, i: usize, msg: &Message, signature_ok: bool) -> bool {
        let me = self.nodes[i].validator;
        let a = &mut self.nodes[i].amnesia;
        match msg {
            Message::Vote(v) if v.validator.as_usize() == me => {
                let slot = (v.height, v.round, v.kind);
                return !a.sent.get(&slot).is_some_and(|(_, rewritten)| *rewritten);
            }
            Message::Vote(v) if signature_ok => a.hold_prepare(v),
            Message::Proposal(p) if signature_ok => {
                let set = self.checker.set_at(p.height).clone();
                self.nodes[i].amnesia.hold_proposal(&set, msg)
            }
            Message::Decision(d) => self.amnesia_certified(i, d),
            Message::SyncResponse { blocks } => {
                for d in blocks {
                    self.amnesia_certified(i, d);
                }
            }
            _ => {}
        }
        true
    }

    /// A certificate of amnesiac `i`'s height may hold a precommit it sent in place of its
    /// core's: its core would take it for its key used elsewhere and stop signing. So the core is
    /// first rebuilt from its records, which hold what it sent: then it knows that precommit for
    /// its own.
    fn amnesia_certified(&mut self, i: usize, d: &Decision) {
        let me = ValidatorIndex(self.nodes[i].validator as u16);
        let (h, round) = (d.block.height(), d.certificate.round);
        let at_height = self.nodes[i].core.as_ref().is_some_and(|c| c.height() == h);
        let rewritten = self.nodes[i]
            .amnesia
            .sent
            .get(&(h, round, VoteKind::Precommit))
            .is_some_and(|(_, rewritten)| *rewritten);
        if at_height && rewritten && d.certificate.signatures.iter().any(|s| s.validator == me) {
            info!(
                "t={} n{i} (amnesia) reloads its core from its records to own its precommit",
                self.now
            );
            self.nodes[i].core = None;
            self.restart(i);
        }
    }

    /// An output of amnesiac `i`'s core, its votes as a validator without a lock signs them;
    /// `None` for the record of a vote it signed already (`amnesia_precommit`).
    pub(super) fn amnesia_rewrite(&mut self, i: usize, out: Output) -> Option<Output> {
        match out {
            Output::Persist(PersistRecord::Signed { height, msg }) => {
                let (msg, first) = self.amnesia_vote(i, msg);
                first.then_some(Output::Persist(PersistRecord::Signed { height, msg }))
            }
            Output::Broadcast(msg) => Some(Output::Broadcast(self.amnesia_vote(i, msg).0)),
            Output::Send { to, msg } => Some(Output::Send {
                to,
                msg: self.amnesia_vote(i, msg).0,
            }),
            out => Some(out),
        }
    }

    /// The message amnesiac `i` sends for `msg` its core signed, and whether it is the first
    /// for its slot.
    fn amnesia_vote(&mut self, i: usize, msg: Message) -> (Message, bool) {
        let v = match msg {
            Message::Vote(v) => v,
            Message::Proposal(p) => return self.amnesia_proposal(i, p),
            other => return (other, true),
        };
        let slot = (v.height, v.round, v.kind);
        if let Some((sent, _)) = self.nodes[i].amnesia.sent.get(&slot) {
            return (Message::Vote(sent.clone()), false);
        }
        let locked = self.nodes[i].core.as_ref().and_then(|c| c.locked());
        let set = self.checker.set_at(v.height).clone();
        let a = &self.nodes[i].amnesia;
        let proposal = a.proposals.get(&(v.height, v.round)).copied();
        let own_round = set.proposer(v.height, v.round) == v.validator;
        let block = match (v.kind, v.block, proposal) {
            (VoteKind::Prepare, b, Some(x))
                if b != Some(x) && (own_round || locked.is_some_and(|(_, l)| l != x)) =>
            {
                Some(x)
            }
            (VoteKind::Precommit, None, Some(x)) if a.polka(&set, v.height, v.round, x) => Some(x),
            _ => v.block,
        };
        let rewritten = block != v.block;
        let vote = if rewritten {
            if v.kind == VoteKind::Prepare {
                self.stats.locks_forgotten += 1;
            }
            let key = &self.keys[self.nodes[i].validator];
            Vote::sign(key, CHAIN_ID, v.height, v.round, v.kind, block, v.validator)
        } else {
            v
        };
        let a = &mut self.nodes[i].amnesia;
        a.hold_prepare(&vote);
        a.sent.insert(slot, (vote.clone(), rewritten));
        (Message::Vote(vote), true)
    }

    /// The proposal amnesiac `i` sends for `p` its core signed, and whether it is the first for
    /// its slot: a re-proposal of its valid value becomes a fresh block of its own (the same
    /// transfers, itself as proposer, a millisecond later), as a validator that forgot its valid
    /// value would build, and which honest validators locked on the re-proposed block refuse.
    fn amnesia_proposal(&mut self, i: usize, p: Proposal) -> (Message, bool) {
        let slot = (p.height, p.round);
        if let Some(sent) = self.nodes[i].amnesia.sent_proposals.get(&slot) {
            return (Message::Proposal(sent.clone()), false);
        }
        let fresh = match self.fresh_block(i, &p) {
            Some(block) => {
                let key = &self.keys[self.nodes[i].validator];
                Proposal::sign(key, CHAIN_ID, p.round, None, block, p.proposer)
            }
            None => p,
        };
        let msg = Message::Proposal(fresh.clone());
        let set = self.checker.set_at(slot.0).clone();
        let a = &mut self.nodes[i].amnesia;
        a.hold_proposal(&set, &msg);
        a.sent_proposals.insert(slot, fresh);
        (msg, true)
    }

    /// The block of re-proposal `p` made fresh by its proposer, amnesiac `i`: `None` for a fresh
    /// proposal, or if the core has moved on.
    fn fresh_block(&self, i: usize, p: &Proposal) -> Option<Block> {
        let core = self.nodes[i].core.as_ref()?;
        if p.valid_round.is_none() || core.height() != p.height {
            return None;
        }
        let mut block = p.block.clone();
        block.header.proposer = p.proposer;
        block.header.timestamp = TimestampMs(block.header.timestamp.0 + 1);
        let mut ledger = core.ledger().clone();
        ledger
            .apply_block(
                CHAIN_ID,
                p.height,
                p.proposer,
                &self.set,
                &block.txs,
                &block.evidence,
            )
            .ok()?;
        block.header.state_root = ledger.state_root();
        Some(block)
    }

    /// L36 for amnesiac `i`, after each of its steps: once it prepared the round's proposal
    /// against its core's lock and holds a quorum of prepares for it, it precommits it (its core,
    /// which counted its own prepare as nil, would not).
    pub(super) fn amnesia_precommit(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else {
            return;
        };
        let (h, r) = (core.height(), core.round());
        let a = &self.nodes[i].amnesia;
        let rewritten_prepare = a
            .sent
            .get(&(h, r, VoteKind::Prepare))
            .is_some_and(|(_, rewritten)| *rewritten);
        if !rewritten_prepare || a.sent.contains_key(&(h, r, VoteKind::Precommit)) {
            return;
        }
        let Some(&x) = a.proposals.get(&(h, r)) else {
            return;
        };
        if !a.polka(self.checker.set_at(h), h, r, x) {
            return;
        }
        let me = ValidatorIndex(self.nodes[i].validator as u16);
        let key = &self.keys[self.nodes[i].validator];
        let vote = Vote::sign(key, CHAIN_ID, h, r, VoteKind::Precommit, Some(x), me);
        let a = &mut self.nodes[i].amnesia;
        a.sent
            .insert((h, r, VoteKind::Precommit), (vote.clone(), true));
        let msg = Message::Vote(vote);
        let record = PersistRecord::Signed {
            height: h,
            msg: msg.clone(),
        };
        if self.perform_output(i, Output::Persist(record)) {
            self.perform_output(i, Output::Broadcast(msg));
        }
    }

    /// Whether node `i` plays amnesia.
    pub(super) fn is_amnesiac(&self, i: usize) -> bool {
        self.nodes[i].behaviour == Behaviour::Amnesia
    }
}
