//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) on stable Rust, so each
//! finding stays fixed. `cargo fuzz run <target>` explores further (see the README).

use std::path::PathBuf;

use timed_core::codec;
use timed_core::crypto::{Keypair, Signature};
use timed_core::message::{Message, Vote, VoteKind};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, ValidatorIndex};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus is empty");
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn decode_corpus_replays_clean() {
    replay("decode", timed_fuzz::decode);
}

#[test]
fn vote_keeper_corpus_replays_clean() {
    replay("vote_keeper", timed_fuzz::vote_keeper);
}

#[test]
fn certificate_corpus_replays_clean() {
    replay("certificate", timed_fuzz::certificate);
}

#[test]
fn node_corpus_replays_clean() {
    replay("node", timed_fuzz::node);
}

/// Writes the hand-made seeds. Run once after changing the formats:
/// `cargo test -p timed-tests --test fuzz_corpus -- --ignored write_seed_corpus`
#[test]
#[ignore]
fn write_seed_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    // decode: real messages, and each disk type behind its selector byte.
    let key = Keypair::insecure_from_name("seed");
    let vote = Vote::sign(
        &key,
        "fuzz",
        Height(3),
        Round(1),
        VoteKind::Precommit,
        Some(Hash([9; 32])),
        ValidatorIndex(2),
    );
    let tx = Transfer {
        from: key.public_key(),
        to: key.public_key(),
        amount: Amount(5),
        fee: Amount(1),
        nonce: 0,
        op: Default::default(),
    }
    .sign(&key, "fuzz");
    let messages = [
        ("vote", Message::Vote(vote.clone())),
        (
            "sync_request",
            Message::SyncRequest {
                from: Height(10),
                max_blocks: 64,
            },
        ),
        ("transaction", Message::Transaction(tx)),
    ];
    for (name, msg) in &messages {
        write("decode", name, &codec::encode_message(msg));
    }
    let mut bare_vote = vec![5u8];
    bare_vote.extend(codec::encode(&vote));
    write("decode", "bare_vote", &bare_vote);
    let mut forged = vote;
    forged.signature = Signature([0; 64]);
    write(
        "decode",
        "forged_vote",
        &codec::encode_message(&Message::Vote(forged)),
    );
    // The other targets read bytes as programs: deterministic pseudo-random seeds of a few sizes.
    for target in ["vote_keeper", "certificate", "node"] {
        for (i, len) in [16usize, 64, 256, 1024].into_iter().enumerate() {
            let mut data = Vec::with_capacity(len);
            let mut counter = 0u64;
            while data.len() < len {
                data.extend_from_slice(&Hash::of(&[target.as_bytes(), &counter.to_be_bytes()]).0);
                counter += 1;
            }
            data.truncate(len);
            write(target, &format!("seed-{i}"), &data);
        }
    }
}
