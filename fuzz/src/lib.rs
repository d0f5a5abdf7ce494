//! The checks behind the fuzz targets, one public function per target. They live in a library so
//! that `timed-tests` replays the committed corpus (`fuzz/corpus/<target>/`) as ordinary tests on
//! stable Rust, and libFuzzer (`cargo fuzz run <target>`) explores from there.
//!
//! Every function panics exactly when it finds a bug: a decode that panics or is not canonical, a
//! vote keeper that disagrees with a naive model, a certificate that verifies without a quorum of
//! genuine signatures, a node that panics, outgrows its bounds, signs two different messages for one
//! slot, or answers the same inputs differently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use timed_core::block::{self, Block, Certificate, CommitSignature, Header};
use timed_core::codec::{self, MAX_MESSAGE_BYTES};
use timed_core::consensus::{
    Footprint, Input, Node, NodeConfig, Output, PersistRecord, Restore, Timer,
};
use timed_core::crypto::{Keypair, Signature};
use timed_core::ledger::Ledger;
use timed_core::ledger::snapshot::{Chunk, Manifest};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{
    ConsensusParams, Genesis, GenesisBalance, GenesisValidator, TimeoutParams,
};
use timed_core::votes::{AddOutcome, MAX_ROUNDS_AHEAD, VoteKeeper, VoteRejected};

/// Reads fuzz bytes as numbers; past the end it yields zeros, so every input is a whole program.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

const CHAIN: &str = "fuzz";

/// Keys are derived once per process: deriving costs more than most fuzz iterations.
fn keys() -> &'static [Keypair] {
    static KEYS: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..6)
            .map(|i| Keypair::insecure_from_name(&format!("fuzz{i}")))
            .collect()
    })
}

fn genesis(stakes: &[u64]) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: TimestampMs(0),
        validators: stakes
            .iter()
            .enumerate()
            .map(|(i, s)| GenesisValidator {
                name: format!("fuzz{i}"),
                public_key: keys()[i].public_key(),
                stake: Stake(*s),
                address: None,
            })
            .collect(),
        balances: vec![GenesisBalance {
            account: keys()[5].public_key(),
            amount: Amount(1_000_000),
        }],
        params: ConsensusParams {
            block_time_ms: 100,
            propose_timeout: TimeoutParams {
                base_ms: 300,
                delta_ms: 100,
            },
            prepare_timeout: TimeoutParams {
                base_ms: 100,
                delta_ms: 50,
            },
            precommit_timeout: TimeoutParams {
                base_ms: 100,
                delta_ms: 50,
            },
            max_clock_drift_ms: 2_000,
            max_block_txs: 16,
            resend_interval_ms: 500,
            ..ConsensusParams::default()
        },
    }
}

// ----- decode --------------------------------------------------------------------------------

fn canonical<T: codec::Wire>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes, MAX_MESSAGE_BYTES) {
        assert_eq!(
            codec::encode(&value),
            bytes,
            "a decoded value re-encodes differently"
        );
    }
}

/// Arbitrary bytes into every wire and disk type: no panic, and one encoding per value.
pub fn decode(data: &[u8]) {
    if let Ok(msg) = codec::decode_message(data) {
        assert_eq!(
            codec::encode_message(&msg),
            data,
            "a decoded message re-encodes differently"
        );
    }
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 8 {
        0 => canonical::<Block>(rest),
        1 => canonical::<Certificate>(rest),
        2 => canonical::<PersistRecord>(rest),
        3 => canonical::<Genesis>(rest),
        4 => canonical::<Decision>(rest),
        5 => canonical::<Vote>(rest),
        6 => snapshot_manifest(rest),
        _ => snapshot_chunk(rest),
    }
}

/// A manifest from a server: decodes canonically, and its check against a state root never
/// panics, whatever its depth, parts or staking record.
fn snapshot_manifest(bytes: &[u8]) {
    canonical::<Manifest>(bytes);
    if let Ok(m) = codec::decode::<Manifest>(bytes, MAX_MESSAGE_BYTES) {
        let params = (&ConsensusParams::default()).into();
        let _ = m.verify(params, &Hash::ZERO);
        let _ = m.chunks().count();
    }
}

