//! The write-ahead log of persist records: one append-only file (`wal.log` in the data directory).
//!
//! Each record is framed as `[u32 LE length][u32 LE checksum][CBOR PersistRecord]`, where the
//! checksum is the first four bytes of BLAKE3 over the length and the payload. A group of records
//! is appended with one `write` and one `fdatasync`, so the driver pays one small sync per group of
//! consecutive `Persist` outputs.
//!
//! Reading stops at the first frame that is incomplete, longer than `codec::MAX_MESSAGE_BYTES`,
//! fails its checksum or does not decode: that is the tail of an append cut short by a crash (only
//! the last, unacknowledged group can be torn, since every earlier one was synced before anything
//! depending on it was performed). The file is truncated to the valid prefix before new appends.
//!
//! Pruning (`prune`) rewrites the records of heights above a bound into `wal.log.tmp`, syncs it,
//! renames it over `wal.log` and syncs the directory. A crash before the rename leaves the old file
//! whole (the leftover temporary is removed on open); after it the new file holds every record
//! that was kept. So a crash mid-rotation never loses a record of a height above the bound; when
//! that bound may be used is the store's rule (see `store.rs`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use timed_core::codec;
use timed_core::consensus::PersistRecord;
use timed_core::types::Height;

const HEADER: usize = 8;

fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    u32::from_le_bytes(d.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// Appends the frame of `payload` to `out`; refuses a payload above the record bound.
fn frame_into(payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if payload.len() > codec::MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "WAL record of {} bytes exceeds the bound of {} bytes",
                payload.len(),
                codec::MAX_MESSAGE_BYTES
            ),
        ));
    }
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Parses the valid prefix of `data`: the records with their heights and frames, and the length
/// of the prefix.
fn parse(data: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= HEADER {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
        let sum = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let n = len as usize;
        if n > codec::MAX_MESSAGE_BYTES || data.len() - pos - HEADER < n {
            break;
        }
        let payload = &data[pos + HEADER..pos + HEADER + n];
        if checksum(len, payload) != sum {
            break;
        }
        let Ok(record) = codec::decode::<PersistRecord>(payload, codec::MAX_MESSAGE_BYTES) else {
            break;
        };
        entries.push(Entry {
            height: record.height(),
            frame: data[pos..pos + HEADER + n].to_vec(),
        });
        pos += HEADER + n;
    }
    (entries, pos)
}

struct Entry {
    height: Height,
    frame: Vec<u8>,
}

pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
    /// The frames in the file, in order (what `prune` rewrites and `records` decodes).
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

impl Wal {
    /// Opens (or creates) the log at `path`, dropping a torn or corrupt tail.
    pub fn open(path: &Path) -> io::Result<Wal> {
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
        let (entries, valid) = parse(&data);
        if valid < data.len() {
            tracing::warn!(
                "WAL {}: dropping {} bytes of torn or corrupt tail after {} records",
                path.display(),
                data.len() - valid,
                entries.len()
            );
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        drop(file);
        let file = OpenOptions::new().append(true).open(path)?;
        sync_dir(path)?;
        Ok(Wal {
            path: path.to_path_buf(),
            file,
            len: valid as u64,
            entries,
        })
    }

    /// The records in the log, oldest first.
    pub fn records(&self) -> Vec<PersistRecord> {
        self.entries
            .iter()
            .map(|e| {
                codec::decode(&e.frame[HEADER..], codec::MAX_MESSAGE_BYTES)
                    .expect("validated when read or written")
            })
            .collect()
    }

    /// Size of the file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Makes `records` durable: one write, one `fdatasync`.
    pub fn append(&mut self, records: &[PersistRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let start = buf.len();
            frame_into(&codec::encode(r), &mut buf)?;
            new.push((r.height(), start, buf.len()));
        }
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // Best effort: cut a partial write off so that later appends stay readable.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        for (height, a, b) in new {
            self.entries.push(Entry {
                height,
                frame: buf[a..b].to_vec(),
            });
        }
        Ok(())
    }

