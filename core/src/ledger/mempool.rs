//! Pending transfers: bounded, deduplicated, ordered by fee.
//!
//! The mempool owns the transfers a node has heard of and not yet seen finalized, and chooses which
//! of them the node proposes. It is deterministic: ordered maps and total-order keys (fee, then
//! hash), never a hash map, so two nodes holding the same transfers propose the same block.
//!
//! Admission (`insert`), cheapest checks first and the signature last:
//! - a transfer already pending (same hash) is a `Duplicate`;
//! - the amount is nonzero and the sender is not the receiver;
//! - its nonce is at least the sender's next nonce (`BadNonce` below it) and at most
//!   `MAX_NONCE_GAP` ahead (`NonceTooFarAhead`);
//! - the sender's balance in the ledger covers `amount + fee` (a cheap check against the current
//!   state only: `select` simulates the exact sequence);
//! - one transfer per (sender, nonce): a new one with a strictly higher fee **replaces** the pending
//!   one (fee bumping), otherwise it is a `Duplicate`;
//! - when full, a strictly higher fee evicts the lowest-fee transfer (among equal fees, the one
//!   with the greatest hash); otherwise `MempoolFull`;
//! - the sender's signature verifies on the chain (`insert`), or was verified by the caller, as
//!   part of a batch (`insert_verified`).
//!
//! The mempool is also the node's record of which transfers' signatures it has verified: `holds`
//! says whether these exact bytes, signature included, are pending here, so that building or
//! checking a block need not verify them again (`Ledger::apply_block_trusting`). A transfer's
//! hash does not cover its signature, so `holds` compares the whole transfer, not the hash.
//!
//! An eviction or a replacement may leave a gap in a sender's nonces; the transfers after the gap
//! stay pending (the sender can fill it) but are not selected until it is filled.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::crypto::PublicKey;
use crate::ledger::{Account, Ledger, TxError, transfer_effect};
use crate::tx::SignedTransfer;
use crate::types::{Amount, Hash};

/// How far a pending transfer's nonce may run ahead of its sender's next nonce.
pub const MAX_NONCE_GAP: u64 = 64;

/// The pending transfers (see the module documentation for its rules).
#[derive(Clone, Debug)]
pub struct Mempool {
    capacity: usize,
    /// Every pending transfer, by hash. Boxed: a B-tree insertion shifts its neighbours, and a
    /// transfer is 152 bytes.
    by_hash: BTreeMap<Hash, Box<SignedTransfer>>,
    /// Sender → nonce → hash: one transfer per (sender, nonce).
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, Hash>>,
    /// (fee, hash) of every pending transfer: the first entries are the next to be evicted.
    by_fee: BTreeSet<(Amount, Reverse<Hash>)>,
}

impl Mempool {
    /// An empty mempool holding at most `capacity` transfers (`NodeConfig::mempool_capacity`).
    pub fn new(capacity: usize) -> Mempool {
        Mempool {
            capacity,
            by_hash: BTreeMap::new(),
            by_sender: BTreeMap::new(),
            by_fee: BTreeSet::new(),
        }
    }
    /// Transfers pending.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether a transfer with this hash is pending (whatever its signature bytes).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }
    /// The pending transfer with this hash.
    pub fn get(&self, hash: &Hash) -> Option<&SignedTransfer> {
        self.by_hash.get(hash).map(|tx| &**tx)
    }
    /// True when the transfer pending under `hash` is exactly `tx`, signature included: its
    /// signature was verified when it was admitted.
    pub fn holds(&self, hash: &Hash, tx: &SignedTransfer) -> bool {
        self.by_hash.get(hash).is_some_and(|held| **held == *tx)
    }

    /// Admits a transfer that is valid against `ledger` (its nonce may run ahead of the account's
    /// by a bounded gap). When full, a higher fee evicts the lowest.
    pub fn insert(
        &mut self,
        chain_id: &str,
        tx: SignedTransfer,
        ledger: &Ledger,
    ) -> Result<Hash, TxError> {
        self.admit(tx, ledger, |tx| tx.verify_signature(chain_id).is_ok())
    }

    /// As `insert`, for a transfer whose signature the caller has verified on this node's chain
    /// (`tx::verify_signatures`: a runtime checks a batch off the core's thread).
    pub fn insert_verified(
        &mut self,
        tx: SignedTransfer,
        ledger: &Ledger,
    ) -> Result<Hash, TxError> {
        self.admit(tx, ledger, |_| true)
    }

    fn admit(
        &mut self,
        tx: SignedTransfer,
        ledger: &Ledger,
        signature_ok: impl FnOnce(&SignedTransfer) -> bool,
    ) -> Result<Hash, TxError> {
        let hash = tx.hash();
        if self.contains(&hash) {
            return Err(TxError::Duplicate);
        }
        let t = &tx.transfer;
        if t.amount.0 == 0 {
            return Err(TxError::ZeroAmount);
        }
        if t.from == t.to {
            return Err(TxError::SelfTransfer);
        }
        let sender = ledger.account(&t.from);
        if t.nonce < sender.nonce {
            return Err(TxError::BadNonce {
                expected: sender.nonce,
                got: t.nonce,
            });
        }
        if t.nonce - sender.nonce > MAX_NONCE_GAP {
            return Err(TxError::NonceTooFarAhead {
                expected: sender.nonce,
                got: t.nonce,
            });
        }
        let needed = t.amount.checked_add(t.fee).ok_or(TxError::Overflow)?;
        if needed > sender.balance {
            return Err(TxError::InsufficientBalance {
                needed,
                available: sender.balance,
            });
        }
        let replaced = self.pending_hash(&t.from, t.nonce);
        let evicted = match replaced {
            Some(old) => {
                if self.by_hash[&old].transfer.fee >= t.fee {
                    return Err(TxError::Duplicate);
                }
                None
            }
            None if self.len() >= self.capacity => match self.by_fee.first() {
                Some(&(lowest, Reverse(victim))) if t.fee > lowest => Some(victim),
                _ => return Err(TxError::MempoolFull),
            },
            None => None,
        };
        if !signature_ok(&tx) {
            return Err(TxError::BadSignature);
        }
        for old in replaced.into_iter().chain(evicted) {
            self.remove(&old);
        }
        self.add(hash, tx);
        debug_assert!(self.len() <= self.capacity);
        Ok(hash)
    }

