//! The double-sign guard with real `timed` processes (issue 12, defect 10): a validator whose
//! write-ahead log is deleted while the chain is stalled at a height it signed at restarts, and
//! signs nothing that conflicts with what it signed before (it watches, then withholds every point
//! at or below its guard); a second instance of a running validator's key, reached by its peers on
//! the connections it opens, hears the chain, is named in one line and signs nothing, and no peer
//! records double-sign evidence.

mod common;

use std::time::Duration;

use common::{Net, NodeProc, free_port, wait_for};

fn evidence(net: &Net, i: usize) -> u64 {
    net.status(i)
        .and_then(|s| s["evidence"].as_u64())
        .unwrap_or(0)
}

fn assert_no_evidence(net: &Net, nodes: &[usize]) {
    for &i in nodes {
        assert_eq!(evidence(net, i), 0, "{}: {}", net.nodes[i].name, net.log(i));
        assert!(
            !net.log(i).contains("Equivocation"),
            "{}: {}",
            net.nodes[i].name,
            net.log(i)
        );
    }
}

#[test]
fn a_validator_whose_wal_is_deleted_signs_nothing_it_signed_before() {
    let mut net = Net::start(4, "200ms");
    for i in 0..4 {
        net.wait_height(i, 3);
    }
    // Stall the chain: two of four cannot finalize, so validator1 and validator2 go through
    // rounds at one height, signing votes in each.
    net.stop(2, "-TERM");
    net.stop(3, "-TERM");
    let stalled = net.height(0);
    std::thread::sleep(Duration::from_secs(4));
    assert!(net.height(0) <= stalled + 1, "the chain did not stall");
    // The victim: the one of the two that proposed at the stalled height (one did if a round
    // of theirs came up): restarted without its records, the old code proposed again in that
    // round, a block of another timestamp, which its peer records as a double proposal.
    let proposed = |i: usize| {
        let log = net.log(i);
        (stalled + 1..=stalled + 2).any(|h| log.contains(&format!("Proposing block at height {h}")))
    };
    let victim = if proposed(1) && !proposed(0) { 1 } else { 0 };
    // It crashes and loses its signed records (its blocks stay in redb).
    net.stop(victim, "-KILL");
    let data = net.dir.path().join(&net.nodes[victim].name);
    std::fs::remove_file(data.join("wal.log")).unwrap();
    net.spawn(victim);
    // It comes back at the stalled height, beside its peer which holds its old votes there.
    wait_for("the victim to come back", || net.status(victim));
    std::thread::sleep(Duration::from_secs(6));
    net.spawn(2);
    net.spawn(3);
    let target = net.height(1) + 4;
    for i in 0..4 {
        net.wait_height(i, target);
    }
    assert_no_evidence(&net, &[0, 1, 2, 3]);
    let log = net.log(victim);
    assert!(
        log.contains("Started without all of this validator's signed records"),
        "{log}"
    );
    // It signed nothing it had signed before: a conflicting vote or proposal would be evidence at
    // its peers (checked above). How it avoided them is the core's business (it starts in the
    // round after its guard's, and withholds what falls at or below the guard while it watches);
    // the guard it read back names the stalled height.
    let guarded = |h: u64| log.contains(&format!("last signed: height {h} "));
    assert!(
        guarded(stalled + 1) || guarded(stalled + 2),
        "the guard did not hold the stalled height: {log}"
    );
    assert_one_chain(&net, target);
}

