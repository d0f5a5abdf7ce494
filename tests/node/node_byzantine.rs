//! A Byzantine validator attacks real `timed` processes over QUIC (`byzantine/`): three honest
//! development validators (stake 100 each) and a fourth, the adversary, with the fourth's real
//! key (stake 100: a quarter, under the third BFT tolerates). It is `validator0`, so index 0 of
//! the genesis: the first peer a node that falls behind asks for blocks.
//!
//! Each test checks that the honest nodes keep finalizing (a clear gain in height within a
//! generous deadline), finalize one chain (the same hash at every height on every node), none
//! exits, their resident memory stays bounded, and that the attacks were seen: the adversary
//! completed its handshakes and sent what it counts, and the honest nodes report what they
//! refused (`/metrics`) and the equivocations they proved (`/status`).
//!
//! A message no honest validator can send (a forged signature or certificate, a swapped body)
//! makes a node cut the adversary off for 30 s (ADR 0025): the tests that need it connected
//! keep it from forging, and two tests show the cut-off and the per-peer budget of signature
//! checks at work.

mod byzantine;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use byzantine::{Adversary, Attacks, Counts};
use common::{Net, free_port, get, http, wait_for};
use timed_core::crypto::Keypair;
use timed_core::tx::Transfer;
use timed_core::types::Amount;

const BLOCK_TIME_MS: u64 = 200;
const HONEST: usize = 3;
const ALL: [usize; HONEST] = [0, 1, 2];
/// How long the attacks run at least.
const ATTACK: Duration = Duration::from_secs(15);

