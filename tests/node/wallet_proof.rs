//! `timed wallet balance --verify`: a light-client balance. Against a real devnet the wallet
//! proves an account and an address without one from the genesis alone; a hostile node (the
//! fake of `common::fake`, serving the devnet's real certified blocks) that alters the proof's
//! leaf or a sibling, states another balance beside a true proof, or denies an account that
//! exists is refused, each with what is wrong.

mod common;

use std::collections::HashMap;

use common::cli::{stderr, stdout, timed};
use common::devnet::Devnet;
use common::fake::fake_node;
use common::{get_json, wait_for};
use serde_json::Value;
use timed_core::crypto::Keypair;

#[test]
fn a_wallet_verifies_a_balance_proof_and_rejects_a_tampered_one() {
    let net = Devnet::start(3);
    let url = net.url();
    wait_for("the devnet's third block", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(3))
    });
    let genesis = common::genesis_in(net.dir.path());
    let verify = |address: &str, node: &str, extra: &[&str]| {
        let mut args = vec![
            "wallet",
            "balance",
            address,
            "--node",
            node,
            "--verify",
            "--genesis",
            &genesis,
        ];
        args.extend_from_slice(extra);
        timed(&args)
    };

    // The devnet's funded wallet, proven from the genesis.
    let ok = verify(&net.address, &url, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let text = stdout(&ok);
    assert!(
        text.starts_with("1000000 TIME (100000000000000 units), next nonce 0: proven at height"),
        "{text}"
    );
    // An address that never held anything: proven empty (another leaf or an empty subtree
    // ends its path).
    let nobody = hex::encode(Keypair::insecure_from_name("nobody").public_key().0);
    let empty = verify(&nobody, &url, &[]);
    assert!(empty.status.success(), "{}", stderr(&empty));
    assert!(
        stdout(&empty).starts_with("0 TIME (0 units), next nonce 0: proven at height"),
        "{}",
        stdout(&empty)
    );
    // A validator's account, paid by every block: its proof holds at whatever height.
    let validators = get_json(net.port, "/validators").unwrap();
    let validator = validators["validators"][0]["public_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{validators}"))
        .to_string();
    let paid = verify(&validator, &url, &[]);
    assert!(paid.status.success(), "{}", stderr(&paid));
    assert!(!stdout(&paid).starts_with("0 TIME"), "{}", stdout(&paid));

    // With a state file the second run verifies only the blocks since the first.
    let state = net.dir.path().join("light.json").display().to_string();
    let first = verify(&net.address, &url, &["--state", &state]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = verify(&net.address, &url, &["--state", &state]);
    assert!(second.status.success(), "{}", stderr(&second));
    let verified_now = |text: &str| -> u64 {
        let (_, tail) = text.split_once('(').unwrap();
        let tail = tail.split_once('(').map_or(tail, |(_, t)| t);
        tail.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (h1, h2) = (
        proven_height(&stdout(&first)),
        proven_height(&stdout(&second)),
    );
    assert_eq!(verified_now(&stdout(&first)), h1, "{}", stdout(&first));
    assert_eq!(
        verified_now(&stdout(&second)),
        h2 - h1,
        "{}",
        stdout(&second)
    );

    // A hostile node: the devnet's real blocks, a proof altered one way at a time.
    let real: Value = get_json(net.port, &format!("/accounts/{}?proof=true", net.address)).unwrap();
    let height = real["proof"]["height"].as_u64().unwrap();
    let mut pages = HashMap::new();
    for h in 1..=height {
        pages.insert(
            format!("/blocks/{h}"),
            get_json(net.port, &format!("/blocks/{h}")).unwrap(),
        );
        if let Some(set) = get_json(net.port, &format!("/validators?height={}", h + 1)) {
            pages.insert(format!("/validators?height={}", h + 1), set);
        }
    }
    let serve = |account: Value, address: &str| {
        let mut pages = pages.clone();
        pages.insert(format!("/accounts/{address}?proof=true"), account);
        fake_node(pages)
    };
    // The served page as it is: the fake is a faithful copy, so the wallet accepts it.
    let faithful = verify(&net.address, &serve(real.clone(), &net.address), &[]);
    assert!(faithful.status.success(), "{}", stderr(&faithful));

    let richer = |v: &mut Value| {
        let b = v["proof"]["leaf"][1]["balance"].as_u64().unwrap();
        v["proof"]["leaf"][1]["balance"] = (b + 1).into();
        v["balance"] = (b + 1).into();
    };
    let sibling = |v: &mut Value| {
        let s = v["proof"]["siblings"][0].as_str().unwrap().to_string();
        let flipped = if s.starts_with('0') { "1" } else { "0" };
        v["proof"]["siblings"][0] = format!("{flipped}{}", &s[1..]).into();
    };
    let claim = |v: &mut Value| {
        let b = v["balance"].as_u64().unwrap();
        v["balance"] = (b * 2).into();
    };
    let denied = |v: &mut Value| {
        v["proof"]["leaf"] = Value::Null;
        v["balance"] = 0.into();
        v["nonce"] = 0.into();
    };
    let cases: [(&str, &Alter, &str); 4] = [
        ("a richer leaf", &richer, "proof of the account at height"),
        ("a changed sibling", &sibling, "the proof gives state root"),
        ("another stated balance", &claim, "it is lying"),
        ("the account denied", &denied, "the proof gives state root"),
    ];
    assert!(
        real["proof"]["siblings"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "the devnet holds several accounts: {real}"
    );
    for (what, alter, expected) in cases {
        let mut page = real.clone();
        alter(&mut page);
        let out = verify(&net.address, &serve(page, &net.address), &[]);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {e}");
        assert!(e.contains(expected), "{what}: {e}");
        assert!(
            stdout(&out).is_empty(),
            "{what}: nothing printed as a balance"
        );
    }
}

/// Changes the served account page.
type Alter = dyn Fn(&mut Value);

/// The height in "…: proven at height H against…".
fn proven_height(text: &str) -> u64 {
    let (_, tail) = text.split_once("proven at height ").unwrap();
    tail.split_whitespace().next().unwrap().parse().unwrap()
}