    /// Up to `max` transfers that apply in sequence to `ledger`, highest fee first while each
    /// sender's nonces stay in order. Deterministic.
    ///
    /// Greedy over a heap of each sender's next applicable transfer, keyed by (fee, then the
    /// smaller hash): the best is applied to a small overlay of balances and nonces with the
    /// ledger's own rules (signatures were checked at admission), and the sender's following nonce
    /// becomes its candidate. A sender that cannot pay yet waits, and becomes a candidate again when
    /// a selected transfer credits it. A transfer that fails for another reason ends its sender's
    /// sequence, as does one that would make the block's fees overflow 64 bits.
    ///
    /// The one failure of `Ledger::apply_block` this cannot foresee is paying the reward (it knows
    /// neither the height nor the validators): `subsidy + fees` or a validator's balance
    /// overflowing 64 bits, which needs a total supply near 2^64 units.
    ///
    /// Cost: O(n log n) for n pending transfers.
    pub fn select(&self, ledger: &Ledger, max: usize) -> Vec<SignedTransfer> {
        let mut overlay: BTreeMap<PublicKey, Account> = BTreeMap::new();
        let account = |overlay: &BTreeMap<PublicKey, Account>, key: &PublicKey| {
            overlay
                .get(key)
                .copied()
                .unwrap_or_else(|| ledger.account(key))
        };
        let mut heap: BinaryHeap<(Amount, Reverse<Hash>)> = BinaryHeap::new();
        let mut waiting: BTreeMap<PublicKey, Hash> = BTreeMap::new();
        for (sender, nonces) in &self.by_sender {
            if let Some(hash) = nonces.get(&ledger.account(sender).nonce) {
                heap.push(self.key(hash));
            }
        }
        let mut selected = Vec::new();
        let mut fees = Amount(0);
        while selected.len() < max {
            let Some((_, Reverse(hash))) = heap.pop() else {
                break;
            };
            let tx = &self.by_hash[&hash];
            let t = &tx.transfer;
            let from = account(&overlay, &t.from);
            let effect = transfer_effect(t, from, account(&overlay, &t.to))
                .and_then(|e| Ok((e, fees.checked_add(t.fee).ok_or(TxError::Overflow)?)));
            match effect {
                Ok(((from, to), new_fees)) => {
                    overlay.insert(t.from, from);
                    overlay.insert(t.to, to);
                    fees = new_fees;
                    selected.push(SignedTransfer::clone(tx));
                    if let Some(next) = self.pending_hash(&t.from, from.nonce) {
                        heap.push(self.key(&next));
                    }
                    if let Some(woken) = waiting.remove(&t.to) {
                        heap.push(self.key(&woken));
                    }
                }
                Err(TxError::InsufficientBalance { .. }) => {
                    waiting.insert(t.from, hash);
                }
                Err(_) => {}
            }
        }
        selected
    }

    /// Drops what `ledger` has made stale (applied or with a nonce below the account's).
    pub fn prune(&mut self, ledger: &Ledger) {
        let mut stale = Vec::new();
        for (sender, nonces) in &self.by_sender {
            let next = ledger.account(sender).nonce;
            stale.extend(nonces.range(..next).map(|(_, hash)| *hash));
        }
        for hash in &stale {
            self.remove(hash);
        }
    }

    fn pending_hash(&self, sender: &PublicKey, nonce: u64) -> Option<Hash> {
        self.by_sender.get(sender)?.get(&nonce).copied()
    }

    /// The heap key of a pending transfer: higher fee first, then the smaller hash.
    fn key(&self, hash: &Hash) -> (Amount, Reverse<Hash>) {
        (self.by_hash[hash].transfer.fee, Reverse(*hash))
    }

    fn add(&mut self, hash: Hash, tx: SignedTransfer) {
        let t = &tx.transfer;
        self.by_sender
            .entry(t.from)
            .or_default()
            .insert(t.nonce, hash);
        self.by_fee.insert((t.fee, Reverse(hash)));
        self.by_hash.insert(hash, Box::new(tx));
    }

    fn remove(&mut self, hash: &Hash) {
        let Some(tx) = self.by_hash.remove(hash) else {
            return;
        };
        let t = &tx.transfer;
        self.by_fee.remove(&(t.fee, Reverse(*hash)));
        if let Some(nonces) = self.by_sender.get_mut(&t.from) {
            nonces.remove(&t.nonce);
            if nonces.is_empty() {
                self.by_sender.remove(&t.from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
            .apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &block)
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
            let out = ledger.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &selected);
            prop_assert!(out.is_ok(), "{:?}", out);
            let archived = out.unwrap().archived;
            prop_assert_eq!(archived, selected.iter().map(SignedTransfer::hash).collect::<Vec<_>>());
            pool.prune(&ledger);
            prop_assert!(selected.iter().all(|t| !pool.contains(&t.hash())));
        }
    }
}
