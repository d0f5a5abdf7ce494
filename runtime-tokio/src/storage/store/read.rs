//! Reads of the store, for the API, the sync server and the tools: blocks by height or range,
//! the latest height, a transaction's height, an account, the staking state at the tip, and the
//! explorer's indexes (a block's height by its hash, an account's transfers). Each runs in its own redb read
//! transaction, beside the writer.

use redb::{ReadableDatabase, ReadableTable};

use timed_core::codec;
use timed_core::crypto::PublicKey;
use timed_core::ledger::Account;
use timed_core::message::{Decision, SyncPacker};
use timed_core::staking::{MAX_STAKING_BYTES, StakingRecord};
use timed_core::types::{Hash, Height};

use super::tables::{
    ACCOUNTS, BLOCK_HASHES, BLOCKS, CERTS, META, STAKING_KEY, TRANSFERS, TXS, corrupt,
    decode_stored, transfer_key,
};
use super::{Store, StoreError, StoredBlock, guarded};

impl Store {
    pub fn block(&self, height: Height) -> Result<Option<StoredBlock>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            let certs = r.open_table(CERTS).map_err(StoreError::db)?;
            match blocks.get(height.0).map_err(StoreError::db)? {
                Some(v) => Ok(Some(decode_stored(&certs, v.value())?)),
                None => Ok(None),
            }
        })
    }

    pub fn latest_height(&self) -> Result<Option<Height>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            Ok(blocks
                .last()
                .map_err(StoreError::db)?
                .map(|(k, _)| Height(k.value())))
        })
    }

    /// The finalized blocks from `from` on, with their certificates, into `answer` until it is
    /// full (`SyncPacker`: the one packing rule of a sync answer); reads nothing past that.
    pub fn sync_answer(&self, from: Height, answer: &mut SyncPacker) -> Result<(), StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            let certs = r.open_table(CERTS).map_err(StoreError::db)?;
            for (expected, entry) in (from.0..).zip(blocks.range(from.0..).map_err(StoreError::db)?)
            {
                if answer.is_full() {
                    break;
                }
                let (k, v) = entry.map_err(StoreError::db)?;
                if k.value() != expected {
                    break; // pruned (or never stored): an answer holds consecutive heights only
                }
                let s = decode_stored(&certs, v.value())?;
                if !answer.push(Decision {
                    block: s.block,
                    certificate: s.certificate,
                }) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Blocks from `from` on, at most `max` of them and about `byte_budget` bytes of encoding.
    pub fn range(
        &self,
        from: Height,
        max: usize,
        byte_budget: usize,
    ) -> Result<Vec<StoredBlock>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            let certs = r.open_table(CERTS).map_err(StoreError::db)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for entry in blocks.range(from.0..).map_err(StoreError::db)? {
                let (_, v) = entry.map_err(StoreError::db)?;
                let raw = v.value();
                if out.len() >= max || (bytes + raw.len() > byte_budget && !out.is_empty()) {
                    break;
                }
                if raw.len() > byte_budget {
                    break;
                }
                bytes += raw.len();
                out.push(decode_stored(&certs, raw)?);
            }
            Ok(out)
        })
    }

    /// The last stored height (0 before the first block) and the staking state after it, read
    /// in one transaction (a block and its staking state are committed together, so the two
    /// always match); `None` before a genesis is bound.
    pub fn staking_at_tip(&self) -> Result<Option<(Height, StakingRecord)>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            let meta = r.open_table(META).map_err(StoreError::db)?;
            let tip = blocks
                .last()
                .map_err(StoreError::db)?
                .map_or(0, |(k, _)| k.value());
            match meta.get(STAKING_KEY).map_err(StoreError::db)? {
                Some(v) => {
                    let record = codec::decode(v.value(), MAX_STAKING_BYTES)
                        .map_err(|e| corrupt("meta", e))?;
                    Ok(Some((Height(tip), record)))
                }
                None => Ok(None),
            }
        })
    }

    pub fn tx_height(&self, hash: &Hash) -> Result<Option<Height>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let txs = r.open_table(TXS).map_err(StoreError::db)?;
            Ok(txs
                .get(&hash.0[..])
                .map_err(StoreError::db)?
                .map(|v| Height(v.value())))
        })
    }

    pub fn account(&self, key: &PublicKey) -> Result<Account, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let accounts = r.open_table(ACCOUNTS).map_err(StoreError::db)?;
            match accounts.get(&key.0[..]).map_err(StoreError::db)? {
                Some(v) => codec::decode(v.value(), 1024).map_err(|e| corrupt("accounts", e)),
                None => Ok(Account::default()),
            }
        })
    }

    /// The height of the finalized block of this hash.
    pub fn block_height_by_hash(&self, hash: &Hash) -> Result<Option<Height>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let hashes = r.open_table(BLOCK_HASHES).map_err(StoreError::db)?;
            Ok(hashes
                .get(&hash.0[..])
                .map_err(StoreError::db)?
                .map(|v| Height(v.value())))
        })
    }

    /// The transfers sent or received by `address` in blocks below `before`, newest first, at
    /// most `max`: (height, index in the block, transaction hash).
    pub fn transfers_of(
        &self,
        address: &PublicKey,
        before: Height,
        max: usize,
    ) -> Result<Vec<(Height, u32, Hash)>, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let transfers = r.open_table(TRANSFERS).map_err(StoreError::db)?;
            let low = transfer_key(&address.0, 0, 0);
            let high = transfer_key(&address.0, before.0, 0);
            let mut out = Vec::new();
            for entry in transfers
                .range(&low[..]..&high[..])
                .map_err(StoreError::db)?
                .rev()
                .take(max)
            {
                let (k, v) = entry.map_err(StoreError::db)?;
                let (k, v) = (k.value(), v.value());
                let (Ok(h), Ok(i), Ok(hash)) = (
                    <[u8; 8]>::try_from(k.get(32..40).unwrap_or_default()),
                    <[u8; 4]>::try_from(k.get(40..44).unwrap_or_default()),
                    <[u8; 32]>::try_from(v),
                ) else {
                    return Err(corrupt("transfers", "an entry of the wrong length"));
                };
                out.push((
                    Height(u64::from_be_bytes(h)),
                    u32::from_be_bytes(i),
                    Hash(hash),
                ));
            }
            Ok(out)
        })
    }
}
