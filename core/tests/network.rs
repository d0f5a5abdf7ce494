//! A small hand-wired network of cores (the full simulator is `timed-sim`): a virtual clock, a
//! fixed link delay, an event queue ordered by (time, sequence), silent validators, and a block
//! store per node so catch-up requests can be served. It checks the protocol end to end inside
//! the core crate.

use std::collections::BTreeMap;

use timed_core::consensus::{Finalized, Input, Node, NodeConfig, Output, PersistRecord, Restore};
use timed_core::crypto::Keypair;
use timed_core::ledger::{Ledger, subsidy};
use timed_core::message::{Decision, Message};
use timed_core::types::{Amount, Hash, Height, TimestampMs, ValidatorIndex};
use timed_core::validators::{ConsensusParams, Genesis, insecure_dev_validators};

const DELAY_MS: u64 = 10;

fn genesis(stakes: &[u64], block_time_ms: u64) -> (Genesis, Vec<Keypair>) {
    let (keys, validators) = insecure_dev_validators(stakes);
    let params = ConsensusParams {
        block_time_ms,
        ..ConsensusParams::default()
    };
    let g = Genesis {
        chain_id: "timed-test".into(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![],
        params,
    };
    (g, keys)
}

struct Net {
    genesis: Genesis,
    keys: Vec<Keypair>,
    nodes: Vec<Option<Node>>,
    queue: BTreeMap<(u64, u64), (usize, Input)>,
    seq: u64,
    now: u64,
    /// Finalized blocks per node, with the (possibly extended) certificate.
    chain: Vec<BTreeMap<Height, (Decision, Finalized)>>,
    records: Vec<Vec<PersistRecord>>,
    /// Every record ever persisted, never pruned (for the checks).
    signed_log: Vec<Vec<PersistRecord>>,
    /// The ledger as a runtime would have stored it at the last finalized height.
    stored_ledger: Vec<Option<Ledger>>,
    evidence: usize,
    transcript: blake3::Hasher,
}

impl Net {
    /// Starts every validator not in `silent` (silent ones never run: a dropout from the start).
    fn new(stakes: &[u64], block_time_ms: u64, silent: &[usize]) -> Net {
        let (genesis, keys) = genesis(stakes, block_time_ms);
        let n = stakes.len();
        let mut net = Net {
            nodes: (0..n)
                .map(|i| {
                    (!silent.contains(&i)).then(|| {
                        Node::new(&genesis, keys[i].clone(), NodeConfig::default()).unwrap()
                    })
                })
                .collect(),
            genesis,
            keys,
            queue: BTreeMap::new(),
            seq: 0,
            now: 0,
            chain: vec![BTreeMap::new(); n],
            records: vec![Vec::new(); n],
            signed_log: vec![Vec::new(); n],
            stored_ledger: vec![None; n],
            evidence: 0,
            transcript: blake3::Hasher::new(),
        };
        for i in 0..n {
            net.push(0, i, Input::Start);
        }
        net
    }

    fn push(&mut self, at: u64, to: usize, input: Input) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (to, input));
    }

    fn step(&mut self) -> bool {
        let Some(((at, _), (i, input))) = self.queue.pop_first() else {
            return false;
        };
        self.now = at;
        let Some(node) = self.nodes[i].as_mut() else {
            return true;
        };
        let outputs = node.handle(TimestampMs(at), input);
        if outputs.iter().any(|o| matches!(o, Output::Finalized(_))) {
            self.stored_ledger[i] = Some(node.ledger().clone());
        }
        for out in outputs {
            self.transcript
                .update(format!("{i}@{at}:{out:?}\n").as_bytes());
            self.perform(i, out);
        }
        true
    }

    fn perform(&mut self, i: usize, out: Output) {
        let from = ValidatorIndex(i as u16);
        match out {
            Output::Persist(r) => {
                self.signed_log[i].push(r.clone());
                self.records[i].push(r);
            }
            Output::Broadcast(msg) => {
                for j in 0..self.nodes.len() {
                    if j != i {
                        self.push(
                            self.now + DELAY_MS,
                            j,
                            Input::Message {
                                from,
                                msg: msg.clone(),
                            },
                        );
                    }
                }
            }
            Output::Send { to, msg } => self.push(
                self.now + DELAY_MS,
                to.as_usize(),
                Input::Message { from, msg },
            ),
            Output::Schedule { timer, after_ms } => {
                self.push(self.now + after_ms, i, Input::Timeout(timer))
            }
            Output::Finalized(f) => {
                let height = f.block.height();
                let decision = Decision {
                    block: f.block.clone(),
                    certificate: f.certificate.clone(),
                };
                let previous = self.chain[i].insert(height, (decision, *f));
                assert!(
                    previous.is_none(),
                    "node {i} finalized height {height} twice"
                );
                self.records[i].retain(|r| r.height() > height);
            }
            Output::CertificateExtended(cert) => {
                let entry = self.chain[i].get_mut(&cert.height).unwrap_or_else(|| {
                    panic!(
                        "node {i} extends height {} it did not finalize",
                        cert.height
                    )
                });
                entry.0.certificate = cert;
            }
            Output::ServeSync {
                to,
                from: start,
                max_blocks,
            } => {
                let blocks: Vec<Decision> = self.chain[i]
                    .range(start..)
                    .take(max_blocks as usize)
                    .map(|(_, (d, _))| d.clone())
                    .collect();
                let msg = Message::SyncResponse { blocks };
                self.push(
                    self.now + DELAY_MS,
                    to.as_usize(),
                    Input::Message { from, msg },
                );
            }
            Output::Evidence(_) => self.evidence += 1,
            Output::TxAccepted { .. } | Output::TxRejected { .. } | Output::Event(_) => {}
        }
    }

    fn run_until(&mut self, until_ms: u64) {
        while self
            .queue
            .first_key_value()
            .is_some_and(|((t, _), _)| *t <= until_ms)
        {
            self.step();
        }
        self.now = until_ms;
    }

    fn height_of(&self, i: usize) -> Height {
        self.chain[i]
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Height(0))
    }

    /// No two nodes finalized different blocks at one height.
    fn assert_agreement(&self) {
        let mut seen: BTreeMap<Height, Hash> = BTreeMap::new();
        for chain in &self.chain {
            for (h, (d, _)) in chain {
                let hash = d.block.hash();
                assert_eq!(*seen.entry(*h).or_insert(hash), hash, "fork at height {h}");
            }
        }
    }

    fn crash_and_restore(&mut self, i: usize) {
        let last = self.chain[i].values().next_back().map(|(d, _)| d.clone());
        let ledger = self.stored_ledger[i].clone();
        let restore = Restore {
            last,
            ledger,
            records: self.records[i].clone(),
            guard: None,
        };
        let node = Node::restore(
            &self.genesis,
            self.keys[i].clone(),
            NodeConfig::default(),
            restore,
        )
        .unwrap();
        self.nodes[i] = Some(node);
        // Everything in flight to the crashed node is lost.
        self.queue.retain(|_, (to, _)| *to != i);
        self.push(self.now, i, Input::Start);
    }
}

