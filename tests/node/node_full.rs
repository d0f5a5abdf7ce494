//! Full nodes between real `timed` processes (issue 15): `timed run --full-node` follows a
//! devnet, and a second full node follows the first; both serve the validators' blocks and
//! accounts, and a transfer submitted to the second reaches the validators and is tracked until
//! final. Followers that misbehave (a vote, a frame that does not decode, a flood of sync
//! requests) are dropped or held to their budget, and the chain goes on. An upstream that lies
//! (far claims, swapped bodies) is refused and the full node keeps up through an honest one.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::cli::{stderr, stdout, timed};
use common::devnet::Devnet;
use common::full::{FullNode, height};
use common::{get_json, metric, wait_for};
use serde_json::Value;
use timed::wire::{self, HELLO_VERSION, Hello, HelloGenesis, HelloReply};
use timed_core::codec;
use timed_core::crypto::Keypair;
use timed_core::message::Message;
use timed_core::types::{Height, Round, Stake, ValidatorIndex};
use timed_core::validators::Genesis;
use timed_core::vote::{Vote, VoteKind};

fn wait_height(port: u16, h: u64) {
    wait_for(
        &format!("the node on port {port} to reach height {h}"),
        || (height(port) >= h).then_some(()),
    );
}

/// The devnet's genesis, once its validators fixed it.
fn genesis_of(net: &Devnet) -> PathBuf {
    let path = net.dir.path().join("validator1").join("genesis.json");
    wait_for("the devnet's genesis file", || path.exists().then_some(()));
    path
}

/// The block of `h` as a node serves it: the block itself and its hash (the certificate may
/// differ: a validator extends its own with late precommits).
fn block(port: u16, h: u64) -> (Value, Value) {
    let b = get_json(port, &format!("/blocks/{h}")).expect("the block is served");
    (b["block"].clone(), b["hash"].clone())
}

#[test]
fn a_full_node_and_one_that_follows_it_serve_the_validators_chain_and_forward_a_transfer() {
    let net = Devnet::start(3);
    let genesis = genesis_of(&net);
    let dir = tempfile::tempdir().unwrap();
    let a = FullNode::start(&genesis, dir.path(), "full-a", &net.ports[..2], &[]);
    wait_for("full node A to follow", || (a.height() >= 1).then_some(()));
    let b = FullNode::start(&genesis, dir.path(), "full-b", &[a.port], &[]);
    wait_height(b.port, 10);

    // The same blocks, 1 to 10, from a validator, from A and from B.
    for h in 1..=10 {
        let v = block(net.port, h);
        assert_eq!(block(a.port, h), v, "full node A, height {h}");
        assert_eq!(block(b.port, h), v, "full node B, height {h}");
    }
    let status = get_json(b.port, "/status").unwrap();
    assert_eq!(status["role"], "full_node", "{status}");
    assert_eq!(status["following"].as_array().map(Vec::len), Some(1));
    let status = get_json(a.port, "/status").unwrap();
    let connected: Vec<&str> = status["validators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["connected"] == true)
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        connected,
        ["validator1", "validator2"],
        "A follows those two: {status}"
    );
    let status = get_json(a.port, "/status").unwrap();
    assert_eq!(
        status["followers"].as_array().map(Vec::len),
        Some(1),
        "A serves B: {status}"
    );

    // A transfer submitted to B: forwarded to A, then to the validators, and tracked by B's
    // wallet command until final.
    let bob = Keypair::from_seed([42; 32]).public_key();
    let bob = hex::encode(bob.0);
    let url = format!("http://127.0.0.1:{}", b.port);
    let sent = timed(&[
        "wallet", "send", "--key", &net.key, "--to", &bob, "--amount", "2.5", "--fee", "0.001",
        "--node", &url,
    ]);
    assert!(
        sent.status.success(),
        "{}\n{}",
        stderr(&sent),
        b.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stdout(&sent).contains("finalized at height"),
        "{}",
        stdout(&sent)
    );
    // Its accounts, as the validator, A and B serve them once all three hold the block.
    let top = height(b.port);
    for port in [net.port, a.port] {
        wait_height(port, top);
    }
    for who in [&bob, &net.address] {
        let on = |port| get_json(port, &format!("/accounts/{who}")).unwrap();
        let v = on(net.port);
        assert_eq!(on(a.port), v, "A's account {who}");
        assert_eq!(on(b.port), v, "B's account {who}");
    }
    assert_eq!(
        get_json(b.port, &format!("/accounts/{bob}")).unwrap()["balance"],
        250_000_000u64
    );
    assert!(!a.log().contains("panicked") && !b.log().contains("panicked"));
}

