//! The node's durable state: one redb database and one write-ahead log file in the data directory.
//!
//! | redb table | key | value |
//! |---|---|---|
//! | `blocks` | height | `StoredBlock` (block, certificate, outcome, local finality) |
//! | `certificates` | height | `Certificate`: a longer one than the block's, gathered later |
//! | `txs` | transaction hash | height of the block that archived it |
//! | `accounts` | public key | `Account` (the ledger after the last stored block) |
//! | `block_hashes` | block hash | height |
//! | `transfers` | address, height, index in the block | transaction hash (sender's and recipient's) |
//! | `meta` | name | `format`: the database's format (`STORE_FORMAT`); `genesis`: the genesis hash; `staking`: the staking state; `pruned_below`: the lowest height not pruned (`prune.rs`) |
//!
//! The persist records (what the core asked to make durable) live in `wal.log` next to the
//! database (see `wal.rs`): `log` writes a group with one write and one `fdatasync` and returns
//! only then, so the driver performs a signed message's broadcast after its record is on disk.
//!
//! Finalized blocks are written to the WAL too (without a sync of their own), then committed to
//! redb with `Durability::None`: redb makes such commits durable with the next `Immediate` commit,
//! in order, so after a crash (even `kill -9`) redb holds a prefix of the history (a block and the
//! ledger after it are always written in one transaction), possibly without the last blocks.
//! `open` puts those back from the WAL, so the node restores at the last block it finalized before
//! its newest durable record, and its records of the next height (its proposals, votes and lock
//! there) are the ones `Node::restore` replays: it never contradicts itself. (Without the blocks
//! in the WAL it would restore at the last *durable* block, ignore its newer records, catch up and
//! could sign a second, different vote at a height it had voted at.) The finalized block of height
//! `h` is written before any record of `h + 1`, and the WAL is read in order, so a durable record
//! of `h + 1` implies a durable block `h`.
//!
//! **WAL entries of height ≤ H are removed only after an `Immediate` redb commit issued after the
//! commit of block H has returned** (a "durable point"). So at any crash the WAL still holds every
//! entry above the last block redb kept.
//!
//! A durable point is taken when the WAL file exceeds `WAL_PRUNE_BYTES` or after
//! `DURABLE_EVERY_BLOCKS` finalized blocks, whichever comes first; it costs one redb fsync and one
//! rewrite-and-rename of the (small) kept tail of the WAL, off most heights' critical path. The
//! rewrite is crash-safe: the old file stays whole until the synced new one replaces it.
//!
//! Here: opening, the WAL's records, committing blocks, durable points and the restore (the
//! writes). The tables are `tables.rs`, the reads `read.rs`, the errors and redb's panics turned
//! into errors `error.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use timed_core::block::Certificate;
use timed_core::codec;
use timed_core::consensus::Restore;
use timed_core::crypto::PublicKey;
use timed_core::ledger::{Account, Ledger};
use timed_core::message::Decision;
use timed_core::staking::Staking;
use timed_core::types::{Hash, Height};
use timed_core::validators::Genesis;

use crate::storage::wal::{Wal, WalRecord};

mod error;
mod prune;
mod read;
mod tables;
#[cfg(test)]
mod tests;

pub use error::StoreError;
use error::{Files, guarded};
use tables::*;

/// Take a durable point (and prune the WAL) once the WAL file is larger than this...
const WAL_PRUNE_BYTES: u64 = 8 * 1024 * 1024;
/// ...or after this many blocks finalized since the last durable point. A point costs some
/// 10 ms on the consensus loop (redb's fsync of what the blocks since wrote, the WAL's rewrite):
/// every 1,024 blocks it was a tenth of a catch-up at 20,000 blocks/s (a 10 ms stall every 16
/// answers); every 4,096, catch-up ran 4–6 % faster (session 17). The price: a restart puts up
/// to 4,096 blocks (at most `WAL_PRUNE_BYTES` of WAL) back into redb.
const DURABLE_EVERY_BLOCKS: u32 = 4096;

/// redb's page cache: its read cache, and the write buffer where the pages of non-durable commits
/// wait for the next durable point (at most half of it; beyond that they go to the file, unsynced).
/// redb's default is 1 GiB, which a node running for months would fill with pages of old blocks.
/// The ledger's pages and the recent blocks fit in this.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

pub use crate::storage::stored::StoredBlock;

pub struct Store {
    db: Database,
    wal: Mutex<WalState>,
    files: Files,
}

