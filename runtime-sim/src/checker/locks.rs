//! The lock rule (Algorithm 1, L28): what prepares exist at each height, learned from every
//! delivered prepare and polka, and each checked node's lock, its precommit of the highest round.

use std::collections::{BTreeMap, BTreeSet};

use timed_core::block::Certificate;
use timed_core::message::{Message, Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, Stake, ValidatorIndex};

use super::*;

/// What the lock check knows of one height.
#[derive(Default)]
pub(super) struct HeightLocks {
    /// Each checked node's lock: the highest round in which it precommitted a block, and the block.
    locks: BTreeMap<usize, (Round, Hash)>,
    /// Validators whose prepare for a block in a round was delivered somewhere (or shown in a
    /// polka) with a good signature, by (round, block).
    prepares: BTreeMap<(Round, Hash), BTreeSet<ValidatorIndex>>,
}

impl Checker {
    /// The prepares of a polka (a certificate of prepares), each once its signature verifies.
    pub(super) fn learn_polka(&mut self, polka: &Certificate) {
        if polka.height <= self.lock_floor {
            return;
        }
        for s in &polka.signatures {
            let known = self.locks.get(&polka.height).is_some_and(|l| {
                l.prepares
                    .get(&(polka.round, polka.block_hash))
                    .is_some_and(|who| who.contains(&s.validator))
            });
            if known {
                continue;
            }
            let vote = Vote {
                height: polka.height,
                round: polka.round,
                kind: VoteKind::Prepare,
                block: Some(polka.block_hash),
                validator: s.validator,
                signature: s.signature,
            };
            if self.signature_ok(&Message::Vote(vote)) {
                self.learn_prepare(polka.height, polka.round, polka.block_hash, s.validator);
            }
        }
    }

    /// Whether the prepare is known for good: learned, or of a height the lock check is done
    /// with (false: too far ahead now, it may count later).
    pub(super) fn learn_prepare(
        &mut self,
        h: Height,
        round: Round,
        block: Hash,
        who: ValidatorIndex,
    ) -> bool {
        // A checked node counts prepares of its own height, one above its store, and keeps those
        // of the next height for later: prepares further ahead (a garbage sender's) never count.
        let top = self.stored_top.iter().max().copied().unwrap_or(Height(0));
        if h <= self.lock_floor {
            return true;
        }
        if h.0 > top.0 + 2 {
            return false;
        }
        self.locks
            .entry(h)
            .or_default()
            .prepares
            .entry((round, block))
            .or_default()
            .insert(who);
        true
    }

    /// A checked node signed a vote (the first time for its slot): a precommit for a block locks
    /// it; a prepare for another block than its lock, in a later round, needs a polka from a
    /// round at or after the lock's.
    pub(super) fn on_own_vote(&mut self, node: usize, v: &Vote) {
        let (h, round) = (v.height, v.round);
        let Some(block) = v.block else { return };
        if h <= self.lock_floor {
            return;
        }
        if v.kind == VoteKind::Precommit {
            let locks = &mut self.locks.entry(h).or_default().locks;
            if locks.get(&node).is_none_or(|(r, _)| round > *r) {
                locks.insert(node, (round, block));
            }
            return;
        }
        self.learn_prepare(h, round, block, v.validator);
        let Some(at) = self.locks.get(&h) else { return };
        let Some(&(lr, locked)) = at.locks.get(&node) else {
            return;
        };
        if locked == block || lr >= round {
            return;
        }
        let set = self.set_at(h);
        let polka = (lr.0..round.0).find(|&vr| {
            at.prepares.get(&(Round(vr), block)).is_some_and(|who| {
                let stake = who.iter().map(|w| set.stake_of(*w).0).sum();
                set.is_quorum(Stake(stake))
            })
        });
        if polka.is_none() {
            let detail = format!(
                "locked on {} in round {lr} of height {h}, it prepared {} in round {round} with no \
                 prepare quorum for it in rounds {lr} to {}",
                locked.short(),
                block.short(),
                round.0 - 1
            );
            self.fail(Some(node), "lock", detail);
        }
    }

    /// Forgets the heights every checked node has stored.
    pub(super) fn raise_lock_floor(&mut self) {
        let floor = (0..self.checked.len())
            .filter(|i| self.checked[*i])
            .map(|i| self.stored_top[i])
            .min()
            .unwrap_or(Height(0));
        if floor > self.lock_floor {
            self.lock_floor = floor;
            self.locks = self.locks.split_off(&floor.next());
        }
    }
}
