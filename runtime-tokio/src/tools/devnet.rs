//! `timed devnet`: a whole local network on loopback in one command.
//!
//! Starts N child `timed` processes in development mode (validator1..N, stake 100 each, ports
//! chosen free on 127.0.0.1), follows validator1's chain through its HTTP API, prints one line per
//! finalized height, and on Ctrl-C (or after `--duration`) stops the children with SIGTERM and
//! prints a summary: blocks per second, finality p50/p99, resident memory per node. Its genesis
//! has short epochs (`--epoch-blocks`, 10) and a minimum bond of 100 units, so that
//! `timed devnet join` (`devjoin.rs`) shows a validator join and leave within seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::tools::client::{Client, NodeUrl};
use timed_core::units::percentile;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevnetArgs {
    #[command(subcommand)]
    action: Option<DevnetAction>,
    /// Number of validators.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Pause between blocks ("1s", "200ms", "0" for as fast as possible).
    #[arg(long, default_value = "1s", value_parser = crate::parse_duration)]
    block_time: Duration,
    /// Stop after this long (e.g. "30s"); without it, run until Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration)]
    duration: Option<Duration>,
    /// First port (validator i uses base_port + i - 1) [default: free ports picked at random].
    #[arg(long)]
    base_port: Option<u16>,
    /// Directory for the nodes' data and logs [default: a fresh directory in /dev/shm (memory)
    /// where the machine has it, else in the temporary directory; removed at the end]. A
    /// throwaway network gains nothing from flushing to a disk: its nodes survive being killed
    /// with their data in memory, and it is deleted when it stops. Give a directory on disk to
    /// measure or keep a network with disk flushes.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print only the summary, not a line per block (for throughput runs).
    #[arg(long)]
    report: bool,
    /// Heights per epoch: the validator set changes only after an epoch's last height, to the
    /// set elected one epoch before, so a validator that joins (`timed devnet join`) signs two
    /// epochs at most after it registers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    epoch_blocks: u64,
    /// Stop when less than this many MiB (or a twentieth of the file system) is free where the
    /// data lives.
    #[arg(long, default_value_t = 256, hide = true)]
    min_free_mib: u64,
}

/// `timed devnet` and its subcommands.
#[derive(clap::Subcommand)]
pub enum DevnetAction {
    /// Add one validator to a running devnet: start it, bond it (a `Register` signed by the
    /// devnet's wallet), and show it join, sign, earn and, after `--leave-after` heights or on
    /// Ctrl-C, unbond and leave.
    Join(crate::tools::devjoin::JoinArgs),
}

/// The file in a devnet's directory that says how to reach it (`timed devnet join` reads it).
pub const LAYOUT_FILE: &str = "devnet.json";

/// How to reach a running devnet: its validators' ports on 127.0.0.1 (validator i at index
/// i - 1) and its block time.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub ports: Vec<u16>,
    pub block_time_ms: u64,
}

/// A fresh directory for a devnet: in memory (`/dev/shm`) where the machine has it, else in the
/// temporary directory.
fn temporary_dir() -> Result<PathBuf> {
    let name = format!("timed-devnet-{}", std::process::id());
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() && std::fs::create_dir_all(shm.join(&name)).is_ok() {
        return Ok(shm.join(name));
    }
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Bytes still free for an unprivileged writer on the file system of `dir`, and its size.
fn free_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

/// A port free for both UDP and TCP on loopback right now.
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port found on 127.0.0.1")
}

pub struct Children(pub Vec<(String, Child)>);