/// The names of the signers of block `h`'s certificate at node `i`.
fn signers(net: &Net, i: usize, h: u64) -> Vec<String> {
    net.block(i, h)
        .and_then(|b| {
            b["signers"].as_array().map(|s| {
                s.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Checks that nodes `0..4` agree on every block up to `to`.
fn assert_one_chain(net: &Net, to: u64) {
    for h in 1..=to {
        let hashes: Vec<String> = (0..4).map(|i| net.block_hash(i, h).unwrap()).collect();
        assert!(hashes.iter().all(|x| *x == hashes[0]), "height {h}");
    }
}

/// A second instance of a running validator's key, on another address with a fresh data
/// directory (and the key's guard file, moved along with the key as docs/deploy.md says). The
/// peers reach it on the connections it opens to them (ADR 0024): it catches up to the chain,
/// meets its key's signatures made by the first instance at its own height and says so in one
/// line, and signs nothing. The first instance is not disturbed (it keeps signing certificates),
/// no peer records evidence, the four keep one chain, and go on once the copy is stopped.
#[test]
fn a_second_instance_of_a_validator_key_hears_the_chain_and_stops_signing() {
    let mut net = Net::start(4, "200ms");
    for i in 0..4 {
        net.wait_height(i, 3);
    }
    let dir = net.dir.path().to_path_buf();
    std::fs::copy(
        dir.join("validator1.last_signed"),
        dir.join("validator1-copy.last_signed"),
    )
    .unwrap();
    let port = free_port();
    let peers: Vec<String> = (1..4)
        .map(|i| format!("localhost:{}", net.port(i)))
        .collect();
    let args: Vec<String> = vec![
        "--validator-id".into(),
        "validator1".into(),
        "--port".into(),
        port.to_string(),
        "--peers".into(),
        peers.join(","),
        "--stake".into(),
        "100".into(),
        "--block-time".into(),
        "200ms".into(),
        "--data-dir".into(),
        dir.join("validator1-copy").display().to_string(),
    ];
    net.nodes.push(NodeProc {
        name: "validator1-copy".into(),
        port,
        args,
        child: None,
        log: dir.join("validator1-copy.log"),
        wrapper: vec![],
    });
    let arrived = net.height(1);
    net.spawn(4);
    const ELSEWHERE: &str = "another instance is running with this validator's key";
    let start = std::time::Instant::now();
    while !net.log(4).contains(ELSEWHERE) {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the copy never saw the first instance's signatures: {}\n{}",
            net.log(4),
            net.log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // It heard the chain: it caught up from height 0 to near the others' height.
    wait_for("the copy to catch up", || {
        (net.height(4) + 3 >= net.height(1)).then_some(())
    });
    let copy = net.log(4);
    assert!(
        copy.contains("Started without all of this validator's signed records"),
        "{copy}"
    );
    assert!(!copy.contains("Proposing block"), "{copy}");
    for i in 1..4 {
        let log = net.log(i);
        assert!(
            log.contains("Another process with the key of validator1 connected from"),
            "{}: {log}",
            net.nodes[i].name
        );
    }
    // The others keep finalizing one chain, the first instance among the signers, with no
    // evidence against its key.
    let target = net.height(1) + 10;
    for i in 0..4 {
        net.wait_height(i, target);
    }
    assert_no_evidence(&net, &[0, 1, 2, 3]);
    assert_one_chain(&net, target);
    let signed = (arrived + 1..=target)
        .filter(|&h| signers(&net, 1, h).iter().any(|s| s == "validator1"))
        .count() as u64;
    assert!(
        2 * signed >= target - arrived,
        "validator1 signed {signed} of the {} certificates since the copy came: {}",
        target - arrived,
        net.log(0)
    );
    let first = net.log(0);
    assert!(!first.contains(ELSEWHERE), "{first}");
    let copy = net.log(4);
    assert!(!copy.contains("Proposing block"), "{copy}");
    assert_eq!(
        net.block_hash(4, net.height(4)),
        net.block_hash(1, net.height(4)),
        "{copy}"
    );
    assert!(net.alive(4), "{copy}");
    // Stopped, the copy leaves the four as they were.
    net.stop(4, "-TERM");
    let target = net.height(1) + 5;
    for i in 0..4 {
        net.wait_height(i, target);
    }
    assert_no_evidence(&net, &[0, 1, 2, 3]);
    assert_one_chain(&net, target);
}

/// Two processes on one machine with the same key file share its guard file: the second refuses
/// to start, in one line, before it opens anything else.
#[test]
fn a_second_process_with_the_same_key_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let timed = |args: &[String]| {
        std::process::Command::new(
            std::env::var_os("TIMED_TEST_BIN")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_timed").into()),
        )
        .args(args)
        .output()
        .unwrap()
    };
    let out = timed(&["keygen".into(), "--out".into(), d("v.key")]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = timed(&[
        "genesis".into(),
        "--block-time".into(),
        "200ms".into(),
        "--validator".into(),
        format!("v:{key}:100"),
        "--out".into(),
        d("genesis.json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |i: usize, port: u16| -> Vec<String> {
        vec![
            "run".into(),
            "--genesis".into(),
            d("genesis.json"),
            "--key".into(),
            d("v.key"),
            "--data-dir".into(),
            d(&format!("data{i}")),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ]
    };
    let port = free_port();
    let mut net = Net {
        dir: tempfile::tempdir().unwrap(),
        nodes: vec![NodeProc {
            name: "v".into(),
            port,
            args: run(0, port),
            child: None,
            wrapper: vec![],
            log: dir.path().join("v.log"),
        }],
    };
    net.spawn(0);
    net.wait_height(0, 2);
    // Spawned, not run to completion: a second instance that starts would never exit.
    let second = dir.path().join("second.log");
    let mut child = std::process::Command::new(
        std::env::var_os("TIMED_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_timed").into()),
    )
    .args(run(1, free_port()))
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&second).unwrap())
    .spawn()
    .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&second).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the second instance started: {stderr}"
    );
    assert!(
        stderr.contains("another timed process on this machine is running this validator"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}.last_signed", d("v.key"))),
        "{stderr}"
    );
    // The first one goes on.
    net.wait_height(0, net.height(0) + 2);
}
