//! The dashboard: `GET /` serves one page (HTML, JS and CSS compiled into the binary, nothing
//! fetched from elsewhere) that polls this node's JSON and shows the height, the time of the last
//! block, the validator set (its epoch, hash and the registry's pending changes: `validators.rs`)
//! and its members with their stake and whether each is online, the latest blocks, a chart
//! of finality latency and the peers; and the explorer (`explorer.js`: a search box, pages for a
//! block, a transaction and an account, reading `api/explorer.rs`).
//!
//! Its data, also useful to scripts:
//! - `GET /dashboard.json`: the whole picture in one answer (see `Overview`);
//! - `GET /summaries?from=H&limit=N[&hashes=true]`: block summaries from height H (at most
//!   1,000), with every transaction hash when asked (the load generator reads finality this way
//!   without fetching whole blocks as JSON).
//!
//! Summaries of the latest blocks are kept in a small window in memory, so a poll reads only the
//! blocks finalized since the last one from the store. `/summaries` is served from the last
//! `LATEST_BLOCKS` blocks finalized by this process, kept with their transaction hashes as they
//! are stored: its pollers (the load generator, the devnet's monitor) would otherwise each decode
//! every block again, thousands of transfers each, on the node under measurement.
//!
//! Those windows are the API's own. The consensus loop only announces the blocks it stores
//! (`Ctx::finalized`); a task of the HTTP runtime (`follow`) summarizes them into the window, so
//! the loop spends nothing on the dashboard. A poll copies what it needs out of the window
//! (hashes shared, not copied) and encodes it after letting go of the lock. An answer stops
//! before `--http-max-response-bytes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use timed_core::types::Height;
use tokio::sync::broadcast;

