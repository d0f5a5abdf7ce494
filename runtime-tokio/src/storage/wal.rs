//! The write-ahead log: one file (`wal.log` in the data directory) holding, in order,
//!
//! - the persist records of the core (what it signed, its lock), and
//! - the blocks this node finalized, with their outcome: redb commits blocks without syncing (see
//!   `store.rs`), so until a durable redb point covers a block the log carries it, and a restart
//!   puts it back into redb before the node resumes. Without them a crash would restore the node
//!   at the last *durable* block, below the heights of its newest signed records, and those would
//!   be ignored (`Node::restore` replays the records of the height it restores at only).
//!
//! The file begins with a 16-byte header, `TIMEDWAL`, the format (`WAL_FORMAT`, u32 LE) and four
//! zero bytes: a log of another format (an older `timed`'s) is refused before any entry is read.
//! Each entry is framed as `[u32 LE: length | kind << 31][u32 LE checksum][payload]` (the payload
//! in the encoding of `timed_core::codec`), where the checksum is the first four bytes of BLAKE3
//! over the first word and the payload; kind 0 is a `PersistRecord`, kind 1 a finalized block. A group of entries
//! is written with one `write` and, for persist records, one `fdatasync`; a finalized block is
//! written without a sync and becomes durable with the next group (the log is read in order, so it
//! is durable before any later record is).
//!
//! The file is preallocated with zeros in chunks of `CHUNK` bytes and entries overwrite the zeros:
//! an `fdatasync` then flushes data blocks only, without the journal commit that growing the file
//! costs (ext4), which also keeps it from waiting on other writers of the file system.
//!
//! Reading stops at the first header that is all zeros (the free space). A bad frame before that
//! is told apart from damage (`parse`):
//!
//! - a **torn tail**, what a write cut short by a crash leaves: the last frame is incomplete (it
//!   runs past the end of the file), or fails its checksum or claims more than `MAX_FRAME_BYTES`,
//!   and nothing but zeros follows its extent. Only the last, unacknowledged write can be torn
//!   (every earlier group was synced before anything depending on it was performed), so its bytes
//!   are dropped (zeroed before new writes) with a warning;
//! - anything else is **damage** and `open` refuses (`WalError::Damaged`, naming the file, the
//!   offset and what to do): a frame that fails its checksum with data after it (a flipped byte
//!   in a synced entry: dropping it and the entries after it would drop signed votes, and the node
//!   would sign different ones for the same slots), a frame whose checksum holds but does not
//!   decode (written whole, by another version or garbled in place), or non-zero bytes in the free
//!   space. One case of a real crash is refused too: after a power loss (not a process crash) the
//!   pages of the last unsynced write can reach the disk out of order, leaving a hole followed by
//!   data, which cannot be told from damage in a synced entry; the operator decides (see the
//!   message).
//!
//! Pruning (`prune`) rewrites the entries of heights above a bound into `wal.log.tmp`, syncs it,
//! renames it over `wal.log` and syncs the directory. A crash before the rename leaves the old file
//! whole (the leftover temporary is removed on open); after it the new file holds every entry
//! that was kept. So a crash mid-rotation never loses an entry of a height above the bound; when
//! that bound may be used is the store's rule (see `store.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use timed_core::codec;
use timed_core::consensus::PersistRecord;
use timed_core::types::Height;

use crate::storage::stored::StoredBlock;

const HEADER: usize = 8;

/// The format of this log's header, framing and entries. Format 1 had no file header (and CBOR
/// entries with Rust's field names).
pub const WAL_FORMAT: u32 = 2;
const MAGIC: &[u8; 8] = b"TIMEDWAL";
/// The file header's size: entries start here.
const FILE_HEADER: usize = 16;

fn file_header() -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&WAL_FORMAT.to_le_bytes());
    h
}

/// The file grows by this much at a time (zeros written and synced once).
pub const CHUNK: u64 = 2 * 1024 * 1024;

/// The largest entry: a block of the largest message with its certificate and outcome fits.
pub const MAX_FRAME_BYTES: usize = 4 * codec::MAX_MESSAGE_BYTES;

