//! Pruning (`--retain-blocks N`, issue 15): deleting the oldest finalized blocks with everything
//! indexed under them (their longer certificates, their hash, their transactions' heights, the
//! transfers listed under each end's address), a few blocks per write transaction, and the
//! lowest height the store still holds.
//!
//! The ledger (accounts, staking state) is the state after the last block and is never pruned;
//! nor is the last block itself (the restore starts from it). redb reuses the pages freed here,
//! so a node that prunes as fast as it finalizes keeps a database of flat size.

use redb::{Durability, ReadableDatabase, ReadableTable};

use timed_core::codec;
use timed_core::types::Height;

use super::tables::{
    BLOCK_HASHES, BLOCKS, CERTS, MAX_STORED_BYTES, META, TRANSFERS, TXS, corrupt, transfer_keys,
};
use super::{Store, StoreError, StoredBlock, guarded};

/// In `meta`: the lowest height not pruned (absent: nothing was ever pruned), so that "pruned"
/// and "never stored" are told apart once the blocks are gone.
pub(super) const PRUNED_BELOW_KEY: &str = "pruned_below";

impl Store {
    /// The lowest height whose block this store may still hold: 1 unless blocks were pruned.
    pub fn lowest_height(&self) -> Result<Height, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let meta = r.open_table(META).map_err(StoreError::db)?;
            pruned_below(&meta)
        })
    }

    /// Deletes the blocks below `below`, oldest first, at most `max_blocks` of them in one write
    /// transaction (short, so the consensus thread's commits wait little for redb's one writer),
    /// never the last stored block. Returns how many were deleted: 0 once none is left below.
    pub fn prune_below(&self, below: Height, max_blocks: usize) -> Result<usize, StoreError> {
        guarded(&self.files, || {
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            // Made durable by the next durable point, like the blocks (`commit_blocks`); a crash
            // before it only leaves some blocks to prune again.
            tx.set_durability(Durability::None)
                .map_err(StoreError::db)?;
            let mut pruned = 0;
            {
                let mut blocks = tx.open_table(BLOCKS).map_err(StoreError::db)?;
                let mut certs = tx.open_table(CERTS).map_err(StoreError::db)?;
                let mut txs = tx.open_table(TXS).map_err(StoreError::db)?;
                let mut hashes = tx.open_table(BLOCK_HASHES).map_err(StoreError::db)?;
                let mut transfers = tx.open_table(TRANSFERS).map_err(StoreError::db)?;
                let mut meta = tx.open_table(META).map_err(StoreError::db)?;
                let last = blocks
                    .last()
                    .map_err(StoreError::db)?
                    .map_or(0, |(k, _)| k.value());
                let below = below.0.min(last);
                let start = pruned_below(&meta)?.0;
                let mut next = start;
                let victims: Vec<u64> = blocks
                    .range(start..below)
                    .map_err(StoreError::db)?
                    .take(max_blocks)
                    .map(|e| e.map(|(k, _)| k.value()).map_err(StoreError::db))
                    .collect::<Result<_, _>>()?;
                for height in victims {
                    let raw = blocks
                        .remove(height)
                        .map_err(StoreError::db)?
                        .map(|v| v.value().to_vec());
                    certs.remove(height).map_err(StoreError::db)?;
                    if let Some(raw) = raw {
                        let s: StoredBlock = codec::decode(&raw, MAX_STORED_BYTES)
                            .map_err(|e| corrupt("blocks", e))?;
                        hashes
                            .remove(&s.block.hash().0[..])
                            .map_err(StoreError::db)?;
                        for hash in &s.outcome.archived {
                            txs.remove(&hash.0[..]).map_err(StoreError::db)?;
                        }
                        for (key, _) in transfer_keys(&s.block) {
                            transfers.remove(&key[..]).map_err(StoreError::db)?;
                        }
                    }
                    pruned += 1;
                    next = height + 1;
                }
                if next > start {
                    meta.insert(PRUNED_BELOW_KEY, &next.to_le_bytes()[..])
                        .map_err(StoreError::db)?;
                }
            }
            tx.commit().map_err(StoreError::db)?;
            Ok(pruned)
        })
    }
}

/// The lowest height not pruned, from `meta`.
pub(super) fn pruned_below(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Height, StoreError> {
    match meta.get(PRUNED_BELOW_KEY).map_err(StoreError::db)? {
        Some(v) => {
            let bytes = <[u8; 8]>::try_from(v.value())
                .map_err(|_| corrupt("meta", "pruned_below is not 8 bytes"))?;
            Ok(Height(u64::from_le_bytes(bytes).max(1)))
        }
        None => Ok(Height(1)),
    }
}
