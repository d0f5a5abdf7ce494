//! The HTTP API (axum, TCP, the same port number as QUIC's UDP):
//!
//! - `GET /status`: the node at a glance (JSON);
//! - `GET /metrics`: Prometheus metrics (`metrics.rs`): OpenMetrics when asked for, else the
//!   classic text format. With `--metrics-listen` they are served on that address alone
//!   (`metrics_router`) and no longer here, so that a firewall can keep them apart from
//!   `POST /tx`;
//! - `GET /blocks/{height}`, `GET /blocks/latest`: a block with its certificate and outcome;
//! - `GET /blocks?from=H&limit=N`: `{"blocks": [...], "next_from": H', "more": bool}`, at most
//!   1,000 blocks and fewer than `--http-max-response-bytes` of JSON (one block at least);
//!   `next_from` is the height to ask for next, `more` says whether this node has it yet;
//! - `GET /tx/{hash}`: a transaction: `"status": "finalized"` with its block height, or
//!   `"status": "pending"` while it waits in this node's mempool;
//! - `GET /accounts/{address}`: balance and nonce of an account (hex public key); with
//!   `?proof=true`, also `proof`: the height of the last finalized block and the Merkle proof of
//!   the account against that block's state root (`ledger::AccountProof`: `siblings`, `leaf`,
//!   `staking_root`), which `timed wallet balance --verify` checks against a certified header;
//! - `GET /validators?height=H`: the set that signs a height, and the registry's pending
//!   changes (`validators.rs`);
//! - `POST /tx`: submit a signed transfer (JSON); 202 when admitted to the mempool, 4xx with a
//!   reason otherwise.
//!
//! Also: the explorer's reads (a block by hash, an account's transfers, `GET /search`:
//! `explorer.rs`), the dashboard (`GET /`, `dashboard.rs`), `POST /txs` (a batch, `txbatch.rs`), and
//! `GET /health`, `GET /ready` (`health.rs`).
//!
//! These handlers run on the HTTP server's own threads (`httpserve.rs`), which also enforce the
//! connection cap, timeouts and rate limit; a range is read and encoded on a blocking thread.

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
use timed_core::crypto::PublicKey;
use timed_core::ledger::Account;
use timed_core::message::Decision;
use timed_core::tx::SignedTransfer;
use timed_core::types::{Hash, Height};
use tokio::sync::oneshot;

use crate::keys::parse_public_key;
use crate::node::ctx::{CoreInput, Ctx, lock};
use crate::storage::store::StoredBlock;

/// The API; `/metrics` among it unless the metrics have their own address.
pub fn router(ctx: Arc<Ctx>, with_metrics: bool) -> Router {
    let api = Router::new();
    let api = if with_metrics {
        api.route("/metrics", get(metrics))
    } else {
        api
    };
    api.route("/status", get(status))
        .route("/blocks", get(blocks_range))
        .route("/blocks/latest", get(block_latest))
        .route("/blocks/{height}", get(block_at))
        .route("/tx", axum::routing::post(submit_tx))
        .route("/tx/{hash}", get(tx_by_hash))
        .route("/accounts/{address}", get(account))
        .merge(crate::api::dashboard::routes().merge(crate::api::txbatch::routes()))
        .merge(crate::api::health::routes())
        .merge(crate::api::explorer::routes())
        .merge(crate::api::validators::routes())
        .merge(crate::api::snapshots::routes())
        .with_state(ctx)
}

/// `/metrics` alone, for the address of `--metrics-listen`.
pub fn metrics_router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

pub(crate) fn error(code: StatusCode, reason: impl Into<String>) -> Response {
    (code, Json(json!({ "error": reason.into() }))).into_response()
}

/// The answer of a route that needs the chain while the node has no genesis yet.
pub(crate) fn no_genesis() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node has no genesis yet (still meeting its peers)",
    )
}

/// Queues `input` for the core without waiting; a full queue gives the "busy" answer at once.
pub(crate) fn ask_core(ctx: &Ctx, input: CoreInput) -> Option<Response> {
    ctx.to_core
        .try_send(input)
        .is_err()
        .then(|| error(StatusCode::SERVICE_UNAVAILABLE, "the node is busy; retry"))
}

