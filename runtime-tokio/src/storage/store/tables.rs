//! The database's tables (listed in `store/mod.rs`), its format mark and the bound on a stored
//! value, and decoding what they hold (`decode_stored`, `corrupt`).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use timed_core::block::{Block, Certificate};
use timed_core::codec;

use super::{StoreError, StoredBlock};

pub(super) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Certificates extended after their block was stored: rewriting a block of thousands of
/// transfers for one more signature cost more than the block's own commit.
pub(super) const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
pub(super) const TXS: TableDefinition<&[u8], u64> = TableDefinition::new("txs");
pub(super) const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Block hash -> height, for the explorer's look-up of a block by its hash.
pub(super) const BLOCK_HASHES: TableDefinition<&[u8], u64> = TableDefinition::new("block_hashes");
/// (address, height, index in the block) -> transaction hash, once for the sender and once for
/// the recipient: an account's transfers read as a key range, newest last. The key is
/// `transfer_key`.
pub(super) const TRANSFERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("transfers");

/// The key of `TRANSFERS`: 32 bytes of address, then height and index big-endian, so that byte
/// order is (address, height, index) order.
pub(super) fn transfer_key(address: &[u8; 32], height: u64, index: u32) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(address);
    k[32..40].copy_from_slice(&height.to_be_bytes());
    k[40..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The `TRANSFERS` keys of `block`, each with the index of its transfer in the block: the
/// sender's and the recipient's (once for a transfer to oneself). Written with the block
/// (`commit_blocks`), removed with it (`prune_below`).
pub(super) fn transfer_keys(block: &Block) -> Vec<([u8; 44], usize)> {
    let height = block.height().0;
    let mut keys = Vec::with_capacity(2 * block.txs.len());
    for (i, t) in block.txs.iter().enumerate() {
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        let (from, to) = (&t.transfer.from.0, &t.transfer.to.0);
        keys.push((transfer_key(from, height, at), i));
        if from != to {
            keys.push((transfer_key(to, height, at), i));
        }
    }
    keys
}

/// The format of this database (its tables and the encoding of their values, `codec`), kept in
/// `meta` under `FORMAT_KEY`. Format 1 had no such key (CBOR values with Rust's field names);
/// format 2 had no `block_hashes` and `transfers` (the explorer's indexes); format 3 had no
/// staking state (`STAKING_KEY`) and wire-version-2 values; format 4 held blocks whose state
/// roots were flat hashes (wire version 3: its ledger cannot be checked against them).
pub const STORE_FORMAT: u32 = 5;
pub(super) const FORMAT_KEY: &str = "format";
/// In `meta`: the staking state after the last block (`Staking::encode`), rewritten whenever a
/// block changes it (ADR 0026).
pub(super) const STAKING_KEY: &str = "staking";

/// Refuses a database of another format before anything in it is read; a new one passes.
pub(super) fn check_format(db: &Database, path: &str) -> Result<(), StoreError> {
    let r = db.begin_read().map_err(StoreError::db)?;
    let found = match r.open_table(META) {
        Ok(meta) => match meta.get(FORMAT_KEY).map_err(StoreError::db)? {
            Some(v) => Some(
                <[u8; 4]>::try_from(v.value())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Format {
                        path: path.into(),
                        found: "an unreadable format mark".into(),
                    })?,
            ),
            // Tables but no mark: written by a version before formats were marked.
            None => Some(1),
        },
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(StoreError::db(e)),
    };
    match found {
        None | Some(STORE_FORMAT) => Ok(()),
        Some(n) => Err(StoreError::Format {
            path: path.into(),
            found: format!("format {n}"),
        }),
    }
}

/// Stored values are our own encodings; this bounds what a corrupt file can make us allocate.
pub(super) const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

pub(super) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

/// A stored block with the longest certificate known for it: the one of `certificates` when that
/// one is for this block.
pub(super) fn decode_stored(
    certs: &impl ReadableTable<u64, &'static [u8]>,
    raw: &[u8],
) -> Result<StoredBlock, StoreError> {
    let mut s: StoredBlock =
        codec::decode(raw, MAX_STORED_BYTES).map_err(|e| corrupt("blocks", e))?;
    if let Some(v) = certs.get(s.block.height().0).map_err(StoreError::db)? {
        let cert: Certificate =
            codec::decode(v.value(), MAX_STORED_BYTES).map_err(|e| corrupt("certificates", e))?;
        if cert.block_hash == s.block.hash()
            && cert.signatures.len() > s.certificate.signatures.len()
        {
            s.certificate = cert;
        }
    }
    Ok(s)
}
