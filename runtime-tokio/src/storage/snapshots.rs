//! Snapshots of the ledger (`--snapshot-interval N`, issue 15): what this node offers a new
//! node so that it can start from a recent state instead of replaying every block.
//!
//! At every height that is a multiple of N, the consensus loop commits the blocks up to it
//! alone, takes a view of the store right after that commit (`Store::view`: a redb read
//! transaction, which later commits do not change) and hands it to this module's thread
//! (`Snapshotter::offer`; a view arriving while the previous snapshot is still being written is
//! dropped, with a warning). The thread reads the ledger from the view, checks its state root
//! against the block's header, cuts it (`timed_core::ledger::snapshot`) and writes
//!
//! ```text
//! <data-dir>/snapshots/<height>/manifest     the Manifest, codec-encoded
//! <data-dir>/snapshots/<height>/chunk-<i>    each Chunk, codec-encoded
//! ```
//!
//! into a `.tmp-<height>` folder renamed into place when complete, so a crash leaves no half
//! snapshot to serve (leftovers are removed at start). The last `KEEP` snapshots are kept. Every
//! node cuts the same height the same way (the cut is a function of the ledger), so a new node
//! can fetch the chunks of one snapshot from several. The API serves them read-only
//! (`api::snapshots`); the reader verifies everything against a certified header and trusts no
//! server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

use timed_core::codec;
use timed_core::ledger::Ledger;
use timed_core::ledger::snapshot::Chunk;
use timed_core::types::Height;
use tracing::{debug, info, warn};

use crate::node::ctx::{Chain, Ctx};
use crate::storage::store::StoreView;

/// `--snapshot-interval`'s default: a snapshot every this many heights.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 1_000;

/// Snapshots kept on disk.
pub const KEEP: usize = 2;

/// The folder of a data directory's snapshots.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// The snapshot thread, as the consensus loop sees it.
pub struct Snapshotter {
    interval: u64,
    views: SyncSender<(Height, StoreView)>,
}

impl Snapshotter {
    /// Starts the thread that writes snapshots under `ctx.data_dir`, one every `interval`
    /// heights (at least 1).
    pub fn start(ctx: Arc<Ctx>, chain: Arc<Chain>, interval: u64) -> std::io::Result<Snapshotter> {
        let dir = folder(&ctx.data_dir);
        std::fs::create_dir_all(&dir)?;
        remove_leftovers(&dir);
        if let Some(newest) = heights(&dir).first() {
            ctx.metrics.snapshot_height.set(*newest as i64);
        }
        info!(
            "Snapshots: one every {interval} heights (--snapshot-interval), the last {KEEP} kept \
             in {}",
            dir.display()
        );
        let (views, rx) = std::sync::mpsc::sync_channel::<(Height, StoreView)>(1);
        std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || {
                for (height, view) in rx {
                    let start = Instant::now();
                    match write(&dir, &chain, height, &view) {
                        Ok(chunks) => {
                            info!(
                                "Snapshot of height {height} written: {chunks} chunks in {:.1?} \
                                 ({})",
                                start.elapsed(),
                                dir.join(height.0.to_string()).display()
                            );
                            ctx.metrics.snapshot_height.set(height.0 as i64);
                            prune(&dir);
                        }
                        Err(e) => warn!("Snapshot of height {height} failed: {e}"),
                    }
                }
            })?;
        Ok(Snapshotter {
            interval: interval.max(1),
            views,
        })
    }

    /// Whether `height` is a snapshot height.
    pub fn due(&self, height: Height) -> bool {
        height.0 > 0 && height.0.is_multiple_of(self.interval)
    }

    /// Hands the thread a view of the store whose last block is `height`.
    pub fn offer(&self, height: Height, view: StoreView) {
        match self.views.try_send((height, view)) {
            Ok(()) => debug!("Snapshot of height {height} started"),
            Err(TrySendError::Full(_)) => warn!(
                "Snapshot of height {height} skipped: the previous one is still being written \
                 (raise --snapshot-interval)"
            ),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotFailure {
    #[error(transparent)]
    Store(#[from] crate::storage::store::StoreError),
    #[error("the view holds block {found:?}, not {expected}")]
    WrongTip {
        expected: Height,
        found: Option<Height>,
    },
    #[error("the stored ledger's state root is not its block's: the store is damaged")]
    RootMismatch,
    #[error(transparent)]
    Cut(#[from] timed_core::ledger::snapshot::SnapshotError),
    #[error("cannot write it: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads, checks, cuts and writes the snapshot of `height`; returns its number of chunks.
fn write(
    dir: &Path,
    chain: &Chain,
    height: Height,
    view: &StoreView,
) -> Result<usize, SnapshotFailure> {
    let tip = view.tip(&chain.genesis)?;
    let (last, ledger) = match tip {
        Some((last, ledger)) if last.block.height() == height => (last, ledger),
        other => {
            return Err(SnapshotFailure::WrongTip {
                expected: height,
                found: other.map(|(d, _)| d.block.height()),
            });
        }
    };
    if ledger.state_root() != last.block.header.state_root {
        return Err(SnapshotFailure::RootMismatch);
    }
    write_ledger(dir, height, &ledger)
}

/// Cuts `ledger`, the state after block `height`, and writes its snapshot under `dir` (the
/// folder of a data directory's snapshots, `folder`): its chunks and manifest into
/// `.tmp-<height>`, renamed to `<height>` when complete. Returns its number of chunks. The
/// caller has checked that the ledger is that block's (`write`; `timed bench statesync` writes
/// the ledger it generated the chain with).
pub(crate) fn write_ledger(
    dir: &Path,
    height: Height,
    ledger: &Ledger,
) -> Result<usize, SnapshotFailure> {
    let manifest = ledger.snapshot_manifest(height)?;
    let tmp = dir.join(format!(".tmp-{}", height.0));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut chunks = 0;
    for index in manifest.chunks() {
        let chunk: Chunk = ledger
            .snapshot_chunk(height, manifest.depth, index)
            .expect("an index of the manifest");
        std::fs::write(tmp.join(format!("chunk-{index}")), codec::encode(&chunk))?;
        chunks += 1;
    }
    std::fs::write(tmp.join("manifest"), codec::encode(&manifest))?;
    let done = dir.join(height.0.to_string());
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&tmp, &done)?;
    Ok(chunks)
}

/// The heights of the complete snapshots in `dir`, newest first.
pub fn heights(dir: &Path) -> Vec<u64> {
    let mut heights: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights
}

/// Deletes all but the newest `KEEP` snapshots.
fn prune(dir: &Path) {
    for old in heights(dir).into_iter().skip(KEEP) {
        if let Err(e) = std::fs::remove_dir_all(dir.join(old.to_string())) {
            warn!("Cannot remove the old snapshot of height {old}: {e}");
        }
    }
}

/// Removes the folders of snapshots a crash left half-written.
fn remove_leftovers(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The bytes of a snapshot's file (`manifest` or `chunk-<i>`), at most `limit` of them: `None`
/// when there is no such snapshot or file, or it is larger.
pub fn read(dir: &Path, height: u64, file: &str, limit: u64) -> Option<Vec<u8>> {
    let path = dir.join(height.to_string()).join(file);
    let len = std::fs::metadata(&path).ok()?.len();
    if len > limit {
        return None;
    }
    std::fs::read(path).ok()
}
