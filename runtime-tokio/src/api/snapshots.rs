//! The snapshots this node wrote (`storage::snapshots`), served read-only for a node that starts
//! from one:
//!
//! - `GET /snapshots`: `{"interval": N, "snapshots": [{"height": H, "chunks": C}, …]}`, newest
//!   first (`interval` 0: this node writes none);
//! - `GET /snapshots/{height}/manifest`: the manifest, codec-encoded
//!   (`application/octet-stream`): the parts of the accounts' tree and the staking state;
//! - `GET /snapshots/{height}/chunks/{index}`: chunk `index`, codec-encoded.
//!
//! Nothing here is trusted by the reader: it checks the manifest against a certified header's
//! state root and every chunk against the manifest. A height or index that is not a plain
//! number, or names nothing on disk, is a short 404 or 400; no path is built from anything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::api::http::error;
use crate::node::ctx::Ctx;
use crate::storage::snapshots;

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/snapshots", get(list))
        .route("/snapshots/{height}/manifest", get(manifest))
        .route("/snapshots/{height}/chunks/{index}", get(chunk))
}

async fn list(State(ctx): State<Arc<Ctx>>) -> Response {
    let dir = snapshots::folder(&ctx.data_dir);
    let listed: Vec<serde_json::Value> = snapshots::heights(&dir)
        .into_iter()
        .map(|h| {
            let chunks = std::fs::read_dir(dir.join(h.to_string()))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("chunk-"))
                .count();
            json!({ "height": h, "chunks": chunks })
        })
        .collect();
    axum::Json(json!({ "interval": ctx.snapshot_interval, "snapshots": listed })).into_response()
}

/// A decimal number of at most 20 digits, nothing else.
fn number(text: &str) -> Option<u64> {
    (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

async fn manifest(State(ctx): State<Arc<Ctx>>, Path(height): Path<String>) -> Response {
    let Some(height) = number(&height) else {
        return error(StatusCode::BAD_REQUEST, "a snapshot height is a number");
    };
    file(&ctx, height, "manifest".into())
}

async fn chunk(
    State(ctx): State<Arc<Ctx>>,
    Path((height, index)): Path<(String, String)>,
) -> Response {
    let (Some(height), Some(index)) = (number(&height), number(&index)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "a snapshot height and a chunk index are numbers",
        );
    };
    file(&ctx, height, format!("chunk-{index}"))
}

fn file(ctx: &Ctx, height: u64, name: String) -> Response {
    let dir = snapshots::folder(&ctx.data_dir);
    let limit = timed_core::codec::MAX_MESSAGE_BYTES as u64;
    match snapshots::read(&dir, height, &name, limit) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no {name} in a snapshot of height {height} here: GET /snapshots lists the \
                 snapshots this node keeps"
            ),
        ),
    }
}