struct WalState {
    wal: Wal,
    /// The last block committed to redb (perhaps not yet durably).
    last_finalized: Option<Height>,
    /// Blocks finalized since the last durable point.
    since_durable: u32,
}

fn lock_wal(m: &Mutex<WalState>) -> std::sync::MutexGuard<'_, WalState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (or creates) the database at `path`, checking every page of it first: redb trusts
    /// what it reads, and a damaged page would otherwise surface as a panic, at start or in the
    /// middle of an HTTP answer. The check reads the whole file (about 20 ms per 16 MiB here).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let files = Files::of(path);
        guarded(&files, || Store::open_checked(path, &files))
    }

    fn open_checked(path: &Path, files: &Files) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: files.db.clone(),
                },
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                    StoreError::Damaged {
                        path: files.db.clone(),
                        detail,
                    }
                }
                e => StoreError::Open {
                    path: files.db.clone(),
                    detail: e.to_string(),
                },
            })?;
        check_format(&db, &files.db)?;
        let tx = db.begin_write().map_err(StoreError::db)?;
        {
            tx.open_table(BLOCKS).map_err(StoreError::db)?;
            tx.open_table(CERTS).map_err(StoreError::db)?;
            tx.open_table(TXS).map_err(StoreError::db)?;
            tx.open_table(ACCOUNTS).map_err(StoreError::db)?;
            tx.open_table(BLOCK_HASHES).map_err(StoreError::db)?;
            tx.open_table(TRANSFERS).map_err(StoreError::db)?;
            let mut meta = tx.open_table(META).map_err(StoreError::db)?;
            meta.insert(FORMAT_KEY, &STORE_FORMAT.to_le_bytes()[..])
                .map_err(StoreError::db)?;
        }
        tx.commit().map_err(StoreError::db)?;
        let wal = Wal::open(&path.with_file_name("wal.log"))?;
        let store = Store {
            db,
            wal: Mutex::new(WalState {
                wal,
                last_finalized: None,
                since_durable: 0,
            }),
            files: Files::of(path),
        };
        store.replay_wal_blocks()?;
        Ok(store)
    }

    /// Commits the finalized blocks of the WAL that redb lost in a crash (those above its last
    /// block, in order).
    fn replay_wal_blocks(&self) -> Result<(), StoreError> {
        let blocks = lock_wal(&self.wal).wal.finalized()?;
        let mut last = self.latest_height()?.unwrap_or(Height(0));
        let mut replay = Vec::new();
        for b in blocks {
            let h = b.block.height();
            if h <= last {
                continue;
            }
            if h != last.next() {
                tracing::warn!(
                    "WAL: block {h} follows block {last}; the blocks after {last} are fetched from \
                     peers instead"
                );
                break;
            }
            last = h;
            replay.push(b);
        }
        let replayed = replay.len();
        if replayed > 0 {
            self.commit_blocks(&replay, None)?;
            tracing::info!(
                "Restored {replayed} finalized blocks from the WAL (up to height {last})"
            );
        }
        Ok(())
    }

    /// Binds the database to `genesis` on first use (writing its balances as the ledger at height
    /// 0), and refuses a database of another genesis.
    pub fn bind_genesis(&self, genesis: &Genesis) -> Result<(), StoreError> {
        guarded(&self.files, || {
            let hash = genesis.hash();
            let tx = self.db.begin_write().map_err(StoreError::db)?;
            {
                let mut meta = tx.open_table(META).map_err(StoreError::db)?;
                let stored = meta
                    .get("genesis")
                    .map_err(StoreError::db)?
                    .map(|v| v.value().to_vec());
                match stored {
                    Some(s) if s == hash.0 => {}
                    Some(s) => {
                        return Err(StoreError::WrongGenesis {
                            stored: hex::encode(s),
                            expected: hex::encode(hash.0),
                        });
                    }
                    None => {
                        meta.insert("genesis", &hash.0[..])
                            .map_err(StoreError::db)?;
                        let ledger = Ledger::from_genesis(genesis);
                        if let Some(staking) = ledger.staking() {
                            meta.insert(STAKING_KEY, codec::encode(&staking.record()).as_slice())
                                .map_err(StoreError::db)?;
                        }
                        let mut accounts = tx.open_table(ACCOUNTS).map_err(StoreError::db)?;
                        for (key, account) in ledger.accounts() {
                            accounts
                                .insert(&key.0[..], codec::encode(account).as_slice())
                                .map_err(StoreError::db)?;
                        }
                    }
                }
            }
            tx.commit().map_err(StoreError::db)
        })
    }

    /// Writes `entries` to the WAL in one write; with `sync`, one fdatasync makes them (and every
    /// entry written before) durable before this returns.
    pub fn log(&self, entries: &[WalRecord], sync: bool) -> Result<(), StoreError> {
        guarded(&self.files, || {
            lock_wal(&self.wal).wal.append(entries, sync)?;
            Ok(())
        })
    }

    /// Makes everything durable in redb and trims the WAL (at a clean shutdown: the next start
    /// has nothing to replay).
    pub fn close(&self) -> Result<(), StoreError> {
        guarded(&self.files, || {
            let mut st = lock_wal(&self.wal);
            self.durable_point(&mut st)
        })
    }

    /// A durable point: makes every earlier redb commit durable, then drops the WAL records of the
    /// heights up to the last committed block (the rule in the module comment).
    fn durable_point(&self, st: &mut WalState) -> Result<(), StoreError> {
        let Some(upto) = st.last_finalized else {
            return Ok(());
        };
        let mut tx = self.db.begin_write().map_err(StoreError::db)?;
        tx.set_durability(Durability::Immediate)
            .map_err(StoreError::db)?;
        tx.commit().map_err(StoreError::db)?;
        st.since_durable = 0;
        st.wal.prune(upto)?;
        Ok(())
    }

    /// Stores finalized blocks, already in the WAL, with the ledger changes they made, in one
    /// transaction (not yet durable), together with `extended`, a longer certificate for a block
    /// stored earlier; now and then takes a durable point that prunes the WAL.
    pub fn commit_blocks<'a>(
        &self,
        stored: impl IntoIterator<Item = &'a StoredBlock>,
        extended: Option<&Certificate>,
    ) -> Result<(), StoreError> {
        guarded(&self.files, || {
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            tx.set_durability(Durability::None)
                .map_err(StoreError::db)?;
            let written = {
                let mut w = BlockWriter::open(&tx)?;
                let written = w.put_all(stored)?;
                if let Some(cert) = extended {
                    // Read back only beside a block of the same hash (`longest_certificate`).
                    w.certs
                        .insert(cert.height.0, codec::encode(cert).as_slice())
                        .map_err(StoreError::db)?;
                }
                written
            };
            tx.commit().map_err(StoreError::db)?;
            let mut st = lock_wal(&self.wal);
            if let Some((h, count)) = written {
                st.last_finalized = Some(h);
                st.since_durable += count;
            }
            if st.wal.len_bytes() > WAL_PRUNE_BYTES || st.since_durable >= DURABLE_EVERY_BLOCKS {
                self.durable_point(&mut st)?;
            }
            Ok(())
        })
    }

    /// Fills an empty store with what a state sync verified (`node::statesync`): `last`, the
    /// block of the snapshot's height with its certificate, as the only block, with `outcome`
    /// (what its body alone tells: this node did not apply it); `ledger`, the state after it;
    /// and the mark that nothing below it is kept, as if pruned. Durable when it returns.
    pub fn import(
        &self,
        genesis: &Genesis,
        last: &StoredBlock,
        ledger: &Ledger,
    ) -> Result<(), StoreError> {
        guarded(&self.files, || {
            let height = last.block.height();
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            {
                let mut w = BlockWriter::open(&tx)?;
                if w.blocks.last().map_err(StoreError::db)?.is_some() {
                    return Err(corrupt("blocks", "a state sync fills an empty store only"));
                }
                let hash = genesis.hash();
                let bound = w.meta.get("genesis").map_err(StoreError::db)?;
                if let Some(stored) = bound.map(|v| v.value().to_vec())
                    && stored != hash.0
                {
                    return Err(StoreError::WrongGenesis {
                        stored: hex::encode(stored),
                        expected: hex::encode(hash.0),
                    });
                }
                // Bound to its genesis, as `bind_genesis` binds a new store: a later
                // `bind_genesis` then finds it bound and leaves the imported state alone
                // (unbound, it wrote the genesis balances over the synced accounts). The
                // genesis balances of a store bound before (a start without blocks) give way
                // to the snapshot's accounts.
                w.meta
                    .insert("genesis", &hash.0[..])
                    .map_err(StoreError::db)?;
                w.accounts.retain(|_, _| false).map_err(StoreError::db)?;
                w.put_all([last])?;
                for (key, account) in ledger.accounts() {
                    w.accounts
                        .insert(&key.0[..], codec::encode(account).as_slice())
                        .map_err(StoreError::db)?;
                }
                if let Some(staking) = ledger.staking() {
                    w.meta
                        .insert(STAKING_KEY, codec::encode(&staking.record()).as_slice())
                        .map_err(StoreError::db)?;
                }
                w.meta
                    .insert(prune::PRUNED_BELOW_KEY, &height.0.to_le_bytes()[..])
                    .map_err(StoreError::db)?;
            }
            tx.set_durability(Durability::Immediate)
                .map_err(StoreError::db)?;
            tx.commit().map_err(StoreError::db)?;
            lock_wal(&self.wal).last_finalized = Some(height);
            Ok(())
        })
    }

    /// What `Node::restore` needs: the last block, the ledger after it (accounts and staking
    /// state, under `genesis`'s parameters), and the WAL.
    pub fn restore(&self, genesis: &Genesis) -> Result<Restore, StoreError> {
        self.restore_with(genesis, None)
    }

    /// As `restore`; `known`: the ledger after the last block when the caller holds it already
    /// (a state sync just imported it), which is then not read back (`Node::restore` checks
    /// its root against the last block's header either way).
    pub fn restore_with(
        &self,
        genesis: &Genesis,
        known: Option<Ledger>,
    ) -> Result<Restore, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let (last, ledger) = match known {
                Some(ledger) => (read_last_block(&r)?, Some(ledger)),
                None => read_chain_tip(&r, genesis)?,
            };
            let records = lock_wal(&self.wal).wal.records()?;
            Ok(Restore {
                ledger,
                last,
                records,
                // Not chain data: the caller reads it from the guard file beside the key.
                guard: None,
            })
        })
    }

    /// The store as it is now, kept for a reader while the consensus loop goes on committing
    /// (a redb read transaction: later commits do not change what it sees). The snapshot
    /// thread reads the ledger of a snapshot height from one taken right after that height's
    /// commit (`storage::snapshots`).
    pub fn view(&self) -> Result<StoreView, StoreError> {
        let tx = guarded(&self.files, || self.db.begin_read().map_err(StoreError::db))?;
        Ok(StoreView {
            files: self.files.clone(),
            tx,
        })
    }
}

