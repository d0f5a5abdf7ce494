//! A small hand-wired network of cores (the full simulator is `timed-sim`): a virtual clock, a
//! fixed link delay, an event queue ordered by (time, sequence), silent validators, and a block
//! store per node so catch-up requests can be served. It checks the protocol end to end inside
//! the core crate.

use std::collections::BTreeMap;

use timed_core::block::evidence_root;
use timed_core::consensus::Event;
use timed_core::consensus::{
    Finalized, Input, Node, NodeConfig, Output, PersistRecord, Restore, Timer,
};
use timed_core::crypto::Keypair;
use timed_core::ledger::{Ledger, subsidy};
use timed_core::message::Proposal;
use timed_core::message::{Decision, Message};
use timed_core::tx::{Op, SignedTransfer, Transfer};
use timed_core::types::Round;
use timed_core::types::{Amount, Hash, Height, TimestampMs, ValidatorIndex};
use timed_core::validators::{ConsensusParams, Genesis, GenesisBalance, insecure_dev_validators};
use timed_core::vote::{Evidence, Vote, VoteKind};

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
    /// A validator that signs, beside each of its votes, one for another value and sends it
    /// to every peer too (a double voter).
    double_voter: Option<usize>,
    /// A proposer that adds forged evidence against validator 0 to each fresh block it
    /// proposes (re-signing the proposal, so only the evidence is wrong).
    framer: Option<usize>,
    /// How many blocks the nodes refused for their evidence (`block_bad_evidence`).
    bad_evidence: usize,
    transcript: blake3::Hasher,
}

impl Net {
    /// Starts every validator not in `silent` (silent ones never run: a dropout from the start).
    fn new(stakes: &[u64], block_time_ms: u64, silent: &[usize]) -> Net {
        let (genesis, keys) = genesis(stakes, block_time_ms);
        Net::of(genesis, keys, silent)
    }

    /// A node for each of `keys` (node `i` is reached as `ValidatorIndex(i)`: the genesis's
    /// validators first, then keys that will register, in registration order).
    fn of(genesis: Genesis, keys: Vec<Keypair>, silent: &[usize]) -> Net {
        let n = keys.len();
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
            double_voter: None,
            framer: None,
            bad_evidence: 0,
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
            Output::Broadcast(mut msg) => {
                if self.framer == Some(i)
                    && let Message::Proposal(p) = &msg
                    && p.valid_round.is_none()
                {
                    msg = Message::Proposal(self.framed(i, p));
                }
                if self.double_voter == Some(i)
                    && let Message::Vote(v) = &msg
                {
                    let other = match v.block {
                        Some(_) => None,
                        None => Some(Hash([0xdd; 32])),
                    };
                    let second = Vote::sign(
                        &self.keys[i],
                        &self.genesis.chain_id,
                        v.height,
                        v.round,
                        v.kind,
                        other,
                        v.validator,
                    );
                    for j in (0..self.nodes.len()).filter(|j| *j != i) {
                        let msg = Message::Vote(second.clone());
                        self.push(self.now + DELAY_MS, j, Input::Message { from, msg });
                    }
                }
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
            Output::Event(Event::Rejected {
                reason: "block_bad_evidence",
                ..
            }) => self.bad_evidence += 1,
            Output::TxAccepted { .. } | Output::TxRejected { .. } | Output::Event(_) => {}
        }
    }