impl Children {
    pub fn stop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in &mut self.0 {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the scheduler says of a process so far (Linux `/proc/PID/schedstat`): time on a core,
/// time runnable but waiting for one (the run queue), and how many times it got a core.
#[derive(Clone, Copy, Default)]
pub struct Sched {
    pub cpu_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

pub fn sched(pid: u32) -> Option<Sched> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let mut n = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(Sched {
        cpu_ns: n.next()??,
        wait_ns: n.next()??,
        slices: n.next()??,
    })
}

/// The sum over all the nodes, if every one can be read.
fn nodes_sched(children: &Children) -> Option<Sched> {
    children.0.iter().try_fold(Sched::default(), |acc, (_, c)| {
        let s = sched(c.id())?;
        Some(Sched {
            cpu_ns: acc.cpu_ns + s.cpu_ns,
            wait_ns: acc.wait_ns + s.wait_ns,
            slices: acc.slices + s.slices,
        })
    })
}

/// The machine's load average over 1 minute (other jobs compete with the nodes for the cores).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub async fn run(a: DevnetArgs) -> Result<()> {
    if let Some(DevnetAction::Join(j)) = a.action {
        return crate::tools::devjoin::run(j).await;
    }
    if a.nodes == 0 || a.nodes > 100 {
        bail!("--nodes must be between 1 and 100");
    }
    let exe = std::env::current_exe().context("cannot find the timed executable")?;
    let temporary = a.data_dir.is_none();
    let dir = match &a.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => temporary_dir()?,
    };
    let ports: Vec<u16> = match a.base_port {
        Some(b) => (0..a.nodes)
            .map(|i| b.checked_add(i as u16).context("--base-port too high"))
            .collect::<Result<_>>()?,
        None => (0..a.nodes).map(|_| free_port()).collect::<Result<_>>()?,
    };
    let block_time = format!("{}ms", a.block_time.as_millis());
    let (wallet_path, wallet) = crate::tools::wallet::devnet_wallet(&dir)?;
    let fund = format!(
        "{}:{}",
        hex::encode(wallet.public_key().0),
        crate::tools::wallet::DEVNET_FUNDS.0
    );
    // What `timed devnet join` needs to add a validator to this network.
    let layout = Layout {
        ports: ports.clone(),
        block_time_ms: a.block_time.as_millis() as u64,
    };
    std::fs::write(
        dir.join(LAYOUT_FILE),
        serde_json::to_vec_pretty(&layout).context("cannot encode the devnet's layout")?,
    )
    .with_context(|| format!("cannot write {}", dir.join(LAYOUT_FILE).display()))?;
    let mut children = Children(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let name = format!("validator{}", i + 1);
        let peers: Vec<String> = ports
            .iter()
            .filter(|p| *p != port)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .with_context(|| format!("cannot create the log of {name}"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--validator-id")
            .arg(&name)
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--stake")
            .arg("100")
            .arg("--block-time")
            .arg(&block_time)
            .arg("--epoch-blocks")
            .arg(a.epoch_blocks.to_string())
            .arg("--data-dir")
            .arg(dir.join(&name))
            .arg("--fund")
            .arg(&fund)
            // Bound to loopback, driven by its own monitor and by `timed bench tx` at thousands
            // of transfers a second: a per-client rate limit would only measure itself.
            .arg("--http-rate-limit")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !peers.is_empty() {
            cmd.arg("--peers").arg(peers.join(","));
        }
        if std::env::var_os("RUST_LOG").is_none() {
            // Per-vote lines cost throughput at block time 0; keep the block lines.
            let level = if a.block_time.is_zero() {
                "warn"
            } else {
                "info"
            };
            cmd.env("RUST_LOG", level);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        children.0.push((name, child));
    }
    println!(
        "devnet: {} validators on 127.0.0.1 ports {}, block time {}, data and logs in {}",
        a.nodes,
        ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
        block_time,
        dir.display()
    );
    println!(
        "devnet: wallet {} holds {} TIME; key {} (timed wallet send --key {} --to ADDRESS \
         --amount 1.5 --node http://127.0.0.1:{})",
        hex::encode(wallet.public_key().0),
        crate::amount::format_time(crate::tools::wallet::DEVNET_FUNDS),
        wallet_path.display(),
        wallet_path.display(),
        ports[0]
    );

    let api: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    // Polling validator1 costs it CPU: an eighth of the block time, between 50 ms and 1 s (the
    // finality figures come from the nodes, not from when a block is seen here).
    let poll = (a.block_time / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut shutdown = crate::node::app::shutdown_signal();
    let started = Instant::now();
    // A block stamped before this run began was finalized by an earlier run in the same
    // --data-dir: not shown, and not counted in the rates (they would read thousands of blocks
    // a second).
    let started_ms = crate::unix_ms();
    let mut earlier: Option<u64> = None;
    let mut next = 1u64;
    let mut finality = Vec::new();
    let mut first_block: Option<(u64, Instant)> = None;
    let mut first_cpu: Option<Sched> = None;
    let load_at_start = load_average();
    let mut last_block: Option<(u64, Instant)> = None;
    let mut failure = None;
    let mut last_space_check = Instant::now();
    let mut client = Client::new(NodeUrl::from_addr(api)).with_timeout(Duration::from_secs(5));
    loop {
        if a.duration.is_some_and(|d| started.elapsed() >= d) || *shutdown.borrow() {
            break;
        }
        for (name, c) in &mut children.0 {
            if let Ok(Some(status)) = c.try_wait() {
                failure = Some(format!(
                    "{name} exited ({status}); see {}",
                    dir.join(format!("{name}.log")).display()
                ));
            }
        }
        if failure.is_some() {
            break;
        }
        if last_space_check.elapsed() >= Duration::from_secs(1) {
            last_space_check = Instant::now();
            if let Some((free, size)) = free_space(&dir)
                && free < (a.min_free_mib * 1024 * 1024).max(size / 20)
            {
                println!(
                    "devnet: stopping: {} MiB left on the file system of {} (the nodes would \
                     run out); give --data-dir on a larger disk for a longer run",
                    free / (1024 * 1024),
                    dir.display()
                );
                break;
            }
        }
        // Summaries, not `/blocks`: a block as JSON carries every transfer, megabytes per block
        // at full load, which the node under measurement would spend its time encoding.
        let blocks: Vec<Value> = client
            .get(&format!("/summaries?from={next}&limit=500"))
            .await
            .unwrap_or_default();
        let now = Instant::now();
        for b in &blocks {
            let height = b["height"].as_u64().unwrap_or(0);
            if height < next {
                continue;
            }
            next = height + 1;
            if b["timestamp_ms"].as_u64().is_some_and(|t| t < started_ms) {
                earlier = Some(height);
                continue;
            }
            if let Some(h) = earlier.take() {
                println!(
                    "devnet: heights 1 to {h} were finalized by an earlier run in {}; this run \
                     continues the chain",
                    dir.display()
                );
            }
            // `null` for a block validator1 caught up on: no finality of the network's.
            let f = b["finality_ms"].as_u64();
            finality.extend(f);
            if first_block.is_none() {
                first_block = Some((height, now));
                first_cpu = nodes_sched(&children);
            }
            last_block = Some((height, now));
            if !a.report {
                let total = b["signatures"].as_u64().unwrap_or(0);
                let reward = b["reward"].as_u64().unwrap_or(0);
                println!(
                    "height {height:>6}  hash {}  proposer {:<12} signatures {total}/{}  reward {}.{:02} TIME  finality {}",
                    &b["hash"].as_str().unwrap_or("?")
                        [..16.min(b["hash"].as_str().unwrap_or("?").len())],
                    b["proposer"].as_str().unwrap_or("?"),
                    // The devnet's own validators: one that joined (`devnet join`) is not
                    // counted here, so its signature can show as 5/4.
                    a.nodes,
                    reward / 100_000_000,
                    (reward % 100_000_000) / 1_000_000,
                    f.map_or_else(|| "- (caught up)".to_string(), |f| format!("{f} ms")),
                );
            }
        }
        if blocks.len() < 500 {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {},
                _ = shutdown.changed() => {},
            }
        }
    }
    let last_cpu = nodes_sched(&children);
    let load_at_end = load_average();
    let rss: Vec<(String, Option<u64>)> = children
        .0
        .iter()
        .map(|(n, c)| (n.clone(), rss_kib(c.id())))
        .collect();
    children.stop();
    finality.sort_unstable();
    println!(
        "devnet: stopped after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let (Some((h0, t0)), Some((h1, t1))) = (first_block, last_block) {
        let secs = (t1 - t0).as_secs_f64();
        let rate = if secs > 0.0 {
            (h1 - h0) as f64 / secs
        } else {
            0.0
        };
        println!(
            "devnet: {} heights finalized; {rate:.1} blocks/s (heights {h0}..{h1} over {secs:.1} s); finality p50 {} ms, p99 {} ms",
            h1 - h0 + 1,
            percentile(&finality, 0.5),
            percentile(&finality, 0.99)
        );
        if let (Some(c0), Some(c1)) = (first_cpu, last_cpu)
            && h1 > h0
            && secs > 0.0
        {
            let cpu_ms = c1.cpu_ns.saturating_sub(c0.cpu_ns) as f64 / 1e6;
            let wait_ms = c1.wait_ns.saturating_sub(c0.wait_ns) as f64 / 1e6;
            let slices = c1.slices.saturating_sub(c0.slices).max(1) as f64;
            println!(
                "devnet: CPU of the {} nodes: {:.2} ms per block, {:.1} % of one core per node; \
                 a node waited {:.2} ms on average for a core each time it became runnable \
                 ({:.0} % of its runnable time); load average {load_at_start} at the start, \
                 {load_at_end} at the end ({} cores)",
                a.nodes,
                cpu_ms / (h1 - h0) as f64,
                cpu_ms / secs / 10.0 / a.nodes as f64,
                wait_ms / slices,
                100.0 * wait_ms / (wait_ms + cpu_ms).max(f64::EPSILON),
                std::thread::available_parallelism().map_or(0, |n| n.get()),
            );
        }
    } else {
        println!("devnet: no block finalized");
    }
    for (n, r) in rss {
        if let Some(kib) = r {
            println!("devnet: {n} resident memory {:.1} MiB", kib as f64 / 1024.0);
        }
    }
    if temporary && failure.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match failure {
        Some(f) => bail!(f),
        None => Ok(()),
    }
}
