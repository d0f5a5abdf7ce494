//! The storage of one round's votes: per kind, the counted votes in arrival order and a compact
//! slot per validator pointing into them, running totals and a tally per value voted, kept
//! consistent with each other (`RoundVotes::assert_invariants`).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Hash, Stake, ValidatorIndex};
use crate::vote::{Vote, VoteKind};

/// A slot of a validator that has no counted vote of the kind.
const EMPTY: u32 = u32::MAX;

/// The votes of one kind in one round.
///
/// The votes live in `counted`, in the order they were counted, and `slots` holds, per
/// validator, the position of its vote there (or `EMPTY`). Why not a `Vec<Option<Vote>>` by
/// validator: a slot of that was some 130 bytes, and the common question, "is this vote new?",
/// read one of them per vote delivered; at 100 validators the slots of a node's round spread
/// over 26 kB, and those of a hundred simulated nodes missed the cache at nearly every vote
/// (a tenth of a scale run). A slot here is 4 bytes; a vote's bytes are read only when the
/// validator has one (a duplicate or a conflict), and written once, at the end of `counted`.
#[derive(Clone, Debug)]
pub(super) struct KindVotes {
    /// Per member (indexed by its position in the set, its slot): the position of its counted
    /// vote in `counted`, `EMPTY` if none.
    slots: Vec<u32>,
    /// The counted votes, in the order they were counted; each validator's at most once.
    counted: Vec<Vote>,
    /// Stake of the counted votes.
    pub(super) total: Stake,
    /// Stake of the counted votes per value (`None`: nil); one entry per distinct value.
    pub(super) tally: BTreeMap<Option<Hash>, Stake>,
    /// Validators already reported as equivocating here (rare, so a set rather than a slot flag).
    pub(super) reported: BTreeSet<ValidatorIndex>,
}

impl KindVotes {
    pub(super) fn new(validators: usize) -> KindVotes {
        KindVotes {
            slots: vec![EMPTY; validators],
            counted: Vec::new(),
            total: Stake(0),
            tally: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Vote> {
        let at = *self.slots.get(slot)?;
        // `EMPTY` is past the end of `counted` (it holds at most one vote per validator).
        self.counted.get(at as usize)
    }

    pub(super) fn has_voted(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|at| *at != EMPTY)
    }

    /// The counted votes in slot order (ascending validator id).
    pub(super) fn by_validator(&self) -> impl Iterator<Item = &Vote> {
        self.slots
            .iter()
            .filter_map(|at| self.counted.get(*at as usize))
    }

    /// Counts `vote`, of the member at `slot`, which has no vote here yet.
    pub(super) fn count(&mut self, vote: Vote, stake: Stake, slot: usize) {
        let index = slot;
        debug_assert_eq!(self.slots[index], EMPTY, "counted twice: {vote:?}");
        if self.counted.is_empty() {
            // Most rounds that get a vote get one from nearly every validator: one allocation.
            self.counted.reserve_exact(self.slots.len());
        }
        self.total = Stake(self.total.0 + stake.0);
        let for_value = self.tally.entry(vote.block).or_default();
        *for_value = Stake(for_value.0 + stake.0);
        // Fewer votes than validators, whose count fits a `u32` (indices are `u16`).
        self.slots[index] = self.counted.len() as u32;
        self.counted.push(vote);
        debug_assert_eq!(
            self.tally.values().map(|s| s.0).sum::<u64>(),
            self.total.0,
            "the tallies per value sum to the total"
        );
    }
}

/// Both kinds of votes in one round.
#[derive(Clone, Debug)]
pub(super) struct RoundVotes {
    pub(super) prepare: KindVotes,
    pub(super) precommit: KindVotes,
    /// Stake of the distinct validators with a counted vote of either kind.
    pub(super) in_round: Stake,
}

impl RoundVotes {
    pub(super) fn new(validators: usize) -> RoundVotes {
        RoundVotes {
            prepare: KindVotes::new(validators),
            precommit: KindVotes::new(validators),
            in_round: Stake(0),
        }
    }

    pub(super) fn kind(&self, kind: VoteKind) -> &KindVotes {
        match kind {
            VoteKind::Prepare => &self.prepare,
            VoteKind::Precommit => &self.precommit,
        }
    }

    /// The votes of `kind` and those of the other kind.
    pub(super) fn kind_mut(&mut self, kind: VoteKind) -> (&mut KindVotes, &KindVotes) {
        match kind {
            VoteKind::Prepare => (&mut self.prepare, &self.precommit),
            VoteKind::Precommit => (&mut self.precommit, &self.prepare),
        }
    }

    pub(super) fn assert_invariants(&self) {
        let (p, c) = (self.prepare.total.0, self.precommit.total.0);
        debug_assert!(
            p.max(c) <= self.in_round.0 && self.in_round.0 <= p + c,
            "distinct stake {} outside [max, sum] of {p} and {c}",
            self.in_round
        );
    }
}
