//! `timed devnet` funds a ready wallet; `timed wallet new/balance/send` move money through a
//! node's API and say what is wrong when they cannot.

mod common;

use common::cli::{stderr, stdout, timed};
use common::devnet::Devnet;
use common::{free_port, get_json, wait_for};
use timed_core::crypto::Keypair;
use timed_core::tx::Transfer;
use timed_core::types::Amount;

#[test]
fn the_devnet_wallet_sends_to_a_new_wallet_and_both_balances_follow() {
    let net = Devnet::start(3);
    let url = net.url();
    wait_for("the devnet's first block", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(1))
    });

    let balance = timed(&["wallet", "balance", &net.address, "--node", &url]);
    assert!(balance.status.success(), "{}", stderr(&balance));
    assert!(
        stdout(&balance).starts_with("1000000 TIME (100000000000000 units), next nonce 0"),
        "{}",
        stdout(&balance)
    );

    let dir = tempfile::tempdir().unwrap();
    let bob_key = dir.path().join("bob.key").display().to_string();
    let new = timed(&["wallet", "new", "--out", &bob_key]);
    assert!(new.status.success(), "{}", stderr(&new));
    let bob = stdout(&new).trim().to_string();
    assert_eq!(bob.len(), 64, "{bob}");

    let sent = timed(&[
        "wallet", "send", "--key", &net.key, "--to", &bob, "--amount", "1.5", "--fee", "0.001",
        "--node", &url,
    ]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let text = stdout(&sent);
    assert!(text.contains("finalized at height"), "{text}");
    assert!(text.contains("balance now 999998.499 TIME"), "{text}");

    let b = timed(&["wallet", "balance", &bob, "--node", &url]);
    assert!(
        stdout(&b).starts_with("1.5 TIME (150000000 units), next nonce 0"),
        "{}",
        stdout(&b)
    );
    let a = get_json(net.port, &format!("/accounts/{}", net.address)).unwrap();
    assert_eq!(a["balance"], 99_999_849_900_000u64, "{a}");
    assert_eq!(a["nonce"], 1, "{a}");

    // Bob sends back part of it with the smallest fee.
    let back = timed(&[
        "wallet",
        "send",
        "--key",
        &bob_key,
        "--to",
        &net.address,
        "--amount",
        "0.5",
        "--fee",
        "0.00000001",
        "--node",
        &url,
    ]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(
        stdout(&back).contains("balance now 0.99999999 TIME"),
        "{}",
        stdout(&back)
    );

    // More than Bob holds: refused before anything is submitted, saying why.
    let too_much = timed(&[
        "wallet",
        "send",
        "--key",
        &bob_key,
        "--to",
        &net.address,
        "--amount",
        "5",
        "--node",
        &url,
    ]);
    assert_eq!(too_much.status.code(), Some(1));
    let e = stderr(&too_much);
    assert!(e.contains("insufficient balance"), "{e}");
    assert!(e.contains("holds 0.99999999 TIME"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");

    // POST /txs: one verdict per transfer, in order.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bob_key).unwrap()).unwrap();
    let seed: [u8; 32] = hex::decode(file["secret_seed"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let bob_pair = Keypair::from_seed(seed);
    let chain = get_json(net.port, "/status").unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_string();
    let to = timed_core::crypto::PublicKey(hex::decode(&net.address).unwrap().try_into().unwrap());
    let tx = |nonce, amount| {
        Transfer {
            from: bob_pair.public_key(),
            to,
            amount: Amount(amount),
            fee: Amount(1),
            nonce,
            op: Default::default(),
        }
        .sign(&bob_pair, &chain)
    };
    let batch =
        serde_json::to_string(&[tx(1, 10), tx(1, 10), tx(0, 10), tx(2, 10_000_000_000)]).unwrap();
    let (code, body) = post(net.port, "/txs", &batch);
    assert_eq!(code, 200, "{body}");
    let verdicts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let reasons: Vec<&str> = verdicts
        .iter()
        .map(|v| {
            v["reason"]
                .as_str()
                .or_else(|| v["status"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(
        reasons,
        ["pending", "duplicate", "bad_nonce", "insufficient_balance"],
        "{body}"
    );
    assert_eq!(verdicts[0]["hash"], hex::encode(tx(1, 10).hash().0));
    let (code, body) = post(net.port, "/txs", "[{\"not\": \"a transfer\"}]");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("malformed batch"), "{body}");
}

fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    common::http(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap()
}

#[test]
fn wallet_errors_name_the_problem_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key").display().to_string();
    assert!(timed(&["wallet", "new", "--out", &key]).status.success());
    let again = timed(&["wallet", "new", "--out", &key]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );

    let to = "ab".repeat(32);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let cases: [(&[&str], &str); 6] = [
        (&["--amount", "1.123456789"], "more than 8 decimals"),
        (&["--amount", "-1"], "cannot be negative"),
        (&["--amount", "1e3"], "is not an amount in TIME"),
        (&["--amount", "0"], "more than zero"),
        (&["--amount", "1", "--fee", ""], "the amount is empty"),
        (&["--amount", "1"], "unreachable"),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "wallet", "send", "--key", &key, "--to", &to, "--node", &closed,
        ];
        args.extend_from_slice(extra);
        let out = timed(&args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {e}");
        assert!(e.contains(expected), "{extra:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{extra:?}: {e}");
    }
    let bad_to = timed(&[
        "wallet", "send", "--key", &key, "--to", "bob", "--amount", "1", "--node", &closed,
    ]);
    assert!(
        stderr(&bad_to).contains("not an address"),
        "{}",
        stderr(&bad_to)
    );
    let bad_url = timed(&["wallet", "balance", &to, "--node", "ftp://x:1"]);
    assert!(
        stderr(&bad_url).contains("not a node URL"),
        "{}",
        stderr(&bad_url)
    );
}
