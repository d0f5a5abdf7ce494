//! The named scenarios (`Scenario::named`): three nodes, a dropout, a testnet hour, a partition,
//! crashes and restarts, equivocation, amnesia, validator set changes under faults (a partition,
//! a full replacement, a crash), and the swarms by name.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::network::Latency;

use super::*;

/// The names `Scenario::named` knows.
pub const NAMED: &[&str] = &[
    "three-nodes",
    "byzantine-dropout",
    "testnet",
    "partition",
    "crash-restart",
    "equivocation",
    "amnesia",
    "membership-partition",
    "membership-replacement",
    "membership-crash",
    "swarm",
    "swarm-classic",
    "swarm-stronger",
    "swarm-membership",
];

fn v(stake: u64) -> ValidatorSpec {
    ValidatorSpec {
        name: None,
        stake,
        behaviour: Behaviour::Honest,
    }
}

impl Scenario {
    /// A scenario by name; `swarm` is drawn from `seed`.
    pub fn named(name: &str, seed: u64) -> Option<Scenario> {
        let s = match name {
            "three-nodes" => Scenario {
                name: name.into(),
                duration: Ms(60_000),
                validators: vec![v(100), v(100), v(100)],
                consensus: Consensus {
                    block_time_ms: 1_000,
                    ..Consensus::default()
                },
                // Equal delays: every precommit leaves before any decision arrives, so every
                // certificate ends with all three signatures.
                network: NetworkSpec {
                    latency: Latency::Fixed { ms: 10 },
                    ..NetworkSpec::default()
                },
                faults: vec![],
                transactions: None,
                storage: StorageModel::Synced,
                candidates: vec![],
                membership: vec![],
                expect: Expect {
                    min_height: Some(50),
                    max_finality_ms: Some(2_000),
                    full_certificates: true,
                    ..Expect::default()
                },
            },
            "byzantine-dropout" => Scenario {
                name: name.into(),
                duration: Ms(60_000),
                validators: vec![v(100), v(100), v(100)],
                consensus: Consensus {
                    block_time_ms: 1_000,
                    ..Consensus::default()
                },
                network: NetworkSpec {
                    latency: Latency::Uniform {
                        min_ms: 5,
                        max_ms: 15,
                    },
                    ..NetworkSpec::default()
                },
                faults: vec![Fault {
                    at: None,
                    at_height: Some(5),
                    kind: FaultKind::Behave {
                        node: 2,
                        behaviour: Behaviour::Silent,
                    },
                }],
                transactions: None,
                storage: StorageModel::Synced,
                candidates: vec![],
                membership: vec![],
                expect: Expect {
                    min_height: Some(20),
                    ..Expect::default()
                },
            },
            "testnet" => Scenario {
                name: name.into(),
                duration: Ms(3_600_000),
                validators: vec![v(100); 5],
                consensus: Consensus::default(),
                network: NetworkSpec {
                    latency: Latency::Uniform {
                        min_ms: 30,
                        max_ms: 70,
                    },
                    ..NetworkSpec::default()
                },
                faults: vec![],
                transactions: None,
                storage: StorageModel::Synced,
                candidates: vec![],
                membership: vec![],
                expect: Expect {
                    min_height: Some(440),
                    max_finality_ms: Some(30_000),
                    ..Expect::default()
                },
            },
            "partition" => Scenario {
                name: name.into(),
                duration: Ms(180_000),
                validators: vec![v(100); 4],
                consensus: Consensus {
                    block_time_ms: 1_000,
                    ..Consensus::default()
                },
                network: NetworkSpec {
                    latency: Latency::Normal {
                        mean_ms: 20.0,
                        std_ms: 10.0,
                        floor_ms: 5,
                    },
                    jitter_ms: 5,
                    ..NetworkSpec::default()
                },
                faults: vec![
                    at(
                        20_000,
                        FaultKind::Partition {
                            groups: vec![vec![0, 1], vec![2, 3]],
                        },
                    ),
                    at(80_000, FaultKind::Heal),
                ],
                transactions: None,
                storage: StorageModel::Synced,
                candidates: vec![],
                membership: vec![],
                expect: Expect {
                    no_progress_while_partitioned: true,
                    liveness: Some(Liveness {
                        after: Ms(80_000),
                        gain: 10,
                        within: Ms(60_000),
                    }),
                    ..Expect::default()
                },
            },
            "crash-restart" => {
                let mut faults = vec![];
                let mut t = 5_000;
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc4a5);
                while t < 100_000 {
                    let node = rng.random_range(0..4usize);
                    let kind = if rng.random_bool(0.5) {
                        FaultKind::CrashAtPersist { node }
                    } else {
                        FaultKind::Crash { node }
                    };
                    faults.push(at(t, kind));
                    let down = rng.random_range(100..8_000u64);
                    faults.push(at(t + down, FaultKind::Restart { node }));
                    t += down + rng.random_range(500..6_000u64);
                }
                Scenario {
                    name: name.into(),
                    duration: Ms(t + 60_000),
                    validators: vec![v(100); 4],
                    consensus: Consensus {
                        block_time_ms: 500,
                        ..Consensus::default()
                    },
                    network: NetworkSpec {
                        latency: Latency::Uniform {
                            min_ms: 5,
                            max_ms: 40,
                        },
                        loss: 0.02,
                        duplicate: 0.02,
                        ..NetworkSpec::default()
                    },
                    faults,
                    transactions: None,
                    storage: StorageModel::Synced,
                    candidates: vec![],
                    membership: vec![],
                    expect: Expect {
                        liveness: Some(Liveness {
                            after: Ms(t),
                            gain: 10,
                            within: Ms(60_000),
                        }),
                        ..Expect::default()
                    },
                }
            }
            "equivocation" => Scenario {
                name: name.into(),
                duration: Ms(120_000),
                validators: vec![
                    v(100),
                    v(100),
                    v(100),
                    v(100),
                    v(100),
                    ValidatorSpec {
                        name: None,
                        stake: 100,
                        behaviour: Behaviour::EquivocatingProposer,
                    },
                    ValidatorSpec {
                        name: None,
                        stake: 100,
                        behaviour: Behaviour::DoubleVoter,
                    },
                ],
                consensus: Consensus {
                    block_time_ms: 500,
                    ..Consensus::default()
                },
                network: NetworkSpec {
                    latency: Latency::Uniform {
                        min_ms: 5,
                        max_ms: 50,
                    },
                    ..NetworkSpec::default()
                },
                faults: vec![],
                transactions: None,
                storage: StorageModel::Synced,
                candidates: vec![],
                membership: vec![],
                expect: Expect {
                    min_height: Some(30),
                    min_evidence: Some(1),
                    ..Expect::default()
                },
            },
            "amnesia" => amnesia(seed),
            "membership-partition" => membership_partition(),
            "membership-replacement" => membership_replacement(),
            "membership-crash" => membership_crash(),
            "swarm" => swarm(seed),
            "swarm-classic" => swarm_classic(seed),
            "swarm-stronger" => swarm_stronger(seed),
            "swarm-membership" => swarm_membership(seed),
            _ => return None,
        };
        Some(s)
    }
}

