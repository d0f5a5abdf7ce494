//! The storage of one round's votes: a slot per validator and kind, running totals and a tally per
//! value voted, kept consistent with each other (`RoundVotes::assert_invariants`).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Hash, Stake, ValidatorIndex};
use crate::vote::{Vote, VoteKind};

/// The votes of one kind in one round.
#[derive(Clone, Debug)]
pub(super) struct KindVotes {
    /// The counted vote of each member, indexed by its position in the set (its slot).
    pub(super) slots: Vec<Option<Vote>>,
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
            slots: vec![None; validators],
            total: Stake(0),
            tally: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Vote> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub(super) fn has_voted(&self, slot: usize) -> bool {
        self.get(slot).is_some()
    }

    /// Counts `vote`, of the member at `slot`, which has no vote here yet.
    pub(super) fn count(&mut self, vote: Vote, stake: Stake, slot: usize) {
        let index = slot;
        debug_assert!(self.slots[index].is_none(), "counted twice: {vote:?}");
        self.total = Stake(self.total.0 + stake.0);
        let for_value = self.tally.entry(vote.block).or_default();
        *for_value = Stake(for_value.0 + stake.0);
        self.slots[index] = Some(vote);
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
