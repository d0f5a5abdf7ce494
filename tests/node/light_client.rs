//! `timed verify` checks a real devnet's chain against its genesis alone, resumes from a state
//! file, and rejects forged, short or tampered answers served by a fake node, block by block or
//! as a range in JSON or in the wire encoding.

mod common;

use std::process::{Command, Output};

use common::fake::fake_node_with;
use common::{Net, get, get_json, http_bytes};
use serde_json::Value;
use timed_core::codec;
use timed_core::message::Decision;

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

/// How the fake node serves the blocks: each alone (`/blocks/{h}`), and also as one range
/// answer in JSON (`/blocks?from=1&limit=3`) or in the wire encoding (`&format=codec`), which
/// the light client asks first and checks with one batch of certificates. Each fault must be
/// named the same every way.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Single,
    Json,
    Codec,
}

const MODES: [Mode; 3] = [Mode::Single, Mode::Json, Mode::Codec];

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
    // The real node's range in the wire encoding holds the same blocks and certificates.
    let (code, bytes) = http_bytes(
        net.port(0),
        "GET /blocks?from=1&limit=3&format=codec HTTP/1.0\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(bytes[0], codec::WIRE_VERSION);
    let served: Vec<Decision> = codec::decode(&bytes[1..], bytes.len()).unwrap();
    let parsed: Vec<Decision> = real
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(served, parsed);
    let (code, _) = get(net.port(0), "/blocks?from=1&limit=3&format=cbor").unwrap();
    assert_eq!(code, 400, "an unknown format is refused");

    let serve = |altered: &dyn Fn(&mut Vec<Value>), mode: Mode| {
        let mut blocks = real.clone();
        altered(&mut blocks);
        let range = serde_json::json!({ "blocks": blocks.clone(), "next_from": 4, "more": false });
        // The wire encoding of the blocks up to the first that is not one.
        let decisions: Vec<Decision> = blocks
            .iter()
            .map_while(|v| serde_json::from_value(v.clone()).ok())
            .collect();
        let mut page = vec![codec::WIRE_VERSION];
        page.extend(codec::encode(&decisions));
        let pages = blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("/blocks/{}", i + 1), b))
            .chain([("/status".to_string(), serde_json::json!({ "height": 3 }))])
            .chain((mode == Mode::Json).then(|| ("/blocks?from=1&limit=3".to_string(), range)))
            .collect();
        let raw = (mode == Mode::Codec)
            .then(|| ("/blocks?from=1&limit=3&format=codec".to_string(), page))
            .into_iter()
            .collect();
        let fake = fake_node_with(pages, raw);
        timed(&["verify", "--genesis", &genesis, "--node", &fake])
    };
    for mode in MODES {
        let honest = serve(&|_| {}, mode);
        assert!(honest.status.success(), "{mode:?}: {}", text(&honest));
    }

    // What is altered, how, and the error named (block by block and in a JSON range; in the
    // wire encoding, which carries no claimed hash, the second message where one is given).
    let cases: Vec<(&str, Box<Alter>, &str, Option<&str>)> = vec![
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
            None,
        ),
        (
            "a certificate cut to one signature",
            Box::new(|b| {
                let sigs = b[1]["certificate"]["signatures"].as_array_mut().unwrap();
                sigs.truncate(1);
            }),
            "block 2: short certificate: certificate holds 100 of stake; a quorum needs 200",
            None,
        ),
        (
            "a header altered under its claimed hash",
            Box::new(|b| {
                b[2]["block"]["header"]["timestamp"] =
                    Value::from(b[2]["block"]["header"]["timestamp"].as_u64().unwrap() + 1);
            }),
            "block 3: the node claims hash",
            Some("block 3: certificate of another block"),
        ),
        (
            "a header altered, claimed hash removed",
            Box::new(|b| {
                b[2]["block"]["header"]["timestamp"] =
                    Value::from(b[2]["block"]["header"]["timestamp"].as_u64().unwrap() + 1);
                b[2].as_object_mut().unwrap().remove("hash");
            }),
            "block 3: certificate of another block",
            None,
        ),
        (
            "blocks 2 and 3 swapped",
            Box::new(|b| b.swap(1, 2)),
            "block 2: the node served height 3 for height 2",
            None,
        ),
        (
            "block 2 missing",
            Box::new(|b| {
                b[1] = serde_json::json!({ "height": 2 });
            }),
            "block 2: the node's answer is not a block with a certificate",
            None,
        ),
    ];
    for ((what, alter, expected, in_codec), mode) in
        cases.iter().flat_map(|c| MODES.map(|m| (c, m)))
    {
        let expected = match mode {
            Mode::Codec => in_codec.unwrap_or(expected),
            _ => expected,
        };
        let out = serve(alter.as_ref(), mode);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}, {mode:?}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(expected),
            "{what}, {mode:?}: {}",
            text(&out)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{what}, {mode:?}: {}",
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
