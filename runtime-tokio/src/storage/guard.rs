//! The double-sign guard file: the last point (height, round, step) this validator signed and the
//! last lock it took (`timed_core::consensus::SignGuard`), kept
//! beside its key and apart from the chain data, so that a node whose records are lost (a wiped
//! or restored data directory, a deleted or damaged `wal.log`) still knows where it stopped and
//! signs nothing at or below it (`Restore::guard`, see `timed_core::consensus::SignPoint`).
//!
//! This module owns the file: where it is (`path_for_key`, `path_for_data_dir`), its format, its
//! durable update (`Guard::record`, called by the driver after the WAL group sync and before any
//! output of that group is performed), and the lock that keeps two processes on one machine from
//! running the same validator from the same guard file.
//!
//! Format: two slots of `SLOT_BYTES`, at offsets 0 and `SLOT_STRIDE` (separate disk sectors), each
//! `magic | public key | sequence | point | lock | BLAKE3 of the rest`. An update overwrites the slot not
//! holding the newest point, in place, with one `fdatasync` (no rename, no journal commit: the
//! file never changes size). A crash mid-write can tear only the slot being written, whose point
//! was not yet acted on (the message leaves after the sync); the other slot still holds the
//! previous point. So on open one bad slot beside a good one is that torn write (warned about);
//! two bad slots, a wrong size or another validator's key is damage, and the node refuses to start
//! (a guard silently taken as absent would let the node sign again where it already signed).
//!
//! The file is created (write a temporary, sync, rename, sync the directory) the first time the
//! node starts, holding no point: so it always exists while the node runs and can be locked.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use timed_core::consensus::{GuardLock, SignGuard, SignPoint, SignStep};
use timed_core::crypto::PublicKey;
use timed_core::types::{Hash, Height, Round};

const MAGIC: &[u8; 8] = b"TIMEDSG2";
const SLOT_BYTES: usize = 160;
/// Slot 1 starts a disk sector (and a page) after slot 0: a torn write of one leaves the other.
const SLOT_STRIDE: u64 = 4096;
const FILE_BYTES: u64 = SLOT_STRIDE + SLOT_BYTES as u64;
/// The part of a slot the checksum covers.
const BODY: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot read or write the double-sign guard file {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "the double-sign guard file {path} is damaged ({reason}). It holds the last point this \
         validator signed; without it the node could sign again where it already signed. If you \
         have a copy of it from before the damage, restore it; otherwise find the last height \
         this validator signed at (its logs, or a block explorer), move the file aside, and start \
         the node only after the chain is well past that height (it then watches the network for \
         its own key's signatures before signing)"
    )]
    Damaged { path: String, reason: String },
    #[error(
        "the double-sign guard file {path} belongs to validator key {found}, not to this node's \
         key {expected}: a guard file is kept beside its key file; use the right key, or move the \
         stale guard file aside if this key is new"
    )]
    OtherKey {
        path: String,
        found: String,
        expected: String,
    },
    #[error(
        "another timed process on this machine is running this validator (it holds the lock on \
         {path}); run one instance per validator key"
    )]
    InUse { path: String },
}

/// Where the guard of the key in `key_file` lives: beside it (`validator.key.last_signed`).
pub fn path_for_key(key_file: &Path) -> PathBuf {
    with_suffix(key_file)
}

/// Where the guard of a development validator (key derived from its id, no key file) lives:
/// beside its data directory (`data/validator1.last_signed`), so that wiping the data directory
/// leaves it.
pub fn path_for_data_dir(data_dir: &Path) -> PathBuf {
    with_suffix(data_dir)
}

fn with_suffix(path: &Path) -> PathBuf {
    // `.`, `data/..` and the like have no file name to suffix: resolve them first.
    let path = match path.file_name() {
        Some(_) => path.to_path_buf(),
        None => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let mut name = name.to_owned();
            name.push(".last_signed");
            parent.join(name)
        }
        // The root directory: inside it.
        _ => path.join("last_signed"),
    }
}

