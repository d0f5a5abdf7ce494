//! Real `timed` processes over QUIC on loopback, started with the design notes' flags
//! (`--validator-id validator1 --port P --peers localhost:P2,localhost:P3 --stake 100`, ephemeral
//! ports): the three validators finalize one chain, the same through `/blocks` and `/status`; one
//! stops and two keep finalizing; it comes back and catches up; `kill -9` and restart signs
//! nothing conflicting.

mod common;

use common::{Net, get_json, wait_for};

#[test]
fn three_validators_finalize_identical_chains() {
    let net = Net::start(3, "200ms");
    for i in 0..3 {
        net.wait_height(i, 5);
    }
    for h in 1..=5 {
        let hashes: Vec<String> = (0..3)
            .map(|i| net.block_hash(i, h).expect("block served"))
            .collect();
        assert!(
            hashes.iter().all(|x| *x == hashes[0]),
            "height {h}: {hashes:?}"
        );
    }
    // The same chain through the list endpoint...
    let listed = get_json(net.port(1), "/blocks?from=1&limit=5").expect("a range is served");
    assert_eq!(listed["next_from"], 6, "{listed}");
    let listed = listed["blocks"].as_array().expect("a list of blocks");
    assert_eq!(listed.len(), 5, "{listed:?}");
    for (k, b) in listed.iter().enumerate() {
        let h = k as u64 + 1;
        assert_eq!(b["height"], h);
        assert_eq!(
            b["hash"].as_str(),
            net.block_hash(0, h).as_deref(),
            "height {h}"
        );
    }
    // ...and through /status: each node's last block is the others' block of that height.
    for i in 0..3 {
        let s = net.status(i).unwrap();
        let h = s["height"].as_u64().unwrap();
        let last = s["last_block_hash"]
            .as_str()
            .expect("a last block hash")
            .to_string();
        assert!(h >= 5, "{s}");
        for j in 0..3 {
            let other = wait_for("the other nodes to reach that height", || {
                net.block_hash(j, h)
            });
            assert_eq!(
                other, last,
                "height {h}: {} vs {}",
                net.nodes[i].name, net.nodes[j].name
            );
        }
    }
    let s = net.status(0).unwrap();
    assert_eq!(s["consensus_threshold"], 200);
    assert_eq!(s["voting_weight"], 100);
    assert_eq!(s["validators"].as_array().unwrap().len(), 3);
    assert_eq!(s["peers"].as_array().unwrap().len(), 2);
    let genesis: Vec<_> = (0..3)
        .map(|i| net.status(i).unwrap()["genesis_hash"].clone())
        .collect();
    assert!(genesis.iter().all(|g| *g == genesis[0] && !g.is_null()));
}

#[test]
fn two_of_three_keep_finalizing_and_the_third_catches_up() {
    let mut net = Net::start(3, "200ms");
    net.wait_height(0, 3);
    net.stop(2, "-TERM");
    let at_stop = net.height(0);
    net.wait_height(0, at_stop + 4);
    net.wait_height(1, at_stop + 4);
    // Blocks finalized without validator3 carry exactly the two remaining signatures.
    let late = net.height(0);
    let b = net.block(0, late).unwrap();
    assert_eq!(
        b["certificate"]["signatures"].as_array().unwrap().len(),
        2,
        "{b}"
    );

    net.spawn(2);
    let target = net.height(0) + 2;
    net.wait_height(2, target);
    for h in 1..=target {
        let a = net.block_hash(0, h).unwrap();
        let c = wait_for("validator3 to serve the block", || net.block_hash(2, h));
        assert_eq!(a, c, "height {h}");
    }

    // Its log since the restart sums up the blocks it fetched in a progress line (at the
    // first block it decides live, or after a second without any), without the lines of each.
    let since_restart = || {
        let log = net.log(2);
        let at = log.rfind("Starting validator node").unwrap_or(0);
        log[at..].to_string()
    };
    let log = wait_for("validator3 to say what it synced", || {
        let log = since_restart();
        log.contains("Synced ").then_some(log)
    });
    let covered = log
        .lines()
        .filter_map(synced_heights)
        .any(|(from, to)| from <= late && late <= to);
    assert!(covered, "a progress line covers height {late}:\n{log}");
    assert!(
        !log.contains(&format!("Block finalized at height {late} ")),
        "no line of its own for a block synced:\n{log}"
    );
}

/// The heights a progress line (`Synced N blocks from peers, heights F to T, …`) covers.
fn synced_heights(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("Synced ")?..];
    let rest = &rest[rest.find("heights ")? + "heights ".len()..];
    let (from, rest) = rest.split_once(" to ")?;
    let to = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

#[test]
fn kill_9_and_restart_signs_nothing_conflicting() {
    let mut net = Net::start(3, "200ms");
    net.wait_height(1, 3);
    net.stop(1, "-KILL");
    net.spawn(1);
    let target = net.height(0) + 4;
    for i in 0..3 {
        net.wait_height(i, target);
    }
    // A second crash right away, mid-height.
    net.stop(1, "-KILL");
    net.spawn(1);
    let target = net.height(0) + 3;
    for i in 0..3 {
        net.wait_height(i, target);
    }
    for i in 0..3 {
        let s = net.status(i).unwrap();
        assert_eq!(s["evidence"], 0, "{}: {}", net.nodes[i].name, net.log(i));
    }
    for h in 1..=target {
        let hashes: Vec<String> = (0..3).map(|i| net.block_hash(i, h).unwrap()).collect();
        assert!(hashes.iter().all(|x| *x == hashes[0]), "height {h}");
    }
}
