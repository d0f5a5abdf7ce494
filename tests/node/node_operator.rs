//! An operator's day (issue 16): what a node does with a damaged database, bad addresses and
//! flags, what its logs and metrics look like — each defect the issue found, on a real process.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Net, free_port, get, get_json, metric, wait_for};

fn exe() -> PathBuf {
    std::env::var_os("TIMED_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_timed").into())
        .into()
}

/// Runs `timed ARGS` to its end (killed after 60 s: a start that hangs fails the test).
fn run_to_exit(args: &[String]) -> Output {
    let child = Command::new(exe())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of `stderr` that are the process's error (`timed: error: ...`).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("timed: error:"))
        .collect()
}

/// Flips 200 bytes in every 4 KiB page of `path` but the first (redb's header).
fn damage_every_page(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for page in 1..bytes.len() / 4096 {
        for b in &mut bytes[page * 4096 + 100..page * 4096 + 300] {
            *b ^= 0x5a;
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// A damaged `timed.redb`: the start is refused with exit 1 and one line naming the file and what
/// to do (it was exit 101 and a backtrace out of redb). A development validator without peers
/// is a network of one: it forms its genesis alone (it waited forever for hellos).
#[test]
fn a_damaged_database_stops_the_start_with_one_line_naming_it() {
    let mut net = Net::start(1, "100ms");
    net.wait_height(0, 3);
    net.stop(0, "-TERM");
    let db = net.dir.path().join("validator1").join("timed.redb");
    damage_every_page(&db);
    let out = run_to_exit(&net.nodes[0].args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&db.display().to_string()), "{stderr}");
    assert!(errors[0].contains("is damaged"), "{stderr}");
    assert!(
        errors[0].contains("move the node's data directory aside"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A development validator's command line with `extra` flags.
fn dev_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let data = dir.join("v1").display().to_string();
    let port = free_port().to_string();
    let base = ["--validator-id", "v1", "--port", &port, "--data-dir", &data];
    strings(&[&base[..], extra].concat())
}

/// `timed run` with these files, its data in `data` beside the genesis.
fn run_args(genesis: &str, key: &str, listen: &str) -> Vec<String> {
    let data = Path::new(genesis).with_file_name("data");
    let data = data.display().to_string();
    strings(&[
        "run",
        "--genesis",
        genesis,
        "--key",
        key,
        "--data-dir",
        &data,
        "--listen",
        listen,
    ])
}

/// Writes a key (`NAME.key`) and returns its public key.
fn keygen(dir: &Path, name: &str) -> String {
    let out = run_to_exit(&strings(&[
        "keygen",
        "--out",
        &dir.join(format!("{name}.key")).display().to_string(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// `--peers localhost`, `127.0.0.1:99999`, `notahostport`, `:8001`: refused at start (exit 2,
/// usage), naming the address and how to write one, instead of a node dialing it for ever.
#[test]
fn malformed_peer_addresses_are_refused_at_start_naming_them() {
    let cases = [
        ("localhost", "has no port"),
        ("127.0.0.1:99999", "not a number from 1 to 65535"),
        ("notahostport", "has no port"),
        ("127.0.0.1:8002,:8001", "has no host"),
    ];
    for stderr in usage_errors("--peers", &cases) {
        assert!(
            stderr.contains("HOST:PORT") || stderr.contains("65535"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

/// A development validator started with `flag VALUE` for each case: refused as a usage error
/// (exit 2) saying why; their standard errors.
fn usage_errors(flag: &str, cases: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for (value, why) in cases {
        let out = run_to_exit(&dev_args(dir.path(), &[flag, value]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(why), "{flag} {value}: {stderr}");
        all.push(stderr);
    }
    all
}

/// A genesis address that cannot be dialed: `timed genesis` refuses to write it, and `timed run`
/// refuses a genesis file that holds one (edited by hand), naming the validator and the address.
#[test]
fn a_genesis_address_that_is_not_host_and_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let (k1, k2) = (keygen(dir.path(), "v1"), keygen(dir.path(), "v2"));
    let out = run_to_exit(&strings(&[
        "genesis",
        "--validator",
        &format!("v1:{k1}:100:notahostport"),
        "--out",
        &d("bad.json"),
    ]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"notahostport\" has no port"), "{stderr}");
    assert!(!dir.path().join("bad.json").exists());

    let out = run_to_exit(&strings(&[
        "genesis",
        "--validator",
        &format!("v1:{k1}:100:127.0.0.1:1"),
        "--validator",
        &format!("v2:{k2}:100:127.0.0.1:2"),
        "--out",
        &d("genesis.json"),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let edited = std::fs::read_to_string(d("genesis.json"))
        .unwrap()
        .replace("127.0.0.1:2", "notahostport");
    std::fs::write(d("genesis.json"), edited).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_to_exit(&run_args(&d("genesis.json"), &d("v1.key"), &listen));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("validator v2"), "{stderr}");
    assert!(errors[0].contains("\"notahostport\""), "{stderr}");
}

/// `--listen localhost:8001` is refused with the hint that it takes an IP address.
#[test]
fn a_listen_address_with_a_host_name_gets_a_hint() {
    let out = run_to_exit(&run_args("g.json", "k.key", "localhost:8001"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("localhost is not resolved"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:8001"), "{stderr}");
}

/// A peer whose name does not resolve, and one that never answers: the node starts (it may come
/// up later) and says so at WARN, with the address (it was silent at INFO and waited for ever).
#[test]
fn unresolvable_and_silent_peers_are_warned_about_with_their_address() {
    let silent = format!("127.0.0.1:{}", free_port());
    let peers = format!("nosuchhost.invalid:1,{silent}");
    let net = Net::start_with(1, "1s", |_| strings(&["--peers", &peers]));
    let warned = |needle: &str| {
        net.log(0)
            .lines()
            .any(|l| l.contains("WARN") && l.contains(needle))
    };
    wait_for("a warning about the unresolvable peer", || {
        warned("nosuchhost.invalid:1 does not resolve").then_some(())
    });
    wait_for("a warning about the silent peer", || {
        warned(&format!("{silent} has not answered")).then_some(())
    });
}

/// A validator stopped while the others go on 25 heights, then restarted: the blocks it catches up
/// on have no finality (`null` in `/blocks` and the dashboard) and are not observed by
/// `timed_finality_seconds`; the blocks it then decides live are.
#[test]
fn blocks_caught_up_on_after_a_restart_do_not_count_as_finality() {
    let mut net = Net::start(3, "200ms");
    net.wait_height(2, 3);
    net.stop(2, "-TERM");
    let away_from = net.height(0);
    net.wait_height(0, away_from + 25);
    net.spawn(2);
    let back = net.height(0);
    net.wait_height(2, back + 5);
    // Frozen: without the other two no block can finalize, so the figures read below agree.
    net.stop(0, "-TERM");
    net.stop(1, "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    let status = net.status(2).unwrap();
    let tip = status["height"].as_u64().unwrap();
    let here = status["blocks_finalized_since_start"].as_u64().unwrap();
    let blocks = get_json(
        net.port(2),
        &format!("/blocks?from={}&limit=1000", tip - here + 1),
    )
    .unwrap()["blocks"]
        .as_array()
        .unwrap()
        .clone();
    let (live, caught_up): (Vec<_>, Vec<_>) = blocks
        .iter()
        .filter(|b| b["height"].as_u64().unwrap() <= tip)
        .partition(|b| b["finality_ms"].is_u64());
    assert!(caught_up.len() >= 20, "{} caught up", caught_up.len());
    assert!(
        caught_up.iter().all(|b| b["finality_ms"].is_null()),
        "{caught_up:?}"
    );
    let last = blocks.iter().rfind(|b| b["height"] == tip).unwrap();
    assert!(last["finality_ms"].is_u64(), "decided live: {last}");
    // Observed once per block decided live here, never for one caught up on.
    let observed = metric(net.port(2), "timed_finality_seconds_count").unwrap();
    assert_eq!(observed as usize, live.len(), "{}", net.log(2));
    let dashboard = get_json(net.port(2), "/dashboard.json").unwrap();
    let nulls = dashboard["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["finality_ms"].is_null())
        .count();
    assert!(
        nulls >= 20,
        "the dashboard leaves them out of its chart: {nulls}"
    );
}

/// The family a sample belongs to in the classic format: its name without the histogram suffixes.
fn family_of(sample: &str) -> &str {
    let name = sample.split(['{', ' ']).next().unwrap_or(sample);
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// `curl …/metrics | promtool check metrics` passes (run when promtool is installed:
/// scripts/test.sh installs it), and, checked here whatever is installed: every sample's family
/// has HELP and TYPE lines, names are in base units, and the refusal series exist before any
/// refusal, at 0. A scraper that asks for OpenMetrics gets it.
#[test]
fn metrics_pass_promtool_and_every_series_exists_from_the_start() {
    let net = Net::start(1, "100ms");
    net.wait_height(0, 2);
    let (code, text) = get(net.port(0), "/metrics").unwrap();
    assert_eq!(code, 200);
    let mut described = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "{line}");
            described.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(described.contains(name), "TYPE before HELP: {line}");
        } else {
            assert!(!line.starts_with('#'), "{line}");
            assert!(described.contains(family_of(line)), "no HELP for {line}");
        }
        for unit in ["_ms", "_milliseconds", "_kib", "_mib"] {
            assert!(!line.contains(unit), "not in base units: {line}");
        }
    }
    for series in [
        "timed_rejected_total{kind=\"prepare\",reason=\"bad_signature\"}",
        "timed_frames_dropped_total{reason=\"peer_queue_full\"}",
        "timed_handshakes_refused_total{reason=\"hello\"}",
        "timed_http_refused_total{reason=\"rate_limit\"}",
    ] {
        assert_eq!(common::sample(&text, series), Some(0.0), "{series}");
    }
    assert!(common::sample(&text, "timed_clock_offset_seconds").is_some());

    let request =
        "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n";
    let (_, open) = common::http(net.port(0), request).unwrap();
    assert!(open.ends_with("# EOF\n"), "OpenMetrics when asked for");

    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: checked without it (scripts/test.sh installs it)");
        return;
    };
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        self::text(&out.stdout),
        self::text(&out.stderr)
    );
}

/// Two validators, one logging JSON and one text, into files: the JSON log is JSON on every line
/// and names the node in each, with height, peer and reward as fields; the text log has no colour
/// codes and names its node in each line; neither logs each vote at INFO; both say
/// `Moving to height N...` (the design notes' line).
#[test]
fn logs_name_the_node_carry_fields_and_keep_votes_at_debug() {
    let net = Net::start_with(2, "100ms", |i| {
        if i == 0 {
            strings(&["--log-format", "json"])
        } else {
            Vec::new()
        }
    });
    net.wait_height(0, 4);
    net.wait_height(1, 4);
    let json = net.log(0);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().all(|l| l["node"] == "validator1"),
        "every line names the node:\n{json}"
    );
    let with = |needle: &str| {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle))
            })
            .unwrap_or_else(|| panic!("no {needle:?} line:\n{json}"))
    };
    assert!(
        with("Block finalized at height")
            .pointer("/fields/height")
            .is_some_and(|h| h.is_u64())
    );
    assert!(
        with("rewards - subsidy")
            .pointer("/fields/reward")
            .is_some_and(|r| r.is_u64())
    );
    assert_eq!(
        with("Peer connected").pointer("/fields/peer"),
        Some(&"validator2".into())
    );
    assert!(
        with("Moving to height")
            .pointer("/fields/height")
            .is_some_and(|h| h.is_u64())
    );

    let text = net.log(1);
    assert!(!text.contains('\x1b'), "no colour codes in a file:\n{text}");
    assert!(text.contains("Moving to height "), "{text}");
    let named = text.lines().filter(|l| l.contains(" validator2 ")).count();
    assert_eq!(
        named,
        text.lines().count(),
        "every line names the node:\n{text}"
    );
    for log in [&json, &text] {
        assert!(
            !log.contains("Prepare vote from"),
            "votes are DEBUG lines:\n{log}"
        );
        assert!(
            !log.contains("Precommit vote from"),
            "votes are DEBUG lines:\n{log}"
        );
    }
}

/// A start that fails after the log began: in JSON mode the last line is a JSON ERROR object;
/// in text mode one `timed: error:` line, each cause once (the OS error was printed twice).
#[test]
fn a_fatal_error_is_one_line_in_the_logs_format_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let data = blocker.join("data").display().to_string();
    let port = free_port().to_string();
    let args = ["--validator-id", "v1", "--port", &port, "--data-dir", &data];

    let out = run_to_exit(&strings(&[&["--log-format", "json"][..], &args].concat()));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{stdout}");
    let message = last["fields"]["message"].as_str().unwrap();
    assert!(message.contains("cannot create data directory"), "{stdout}");
    assert!(text(&out.stderr).trim().is_empty(), "{}", text(&out.stderr));

    let out = run_to_exit(&strings(&args));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");

    let missing = dir.path().join("missing.json").display().to_string();
    let out = run_to_exit(&run_args(&missing, "k.key", "127.0.0.1:1"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
}

/// `--stake -1` and `--stake 0` say what a stake is (it was clap's "unexpected argument").
#[test]
fn a_bad_stake_is_refused_saying_what_a_stake_is() {
    let cases = [
        ("-1", "is not a stake"),
        ("0", "at least 1"),
        ("ten", "is not a stake"),
    ];
    for stderr in usage_errors("--stake", &cases) {
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
    }
}

/// One validator's real network with one `balance` (KEY:UNITS): its genesis hash as `timed
/// genesis` printed it, and the arguments of `timed run` for it.
fn one_validator_genesis(dir: &Path, listen: &str, balance: &str) -> (String, Vec<String>) {
    let d = |p: &str| dir.join(p).display().to_string();
    let key = keygen(dir, "v1");
    let out = run_to_exit(&strings(&[
        "genesis",
        "--validator",
        &format!("v1:{key}:100:{listen}"),
        "--balance",
        balance,
        "--block-time",
        "100ms",
        "--out",
        &d("genesis.json"),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_string();
    (hash, run_args(&d("genesis.json"), &d("v1.key"), listen))
}

/// The genesis hash is one hash: `timed genesis` prints it, `timed genesis-hash FILE` prints it
/// from the file (also from the file reformatted), and the running node reports it; and
/// `/accounts` shows a balance exactly (it showed 988.49 TIME for 988.499).
#[test]
fn the_genesis_hash_is_one_hash_and_balances_print_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Not the validator's account: block rewards would change it.
    let wallet = keygen(dir.path(), "wallet");
    let balance = format!("{wallet}:98849900000");
    let (printed, args) = one_validator_genesis(dir.path(), &listen, &balance);
    let file = dir.path().join("genesis.json");
    let hash_of = |path: &Path| {
        let out = run_to_exit(&strings(&["genesis-hash", &path.display().to_string()]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(hash_of(&file), printed);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let compact = dir.path().join("compact.json");
    std::fs::write(&compact, serde_json::to_string(&value).unwrap()).unwrap();
    assert_eq!(
        hash_of(&compact),
        printed,
        "the genesis, not the file's bytes"
    );

    let mut node = Command::new(exe())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for("the node to answer", || get_json(port, "/status"));
    assert_eq!(status["genesis_hash"], printed.as_str());
    let account = get_json(port, &format!("/accounts/{wallet}")).unwrap();
    assert_eq!(account["balance"], 98_849_900_000u64);
    assert_eq!(account["balance_time"], "988.499 TIME");
    let _ = node.kill();
    let _ = node.wait();
}

/// The design notes' command as written, `cargo run -- --validator-id validator1 --port …
/// --stake 100`, at the repository's root (it failed: "could not determine which binary to
/// run"); here with no peers (a network of one) and a data directory of the test's own.
#[test]
fn the_design_notes_cargo_run_works_at_the_repository_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // `cargo test` hands its test processes the package's build variables (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, OUT_DIR …), which a user's shell does not have; build scripts that rerun
    // when those change (ring's does) would rebuild the TLS stack on every switch.
    let cargo = || {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key == "OUT_DIR"
                || (key.starts_with("CARGO_")
                    && !matches!(&*key, "CARGO_HOME" | "CARGO_TARGET_DIR"))
            {
                command.env_remove(&*key);
            }
        }
        command.current_dir(root);
        command
    };
    // The node's own feature set (the root's default member alone) differs from the whole
    // workspace's that `cargo test --workspace` built, so the first `cargo run` compiles: that
    // is build time, not the node's, and is kept out of the deadline below.
    let built = cargo().args(["build", "-q"]).status().unwrap();
    assert!(built.success(), "cargo build at the repository root failed");
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    // Its own process group: killing `cargo` alone would leave the `timed` it started running.
    let mut node = cargo()
        .process_group(0)
        .args(["run", "-q", "--", "--validator-id", "validator1", "--port"])
        .arg(port.to_string())
        .args(["--stake", "100", "--block-time", "100ms", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let reached = wait_for("the node started by cargo run to finalize", || {
        if matches!(node.try_wait(), Ok(Some(_))) {
            return Some(false);
        }
        get_json(port, "/status")
            .filter(|s| s["height"].as_u64() >= Some(2))
            .map(|_| true)
    });
    // The whole group: cargo and the node it runs.
    // (Not `kill -KILL -PGID`: procps-ng 4.0.2's kill reads a negative id as an option.)
    use rustix::process::{Pid, Signal, kill_process_group};
    let _ = kill_process_group(Pid::from_child(&node), Signal::KILL);
    let _ = node.kill();
    let _ = node.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(reached, "cargo run stopped:\n{log}");
    assert!(log.contains("Starting validator node: validator1"), "{log}");
}

/// `/ready`'s status code and body on the node on `port`.
fn readiness(port: u16) -> Option<(u16, serde_json::Value)> {
    let (code, body) = get(port, "/ready")?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// `/health` answers while the process is up; `/ready` is 200 with a quorum connected and a
/// block decided live, 503 naming the missing stake when two of three validators stop, and 200
/// again when one returns. `/status` and `timed_build_info` give the version and the commit.
#[test]
fn health_and_readiness_follow_the_quorum() {
    let mut net = Net::start(3, "200ms");
    let port = net.port(0);
    wait_for("validator1 to be ready", || {
        readiness(port).filter(|(code, _)| *code == 200)
    });
    net.stop(1, "-TERM");
    net.stop(2, "-TERM");
    let (_, body) = wait_for("validator1 to be not ready", || {
        readiness(port).filter(|(code, _)| *code == 503)
    });
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("connected to 100 of the 200 stake"),
        "{body}"
    );
    let (code, health) = get(port, "/health").unwrap();
    assert_eq!(code, 200, "{health}");
    net.spawn(1);
    wait_for("validator1 to be ready again", || {
        readiness(port).filter(|(code, _)| *code == 200)
    });

    let status = net.status(0).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let commit = status["commit"].as_str().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let info = format!(
        "timed_build_info{{version=\"{}\",commit=\"{commit}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(port, &info), Some(1.0), "{info}");
}

/// The metric names in `text` (alert rules, a dashboard): each `timed_…` or `process_…` word,
/// without a histogram's `_bucket`/`_sum`/`_count`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("timed_") || w.starts_with("process_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

/// The alerting series (CometBFT's meanings) on a live validator: each name the alert rules and
/// the Grafana dashboard use is served, the chain's ones with the values of a one-validator
/// chain; then `promtool check rules` and `promtool test rules` pass on deploy/monitoring (when
/// promtool is installed: scripts/test.sh installs it).
#[test]
fn alert_rules_and_dashboard_use_served_series_and_pass_promtool() {
    let net = Net::start(1, "100ms");
    net.wait_height(0, 4);
    let metrics = get(net.port(0), "/metrics").unwrap().1;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring");
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let used = metric_names(&format!("{rules}{dashboard}"));
    assert!(used.len() >= 15, "{used:?}");
    for name in &used {
        let served = metrics.lines().any(|l| {
            l.strip_prefix(name.as_str())
                .is_some_and(|r| r.starts_with([' ', '{', '_']))
        });
        assert!(served, "{name} is used but not served:\n{metrics}");
    }
    let value = |series: &str| common::sample(&metrics, series).unwrap_or(-1.0);
    assert_eq!(value("timed_validators"), 1.0);
    assert_eq!(value("timed_validators_power"), 100.0);
    assert_eq!(value("timed_validator_power"), 100.0);
    assert_eq!(value("timed_missing_validators"), 0.0);
    assert_eq!(value("timed_byzantine_validators"), 0.0);
    assert_eq!(value("timed_validator_missed_blocks_total"), 0.0);
    assert_eq!(value("timed_syncing"), 0.0);
    assert_eq!(value("timed_mempool_size"), 0.0);
    assert!(value("timed_block_rounds_count") >= 3.0, "{metrics}");
    assert!(
        value("timed_block_interval_seconds_count") >= 2.0,
        "{metrics}"
    );
    assert!(value("process_resident_memory_bytes") > 1e6, "{metrics}");
    assert!(value("process_open_fds") > 3.0, "{metrics}");

    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let Ok(out) = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
        else {
            eprintln!("promtool is not installed: rules not run (scripts/test.sh installs it)");
            return;
        };
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
