//! A `timed run --full-node` process for the tests that start one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, get_json};

/// A `timed run --full-node` process, stopped when dropped.
pub struct FullNode {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl FullNode {
    /// Follows the nodes whose QUIC ports are `peers`, its data in `dir/name`, with `extra`
    /// flags of `timed run`.
    pub fn start(
        genesis: &Path,
        dir: &Path,
        name: &str,
        peers: &[u16],
        extra: &[&str],
    ) -> FullNode {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let peers: Vec<String> = peers.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        // The log (stdout) and the errors (stderr) in one file.
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_timed"))
            .args(["run", "--full-node", "--genesis"])
            .arg(genesis)
            .arg("--data-dir")
            .arg(dir.join(name))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--peers", &peers.join(",")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        FullNode { child, port, log }
    }

    pub fn height(&self) -> u64 {
        height(self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FullNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The height `/status` shows on `port` (0 when it does not answer).
pub fn height(port: u16) -> u64 {
    get_json(port, "/status")
        .and_then(|s| s["height"].as_u64())
        .unwrap_or(0)
}
