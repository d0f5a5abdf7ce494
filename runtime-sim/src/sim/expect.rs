//! The scenario's expectations, apart from the invariants the checker holds after every step:
//! the liveness phase (a quorum connected, every honest node gains `gain` heights in time) and
//! what is judged at the end (heights, evidence, full certificates).

use timed_core::types::Stake;
use tracing::info;

use crate::checker::Violation;

use crate::scenario::Behaviour;

use super::{Ev, SimNode, Simulation};

impl Simulation {
    pub(super) fn honest_up(&self) -> impl Iterator<Item = (usize, &SimNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.behaviour == Behaviour::Honest && n.is_up())
    }

    /// The stake node `i`'s key holds in `set` (none if it is no member).
    fn stake_in(&self, set: &timed_core::validators::ValidatorSet, i: usize) -> u64 {
        let key = self.keys[self.nodes[i].validator].public_key();
        set.index_of(&key).map_or(0, |id| set.stake_of(id).0)
    }

    /// At `after` the liveness phase starts; at `after + within` it is judged.
    pub(super) fn liveness_event(&mut self) {
        let Some(l) = self.scenario.expect.liveness.clone() else {
            return;
        };
        match self.liveness_base {
            None => {
                let base = self.max_decided();
                // The set that must finalize the next height, whoever it is by now.
                let set = self.checker.set_at(base.next()).clone();
                // The rule holds once a quorum of honest stake is up and connected; a scenario
                // whose phase starts otherwise promises what no protocol can keep.
                let connected = self
                    .honest_up()
                    .map(|(a, _)| {
                        let stake = self
                            .honest_up()
                            .filter(|(b, _)| self.network.connected(a, *b))
                            .map(|(b, _)| self.stake_in(&set, b))
                            .sum::<u64>();
                        Stake(stake)
                    })
                    .max()
                    .unwrap_or(Stake(0));
                if !set.is_quorum(connected) {
                    self.expectation_failures.push(format!(
                        "the liveness phase starts at {} ms with {} of {} stake honest, up and \
                         connected: less than two thirds, so it cannot be judged",
                        self.now,
                        connected.0,
                        set.total_stake().0
                    ));
                }
                info!(
                    "t={} liveness phase: every honest node must reach {} within {} ms",
                    self.now,
                    base.0 + l.gain,
                    l.within.0
                );
                self.liveness_base = Some((base, self.now + l.within.0));
                self.push(self.now + l.within.0, Ev::LivenessDeadline);
            }
            Some((base, _)) => {
                let target = base.0 + l.gain;
                // A laggard outside the set of the next height is a follower (a candidate not yet
                // active, or a validator that left): said so, as it catches up differently.
                let set = self.checker.set_at(self.max_decided().next()).clone();
                let laggards: Vec<String> = self
                    .honest_up()
                    .filter(|(_, n)| n.height().0 < target)
                    .map(|(i, n)| {
                        let follower = if self.stake_in(&set, i) == 0 {
                            " (a follower: not in the current set)"
                        } else {
                            ""
                        };
                        format!("node {i} at {}{follower}", n.height())
                    })
                    .collect();
                let none_up = self.honest_up().next().is_none();
                if !laggards.is_empty() || none_up {
                    self.checker.violations.push(Violation {
                        step: self.stats.steps,
                        time_ms: self.now,
                        node: None,
                        rule: "liveness",
                        detail: format!(
                            "{} ms after all faults healed, height {target} is not reached: {}",
                            l.within.0,
                            if none_up {
                                "no honest node is up".to_string()
                            } else {
                                laggards.join(", ")
                            }
                        ),
                    });
                }
            }
        }
    }

    /// The scenario's expectations, judged at the end of a run without violations.
    pub(super) fn check_end(&mut self) {
        let e = self.scenario.expect.clone();
        if let Some(min) = e.min_height {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.behaviour == Behaviour::Honest && n.height().0 < min {
                    self.expectation_failures.push(format!(
                        "node {i} reached height {}, expected at least {min}",
                        n.height()
                    ));
                }
            }
        }
        if let Some(min) = e.min_evidence
            && self.stats.evidence < min
        {
            self.expectation_failures.push(format!(
                "{} pieces of evidence reported, expected at least {min}",
                self.stats.evidence
            ));
        }
        if e.full_certificates {
            let n = self.nodes.len();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.behaviour != Behaviour::Honest {
                    continue;
                }
                let top = node.height();
                for (h, d) in node.chain.range(..top) {
                    if d.certificate.signatures.len() != n {
                        self.expectation_failures.push(format!(
                            "node {i}: certificate of height {h} has {} of {n} signatures",
                            d.certificate.signatures.len()
                        ));
                        break;
                    }
                }
            }
        }
    }
}
