//! The store's tests: format marks, damaged pages, blocks put back from the WAL, longer
//! certificates.

use super::*;
use timed_core::types::{Amount, ValidatorIndex};

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
    // Format 2 lacks the explorer's indexes, which a block can only be given as it is stored.
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(META).unwrap();
            meta.insert(FORMAT_KEY, &2u32.to_le_bytes()[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    let text = Store::open(&path).err().expect("refused").to_string();
    assert!(text.contains("is of format 2"), "{text}");
    assert!(
        text.contains(&format!("reads format {STORE_FORMAT} only")),
        "{text}"
    );
    let fresh = dir.path().join("new").join("timed.redb");
    std::fs::create_dir_all(fresh.parent().unwrap()).unwrap();
    Store::open(&fresh).unwrap().close().unwrap();
    Store::open(&fresh).unwrap().close().unwrap();
}

/// A genesis for `restore` (the staking parameters it reads).
fn test_genesis() -> timed_core::validators::Genesis {
    let (_, validators) = timed_core::validators::insecure_dev_validators(&[1]);
    timed_core::validators::Genesis {
        chain_id: "test".into(),
        genesis_time_ms: timed_core::types::TimestampMs(0),
        validators,
        balances: vec![],
        params: Default::default(),
    }
}

fn stored(h: u64) -> StoredBlock {
    let mut block = crate::storage::stored::test_block(h, Some(1));
    block.outcome.archived = vec![Hash([h as u8; 32])];
    block
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
    store.restore(&test_genesis()).map(|_| ())
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
    let restore = store.restore(&test_genesis()).unwrap();
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

/// Each stored block is found by its hash, and each transfer under both its sender and its
/// recipient, newest first, below the height asked and at most as many as asked.
#[test]
fn blocks_are_found_by_hash_and_transfers_by_address_newest_first() {
    use timed_core::crypto::Keypair;
    use timed_core::tx::Transfer;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("timed.redb")).unwrap();
    let alice = Keypair::from_seed([1; 32]);
    let bob = PublicKey([2; 32]);
    let carol = PublicKey([3; 32]);
    let with_transfers = |h: u64, to: &[PublicKey]| {
        let mut s = stored(h);
        s.block.txs = to
            .iter()
            .enumerate()
            .map(|(i, to)| {
                Transfer {
                    from: alice.public_key(),
                    to: *to,
                    amount: Amount(10 + i as u64),
                    fee: Amount(1),
                    nonce: h * 10 + i as u64,
                    op: Default::default(),
                }
                .sign(&alice, "test")
            })
            .collect();
        s
    };
    let (b1, b2, b3) = (
        with_transfers(1, &[bob]),
        with_transfers(2, &[carol, bob]),
        with_transfers(3, &[]),
    );
    store.commit_blocks([&b1, &b2, &b3], None).unwrap();
    for b in [&b1, &b2, &b3] {
        assert_eq!(
            store.block_height_by_hash(&b.block.hash()).unwrap(),
            Some(b.block.height())
        );
    }
    assert_eq!(store.block_height_by_hash(&Hash([7; 32])).unwrap(), None);

    let all = Height(u64::MAX);
    let hash = |b: &StoredBlock, i: usize| b.block.txs[i].hash();
    assert_eq!(
        store.transfers_of(&bob, all, 10).unwrap(),
        vec![(Height(2), 1, hash(&b2, 1)), (Height(1), 0, hash(&b1, 0))]
    );
    assert_eq!(
        store.transfers_of(&alice.public_key(), all, 2).unwrap(),
        vec![(Height(2), 1, hash(&b2, 1)), (Height(2), 0, hash(&b2, 0))]
    );
    assert_eq!(
        store
            .transfers_of(&alice.public_key(), Height(2), 10)
            .unwrap(),
        vec![(Height(1), 0, hash(&b1, 0))]
    );
    assert_eq!(store.transfers_of(&carol, Height(2), 10).unwrap(), vec![]);
}

/// Pruning (`--retain-blocks`) deletes the blocks below a height with everything indexed under
/// them (their hash, their transactions' heights, the transfers listed under each address),
/// never the last block, a batch at a time; the store then says which height it keeps from,
/// and a sync answer from a pruned height holds nothing rather than blocks from elsewhere.
#[test]
fn pruning_deletes_old_blocks_with_their_indexes_and_keeps_the_last_one() {
    use timed_core::crypto::Keypair;
    use timed_core::message::SyncPacker;
    use timed_core::tx::Transfer;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("timed.redb")).unwrap();
    let alice = Keypair::from_seed([1; 32]);
    let bob = PublicKey([2; 32]);
    let blocks: Vec<StoredBlock> = (1..=300)
        .map(|h| {
            let mut s = stored(h);
            s.block.txs = vec![
                Transfer {
                    from: alice.public_key(),
                    to: bob,
                    amount: Amount(10),
                    fee: Amount(1),
                    nonce: h,
                    op: Default::default(),
                }
                .sign(&alice, "test"),
            ];
            s
        })
        .collect();
    store.commit_blocks(&blocks, None).unwrap();
    assert_eq!(store.lowest_height().unwrap(), Height(1));

    let mut batches = 0;
    while store.prune_below(Height(200), 64).unwrap() > 0 {
        batches += 1;
    }
    assert_eq!(batches, 4, "199 blocks in batches of 64");
    assert_eq!(store.lowest_height().unwrap(), Height(200));
    assert!(store.block(Height(199)).unwrap().is_none());
    assert!(store.block(Height(1)).unwrap().is_none());
    assert!(store.block(Height(200)).unwrap().is_some());
    let (old, kept) = (&blocks[149], &blocks[249]);
    assert_eq!(store.block_height_by_hash(&old.block.hash()).unwrap(), None);
    assert_eq!(
        store.block_height_by_hash(&kept.block.hash()).unwrap(),
        Some(Height(250))
    );
    assert_eq!(store.tx_height(&Hash([150; 32])).unwrap(), None);
    assert_eq!(
        store.tx_height(&kept.outcome.archived[0]).unwrap(),
        Some(Height(250))
    );
    let listed = store.transfers_of(&bob, Height(u64::MAX), 1_000).unwrap();
    assert_eq!(listed.len(), 101, "heights 200 to 300 only");
    assert!(listed.iter().all(|(h, _, _)| *h >= Height(200)));
    let listed = store
        .transfers_of(&alice.public_key(), Height(u64::MAX), 1_000)
        .unwrap();
    assert_eq!(listed.len(), 101);

    let mut answer = SyncPacker::new(64, 1 << 20);
    store.sync_answer(Height(150), &mut answer).unwrap();
    assert!(
        answer.into_blocks().is_empty(),
        "no blocks for a pruned start"
    );
    let mut answer = SyncPacker::new(64, 1 << 20);
    store.sync_answer(Height(200), &mut answer).unwrap();
    assert_eq!(answer.into_blocks().len(), 64);

    // Asked to prune everything, it keeps the last block (the restore starts from it).
    while store.prune_below(Height(10_000), 1_000).unwrap() > 0 {}
    assert_eq!(store.lowest_height().unwrap(), Height(300));
    assert!(store.block(Height(300)).unwrap().is_some());
    assert_eq!(store.latest_height().unwrap(), Some(Height(300)));
    // And it keeps the mark across a restart.
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("timed.redb")).unwrap();
    assert_eq!(store.lowest_height().unwrap(), Height(300));
}

