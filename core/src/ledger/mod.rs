//! The ledger: accounts (balance and nonce, keyed by the owner's Ed25519 public key), the signed
//! transfers applied to them, the block reward, and the state root that commits to it all.
//!
//! Rules of a transfer (`check_transfer`, and each transfer of `apply_block` against the state left
//! by the ones before it in the block): the amount is nonzero, the sender is not the receiver, the
//! nonce is the sender's next one, the sender holds `amount + fee`, the receiver's balance does not
//! overflow, and the sender's signature verifies on this chain. The cheap rules are checked first,
//! so a malformed transfer costs no signature verification; a block's signatures are checked after
//! the cheap rules of all its transfers passed, as one batch (`tx::first_bad_signature`), and
//! `apply_block_trusting` skips those the caller verified before (its mempool's).
//!
//! A finalized block (`apply_block`) applies its transfers in order, then pays
//! `subsidy(h) + Σ fees` to the validators as `rewards` says. It is all or nothing: the changes are
//! staged on an overlay of the touched accounts only, and merged into the ledger if every step
//! succeeded; on error the ledger is bit-for-bit what it was. So money is created only by subsidies:
//! after a block the total supply has grown by exactly `subsidy(h)`.
//!
//! Only accounts that differ from the empty account (zero balance, nonce 0) are stored, so two
//! ledgers with the same balances and nonces are equal and have the same state root.
//!
//! Submodules: `rewards` (subsidy and distribution), `mempool` (pending transfers).

pub mod mempool;
pub mod rewards;
#[cfg(test)]
mod testkit;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::tx::{SignedTransfer, Transfer};
use crate::types::{Amount, Hash, Height, ValidatorIndex};
use crate::validators::{Genesis, ValidatorSet};

pub use rewards::{Reward, distribute, subsidy};

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
    /// `from == to`.
    #[error("the sender and the receiver are the same account")]
    SelfTransfer,
    /// A sum passes 64 bits: `amount + fee`, the receiver's balance, the sender's nonce, the
    /// block's fees or reward, or a validator's balance after its reward.
    #[error("the amounts overflow 64 bits")]
    Overflow,
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
    /// The block's height.
    pub height: Height,
    /// Base units minted: `subsidy(height)`.
    pub subsidy: Amount,
    /// The sum of the block's transfer fees, in base units.
    pub fees: Amount,
    /// subsidy + fees, paid out exactly.
    pub total_reward: Amount,
    /// One entry per validator, in index order, summing to `total_reward` (`distribute`).
    pub rewards: Vec<Reward>,
    /// Hashes of the transactions applied, in block order.
    pub archived: Vec<Hash>,
    /// Every account this block changed, with its new state, sorted by key.
    pub touched: Vec<(PublicKey, Account)>,
}

/// Every account's state after some block (or the genesis): what `state_root` commits to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Invariant: no stored account equals `Account::default()`.
    accounts: BTreeMap<PublicKey, Account>,
}

/// Domain tag of the state root.
const STATE_ROOT_DOMAIN: &[u8] = b"timed/state";

impl Ledger {
    /// The state at height 0: the genesis balances credited, every nonce 0. The genesis is
    /// expected to be validated (`Genesis::validate`: no account twice, the sum fits 64 bits).
    pub fn from_genesis(genesis: &Genesis) -> Ledger {
        let mut accounts: BTreeMap<PublicKey, Account> = BTreeMap::new();
        for b in genesis.balances.iter().filter(|b| b.amount.0 > 0) {
            let account = accounts.entry(b.account).or_default();
            debug_assert!(account.balance.0 == 0, "validated: no account twice");
            account.balance = Amount(account.balance.0.saturating_add(b.amount.0));
        }
        Ledger { accounts }
    }

    /// A ledger restored from its accounts (a snapshot). Empty accounts are dropped; if a key
    /// appears twice, the last entry wins.
    pub fn from_accounts(accounts: impl IntoIterator<Item = (PublicKey, Account)>) -> Ledger {
        let mut ledger = Ledger::default();
        for (key, account) in accounts {
            ledger.store(key, account);
        }
        ledger
    }