/// A chunk from a server: decodes canonically, and its check against a real manifest never
/// panics; one that passes is the manifest's own chunk.
fn snapshot_chunk(bytes: &[u8]) {
    canonical::<Chunk>(bytes);
    static SOURCE: OnceLock<(Ledger, Manifest)> = OnceLock::new();
    let (ledger, manifest) = SOURCE.get_or_init(|| {
        let ledger = Ledger::from_accounts((0..40u8).map(|i| {
            let key = Keypair::insecure_from_name(&format!("fuzz{i}")).public_key();
            let account = timed_core::ledger::Account {
                balance: Amount(u64::from(i) + 1),
                nonce: 0,
            };
            (key, account)
        }));
        let manifest = ledger
            .snapshot_manifest(Height(1))
            .expect("a small ledger cuts");
        (ledger, manifest)
    });
    if let Ok(chunk) = codec::decode::<Chunk>(bytes, MAX_MESSAGE_BYTES)
        && manifest.check(&chunk).is_ok()
    {
        let own = ledger.snapshot_chunk(Height(1), manifest.depth, chunk.index);
        assert_eq!(
            own.as_ref(),
            Some(&chunk),
            "a chunk that checks is the real one"
        );
    }
}

// ----- vote_keeper ---------------------------------------------------------------------------

/// The keeper against a list of accepted votes scanned naively.
pub fn vote_keeper(data: &[u8]) {
    const N: usize = 5;
    let mut b = Bytes(data);
    let stakes: Vec<u64> = (0..N).map(|_| u64::from(b.u8()) + 1).collect();
    let set = genesis(&stakes).validate().expect("fuzz genesis is valid");
    let mut keeper = VoteKeeper::new(Height(1), &set);
    let mut model: Vec<Vote> = Vec::new();
    let mut reported: BTreeSet<(ValidatorIndex, Round, VoteKind)> = BTreeSet::new();
    let mut current = Round(0);
    while !b.is_empty() {
        let flags = b.u8();
        if flags & 0x80 != 0 {
            current = Round(if flags & 0x40 != 0 {
                b.u32()
            } else {
                u32::from(b.u8() % 8)
            });
            continue;
        }
        let validator = ValidatorIndex(u16::from(b.u8()) % (N as u16 + 1));
        let round = Round(if flags & 0x20 != 0 {
            b.u32()
        } else {
            u32::from(flags % 6)
        });
        let kind = if flags & 0x08 != 0 {
            VoteKind::Precommit
        } else {
            VoteKind::Prepare
        };
        let block = match b.u8() % 4 {
            0 => None,
            k => Some(Hash([k; 32])),
        };
        let height = Height(1 + u64::from(flags & 0x10 != 0 && flags & 0x04 != 0));
        let vote = Vote {
            height,
            round,
            kind,
            block,
            validator,
            signature: Signature([flags & 1; 64]),
        };

        let expected = if height != Height(1) {
            Err(VoteRejected::WrongHeight {
                expected: Height(1),
                got: height,
            })
        } else if validator.as_usize() >= N {
            Err(VoteRejected::UnknownValidator(validator))
        } else if round.0 > current.0.saturating_add(MAX_ROUNDS_AHEAD) {
            Err(VoteRejected::RoundTooFar {
                current,
                got: round,
            })
        } else if model.contains(&vote) {
            Ok(AddOutcome::Duplicate)
        } else if let Some(first) = model
            .iter()
            .find(|v| v.validator == validator && v.round == round && v.kind == kind)
        {
            if reported.insert((validator, round, kind)) {
                Ok(AddOutcome::Equivocation(Box::new(
                    timed_core::votes::Evidence {
                        first: first.clone(),
                        second: vote.clone(),
                    },
                )))
            } else {
                Ok(AddOutcome::AlreadyReported)
            }
        } else {
            model.push(vote.clone());
            Ok(AddOutcome::Counted)
        };
        assert_eq!(keeper.add(vote, current), expected);
    }
    let rounds: BTreeSet<Round> = model.iter().map(|v| v.round).collect();
    assert_eq!(keeper.rounds(), rounds.iter().copied().collect::<Vec<_>>());
    for &round in &rounds {
        let mut in_round = BTreeSet::new();
        for kind in [VoteKind::Prepare, VoteKind::Precommit] {
            let of_kind: Vec<&Vote> = model
                .iter()
                .filter(|v| v.round == round && v.kind == kind)
                .collect();
            let any: u64 = of_kind.iter().map(|v| stakes[v.validator.as_usize()]).sum();
            assert_eq!(keeper.stake_any(round, kind), Stake(any));
            for value in [
                None,
                Some(Hash([1; 32])),
                Some(Hash([2; 32])),
                Some(Hash([3; 32])),
            ] {
                let w: u64 = of_kind
                    .iter()
                    .filter(|v| v.block == value)
                    .map(|v| stakes[v.validator.as_usize()])
                    .sum();
                assert_eq!(keeper.stake_for(round, kind, value), Stake(w));
                assert_eq!(
                    set.is_quorum(keeper.stake_for(round, kind, value)),
                    set.is_quorum(Stake(w))
                );
            }
            in_round.extend(of_kind.iter().map(|v| v.validator));
        }
        let distinct: u64 = in_round.iter().map(|v| stakes[v.as_usize()]).sum();
        assert_eq!(keeper.stake_in_round(round), Stake(distinct));
    }
    // Bounded memory: one slot per validator and kind of every round seen, nothing more.
    assert_eq!(keeper.memory_votes(), rounds.len() * 2 * N);
}

