//! `timed bench tx`: signed transfers at a target rate into a running network, and how many per
//! second are finalized, with the latency from submission to finalization.
//!
//! 1. **Network.** `--node URL,...` and `--key FILE` (a funded key) name a running network;
//!    without `--node` the bench starts `timed devnet --nodes 3 --block-time 0` and uses its
//!    ready wallet.
//! 2. **Senders.** A sender may have at most 64 transfers pending beyond its nonce
//!    (`MAX_NONCE_GAP`), so the funded key first pays `--accounts` fresh accounts (64 transfers at
//!    a time, each group waited for), which then send to each other.
//! 3. **Signing** happens before the clock starts, on every core: the figure is the network's,
//!    not the load generator's signing speed.
//! 4. **Load.** Batches of `--batch` transfers go out with `POST /txs` on one kept-alive
//!    connection per node, in order (the next batch to the first free connection), each at its
//!    due time (`k · batch / rate`), until `--duration` has passed. Transfers pending (submitted, not yet seen final) are capped under the
//!    mempool's capacity; when the network falls behind the generator waits, so the rate it
//!    reaches is the network's.
//! 5. **Finality** is read from the first node's `/summaries?hashes=true` every 20 ms: a transfer
//!    counts at the first poll that shows its block (latency ≤ true latency + 20 ms + one poll).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use timed_core::crypto::Keypair;
use timed_core::types::Amount;
use tokio::sync::Mutex;

use crate::keys;
use crate::tools::client::{Client, NodeUrl};
use crate::tools::devnet::Children;
use crate::tools::wallet::fetch_chain_id;

mod prepare;

use prepare::{Batch, fund, sender_key, sign_all};
use timed_core::units::percentile;

