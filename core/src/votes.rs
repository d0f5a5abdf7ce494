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
//! - **Cost.** Adding a vote is a lookup of its round in a `BTreeMap`, a slot indexed by validator,
//!   and an update of a running total and of a per-value tally holding at most one entry per
//!   distinct value voted; no scan over the votes. Thresholds can be asked after every vote.
//! - **Determinism.** Ordered maps only; queries iterate rounds and validators in ascending order.
//!
//! Invariants (asserted in debug builds): in every (round, kind) the per-value tallies sum to the
//! kind's total, which is the stake of its counted votes; a round's distinct-validator stake lies
//! between the larger and the sum of its two kinds' totals. Every sum is over distinct validators,
//! so it never exceeds the set's total stake, which the `ValidatorSet` guarantees fits in `u64`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{Hash, Height, Round, Stake, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::vote::{Vote, VoteKind};

/// Rounds beyond `current + MAX_ROUNDS_AHEAD` are refused, so a flood of far-future votes costs nothing.
pub const MAX_ROUNDS_AHEAD: u32 = 64;

/// Two different signed votes of one validator for the same (height, round, kind).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The vote counted.
    pub first: Vote,
    /// The conflicting vote (another value, or the same value with other signature bytes).
    pub second: Vote,
}

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

/// The votes of one kind in one round.
#[derive(Clone, Debug)]
struct KindVotes {
    /// The counted vote of each validator, indexed by `ValidatorIndex`.
    slots: Vec<Option<Vote>>,
    /// Stake of the counted votes.
    total: Stake,
    /// Stake of the counted votes per value (`None`: nil); one entry per distinct value.
    tally: BTreeMap<Option<Hash>, Stake>,
    /// Validators already reported as equivocating here (rare, so a set rather than a slot flag).
    reported: BTreeSet<ValidatorIndex>,
}

