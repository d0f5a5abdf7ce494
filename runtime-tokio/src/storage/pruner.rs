//! The pruner (`--retain-blocks N`, issue 15): a thread of its own that keeps the store at the
//! last N blocks, deleting older ones a batch at a time (`Store::prune_below`) as new ones are
//! finalized. It never runs on the consensus thread: a batch is one short redb write, which the
//! consensus loop's next commit waits for at most.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use timed_core::types::Height;
use tracing::{debug, info, warn};

use crate::node::ctx::Ctx;
use crate::storage::store::{Store, StoreError};

/// The fewest blocks `--retain-blocks` keeps: enough for a peer a little behind to catch up from
/// this node, and for the dashboard's and explorer's recent views.
pub const MIN_RETAIN_BLOCKS: u64 = 100;

/// Blocks deleted per write transaction.
const BATCH: usize = 64;
/// The pause once nothing is left to prune, and after a storage error.
const IDLE: Duration = Duration::from_millis(500);
const AFTER_ERROR: Duration = Duration::from_secs(10);

/// Starts the pruner's thread; it stops with the node's shutdown signal.
pub fn start(ctx: Arc<Ctx>, retain: u64) -> std::io::Result<JoinHandle<()>> {
    info!(
        "Pruning: keeping the last {retain} blocks (--retain-blocks); older blocks, their \
         certificates and their transactions' index entries are deleted, and the API answers 404 \
         for them with the lowest height kept"
    );
    std::thread::Builder::new()
        .name("pruner".into())
        .spawn(move || {
            let mut first = true;
            while !*ctx.shutdown.borrow() {
                match step(&ctx.store, retain) {
                    Ok(0) => std::thread::sleep(IDLE),
                    Ok(n) => {
                        if first && let Ok(low) = ctx.store.lowest_height() {
                            info!("Pruning started: blocks below height {low} are deleted");
                            first = false;
                        }
                        debug!("Pruned {n} blocks");
                        std::thread::yield_now();
                    }
                    Err(e) => {
                        warn!("Pruning failed (retrying in {AFTER_ERROR:?}): {e}");
                        std::thread::sleep(AFTER_ERROR);
                    }
                }
            }
        })
}

/// One batch: deletes up to `BATCH` blocks below the last `retain` ones. Returns how many.
pub fn step(store: &Store, retain: u64) -> Result<usize, StoreError> {
    let Some(tip) = store.latest_height()? else {
        return Ok(0);
    };
    if tip.0 <= retain {
        return Ok(0);
    }
    store.prune_below(Height(tip.0 - retain + 1), BATCH)
}
