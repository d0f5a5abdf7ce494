//! Reading a log back at open (`parse`): its entries, and a bad frame told apart as a torn tail
//! (dropped) or damage (refused).
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

use super::format::*;

/// What `parse` found wrong: a bad frame at `offset` that is not a torn tail.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Damage {
    pub(super) offset: u64,
    pub(super) entries: usize,
    pub(super) reason: String,
}

/// The result of reading a log: its entries, where they end, and how many bytes of a torn tail
/// follow them (to be zeroed).
pub(super) struct Parsed {
    pub(super) entries: Vec<Entry>,
    pub(super) valid: usize,
    pub(super) torn: usize,
}

/// The first non-zero byte of `data` at or after `from`, if any.
pub(super) fn first_nonzero(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .position(|b| *b != 0)
        .map(|i| from + i)
}

pub(super) fn damage(pos: usize, entries: &[Entry], reason: String) -> Damage {
    Damage {
        offset: pos as u64,
        entries: entries.len(),
        reason,
    }
}

/// A bad frame at `pos` whose extent ends at `end`: a torn tail if only zeros follow the extent
/// (its own bytes are then the torn ones), damage otherwise.
pub(super) fn torn_or(
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
pub(super) fn parse(data: &[u8]) -> Result<Parsed, Damage> {
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
pub(super) fn frame_at(data: &[u8], pos: usize) -> Option<WalRecord> {
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
