//! The node's durable state: one redb database and one write-ahead log file in the data directory.
//!
//! | redb table | key | value |
//! |---|---|---|
//! | `blocks` | height | `StoredBlock` (block, certificate, outcome, local finality) |
//! | `certificates` | height | `Certificate`: a longer one than the block's, gathered later |
//! | `txs` | transaction hash | height of the block that archived it |
//! | `accounts` | public key | `Account` (the ledger after the last stored block) |
//! | `meta` | name | `format`: the database's format (`STORE_FORMAT`); `genesis`: the genesis hash |
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

use std::path::Path;
use std::sync::Mutex;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use timed_core::block::Certificate;
use timed_core::codec;
use timed_core::consensus::Restore;
use timed_core::crypto::PublicKey;
use timed_core::ledger::{Account, Ledger};
use timed_core::message::Decision;
use timed_core::types::{Hash, Height};
use timed_core::validators::Genesis;

use crate::storage::wal::{Wal, WalRecord};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Certificates extended after their block was stored: rewriting a block of thousands of
/// transfers for one more signature cost more than the block's own commit.
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const TXS: TableDefinition<&[u8], u64> = TableDefinition::new("txs");
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The format of this database (its tables and the encoding of their values, `codec`), kept in
/// `meta` under `FORMAT_KEY`. Format 1 had no such key (CBOR values with Rust's field names).
pub const STORE_FORMAT: u32 = 2;
const FORMAT_KEY: &str = "format";

/// Refuses a database of another format before anything in it is read; a new one passes.
fn check_format(db: &Database, path: &str) -> Result<(), StoreError> {
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

/// Take a durable point (and prune the WAL) once the WAL file is larger than this...
const WAL_PRUNE_BYTES: u64 = 8 * 1024 * 1024;
/// ...or after this many blocks finalized since the last durable point.
const DURABLE_EVERY_BLOCKS: u32 = 1024;

/// redb's page cache: its read cache, and the write buffer where the pages of non-durable commits
/// wait for the next durable point (at most half of it; beyond that they go to the file, unsynced).
/// redb's default is 1 GiB, which a node running for months would fill with pages of old blocks.
/// The ledger's pages and the recent blocks fit in this.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Stored values are our own encodings; this bounds what a corrupt file can make us allocate.
const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} is in use by another timed process (one node per data directory)")]
    Locked { path: String },
    #[error(
        "cannot open database {path}: {detail}; check that the data directory is readable and \
         writable by this user and that its disk has room"
    )]
    Open { path: String, detail: String },
    #[error(
        "database {path} is damaged ({detail}): move the node's data directory aside (or delete \
         it) and start the node again; it fetches the chain from its peers. Keep the key file and \
         the .last_signed guard file beside it: they keep it from signing twice"
    )]
    Damaged { path: String, detail: String },
    #[error(
        "database {path} failed: {detail}; check the disk it is on (free space, permissions, \
         errors in the kernel log)"
    )]
    Failed { path: String, detail: String },
    #[error(
        "the write-ahead log {path} failed: {detail}; check the disk it is on (free space, \
         permissions, errors in the kernel log)"
    )]
    WalFailed { path: String, detail: String },
    /// A redb error inside the store; `located` turns it into one of the variants above.
    #[error("storage failure: {0}")]
    Db(#[from] redb::Error),
    /// A WAL I/O error inside the store; `located` names the file.
    #[error("write-ahead log failure: {0}")]
    Wal(#[from] std::io::Error),
    #[error(transparent)]
    WalOpen(#[from] crate::storage::wal::WalError),
    #[error(transparent)]
    Guard(#[from] crate::storage::guard::GuardError),
    #[error(
        "database {path} is of {found}, and this timed reads format {STORE_FORMAT} only: it was \
         written by an older version. The chain's formats changed before launch and nothing is \
         migrated: move the data directory aside (or delete it) and start again; keep the key \
         file and the .last_signed guard file beside it"
    )]
    Format { path: String, found: String },
    /// A value our codec cannot read; `located` reports it as `Damaged`.
    #[error("corrupt record in table {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error(
        "the database belongs to genesis {stored}, but this node runs genesis {expected}; \
         use another --data-dir or remove the old one"
    )]
    WrongGenesis { stored: String, expected: String },
}

impl StoreError {
    fn db(e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db(e.into())
    }

