//! The `VoteKeeper`'s rules, example by example and as properties.

use super::*;
use crate::crypto::Signature;
use proptest::prelude::*;
use std::collections::BTreeSet;

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

#[test]
fn a_set_of_sparse_ids_counts_its_members_by_id_and_refuses_the_rest() {
    // Ids 3, 40 and 41 after set changes: slots are positions, votes carry ids.
    let members = [(3u16, 100u64), (40, 100), (41, 100)]
        .iter()
        .map(|&(id, stake)| crate::validators::Member {
            id: ValidatorIndex(id),
            name: format!("v{id}"),
            public_key: crate::crypto::Keypair::insecure_from_name(&format!("v{id}")).public_key(),
            stake: Stake(stake),
            owner: crate::crypto::Keypair::insecure_from_name("owner").public_key(),
        })
        .collect();
    let set = ValidatorSet::from_members(members).unwrap();
    let mut k = VoteKeeper::new(H, &set);
    for absent in [0, 1, 2, 4, 39, 42] {
        assert_eq!(
            k.add(vote(absent, 0, Prepare, block(1), 1), Round(0)),
            Err(VoteRejected::UnknownValidator(ValidatorIndex(absent)))
        );
    }
    assert_eq!(
        k.add(vote(41, 0, Prepare, block(1), 1), Round(0)),
        Ok(AddOutcome::Counted)
    );
    assert_eq!(
        k.add(vote(3, 0, Prepare, block(1), 1), Round(0)),
        Ok(AddOutcome::Counted)
    );
    assert!(k.contains(&vote(41, 0, Prepare, block(1), 1)));
    assert!(!k.contains(&vote(40, 0, Prepare, block(1), 1)));
    assert_eq!(k.slot_of(ValidatorIndex(40)), Some(1));
    assert!(set.is_quorum(k.stake_for(Round(0), Prepare, block(1))));
    let ids: Vec<u16> = k
        .votes(Round(0), Prepare)
        .iter()
        .map(|v| v.validator.0)
        .collect();
    assert_eq!(ids, vec![3, 41], "in ascending id order");
    assert!(matches!(
        k.add(vote(41, 0, Prepare, block(2), 1), Round(0)),
        Ok(AddOutcome::Equivocation(_))
    ));
}
