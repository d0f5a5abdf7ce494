#![forbid(unsafe_code)]
//! `timed-sim`: the deterministic simulator of `timed`.
//!
//! Many real `timed-core` nodes run in one thread on a virtual clock (milliseconds), with a seeded
//! ChaCha RNG as the only source of randomness and one event queue ordered by (time, sequence).
//! The same scenario and seed give the same run, output for output. (With 32 validators or more
//! the votes' signatures are verified on a second thread, which changes no output:
//! `checker::verdicts`.)
//!
//! - [`scenario`]: what a run is (validators, parameters, network, faults, expectations); named
//!   scenarios, TOML files, and `swarm` (everything drawn from the seed).
//! - [`network`]: latency models, jitter, loss, duplication, partitions.
//! - [`queue`]: the order of events (by time, then first in first out).
//! - [`sim`]: the event loop; delivery, crashes and restarts from durable state, Byzantine
//!   behaviours' plumbing, faults, expectations, the workload and stats, each in a module of its own.
//! - [`adversary`]: the forgeries of the stronger behaviours (bodies, polkas, torsion, claims).
//! - [`checker`]: the invariants checked after every step (validity, locks, signature verdicts).
//! - [`report`]: the run's summary.
//!
//! ```no_run
//! use timed_sim::{Scenario, Simulation};
//! let scenario = Scenario::named("three-nodes", 1).unwrap();
//! let mut sim = Simulation::new(&scenario, 1).unwrap();
//! sim.run();
//! assert!(sim.passed());
//! ```

pub mod adversary;
pub mod checker;
pub mod network;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sim;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
pub use sim::Simulation;

/// Runs `scenario` with `seed` to its end and summarises it.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    replay: String,
    transcript: bool,
    one_thread: bool,
) -> Result<Report, ScenarioError> {
    let mut sim = Simulation::new(scenario, seed)?;
    if transcript {
        sim.record_transcript();
    }
    if one_thread {
        sim.verify_on_this_thread();
    }
    let start = std::time::Instant::now();
    sim.run();
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    Ok(Report::of(&sim, wall, replay))
}