/// Writes the hello of a node that is no validator: `key`, `name`, the chain's genesis.
async fn say_hello(send: &mut quinn::SendStream, key: &Keypair, name: &str, genesis: &Genesis) {
    let hello = Hello {
        version: HELLO_VERSION,
        name: name.to_string(),
        public_key: key.public_key(),
        stake: Stake(0),
        block_time_ms: genesis.params.block_time_ms,
        genesis: Some(HelloGenesis::of(genesis, genesis.hash())),
    };
    wire::write_frame(send, &wire::encode_hello(&HelloReply::Welcome(hello)))
        .await
        .unwrap();
}

/// A raw follower: a QUIC client with a key of its own that says hello with the genesis.
struct Follower {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

impl Follower {
    async fn connect(port: u16, genesis: &Genesis, seed: u8) -> Follower {
        let key = Keypair::from_seed([seed; 32]);
        let (_, client) = timed::tls::quic_configs(&key, timed::tls::PeerPolicy::new(true))
            .expect("QUIC configuration");
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let conn = endpoint
            .connect(addr, timed::tls::SERVER_NAME)
            .unwrap()
            .await
            .expect("TLS admits a follower's key");
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        say_hello(&mut send, &key, &format!("follower{seed}"), genesis).await;
        match wire::read_hello(&mut recv).await {
            Ok(Some(HelloReply::Welcome(_))) => {}
            other => panic!("the validator refused a follower: {other:?}"),
        }
        Follower {
            conn,
            send,
            recv,
            _endpoint: endpoint,
        }
    }

    async fn send(&mut self, msg: &Message) {
        let _ = wire::write_frame(&mut self.send, &codec::encode_message(msg)).await;
    }

    /// The next message the node sends, within `secs`; `None` when the link ends first.
    async fn next(&mut self, secs: u64) -> Option<Message> {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(secs),
            wire::read_frame(&mut self.recv, &mut buf, wire::MAX_FRAME_BYTES),
        )
        .await
        .expect("the node neither sent nor closed within the time given");
        match read {
            Ok(true) => Some(codec::decode_message(&buf).expect("the node sends messages")),
            _ => None,
        }
    }

    /// Reads until the node closes the link; panics after `secs`.
    async fn until_closed(&mut self, secs: u64) {
        while self.next(secs).await.is_some() {}
        assert!(self.conn.close_reason().is_some());
    }
}

