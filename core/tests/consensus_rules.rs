//! One node driven by hand-crafted messages from the other validators' keys: each test checks one
//! rule of the state machine or one refusal of hostile input.

use timed_core::block::{self, Block, Header};
use timed_core::consensus::{
    Event, Input, Misbehaviour, Node, NodeConfig, Output, RoundChange, Step, Timer,
};
use timed_core::crypto::KeyCache;
use timed_core::crypto::{Keypair, Signature};
use timed_core::ledger::Ledger;
use timed_core::message::{Message, Proposal, Vote, VoteKind};
use timed_core::tx::{SignedTransfer, Transfer};
use timed_core::types::Amount;
use timed_core::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
use timed_core::validators::{Genesis, GenesisBalance, insecure_dev_validators};
use timed_core::verified::Verified;

const CHAIN: &str = "rules";

struct Fixture {
    genesis: Genesis,
    keys: Vec<Keypair>,
    node: Node,
    me: ValidatorIndex,
}

fn genesis(n: usize) -> (Genesis, Vec<Keypair>) {
    let (keys, validators) = insecure_dev_validators(&vec![100; n]);
    let g = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![],
        params: Default::default(),
    };
    (g, keys)
}

impl Fixture {
    /// Four validators of stake 100; this node is one that proposes none of rounds 0 to 2 of
    /// height 1, so every proposal it sees comes from the test.
    fn new() -> Fixture {
        let (genesis, keys) = genesis(4);
        Fixture::with(genesis, keys)
    }

    /// As `new`, with a node not yet started (`Input::Start` is the test's).
    fn unstarted() -> Fixture {
        let mut f = Fixture::new();
        f.node = Node::new(
            &f.genesis,
            f.keys[f.me.as_usize()].clone(),
            NodeConfig::default(),
        )
        .unwrap();
        f
    }

    /// As `new`, with `alice` holding 1,000 units to send transfers from.
    fn funded() -> Fixture {
        let (mut genesis, keys) = genesis(4);
        genesis.balances.push(GenesisBalance {
            account: alice().public_key(),
            amount: Amount(1_000),
        });
        Fixture::with(genesis, keys)
    }

    fn with(genesis: Genesis, keys: Vec<Keypair>) -> Fixture {
        let set = genesis.validate().unwrap();
        let busy: Vec<ValidatorIndex> = (0..3).map(|r| set.proposer(Height(1), Round(r))).collect();
        let me = (0..4)
            .map(ValidatorIndex)
            .find(|i| !busy.contains(i))
            .unwrap();
        let mut node =
            Node::new(&genesis, keys[me.as_usize()].clone(), NodeConfig::default()).unwrap();
        node.handle(TimestampMs(1_000), Input::Start);
        Fixture {
            genesis,
            keys,
            node,
            me,
        }
    }

    fn proposer(&self, round: u32) -> ValidatorIndex {
        self.node.validators().proposer(Height(1), Round(round))
    }

    fn others(&self) -> Vec<ValidatorIndex> {
        (0..self.node.validators().len() as u16)
            .map(ValidatorIndex)
            .filter(|i| *i != self.me)
            .collect()
    }

    /// A valid empty block for height 1 built by `proposer`, with a distinguishing timestamp.
    fn block(&self, proposer: ValidatorIndex, timestamp: u64) -> Block {
        self.block_with(proposer, timestamp, vec![])
    }

    /// A block for height 1 carrying `txs`, its roots those of the transfers applied as if their
    /// signatures were good (valid exactly when they are).
    fn block_with(
        &self,
        proposer: ValidatorIndex,
        timestamp: u64,
        txs: Vec<SignedTransfer>,
    ) -> Block {
        let set = self.genesis.validate().unwrap();
        let mut ledger = Ledger::from_genesis(&self.genesis);
        let staged = ledger
            .stage_block_trusting(CHAIN, Height(1), proposer, &set, &txs, &[], |_, _| true)
            .unwrap();
        ledger.commit(&staged.touched);
        Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: Height(1),
                parent_hash: self.genesis.hash(),
                timestamp: TimestampMs(timestamp),
                proposer,
                tx_root: block::tx_root(&txs),
                state_root: ledger.state_root(),
                next_set_hash: ledger.staking().expect("a genesis ledger").current().hash(),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs,
            evidence: Vec::new(),
        }
    }

    fn propose(&mut self, round: u32, block: Block, valid_round: Option<u32>) -> Vec<Output> {
        let p = self.proposer(round);
        let proposal = Proposal::sign(
            &self.keys[p.as_usize()],
            CHAIN,
            Round(round),
            valid_round.map(Round),
            block,
            p,
        );
        self.deliver(p, Message::Proposal(proposal))
    }

    fn vote(
        &mut self,
        from: ValidatorIndex,
        round: u32,
        kind: VoteKind,
        block: Option<Hash>,
    ) -> Vec<Output> {
        let v = Vote::sign(
            &self.keys[from.as_usize()],
            CHAIN,
            Height(1),
            Round(round),
            kind,
            block,
            from,
        );
        self.deliver(from, Message::Vote(v))
    }

    /// Height 1 finalized in round 0: a proposal, then every other validator's prepare and
    /// precommit for it. Returns the block and the outputs of the precommits.
    fn finalize_height_one(&mut self) -> (Block, Vec<Output>) {
        let b = self.block(self.proposer(0), 900);
        self.propose(0, b.clone(), None);
        let others = self.others();
        for v in &others {
            self.vote(*v, 0, VoteKind::Prepare, Some(b.hash()));
        }
        let mut out = Vec::new();
        for v in &others {
            out.extend(self.vote(*v, 0, VoteKind::Precommit, Some(b.hash())));
        }
        assert_eq!(self.node.height(), Height(2));
        (b, out)
    }

    /// `block` re-proposed by round `round`'s proposer with `valid_round` and `polka`, signed but
    /// not delivered.
    fn reproposal(
        &self,
        round: u32,
        valid_round: u32,
        block: Block,
        polka: block::Certificate,
    ) -> Proposal {
        let p = self.proposer(round);
        Proposal::sign(
            &self.keys[p.as_usize()],
            CHAIN,
            Round(round),
            Some(Round(valid_round)),
            block,
            p,
        )
        .with_polka(polka)
    }

    /// The votes of every other validator at height 1, signed but not delivered.
    fn others_votes(&self, round: u32, kind: VoteKind, block: Option<Hash>) -> Vec<Vote> {
        self.others()
            .into_iter()
            .map(|v| {
                Vote::sign(
                    &self.keys[v.as_usize()],
                    CHAIN,
                    Height(1),
                    Round(round),
                    kind,
                    block,
                    v,
                )
            })
            .collect()
    }

    fn deliver(&mut self, from: ValidatorIndex, msg: Message) -> Vec<Output> {
        self.node
            .handle(TimestampMs(1_000), Input::Message { from, msg })
    }
}

fn alice() -> Keypair {
    Keypair::insecure_from_name("alice")
}

/// Alice pays Bob 10 units, fee 1, nonce 0, signed on this chain.
fn alices_transfer() -> SignedTransfer {
    Transfer {
        from: alice().public_key(),
        to: Keypair::insecure_from_name("bob").public_key(),
        amount: Amount(10),
        fee: Amount(1),
        nonce: 0,
        op: Default::default(),
    }
    .sign(&alice(), CHAIN)
}

fn own_votes(outputs: &[Output], kind: VoteKind) -> Vec<Option<Hash>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Vote(v)) if v.kind == kind => Some(v.block),
            _ => None,
        })
        .collect()
}

fn rejected(outputs: &[Output], reason: &str) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Rejected { reason: r, .. }) if *r == reason))
}

#[test]
fn a_valid_proposal_is_prepared_and_a_prepare_quorum_locks_and_precommits_it() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
    // Its own prepare plus one is 200 of 400: not yet a quorum.
    let others = f.others();
    let out = f.vote(others[0], 0, VoteKind::Prepare, Some(b.hash()));
    assert!(own_votes(&out, VoteKind::Precommit).is_empty());
    let out = f.vote(others[1], 0, VoteKind::Prepare, Some(b.hash()));
    assert_eq!(own_votes(&out, VoteKind::Precommit), vec![Some(b.hash())]);
    assert_eq!(f.node.locked(), Some((Round(0), b.hash())));
    // The lock is persisted before the precommit is sent.
    let persist_at = out
        .iter()
        .position(|o| matches!(o, Output::Persist(_)))
        .unwrap();
    let send_at = out
        .iter()
        .position(|o| matches!(o, Output::Broadcast(Message::Vote(_))))
        .unwrap();
    assert!(persist_at < send_at);
}

#[test]
fn a_locked_validator_prepares_nil_for_a_different_fresh_proposal() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    f.vote(others[0], 0, VoteKind::Prepare, Some(b.hash()));
    f.vote(others[1], 0, VoteKind::Prepare, Some(b.hash()));
    // Precommits of a quorum but for nothing in particular: the precommit timeout ends round 0.
    f.vote(others[0], 0, VoteKind::Precommit, None);
    f.vote(others[1], 0, VoteKind::Precommit, None);
    let out = f.node.handle(
        TimestampMs(5_000),
        Input::Timeout(Timer::Precommit {
            height: Height(1),
            round: Round(0),
        }),
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::RoundChanged {
            round: Round(1),
            reason: RoundChange::Timeout,
            ..
        })
    )));
    // Round 1's proposer offers a different block without a valid round: refused (L22).
    let c = f.block(f.proposer(1), 950);
    assert_ne!(c.hash(), b.hash());
    let out = f.propose(1, c, None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
}

