//! What `/status` and `/tx/{hash}` report, checked against situations the test sets up: blocks
//! pending at a height that cannot finalize yet, a transfer waiting in the mempool and then
//! finalized, and a node whose clock is off by seconds.

mod common;

use std::process::Command;

use common::{Net, NodeProc, free_port, get, get_json, http, metric, wait_for};
use serde_json::Value;
use timed_core::crypto::Keypair;
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Height, Round};
use timed_core::validators::Genesis;

fn timed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(args)
        .output()
        .unwrap()
}

/// Four validators of a real genesis (stake 100 each, quorum 267), none started; `alice` funded.
/// Returns the network and the index of the proposer of height 1, round 0.
fn four_validators(alice: &Keypair) -> (Net, usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut validators = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let out = timed(&["keygen", "--out", &d(&format!("v{i}.key"))]);
        assert!(out.status.success());
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        validators.push(format!("v{i}:{key}:100:127.0.0.1:{port}"));
    }
    let mut args = vec!["genesis", "--chain-id", "timed-api", "--block-time", "1s"];
    for v in &validators {
        args.extend(["--validator", v]);
    }
    let balance = format!("{}:1000000000", hex::encode(alice.public_key().0));
    let genesis_path = d("genesis.json");
    args.extend(["--balance", &balance, "--out", &genesis_path]);
    let out = timed(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let genesis: Genesis =
        serde_json::from_str(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    let set = genesis.validate().unwrap();
    let first = set.proposer(Height(1), Round::ZERO);
    let first_name = &set.get(first).unwrap().name;
    let proposer: usize = first_name[1..].parse().unwrap();
    let nodes = (0..4)
        .map(|i| NodeProc {
            name: format!("v{i}"),
            port: ports[i],
            args: vec![
                "run".into(),
                "--genesis".into(),
                genesis_path.clone(),
                "--key".into(),
                d(&format!("v{i}.key")),
                "--data-dir".into(),
                d(&format!("data{i}")),
                "--listen".into(),
                format!("127.0.0.1:{}", ports[i]),
            ],
            child: None,
            wrapper: Vec::new(),
            log: dir.path().join(format!("v{i}.log")),
        })
        .collect();
    (Net { dir, nodes }, proposer)
}

fn post_tx(port: u16, body: &str) -> (u16, String) {
    let request = format!(
        "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(port, &request).unwrap()
}

#[test]
fn pending_blocks_and_transactions_are_reported_truthfully() {
    let alice = Keypair::insecure_from_name("alice");
    let bob = Keypair::insecure_from_name("bob");
    let (mut net, p) = four_validators(&alice);
    let q = (p + 1) % 4;
    // Two of four validators (200 of 400) cannot finalize: height 1 stays open with the one
    // block its round-0 proposer proposed.
    net.spawn(p);
    net.spawn(q);
    for i in [p, q] {
        let s = wait_for(&format!("v{i} to know the proposal of height 1"), || {
            net.status(i)
                .filter(|s| s["pending_blocks"] == 1 && s["step"] == "prepare")
        });
        assert_eq!(s["height"], 0, "{s}");
        assert_eq!(s["deciding_height"], 1, "{s}");
        assert_eq!(s["round"], 0, "{s}");
    }

    // A transfer submitted now waits in the mempool: /tx answers "pending".
    let tx = Transfer {
        from: alice.public_key(),
        to: bob.public_key(),
        amount: Amount(250),
        fee: Amount(10),
        nonce: 0,
        op: Default::default(),
    }
    .sign(&alice, "timed-api");
    let hash = hex::encode(tx.hash().0);
    let (code, reply) = post_tx(net.port(q), &serde_json::to_string(&tx).unwrap());
    assert_eq!(code, 202, "{reply}");
    let pending = get_json(net.port(q), &format!("/tx/{hash}")).expect("the pending transfer");
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["hash"], hash.as_str());
    assert_eq!(pending["transaction"]["transfer"]["nonce"], 0, "{pending}");
    assert!(pending.get("height").is_none(), "{pending}");
    // Broadcast to the other running validator, which reports it pending as well.
    wait_for(
        "the transfer to reach the other validator's mempool",
        || get_json(net.port(p), &format!("/tx/{hash}")).filter(|t| t["status"] == "pending"),
    );
    assert_eq!(net.status(q).unwrap()["pending_transactions"], 1);
    // An unknown hash is a 404 with a reason.
    let (code, body) = get(net.port(q), &format!("/tx/{}", "ab".repeat(32))).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("mempool"), "{body}");

    // The other two join: the chain moves on and the transfer is finalized.
    for i in 0..4 {
        if i != p && i != q {
            net.spawn(i);
        }
    }
    let done = wait_for("the transfer to be finalized", || {
        get_json(net.port(q), &format!("/tx/{hash}")).filter(|t| t["status"] == "finalized")
    });
    let height = done["height"].as_u64().unwrap();
    assert!(height >= 1, "{done}");
    let block = net.block(q, height).unwrap();
    assert_eq!(done["block_hash"], block["hash"], "{done}");
    assert_eq!(done["transaction"]["transfer"]["amount"], 250, "{done}");

    // Between a finalized height and the next proposal (the 1 s block time) nothing is pending.
    let s = wait_for("a status taken while waiting for the next height", || {
        net.status(q).filter(|s| s["step"] == "new_height")
    });
    assert_eq!(s["pending_blocks"], 0, "{s}");
    assert_eq!(
        s["deciding_height"],
        s["height"].as_u64().unwrap() + 1,
        "{s}"
    );
}

