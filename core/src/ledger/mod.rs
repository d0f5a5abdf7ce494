//! The ledger: accounts (balance and nonce, keyed by the owner's Ed25519 public key), the signed
//! transfers applied to them, the block reward, and the state root that commits to it all.
//!
//! Rules of a transfer (`check_transfer`, and each transfer of `apply_block` against the state left
//! by the ones before it in the block): the amount is nonzero, the sender is not the receiver, the
//! nonce is the sender's next one, the sender holds `amount + fee`, the receiver's balance does not
//! overflow, and the sender's signature verifies on this chain. The cheap rules are checked first,
//! so a malformed transfer costs no signature verification; a block's signatures are checked after
//! the cheap rules of all its transfers passed, as one batch (`tx::first_bad_signature`), and
//! `stage_block_trusting` skips those the caller verified before (its mempool's).
//!
//! A finalized block (`apply_block`) applies its transfers in order, then pays
//! `subsidy(h) + Σ fees` to the validators as `rewards` says. It is all or nothing: the changes are
//! staged on an overlay of the touched accounts only, and merged into the ledger if every step
//! succeeded; on error the ledger is bit-for-bit what it was. So money is created only by subsidies:
//! after a block the total supply has grown by exactly `subsidy(h)`. A node checking a candidate
//! block stages it instead (`stage_block_trusting`: the outcome, the ledger untouched;
//! `state_root_with`: the root it would give) and commits the one finalized (`commit`).
//!
//! Only accounts that differ from the empty account (zero balance, nonce 0) are stored, so two
//! ledgers with the same balances and nonces are equal and have the same state root.
//!
//! Submodules: `apply` (a block applied to the ledger, all or nothing), `rewards` (subsidy and
//! distribution), `mempool` (pending transfers), `tree` (the accounts' Merkle tree and the proof
//! of an account), `snapshot` (the ledger cut into chunks each verifiable alone).

mod apply;
pub mod mempool;
pub mod rewards;
pub mod snapshot;
#[cfg(test)]
mod testkit;
pub mod tree;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::staking::Staking;
use crate::tx::{MAX_ADDRESS_BYTES, MAX_NAME_BYTES, Op, SignedTransfer, Transfer};
use crate::types::{Amount, Hash};
use crate::validators::{Genesis, ValidatorSet};

pub use apply::{BlockOutcome, StagedState};
pub use rewards::{Reward, distribute, subsidy};
pub use tree::{AccountProof, ProofError};

use tree::AccountsTree;

/// The state of one key's account; the default (zero, nonce 0) is the state of every key never
/// credited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Base units held.
    pub balance: Amount,
    /// Transfers sent so far; the next transfer must carry this nonce.
    pub nonce: u64,
}

/// Why a transfer was refused, by the ledger (in a block) or the mempool (on admission).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The sender's signature fails on this chain (in a block: some transfer's does).
    #[error("the signature does not verify for the sender's key on this chain")]
    BadSignature,
    /// Not the sender's next nonce (the mempool: below it).
    #[error("nonce {got} is wrong: the sender's next nonce is {expected}")]
    BadNonce {
        /// The sender's next nonce.
        expected: u64,
        /// The transfer's.
        got: u64,
    },
    /// The sender's balance does not cover `amount + fee`.
    #[error("insufficient balance: needs {needed} (amount + fee), has {available}")]
    InsufficientBalance {
        /// `amount + fee`.
        needed: Amount,
        /// The sender's balance.
        available: Amount,
    },
    /// `amount` is 0.
    #[error("the amount is zero")]
    ZeroAmount,
    /// `from == to` in a payment.
    #[error("the sender and the receiver are the same account")]
    SelfTransfer,
    /// A `Register` whose name is empty or over `tx::MAX_NAME_BYTES`, or whose address is over
    /// `tx::MAX_ADDRESS_BYTES`.
    #[error(
        "a registration needs a name of 1 to {} bytes and an address of at most {} bytes",
        MAX_NAME_BYTES,
        MAX_ADDRESS_BYTES
    )]
    BadRegistration,
    /// A sum passes 64 bits: `amount + fee`, the receiver's balance, the sender's nonce, the
    /// block's fees or reward, or a validator's balance after its reward.
    #[error("the amounts overflow 64 bits")]
    Overflow,
    /// The block's evidence breaks a rule (`staking::EvidenceError`).
    #[error("the block's evidence is refused: {0}")]
    Evidence(crate::staking::EvidenceError),
    /// The mempool already holds it (same hash), or holds a transfer of the same sender and
    /// nonce with a fee at least as high.
    #[error("the transaction is already pending")]
    Duplicate,
    /// The mempool is full and the fee does not beat the lowest pending one.
    #[error("the mempool is full and the fee is not higher than the lowest pending fee")]
    MempoolFull,
    /// The nonce runs more than `mempool::MAX_NONCE_GAP` ahead of the sender's next.
    #[error("nonce {got} is too far ahead of the sender's next nonce {expected}")]
    NonceTooFarAhead {
        /// The sender's next nonce.
        expected: u64,
        /// The transfer's.
        got: u64,
    },
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
            TxError::BadRegistration => "bad_registration",
            TxError::Overflow => "overflow",
            TxError::Evidence(_) => "bad_evidence",
            TxError::Duplicate => "duplicate",
            TxError::MempoolFull => "mempool_full",
            TxError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
        }
    }
}

