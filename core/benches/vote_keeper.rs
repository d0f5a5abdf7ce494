//! Votes per second the `VoteKeeper` counts, signatures aside (the caller verifies before `add`).
//!
//! Each iteration adds to a fresh keeper every vote of 65 rounds (round 0 up to
//! `MAX_ROUNDS_AHEAD`) × both kinds × all validators, in arrival order round by round; most vote
//! for the round's block, every fourth validator for nil. Building the keeper and cloning the votes
//! happen outside the timed part.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use timed_core::crypto::{Keypair, Signature};
use timed_core::message::{Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, Stake, ValidatorIndex};
use timed_core::validators::{GenesisValidator, ValidatorSet};
use timed_core::votes::{MAX_ROUNDS_AHEAD, VoteKeeper};

const HEIGHT: Height = Height(1);

fn validator_set(n: usize) -> ValidatorSet {
    let members: Vec<GenesisValidator> = (0..n)
        .map(|i| GenesisValidator {
            name: format!("validator{i}"),
            public_key: Keypair::insecure_from_name(&format!("validator{i}")).public_key(),
            stake: Stake(100),
            address: None,
        })
        .collect();
    ValidatorSet::new(&members).expect("a valid set")
}

fn votes(n: usize) -> Vec<Vote> {
    let mut votes = Vec::new();
    for round in 0..=MAX_ROUNDS_AHEAD {
        let block = Hash::of(&[b"block", &round.to_be_bytes()]);
        for kind in [VoteKind::Prepare, VoteKind::Precommit] {
            for v in 0..n {
                votes.push(Vote {
                    height: HEIGHT,
                    round: Round(round),
                    kind,
                    block: if v % 4 == 3 { None } else { Some(block) },
                    validator: ValidatorIndex(v as u16),
                    signature: Signature([v as u8; 64]),
                });
            }
        }
    }
    votes
}

fn add_votes(c: &mut Criterion) {
    let mut group = c.benchmark_group("vote_keeper_add");
    for n in [4usize, 100] {
        let set = validator_set(n);
        let votes = votes(n);
        group.throughput(Throughput::Elements(votes.len() as u64));
        group.bench_function(format!("{n}_validators"), |b| {
            b.iter_batched(
                || (VoteKeeper::new(HEIGHT, &set), votes.clone()),
                |(mut keeper, votes)| {
                    for vote in votes {
                        let _ = black_box(keeper.add(vote, Round(0)));
                    }
                    keeper
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, add_votes);
criterion_main!(benches);