/// The tables a finalized block is written to, open in one write transaction.
struct BlockWriter<'t> {
    blocks: redb::Table<'t, u64, &'static [u8]>,
    certs: redb::Table<'t, u64, &'static [u8]>,
    txs: redb::Table<'t, &'static [u8], u64>,
    accounts: redb::Table<'t, &'static [u8], &'static [u8]>,
    hashes: redb::Table<'t, &'static [u8], u64>,
    transfers: redb::Table<'t, &'static [u8], &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> BlockWriter<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<BlockWriter<'t>, StoreError> {
        Ok(BlockWriter {
            blocks: tx.open_table(BLOCKS).map_err(StoreError::db)?,
            certs: tx.open_table(CERTS).map_err(StoreError::db)?,
            txs: tx.open_table(TXS).map_err(StoreError::db)?,
            accounts: tx.open_table(ACCOUNTS).map_err(StoreError::db)?,
            hashes: tx.open_table(BLOCK_HASHES).map_err(StoreError::db)?,
            transfers: tx.open_table(TRANSFERS).map_err(StoreError::db)?,
            meta: tx.open_table(META).map_err(StoreError::db)?,
        })
    }

    /// Finalized blocks, in height order: each block, its transactions' and the explorer's
    /// index entries, and the accounts and staking state they changed.
    ///
    /// One transaction holds the whole batch, so only its end state matters: an account or the
    /// staking state changed by several blocks is written once, with its last value, and the
    /// hash-keyed entries go in key order, where neighbouring inserts touch the same pages (a
    /// block's hash lands on a random leaf of its index; one by one, each insert rewrote one).
    fn put_all<'a>(
        &mut self,
        stored: impl IntoIterator<Item = &'a StoredBlock>,
    ) -> Result<Option<(Height, u32)>, StoreError> {
        let mut last = None;
        let mut count = 0u32;
        let mut blocks_by_hash: Vec<([u8; 32], u64)> = Vec::new();
        let mut txs_by_hash: Vec<([u8; 32], u64)> = Vec::new();
        let mut transfers: Vec<([u8; 44], Hash)> = Vec::new();
        let mut accounts: BTreeMap<PublicKey, &Account> = BTreeMap::new();
        let mut staking = None;
        for f in stored {
            let height = f.block.height();
            self.blocks
                .insert(height.0, codec::encode(f).as_slice())
                .map_err(StoreError::db)?;
            blocks_by_hash.push((f.block.hash().0, height.0));
            txs_by_hash.extend(f.outcome.archived.iter().map(|h| (h.0, height.0)));
            let tx_hashes: Vec<Hash> = f.block.txs.iter().map(|t| t.hash()).collect();
            transfers.extend(
                transfer_keys(&f.block)
                    .into_iter()
                    .map(|(key, i)| (key, tx_hashes[i])),
            );
            staking = f.outcome.staking.as_ref().or(staking);
            accounts.extend(f.outcome.touched.iter().map(|(k, a)| (*k, a)));
            last = Some(height);
            count += 1;
        }
        for (index, mut entries) in [
            (&mut self.hashes, blocks_by_hash),
            (&mut self.txs, txs_by_hash),
        ] {
            entries.sort_unstable();
            for (hash, height) in &entries {
                index.insert(&hash[..], *height).map_err(StoreError::db)?;
            }
        }
        transfers.sort_unstable_by_key(|t| t.0);
        for (key, hash) in &transfers {
            self.transfers
                .insert(&key[..], &hash.0[..])
                .map_err(StoreError::db)?;
        }
        if let Some(staking) = staking {
            self.meta
                .insert(STAKING_KEY, codec::encode(staking).as_slice())
                .map_err(StoreError::db)?;
        }
        for (key, account) in accounts {
            if *account == Account::default() {
                self.accounts.remove(&key.0[..]).map_err(StoreError::db)?;
            } else {
                self.accounts
                    .insert(&key.0[..], codec::encode(account).as_slice())
                    .map_err(StoreError::db)?;
            }
        }
        Ok(last.map(|h| (h, count)))
    }
}

