//! The HTTP API under abuse (issue 12, defect 4): heavy reads do not stop finalization, idle
//! connections beyond the descriptor limit do not kill a node, a slowloris client is cut off,
//! range answers are bounded in bytes and clients are rate-limited.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Net, get_json, metric, wait_for};
use serde_json::Value;

/// The head and body of the answer to a GET of `path` (HTTP/1.0: the server closes after it).
fn fetch(port: u16, path: &str) -> Option<(String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    Some((head, raw[split + 4..].to_vec()))
}

fn code(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The last lines of a log, for failure messages (a node at block time 0 logs a line a block).
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Node `i`'s height, asked until it answers (a rate-limited `/status` is asked again).
fn height_of(net: &Net, i: usize) -> u64 {
    wait_for(&format!("node {i} to answer /status"), || {
        net.status(i).and_then(|s| s["height"].as_u64())
    })
}

#[test]
fn two_clients_looping_over_blocks_do_not_stop_finalization() {
    // As fast as possible: a thousand blocks within seconds, a range of them is ~2 MB of JSON.
    let mut net = Net::start(3, "0");
    net.wait_height(0, 1000);
    let port = net.port(0);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let largest = Arc::new(AtomicUsize::new(0));
    let malformed = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered, largest, malformed) = (
                stop.clone(),
                answered.clone(),
                largest.clone(),
                malformed.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((head, body)) = fetch(port, "/blocks?from=1&limit=1000") else {
                        continue;
                    };
                    if code(&head) != 200 {
                        continue; // 429: the rate limit, also a defense
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    largest.fetch_max(body.len(), Ordering::Relaxed);
                    // Checked after the attack, so that it runs its whole course regardless.
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let len = v["blocks"].as_array().map_or(0, Vec::len) as u64;
                    if len == 0 || v["next_from"] != 1 + len {
                        malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = height_of(&net, 0);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let end = height_of(&net, 0);
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let answered = answered.load(Ordering::Relaxed);
    let largest = largest.load(Ordering::Relaxed);
    eprintln!(
        "under attack: {} heights in {:.1} s; {answered} ranges answered, the largest {largest} bytes",
        end - start,
        began.elapsed().as_secs_f64()
    );
    assert!(answered >= 2, "the attack ran: {answered} answers");
    // Nominally a few hundred heights in 6 s here; a consensus loop busy encoding JSON made
    // tens. Progress, not a ratio: the machine is shared.
    assert!(
        end >= start + 150,
        "node 1 finalized only {} heights in 6 s while two clients read ranges\n{}",
        end - start,
        tail(&net.log(0))
    );
    assert!(
        largest <= 4 * 1024 * 1024,
        "a range answer is bounded: {largest} bytes"
    );
    assert!(net.alive(0), "{}", tail(&net.log(0)));
    assert_eq!(
        malformed.load(Ordering::Relaxed),
        0,
        "every range is {{blocks, next_from, more}}"
    );
}

#[test]
fn idle_connections_beyond_the_descriptor_limit_do_not_kill_a_node() {
    // Node 1 may hold 256 descriptors (soft and hard): 400 idle connections would take them all.
    // Blocks as fast as possible, so that its WAL is rewritten (a new file) every few seconds.
    let mut net = Net::start_wrapped(
        3,
        "0",
        |_| Vec::new(),
        |i| {
            if i == 0 {
                vec!["prlimit".into(), "--nofile=256:256".into(), "--".into()]
            } else {
                Vec::new()
            }
        },
    );
    net.wait_height(0, 20);
    let port = net.port(0);
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1),
        ) {
            idle.push(s);
        }
    }
    // Long enough for two WAL rewrites on node 1 (one per 1,024 blocks), watched through node 2.
    let from = height_of(&net, 1);
    let began = Instant::now();
    while height_of(&net, 1) < from + 2500 {
        assert!(
            net.alive(0),
            "node 1 died with {} idle connections open\n{}",
            idle.len(),
            tail(&net.log(0))
        );
        assert!(
            began.elapsed() < common::DEADLINE,
            "the network did not finalize 2,500 heights in {:?}",
            common::DEADLINE
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(net.alive(0), "{}", tail(&net.log(0)));
    drop(idle);
    let back = wait_for("node 1 to answer /status again", || net.status(0));
    let h = back["height"].as_u64().unwrap();
    assert!(h >= from, "node 1 kept finalizing: {h} < {from}");
    net.wait_height(0, h + 100);
    assert!(net.alive(0), "{}", tail(&net.log(0)));
    let refused = metric(port, "timed_http_refused_total{reason=\"connection_cap\"}");
    assert!(
        refused.is_some_and(|n| n > 0.0),
        "connections beyond the cap were refused and counted: {refused:?}"
    );
}

#[test]
fn a_slowloris_client_is_disconnected() {
    // A lone node answers HTTP whether or not it finalizes.
    let net = Net::start(1, "100ms");
    wait_for("the node to answer", || net.status(0));
    let mut s = TcpStream::connect(("127.0.0.1", net.port(0))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let began = Instant::now();
    let head = b"GET /status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut sent = 0usize;
    let cut = loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).is_err() {
            break true;
        }
        sent += 1;
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break true, // an error status, then the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => {}
        }
        if began.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let took = began.elapsed();
    assert!(
        cut,
        "a client sending its head a byte at a time was still connected after {took:?} ({sent} bytes)"
    );
    // The default --http-idle-timeout is 10 s.
    assert!(took >= Duration::from_secs(5), "cut too early: {took:?}");
    assert!(get_json(net.port(0), "/status").is_some());
}

#[test]
fn ranges_are_bounded_in_bytes_and_clients_are_rate_limited() {
    let net = Net::start_with(3, "20ms", |_| {
        [
            "--http-max-response-bytes",
            "65536",
            "--http-rate-limit",
            "20",
        ]
        .map(String::from)
        .to_vec()
    });
    net.wait_height(0, 150);
    let port = net.port(0);
    let range = |from: u64| {
        wait_for("a range", || {
            let (head, body) = fetch(port, &format!("/blocks?from={from}&limit=1000"))?;
            (code(&head) == 200).then_some(body)
        })
    };
    let body = range(1);
    assert!(body.len() <= 65536, "{} bytes", body.len());
    let v: Value = serde_json::from_slice(&body).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert!(blocks.len() < 150, "the byte bound cut the range short");
    assert_eq!(v["more"], true, "{}", v["next_from"]);
    let next = v["next_from"].as_u64().unwrap();
    assert_eq!(next, blocks.last().unwrap()["height"].as_u64().unwrap() + 1);
    let more: Value = serde_json::from_slice(&range(next)).unwrap();
    assert_eq!(
        more["blocks"][0]["height"], next,
        "the range goes on where it said"
    );

    // 20 requests a second with bursts of 40: a hundred at once meet 429 with Retry-After.
    let mut limited = None;
    for _ in 0..100 {
        if let Some((head, _)) = fetch(port, "/status")
            && code(&head) == 429
        {
            limited = Some(head);
            break;
        }
    }
    let head = limited.expect("a hundred requests at once are rate-limited");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
}

/// One client on keep-alive connections, as fast as it can: the codes of the answers to a GET
/// of `path` until `stop` (a connection the server closes is opened again).
fn hammer(port: u16, path: &str, stop: &AtomicBool) -> Vec<(u16, String)> {
    let mut codes = Vec::new();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(request.as_bytes()).is_err() {
                break;
            }
            // The head, then the body by its length.
            let head_end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let Some(head_end) = head_end else { break };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            if buf.len() < head_end + length {
                break;
            }
            let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
            codes.push((code(&head), body));
            buf.drain(..head_end + length);
        }
    }
    codes
}

