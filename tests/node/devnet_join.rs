//! `timed devnet join` as a user runs it: on a running `timed devnet`, one more validator
//! starts, is bonded by the devnet's wallet, signs, earns, unbonds and leaves, and says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `timed devnet` process; SIGTERM when dropped so that it stops its validators.
struct Devnet(std::process::Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn a_joining_validator_signs_earns_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let _devnet = Devnet(
        Command::new(env!("CARGO_BIN_EXE_timed"))
            .args(["devnet", "--nodes", "4", "--block-time", "200ms"])
            .args(["--epoch-blocks", "4", "--report", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The devnet writes its layout before it starts its validators.
    let start = Instant::now();
    while !dir.path().join("validator1").join("genesis.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the devnet fixed no genesis"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(["devnet", "join", "--leave-after", "2", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("validator5.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{text}\n{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "join: pending: registered at height",
        "as validator id 4",
        "join: active: height",
        "join: signing: the certificate of height",
        "join: earning:",
        "join: leaving: unbonded at height",
        "join: left: last signature at height",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
}