pub(crate) fn storage(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn status(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    // The consensus loop sets the height and the last hash together, once the block is stored.
    let live = lock(&ctx.live).clone();
    let peers = ctx.peer_names();
    // A full node is connected to the validators it follows.
    let following = ctx.upstreams.names();
    let chain = ctx.chain();
    // The set that signs the next height (the genesis set until the first change); the fields
    // keep the shape they had when the set was the genesis's for ever.
    let members = chain.as_ref().map_or_else(Vec::new, |c| {
        crate::api::validators::current_members(&ctx, c).unwrap_or_else(|| c.set.members())
    });
    let validators: Vec<Value> = members
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "public_key": hex::encode(v.public_key.0),
                "stake": v.stake.0,
                "connected": v.name == ctx.name
                    || peers.contains(&v.name)
                    || following.contains(&v.name),
            })
        })
        .collect();
    // A set's stakes sum within 64 bits (`ValidatorSet`); saturate rather than trust that here.
    let total: u128 = members.iter().map(|m| u128::from(m.stake.0)).sum();
    let threshold = u64::try_from((2 * total).div_ceil(3)).unwrap_or(u64::MAX);
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    let set = chain
        .as_ref()
        .and_then(|c| crate::api::validators::summary(&ctx, c));
    Json(json!({
        "node": ctx.name,
        // "validator" (one of the set, or waiting for its election) or "full_node".
        "role": match ctx.role {
            crate::node::ctx::Role::Validator => "validator",
            crate::node::ctx::Role::FullNode => "full_node",
        },
        "version": crate::VERSION,
        "commit": crate::COMMIT,
        "public_key": hex::encode(ctx.key.public_key().0),
        "chain_id": chain.as_ref().map(|c| c.genesis.chain_id.clone()),
        "genesis_hash": chain.as_ref().map(|c| hex::encode(c.hash.0)),
        "height": live.height,
        // The lowest height whose block this node serves: 1 unless it prunes (--retain-blocks).
        "lowest_height": ctx.store.lowest_height().map_or(1, |h| h.0),
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
        // The nodes that follow this one (full nodes), and on a full node those it follows.
        "followers": ctx.followers.names(),
        "max_followers": ctx.followers.max(),
        "following": following,
        "last_block_hash": live.last_block_hash,
        "finality_latency_ms": live.finality_latency_ms,
        "clock_offset_ms": live.clock_offset_ms,
        "peer_clock_offsets_ms": live.peer_clock_offsets_ms,
        "evidence": live.evidence,
        "validator_set": set,
    }))
}

/// OpenMetrics to a scraper that accepts it (Prometheus asks for it first), else the classic
/// text format, which `promtool check metrics` and older tools read.
async fn metrics(State(ctx): State<Arc<Ctx>>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers.get_all(axum::http::header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ctx.metrics.encode(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            ctx.metrics.encode_classic(),
        )
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A block as the API shows it.
#[derive(Serialize)]
struct BlockView<'a> {
    height: u64,
    hash: String,
    proposer: String,
    signatures: usize,
    /// The names of the certificate's signers, in its order.
    signers: Vec<String>,
    /// The hash of each transaction, in the block's order (the explorer links them).
    tx_hashes: Vec<String>,
    reward: u64,
    #[serde(flatten)]
    stored: &'a StoredBlock,
}

fn block_view<'a>(chain: Option<&'a crate::node::ctx::Chain>, s: &'a StoredBlock) -> BlockView<'a> {
    let name = |id| chain.map_or_else(|| "?".into(), |c| crate::api::validators::name(c, id));
    let proposer = name(s.block.header.proposer);
    BlockView {
        height: s.block.height().0,
        hash: hex::encode(s.block.hash().0),
        proposer,
        signatures: s.certificate.signatures.len(),
        signers: s
            .certificate
            .signatures
            .iter()
            .map(|c| name(c.validator))
            .collect(),
        tx_hashes: s
            .block
            .txs
            .iter()
            .map(|t| hex::encode(t.hash().0))
            .collect(),
        reward: s.outcome.total_reward.0,
        stored: s,
    }
}

pub(crate) fn block_json(ctx: &Ctx, s: &StoredBlock) -> Value {
    let chain = ctx.chain();
    serde_json::to_value(block_view(chain.as_deref(), s)).unwrap_or(Value::Null)
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
        Ok(None) => missing_block(&ctx, Height(h)),
        Err(e) => storage(e),
    }
}

/// 404 for a block this node does not hold: pruned (`--retain-blocks`), with the lowest height
/// it keeps, or not finalized yet.
pub(crate) fn missing_block(ctx: &Ctx, h: Height) -> Response {
    match ctx.store.lowest_height() {
        Ok(low) if h < low => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": format!(
                    "block {h} was pruned: this node keeps blocks from height {low} on \
                     (--retain-blocks); ask a node that keeps every block"
                ),
                "lowest_height": low.0,
            })),
        )
            .into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("no block at height {h} yet")),
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
    /// `codec`: the blocks and certificates in the wire encoding (`encode_codec_range`), for
    /// light clients and state sync; else JSON.
    format: Option<String>,
}

/// Blocks per range answer at most, whatever `limit` says.
const MAX_RANGE_BLOCKS: usize = 1000;

