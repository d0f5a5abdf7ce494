//! Hostile surroundings: a key outside the genesis cannot connect; garbage datagrams and
//! malformed HTTP do not stop a node.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Net, free_port, get, get_json, http, metric, wait_for};

/// validator1 admits no followers (`--max-followers 0`, a validator behind sentries): its TLS
/// layer refuses any key outside the sets. The others admit followers (the default): their TLS
/// layer lets any key prove itself, and the hello refuses a stranger that is no validator and
/// runs no genesis of theirs. Either way it never becomes a peer.
#[test]
fn a_key_outside_the_genesis_cannot_connect() {
    let net = Net::start_first_with(3, "200ms", &["--max-followers", "0"]);
    net.wait_height(0, 2);
    // validator4 believes it belongs: it dials the three, whose genesis does not hold its key.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let peers: Vec<String> = (0..3)
        .map(|i| format!("localhost:{}", net.port(i)))
        .collect();
    let mut stranger = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["--validator-id", "validator4", "--port", &port.to_string()])
        .args(["--peers", &peers.join(","), "--stake", "100"])
        .args(["--block-time", "200ms", "--data-dir"])
        .arg(dir.path().join("v4"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let refused = |i: usize, reason: &str| {
        metric(
            net.port(i),
            &format!("timed_handshakes_refused_total{{reason=\"{reason}\"}}"),
        )
        .is_some_and(|n| n > 0.0)
    };
    wait_for(
        "validator1 to refuse the stranger at the TLS handshake, the others at the hello",
        || (refused(0, "tls") && refused(1, "hello") && refused(2, "hello")).then_some(()),
    );
    assert!(
        !refused(1, "tls"),
        "validator2 admits followers: TLS lets any key through"
    );
    let before = net.height(0);
    net.wait_height(0, before + 2);
    let s = get_json(port, "/status").expect("the stranger still answers");
    assert!(
        s["genesis_hash"].is_null(),
        "the stranger formed no genesis: {s}"
    );
    assert_eq!(s["peers"].as_array().unwrap().len(), 0);
    for i in 0..3 {
        let peers = net.status(i).unwrap()["peers"].clone();
        assert!(!peers.to_string().contains("validator4"), "{peers}");
    }
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn garbage_datagrams_and_malformed_http_do_not_stop_a_node() {
    let mut net = Net::start(3, "200ms");
    net.wait_height(0, 2);
    let port = net.port(0);

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..2000usize {
        let len = 1 + (i * 37) % 1400;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = udp.send_to(&bytes, ("127.0.0.1", port));
    }

    for raw in [
        "GARBAGE\r\n\r\n",
        "GET /blocks/notanumber HTTP/1.0\r\n\r\n",
        "GET /accounts/zz HTTP/1.0\r\n\r\n",
        "GET /tx/1234 HTTP/1.0\r\n\r\n",
        "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"from\":1",
        "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let _ = http(port, raw);
    }
    let (code, body) = get(port, "/blocks/notanumber").unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, _) = get(port, "/accounts/zz").unwrap();
    assert_eq!(code, 400);
    let (code, body) = http(
        port,
        "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    assert!((400..500).contains(&code), "{code} {body}");
    assert!(body.contains("error"), "{body}");

    // A half-open TCP connection that never finishes its request.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = idle.write_all(b"GET /sta");

    let before = net.height(0);
    net.wait_height(0, before + 3);
    assert!(net.alive(0), "{}", net.log(0));
}
