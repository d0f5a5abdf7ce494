//! `timed verify` follows the validator set across epochs from the genesis alone: a chain built
//! by the core's ledger (a validator registers, signs an epoch, unbonds and leaves) verifies
//! through its hand-overs, and a fake node that lies about a set is named precisely: the height
//! of the forged hand-over with the certified and the served hash, or the signer a certificate
//! names outside the proven set.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output};

use common::fake::fake_node;
use serde_json::{Value, json};
use timed_core::block::{Block, Certificate, Header, tx_root};
use timed_core::crypto::Keypair;
use timed_core::ledger::Ledger;
use timed_core::message::{Vote, VoteKind};
use timed_core::tx::{Op, SignedTransfer, Transfer};
use timed_core::types::{Amount, Height, Round, Stake, TimestampMs, ValidatorIndex};
use timed_core::validators::{
    ConsensusParams, Genesis, GenesisBalance, Member, ValidatorSet, insecure_dev_validators,
    members_hash,
};

const CHAIN: &str = "light-sets";
const EPOCH: u64 = 2;
const HEIGHTS: u64 = 8;

fn key(name: &str) -> Keypair {
    Keypair::insecure_from_name(name)
}

/// A chain of `HEIGHTS` blocks with epochs of 2: alice registers validator5 at height 1 (it
/// signs epoch 2, heights 5 and 6) and unbonds it all at height 3 (it leaves from epoch 3).
struct Built {
    genesis: Genesis,
    blocks: Vec<(Block, Certificate)>,
    /// The set of height `h + 1`, by `h`, at each epoch's last height.
    next_sets: BTreeMap<u64, Vec<Member>>,
}

fn op(validator: &str, amount: u64, nonce: u64, op: Op) -> SignedTransfer {
    Transfer {
        from: key("alice").public_key(),
        to: key(validator).public_key(),
        amount: Amount(amount),
        fee: Amount(1),
        nonce,
        op,
    }
    .sign(&key("alice"), CHAIN)
}

/// Each of `signers` precommits `block` at its height.
fn certify(signers: &[(ValidatorIndex, Keypair)], block: &Block) -> Certificate {
    let h = block.height();
    let votes: Vec<Vote> = signers
        .iter()
        .map(|(id, k)| {
            Vote::sign(
                k,
                CHAIN,
                h,
                Round(0),
                VoteKind::Precommit,
                Some(block.hash()),
                *id,
            )
        })
        .collect();
    Certificate::from_precommits(h, Round(0), block.hash(), &votes)
}

fn keys_of(set: &ValidatorSet) -> Vec<(ValidatorIndex, Keypair)> {
    set.iter().map(|(id, v)| (id, key(&v.name))).collect()
}

fn build() -> Built {
    let (_, validators) = insecure_dev_validators(&[100; 4]);
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![GenesisBalance {
            account: key("alice").public_key(),
            amount: Amount(1_000),
        }],
        params: ConsensusParams {
            epoch_blocks: EPOCH,
            unbonding_blocks: 2 * EPOCH,
            min_bond: Amount(50),
            ..ConsensusParams::default()
        },
    };
    let mut ledger = Ledger::from_genesis(&genesis);
    let mut parent = genesis.hash();
    let mut blocks = Vec::new();
    let mut next_sets = BTreeMap::new();
    for h in 1..=HEIGHTS {
        let txs = match h {
            1 => vec![op(
                "validator5",
                60,
                0,
                Op::Register {
                    name: "validator5".into(),
                    address: "127.0.0.1:9005".into(),
                },
            )],
            3 => vec![op("validator5", 60, 1, Op::Unbond)],
            _ => vec![],
        };
        let set = ledger.staking().unwrap().current().clone();
        let proposer = set.iter().next().unwrap().0;
        let outcome = ledger
            .apply_block(CHAIN, Height(h), proposer, &set, &txs, &[])
            .unwrap();
        assert!(outcome.staking_refused.is_empty(), "height {h}");
        let next = ledger.staking().unwrap().current().clone();
        let block = Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: Height(h),
                parent_hash: parent,
                timestamp: TimestampMs(h * 1_000),
                proposer,
                tx_root: tx_root(&txs),
                state_root: ledger.state_root(),
                next_set_hash: next.hash(),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs,
            evidence: Vec::new(),
        };
        if h % EPOCH == 0 {
            next_sets.insert(h, next.members());
        }
        parent = block.hash();
        let cert = certify(&keys_of(&set), &block);
        blocks.push((block, cert));
    }
    Built {
        genesis,
        blocks,
        next_sets,
    }
}