    /// `p` with a double vote of validator 0 in its block, signed by `i`'s key in 0's name (so
    /// not under 0's registered key), its evidence root and proposal signature made anew.
    fn framed(&self, i: usize, p: &Proposal) -> Proposal {
        let forged = |block| {
            Vote::sign(
                &self.keys[i],
                &self.genesis.chain_id,
                Height(p.height.0.saturating_sub(1).max(1)),
                Round(0),
                VoteKind::Precommit,
                block,
                ValidatorIndex(0),
            )
        };
        let mut block = p.block.clone();
        block.evidence = vec![Evidence {
            first: forged(Some(Hash([0xee; 32]))),
            second: forged(None),
        }];
        block.header.evidence_root = evidence_root(&block.evidence);
        Proposal::sign(
            &self.keys[i],
            &self.genesis.chain_id,
            p.round,
            None,
            block,
            p.proposer,
        )
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
fn nodes_built_together_give_the_outputs_of_nodes_built_one_by_one() {
    let run = |together: bool| {
        let (genesis, keys) = genesis(&[100, 200, 300, 50], 500);
        let mut net = Net::of(genesis.clone(), keys.clone(), &[]);
        if together {
            let nodes = Node::new_many(&genesis, keys, NodeConfig::default()).unwrap();
            net.nodes = nodes.into_iter().map(Some).collect();
        }
        net.run_until(10_000);
        net.crash_and_restore(3);
        net.run_until(14_000);
        (net.transcript.finalize(), net.height_of(0))
    };
    let (alone, height) = run(false);
    assert!(height >= Height(5));
    assert_eq!(
        run(true),
        (alone, height),
        "transcripts of all outputs differ"
    );
}

/// A genesis that breaks a rule (from a file or a peer: input) is refused with its reason by
/// every way of building a node, before anything is built from it: its ledger used to come
/// first, and asserted the genesis valid (a panic in debug builds).
#[test]
fn an_invalid_genesis_is_refused_by_every_constructor_without_a_panic() {
    let (mut bad, keys) = genesis(&[100, 200, 300], 500);
    bad.chain_id.clear();
    let config = NodeConfig::default;
    let refused = |r: Result<Node, timed_core::consensus::NodeError>| {
        matches!(r, Err(timed_core::consensus::NodeError::Genesis(_)))
    };
    assert!(refused(Node::new(&bad, keys[0].clone(), config())));
    assert!(matches!(
        Node::new_many(&bad, keys.clone(), config()),
        Err(timed_core::consensus::NodeError::Genesis(_))
    ));
    assert!(refused(Node::restore(
        &bad,
        keys[0].clone(),
        config(),
        Default::default()
    )));
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

/// `owner`'s first transfer: a staking operation of `amount` on `validator`'s key.
fn staking_op(owner: &Keypair, validator: &Keypair, amount: u64, op: Op) -> SignedTransfer {
    Transfer {
        from: owner.public_key(),
        to: validator.public_key(),
        amount: Amount(amount),
        fee: Amount(1),
        nonce: 0,
        op,
    }
    .sign(owner, "timed-test")
}

/// The height of the finalized block holding `tx`.
fn finalized_in(chain: &BTreeMap<Height, (Decision, Finalized)>, tx: &SignedTransfer) -> Height {
    let found = chain.iter().find(|(_, (d, _))| d.block.txs.contains(tx));
    *found.expect("the transfer is finalized").0
}

/// Issue 14: a validator registered on chain is elected after the next epoch's end and signs from
/// the first height of the epoch after; before that it only follows. Epochs of 3 heights.
/// From height `from` on, `id` neither signs a certificate nor proposes.
fn assert_out_of_the_set(
    chain: &BTreeMap<Height, (Decision, Finalized)>,
    id: ValidatorIndex,
    from: Height,
) {
    for (h, (d, _)) in chain.range(from..) {
        assert!(
            d.certificate.signatures.iter().all(|s| s.validator != id),
            "height {h}: validator {id} is counted, but it left the set at {from}"
        );
        assert_ne!(d.block.header.proposer, id, "height {h}");
    }
}

#[test]
fn a_validator_that_registers_signs_from_the_activation_height_and_the_chain_stays_one() {
    let (mut genesis, mut keys) = genesis(&[100, 100, 100, 100], 200);
    let alice = Keypair::insecure_from_name("alice");
    genesis.balances.push(GenesisBalance {
        account: alice.public_key(),
        amount: Amount(1_000),
    });
    genesis.params.epoch_blocks = 3;
    genesis.params.unbonding_blocks = 6;
    genesis.params.min_bond = Amount(50);
    let joiner = Keypair::insecure_from_name("validator5");
    keys.push(joiner.clone());
    let mut net = Net::of(genesis, keys, &[]);
    let op = Op::Register {
        name: "validator5".into(),
        address: "127.0.0.1:9005".into(),
    };
    let register = staking_op(&alice, &joiner, 100, op);
    net.push(1, 0, Input::SubmitTx(register.clone()));
    net.run_until(12_000);
    net.assert_agreement();
    let chain = &net.chain[0];
    let registered_at = finalized_in(chain, &register);
    let epoch = |h: Height| (h.0 - 1) / 3;
    let activation = Height((epoch(registered_at) + 2) * 3 + 1);
    assert!(
        net.height_of(4) > activation,
        "the joiner followed to {} (activation {activation})",
        net.height_of(4)
    );
    for (h, (d, _)) in chain {
        let signed = d
            .certificate
            .signatures
            .iter()
            .any(|s| s.validator == ValidatorIndex(4));
        if *h < activation {
            assert!(
                !signed,
                "height {h}: signed before its activation {activation}"
            );
        }
    }
    // From the activation on its precommits are counted: it joins most certificates (a quorum
    // of four of five needs it or all four others; late precommits extend the certificate).
    let signed_after = chain
        .range(activation..)
        .filter(|(_, (d, _))| {
            d.certificate
                .signatures
                .iter()
                .any(|s| s.validator == ValidatorIndex(4))
        })
        .count();
    assert!(
        signed_after >= 3,
        "signed {signed_after} certificates after {activation}"
    );
    // It proposes too: its turn of the new set's schedule comes within the epochs run.
    let proposed = chain
        .range(activation..)
        .any(|(_, (d, _))| d.block.header.proposer == ValidatorIndex(4));
    assert!(proposed, "the joiner never proposed after {activation}");
    // Headers name the set of the next height: it changes at the epoch's last block only, and
    // the last header names the set the node now decides with.
    let named = |h: u64| chain[&Height(h)].0.block.header.next_set_hash;
    let last = activation.0 - 1;
    assert_ne!(
        named(last),
        named(last - 1),
        "the hand-over is named by {last}"
    );
    assert_eq!(
        named(last),
        named(last + 1),
        "and not again within the epoch"
    );
    let node = net.nodes[0].as_ref().unwrap();
    assert_eq!(node.validators().hash(), named(net.height_of(0).0));
    // Its rewards go to its owner.
    let ledger = net.nodes[0].as_ref().unwrap().ledger();
    assert!(ledger.account(&alice.public_key()).balance.0 > 1_000 - 101);
    assert_eq!(net.evidence, 0);
}

/// Issue 14: a validator that unbonds everything leaves the set after the next epoch's end: from
/// then on no certificate counts it, the other three go on alone, and its stake returns to it
/// after the unbonding period.
#[test]
fn a_validator_that_unbonds_stops_being_counted_and_gets_its_stake_back() {
    let (mut genesis, keys) = genesis(&[100, 100, 100, 100], 200);
    genesis.params.epoch_blocks = 3;
    genesis.params.unbonding_blocks = 6;
    genesis.params.min_bond = Amount(50);
    let leaver = keys[3].clone();
    let mut net = Net::of(genesis, keys, &[]);
    // Its fee comes from the rewards it earned by then.
    net.run_until(1_500);
    let unbond = staking_op(&leaver, &leaver, 100, Op::Unbond);
    net.push(1_500, 3, Input::SubmitTx(unbond.clone()));
    net.run_until(14_000);
    net.assert_agreement();
    let chain = &net.chain[0];
    let unbonded_at = finalized_in(chain, &unbond);
    let epoch = |h: Height| (h.0 - 1) / 3;
    let gone = Height((epoch(unbonded_at) + 2) * 3 + 1);
    assert!(net.height_of(0) > Height(gone.0 + 6), "the chain went on");
    assert_out_of_the_set(chain, ValidatorIndex(3), gone);
    // Released at the end of `unbonded_at + 6`: the ledger now holds no bond nor queue for it.
    let release = Height(unbonded_at.0 + 6);
    let (_, released) = &chain[&release];
    let back = released
        .outcome
        .touched
        .iter()
        .find(|(k, _)| *k == leaver.public_key())
        .map(|(_, a)| a.balance)
        .expect("the owner is credited at the release height");
    let (_, before) = &chain[&Height(release.0 - 1)];
    let earlier = before
        .outcome
        .touched
        .iter()
        .find(|(k, _)| *k == leaver.public_key())
        .map(|(_, a)| a.balance);
    if let Some(earlier) = earlier {
        assert!(back.0 >= earlier.0 + 100, "{earlier} then {back}");
    }
    let ledger = net.nodes[0].as_ref().unwrap().ledger();
    let staking = ledger.staking().unwrap();
    assert!(staking.unbonding().is_empty());
    assert_eq!(
        staking.registration(ValidatorIndex(3)).unwrap().bond,
        Amount(0)
    );
}

#[test]
fn a_double_voter_is_slashed_by_a_block_loses_its_seat_and_the_supply_shrinks_by_the_burn() {
    let (mut genesis, keys) = genesis(&[100, 100, 100, 100], 200);
    genesis.params.epoch_blocks = 3;
    genesis.params.unbonding_blocks = 6;
    genesis.params.min_bond = Amount(50);
    genesis.params.slash_permille = 100;
    let supply_at_genesis = Ledger::from_genesis(&genesis).total_supply();
    let mut net = Net::of(genesis, keys, &[]);
    // Honest for a few heights, then a double voter: every vote it sends comes with a second
    // one for another value, to everyone.
    net.run_until(1_000);
    net.double_voter = Some(3);
    net.run_until(12_000);
    net.assert_agreement();
    assert!(net.evidence > 0, "the nodes saw the double votes");
    let chain = &net.chain[0];
    let (punished, (d, f)) = chain
        .iter()
        .find(|(_, (d, _))| !d.block.evidence.is_empty())
        .expect("a block punishes the double vote");
    let e = &d.block.evidence[0];
    assert_eq!(e.first.validator, ValidatorIndex(3));
    assert!(e.first.height < *punished);
    assert_eq!(f.outcome.jailed, vec![ValidatorIndex(3)]);
    assert_eq!(f.outcome.slashed, Amount(10), "10% of its bond of 100");
    // It signs nothing from the epoch after the punishment on: it left the next set at once.
    let epoch = |h: Height| (h.0 - 1) / 3;
    let gone = Height((epoch(*punished) + 1) * 3 + 1);
    assert!(net.height_of(0) > Height(gone.0 + 3), "the chain went on");
    assert_out_of_the_set(chain, ValidatorIndex(3), gone);
    for (h, (d, _)) in chain.range(gone..) {
        assert!(d.block.evidence.is_empty(), "height {h}: punished once");
    }
    // Conservation: supply = genesis + subsidies - slashed, on every node.
    let last = net.height_of(0);
    let subsidies: u128 = (1..=last.0).map(|h| u128::from(subsidy(Height(h)).0)).sum();
    for i in 0..3 {
        let ledger = net.nodes[i].as_ref().unwrap().ledger();
        if net.height_of(i) == last {
            assert_eq!(ledger.total_supply(), supply_at_genesis + subsidies - 10);
        }
        let r = ledger
            .staking()
            .unwrap()
            .registration(ValidatorIndex(3))
            .unwrap();
        assert!(r.jailed);
        assert_eq!(r.bond, Amount(90));
    }
}

#[test]
fn a_proposer_that_frames_an_honest_validator_with_forged_evidence_slashes_nobody() {
    let (mut genesis, keys) = genesis(&[100, 100, 100, 100], 200);
    genesis.params.epoch_blocks = 3;
    genesis.params.unbonding_blocks = 6;
    let mut net = Net::of(genesis, keys, &[]);
    net.framer = Some(3);
    net.run_until(10_000);
    net.assert_agreement();
    assert!(
        net.bad_evidence > 0,
        "the framer proposed and its blocks were refused"
    );
    let chain = &net.chain[0];
    assert!(net.height_of(0) > Height(20), "the other proposers go on");
    for (h, (d, f)) in chain {
        assert!(d.block.evidence.is_empty(), "height {h} carries evidence");
        assert!(f.outcome.jailed.is_empty());
        assert_ne!(d.block.header.proposer, ValidatorIndex(3), "height {h}");
    }
    let ledger = net.nodes[0].as_ref().unwrap().ledger();
    let framed = ledger
        .staking()
        .unwrap()
        .registration(ValidatorIndex(0))
        .unwrap();
    assert!(!framed.jailed);
    assert_eq!(framed.bond, Amount(100));
}

/// A full node (a key in no set) of `genesis`, started at 8 s.
fn started_full_node(genesis: &Genesis) -> Node {
    let mut full = Node::new(genesis, Keypair::from_seed([7; 32]), NodeConfig::default()).unwrap();
    full.handle(TimestampMs(8_000), Input::Start);
    full
}

/// How many blocks `out` finalizes.
fn count_finalized(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Finalized(_)))
        .count()
}

/// Issue 15: a full node (a key in no set) follows the chain from certified blocks alone
/// (`Input::Certified`), checked as a validator checks a peer's decision: a copy whose body was
/// swapped and a certificate of too little stake are refused, a batch that starts above its
/// height is ignored, and the honest blocks bring it to the validators' state. It never signs.
/// The certificates of a run of blocks are checked as one batch (`batch_certified`): one
/// signature forged in the middle of the run stops the node exactly there, as checking each
/// alone would, and the honest blocks then apply.
#[test]
fn a_batch_of_certified_blocks_stops_at_a_forged_signature_and_no_later() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[]);
    net.run_until(8_000);
    let top = net.height_of(0);
    assert!(top >= Height(5), "the validators reached {top}");
    let decisions: Vec<Decision> = (1..=top.0)
        .map(|h| net.chain[0][&Height(h)].0.clone())
        .collect();
    let mut full = started_full_node(&net.genesis);
    let mut forged = decisions.clone();
    forged[2].certificate.signatures[0].signature.0[9] ^= 1;
    let out = full.handle(TimestampMs(8_001), Input::Certified(forged));
    assert_eq!(
        count_finalized(&out),
        2,
        "heights 1 and 2, not the forged 3"
    );
    assert_eq!(full.height(), Height(3));
    let out = full.handle(
        TimestampMs(8_002),
        Input::Certified(decisions[2..].to_vec()),
    );
    assert_eq!(count_finalized(&out), decisions.len() - 2);
    assert_eq!(full.height(), top.next());
    let validator = net.nodes[0].as_ref().unwrap();
    assert_eq!(full.ledger().state_root(), validator.ledger().state_root());
}

