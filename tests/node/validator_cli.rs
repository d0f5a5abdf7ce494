//! `timed validator register|bond|unbond` against a real devnet with short epochs: a new key
//! registered with a bond shows in `/validators`' pending changes, then in the set of its
//! activation epoch; refusals carry the node's reason; `/validators?height=` stands up to a
//! hostile client, and so does `POST /validators/check`.
//!
//! The devnet's genesis validators have a stake of 100 units, its minimum bond is 100 units
//! (`handshake::DEV_MIN_BOND`), and the test registers a validator with 1,000 TIME: as no process
//! runs its key, it holds nearly all the stake from its activation epoch on and the chain stops
//! there. The test reads nothing beyond it.

mod common;

use common::cli::{stderr, stdout, timed};
use common::devnet::Devnet;
use common::{get, get_json, wait_for};
use serde_json::Value;

/// Six seconds of 200 ms blocks: room for the commands below before the activation epoch.
const EPOCH: u64 = 30;

/// The names of a `/validators` answer's members.
fn names(v: &Value) -> Vec<String> {
    v["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// The height a command's output says its transfer was finalized at.
fn finalized_at(said: &str) -> u64 {
    said.split("finalized at height ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height in {said:?}"))
}

/// The names listed under a pending list (`{"total", "listed"}`).
fn listed(list: &Value) -> Vec<String> {
    list["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_registered_key_is_pending_then_in_the_set_of_its_activation_epoch_and_refusals_say_why() {
    let net = Devnet::start_with(3, &["--epoch-blocks", &EPOCH.to_string()]);
    let url = net.url();
    wait_for("the devnet's first block", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(1))
    });

    // The set of the next height: the genesis's three, and where it came from.
    let now = get_json(net.port, "/validators").unwrap();
    assert_eq!(
        names(&now),
        ["validator1", "validator2", "validator3"],
        "{now}"
    );
    assert_eq!(now["size"], 3);
    assert_eq!(now["total_stake"], 300);
    assert_eq!(now["quorum"], 200);
    assert_eq!(now["params"]["epoch_blocks"], EPOCH);
    let min_bond = now["params"]["min_bond"].as_u64().unwrap();
    assert_eq!(min_bond, 100, "the devnet's minimum bond");
    let bond = 1_000 * 100_000_000;
    let status = get_json(net.port, "/status").unwrap();
    assert_eq!(status["validator_set"]["current"]["size"], 3, "{status}");
    assert_eq!(status["validators"].as_array().unwrap().len(), 3);
    assert_eq!(status["consensus_threshold"], 200);

    // A new validator key, registered by the devnet's wallet with 1,000 TIME.
    let dir = tempfile::tempdir().unwrap();
    let v4_key = dir.path().join("v4.key").display().to_string();
    let made = timed(&["keygen", "--out", &v4_key]);
    assert!(made.status.success(), "{}", stderr(&made));
    let v4 = stdout(&made).trim().to_string();
    let register = timed(&[
        "validator",
        "register",
        "--validator-key",
        &v4_key,
        "--name",
        "validator4",
        "--address",
        "127.0.0.1:9004",
        "--bond",
        "1000",
        "--key",
        &net.key,
        "--node",
        &url,
    ]);
    assert!(register.status.success(), "{}", stderr(&register));
    let said = stdout(&register);
    assert!(said.contains("register of validator"), "{said}");
    let height = finalized_at(&said);
    let activation = ((height - 1) / EPOCH + 2) * EPOCH + 1;
    assert!(
        said.contains(&format!("signs from height {activation}")),
        "{said}"
    );

    // Pending: registered and not elected yet, or (if its epoch ended meanwhile) joining next.
    let pending = get_json(net.port, "/validators").unwrap()["pending"].clone();
    let waiting = [
        listed(&pending["registered_not_elected"]),
        listed(&pending["next_epoch"]["joining"]),
    ]
    .concat();
    assert!(waiting.contains(&"validator4".to_string()), "{pending}");
    let balance = get_json(net.port, &format!("/accounts/{}", net.address)).unwrap();
    assert_eq!(
        balance["balance"].as_u64().unwrap(),
        1_000_000 * 100_000_000 - bond - 100_000,
        "the bond and the fee left the owner's balance: {balance}"
    );

    // The owner bonds one TIME more, then unbonds it: it waits in the queue for the unbonding
    // period (on a devnet given `--epoch-blocks`, the shortest the genesis allows: two epochs).
    let unbonding = now["params"]["unbonding_blocks"].as_u64().unwrap();
    assert_eq!(unbonding, 2 * EPOCH, "{now}");
    let change = |what: &str| {
        let o = timed(&[
            "validator",
            what,
            "--validator",
            &v4,
            "--amount",
            "1",
            "--key",
            &net.key,
            "--node",
            &url,
        ]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        stdout(&o)
    };
    let bonded = change("bond");
    assert!(bonded.starts_with("bond of validator"), "{bonded}");
    let unbonded = change("unbond");
    let at = finalized_at(&unbonded);
    assert!(
        unbonded.contains(&format!(
            "1 TIME returns to the owner at the end of height {}",
            at + unbonding
        )),
        "{unbonded}"
    );
    let queue = get_json(net.port, "/validators").unwrap()["pending"]["unbonding"].clone();
    assert_eq!(queue["total"], 1, "{queue}");
    assert_eq!(queue["listed"][0]["amount"], 100_000_000u64, "{queue}");
    assert_eq!(
        queue["listed"][0]["release_height"],
        at + unbonding,
        "{queue}"
    );
    assert_eq!(queue["listed"][0]["owner"], net.address.as_str(), "{queue}");

    // Refusals, before anything is submitted: the node's reason, a non-zero exit.
    let refused = |args: &[&str], reason: &str, message: &str| {
        let o = timed(args);
        assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
        let e = stderr(&o);
        assert!(e.contains(reason) && e.contains(message), "{args:?}: {e}");
    };
    let v5_key = dir.path().join("v5.key").display().to_string();
    let v5 = timed(&["keygen", "--out", &v5_key]);
    let v5 = stdout(&v5).trim().to_string();
    refused(
        &[
            "validator",
            "register",
            "--validator",
            &v5,
            "--name",
            "tiny",
            "--address",
            "127.0.0.1:9005",
            "--bond",
            "0.00000099",
            "--key",
            &net.key,
            "--node",
            &url,
        ],
        "below_min_bond",
        "a bond must be 0 or at least 0.00 TIME (100 base units)",
    );
    refused(
        &[
            "validator",
            "register",
            "--validator",
            &v4,
            "--name",
            "again",
            "--address",
            "127.0.0.1:9005",
            "--bond",
            "1000",
            "--key",
            &net.key,
            "--node",
            &url,
        ],
        "already_registered",
        "is already registered",
    );
    let v1 = now["validators"][0]["public_key"].as_str().unwrap();
    refused(
        &[
            "validator",
            "unbond",
            "--validator",
            v1,
            "--amount",
            "0.00000001",
            "--key",
            &net.key,
            "--node",
            &url,
        ],
        "not_owner",
        "only the validator's owner may change its bond",
    );

    // In the set of its activation epoch, once that set is elected (the end of the epoch
    // before the activation's).
    let (set, status) = wait_for("the set of the activation epoch", || {
        let set = get_json(net.port, &format!("/validators?height={activation}"))?;
        Some((set, get_json(net.port, "/status")?))
    });
    assert_eq!(
        names(&set),
        ["validator1", "validator2", "validator3", "validator4"],
        "{set}"
    );
    let member = &set["validators"][3];
    assert_eq!(member["public_key"], v4.as_str());
    assert_eq!(member["owner"], net.address.as_str());
    // Elected at the end of the registration's epoch, from the bond as it stood then.
    let election = (height - 1) / EPOCH;
    let counted = |h: u64| {
        if (h - 1) / EPOCH == election {
            100_000_000
        } else {
            0
        }
    };
    let stake = bond + counted(finalized_at(&bonded)) - counted(at);
    assert_eq!(member["stake"], stake);
    assert_eq!(member["address"], "127.0.0.1:9004");
    assert_eq!(set["epoch"], (activation - 1) / EPOCH);
    // `/status` names it as the next set, or (read a block later) as the current one.
    let summary = &status["validator_set"];
    if summary["current"]["hash"] != set["set_hash"] {
        assert_eq!(summary["pending"]["next_hash"], set["set_hash"], "{status}");
        assert_eq!(summary["pending"]["joining"], 1, "{status}");
    } else {
        assert_eq!(summary["current"]["size"], 4, "{status}");
    }

    // Once the chain is in the epoch before the activation's last height, the epoch before
    // the current one comes from the store, checked against its header.
    wait_for("the last height before the activation", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(activation - 1))
    });
    let genesis_set = get_json(net.port, "/validators?height=1").unwrap();
    assert_eq!(genesis_set["size"], 3);
    let stored = get_json(net.port, &format!("/validators?height={}", EPOCH + 1)).unwrap();
    assert_eq!(stored["source"], "stored_block", "{stored}");
    assert_eq!(stored["set_hash"], genesis_set["set_hash"]);

    // The light client crosses the epochs from the genesis alone, the hand-over to the new set
    // proven by the certificate of the epoch's last height.
    let genesis = net.dir.path().join("validator1/genesis.json");
    let verified = timed(&[
        "verify",
        "--genesis",
        genesis.to_str().unwrap(),
        "--node",
        &url,
        "--height",
        &(activation - 1).to_string(),
    ]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let said = stdout(&verified);
    assert!(said.contains("1 set changes"), "{said}");
    assert!(
        said.contains(&format!("the set of height {activation} has 4 validators")),
        "{said}"
    );

    // Beyond the next epoch: refused with the range it can answer.
    let (code, body) = get(net.port, "/validators?height=1000000000000").unwrap();
    assert_eq!(code, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("beyond what this node can know"),
        "{e}"
    );
    let tip = e["tip"].as_u64().unwrap();
    assert_eq!(e["to_height"], (tip / EPOCH + 2) * EPOCH, "{e}");
}

