//! Starting one node: data directory, store, genesis, QUIC endpoint, HTTP server, consensus loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use timed_core::consensus::{Node, NodeConfig, Restore};
use timed_core::crypto::Keypair;
use timed_core::validators::Genesis;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::net::handshake::{fix_genesis, read_genesis};
use crate::net::tls::{self, PeerPolicy};
use crate::node::ctx::{CORE_QUEUE, Ctx, DevMode, FINALIZED_QUEUE, Live, Role};
use crate::node::driver::Driver;
use crate::node::metrics::Metrics;
use crate::storage::guard::Guard;
use crate::storage::store::Store;

pub struct Setup {
    pub name: String,
    /// A validator, or a full node (`--full-node`: follows its `peers`, signs nothing).
    pub role: Role,
    /// `--max-followers`: full nodes and other readers admitted at once (0: none).
    pub max_followers: usize,
    pub key: Keypair,
    pub dev: Option<DevMode>,
    pub genesis: Option<Genesis>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub peers: Vec<String>,
    pub http: crate::api::httpserve::Limits,
    /// `--metrics-listen`: `/metrics` on this address alone, not on `listen`'s.
    pub metrics_listen: Option<SocketAddr>,
    /// The double-sign guard file (`guard.rs`): beside the key file, or beside the data directory
    /// of a development validator.
    pub guard: PathBuf,
    /// `--double-sign-check-ms`: how long to watch before signing after a start that shows lost
    /// records [default: 0 for a brand-new validator, else twice the genesis resend interval].
    pub double_sign_check_ms: Option<u64>,
    /// `--retain-blocks`: keep only the last N blocks (`storage::pruner`) [default: all].
    pub retain_blocks: Option<u64>,
    /// `--snapshot-interval`: a snapshot every N heights (`storage::snapshots`); 0: none.
    pub snapshot_interval: u64,
    /// `--state-sync`: the HTTP APIs to take a snapshot from when the data directory is empty
    /// (`node::statesync`); empty: replay the chain from the genesis.
    pub state_sync: Vec<String>,
}

/// A watch that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    rx
}

