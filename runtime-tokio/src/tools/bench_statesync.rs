//! `timed bench statesync`: how long a fresh node takes to start from a snapshot
//! (`timed run --state-sync`, `node::statesync`) of a chain with many accounts and blocks.
//!
//! It measures the goal of issue 15: a state sync of a chain of 1,000,000 accounts and 100,000
//! blocks completes in at most 10 s on this machine, verification included. The time is taken
//! from the spawn of a fresh full node on an empty data directory until its `/status` reports
//! the snapshot's height; it covers everything that node does first: reading the genesis, asking
//! the servers for their snapshots, verifying every block from the genesis to the snapshot's
//! (certificates included), fetching and checking the manifest and every chunk, writing the
//! state to its store and starting up on it.
//!
//! 1. A genesis (`timed-bench-statesync`) funds `--accounts` accounts. Their addresses are
//!    BLAKE3 hashes of their index: an account needs no curve point (only a sender's signature
//!    does, and none of them sends), the genesis refuses only duplicates, and hashes spread over
//!    the key space as real keys do, so the snapshot is cut as a real one would be.
//! 2. A chain of `--blocks` finalized empty blocks (certificates of a quorum of the
//!    `--validators`' development keys) is generated into `validator1`'s store as
//!    `timed bench catchup` generates it (`bench::generate_chain`), and the snapshot of its tip
//!    written from the final ledger by the node's own writer (`snapshots::write_ledger`).
//! 3. The data directory is copied to `validator2` … `validator<--servers>`; the servers are
//!    started (`timed run`, no new snapshots, no peer to dial: the fresh node dials them). They
//!    hold no quorum, so the chain stays put.
//! 4. The fresh node (`timed run --full-node --state-sync <every server>`) is started and timed.
//!
//! Printed: the generation's parts, the total seconds, the fresh node's own `State sync` log
//! lines (its "State sync done in …" is the sync alone, without start-up), its CPU time and the
//! servers', the load average and the cores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use timed_core::crypto::PublicKey;
use timed_core::types::{Amount, Hash, Height, Stake};
use timed_core::validators::{Genesis, GenesisBalance};

use crate::keys;
use crate::net::handshake;
use crate::storage::snapshots;
use crate::tools::bench::{
    Cpu, bench_genesis, check_alive, dev_key, generate_chain, in_bench_dir, spawn_logged,
    status_height,
};
use crate::tools::client::{Client, NodeUrl};
use crate::tools::devnet::{Children, free_port};

/// The servers' `--snapshot-interval`: no height of the bench is a multiple of it, so they write
/// no snapshot of their own (and prune none).
const NO_SNAPSHOTS: u64 = 1_000_000_000_000;

#[derive(Args)]
pub struct StatesyncArgs {
    /// Accounts funded in the genesis (and so in the snapshot).
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// Length of the chain: the snapshot is of its last height, verified from the genesis.
    #[arg(long, default_value_t = 100_000)]
    blocks: u64,
    /// Validators in the genesis (a quorum of them signs each certificate).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Validators that serve the snapshot (each a copy of the generated data directory); their
    /// stake must not make a quorum, so that the chain does not grow.
    #[arg(long, default_value_t = 2)]
    servers: usize,
    /// The servers' `--http-rate-limit` (requests per second per client; 0: none) [default: the
    /// node's]. The fresh node is one client of each server: its verification of the chain
    /// (about 2.4 KB of JSON a block) meets the limit, which counts every 64 KiB answered as one
    /// more request.
    #[arg(long, value_name = "N")]
    http_rate_limit: Option<u32>,
    /// Give up after this long (each wait: the servers' start, the sync).
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// Directory for the nodes' data and logs [default: a fresh temporary directory, removed at
    /// the end].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(a: StatesyncArgs) -> Result<()> {
    if a.blocks == 0 {
        bail!("--blocks must be positive");
    }
    if !(1..=100).contains(&a.validators) {
        bail!("--validators must be between 1 and 100");
    }
    if a.servers == 0 || a.servers > a.validators {
        bail!(
            "--servers must be between 1 and --validators ({})",
            a.validators
        );
    }
    in_bench_dir(
        a.data_dir.clone(),
        "timed-bench-statesync",
        &["validator1", "fresh"],
        |dir| async move { statesync_in(&a, &dir).await },
    )
    .await
}