impl Built {
    /// What an honest node serves.
    fn pages(&self) -> HashMap<String, Value> {
        let mut pages = HashMap::new();
        pages.insert("/status".into(), json!({ "height": HEIGHTS }));
        for (block, cert) in &self.blocks {
            let h = block.height().0;
            pages.insert(
                format!("/blocks/{h}"),
                json!({ "block": block, "certificate": cert, "hash": hex::encode(block.hash().0) }),
            );
        }
        for (h, members) in &self.next_sets {
            pages.insert(
                format!("/validators?height={}", h + 1),
                json!({ "height": h + 1, "validators": members }),
            );
        }
        pages
    }

    fn genesis_file(&self, dir: &tempfile::TempDir) -> String {
        let path = dir.path().join("genesis.json");
        std::fs::write(&path, serde_json::to_string(&self.genesis).unwrap()).unwrap();
        path.display().to_string()
    }
}

fn verify(genesis: &str, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["verify", "--genesis", genesis, "--node", url])
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ids(members: &[Member]) -> Vec<u16> {
    members.iter().map(|m| m.id.0).collect()
}

#[test]
fn a_chain_crossing_several_hand_overs_verifies_from_the_genesis_alone() {
    let built = build();
    // The chain is what the test says: validator5 (id 4) in epoch 2 only.
    assert_eq!(ids(&built.next_sets[&2]), [0, 1, 2, 3]);
    assert_eq!(ids(&built.next_sets[&4]), [0, 1, 2, 3, 4]);
    assert_eq!(ids(&built.next_sets[&6]), [0, 1, 2, 3]);
    assert_eq!(
        built.blocks[4].1.signatures.len(),
        5,
        "validator5 signs height 5"
    );
    let dir = tempfile::tempdir().unwrap();
    let genesis = built.genesis_file(&dir);
    let ok = verify(&genesis, &fake_node(built.pages()));
    assert!(ok.status.success(), "{}", text(&ok));
    let said = text(&ok);
    assert!(said.contains("heights 1..=8"), "{said}");
    assert!(said.contains("2 set changes"), "{said}");
    assert!(
        said.contains("the set of height 9 has 4 validators"),
        "{said}"
    );
}

#[test]
fn a_node_serving_members_that_do_not_hash_to_the_certified_set_is_named() {
    let built = build();
    let dir = tempfile::tempdir().unwrap();
    let genesis = built.genesis_file(&dir);
    let mut pages = built.pages();
    // The set of height 5 with validator5's stake raised: its members no longer hash to what
    // the certificate of height 4 names.
    let mut lie = built.next_sets[&4].clone();
    lie[4].stake = Stake(1_000);
    pages.insert("/validators?height=5".into(), json!({ "validators": lie }));
    let refused = verify(&genesis, &fake_node(pages));
    assert!(!refused.status.success());
    let said = text(&refused);
    let certified = hex::encode(members_hash(&built.next_sets[&4]).0);
    let served = hex::encode(members_hash(&lie).0);
    assert!(said.contains("block 4: forged hand-over"), "{said}");
    assert!(
        said.contains(&format!("names set {certified} for height 5")),
        "{said}"
    );
    assert!(said.contains(&format!("hash to {served}")), "{said}");
}

#[test]
fn a_certificate_by_a_set_that_was_never_proven_is_named_with_its_unknown_signer() {
    let built = build();
    let dir = tempfile::tempdir().unwrap();
    let genesis = built.genesis_file(&dir);
    let mut pages = built.pages();
    // The node serves the honest set of epoch 2 (the hand-over at 4 holds), but block 5 carries
    // a certificate of its own making: the four genesis validators and mallory as id 9.
    let (block, _) = &built.blocks[4];
    let mut signers: Vec<(ValidatorIndex, Keypair)> = (0..4)
        .map(|i| (ValidatorIndex(i), key(&format!("validator{}", i + 1))))
        .collect();
    signers.push((ValidatorIndex(9), key("mallory")));
    let cert = certify(&signers, block);
    pages.insert(
        "/blocks/5".into(),
        json!({ "block": block, "certificate": cert, "hash": hex::encode(block.hash().0) }),
    );
    let refused = verify(&genesis, &fake_node(pages));
    assert!(!refused.status.success());
    let said = text(&refused);
    let proven = hex::encode(members_hash(&built.next_sets[&4]).0);
    assert!(
        said.contains("block 5: certificate by a signer outside the proven set"),
        "{said}"
    );
    assert!(said.contains("names validator #9"), "{said}");
    assert!(
        said.contains(&format!(
            "set {proven}, proven by the certificate of height 4"
        )),
        "{said}"
    );
}