/// A crowd asking for account proofs (computed on the consensus loop) meets one budget for all
/// clients: the per-client limit is off here, as it would be for a thousand addresses. Before the
/// budget, eight clients had every proof answered, as many as they could ask.
#[test]
fn a_crowd_asking_for_account_proofs_meets_one_budget_and_finalization_goes_on() {
    let net = Net::start_first_with(3, "0", &["--http-rate-limit", "0"]);
    net.wait_height(0, 100);
    let port = net.port(0);
    let status = net.status(0).expect("node 1 answers");
    let account = status["validators"][0]["public_key"]
        .as_str()
        .expect("a validator key")
        .to_string();
    let path = format!("/accounts/{account}?proof=true");
    let stop = Arc::new(AtomicBool::new(false));
    let crowd: Vec<_> = (0..8)
        .map(|_| {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || hammer(port, &path, &stop))
        })
        .collect();
    let start = height_of(&net, 0);
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<(u16, String)> = crowd.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let seconds = began.elapsed().as_secs_f64();
    let end = height_of(&net, 0);
    let proven = answers.iter().filter(|(c, _)| *c == 200).count();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(c, _)| *c == 503)
        .map(|(_, body)| body)
        .collect();
    eprintln!(
        "{} answers in {seconds:.1} s: {proven} proofs, {} refused; {} heights meanwhile",
        answers.len(),
        refused.len(),
        end - start
    );
    // Two seconds' burst, then a thousand a second (and the seconds the last answers took).
    let budget = 2_000.0 + 1_000.0 * (seconds + 1.0);
    assert!(
        (proven as f64) <= budget,
        "{proven} proofs in {seconds:.1} s: over the budget of {budget}"
    );
    assert!(proven > 0, "proofs were answered within the budget");
    let first = refused.first().expect("the crowd met the budget");
    assert!(
        first.contains("limited to 1000 a second on this node"),
        "{first}"
    );
    assert!(
        end >= start + 100,
        "node 1 finalized only {} heights in 4 s under the crowd\n{}",
        end - start,
        tail(&net.log(0))
    );
}