    /// The account of `key`; the empty account if it has never been credited.
    pub fn account(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Every non-empty account, in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    /// The sum of all balances. In `u128`: the subsidies can push it past `u64::MAX` in principle.
    pub fn total_supply(&self) -> u128 {
        self.accounts
            .values()
            .map(|a| u128::from(a.balance.0))
            .sum()
    }

    /// Checks a transfer against the current state: signature, nonce, balance, overflow.
    pub fn check_transfer(&self, chain_id: &str, tx: &SignedTransfer) -> Result<(), TxError> {
        let t = &tx.transfer;
        transfer_effect(t, self.account(&t.from), self.account(&t.to))?;
        verify(chain_id, tx)
    }

    /// Applies a block's transfers in order, then pays subsidy + fees. All or nothing: on error the
    /// ledger is unchanged.
    ///
    /// `proposer` must be a member of `validators` (see `distribute`).
    pub fn apply_block(
        &mut self,
        chain_id: &str,
        height: Height,
        proposer: ValidatorIndex,
        validators: &ValidatorSet,
        txs: &[SignedTransfer],
    ) -> Result<BlockOutcome, TxError> {
        self.apply_block_trusting(chain_id, height, proposer, validators, txs, |_, _| false)
    }

    /// As `apply_block`, but the signature of a transfer for which `verified(hash, tx)` holds is
    /// not checked again: a node passes "these exact bytes, signature included, are in my mempool",
    /// where they were admitted only after their signature verified on this chain. Verification
    /// is a pure function of those bytes and the chain id, so skipping it for bytes already
    /// verified changes no outcome: the result is always the one `apply_block` gives. The other
    /// transfers' signatures are checked as one batch (a bad one fails the block).
    pub fn apply_block_trusting(
        &mut self,
        chain_id: &str,
        height: Height,
        proposer: ValidatorIndex,
        validators: &ValidatorSet,
        txs: &[SignedTransfer],
        verified: impl Fn(&Hash, &SignedTransfer) -> bool,
    ) -> Result<BlockOutcome, TxError> {
        let mut overlay = Overlay::new(&self.accounts);
        let mut fees = Amount(0);
        let mut archived = Vec::with_capacity(txs.len());
        let mut unverified = Vec::new();
        for tx in txs {
            let t = &tx.transfer;
            let (from, to) = transfer_effect(t, overlay.get(&t.from), overlay.get(&t.to))?;
            overlay.set(t.from, from);
            overlay.set(t.to, to);
            fees = fees.checked_add(t.fee).ok_or(TxError::Overflow)?;
            let hash = tx.hash();
            if !verified(&hash, tx) {
                unverified.push(tx);
            }
            archived.push(hash);
        }
        if crate::tx::first_bad_signature(chain_id, &unverified).is_some() {
            return Err(TxError::BadSignature);
        }
        let subsidy = subsidy(height);
        let total_reward = subsidy.checked_add(fees).ok_or(TxError::Overflow)?;
        let rewards = distribute(total_reward, proposer, validators);
        for r in rewards.iter().filter(|r| r.amount.0 > 0) {
            let mut account = overlay.get(&r.account);
            account.balance = account
                .balance
                .checked_add(r.amount)
                .ok_or(TxError::Overflow)?;
            overlay.set(r.account, account);
        }
        let touched = overlay.into_changes();
        // Every check passed: from here on nothing fails.
        for (key, account) in &touched {
            self.store(*key, *account);
        }
        Ok(BlockOutcome {
            height,
            subsidy,
            fees,
            total_reward,
            rewards,
            archived,
            touched,
        })
    }

    /// BLAKE3 commitment to every account:
    /// `BLAKE3("timed/state" ‖ for each account in key order: key ‖ balance ‖ nonce)`, the integers
    /// as 8 big-endian bytes (fixed width, so the concatenation is unambiguous). Empty accounts are
    /// never stored, so they never count.
    ///
    /// Cost: O(accounts) per call (about 48 bytes hashed per account). Fine for now; a large state
    /// would want an incremental structure (a Merkle tree updated by the touched accounts).
    pub fn state_root(&self) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(STATE_ROOT_DOMAIN);
        for (key, account) in &self.accounts {
            hasher.update(&key.0);
            hasher.update(&account.balance.0.to_be_bytes());
            hasher.update(&account.nonce.to_be_bytes());
        }
        Hash(*hasher.finalize().as_bytes())
    }

