//! `timed verify` checks a real devnet's chain against its genesis alone, resumes from a state
//! file, and rejects forged, short or tampered answers served by a fake node.

mod common;

use std::process::{Command, Output};

use common::fake::fake_node;
use common::{Net, get_json};
use serde_json::Value;

fn timed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(args)
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

/// Changes the served blocks.
type Alter = dyn Fn(&mut Vec<Value>);

#[test]
fn a_devnet_chain_verifies_and_tampered_answers_are_named() {
    let net = Net::start(3, "200ms");
    net.wait_height(0, 6);
    let genesis = common::genesis_in(net.dir.path());
    let url = format!("http://127.0.0.1:{}", net.port(0));

    // The real chain, from height 1.
    let ok = timed(&[
        "verify",
        "--genesis",
        &genesis,
        "--node",
        &url,
        "--height",
        "6",
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("heights 1..=6"), "{}", text(&ok));

    // With a state file: a first run to 3, a second resumes at 4.
    let state = net
        .dir
        .path()
        .join("verify-state.json")
        .display()
        .to_string();
    let first = timed(&[
        "verify",
        "--genesis",
        &genesis,
        "--node",
        &url,
        "--height",
        "3",
        "--state",
        &state,
    ]);
    assert!(first.status.success(), "{}", text(&first));
    let second = timed(&[
        "verify",
        "--genesis",
        &genesis,
        "--node",
        &url,
        "--state",
        &state,
    ]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("heights 4..="), "{}", text(&second));

    // Beyond the node's tip.
    let far = timed(&[
        "verify",
        "--genesis",
        &genesis,
        "--node",
        &url,
        "--height",
        "999999",
    ]);
    assert_eq!(far.status.code(), Some(1), "{}", text(&far));
    assert!(
        text(&far).contains("cannot be verified yet"),
        "{}",
        text(&far)
    );

    // A fake node serving the real blocks 1..=3, then with one of them altered.
    let real: Vec<Value> = (1..=3)
        .map(|h| get_json(net.port(0), &format!("/blocks/{h}")).unwrap())
        .collect();
    // `ranged`: also as one range answer (`/blocks?from=1&limit=3`), which the light client
    // asks first and checks with one batch of certificates; each fault must be named the same
    // either way.
    let serve = |altered: &dyn Fn(&mut Vec<Value>), ranged: bool| {
        let mut blocks = real.clone();
        altered(&mut blocks);
        let range = serde_json::json!({ "blocks": blocks.clone(), "next_from": 4, "more": false });
        let pages = blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("/blocks/{}", i + 1), b))
            .chain([("/status".to_string(), serde_json::json!({ "height": 3 }))])
            .chain(ranged.then(|| ("/blocks?from=1&limit=3".to_string(), range)))
            .collect();
        let fake = fake_node(pages);
        timed(&["verify", "--genesis", &genesis, "--node", &fake])
    };
    for ranged in [false, true] {
        let honest = serve(&|_| {}, ranged);
        assert!(honest.status.success(), "{}", text(&honest));
    }

    let cases: Vec<(&str, Box<Alter>, &str)> = vec![
        (
            "a signature with one bit flipped",
            Box::new(|b| {
                let sig = b[1]["certificate"]["signatures"][0]["signature"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let flipped = if sig.starts_with('0') { "1" } else { "0" };
                b[1]["certificate"]["signatures"][0]["signature"] =
                    Value::String(format!("{flipped}{}", &sig[1..]));
            }),
            "block 2: forged certificate: a certificate signature does not verify",
        ),
        (
            "a certificate cut to one signature",
            Box::new(|b| {
                let sigs = b[1]["certificate"]["signatures"].as_array_mut().unwrap();
                sigs.truncate(1);
            }),
            "block 2: short certificate: certificate holds 100 of stake; a quorum needs 200",
        ),
        (
            "a header altered under its claimed hash",
            Box::new(|b| {
                b[2]["block"]["header"]["timestamp"] =
                    Value::from(b[2]["block"]["header"]["timestamp"].as_u64().unwrap() + 1);
            }),
            "block 3: the node claims hash",
        ),
        (
            "a header altered, claimed hash removed",
            Box::new(|b| {
                b[2]["block"]["header"]["timestamp"] =
                    Value::from(b[2]["block"]["header"]["timestamp"].as_u64().unwrap() + 1);
                b[2].as_object_mut().unwrap().remove("hash");
            }),
            "block 3: certificate of another block",
        ),
        (
            "blocks 2 and 3 swapped",
            Box::new(|b| b.swap(1, 2)),
            "block 2: the node served height 3 for height 2",
        ),
        (
            "block 2 missing",
            Box::new(|b| {
                b[1] = serde_json::json!({ "height": 2 });
            }),
            "block 2: the node's answer is not a block with a certificate",
        ),
    ];
    for ((what, alter, expected), ranged) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
        let out = serve(alter.as_ref(), ranged);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(text(&out).contains(expected), "{what}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{what}: {}",
            text(&out)
        );
    }

    // Another chain's genesis: block 1 does not belong to it.
    let other = net.dir.path().join("other-genesis.json");
    let mut g: Value = serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    g["chain_id"] = Value::String("another-chain".into());
    std::fs::write(&other, g.to_string()).unwrap();
    let out = timed(&[
        "verify",
        "--genesis",
        &other.display().to_string(),
        "--node",
        &url,
        "--height",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("block 1: its chain id is"),
        "{}",
        text(&out)
    );
}