#[test]
fn followers_that_send_votes_junk_or_floods_are_dropped_or_held_to_their_budget() {
    let net = Devnet::start(3);
    let genesis: Genesis =
        serde_json::from_str(&std::fs::read_to_string(genesis_of(&net)).unwrap()).unwrap();
    wait_height(net.port, 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dropped = |reason: &str| {
        metric(
            net.port,
            &format!("timed_followers_dropped_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(-1.0)
    };
    rt.block_on(async {
        // An honest follower: pushed every new block, answered when it asks for old ones.
        let mut honest = Follower::connect(net.port, &genesis, 1).await;
        let pushed = loop {
            match honest.next(5).await {
                Some(Message::Decision(d)) => break d.block.height(),
                Some(_) => {}
                None => panic!("the link closed"),
            }
        };
        honest
            .send(&Message::SyncRequest {
                from: Height(1),
                max_blocks: 3,
            })
            .await;
        let answer = loop {
            match honest.next(5).await {
                Some(Message::SyncResponse { blocks }) => break blocks,
                Some(_) => {}
                None => panic!("the link closed"),
            }
        };
        let heights: Vec<u64> = answer.iter().map(|d| d.block.height().0).collect();
        assert_eq!(heights, [1, 2, 3], "pushed up to {pushed}");

        // A follower that votes: a vote signed by a key of no validator, and one that claims to
        // be validator 0's. Either way it is not a follower's to send.
        let mut voter = Follower::connect(net.port, &genesis, 2).await;
        let key = Keypair::from_seed([2; 32]);
        let vote = Vote::sign(
            &key,
            &genesis.chain_id,
            pushed.next(),
            Round(0),
            VoteKind::Prepare,
            None,
            ValidatorIndex(0),
        );
        voter.send(&Message::Vote(vote)).await;
        voter.until_closed(5).await;

        // A follower that sends a frame that does not decode.
        let mut junk = Follower::connect(net.port, &genesis, 3).await;
        let _ = wire::write_frame(&mut junk.send, b"\xff\xffnot a message").await;
        junk.until_closed(5).await;

        // A follower that floods sync requests: held to its budget, not dropped.
        let mut flood = Follower::connect(net.port, &genesis, 4).await;
        for _ in 0..2_000 {
            flood
                .send(&Message::SyncRequest {
                    from: Height(1),
                    max_blocks: 1,
                })
                .await;
        }
        // What it is sent within 3 s (the pushes of new blocks go on for ever).
        let mut answers = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, flood.next(10)).await {
            if matches!(msg, Message::SyncResponse { .. }) {
                answers += 1;
            }
        }
        assert!(
            (16..2_000).contains(&answers),
            "{answers} answers to 2,000 requests sent at once"
        );
        assert!(
            flood.conn.close_reason().is_none(),
            "a flood is not a fault"
        );
        // The honest follower is still served.
        assert!(honest.next(5).await.is_some());
    });
    assert_eq!(dropped("not_a_followers_message"), 1.0);
    assert_eq!(dropped("undecodable"), 1.0);
    assert!(
        metric(
            net.port,
            "timed_follower_requests_limited_total{kind=\"sync\"}"
        )
        .unwrap_or(0.0)
            > 0.0
    );
    // Nothing reached consensus: the chain goes on, no validator was blamed.
    let h = height(net.port);
    wait_height(net.port, h + 5);
    assert_eq!(
        get_json(net.port, "/status").unwrap()["evidence"],
        0,
        "a follower's vote is no evidence against validator 0"
    );
}

/// The lying upstream of `a_full_node_with_a_lying_upstream_...`: it accepts the full node's
/// connection on `endpoint`, relays the blocks validator `port` pushes with a copy of each
/// renumbered a million heights ahead (a far claim, under a certificate that cannot hold), and
/// answers each sync request with the validator's own answer, a transfer added to every block's
/// body (the certificate covers the header only), for `secs` seconds. Returns how many far
/// claims it pushed and how many answers it spoilt.
async fn lie(
    endpoint: &quinn::Endpoint,
    liar_key: &Keypair,
    genesis: &Genesis,
    port: u16,
    secs: u64,
) -> (u64, u64) {
    let conn = tokio::time::timeout(Duration::from_secs(20), async {
        endpoint.accept().await.unwrap().await.unwrap()
    })
    .await
    .expect("the full node dials the liar");
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    let _ = wire::read_hello(&mut recv).await.unwrap();
    say_hello(&mut send, liar_key, "liar", genesis).await;
    // The full node's requests, and the validator's messages, each read by a task of its
    // own (a frame read is not cancel-safe).
    let (asks_tx, mut asks) = tokio::sync::mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(true) = wire::read_frame(&mut recv, &mut buf, wire::MAX_FRAME_BYTES).await {
            if let Ok(m) = codec::decode_message(&buf) {
                let _ = asks_tx.send(m).await;
            }
        }
    });
    let Follower {
        send: mut upstream,
        recv: mut from_validator,
        conn: _source,
        _endpoint,
    } = Follower::connect(port, genesis, 67).await;
    let (news_tx, mut news) = tokio::sync::mpsc::channel::<Message>(256);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(true) =
            wire::read_frame(&mut from_validator, &mut buf, wire::MAX_FRAME_BYTES).await
        {
            if let Ok(m) = codec::decode_message(&buf) {
                let _ = news_tx.send(m).await;
            }
        }
    });
    let payer = Keypair::from_seed([68; 32]);
    let mut nonce = 0;
    let mut swap = |d: &mut timed_core::message::Decision| {
        nonce += 1;
        d.block.txs.push(
            timed_core::tx::Transfer {
                from: payer.public_key(),
                to: liar_key.public_key(),
                amount: timed_core::types::Amount(1),
                fee: timed_core::types::Amount(1),
                nonce,
                op: Default::default(),
            }
            .sign(&payer, &genesis.chain_id),
        );
    };
    let (mut pushed, mut answered) = (0u64, 0u64);
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let lie = tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            ask = asks.recv() => match ask {
                // Asked on to the validator: its answer comes back below, and is spoilt.
                Some(ask @ Message::SyncRequest { .. }) => {
                    let _ = wire::write_frame(&mut upstream, &codec::encode_message(&ask)).await;
                    continue;
                }
                Some(_) => continue,
                None => panic!("the full node dropped the liar's link"),
            },
            news = news.recv() => match news {
                Some(Message::Decision(mut far)) => {
                    far.block.header.height = Height(far.block.header.height.0 + 1_000_000);
                    pushed += 1;
                    Message::Decision(far)
                }
                Some(Message::SyncResponse { mut blocks }) => {
                    blocks.iter_mut().for_each(&mut swap);
                    answered += 1;
                    Message::SyncResponse { blocks }
                }
                Some(_) => continue,
                None => panic!("the validator dropped the liar's follower link"),
            },
        };
        let _ = wire::write_frame(&mut send, &codec::encode_message(&lie)).await;
    }
    (pushed, answered)
}

