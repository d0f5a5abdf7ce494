//! Transfer signatures checked in batches, off the core's thread.
//!
//! Every transfer reaches a node once: from a client (`POST /txs`, `txbatch.rs`) or gossiped by a
//! peer (`Message::Transaction`, one frame each). Verifying them one at a time on the core's
//! thread was most of a node's CPU under load. Here they are checked as batches
//! (`tx::verify_signatures`: one cofactored batch, one by one only if it fails) on tokio's
//! blocking pool, and handed to the core as verified (`Input::SignatureChecked`,
//! `Input::SubmitVerifiedTx`), which then admits them without verifying again. A transfer that
//! fails goes to the core unverified, which refuses it with the usual reason.
//!
//! Gossip: the read loops of all peers feed one queue; the verifier takes whatever has queued up
//! (at most `MAX_BATCH`) while the previous batch was being checked, so batches grow with the load
//! and a lone transfer waits for nobody.
//!
//! Messages that carry a block (proposals, decisions) take the same queue and reach the core only
//! after the transfers queued before them: a block's transfers were gossiped before it, and a
//! block overtaking them would find them missing from the mempool and have them verified twice
//! (once in the block, again when their gossip arrived), on the node already the most behind.

use std::sync::{Arc, LazyLock};

use timed_core::crypto::KeyCache;
use timed_core::message::Message;
use timed_core::tx::SignedTransfer;
use timed_core::types::ValidatorIndex;
use timed_core::verified::Verified;
use tokio::sync::mpsc;

use crate::node::ctx::{CoreInput, Ctx, Gossiped};

/// The senders' keys, decompressed once for all the batches of this process (at most
/// `KEY_CACHE` of them, about 200 bytes each).
static KEYS: LazyLock<KeyCache> = LazyLock::new(|| KeyCache::new(KEY_CACHE));
const KEY_CACHE: usize = 16_384;

/// Gossiped transfers checked in one batch at most.
const MAX_BATCH: usize = 1024;

/// Each transfer verified (`Verified::transfers`, one batch) on the blocking pool, or given back
/// when its signature fails. Without a genesis yet there is no chain id to verify against:
/// every one is given back (the core, which has none either, is not running yet).
pub async fn verify(ctx: &Ctx, txs: Vec<SignedTransfer>) -> Vec<Result<Verified, SignedTransfer>> {
    let Some(chain) = ctx.chain() else {
        return txs.into_iter().map(Err).collect();
    };
    let job = tokio::task::spawn_blocking(move || {
        Verified::transfers(txs, &chain.genesis.chain_id, &KEYS)
    });
    // The job only fails if it panicked; then nothing is vouched for (and the transfers are
    // lost with it: a client retries, a peer re-gossips nothing, the proposer has them).
    job.await.unwrap_or_default()
}

/// Runs until the core stops: gossiped transfers in, verified inputs out, in arrival order.
pub async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Gossiped>) {
    let mut queued: Vec<Gossiped> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<(ValidatorIndex, SignedTransfer)> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        queued.push(first);
        while queued.len() < MAX_BATCH
            && let Ok(more) = rx.try_recv()
        {
            queued.push(more);
        }
        for item in queued.drain(..) {
            match item {
                Gossiped::Tx(from, tx) => batch.push((from, tx)),
                Gossiped::Block(from, msg) => {
                    let ok = forward(&ctx, &mut batch).await
                        && ctx
                            .to_core
                            .send(CoreInput::Message { from, msg: *msg })
                            .await
                            .is_ok();
                    if !ok {
                        return; // the core stopped
                    }
                }
            }
        }
        if !forward(&ctx, &mut batch).await {
            return;
        }
    }
}

/// Verifies `batch` as one and hands it to the core, emptying it. False once the core stopped.
async fn forward(ctx: &Ctx, batch: &mut Vec<(ValidatorIndex, SignedTransfer)>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let (from, txs): (Vec<ValidatorIndex>, Vec<SignedTransfer>) = batch.drain(..).unzip();
    ctx.metrics.tx_batch_size.observe(txs.len() as f64);
    for (from, verdict) in from.into_iter().zip(verify(ctx, txs).await) {
        let input = match verdict {
            Ok(msg) => CoreInput::Checked { from, msg },
            Err(tx) => CoreInput::Message {
                from,
                msg: Message::Transaction(tx),
            },
        };
        if ctx.to_core.send(input).await.is_err() {
            return false;
        }
    }
    true
}