fn offset(status: &Value, peer: &str) -> Option<i64> {
    status["peer_clock_offsets_ms"][peer].as_i64()
}

#[test]
fn a_skewed_clock_is_measured_by_its_peers_and_warned_about() {
    const SKEW: i64 = 5_000;
    const TOLERANCE: i64 = 1_000;
    let net = Net::start_with(3, "300ms", |i| {
        if i == 2 {
            vec!["--clock-skew-ms".into(), SKEW.to_string()]
        } else {
            Vec::new()
        }
    });
    // The honest nodes see validator3's proposals about SKEW ms in the future; validator3 is one
    // peer of two, so their own offset to the peers stays near zero.
    for i in 0..2 {
        let s = wait_for(&format!("validator{} to measure validator3", i + 1), || {
            net.status(i)
                .filter(|s| offset(s, "validator3").is_some() && s["clock_offset_ms"].is_i64())
        });
        let seen = offset(&s, "validator3").unwrap();
        assert!((seen - SKEW).abs() <= TOLERANCE, "{s}");
        let own = s["clock_offset_ms"].as_i64().unwrap();
        assert!(own.abs() <= TOLERANCE, "{s}");
    }
    // validator3 sees both peers about SKEW ms behind it: its own offset is -SKEW, shown in
    // /status and /metrics, and it warns in its log.
    let s = wait_for("validator3 to measure both peers", || {
        net.status(2).filter(|s| {
            offset(s, "validator1").is_some()
                && offset(s, "validator2").is_some()
                && (s["clock_offset_ms"].as_i64().unwrap_or(0) + SKEW).abs() <= TOLERANCE
        })
    });
    for peer in ["validator1", "validator2"] {
        let seen = offset(&s, peer).unwrap();
        assert!((seen + SKEW).abs() <= TOLERANCE, "{s}");
    }
    let seconds = metric(net.port(2), "timed_clock_offset_seconds").expect("the offset gauge");
    let gauge = (seconds * 1000.0).round() as i64;
    assert!((gauge + SKEW).abs() <= TOLERANCE, "{gauge}");
    let warning = wait_for("validator3 to warn about its clock", || {
        net.log(2)
            .lines()
            .find(|l| l.contains("Clock skew"))
            .map(str::to_string)
    });
    assert!(warning.contains("ahead of its peers"), "{warning}");
    for i in 0..2 {
        assert!(
            !net.log(i).contains("Clock skew"),
            "validator{} warned: {}",
            i + 1,
            net.log(i)
        );
    }
}

/// A node commits blocks without transfers to its database in small batches (at block time 0,
/// one transaction per block cost a tenth of its CPU), and serves what the database holds: the
/// height `/status` reports is always readable, with the hash `/status` gives for it.
#[test]
fn the_height_status_reports_is_always_readable() {
    let net = Net::start(3, "0");
    net.wait_height(0, 50);
    let mut checked = 0;
    while checked < 100 {
        let Some(s) = net.status(0) else { continue };
        let h = s["height"].as_u64().unwrap();
        let block = net
            .block(0, h)
            .unwrap_or_else(|| panic!("/status says height {h}, but /blocks/{h} has nothing"));
        assert_eq!(block["hash"], s["last_block_hash"], "height {h}");
        let latest = get_json(net.port(0), "/blocks/latest").unwrap();
        assert!(latest["height"].as_u64().unwrap() >= h, "{latest}");
        checked += 1;
    }
    let last = net.height(0);
    assert!(last >= 50, "{last}");
}