    /// Drops the records of heights up to `upto` by rewrite-and-rename (crash-safe, see the module
    /// comment). Does nothing if no record would be dropped.
    pub fn prune(&mut self, upto: Height) -> io::Result<()> {
        if !self.entries.iter().any(|e| e.height <= upto) {
            return Ok(());
        }
        let kept: Vec<Entry> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|e| e.height > upto)
            .collect();
        let tmp = tmp_path(&self.path);
        let mut buf = Vec::with_capacity(kept.iter().map(|e| e.frame.len()).sum());
        for e in &kept {
            buf.extend_from_slice(&e.frame);
        }
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            OpenOptions::new().append(true).open(&self.path)
        })();
        match result {
            Ok(file) => {
                self.file = file;
                self.len = buf.len() as u64;
                self.entries = kept;
                Ok(())
            }
            Err(e) => {
                // The old file may or may not have been replaced; both hold every kept record,
                // but our bookkeeping is now unsure, so reopen from disk.
                *self = Wal::open(&self.path)?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::message::Message;

    fn rec(h: u64, n: u32) -> PersistRecord {
        PersistRecord::Signed {
            height: Height(h),
            msg: Message::SyncRequest {
                from: Height(h),
                max_blocks: n,
            },
        }
    }

    #[test]
    fn wal_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1), rec(1, 2)]).unwrap();
        w.append(&[rec(2, 3)]).unwrap();
        w.append(&[]).unwrap();
        drop(w);
        let mut w = Wal::open(&path).unwrap();
        assert_eq!(w.records(), vec![rec(1, 1), rec(1, 2), rec(2, 3)]);
        w.append(&[rec(3, 4)]).unwrap();
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records().len(), 4);
        assert_eq!(w.len_bytes(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn wal_torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1), rec(1, 2)]).unwrap();
        let good = w.len_bytes();
        w.append(&[rec(1, 3)]).unwrap();
        drop(w);
        // Cut the last frame at every possible point: the first two records always survive.
        let full = std::fs::read(&path).unwrap();
        for cut in good as usize..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut w = Wal::open(&path).unwrap();
            assert_eq!(w.records(), vec![rec(1, 1), rec(1, 2)], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
            // Appends after the truncation are readable.
            w.append(&[rec(2, 9)]).unwrap();
            drop(w);
            let w = Wal::open(&path).unwrap();
            assert_eq!(w.records().last(), Some(&rec(2, 9)));
        }
    }

    #[test]
    fn wal_corrupt_checksum_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1)]).unwrap();
        let first = w.len_bytes() as usize;
        w.append(&[rec(1, 2), rec(1, 3)]).unwrap();
        drop(w);
        let mut data = std::fs::read(&path).unwrap();
        // Flip a payload byte of the second record: it and everything after it are dropped.
        data[first + HEADER + 1] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records(), vec![rec(1, 1)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), first as u64);
    }

    #[test]
    fn wal_prune_keeps_records_above_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1), rec(2, 2)]).unwrap();
        w.append(&[rec(3, 3), rec(3, 4)]).unwrap();
        w.prune(Height(2)).unwrap();
        assert_eq!(w.records(), vec![rec(3, 3), rec(3, 4)]);
        w.append(&[rec(3, 5)]).unwrap();
        w.prune(Height(2)).unwrap(); // nothing to drop
        drop(w);
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records(), vec![rec(3, 3), rec(3, 4), rec(3, 5)]);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn wal_crash_mid_rotation_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1), rec(2, 2)]).unwrap();
        drop(w);
        // A crash after writing the temporary but before the rename: the old file is still whole.
        std::fs::write(tmp_path(&path), b"partial").unwrap();
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records(), vec![rec(1, 1), rec(2, 2)]);
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn wal_size_bound() {
        let mut out = Vec::new();
        assert!(frame_into(&vec![0u8; codec::MAX_MESSAGE_BYTES + 1], &mut out).is_err());
        assert!(out.is_empty());
        // A header claiming an oversized record is treated as a corrupt tail, without allocating.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut w = Wal::open(&path).unwrap();
        w.append(&[rec(1, 1)]).unwrap();
        let good = w.len_bytes();
        drop(w);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&(codec::MAX_MESSAGE_BYTES as u32 + 1).to_le_bytes());
        data.extend_from_slice(&[0u8; 4]);
        data.extend_from_slice(&[0u8; 64]);
        std::fs::write(&path, &data).unwrap();
        let w = Wal::open(&path).unwrap();
        assert_eq!(w.records(), vec![rec(1, 1)]);
        assert_eq!(w.len_bytes(), good);
    }
}
