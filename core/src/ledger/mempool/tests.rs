//! The mempool's rules: admission, eviction, selection for a block, pruning.

use super::*;
use crate::crypto::Keypair;
use crate::ledger::testkit::{CHAIN, funded, key, pk, transfer, validator_set};
use crate::types::{Height, ValidatorIndex};
use proptest::prelude::*;

fn fees(txs: &[SignedTransfer]) -> Vec<u64> {
    txs.iter().map(|t| t.transfer.fee.0).collect()
}

#[test]
fn a_valid_transfer_is_admitted_once() {
    let ledger = funded(&[("alice", 100)]);
    let mut pool = Mempool::new(10);
    let tx = transfer(&key("alice"), pk("bob"), 10, 1, 0);
    let hash = pool.insert(CHAIN, tx.clone(), &ledger).unwrap();
    assert_eq!(hash, tx.hash());
    assert!(pool.contains(&hash));
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.insert(CHAIN, tx, &ledger), Err(TxError::Duplicate));
    assert_eq!(pool.len(), 1);
}

#[test]
fn holds_means_these_exact_bytes_signature_included() {
    let ledger = funded(&[("alice", 100)]);
    let mut pool = Mempool::new(10);
    let tx = transfer(&key("alice"), pk("bob"), 10, 1, 0);
    let hash = pool.insert(CHAIN, tx.clone(), &ledger).unwrap();
    assert!(pool.holds(&hash, &tx));
    // Same transfer, same hash (it does not cover the signature), other signature bytes.
    let mut tampered = tx.clone();
    tampered.signature.0[63] ^= 0x01;
    assert_eq!(tampered.hash(), hash);
    assert!(!pool.holds(&hash, &tampered));
    // A batch-verified transfer is held like any other; a forged one is refused by `insert`.
    let other = transfer(&key("alice"), pk("bob"), 10, 1, 1);
    let h = pool.insert_verified(other.clone(), &ledger).unwrap();
    assert!(pool.holds(&h, &other));
    let mut forged = transfer(&key("alice"), pk("bob"), 10, 1, 2);
    forged.signature.0[1] ^= 0x01;
    assert_eq!(
        pool.insert(CHAIN, forged, &ledger),
        Err(TxError::BadSignature)
    );
}

#[test]
fn admission_refuses_forged_zero_self_and_unaffordable_transfers() {
    let ledger = funded(&[("alice", 100)]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    let mut forged = transfer(&alice, pk("bob"), 10, 1, 0);
    forged.signature.0[0] ^= 1;
    assert_eq!(
        pool.insert(CHAIN, forged, &ledger),
        Err(TxError::BadSignature)
    );
    assert_eq!(
        pool.insert(
            "other-chain",
            transfer(&alice, pk("bob"), 10, 1, 0),
            &ledger
        ),
        Err(TxError::BadSignature)
    );
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 0, 1, 0), &ledger),
        Err(TxError::ZeroAmount)
    );
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("alice"), 1, 1, 0), &ledger),
        Err(TxError::SelfTransfer)
    );
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 100, 1, 0), &ledger),
        Err(TxError::InsufficientBalance {
            needed: Amount(101),
            available: Amount(100)
        })
    );
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), u64::MAX, 1, 0), &ledger),
        Err(TxError::Overflow)
    );
    assert!(pool.is_empty());
}

#[test]
fn nonces_may_run_at_most_64_ahead_and_never_behind() {
    let ledger = Ledger::from_accounts([(
        pk("alice"),
        Account {
            balance: Amount(100),
            nonce: 5,
        },
    )]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, 4), &ledger),
        Err(TxError::BadNonce {
            expected: 5,
            got: 4
        })
    );
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, 5 + 65), &ledger),
        Err(TxError::NonceTooFarAhead {
            expected: 5,
            got: 70
        })
    );
    assert!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, 5 + 64), &ledger)
            .is_ok()
    );
    assert!(
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, 5), &ledger)
            .is_ok()
    );
}