    /// The error as the caller sees it: naming the file, and saying what to do.
    fn located(self, files: &Files) -> StoreError {
        let path = files.db.clone();
        match self {
            StoreError::Db(redb::Error::Corrupted(detail)) => StoreError::Damaged { path, detail },
            StoreError::Db(e) => StoreError::Failed {
                path,
                detail: e.to_string(),
            },
            StoreError::Corrupt { table, reason } => StoreError::Damaged {
                path,
                detail: format!("an unreadable record in table {table}: {reason}"),
            },
            StoreError::Wal(e) => StoreError::WalFailed {
                path: files.wal.clone(),
                detail: e.to_string(),
            },
            e => e,
        }
    }
}

/// The store's two files, as errors name them.
struct Files {
    db: String,
    wal: String,
}

impl Files {
    fn of(db: &Path) -> Files {
        Files {
            db: db.display().to_string(),
            wal: db.with_file_name("wal.log").display().to_string(),
        }
    }
}

thread_local! {
    /// Calls into redb under way on this thread (`guarded`).
    static IN_STORE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Installs (once) a panic hook that says nothing of a panic inside the store: `guarded` turns it
/// into one error line. Other panics are reported as before.
fn quiet_store_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_STORE.with(|n| n.get()) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, a use of the database, so that nothing it meets escapes as a panic: redb reads a
/// damaged page without checking it and may then panic (an index out of range, "Malformed
/// allocator state"), which would end the node with a backtrace, or an HTTP answer with none.
/// Errors come out naming the file and what to do (`located`).
fn guarded<T>(files: &Files, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    quiet_store_panics();
    IN_STORE.with(|n| n.set(n.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_STORE.with(|n| n.set(n.get() - 1));
    match result {
        Ok(r) => r.map_err(|e| e.located(files)),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(StoreError::Damaged {
                path: files.db.clone(),
                detail: format!("reading it failed: {what}"),
            })
        }
    }
}

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

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

/// A stored block with the longest certificate known for it: the one of `certificates` when that
/// one is for this block.
fn decode_stored(
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
                        let mut accounts = tx.open_table(ACCOUNTS).map_err(StoreError::db)?;
                        for (key, account) in Ledger::from_genesis(genesis).accounts() {
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
            let mut last = None;
            let mut count = 0u32;
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            tx.set_durability(Durability::None)
                .map_err(StoreError::db)?;
            {
                let mut blocks = tx.open_table(BLOCKS).map_err(StoreError::db)?;
                let mut certs = tx.open_table(CERTS).map_err(StoreError::db)?;
                let mut txs = tx.open_table(TXS).map_err(StoreError::db)?;
                let mut accounts = tx.open_table(ACCOUNTS).map_err(StoreError::db)?;
                for f in stored {
                    let height = f.block.height();
                    blocks
                        .insert(height.0, codec::encode(f).as_slice())
                        .map_err(StoreError::db)?;
                    // In key order: neighbouring inserts touch the same pages.
                    let mut archived: Vec<&Hash> = f.outcome.archived.iter().collect();
                    archived.sort_unstable();
                    for hash in archived {
                        txs.insert(&hash.0[..], height.0).map_err(StoreError::db)?;
                    }
                    for (key, account) in &f.outcome.touched {
                        if *account == Account::default() {
                            accounts.remove(&key.0[..]).map_err(StoreError::db)?;
                        } else {
                            accounts
                                .insert(&key.0[..], codec::encode(account).as_slice())
                                .map_err(StoreError::db)?;
                        }
                    }
                    last = Some(height);
                    count += 1;
                }
                if let Some(cert) = extended {
                    // Read back only beside a block of the same hash (`longest_certificate`).
                    certs
                        .insert(cert.height.0, codec::encode(cert).as_slice())
                        .map_err(StoreError::db)?;
                }
            }
            tx.commit().map_err(StoreError::db)?;
            let mut st = lock_wal(&self.wal);
            if let Some(h) = last {
                st.last_finalized = Some(h);
            }
            st.since_durable += count;
            if st.wal.len_bytes() > WAL_PRUNE_BYTES || st.since_durable >= DURABLE_EVERY_BLOCKS {
                self.durable_point(&mut st)?;
            }
            Ok(())
        })
    }

    /// What `Node::restore` needs: the last block, the ledger after it, and the WAL.
    pub fn restore(&self) -> Result<Restore, StoreError> {
        guarded(&self.files, || {
            let r = self.db.begin_read().map_err(StoreError::db)?;
            let blocks = r.open_table(BLOCKS).map_err(StoreError::db)?;
            let certs = r.open_table(CERTS).map_err(StoreError::db)?;
            let last = match blocks.last().map_err(StoreError::db)? {
                Some((_, v)) => {
                    let s = decode_stored(&certs, v.value())?;
                    Some(Decision {
                        block: s.block,
                        certificate: s.certificate,
                    })
                }
                None => None,
            };
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
            let records = lock_wal(&self.wal).wal.records()?;
            Ok(Restore {
                ledger: last.as_ref().map(|_| Ledger::from_accounts(list)),
                last,
                records,
                // Not chain data: the caller reads it from the guard file beside the key.
                guard: None,
            })
        })
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::block::{Block, Header};
    use timed_core::ledger::BlockOutcome;
    use timed_core::types::{Amount, Round, TimestampMs, ValidatorIndex};

    /// A database of an older timed (tables, no format mark) or of another format number is
    /// refused before anything in it is read, naming the file and what to do; a new one is
    /// marked, and opens again.
    #[test]
    fn a_database_of_another_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timed.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert("genesis", &[7u8; 32][..]).unwrap();
            }
            tx.commit().unwrap();
        }
        let text = Store::open(&path).err().expect("refused").to_string();
        assert!(text.contains("is of format 1"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("move the data directory aside"), "{text}");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(FORMAT_KEY, &9u32.to_le_bytes()[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        let text = Store::open(&path).err().expect("refused").to_string();
        assert!(text.contains("is of format 9"), "{text}");
        let fresh = dir.path().join("new").join("timed.redb");
        std::fs::create_dir_all(fresh.parent().unwrap()).unwrap();
        Store::open(&fresh).unwrap().close().unwrap();
        Store::open(&fresh).unwrap().close().unwrap();
    }

    fn stored(h: u64) -> StoredBlock {
        let block = Block {
            header: Header {
                chain_id: "test".into(),
                height: Height(h),
                parent_hash: Hash([1; 32]),
                timestamp: TimestampMs(h),
                proposer: ValidatorIndex(0),
                tx_root: Hash([2; 32]),
                state_root: Hash([3; 32]),
            },
            txs: Vec::new(),
        };
        StoredBlock {
            certificate: Certificate {
                height: Height(h),
                round: Round(0),
                block_hash: block.hash(),
                signatures: Vec::new(),
            },
            block,
            outcome: BlockOutcome {
                height: Height(h),
                subsidy: Amount(1),
                fees: Amount(0),
                total_reward: Amount(1),
                rewards: Vec::new(),
                archived: vec![Hash([h as u8; 32])],
                touched: Vec::new(),
            },
            finality_ms: crate::storage::stored::FinalityMs(Some(1)),
        }
    }

    /// A store of 300 blocks, closed; its file's bytes.
    fn a_closed_store(path: &Path) -> Vec<u8> {
        let store = Store::open(path).unwrap();
        for h in 1..=300 {
            store.commit_blocks([&stored(h)], None).unwrap();
        }
        store.close().unwrap();
        drop(store);
        std::fs::read(path).unwrap()
    }

    /// `bytes` with 200 bytes of 4 KiB page `page` flipped.
    fn damaged(bytes: &[u8], page: usize) -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        for b in &mut bytes[page * 4096 + 100..page * 4096 + 300] {
            *b ^= 0x5a;
        }
        bytes
    }

    /// Every block and the ledger, as the API and a restart read them.
    fn read_everything(store: &Store) -> Result<(), StoreError> {
        for h in 1..=300 {
            store.block(Height(h))?;
        }
        store.range(Height(1), 1000, usize::MAX)?;
        store.tx_height(&Hash([7; 32]))?;
        store.account(&PublicKey([1; 32]))?;
        store.restore().map(|_| ())
    }

    /// Damage (200 bytes flipped) in each 4 KiB page of the file in turn, before the node
    /// starts: the start is refused with one error naming the file and what to do, or (damage
    /// in free space) it starts and reads everything; it never panics (redb alone panicked on a
    /// third of these pages: "Malformed allocator state", a slice index out of range).
    #[test]
    fn a_damaged_page_at_start_is_an_error_naming_the_file_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let clean = a_closed_store(&dir.path().join("timed.redb"));
        let mut refused = 0;
        for page in 0..clean.len() / 4096 {
            let path = dir.path().join(format!("p{page}")).join("timed.redb");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, damaged(&clean, page)).unwrap();
            match Store::open(&path).and_then(|s| read_everything(&s)) {
                Ok(()) => {}
                Err(e) => {
                    refused += 1;
                    let text = e.to_string();
                    assert!(text.contains(&path.display().to_string()), "{text}");
                    assert!(text.contains("is damaged"), "{text}");
                    assert!(
                        text.contains("move the node's data directory aside"),
                        "{text}"
                    );
                }
            }
        }
        assert!(refused > 10, "the damage is seen: {refused} pages");
    }

    /// Damage that appears while the node runs (the file changed under it): every read answers
    /// with an error naming the file, or the data, and none panics; an HTTP handler gets an
    /// error to answer with.
    #[test]
    fn a_page_damaged_while_open_gives_errors_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let clean = a_closed_store(&dir.path().join("timed.redb"));
        let mut failed = 0;
        for page in 0..clean.len() / 4096 {
            let path = dir.path().join(format!("p{page}")).join("timed.redb");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &clean).unwrap();
            let store = Store::open(&path).unwrap();
            std::fs::write(&path, damaged(&clean, page)).unwrap();
            if let Err(e) = read_everything(&store) {
                failed += 1;
                assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            }
        }
        assert!(failed > 10, "the damage is seen: {failed} pages");
    }

    #[test]
    fn blocks_only_in_the_wal_are_put_back_into_the_database_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timed.redb");
        let store = Store::open(&path).unwrap();
        store
            .log(&[WalRecord::Finalized(Box::new(stored(1)))], false)
            .unwrap();
        store.commit_blocks([&stored(1)], None).unwrap();
        store.close().unwrap();
        // Blocks 2 and 3 reached the WAL, but not the database (as after a crash that lost
        // redb's unsynced commits); a record of height 4 follows them.
        let record = timed_core::consensus::PersistRecord::Signed {
            height: Height(4),
            msg: timed_core::message::Message::SyncRequest {
                from: Height(4),
                max_blocks: 1,
            },
        };
        store
            .log(
                &[
                    WalRecord::Finalized(Box::new(stored(2))),
                    WalRecord::Finalized(Box::new(stored(3))),
                    WalRecord::Persist(record.clone()),
                ],
                true,
            )
            .unwrap();
        assert_eq!(store.latest_height().unwrap(), Some(Height(1)));
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.latest_height().unwrap(), Some(Height(3)));
        assert_eq!(store.block(Height(2)).unwrap(), Some(stored(2)));
        assert_eq!(store.tx_height(&Hash([3; 32])).unwrap(), Some(Height(3)));
        let restore = store.restore().unwrap();
        assert_eq!(restore.last.map(|d| d.block.height()), Some(Height(3)));
        assert_eq!(restore.records, vec![record]);
    }

    #[test]
    fn a_longer_certificate_is_read_back_with_its_block_and_only_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("timed.redb")).unwrap();
        store.commit_blocks([&stored(1), &stored(2)], None).unwrap();
        let signature = |v| timed_core::block::CommitSignature {
            validator: ValidatorIndex(v),
            signature: timed_core::crypto::Signature([v as u8; 64]),
        };
        let mut longer = stored(1).certificate;
        longer.signatures = vec![signature(0), signature(1)];
        store.commit_blocks([], Some(&longer)).unwrap();
        // A certificate of another block at height 2 is ignored.
        let mut stray = stored(2).certificate;
        stray.block_hash = Hash([9; 32]);
        stray.signatures = vec![signature(2)];
        store.commit_blocks([], Some(&stray)).unwrap();
        assert_eq!(store.block(Height(1)).unwrap().unwrap().certificate, longer);
        assert_eq!(store.block(Height(2)).unwrap(), Some(stored(2)));
        let range = store.range(Height(1), 10, usize::MAX).unwrap();
        assert_eq!(range[0].certificate, longer);
        assert_eq!(range[1], stored(2));
        assert_eq!(stored(1).block, range[0].block);
    }
}
