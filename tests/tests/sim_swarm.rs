//! A swarm of seeds: every option drawn from the seed (1–10 validators, stakes, latencies, loss,
//! duplication, partitions, crashes, a Byzantine set below a third of the stake). The classic
//! draw (`swarm_classic`) holds the pinned seeds; the stronger adversaries' swarm (`swarm`) is
//! `sim_adversary.rs`'s.

use timed_sim::Simulation;
use timed_sim::scenario::{Behaviour, swarm_classic as swarm};

const SEEDS: u64 = 200;

#[test]
fn classic_swarm_of_200_seeds_never_breaks_safety_and_recovers_after_faults() {
    for seed in 0..SEEDS {
        let scenario = swarm(seed);
        let mut sim = Simulation::new(&scenario, seed).unwrap();
        sim.run();
        assert!(
            sim.passed(),
            "seed {seed}: {:#?} {:#?}\nreplay: timed-sim run --scenario swarm --seed {seed}",
            sim.checker.violations,
            sim.expectation_failures
        );
    }
}

/// Found by this swarm: a double voter sends a prepare for B to some peers and nil to others. A
/// node that counted the B votes locks on a polka the others can never see (each counts only the
/// first vote of a validator per round and kind), so before the fix they never accepted its
/// re-proposal (L28 waits for 2f+1 prepares of the valid round) and the height stalled for good.
/// Re-proposals now carry their polka. These seeds stalled before the fix.
#[test]
fn a_double_voter_cannot_stall_a_height() {
    for seed in [26, 52, 77, 125] {
        let scenario = swarm(seed);
        // Amnesia is drawn after everything else: these are still the scenarios that stalled.
        assert!(
            scenario
                .validators
                .iter()
                .all(|v| v.behaviour != Behaviour::Amnesia)
        );
        let mut sim = Simulation::new(&scenario, seed).unwrap();
        sim.run();
        assert!(sim.passed(), "seed {seed}: {:#?}", sim.checker.violations);
    }
}

/// Found by a wider swarm: an equivocating proposer split height 9; X gathered a polka and node
/// 3 locked on it, while the others held the forged block (or saw the polka only after leaving
/// the round). Only node 3 could re-propose X, it was not drawn in rounds 1 to 10, and the rest
/// had too little stake to finalize without it, so the height stalled past the liveness bound.
/// Now a node that counted a polka of an earlier round fetches the block it lacks from a voter
/// and takes it as its valid value (L36 for an earlier round), so any proposer re-proposes X.
#[test]
fn a_polka_for_a_block_only_a_locked_node_holds_does_not_stall_the_height() {
    let seed = 1077;
    let scenario = swarm(seed);
    assert!(
        scenario
            .validators
            .iter()
            .any(|v| v.behaviour == Behaviour::EquivocatingProposer)
    );
    let mut sim = Simulation::new(&scenario, seed).unwrap();
    sim.run();
    assert!(
        sim.passed(),
        "seed {seed}: {:#?} {:#?}",
        sim.checker.violations,
        sim.expectation_failures
    );
}