#[test]
fn a_locked_validator_accepts_a_reproposal_backed_by_a_newer_prepare_quorum() {
    let mut f = Fixture::new();
    let at = |t: Timer| Input::Timeout(t);
    let (h1, r0, r1) = (Height(1), Round(0), Round(1));
    let b = f.block(f.proposer(0), 900);
    let c = f.block(f.proposer(1), 901);
    let others = f.others();
    // Round 0: lock on B, then the round ends without a decision.
    f.propose(0, b.clone(), None);
    f.vote(others[0], 0, VoteKind::Prepare, Some(b.hash()));
    f.vote(others[1], 0, VoteKind::Prepare, Some(b.hash()));
    assert_eq!(f.node.locked(), Some((r0, b.hash())));
    f.vote(others[0], 0, VoteKind::Precommit, None);
    f.vote(others[1], 0, VoteKind::Precommit, None);
    f.node.handle(
        TimestampMs(5_000),
        at(Timer::Precommit {
            height: h1,
            round: r0,
        }),
    );
    // Round 1: this node never sees the proposal, but the three others prepare C (a quorum).
    let out = f.node.handle(
        TimestampMs(9_000),
        at(Timer::Propose {
            height: h1,
            round: r1,
        }),
    );
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    for v in &others {
        f.vote(*v, 1, VoteKind::Prepare, Some(c.hash()));
    }
    f.node.handle(
        TimestampMs(10_000),
        at(Timer::Prepare {
            height: h1,
            round: r1,
        }),
    );
    f.vote(others[0], 1, VoteKind::Precommit, None);
    f.vote(others[1], 1, VoteKind::Precommit, None);
    f.node.handle(
        TimestampMs(11_000),
        at(Timer::Precommit {
            height: h1,
            round: r1,
        }),
    );
    assert_eq!(f.node.round(), Round(2));
    // Round 2 re-proposes C with valid round 1: lockedRound 0 ≤ 1, so prepare C (L28).
    let out = f.propose(2, c.clone(), Some(1));
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(c.hash())]);
}

#[test]
fn a_precommit_quorum_finalizes_with_a_valid_certificate_and_pays_the_reward() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    for v in &others[..2] {
        f.vote(*v, 0, VoteKind::Prepare, Some(b.hash()));
    }
    f.vote(others[0], 0, VoteKind::Precommit, Some(b.hash()));
    let out = f.vote(others[1], 0, VoteKind::Precommit, Some(b.hash()));
    let finalized = out
        .iter()
        .find_map(|o| match o {
            Output::Finalized(f) => Some(f.clone()),
            _ => None,
        })
        .expect("finalized");
    assert_eq!(finalized.block.hash(), b.hash());
    finalized
        .certificate
        .verify(f.node.validators(), CHAIN, Height(1), &b.hash())
        .unwrap();
    assert_eq!(finalized.certificate.signatures.len(), 3);
    assert_eq!(
        finalized
            .outcome
            .rewards
            .iter()
            .map(|r| r.amount.0)
            .sum::<u64>(),
        100_000_000
    );
    assert_eq!(f.node.height(), Height(2));
    assert_eq!(f.node.step(), Step::NewHeight);
    // The decision is not broadcast (at 8 s blocks not even announced: ADR 0002).
    assert!(decisions_sent(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Schedule {
            timer: Timer::NextHeight { height: Height(2) },
            ..
        }
    )));
}

/// To whom `out` sends a decision (a broadcast counting as everyone).
fn decisions_sent(out: &[Output]) -> Vec<ValidatorIndex> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Decision(_),
            } => Some(*to),
            Output::Broadcast(Message::Decision(_)) => Some(ValidatorIndex(u16::MAX)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_still_at_the_decided_height_is_sent_the_decision_once_per_gap() {
    let mut f = Fixture::new();
    let (b, _) = f.finalize_height_one();
    let others = f.others();
    // A peer whose precommit counted, still at height 1 (its view of the precommits is short):
    // its next message of height 1 (here, its prepare of round 1) brings it the decision.
    let out = f.vote(others[0], 1, VoteKind::Prepare, Some(b.hash()));
    assert_eq!(decisions_sent(&out), vec![others[0]]);
    // Not again at once: one per peer per half resend interval.
    let out = f.vote(others[0], 2, VoteKind::Prepare, Some(b.hash()));
    assert!(decisions_sent(&out).is_empty());
    let out = f.node.handle(
        TimestampMs(1_000 + 1_000),
        Input::Message {
            from: others[0],
            msg: Message::Vote(Vote::sign(
                &f.keys[others[0].as_usize()],
                CHAIN,
                Height(1),
                Round(3),
                VoteKind::Prepare,
                Some(b.hash()),
                others[0],
            )),
        },
    );
    assert_eq!(decisions_sent(&out), vec![others[0]]);
}

#[test]
fn forged_and_misaddressed_messages_are_refused_and_not_counted() {
    let mut f = Fixture::new();
    let others = f.others();
    // A vote whose signature is garbage.
    let mut v = Vote::sign(
        &f.keys[others[0].as_usize()],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Prepare,
        None,
        others[0],
    );
    v.signature = Signature([1; 64]);
    let out = f.deliver(others[0], Message::Vote(v));
    assert!(rejected(&out, "bad_signature"));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::VoteCounted { .. })))
    );
    // A vote signed by one validator but claiming to be another's.
    let v = Vote::sign(
        &f.keys[others[0].as_usize()],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Prepare,
        None,
        others[1],
    );
    assert!(rejected(
        &f.deliver(others[0], Message::Vote(v)),
        "bad_signature"
    ));
    // A vote from an index outside the set.
    let v = Vote::sign(
        &f.keys[0],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Prepare,
        None,
        ValidatorIndex(77),
    );
    assert!(rejected(
        &f.deliver(others[0], Message::Vote(v)),
        "unknown_validator"
    ));
    // A vote for a round far in the future.
    let v = Vote::sign(
        &f.keys[others[0].as_usize()],
        CHAIN,
        Height(1),
        Round(1_000_000_000),
        VoteKind::Prepare,
        None,
        others[0],
    );
    assert!(rejected(
        &f.deliver(others[0], Message::Vote(v)),
        "round_too_far"
    ));
    // A proposal from a validator that is not the proposer of the round.
    let wrong = others
        .iter()
        .copied()
        .find(|v| *v != f.proposer(0))
        .unwrap();
    let b = f.block(wrong, 900);
    let p = Proposal::sign(&f.keys[wrong.as_usize()], CHAIN, Round(0), None, b, wrong);
    assert!(rejected(
        &f.deliver(wrong, Message::Proposal(p)),
        "wrong_proposer"
    ));
    // A vote signed for another chain.
    let v = Vote::sign(
        &f.keys[others[0].as_usize()],
        "other-chain",
        Height(1),
        Round(0),
        VoteKind::Prepare,
        None,
        others[0],
    );
    assert!(rejected(
        &f.deliver(others[0], Message::Vote(v)),
        "bad_signature"
    ));
}

#[test]
fn an_invalid_block_is_prepared_nil() {
    let mut f = Fixture::new();
    let mut b = f.block(f.proposer(0), 900);
    b.header.state_root = Hash([0xAB; 32]);
    let out = f.propose(0, b, None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    assert!(rejected(&out, "block_wrong_state_root"));
    // A block from too far in the future (more than 2 s ahead of this node's clock).
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 10_000);
    let out = f.propose(0, b, None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
}

#[test]
fn a_block_with_a_forged_transfer_this_node_never_admitted_is_prepared_nil() {
    let mut forged = alices_transfer();
    forged.signature.0[9] ^= 0x01;
    let mut f = Fixture::funded();
    let b = f.block_with(f.proposer(0), 900, vec![forged]);
    let out = f.propose(0, b, None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    assert!(rejected(&out, "block_bad_transaction"));
    // With the genuine signature, never admitted either: verified in the block, and prepared.
    let mut f = Fixture::funded();
    let b = f.block_with(f.proposer(0), 900, vec![alices_transfer()]);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

#[test]
fn a_transfer_admitted_then_tampered_is_verified_again_in_the_block() {
    let admit = |f: &mut Fixture, input: Input| {
        let out = f.node.handle(TimestampMs(1_000), input);
        assert!(out.iter().any(|o| matches!(o, Output::TxAccepted { .. })));
    };
    // Admitted, then proposed with other signature bytes (the hash, which does not cover the
    // signature, is the same): the mempool's verdict is not for these bytes.
    let mut tampered = alices_transfer();
    tampered.signature.0[40] ^= 0x01;
    assert_eq!(tampered.hash(), alices_transfer().hash());
    let mut f = Fixture::funded();
    admit(&mut f, Input::SubmitTx(alices_transfer()));
    let b = f.block_with(f.proposer(0), 900, vec![tampered]);
    let out = f.propose(0, b, None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    assert!(rejected(&out, "block_bad_transaction"));
    // The exact bytes admitted (here by a runtime that verified them in a batch) are prepared.
    let mut f = Fixture::funded();
    let verified = Verified::transfers(vec![alices_transfer()], CHAIN, &KeyCache::none())
        .pop()
        .unwrap()
        .unwrap();
    admit(&mut f, Input::SubmitVerifiedTx(verified));
    let b = f.block_with(f.proposer(0), 900, vec![alices_transfer()]);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

#[test]
fn a_fresh_block_naming_another_proposer_is_prepared_nil() {
    // Found by the simulator's validity check (swarm seed 32, an invalid proposer): a block that
    // is valid in every other respect, its state root paying the validator its header names, but
    // proposed in a round that validator does not propose, was prepared and finalized.
    let mut f = Fixture::new();
    let other = f
        .others()
        .into_iter()
        .find(|v| *v != f.proposer(0))
        .unwrap();
    let b = f.block(other, 900);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    assert!(rejected(&out, "block_wrong_proposer"));
    // The same block built by the round's proposer is prepared.
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

#[test]
fn a_double_vote_is_reported_once_as_evidence_and_counted_once() {
    let mut f = Fixture::new();
    let v = f.others()[0];
    f.vote(v, 0, VoteKind::Prepare, Some(Hash([1; 32])));
    let out = f.vote(v, 0, VoteKind::Prepare, Some(Hash([2; 32])));
    let evidence: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Evidence(e) if matches!(**e, Misbehaviour::DoubleVote(_))))
        .collect();
    assert_eq!(evidence.len(), 1);
    let out = f.vote(v, 0, VoteKind::Prepare, Some(Hash([3; 32])));
    assert!(!out.iter().any(|o| matches!(o, Output::Evidence(_))));
}

#[test]
fn a_double_proposal_is_reported_as_evidence() {
    let mut f = Fixture::new();
    let p = f.proposer(0);
    f.propose(0, f.block(p, 900), None);
    let out = f.propose(0, f.block(p, 901), None);
    assert!(out.iter().any(
        |o| matches!(o, Output::Evidence(e) if matches!(**e, Misbehaviour::DoubleProposal { .. }))
    ));
}

#[test]
fn more_than_a_third_in_a_higher_round_skips_to_it() {
    let mut f = Fixture::new();
    let others = f.others();
    // One validator (100 of 400) in round 5 is not enough.
    let out = f.vote(others[0], 5, VoteKind::Prepare, None);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::RoundChanged { .. })))
    );
    // Two (200 of 400 > 400/3) are.
    let out = f.vote(others[1], 5, VoteKind::Precommit, None);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::RoundChanged {
            round: Round(5),
            reason: RoundChange::Skip,
            ..
        })
    )));
    assert_eq!(f.node.round(), Round(5));
}

