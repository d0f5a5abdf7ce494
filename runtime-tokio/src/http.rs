//! The HTTP API (axum, TCP, the same port number as QUIC's UDP):
//!
//! - `GET /status`: the node at a glance (JSON);
//! - `GET /metrics`: Prometheus text;
//! - `GET /blocks/{height}`, `GET /blocks/latest`, `GET /blocks?from=H&limit=N`: blocks with
//!   their certificates and outcomes;
//! - `GET /tx/{hash}`: a transaction: `"status": "finalized"` with its block height, or
//!   `"status": "pending"` while it waits in this node's mempool;
//! - `GET /accounts/{address}`: balance and nonce of an account (hex public key);
//! - `POST /tx`: submit a signed transfer (JSON); 202 when admitted to the mempool, 4xx with a
//!   reason otherwise.
//!
//! Also: the dashboard (`GET /`, `dashboard.rs`) and `POST /txs` (a batch, `txbatch.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use timed_core::tx::SignedTransfer;
use timed_core::types::{Hash, Height};
use tokio::sync::oneshot;

use crate::ctx::{CoreInput, Ctx, lock};
use crate::keys::parse_public_key;
use crate::store::StoredBlock;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/blocks", get(blocks_range))
        .route("/blocks/latest", get(block_latest))
        .route("/blocks/{height}", get(block_at))
        .route("/tx", axum::routing::post(submit_tx))
        .route("/tx/{hash}", get(tx_by_hash))
        .route("/accounts/{address}", get(account))
        .merge(crate::dashboard::routes().merge(crate::txbatch::routes()))
        .with_state(ctx)
}

fn error(code: StatusCode, reason: impl Into<String>) -> Response {
    (code, Json(json!({ "error": reason.into() }))).into_response()
}

fn storage(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn status(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    let live = lock(&ctx.live).clone();
    let peers = ctx.peer_names();
    let chain = ctx.chain();
    let validators: Vec<Value> = chain.as_ref().map_or_else(Vec::new, |c| {
        c.genesis
            .validators
            .iter()
            .map(|v| {
                json!({
                    "name": v.name,
                    "public_key": hex::encode(v.public_key.0),
                    "stake": v.stake.0,
                    "connected": v.name == ctx.name || peers.contains(&v.name),
                })
            })
            .collect()
    });
    let (total, threshold) = chain
        .as_ref()
        .map_or((0, 0), |c| (c.set.total_stake().0, c.set.quorum().0));
    Json(json!({
        "node": ctx.name,
        "public_key": hex::encode(ctx.key.public_key().0),
        "chain_id": chain.as_ref().map(|c| c.genesis.chain_id.clone()),
        "genesis_hash": chain.as_ref().map(|c| hex::encode(c.hash.0)),
        "height": live.height,
        "deciding_height": live.deciding_height,
        "round": live.round,
        "step": live.step,
        "validators": validators,
        "voting_weight": ctx.stake().0,
        "total_stake": total,
        "consensus_threshold": threshold,
        "blocks_finalized": live.height,
        "blocks_finalized_since_start": live.blocks_finalized_here,
        "pending_blocks": live.pending_blocks,
        "pending_transactions": live.pending_transactions,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "peers": peers,
        "last_block_hash": live.last_block_hash,
        "finality_latency_ms": live.finality_latency_ms,
        "clock_offset_ms": live.clock_offset_ms,
        "peer_clock_offsets_ms": live.peer_clock_offsets_ms,
        "evidence": live.evidence,
    }))
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
        .into_response()
}

/// A block as the API shows it.
#[derive(Serialize)]
struct BlockView<'a> {
    height: u64,
    hash: String,
    proposer: &'a str,
    signatures: usize,
    finality_ms: u64,
    reward: u64,
    #[serde(flatten)]
    stored: &'a StoredBlock,
}

fn block_json(ctx: &Ctx, s: &StoredBlock) -> Value {
    let chain = ctx.chain();
    let proposer = chain
        .as_ref()
        .map_or("?", |c| c.name(s.block.header.proposer));
    serde_json::to_value(BlockView {
        height: s.block.height().0,
        hash: hex::encode(s.block.hash().0),
        proposer,
        signatures: s.certificate.signatures.len(),
        finality_ms: s.finality_ms,
        reward: s.outcome.total_reward.0,
        stored: s,
    })
    .unwrap_or(Value::Null)
}

