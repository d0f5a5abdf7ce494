//! The same scenario and seed give the same outputs, byte for byte; another seed does not.

use timed_sim::{Scenario, Simulation};

fn transcript(name: &str, seed: u64) -> (timed_core::types::Hash, u64) {
    let mut s = Scenario::named(name, seed).unwrap();
    s.duration.0 = s.duration.0.min(60_000);
    let mut sim = Simulation::new(&s, seed).unwrap();
    sim.record_transcript();
    sim.run();
    (sim.transcript().unwrap(), sim.stats.steps)
}

#[test]
fn same_seed_same_transcript_for_every_named_scenario() {
    for name in timed_sim::scenario::NAMED {
        let a = transcript(name, 5);
        let b = transcript(name, 5);
        assert_eq!(a, b, "{name} is not deterministic");
        assert!(a.1 > 100, "{name} ran {} steps", a.1);
    }
}

#[test]
fn another_seed_gives_another_run() {
    assert_ne!(
        transcript("crash-restart", 1).0,
        transcript("crash-restart", 2).0
    );
    assert_ne!(transcript("swarm", 1).0, transcript("swarm", 2).0);
}
