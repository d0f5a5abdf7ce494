//! Real `timed` processes on loopback for the node tests: ephemeral ports, a temporary data
//! directory per network, HTTP polling with deadlines (never sleep-and-hope).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod cli;
pub mod devnet;
pub mod fake;
pub mod full;

pub const DEADLINE: Duration = Duration::from_secs(90);

/// The genesis file a network started in `dir` (`Net`, `Devnet`) wrote: validator1's copy.
pub fn genesis_in(dir: &std::path::Path) -> String {
    dir.join("validator1/genesis.json").display().to_string()
}

/// A port free for both UDP and TCP on loopback right now.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct NodeProc {
    pub name: String,
    pub port: u16,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// A command the node is started under, e.g. `prlimit --nofile=256:256` (empty: none).
    pub wrapper: Vec<String>,
}

pub struct Net {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
}

/// Sends `request` to 127.0.0.1:`port`; the status and the body as text; `None` if the node
/// does not answer.
pub fn http(port: u16, request: &str) -> Option<(u16, String)> {
    let (code, body) = http_bytes(port, request)?;
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

/// As `http`, the body as bytes.
pub fn http_bytes(port: u16, request: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, raw[end + 4..].to_vec()))
}

pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    )
}

pub fn get_json(port: u16, path: &str) -> Option<Value> {
    match get(port, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The value of the sample `series` (name and labels, as written) in metrics text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The value of the sample `series` in the `/metrics` of the node on `port`.
pub fn metric(port: u16, series: &str) -> Option<f64> {
    sample(&get(port, "/metrics")?.1, series)
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Net {
    /// `n` development validators with the design notes' flags (plus block time and data dir).
    pub fn start(n: usize, block_time: &str) -> Net {
        Net::start_with(n, block_time, |_| Vec::new())
    }

    /// As `start`, with `first` appended to the first node's arguments only.
    pub fn start_first_with(n: usize, block_time: &str, first: &[&str]) -> Net {
        Net::start_with(n, block_time, |i| {
            if i == 0 {
                first.iter().map(|a| a.to_string()).collect()
            } else {
                Vec::new()
            }
        })
    }

    /// As `start`, with `extra(i)` appended to node `i`'s arguments.
    pub fn start_with(n: usize, block_time: &str, extra: impl Fn(usize) -> Vec<String>) -> Net {
        Net::start_wrapped(n, block_time, extra, |_| Vec::new())
    }

    /// As `start_with`, node `i` started under the command `wrapper(i)` (e.g. `prlimit`).
    pub fn start_wrapped(
        n: usize,
        block_time: &str,
        extra: impl Fn(usize) -> Vec<String>,
        wrapper: impl Fn(usize) -> Vec<String>,
    ) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let nodes = (0..n)
            .map(|i| {
                let name = format!("validator{}", i + 1);
                let peers: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("localhost:{p}"))
                    .collect();
                let args = vec![
                    "--validator-id".into(),
                    name.clone(),
                    "--port".into(),
                    ports[i].to_string(),
                    "--peers".into(),
                    peers.join(","),
                    "--stake".into(),
                    "100".into(),
                    "--block-time".into(),
                    block_time.into(),
                    "--data-dir".into(),
                    dir.path().join(&name).display().to_string(),
                ];
                let args = [args, extra(i)].concat();
                NodeProc {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    port: ports[i],
                    args,
                    child: None,
                    wrapper: wrapper(i),
                }
            })
            .collect();
        let mut net = Net { dir, nodes };
        for i in 0..n {
            net.spawn(i);
        }
        net
    }

    pub fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        // TIMED_TEST_BIN runs the tests against another build (to show a test fails on old code).
        let exe = std::env::var_os("TIMED_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_timed").into());
        let mut command = match node.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = command
            .args(&node.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// Stops node `i` with SIGTERM (graceful) or SIGKILL (`kill -9`).
    pub fn stop(&mut self, i: usize, signal: &str) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    pub fn status(&self, i: usize) -> Option<Value> {
        get_json(self.port(i), "/status")
    }

    pub fn height(&self, i: usize) -> u64 {
        self.status(i)
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until node `i` has finalized `h`.
    pub fn wait_height(&self, i: usize, h: u64) {
        wait_for(
            &format!("{} to reach height {h}", self.nodes[i].name),
            || (self.height(i) >= h).then_some(()),
        );
    }

    pub fn block_hash(&self, i: usize, h: u64) -> Option<String> {
        get_json(self.port(i), &format!("/blocks/{h}"))
            .and_then(|b| b["hash"].as_str().map(str::to_string))
    }

    pub fn block(&self, i: usize, h: u64) -> Option<Value> {
        get_json(self.port(i), &format!("/blocks/{h}"))
    }

    /// Node `i`'s log so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn alive(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