    /// Sets `key`'s account, keeping the invariant that empty accounts are not stored.
    fn store(&mut self, key: PublicKey, account: Account) {
        if account == Account::default() {
            self.accounts.remove(&key);
        } else {
            self.accounts.insert(key, account);
        }
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
    if t.amount.0 == 0 {
        return Err(TxError::ZeroAmount);
    }
    if t.from == t.to {
        return Err(TxError::SelfTransfer);
    }
    if t.nonce != from.nonce {
        return Err(TxError::BadNonce {
            expected: from.nonce,
            got: t.nonce,
        });
    }
    let needed = t.amount.checked_add(t.fee).ok_or(TxError::Overflow)?;
    from.balance = from
        .balance
        .checked_sub(needed)
        .ok_or(TxError::InsufficientBalance {
            needed,
            available: from.balance,
        })?;
    from.nonce = from.nonce.checked_add(1).ok_or(TxError::Overflow)?;
    to.balance = to.balance.checked_add(t.amount).ok_or(TxError::Overflow)?;
    Ok((from, to))
}

fn verify(chain_id: &str, tx: &SignedTransfer) -> Result<(), TxError> {
    tx.verify_signature(chain_id)
        .map_err(|_| TxError::BadSignature)
}

/// Staged changes over a ledger's accounts: reads fall through to the base, writes stay here.
/// Holds only the accounts a block touches, so staging costs O(touched · log), not a copy.
struct Overlay<'a> {
    base: &'a BTreeMap<PublicKey, Account>,
    changed: BTreeMap<PublicKey, Account>,
}