/// Every account's state after some block (or the genesis), and the staking state (registry,
/// bonds, unbonding queue, validator sets): what `state_root` commits to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Invariant: no stored account equals `Account::default()`.
    accounts: BTreeMap<PublicKey, Account>,
    /// The Merkle tree over `accounts` (`tree`), kept in step with them by every change.
    tree: AccountsTree,
    /// `None` for a ledger of accounts alone (`from_accounts`, tests): it then has no
    /// validators of its own, and staking operations in a block change nothing but the fee.
    staking: Option<Staking>,
}

/// Domain tag of the state root.
const STATE_ROOT_DOMAIN: &[u8] = b"timed/state";

impl Ledger {
    /// The state at height 0: the genesis balances credited, every nonce 0. The genesis is
    /// expected to be validated (`Genesis::validate`: no account twice, the sum fits 64 bits).
    pub fn from_genesis(genesis: &Genesis) -> Ledger {
        let set = genesis.validate().ok();
        debug_assert!(set.is_some(), "the genesis is validated first");
        Ledger::from_genesis_set(genesis, set.as_ref())
    }

    /// `from_genesis` with the set `genesis.validate()` gave (`None`: no staking state), for a
    /// caller that validated it already: a node at start, or the simulator's hundred.
    pub fn from_genesis_set(genesis: &Genesis, set: Option<&ValidatorSet>) -> Ledger {
        let mut accounts: BTreeMap<PublicKey, Account> = BTreeMap::new();
        for b in genesis.balances.iter().filter(|b| b.amount.0 > 0) {
            let account = accounts.entry(b.account).or_default();
            debug_assert!(account.balance.0 == 0, "validated: no account twice");
            account.balance = Amount(account.balance.0.saturating_add(b.amount.0));
        }
        let tree = AccountsTree::build(&accounts);
        let staking = set.map(|set| Staking::from_genesis(genesis, set));
        Ledger {
            accounts,
            tree,
            staking,
        }
    }

    /// A ledger restored from its accounts and its staking state (what a store keeps).
    pub fn from_parts(
        accounts: impl IntoIterator<Item = (PublicKey, Account)>,
        staking: Option<Staking>,
    ) -> Ledger {
        let mut ledger = Ledger::from_accounts(accounts);
        ledger.staking = staking;
        ledger
    }

    /// The staking state; `None` for a ledger of accounts alone.
    pub fn staking(&self) -> Option<&Staking> {
        self.staking.as_ref()
    }

    /// A ledger restored from its accounts (a snapshot). Empty accounts are dropped; if a key
    /// appears twice, the last entry wins.
    pub fn from_accounts(accounts: impl IntoIterator<Item = (PublicKey, Account)>) -> Ledger {
        let mut kept = BTreeMap::new();
        for (key, account) in accounts {
            if account == Account::default() {
                kept.remove(&key);
            } else {
                kept.insert(key, account);
            }
        }
        Ledger {
            tree: AccountsTree::build(&kept),
            accounts: kept,
            staking: None,
        }
    }