async fn block_at(State(ctx): State<Arc<Ctx>>, Path(height): Path<String>) -> Response {
    let Ok(h) = height.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "height must be a number or \"latest\"",
        );
    };
    match ctx.store.block(Height(h)) {
        Ok(Some(s)) => Json(block_json(&ctx, &s)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no block at height {h} yet")),
        Err(e) => storage(e),
    }
}

async fn block_latest(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.store.latest_height() {
        Ok(Some(h)) => match ctx.store.block(h) {
            Ok(Some(s)) => Json(block_json(&ctx, &s)).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, "no block yet"),
            Err(e) => storage(e),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, "no block yet"),
        Err(e) => storage(e),
    }
}

#[derive(Deserialize)]
struct RangeQuery {
    from: u64,
    limit: Option<usize>,
}

async fn blocks_range(State(ctx): State<Arc<Ctx>>, Query(q): Query<RangeQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(1000);
    match ctx.store.range(Height(q.from), limit, 64 * 1024 * 1024) {
        Ok(list) => Json(Value::Array(
            list.iter().map(|s| block_json(&ctx, s)).collect(),
        ))
        .into_response(),
        Err(e) => storage(e),
    }
}

fn parse_hash(text: &str) -> Option<Hash> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(Hash(bytes))
}

async fn tx_by_hash(State(ctx): State<Arc<Ctx>>, Path(hash): Path<String>) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a transaction hash is 64 hex digits",
        );
    };
    if ctx.chain().is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no genesis yet (still meeting its peers)",
        );
    }
    // The mempool first: a transfer leaves it in the same step that stores its block, so asking
    // in this order never misses one that moves between the two.
    let (reply, answer) = oneshot::channel();
    if ctx
        .to_core
        .try_send(CoreInput::PendingTx(hash, reply))
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is busy; retry");
    }
    if let Ok(Ok(Some(tx))) = tokio::time::timeout(Duration::from_secs(5), answer).await {
        return Json(json!({
            "hash": hex::encode(hash.0),
            "status": "pending",
            "transaction": tx,
        }))
        .into_response();
    }
    let height = match ctx.store.tx_height(&hash) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "no transaction with this hash in a finalized block or in this node's mempool",
            );
        }
        Err(e) => return storage(e),
    };
    match ctx.store.block(height) {
        Ok(Some(s)) => match s.block.txs.iter().find(|t| t.hash() == hash) {
            Some(tx) => Json(json!({
                "hash": hex::encode(hash.0),
                "status": "finalized",
                "height": height.0,
                "block_hash": hex::encode(s.block.hash().0),
                "transaction": tx,
            }))
            .into_response(),
            None => storage("the transaction index points to a block without it"),
        },
        Ok(None) => storage("the transaction index points to a missing block"),
        Err(e) => storage(e),
    }
}

async fn account(State(ctx): State<Arc<Ctx>>, Path(address): Path<String>) -> Response {
    let Some(key) = parse_public_key(&address) else {
        return error(
            StatusCode::BAD_REQUEST,
            "an address is a public key of 64 hex digits",
        );
    };
    match ctx.store.account(&key) {
        Ok(a) => Json(json!({
            "address": hex::encode(key.0),
            "balance": a.balance.0,
            "balance_time": a.balance.to_string(),
            "nonce": a.nonce,
        }))
        .into_response(),
        Err(e) => storage(e),
    }
}

async fn submit_tx(
    State(ctx): State<Arc<Ctx>>,
    body: Result<Json<SignedTransfer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let tx = match body {
        Ok(Json(tx)) => tx,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed transfer: {}", rejection.body_text()),
            );
        }
    };
    if ctx.chain().is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no genesis yet (still meeting its peers)",
        );
    }
    let (reply, answer) = oneshot::channel();
    if ctx
        .to_core
        .try_send(CoreInput::SubmitTx(tx, reply))
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is busy; retry");
    }
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(Ok(hash))) => (
            StatusCode::ACCEPTED,
            Json(json!({ "hash": hex::encode(hash.0), "status": "pending" })),
        )
            .into_response(),
        Ok(Ok(Err(e))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "reason": e.reason() })),
        )
            .into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node did not answer in time",
        ),
    }
}