#[test]
fn stale_timers_are_ignored() {
    let mut f = Fixture::new();
    let before = (f.node.height(), f.node.round(), f.node.step());
    for timer in [
        Timer::Propose {
            height: Height(1),
            round: Round(3),
        },
        Timer::Prepare {
            height: Height(1),
            round: Round(0),
        },
        Timer::Precommit {
            height: Height(9),
            round: Round(0),
        },
        Timer::NextHeight { height: Height(1) },
    ] {
        let out = f.node.handle(TimestampMs(2_000), Input::Timeout(timer));
        assert!(out.is_empty(), "{timer:?} gave {out:?}");
    }
    assert_eq!((f.node.height(), f.node.round(), f.node.step()), before);
}

fn block_requests(outputs: &[Output]) -> Vec<(ValidatorIndex, Hash)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::BlockRequest { height, hash },
            } => {
                assert_eq!(*height, Height(1));
                Some((*to, *hash))
            }
            _ => None,
        })
        .collect()
}

fn block_answers(outputs: &[Output]) -> Vec<(ValidatorIndex, Hash)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::BlockResponse { block },
            } => Some((*to, block.hash())),
            _ => None,
        })
        .collect()
}

/// The stall found by the swarm (seed 1077): an equivocating proposer shows block X to some and Y
/// to others; X gathers a polka that this node counts but, holding Y, it never gets X. After the
/// round it asks a validator that prepared X, retries with the next one, keeps only X, and when
/// it is drawn as proposer it re-proposes X with the polka (L36 for an earlier round, then L14).
#[test]
fn a_polka_for_a_block_never_received_is_fetched_from_a_voter_and_reproposed() {
    let mut f = Fixture::new();
    let (h1, r0) = (Height(1), Round(0));
    let x = f.block(f.proposer(0), 900);
    let y = f.block(f.proposer(0), 901);
    let others = f.others();
    let out = f.propose(0, y.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(y.hash())]);
    for v in &others {
        let out = f.vote(*v, 0, VoteKind::Prepare, Some(x.hash()));
        // In its own round the proposal may still be on its way: no request yet.
        assert!(block_requests(&out).is_empty());
    }
    // Round 0 ends without a decision (precommit nil on the prepare timeout, then L65).
    f.node.handle(
        TimestampMs(2_000),
        Input::Timeout(Timer::Prepare {
            height: h1,
            round: r0,
        }),
    );
    for v in &others[..2] {
        f.vote(*v, 0, VoteKind::Precommit, None);
    }
    let out = f.node.handle(
        TimestampMs(3_000),
        Input::Timeout(Timer::Precommit {
            height: h1,
            round: r0,
        }),
    );
    assert_eq!(f.node.round(), Round(1));
    assert_eq!(block_requests(&out), vec![(others[0], x.hash())]);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::BlockRequested { peer, block, .. })
            if *peer == others[0] && *block == x.hash()
    )));
    // Asked once per resend interval, each time of the next validator that prepared X.
    let resend = f.genesis.params.resend_interval_ms;
    let tick = |f: &mut Fixture, t: u64| {
        f.node
            .handle(TimestampMs(t), Input::Timeout(Timer::Resend { height: h1 }))
    };
    assert!(block_requests(&tick(&mut f, 3_000 + resend - 1)).is_empty());
    let out = tick(&mut f, 3_000 + resend);
    assert_eq!(block_requests(&out), vec![(others[1], x.hash())]);
    // A block not asked for is not kept; the one asked for is, from whoever sends it.
    let held = f.node.pending_blocks();
    let other = f.block(f.proposer(0), 902);
    let out = f.deliver(others[1], Message::BlockResponse { block: other });
    assert!(rejected(&out, "not_asked"));
    assert_eq!(f.node.pending_blocks(), held);
    f.deliver(others[2], Message::BlockResponse { block: x.clone() });
    assert_eq!(f.node.pending_blocks(), held + 1);
    let out = tick(&mut f, 3_000 + 3 * resend);
    assert!(block_requests(&out).is_empty(), "X is held now");
    // Drawn as proposer in a later round (reached by L55): X again, with its valid round and polka.
    let mine = (3..60)
        .find(|r| f.proposer(*r) == f.me)
        .expect("drawn in some round");
    let mut proposals = vec![];
    for v in &others[..2] {
        let out = f.vote(*v, mine, VoteKind::Prepare, None);
        proposals.extend(out.into_iter().filter_map(|o| match o {
            Output::Broadcast(Message::Proposal(p)) => Some(p),
            _ => None,
        }));
    }
    assert_eq!(f.node.round(), Round(mine));
    let [p] = &proposals[..] else {
        panic!("one proposal, got {proposals:?}")
    };
    assert_eq!(p.block.hash(), x.hash());
    assert_eq!(p.valid_round, Some(r0));
    let polka = p.polka.as_ref().expect("a re-proposal carries its polka");
    let set = f.genesis.validate().unwrap();
    assert!(polka.verify_prepares(&set, CHAIN, h1, &x.hash()).is_ok());
    assert_eq!(polka.round, r0);
}

/// A peer that floods `BlockRequest`s gets one block per half resend interval, only of a block
/// of the current height this node holds, and leaves nothing behind.
#[test]
fn a_flood_of_block_requests_is_answered_once_per_peer_per_interval() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    let (peer, second) = (others[0], others[1]);
    let footprint = f.node.footprint();
    let request = |height: u64, hash: Hash| Message::BlockRequest {
        height: Height(height),
        hash,
    };
    let mut answers = vec![];
    for _ in 0..1_000 {
        answers.extend(block_answers(&f.deliver(peer, request(1, b.hash()))));
        // Not held, not this height, not a validator, not another node: never an answer.
        for (from, msg) in [
            (peer, request(1, Hash([7; 32]))),
            (peer, request(2, b.hash())),
            (peer, request(0, b.hash())),
            (ValidatorIndex(9), request(1, b.hash())),
            (f.me, request(1, b.hash())),
        ] {
            assert!(block_answers(&f.deliver(from, msg)).is_empty());
        }
    }
    assert_eq!(answers, vec![(peer, b.hash())]);
    // The limit is per peer: another one is answered.
    let out = f.deliver(second, request(1, b.hash()));
    assert_eq!(block_answers(&out), vec![(second, b.hash())]);
    assert!(rejected(
        &f.deliver(peer, request(1, b.hash())),
        "rate_limited"
    ));
    assert_eq!(f.node.footprint(), footprint, "requests are not kept");
    // Half a resend interval later (an honest retry comes after a whole one): one more.
    let gap = f.genesis.params.resend_interval_ms / 2;
    let out = f.node.handle(
        TimestampMs(1_000 + gap - 1),
        Input::Message {
            from: peer,
            msg: request(1, b.hash()),
        },
    );
    assert!(block_answers(&out).is_empty());
    let out = f.node.handle(
        TimestampMs(1_000 + gap),
        Input::Message {
            from: peer,
            msg: request(1, b.hash()),
        },
    );
    assert_eq!(block_answers(&out), vec![(peer, b.hash())]);
}

#[test]
fn shortly_after_a_decision_it_goes_to_the_peers_not_heard_from_at_the_next_height() {
    // Blocks closer together than a resend interval: the announcement is what brings a silent
    // lagging peer the decision in time for the next height.
    let (mut genesis, keys) = genesis(4);
    genesis.params.block_time_ms = 0;
    let mut f = Fixture::with(genesis, keys);
    let (_, out) = f.finalize_height_one();
    let others = f.others();
    // Nobody is sent the decision at once; the announcement is scheduled.
    assert!(decisions_sent(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Schedule {
            timer: Timer::Announce { height: Height(1) },
            ..
        }
    )));
    // One peer shows it moved on (a vote of height 2); the announcement skips it.
    let v = Vote::sign(
        &f.keys[others[1].as_usize()],
        CHAIN,
        Height(2),
        Round(0),
        VoteKind::Prepare,
        None,
        others[1],
    );
    f.deliver(others[1], Message::Vote(v));
    let out = f.node.handle(
        TimestampMs(1_020),
        Input::Timeout(Timer::Announce { height: Height(1) }),
    );
    let mut to = decisions_sent(&out);
    to.sort();
    assert_eq!(to, vec![others[0], others[2]]);
    // Once the node has moved past the next height, an old announcement does nothing.
    let out = f.node.handle(
        TimestampMs(1_040),
        Input::Timeout(Timer::Announce { height: Height(0) }),
    );
    assert!(decisions_sent(&out).is_empty());
}