pub async fn run_node(setup: Setup) -> Result<()> {
    let Setup {
        name,
        role,
        max_followers,
        key,
        dev,
        genesis,
        data_dir,
        listen,
        peers,
        http: http_limits,
        metrics_listen,
        guard: guard_path,
        double_sign_check_ms,
        retain_blocks,
        snapshot_interval,
        state_sync,
    } = setup;
    crate::node::logs::name_node(&name);
    match role {
        Role::Validator => info!("Starting validator node: {name}"),
        Role::FullNode => info!(
            "Starting full node: {name} (follows {}; signs nothing)",
            peers.join(", ")
        ),
    }
    // Before any file or socket is opened: the descriptors the node may hold (http.rs caps the
    // HTTP clients' share of them).
    let fd_limit = crate::api::httpserve::raise_fd_limit();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Brand new: no chain data and no guard file yet. Checked before either is created.
    let had_data = data_dir.join("timed.redb").exists() || data_dir.join("wal.log").exists();
    let (guard, had_guard) = Guard::open(&guard_path, key.public_key())?;
    let fresh = !had_data && !had_guard;
    if role == Role::Validator {
        info!(
            "Double-sign guard: {} (last signed: {})",
            guard_path.display(),
            guard
                .last()
                .map_or_else(|| "nothing yet".to_string(), |p| p.last.to_string())
        );
    }
    let store = Store::open(&data_dir.join("timed.redb"))?;

    // The genesis: given, or fixed earlier and kept in the data directory.
    let on_disk_path = data_dir.join("genesis.json");
    let on_disk = if on_disk_path.exists() {
        Some(read_genesis(&on_disk_path)?)
    } else {
        None
    };
    let (initial, already_on_disk) = match (genesis, on_disk) {
        (Some(g), Some(d)) if g.hash() != d.hash() => bail!(
            "the genesis file differs from the one in {} (hash {} vs {}); use another --data-dir",
            on_disk_path.display(),
            hex::encode(&g.hash().0[..8]),
            hex::encode(&d.hash().0[..8])
        ),
        (Some(g), Some(_)) => (Some(g), true),
        (Some(g), None) => (Some(g), false),
        (None, Some(d)) => (Some(d), true),
        (None, None) => (None, false),
    };
    if let (Some(g), Some(dev)) = (&initial, &dev) {
        let mine = g
            .validators
            .iter()
            .find(|v| v.public_key == key.public_key());
        if mine.is_none_or(|v| v.stake != dev.stake) || g.params.block_time_ms != dev.block_time_ms
        {
            warn!(
                "The genesis in {} is fixed and differs from --stake/--block-time; the flags are \
                 ignored (remove the data directory to form a new genesis)",
                on_disk_path.display()
            );
        }
    }

    // The ledger a state sync verified and wrote: the restore below need not read it back.
    let mut synced = None;
    if !state_sync.is_empty() {
        match (&initial, store.latest_height()?) {
            (Some(g), None) => {
                let (_, ledger) = crate::node::statesync::sync(g, &state_sync, &store).await?;
                synced = Some(ledger);
            }
            (None, _) => bail!(
                "--state-sync needs the chain's genesis: give --genesis FILE (the snapshot is \
                 verified against it)"
            ),
            (Some(_), Some(h)) => info!(
                "--state-sync is not needed: the data directory holds the chain up to height \
                 {h}; going on from there"
            ),
        }
    }

    // Open: TLS admits any key and the hello tells validators from followers.
    let policy = PeerPolicy::new(max_followers > 0 || role == Role::FullNode);
    let (server, client) = tls::quic_configs(&key, policy.clone())?;
    let socket = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (UDP, QUIC)"))?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .with_context(|| format!("cannot start QUIC on {listen}"))?;
    endpoint.set_default_client_config(client);
    let http = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (TCP, HTTP)"))?;
    info!("Listening on {listen} (QUIC over UDP; HTTP over TCP: http://{listen}/status)");
    let metrics_http = match metrics_listen {
        Some(at) => {
            let l = std::net::TcpListener::bind(at)
                .with_context(|| format!("cannot listen on {at} (TCP, --metrics-listen)"))?;
            info!("Metrics on http://{at}/metrics (not on {listen})");
            Some(l)
        }
        None => None,
    };

    let shutdown = shutdown_signal();
    let (to_core, rx) = mpsc::channel(CORE_QUEUE);
    let (gossip, gossip_rx) = mpsc::channel(CORE_QUEUE);
    let (sync_answers, sync_answers_rx) = mpsc::channel(crate::node::synccheck::ANSWER_QUEUE);
    let mut known = std::collections::BTreeMap::new();
    if let Some(d) = &dev {
        known.insert(name.clone(), (key.public_key(), d.stake));
    }
    let ctx = Arc::new(Ctx {
        name: name.clone(),
        role,
        key: key.clone(),
        dev,
        data_dir,
        store,
        snapshot_interval,
        metrics: Metrics::new(),
        policy,
        chain: watch::channel(None).0,
        known: Mutex::new(known),
        peers: Mutex::new(Default::default()),
        twins: Mutex::new(Default::default()),
        to_core,
        gossip,
        sync_answers,
        sync_check: Default::default(),
        live: Mutex::new(Live::default()),
        redial: tokio::sync::Notify::new(),
        started: Instant::now(),
        shutdown: shutdown.clone(),
        finalized: tokio::sync::broadcast::channel(FINALIZED_QUEUE).0,
        http: http_limits,
        proofs: crate::api::limits::RateLimiter::new(crate::api::http::PROOFS_PER_SECOND),
        cooloff: Default::default(),
        followers: crate::net::followers::Followers::new(max_followers),
        upstreams: Default::default(),
    });
    if let Some(g) = initial {
        fix_genesis(&ctx, g, already_on_disk).map_err(anyhow::Error::msg)?;
    } else if let Some(d) = ctx.dev.as_ref().filter(|d| d.expected_peers == 0) {
        // A development validator without --peers is a network of one: no hello will come.
        let mut genesis = crate::net::handshake::dev_genesis(
            &d.chain_id,
            d.params(),
            [(name.clone(), key.public_key(), d.stake)],
        );
        genesis.balances = d.balances.clone();
        fix_genesis(&ctx, genesis, false).map_err(anyhow::Error::msg)?;
    } else {
        info!(
            "No genesis yet: waiting to hear from {} peers to form it",
            ctx.dev.as_ref().map_or(0, |d| d.expected_peers)
        );
    }

    tokio::spawn(crate::node::txverify::run(ctx.clone(), gossip_rx));
    tokio::spawn(crate::node::synccheck::run(ctx.clone(), sync_answers_rx));
    if let Some(retain) = retain_blocks {
        crate::storage::pruner::start(ctx.clone(), retain)
            .context("cannot start the pruner's thread")?;
    }
    // Its own thread and runtime: nothing a client asks runs on this one (httpserve.rs).
    let http_thread = crate::api::httpserve::start(ctx.clone(), http, metrics_http, fd_limit)
        .context("cannot start the HTTP server's thread")?;
    crate::net::transport::start(ctx.clone(), endpoint.clone(), peers);

    let mut chain_rx = ctx.chain.subscribe();
    let mut stop = shutdown.clone();
    let chain = tokio::select! {
        c = chain_rx.wait_for(|c| c.is_some()) => c.ok().and_then(|c| c.clone()),
        _ = stop.wait_for(|s| *s) => None,
    };
    let Some(chain) = chain else {
        info!("Stopped before a genesis was formed");
        return Ok(());
    };

    let mut restore = ctx.store.restore_with(&chain.genesis, synced)?;
    restore.guard = guard.last();
    let resumed = restore.last.as_ref().map(|d| d.block.height());
    let records = restore.records.len();
    let check_ms = double_sign_check(&restore, fresh, double_sign_check_ms, &chain.genesis);
    if let Some(note) = watch_note(&restore, check_ms) {
        warn!("{note}");
    }
    let config = NodeConfig {
        double_sign_check_ms: check_ms,
        ..NodeConfig::default()
    };
    let node = Node::restore(&chain.genesis, key, config, restore)?;
    match resumed {
        Some(h) => info!("Resuming after height {h} from disk ({records} persisted records)"),
        None => info!("Starting a new chain at height 1"),
    }
    if node.me().is_none() && role == Role::Validator {
        warn!("This key is not a validator of the genesis: running as an observer");
    }
    let result = Driver::new(node, guard, ctx.clone(), chain).run(rx).await;
    endpoint.close(0u32.into(), b"shutdown");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    result?;
    // It stops on the same shutdown signal; a node stopped by a storage failure leaves it to
    // the process's exit.
    if *shutdown.borrow() {
        let _ = http_thread.join();
    }
    info!("Stopped");
    Ok(())
}