// ----- certificate ---------------------------------------------------------------------------

/// Arbitrary certificates verify exactly when their signers are ordered, known, genuine for this
/// very (chain, height, round, block), and worth a quorum.
pub fn certificate(data: &[u8]) {
    let mut b = Bytes(data);
    let stakes: Vec<u64> = (0..4).map(|_| u64::from(b.u8() % 100) + 1).collect();
    let set = genesis(&stakes).validate().expect("fuzz genesis is valid");
    let height = Height(1 + u64::from(b.u8() % 2));
    let round = Round(u32::from(b.u8() % 3));
    let block = Hash([b.u8() % 3; 32]);
    let mut signatures = Vec::new();
    let mut all_genuine = true;
    for _ in 0..(b.u8() % 7) {
        let validator = ValidatorIndex(u16::from(b.u8() % 6));
        let how = b.u8();
        let genuine = validator.as_usize() < 4 && how % 4 == 0;
        all_genuine &= genuine;
        let signature = if validator.as_usize() >= 4 {
            Signature([how; 64])
        } else {
            // 0: genuine; 1: for another height; 2: a prepare; 3: a flipped bit.
            let (h, kind) = match how % 4 {
                1 => (height.next(), VoteKind::Precommit),
                2 => (height, VoteKind::Prepare),
                _ => (height, VoteKind::Precommit),
            };
            let mut s = Vote::sign(
                &keys()[validator.as_usize()],
                CHAIN,
                h,
                round,
                kind,
                Some(block),
                validator,
            )
            .signature;
            if how % 4 == 3 {
                s.0[usize::from(how) % 64] ^= 1 << (how % 8);
            }
            s
        };
        signatures.push(CommitSignature {
            validator,
            signature,
        });
    }
    let cert = Certificate {
        height,
        round,
        block_hash: block,
        signatures,
    };
    let ordered = cert
        .signatures
        .windows(2)
        .all(|w| w[0].validator < w[1].validator);
    let known = cert.signatures.iter().all(|s| s.validator.as_usize() < 4);
    let stake: u64 = if known {
        cert.signatures
            .iter()
            .map(|s| stakes[s.validator.as_usize()])
            .sum()
    } else {
        0
    };
    let asked = Height(1 + u64::from(b.u8() % 2));
    let expected =
        ordered && known && all_genuine && set.is_quorum(Stake(stake)) && asked == height;
    assert_eq!(
        cert.verify(&set, CHAIN, asked, &block).is_ok(),
        expected,
        "{cert:?}"
    );
}

