//! The write-ahead log: one file (`wal.log` in the data directory) holding, in order,
//!
//! - the persist records of the core (what it signed, its lock), and
//! - the blocks this node finalized, with their outcome: redb commits blocks without syncing (see
//!   `store.rs`), so until a durable redb point covers a block the log carries it, and a restart
//!   puts it back into redb before the node resumes. Without them a crash would restore the node
//!   at the last *durable* block, below the heights of its newest signed records, and those would
//!   be ignored (`Node::restore` replays the records of the height it restores at only).
//!
//! The file is preallocated with zeros in chunks of `CHUNK` bytes and entries overwrite the zeros:
//! an `fdatasync` then flushes data blocks only, without the journal commit that growing the file
//! costs (ext4), which also keeps it from waiting on other writers of the file system.
//!
//! Pruning (`prune`) rewrites the entries of heights above a bound into `wal.log.tmp`, syncs it,
//! renames it over `wal.log` and syncs the directory. A crash before the rename leaves the old file
//! whole (the leftover temporary is removed on open); after it the new file holds every entry
//! that was kept. So a crash mid-rotation never loses an entry of a height above the bound; when
//! that bound may be used is the store's rule (see `store.rs`).
//!
//! Here: the file and its I/O (open, append, sync, prune). The header, framing and records are
//! `format.rs`; reading a log back, torn tail or damage, `recovery.rs`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use timed_core::consensus::PersistRecord;
use timed_core::types::Height;

use crate::storage::stored::StoredBlock;

mod format;
mod recovery;
#[cfg(test)]
mod tests;

use format::{CHUNK, Entry, FILE_HEADER, MAGIC, file_header, frame_into};
pub use format::{WAL_FORMAT, WalRecord};
use recovery::{Parsed, frame_at, parse};

/// Why the log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot read or write the write-ahead log {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "the write-ahead log {path} is not of format {WAL_FORMAT} ({found}): it was written by an \
         older timed, whose formats this one does not read. The chain's formats changed before \
         launch and nothing is migrated: move the data directory aside (or delete it) and start \
         again; keep the key file and the .last_signed guard file beside it"
    )]
    Format { path: String, found: String },
    #[error(
        "the write-ahead log {path} is damaged at byte {offset}: {reason}. The {entries} entries \
         before it are intact; this is not the torn tail a crash leaves, and dropping the entries \
         from there on could drop votes this validator signed, so the node does not start. Stop \
         here and either restore {path} from a copy taken while this node was stopped, or move it \
         aside (mv {path} {path}.damaged) and start again: the node then starts without its \
         signed records, the double-sign guard file beside its key keeps it from signing at or \
         below the last point it signed, it watches for its own key's signatures on the network \
         before signing anything, and it fetches the blocks it lost from its peers"
    )]
    Damaged {
        path: String,
        offset: u64,
        entries: usize,
        reason: String,
    },
}

pub struct Wal {
    path: PathBuf,
    file: File,
    /// End of the entries (the next write goes here).
    len: u64,
    /// Size of the file: zeros from `len` to here.
    cap: u64,
    /// The entries in the file, in order (what `prune` keeps and `records` reads back).
    entries: Vec<Entry>,
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The file size that holds `used` bytes with free space after them: whole chunks.
fn capacity_for(used: u64) -> u64 {
    (used / CHUNK + 1) * CHUNK
}

/// Writes `n` zero bytes at `at`.
fn write_zeros(file: &mut File, at: u64, n: u64) -> io::Result<()> {
    let zeros = vec![0u8; n.min(256 * 1024) as usize];
    file.seek(SeekFrom::Start(at))?;
    let mut left = n;
    while left > 0 {
        let k = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..k])?;
        left -= k as u64;
    }
    Ok(())
}

impl Wal {
    /// Opens (or creates) the log at `path`, zeroing a torn tail; refuses a damaged log (see the
    /// module comment).
    pub fn open(path: &Path) -> Result<Wal, WalError> {
        let io = |source| WalError::Io {
            path: path.display().to_string(),
            source,
        };
        Wal::open_io(path).map_err(io)?
    }

