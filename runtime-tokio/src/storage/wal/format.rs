//! The log's format: the file header, the framing of an entry and the records it holds
//! (`WalRecord`), and where an entry sits in the file (`Entry`).
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

use std::io;

use timed_core::codec;
use timed_core::consensus::PersistRecord;
use timed_core::types::Height;

use crate::storage::stored::StoredBlock;

pub(super) const HEADER: usize = 8;

/// The format of this log's header, framing and entries. Format 1 had no file header (and CBOR
/// entries with Rust's field names); format 2 held wire-version-2 entries (transfers without
/// `op`); format 3 held wire-version-3 blocks (flat state roots).
pub const WAL_FORMAT: u32 = 4;
pub(super) const MAGIC: &[u8; 8] = b"TIMEDWAL";
/// The file header's size: entries start here.
pub(super) const FILE_HEADER: usize = 16;

pub(super) fn file_header() -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&WAL_FORMAT.to_le_bytes());
    h
}

/// The file grows by this much at a time (zeros written and synced once).
pub const CHUNK: u64 = 2 * 1024 * 1024;

/// The largest entry: a block of the largest message with its certificate and outcome fits.
pub const MAX_FRAME_BYTES: usize = 4 * codec::MAX_MESSAGE_BYTES;

pub(super) const KIND_BIT: u32 = 1 << 31;

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

    pub(super) fn kind(&self) -> u32 {
        match self {
            WalRecord::Persist(_) => 0,
            WalRecord::Finalized(_) => 1,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            WalRecord::Persist(r) => codec::encode(r),
            WalRecord::Finalized(b) => codec::encode(b.as_ref()),
        }
    }

    pub(super) fn decode(kind: u32, payload: &[u8]) -> Option<WalRecord> {
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

pub(super) fn checksum(word: u32, payload: &[u8]) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(&word.to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    let b = d.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends the frame of `payload` (of `kind`) to `out`; refuses a payload above the bound.
pub(super) fn frame_into(kind: u32, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
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

pub(super) fn word_at(data: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
}

/// Where an entry is in the file. Only this is kept in memory: a node with a slow block time takes
/// a durable point only every `DURABLE_EVERY_BLOCKS` blocks, and holding the frames themselves
/// until then made its resident memory grow by megabytes between two points.
pub(super) struct Entry {
    pub(super) height: Height,
    pub(super) pos: u64,
    /// The whole frame, header included.
    pub(super) len: u32,
}