// ----- node ----------------------------------------------------------------------------------

struct Harness {
    genesis: Genesis,
    node: Node,
    now: u64,
    /// What a runtime would have stored: the last decision and the ledger after it.
    last: Option<Decision>,
    ledger: Option<Ledger>,
    records: Vec<PersistRecord>,
    /// Every message the node ever signed, by slot, across restarts.
    signed: BTreeMap<(Height, Round, u8), Message>,
    blocks_seen: Vec<Hash>,
    transcript: Vec<u8>,
}

impl Harness {
    fn new() -> Harness {
        let genesis = genesis(&[100, 100, 100, 100]);
        let node = Node::new(
            &genesis,
            keys()[0].clone(),
            NodeConfig {
                mempool_capacity: 64,
                ..NodeConfig::default()
            },
        )
        .expect("valid");
        Harness {
            genesis,
            node,
            now: 0,
            last: None,
            ledger: None,
            records: Vec::new(),
            signed: BTreeMap::new(),
            blocks_seen: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) {
        let outputs = self.node.handle(TimestampMs(self.now), input);
        for out in outputs {
            self.transcript
                .extend_from_slice(Hash::of(&[format!("{out:?}").as_bytes()]).0.as_slice());
            match out {
                Output::Persist(record) => {
                    if let PersistRecord::Signed { height, msg } = &record {
                        let slot = match msg {
                            Message::Proposal(p) => (*height, p.round, 0),
                            Message::Vote(v) => (*height, v.round, 1 + v.kind as u8),
                            other => panic!("persisted a signed {other:?}"),
                        };
                        let first = self.signed.entry(slot).or_insert_with(|| msg.clone());
                        assert_eq!(first, msg, "signed two different messages for {slot:?}");
                    }
                    self.records.push(record);
                }
                Output::Broadcast(Message::Proposal(p)) => self.blocks_seen.push(p.block.hash()),
                Output::Finalized(f) => {
                    let height = f.block.height();
                    self.last = Some(Decision {
                        block: f.block,
                        certificate: f.certificate,
                    });
                    self.ledger = Some(self.node.ledger().clone());
                    self.records.retain(|r| r.height() > height);
                }
                _ => {}
            }
        }
        let bound = Footprint::bound(4, self.node.round(), 64);
        let footprint = self.node.footprint();
        assert!(footprint.within(&bound), "{footprint:?} exceeds {bound:?}");
    }

    fn valid_block(&self, proposer: ValidatorIndex, timestamp: u64) -> Block {
        let set = self.node.validators();
        let mut ledger = self.node.ledger().clone();
        ledger
            .apply_block(CHAIN, self.node.height(), proposer, set, &[], &[])
            .expect("an empty block applies");
        let parent = self
            .node
            .last_decision()
            .map_or(self.genesis.hash(), |d| d.block.hash());
        Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: self.node.height(),
                parent_hash: parent,
                timestamp: TimestampMs(timestamp),
                proposer,
                tx_root: block::tx_root(&[]),
                state_root: ledger.state_root(),
                next_set_hash: ledger.staking().expect("a genesis ledger").current().hash(),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs: vec![],
            evidence: Vec::new(),
        }
    }

