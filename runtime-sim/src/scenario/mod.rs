//! What a run is: validators and their behaviours, consensus parameters, the network model, a
//! schedule of faults, candidates and membership events (staking operations), the duration and
//! the expectations. Built by name, read from a TOML file,
//! or drawn from a seed (`swarm`).
//!
//! This module owns `Scenario` itself and what is derived from it (instances, twins, Byzantine
//! stake); by concern:
//! - [`format`]: the vocabulary of a scenario file (behaviours, faults, network, expectations);
//! - [`parse`]: reading and checking a file, with errors that name the line and field;
//! - [`named`]: the named scenarios;
//! - [`swarm`]: the scenarios drawn from a seed.

mod format;
mod named;
mod parse;
mod swarm;

pub use format::*;
pub use named::NAMED;
pub use parse::parse_duration;
pub use swarm::{
    CORE_SYNCS_FOLLOWERS, swarm, swarm_classic, swarm_liveness_bound, swarm_membership,
    swarm_stronger,
};

use std::fmt;

use serde::{Deserialize, Serialize};

/// A whole run, as written in a scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub duration: Ms,
    pub validators: Vec<ValidatorSpec>,
    #[serde(default)]
    pub consensus: Consensus,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Transfers submitted by clients during the run (none if absent).
    #[serde(default)]
    pub transactions: Option<Workload>,
    #[serde(default)]
    pub expect: Expect,
    /// How the simulated disk keeps what the nodes write (`storage = "unsynced"`).
    #[serde(default)]
    pub storage: StorageModel,
    /// Nodes outside the genesis set (`[[candidates]]`), after the validators and their twins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateSpec>,
    /// Staking operations over time (`[[membership]]`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub membership: Vec<Membership>,
}

/// How the simulated disk keeps what a node writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageModel {
    /// Everything is durable the moment it is performed: the earliest sync the core's recipe
    /// allows (rule 3a), so a crash between steps loses nothing written.
    #[default]
    Synced,
    /// As the real node writes: a step's records are synced, with every write before them,
    /// before the step's next output; a block finalized in a step that persists nothing is
    /// written but not synced, and becomes durable at the node's next sync or when its store
    /// commits it (`STORE_COMMIT_MS` later, at the node's next step). A crash before loses it:
    /// the node restarts a height back and learns the block again from its peers.
    Unsynced,
}

/// A scenario that cannot run, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// The simulated nodes: one per validator, one more per `twins` validator (numbered from
    /// `validators.len()` in the order of their validators), then one per candidate.
    pub fn instances(&self) -> usize {
        self.validators.len() + self.twins().len() + self.candidates.len()
    }

    /// The node of the `k`-th candidate.
    pub fn candidate_node(&self, k: usize) -> usize {
        self.validators.len() + self.twins().len() + k
    }

    /// The candidate a node is, if any.
    pub fn candidate_of(&self, node: usize) -> Option<usize> {
        let first = self.candidate_node(0);
        (node >= first && node < first + self.candidates.len()).then(|| node - first)
    }

    /// The validators with a twin, in index order: the k-th one's twin is node `n + k`.
    pub fn twins(&self) -> Vec<usize> {
        (0..self.validators.len())
            .filter(|i| self.validators[*i].behaviour == Behaviour::Twins)
            .collect()
    }

    /// The stake held by Byzantine validators (as initially configured or later turned).
    pub fn byzantine_stake(&self) -> (u64, u64) {
        let total: u64 = self.validators.iter().map(|v| v.stake).sum();
        let mut byz: Vec<bool> = self
            .validators
            .iter()
            .map(|v| v.behaviour.is_byzantine())
            .collect();
        for f in &self.faults {
            if let FaultKind::Behave { node, behaviour } = f.kind
                && behaviour.is_byzantine()
                && node < byz.len()
            {
                byz[node] = true;
            }
        }
        let b = self
            .validators
            .iter()
            .zip(&byz)
            .filter(|(_, b)| **b)
            .map(|(v, _)| v.stake)
            .sum();
        (b, total)
    }
}