    fn open_io(path: &Path) -> io::Result<Result<Wal, WalError>> {
        let tmp = tmp_path(path);
        if tmp.exists() {
            std::fs::remove_file(&tmp)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        if data.iter().all(|b| *b == 0) {
            // New (or created by a crash just before its header was written): mark it.
            let header = file_header();
            file.write_all_at(&header, 0)?;
            file.sync_data()?;
            data.resize(data.len().max(FILE_HEADER), 0);
            data[..FILE_HEADER].copy_from_slice(&header);
        } else if data.get(..FILE_HEADER) != Some(&file_header()[..]) {
            let found = match data.get(..12) {
                Some(h) if h[..8] == MAGIC[..] => {
                    format!("format {}", u32::from_le_bytes([h[8], h[9], h[10], h[11]]))
                }
                _ => "no format header: format 1".into(),
            };
            return Ok(Err(WalError::Format {
                path: path.display().to_string(),
                found,
            }));
        }
        let Parsed {
            entries,
            valid,
            torn,
        } = match parse(&data) {
            Ok(p) => p,
            Err(d) => {
                return Ok(Err(WalError::Damaged {
                    path: path.display().to_string(),
                    offset: d.offset,
                    entries: d.entries,
                    reason: d.reason,
                }));
            }
        };
        if torn > 0 {
            tracing::warn!(
                "WAL {}: dropping a torn tail of {torn} bytes at byte {valid}, after {} entries \
                 (a write cut short by a crash; nothing in it was acted on)",
                path.display(),
                entries.len()
            );
            write_zeros(&mut file, valid as u64, torn as u64)?;
            file.sync_data()?;
        }
        let mut wal = Wal {
            path: path.to_path_buf(),
            file,
            len: valid as u64,
            cap: data.len() as u64,
            entries,
        };
        drop(data);
        wal.reserve(0)?;
        sync_dir(path)?;
        wal.assert_invariants();
        Ok(Ok(wal))
    }

    /// The bookkeeping matches the file's layout (checked in debug builds after every change):
    /// the entries follow the header and each other with no gap, end where the next write goes,
    /// and the file has room up to `cap`. A gap would make `prune` copy the wrong bytes.
    fn assert_invariants(&self) {
        let mut end = FILE_HEADER as u64;
        for e in &self.entries {
            debug_assert_eq!(e.pos, end, "WAL entries are contiguous");
            debug_assert!(e.len > 0, "a WAL entry holds a frame");
            end = e.pos + u64::from(e.len);
        }
        debug_assert_eq!(end, self.len, "the entries end where the next write goes");
        debug_assert!(
            self.len <= self.cap,
            "the file is at least as long as what it holds"
        );
    }

    /// Makes room for `extra` more bytes (and some free space after them).
    fn reserve(&mut self, extra: u64) -> io::Result<()> {
        if self.len + extra < self.cap {
            return Ok(());
        }
        let cap = capacity_for(self.len + extra);
        write_zeros(&mut self.file, self.cap, cap - self.cap)?;
        self.file.sync_all()?;
        self.cap = cap;
        Ok(())
    }

    /// Reads the frames of `entries` (consecutive in the file) back as one buffer.
    fn read_span(&self, entries: &[Entry]) -> io::Result<Vec<u8>> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let end = last.pos + u64::from(last.len);
        let mut buf = vec![0u8; (end - first.pos) as usize];
        self.file.read_exact_at(&mut buf, first.pos)?;
        Ok(buf)
    }

