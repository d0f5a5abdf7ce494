//! `--snapshot-interval`: validators write a snapshot of the ledger at every multiple of the
//! interval and serve it over HTTP. The test reads it as a new node would: the manifest checked
//! against the certified header of its height, every chunk against the manifest, and the
//! ledger rebuilt from them has the header's state root. Two validators serve byte-identical
//! snapshots; only the last two are kept; hostile paths get short errors.

mod common;

use common::{Net, genesis_in, get, get_json, http_bytes, metric, wait_for};
use timed_core::codec;
use timed_core::ledger::snapshot::{Chunk, Manifest, Restore};
use timed_core::staking::StakingParams;
use timed_core::types::Hash;
use timed_core::validators::Genesis;

/// The body of a 200 answer to GET `path`; `None` for any other answer.
fn bytes(port: u16, path: &str) -> Option<Vec<u8>> {
    let (code, body) = http_bytes(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    )?;
    (code == 200).then_some(body)
}

#[test]
fn validators_write_identical_snapshots_that_verify_against_the_certified_state_root() {
    // 2 s between snapshots: a snapshot stays on disk at least 4 s after it is listed.
    let net = Net::start_with(3, "100ms", |_| {
        vec!["--snapshot-interval".into(), "20".into()]
    });
    let port = net.port(0);
    // Three snapshots written (20, 40, 60): the oldest is gone.
    let listed = wait_for("three snapshot heights", || {
        get_json(port, "/snapshots").filter(|s| s["snapshots"][0]["height"].as_u64() >= Some(60))
    });
    assert_eq!(listed["interval"], 20, "{listed}");
    let heights: Vec<u64> = listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights.len(), 2, "the last two are kept: {listed}");
    assert_eq!(heights[0] - heights[1], 20, "{listed}");
    assert_eq!(heights[0] % 20, 0, "{listed}");
    assert!(metric(port, "timed_snapshot_height").unwrap() >= heights[0] as f64);

    // Another validator cut the same height the same way.
    let h = heights[0];
    let raw = bytes(port, &format!("/snapshots/{h}/manifest")).expect("the newest manifest");
    let other = wait_for("validator2's snapshot of the same height", || {
        bytes(net.port(1), &format!("/snapshots/{h}/manifest"))
    });
    assert_eq!(other, raw, "byte-identical manifests");

    // As a new node reads it: the manifest against the certified header of its height.
    let text = std::fs::read_to_string(genesis_in(net.dir.path())).unwrap();
    let genesis: Genesis = serde_json::from_str(&text).unwrap();
    let block = get_json(port, &format!("/blocks/{h}")).unwrap();
    let state_root: Hash =
        serde_json::from_value(block["block"]["header"]["state_root"].clone()).unwrap();
    let manifest: Manifest = codec::decode(&raw, codec::MAX_MESSAGE_BYTES).unwrap();
    assert_eq!(manifest.height.0, h);
    let mut restore = Restore::new(
        manifest.clone(),
        StakingParams::from(&genesis.params),
        &state_root,
    )
    .unwrap_or_else(|e| panic!("the manifest of height {h}: {e}"));
    let chunks: Vec<u32> = manifest.chunks().collect();
    assert!(!chunks.is_empty(), "the validators' accounts make a chunk");
    for i in chunks {
        let raw = bytes(port, &format!("/snapshots/{h}/chunks/{i}")).expect("a listed chunk");
        let chunk: Chunk = codec::decode(&raw, codec::MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(restore.add(chunk), Ok(true));
    }
    let ledger = restore.finish().expect("every chunk in");
    assert_eq!(ledger.state_root(), state_root);
    assert!(
        ledger.staking().is_some(),
        "the staking state comes with it"
    );

    // Hostile paths: short answers, no path built from them.
    for (path, code) in [
        ("/snapshots/abc/manifest", 400),
        ("/snapshots/1/manifest", 404),
        (&format!("/snapshots/{h}/chunks/99999") as &str, 404),
        (&format!("/snapshots/{h}/chunks/-1"), 400),
        ("/snapshots/..%2F..%2Fetc/manifest", 400),
        ("/snapshots/99999999999999999999999/manifest", 400),
    ] {
        let (got, body) = get(port, path).unwrap();
        assert_eq!(got, code, "{path}: {body}");
        assert!(body.len() < 300, "{path}: {body}");
    }
}
