//! The same scenario and seed give the same outputs, byte for byte; another seed does not.

use timed_sim::{Scenario, Simulation};

fn transcript(name: &str, seed: u64) -> (timed_core::types::Hash, u64) {
    transcript_with(name, seed, |_| {})
}

/// The transcript of `name` with `seed` (at most a simulated minute), `prepare` called on the
/// simulation before it runs.
fn transcript_with(
    name: &str,
    seed: u64,
    prepare: impl FnOnce(&mut Simulation),
) -> (timed_core::types::Hash, u64) {
    let mut s = Scenario::named(name, seed).unwrap();
    s.duration.0 = s.duration.0.min(60_000);
    let mut sim = Simulation::new(&s, seed).unwrap();
    sim.record_transcript();
    prepare(&mut sim);
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

/// Where the verdicts are computed (a second thread, or the simulation's own) changes no
/// output: every named scenario (membership changes among them, which renew the verdicts' set)
/// gives one transcript both ways.
#[test]
fn verifying_on_a_second_thread_changes_no_output() {
    assert!(
        !timed_sim::checker::verifies_on_one_thread(),
        "this test needs a machine with two cores"
    );
    for name in timed_sim::scenario::NAMED {
        // The named scenarios' sets are too small for the simulator to choose a second thread
        // itself: it is asked to.
        assert_eq!(
            transcript_with(name, 7, Simulation::verify_on_second_thread),
            transcript_with(name, 7, Simulation::verify_on_this_thread),
            "{name} depends on where signatures are verified"
        );
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
