//! Conformance vectors: the exact bytes of every message kind, block, header, certificate,
//! transfer, persisted record, signed payload, signature and hash, checked in as hex in
//! `tests/vectors/conformance.txt` (one `name hex` line each). Any change to an encoding, a hash
//! or a signing payload fails here, naming what changed: a format change is made on purpose, with
//! a new `codec::WIRE_VERSION`, and the file written anew with
//! `TIMED_BLESS=1 cargo test -p timed-core --test conformance`. An implementation in another
//! language can be checked against the same file.

use timed_core::block::{Block, Certificate, CommitSignature, Header, tx_root};
use timed_core::codec::{self, Wire};
use timed_core::consensus::{
    Finalized, GuardLock, Misbehaviour, PersistRecord, SignGuard, SignPoint, SignStep,
};
use timed_core::crypto::{Domain, Keypair, signing_message};
use timed_core::ledger::snapshot::Chunk;
use timed_core::ledger::{Account, BlockOutcome, Ledger, Reward};
use timed_core::message::{Decision, Message, Proposal, Vote, VoteKind};
use timed_core::tx::{Op, SignedTransfer, Transfer};
use timed_core::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};
use timed_core::validators::{Genesis, GenesisBalance, insecure_dev_validators};
use timed_core::votes::Evidence;

const CHAIN: &str = "timed-conformance";
const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/conformance.txt");

fn key(name: &str) -> Keypair {
    Keypair::insecure_from_name(name)
}

fn genesis() -> Genesis {
    let (_, mut validators) = insecure_dev_validators(&[100, 200, 300]);
    validators[1].address = Some("127.0.0.1:8002".into());
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: TimestampMs(1_700_000_000_000),
        validators,
        balances: vec![GenesisBalance {
            account: key("alice").public_key(),
            amount: Amount(1_000_000),
        }],
        params: Default::default(),
    }
}

fn transfer() -> SignedTransfer {
    Transfer {
        from: key("alice").public_key(),
        to: key("bob").public_key(),
        amount: Amount(250),
        fee: Amount(1),
        nonce: 0,
        op: Default::default(),
    }
    .sign(&key("alice"), CHAIN)
}

fn block(g: &Genesis) -> Block {
    let txs = vec![transfer()];
    Block {
        header: Header {
            chain_id: CHAIN.into(),
            height: Height(1),
            parent_hash: g.hash(),
            timestamp: TimestampMs(1_700_000_001_000),
            proposer: ValidatorIndex(2),
            tx_root: tx_root(&txs),
            state_root: Hash([0x5a; 32]),
            next_set_hash: Hash([0x5a; 32]),
            evidence_root: timed_core::block::evidence_root(&[]),
        },
        txs,
        evidence: Vec::new(),
    }
}

/// `b` punishing validator 1's double precommit of height 1 (its root in the header).
fn with_evidence(b: &Block) -> Block {
    let mut b = b.clone();
    b.evidence = vec![timed_core::vote::Evidence {
        first: vote(VoteKind::Precommit, Some(Hash([0x5a; 32])), 1),
        second: vote(VoteKind::Precommit, None, 1),
    }];
    b.header.evidence_root = timed_core::block::evidence_root(&b.evidence);
    b
}

fn vote(kind: VoteKind, block: Option<Hash>, v: u16) -> Vote {
    let (keys, _) = insecure_dev_validators(&[100, 200, 300]);
    Vote::sign(
        &keys[v as usize],
        CHAIN,
        Height(1),
        Round(2),
        kind,
        block,
        ValidatorIndex(v),
    )
}

fn hex_of<T: Wire>(value: &T) -> String {
    hex::encode(codec::encode(value))
}

