//! An operator's day (issue 16): what a node does with a damaged database, bad addresses and
//! flags, what its logs and metrics look like — each defect the issue found, on a real process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Net;

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