#[test]
fn with_blocks_a_resend_interval_apart_a_decision_goes_only_to_peers_that_resend() {
    // The default genesis: 8 s blocks, a 2 s resend interval.
    let mut f = Fixture::new();
    let (b, out) = f.finalize_height_one();
    let others = f.others();
    // No announcement: silence during the block time shows nothing (ADR 0002).
    assert!(decisions_sent(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Schedule {
            timer: Timer::Announce { .. },
            ..
        }
    )));
    // The last precommit arrived after the node finalized and joined the certificate: a peer
    // about to decide too, not sent the decision (checked above, `out` includes it). The same
    // precommit once more is its signer's resend, still at height 1 a resend interval later:
    // it lacks the decision, and gets it.
    let last = *others.last().unwrap();
    let out = f.vote(last, 0, VoteKind::Precommit, Some(b.hash()));
    assert_eq!(decisions_sent(&out), vec![last]);
    // So does a peer whose precommit counted before the decision, when it sends it again.
    let out = f.vote(others[0], 0, VoteKind::Precommit, Some(b.hash()));
    assert_eq!(decisions_sent(&out), vec![others[0]]);
}

/// The certificates `out` hands the runtime as extended, by their number of signatures.
fn extensions(out: &[Output]) -> Vec<usize> {
    out.iter()
        .filter_map(|o| match o {
            Output::CertificateExtended(c) => Some(c.signatures.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn late_precommits_reach_the_runtime_in_one_extension_at_the_next_round_or_once_complete() {
    // Seven validators: this node and four others finalize (a quorum of five), two are late.
    let (genesis, keys) = genesis(7);
    let mut f = Fixture::with(genesis, keys);
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    for v in &others {
        f.vote(*v, 0, VoteKind::Prepare, Some(b.hash()));
    }
    let mut out = vec![];
    for v in &others[..4] {
        out.extend(f.vote(*v, 0, VoteKind::Precommit, Some(b.hash())));
    }
    assert_eq!(f.node.height(), Height(2));
    assert!(extensions(&out).is_empty());
    // The first late precommit joins the certificate, but is not handed over alone.
    let out = f.vote(others[4], 0, VoteKind::Precommit, Some(b.hash()));
    assert!(extensions(&out).is_empty());
    // The next height's first round is due: one extension, with it.
    let out = f.node.handle(
        TimestampMs(10_000),
        Input::Timeout(Timer::NextHeight { height: Height(2) }),
    );
    assert_eq!(extensions(&out), vec![6]);
    // The last one completes the certificate: handed over at once, verified whole.
    let out = f.vote(others[5], 0, VoteKind::Precommit, Some(b.hash()));
    assert_eq!(extensions(&out), vec![7]);
    let Some(Output::CertificateExtended(c)) = out
        .iter()
        .find(|o| matches!(o, Output::CertificateExtended(_)))
    else {
        unreachable!()
    };
    c.verify(f.node.validators(), CHAIN, Height(1), &b.hash())
        .unwrap();
    // Nothing new since: nothing at the next resend.
    let out = f.node.handle(
        TimestampMs(12_000),
        Input::Timeout(Timer::Resend { height: Height(2) }),
    );
    assert!(extensions(&out).is_empty());
}

// ----- issue 12: what a Byzantine peer, a crash or a lost disk must not do ----------------------

fn signed_persists(outputs: &[Output]) -> Vec<timed_core::consensus::PersistRecord> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn withheld(outputs: &[Output], reason: timed_core::consensus::Withheld) -> bool {
    outputs.iter().any(
        |o| matches!(o, Output::Event(Event::SigningWithheld { reason: r, .. }) if *r == reason),
    )
}

fn sync_requests(outputs: &[Output]) -> Vec<ValidatorIndex> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::SyncRequest { .. },
            } => Some(*to),
            _ => None,
        })
        .collect()
}

fn own_signed(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Persist(r) if r.sign_point().is_some()))
        .count()
}

/// Defect 1: a copy of a real proposal with one transfer removed (same signed header) delivered
/// first used to be stored and judged under the real block's hash: the node prepared nil and
/// refused the real block for the rest of the height.
#[test]
fn a_body_swapped_copy_delivered_first_does_not_poison_the_real_block() {
    let mut f = Fixture::funded();
    let real = f.block_with(f.proposer(0), 900, vec![alices_transfer()]);
    let p = f.proposer(0);
    let proposal = Proposal::sign(
        &f.keys[p.as_usize()],
        CHAIN,
        Round(0),
        None,
        real.clone(),
        p,
    );
    let mut swapped = proposal.clone();
    swapped.block.txs.clear();
    assert_eq!(
        swapped.block.hash(),
        real.hash(),
        "the header, so the hash, is the same"
    );
    let out = f.deliver(p, Message::Proposal(swapped));
    assert!(rejected(&out, "body_mismatch"));
    assert!(own_votes(&out, VoteKind::Prepare).is_empty());
    let out = f.deliver(p, Message::Proposal(proposal));
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(real.hash())]);
    // A decision with a swapped body is refused as well, and the real one still finalizes.
    let others = f.others();
    let precommits = f.others_votes(0, VoteKind::Precommit, Some(real.hash()));
    let certificate =
        block::Certificate::from_precommits(Height(1), Round(0), real.hash(), &precommits);
    let mut bad = real.clone();
    bad.txs.clear();
    let out = f.deliver(
        others[0],
        Message::Decision(timed_core::message::Decision {
            block: bad,
            certificate: certificate.clone(),
        }),
    );
    assert!(rejected(&out, "body_mismatch"));
    assert_eq!(f.node.height(), Height(1));
    f.deliver(
        others[0],
        Message::Decision(timed_core::message::Decision {
            block: real,
            certificate,
        }),
    );
    assert_eq!(f.node.height(), Height(2));
}

/// Defect 2: after a crash, the polka behind a proposer's lock lived only in its `Locked`
/// record; it re-proposed its block with that polka, but did not count it for its own L28 and
/// waited for prepares from voters that may be down.
#[test]
fn a_restarted_proposer_prepares_its_own_reproposal_with_a_voter_of_the_polka_down() {
    let mut f = Fixture::new();
    let mut records = vec![];
    let b = f.block(f.proposer(0), 900);
    records.extend(signed_persists(&f.propose(0, b.clone(), None)));
    let others = f.others();
    for v in &others[..2] {
        records.extend(signed_persists(&f.vote(
            *v,
            0,
            VoteKind::Prepare,
            Some(b.hash()),
        )));
    }
    assert_eq!(f.node.locked().map(|(_, h)| h), Some(b.hash()));
    // The node crashes and comes back from its records alone.
    let node = Node::restore(
        &f.genesis,
        f.keys[f.me.as_usize()].clone(),
        NodeConfig::default(),
        timed_core::consensus::Restore {
            records,
            ..Default::default()
        },
    )
    .unwrap();
    f.node = node;
    f.node.handle(TimestampMs(1_000), Input::Start);
    // Two validators move to the round it proposes in (L55); one voter of the polka is down.
    let mine = (1..60).find(|r| f.proposer(*r) == f.me).unwrap();
    let mut out = vec![];
    for v in &others[1..] {
        out.extend(f.vote(*v, mine, VoteKind::Prepare, None));
    }
    assert_eq!(f.node.round(), Round(mine));
    let reproposed = out
        .iter()
        .any(|o| matches!(o, Output::Broadcast(Message::Proposal(p)) if p.block.hash() == b.hash() && p.valid_round == Some(Round(0))));
    assert!(reproposed, "{out:?}");
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

/// Defect 7: a re-proposal's polka travels outside the proposer's signature; a copy forwarded
/// without it, arriving first, used to disable it for good.
#[test]
fn a_later_copy_of_a_reproposal_still_brings_its_polka() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    let others = f.others();
    // This node missed round 0; the polka for B happened among the others.
    let prepares = f.others_votes(0, VoteKind::Prepare, Some(b.hash()));
    let polka = block::Certificate::from_prepares(Height(1), Round(0), b.hash(), &prepares);
    // Round 1 (reached by L55) has B re-proposed with valid round 0.
    for v in &others[..2] {
        f.vote(*v, 1, VoteKind::Precommit, None);
    }
    assert_eq!(f.node.round(), Round(1));
    let full = f.reproposal(1, 0, b.clone(), polka.clone());
    let mut stripped = full.clone();
    stripped.polka = None;
    let out = f.deliver(others[0], Message::Proposal(stripped));
    assert!(
        own_votes(&out, VoteKind::Prepare).is_empty(),
        "no polka yet: wait"
    );
    // A copy with a bad polka (prepares of another round) from another peer changes nothing.
    let mut bad = full.clone();
    bad.polka = Some(block::Certificate::from_prepares(
        Height(1),
        Round(1),
        b.hash(),
        &prepares,
    ));
    let out = f.deliver(others[1], Message::Proposal(bad));
    assert!(own_votes(&out, VoteKind::Prepare).is_empty());
    let out = f.deliver(others[2], Message::Proposal(full));
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

/// Defect 3: a signed vote for a far height from one validator used to pin catch-up on it.
#[test]
fn one_validators_far_claim_does_not_start_catch_up_and_a_silent_target_is_rotated() {
    let mut f = Fixture::new();
    let others = f.others();
    let liar = others[0];
    let far = Vote::sign(
        &f.keys[liar.as_usize()],
        CHAIN,
        Height(1_000),
        Round(0),
        VoteKind::Prepare,
        None,
        liar,
    );
    let out = f.deliver(liar, Message::Vote(far));
    assert!(
        sync_requests(&out).is_empty(),
        "one claim is a hint, not a reason: {out:?}"
    );
    // Two validators (more than a third) show height 5: catch-up starts, not with the liar.
    let mut asked = vec![];
    for v in &others[1..] {
        let vote = Vote::sign(
            &f.keys[v.as_usize()],
            CHAIN,
            Height(5),
            Round(0),
            VoteKind::Prepare,
            None,
            *v,
        );
        asked.extend(sync_requests(&f.deliver(*v, Message::Vote(vote))));
    }
    assert_eq!(asked.len(), 1, "one request at a time");
    let first = asked[0];
    assert!(others[1..].contains(&first));
    // The target never answers: after twice the resend interval the next claimant is asked.
    let resend = f.genesis.params.resend_interval_ms;
    let out = f.node.handle(
        TimestampMs(1_000 + 2 * resend),
        Input::Timeout(Timer::Resend { height: Height(1) }),
    );
    let next = sync_requests(&out);
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], first);
    assert_ne!(
        next[0], liar,
        "the liar claims far, but the others are asked first"
    );
    // An answer that does not help counts against its sender too.
    let out = f.node.handle(
        TimestampMs(1_001 + 2 * resend),
        Input::Message {
            from: next[0],
            msg: Message::SyncResponse { blocks: vec![] },
        },
    );
    let after = sync_requests(&out);
    assert_eq!(after.len(), 1);
    assert_ne!(after[0], next[0]);
}

