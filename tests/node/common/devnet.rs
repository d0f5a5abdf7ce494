//! A `timed devnet` process (its validators and its funded wallet), for the tests that drive
//! the wallet CLI against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `timed devnet` process; SIGTERM when dropped so that it stops its validators.
pub struct Devnet {
    child: Child,
    pub port: u16,
    /// Every validator's port, validator1's first.
    pub ports: Vec<u16>,
    pub key: String,
    pub address: String,
    /// Its data directory (each validator's in a folder of its name).
    pub dir: tempfile::TempDir,
}

impl Devnet {
    pub fn start(nodes: usize) -> Devnet {
        Devnet::start_with(nodes, &[])
    }

    /// As `start`, with `extra` flags of `timed devnet` (e.g. `--epoch-blocks 10`).
    pub fn start_with(nodes: usize, extra: &[&str]) -> Devnet {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_timed"))
            .args([
                "devnet",
                "--nodes",
                &nodes.to_string(),
                "--block-time",
                "200ms",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the devnet never blocks on a full pipe.
                    continue;
                }
            }
        });
        let (mut port, mut wallet, mut ports) = (None, None, Vec::new());
        while port.is_none() || wallet.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the devnet prints its ports and its wallet");
            if let Some(rest) = line.split(" ports ").nth(1) {
                port = rest.split([',', ' ']).next().and_then(|p| p.parse().ok());
                ports = rest
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect();
            }
            if let Some(rest) = line.strip_prefix("devnet: wallet ") {
                let address = rest.split_whitespace().next().unwrap().to_string();
                let key = rest
                    .split("; key ")
                    .nth(1)
                    .and_then(|k| k.split_whitespace().next())
                    .unwrap()
                    .to_string();
                assert!(rest.contains("holds 1000000 TIME"), "{line}");
                wallet = Some((address, key));
            }
        }
        let (address, key) = wallet.unwrap();
        assert!(
            std::path::Path::new(&key).starts_with(dir.path()),
            "the wallet key is in the devnet's data dir: {key}"
        );
        Devnet {
            child,
            port: port.unwrap(),
            ports,
            key,
            address,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
