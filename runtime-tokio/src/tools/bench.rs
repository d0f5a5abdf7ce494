//! `timed bench catchup`: how fast a fresh node catches up on a long chain through the real path.
//!
//! 1. A chain of `--blocks` finalized empty blocks is generated with `timed-core` and the
//!    development keys of `--validators` validators (`validator1`, …): each block applies to the
//!    ledger, and carries a certificate of precommits from a quorum. It is written into the data
//!    directory of `validator1` (redb, as a node stores blocks) next to a genesis file.
//! 2. `validator1` is started (`timed run`) on that directory. Alone it holds no quorum, so its
//!    chain stays at `--blocks`.
//! 3. `validator2` is started with an empty directory. It learns the height from `validator1`'s
//!    `Decision` on connecting and fetches the blocks with `SyncRequest`/`SyncResponse` over QUIC,
//!    checks each certificate and block, and stores them — the path of any node that falls behind.
//!
//! The figure printed is blocks per second from the start of the fresh process until its
//! `/status` reports the last height (and, separately, from its first synced block).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use timed_core::block::{self, Block, Certificate, Header};
use timed_core::crypto::Keypair;
use timed_core::ledger::Ledger;
use timed_core::message::{Vote, VoteKind};
use timed_core::types::{Height, Round, Stake, TimestampMs};
use timed_core::validators::{ConsensusParams, Genesis, GenesisValidator};

use crate::keys;
use crate::net::handshake;
use crate::storage::store::{Store, StoredBlock};
use crate::tools::client::{Client, NodeUrl};
use crate::tools::devnet::{Children, Sched, free_port, sched};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Generate a chain, serve it from one node and time a fresh node syncing it over QUIC.
    Catchup(CatchupArgs),
    /// Signed transfers at a target rate into a network: finalized tx/s and latency p50/p99.
    Tx(crate::tools::bench_tx::TxArgs),
    /// How far a full node lags behind a devnet at block time 0 (p50/p90/p99 per height).
    Follow(crate::tools::bench_follow::FollowArgs),
    /// Generate a chain with many accounts and a snapshot of its tip, serve it from several
    /// nodes and time a fresh node's state sync (`--state-sync`), verification included.
    Statesync(crate::tools::bench_statesync::StatesyncArgs),
}

#[derive(Args)]
struct CatchupArgs {
    /// Length of the chain to catch up on.
    #[arg(long, default_value_t = 10_000)]
    blocks: u64,
    /// Validators in the genesis (a quorum of them signs each certificate).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = crate::parse_duration)]
    timeout: Duration,
    /// Directory for the two nodes' data and logs [default: a fresh temporary directory, removed
    /// at the end].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchCommand::Catchup(c) => catchup(c).await,
        BenchCommand::Tx(t) => crate::tools::bench_tx::run(t).await,
        BenchCommand::Follow(f) => crate::tools::bench_follow::run(f).await,
        BenchCommand::Statesync(s) => crate::tools::bench_statesync::run(s).await,
    }
}

pub(crate) fn dev_key(i: usize) -> Keypair {
    Keypair::insecure_from_name(&format!("validator{i}"))
}