#[derive(Args)]
pub struct TxArgs {
    /// Nodes to submit to (HTTP API URLs, comma separated); each batch goes to the first free
    /// connection. Without it,
    /// a devnet of --nodes validators at block time 0 is started for the run.
    #[arg(long, value_delimiter = ',')]
    node: Vec<String>,
    /// A funded key file (a devnet prints its wallet's); needed with --node.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Target transfers per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to submit.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Sender accounts funded for the run.
    #[arg(long, default_value_t = 512)]
    accounts: usize,
    /// Transfers per POST /txs.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Transfers submitted and not yet seen final at most (below the mempool's 20,000).
    #[arg(long, default_value_t = 15_000)]
    max_pending: u64,
    /// Validators of the devnet started without --node.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

/// A devnet started for a bench, stopped (and its directory removed) when dropped.
pub(crate) struct OwnDevnet {
    _children: Children,
    pub(crate) dir: PathBuf,
}

impl Drop for OwnDevnet {
    fn drop(&mut self) {
        self._children.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `timed devnet` at block time 0, its processes given `env`, and reads its nodes' URLs
/// and its wallet's key file from what it prints.
pub(crate) fn start_devnet(
    nodes: usize,
    env: &[(&str, &str)],
) -> Result<(OwnDevnet, Vec<String>, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the timed executable")?;
    let dir = std::env::temp_dir().join(format!("timed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut child = Command::new(exe)
        .envs(env.iter().copied())
        .args(["devnet", "--nodes", &nodes.to_string(), "--block-time", "0"])
        .arg("--report")
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start timed devnet")?;
    let stdout = child.stdout.take().context("no devnet output")?;
    let devnet = OwnDevnet {
        _children: Children(vec![("devnet".into(), child)]),
        dir: dir.clone(),
    };
    let mut ports = Vec::new();
    let mut key = None;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.context("reading the devnet's output")?;
        if let Some(rest) = line.split(" ports ").nth(1) {
            let list = rest.split(',').map(|p| p.split_whitespace().next());
            ports = list
                .filter_map(|p| p.and_then(|p| p.parse::<u16>().ok()))
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect();
        }
        if let Some(rest) = line.split("; key ").nth(1) {
            key = rest.split_whitespace().next().map(PathBuf::from);
        }
        if !ports.is_empty() && key.is_some() {
            break;
        }
    }
    // Keep reading what the devnet prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    match key {
        Some(k) if !ports.is_empty() => Ok((devnet, ports, k)),
        _ => bail!("timed devnet did not print its ports and wallet; see its output above"),
    }
}

/// Waits until every node has a genesis and a first block.
async fn wait_ready(clients: &mut [Client]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut chain = None;
    for c in clients.iter_mut() {
        loop {
            if let Ok(s) = c.get::<Value>("/status").await
                && s["height"].as_u64().unwrap_or(0) >= 1
                && let Some(id) = s["chain_id"].as_str()
            {
                chain = Some(id.to_string());
                break;
            }
            if Instant::now() > deadline {
                bail!("{} did not finalize a block within 60 s", c.url().shown);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    chain.context("no node")
}

/// Submits pre-encoded transfers in batches; returns refusals by reason.
async fn post_batch(client: &mut Client, body: &[u8]) -> Result<HashMap<String, u64>> {
    let answers: Vec<Value> = client.post_raw("/txs", body).await?;
    let mut refused = HashMap::new();
    for a in answers {
        if let Some(reason) = a["reason"].as_str() {
            *refused.entry(reason.to_string()).or_default() += 1;
        }
    }
    Ok(refused)
}

/// What the load and the observer share.
struct Shared {
    /// The next batch to send, whichever connection is free: batches leave in order, so a
    /// sender's nonces are never far apart (a connection running ahead of the others would hold
    /// back transfers behind nonces not yet sent).
    next_batch: AtomicUsize,
    submitted: AtomicU64,
    /// Submitters still running.
    running: AtomicU64,
    finalized: AtomicU64,
    /// Transfer hash → when its batch was sent.
    sent_at: Mutex<HashMap<String, Instant>>,
}

pub async fn run(a: TxArgs) -> Result<()> {
    // Ctrl-C or SIGTERM: return, so that a devnet of our own is stopped on the way out.
    let mut stop = crate::node::app::shutdown_signal();
    tokio::select! {
        r = run_bench(a) => r,
        _ = stop.wait_for(|s| *s) => bail!("interrupted"),
    }
}

async fn run_bench(a: TxArgs) -> Result<()> {
    if a.rate == 0 || a.batch == 0 || a.accounts == 0 || a.duration.is_zero() {
        bail!("--rate, --batch, --accounts and --duration must be positive");
    }
    if a.batch > crate::api::txbatch::MAX_BATCH {
        bail!("--batch must be at most {}", crate::api::txbatch::MAX_BATCH);
    }
    let (_devnet, urls, key_path) = if a.node.is_empty() {
        if a.key.is_some() {
            bail!("--key needs --node (without --node the bench starts a devnet of its own)");
        }
        let (d, urls, key) = start_devnet(a.nodes, &[])?;
        (Some(d), urls, key)
    } else {
        let key = a
            .key
            .clone()
            .context("--node needs --key: a funded key file to pay the senders from")?;
        (None, a.node.clone(), key)
    };
    let funder = keys::load(&key_path)?;
    let mut clients: Vec<Client> = urls
        .iter()
        .map(|u| NodeUrl::parse(u).map(|u| Client::new(u).with_timeout(Duration::from_secs(30))))
        .collect::<Result<_, _>>()?;
    let chain_id = wait_ready(&mut clients).await?;
    let chain_again = fetch_chain_id(&mut clients[0]).await?;
    debug_assert_eq!(chain_id, chain_again);

    let count = (a.rate as f64 * a.duration.as_secs_f64()).round() as usize;
    let per_sender = count.div_ceil(a.accounts) as u64 + 1;
    let mut seed = [0u8; 32];
    {
        use rand::TryRng;
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    }
    let senders: Vec<Keypair> = (0..a.accounts).map(|i| sender_key(&seed, i)).collect();
    let t = Instant::now();
    fund(
        &mut clients[0],
        &chain_id,
        &funder,
        &senders,
        Amount(per_sender * 2 + 1),
    )
    .await?;
    println!(
        "bench tx: {} nodes ({}), {} senders funded in {:.1} s",
        urls.len(),
        urls.join(", "),
        a.accounts,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let chain = chain_id.clone();
    let batches = tokio::task::spawn_blocking({
        let senders = senders.clone();
        let batch = a.batch;
        move || sign_all(&chain, &senders, count, batch)
    })
    .await
    .context("the signing threads stopped")?;
    println!(
        "bench tx: {count} transfers signed in {:.1} s (before the clock starts)",
        t.elapsed().as_secs_f64()
    );
    load(a, clients, batches, count).await
}

async fn load(a: TxArgs, clients: Vec<Client>, batches: Vec<Batch>, count: usize) -> Result<()> {
    let shared = Arc::new(Shared {
        next_batch: AtomicUsize::new(0),
        submitted: AtomicU64::new(0),
        running: AtomicU64::new(clients.len() as u64),
        finalized: AtomicU64::new(0),
        sent_at: Mutex::new(HashMap::with_capacity(count)),
    });
    let observer_url = clients[0].url().clone();
    let start_height = {
        let mut c = Client::new(observer_url.clone());
        c.get::<Value>("/status").await?["height"]
            .as_u64()
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(a.batch as f64 / a.rate as f64);
    let batches = Arc::new(batches);
    let mut tasks = Vec::new();
    for client in clients {
        let (shared, batches) = (shared.clone(), batches.clone());
        let (max_pending, duration) = (a.max_pending, a.duration);
        tasks.push(tokio::spawn(async move {
            let r = submit(
                client,
                &batches,
                &shared,
                t0,
                interval,
                max_pending,
                duration,
            )
            .await;
            shared.running.fetch_sub(1, Ordering::Relaxed);
            r
        }));
    }
    let observer = tokio::spawn(observe(
        Client::new(observer_url).with_timeout(Duration::from_secs(30)),
        shared.clone(),
        start_height + 1,
        t0,
    ));
    let mut refused: HashMap<String, u64> = HashMap::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.context("a submitter stopped")? {
            Ok(r) => {
                for (k, v) in r {
                    *refused.entry(k).or_default() += v;
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let submit_secs = t0.elapsed().as_secs_f64();
    let submitted = shared.submitted.load(Ordering::Relaxed);
    let accepted = submitted - refused.values().sum::<u64>();
    let seen = observer.await.context("the observer stopped")??;
    let offered = Offered {
        signed: count,
        submitted,
        accepted,
        refused,
        errors,
        secs: submit_secs,
    };
    report(&a, &offered, seen);
    Ok(())
}

/// Sends the next batch due (batch k at `t0 + k · interval`) on this connection, until
/// `duration` has passed; a batch taken is always sent, so the cut leaves no nonce gap. What was
/// not sent by then is left out: the network took less than offered.
async fn submit(
    mut client: Client,
    batches: &[Batch],
    shared: &Shared,
    t0: Instant,
    interval: Duration,
    max_pending: u64,
    duration: Duration,
) -> Result<HashMap<String, u64>> {
    let mut refused: HashMap<String, u64> = HashMap::new();
    let end = t0 + duration;
    while Instant::now() < end {
        let index = shared.next_batch.fetch_add(1, Ordering::Relaxed);
        let Some(Batch { body, hashes }) = batches.get(index) else {
            break;
        };
        tokio::time::sleep_until((t0 + interval.mul_f64(index as f64)).into()).await;
        while shared.submitted.load(Ordering::Relaxed) + hashes.len() as u64
            > shared.finalized.load(Ordering::Relaxed) + max_pending
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let now = Instant::now();
        {
            let mut sent = shared.sent_at.lock().await;
            for h in hashes {
                sent.insert(h.clone(), now);
            }
        }
        shared
            .submitted
            .fetch_add(hashes.len() as u64, Ordering::Relaxed);
        let r = post_batch(&mut client, body).await?;
        let n: u64 = r.values().sum();
        // Refused transfers will never be final: they no longer count as pending.
        shared.finalized.fetch_add(n, Ordering::Relaxed);
        for (reason, n) in r {
            *refused.entry(reason).or_default() += n;
        }
    }
    Ok(refused)
}

/// What the observer saw: latencies (ms) and the times of the first and last finality.
struct Seen {
    latencies: Vec<u64>,
    blocks: u64,
    max_block_txs: usize,
    first: Option<f64>,
    last: Option<f64>,
}

async fn observe(mut client: Client, shared: Arc<Shared>, from: u64, t0: Instant) -> Result<Seen> {
    let mut next = from;
    let mut seen = Seen {
        latencies: Vec::new(),
        blocks: 0,
        max_block_txs: 0,
        first: None,
        last: None,
    };
    let mut idle_since = Instant::now();
    loop {
        let list: Vec<Value> = client
            .get(&format!("/summaries?from={next}&limit=200&hashes=true"))
            .await?;
        let now = Instant::now();
        let mut found = 0u64;
        {
            let mut sent = shared.sent_at.lock().await;
            for b in &list {
                next = b["height"].as_u64().unwrap_or(next) + 1;
                seen.blocks += 1;
                let hashes = b["tx_hashes"].as_array().map_or(&[][..], |v| v.as_slice());
                seen.max_block_txs = seen.max_block_txs.max(hashes.len());
                for h in hashes.iter().filter_map(Value::as_str) {
                    if let Some(at) = sent.remove(h) {
                        seen.latencies.push((now - at).as_millis() as u64);
                        found += 1;
                    }
                }
            }
        }
        if found > 0 {
            let t = (now - t0).as_secs_f64();
            seen.first.get_or_insert(t);
            seen.last = Some(t);
            shared.finalized.fetch_add(found, Ordering::Relaxed);
            idle_since = now;
        }
        // Once every submitter is done: until all is final, or nothing more for 10 s (transfers
        // left behind a nonce the cut at the deadline never sent stay pending for good).
        if shared.running.load(Ordering::Relaxed) == 0
            && (shared.finalized.load(Ordering::Relaxed)
                >= shared.submitted.load(Ordering::Relaxed)
                || idle_since.elapsed() > Duration::from_secs(10))
        {
            return Ok(seen);
        }
        if list.len() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What was offered to the network.
struct Offered {
    signed: usize,
    submitted: u64,
    accepted: u64,
    refused: HashMap<String, u64>,
    errors: Vec<String>,
    secs: f64,
}

fn report(a: &TxArgs, o: &Offered, mut seen: Seen) {
    seen.latencies.sort_unstable();
    let finalized = seen.latencies.len() as u64;
    println!(
        "bench tx: target {} tx/s for {:.0} s: {} of {} signed transfers submitted in {:.1} s \
         ({:.0} tx/s offered), {} accepted, {} refused {:?}",
        a.rate,
        a.duration.as_secs_f64(),
        o.submitted,
        o.signed,
        o.secs,
        o.submitted as f64 / o.secs,
        o.accepted,
        o.submitted - o.accepted,
        o.refused,
    );
    for e in &o.errors {
        println!("bench tx: a submitter stopped: {e}");
    }
    let span = seen.last.unwrap_or(0.0);
    println!(
        "bench tx: {finalized} finalized in {span:.1} s from the first submission: {:.0} tx/s \
         finalized; {} blocks, up to {} transfers in one; {} accepted but not seen final",
        if span > 0.0 {
            finalized as f64 / span
        } else {
            0.0
        },
        seen.blocks,
        seen.max_block_txs,
        o.accepted.saturating_sub(finalized)
    );
    println!(
        "bench tx: latency from submission to finality seen by the client (polled every 20 ms): \
         p50 {} ms, p99 {} ms, max {} ms",
        percentile(&seen.latencies, 0.5),
        percentile(&seen.latencies, 0.99),
        seen.latencies.last().copied().unwrap_or(0)
    );
}