#[test]
fn hostile_heights_and_dry_runs_get_a_short_refusal_and_the_node_stays_up() {
    let net = Devnet::start_with(1, &["--epoch-blocks", "5"]);
    wait_for("the devnet's first block", || {
        get_json(net.port, "/status").filter(|s| s["height"].as_u64() >= Some(1))
    });
    let long = "9".repeat(10_000);
    for (query, says) in [
        ("abc", "whole number"),
        ("-1", "whole number"),
        ("-99999999999999999999", "whole number"),
        ("1.5", "whole number"),
        ("", "whole number"),
        ("99999999999999999999", "out of range"),
        ("18446744073709551615", "beyond what this node can know"),
        ("0", "heights start at 1"),
        ("%ff%fe", "whole number"),
        (long.as_str(), "whole number"),
    ] {
        let (code, body) = get(net.port, &format!("/validators?height={query}"))
            .unwrap_or_else(|| panic!("no answer to {query:.30}"));
        assert_eq!(code, 400, "{query:.30}: {body}");
        assert!(body.len() < 512, "{query:.30}: a short answer: {body}");
        let e: Value = serde_json::from_str(&body).unwrap();
        assert!(
            e["error"].as_str().unwrap().contains(says),
            "{query:.30}: {e}"
        );
    }
    // A dry run of a registration beyond the transfer's bounds, and of something that is not a
    // staking operation: refused with the reason, never judged.
    let key = "ab".repeat(32);
    let post = |body: &str| {
        common::http(
            net.port,
            &format!(
                "POST /validators/check HTTP/1.0\r\nHost: localhost\r\nContent-Type: \
                 application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap()
    };
    let draft = |op: &str| {
        format!(r#"{{"from":"{key}","to":"{key}","amount":1,"fee":1,"nonce":0,"op":{op}}}"#)
    };
    let long = format!(
        r#"{{"register":{{"name":"{}","address":""}}}}"#,
        "n".repeat(5000)
    );
    let (code, body) = post(&draft(&long));
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("bad_registration"), "{body}");
    let (code, body) = post(&draft(r#""pay""#));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a staking operation"), "{body}");
    let (code, body) = post("{not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("malformed transfer"), "{body}");
    // Still up and answering.
    assert!(get_json(net.port, "/validators?height=1").is_some());
}

#[test]
fn the_help_of_each_command_explains_min_bond_epochs_and_unbonding() {
    for command in ["register", "bond", "unbond"] {
        let o = timed(&["validator", command, "--help"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let help = stdout(&o);
        for rule in [
            "at least min_bond",
            "a change made in epoch e signs from epoch e + 2",
            "after unbonding_blocks heights",
            "only the owner may bond or unbond",
        ] {
            assert!(help.contains(rule), "{command}: {rule:?} missing:\n{help}");
        }
    }
}

/// A staking transfer that passed the check but that its block refused (another transfer
/// before it changed the registry): the command says so, with the height and the fee paid,
/// and exits non-zero. The node is a fake that answers exactly that.
#[test]
fn a_staking_transfer_its_block_refused_is_reported_with_its_height() {
    use std::collections::HashMap;
    use timed_core::crypto::Keypair;
    use timed_core::tx::{Op, Transfer};
    use timed_core::types::Amount;

    let dir = tempfile::tempdir().unwrap();
    let owner_file = dir.path().join("owner.key");
    let seed = [7u8; 32];
    let owner = Keypair::from_seed(seed);
    std::fs::write(
        &owner_file,
        format!(
            r#"{{"public_key":"{}","secret_seed":"{}"}}"#,
            hex::encode(owner.public_key().0),
            hex::encode(seed)
        ),
    )
    .unwrap();
    let validator = Keypair::insecure_from_name("validator9").public_key();
    // What the command will sign: the same transfer, so the fake knows its hash.
    let tx = Transfer {
        from: owner.public_key(),
        to: validator,
        amount: Amount(5 * 100_000_000),
        fee: Amount(100_000),
        nonce: 3,
        op: Op::Bond,
    }
    .sign(&owner, "fake-chain");
    let hash = hex::encode(tx.hash().0);
    let mut pages: HashMap<String, Value> = HashMap::new();
    pages.insert(
        "/status".into(),
        serde_json::json!({ "chain_id": "fake-chain" }),
    );
    pages.insert(
        format!("/accounts/{}", hex::encode(owner.public_key().0)),
        serde_json::json!({ "balance": 100 * 100_000_000u64, "nonce": 3 }),
    );
    pages.insert(
        "/validators/check".into(),
        serde_json::json!({ "ok": true }),
    );
    pages.insert(
        "/tx".into(),
        serde_json::json!({ "hash": hash, "status": "pending" }),
    );
    pages.insert(
        format!("/tx/{hash}"),
        serde_json::json!({ "status": "finalized", "height": 12 }),
    );
    pages.insert(
        "/blocks/12".into(),
        serde_json::json!({ "outcome": { "staking_refused": [hash] } }),
    );
    let url = common::fake::fake_node(pages);
    let o = timed(&[
        "validator",
        "bond",
        "--validator",
        &hex::encode(validator.0),
        "--amount",
        "5",
        "--key",
        owner_file.to_str().unwrap(),
        "--node",
        &url,
    ]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "the bond was finalized at height 12 (transfer {hash}) but refused by the staking \
             rules there; its fee was paid"
        )),
        "{e}"
    );
}