    /// The account of `key`; the empty account if it has never been credited.
    pub fn account(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Every non-empty account, in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    /// All the money there is: every balance, bond and unbonding amount. In `u128`: the
    /// subsidies can push it past `u64::MAX` in principle.
    pub fn total_supply(&self) -> u128 {
        let balances: u128 = self
            .accounts
            .values()
            .map(|a| u128::from(a.balance.0))
            .sum();
        balances + self.staking.as_ref().map_or(0, Staking::locked_total)
    }

    /// Checks a transfer against the current state: signature, nonce, balance, overflow.
    pub fn check_transfer(&self, chain_id: &str, tx: &SignedTransfer) -> Result<(), TxError> {
        let t = &tx.transfer;
        transfer_effect(t, self.account(&t.from), self.account(&t.to))?;
        verify(chain_id, tx)
    }

    /// The commitment to every account and the staking state:
    /// `BLAKE3("timed/state" ‖ accounts_root ‖ [Staking::root])`, where `accounts_root` is the
    /// root of the accounts' Merkle tree (`tree`; empty accounts are never stored, so they never
    /// count) and the staking root is there when the ledger has staking state. O(1): the tree is
    /// kept up to date by every commit.
    pub fn state_root(&self) -> Hash {
        state_root_of(self.tree.root(), self.staking.as_ref().map(Staking::root))
    }

    /// The proof of `key`'s account (or of its having none) against this ledger's
    /// `state_root`: its path in the accounts' tree and the staking root. Costs a walk of 16
    /// kept levels and the rehash of one bucket of accounts.
    pub fn prove(&self, key: &PublicKey) -> AccountProof {
        let (siblings, leaf) = self.tree.path(&self.accounts, key);
        AccountProof {
            siblings,
            leaf,
            staking_root: self.staking.as_ref().map(Staking::root),
        }
    }
}

/// The state root over an accounts' root and a staking root (`Ledger::state_root`).
pub(crate) fn state_root_of(accounts_root: Hash, staking: Option<Hash>) -> Hash {
    match staking {
        Some(staking) => Hash::of(&[STATE_ROOT_DOMAIN, &accounts_root.0, &staking.0]),
        None => Hash::of(&[STATE_ROOT_DOMAIN, &accounts_root.0]),
    }
}

/// The rules of a transfer that do not need its signature, applied to the sender's and the
/// receiver's accounts as they stand; returns their new states. Shared by the ledger and the
/// mempool's `select`, so what the mempool proposes is exactly what the ledger accepts.
pub(crate) fn transfer_effect(
    t: &Transfer,
    mut from: Account,
    mut to: Account,
) -> Result<(Account, Account), TxError> {
    shape_rules(t)?;
    if t.nonce != from.nonce {
        return Err(TxError::BadNonce {
            expected: from.nonce,
            got: t.nonce,
        });
    }
    let needed = needed_balance(t)?;
    from.balance = from
        .balance
        .checked_sub(needed)
        .ok_or(TxError::InsufficientBalance {
            needed,
            available: from.balance,
        })?;
    from.nonce = from.nonce.checked_add(1).ok_or(TxError::Overflow)?;
    if !t.op.is_staking() {
        to.balance = to.balance.checked_add(t.amount).ok_or(TxError::Overflow)?;
    }
    Ok((from, to))
}

/// The rules of a transfer's own fields, whatever the state: a nonzero amount, a sender that is
/// not the receiver of a payment (a staking operation names a validator key in `to`, which may
/// be the sender's own), and a registration's name and address within their bounds. Shared by
/// the ledger and the mempool's admission.
pub(crate) fn shape_rules(t: &Transfer) -> Result<(), TxError> {
    if t.amount.0 == 0 {
        return Err(TxError::ZeroAmount);
    }
    if t.from == t.to && !t.op.is_staking() {
        return Err(TxError::SelfTransfer);
    }
    if let Op::Register { name, address } = &t.op
        && (name.is_empty() || name.len() > MAX_NAME_BYTES || address.len() > MAX_ADDRESS_BYTES)
    {
        return Err(TxError::BadRegistration);
    }
    Ok(())
}

/// What the sender's balance must hold for `t`: `amount + fee`, or only the fee for an unbond
/// (its amount comes out of the bond).
pub(crate) fn needed_balance(t: &Transfer) -> Result<Amount, TxError> {
    match t.op {
        Op::Unbond => Ok(t.fee),
        _ => t.amount.checked_add(t.fee).ok_or(TxError::Overflow),
    }
}

fn verify(chain_id: &str, tx: &SignedTransfer) -> Result<(), TxError> {
    tx.verify_signature(chain_id)
        .map_err(|_| TxError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testkit::{CHAIN, acct, funded, key, pk, transfer};
    use crate::types::TimestampMs;
    use crate::validators::{ConsensusParams, GenesisBalance, GenesisValidator};

    #[test]
    fn genesis_balances_are_credited_and_unknown_accounts_are_empty() {
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: TimestampMs(0),
            validators: vec![GenesisValidator {
                name: "validator1".into(),
                public_key: pk("validator1"),
                stake: crate::types::Stake(1),
                address: None,
            }],
            balances: vec![
                GenesisBalance {
                    account: pk("alice"),
                    amount: Amount(500),
                },
                GenesisBalance {
                    account: pk("bob"),
                    amount: Amount(0),
                },
            ],
            params: ConsensusParams::default(),
        };
        genesis.validate().unwrap();
        let ledger = Ledger::from_genesis(&genesis);
        assert_eq!(ledger.account(&pk("alice")), acct(500, 0));
        assert_eq!(ledger.account(&pk("carol")), Account::default());
        assert_eq!(ledger.accounts().count(), 1, "a zero balance is not stored");
        assert_eq!(
            ledger.total_supply(),
            501,
            "the balances and the validator's bonded stake"
        );
    }

    #[test]
    fn restoring_from_accounts_drops_empty_ones_and_keeps_the_root() {
        let ledger = funded(&[("alice", 7), ("bob", 9)]);
        let mut snapshot: Vec<_> = ledger.accounts().map(|(k, a)| (*k, *a)).collect();
        snapshot.push((pk("carol"), Account::default()));
        snapshot.reverse();
        let restored = Ledger::from_accounts(snapshot);
        assert_eq!(restored, ledger);
        assert_eq!(restored.state_root(), ledger.state_root());
    }

    #[test]
    fn total_supply_does_not_overflow_64_bits() {
        let ledger = Ledger::from_accounts([
            (pk("alice"), acct(u64::MAX, 0)),
            (pk("bob"), acct(u64::MAX, 3)),
        ]);
        assert_eq!(ledger.total_supply(), 2 * u128::from(u64::MAX));
    }

    #[test]
    fn a_valid_transfer_passes_the_check_and_spending_exactly_the_balance_is_allowed() {
        let ledger = funded(&[("alice", 100)]);
        let tx = transfer(&key("alice"), pk("bob"), 90, 10, 0);
        assert_eq!(ledger.check_transfer(CHAIN, &tx), Ok(()));
    }

    #[test]
    fn a_forged_or_foreign_chain_signature_is_refused() {
        let ledger = funded(&[("alice", 100)]);
        let mut tx = transfer(&key("alice"), pk("bob"), 5, 1, 0);
        assert_eq!(
            ledger.check_transfer("other-chain", &tx),
            Err(TxError::BadSignature)
        );
        tx.signature.0[0] ^= 1;
        assert_eq!(
            ledger.check_transfer(CHAIN, &tx),
            Err(TxError::BadSignature)
        );
        // Signed by someone else than the sender.
        let mut stolen = transfer(&key("mallory"), pk("bob"), 5, 1, 0);
        stolen.transfer.from = pk("alice");
        assert_eq!(
            ledger.check_transfer(CHAIN, &stolen),
            Err(TxError::BadSignature)
        );
    }

    #[test]
    fn zero_amount_and_self_transfer_are_refused() {
        let ledger = funded(&[("alice", 100)]);
        let alice = key("alice");
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("bob"), 0, 1, 0)),
            Err(TxError::ZeroAmount)
        );
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("alice"), 5, 1, 0)),
            Err(TxError::SelfTransfer)
        );
    }

    #[test]
    fn only_the_next_nonce_is_accepted() {
        let ledger = Ledger::from_accounts([(pk("alice"), acct(100, 3))]);
        let alice = key("alice");
        for got in [0, 2, 4] {
            assert_eq!(
                ledger.check_transfer(CHAIN, &transfer(&alice, pk("bob"), 5, 1, got)),
                Err(TxError::BadNonce { expected: 3, got })
            );
        }
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("bob"), 5, 1, 3)),
            Ok(())
        );
    }

    #[test]
    fn amount_plus_fee_must_be_covered() {
        let ledger = funded(&[("alice", 100)]);
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&key("alice"), pk("bob"), 95, 6, 0)),
            Err(TxError::InsufficientBalance {
                needed: Amount(101),
                available: Amount(100)
            })
        );
    }

    #[test]
    fn overflowing_amount_plus_fee_or_receiver_balance_is_refused() {
        let ledger = Ledger::from_accounts([
            (pk("alice"), acct(u64::MAX, 0)),
            (pk("bob"), acct(u64::MAX - 4, 0)),
        ]);
        let alice = key("alice");
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("carol"), u64::MAX, 1, 0)),
            Err(TxError::Overflow)
        );
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("bob"), 5, 0, 0)),
            Err(TxError::Overflow)
        );
        assert_eq!(
            ledger.check_transfer(CHAIN, &transfer(&alice, pk("bob"), 4, 0, 0)),
            Ok(())
        );
    }

    #[test]
    fn the_state_root_commits_to_every_balance_and_nonce() {
        let ledger = funded(&[("alice", 10), ("bob", 20)]);
        let root = ledger.state_root();
        let richer = funded(&[("alice", 11), ("bob", 20)]);
        let later = Ledger::from_accounts([(pk("alice"), acct(10, 1)), (pk("bob"), acct(20, 0))]);
        let swapped = funded(&[("alice", 20), ("bob", 10)]);
        for other in [&richer, &later, &swapped] {
            assert_ne!(other.state_root(), root);
        }
        // Independent of the order the accounts were given in.
        assert_eq!(funded(&[("bob", 20), ("alice", 10)]).state_root(), root);
        assert_eq!(
            Ledger::default().state_root(),
            Hash::of(&[STATE_ROOT_DOMAIN, &[0; 32]]),
            "no account: the accounts' root is zero"
        );
    }
}
