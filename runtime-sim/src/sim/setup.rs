//! Building a run: the validators' keys and the genesis from the scenario, the network and its
//! link overrides, one core per instance (twins included), and the first events (starts, timed
//! faults, the liveness deadline, the workload).

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use timed_core::consensus::{Node, NodeConfig};
use timed_core::crypto::Keypair;
use timed_core::ledger::Ledger;
use timed_core::types::{Amount, Stake, TimestampMs};
use timed_core::validators::{Genesis, GenesisBalance, GenesisValidator};
use tracing::info;

use crate::checker::Checker;

use crate::network::Network;
use crate::queue::Queue;
use crate::scenario::{Scenario, ScenarioError};

use super::{CHAIN_ID, Ev, SimNode, Simulation, Stats};

impl Simulation {
    /// Builds the network of `scenario`; every random choice flows from `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Simulation, ScenarioError> {
        scenario
            .validate()
            .map_err(|(f, m)| ScenarioError(format!("field `{f}`: {m}")))?;
        let n = scenario.validators.len();
        let names: Vec<String> = scenario
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.name
                    .clone()
                    .unwrap_or_else(|| format!("validator{}", i + 1))
            })
            .collect();
        // The genesis validators' keys, then the candidates' (not in the genesis set).
        let keys: Vec<Keypair> = names
            .iter()
            .cloned()
            .chain((0..scenario.candidates.len()).map(|k| scenario.candidate_name(k)))
            .map(|name| Keypair::insecure_from_name(&name))
            .collect();
        let clients: Vec<Keypair> = (0..scenario.transactions.as_ref().map_or(0, |w| w.clients))
            .map(|i| Keypair::insecure_from_name(&format!("client{}", i + 1)))
            .collect();
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            genesis_time_ms: TimestampMs(0),
            validators: scenario
                .validators
                .iter()
                .zip(&names)
                .zip(&keys)
                .map(|((v, name), k)| GenesisValidator {
                    name: name.clone(),
                    public_key: k.public_key(),
                    stake: Stake(v.stake),
                    address: None,
                })
                .collect(),
            balances: clients
                .iter()
                .map(|k| GenesisBalance {
                    account: k.public_key(),
                    amount: Amount(scenario.transactions.as_ref().map_or(0, |w| w.balance)),
                })
                .chain(
                    scenario
                        .candidates
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.funds > 0)
                        .map(|(k, c)| GenesisBalance {
                            account: keys[n + k].public_key(),
                            amount: Amount(c.funds),
                        }),
                )
                .collect(),
            params: scenario.consensus.params(),
        };
        let set = genesis
            .validate()
            .map_err(|e| ScenarioError(format!("invalid genesis: {e}")))?;
        let twins = scenario.twins();
        let candidates = scenario.candidates.len();
        let instances = scenario.instances();
        let mut network = Network::new(instances, &scenario.network.default_link());
        for l in &scenario.network.links {
            network.set_link(
                l.from,
                l.to,
                crate::network::LinkModel {
                    latency: l.latency.clone(),
                    jitter_ms: l.jitter_ms,
                    loss: l.loss,
                    duplicate: l.duplicate,
                },
            );
        }
        let genesis_ledger = Rc::new(Ledger::from_genesis(&genesis));
        let mut nodes = Vec::with_capacity(instances);
        // Validators, twins, then candidates (honest followers until a set holds their key).
        let order: Vec<usize> = (0..n)
            .chain(twins.iter().copied())
            .chain(n..n + candidates)
            .collect();
        let cores = Node::new_many(
            &genesis,
            order.iter().map(|&i| keys[i].clone()),
            NodeConfig::default(),
        )
        .map_err(|e| ScenarioError(format!("invalid genesis: {e}")))?;
        for (i, core) in order.into_iter().zip(cores) {
            nodes.push(SimNode {
                core: Some(core),
                incarnation: 0,
                behaviour: scenario
                    .validators
                    .get(i)
                    .map_or(crate::scenario::Behaviour::Honest, |v| v.behaviour),
                crash_at_persist: false,
                chain: BTreeMap::new(),
                ledger: genesis_ledger.clone(),
                records: vec![],
                crashes: 0,
                audited: false,
                validator: i,
                guard: None,
                memory: VecDeque::new(),
                route: BTreeMap::new(),
                pushed_at: None,
                amnesia: Default::default(),
                last_stored: None,
                checker: None,
                unsynced: Vec::new(),
                unsynced_since: 0,
            });
        }
        let mean_delay_ms = network.mean_delay_ms();
        let mut sim = Simulation {
            scenario: scenario.clone(),
            seed,
            checker: Checker::with_nodes(&genesis, set.clone(), instances),
            membership: super::membership::Progress::new(seed),
            genesis,
            keys,
            set,
            nodes,
            network,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: Queue::default(),
            now: 0,
            stats: Stats::default(),
            expectation_failures: vec![],
            height_faults: vec![],
            fired_by: BTreeMap::new(),
            partition_base: None,
            liveness_base: None,
            live: false,
            transcript: None,
            mean_delay_ms,
            clients,
            // A stream of its own: the network's draws are the same with or without clients.
            workload_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7e57_c11e),
            next_nonce: BTreeMap::new(),
            invalid_cache: None,
            stored_ledgers: VecDeque::new(),
            outputs: Vec::new(),
            sign_guard: true,
        };
        for i in 0..instances {
            let checked = sim.nodes[i].checked();
            sim.checker.set_checked(i, checked);
            sim.push(0, Ev::Start { node: i, inc: 0 });
        }
        for (k, f) in scenario.faults.iter().enumerate() {
            match (f.at, f.at_height) {
                (Some(t), _) => sim.push(t.0, Ev::Fault(k)),
                (None, Some(_)) => sim.height_faults.push(k),
                (None, None) => {}
            }
        }
        if let Some(l) = &scenario.expect.liveness {
            sim.push(l.after.0, Ev::LivenessDeadline);
        }
        if scenario.transactions.is_some() {
            sim.schedule_submit();
        }
        // What the checker needs to tell a node's own messages: the key each instance signs
        // with (a twin's are its validator's, and stay unchecked as before).
        for i in 0..instances {
            let v = sim.nodes[i].validator;
            let own = i < n || scenario.candidate_of(i).is_some();
            let key = own.then(|| sim.keys[v].public_key());
            sim.checker.set_key(i, key);
        }
        // The keys whose stake must stay below a third of every set: Byzantine at the start or
        // turned so by a fault.
        let mut byzantine: Vec<bool> = (0..sim.keys.len())
            .map(|v| {
                scenario
                    .validators
                    .get(v)
                    .is_some_and(|s| s.behaviour.is_byzantine())
            })
            .collect();
        for f in &scenario.faults {
            if let crate::scenario::FaultKind::Behave { node, behaviour } = f.kind
                && behaviour.is_byzantine()
            {
                byzantine[sim.nodes[node].validator] = true;
            }
        }
        for (v, _) in byzantine.iter().enumerate().filter(|(_, b)| **b) {
            let key = sim.keys[v].public_key();
            sim.checker.set_byzantine(key);
        }
        if let Some(first) = scenario.membership.first() {
            sim.push(first.at.0, Ev::Membership(0));
        }
        info!(
            seed,
            scenario = %scenario.name,
            validators = n,
            mean_delay_ms,
            "simulation options: {}",
            serde_json::to_string(scenario).unwrap_or_default()
        );
        Ok(sim)
    }
}