/// How long the core watches for its key's signatures made elsewhere before it signs, after a
/// start that shows lost records (`NodeConfig::double_sign_check_ms`; the core decides whether
/// records are lost: no guard, or a guard beyond the last record).
///
/// - given on the command line: that;
/// - a brand-new validator (no guard file, no chain data): 0, so that new networks, devnets and
///   tests start at once (a key copied to a new machine without its guard file looks brand new:
///   give the flag there);
/// - the guard at or below the last block on disk: 0, nothing of an unfinished height was
///   signed, so nothing is lost (the WAL's records of finalized heights are pruned, so without
///   this every clean restart would look like one with lost records);
/// - otherwise twice the genesis resend interval: peers re-send their messages every interval.
fn double_sign_check(restore: &Restore, fresh: bool, given: Option<u64>, genesis: &Genesis) -> u64 {
    let last = restore.last.as_ref().map(|d| d.block.height());
    if restore
        .guard
        .is_some_and(|g| last.is_some_and(|h| g.last.height <= h))
    {
        return 0;
    }
    match given {
        Some(ms) => ms,
        None if fresh => 0,
        None => 2 * genesis.params.resend_interval_ms,
    }
}

/// The line that says why the node will not sign at once, if it will watch first (the rule of
/// `Node::restore`).
fn watch_note(restore: &Restore, check_ms: u64) -> Option<String> {
    if check_ms == 0 {
        return None;
    }
    let last_record = restore.records.iter().filter_map(|r| r.sign_point()).max();
    let lost = match (restore.guard.map(|g| g.last), last_record) {
        (None, _) => "no double-sign guard file held a last signed point".to_string(),
        (Some(g), Some(r)) if g <= r => return None,
        (Some(g), Some(r)) => format!(
            "the double-sign guard says this validator signed up to {g}, its records only up to {r}"
        ),
        (Some(g), None) => format!(
            "the double-sign guard says this validator signed up to {g}, and none of its records \
             of that are on disk"
        ),
    };
    Some(format!(
        "Started without all of this validator's signed records ({lost}): it signs nothing for \
         {check_ms} ms while it watches the network for signatures of its key made elsewhere, \
         then nothing at or below the last point signed"
    ))
}
