//! Starting one node: data directory, store, genesis, QUIC endpoint, HTTP server, consensus loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use timed_core::consensus::{Node, NodeConfig};
use timed_core::crypto::Keypair;
use timed_core::validators::Genesis;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::ctx::{CORE_QUEUE, Ctx, DevMode, Live};
use crate::driver::Driver;
use crate::handshake::{fix_genesis, read_genesis};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::{self, PeerPolicy};

pub struct Setup {
    pub name: String,
    pub key: Keypair,
    pub dev: Option<DevMode>,
    pub genesis: Option<Genesis>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub peers: Vec<String>,
    pub http: crate::httpserve::Limits,
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
        key,
        dev,
        genesis,
        data_dir,
        listen,
        peers,
        http: http_limits,
    } = setup;
    info!("Starting validator node: {name}");
    // Before any file or socket is opened: the descriptors the node may hold (http.rs caps the
    // HTTP clients' share of them).
    let fd_limit = crate::httpserve::raise_fd_limit();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
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

    let policy = PeerPolicy::any();
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

    let shutdown = shutdown_signal();
    let (to_core, rx) = mpsc::channel(CORE_QUEUE);
    let (gossip, gossip_rx) = mpsc::channel(CORE_QUEUE);
    let mut known = std::collections::BTreeMap::new();
    if let Some(d) = &dev {
        known.insert(name.clone(), (key.public_key(), d.stake));
    }
    let ctx = Arc::new(Ctx {
        name: name.clone(),
        key: key.clone(),
        dev,
        data_dir,
        store,
        metrics: Metrics::new(),
        policy,
        chain: watch::channel(None).0,
        known: Mutex::new(known),
        peers: Mutex::new(Default::default()),
        to_core,
        gossip,
        live: Mutex::new(Live::default()),
        redial: tokio::sync::Notify::new(),
        started: Instant::now(),
        shutdown: shutdown.clone(),
        http: http_limits,
    });
    if let Some(g) = initial {
        fix_genesis(&ctx, g, already_on_disk).map_err(anyhow::Error::msg)?;
    } else {
        info!(
            "No genesis yet: waiting to hear from {} peers to form it",
            ctx.dev.as_ref().map_or(0, |d| d.expected_peers)
        );
    }

    tokio::spawn(crate::txverify::run(ctx.clone(), gossip_rx));
    // Its own thread and runtime: nothing a client asks runs on this one (httpserve.rs).
    let http_thread = crate::httpserve::start(ctx.clone(), http, fd_limit)
        .context("cannot start the HTTP server's thread")?;
    crate::net::start(ctx.clone(), endpoint.clone(), peers);

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

    let restore = ctx.store.restore()?;
    let resumed = restore.last.as_ref().map(|d| d.block.height());
    let records = restore.records.len();
    let node = Node::restore(&chain.genesis, key, NodeConfig::default(), restore)?;
    match resumed {
        Some(h) => info!("Resuming after height {h} from disk ({records} persisted records)"),
        None => info!("Starting a new chain at height 1"),
    }
    if node.me().is_none() {
        warn!("This key is not a validator of the genesis: running as an observer");
    }
    let result = Driver::new(node, ctx.clone(), chain).run(rx).await;
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