/// Defect 5 (core side): sync answers are rate limited per peer.
#[test]
fn a_flood_of_sync_requests_is_answered_at_a_bounded_rate() {
    let mut f = Fixture::new();
    f.finalize_height_one();
    let peer = f.others()[0];
    let serves = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::ServeSync { .. }))
            .count()
    };
    let mut answered = 0;
    for _ in 0..100 {
        let out = f.deliver(
            peer,
            Message::SyncRequest {
                from: Height(1),
                max_blocks: 64,
            },
        );
        answered += serves(&out);
    }
    assert!(
        (1..=16).contains(&answered),
        "{answered} of 100 answered at once"
    );
    let later = f.node.handle(
        TimestampMs(1_000 + 40),
        Input::Message {
            from: peer,
            msg: Message::SyncRequest {
                from: Height(1),
                max_blocks: 64,
            },
        },
    );
    assert_eq!(serves(&later), 1, "the bucket refills with time");
}

/// An honest node that asks faster than the sync budget (a fast machine catching up at more
/// than 64 blocks every 4 ms) is slowed down, never dropped: its request waits for a token
/// (`Timer::SyncBudget`). Before, the request found the budget empty and was dropped, and the
/// asker waited out its patience (seconds) for an answer that never came: a catch-up of 25,000
/// blocks/s stalled after 2,752 blocks for 5 s. A flood still gets one answer a token, and a
/// peer has one request waiting at most.
#[test]
fn a_request_beyond_the_sync_budget_waits_for_a_token_instead_of_being_dropped() {
    let mut f = Fixture::new();
    f.finalize_height_one();
    let peer = f.others()[0];
    /// The requests' clock: timers due (by time), answers (time, max_blocks) and the most
    /// timers waiting at once.
    #[derive(Default)]
    struct Clock {
        timers: Vec<(u64, Timer)>,
        served: Vec<(u64, u32)>,
        pending_most: usize,
    }
    impl Clock {
        fn run(&mut self, f: &mut Fixture, at: u64, input: Input) {
            for o in f.node.handle(TimestampMs(at), input) {
                match o {
                    Output::ServeSync { max_blocks, .. } => self.served.push((at, max_blocks)),
                    Output::Schedule {
                        timer: t @ Timer::SyncBudget { .. },
                        after_ms,
                    } => self.timers.push((at + after_ms, t)),
                    _ => {}
                }
            }
            self.pending_most = self.pending_most.max(self.timers.len());
        }
        fn fire_until(&mut self, f: &mut Fixture, until: u64) {
            while let Some(i) = self.timers.iter().position(|(due, _)| *due <= until) {
                let (due, timer) = self.timers.remove(i);
                self.run(f, due, Input::Timeout(timer));
            }
        }
    }
    let mut clock = Clock::default();
    // A request every millisecond for a second (faster than the budget), each of 64 blocks;
    // the last one of 7.
    let start = 1_000;
    for i in 0..1_000u64 {
        let at = start + i;
        clock.fire_until(&mut f, at);
        let max_blocks = if i == 999 { 7 } else { 64 };
        let msg = Message::SyncRequest {
            from: Height(1),
            max_blocks,
        };
        clock.run(&mut f, at, Input::Message { from: peer, msg });
    }
    let last = start + 999;
    clock.fire_until(&mut f, last + 100);
    let Clock {
        served,
        pending_most,
        ..
    } = clock;
    // One answer a token: a burst, then one an interval, and no more.
    let interval = timed_core::consensus::SYNC_ANSWER_INTERVAL_MS;
    let tokens = timed_core::consensus::SYNC_ANSWER_BURST + (last + interval - start) / interval;
    let answered = served.len() as u64;
    assert!(
        answered <= tokens && answered + 2 >= tokens,
        "{answered} answers for {tokens} tokens"
    );
    // The last request is answered within a token's interval, not dropped.
    let (at, blocks) = *served.last().expect("answers");
    assert_eq!(blocks, 7, "the last request was answered");
    assert!(
        at <= last + interval,
        "answered {} ms after it was asked",
        at - last
    );
    assert!(pending_most <= 1, "{pending_most} timers waiting at once");
}

/// Defect 9: the resend timer used to re-broadcast everything signed in the height, every
/// round's messages included.
#[test]
fn resend_repeats_only_the_current_round_and_the_lock() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    for v in &others[..2] {
        f.vote(*v, 0, VoteKind::Prepare, Some(b.hash()));
    }
    assert_eq!(f.node.locked().map(|(r, _)| r), Some(Round(0)));
    // Rounds 1 to 5 time out: a prepare and a precommit (nil) each.
    let h1 = Height(1);
    let mut t = 2_000;
    for r in 1..=5u32 {
        for v in &others[..2] {
            f.vote(*v, r, VoteKind::Precommit, None);
        }
        assert_eq!(f.node.round(), Round(r));
        t += 10_000;
        f.node.handle(
            TimestampMs(t),
            Input::Timeout(Timer::Propose {
                height: h1,
                round: Round(r),
            }),
        );
        f.node.handle(
            TimestampMs(t),
            Input::Timeout(Timer::Prepare {
                height: h1,
                round: Round(r),
            }),
        );
    }
    let out = f.node.handle(
        TimestampMs(t + 1),
        Input::Timeout(Timer::Resend { height: h1 }),
    );
    let rounds: Vec<(u32, VoteKind)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Vote(v)) => Some((v.round.0, v.kind)),
            Output::Broadcast(Message::Proposal(p)) => {
                panic!("proposal of round {:?} resent", p.round)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rounds,
        vec![
            (0, VoteKind::Prepare),
            (0, VoteKind::Precommit),
            (5, VoteKind::Prepare),
            (5, VoteKind::Precommit)
        ]
    );
}

/// A log cut between a `Locked` record and the precommit it preceded (a torn write, a damaged
/// disk): the node restores its lock of round 2 and resumes in that round, not below it, where its
/// lock would stand ahead of its round (the core's invariant, asserted after every step).
#[test]
fn a_lock_restored_without_its_precommit_resumes_in_the_lock_round() {
    let (genesis, keys) = genesis(4);
    let f0 = Fixture::with(genesis.clone(), keys.clone());
    let b = f0.block(f0.proposer(0), 900);
    let prepares = f0.others_votes(2, VoteKind::Prepare, Some(b.hash()));
    let polka = block::Certificate::from_prepares(Height(1), Round(2), b.hash(), &prepares);
    let node = Node::restore(
        &genesis,
        keys[f0.me.as_usize()].clone(),
        NodeConfig::default(),
        timed_core::consensus::Restore {
            records: vec![timed_core::consensus::PersistRecord::Locked {
                height: Height(1),
                round: Round(2),
                block: b,
                polka,
            }],
            ..Default::default()
        },
    )
    .unwrap();
    let mut f = Fixture { node, ..f0 };
    f.node.handle(TimestampMs(1_000), Input::Start);
    assert!(f.node.round() >= Round(2), "{:?}", f.node.round());
}

fn restored_with_guard(guard: timed_core::consensus::SignGuard) -> Fixture {
    let (genesis, keys) = genesis(4);
    let f0 = Fixture::with(genesis.clone(), keys.clone());
    let node = Node::restore(
        &genesis,
        keys[f0.me.as_usize()].clone(),
        NodeConfig::default(),
        timed_core::consensus::Restore {
            guard: Some(guard),
            ..Default::default()
        },
    )
    .unwrap();
    let mut f = Fixture { node, ..f0 };
    f.node.handle(TimestampMs(1_000), Input::Start);
    f
}

/// Restored without records, its guard holding its precommit for `block` in `round` of `height`
/// (the last thing it signed, and its lock).
fn restored_locked(height: u64, round: u32, block: Hash) -> Fixture {
    use timed_core::consensus::{GuardLock, SignGuard, SignPoint, SignStep};
    let (height, round) = (Height(height), Round(round));
    restored_with_guard(SignGuard {
        last: SignPoint {
            height,
            round,
            step: SignStep::Precommit,
        },
        lock: Some(GuardLock {
            height,
            round,
            block,
        }),
    })
}

