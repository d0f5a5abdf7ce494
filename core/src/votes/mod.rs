//! The `VoteKeeper`: the prepare and precommit tallies of every round of one height.
//!
//! It owns the answer to "how much stake voted for what" in a height, and nothing else: it does
//! not check signatures (the caller verifies a vote before `add`), does not know the current step
//! of consensus, and emits no outputs; the consensus module asks it for stakes and compares them
//! with the thresholds of the `ValidatorSet` (`is_quorum`, `is_more_than_third`).
//!
//! Rules:
//!
//! - **Refused, with a reason, allocating nothing:** a vote of another height, of an index outside
//!   the validator set, or of a round more than [`MAX_ROUNDS_AHEAD`] past the caller's current
//!   round. A flood of far-future votes therefore costs no memory: the keeper tracks at most the
//!   rounds up to `current + MAX_ROUNDS_AHEAD`.
//! - **One vote per validator per (round, kind).** The first vote a validator casts in a
//!   (round, kind) is the one counted. The very same vote again is a `Duplicate`. Any other vote
//!   there (another value, or the same value with other signature bytes) is a conflict and is never
//!   counted: the first conflict is reported as `Equivocation` evidence (the counted vote, then the
//!   new one), later ones as `AlreadyReported`, so evidence is emitted once per
//!   (validator, round, kind).
//! - **Cost.** Adding a vote is a lookup of its round in a `BTreeMap`, a 4-byte slot indexed by
//!   validator (the votes themselves sit in arrival order beside the slots, and are read only
//!   when the validator already has one: a duplicate or a conflict), and an update of a running
//!   total and of a per-value tally holding at most one entry per distinct value voted; no scan
//!   over the votes. Thresholds can be asked after every vote.
//! - **Determinism.** Ordered maps only; queries iterate rounds and validators in ascending order.
//!
//! Invariants (asserted in debug builds): in every (round, kind) the per-value tallies sum to the
//! kind's total, which is the stake of its counted votes; a round's distinct-validator stake lies
//! between the larger and the sum of its two kinds' totals. Every sum is over distinct validators,
//! so it never exceeds the set's total stake, which the `ValidatorSet` guarantees fits in `u64`.

use std::collections::BTreeMap;

use crate::types::{Hash, Height, Round, Stake, ValidatorIndex};
use crate::validators::{Positions, ValidatorSet};
pub use crate::vote::Evidence;
use crate::vote::{Vote, VoteKind};

mod round;
#[cfg(test)]
mod tests;

use round::{KindVotes, RoundVotes};

/// Rounds beyond `current + MAX_ROUNDS_AHEAD` are refused, so a flood of far-future votes costs nothing.
pub const MAX_ROUNDS_AHEAD: u32 = 64;

/// What `VoteKeeper::add` did with a vote it accepted to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// New vote, counted in the tallies.
    Counted,
    /// The very same vote was already counted; nothing changed.
    Duplicate,
    /// A different vote from a validator that already voted in this (round, kind): not counted.
    /// Reported once per (validator, round, kind).
    Equivocation(Box<Evidence>),
    /// Another conflicting vote from a validator already reported for this (round, kind).
    AlreadyReported,
}

/// Why `VoteKeeper::add` refused a vote (it stores nothing for it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteRejected {
    /// Not of the keeper's height.
    #[error("vote is for height {got}, this keeper counts height {expected}")]
    WrongHeight {
        /// The keeper's height.
        expected: Height,
        /// The vote's.
        got: Height,
    },
    /// The voter's index is outside the set.
    #[error("vote is from {0}, which is not a validator")]
    UnknownValidator(ValidatorIndex),
    /// More than `MAX_ROUNDS_AHEAD` rounds past the caller's current round.
    #[error(
        "vote is for round {got}, more than {MAX_ROUNDS_AHEAD} rounds ahead of round {current}"
    )]
    RoundTooFar {
        /// The caller's current round.
        current: Round,
        /// The vote's.
        got: Round,
    },
}

impl VoteRejected {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VoteRejected::WrongHeight { .. } => "wrong_height",
            VoteRejected::UnknownValidator(_) => "unknown_validator",
            VoteRejected::RoundTooFar { .. } => "round_too_far",
        }
    }
}

/// The tallies of one height (see the module documentation for its rules).
#[derive(Clone, Debug)]
pub struct VoteKeeper {
    height: Height,
    /// Stake of each member, indexed by its position in the set.
    stakes: Vec<Stake>,
    /// A voter's id to its position (its slot).
    positions: Positions,
    /// Only rounds holding at least one counted vote.
    rounds: BTreeMap<Round, RoundVotes>,
}

impl VoteKeeper {
    /// An empty keeper for `height` and the stakes of `validators`.
    pub fn new(height: Height, validators: &ValidatorSet) -> VoteKeeper {
        let stakes: Vec<Stake> = validators.iter().map(|(_, v)| v.stake).collect();
        debug_assert_eq!(stakes.len(), validators.len());
        VoteKeeper {
            height,
            stakes,
            positions: validators.positions().clone(),
            rounds: BTreeMap::new(),
        }
    }

