//! The explorer's reads, beside the API of `http.rs` and for the dashboard's explorer pages:
//!
//! - `GET /blocks/by-hash/{hash}`: a block by its hash (as `GET /blocks/{height}` shows it);
//! - `GET /accounts/{address}/transfers?before=H&limit=N`: the transfers an account sent or
//!   received in blocks below height H (all when absent), newest first, at most
//!   `MAX_TRANSFERS`; `next_before` is the `before` of the next page, `null` after the last;
//! - `GET /search?q=...`: what `q` names: `{"kind": "block", "height": H}` for a height or a
//!   block hash, `{"kind": "tx", "hash": ...}` for a finalized transaction,
//!   `{"kind": "account", "address": ...}` for an account with a balance, a nonce or transfers;
//!   404 with the reason otherwise.
//!
//! The indexes they read (block hash -> height, address -> transfers) are written with each
//! block (`storage/store`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use timed_core::types::Height;

use crate::api::http::{block_json, error, parse_hash, storage};
use crate::keys::parse_public_key;
use crate::node::ctx::Ctx;
use crate::storage::store::{StoreError, StoredBlock};

/// Transfers per page at most, whatever `limit` says: each may cost the read of its block.
const MAX_TRANSFERS: usize = 100;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/blocks/by-hash/{hash}", get(block_by_hash))
        .route("/accounts/{address}/transfers", get(transfers))
        .route("/search", get(search))
}

async fn block_by_hash(State(ctx): State<Arc<Ctx>>, Path(hash): Path<String>) -> Response {
    let Some(hash) = parse_hash(&hash) else {
        return error(StatusCode::BAD_REQUEST, "a block hash is 64 hex digits");
    };
    let height = match ctx.store.block_height_by_hash(&hash) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "no finalized block with this hash on this node",
            );
        }
        Err(e) => return storage(e),
    };
    match ctx.store.block(height) {
        Ok(Some(s)) => Json(block_json(&ctx, &s)).into_response(),
        Ok(None) => storage("the block hash index points to a missing block"),
        Err(e) => storage(e),
    }
}

#[derive(Deserialize)]
struct TransfersQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn transfers(
    State(ctx): State<Arc<Ctx>>,
    Path(address): Path<String>,
    Query(q): Query<TransfersQuery>,
) -> Response {
    let Some(key) = parse_public_key(&address) else {
        return error(
            StatusCode::BAD_REQUEST,
            "an address is a public key of 64 hex digits",
        );
    };
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_TRANSFERS);
    let before = Height(q.before.unwrap_or(u64::MAX));
    let job = tokio::task::spawn_blocking(move || transfers_page(&ctx, &key, before, limit));
    match job.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => storage(e),
        Err(e) => storage(format!("the transfers could not be read: {e}")),
    }
}

/// One page of an account's transfers. A page never ends inside a block (the next one starts
/// below the last height shown), unless one block alone holds more than a page of them: then
/// the rest of that block is skipped, as `next_before` can only name heights.
fn transfers_page(
    ctx: &Ctx,
    key: &timed_core::crypto::PublicKey,
    before: Height,
    limit: usize,
) -> Result<Value, StoreError> {
    let mut list = ctx.store.transfers_of(key, before, limit + 1)?;
    let mut next_before = None;
    if list.len() > limit {
        let cut = list[limit].0;
        list.truncate(limit);
        let whole: Vec<_> = list.iter().filter(|e| e.0 != cut).copied().collect();
        if !whole.is_empty() {
            list = whole;
        }
        next_before = list.last().map(|e| e.0.0);
    }
    let mut blocks: HashMap<u64, StoredBlock> = HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (height, index, hash) in list {
        let block = match blocks.entry(height.0) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match ctx.store.block(height)? {
                Some(b) => e.insert(b),
                None => continue,
            },
        };
        let Some(tx) = block.block.txs.get(index as usize) else {
            continue;
        };
        let t = &tx.transfer;
        out.push(json!({
            "hash": hex::encode(hash.0),
            "height": height.0,
            "index": index,
            "from": hex::encode(t.from.0),
            "to": hex::encode(t.to.0),
            "amount": t.amount.0,
            "fee": t.fee.0,
            "nonce": t.nonce,
            "direction": if t.from == *key { "sent" } else { "received" },
        }));
    }
    Ok(json!({
        "address": hex::encode(key.0),
        "transfers": out,
        "next_before": next_before,
    }))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(State(ctx): State<Arc<Ctx>>, Query(q): Query<SearchQuery>) -> Response {
    let text = q.q.trim().to_ascii_lowercase();
    match what_is(&ctx, &text) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "nothing on this node matches \"{}\": give a block height, or 64 hex digits of a \
                 block hash, a finalized transaction's hash or an address",
                text.chars().take(80).collect::<String>()
            ),
        ),
        Err(e) => storage(e),
    }
}

/// What `text` names on this node, if anything: a height, then a block hash, a transaction
/// hash, an account (a hash of 32 bytes could be any of the three; the first that exists wins).
fn what_is(ctx: &Ctx, text: &str) -> Result<Option<Value>, StoreError> {
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        let Ok(h) = text.parse::<u64>() else {
            return Ok(None);
        };
        return Ok(ctx
            .store
            .block(Height(h))?
            .map(|_| json!({ "kind": "block", "height": h })));
    }
    let Some(hash) = parse_hash(text) else {
        return Ok(None);
    };
    if let Some(h) = ctx.store.block_height_by_hash(&hash)? {
        return Ok(Some(
            json!({ "kind": "block", "height": h.0, "hash": text }),
        ));
    }
    if let Some(h) = ctx.store.tx_height(&hash)? {
        return Ok(Some(json!({ "kind": "tx", "hash": text, "height": h.0 })));
    }
    let key = timed_core::crypto::PublicKey(hash.0);
    let account = ctx.store.account(&key)?;
    let known = account != timed_core::ledger::Account::default()
        || !ctx
            .store
            .transfers_of(&key, Height(u64::MAX), 1)?
            .is_empty();
    Ok(known.then(|| json!({ "kind": "account", "address": text })))
}