#[test]
fn a_higher_fee_replaces_the_pending_transfer_with_the_same_nonce() {
    let ledger = funded(&[("alice", 100)]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    let low = transfer(&alice, pk("bob"), 10, 2, 0);
    pool.insert(CHAIN, low.clone(), &ledger).unwrap();
    // Same fee, other content: not higher, refused.
    assert_eq!(
        pool.insert(CHAIN, transfer(&alice, pk("carol"), 10, 2, 0), &ledger),
        Err(TxError::Duplicate)
    );
    let high = transfer(&alice, pk("carol"), 10, 3, 0);
    pool.insert(CHAIN, high.clone(), &ledger).unwrap();
    assert_eq!(pool.len(), 1);
    assert!(!pool.contains(&low.hash()));
    assert!(pool.contains(&high.hash()));
    // And the lower one cannot come back.
    assert_eq!(pool.insert(CHAIN, low, &ledger), Err(TxError::Duplicate));
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_only_for_a_strictly_higher_one() {
    let ledger = funded(&[("alice", 100), ("bob", 100), ("carol", 100)]);
    let mut pool = Mempool::new(2);
    let a = transfer(&key("alice"), pk("dave"), 1, 5, 0);
    let b = transfer(&key("bob"), pk("dave"), 1, 7, 0);
    pool.insert(CHAIN, a.clone(), &ledger).unwrap();
    pool.insert(CHAIN, b.clone(), &ledger).unwrap();
    assert_eq!(
        pool.insert(CHAIN, transfer(&key("carol"), pk("dave"), 1, 5, 0), &ledger),
        Err(TxError::MempoolFull)
    );
    let c = transfer(&key("carol"), pk("dave"), 1, 6, 0);
    pool.insert(CHAIN, c.clone(), &ledger).unwrap();
    assert_eq!(pool.len(), 2);
    assert!(!pool.contains(&a.hash()));
    assert!(pool.contains(&b.hash()) && pool.contains(&c.hash()));
}

#[test]
fn among_equal_lowest_fees_the_greatest_hash_is_evicted() {
    let ledger = funded(&[("alice", 100), ("bob", 100), ("carol", 100)]);
    let mut pool = Mempool::new(2);
    let a = transfer(&key("alice"), pk("dave"), 1, 5, 0);
    let b = transfer(&key("bob"), pk("dave"), 1, 5, 0);
    pool.insert(CHAIN, a.clone(), &ledger).unwrap();
    pool.insert(CHAIN, b.clone(), &ledger).unwrap();
    pool.insert(CHAIN, transfer(&key("carol"), pk("dave"), 1, 6, 0), &ledger)
        .unwrap();
    let (kept, evicted) = if a.hash() < b.hash() { (a, b) } else { (b, a) };
    assert!(pool.contains(&kept.hash()));
    assert!(!pool.contains(&evicted.hash()));
}

#[test]
fn a_pool_of_capacity_zero_admits_nothing() {
    let ledger = funded(&[("alice", 100)]);
    let mut pool = Mempool::new(0);
    assert_eq!(
        pool.insert(CHAIN, transfer(&key("alice"), pk("bob"), 1, 99, 0), &ledger),
        Err(TxError::MempoolFull)
    );
}

#[test]
fn select_takes_the_highest_fees_first_keeping_each_senders_nonces_in_order() {
    let ledger = funded(&[("alice", 1_000), ("bob", 1_000)]);
    let (alice, bob) = (key("alice"), key("bob"));
    let mut pool = Mempool::new(10);
    // Alice's nonce 1 pays the most, but must wait for her nonce 0.
    for tx in [
        transfer(&alice, pk("carol"), 1, 1, 0),
        transfer(&alice, pk("carol"), 1, 9, 1),
        transfer(&bob, pk("carol"), 1, 5, 0),
        transfer(&bob, pk("carol"), 1, 4, 1),
    ] {
        pool.insert(CHAIN, tx, &ledger).unwrap();
    }
    assert_eq!(fees(&pool.select(&ledger, 10)), vec![5, 4, 1, 9]);
    assert_eq!(fees(&pool.select(&ledger, 2)), vec![5, 4]);
    assert!(pool.select(&ledger, 0).is_empty());
}

#[test]
fn select_stops_a_sender_at_a_nonce_gap() {
    let ledger = funded(&[("alice", 1_000)]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    for nonce in [0, 1, 3] {
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, nonce), &ledger)
            .unwrap();
    }
    let nonces: Vec<u64> = pool
        .select(&ledger, 10)
        .iter()
        .map(|t| t.transfer.nonce)
        .collect();
    assert_eq!(nonces, vec![0, 1]);
}

#[test]
fn select_stops_a_sender_whose_balance_runs_out() {
    let ledger = funded(&[("alice", 100)]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    for nonce in 0..3 {
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 40, 5, nonce), &ledger)
            .unwrap();
    }
    // 45 + 45 fit in 100; the third does not.
    assert_eq!(pool.select(&ledger, 10).len(), 2);
}

