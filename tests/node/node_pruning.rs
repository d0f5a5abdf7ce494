//! Pruning between real `timed` processes (issue 15, `--retain-blocks`): of three development
//! validators at block time 0, the first keeps only its last 100 blocks. It keeps finalizing
//! with the others, its database grows at most a quarter as much as theirs over 6,000 blocks
//! (redb grows a file by regions: at most a step, where theirs keeps growing), and it answers
//! 404 for a pruned block, naming the lowest height it keeps; `timed verify` against it says the blocks
//! are pruned; the others still serve every block.

mod common;

use common::cli::{stderr, timed};
use common::{Net, get, wait_for};

const RETAIN: u64 = 100;

fn db_bytes(net: &Net, i: usize) -> u64 {
    let path = net
        .dir
        .path()
        .join(format!("validator{}", i + 1))
        .join("timed.redb");
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until node `i`'s pruning has caught up with its height: its lowest height kept is
/// within a batch of `height - RETAIN`. Returns (height, lowest).
fn pruned_up_to_date(net: &Net, i: usize) -> (u64, u64) {
    wait_for("the pruner to keep up", || {
        let s = net.status(i)?;
        let (h, low) = (s["height"].as_u64()?, s["lowest_height"].as_u64()?);
        (h > RETAIN && low + RETAIN + 200 >= h && low > 1).then_some((h, low))
    })
}

#[test]
fn a_pruned_validator_keeps_finalizing_its_database_stops_growing_and_it_names_what_it_pruned() {
    let net = Net::start_with(3, "0", |i| {
        if i == 0 {
            vec!["--retain-blocks".into(), RETAIN.to_string()]
        } else {
            vec![]
        }
    });
    // Past the first pages' allocation: measure from height 1,500.
    net.wait_height(0, 1_500);
    pruned_up_to_date(&net, 0);
    let (pruned_before, kept_before) = (db_bytes(&net, 0), db_bytes(&net, 1));
    let from = net.height(0);
    net.wait_height(0, from + 6_000);
    let (h, low) = pruned_up_to_date(&net, 0);
    let (pruned_after, kept_after) = (db_bytes(&net, 0), db_bytes(&net, 1));
    let (pruned_growth, kept_growth) = (
        pruned_after.saturating_sub(pruned_before),
        kept_after.saturating_sub(kept_before),
    );
    eprintln!(
        "heights {from} -> {h}: pruned database {pruned_before} -> {pruned_after} bytes, \
         unpruned {kept_before} -> {kept_after} bytes"
    );
    assert!(
        kept_growth > 0,
        "the node that keeps every block must have grown over 6,000 blocks ({kept_before} -> {kept_after} bytes)"
    );
    // redb grows its file by whole regions, so a pruned database may still take one more step
    // (seen: 278,528 bytes against the unpruned one's 2,228,224) or none (seen: 0 against
    // 6,684,672); it must not keep pace with the unpruned one, and must stay a fraction of it.
    assert!(
        pruned_growth * 4 <= kept_growth,
        "over 6,000 blocks the pruned database grew {pruned_growth} bytes ({pruned_before} -> \
         {pruned_after}), the unpruned one {kept_growth} (to {kept_after}): pruning must keep \
         it flat"
    );

    // What it no longer holds, it says so: 404 with the lowest height kept.
    let (code, body) = get(net.port(0), "/blocks/1").expect("an answer");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("pruned"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let lowest = v["lowest_height"].as_u64().expect("lowest_height");
    assert!(lowest >= low && lowest > 1, "{body}");
    assert!(net.block(0, h).is_some(), "the recent blocks are kept");
    assert!(
        net.block(0, lowest).is_some(),
        "the lowest height kept is served"
    );
    // The others serve every block; the chain is one.
    assert_eq!(net.block_hash(1, 1).map(|h| h.len()), Some(64));
    assert_eq!(net.block_hash(0, lowest), net.block_hash(1, lowest));
    // A light client pointed at it is told why it cannot verify from the genesis, and where to
    // go instead.
    let genesis = net.dir.path().join("validator1/genesis.json");
    let out = timed(&[
        "verify",
        "--genesis",
        &genesis.display().to_string(),
        "--node",
        &format!("http://127.0.0.1:{}", net.port(0)),
        "--height",
        "10",
    ]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("pruned block 1") && text.contains("keeps every block"),
        "{text}"
    );
    // And it keeps finalizing with them.
    net.wait_height(0, h + 100);
    let log = net.log(0);
    assert!(
        log.contains("Pruning: keeping the last 100 blocks"),
        "{log}"
    );
}
