//! `POST /txs`: many signed transfers in one request (a JSON array, at most `MAX_BATCH`), for
//! wallets that send in bulk and for `timed bench tx`. Each is admitted exactly as `POST /tx`
//! admits one; the answer (200) lists, in order, `{"hash", "status": "pending"}` or
//! `{"hash", "error", "reason"}` per transfer. One HTTP request per transfer costs the node more
//! than admitting it.
//!
//! Unlike `POST /tx`, which refuses at once when the core's queue is full, a batch waits for room
//! (up to 10 s): the sender is slowed down instead of refused.
//!
//! The batch's signatures are verified as one batch off the core's thread (`txverify::verify`);
//! the core admits the good ones without verifying them again (`Input::SubmitVerifiedTx`), and
//! checks a failed one itself, which refuses it with the usual reason.

use std::sync::Arc;
use std::time::Duration;
use timed_core::message::Message;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use timed_core::tx::SignedTransfer;
use tokio::sync::oneshot;

use crate::api::http::{error, no_genesis};
use crate::node::ctx::{CoreInput, Ctx};

/// Transfers per request at most.
pub const MAX_BATCH: usize = 10_000;

const WAIT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<Arc<Ctx>> {
    // 10,000 transfers as JSON are about 3.5 MB; axum's default limit is 2 MB.
    Router::new().route(
        "/txs",
        post(submit_batch).layer(DefaultBodyLimit::max(8 * 1024 * 1024)),
    )
}

async fn submit_batch(
    State(ctx): State<Arc<Ctx>>,
    body: Result<Json<Vec<SignedTransfer>>, JsonRejection>,
) -> Response {
    let txs = match body {
        Ok(Json(txs)) => txs,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed batch (a JSON array of signed transfers): {}",
                    rejection.body_text()
                ),
            );
        }
    };
    if txs.len() > MAX_BATCH {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} transfers in one batch; at most {MAX_BATCH}", txs.len()),
        );
    }
    if ctx.chain().is_none() {
        return no_genesis();
    }
    let verdicts = crate::node::txverify::verify(&ctx, txs).await;
    let mut answers = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        let (reply, answer) = oneshot::channel();
        let (hash, input) = match verdict {
            Ok(v) => {
                let Message::Transaction(tx) = v.message() else {
                    continue; // `Verified::transfers` makes transfers only
                };
                (tx.hash(), CoreInput::SubmitVerifiedTx(v, reply))
            }
            Err(tx) => (tx.hash(), CoreInput::SubmitTx(tx, reply)),
        };
        let hash = hex::encode(hash.0);
        match tokio::time::timeout(WAIT, ctx.to_core.send(input)).await {
            Ok(Ok(())) => answers.push((hash, Some(answer))),
            _ => answers.push((hash, None)),
        }
    }
    let mut out: Vec<Value> = Vec::with_capacity(answers.len());
    for (hash, answer) in answers {
        let verdict = match answer {
            Some(a) => tokio::time::timeout(WAIT, a)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        out.push(match verdict {
            Some(Ok(_)) => json!({ "hash": hash, "status": "pending" }),
            Some(Err(e)) => json!({ "hash": hash, "error": e.to_string(), "reason": e.reason() }),
            None => json!({
                "hash": hash,
                "error": "the node did not answer in time; retry",
                "reason": "busy",
            }),
        });
    }
    Json(Value::Array(out)).into_response()
}