    /// Every entry in the log, oldest first, read back from the file.
    fn read_all(&self) -> io::Result<Vec<WalRecord>> {
        let Some(first) = self.entries.first() else {
            return Ok(Vec::new());
        };
        let buf = self.read_span(&self.entries)?;
        self.entries
            .iter()
            .map(|e| {
                frame_at(&buf, (e.pos - first.pos) as usize).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "WAL entry at byte {} changed on disk since it was written",
                            e.pos
                        ),
                    )
                })
            })
            .collect()
    }

    /// The persist records in the log, oldest first.
    pub fn records(&self) -> io::Result<Vec<PersistRecord>> {
        Ok(self
            .read_all()?
            .into_iter()
            .filter_map(|r| match r {
                WalRecord::Persist(r) => Some(r),
                WalRecord::Finalized(_) => None,
            })
            .collect())
    }

    /// The finalized blocks in the log, oldest first.
    pub fn finalized(&self) -> io::Result<Vec<StoredBlock>> {
        Ok(self
            .read_all()?
            .into_iter()
            .filter_map(|r| match r {
                WalRecord::Finalized(b) => Some(*b),
                WalRecord::Persist(_) => None,
            })
            .collect())
    }

    /// Where the entries end: the bytes of the file's header and entries.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Writes `records` with one write, followed by one `fdatasync` when `sync` (then they are
    /// durable, with every entry written before them, when this returns).
    pub fn append(&mut self, records: &[WalRecord], sync: bool) -> io::Result<()> {
        if records.is_empty() {
            return if sync { self.file.sync_data() } else { Ok(()) };
        }
        let mut buf = Vec::new();
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let start = buf.len();
            frame_into(r.kind(), &r.encode(), &mut buf)?;
            new.push((r.height(), start, buf.len()));
        }
        self.reserve(buf.len() as u64)?;
        let at = self.len;
        let result = self
            .file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&buf))
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = result {
            // Best effort: zero a partial write so that later entries stay readable.
            let _ = write_zeros(&mut self.file, at, buf.len() as u64);
            return Err(e);
        }
        for (height, a, b) in new {
            self.entries.push(Entry {
                height,
                pos: at + a as u64,
                len: (b - a) as u32,
            });
        }
        self.len += buf.len() as u64;
        self.assert_invariants();
        Ok(())
    }

    /// Drops the entries of heights up to `upto` by rewrite-and-rename (crash-safe, see the module
    /// comment). Does nothing if no entry would be dropped.
    pub fn prune(&mut self, upto: Height) -> io::Result<()> {
        if !self.entries.iter().any(|e| e.height <= upto) {
            return Ok(());
        }
        // Read back from the first kept entry to the end (the span is small: what was logged since
        // the last durable point), then copy out the kept frames in order.
        let Some(first_kept) = self.entries.iter().position(|e| e.height > upto) else {
            return self.replace_with(file_header().to_vec(), Vec::new());
        };
        let span = self.read_span(&self.entries[first_kept..])?;
        let base = self.entries[first_kept].pos;
        let mut buf = Vec::with_capacity(FILE_HEADER + span.len());
        buf.extend_from_slice(&file_header());
        let mut kept = Vec::new();
        for e in self.entries[first_kept..]
            .iter()
            .filter(|e| e.height > upto)
        {
            let at = (e.pos - base) as usize;
            kept.push(Entry {
                height: e.height,
                pos: buf.len() as u64,
                len: e.len,
            });
            buf.extend_from_slice(&span[at..at + e.len as usize]);
        }
        drop(span);
        self.replace_with(buf, kept)
    }

    /// Replaces the log by `buf` (the file header, then whole frames described by `kept`),
    /// crash-safely.
    fn replace_with(&mut self, buf: Vec<u8>, kept: Vec<Entry>) -> io::Result<()> {
        let tmp = tmp_path(&self.path);
        let used = buf.len();
        let cap = capacity_for(used as u64);
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            write_zeros(&mut f, used as u64, cap - used as u64)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            OpenOptions::new().read(true).write(true).open(&self.path)
        })();
        match result {
            Ok(file) => {
                self.file = file;
                self.len = used as u64;
                self.cap = cap;
                self.entries = kept;
                self.assert_invariants();
                Ok(())
            }
            Err(e) => {
                // The old file may or may not have been replaced; both hold every kept entry,
                // but our bookkeeping is now unsure, so reopen from disk.
                *self = Wal::open(&self.path).map_err(io::Error::other)?;
                Err(e)
            }
        }
    }
}
