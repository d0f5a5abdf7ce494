//! A real deployment's commands: `timed keygen`, `timed genesis`, `timed run`; transfers through
//! the HTTP API; a genesis mismatch refused with a reason; CLI errors are one line.

mod common;

use std::process::{Command, Stdio};

use common::{Net, NodeProc, free_port, get_json, http, wait_for};
use timed_core::crypto::Keypair;
use timed_core::tx::Transfer;
use timed_core::types::Amount;

fn timed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(args)
        .output()
        .unwrap()
}

/// Three validators made by `timed keygen` and `timed genesis` (block time 200 ms, `alice`
/// funded), the genesis file then changed by `edit`, started with `timed run --genesis`.
fn real_network(dir: &tempfile::TempDir, edit: impl Fn(&mut serde_json::Value)) -> Net {
    let d = |p: &str| dir.path().join(p).display().to_string();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut validators = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let out = timed(&["keygen", "--out", &d(&format!("v{i}.key"))]);
        assert!(out.status.success());
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        validators.push(format!("v{i}:{key}:100:127.0.0.1:{port}"));
    }
    // A funded account for a transfer.
    let alice = Keypair::insecure_from_name("alice");
    let mut args = vec![
        "genesis",
        "--chain-id",
        "timed-test",
        "--block-time",
        "200ms",
    ];
    for v in &validators {
        args.extend(["--validator", v]);
    }
    let balance = format!("{}:1000000000", hex::encode(alice.public_key().0));
    let out_path = d("genesis.json");
    args.extend(["--balance", &balance, "--out", &out_path]);
    let out = timed(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut genesis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    edit(&mut genesis);
    std::fs::write(&out_path, genesis.to_string()).unwrap();

    let nodes = (0..3)
        .map(|i| NodeProc {
            name: format!("v{i}"),
            port: ports[i],
            args: vec![
                "run".into(),
                "--genesis".into(),
                d("genesis.json"),
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
    let mut net = Net {
        dir: tempfile::tempdir().unwrap(),
        nodes,
    };
    for i in 0..3 {
        net.spawn(i);
    }
    net
}

#[test]
fn keygen_genesis_and_run_form_a_network_that_takes_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let net = real_network(&dir, |_| {});
    net.wait_height(0, 2);
    let alice = Keypair::insecure_from_name("alice");
    let bob = Keypair::insecure_from_name("bob");

    let tx = Transfer {
        from: alice.public_key(),
        to: bob.public_key(),
        amount: Amount(250),
        fee: Amount(10),
        nonce: 0,
        op: Default::default(),
    }
    .sign(&alice, "timed-test");
    let body = serde_json::to_string(&tx).unwrap();
    let request = format!(
        "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (code, reply) = http(net.port(1), &request).unwrap();
    assert_eq!(code, 202, "{reply}");
    let hash = hex::encode(tx.hash().0);
    let found = wait_for("the transfer to be archived", || {
        get_json(net.port(0), &format!("/tx/{hash}")).filter(|t| t["status"] == "finalized")
    });
    assert!(found["height"].as_u64().unwrap() >= 1);
    let bob_path = format!("/accounts/{}", hex::encode(bob.public_key().0));
    let bob_account = wait_for("bob's balance on validator v2", || {
        get_json(net.port(2), &bob_path).filter(|a| a["balance"] == 250)
    });
    assert_eq!(bob_account["nonce"], 0);
    // The same transfer again is refused with a reason.
    let (code, reply) = http(net.port(1), &request).unwrap();
    assert!((400..500).contains(&code), "{code} {reply}");
    assert!(reply.contains("reason"), "{reply}");
}

/// A genesis of 60,000 balances (2.1 MB as the codec writes it) is over the 1 MiB a hello may
/// hold: its validators refused each other's hello ("frame of … bytes exceeds the limit") and
/// never formed a network. Their hellos now carry its hash alone, and they finalize blocks.
#[test]
fn validators_of_a_genesis_too_large_for_a_hello_form_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let net = real_network(&dir, |g| {
        let balances = g["balances"].as_array_mut().unwrap();
        for i in 0u32..60_000 {
            let account = blake3::hash(&i.to_le_bytes());
            balances.push(serde_json::json!({
                "account": hex::encode(account.as_bytes()),
                "amount": 1_000 + u64::from(i),
            }));
        }
    });
    for i in 0..3 {
        net.wait_height(i, 3);
    }
    for i in 0..3 {
        let log = net.log(i);
        assert!(!log.contains("exceeds the limit"), "v{i}: {log}");
    }
    let far = format!(
        "/accounts/{}",
        hex::encode(blake3::hash(&59_999u32.to_le_bytes()).as_bytes())
    );
    let account = get_json(net.port(2), &far).unwrap();
    assert_eq!(account["balance"], 60_999);
}

#[test]
fn a_different_genesis_is_refused_with_the_reason() {
    // validator1..3 form a genesis with block time 200ms; a fourth network's validator1 with the
    // same keys but another block time is told why it cannot join.
    let net = Net::start(2, "200ms");
    net.wait_height(0, 2);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("log");
    let mut other = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["--validator-id", "validator1", "--port", &port.to_string()])
        .args([
            "--peers",
            &format!("localhost:{}", net.port(1)),
            "--stake",
            "100",
        ])
        .args(["--block-time", "300ms", "--data-dir"])
        .arg(dir.path().join("v1"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the block time mismatch to be explained", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("block time").then_some(())
    });
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn bad_flags_unreadable_files_and_busy_ports_are_one_line_errors() {
    let out = timed(&["--no-such-flag"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = timed(&[
        "run",
        "--genesis",
        "/nonexistent/genesis.json",
        "--key",
        "/nonexistent/k",
        "--data-dir",
        "/tmp/x",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("genesis"), "{err}");

    // Neither a key nor --full-node, and both: one line each, naming the two flags.
    for extra in [&[][..], &["--key", "/nonexistent/k", "--full-node"][..]] {
        let args = [
            &["run", "--genesis", "/nonexistent/genesis.json"][..],
            &["--data-dir", "/tmp/x", "--listen", "127.0.0.1:1"][..],
            extra,
        ]
        .concat();
        let out = timed(&args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("--key") && err.contains("--full-node"),
            "{err}"
        );
    }

    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args([
            "--validator-id",
            "v1",
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot listen"), "{err}");

    let out = timed(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--validator-id",
        "--port",
        "--peers",
        "--stake",
        "--block-time",
        "--data-dir",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
