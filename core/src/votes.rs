//! The `VoteKeeper`: prepare and precommit tallies per round of one height.
//! INTERFACE STUB — being implemented (see issue 2); signatures are fixed.

use serde::{Deserialize, Serialize};

use crate::message::{Vote, VoteKind};
use crate::types::{Hash, Height, Round, Stake, ValidatorIndex};
use crate::validators::ValidatorSet;

/// Rounds beyond `current + MAX_ROUNDS_AHEAD` are refused, so a flood of far-future votes costs nothing.
pub const MAX_ROUNDS_AHEAD: u32 = 64;

/// Two different signed votes of one validator for the same (height, round, kind).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub first: Vote,
    pub second: Vote,
}

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

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteRejected {
    #[error("vote is for height {got}, this keeper counts height {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("vote is from {0}, which is not a validator")]
    UnknownValidator(ValidatorIndex),
    #[error(
        "vote is for round {got}, more than {MAX_ROUNDS_AHEAD} rounds ahead of round {current}"
    )]
    RoundTooFar { current: Round, got: Round },
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

#[derive(Clone, Debug)]
pub struct VoteKeeper {}

impl VoteKeeper {
    pub fn new(_height: Height, _validators: &ValidatorSet) -> VoteKeeper {
        unimplemented!()
    }
    pub fn height(&self) -> Height {
        unimplemented!()
    }
    /// Counts a vote whose signature the caller has already checked.
    pub fn add(&mut self, _vote: Vote, _current_round: Round) -> Result<AddOutcome, VoteRejected> {
        unimplemented!()
    }
    /// True when this exact vote is already counted (the caller can skip verifying it again).
    pub fn contains(&self, _vote: &Vote) -> bool {
        unimplemented!()
    }
    /// Stake of the counted votes of `kind` in `round` for `block` (`None`: nil).
    pub fn stake_for(&self, _round: Round, _kind: VoteKind, _block: Option<Hash>) -> Stake {
        unimplemented!()
    }
    /// Stake of all counted votes of `kind` in `round`, whatever their value.
    pub fn stake_any(&self, _round: Round, _kind: VoteKind) -> Stake {
        unimplemented!()
    }
    /// Stake of the distinct validators with any counted vote (either kind) in `round`.
    pub fn stake_in_round(&self, _round: Round) -> Stake {
        unimplemented!()
    }
    /// The counted votes of `kind` in `round`, in ascending validator order.
    pub fn votes(&self, _round: Round, _kind: VoteKind) -> Vec<&Vote> {
        unimplemented!()
    }
    /// The rounds holding any counted vote, ascending.
    pub fn rounds(&self) -> Vec<Round> {
        unimplemented!()
    }
}