fn check_rewards(net: &Net, node: usize, height: Height, proposer_paid_at_least: bool) {
    let (_, f) = &net.chain[node][&height];
    let paid: u64 = f.outcome.rewards.iter().map(|r| r.amount.0).sum();
    assert_eq!(f.outcome.subsidy, subsidy(height));
    assert_eq!(Amount(paid), f.outcome.total_reward);
    assert_eq!(
        f.outcome.total_reward.0,
        subsidy(height).0 + f.outcome.fees.0
    );
    if proposer_paid_at_least {
        let proposer = f.block.header.proposer;
        let share = f
            .outcome
            .rewards
            .iter()
            .find(|r| r.validator == proposer)
            .unwrap();
        assert!(share.amount.0 >= f.outcome.total_reward.0 / 10);
    }
}

#[test]
fn three_validators_finalize_heights_one_to_five_with_three_signatures_and_rewards() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[]);
    net.run_until(8_000);
    net.assert_agreement();
    // What `cargo test ... -- --nocapture` shows a reader: validator1's view of the chain.
    for (h, (d, f)) in &net.chain[0] {
        println!(
            "height {h}: block {} proposed by validator{}, {} signatures, reward {} paid",
            d.block.hash().short(),
            d.block.header.proposer.0 + 1,
            d.certificate.signatures.len(),
            f.outcome.total_reward,
        );
    }
    for i in 0..3 {
        assert!(
            net.height_of(i) >= Height(5),
            "node {i} reached only {}",
            net.height_of(i)
        );
        for h in 1..=5 {
            let (d, f) = &net.chain[i][&Height(h)];
            // Finality came at a quorum; the late third precommit joined the certificate.
            assert!(f.certificate.signatures.len() >= 2);
            assert_eq!(d.certificate.signatures.len(), 3, "node {i} height {h}");
            d.certificate
                .verify(
                    net.nodes[i].as_ref().unwrap().validators(),
                    "timed-test",
                    Height(h),
                    &d.block.hash(),
                )
                .unwrap();
            check_rewards(&net, i, Height(h), true);
        }
    }
    // Every validator's balance is the sum of what the outcomes paid it.
    let node = net.nodes[0].as_ref().unwrap();
    let total: u128 = node
        .ledger()
        .accounts()
        .map(|(_, a)| u128::from(a.balance.0))
        .sum();
    let minted: u128 = (1..=net.height_of(0).0)
        .map(|h| u128::from(subsidy(Height(h)).0))
        .sum();
    assert_eq!(total, minted);
    assert_eq!(net.evidence, 0);
}