/// Defect 10 (core side): a node restarted without its records but with its double-sign guard
/// (last signed: height 1, round 0, its precommit for B) signs nothing at or below that point,
/// keeps its lock on B, and starts in the round after the guard's, where it signs again.
#[test]
fn a_node_without_its_records_keeps_its_guard_and_its_lock() {
    let f0 = Fixture::new();
    let b = f0.block(f0.proposer(0), 900);
    let c = f0.block(f0.proposer(1), 901);
    let mut f = restored_locked(1, 0, b.hash());
    // Its votes of round 0 are lost and cannot be signed again: it moves on to round 1.
    assert_eq!(f.node.round(), Round(1));
    assert_eq!(f.node.locked(), Some((Round(0), b.hash())));
    let mut out = f.propose(0, c.clone(), None);
    for v in f.others() {
        out.extend(f.vote(v, 0, VoteKind::Prepare, Some(c.hash())));
    }
    assert_eq!(own_signed(&out), 0, "nothing at round 0: {out:?}");
    // Round 1 is past the guard: it signs, and its lock on B stands (L22: nil for C).
    let out = f.propose(1, c.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    // B re-proposed with its polka of round 0 is prepared (L28), the block itself new to it.
    for v in &f.others()[..2] {
        f.vote(*v, 2, VoteKind::Precommit, None);
    }
    assert_eq!(f.node.round(), Round(2));
    let polka = block::Certificate::from_prepares(
        Height(1),
        Round(0),
        b.hash(),
        &f.others_votes(0, VoteKind::Prepare, Some(b.hash())),
    );
    let reproposal = f.reproposal(2, 0, b.clone(), polka);
    let out = f.deliver(f.proposer(2), Message::Proposal(reproposal));
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

/// A guard beyond this node's height (its data directory is older than its key's guard): it
/// signs nothing until it is past the guard, saying why.
#[test]
fn a_node_behind_its_guard_signs_nothing_until_past_it() {
    use timed_core::consensus::{SignGuard, SignPoint, SignStep, Withheld};
    let mut f = restored_with_guard(SignGuard {
        last: SignPoint {
            height: Height(2),
            round: Round(0),
            step: SignStep::Prepare,
        },
        lock: None,
    });
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_signed(&out), 0);
    assert!(withheld(&out, Withheld::BelowGuard));
}

/// Started without its records (with `guard`, if any) and watching for 5 s, a node withholds
/// its prepare for the round-0 proposal, then meets that prepare of its key, made elsewhere: the
/// guard rises. Returns the node, the keys and the proposal's block.
fn watching_meets_its_own_prepare(
    guard: Option<timed_core::consensus::SignGuard>,
) -> (Fixture, Vec<Keypair>, Block) {
    use timed_core::consensus::{Restore, SignStep};
    let (genesis, keys) = genesis(4);
    let f0 = Fixture::with(genesis.clone(), keys.clone());
    let me = f0.me;
    let config = NodeConfig {
        double_sign_check_ms: 5_000,
        ..NodeConfig::default()
    };
    let node = Node::restore(
        &genesis,
        keys[me.as_usize()].clone(),
        config,
        Restore {
            guard,
            ..Default::default()
        },
    )
    .unwrap();
    let mut f = Fixture { node, ..f0 };
    f.node.handle(TimestampMs(1_000), Input::Start);
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_signed(&out), 0);
    let mine = Vote::sign(
        &keys[me.as_usize()],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Prepare,
        Some(b.hash()),
        me,
    );
    let out = f.deliver(me, Message::Vote(mine));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::ForeignSignature { point }) if point.step == SignStep::Prepare
    )));
    (f, keys, b)
}

/// Two others' nil precommits take the watching node to round 1, whose proposal never comes:
/// what it does at that round's propose timeout, at `at` ms.
fn round_one_without_a_proposal(f: &mut Fixture, at: u64) -> Vec<Output> {
    for v in &f.others()[..2] {
        f.vote(*v, 1, VoteKind::Precommit, None);
    }
    f.node.handle(
        TimestampMs(at),
        Input::Timeout(Timer::Propose {
            height: Height(1),
            round: Round(1),
        }),
    )
}

/// Issue 12, one key in two real processes: a node that started with its guard but without its
/// records (a copy of a running validator, the guard file moved along with the key) meets, while
/// it still watches, a vote of its key at its own height above that guard. Its earlier lives
/// signed nothing there, so another instance is live: it stops at once, not at the end of the
/// watch (by then it would have signed the same slots first, and proposed in its own).
#[test]
fn a_node_with_its_guard_stops_during_the_watch_at_a_signature_above_it() {
    use timed_core::consensus::{SignGuard, SignPoint, SignStep, Withheld};
    let guard = SignGuard {
        last: SignPoint {
            height: Height(1),
            round: Round(0),
            step: SignStep::Proposal,
        },
        lock: None,
    };
    let (mut f, _, _) = watching_meets_its_own_prepare(Some(guard));
    // After the watch, in round 1 with no proposal, it would prepare nil: withheld, for the twin.
    let out = round_one_without_a_proposal(&mut f, 9_000);
    assert_eq!(own_signed(&out), 0);
    assert!(withheld(&out, Withheld::KeyActiveElsewhere), "{out:?}");
}

/// Defect 10: started without its records (no guard), a node watches before signing; a vote of
/// its own key it did not make, seen during the watch, raises its guard; seen later, it means
/// another instance runs with the key, and the node signs nothing more.
#[test]
fn a_node_that_lost_its_records_watches_for_its_key_and_stops_if_another_instance_signs() {
    use timed_core::consensus::Withheld;
    let (mut f, keys, b) = watching_meets_its_own_prepare(None);
    let me = f.me;
    // After the watch: round 1 is signed.
    let out = round_one_without_a_proposal(&mut f, 7_000);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![None]);
    // Now another instance's precommit of round 1 arrives: this node stops signing for good.
    let twin = Vote::sign(
        &keys[me.as_usize()],
        CHAIN,
        Height(1),
        Round(1),
        VoteKind::Precommit,
        Some(b.hash()),
        me,
    );
    f.node.handle(
        TimestampMs(7_001),
        Input::Message {
            from: me,
            msg: Message::Vote(twin),
        },
    );
    for v in &f.others()[..2] {
        f.node.handle(
            TimestampMs(7_002),
            Input::Message {
                from: *v,
                msg: Message::Vote(Vote::sign(
                    &keys[v.as_usize()],
                    CHAIN,
                    Height(1),
                    Round(2),
                    VoteKind::Precommit,
                    None,
                    *v,
                )),
            },
        );
    }
    let out = f.node.handle(
        TimestampMs(30_000),
        Input::Timeout(Timer::Propose {
            height: Height(1),
            round: Round(2),
        }),
    );
    assert_eq!(own_signed(&out), 0);
    assert!(withheld(&out, Withheld::KeyActiveElsewhere));
}

/// Found by the simulator (swarm seeds 33 and 161 after a storage loss): a node restored below
/// its guard's height (a wiped or older data directory) that catches up to that height keeps the
/// guard's lock there and starts in the round after the guard's, as one restored at that height.
#[test]
fn a_node_that_catches_up_to_its_guards_height_keeps_its_lock_and_round() {
    let x = Hash([7; 32]);
    let mut f = restored_locked(2, 1, x);
    let (_, out) = f.finalize_height_one();
    assert_eq!(own_signed(&out), 0, "height 1 is below the guard");
    assert_eq!(f.node.height(), Height(2));
    assert_eq!(f.node.locked(), Some((Round(1), x)));
    f.node.handle(
        TimestampMs(20_000),
        Input::Timeout(Timer::NextHeight { height: Height(2) }),
    );
    assert_eq!(f.node.round(), Round(2));
}

/// A round ends after twice the sum of its three timeouts even without a quorum of votes (found by
/// the simulator, swarm seed 16: the votes the others waited for were lost with two nodes'
/// records and could not be signed again).
#[test]
fn a_round_without_a_quorum_of_votes_still_ends_after_its_three_timeouts() {
    let mut f = Fixture::unstarted();
    let out = f.node.handle(TimestampMs(1_000), Input::Start);
    let p = &f.genesis.params;
    let expected = 2
        * (p.propose_timeout.at(Round(0))
            + p.prepare_timeout.at(Round(0))
            + p.precommit_timeout.at(Round(0)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Schedule { timer: Timer::RoundEnd { height: Height(1), round: Round(0) }, after_ms }
            if *after_ms == expected
    )));
    // One vote of another validator: no quorum, no step timer; the round ends anyway.
    f.vote(f.others()[0], 0, VoteKind::Prepare, None);
    f.node.handle(
        TimestampMs(1_000 + expected),
        Input::Timeout(Timer::RoundEnd {
            height: Height(1),
            round: Round(0),
        }),
    );
    assert_eq!(f.node.round(), Round(1));
    // One validator's votes ahead, near or far (a round pusher's, say), move nobody: the round
    // ends into the next one.
    f.vote(f.others()[1], 3, VoteKind::Prepare, None);
    assert_eq!(
        f.node.round(),
        Round(1),
        "one vote is no reason to skip (L55)"
    );
    f.node.handle(
        TimestampMs(2_000 + 3 * expected),
        Input::Timeout(Timer::RoundEnd {
            height: Height(1),
            round: Round(1),
        }),
    );
    assert_eq!(f.node.round(), Round(2));
    f.vote(f.others()[1], 60, VoteKind::Prepare, None);
    f.node.handle(
        TimestampMs(2_000 + 9 * expected),
        Input::Timeout(Timer::RoundEnd {
            height: Height(1),
            round: Round(2),
        }),
    );
    assert_eq!(f.node.round(), Round(3));
    // A stale one (of a round left) does nothing.
    f.node.handle(
        TimestampMs(2_000 + expected),
        Input::Timeout(Timer::RoundEnd {
            height: Height(1),
            round: Round(0),
        }),
    );
    assert_eq!(f.node.round(), Round(3));
}