/// Three validators with epochs of 3 heights, run for 8 s: the network, its decisions from
/// height 1, and its last height (10 or more).
fn chain_of_short_epochs() -> (Net, Vec<Decision>, Height) {
    let (mut genesis, keys) = genesis(&[100, 100, 100], 200);
    genesis.params.epoch_blocks = 3;
    genesis.params.unbonding_blocks = 6;
    let mut net = Net::of(genesis, keys, &[]);
    net.run_until(8_000);
    let top = net.height_of(0);
    assert!(top >= Height(10), "the validators reached {top}");
    let decisions: Vec<Decision> = (1..=top.0)
        .map(|h| net.chain[0][&Height(h)].0.clone())
        .collect();
    (net, decisions, top)
}

/// One answer across epochs: after an epoch's last block applies, the rest of
/// the answer is checked as one batch under the new set (`apply_certified`). A signature forged
/// two epochs in stops the node exactly at that height, and every block before it, across the
/// hand-overs, applies from the one answer.
#[test]
fn an_answer_across_epochs_applies_whole_and_stops_at_a_forged_signature() {
    let (net, decisions, top) = chain_of_short_epochs();
    // The whole chain in one answer: three epochs and more, all applied.
    let mut full = started_full_node(&net.genesis);
    let out = full.handle(TimestampMs(8_001), Input::Certified(decisions.clone()));
    assert_eq!(count_finalized(&out), decisions.len());
    assert_eq!(full.height(), top.next());
    // Height 8 (the third epoch) forged: heights 1 to 7 apply, not 8 or later.
    let mut forged = decisions.clone();
    forged[7].certificate.signatures[1].signature.0[3] ^= 1;
    let mut full = started_full_node(&net.genesis);
    let out = full.handle(TimestampMs(8_001), Input::Certified(forged));
    assert_eq!(count_finalized(&out), 7, "heights 1 to 7, not the forged 8");
    assert_eq!(full.height(), Height(8));
    let out = full.handle(
        TimestampMs(8_002),
        Input::Certified(decisions[7..].to_vec()),
    );
    assert_eq!(count_finalized(&out), decisions.len() - 7);
    let validator = net.nodes[0].as_ref().unwrap();
    assert_eq!(full.ledger().state_root(), validator.ledger().state_root());
}

