//! Property: whatever the seed and the schedule of crashes (also at persist points) and
//! partitions among honest validators, no invariant breaks, and after everything heals the
//! network gains heights within a minute.

use proptest::prelude::*;
use timed_sim::network::Latency;
use timed_sim::scenario::{Fault, FaultKind, Liveness, Ms};
use timed_sim::{Scenario, Simulation};

#[derive(Clone, Debug)]
enum F {
    Crash(usize, bool),
    Restart(usize),
    Split(Vec<bool>),
    Heal,
}

fn fault() -> impl Strategy<Value = (u64, F)> {
    let f = prop_oneof![
        (0..4usize, any::<bool>()).prop_map(|(n, p)| F::Crash(n, p)),
        (0..4usize).prop_map(F::Restart),
        proptest::collection::vec(any::<bool>(), 4).prop_map(F::Split),
        Just(F::Heal),
    ];
    (0..20_000u64, f)
}

fn scenario(stakes: &[u64], block_time: u64, schedule: &[(u64, F)]) -> Scenario {
    let mut s = Scenario::named("three-nodes", 0).unwrap();
    s.name = "proptest".into();
    s.validators = stakes
        .iter()
        .map(|st| timed_sim::scenario::ValidatorSpec {
            name: None,
            stake: *st,
            behaviour: timed_sim::scenario::Behaviour::Honest,
        })
        .collect();
    s.consensus.block_time_ms = block_time;
    s.network.latency = Latency::Uniform {
        min_ms: 5,
        max_ms: 60,
    };
    s.network.loss = 0.02;
    s.network.duplicate = 0.02;
    let at = |t: u64, kind| Fault {
        at: Some(Ms(t)),
        at_height: None,
        kind,
    };
    s.faults = schedule
        .iter()
        .map(|(t, f)| {
            let kind = match f {
                F::Crash(n, true) => FaultKind::CrashAtPersist { node: *n },
                F::Crash(n, false) => FaultKind::Crash { node: *n },
                F::Restart(n) => FaultKind::Restart { node: *n },
                F::Split(side) => FaultKind::Partition {
                    groups: vec![(0..4).filter(|i| side[*i]).collect()],
                },
                F::Heal => FaultKind::Heal,
            };
            at(*t, kind)
        })
        .collect();
    s.faults.push(at(20_000, FaultKind::Heal));
    for node in 0..4 {
        s.faults.push(at(20_000, FaultKind::Restart { node }));
    }
    s.faults.push(at(20_000, FaultKind::Reliable { on: true }));
    s.duration = Ms(90_000);
    s.expect = timed_sim::scenario::Expect {
        liveness: Some(Liveness {
            after: Ms(20_000),
            gain: 3,
            within: Ms(60_000),
        }),
        stop_at_liveness: true,
        ..Default::default()
    };
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn any_crash_and_partition_schedule_is_safe_and_heals(
        seed in any::<u64>(),
        stakes in proptest::collection::vec(1..100u64, 4),
        block_time in prop_oneof![Just(0u64), Just(300), Just(1_000)],
        schedule in proptest::collection::vec(fault(), 0..8),
    ) {
        let s = scenario(&stakes, block_time, &schedule);
        let mut sim = Simulation::new(&s, seed).unwrap();
        sim.run();
        prop_assert!(
            sim.passed(),
            "seed {seed}: {:#?} {:#?}",
            sim.checker.violations,
            sim.expectation_failures
        );
    }
}