/// Past the next epoch the set is unknown and the current set's stake cannot weigh a claim
/// (ADR 0011, amended): one validator's claim of such a height is still no reason to ask, but two
/// are (a node left behind by a full replacement hears only validators that hold little stake in
/// its old set: swarm-membership seed 2958).
#[test]
fn two_claims_beyond_the_known_sets_start_catch_up_and_one_does_not() {
    // Three small validators (10 of 330 each): two of them hold far less than a third, so
    // their claims are never credible by stake.
    let (keys, validators) = insecure_dev_validators(&[100, 100, 100, 10, 10, 10]);
    let (mut genesis, _) = genesis(1);
    genesis.validators = validators;
    let mut f = Fixture::with(genesis, keys);
    let small: Vec<ValidatorIndex> = (3..6).map(ValidatorIndex).filter(|v| *v != f.me).collect();
    let claim = |f: &mut Fixture, v: ValidatorIndex, height: Height| {
        let vote = Vote::sign(
            &f.keys[v.as_usize()],
            CHAIN,
            height,
            Round(0),
            VoteKind::Prepare,
            None,
            v,
        );
        sync_requests(&f.deliver(v, Message::Vote(vote)))
    };
    // Within the sets this node knows, their stake decides: two small claims move nothing.
    for v in &small[..2] {
        assert!(claim(&mut f, *v, Height(3)).is_empty());
    }
    let far = Height(3 * f.genesis.params.epoch_blocks + 5);
    assert!(
        claim(&mut f, small[0], far).is_empty(),
        "one far claim is a hint"
    );
    let asked = claim(&mut f, small[1], far);
    assert_eq!(asked.len(), 1, "two far claims start catch-up: {asked:?}");
    assert!(small[..2].contains(&asked[0]));
}

/// ADR 0027: a round whose end comes while no other validator has voted in it or later does not
/// end; the node stays, alone and ahead, until another validator's vote arrives, and the round
/// then ends a full round later (so that the one who came shares it). A vote of an earlier
/// round is no company.
#[test]
fn a_node_alone_in_a_round_waits_for_company_and_then_shares_the_round() {
    let mut f = Fixture::unstarted();
    f.node.handle(TimestampMs(1_000), Input::Start);
    let p = f.genesis.params.clone();
    let round_end = |r: u32| {
        2 * (p.propose_timeout.at(Round(r))
            + p.prepare_timeout.at(Round(r))
            + p.precommit_timeout.at(Round(r)))
    };
    let end = |f: &mut Fixture, at: u64, round: u32| {
        f.node.handle(
            TimestampMs(at),
            Input::Timeout(Timer::RoundEnd {
                height: Height(1),
                round: Round(round),
            }),
        )
    };
    // Round 0 ends with company (one vote of another validator): on to round 1.
    f.vote(f.others()[0], 0, VoteKind::Prepare, None);
    let mut now = 1_000 + round_end(0);
    end(&mut f, now, 0);
    assert_eq!(f.node.round(), Round(1));
    // Round 1 ends with nobody else in it or ahead (the vote of round 0 is behind): it stays,
    // however often its end comes.
    for k in 1..=3 {
        now += k * round_end(1);
        let out = end(&mut f, now, 1);
        assert_eq!(f.node.round(), Round(1), "alone, the node must wait");
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(Event::RoundChanged { .. }))),
            "no round change while alone: {out:?}"
        );
    }
    // Another validator arrives in round 1: the round's end is scheduled again, a full round on.
    let out = f.vote(f.others()[1], 1, VoteKind::Prepare, None);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Schedule { timer: Timer::RoundEnd { height: Height(1), round: Round(1) }, after_ms }
                if *after_ms == round_end(1)
        )),
        "company schedules the round's end again: {out:?}"
    );
    // A second vote of company schedules nothing more.
    let out = f.vote(f.others()[2], 1, VoteKind::Prepare, None);
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Schedule {
            timer: Timer::RoundEnd { .. },
            ..
        }
    )));
    // When that end comes, the node moves on.
    end(&mut f, now + round_end(1), 1);
    assert_eq!(f.node.round(), Round(2));
}

/// A key moved to a new machine without its guard file: catching up, the node meets its own
/// earlier signatures at heights it has not reached. They raise its guard (it signs nothing at or
/// below them) but do not stop it for good: only a signature at its own height, after the watch,
/// means another instance is live.
#[test]
fn its_own_signatures_at_heights_ahead_only_raise_the_guard() {
    use timed_core::consensus::Withheld;
    let mut f = Fixture::new();
    let me = f.me;
    let ahead = Vote::sign(
        &f.keys[me.as_usize()],
        CHAIN,
        Height(3),
        Round(0),
        VoteKind::Prepare,
        None,
        me,
    );
    let out = f.deliver(f.others()[0], Message::Vote(ahead));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::ForeignSignature { .. })))
    );
    // At height 1 it withholds below its raised guard, and is not stopped for good.
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b, None);
    assert_eq!(own_signed(&out), 0);
    assert!(withheld(&out, Withheld::BelowGuard), "{out:?}");
    assert!(!withheld(&out, Withheld::KeyActiveElsewhere));
}

/// The prepares a node sent straight to one peer.
fn prepares_sent(outputs: &[Output]) -> Vec<(ValidatorIndex, ValidatorIndex, Option<Hash>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Vote(v),
            } if v.kind == VoteKind::Prepare => Some((*to, v.validator, v.block)),
            _ => None,
        })
        .collect()
}

/// Swarm seed 1962, the voters' side: a validator locked in an earlier round, whose records are
/// lost, resends that round's precommit; a node that prepared the same block there answers it,
/// and it alone, with the prepares for that block and round it holds (its own among them) —
/// once per interval, and nothing for a block it holds no prepares of.
#[test]
fn a_precommit_of_an_earlier_round_is_answered_with_the_prepares_of_its_polka() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    let others = f.others();
    let (locked, voter, silent) = (others[0], others[1], others[2]);
    let out = f.propose(0, b.clone(), None);
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
    f.vote(voter, 0, VoteKind::Prepare, Some(b.hash()));
    // The node missed the polka (the locked validator's prepare never arrived) and moved on.
    for v in [voter, silent] {
        f.vote(v, 2, VoteKind::Precommit, None);
    }
    assert_eq!(f.node.round(), Round(2));
    let out = f.vote(locked, 0, VoteKind::Precommit, Some(b.hash()));
    let mut sent = prepares_sent(&out);
    sent.sort();
    let mut want = vec![
        (locked, f.me, Some(b.hash())),
        (locked, voter, Some(b.hash())),
    ];
    want.sort();
    assert_eq!(sent, want, "{out:?}");
    // The same precommit again (resent, or replayed by anyone) within the interval: nothing.
    let again = Vote::sign(
        &f.keys[locked.as_usize()],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Precommit,
        Some(b.hash()),
        locked,
    );
    assert!(prepares_sent(&f.deliver(silent, Message::Vote(again.clone()))).is_empty());
    // After it, the answer comes again.
    let resend = f.genesis.params.resend_interval_ms;
    let out = f.node.handle(
        TimestampMs(1_000 + resend),
        Input::Message {
            from: locked,
            msg: Message::Vote(again),
        },
    );
    assert_eq!(prepares_sent(&out).len(), 2);
    // A precommit of an earlier round for a block nobody prepared here: nothing to answer.
    let c = f.block(f.proposer(1), 901);
    assert!(prepares_sent(&f.vote(silent, 1, VoteKind::Precommit, Some(c.hash()))).is_empty());
}

/// Swarm seed 1962, the locked side: restarted without its records, a node locked on B in round
/// 0 (its guard) resends that round's precommit; its own prepare of round 0, made by its earlier
/// life and sent back by a peer, is taken as its own; with two others' it proves the polka
/// again, and the node fetches B from a voter to re-propose it. Without its own prepare the
/// others' two are no quorum.
#[test]
fn a_node_that_lost_its_records_gets_its_locks_polka_back_and_fetches_the_block() {
    let f0 = Fixture::new();
    let b = f0.block(f0.proposer(0), 900);
    let mut f = restored_locked(1, 0, b.hash());
    assert_eq!(f.node.round(), Round(1));
    let resend = f.genesis.params.resend_interval_ms;
    let out = f.node.handle(
        TimestampMs(1_000 + resend),
        Input::Timeout(Timer::Resend { height: Height(1) }),
    );
    let resent: Vec<(Round, VoteKind, Option<Hash>)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Vote(v)) => Some((v.round, v.kind, v.block)),
            _ => None,
        })
        .collect();
    assert!(
        resent.contains(&(Round(0), VoteKind::Precommit, Some(b.hash()))),
        "its lock's precommit is resent: {resent:?}"
    );
    let others = f.others();
    let mine = Vote::sign(
        &f.keys[f.me.as_usize()],
        CHAIN,
        Height(1),
        Round(0),
        VoteKind::Prepare,
        Some(b.hash()),
        f.me,
    );
    let mut out = f.vote(others[0], 0, VoteKind::Prepare, Some(b.hash()));
    out.extend(f.vote(others[1], 0, VoteKind::Prepare, Some(b.hash())));
    assert!(block_requests(&out).is_empty(), "two of four are no polka");
    let out = f.deliver(others[0], Message::Vote(mine));
    let asked = block_requests(&out);
    assert_eq!(asked.len(), 1, "{out:?}");
    assert_eq!(asked[0].1, b.hash());
    assert!(
        others[..2].contains(&asked[0].0),
        "asked a voter: {asked:?}"
    );
}

