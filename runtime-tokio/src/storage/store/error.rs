//! What can go wrong with the store, told so that an operator can act (`StoreError`), and how a
//! panic of redb on a damaged page becomes such an error naming the files (`guarded`).

use std::path::Path;

use super::tables::STORE_FORMAT;

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
    pub(super) fn db(e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db(e.into())
    }

    /// The error as the caller sees it: naming the file, and saying what to do.
    pub(super) fn located(self, files: &Files) -> StoreError {
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
#[derive(Clone)]
pub(super) struct Files {
    pub(super) db: String,
    pub(super) wal: String,
}

impl Files {
    pub(super) fn of(db: &Path) -> Files {
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
pub(super) fn quiet_store_panics() {
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
pub(super) fn guarded<T>(
    files: &Files,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
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
