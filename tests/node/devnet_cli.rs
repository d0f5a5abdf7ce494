//! `timed devnet` as a user runs it: where its data goes and when it stops by itself.

use std::process::Command;

fn devnet(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_timed"))
        .arg("devnet")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Without `--data-dir` the network lives in a fresh directory (in memory where the machine has
/// `/dev/shm`) that is gone once it stops.
#[test]
fn a_temporary_devnet_finalizes_and_removes_its_directory() {
    let (ok, out) = devnet(&[
        "--nodes",
        "3",
        "--block-time",
        "0",
        "--duration",
        "3s",
        "--report",
    ]);
    assert!(ok, "{out}");
    let dir = out
        .split("data and logs in ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_else(|| panic!("the devnet names its directory: {out}"))
        .to_string();
    if std::path::Path::new("/dev/shm").is_dir() {
        assert!(dir.starts_with("/dev/shm/timed-devnet-"), "{dir}");
    }
    assert!(out.contains("heights finalized"), "{out}");
    assert!(!out.contains("no block finalized"), "{out}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} is removed at the end"
    );
}

/// A devnet stops cleanly, saying why, before its nodes fill the file system its data is on.
#[test]
fn a_devnet_stops_before_its_file_system_fills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("net");
    let (ok, out) = devnet(&[
        "--nodes",
        "2",
        "--duration",
        "60s",
        "--report",
        "--min-free-mib",
        "1000000000",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("devnet: stopping:") && out.contains("MiB left on the file system of"),
        "{out}"
    );
    assert!(out.contains("devnet: stopped after"), "{out}");
    let secs: f64 = out
        .split("stopped after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        secs < 30.0,
        "stopped at the first check, not at --duration: {out}"
    );
}

/// The heights a devnet printed, one line each.
fn printed_heights(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| {
            l.strip_prefix("height ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A devnet started again on the same `--data-dir` continues its chain: it shows only the
/// heights finalized in this run and its rates count only those (it reprinted every old height
/// and measured them as finalized in the first poll, thousands of blocks a second).
#[test]
fn a_devnet_on_a_reused_data_dir_shows_only_its_own_heights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("net");
    let args = [
        "--nodes",
        "3",
        "--block-time",
        "200ms",
        "--duration",
        "4s",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let (ok, first) = devnet(&args);
    assert!(ok, "{first}");
    let last = *printed_heights(&first)
        .last()
        .expect("heights in the first run");
    let (ok, second) = devnet(&args);
    assert!(ok, "{second}");
    let heights = printed_heights(&second);
    assert!(!heights.is_empty(), "{second}");
    assert!(heights.iter().all(|h| *h > last), "after {last}: {second}");
    assert!(
        second.contains("were finalized by an earlier run"),
        "{second}"
    );
    let range = second
        .split("(heights ")
        .nth(1)
        .and_then(|r| r.split("..").next())
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("a rate over this run's heights: {second}"));
    assert!(range > last, "{second}");
}