/// The adversary of the follow rule (`timed_core::follow`). First the full node has only the
/// liar to follow: every answer it gets is refused (body against header), and it stays at height
/// 0. Restarted with the liar first and an honest validator second, it turns to the validator
/// for what it lacks, keeps up with it and serves its blocks.
#[test]
fn a_full_node_with_a_lying_upstream_keeps_up_through_the_honest_one() {
    let net = Devnet::start(3);
    let genesis_path = genesis_of(&net);
    let genesis: Genesis =
        serde_json::from_str(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    // Far enough that the full node must ask for blocks, not only take the pushes.
    wait_height(net.port, 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let liar_key = Keypair::from_seed([66; 32]);
    let (server, _) = timed::tls::quic_configs(&liar_key, timed::tls::PeerPolicy::new(true))
        .expect("QUIC configuration");
    let endpoint = rt.block_on(async {
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap()
    });
    let liar = endpoint.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let rejected = |port: u16| {
        metric(
            port,
            "timed_rejected_total{kind=\"decision\",reason=\"body_mismatch\"}",
        )
        .unwrap_or(0.0)
    };

    // The liar alone: nothing it says is taken.
    let full = FullNode::start(&genesis_path, dir.path(), "full", &[liar], &[]);
    let (pushed, answered) = rt.block_on(lie(&endpoint, &liar_key, &genesis, net.port, 4));
    assert!(pushed > 5, "{pushed} far claims pushed");
    assert!(answered > 0, "the full node asked its only upstream");
    assert_eq!(full.height(), 0, "{}", full.log());
    assert!(rejected(full.port) > 0.0, "{}", full.log());
    drop(full);

    // The liar first (it is asked first while the two tie), and an honest validator.
    let full = FullNode::start(
        &genesis_path,
        dir.path(),
        "full",
        &[liar, net.ports[0]],
        &[],
    );
    let (pushed, _) = rt.block_on(lie(&endpoint, &liar_key, &genesis, net.port, 10));
    assert!(pushed > 20, "{pushed} far claims pushed");
    let (h, top) = (full.height(), height(net.port));
    assert!(
        h + 10 >= top,
        "the full node is at {h}, the validator at {top}"
    );
    for at in [1, h / 2, h] {
        assert_eq!(block(full.port, at), block(net.port, at), "height {at}");
    }
}
