//! Pending transfers: bounded, deduplicated, ordered by fee.
//! INTERFACE STUB — being implemented (see issue 2); signatures are fixed.

use crate::ledger::{Ledger, TxError};
use crate::tx::SignedTransfer;
use crate::types::Hash;

#[derive(Clone, Debug)]
pub struct Mempool {}

impl Mempool {
    pub fn new(_capacity: usize) -> Mempool {
        unimplemented!()
    }
    pub fn len(&self) -> usize {
        unimplemented!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn contains(&self, _hash: &Hash) -> bool {
        unimplemented!()
    }
    /// Admits a transfer that is valid against `ledger` (its nonce may run ahead of the account's
    /// by a bounded gap). When full, a higher fee evicts the lowest.
    pub fn insert(
        &mut self,
        _chain_id: &str,
        _tx: SignedTransfer,
        _ledger: &Ledger,
    ) -> Result<Hash, TxError> {
        unimplemented!()
    }
    /// Up to `max` transfers that apply in sequence to `ledger`, highest fee first while each
    /// sender's nonces stay in order. Deterministic.
    pub fn select(&self, _ledger: &Ledger, _max: usize) -> Vec<SignedTransfer> {
        unimplemented!()
    }
    /// Drops what `ledger` has made stale (applied or with a nonce below the account's).
    pub fn prune(&mut self, _ledger: &Ledger) {
        unimplemented!()
    }
}