impl KindVotes {
    fn new(validators: usize) -> KindVotes {
        KindVotes {
            slots: vec![None; validators],
            total: Stake(0),
            tally: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    fn get(&self, validator: ValidatorIndex) -> Option<&Vote> {
        self.slots
            .get(validator.as_usize())
            .and_then(Option::as_ref)
    }

    fn has_voted(&self, validator: ValidatorIndex) -> bool {
        self.get(validator).is_some()
    }

    /// Counts `vote` of a validator with no vote here yet.
    fn count(&mut self, vote: Vote, stake: Stake) {
        let index = vote.validator.as_usize();
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
struct RoundVotes {
    prepare: KindVotes,
    precommit: KindVotes,
    /// Stake of the distinct validators with a counted vote of either kind.
    in_round: Stake,
}

impl RoundVotes {
    fn new(validators: usize) -> RoundVotes {
        RoundVotes {
            prepare: KindVotes::new(validators),
            precommit: KindVotes::new(validators),
            in_round: Stake(0),
        }
    }

    fn kind(&self, kind: VoteKind) -> &KindVotes {
        match kind {
            VoteKind::Prepare => &self.prepare,
            VoteKind::Precommit => &self.precommit,
        }
    }

    /// The votes of `kind` and those of the other kind.
    fn kind_mut(&mut self, kind: VoteKind) -> (&mut KindVotes, &KindVotes) {
        match kind {
            VoteKind::Prepare => (&mut self.prepare, &self.precommit),
            VoteKind::Precommit => (&mut self.precommit, &self.prepare),
        }
    }

    fn assert_invariants(&self) {
        let (p, c) = (self.prepare.total.0, self.precommit.total.0);
        debug_assert!(
            p.max(c) <= self.in_round.0 && self.in_round.0 <= p + c,
            "distinct stake {} outside [max, sum] of {p} and {c}",
            self.in_round
        );
    }
}

/// The tallies of one height (see the module documentation for its rules).
#[derive(Clone, Debug)]
pub struct VoteKeeper {
    height: Height,
    /// Stake of each validator, indexed by `ValidatorIndex`.
    stakes: Vec<Stake>,
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
            rounds: BTreeMap::new(),
        }
    }

    /// The height it counts.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Counts a vote whose signature the caller has already checked, `current_round` being the
    /// caller's round (the bound of `MAX_ROUNDS_AHEAD`).
    pub fn add(&mut self, vote: Vote, current_round: Round) -> Result<AddOutcome, VoteRejected> {
        let stake = self.check(&vote, current_round)?;
        let validators = self.stakes.len();
        let round = self
            .rounds
            .entry(vote.round)
            .or_insert_with(|| RoundVotes::new(validators));
        let (votes, other) = round.kind_mut(vote.kind);
        // Fields, not `votes.get`, so the counted vote and `reported` can be borrowed together.
        let outcome = match votes
            .slots
            .get(vote.validator.as_usize())
            .and_then(Option::as_ref)
        {
            None => {
                let new_in_round = !other.has_voted(vote.validator);
                votes.count(vote, stake);
                if new_in_round {
                    round.in_round = Stake(round.in_round.0 + stake.0);
                }
                AddOutcome::Counted
            }
            Some(counted) if *counted == vote => AddOutcome::Duplicate,
            Some(counted) => {
                if votes.reported.insert(vote.validator) {
                    AddOutcome::Equivocation(Box::new(Evidence {
                        first: counted.clone(),
                        second: vote,
                    }))
                } else {
                    AddOutcome::AlreadyReported
                }
            }
        };
        round.assert_invariants();
        Ok(outcome)
    }

    /// Refuses a vote this keeper must not hold; else returns its validator's stake.
    fn check(&self, vote: &Vote, current_round: Round) -> Result<Stake, VoteRejected> {
        if vote.height != self.height {
            return Err(VoteRejected::WrongHeight {
                expected: self.height,
                got: vote.height,
            });
        }
        let Some(&stake) = self.stakes.get(vote.validator.as_usize()) else {
            return Err(VoteRejected::UnknownValidator(vote.validator));
        };
        if vote.round.0 > current_round.0.saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(VoteRejected::RoundTooFar {
                current: current_round,
                got: vote.round,
            });
        }
        Ok(stake)
    }

    /// True when this exact vote is already counted (the caller can skip verifying it again).
    pub fn contains(&self, vote: &Vote) -> bool {
        vote.height == self.height
            && self
                .kind(vote.round, vote.kind)
                .and_then(|votes| votes.get(vote.validator))
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
            .map(|votes| votes.slots.iter().flatten().collect())
            .unwrap_or_default()
    }

    /// The rounds holding any counted vote, ascending.
    pub fn rounds(&self) -> Vec<Round> {
        self.rounds.keys().copied().collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signature;
    use proptest::prelude::*;

    const H: Height = Height(7);

    fn set(stakes: &[u64]) -> ValidatorSet {
        let (_, members) = crate::validators::insecure_dev_validators(stakes);
        ValidatorSet::new(&members).unwrap()
    }

    /// A vote with made-up signature bytes: the keeper does not verify signatures.
    fn vote(v: u16, round: u32, kind: VoteKind, block: Option<Hash>, sig: u8) -> Vote {
        Vote {
            height: H,
            round: Round(round),
            kind,
            block,
            validator: ValidatorIndex(v),
            signature: Signature([sig; 64]),
        }
    }

    fn block(n: u8) -> Option<Hash> {
        Some(Hash([n; 32]))
    }

    use VoteKind::{Precommit, Prepare};

    #[test]
    fn two_hundred_of_three_hundred_reach_a_quorum_and_one_hundred_do_not() {
        let set = set(&[100, 100, 100]);
        let mut k = VoteKeeper::new(H, &set);
        assert_eq!(
            k.add(vote(0, 0, Precommit, block(1), 1), Round(0)),
            Ok(AddOutcome::Counted)
        );
        let w = k.stake_for(Round(0), Precommit, block(1));
        assert_eq!(w, Stake(100));
        assert!(!set.is_quorum(w));
        assert_eq!(
            k.add(vote(2, 0, Precommit, block(1), 1), Round(0)),
            Ok(AddOutcome::Counted)
        );
        let w = k.stake_for(Round(0), Precommit, block(1));
        assert_eq!(w, Stake(200));
        assert!(set.is_quorum(w));
        assert_eq!(k.stake_any(Round(0), Precommit), Stake(200));
        assert_eq!(k.stake_for(Round(0), Precommit, None), Stake(0));
        assert_eq!(k.stake_any(Round(0), Prepare), Stake(0));
        assert_eq!(
            k.tally(Round(0), Precommit).collect::<Vec<_>>(),
            vec![(block(1), Stake(200))]
        );
    }

    #[test]
    fn any_quorum_of_mixed_values_counts_every_value_but_no_single_one() {
        let set = set(&[100, 100, 100]);
        let mut k = VoteKeeper::new(H, &set);
        k.add(vote(0, 1, Prepare, block(1), 1), Round(1)).unwrap();
        k.add(vote(1, 1, Prepare, None, 1), Round(1)).unwrap();
        assert!(set.is_quorum(k.stake_any(Round(1), Prepare)));
        assert!(!set.is_quorum(k.stake_for(Round(1), Prepare, block(1))));
        assert!(!set.is_quorum(k.stake_for(Round(1), Prepare, None)));
    }

    #[test]
    fn the_same_vote_twice_is_a_duplicate_and_counted_once() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        let v = vote(1, 0, Prepare, block(1), 1);
        assert!(!k.contains(&v));
        assert_eq!(k.add(v.clone(), Round(0)), Ok(AddOutcome::Counted));
        assert!(k.contains(&v));
        for _ in 0..3 {
            assert_eq!(k.add(v.clone(), Round(0)), Ok(AddOutcome::Duplicate));
        }
        assert_eq!(k.stake_for(Round(0), Prepare, block(1)), Stake(100));
        assert_eq!(k.stake_any(Round(0), Prepare), Stake(100));
        assert_eq!(k.stake_in_round(Round(0)), Stake(100));
        assert_eq!(k.votes(Round(0), Prepare), vec![&v]);
    }

    #[test]
    fn equivocation_is_reported_once_and_never_counted() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        let first = vote(1, 2, Precommit, block(1), 1);
        let other_value = vote(1, 2, Precommit, block(2), 1);
        let other_signature = vote(1, 2, Precommit, block(1), 2);
        let nil = vote(1, 2, Precommit, None, 1);
        assert_eq!(k.add(first.clone(), Round(2)), Ok(AddOutcome::Counted));
        assert_eq!(
            k.add(other_value.clone(), Round(2)),
            Ok(AddOutcome::Equivocation(Box::new(Evidence {
                first: first.clone(),
                second: other_value.clone(),
            })))
        );
        for conflicting in [&other_value, &other_signature, &nil] {
            assert_eq!(
                k.add(conflicting.clone(), Round(2)),
                Ok(AddOutcome::AlreadyReported)
            );
            assert!(!k.contains(conflicting));
        }
        // The first vote is still the counted one.
        assert_eq!(k.add(first.clone(), Round(2)), Ok(AddOutcome::Duplicate));
        assert_eq!(k.stake_for(Round(2), Precommit, block(1)), Stake(100));
        assert_eq!(k.stake_for(Round(2), Precommit, block(2)), Stake(0));
        assert_eq!(k.stake_for(Round(2), Precommit, None), Stake(0));
        assert_eq!(k.stake_any(Round(2), Precommit), Stake(100));
        assert_eq!(k.votes(Round(2), Precommit), vec![&first]);
    }