/// The last point signed, durable in the guard file.
pub struct Guard {
    path: PathBuf,
    /// Open and locked while the node runs.
    file: File,
    key: PublicKey,
    last: Option<SignGuard>,
    /// Sequence number of the newest slot: the next write goes to the other one.
    seq: u64,
}

/// One decoded slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    key: [u8; 32],
    seq: u64,
    point: Option<SignGuard>,
}

fn encode(slot: &Slot) -> [u8; SLOT_BYTES] {
    let mut b = [0u8; SLOT_BYTES];
    b[0..8].copy_from_slice(MAGIC);
    b[8..40].copy_from_slice(&slot.key);
    b[40..48].copy_from_slice(&slot.seq.to_le_bytes());
    if let Some(g) = slot.point {
        let p = g.last;
        b[48] = 1;
        b[49] = match p.step {
            SignStep::Proposal => 0,
            SignStep::Prepare => 1,
            SignStep::Precommit => 2,
        };
        b[52..56].copy_from_slice(&p.round.0.to_le_bytes());
        b[56..64].copy_from_slice(&p.height.0.to_le_bytes());
        if let Some(lock) = g.lock {
            b[64] = 1;
            b[68..72].copy_from_slice(&lock.round.0.to_le_bytes());
            b[72..80].copy_from_slice(&lock.height.0.to_le_bytes());
            b[80..112].copy_from_slice(&lock.block.0);
        }
    }
    let sum = blake3::hash(&b[..BODY]);
    b[BODY..].copy_from_slice(sum.as_bytes());
    b
}

/// A slot's bytes: `Ok(None)` for an empty (all-zero) slot, `Err` for a bad one.
fn decode(b: &[u8]) -> Result<Option<Slot>, String> {
    if b.iter().all(|x| *x == 0) {
        return Ok(None);
    }
    if blake3::hash(&b[..BODY]).as_bytes()[..] != b[BODY..] {
        return Err("checksum mismatch".into());
    }
    if &b[0..8] != MAGIC {
        return Err("not a guard slot (unknown format)".into());
    }
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut key = [0u8; 32];
    key.copy_from_slice(&b[8..40]);
    let point = match b[48] {
        0 => None,
        1 => {
            let step = match b[49] {
                0 => SignStep::Proposal,
                1 => SignStep::Prepare,
                2 => SignStep::Precommit,
                s => return Err(format!("unknown step {s}")),
            };
            let u32_at = |i: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(&b[i..i + 4]);
                u32::from_le_bytes(w)
            };
            let last = SignPoint {
                height: Height(u64_at(56)),
                round: Round(u32_at(52)),
                step,
            };
            let lock = match b[64] {
                0 => None,
                1 => {
                    let mut block = [0u8; 32];
                    block.copy_from_slice(&b[80..112]);
                    Some(GuardLock {
                        height: Height(u64_at(72)),
                        round: Round(u32_at(68)),
                        block: Hash(block),
                    })
                }
                f => return Err(format!("unknown lock flag {f}")),
            };
            Some(SignGuard { last, lock })
        }
        f => return Err(format!("unknown flag {f}")),
    };
    Ok(Some(Slot {
        key,
        seq: u64_at(40),
        point,
    }))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