use crate::node::clock::unix_ms;
use crate::node::ctx::{Chain, Ctx, Finalized, lock};
use crate::storage::store::StoredBlock;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const EXPLORER: &str = include_str!("dashboard/explorer.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Blocks kept for the chart and the table.
const WINDOW: usize = 120;
/// Transactions shown per block on the page.
const TX_PREVIEW: usize = 5;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/explorer.js", get(explorer))
        .route("/dashboard.json", get(overview))
        .route("/summaries", get(summaries))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn explorer() -> Response {
    asset("text/javascript; charset=utf-8", EXPLORER)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(Clone, Debug, Serialize)]
struct TxPreview {
    hash: String,
    from: String,
    to: String,
    amount: u64,
    fee: u64,
}

/// One finalized block in brief.
#[derive(Clone, Debug, Serialize)]
struct Summary {
    height: u64,
    hash: String,
    timestamp_ms: u64,
    proposer: String,
    /// Names of the validators whose precommits the certificate holds.
    signers: Vec<String>,
    signatures: usize,
    reward: u64,
    fees: u64,
    txs: usize,
    /// `null` for a block this node caught up on (`finality.rs`).
    finality_ms: Option<u64>,
    tx_preview: Vec<TxPreview>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_hashes: Option<Vec<String>>,
}

fn summarize(chain: &Chain, s: &StoredBlock, hashes: bool) -> Summary {
    let b = &s.block;
    Summary {
        height: b.height().0,
        hash: hex::encode(b.hash().0),
        timestamp_ms: b.header.timestamp.0,
        proposer: crate::api::validators::name(chain, b.header.proposer),
        signers: s
            .certificate
            .signatures
            .iter()
            .map(|c| crate::api::validators::name(chain, c.validator))
            .collect(),
        signatures: s.certificate.signatures.len(),
        reward: s.outcome.total_reward.0,
        fees: s.outcome.fees.0,
        txs: b.txs.len(),
        finality_ms: s.finality_ms.0,
        tx_preview: b
            .txs
            .iter()
            .take(TX_PREVIEW)
            .map(|t| TxPreview {
                hash: hex::encode(t.hash().0),
                from: hex::encode(t.transfer.from.0),
                to: hex::encode(t.transfer.to.0),
                amount: t.transfer.amount.0,
                fee: t.transfer.fee.0,
            })
            .collect(),
        // The outcome lists the block's transaction hashes in block order: no need to hash the
        // transfers again (the load generator asks for them at every poll).
        tx_hashes: hashes.then(|| {
            s.outcome
                .archived
                .iter()
                .map(|h| hex::encode(h.0))
                .collect()
        }),
    }
}

/// A block finalized here, as `/summaries` shows it.
struct Latest {
    summary: Summary,
    hashes: Arc<Vec<timed_core::types::Hash>>,
}

/// Blocks kept for `/summaries` (a full block's hashes are 256 KiB).
const LATEST_BLOCKS: usize = 32;

/// The last blocks finalized by this process, consecutive heights.
static LATEST: Mutex<VecDeque<Latest>> = Mutex::new(VecDeque::new());

/// Keeps a block just stored for `/summaries`.
fn remember(chain: &Chain, s: &StoredBlock) {
    let summary = summarize(chain, s, false);
    let mut latest = lock(&LATEST);
    if latest
        .back()
        .is_some_and(|b| b.summary.height + 1 != summary.height)
    {
        latest.clear();
    }
    latest.push_back(Latest {
        summary,
        hashes: Arc::new(s.outcome.archived.clone()),
    });
    while latest.len() > LATEST_BLOCKS {
        latest.pop_front();
    }
}

/// A longer certificate for a block kept for `/summaries`: its signers as the store now has them.
fn extend(chain: &Chain, cert: &timed_core::block::Certificate) {
    let hash = hex::encode(cert.block_hash.0);
    let mut latest = lock(&LATEST);
    if let Some(b) = latest
        .iter_mut()
        .find(|b| b.summary.height == cert.height.0 && b.summary.hash == hash)
    {
        b.summary.signers = cert
            .signatures
            .iter()
            .map(|c| crate::api::validators::name(chain, c.validator))
            .collect();
        b.summary.signatures = cert.signatures.len();
    }
}

/// Follows what the consensus loop announces (`Ctx::finalized`) into the window of `/summaries`,
/// until the node stops. Announcements missed (this task fell behind) empty the window: the next
/// block starts it again, and the blocks between are read from the store.
pub async fn follow(ctx: Arc<Ctx>, mut finalized: broadcast::Receiver<Finalized>) {
    loop {
        match finalized.recv().await {
            Ok(Finalized::Block(s)) => {
                let Some(chain) = ctx.chain() else { continue };
                // The registry changed: read it before naming the block's signers.
                if s.outcome.staking.is_some() {
                    let _ = crate::api::validators::tip(&ctx, &chain);
                }
                // With a window's worth of announcements still queued behind it (a node
                // catching up announces thousands of blocks a second), this block would leave
                // the window before anyone could ask for it: not summarized at all. The window
                // then restarts at a later block, as after a miss.
                if finalized.len() < LATEST_BLOCKS {
                    remember(&chain, &s);
                }
            }
            Ok(Finalized::Extended(cert)) => {
                if let Some(chain) = ctx.chain() {
                    extend(&chain, &cert);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => lock(&LATEST).clear(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The last block finalized by this process: its height, and whether it was decided live (it has
/// a finality).
pub fn last_finalized_here() -> Option<(u64, bool)> {
    lock(&LATEST)
        .back()
        .map(|b| (b.summary.height, b.summary.finality_ms.is_some()))
}

/// Summaries from `from` on out of `LATEST`, if it holds `from` or the heights before it.
fn latest_summaries(from: u64, limit: usize, hashes: bool) -> Option<Vec<Summary>> {
    // Copied out under the lock (the hashes by reference), hex-encoded after: `follow` takes
    // this lock for every block stored.
    let picked: Vec<(Summary, Arc<Vec<timed_core::types::Hash>>)> = {
        let latest = lock(&LATEST);
        if latest.front()?.summary.height > from {
            return None;
        }
        latest
            .iter()
            .filter(|b| b.summary.height >= from)
            .take(limit)
            .map(|b| (b.summary.clone(), b.hashes.clone()))
            .collect()
    };
    Some(
        picked
            .into_iter()
            .map(|(summary, h)| Summary {
                tx_hashes: hashes.then(|| h.iter().map(|h| hex::encode(h.0)).collect()),
                ..summary
            })
            .collect(),
    )
}

/// The latest summaries, refreshed from the store on demand.
static RECENT: Mutex<VecDeque<Summary>> = Mutex::new(VecDeque::new());

fn recent(ctx: &Ctx, chain: &Chain) -> Result<Vec<Summary>, crate::storage::store::StoreError> {
    let Some(tip) = ctx.store.latest_height()? else {
        return Ok(Vec::new());
    };
    let mut window = lock(&RECENT);
    let have = window.back().map_or(0, |s| s.height);
    if have > tip.0 {
        window.clear();
    }
    let from = (have + 1)
        .max(tip.0.saturating_sub(WINDOW as u64 - 1))
        .max(1);
    if from <= tip.0 {
        let count = (tip.0 - from + 1) as usize;
        for s in ctx.store.range(Height(from), count, 256 * 1024 * 1024)? {
            window.push_back(summarize(chain, &s, false));
        }
        while window.len() > WINDOW {
            window.pop_front();
        }
    }
    Ok(window.iter().cloned().collect())
}

#[derive(Serialize)]
struct ValidatorView {
    name: String,
    public_key: String,
    stake: u64,
    /// This node, or a peer with an open connection to it.
    online: bool,
    /// The last height (of the recent window) whose certificate holds its signature.
    last_signed_height: Option<u64>,
}

async fn overview(State(ctx): State<Arc<Ctx>>) -> Response {
    let live = lock(&ctx.live).clone();
    let peers = ctx.peer_names();
    let Some(chain) = ctx.chain() else {
        return Json(json!({
            "node": ctx.name,
            "chain_id": null,
            "height": 0,
            "now_ms": unix_ms(),
            "validators": [],
            "peers": peers,
            "blocks": [],
            "note": "no genesis yet: this node is still meeting its peers",
        }))
        .into_response();
    };
    let blocks = match recent(&ctx, &chain) {
        Ok(b) => b,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    // The set that signs the next height (the genesis's until the first change).
    let members = crate::api::validators::current_members(&ctx, &chain)
        .unwrap_or_else(|| chain.set.members());
    let validators: Vec<ValidatorView> = members
        .iter()
        .map(|v| ValidatorView {
            name: v.name.clone(),
            public_key: hex::encode(v.public_key.0),
            stake: v.stake.0,
            online: v.name == ctx.name || peers.contains(&v.name),
            last_signed_height: blocks
                .iter()
                .rev()
                .find(|b| b.signers.contains(&v.name))
                .map(|b| b.height),
        })
        .collect();
    let set = crate::api::validators::summary(&ctx, &chain);
    let last = blocks.last();
    Json(json!({
        "node": ctx.name,
        "chain_id": chain.genesis.chain_id,
        "genesis_hash": hex::encode(chain.hash.0),
        "height": live.height,
        "round": live.round,
        "step": live.step,
        "last_block_time_ms": last.map(|b| b.timestamp_ms),
        "last_block_hash": last.map(|b| b.hash.clone()),
        "now_ms": unix_ms(),
        "total_stake": set.as_ref().map_or(chain.set.total_stake().0, |s| s["current"]["total_stake"].as_u64().unwrap_or(0)),
        "quorum": set.as_ref().map_or(chain.set.quorum().0, |s| s["current"]["quorum"].as_u64().unwrap_or(0)),
        "validator_set": set,
        "pending_transactions": live.pending_transactions,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "validators": validators,
        "peers": peers,
        "blocks": blocks,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct SummaryQuery {
    from: u64,
    limit: Option<usize>,
    #[serde(default)]
    hashes: bool,
}

/// Stored bytes read for one `/summaries` answer at most: a summary is small, the block it
/// comes from may be megabytes.
const SUMMARY_READ_BYTES: usize = 32 * 1024 * 1024;

async fn summaries(State(ctx): State<Arc<Ctx>>, Query(q): Query<SummaryQuery>) -> Response {
    let Some(chain) = ctx.chain() else {
        return crate::api::http::no_genesis();
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    let budget = ctx.http.max_response_bytes;
    // Read and encoded on a blocking thread of the HTTP runtime; the answer is an array that
    // stops before the byte budget (callers continue after its last height).
    let job = tokio::task::spawn_blocking(move || {
        let list = match latest_summaries(q.from, limit, q.hashes) {
            Some(list) => list,
            None => ctx
                .store
                .range(Height(q.from), limit, SUMMARY_READ_BYTES)?
                .iter()
                .map(|s| summarize(&chain, s, q.hashes))
                .collect(),
        };
        Ok::<_, crate::storage::store::StoreError>(
            crate::api::http::bounded_json_array(list, budget).0,
        )
    });
    match job.await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("the summaries could not be read: {e}") })),
        )
            .into_response(),
    }
}