/// Every vector, in the file's order.
fn vectors() -> Vec<(&'static str, String)> {
    let (keys, _) = insecure_dev_validators(&[100, 200, 300]);
    let g = genesis();
    let b = block(&g);
    let hash = b.hash();
    let prepares: Vec<Vote> = (0..3)
        .map(|v| vote(VoteKind::Prepare, Some(hash), v))
        .collect();
    let polka = Certificate::from_prepares(Height(1), Round(2), hash, &prepares);
    let certificate = Certificate {
        height: Height(1),
        round: Round(2),
        block_hash: hash,
        signatures: (0..3)
            .map(|v| CommitSignature {
                validator: ValidatorIndex(v),
                signature: vote(VoteKind::Precommit, Some(hash), v).signature,
            })
            .collect(),
    };
    let proposal = Proposal::sign(
        &keys[2],
        CHAIN,
        Round(3),
        Some(Round(2)),
        b.clone(),
        ValidatorIndex(2),
    )
    .with_polka(polka.clone());
    let decision = Decision {
        block: b.clone(),
        certificate: certificate.clone(),
    };
    let prepare = vote(VoteKind::Prepare, Some(hash), 1);
    let nil = vote(VoteKind::Precommit, None, 0);
    let tx = transfer();
    let outcome = BlockOutcome {
        height: Height(1),
        subsidy: Amount(100),
        fees: Amount(1),
        total_reward: Amount(101),
        rewards: vec![Reward {
            validator: ValidatorIndex(2),
            account: keys[2].public_key(),
            amount: Amount(101),
        }],
        archived: vec![tx.hash()],
        touched: vec![(
            key("bob").public_key(),
            Account {
                balance: Amount(250),
                nonce: 0,
            },
        )],
        staking_refused: vec![tx.hash()],
        staking: None,
        slashed: Amount(0),
        jailed: Vec::new(),
    };
    let msg = |m: Message| hex::encode(codec::encode_message(&m));
    vec![
        // Messages, in their envelope.
        ("message.proposal", msg(Message::Proposal(proposal.clone()))),
        ("message.prepare", msg(Message::Vote(prepare.clone()))),
        ("message.precommit_nil", msg(Message::Vote(nil.clone()))),
        ("message.decision", msg(Message::Decision(decision.clone()))),
        (
            "message.sync_request",
            msg(Message::SyncRequest {
                from: Height(300),
                max_blocks: 64,
            }),
        ),
        (
            "message.sync_response",
            msg(Message::SyncResponse {
                blocks: vec![decision.clone()],
            }),
        ),
        ("message.transaction", msg(Message::Transaction(tx.clone()))),
        (
            "message.block_request",
            msg(Message::BlockRequest {
                height: Height(1),
                hash,
            }),
        ),
        (
            "message.block_response",
            msg(Message::BlockResponse { block: b.clone() }),
        ),
        // The parts.
        ("header", hex_of(&b.header)),
        ("block", hex_of(&b)),
        ("block.with_evidence", hex_of(&with_evidence(&b))),
        ("certificate", hex_of(&certificate)),
        ("transfer", hex_of(&tx.transfer)),
        ("signed_transfer", hex_of(&tx)),
        (
            "transfer.register",
            hex_of(&Transfer {
                op: Op::Register {
                    name: "validator5".into(),
                    address: "127.0.0.1:9005".into(),
                },
                ..tx.transfer.clone()
            }),
        ),
        (
            "transfer.unbond",
            hex_of(&Transfer {
                op: Op::Unbond,
                ..tx.transfer.clone()
            }),
        ),
        ("genesis", hex_of(&g)),
        ("account", hex_of(&outcome.touched[0].1)),
        ("block_outcome", hex_of(&outcome)),
        (
            "finalized",
            hex_of(&Finalized {
                block: b.clone(),
                certificate: certificate.clone(),
                outcome: outcome.clone(),
            }),
        ),
        (
            "misbehaviour.double_vote",
            hex_of(&Misbehaviour::DoubleVote(Evidence {
                first: vote(VoteKind::Precommit, Some(hash), 0),
                second: nil.clone(),
            })),
        ),
        // What a validator persists, and its double-sign guard.
        (
            "persist.signed",
            hex_of(&PersistRecord::Signed {
                height: Height(1),
                msg: Message::Vote(prepare.clone()),
            }),
        ),
        (
            "persist.locked",
            hex_of(&PersistRecord::Locked {
                height: Height(1),
                round: Round(2),
                block: b.clone(),
                polka,
            }),
        ),
        (
            "persist.prepared",
            hex_of(&PersistRecord::Prepared {
                height: Height(1),
                block: b.clone(),
            }),
        ),
        (
            "sign_guard",
            hex_of(&SignGuard {
                last: SignPoint {
                    height: Height(1),
                    round: Round(2),
                    step: SignStep::Precommit,
                },
                lock: Some(GuardLock {
                    height: Height(1),
                    round: Round(2),
                    block: hash,
                }),
            }),
        ),
        // The payloads signatures cover, and the signatures (Ed25519 is deterministic).
        (
            "signing.prepare",
            hex::encode(signing_message(
                Domain::Prepare,
                CHAIN,
                &Vote::signed_fields(Height(1), Round(2), Some(hash), ValidatorIndex(1)),
            )),
        ),
        (
            "signing.proposal",
            hex::encode(signing_message(
                Domain::Proposal,
                CHAIN,
                &(Height(1), Round(3), Some(Round(2)), hash, ValidatorIndex(2)),
            )),
        ),
        (
            "signing.transfer",
            hex::encode(signing_message(Domain::Transfer, CHAIN, &tx.transfer)),
        ),
        ("signature.prepare", hex::encode(prepare.signature.0)),
        ("signature.proposal", hex::encode(proposal.signature.0)),
        ("signature.transfer", hex::encode(tx.signature.0)),
        // Hashes.
        ("hash.genesis", hex::encode(g.hash().0)),
        ("hash.block", hex::encode(hash.0)),
        ("hash.transfer", hex::encode(tx.hash().0)),
        ("hash.tx_root", hex::encode(b.header.tx_root.0)),
        (
            "hash.state_root.genesis",
            hex::encode(Ledger::from_genesis(&g).state_root().0),
        ),
        // A snapshot of the genesis ledger: its manifest and a chunk.
        (
            "snapshot.manifest.genesis",
            hex_of(
                &Ledger::from_genesis(&g)
                    .snapshot_manifest(Height(0))
                    .unwrap(),
            ),
        ),
        (
            "snapshot.chunk",
            hex_of(&Chunk {
                height: Height(1000),
                index: 3,
                accounts: vec![
                    (
                        g.validators[0].public_key,
                        Account {
                            balance: Amount(5),
                            nonce: 1,
                        },
                    ),
                    (
                        g.validators[1].public_key,
                        Account {
                            balance: Amount(7),
                            nonce: 0,
                        },
                    ),
                ],
            }),
        ),
    ]
}