    fn step(&mut self, b: &mut Bytes) {
        let op = b.u8();
        let height = self.node.height();
        match op % 9 {
            0 => self.now += u64::from(b.u16()),
            1 => {
                let h = Height((height.0 + u64::from(b.u8() % 3)).saturating_sub(1));
                let r = Round(u32::from(b.u8() % 4));
                let timer = match b.u8() % 7 {
                    0 => Timer::Propose {
                        height: h,
                        round: r,
                    },
                    1 => Timer::Prepare {
                        height: h,
                        round: r,
                    },
                    2 => Timer::Precommit {
                        height: h,
                        round: r,
                    },
                    3 => Timer::NextHeight { height: h },
                    4 => Timer::Resend { height: h },
                    5 => Timer::SyncBudget {
                        peer: ValidatorIndex(u16::from(b.u8() % 5)),
                    },
                    _ => Timer::Announce { height: h },
                };
                self.feed(Input::Timeout(timer));
            }
            2 => self.feed(Input::PeerConnected(ValidatorIndex(u16::from(b.u8() % 5)))),
            3 | 4 => {
                let from = ValidatorIndex(1 + u16::from(b.u8() % 3));
                let flags = b.u8();
                let h = Height(height.0 + u64::from(flags & 0x40 != 0));
                let round = Round(u32::from(flags % 4));
                let kind = if flags & 0x10 != 0 {
                    VoteKind::Precommit
                } else {
                    VoteKind::Prepare
                };
                let block = match b.u8() % 3 {
                    0 => None,
                    1 => self.blocks_seen.last().copied(),
                    _ => Some(Hash([flags; 32])),
                };
                let v = Vote::sign(&keys()[from.as_usize()], CHAIN, h, round, kind, block, from);
                self.feed(Input::Message {
                    from,
                    msg: Message::Vote(v),
                });
            }
            5 => {
                let round = Round(u32::from(b.u8() % 4));
                let proposer = self.node.validators().proposer(height, round);
                if proposer.0 != 0 {
                    let mut block = self.valid_block(proposer, self.now.max(1) + u64::from(b.u8()));
                    if b.u8().is_multiple_of(4) {
                        block.header.state_root = Hash([7; 32]);
                    }
                    self.blocks_seen.push(block.hash());
                    let valid_round =
                        (round.0 > 0 && b.u8().is_multiple_of(2)).then(|| Round(round.0 - 1));
                    let p = Proposal::sign(
                        &keys()[proposer.as_usize()],
                        CHAIN,
                        round,
                        valid_round,
                        block,
                        proposer,
                    );
                    self.feed(Input::Message {
                        from: proposer,
                        msg: Message::Proposal(p),
                    });
                }
            }
            6 => {
                let len = usize::from(b.u8());
                let decoded = codec::decode_message(b.take(len));
                // Certified blocks come from a full node's upstream as well as from a peer.
                let upstream = b.u8() & 1 == 1;
                match decoded {
                    Ok(Message::Decision(d)) if upstream => self.feed(Input::Certified(vec![d])),
                    Ok(Message::SyncResponse { blocks }) if upstream => {
                        self.feed(Input::Certified(blocks))
                    }
                    Ok(msg) => self.feed(Input::Message {
                        from: ValidatorIndex(1),
                        msg,
                    }),
                    Err(_) => {}
                }
            }
            7 => {
                let client = &keys()[5];
                let tx = Transfer {
                    from: client.public_key(),
                    to: keys()[usize::from(b.u8() % 5)].public_key(),
                    amount: Amount(u64::from(b.u16())),
                    fee: Amount(u64::from(b.u8())),
                    nonce: u64::from(b.u8() % 4),
                    op: Default::default(),
                }
                .sign(client, CHAIN);
                self.feed(Input::SubmitTx(tx));
            }
            _ => {
                // Crash and restart from what a runtime would have made durable.
                let restore = Restore {
                    last: self.last.clone(),
                    ledger: self.ledger.clone(),
                    records: self.records.clone(),
                    guard: None,
                };
                self.node = Node::restore(
                    &self.genesis,
                    keys()[0].clone(),
                    NodeConfig {
                        mempool_capacity: 64,
                        ..NodeConfig::default()
                    },
                    restore,
                )
                .expect("restoring from own records works");
                self.feed(Input::Start);
            }
        }
    }
}

fn run_node(data: &[u8]) -> Vec<u8> {
    let mut h = Harness::new();
    h.feed(Input::Start);
    let mut b = Bytes(data);
    let mut steps = 0;
    while !b.is_empty() && steps < 512 {
        h.step(&mut b);
        steps += 1;
    }
    h.transcript
}

/// A whole node fed arbitrary inputs and times: no panic, bounded state, no double signing, and
/// the same inputs give the same outputs.
pub fn node(data: &[u8]) {
    let first = run_node(data);
    let second = run_node(data);
    assert!(first == second, "the same inputs gave different outputs");
}