impl Guard {
    /// Opens the guard at `path` for `key`, creating it (holding no point) if it does not exist;
    /// locks it. Also returns whether it existed before.
    pub fn open(path: &Path, key: PublicKey) -> Result<(Guard, bool), GuardError> {
        let shown = path.display().to_string();
        let io = |source| GuardError::Io {
            path: shown.clone(),
            source,
        };
        let existed = path.exists();
        if !existed {
            create(path, key).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(GuardError::InUse { path: shown });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let damaged = |reason: String| GuardError::Damaged {
            path: shown.clone(),
            reason,
        };
        let len = file.metadata().map_err(io)?.len();
        if len != FILE_BYTES {
            return Err(damaged(format!(
                "{len} bytes long, where a guard file is {FILE_BYTES}"
            )));
        }
        let mut slots = [[0u8; SLOT_BYTES]; 2];
        for (i, buf) in slots.iter_mut().enumerate() {
            file.read_exact_at(buf, i as u64 * SLOT_STRIDE)
                .map_err(io)?;
        }
        let [a, b] = [decode(&slots[0]), decode(&slots[1])];
        let newest = match (a, b) {
            (Ok(Some(a)), Ok(Some(b))) => {
                if a.seq >= b.seq {
                    a
                } else {
                    b
                }
            }
            (Ok(Some(s)), Ok(None)) | (Ok(None), Ok(Some(s))) => s,
            (Ok(Some(s)), Err(e)) | (Err(e), Ok(Some(s))) => {
                // The torn write of the slot being updated when a crash came (see the module
                // comment): its point was never acted on.
                tracing::warn!(
                    "double-sign guard {shown}: one slot is unreadable ({e}), as a crash during \
                     its update leaves it; using the other, which holds {}",
                    s.point
                        .map_or("no point".to_string(), |p| p.last.to_string())
                );
                s
            }
            (Ok(None), Ok(None)) => return Err(damaged("both slots are empty".into())),
            (Err(e), _) | (_, Err(e)) => {
                return Err(damaged(format!("neither slot is readable: {e}")));
            }
        };
        if newest.key != key.0 {
            return Err(GuardError::OtherKey {
                path: shown,
                found: hex::encode(newest.key),
                expected: hex::encode(key.0),
            });
        }
        Ok((
            Guard {
                path: path.to_path_buf(),
                file,
                key,
                last: newest.point,
                seq: newest.seq,
            },
            existed,
        ))
    }

    /// The last point signed and the last lock, as the file holds them.
    pub fn last(&self) -> Option<SignGuard> {
        self.last
    }

    /// Makes `point` durable (unless it is the one held, or its point is below the held one's)
    /// before this returns: one write of a slot and one `fdatasync`.
    pub fn record(&mut self, point: SignGuard) -> Result<(), GuardError> {
        if self
            .last
            .is_some_and(|held| point == held || point.last < held.last)
        {
            return Ok(());
        }
        let seq = self.seq + 1;
        let slot = encode(&Slot {
            key: self.key.0,
            seq,
            point: Some(point),
        });
        let at = (seq % 2) * SLOT_STRIDE;
        self.file
            .write_all_at(&slot, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| GuardError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        self.seq = seq;
        self.last = Some(point);
        Ok(())
    }
}

/// A new guard file holding no point, crash-safely: it exists whole or not at all.
fn create(path: &Path, key: PublicKey) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut data = vec![0u8; FILE_BYTES as usize];
    data[..SLOT_BYTES].copy_from_slice(&encode(&Slot {
        key: key.0,
        seq: 0,
        point: None,
    }));
    let mut f = File::create(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(h: u64, r: u32, step: SignStep) -> SignGuard {
        SignGuard {
            last: point_at(h, r, step),
            lock: None,
        }
    }

    fn point_at(h: u64, r: u32, step: SignStep) -> SignPoint {
        SignPoint {
            height: Height(h),
            round: Round(r),
            step,
        }
    }

    const KEY: PublicKey = PublicKey([7; 32]);

    #[test]
    fn guard_keeps_the_last_point_across_reopen_and_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.key.last_signed");
        let (mut g, existed) = Guard::open(&path, KEY).unwrap();
        assert!(!existed);
        assert_eq!(g.last(), None);
        g.record(point(5, 0, SignStep::Prepare)).unwrap();
        g.record(point(5, 0, SignStep::Precommit)).unwrap();
        g.record(point(5, 0, SignStep::Prepare)).unwrap(); // below: ignored
        drop(g);
        let (mut g, existed) = Guard::open(&path, KEY).unwrap();
        assert!(existed);
        assert_eq!(g.last(), Some(point(5, 0, SignStep::Precommit)));
        g.record(point(6, 1, SignStep::Proposal)).unwrap();
        drop(g);
        let (g, _) = Guard::open(&path, KEY).unwrap();
        assert_eq!(g.last(), Some(point(6, 1, SignStep::Proposal)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_BYTES);
    }

    #[test]
    fn guard_keeps_the_lock_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.key.last_signed");
        let (mut g, _) = Guard::open(&path, KEY).unwrap();
        let locked = SignGuard {
            last: point_at(9, 2, SignStep::Precommit),
            lock: Some(GuardLock {
                height: Height(9),
                round: Round(2),
                block: Hash([0xab; 32]),
            }),
        };
        g.record(locked).unwrap();
        drop(g);
        let (mut g, _) = Guard::open(&path, KEY).unwrap();
        assert_eq!(g.last(), Some(locked));
        // A later nil vote moves the point and keeps the lock.
        let later = SignGuard {
            last: point_at(9, 3, SignStep::Prepare),
            ..locked
        };
        g.record(later).unwrap();
        drop(g);
        let (g, _) = Guard::open(&path, KEY).unwrap();
        assert_eq!(g.last(), Some(later));
    }

    #[test]
    fn guard_a_torn_slot_falls_back_to_the_other_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let (mut g, _) = Guard::open(&path, KEY).unwrap();
        g.record(point(3, 0, SignStep::Prepare)).unwrap(); // slot 1
        g.record(point(3, 0, SignStep::Precommit)).unwrap(); // slot 0
        drop(g);
        // The update of slot 0 torn by a crash: the previous point stands.
        let mut data = std::fs::read(&path).unwrap();
        data[60] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let (mut g, _) = Guard::open(&path, KEY).unwrap();
        assert_eq!(g.last(), Some(point(3, 0, SignStep::Prepare)));
        // The next write goes to the torn slot, and both are good again.
        g.record(point(4, 0, SignStep::Prepare)).unwrap();
        drop(g);
        let data = std::fs::read(&path).unwrap();
        assert!(decode(&data[..SLOT_BYTES]).unwrap().is_some());
        let (g, _) = Guard::open(&path, KEY).unwrap();
        assert_eq!(g.last(), Some(point(4, 0, SignStep::Prepare)));
    }

