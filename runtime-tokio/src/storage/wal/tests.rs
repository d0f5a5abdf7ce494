//! The log's tests: round trips, preallocation, torn tails and damage, pruning.

use super::format::*;
use super::*;
use timed_core::codec;
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

fn p(h: u64, n: u32) -> WalRecord {
    WalRecord::Persist(rec(h, n))
}

fn block(h: u64) -> StoredBlock {
    crate::storage::stored::test_block(h, Some(7))
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
        text.contains(&format!(
            "is not of format {WAL_FORMAT} (no format header: format 1)"
        )),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), raw, "nothing was changed");
    // A header of another format number (the one before this).
    let mut other = file_header();
    other[8] = (WAL_FORMAT - 1) as u8;
    std::fs::write(&path, [&other[..], &raw].concat()).unwrap();
    let text = Wal::open(&path).err().expect("refused").to_string();
    let found = format!("(format {})", WAL_FORMAT - 1);
    assert!(text.contains(&found), "{text}");
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
