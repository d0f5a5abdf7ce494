//! The summary of a run: printed for people, or one JSON object for machines.

use serde::Serialize;

use crate::checker::Violation;
use crate::sim::Simulation;
use timed_core::units::percentile;

/// What `timed-sim run` reports. The JSON keys are stable.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub validators: usize,
    pub stakes: Vec<u64>,
    pub behaviours: Vec<String>,
    pub sim_ms: u64,
    pub wall_ms: f64,
    pub speedup: f64,
    pub heights: Vec<u64>,
    pub min_height: u64,
    pub max_height: u64,
    pub finality_p50_ms: u64,
    pub finality_p99_ms: u64,
    pub finality_p50_delays: f64,
    pub finality_p99_delays: f64,
    pub messages: u64,
    pub dropped: u64,
    pub evidence: u64,
    pub crashes: u64,
    /// Messages the stronger adversaries forged or replayed.
    pub forged: u64,
    /// Restarts that lost durable records.
    pub storage_losses: u64,
    /// Finalized blocks crashes took before they were synced (`storage = "unsynced"`).
    pub unsynced_blocks_lost: u64,
    /// The highest round an honest node entered, and how many of their rounds ended more than
    /// one round on (`Timer::RoundEnd` joining a round seen ahead).
    pub max_round: u32,
    pub round_jumps: u64,
    /// Round pushers' votes that reached an honest node at its height, more than a round ahead.
    pub pushed_votes_delivered: u64,
    pub txs_submitted: u64,
    /// Distinct proposals and votes whose signature the simulator verified (once each, for all
    /// nodes): the verifications the run's workload needs.
    pub signed_messages: usize,
    pub txs_finalized: u64,
    pub steps: u64,
    pub forks: usize,
    pub violations: usize,
    pub violation_details: Vec<Violation>,
    pub failed_expectations: Vec<String>,
    pub passed: bool,
    pub replay: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

impl Report {
    /// Summarises `sim`; `replay` is the command that reruns it exactly.
    pub fn of(sim: &Simulation, wall_ms: f64, replay: String) -> Report {
        let heights: Vec<u64> = sim.nodes.iter().map(|n| n.height().0).collect();
        let honest: Vec<u64> = sim
            .nodes
            .iter()
            .filter(|n| !n.behaviour.is_byzantine())
            .map(|n| n.height().0)
            .collect();
        let mut lat = sim.stats.finality_ms.clone();
        lat.sort_unstable();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        let d = sim.mean_delay_ms().max(1e-9);
        let sim_ms = sim.now_ms();
        Report {
            scenario: sim.scenario.name.clone(),
            seed: sim.seed,
            validators: sim.nodes.len(),
            stakes: sim.scenario.validators.iter().map(|v| v.stake).collect(),
            behaviours: sim
                .nodes
                .iter()
                .map(|n| format!("{:?}", n.behaviour))
                .collect(),
            sim_ms,
            wall_ms,
            speedup: if wall_ms > 0.0 {
                sim_ms as f64 / wall_ms
            } else {
                0.0
            },
            min_height: honest.iter().copied().min().unwrap_or(0),
            max_height: heights.iter().copied().max().unwrap_or(0),
            heights,
            finality_p50_ms: p50,
            finality_p99_ms: p99,
            finality_p50_delays: (p50 as f64 / d * 10.0).round() / 10.0,
            finality_p99_delays: (p99 as f64 / d * 10.0).round() / 10.0,
            messages: sim.stats.messages,
            dropped: sim.stats.dropped,
            evidence: sim.stats.evidence,
            crashes: sim.stats.crashes,
            forged: sim.stats.forged,
            storage_losses: sim.stats.storage_losses,
            unsynced_blocks_lost: sim.stats.unsynced_blocks_lost,
            max_round: sim.stats.max_round,
            round_jumps: sim.stats.round_jumps,
            pushed_votes_delivered: sim.stats.pushed_votes_delivered,
            txs_submitted: sim.stats.txs_submitted,
            signed_messages: sim.checker.distinct_signed_messages(),
            txs_finalized: sim.checker.txs_decided,
            steps: sim.stats.steps,
            forks: sim
                .checker
                .violations
                .iter()
                .filter(|v| v.rule == "fork")
                .count(),
            violations: sim.checker.violations.len(),
            violation_details: sim.checker.violations.clone(),
            failed_expectations: sim.expectation_failures.clone(),
            passed: sim.passed(),
            replay,
            transcript: sim.transcript().map(|h| h.to_string()),
        }
    }

    /// The human summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let w = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<22}{v}\n"));
        w(
            &mut s,
            "scenario",
            format!("{} (seed {})", self.scenario, self.seed),
        );
        w(
            &mut s,
            "validators",
            format!(
                "{} (stakes {:?}; {})",
                self.validators,
                self.stakes,
                self.behaviours.join(", ")
            ),
        );
        w(
            &mut s,
            "time",
            format!(
                "{:.1} s simulated in {:.3} s wall, speed {:.0}x",
                self.sim_ms as f64 / 1000.0,
                self.wall_ms / 1000.0,
                self.speedup
            ),
        );
        w(&mut s, "finalized height", format!("{:?}", self.heights));
        w(
            &mut s,
            "finality latency",
            format!(
                "p50 {} ms ({} delays), p99 {} ms ({} delays)",
                self.finality_p50_ms,
                self.finality_p50_delays,
                self.finality_p99_ms,
                self.finality_p99_delays
            ),
        );
        w(
            &mut s,
            "messages",
            format!("{} sent, {} dropped", self.messages, self.dropped),
        );
        w(&mut s, "crashes", self.crashes.to_string());
        w(
            &mut s,
            "rounds",
            format!(
                "highest {} (honest nodes), {} round ends jumped past the next round, {} votes \
                 of round pushers from further ahead delivered",
                self.max_round, self.round_jumps, self.pushed_votes_delivered
            ),
        );
        if self.forged > 0 || self.storage_losses > 0 || self.unsynced_blocks_lost > 0 {
            w(
                &mut s,
                "adversary",
                format!(
                    "{} messages forged or replayed, {} restarts with lost records, {} unsynced \
                     blocks lost in crashes",
                    self.forged, self.storage_losses, self.unsynced_blocks_lost
                ),
            );
        }
        if self.txs_submitted > 0 {
            w(
                &mut s,
                "transactions",
                format!(
                    "{} submitted, {} finalized",
                    self.txs_submitted, self.txs_finalized
                ),
            );
        }
        w(&mut s, "evidence", self.evidence.to_string());
        w(&mut s, "forks", self.forks.to_string());
        w(&mut s, "violations", self.violations.to_string());
        for v in &self.violation_details {
            s.push_str(&format!(
                "  VIOLATION {} at step {} (t={} ms){}: {}\n",
                v.rule,
                v.step,
                v.time_ms,
                v.node.map(|n| format!(", node {n}")).unwrap_or_default(),
                v.detail
            ));
        }
        for e in &self.failed_expectations {
            s.push_str(&format!("  EXPECTATION FAILED: {e}\n"));
        }
        if let Some(t) = &self.transcript {
            w(&mut s, "transcript", t.clone());
        }
        w(
            &mut s,
            "result",
            if self.passed { "PASS" } else { "FAIL" }.into(),
        );
        if !self.passed {
            w(&mut s, "replay with", self.replay.clone());
        }
        s
    }
}