    /// The slot (position in the set) of the member `id`, if it is one.
    pub fn slot_of(&self, id: ValidatorIndex) -> Option<usize> {
        self.positions.of(id)
    }

    /// The height it counts.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Counts a vote whose signature the caller has already checked, `current_round` being the
    /// caller's round (the bound of `MAX_ROUNDS_AHEAD`).
    pub fn add(&mut self, vote: Vote, current_round: Round) -> Result<AddOutcome, VoteRejected> {
        let (stake, slot) = self.check(&vote, current_round)?;
        let validators = self.stakes.len();
        let round = self
            .rounds
            .entry(vote.round)
            .or_insert_with(|| RoundVotes::new(validators));
        let (votes, other) = round.kind_mut(vote.kind);
        let outcome = match votes.get(slot) {
            None => {
                let new_in_round = !other.has_voted(slot);
                votes.count(vote, stake, slot);
                if new_in_round {
                    round.in_round = Stake(round.in_round.0 + stake.0);
                }
                AddOutcome::Counted
            }
            Some(counted) if *counted == vote => AddOutcome::Duplicate,
            Some(_) if votes.reported.contains(&vote.validator) => AddOutcome::AlreadyReported,
            Some(counted) => {
                let first = counted.clone();
                votes.reported.insert(vote.validator);
                AddOutcome::Equivocation(Box::new(Evidence {
                    first,
                    second: vote,
                }))
            }
        };
        round.assert_invariants();
        Ok(outcome)
    }

    /// Refuses a vote this keeper must not hold; else returns its validator's stake and slot.
    fn check(&self, vote: &Vote, current_round: Round) -> Result<(Stake, usize), VoteRejected> {
        if vote.height != self.height {
            return Err(VoteRejected::WrongHeight {
                expected: self.height,
                got: vote.height,
            });
        }
        let Some(slot) = self.positions.of(vote.validator) else {
            return Err(VoteRejected::UnknownValidator(vote.validator));
        };
        let stake = self.stakes[slot];
        if vote.round.0 > current_round.0.saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(VoteRejected::RoundTooFar {
                current: current_round,
                got: vote.round,
            });
        }
        Ok((stake, slot))
    }

    /// True when this exact vote is already counted (the caller can skip verifying it again).
    pub fn contains(&self, vote: &Vote) -> bool {
        vote.height == self.height
            && self
                .kind(vote.round, vote.kind)
                .zip(self.positions.of(vote.validator))
                .and_then(|(votes, slot)| votes.get(slot))
                .is_some_and(|counted| counted == vote)
    }

    /// Stake of the counted votes of `kind` in `round` for `block` (`None`: nil).
    pub fn stake_for(&self, round: Round, kind: VoteKind, block: Option<Hash>) -> Stake {
        self.kind(round, kind)
            .and_then(|votes| votes.tally.get(&block).copied())
            .unwrap_or_default()
    }

    /// Stake of all counted votes of `kind` in `round`, whatever their value.
    pub fn stake_any(&self, round: Round, kind: VoteKind) -> Stake {
        self.kind(round, kind).map_or(Stake(0), |votes| votes.total)
    }

    /// Stake of the distinct validators with any counted vote (either kind) in `round`.
    pub fn stake_in_round(&self, round: Round) -> Stake {
        self.rounds.get(&round).map_or(Stake(0), |r| r.in_round)
    }

    /// The counted votes of `kind` in `round`, in ascending validator order.
    pub fn votes(&self, round: Round, kind: VoteKind) -> Vec<&Vote> {
        self.kind(round, kind)
            .map(|votes| votes.by_validator().collect())
            .unwrap_or_default()
    }

    /// The rounds holding any counted vote, ascending.
    pub fn rounds(&self) -> Vec<Round> {
        self.rounds_in(..).collect()
    }

    /// The rounds within `range` holding any counted vote, ascending (or, reversed, descending):
    /// what the rules ask after every input, without collecting them.
    pub fn rounds_in(
        &self,
        range: impl std::ops::RangeBounds<Round>,
    ) -> impl DoubleEndedIterator<Item = Round> + '_ {
        self.rounds.range(range).map(|(round, _)| *round)
    }

    /// The values voted for with `kind` in `round` and the stake behind each, in ascending value
    /// order (nil first). Lets the caller find a value with a quorum without knowing it beforehand.
    pub fn tally(
        &self,
        round: Round,
        kind: VoteKind,
    ) -> impl Iterator<Item = (Option<Hash>, Stake)> {
        self.kind(round, kind)
            .into_iter()
            .flat_map(|votes| votes.tally.iter().map(|(value, stake)| (*value, *stake)))
    }

    /// How many vote slots the keeper holds (two kinds × validators per tracked round): its memory
    /// in units of one vote. At most `(current + MAX_ROUNDS_AHEAD + 1) × 2 × validators`.
    pub fn memory_votes(&self) -> usize {
        self.rounds.len() * 2 * self.stakes.len()
    }

    fn kind(&self, round: Round, kind: VoteKind) -> Option<&KindVotes> {
        self.rounds.get(&round).map(|r| r.kind(kind))
    }
}