    #[test]
    fn same_value_with_other_signature_bytes_is_an_equivocation() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        let first = vote(0, 0, Prepare, None, 1);
        let second = vote(0, 0, Prepare, None, 2);
        k.add(first.clone(), Round(0)).unwrap();
        assert_eq!(
            k.add(second.clone(), Round(0)),
            Ok(AddOutcome::Equivocation(Box::new(Evidence {
                first,
                second
            })))
        );
        assert_eq!(k.stake_any(Round(0), Prepare), Stake(100));
    }

    #[test]
    fn one_vote_per_kind_and_round_is_not_an_equivocation() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        assert_eq!(
            k.add(vote(0, 0, Prepare, block(1), 1), Round(0)),
            Ok(AddOutcome::Counted)
        );
        assert_eq!(
            k.add(vote(0, 0, Precommit, None, 1), Round(0)),
            Ok(AddOutcome::Counted)
        );
        assert_eq!(
            k.add(vote(0, 1, Prepare, block(2), 1), Round(0)),
            Ok(AddOutcome::Counted)
        );
        assert_eq!(k.rounds(), vec![Round(0), Round(1)]);
    }

    #[test]
    fn equivocations_are_reported_per_round_and_kind() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        for (round, kind) in [(0, Prepare), (0, Precommit), (1, Prepare)] {
            k.add(vote(0, round, kind, block(1), 1), Round(0)).unwrap();
            assert!(matches!(
                k.add(vote(0, round, kind, block(2), 1), Round(0)),
                Ok(AddOutcome::Equivocation(_))
            ));
        }
    }

    #[test]
    fn wrong_height_unknown_validator_and_far_round_are_refused_and_allocate_nothing() {
        let mut k = VoteKeeper::new(H, &set(&[100, 100, 100]));
        let mut other_height = vote(0, 0, Prepare, None, 1);
        other_height.height = Height(8);
        assert_eq!(
            k.add(other_height.clone(), Round(0)),
            Err(VoteRejected::WrongHeight {
                expected: H,
                got: Height(8)
            })
        );
        assert_eq!(
            k.add(vote(3, 0, Prepare, None, 1), Round(0)),
            Err(VoteRejected::UnknownValidator(ValidatorIndex(3)))
        );
        assert_eq!(
            k.add(vote(0, 75, Prepare, None, 1), Round(10)),
            Err(VoteRejected::RoundTooFar {
                current: Round(10),
                got: Round(75)
            })
        );
        assert_eq!(k.rounds(), Vec::<Round>::new());
        assert_eq!(k.memory_votes(), 0);
        assert!(!k.contains(&other_height));
        // The edge: exactly MAX_ROUNDS_AHEAD ahead is accepted.
        assert_eq!(
            k.add(vote(0, 74, Prepare, None, 1), Round(10)),
            Ok(AddOutcome::Counted)
        );
        let reasons = [
            VoteRejected::WrongHeight {
                expected: H,
                got: H,
            }
            .reason(),
            VoteRejected::UnknownValidator(ValidatorIndex(0)).reason(),
            VoteRejected::RoundTooFar {
                current: Round(0),
                got: Round(0),
            }
            .reason(),
        ];
        assert_eq!(
            reasons,
            ["wrong_height", "unknown_validator", "round_too_far"]
        );
    }

    #[test]
    fn the_round_limit_saturates_at_the_last_round() {
        let mut k = VoteKeeper::new(H, &set(&[100]));
        let last = Round(u32::MAX);
        assert_eq!(
            k.add(vote(0, u32::MAX, Prepare, None, 1), Round(u32::MAX - 1)),
            Ok(AddOutcome::Counted)
        );
        assert_eq!(k.stake_in_round(last), Stake(100));
    }

    #[test]
    fn far_future_flood_leaves_memory_bounded() {
        let validators = 4;
        let mut k = VoteKeeper::new(H, &set(&[100; 4]));
        let mut x: u64 = 1;
        for i in 0..10_000u32 {
            // A fixed linear congruential sequence: rounds spread up to 10^9.
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let round = if i % 2 == 0 {
                (x >> 33) as u32 % 1_000_000_000
            } else {
                i
            };
            let kind = if i % 3 == 0 { Prepare } else { Precommit };
            let _ = k.add(
                vote((i % 4) as u16, round, kind, block(i as u8), 1),
                Round(0),
            );
        }
        let tracked = k.rounds().len();
        assert!(
            tracked <= MAX_ROUNDS_AHEAD as usize + 1,
            "{tracked} rounds tracked"
        );
        assert!(k.rounds().iter().all(|r| r.0 <= MAX_ROUNDS_AHEAD));
        assert_eq!(k.memory_votes(), tracked * 2 * validators);
    }

    #[test]
    fn stake_in_round_counts_a_validator_voting_both_kinds_once() {
        let mut k = VoteKeeper::new(H, &set(&[10, 20, 30]));
        k.add(vote(1, 0, Prepare, block(1), 1), Round(0)).unwrap();
        k.add(vote(1, 0, Precommit, block(1), 1), Round(0)).unwrap();
        assert_eq!(k.stake_in_round(Round(0)), Stake(20));
        k.add(vote(2, 0, Precommit, None, 1), Round(0)).unwrap();
        assert_eq!(k.stake_in_round(Round(0)), Stake(50));
        // An equivocating vote adds nothing either.
        k.add(vote(2, 0, Precommit, block(3), 1), Round(0)).unwrap();
        assert_eq!(k.stake_in_round(Round(0)), Stake(50));
        assert_eq!(k.stake_in_round(Round(1)), Stake(0));
    }

    #[test]
    fn votes_are_listed_in_validator_order_and_rounds_ascending() {
        let mut k = VoteKeeper::new(H, &set(&[1, 1, 1, 1]));
        for v in [3, 0, 2] {
            k.add(vote(v, 5, Prepare, None, 1), Round(0)).unwrap();
        }
        k.add(vote(1, 2, Prepare, None, 1), Round(0)).unwrap();
        let order: Vec<u16> = k
            .votes(Round(5), Prepare)
            .iter()
            .map(|v| v.validator.0)
            .collect();
        assert_eq!(order, vec![0, 2, 3]);
        assert!(k.votes(Round(5), Precommit).is_empty());
        assert!(k.votes(Round(9), Prepare).is_empty());
        assert_eq!(k.rounds(), vec![Round(2), Round(5)]);
    }

    /// The naive reference: a list of counted votes and of reported (validator, round, kind),
    /// scanned for every question.
    #[derive(Default)]
    struct Model {
        counted: Vec<Vote>,
        reported: Vec<(ValidatorIndex, Round, VoteKind)>,
    }

    impl Model {
        fn add(
            &mut self,
            stakes: &[u64],
            vote: Vote,
            current: Round,
        ) -> Result<AddOutcome, VoteRejected> {
            if vote.height != H {
                return Err(VoteRejected::WrongHeight {
                    expected: H,
                    got: vote.height,
                });
            }
            if usize::from(vote.validator.0) >= stakes.len() {
                return Err(VoteRejected::UnknownValidator(vote.validator));
            }
            if u64::from(vote.round.0) > u64::from(current.0) + u64::from(MAX_ROUNDS_AHEAD) {
                return Err(VoteRejected::RoundTooFar {
                    current,
                    got: vote.round,
                });
            }
            let same_slot = |v: &&Vote| {
                v.validator == vote.validator && v.round == vote.round && v.kind == vote.kind
            };
            match self.counted.iter().find(same_slot) {
                None => {
                    self.counted.push(vote);
                    Ok(AddOutcome::Counted)
                }
                Some(c) if *c == vote => Ok(AddOutcome::Duplicate),
                Some(c) => {
                    let key = (vote.validator, vote.round, vote.kind);
                    if self.reported.contains(&key) {
                        Ok(AddOutcome::AlreadyReported)
                    } else {
                        self.reported.push(key);
                        Ok(AddOutcome::Equivocation(Box::new(Evidence {
                            first: c.clone(),
                            second: vote,
                        })))
                    }
                }
            }
        }

        fn stake(&self, stakes: &[u64], keep: impl Fn(&Vote) -> bool) -> Stake {
            Stake(
                self.counted
                    .iter()
                    .filter(|v| keep(v))
                    .map(|v| stakes[v.validator.as_usize()])
                    .sum(),
            )
        }

        fn stake_in_round(&self, stakes: &[u64], round: Round) -> Stake {
            let distinct: BTreeSet<ValidatorIndex> = self
                .counted
                .iter()
                .filter(|v| v.round == round)
                .map(|v| v.validator)
                .collect();
            Stake(distinct.iter().map(|v| stakes[v.as_usize()]).sum())
        }
    }

    const VALUES: [Option<Hash>; 4] = [
        None,
        Some(Hash([1; 32])),
        Some(Hash([2; 32])),
        Some(Hash([3; 32])),
    ];

    fn arb_round() -> impl Strategy<Value = u32> {
        prop_oneof![8 => 0u32..5, 1 => Just(u32::MAX), 1 => 60u32..75, 1 => any::<u32>()]
    }

    fn arb_step(validators: u16) -> impl Strategy<Value = (Vote, Round)> {
        (
            0..=validators,
            prop_oneof![4 => Just(H), 1 => Just(H.next())],
            arb_round(),
            prop_oneof![Just(Prepare), Just(Precommit)],
            0usize..4,
            prop_oneof![Just(1u8), Just(2u8)],
            prop_oneof![8 => 0u32..5, 1 => Just(u32::MAX - 2)],
        )
            .prop_map(|(v, height, round, kind, value, sig, current)| {
                let mut vote = vote(v, round, kind, VALUES[value], sig);
                vote.height = height;
                (vote, Round(current))
            })
    }

    fn arb_case() -> impl Strategy<Value = (Vec<u64>, Vec<(Vote, Round)>)> {
        proptest::collection::vec(1u64..1000, 1..=7).prop_flat_map(|stakes| {
            let steps = proptest::collection::vec(arb_step(stakes.len() as u16), 0..120);
            (Just(stakes), steps)
        })
    }

    proptest! {
        #[test]
        fn keeper_agrees_with_a_naive_list_of_votes((stakes, steps) in arb_case()) {
            let set = set(&stakes);
            let mut keeper = VoteKeeper::new(H, &set);
            let mut model = Model::default();
            for (vote, current) in steps {
                let expected = model.add(&stakes, vote.clone(), current);
                prop_assert_eq!(keeper.add(vote.clone(), current), expected, "adding {:?}", vote);
                prop_assert_eq!(keeper.contains(&vote), model.counted.contains(&vote));
            }
            let rounds: BTreeSet<Round> = model.counted.iter().map(|v| v.round).collect();
            prop_assert_eq!(keeper.rounds(), rounds.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(keeper.memory_votes(), rounds.len() * 2 * stakes.len());
            // Every tracked round, plus a few never voted in.
            let asked = rounds.iter().copied().chain([Round(0), Round(4), Round(100), Round(u32::MAX)]);
            for round in asked {
                let in_round = keeper.stake_in_round(round);
                prop_assert_eq!(in_round, model.stake_in_round(&stakes, round));
                for kind in [Prepare, Precommit] {
                    let any = keeper.stake_any(round, kind);
                    prop_assert_eq!(any, model.stake(&stakes, |v| v.round == round && v.kind == kind));
                    let mut values = Vec::new();
                    for value in VALUES {
                        let w = keeper.stake_for(round, kind, value);
                        let m = model.stake(&stakes, |v| v.round == round && v.kind == kind && v.block == value);
                        prop_assert_eq!(w, m);
                        prop_assert_eq!(set.is_quorum(w), set.is_quorum(m));
                        prop_assert_eq!(set.is_more_than_third(w), set.is_more_than_third(m));
                        if w.0 > 0 {
                            values.push((value, w));
                        }
                    }
                    prop_assert_eq!(keeper.tally(round, kind).collect::<Vec<_>>(), values);
                    let mut listed: Vec<&Vote> = model.counted.iter().filter(|v| v.round == round && v.kind == kind).collect();
                    listed.sort_by_key(|v| v.validator);
                    prop_assert_eq!(keeper.votes(round, kind), listed);
                }
            }
        }
    }
}
