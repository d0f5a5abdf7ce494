//! `timed run --state-sync`: a new full node starts from a validator's snapshot instead of
//! replaying the chain, while a hostile server (a proxy of the same validator that alters every
//! chunk it passes on) is offered first. The node refuses the altered chunk, avoids that server,
//! takes the chunk from the honest one, ends on the validators' state (it goes on applying their
//! blocks, each checked against its state root) and says what it can no longer serve. A server
//! that lists a far snapshot it cannot back is given up for an older height, and one whose
//! manifest is false (fetched early, judged once the chain is verified) is avoided. With the altering
//! server alone the sync fails with the reason, and nothing is kept.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;

use common::fake::{fake_node, request_path};
use common::full::{FullNode, height};
use common::{Net, genesis_in, get, get_json, http_bytes, wait_for};
use serde_json::json;
use timed_core::codec;
use timed_core::ledger::snapshot::{Chunk, Manifest};
use timed_core::types::Amount;

/// An HTTP proxy of the API on `target` that alters each snapshot chunk it passes on (one more
/// unit in the first account): the chunk still decodes, and only its check against the
/// manifest can tell. With `manifest`, it alters the manifest instead (its staking state
/// dropped): it decodes, and only its check against the certified state root can tell.
/// Returns its URL.
fn altering_proxy(target: u16, manifest: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let path = request_path(&mut s);
            let Some((code, mut body)) = http_bytes(
                target,
                &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
            ) else {
                continue;
            };
            if code == 200
                && manifest
                && path.ends_with("/manifest")
                && let Ok(mut m) = codec::decode::<Manifest>(&body, codec::MAX_MESSAGE_BYTES)
            {
                m.staking = None;
                body = codec::encode(&m);
            }
            if code == 200
                && !manifest
                && path.contains("/chunks/")
                && let Ok(mut chunk) = codec::decode::<Chunk>(&body, codec::MAX_MESSAGE_BYTES)
            {
                let first = &mut chunk.accounts[0].1;
                first.balance = Amount(first.balance.0 + 1);
                body = codec::encode(&chunk);
            }
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_node_state_syncs_past_a_server_of_altered_chunks_and_follows_on() {
    let net = Net::start_with(3, "100ms", |_| {
        vec!["--snapshot-interval".into(), "20".into()]
    });
    let port = net.port(0);
    let snapshot = wait_for("validator1's snapshot of height 40", || {
        get_json(port, "/snapshots")
            .and_then(|s| s["snapshots"][0]["height"].as_u64())
            .filter(|h| *h >= 40)
    });
    let genesis = std::path::PathBuf::from(genesis_in(net.dir.path()));
    let dir = tempfile::tempdir().unwrap();
    let honest = format!("http://127.0.0.1:{port}");
    let liar = altering_proxy(port, false);
    let peers: Vec<u16> = (0..3).map(|i| net.port(i)).collect();

    // The liar alone: the sync fails, saying why, and keeps nothing.
    let alone = FullNode::start(
        &genesis,
        dir.path(),
        "alone",
        &peers,
        &["--state-sync", &liar],
    );
    let log = wait_for("the lone liar's sync to fail", || {
        let log = alone.log();
        log.contains("every server that offered the snapshot")
            .then_some(log)
    });
    assert!(log.contains("is false"), "{log}");
    assert_eq!(height(alone.port), 0, "it serves nothing: it stopped");
    drop(alone);

    // A server that alters the manifest (asked first, while the chain is verified, and judged
    // once its state root is known), a server that lists a far snapshot it cannot back, the
    // liar, then an honest server.
    let manifest_liar = altering_proxy(port, true);
    let far = fake_node(HashMap::from([(
        "/snapshots".to_string(),
        json!({"interval": 20, "snapshots": [{"height": 1_000_000, "chunks": 1}]}),
    )]));
    let synced_list = format!("{manifest_liar},{far},{liar},{honest}");
    let full = FullNode::start(
        &genesis,
        dir.path(),
        "full",
        &peers,
        &["--state-sync", &synced_list],
    );
    let log = wait_for("the state sync", || {
        let log = full.log();
        log.contains("State sync done").then_some(log)
    });
    assert!(
        log.contains(&format!(
            "avoided for serving false data: {manifest_liar}, {liar}"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("avoiding {manifest_liar}: its manifest of height")),
        "{log}"
    );
    assert!(
        log.contains("the snapshot of height 1000000 cannot be taken"),
        "the far claim was tried and given up: {log}"
    );
    let from = log
        .split("State sync done")
        .nth(1)
        .and_then(|t| t.split("height ").nth(1))
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        from >= snapshot && from % 20 == 0,
        "synced from {from}: {log}"
    );

    // It follows on: every block after the snapshot applied to the synced state and checked
    // against the validators' state roots.
    wait_for("the synced node to follow 15 heights on", || {
        (height(full.port) >= from + 15).then_some(())
    });
    for h in [from, from + 1, from + 15] {
        let theirs = get_json(port, &format!("/blocks/{h}")).unwrap();
        let ours = get_json(full.port, &format!("/blocks/{h}")).unwrap();
        assert_eq!(ours["hash"], theirs["hash"], "height {h}");
    }
    // It says what it does not hold: nothing below the snapshot.
    let status = get_json(full.port, "/status").unwrap();
    assert_eq!(status["lowest_height"].as_u64(), Some(from), "{status}");
    let (code, body) = get(full.port, "/blocks/1").unwrap();
    assert_eq!(code, 404, "{body}");
}
