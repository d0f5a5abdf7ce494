//! The validator set changes over QUIC between real `timed` processes (issue 14's acceptance):
//! four development validators with epochs of 4 heights, two of which admit no followers; a
//! fifth, started on their genesis, is refused at the TLS handshake by those two and only
//! follows the chain through the others while its key is in no set, registers (a `Register`
//! transfer of a funded account), is admitted as a validator once elected and signs
//! certificates from its activation height; then the first genesis validator unbonds, stops
//! signing after its last epoch, is refused once its grace is over, and the chain goes on.
//! Every node serves the same block hashes through `/blocks`. Apart: a registered validator only
//! follows while not elected.

mod common;

use common::{Net, NodeProc, free_port, get_json, http, metric, wait_for};
use serde_json::Value;
use timed_core::crypto::{Keypair, PublicKey};
use timed_core::tx::{Op, Transfer};
use timed_core::types::Amount;

const EPOCH: u64 = 4;
/// `net::members::GRACE_HEIGHTS`.
const GRACE: u64 = 8;
const FUNDS: u64 = 1_000_000;

fn post_json(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Submits a staking transfer of `owner`'s to node `port` and waits for its block's height.
fn stake(port: u16, owner: &Keypair, validator: PublicKey, amount: u64, op: Op) -> u64 {
    let account = get_json(
        port,
        &format!("/accounts/{}", hex::encode(owner.public_key().0)),
    )
    .unwrap_or(Value::Null);
    let tx = Transfer {
        from: owner.public_key(),
        to: validator,
        amount: Amount(amount),
        fee: Amount(0),
        nonce: account["nonce"].as_u64().unwrap_or(0),
        op,
    }
    .sign(owner, "timed-devnet");
    let hash = hex::encode(tx.hash().0);
    let (code, body) = post_json(port, "/tx", &serde_json::to_string(&tx).unwrap())
        .expect("the node answers POST /tx");
    assert_eq!(code, 202, "{body}");
    let height = wait_for(&format!("transfer {hash} to be finalized"), || {
        let t = get_json(port, &format!("/tx/{hash}"))?;
        (t["status"] == "finalized").then(|| t["height"].as_u64())?
    });
    let block = get_json(port, &format!("/blocks/{height}")).expect("its block is served");
    assert!(
        !block["outcome"]["staking_refused"]
            .to_string()
            .contains(&hash),
        "the staking rules refused {hash}: {block}"
    );
    height
}

/// The validator ids in the certificate of node `i`'s block `h`.
fn signers(net: &Net, i: usize, h: u64) -> Vec<u64> {
    let b = wait_for(&format!("{} to serve block {h}", net.nodes[i].name), || {
        net.block(i, h)
    });
    b["certificate"]["signatures"]
        .as_array()
        .expect("a certificate's signatures")
        .iter()
        .filter_map(|s| s["validator"].as_u64())
        .collect()
}

/// The first height of the epoch after the one of `h`.
fn next_epoch_start(h: u64) -> u64 {
    (h - 1) / EPOCH * EPOCH + EPOCH + 1
}

fn tls_refusals(port: u16) -> f64 {
    metric(port, "timed_handshakes_refused_total{reason=\"tls\"}").unwrap_or(0.0)
}

fn peer_names(net: &Net, i: usize) -> String {
    net.status(i)
        .map_or_else(String::new, |s| s["peers"].to_string())
}

/// Starts a development validator `name` on `net`'s genesis (copied from validator1's data
/// directory) with every node of `net` as `--peers`; returns its port.
fn spawn_newcomer(net: &mut Net, name: &str) -> u16 {
    let port = free_port();
    let data = net.dir.path().join(name);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        net.dir.path().join("validator1").join("genesis.json"),
        data.join("genesis.json"),
    )
    .unwrap();
    let peers: Vec<String> = (0..net.nodes.len())
        .map(|i| format!("127.0.0.1:{}", net.port(i)))
        .collect();
    let args: Vec<String> = [
        "--validator-id",
        name,
        "--port",
        &port.to_string(),
        "--peers",
        &peers.join(","),
        "--stake",
        "100",
        "--block-time",
        "200ms",
        "--data-dir",
        &data.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    net.nodes.push(NodeProc {
        name: name.into(),
        port,
        args,
        child: None,
        log: net.dir.path().join(format!("{name}.log")),
        wrapper: Vec::new(),
    });
    let i = net.nodes.len() - 1;
    net.spawn(i);
    port
}

/// `n` development validators with epochs of `epoch` heights and a funded account (`funder`);
/// the first `closed` of them admit no followers (`--max-followers 0`: their TLS layer refuses
/// every key outside the sets), the others admit them (the default).
fn network(n: usize, epoch: u64, funder: &Keypair, closed: usize) -> Net {
    let fund = format!("{}:{FUNDS}", hex::encode(funder.public_key().0));
    Net::start_with(n, "200ms", |i| {
        let mut args = vec![
            "--epoch-blocks".into(),
            epoch.to_string(),
            "--fund".into(),
            fund.clone(),
        ];
        if i < closed {
            args.extend(["--max-followers".into(), "0".into()]);
        }
        args
    })
}

/// Registered, not elected: validator1 (no followers) refuses it at TLS; the two others let it
/// follow the chain, and it is nobody's peer and signs nothing.
#[test]
fn a_registered_validator_only_follows_before_its_election() {
    // Epochs of 1000 heights: the registration below is not elected during this test.
    let funder = Keypair::insecure_from_name("funder");
    let mut net = network(3, 1000, &funder, 1);
    net.wait_height(0, 2);
    let name = "validator4";
    let port = spawn_newcomer(&mut net, name);
    let key = Keypair::insecure_from_name(name);
    let register = Op::Register {
        name: name.into(),
        address: format!("127.0.0.1:{port}"),
    };
    let registered = stake(net.port(0), &funder, key.public_key(), 100, register);
    // Registered, not elected: its dials are refused at TLS, and nobody dials it (it is in no
    // set, so its registered address is not followed).
    let refused = tls_refusals(net.port(0));
    wait_for(
        "the validators to refuse the registered newcomer at TLS",
        || (tls_refusals(net.port(0)) > refused).then_some(()),
    );
    net.wait_height(0, registered + 3);
    net.wait_height(3, registered + 3);
    let followers = |i: usize| {
        net.status(i)
            .map_or(0, |s| s["followers"].as_array().map_or(0, Vec::len))
    };
    assert_eq!(followers(0), 0, "validator1 admits no followers");
    assert_eq!(
        followers(1),
        1,
        "validator2 serves the newcomer as a follower"
    );
    for i in 0..3 {
        assert!(
            !peer_names(&net, i).contains(name),
            "{}",
            peer_names(&net, i)
        );
    }
    for h in registered..=registered + 3 {
        assert!(!signers(&net, 0, h).contains(&3), "height {h}");
    }
}

#[test]
fn a_fifth_validator_joins_and_signs_the_first_leaves_and_all_serve_one_chain() {
    let funder = Keypair::insecure_from_name("funder");
    let mut net = network(4, EPOCH, &funder, 2);
    net.wait_height(0, 2);

    // The fifth, on the same genesis, with every validator as --peers. A stranger so far:
    // refused at the TLS handshake by the two validators that admit no followers, it follows
    // the chain through the two that do, and is nobody's peer.
    let name = "validator5";
    let port = spawn_newcomer(&mut net, name);
    let refused_before = tls_refusals(net.port(0));
    wait_for(
        "the validators to refuse the unregistered fifth at TLS",
        || (tls_refusals(net.port(0)) > refused_before).then_some(()),
    );
    net.wait_height(4, 3);
    for i in 0..4 {
        assert!(
            !peer_names(&net, i).contains(name),
            "{}",
            peer_names(&net, i)
        );
    }

    // Registered (bond 100 = the devnet minimum), elected at the end of its epoch, signing
    // from the first height of the epoch after.
    let fifth = Keypair::insecure_from_name(name);
    let register = Op::Register {
        name: name.into(),
        address: format!("127.0.0.1:{port}"),
    };
    let registered = stake(net.port(0), &funder, fifth.public_key(), 100, register);
    let active = next_epoch_start(registered) + EPOCH;
    for h in 1..active {
        assert!(
            !signers(&net, 0, h).contains(&4),
            "height {h} before {active}"
        );
    }
    let first_signed = wait_for("validator5's signature in a certificate", || {
        let top = net.height(0);
        (active..=top).find(|h| signers(&net, 0, *h).contains(&4))
    });
    net.wait_height(4, first_signed);

    // The first genesis validator unbonds all of its stake (it owns itself).
    let first = Keypair::insecure_from_name("validator1");
    let unbonded = stake(net.port(1), &first, first.public_key(), 100, Op::Unbond);
    let last = next_epoch_start(unbonded) + EPOCH - 1;
    let refused_before = tls_refusals(net.port(1));
    // Past its grace, and some more heights of the set without it.
    let end = last + GRACE + 2 * EPOCH;
    net.wait_height(1, end);
    for h in last + 1..=end {
        let s = signers(&net, 1, h);
        assert!(
            !s.contains(&0),
            "validator1 signed height {h} after {last}: {s:?}"
        );
        assert!(!s.is_empty(), "height {h}");
    }
    assert!(
        (active..=last).any(|h| signers(&net, 1, h).contains(&0)),
        "validator1 signed while it was a member"
    );
    // Refused once its grace is over: its dialers keep trying, the others refuse them at TLS
    // and keep no link to it.
    wait_for(
        "the validators to refuse validator1 at TLS after its grace",
        || {
            (tls_refusals(net.port(1)) > refused_before
                && (1..5).all(|i| !peer_names(&net, i).contains("validator1")))
            .then_some(())
        },
    );

    // One chain: every node the same hash at every height it has, the fifth included.
    let top = (1..5).map(|i| net.height(i)).min().unwrap();
    assert!(top >= end, "{top}");
    for h in 1..=top {
        let reference = net.block_hash(1, h).expect("served");
        for i in 0..5 {
            if i == 0 && h > net.height(0) {
                continue; // validator1 stops following once it is refused
            }
            assert_eq!(
                net.block_hash(i, h).as_deref(),
                Some(reference.as_str()),
                "height {h}, {}",
                net.nodes[i].name
            );
        }
    }
}