const KIND_BIT: u32 = 1 << 31;

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

/// An entry of the log.
// Built just before it is written: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// A record the core asked to make durable.
    Persist(PersistRecord),
    /// A block this node finalized (not yet durable in redb when it was written).
    Finalized(Box<StoredBlock>),
}

impl WalRecord {
    pub fn height(&self) -> Height {
        match self {
            WalRecord::Persist(r) => r.height(),
            WalRecord::Finalized(b) => b.block.height(),
        }
    }

    fn kind(&self) -> u32 {
        match self {
            WalRecord::Persist(_) => 0,
            WalRecord::Finalized(_) => 1,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            WalRecord::Persist(r) => codec::encode(r),
            WalRecord::Finalized(b) => codec::encode(b.as_ref()),
        }
    }

    fn decode(kind: u32, payload: &[u8]) -> Option<WalRecord> {
        match kind {
            0 => codec::decode(payload, MAX_FRAME_BYTES)
                .ok()
                .map(WalRecord::Persist),
            _ => codec::decode(payload, MAX_FRAME_BYTES)
                .ok()
                .map(|b| WalRecord::Finalized(Box::new(b))),
        }
    }
}

fn checksum(word: u32, payload: &[u8]) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(&word.to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    let b = d.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends the frame of `payload` (of `kind`) to `out`; refuses a payload above the bound.
fn frame_into(kind: u32, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "WAL entry of {} bytes exceeds the bound of {MAX_FRAME_BYTES} bytes",
                payload.len(),
            ),
        ));
    }
    let word = payload.len() as u32 | (kind << 31);
    out.extend_from_slice(&word.to_le_bytes());
    out.extend_from_slice(&checksum(word, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

fn word_at(data: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
}

/// What `parse` found wrong: a bad frame at `offset` that is not a torn tail.
#[derive(Debug, PartialEq, Eq)]
struct Damage {
    offset: u64,
    entries: usize,
    reason: String,
}

/// The result of reading a log: its entries, where they end, and how many bytes of a torn tail
/// follow them (to be zeroed).
struct Parsed {
    entries: Vec<Entry>,
    valid: usize,
    torn: usize,
}

/// The first non-zero byte of `data` at or after `from`, if any.
fn first_nonzero(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .position(|b| *b != 0)
        .map(|i| from + i)
}

fn damage(pos: usize, entries: &[Entry], reason: String) -> Damage {
    Damage {
        offset: pos as u64,
        entries: entries.len(),
        reason,
    }
}

/// A bad frame at `pos` whose extent ends at `end`: a torn tail if only zeros follow the extent
/// (its own bytes are then the torn ones), damage otherwise.
fn torn_or(
    data: &[u8],
    pos: usize,
    end: usize,
    entries: Vec<Entry>,
    what: &str,
) -> Result<Parsed, Damage> {
    match first_nonzero(data, end.min(data.len())) {
        None => Ok(Parsed {
            torn: data
                .iter()
                .rposition(|b| *b != 0)
                .map_or(0, |i| (i + 1).saturating_sub(pos)),
            entries,
            valid: pos,
        }),
        Some(at) => Err(damage(
            pos,
            &entries,
            format!("{what}, and data follows it (a non-zero byte at {at})"),
        )),
    }
}

/// Reads `data` frame by frame (see the module comment for the torn-tail rule).
fn parse(data: &[u8]) -> Result<Parsed, Damage> {
    let mut entries = Vec::new();
    let mut pos = FILE_HEADER;
    loop {
        let rest = data.len() - pos;
        if rest < HEADER {
            // The end of the file: nothing, or a header cut short.
            return torn_or(data, pos, data.len(), entries, "an incomplete header");
        }
        let word = word_at(data, pos);
        let sum = word_at(data, pos + 4);
        if word == 0 && sum == 0 {
            // The free space: zeros to the end of the file.
            return match first_nonzero(data, pos) {
                None => Ok(Parsed {
                    entries,
                    valid: pos,
                    torn: 0,
                }),
                Some(at) => Err(damage(
                    pos,
                    &entries,
                    format!(
                        "the entries end here, but the free space after them holds data (a non-zero byte at {at})"
                    ),
                )),
            };
        }
        let n = (word & !KIND_BIT) as usize;
        if n == 0 {
            return torn_or(
                data,
                pos,
                pos + HEADER,
                entries,
                "a header of an empty entry",
            );
        }
        if n > MAX_FRAME_BYTES {
            return torn_or(
                data,
                pos,
                pos + HEADER,
                entries,
                &format!("a header claiming {n} bytes, over the bound of {MAX_FRAME_BYTES}"),
            );
        }
        let end = pos + HEADER + n;
        if end > data.len() {
            // Runs past the end of the file: nothing follows it.
            return torn_or(data, pos, end, entries, "an incomplete entry");
        }
        let payload = &data[pos + HEADER..end];
        if checksum(word, payload) != sum {
            return torn_or(data, pos, end, entries, "an entry that fails its checksum");
        }
        let Some(record) = WalRecord::decode(word >> 31, payload) else {
            return Err(damage(
                pos,
                &entries,
                "an entry whose checksum holds but that does not decode (written by another \
                 version, or garbled in place)"
                    .into(),
            ));
        };
        entries.push(Entry {
            height: record.height(),
            pos: pos as u64,
            len: (HEADER + n) as u32,
        });
        pos = end;
    }
}

/// The entry whose frame starts at `pos` in `data`, if the frame is whole, within the bound, passes
/// its checksum and decodes.
fn frame_at(data: &[u8], pos: usize) -> Option<WalRecord> {
    if data.len().checked_sub(pos)? < HEADER {
        return None;
    }
    let word = word_at(data, pos);
    let sum = word_at(data, pos + 4);
    let n = (word & !KIND_BIT) as usize;
    if n == 0 || n > MAX_FRAME_BYTES || data.len() - pos - HEADER < n {
        return None;
    }
    let payload = &data[pos + HEADER..pos + HEADER + n];
    if checksum(word, payload) != sum {
        return None;
    }
    WalRecord::decode(word >> 31, payload)
}

/// Where an entry is in the file. Only this is kept in memory: a node with a slow block time takes
/// a durable point only every `DURABLE_EVERY_BLOCKS` blocks, and holding the frames themselves
/// until then made its resident memory grow by megabytes between two points.
struct Entry {
    height: Height,
    pos: u64,
    /// The whole frame, header included.
    len: u32,
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
        Ok(Ok(wal))
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

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::block::{Block, Certificate, Header};
    use timed_core::ledger::BlockOutcome;
    use timed_core::message::Message;
    use timed_core::types::{Amount, Hash, Round, TimestampMs, ValidatorIndex};

    fn rec(h: u64, n: u32) -> PersistRecord {
        PersistRecord::Signed {
            height: Height(h),
            msg: Message::SyncRequest {
                from: Height(h),
                max_blocks: n,
            },
        }
    }

    fn p(h: u64, n: u32) -> WalRecord {
        WalRecord::Persist(rec(h, n))
    }

    fn block(h: u64) -> StoredBlock {
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
                archived: Vec::new(),
                touched: Vec::new(),
            },
            finality_ms: crate::storage::stored::FinalityMs(Some(7)),
        }
    }

    fn f(h: u64) -> WalRecord {
        WalRecord::Finalized(Box::new(block(h)))
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn wal_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), p(1, 2)], true).unwrap();
        w.append(&[f(1)], false).unwrap();
        w.append(&[p(2, 3)], true).unwrap();
        w.append(&[], true).unwrap();
        drop(w);
        let mut w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(1, 1), rec(1, 2), rec(2, 3)]);
        assert_eq!(w.finalized().unwrap(), vec![block(1)]);
        w.append(&[p(3, 4)], true).unwrap();
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap().len(), 4);
    }

    #[test]
    fn wal_is_preallocated_and_appends_do_not_grow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        assert_eq!(file_len(&path), CHUNK);
        for i in 0..100 {
            w.append(&[p(1, i)], true).unwrap();
        }
        assert_eq!(file_len(&path), CHUNK);
        // An entry that does not fit grows the file by whole chunks, zeros after it.
        let mut big = block(2);
        big.block.header.chain_id = "x".repeat(CHUNK as usize);
        w.append(&[WalRecord::Finalized(Box::new(big.clone()))], true)
            .unwrap();
        assert!(w.len_bytes() > CHUNK);
        assert_eq!(file_len(&path), capacity_for(w.len_bytes()));
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap().len(), 100);
        assert_eq!(w.finalized().unwrap(), vec![big]);
    }

    #[test]
    fn wal_of_an_earlier_format_is_refused_before_any_entry_is_read() {
        // Format 1 wrote frames from the first byte, without a file header.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut raw = Vec::new();
        for r in [rec(1, 1), rec(2, 2)] {
            frame_into(0, &codec::encode(&r), &mut raw).unwrap();
        }
        std::fs::write(&path, &raw).unwrap();
        let text = Wal::open(&path).err().expect("refused").to_string();
        assert!(
            text.contains("is not of format 2 (no format header: format 1)"),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), raw, "nothing was changed");
        // A header of another format number.
        let mut other = file_header();
        other[8] = 3;
        std::fs::write(&path, [&other[..], &raw].concat()).unwrap();
        let text = Wal::open(&path).err().expect("refused").to_string();
        assert!(text.contains("(format 3)"), "{text}");
    }

    #[test]
    fn wal_torn_tail_is_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), p(1, 2)], true).unwrap();
        let good = w.len_bytes() as usize;
        w.append(&[f(1)], true).unwrap();
        let end = w.len_bytes() as usize;
        drop(w);
        // Cut the last frame at every possible point (the rest of the file is free space, as a
        // write cut short leaves it): the first two records always survive.
        let full = std::fs::read(&path).unwrap();
        for cut in good..end {
            let mut torn = full.clone();
            torn[cut..end].fill(0);
            std::fs::write(&path, &torn).unwrap();
            let mut w = Wal::open(&path).unwrap();
            assert_eq!(
                w.records().unwrap(),
                vec![rec(1, 1), rec(1, 2)],
                "cut at {cut}"
            );
            assert!(w.finalized().unwrap().is_empty(), "cut at {cut}");
            assert_eq!(w.len_bytes(), good as u64);
            // Appends after the cut are readable.
            w.append(&[p(2, 9)], true).unwrap();
            drop(w);
            let w = Wal::open(&path).unwrap();
            assert_eq!(w.records().unwrap().last(), Some(&rec(2, 9)));
        }
    }

    /// The offset `open` refused the log at, or a panic if it opened.
    fn refused_at(path: &Path) -> u64 {
        match Wal::open(path) {
            Err(WalError::Damaged { offset, .. }) => offset,
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a damaged log was opened"),
        }
    }

    #[test]
    fn wal_a_flipped_byte_in_a_middle_entry_is_refused_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1)], true).unwrap();
        let first = w.len_bytes() as usize;
        w.append(&[p(1, 2), p(1, 3)], true).unwrap();
        drop(w);
        let mut data = std::fs::read(&path).unwrap();
        // Flip a payload byte of the second of three records: the third, a signed record, follows.
        data[first + HEADER + 1] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(refused_at(&path), first as u64);
        let text = Wal::open(&path).err().unwrap().to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(&format!("damaged at byte {first}")), "{text}");
        assert!(text.contains("fails its checksum"), "{text}");
        assert!(
            text.contains("The 1 entries before it are intact"),
            "{text}"
        );
        // Nothing was zeroed: the operator still has every byte.
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn wal_a_file_cut_inside_its_last_entry_keeps_the_entries_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), p(1, 2)], true).unwrap();
        let good = w.len_bytes() as usize;
        w.append(&[p(1, 3)], true).unwrap();
        let end = w.len_bytes() as usize;
        drop(w);
        let full = std::fs::read(&path).unwrap();
        // The file itself ends inside the last entry (as a log without free space would).
        for cut in good + 1..end {
            std::fs::write(&path, &full[..cut]).unwrap();
            let w = Wal::open(&path).unwrap();
            assert_eq!(
                w.records().unwrap(),
                vec![rec(1, 1), rec(1, 2)],
                "cut at {cut}"
            );
            assert_eq!(w.len_bytes(), good as u64);
        }
    }

    #[test]
    fn wal_an_entry_whose_checksum_holds_but_does_not_decode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1)], true).unwrap();
        let good = w.len_bytes() as usize;
        drop(w);
        // Written whole, so not torn, even as the last entry.
        let mut data = std::fs::read(&path).unwrap();
        let mut frame = Vec::new();
        frame_into(0, b"\xff\xff not a record", &mut frame).unwrap();
        data[good..good + frame.len()].copy_from_slice(&frame);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(refused_at(&path), good as u64);
        assert!(
            Wal::open(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("does not decode")
        );
    }

    #[test]
    fn wal_data_in_the_free_space_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1)], true).unwrap();
        let good = w.len_bytes() as usize;
        drop(w);
        let mut data = std::fs::read(&path).unwrap();
        data[good + 4096] = 7;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(refused_at(&path), good as u64);
    }

    #[test]
    fn wal_prune_keeps_entries_above_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), f(1), p(2, 2)], true).unwrap();
        w.append(&[f(2), p(3, 3), p(3, 4)], true).unwrap();
        w.prune(Height(2)).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(3, 3), rec(3, 4)]);
        assert!(w.finalized().unwrap().is_empty());
        assert_eq!(file_len(&path), CHUNK);
        w.append(&[p(3, 5), f(3)], true).unwrap();
        w.prune(Height(2)).unwrap(); // nothing to drop
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(3, 3), rec(3, 4), rec(3, 5)]);
        assert_eq!(w.finalized().unwrap(), vec![block(3)]);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn wal_prune_keeps_entries_above_the_bound_wherever_they_are() {
        // The kept entries need not be a suffix of the file: a record of a lower height may follow
        // one of a higher height. Prune reads them back from the file and keeps their order.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), p(5, 2), f(2), p(6, 3), p(3, 4), f(7)], true)
            .unwrap();
        w.prune(Height(4)).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(5, 2), rec(6, 3)]);
        assert_eq!(w.finalized().unwrap(), vec![block(7)]);
        w.append(&[p(8, 5)], true).unwrap();
        w.prune(Height(6)).unwrap();
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(8, 5)]);
        assert_eq!(w.finalized().unwrap(), vec![block(7)]);
    }

    #[test]
    fn wal_prune_of_everything_leaves_an_empty_preallocated_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), f(1)], true).unwrap();
        w.prune(Height(1)).unwrap();
        assert_eq!(w.len_bytes(), FILE_HEADER as u64);
        assert_eq!(file_len(&path), CHUNK);
        w.append(&[p(2, 2)], true).unwrap();
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(2, 2)]);
    }

    #[test]
    fn wal_crash_mid_rotation_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1), p(2, 2)], true).unwrap();
        drop(w);
        // A crash after writing the temporary but before the rename: the old file is still whole.
        std::fs::write(tmp_path(&path), b"partial").unwrap();
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(1, 1), rec(2, 2)]);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn wal_size_bound() {
        let mut out = Vec::new();
        assert!(frame_into(0, &vec![0u8; MAX_FRAME_BYTES + 1], &mut out).is_err());
        assert!(out.is_empty());
        // A header claiming an oversized entry, followed by zeros only, is a torn tail (dropped
        // without allocating); followed by data, damage.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[p(1, 1)], true).unwrap();
        let good = w.len_bytes() as usize;
        drop(w);
        let mut data = std::fs::read(&path).unwrap();
        data[good..good + 4].copy_from_slice(&(MAX_FRAME_BYTES as u32 + 1).to_le_bytes());
        std::fs::write(&path, &data).unwrap();
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().unwrap(), vec![rec(1, 1)]);
        assert_eq!(w.len_bytes(), good as u64);
        drop(w);
        data[good + 8..good + 72].fill(0xAA);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(refused_at(&path), good as u64);
    }
}