/// Four validators, one that forgets its lock (`Behaviour::Amnesia`), on a lossy network: rounds
/// fail and locks are common. At every third height the first node to finalize is cut off at
/// that moment, its precommit and decision lost, until the others finalize two more heights: the
/// others must then finish that height without it, which is where a validator that drops its
/// lock could help them to a different block. Then everything heals and the network must progress.
fn amnesia(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00a3_e51a);
    let n = 4;
    let window = 60_000;
    let mut faults = vec![];
    for h in (3..200).step_by(3) {
        let on_height = |h: u64, kind| Fault {
            at: None,
            at_height: Some(h),
            kind,
        };
        faults.push(on_height(h, FaultKind::IsolateFinalizer));
        faults.push(on_height(h + 2, FaultKind::Heal));
    }
    faults.push(at(window, FaultKind::Heal));
    faults.push(at(window, FaultKind::Reliable { on: true }));
    let mut validators = vec![v(100); n];
    let amnesiac = rng.random_range(0..n);
    validators[amnesiac].behaviour = Behaviour::Amnesia;
    Scenario {
        name: "amnesia".into(),
        duration: Ms(window + 60_000),
        validators,
        consensus: Consensus {
            block_time_ms: 200,
            propose_timeout_ms: 400,
            propose_delta_ms: 100,
            prepare_timeout_ms: 200,
            prepare_delta_ms: 100,
            precommit_timeout_ms: 200,
            precommit_delta_ms: 100,
            resend_interval_ms: 500,
            ..Consensus::default()
        },
        network: NetworkSpec {
            latency: Latency::Uniform {
                min_ms: 5,
                max_ms: 80,
            },
            jitter_ms: 20,
            loss: 0.1,
            duplicate: 0.02,
            links: vec![],
        },
        faults,
        transactions: None,
        storage: StorageModel::Synced,
        candidates: vec![],
        membership: vec![],
        expect: Expect {
            liveness: Some(Liveness {
                after: Ms(window),
                gain: 5,
                within: Ms(60_000),
            }),
            ..Expect::default()
        },
    }
}