    #[test]
    fn guard_damage_refuses_and_is_never_taken_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let (mut g, _) = Guard::open(&path, KEY).unwrap();
        g.record(point(3, 0, SignStep::Prepare)).unwrap();
        drop(g);
        let good = std::fs::read(&path).unwrap();
        // Both slots bad.
        let mut data = good.clone();
        data[10] ^= 1;
        data[SLOT_STRIDE as usize + 10] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let e = Guard::open(&path, KEY).err().unwrap();
        assert!(matches!(e, GuardError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()));
        // Cut short, or emptied.
        std::fs::write(&path, &good[..100]).unwrap();
        assert!(matches!(
            Guard::open(&path, KEY),
            Err(GuardError::Damaged { .. })
        ));
        std::fs::write(&path, vec![0u8; FILE_BYTES as usize]).unwrap();
        assert!(matches!(
            Guard::open(&path, KEY),
            Err(GuardError::Damaged { .. })
        ));
        // Another validator's guard.
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(
            Guard::open(&path, PublicKey([8; 32])),
            Err(GuardError::OtherKey { .. })
        ));
    }

    #[test]
    fn guard_is_locked_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let (g, _) = Guard::open(&path, KEY).unwrap();
        assert!(matches!(
            Guard::open(&path, KEY),
            Err(GuardError::InUse { .. })
        ));
        drop(g);
        assert!(Guard::open(&path, KEY).is_ok());
    }

    #[test]
    fn guard_paths_sit_beside_the_key_or_the_data_directory() {
        assert_eq!(
            path_for_key(Path::new("/etc/timed/validator.key")),
            PathBuf::from("/etc/timed/validator.key.last_signed")
        );
        assert_eq!(
            path_for_data_dir(Path::new("data/validator1")),
            PathBuf::from("data/validator1.last_signed")
        );
        assert_eq!(
            path_for_data_dir(Path::new("data/validator1/")),
            PathBuf::from("data/validator1.last_signed")
        );
    }
}