/// The address of bench account `i`.
fn account(i: u64) -> PublicKey {
    PublicKey(Hash::of(&[b"timed/bench-statesync/account/", &i.to_le_bytes()]).0)
}

/// The bench's genesis: `bench::bench_genesis` with `--accounts` funded accounts.
fn statesync_genesis(a: &StatesyncArgs) -> Genesis {
    let mut genesis = bench_genesis("timed-bench-statesync", a.blocks, a.validators);
    genesis.balances = (0..a.accounts)
        .map(|i| GenesisBalance {
            account: account(i),
            amount: Amount(Amount::UNITS_PER_TIME + i),
        })
        .collect();
    genesis
}

async fn statesync_in(a: &StatesyncArgs, dir: &Path) -> Result<()> {
    let started = Instant::now();
    let genesis = statesync_genesis(a);
    let set = genesis.validate().context("the bench genesis is invalid")?;
    if set.is_quorum(Stake(100 * a.servers as u64)) {
        bail!(
            "{} servers of {} validators make a quorum: the chain would grow under the sync; \
             give fewer --servers or more --validators",
            a.servers,
            a.validators
        );
    }
    let genesis_path = dir.join("genesis.json");
    handshake::write_genesis(&genesis_path, &genesis)?;
    let genesis_bytes = std::fs::metadata(&genesis_path).map_or(0, |m| m.len());
    let genesis_secs = started.elapsed().as_secs_f64();
    for i in 1..=a.servers {
        keys::save(&dir.join(format!("validator{i}.key")), &dev_key(i))?;
    }

    let first = dir.join("validator1");
    std::fs::create_dir_all(&first)?;
    let chain_start = Instant::now();
    let (db, blocks, g) = (first.join("timed.redb"), a.blocks, genesis.clone());
    let ledger = tokio::task::spawn_blocking(move || generate_chain(&db, &g, blocks, None))
        .await
        .context("the chain generator stopped")??;
    let chain_secs = chain_start.elapsed().as_secs_f64();
    let snapshot_start = Instant::now();
    let folder = snapshots::folder(&first);
    let height = Height(a.blocks);
    let chunks = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&folder)?;
        snapshots::write_ledger(&folder, height, &ledger)
            .map_err(|e| anyhow::anyhow!("cannot write the snapshot of height {height}: {e}"))
    })
    .await
    .context("the snapshot writer stopped")??;
    let snapshot_secs = snapshot_start.elapsed().as_secs_f64();
    let copy_start = Instant::now();
    for i in 2..=a.servers {
        let to = dir.join(format!("validator{i}"));
        let from = first.clone();
        tokio::task::spawn_blocking(move || copy_dir(&from, &to))
            .await
            .context("the copy stopped")??;
    }
    println!(
        "bench statesync: generated in {:.1} s: the genesis of {} accounts ({:.0} MB of JSON) in \
         {genesis_secs:.1} s, {} blocks ({} validators, certificates of a quorum) in \
         {chain_secs:.1} s, the snapshot of height {} ({chunks} chunks) in {snapshot_secs:.1} s, \
         {} copies of the data directory in {:.1} s",
        started.elapsed().as_secs_f64(),
        a.accounts,
        genesis_bytes as f64 / 1e6,
        a.blocks,
        a.validators,
        a.blocks,
        a.servers - 1,
        copy_start.elapsed().as_secs_f64(),
    );

    // The servers.
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() <= a.servers {
        let p = free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let fresh_port = ports.pop().expect("servers + 1 ports");
    let exe = std::env::current_exe().context("cannot find the timed executable")?;
    let mut children = Children(Vec::new());
    let serving_start = Instant::now();
    for (i, port) in ports.iter().enumerate() {
        let name = format!("validator{}", i + 1);
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg("--genesis")
            .arg(&genesis_path)
            .arg("--key")
            .arg(dir.join(format!("{name}.key")))
            .arg("--data-dir")
            .arg(dir.join(&name))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // No peer to dial: they hold no quorum together, and the fresh node dials them.
            .arg("--peers=")
            .arg("--snapshot-interval")
            .arg(NO_SNAPSHOTS.to_string());
        if let Some(limit) = a.http_rate_limit {
            cmd.arg("--http-rate-limit").arg(limit.to_string());
        }
        spawn_logged(&mut children, dir, &name, cmd, "warn")?;
    }
    let deadline = Instant::now() + a.timeout;
    for (i, port) in ports.iter().enumerate() {
        let addr: SocketAddr = ([127, 0, 0, 1], *port).into();
        while status_height(addr).await != Some(a.blocks) || !lists(addr, a.blocks).await {
            check_alive(&mut children, dir)?;
            if Instant::now() > deadline {
                bail!(
                    "validator{} did not serve height {} and its snapshot in time; see {}",
                    i + 1,
                    a.blocks,
                    dir.join(format!("validator{}.log", i + 1)).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "bench statesync: {} servers up at height {} with its snapshot in {:.1} s (HTTP rate \
         limit: {})",
        a.servers,
        a.blocks,
        serving_start.elapsed().as_secs_f64(),
        match a.http_rate_limit {
            None => "the node's default".to_string(),
            Some(0) => "off".to_string(),
            Some(n) => format!("{n} requests/s per client"),
        },
    );

    // The fresh node.
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut cmd = Command::new(&exe);
    cmd.arg("run")
        .arg("--full-node")
        .arg("--genesis")
        .arg(&genesis_path)
        .arg("--data-dir")
        .arg(dir.join("fresh"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{fresh_port}"))
        .arg("--peers")
        .arg(peers.join(","))
        .arg("--state-sync")
        .arg(urls.join(","));
    let fresh: SocketAddr = ([127, 0, 0, 1], fresh_port).into();
    let fresh_log = dir.join("fresh.log");
    // Its state sync logs at info, which a RUST_LOG of the bench's own must not hide.
    if let Some(mut filter) = std::env::var_os("RUST_LOG") {
        filter.push(",timed::node::statesync=info");
        cmd.env("RUST_LOG", filter);
    }
    let deadline = Instant::now() + a.timeout;
    let t0 = Instant::now();
    spawn_logged(&mut children, dir, "fresh", cmd, "info")?;
    loop {
        check_alive(&mut children, dir)?;
        if Instant::now() > deadline {
            bail!(
                "the fresh node did not reach height {} in time; see {}",
                a.blocks,
                fresh_log.display()
            );
        }
        if status_height(fresh).await.is_some_and(|h| h >= a.blocks) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = t0.elapsed().as_secs_f64();
    let pids: Vec<u32> = children.0.iter().map(|(_, c)| c.id()).collect();
    let cpu: Vec<Option<Cpu>> = pids.iter().map(|p| Cpu::of(*p)).collect();
    children.stop();

    let log = std::fs::read_to_string(&fresh_log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("State sync")).collect();
    if !lines.iter().any(|l| l.contains("State sync done in")) {
        bail!(
            "the fresh node reached height {} without logging \"State sync done in\"; see {}",
            a.blocks,
            fresh_log.display()
        );
    }
    println!(
        "bench statesync: a fresh node state-synced {} accounts and {} blocks from {} servers in \
         {total:.2} s (from process start to /status at height {}, verification included)",
        a.accounts, a.blocks, a.servers, a.blocks
    );
    for line in lines {
        println!("bench statesync: fresh node: {}", line.trim());
    }
    let (fresh_cpu, servers_cpu) = cpu.split_last().expect("the fresh node is the last child");
    let shown = |c: &Option<Cpu>| c.as_ref().map_or_else(|| "?".into(), Cpu::shown);
    println!(
        "bench statesync: the fresh node {}; the servers {}; load average {} ({} cores)",
        shown(fresh_cpu),
        servers_cpu.iter().map(shown).collect::<Vec<_>>().join(", "),
        crate::tools::devnet::load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    Ok(())
}

/// Whether the node on `addr` lists the snapshot of `height` (`GET /snapshots`).
async fn lists(addr: SocketAddr, height: u64) -> bool {
    let Ok(v) = Client::new(NodeUrl::from_addr(addr))
        .with_timeout(Duration::from_secs(5))
        .get::<serde_json::Value>("/snapshots")
        .await
    else {
        return false;
    };
    v["snapshots"]
        .as_array()
        .is_some_and(|s| s.iter().any(|o| o["height"].as_u64() == Some(height)))
}

/// Copies the directory `from` (files and folders) to `to`, which must not exist.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}