#[test]
fn every_encoding_hash_and_signature_matches_its_vector() {
    let now = vectors();
    let text: String = now
        .iter()
        .map(|(name, hex)| format!("{name} {hex}\n"))
        .collect();
    if std::env::var_os("TIMED_BLESS").is_some() {
        std::fs::write(FILE, &text).unwrap();
        return;
    }
    let file = std::fs::read_to_string(FILE).unwrap_or_else(|e| {
        panic!(
            "{FILE}: {e}; write it with TIMED_BLESS=1 cargo test -p timed-core --test conformance"
        )
    });
    let pinned: Vec<(&str, &str)> = file
        .lines()
        .map(|l| l.split_once(' ').expect("`name hex` lines"))
        .collect();
    let names = |v: &[(&str, &str)]| v.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    let now_ref: Vec<(&str, &str)> = now.iter().map(|(n, h)| (*n, h.as_str())).collect();
    assert_eq!(
        names(&pinned),
        names(&now_ref),
        "the set of vectors changed"
    );
    let changed: Vec<&str> = pinned
        .iter()
        .zip(&now_ref)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    assert!(
        changed.is_empty(),
        "these encodings changed: {changed:?}. If that is on purpose, raise codec::WIRE_VERSION \
         (and the store's and WAL's formats if they are affected) and write the vectors anew with \
         TIMED_BLESS=1 cargo test -p timed-core --test conformance"
    );
}

/// Every vector that is a value decodes back to the same bytes: the file is readable, not only
/// writable, by this build.
#[test]
fn every_pinned_message_decodes() {
    let file = std::fs::read_to_string(FILE).unwrap();
    let mut messages = 0;
    for (name, hex) in file.lines().filter_map(|l| l.split_once(' ')) {
        let bytes = hex::decode(hex).unwrap();
        if name.starts_with("message.") {
            let msg = codec::decode_message(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(codec::encode_message(&msg), bytes, "{name}");
            messages += 1;
        }
        if name.starts_with("persist.") {
            let r: PersistRecord = codec::decode(&bytes, codec::MAX_MESSAGE_BYTES).unwrap();
            assert_eq!(codec::encode(&r), bytes, "{name}");
        }
    }
    assert_eq!(messages, 9, "one vector per message kind");
}
