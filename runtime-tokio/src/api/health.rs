//! Whether a node is up and whether it is ready, for load balancers and orchestrators:
//!
//! - `GET /health`: 200 while the process answers at all (a liveness probe: restart it if not);
//! - `GET /ready`: 200 when the node has a genesis, is connected to validators holding a quorum
//!   of the stake of the set that signs the next height (its own included), and is not catching up (the last block this process
//!   finalized was decided live, `finality.rs`); else 503 with the reasons. A node that is not
//!   ready serves old data, or none: send readers elsewhere.
//!
//! Both answer `{"status": ..., "version": ..., "commit": ...}` besides.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use timed_core::types::Stake;

use crate::node::ctx::{Ctx, lock};

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": crate::VERSION, "commit": crate::COMMIT }))
}

/// What readiness is judged on.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub has_genesis: bool,
    /// Stake of this node (if a validator) and of the validators it has a connection to.
    pub connected: Stake,
    pub quorum: Stake,
    /// The last block this process finalized: its height and whether it was decided live;
    /// `None` before the first.
    pub last_here: Option<(u64, bool)>,
}

/// Why the node is not ready; empty when it is.
pub fn not_ready(s: Seen) -> Vec<String> {
    if !s.has_genesis {
        return vec!["no genesis yet: still meeting its peers".into()];
    }
    let mut why = Vec::new();
    if s.connected < s.quorum {
        why.push(format!(
            "connected to {} of the {} stake a quorum needs (this node's own included)",
            s.connected.0, s.quorum.0
        ));
    }
    match s.last_here {
        None => why.push("no block finalized since the start yet".into()),
        Some((h, false)) => why.push(format!(
            "catching up: block {h} came from peers, not decided here live"
        )),
        Some((_, true)) => {}
    }
    why
}

fn seen(ctx: &Ctx) -> Seen {
    let Some(chain) = ctx.chain() else {
        return Seen {
            has_genesis: false,
            connected: Stake(0),
            quorum: Stake(0),
            last_here: None,
        };
    };
    // The set that signs the next height (the genesis's until the first change), by id.
    let members =
        crate::api::validators::current_members(ctx, &chain).unwrap_or_else(|| chain.set.members());
    let stake: std::collections::BTreeMap<_, u64> =
        members.iter().map(|m| (m.id, m.stake.0)).collect();
    let total: u64 = stake.values().fold(0, |a, s| a.saturating_add(*s));
    let me = ctx.key.public_key();
    let mine = members
        .iter()
        .find(|m| m.public_key == me)
        .map_or(0, |m| m.stake.0);
    let peers: u64 = lock(&ctx.peers)
        .keys()
        .map(|i| stake.get(i).copied().unwrap_or(0))
        .fold(0, u64::saturating_add);
    Seen {
        has_genesis: true,
        connected: Stake(mine.saturating_add(peers)),
        // `ValidatorSet::quorum`: the least `w` with `3·w ≥ 2·T`.
        quorum: Stake((2 * u128::from(total)).div_ceil(3) as u64),
        last_here: crate::api::dashboard::last_finalized_here(),
    }
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> Response {
    let why = not_ready(seen(&ctx));
    let code = if why.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if why.is_empty() { "ready" } else { "not_ready" };
    let body = json!({
        "status": status,
        "reasons": why,
        "version": crate::VERSION,
        "commit": crate::COMMIT,
    });
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_a_genesis_a_quorum_connected_and_a_block_decided_live() {
        let ready = Seen {
            has_genesis: true,
            connected: Stake(200),
            quorum: Stake(200),
            last_here: Some((9, true)),
        };
        assert!(not_ready(ready).is_empty());
        let why = |s| not_ready(s).join("; ");
        assert!(
            why(Seen {
                has_genesis: false,
                ..ready
            })
            .contains("no genesis")
        );
        assert!(
            why(Seen {
                connected: Stake(100),
                ..ready
            })
            .contains("connected to 100 of the 200 stake")
        );
        assert!(
            why(Seen {
                last_here: Some((9, false)),
                ..ready
            })
            .contains("catching up")
        );
        assert!(
            why(Seen {
                last_here: None,
                ..ready
            })
            .contains("no block finalized")
        );
        let both = not_ready(Seen {
            connected: Stake(0),
            last_here: None,
            ..ready
        });
        assert_eq!(both.len(), 2, "{both:?}");
    }
}
