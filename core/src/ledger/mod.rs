//! Accounts, signed transfers applied to them, the block subsidy and its distribution, the state
//! root. INTERFACE STUB — being implemented (see issue 2); signatures are fixed.

pub mod mempool;
pub mod rewards;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::tx::SignedTransfer;
use crate::types::{Amount, Hash, Height, ValidatorIndex};
use crate::validators::{Genesis, ValidatorSet};

pub use rewards::{Reward, distribute, subsidy};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    /// Transfers sent so far; the next transfer must carry this nonce.
    pub nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("the signature does not verify for the sender's key on this chain")]
    BadSignature,
    #[error("nonce {got} is wrong: the sender's next nonce is {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("insufficient balance: needs {needed} (amount + fee), has {available}")]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("the amount is zero")]
    ZeroAmount,
    #[error("the sender and the receiver are the same account")]
    SelfTransfer,
    #[error("the amounts overflow 64 bits")]
    Overflow,
    #[error("the transaction is already pending")]
    Duplicate,
    #[error("the mempool is full and the fee is not higher than the lowest pending fee")]
    MempoolFull,
    #[error("nonce {got} is too far ahead of the sender's next nonce {expected}")]
    NonceTooFarAhead { expected: u64, got: u64 },
}

impl TxError {
    /// A stable label for metrics and HTTP answers.
    pub fn reason(&self) -> &'static str {
        match self {
            TxError::BadSignature => "bad_signature",
            TxError::BadNonce { .. } => "bad_nonce",
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::ZeroAmount => "zero_amount",
            TxError::SelfTransfer => "self_transfer",
            TxError::Overflow => "overflow",
            TxError::Duplicate => "duplicate",
            TxError::MempoolFull => "mempool_full",
            TxError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
        }
    }
}

/// What finalizing one block did to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockOutcome {
    pub height: Height,
    pub subsidy: Amount,
    pub fees: Amount,
    /// subsidy + fees, paid out exactly.
    pub total_reward: Amount,
    pub rewards: Vec<Reward>,
    /// Hashes of the transactions applied, in block order.
    pub archived: Vec<Hash>,
    /// Every account this block changed, with its new state, sorted by key.
    pub touched: Vec<(PublicKey, Account)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<PublicKey, Account>,
}

impl Ledger {
    pub fn from_genesis(_genesis: &Genesis) -> Ledger {
        unimplemented!()
    }
    pub fn from_accounts(_accounts: impl IntoIterator<Item = (PublicKey, Account)>) -> Ledger {
        unimplemented!()
    }
    pub fn account(&self, _key: &PublicKey) -> Account {
        unimplemented!()
    }
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }
    pub fn total_supply(&self) -> u128 {
        unimplemented!()
    }
    /// Checks a transfer against the current state: signature, nonce, balance, overflow.
    pub fn check_transfer(&self, _chain_id: &str, _tx: &SignedTransfer) -> Result<(), TxError> {
        unimplemented!()
    }
    /// Applies a block's transfers in order, then pays subsidy + fees. All or nothing: on error the
    /// ledger is unchanged.
    pub fn apply_block(
        &mut self,
        _chain_id: &str,
        _height: Height,
        _proposer: ValidatorIndex,
        _validators: &ValidatorSet,
        _txs: &[SignedTransfer],
    ) -> Result<BlockOutcome, TxError> {
        unimplemented!()
    }
    /// BLAKE3 commitment to every account.
    pub fn state_root(&self) -> Hash {
        unimplemented!()
    }
}