#[test]
fn a_full_node_follows_certified_blocks_and_refuses_swapped_bodies_and_weak_certificates() {
    let mut net = Net::new(&[100, 100, 100], 1_000, &[]);
    net.run_until(8_000);
    net.assert_agreement();
    let top = net.height_of(0);
    assert!(top >= Height(5), "the validators reached {top}");
    let decisions: Vec<Decision> = (1..=top.0)
        .map(|h| net.chain[0][&Height(h)].0.clone())
        .collect();
    let stranger = Keypair::from_seed([7; 32]);
    let mut full = Node::new(&net.genesis, stranger, NodeConfig::default()).unwrap();
    let mut outputs = full.handle(TimestampMs(8_000), Input::Start);
    let mut feed = |full: &mut Node, at: u64, input: Input| {
        let out = full.handle(TimestampMs(at), input);
        outputs.extend(out.iter().cloned());
        out.iter()
            .filter(|o| matches!(o, Output::Finalized(_)))
            .count()
    };

    // Height 1 with a transfer added to its body: the certificate covers the header only.
    let mut swapped = decisions[0].clone();
    let owner = Keypair::from_seed([8; 32]);
    swapped
        .block
        .txs
        .push(staking_op(&owner, &net.keys[0], 5, Op::Pay));
    assert_eq!(feed(&mut full, 8_001, Input::Certified(vec![swapped])), 0);
    // Height 1 with one signature only (a third of the stake).
    let mut weak = decisions[0].clone();
    weak.certificate.signatures.truncate(1);
    assert_eq!(feed(&mut full, 8_002, Input::Certified(vec![weak])), 0);
    // Heights 2.. before 1: nothing applies.
    assert_eq!(
        feed(&mut full, 8_003, Input::Certified(decisions[1..].to_vec())),
        0
    );
    assert_eq!(full.height(), Height(1));
    // The honest blocks, with an old one repeated in front: all of them apply, in order.
    let mut honest = vec![decisions[0].clone()];
    honest.extend(decisions.iter().cloned());
    assert_eq!(
        feed(&mut full, 8_004, Input::Certified(honest)),
        top.0 as usize
    );
    assert_eq!(full.height(), top.next());
    let validator = net.nodes[0].as_ref().unwrap();
    assert_eq!(full.ledger().state_root(), validator.ledger().state_root());
    // Its timers run like any node's; it has nothing to sign and signs nothing.
    for at in (9_000..20_000).step_by(500) {
        let height = full.height();
        feed(&mut full, at, Input::Timeout(Timer::Resend { height }));
    }
    assert!(full.me().is_none());
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Persist(_)
                | Output::Broadcast(Message::Vote(_) | Message::Proposal(_))
                | Output::Send { .. }
        )),
        "a full node signed or sent something"
    );
}