/// A consistent view of the store (`Store::view`), which another thread may own.
pub struct StoreView {
    files: Files,
    tx: redb::ReadTransaction,
}

impl StoreView {
    /// The last block in the view and the ledger after it (`None` before the first block).
    pub fn tip(&self, genesis: &Genesis) -> Result<Option<(Decision, Ledger)>, StoreError> {
        guarded(&self.files, || {
            let (last, ledger) = read_chain_tip(&self.tx, genesis)?;
            Ok(last.zip(ledger))
        })
    }
}

/// The last block of the store read through `r` and the ledger after it: its accounts and
/// staking state, under `genesis`'s parameters, every value decoded bounded.
/// The last stored block with its certificate.
fn read_last_block(r: &redb::ReadTransaction) -> Result<Option<Decision>, StoreError> {
    let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
    let certs = r.open_table(CERTS).map_err(StoreError::db)?;
    Ok(match blocks.last().map_err(StoreError::db)? {
        Some((_, v)) => {
            let s = decode_stored(&certs, v.value())?;
            Some(Decision {
                block: s.block,
                certificate: s.certificate,
            })
        }
        None => None,
    })
}

fn read_chain_tip(
    r: &redb::ReadTransaction,
    genesis: &Genesis,
) -> Result<(Option<Decision>, Option<Ledger>), StoreError> {
    let last = read_last_block(r)?;
    let accounts = r.open_table(ACCOUNTS).map_err(StoreError::db)?;
    let mut list = Vec::new();
    for entry in accounts.iter().map_err(StoreError::db)? {
        let (k, v) = entry.map_err(StoreError::db)?;
        let key: [u8; 32] = k
            .value()
            .try_into()
            .map_err(|_| corrupt("accounts", "key is not 32 bytes"))?;
        let account: Account =
            codec::decode(v.value(), 1024).map_err(|e| corrupt("accounts", e))?;
        list.push((PublicKey(key), account));
    }
    let meta = r.open_table(META).map_err(StoreError::db)?;
    let staking = match meta.get(STAKING_KEY).map_err(StoreError::db)? {
        Some(v) => {
            Some(Staking::decode(v.value(), &genesis.params).map_err(|e| corrupt("meta", e))?)
        }
        None => None,
    };
    let ledger = last.as_ref().map(|_| Ledger::from_parts(list, staking));
    Ok((last, ledger))
}