/// Writes a chain of `blocks` finalized blocks into a node's database at `path`; returns the
/// ledger after the last (the state its header's `state_root` commits to). `absent` signs none
/// of them: the node timed to catch up, which would otherwise find its own key in every
/// certificate and take it for another instance of itself (a warning per block).
pub(crate) fn generate_chain(
    path: &Path,
    genesis: &Genesis,
    blocks: u64,
    absent: Option<&timed_core::crypto::PublicKey>,
) -> Result<Ledger> {
    let set = genesis.validate().context("the bench genesis is invalid")?;
    let keys: Vec<Keypair> = (1..=genesis.validators.len()).map(dev_key).collect();
    // The first validators (in index order, `absent` aside unless the others hold no quorum)
    // whose stake makes a quorum sign every certificate.
    let quorum_of = |skip: Option<&timed_core::crypto::PublicKey>| -> Result<Option<Vec<_>>> {
        let mut signers = Vec::new();
        let mut stake = 0u64;
        for (index, v) in set.iter() {
            if set.is_quorum(Stake(stake)) {
                break;
            }
            if Some(&v.public_key) == skip {
                continue;
            }
            stake += v.stake.0;
            let key = keys
                .iter()
                .find(|k| k.public_key() == v.public_key)
                .context("a validator without its development key")?;
            signers.push((index, key));
        }
        Ok(set.is_quorum(Stake(stake)).then_some(signers))
    };
    let signers = match quorum_of(absent)? {
        Some(s) => s,
        None => quorum_of(None)?.context("the bench validators hold no quorum")?,
    };
    let store = Store::open(path)?;
    store.bind_genesis(genesis)?;
    let chain_id = genesis.chain_id.as_str();
    let mut ledger = Ledger::from_genesis(genesis);
    let mut parent = genesis.hash();
    let mut time = genesis.genesis_time_ms.0;
    let mut batch = Vec::with_capacity(1000);
    for h in 1..=blocks {
        let height = Height(h);
        let proposer = set.proposer(height, Round::ZERO);
        let outcome = ledger
            .apply_block(chain_id, height, proposer, &set, &[], &[])
            .context("an empty block does not apply")?;
        time += 1;
        let block = Block {
            header: Header {
                chain_id: chain_id.to_string(),
                height,
                parent_hash: parent,
                timestamp: TimestampMs(time),
                proposer,
                tx_root: block::tx_root(&[]),
                state_root: ledger.state_root(),
                next_set_hash: ledger.staking().expect("a genesis ledger").current().hash(),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs: Vec::new(),
            evidence: Vec::new(),
        };
        let hash = block.hash();
        let votes: Vec<Vote> = signers
            .iter()
            .map(|(index, key)| {
                Vote::sign(
                    key,
                    chain_id,
                    height,
                    Round::ZERO,
                    VoteKind::Precommit,
                    Some(hash),
                    *index,
                )
            })
            .collect();
        let certificate = Certificate::from_precommits(height, Round::ZERO, hash, &votes);
        parent = hash;
        batch.push(StoredBlock {
            block,
            certificate,
            outcome,
            finality_ms: crate::storage::stored::FinalityMs(None),
        });
        if batch.len() == 1000 || h == blocks {
            store.commit_blocks(&batch, None)?;
            batch.clear();
        }
    }
    store.close()?;
    Ok(ledger)
}

pub(crate) async fn status_height(addr: SocketAddr) -> Option<u64> {
    let status: serde_json::Value = Client::new(NodeUrl::from_addr(addr))
        .with_timeout(Duration::from_secs(5))
        .get("/status")
        .await
        .ok()?;
    status.get("height")?.as_u64()
}

fn spawn_node(
    children: &mut Children,
    dir: &Path,
    name: &str,
    genesis: &Path,
    port: u16,
    peer: u16,
) -> Result<()> {
    let mut cmd =
        Command::new(std::env::current_exe().context("cannot find the timed executable")?);
    cmd.arg("run")
        .arg("--genesis")
        .arg(genesis)
        .arg("--key")
        .arg(dir.join(format!("{name}.key")))
        .arg("--data-dir")
        .arg(dir.join(name))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--peers")
        .arg(format!("127.0.0.1:{peer}"));
    spawn_logged(children, dir, name, cmd, "warn")
}

/// Starts `cmd` (a `timed` command) as the child `name`, its output (stdout and stderr) in
/// `<dir>/<name>.log`, with `RUST_LOG` set to `log` unless the bench's own is set.
pub(crate) fn spawn_logged(
    children: &mut Children,
    dir: &Path,
    name: &str,
    mut cmd: Command,
    log: &str,
) -> Result<()> {
    let file = std::fs::File::create(dir.join(format!("{name}.log")))
        .with_context(|| format!("cannot create the log of {name}"))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", log);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    children.0.push((name.to_string(), child));
    Ok(())
}

async fn catchup(a: CatchupArgs) -> Result<()> {
    if a.blocks == 0 {
        bail!("--blocks must be positive");
    }
    if !(2..=100).contains(&a.validators) {
        bail!("--validators must be between 2 and 100 (one serves, one catches up)");
    }
    in_bench_dir(
        a.data_dir.clone(),
        "timed-bench",
        &["validator1", "validator2"],
        |dir| async move { catchup_in(&a, &dir).await },
    )
    .await
}

/// Runs a bench in `given` (which must not hold one already: none of `taken` in it), or in a
/// fresh temporary directory named after `prefix`, removed at the end.
pub(crate) async fn in_bench_dir<F, Fut>(
    given: Option<PathBuf>,
    prefix: &str,
    taken: &[&str],
    run: F,
) -> Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let temporary = given.is_none();
    let dir = given
        .unwrap_or_else(|| std::env::temp_dir().join(format!("{prefix}-{}", std::process::id())));
    if taken.iter().any(|t| dir.join(t).exists()) {
        bail!(
            "{} already holds a bench; give an empty --data-dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(dir.clone()).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The genesis of a bench chain of `blocks` blocks: `validators` development validators of
/// equal stake, no balances, default parameters, and a time far enough back that block i,
/// stamped genesis + i ms, lies in the past.
pub(crate) fn bench_genesis(chain_id: &str, blocks: u64, validators: usize) -> Genesis {
    Genesis {
        chain_id: chain_id.into(),
        genesis_time_ms: TimestampMs(crate::node::clock::unix_ms().saturating_sub(blocks + 60_000)),
        validators: (1..=validators)
            .map(|i| GenesisValidator {
                name: format!("validator{i}"),
                public_key: dev_key(i).public_key(),
                stake: Stake(100),
                address: None,
            })
            .collect(),
        balances: Vec::new(),
        params: ConsensusParams::default(),
    }
}

async fn catchup_in(a: &CatchupArgs, dir: &Path) -> Result<()> {
    let ports = [free_port()?, free_port()?];
    let genesis = bench_genesis("timed-bench", a.blocks, a.validators);
    let genesis_path = dir.join("genesis.json");
    handshake::write_genesis(&genesis_path, &genesis)?;
    for i in 1..=2 {
        keys::save(&dir.join(format!("validator{i}.key")), &dev_key(i))?;
    }
    let started = Instant::now();
    std::fs::create_dir_all(dir.join("validator1"))?;
    let db = dir.join("validator1").join("timed.redb");
    let blocks = a.blocks;
    let g = genesis.clone();
    let fresh_key = dev_key(2).public_key();
    tokio::task::spawn_blocking(move || generate_chain(&db, &g, blocks, Some(&fresh_key)))
        .await
        .context("the chain generator stopped")??;
    println!(
        "bench catchup: generated {} blocks ({} validators, certificates of a quorum) in {:.1} s",
        a.blocks,
        a.validators,
        started.elapsed().as_secs_f64()
    );

    let mut children = Children(Vec::new());
    let serve: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let fresh: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    spawn_node(
        &mut children,
        dir,
        "validator1",
        &genesis_path,
        ports[0],
        ports[1],
    )?;
    let deadline = Instant::now() + a.timeout;
    while status_height(serve).await != Some(a.blocks) {
        check_alive(&mut children, dir)?;
        if Instant::now() > deadline {
            bail!("validator1 did not serve height {} in time", a.blocks);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let t0 = Instant::now();
    let ticks0 = cpu_ticks();
    spawn_node(
        &mut children,
        dir,
        "validator2",
        &genesis_path,
        ports[1],
        ports[0],
    )?;
    let pids: Vec<u32> = children.0.iter().map(|(_, c)| c.id()).collect();
    let mut first: Option<(u64, Instant)> = None;
    loop {
        check_alive(&mut children, dir)?;
        if Instant::now() > deadline {
            bail!(
                "validator2 did not catch up in time; see {}",
                dir.join("validator2.log").display()
            );
        }
        if let Some(h) = status_height(fresh).await {
            if h > 0 && first.is_none() {
                first = Some((h, Instant::now()));
            }
            if h >= a.blocks {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = t0.elapsed().as_secs_f64();
    let idle = cpu_ticks()
        .zip(ticks0)
        .map(|((busy, idle), (busy0, idle0))| {
            let (b, i) = (busy - busy0, idle - idle0);
            100.0 * i as f64 / (b + i).max(1) as f64
        });
    let cpu: Vec<Option<Cpu>> = pids.iter().map(|p| Cpu::of(*p)).collect();
    children.stop();
    println!(
        "bench catchup: a fresh node synced {} blocks over QUIC in {total:.2} s: {:.0} blocks/s \
         (from process start, including start-up and the handshake)",
        a.blocks,
        a.blocks as f64 / total
    );
    if let Some((h, t)) = first {
        let secs = (total - (t - t0).as_secs_f64()).max(f64::EPSILON);
        println!(
            "bench catchup: from its first synced block (height {h}, {:.2} s after start): {:.0} \
             blocks/s",
            (t - t0).as_secs_f64(),
            (a.blocks - h) as f64 / secs
        );
    }
    if let [Some(serving), Some(fresh)] = cpu.as_slice() {
        println!(
            "bench catchup: the fresh node {}; the serving node {}; load average {} ({} cores)",
            fresh.shown(),
            serving.shown(),
            crate::tools::devnet::load_average(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        println!(
            "bench catchup: the fresh node's threads: {}; the machine's cores {} idle",
            fresh.by_thread(),
            idle.map_or_else(|| "?".into(), |i| format!("{i:.0} %")),
        );
    }
    Ok(())
}

pub(crate) fn check_alive(children: &mut Children, dir: &Path) -> Result<()> {
    for (name, c) in &mut children.0 {
        if let Ok(Some(status)) = c.try_wait() {
            bail!(
                "{name} exited ({status}); see {}",
                dir.join(format!("{name}.log")).display()
            );
        }
    }
    Ok(())
}

/// A process's CPU time: the whole process's (every thread's, those ended included, from
/// `/proc/<pid>/stat`) and its main thread's time on a core and waiting for one
/// (`/proc/<pid>/schedstat`, what `devnet::sched` reads: the main thread only).
pub(crate) struct Cpu {
    pub(crate) process_secs: Option<f64>,
    pub(crate) main: Option<Sched>,
    /// Time on a core of the threads alive at the end, summed by thread name (the
    /// checkers of the blocking pool, the HTTP runtime, ...), most first.
    pub(crate) threads: Vec<(String, f64)>,
}

impl Cpu {
    pub(crate) fn of(pid: u32) -> Option<Cpu> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        // After the command's name (in parentheses, which may hold spaces): fields 3 on;
        // utime and stime are fields 14 and 15, in clock ticks.
        let process_secs = stat.as_deref().and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / clock_ticks())
        });
        let main = sched(pid);
        let threads = threads_by_name(pid);
        (process_secs.is_some() || main.is_some()).then_some(Cpu {
            process_secs,
            main,
            threads,
        })
    }

    pub(crate) fn shown(&self) -> String {
        let process = self
            .process_secs
            .map_or_else(|| "?".into(), |s| format!("{s:.2}"));
        match &self.main {
            Some(m) => format!(
                "ran {process} s of CPU (its main thread {:.2} s on a core, {:.2} s waiting for \
                 one)",
                m.cpu_ns as f64 / 1e9,
                m.wait_ns as f64 / 1e9
            ),
            None => format!("ran {process} s of CPU"),
        }
    }

    /// The threads' time, as `name 0.12 s, ...`.
    pub(crate) fn by_thread(&self) -> String {
        self.threads
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The machine's busy and idle (idle and I/O wait) clock ticks so far, over all cores
/// (`/proc/stat`).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = f.get(3)? + f.get(4)?;
    let busy = f.iter().take(8).sum::<u64>().checked_sub(idle)?;
    Some((busy, idle))
}

/// Each live thread's time on a core (`/proc/<pid>/task/<tid>/schedstat`, first field, in ns),
/// summed by its name (`comm`), the busiest first.
fn threads_by_name(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: BTreeMap<String, f64> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            *by_name.entry(name.trim().to_string()).or_default() += ns as f64 / 1e9;
        }
    }
    let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's, if that fails).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