/// A state sync's import binds the store to its genesis, so the `bind_genesis` of the start that
/// follows leaves the synced accounts alone (it wrote the genesis balances over them: the node
/// then refused its own store); a store bound before, with no block, gives its genesis balances
/// way to the snapshot's; a store of another genesis is refused.
#[test]
fn an_imported_state_survives_the_genesis_binding_that_follows() {
    use timed_core::crypto::PublicKey;
    use timed_core::ledger::Ledger;
    use timed_core::validators::GenesisBalance;
    let funded = |accounts: &[(u8, u64)]| {
        let mut g = test_genesis();
        g.balances = accounts
            .iter()
            .map(|(k, a)| GenesisBalance {
                account: PublicKey([*k; 32]),
                amount: Amount(*a),
            })
            .collect();
        g
    };
    let genesis = funded(&[(0xa1, 100), (0xb2, 5)]);
    // The state the sync verified: `a1` spent down, `b2` gone, `c3` new.
    let synced = Ledger::from_genesis(&funded(&[(0xa1, 40), (0xc3, 9)]));
    let mut last = stored(7);
    last.block.header.state_root = synced.state_root();
    let accounts = |store: &Store| -> Vec<(PublicKey, u64)> {
        let restored = store.restore(&genesis).unwrap();
        assert_eq!(restored.last.unwrap().block.height(), Height(7));
        restored
            .ledger
            .expect("a ledger after block 7")
            .accounts()
            .map(|(k, a)| (*k, a.balance.0))
            .collect()
    };
    let expected = vec![(PublicKey([0xa1; 32]), 40), (PublicKey([0xc3; 32]), 9)];
    for bound_before in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("timed.redb")).unwrap();
        if bound_before {
            store.bind_genesis(&genesis).unwrap();
        }
        store.import(&genesis, &last, &synced).unwrap();
        store.bind_genesis(&genesis).unwrap();
        assert_eq!(accounts(&store), expected, "bound before: {bound_before}");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("timed.redb")).unwrap();
    store.bind_genesis(&funded(&[(0xd4, 1)])).unwrap();
    let refused = store.import(&genesis, &last, &synced).unwrap_err();
    assert!(
        matches!(refused, StoreError::WrongGenesis { .. }),
        "{refused}"
    );
}

