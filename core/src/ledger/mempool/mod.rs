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
//! checking a block need not verify them again (`Ledger::stage_block_trusting`). A transfer's
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
        crate::ledger::shape_rules(t)?;
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
        let needed = crate::ledger::needed_balance(t)?;
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
                    // A staking operation on one's own key: `to` is the sender's old state.
                    if t.to != t.from {
                        overlay.insert(t.to, to);
                    }
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
mod tests;