#[test]
fn select_lets_a_sender_spend_what_an_earlier_transfer_brought() {
    let ledger = funded(&[("alice", 100)]);
    let mut pool = Mempool::new(10);
    // Bob's (higher-fee) transfer is admitted once he has funds, then the ledger goes back to
    // before he had them: it becomes payable only after Alice's transfer to him.
    let rich = funded(&[("alice", 100), ("bob", 100)]);
    pool.insert(CHAIN, transfer(&key("bob"), pk("carol"), 50, 9, 0), &rich)
        .unwrap();
    pool.insert(CHAIN, transfer(&key("alice"), pk("bob"), 60, 1, 0), &ledger)
        .unwrap();
    assert_eq!(fees(&pool.select(&ledger, 10)), vec![1, 9]);
}

#[test]
fn select_does_not_depend_on_the_order_of_admission() {
    let ledger = funded(&[("alice", 1_000), ("bob", 1_000), ("carol", 1_000)]);
    let txs: Vec<SignedTransfer> = ["alice", "bob", "carol"]
        .iter()
        .flat_map(|n| {
            let k = key(n);
            (0..3).map(move |nonce| transfer(&k, pk("dave"), 1 + nonce, 3, nonce))
        })
        .collect();
    let mut forward = Mempool::new(20);
    let mut backward = Mempool::new(20);
    for tx in &txs {
        forward.insert(CHAIN, tx.clone(), &ledger).unwrap();
    }
    // Backward admission needs the ledger's nonces to allow the later ones first: they do,
    // nonces may run ahead.
    for tx in txs.iter().rev() {
        backward.insert(CHAIN, tx.clone(), &ledger).unwrap();
    }
    assert_eq!(forward.select(&ledger, 6), backward.select(&ledger, 6));
    assert_eq!(forward.select(&ledger, 6).len(), 6);
}

#[test]
fn prune_drops_what_a_finalized_block_applied() {
    let set = validator_set(&[1]);
    let mut ledger = funded(&[("alice", 1_000)]);
    let alice = key("alice");
    let mut pool = Mempool::new(10);
    for nonce in 0..4 {
        pool.insert(CHAIN, transfer(&alice, pk("bob"), 1, 1, nonce), &ledger)
            .unwrap();
    }
    let block = pool.select(&ledger, 2);
    ledger
        .apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &block, &[])
        .unwrap();
    pool.prune(&ledger);
    assert_eq!(pool.len(), 2);
    assert!(block.iter().all(|t| !pool.contains(&t.hash())));
    let rest: Vec<u64> = pool
        .select(&ledger, 10)
        .iter()
        .map(|t| t.transfer.nonce)
        .collect();
    assert_eq!(rest, vec![2, 3]);
}

// ---- properties ----

const SENDERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn selected_transfers_always_apply_cleanly(
        balances in proptest::collection::vec(0u64..12_000, SENDERS.len()),
        nonces in proptest::collection::vec(0u64..3, SENDERS.len()),
        txs in proptest::collection::vec(
            (0..SENDERS.len(), 1..SENDERS.len(), 1u64..2_000, 0u64..100, -1i64..4), 0..24),
        capacity in 1usize..20,
        max in prop_oneof![1 => Just(0usize), 9 => 1usize..16],
    ) {
        let keys: Vec<Keypair> = SENDERS.iter().map(|n| key(n)).collect();
        let mut ledger = Ledger::from_accounts(keys.iter().zip(balances.iter().zip(&nonces)).map(
            |(k, (b, n))| (k.public_key(), Account { balance: Amount(*b), nonce: *n }),
        ));
        let mut pool = Mempool::new(capacity);
        for (from, offset, amount, fee, nonce_skew) in txs {
            let to = keys[(from + offset) % keys.len()].public_key();
            // Mostly at or just ahead of the sender's next nonce, sometimes behind it.
            let nonce = nonces[from].saturating_add_signed(nonce_skew);
            let _ = pool.insert(CHAIN, transfer(&keys[from], to, amount, fee, nonce), &ledger);
            prop_assert!(pool.len() <= capacity);
        }
        let selected = pool.select(&ledger, max);
        prop_assert!(selected.len() <= max);
        let set = validator_set(&[1, 2]);
        let out = ledger.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &selected, &[]);
        prop_assert!(out.is_ok(), "{:?}", out);
        let archived = out.unwrap().archived;
        prop_assert_eq!(archived, selected.iter().map(SignedTransfer::hash).collect::<Vec<_>>());
        pool.prune(&ledger);
        prop_assert!(selected.iter().all(|t| !pool.contains(&t.hash())));
    }
}