/// Three honest validators whose `--peers` include the adversary's port, `alice` funded, and
/// the adversary taking part in forming the genesis, its attacks still off; transfers flowing.
/// Returns once every honest node finalized height 5.
fn start() -> (Net, Adversary, Transfers) {
    let port = free_port();
    let alice = Keypair::insecure_from_name("alice");
    let fund = format!("{}:{}", hex::encode(alice.public_key().0), u64::MAX / 4);
    let bt: u64 = std::env::var("BT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BLOCK_TIME_MS);
    let net = Net::start_with(HONEST, &format!("{bt}ms"), |_| {
        vec![
            "--peers".into(),
            format!("localhost:{port}"),
            "--fund".into(),
            fund.clone(),
        ]
    });
    let honest: Vec<u16> = (0..HONEST).map(|i| net.port(i)).collect();
    let adversary = Adversary::start("validator0", port, bt, &honest);
    wait_all(&net, &ALL, 3);
    wait_for("the adversary's connections to every honest node", || {
        (adversary.connected() == HONEST).then_some(())
    });
    let c = adversary.counts();
    assert!(
        c.handshakes_out >= HONEST as u64 && c.handshakes_in >= HONEST as u64,
        "{c:?}"
    );
    let transfers = Transfers::start(net.port(0));
    wait_all(&net, &ALL, 5);
    (net, adversary, transfers)
}

/// Transfers from `alice`, one every 100 ms to the first honest node, until dropped: the
/// proposals and decisions the adversary forwards carry bodies to swap.
struct Transfers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Transfers {
    fn start(port: u16) -> Transfers {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let alice = Keypair::insecure_from_name("alice");
            let bob = Keypair::insecure_from_name("bob").public_key();
            let mut accepted = 0;
            for nonce in 0.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let tx = Transfer {
                    from: alice.public_key(),
                    to: bob,
                    amount: Amount(1000),
                    fee: Amount(10),
                    nonce,
                    op: Default::default(),
                }
                .sign(&alice, "timed-devnet");
                let body = serde_json::to_string(&tx).unwrap();
                let request = format!(
                    "POST /tx HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if http(port, &request).is_some_and(|(code, _)| code == 202) {
                    accepted += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            accepted
        });
        Transfers {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Resident memory of node `i`'s process, in KiB.
fn rss_kib(net: &Net, i: usize) -> u64 {
    let pid = net.nodes[i].child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn assert_memory_bounded(net: &Net, i: usize, before_kib: u64) {
    let after = rss_kib(net, i);
    assert!(
        after < 2 * before_kib + 50 * 1024,
        "{}: resident memory grew from {before_kib} KiB to {after} KiB",
        net.nodes[i].name
    );
    eprintln!("{}: RSS {before_kib} KiB -> {after} KiB", net.nodes[i].name);
}

fn min_height(net: &Net, nodes: &[usize]) -> u64 {
    nodes.iter().map(|&i| net.height(i)).min().unwrap_or(0)
}

/// Waits until every node of `nodes` has finalized `target`.
fn wait_all(net: &Net, nodes: &[usize], target: u64) {
    for &i in nodes {
        net.wait_height(i, target);
    }
}

/// The same block at every height up to the lowest node's, on every node; some of them carry
/// transfers.
fn assert_one_chain(net: &Net) -> u64 {
    let top = min_height(net, &ALL);
    let mut with_txs = 0;
    for h in 1..=top {
        let blocks: Vec<serde_json::Value> = (0..HONEST)
            .map(|i| {
                net.block(i, h)
                    .unwrap_or_else(|| panic!("block {h} on node {i}"))
            })
            .collect();
        for b in &blocks[1..] {
            assert_eq!(b["hash"], blocks[0]["hash"], "two blocks at height {h}");
        }
        if blocks[0]["block"]["txs"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            with_txs += 1;
        }
    }
    assert!(with_txs > 0, "no finalized block carried a transfer");
    top
}

fn assert_alive(net: &mut Net) {
    for i in 0..HONEST {
        assert!(net.alive(i), "{} exited: {}", net.nodes[i].name, net.log(i));
    }
}

/// The value of the counter of `/metrics` whose line starts with `series` (0 if absent).
fn metric(net: &Net, i: usize, series: &str) -> u64 {
    let text = get(net.port(i), "/metrics")
        .map(|r| r.1)
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn rejected(net: &Net, i: usize, kind: &str, reason: &str) -> u64 {
    metric(
        net,
        i,
        &format!("timed_rejected_total{{kind=\"{kind}\",reason=\"{reason}\"}}"),
    )
}

/// Lets the attacks run for `ATTACK` at least, and until every node of `nodes` has gained
/// `gain` heights over `from`; checks every second that none exited.
fn attack_until(net: &mut Net, nodes: &[usize], from: u64, gain: u64) {
    let start = Instant::now();
    wait_for(&format!("a gain of {gain} heights under attack"), || {
        std::thread::sleep(Duration::from_millis(900));
        assert_alive(net);
        (start.elapsed() >= ATTACK && min_height(net, nodes) >= from + gain).then_some(())
    });
}

fn report(net: &Net, c: &Counts) {
    eprintln!("adversary: {c:?}");
    for i in 0..HONEST {
        let text = get(net.port(i), "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        // Every series exists from the start: the ones at 0 say nothing here.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("timed_rejected_total")
                    || l.starts_with("timed_frames_dropped")
                    || l.starts_with("timed_evidence")
                    || l.starts_with("timed_handshakes_refused")
                    || l.starts_with("timed_peer_faults")
            })
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        eprintln!(
            "{} at height {}: {}",
            net.nodes[i].name,
            net.height(i),
            lines.join("; ")
        );
    }
}

/// Every attack at once, first those that prove nothing by themselves (the adversary stays
/// connected, and each attack meets its refusal), then the forgeries too: each honest node cuts
/// the adversary off at its first, and all go on finalizing one chain.
#[test]
fn every_attack_at_once_leaves_the_honest_validators_finalizing_one_chain() {
    let (mut net, adversary, transfers) = start();
    let rss: Vec<u64> = (0..HONEST).map(|i| rss_kib(&net, i)).collect();
    let from = min_height(&net, &ALL);

    adversary.set(Attacks {
        forge_certificates: false,
        forge_signatures: false,
        swap_bodies: false,
        ..Attacks::all()
    });
    attack_until(&mut net, &ALL, from, 10);
    let c = adversary.counts();
    report(&net, &c);
    assert_alive(&mut net);
    let top = assert_one_chain(&net);
    assert!(top >= from + 10, "height {top}, attack from {from}");
    // What the adversary did.
    assert!(c.received >= 100 && c.sent >= 1000, "{c:?}");
    assert!(c.equivocations >= 10 && c.double_proposals >= 1, "{c:?}");
    assert!(c.far >= 1000, "{c:?}");
    assert!(c.sync_requests >= 100, "{c:?}");
    assert!(c.garbage >= 100 && c.replays >= 1000, "{c:?}");
    // What every honest node saw of it.
    for i in 0..HONEST {
        let name = &net.nodes[i].name;
        let evidence = net.status(i).unwrap()["evidence"].as_u64().unwrap_or(0);
        assert!(evidence > 0, "{name} proved no equivocation");
        // Every attack has its refusal: votes and proposals rounds ahead, votes of no validator,
        // bursts of sync requests.
        for (kind, reason) in [
            ("prepare", "round_too_far"),
            ("proposal", "round_too_far"),
            ("prepare", "unknown_validator"),
            ("sync_request", "rate_limited"),
        ] {
            assert!(
                rejected(&net, i, kind, reason) > 0,
                "{name} refused no {kind} as {reason}"
            );
        }
        let undecodable = "timed_frames_dropped_total{reason=\"undecodable\"}";
        assert!(
            metric(&net, i, undecodable) > 0,
            "{name} dropped no garbage"
        );
    }

    // Now the honest nodes' blocks forwarded with swapped bodies: a fault no signature shows,
    // which cuts the adversary off too; then everything (it is cut off; it forges at once
    // whenever it gets back in).
    let from = min_height(&net, &ALL);
    adversary.set(Attacks {
        swap_bodies: true,
        ..Attacks::default()
    });
    // A swapped copy is refused as `body_mismatch` by the core, or, by the runtime's
    // signature pre-check, as `bad_signature` (seen on two of three nodes since session 11,
    // at `231f99a` too: the swapped proposal's pre-check fails there, which is unexplained):
    // either is a fault no honest validator commits, and cuts the adversary off.
    wait_for("every honest node to cut the body swapper off", || {
        ALL.iter()
            .all(|&i| {
                [
                    "timed_peer_faults_total{kind=\"proposal\",reason=\"body_mismatch\"}",
                    "timed_peer_faults_total{kind=\"decision\",reason=\"body_mismatch\"}",
                    "timed_peer_faults_total{kind=\"proposal\",reason=\"bad_signature\"}",
                ]
                .iter()
                .map(|series| metric(&net, i, series))
                .sum::<u64>()
                    > 0
            })
            .then_some(())
    });
    adversary.set(Attacks::all());
    attack_until(&mut net, &ALL, from, 5);
    let (c, accepted) = stop_and_check(&mut net, &adversary, transfers, from, 5);
    assert!(accepted > 0, "no transfer was accepted");
    for (i, before) in rss.iter().enumerate() {
        assert_memory_bounded(&net, i, *before);
    }
    assert!(c.swapped >= 1, "{c:?}");
}

/// Ends the attacks and the transfers, reports, and checks that every honest node is alive and
/// on one chain at least `gain` heights over `from`. Returns what the adversary did and how many
/// transfers were accepted.
fn stop_and_check(
    net: &mut Net,
    adversary: &Adversary,
    transfers: Transfers,
    from: u64,
    gain: u64,
) -> (Counts, u64) {
    adversary.set(Attacks::default());
    let accepted = transfers.stop();
    let c = adversary.counts();
    report(net, &c);
    assert_alive(net);
    let top = assert_one_chain(net);
    assert!(top >= from + gain, "height {top}, attack from {from}");
    // Only the adversary was ever cut off: no honest message looks forged.
    for i in 0..HONEST {
        let log = net.log(i);
        let all = log.matches("Cutting off ").count();
        assert_eq!(all, log.matches("Cutting off validator0 ").count(), "{log}");
    }
    (c, accepted)
}

/// Messages of node `i`'s peers that proved them faulty (`timed_peer_faults_total`, any kind).
fn faults(net: &Net, i: usize) -> u64 {
    metric(net, i, "timed_peer_faults_total")
}

/// The warnings of node `i` that it cut the adversary (`validator0`) off.
fn cut_off_warnings(net: &Net, i: usize) -> usize {
    net.log(i)
        .matches("Cutting off validator0 for 30 s")
        .count()
}

/// The adversary sends votes and proposals of the honest tip with one signature byte flipped:
/// each honest node cuts it off at the first (one warning naming it, the metric), closes its
/// links and refuses them for 30 s, and the honest three finalize one chain without it.
#[test]
fn a_forger_is_cut_off_and_the_others_finalize_one_chain() {
    let (mut net, adversary, transfers) = start();
    let from = min_height(&net, &ALL);
    adversary.set(Attacks {
        forge_signatures: true,
        ..Attacks::default()
    });
    wait_for("every honest node to cut the forger off", || {
        ALL.iter().all(|&i| faults(&net, i) > 0).then_some(())
    });
    let cut = Instant::now();
    // Its links close, and its dialers are refused while it cools off.
    wait_for("the forger to hold no connection", || {
        (adversary.connected() == 0).then_some(())
    });
    attack_until(&mut net, &ALL, from, 5);
    let still_cut = adversary.connected() == 0;
    let within = cut.elapsed() < Duration::from_secs(28);
    let (c, _) = stop_and_check(&mut net, &adversary, transfers, from, 5);
    // It really forged, and kept trying to reconnect.
    assert!(c.forged >= 10, "{c:?}");
    if within {
        assert!(still_cut, "the forger reconnected within its cool-off");
    }
    for i in 0..HONEST {
        let name = &net.nodes[i].name;
        let forged = rejected(&net, i, "prepare", "bad_signature")
            + rejected(&net, i, "proposal", "bad_signature");
        assert!(forged > 0, "{name} refused no forged signature");
        let warnings = cut_off_warnings(&net, i);
        assert!(
            warnings >= 1 && (!within || warnings == 1),
            "{name} warned {warnings} times of the cut-off:\n{}",
            net.log(i)
        );
    }
}

/// The adversary floods distinct far-round prepares, each validly signed (3,000 a second to
/// each node): each node checks what the adversary's budget allows, drops the rest unchecked
/// and counted, does not cut it off (nothing forged), and the chain goes on.
#[test]
fn a_flood_of_valid_votes_is_checked_within_its_budget_and_the_rest_dropped() {
    let (mut net, adversary, transfers) = start();
    let from = min_height(&net, &ALL);
    adversary.set(Attacks {
        flood_per_tick: 150,
        ..Attacks::default()
    });
    attack_until(&mut net, &ALL, from, 5);
    let (c, _) = stop_and_check(&mut net, &adversary, transfers, from, 5);
    assert!(c.flooded >= 20_000, "{c:?}");
    assert_eq!(adversary.connected(), HONEST, "a valid flood is no fault");
    let over = "timed_frames_dropped_total{reason=\"verify_budget\"}";
    for i in 0..HONEST {
        let name = &net.nodes[i].name;
        assert!(
            metric(&net, i, over) > 1000,
            "{name} dropped nothing over budget"
        );
        assert!(
            rejected(&net, i, "prepare", "round_too_far") > 0,
            "{name} checked none of the flood"
        );
        assert_eq!(faults(&net, i), 0, "{name} took a valid flood for a fault");
    }
}

/// One honest validator is down while the adversary backs the other two (their quorum needs
/// it), and lies to whoever asks it for blocks; the third comes back behind, asks the adversary
/// first (index 0), and must still catch up from the honest ones.
#[test]
fn a_validator_catching_up_past_a_sync_liar_rejoins_the_one_chain() {
    let (mut net, adversary, transfers) = start();
    let rss: Vec<u64> = (0..2).map(|i| rss_kib(&net, i)).collect();
    // Nothing forged unasked: a forgery would make the two honest nodes up cut off the vote
    // their quorum needs. The lies come to whoever asks for blocks.
    adversary.set(Attacks {
        support: true,
        far_future: true,
        lie_in_sync: true,
        garbage: true,
        ..Attacks::default()
    });

    // Whom a restarted node asks first depends on which claims reach it first: on a busy
    // machine the honest ones may win the race. It comes back behind until it has asked the liar
    // (three times at most), so that the test shows a catch-up past a lie, not around one.
    for _ in 0..3 {
        net.stop(2, "-KILL");
        let stopped = net.height(0);
        wait_all(&net, &[0, 1], stopped + 6);
        net.spawn(2);
        let target = net.height(0);
        net.wait_height(2, target);
        let c = adversary.counts();
        if c.sync_asked >= 1 && c.sync_lies >= 1 {
            break;
        }
    }
    let from = min_height(&net, &ALL);
    attack_until(&mut net, &ALL, from, 3);
    adversary.set(Attacks::default());
    transfers.stop();
    let c = adversary.counts();
    report(&net, &c);

    assert_alive(&mut net);
    assert_one_chain(&net);
    for (i, before) in rss.iter().enumerate() {
        assert_memory_bounded(&net, i, *before);
    }
    assert!(c.supported > 0, "{c:?}");
    assert!(
        c.sync_asked >= 1 && c.sync_lies >= 1,
        "the restarted node never asked the liar: {c:?}"
    );
}

/// Not a check: a measurement, to compare attacks and their rates on one machine. Runs the
/// attacks named in `ATTACKS` (a list of `equivocate,far,swap,lie,garbage,support,forge`), with
/// `REPLAY` copies per peer and tick of the replayed frames, `FLOOD` distinct far votes per
/// peer and tick, at block time `BT` ms, for 15 s; prints the heights gained, the rounds past 0
/// and the nodes' CPU time and memory.
/// `ATTACKS=far REPLAY=500 cargo test -p timed --test node_byzantine -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_an_attack() {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let spec = env("ATTACKS");
    let attacks = Attacks {
        equivocate: spec.contains("equivocate"),
        far_future: spec.contains("far"),
        swap_bodies: spec.contains("swap"),
        lie_in_sync: spec.contains("lie"),
        garbage: spec.contains("garbage"),
        support: spec.contains("support"),
        forge_certificates: spec.contains("forge"),
        forge_signatures: spec.contains("forge"),
        replay_per_tick: env("REPLAY").parse().unwrap_or(0),
        flood_per_tick: env("FLOOD").parse().unwrap_or(0),
    };
    let (mut net, adversary, transfers) = start();
    let (cpu, rss) = (cpu_ticks(&net), (0..HONEST).map(|i| rss_kib(&net, i)));
    let rss: Vec<u64> = rss.collect();
    let from = min_height(&net, &ALL);
    let started = Instant::now();
    adversary.set(attacks);
    std::thread::sleep(ATTACK);
    let to = min_height(&net, &ALL);
    let cpu: Vec<u64> = cpu
        .iter()
        .zip(cpu_ticks(&net))
        .map(|(a, b)| b - a)
        .collect();
    adversary.set(Attacks::default());
    transfers.stop();
    report(&net, &adversary.counts());
    let late: Vec<String> = (from + 1..=to)
        .filter_map(|h| {
            let b = net.block(0, h)?;
            let round = b["certificate"]["round"].as_u64()?;
            (round > 0).then(|| format!("{h} (round {round}, {})", b["proposer"]))
        })
        .collect();
    eprintln!(
        "{attacks:?}: {} heights in {:?}; past round 0: {}; CPU ticks {cpu:?}; RSS {rss:?} KiB -> {:?}",
        to - from,
        started.elapsed(),
        late.join(", "),
        (0..HONEST).map(|i| rss_kib(&net, i)).collect::<Vec<_>>()
    );
    assert_alive(&mut net);
}

/// User and system CPU time of each honest node so far, in clock ticks.
fn cpu_ticks(net: &Net) -> Vec<u64> {
    (0..HONEST)
        .map(|i| {
            let pid = net.nodes[i].child.as_ref().expect("running").id();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // Fields after the command name: state is the first, utime the 12th, stime the 13th.
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        })
        .collect()
}