/// Issue 15: a sync answer whose certificates a runtime checked off the loop
/// (`Node::certificate_checker`, `Input::SyncChecked`). Across epochs (of 3 heights), the blocks
/// the checker knows the sets of come marked and apply without a second check, the others are
/// checked by the core as they come, and the whole answer applies. A forged signature leaves
/// the answer unmarked: the node stops exactly at it. And a checker of another set vouches for
/// nothing: certificates of the real blocks signed by keys that hold a quorum only in the
/// attacker's set verify there, but the node, whose set is not that one, checks them itself and
/// refuses them.
#[test]
fn a_sync_answer_checked_off_the_loop_applies_across_epochs_and_another_set_vouches_for_nothing() {
    let (net, decisions, top) = chain_of_short_epochs();
    let peer = ValidatorIndex(0);

    // This epoch's and the next one's heights are marked; the rest the core checks.
    let mut full = started_full_node(&net.genesis);
    let answer = full.certificate_checker().check(decisions.clone());
    assert_eq!(answer.checked(), 6, "heights 1 to 6: two epochs of 3");
    let out = full.handle(
        TimestampMs(8_001),
        Input::SyncChecked { from: peer, answer },
    );
    assert_eq!(count_finalized(&out), decisions.len());
    assert_eq!(full.height(), top.next());
    let validator = net.nodes[0].as_ref().unwrap();
    assert_eq!(full.ledger().state_root(), validator.ledger().state_root());

    // A signature forged at height 2: nothing is marked, heights 1 applies, 2 is refused.
    let mut forged = decisions.clone();
    forged[1].certificate.signatures[0].signature.0[5] ^= 1;
    let mut full = started_full_node(&net.genesis);
    let answer = full.certificate_checker().check(forged);
    assert_eq!(answer.checked(), 0);
    let out = full.handle(
        TimestampMs(8_001),
        Input::SyncChecked { from: peer, answer },
    );
    assert_eq!(count_finalized(&out), 1, "height 1, not the forged 2");
    assert_eq!(full.height(), Height(2));

    // The attacker's set: the same validators (ids, names, stakes) with the attacker's keys.
    let thieves: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed([60 + i; 32])).collect();
    let mut theirs = net.genesis.clone();
    for (v, k) in theirs.validators.iter_mut().zip(&thieves) {
        v.public_key = k.public_key();
    }
    let attacker = Node::new(&theirs, Keypair::from_seed([70; 32]), NodeConfig::default()).unwrap();
    let chain_id = net.genesis.chain_id.clone();
    let stolen: Vec<Decision> = decisions[..3]
        .iter()
        .map(|d| {
            let (h, round, hash) = (d.block.height(), d.certificate.round, d.block.hash());
            let votes: Vec<Vote> = thieves
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let index = ValidatorIndex(i as u16);
                    Vote::sign(
                        k,
                        &chain_id,
                        h,
                        round,
                        VoteKind::Precommit,
                        Some(hash),
                        index,
                    )
                })
                .collect();
            Decision {
                block: d.block.clone(),
                certificate: timed_core::block::Certificate::from_precommits(
                    h, round, hash, &votes,
                ),
            }
        })
        .collect();
    let answer = attacker.certificate_checker().check(stolen);
    assert_eq!(answer.checked(), 3, "the attacker's set holds them");
    let mut full = started_full_node(&net.genesis);
    let out = full.handle(
        TimestampMs(8_001),
        Input::SyncChecked { from: peer, answer },
    );
    assert_eq!(
        count_finalized(&out),
        0,
        "no certificate of another set counts"
    );
    assert_eq!(full.height(), Height(1));
}