#[test]
fn two_of_three_keep_finalizing_when_one_is_silent() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[2]);
    net.run_until(60_000);
    net.assert_agreement();
    for i in 0..2 {
        assert!(
            net.height_of(i) >= Height(5),
            "node {i} reached only {}",
            net.height_of(i)
        );
        for (h, (d, _)) in &net.chain[i] {
            assert_eq!(d.certificate.signatures.len(), 2, "height {h} certificate");
            assert!(
                d.certificate
                    .signatures
                    .iter()
                    .all(|s| s.validator != ValidatorIndex(2))
            );
        }
    }
}

#[test]
fn two_of_four_silent_finalize_nothing_and_do_not_fork() {
    let mut net = Net::new(&[100, 100, 100, 100], 1_000, &[2, 3]);
    net.run_until(120_000);
    net.assert_agreement();
    assert!(
        net.chain.iter().all(|c| c.is_empty()),
        "200 of 400 is not a quorum"
    );
    // Without a quorum of any kind the round cannot end (no 2f+1 prepares, so no prepare
    // timeout): the two wait in height 1, re-sending, and never lock on anything.
    for i in 0..2 {
        let node = net.nodes[i].as_ref().unwrap();
        assert_eq!(node.height(), Height(1));
        assert_eq!(node.locked(), None);
        assert!(
            net.signed_log[i]
                .iter()
                .all(|r| !matches!(r, PersistRecord::Locked { .. }))
        );
    }
}

#[test]
fn a_crashed_validator_restores_resends_and_catches_up() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[]);
    net.run_until(3_000);
    let before = net.height_of(1);
    // Crash node 1 mid-height (its in-flight messages are lost) and bring it back at once.
    net.crash_and_restore(1);
    net.run_until(6_000);
    // Crash node 2 for a long while: the others go on, then it catches up by sync.
    net.nodes[2] = None;
    net.queue.retain(|_, (to, _)| *to != 2);
    let lagging = net.height_of(2);
    net.run_until(20_000);
    net.crash_and_restore(2);
    net.run_until(30_000);
    net.assert_agreement();
    assert!(net.height_of(1) > before);
    assert!(net.height_of(0).0 > lagging.0 + 5);
    assert!(
        net.height_of(2).0 + 1 >= net.height_of(0).0,
        "node 2 caught up: {} vs {}",
        net.height_of(2),
        net.height_of(0)
    );
    assert_eq!(
        net.evidence, 0,
        "a restored node never signs a conflicting vote"
    );
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut net = Net::new(&[100, 200, 300, 50], 500, &[]);
        net.run_until(3_000);
        net.crash_and_restore(3);
        net.run_until(10_000);
        (net.transcript.finalize(), net.height_of(0))
    };
    let (a, ha) = run();
    let (b, hb) = run();
    assert!(ha >= Height(5));
    assert_eq!(ha, hb);
    assert_eq!(a, b, "transcripts of all outputs differ");
}

#[test]
fn block_time_zero_finalizes_as_fast_as_the_network_allows() {
    let mut net = Net::new(&[100, 100, 100, 100], 0, &[]);
    net.run_until(1_000);
    net.assert_agreement();
    // Three message delays of 10 ms per height at best.
    assert!(
        net.height_of(0) >= Height(20),
        "reached {}",
        net.height_of(0)
    );
}

#[test]
fn restored_node_refuses_to_sign_anew_for_a_slot_it_signed() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[]);
    // Crash validator 0 again and again, in the middle of heights.
    for t in (300..12_000).step_by(700) {
        net.run_until(t);
        net.crash_and_restore(0);
    }
    net.run_until(20_000);
    let everything_signed = net.signed_log[0].clone();
    net.assert_agreement();
    assert!(net.height_of(0) >= Height(5));
    // One message per (height, round, slot), whatever crashes happened.
    let mut by_slot: BTreeMap<(Height, u32, u8), Message> = BTreeMap::new();
    for r in everything_signed {
        if let PersistRecord::Signed { height, msg } = r {
            let slot = match &msg {
                Message::Proposal(p) => (height, p.round.0, 0),
                Message::Vote(v) => (height, v.round.0, 1 + v.kind as u8),
                _ => continue,
            };
            let first = by_slot.entry(slot).or_insert_with(|| msg.clone());
            assert_eq!(
                *first, msg,
                "validator 0 signed two different messages for {slot:?}"
            );
        }
    }
    assert!(by_slot.len() > 10);
    assert_eq!(net.evidence, 0);
}