/// Four genesis validators of 100 and candidates, epochs of 5 heights (a change made in epoch
/// `e` signs from epoch `e + 2`: 10 heights, some 5 s here), the least bond 50, and a liveness
/// phase after `heal`.
fn membership_base(name: &str, candidates: usize, heal: u64) -> Scenario {
    Scenario {
        name: name.into(),
        duration: Ms(heal + 40_000),
        validators: vec![v(100); 4],
        consensus: Consensus {
            block_time_ms: 200,
            epoch_blocks: 5,
            unbonding_blocks: 10,
            min_bond: 50,
            ..Consensus::default()
        },
        network: NetworkSpec {
            latency: Latency::Uniform {
                min_ms: 5,
                max_ms: 40,
            },
            ..NetworkSpec::default()
        },
        faults: vec![],
        transactions: None,
        storage: StorageModel::Synced,
        candidates: (0..candidates)
            .map(|_| CandidateSpec {
                name: None,
                funds: 1_000,
            })
            .collect(),
        membership: vec![],
        expect: Expect {
            liveness: Some(Liveness {
                after: Ms(heal),
                gain: 10,
                within: Ms(30_000),
            }),
            ..Expect::default()
        },
    }
}

fn event(at_ms: u64, kind: MembershipKind, node: usize, amount: u64) -> Membership {
    Membership {
        at: Ms(at_ms),
        kind,
        node,
        amount,
    }
}

/// The set changes while validator 3 is cut off: a candidate (node 4) registers and validator 2
/// unbonds everything, so the set goes from {0, 1, 2, 3} to {0, 1, 3, 4}. The three others hold
/// three quarters of every set's stake and go on; after the heal validator 3 must catch up
/// through the hand-over and sign in the new set.
fn membership_partition() -> Scenario {
    let mut s = membership_base("membership-partition", 1, 20_000);
    s.faults = vec![
        at(
            1_000,
            FaultKind::Partition {
                groups: vec![vec![3]],
            },
        ),
        at(20_000, FaultKind::Heal),
    ];
    s.membership = vec![
        event(1_500, MembershipKind::Register, 4, 100),
        event(1_500, MembershipKind::Unbond, 2, 100),
    ];
    s
}

/// Every genesis validator leaves: four candidates (nodes 4 to 7) register, then validators 0
/// to 3 unbond everything, one after the other. The chain ends signed by the candidates alone,
/// the genesis nodes following it.
fn membership_replacement() -> Scenario {
    let mut s = membership_base("membership-replacement", 4, 30_000);
    s.membership = (4..8)
        .map(|c| event(1_000, MembershipKind::Register, c, 100))
        .chain((0..4).map(|g| event(1_000, MembershipKind::Unbond, g, 100)))
        .collect();
    s
}

/// A candidate (node 4) registers (60) and later bonds more (40, an epoch or more after) while
/// validator 1 is down (crashed at 1 s, back at 12 s): three of four keep the chain going, the new validator's registration and its
/// activation pass while one is away, and the restarted validator finds the new set.
fn membership_crash() -> Scenario {
    let mut s = membership_base("membership-crash", 1, 12_000);
    // Epochs of 3: with one validator down heights take about a second, and the bond must land
    // an epoch after the registration.
    s.consensus.epoch_blocks = 3;
    s.consensus.unbonding_blocks = 6;
    s.faults = vec![
        at(1_000, FaultKind::Crash { node: 1 }),
        at(12_000, FaultKind::Restart { node: 1 }),
    ];
    s.membership = vec![
        event(1_500, MembershipKind::Register, 4, 60),
        event(6_000, MembershipKind::Bond, 4, 40),
    ];
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_scenario_validates() {
        for name in NAMED {
            let s = Scenario::named(name, 7).unwrap();
            assert_eq!(s.validate(), Ok(()), "{name}");
            let (b, t) = s.byzantine_stake();
            assert!(3 * b < t || *name == "byzantine-dropout", "{name}");
        }
    }
}