/// Swarm seed 1595: a node that prepares another validator's block keeps the block with its
/// prepare (one record before it, in the same step), once per block and height; restarted from
/// its records after a plain crash it still holds it, and gives it to a validator that asks for
/// it (one locked on it whose own records, its proposal among them, were lost).
#[test]
fn a_prepared_block_is_kept_with_the_prepare_and_survives_a_crash() {
    use timed_core::consensus::{PersistRecord, Restore};
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    let out = f.propose(0, b.clone(), None);
    let records: Vec<PersistRecord> = out
        .iter()
        .filter_map(|o| match o {
            Output::Persist(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&records[..], [
            PersistRecord::Prepared { block, .. },
            PersistRecord::Signed { msg: Message::Vote(v), .. },
        ] if *block == b && v.block == Some(b.hash())),
        "{records:?}"
    );
    // Prepared again in a later round (L28): the block is not written twice.
    for v in &f.others()[..2] {
        f.vote(*v, 1, VoteKind::Precommit, None);
    }
    assert_eq!(f.node.round(), Round(1));
    let polka = block::Certificate::from_prepares(
        Height(1),
        Round(0),
        b.hash(),
        &f.others_votes(0, VoteKind::Prepare, Some(b.hash())),
    );
    let out = f.deliver(
        f.proposer(1),
        Message::Proposal(f.reproposal(1, 0, b.clone(), polka)),
    );
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Persist(PersistRecord::Prepared { .. }))),
        "{out:?}"
    );
    // A plain crash: restored from its records, it holds B and gives it to whoever asks.
    let mut node = Node::restore(
        &f.genesis,
        f.keys[f.me.as_usize()].clone(),
        NodeConfig::default(),
        Restore {
            records,
            ..Default::default()
        },
    )
    .unwrap();
    node.handle(TimestampMs(1_000), Input::Start);
    let asker = f.proposer(0);
    let out = node.handle(
        TimestampMs(1_001),
        Input::Message {
            from: asker,
            msg: Message::BlockRequest {
                height: Height(1),
                hash: b.hash(),
            },
        },
    );
    assert_eq!(block_answers(&out), vec![(asker, b.hash())]);
}

/// A proposal of the next height arrives while this node still decides the current one, and a
/// Byzantine peer forwards a copy of it with another body (same signed header) right after: the
/// copy must not take the real proposal's place among the messages kept for the next height.
#[test]
fn a_body_swapped_copy_does_not_replace_a_kept_proposal_of_the_next_height() {
    let mut f = Fixture::new();
    let b = f.block(f.proposer(0), 900);
    f.propose(0, b.clone(), None);
    let others = f.others();
    for v in &others {
        f.vote(*v, 0, VoteKind::Prepare, Some(b.hash()));
    }
    // The next height's block, built on `b` by its proposer.
    let set = f.genesis.validate().unwrap();
    let p2 = set.proposer(Height(2), Round(0));
    assert_ne!(p2, f.me);
    let mut ledger = Ledger::from_genesis(&f.genesis);
    ledger
        .apply_block(CHAIN, Height(1), b.header.proposer, &set, &[], &[])
        .unwrap();
    ledger
        .apply_block(CHAIN, Height(2), p2, &set, &[], &[])
        .unwrap();
    let next = Block {
        header: Header {
            chain_id: CHAIN.into(),
            height: Height(2),
            parent_hash: b.hash(),
            timestamp: TimestampMs(950),
            proposer: p2,
            tx_root: block::tx_root(&[]),
            state_root: ledger.state_root(),
            next_set_hash: ledger.staking().expect("a genesis ledger").current().hash(),
            evidence_root: timed_core::block::evidence_root(&[]),
        },
        txs: vec![],
        evidence: Vec::new(),
    };
    let real = Proposal::sign(
        &f.keys[p2.as_usize()],
        CHAIN,
        Round(0),
        None,
        next.clone(),
        p2,
    );
    let mut swapped = real.clone();
    swapped.block.txs.push(alices_transfer());
    f.deliver(p2, Message::Proposal(real));
    f.deliver(others[0], Message::Proposal(swapped));
    let mut out = Vec::new();
    for v in &others {
        out.extend(f.vote(*v, 0, VoteKind::Precommit, Some(b.hash())));
    }
    assert_eq!(f.node.height(), Height(2));
    let timers: Vec<Timer> = out
        .iter()
        .filter_map(|o| match o {
            Output::Schedule { timer, .. } => Some(*timer),
            _ => None,
        })
        .collect();
    let mut prepares = own_votes(&out, VoteKind::Prepare);
    for t in timers {
        let out = f.node.handle(TimestampMs(1_000), Input::Timeout(t));
        prepares.extend(own_votes(&out, VoteKind::Prepare));
    }
    assert_eq!(
        prepares,
        vec![Some(next.hash())],
        "the real proposal was lost"
    );
}

/// Swarm seed 8499: a proposer locked on its own block whose records after the proposal were
/// lost (its guard kept the lock, not the polka) proposes that block again, as a fresh one, when
/// its turn comes: every node locked on it can prepare it (L22), where a new block would be
/// refused by all of them.
#[test]
fn a_proposer_locked_on_its_own_block_without_its_polka_proposes_it_again() {
    use timed_core::consensus::{GuardLock, Restore, SignGuard, SignPoint, SignStep};
    let (genesis, keys) = genesis(4);
    let set = genesis.validate().unwrap();
    let me = set.proposer(Height(1), Round(0));
    let f0 = Fixture::with(genesis.clone(), keys.clone());
    let b = f0.block(me, 900);
    let proposal = Proposal::sign(&keys[me.as_usize()], CHAIN, Round(0), None, b.clone(), me);
    let mut node = Node::restore(
        &genesis,
        keys[me.as_usize()].clone(),
        NodeConfig::default(),
        Restore {
            // The proposal's record survived; those of its prepare and precommit did not.
            records: vec![timed_core::consensus::PersistRecord::Signed {
                height: Height(1),
                msg: Message::Proposal(proposal),
            }],
            guard: Some(SignGuard {
                last: SignPoint {
                    height: Height(1),
                    round: Round(0),
                    step: SignStep::Precommit,
                },
                lock: Some(GuardLock {
                    height: Height(1),
                    round: Round(0),
                    block: b.hash(),
                }),
            }),
            ..Default::default()
        },
    )
    .unwrap();
    node.handle(TimestampMs(1_000), Input::Start);
    assert_eq!(node.locked(), Some((Round(0), b.hash())));
    // Its next turn, reached by f+1 prepares of that round (L55).
    let turn = (1..60)
        .find(|r| set.proposer(Height(1), Round(*r)) == me)
        .expect("drawn again");
    let others: Vec<ValidatorIndex> = (0..4).map(ValidatorIndex).filter(|v| *v != me).collect();
    let mut out = vec![];
    for v in &others[..2] {
        let vote = Vote::sign(
            &keys[v.as_usize()],
            CHAIN,
            Height(1),
            Round(turn),
            VoteKind::Prepare,
            None,
            *v,
        );
        out.extend(node.handle(
            TimestampMs(1_001),
            Input::Message {
                from: *v,
                msg: Message::Vote(vote),
            },
        ));
    }
    assert_eq!(node.round(), Round(turn));
    let proposals: Vec<&Proposal> = out
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Proposal(p)) => Some(p),
            _ => None,
        })
        .collect();
    let [p] = &proposals[..] else {
        panic!("one proposal: {out:?}")
    };
    assert_eq!(p.block.hash(), b.hash(), "its locked block, not a new one");
    assert_eq!(p.valid_round, None, "fresh: it has no polka to show");
    assert_eq!(own_votes(&out, VoteKind::Prepare), vec![Some(b.hash())]);
}

/// Swarm seeds 2768 and 2160: ending a round, a node joins the highest round (at most three on)
/// in which it has seen more than one validator vote, under a third of the stake each (so L55
/// does not fire); one validator alone ahead, however far, does not move it.
#[test]
fn a_round_end_joins_a_group_ahead_but_not_one_validator_ahead() {
    // Stakes 30, 30, 30, 30, 5, 5: the two small ones together hold under a third.
    let (keys, validators) = insecure_dev_validators(&[30, 30, 30, 30, 5, 5]);
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![],
        params: Default::default(),
    };
    let mut node = Node::new(&genesis, keys[0].clone(), NodeConfig::default()).unwrap();
    node.handle(TimestampMs(1_000), Input::Start);
    let vote = |node: &mut Node, v: u16, round: u32| {
        let vote = Vote::sign(
            &keys[v as usize],
            CHAIN,
            Height(1),
            Round(round),
            VoteKind::Prepare,
            None,
            ValidatorIndex(v),
        );
        node.handle(
            TimestampMs(1_001),
            Input::Message {
                from: ValidatorIndex(v),
                msg: Message::Vote(vote),
            },
        );
    };
    let end = |node: &mut Node, round: u32, at: u64| {
        node.handle(
            TimestampMs(at),
            Input::Timeout(Timer::RoundEnd {
                height: Height(1),
                round: Round(round),
            }),
        );
    };
    // Validator 4 alone at round 2, then far ahead: the round ends into the next one.
    vote(&mut node, 4, 2);
    vote(&mut node, 4, 50);
    end(&mut node, 0, 100_000);
    assert_eq!(node.round(), Round(1));
    // Validators 4 and 5 at round 3 (10 of 130: no skip by L55): the end of round 1 joins them.
    vote(&mut node, 5, 3);
    vote(&mut node, 4, 3);
    assert_eq!(node.round(), Round(1));
    end(&mut node, 1, 200_000);
    assert_eq!(node.round(), Round(3));
}
