//! The block explorer: its API (a block by hash, an account's transfers, `/search`) and its
//! pages in headless Chromium, finding a transfer sent by `timed wallet send`.
//!
//! Needs Chromium, as `dashboard_browser.rs` does.

mod common;

use std::process::Command;

use common::browser::{chromium, rendered, span};
use common::devnet::Devnet;
use common::{get, get_json, wait_for};

/// Sends 2.25 TIME from the devnet's wallet to a fresh address; (transaction hash, height,
/// recipient) once final.
fn send(net: &Devnet) -> (String, u64, String) {
    let to = "ab".repeat(32);
    let out = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["wallet", "send", "--key", &net.key, "--to", &to])
        .args(["--amount", "2.25", "--fee", "0.001", "--node", &net.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "... transfer HASH finalized at height H; ..."
    let hash = text
        .split("transfer ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no transfer hash in {text}"))
        .to_string();
    let height = text
        .split("finalized at height ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("no height in {text}"));
    (hash, height, to)
}

#[test]
fn the_explorer_finds_a_transfer_sent_by_the_wallet_in_a_real_browser() {
    let browser = chromium();
    let net = Devnet::start(3);
    wait_for("the devnet's first block", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(1))
    });
    let (hash, height, to) = send(&net);

    // The API: search answers what each kind of query is.
    let found = get_json(net.port, &format!("/search?q={hash}")).unwrap();
    assert_eq!(
        (found["kind"].as_str(), found["height"].as_u64()),
        (Some("tx"), Some(height)),
        "{found}"
    );
    let block = get_json(net.port, &format!("/blocks/{height}")).unwrap();
    let block_hash = block["hash"].as_str().unwrap().to_string();
    let by_hash = get_json(net.port, &format!("/blocks/by-hash/{block_hash}")).unwrap();
    assert_eq!(by_hash["height"], height, "{by_hash}");
    let found = get_json(net.port, &format!("/search?q={block_hash}")).unwrap();
    assert_eq!(found["kind"], "block", "{found}");
    let found = get_json(net.port, &format!("/search?q={to}")).unwrap();
    assert_eq!(found["kind"], "account", "{found}");
    let (code, body) = get(net.port, &format!("/search?q={}", "cd".repeat(32))).unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("nothing on this node matches"), "{body}");
    for who in [&net.address, &to] {
        let list = get_json(net.port, &format!("/accounts/{who}/transfers?limit=5")).unwrap();
        assert_eq!(list["transfers"][0]["hash"], hash.as_str(), "{list}");
        assert_eq!(list["transfers"][0]["amount"], 225_000_000u64, "{list}");
    }
    let list = get_json(
        net.port,
        &format!("/accounts/{}/transfers?before={height}", net.address),
    )
    .unwrap();
    assert_eq!(
        list["transfers"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );

    // The pages: searched by the transaction's hash, the transaction with its block and amount.
    let base = format!("http://127.0.0.1:{}/", net.port);
    let dom = rendered(&browser, &format!("{base}#/search/{hash}"));
    assert_eq!(
        span(&dom, "x-tx-hash").as_deref(),
        Some(hash.as_str()),
        "{dom}"
    );
    assert_eq!(
        span(&dom, "x-tx-status").as_deref(),
        Some("finalized"),
        "{dom}"
    );
    assert_eq!(
        span(&dom, "x-tx-amount").as_deref(),
        Some("2.25 TIME"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(
            "<a href=\"#/block/{height}\" id=\"x-tx-height\">{height}</a>"
        )),
        "no link to block {height}:\n{dom}"
    );
    // The sender's account lists it, linked.
    let dom = rendered(&browser, &format!("{base}#/account/{}", net.address));
    assert_eq!(span(&dom, "x-account-nonce").as_deref(), Some("1"), "{dom}");
    assert!(
        dom.contains(&format!("<a href=\"#/tx/{hash}\">{hash}</a>")),
        "the transfer is not listed:\n{dom}"
    );
    // The block, opened by its hash, holds it.
    let dom = rendered(&browser, &format!("{base}#/block/{block_hash}"));
    assert_eq!(
        span(&dom, "x-block-height").as_deref(),
        Some(height.to_string().as_str()),
        "{dom}"
    );
    assert!(dom.contains(&format!("href=\"#/tx/{hash}\"")), "{dom}");
    // What is not there is said so.
    let dom = rendered(&browser, &format!("{base}#/search/nothing"));
    assert!(dom.contains("nothing on this node matches"), "{dom}");
}