impl<'a> Overlay<'a> {
    fn new(base: &'a BTreeMap<PublicKey, Account>) -> Overlay<'a> {
        Overlay {
            base,
            changed: BTreeMap::new(),
        }
    }

    fn get(&self, key: &PublicKey) -> Account {
        self.changed
            .get(key)
            .or_else(|| self.base.get(key))
            .copied()
            .unwrap_or_default()
    }

    fn set(&mut self, key: PublicKey, account: Account) {
        self.changed.insert(key, account);
    }

    /// The accounts whose state differs from the base, with their new state, sorted by key.
    fn into_changes(self) -> Vec<(PublicKey, Account)> {
        let base = self.base;
        self.changed
            .into_iter()
            .filter(|(key, account)| *account != base.get(key).copied().unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testkit::{CHAIN, funded, key, pk, transfer, validator_set};
    use crate::types::TimestampMs;
    use crate::validators::{ConsensusParams, GenesisBalance, GenesisValidator};
    use proptest::prelude::*;

    fn acct(balance: u64, nonce: u64) -> Account {
        Account {
            balance: Amount(balance),
            nonce,
        }
    }

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
        assert_eq!(ledger.total_supply(), 500);
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
    fn a_block_moves_money_bumps_nonces_and_pays_subsidy_plus_fees() {
        let set = validator_set(&[100, 300]);
        let mut ledger = funded(&[("alice", 1_000)]);
        let tx = transfer(&key("alice"), pk("bob"), 300, 50, 0);
        let out = ledger
            .apply_block(
                CHAIN,
                Height(1),
                ValidatorIndex(0),
                &set,
                std::slice::from_ref(&tx),
            )
            .unwrap();
        // total = 100 000 000 + 50; proposer's tenth 10 000 005; rest 90 000 045 split 1:3 →
        // 22 500 011 and 67 500 033, one unit left over to the proposer.
        assert_eq!(out.subsidy, Amount(100_000_000));
        assert_eq!(out.fees, Amount(50));
        assert_eq!(out.total_reward, Amount(100_000_050));
        let paid: Vec<u64> = out.rewards.iter().map(|r| r.amount.0).collect();
        assert_eq!(paid, vec![10_000_005 + 22_500_011 + 1, 67_500_033]);
        assert_eq!(out.archived, vec![tx.hash()]);
        assert_eq!(ledger.account(&pk("alice")), acct(650, 1));
        assert_eq!(ledger.account(&pk("bob")), acct(300, 0));
        assert_eq!(ledger.account(&pk("validator1")), acct(32_500_017, 0));
        assert_eq!(ledger.account(&pk("validator2")), acct(67_500_033, 0));
        assert_eq!(ledger.total_supply(), 1_000 + 100_000_000);
        let mut expected: Vec<_> = ["alice", "bob", "validator1", "validator2"]
            .iter()
            .map(|n| (pk(n), ledger.account(&pk(n))))
            .collect();
        expected.sort_by_key(|(k, _)| *k);
        assert_eq!(
            out.touched, expected,
            "every changed account, sorted by key"
        );
    }

    #[test]
    fn later_transfers_in_a_block_see_the_earlier_ones() {
        let set = validator_set(&[1]);
        let mut ledger = funded(&[("alice", 100)]);
        let txs = [
            transfer(&key("alice"), pk("bob"), 60, 1, 0),
            transfer(&key("bob"), pk("carol"), 50, 2, 0),
            transfer(&key("alice"), pk("carol"), 30, 1, 1),
        ];
        let out = ledger
            .apply_block(CHAIN, Height(5), ValidatorIndex(0), &set, &txs)
            .unwrap();
        assert_eq!(out.fees, Amount(4));
        assert_eq!(ledger.account(&pk("alice")), acct(8, 2));
        assert_eq!(ledger.account(&pk("bob")), acct(8, 1));
        assert_eq!(ledger.account(&pk("carol")), acct(80, 0));
        let hashes: Vec<Hash> = txs.iter().map(SignedTransfer::hash).collect();
        assert_eq!(out.archived, hashes);
    }

    #[test]
    fn a_transfer_repeated_in_a_block_fails_the_block_and_changes_nothing() {
        let set = validator_set(&[1, 1]);
        let mut ledger = funded(&[("alice", 100)]);
        let before = ledger.clone();
        let tx = transfer(&key("alice"), pk("bob"), 10, 1, 0);
        assert_eq!(
            ledger.apply_block(CHAIN, Height(1), ValidatorIndex(1), &set, &[tx.clone(), tx]),
            Err(TxError::BadNonce {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(ledger, before);
    }

    #[test]
    fn trusting_skips_only_what_it_is_told_and_checks_the_rest_as_a_batch() {
        let set = validator_set(&[1]);
        let ledger = funded(&[("alice", 1_000), ("bob", 1_000)]);
        let good: Vec<SignedTransfer> = (0..4)
            .map(|n| transfer(&key("alice"), pk("carol"), 10, 1, n))
            .collect();
        let mut forged = transfer(&key("bob"), pk("carol"), 10, 1, 0);
        forged.signature.0[7] ^= 0x20;
        let mut block = good.clone();
        block.push(forged.clone());
        let apply = |verified: &dyn Fn(&Hash, &SignedTransfer) -> bool| {
            let mut l = ledger.clone();
            let r =
                l.apply_block_trusting(CHAIN, Height(1), ValidatorIndex(0), &set, &block, verified);
            (r, l)
        };
        // Nothing trusted: the batch fails, the forged one is found, the ledger is unchanged.
        let (r, l) = apply(&|_, _| false);
        assert_eq!(r, Err(TxError::BadSignature));
        assert_eq!(l, ledger);
        // The good ones trusted: the forged one is still checked.
        let (r, _) = apply(&|_, tx| good.contains(tx));
        assert_eq!(r, Err(TxError::BadSignature));
        // Trusting exact bytes of good transfers changes no outcome.
        let mut a = ledger.clone();
        let mut b = ledger.clone();
        let plain = a.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &good);
        let trusted =
            b.apply_block_trusting(CHAIN, Height(1), ValidatorIndex(0), &set, &good, |_, tx| {
                good[..2].contains(tx)
            });
        assert!(plain.is_ok());
        assert_eq!(plain, trusted);
        assert_eq!(a, b);
    }

    #[test]
    fn an_empty_block_mints_exactly_the_subsidy() {
        let set = validator_set(&[2, 3, 5]);
        let mut ledger = Ledger::default();
        let out = ledger
            .apply_block(CHAIN, Height(100), ValidatorIndex(2), &set, &[])
            .unwrap();
        assert_eq!(out.total_reward, Amount(560_517_018));
        assert!(out.archived.is_empty());
        assert_eq!(ledger.total_supply(), 560_517_018);
        assert_eq!(out.touched.len(), 3);
    }

    #[test]
    fn a_reward_that_would_overflow_a_balance_fails_the_block() {
        let set = validator_set(&[1]);
        let mut ledger = Ledger::from_accounts([(pk("validator1"), acct(u64::MAX - 10, 0))]);
        let before = ledger.clone();
        assert_eq!(
            ledger.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &[]),
            Err(TxError::Overflow)
        );
        assert_eq!(ledger, before);
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
            Hash::of(&[STATE_ROOT_DOMAIN])
        );
    }

    // ---- properties ----

    /// Senders and receivers of the random transfers; `validator1` also earns rewards.
    const NAMES: [&str; 4] = ["alice", "bob", "carol", "validator1"];

    /// One random, often invalid, transfer: indices into `NAMES`, and how it goes wrong.
    #[derive(Clone, Debug)]
    struct Op {
        from: usize,
        to: usize,
        amount: u64,
        fee: u64,
        /// Added to the sender's expected nonce: 0 is right, -1 or +1 is wrong.
        nonce_skew: i8,
        forged: bool,
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            0..NAMES.len(),
            // The receiver as an offset from the sender: 0 (a self-transfer) now and then.
            prop_oneof![19 => 1..NAMES.len(), 1 => Just(0)],
            prop_oneof![1 => Just(0u64), 36 => 1u64..2_000, 2 => any::<u64>()],
            prop_oneof![16 => 0u64..50, 1 => any::<u64>()],
            prop_oneof![28 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
            proptest::bool::weighted(0.02),
        )
            .prop_map(|(from, offset, amount, fee, nonce_skew, forged)| Op {
                from,
                to: (from + offset) % NAMES.len(),
                amount,
                fee,
                nonce_skew,
                forged,
            })
    }

    fn balance() -> impl Strategy<Value = u64> {
        prop_oneof![2 => 0u64..1_000, 16 => 1_000u64..20_000, 1 => (u64::MAX - 10_000)..=u64::MAX]
    }

    /// Signs the block's ops with nonces counted from `ledger`, as if each earlier op succeeded.
    fn sign_block(ledger: &Ledger, ops: &[Op]) -> Vec<SignedTransfer> {
        let mut next: BTreeMap<PublicKey, u64> = BTreeMap::new();
        ops.iter()
            .map(|op| {
                let from = key(NAMES[op.from]);
                let n = next
                    .entry(from.public_key())
                    .or_insert_with(|| ledger.account(&from.public_key()).nonce);
                let nonce = n.saturating_add_signed(i64::from(op.nonce_skew));
                if op.nonce_skew == 0 {
                    *n += 1;
                }
                let mut tx = transfer(&from, pk(NAMES[op.to]), op.amount, op.fee, nonce);
                if op.forged {
                    tx.signature.0[5] ^= 0x40;
                }
                tx
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_blocks_change_supply_by_exactly_the_subsidies_or_nothing(
            balances in proptest::collection::vec(balance(), NAMES.len()),
            stakes in proptest::collection::vec(1u64..1_000, 1..=4),
            first_height in prop_oneof![1u64..1_000, any::<u64>()],
            blocks in proptest::collection::vec(
                (any::<u16>(), proptest::collection::vec(op(), 0..6)), 1..6),
        ) {
            let set = validator_set(&stakes);
            let mut ledger = Ledger::from_accounts(NAMES.iter().zip(&balances).map(|(n, b)| (pk(n), acct(*b, 0))));
            for (i, (proposer, ops)) in blocks.iter().enumerate() {
                let height = Height(first_height.saturating_add(i as u64));
                let proposer = ValidatorIndex(proposer % stakes.len() as u16);
                let txs = sign_block(&ledger, ops);
                let before = ledger.clone();
                let root_before = ledger.state_root();
                match ledger.apply_block(CHAIN, height, proposer, &set, &txs) {
                    Ok(out) => {
                        prop_assert_eq!(ledger.total_supply(), before.total_supply() + u128::from(subsidy(height).0));
                        prop_assert_eq!(out.subsidy, subsidy(height));
                        let paid: u128 = out.rewards.iter().map(|r| u128::from(r.amount.0)).sum();
                        prop_assert_eq!(paid, u128::from(out.subsidy.0) + u128::from(out.fees.0));
                        let fees: u128 = txs.iter().map(|t| u128::from(t.transfer.fee.0)).sum();
                        prop_assert_eq!(u128::from(out.fees.0), fees);
                        prop_assert_eq!(out.archived, txs.iter().map(SignedTransfer::hash).collect::<Vec<_>>());
                        // A signed-integer model of the block: no balance dips below zero after
                        // any transfer, and each ends where the ledger says.
                        let mut model: BTreeMap<PublicKey, i128> = BTreeMap::new();
                        let bal = |m: &mut BTreeMap<PublicKey, i128>, k: PublicKey, d: i128| {
                            let v = m.entry(k).or_insert_with(|| i128::from(before.account(&k).balance.0));
                            *v += d;
                            *v
                        };
                        for t in txs.iter().map(|t| &t.transfer) {
                            let left = bal(&mut model, t.from, -i128::from(t.amount.0) - i128::from(t.fee.0));
                            prop_assert!(left >= 0);
                            bal(&mut model, t.to, i128::from(t.amount.0));
                        }
                        for r in &out.rewards {
                            bal(&mut model, r.account, i128::from(r.amount.0));
                        }
                        for (k, v) in &model {
                            prop_assert_eq!(i128::from(ledger.account(k).balance.0), *v);
                        }
                        // Every sender's nonce went up by the number of its transfers.
                        for name in NAMES {
                            let sent = txs.iter().filter(|t| t.transfer.from == pk(name)).count() as u64;
                            prop_assert_eq!(ledger.account(&pk(name)).nonce, before.account(&pk(name)).nonce + sent);
                        }
                        // `touched` is exactly the accounts that changed, sorted, with their state.
                        prop_assert!(out.touched.windows(2).all(|w| w[0].0 < w[1].0));
                        for (k, a) in &out.touched {
                            prop_assert_eq!(ledger.account(k), *a);
                            prop_assert_ne!(before.account(k), *a);
                        }
                        for (k, a) in before.accounts() {
                            if !out.touched.iter().any(|(t, _)| t == k) {
                                prop_assert_eq!(ledger.account(k), *a);
                            }
                        }
                    }
                    Err(_) => {
                        prop_assert_eq!(&ledger, &before);
                        prop_assert_eq!(ledger.state_root(), root_before);
                    }
                }
                prop_assert!(ledger.accounts().all(|(_, a)| *a != Account::default()));
            }
        }

        #[test]
        fn a_block_failing_after_valid_transfers_leaves_the_ledger_bit_identical(
            amounts in proptest::collection::vec(1u64..100, 1..5),
            bad in 0u8..6,
        ) {
            let set = validator_set(&[1, 2]);
            let mut ledger = funded(&[("alice", 1_000), ("bob", 50)]);
            let alice = key("alice");
            let mut txs: Vec<SignedTransfer> = amounts
                .iter()
                .enumerate()
                .map(|(n, a)| transfer(&alice, pk("bob"), *a, 1, n as u64))
                .collect();
            let n = txs.len() as u64;
            let bob = key("bob");
            txs.push(match bad {
                0 => transfer(&alice, pk("bob"), 1, 1, n + 1),
                1 => transfer(&alice, pk("bob"), 0, 1, n),
                2 => transfer(&alice, pk("alice"), 1, 1, n),
                3 => transfer(&alice, pk("bob"), 1_000, 0, n),
                4 => transfer(&bob, pk("carol"), 1, 1, 0).transfer.sign(&bob, "other-chain"),
                _ => transfer(&bob, pk("carol"), u64::MAX, 1, 0),
            });
            let before = ledger.clone();
            let root = ledger.state_root();
            prop_assert!(ledger.apply_block(CHAIN, Height(7), ValidatorIndex(1), &set, &txs).is_err());
            prop_assert_eq!(&ledger, &before);
            prop_assert_eq!(ledger.state_root(), root);
        }
    }
}