/// Encodes `items` as a JSON array of at most `budget` bytes, but of one item at least;
/// returns the array and how many items it holds.
pub fn bounded_json_array<T: Serialize>(
    items: impl IntoIterator<Item = T>,
    budget: usize,
) -> (Vec<u8>, usize) {
    let mut out = vec![b'['];
    let mut count = 0;
    for item in items {
        // Serializing our own types to memory cannot fail; skip rather than panic if it did.
        let Ok(one) = serde_json::to_vec(&item) else {
            continue;
        };
        if count > 0 && out.len() + 1 + one.len() + 1 > budget {
            break;
        }
        if count > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&one);
        count += 1;
    }
    out.push(b']');
    (out, count)
}

/// `{"blocks": [...], "next_from": H, "more": bool}` within the byte budget.
fn encode_range(
    ctx: &Ctx,
    from: u64,
    limit: usize,
) -> Result<Vec<u8>, crate::storage::store::StoreError> {
    let budget = ctx.http.max_response_bytes;
    // The JSON of a block is larger than its stored form (hex, field names): reading `budget`
    // stored bytes gives enough blocks to fill the answer. Never less than a largest block,
    // which the store would otherwise skip, leaving the client asking for it forever.
    let read = budget.max(timed_core::codec::MAX_MESSAGE_BYTES);
    let list = ctx.store.range(Height(from), limit, read)?;
    let chain = ctx.chain();
    let views = list.iter().map(|s| block_view(chain.as_deref(), s));
    let (array, count) = bounded_json_array(views, budget.saturating_sub(64));
    let next = list
        .get(count.wrapping_sub(1))
        .map_or(from, |s| s.block.height().0 + 1);
    let tip = ctx.store.latest_height()?.map_or(0, |h| h.0);
    let mut out = Vec::with_capacity(array.len() + 64);
    out.extend_from_slice(b"{\"blocks\":");
    out.extend_from_slice(&array);
    out.extend_from_slice(format!(",\"next_from\":{next},\"more\":{}}}", next <= tip).as_bytes());
    Ok(out)
}

/// The body of `GET /blocks?from=H&limit=N&format=codec`: the wire version byte, then the
/// blocks from `from` on with their certificates as one codec sequence (`Vec<Decision>`, the
/// layouts of `timed_core::formats`), consecutive heights, at most `limit` and within the
/// response byte budget (one block always). About a third of the JSON's bytes and no hex or
/// field names to parse: what a client that verifies many blocks reads (`timed verify`, state
/// sync). An empty sequence: nothing stored from `from` on.
fn encode_codec_range(
    ctx: &Ctx,
    from: u64,
    limit: usize,
) -> Result<Vec<u8>, crate::storage::store::StoreError> {
    let budget = ctx.http.max_response_bytes;
    let list = ctx.store.range(
        Height(from),
        limit,
        budget.max(timed_core::codec::MAX_MESSAGE_BYTES),
    )?;
    let mut items = Vec::new();
    let mut count = 0usize;
    for s in list {
        let before = items.len();
        timed_core::codec::encode_into(
            &Decision {
                block: s.block,
                certificate: s.certificate,
            },
            &mut items,
        );
        if count > 0 && items.len() + 16 > budget {
            items.truncate(before);
            break;
        }
        count += 1;
    }
    let mut out = Vec::with_capacity(items.len() + 11);
    out.push(timed_core::codec::WIRE_VERSION);
    timed_core::codec::put_varint(count as u64, &mut out);
    out.extend_from_slice(&items);
    Ok(out)
}

async fn blocks_range(State(ctx): State<Arc<Ctx>>, Query(q): Query<RangeQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(MAX_RANGE_BLOCKS);
    type Encode = fn(&Ctx, u64, usize) -> Result<Vec<u8>, crate::storage::store::StoreError>;
    let (encode, kind): (Encode, &str) = match q.format.as_deref() {
        None | Some("json") => (encode_range, "application/json"),
        Some("codec") => (encode_codec_range, "application/octet-stream"),
        Some(_) => return error(StatusCode::BAD_REQUEST, "format is json or codec"),
    };
    let job = tokio::task::spawn_blocking(move || encode(&ctx, q.from, limit));
    match job.await {
        Ok(Ok(body)) => ([(axum::http::header::CONTENT_TYPE, kind)], body).into_response(),
        Ok(Err(e)) => storage(e),
        Err(e) => storage(format!("the range could not be read: {e}")),
    }
}

pub(crate) fn parse_hash(text: &str) -> Option<Hash> {
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
        return no_genesis();
    }
    // The mempool first: a transfer leaves it in the same step that stores its block, so asking
    // in this order never misses one that moves between the two.
    let (reply, answer) = oneshot::channel();
    if let Some(busy) = ask_core(&ctx, CoreInput::PendingTx(hash, reply)) {
        return busy;
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
            let pruned = match ctx.store.lowest_height() {
                Ok(low) if low.0 > 1 => {
                    format!(" (this node pruned the blocks below height {low}: --retain-blocks)")
                }
                _ => String::new(),
            };
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no transaction with this hash in a finalized block or in this node's \
                     mempool{pruned}"
                ),
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