/// Blocks committed together leave each account as the last of them left it: written once
/// with its last value, removed when the last block emptied it, untouched when none of them
/// touched it.
#[test]
fn a_batch_of_blocks_leaves_each_account_as_its_last_block_left_it() {
    use timed_core::ledger::Account;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("timed.redb")).unwrap();
    let (a, b, c) = (PublicKey([1; 32]), PublicKey([2; 32]), PublicKey([3; 32]));
    let funded = |balance: u64, nonce: u64| Account {
        balance: Amount(balance),
        nonce,
    };
    let mut first = stored(1);
    first.outcome.touched = vec![(a, funded(10, 0)), (b, funded(5, 0)), (c, funded(7, 0))];
    store.commit_blocks([&first], None).unwrap();

    let mut b2 = stored(2);
    b2.outcome.touched = vec![(a, funded(20, 1)), (b, Account::default())];
    let mut b3 = stored(3);
    b3.outcome.touched = vec![(a, funded(30, 2))];
    let mut b4 = stored(4);
    b4.outcome.touched = vec![(b, funded(1, 0))];
    let mut b5 = stored(5);
    b5.outcome.touched = vec![(b, Account::default())];
    store.commit_blocks([&b2, &b3, &b4, &b5], None).unwrap();

    assert_eq!(store.account(&a).unwrap(), funded(30, 2), "the last value");
    assert_eq!(
        store.account(&b).unwrap(),
        Account::default(),
        "emptied last"
    );
    assert_eq!(store.account(&c).unwrap(), funded(7, 0), "untouched");
    let read = store.db.begin_read().unwrap();
    let table = read.open_table(ACCOUNTS).unwrap();
    assert!(
        table.get(&b.0[..]).unwrap().is_none(),
        "an emptied account is removed, not kept empty"
    );
    for h in 2..=5 {
        assert!(store.block(Height(h)).unwrap().is_some(), "block {h}");
    }
}