/// `?proof=true` on `GET /accounts/{address}`.
#[derive(serde::Deserialize)]
struct AccountQuery {
    #[serde(default)]
    proof: bool,
}

async fn account(
    State(ctx): State<Arc<Ctx>>,
    Path(address): Path<String>,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(key) = parse_public_key(&address) else {
        return error(
            StatusCode::BAD_REQUEST,
            "an address is a public key of 64 hex digits",
        );
    };
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "proof is true or false");
    };
    if query.proof {
        return account_proof(&ctx, key).await;
    }
    match ctx.store.account(&key) {
        Ok(a) => account_json(&key, &a, None).into_response(),
        Err(e) => storage(e),
    }
}

/// An account as the API shows it, with its proof when asked for one.
fn account_json(key: &PublicKey, a: &Account, proof: Option<Value>) -> Json<Value> {
    let mut body = json!({
        "address": hex::encode(key.0),
        "balance": a.balance.0,
        // Exact (`Amount`'s Display rounds down to cents, for logs).
        "balance_time": format!("{} TIME", crate::amount::format_time(a.balance)),
        "nonce": a.nonce,
    });
    if let Some(proof) = proof {
        body["proof"] = proof;
    }
    Json(body)
}

/// Account proofs (`?proof=true`) answered a second at most, all clients together, with a
/// burst of twice that: at some 15 µs of the consensus loop each (a million accounts), at most
/// 1.5 % of it.
pub const PROOFS_PER_SECOND: u32 = 1_000;

/// The account with its Merkle proof against the state root of the last finalized block
/// (`Ledger::prove`), computed by the consensus loop after it stored that block: a light client
/// fetches `/blocks/{height}`, checks its certificate and then the proof (`timed wallet balance
/// --verify`). The balance shown is the one proven, which may be a block newer than the store's.
async fn account_proof(ctx: &Ctx, key: PublicKey) -> Response {
    if ctx.chain().is_none() {
        return no_genesis();
    }
    // One budget for every client: the per-client limit alone lets a crowd of addresses keep
    // the loop proving (some 15 µs each at a million accounts) instead of deciding blocks.
    let everyone = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    if let Err(wait) = ctx.proofs.take(everyone, std::time::Instant::now()) {
        let retry = wait.as_secs().max(1).to_string();
        let message = format!(
            "account proofs are limited to {PROOFS_PER_SECOND} a second on this node, all \
             clients together (they are computed by the consensus loop); retry in {} ms",
            wait.as_millis().max(1)
        );
        let mut answer = error(StatusCode::SERVICE_UNAVAILABLE, message);
        if let Ok(value) = retry.parse() {
            answer
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return answer;
    }
    let (reply, answer) = oneshot::channel();
    if let Some(busy) = ask_core(ctx, CoreInput::ProveAccount(key, reply)) {
        return busy;
    }
    let Ok(Ok((height, proof))) = tokio::time::timeout(Duration::from_secs(5), answer).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no proof yet: the node has finalized no block (or it is busy); retry",
        );
    };
    // The proof's own account: what a verifier will find.
    let account = match &proof.leaf {
        Some((k, a)) if *k == key => *a,
        _ => Account::default(),
    };
    let body = json!({
        "height": height.0,
        "siblings": proof.siblings,
        "leaf": proof.leaf,
        "staking_root": proof.staking_root,
    });
    account_json(&key, &account, Some(body)).into_response()
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
        return no_genesis();
    }
    let (reply, answer) = oneshot::channel();
    if let Some(busy) = ask_core(&ctx, CoreInput::SubmitTx(tx, reply)) {
        return busy;
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

#[cfg(test)]
mod tests {
    use super::bounded_json_array;

    #[test]
    fn a_bounded_array_stops_before_the_budget_but_holds_one_item() {
        let items: Vec<String> = (0..100).map(|i| format!("{i:08}")).collect();
        // Each item is 10 bytes as JSON, 11 with its comma: 9 items and the brackets are 100.
        let (out, n) = bounded_json_array(&items, 100);
        assert_eq!((n, out.len()), (9, 100));
        let back: Vec<String> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, items[..9]);
        assert_eq!(bounded_json_array(&items, 99).1, 8);
        let (out, n) = bounded_json_array(&items, 5);
        assert_eq!(
            (n, out.len()),
            (1, 12),
            "one item, however small the budget"
        );
        let (out, n) = bounded_json_array(Vec::<String>::new(), 5);
        assert_eq!((n, &out[..]), (0, &b"[]"[..]));
    }
}
