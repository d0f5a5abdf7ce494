//! A block applied to the ledger: its transfers in order, then the reward, all or nothing
//! (staged on an `Overlay` of the touched accounts), and what it did (`BlockOutcome`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Account, Ledger, TxError, distribute, subsidy, transfer_effect};
use crate::crypto::PublicKey;
use crate::ledger::rewards::Reward;
use crate::ledger::tree::Delta;
use crate::staking::{EvidenceError, Staking, StakingRecord};
use crate::tx::{Op, SignedTransfer};
use crate::types::{Amount, Hash, Height, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::vote::Evidence;

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
    /// The staking operations of the block that broke a staking rule, in block order: they
    /// changed nothing but their sender's fee and nonce (`staking::StakingError` says why).
    pub staking_refused: Vec<Hash>,
    /// The staking state after the block, when the block changed it (an operation, a release,
    /// a slash or a new epoch): a store then keeps it.
    pub staking: Option<StakingRecord>,
    /// Base units burnt by the block's evidence (ADR 0026 point 6): the supply shrinks by it.
    pub slashed: Amount,
    /// The validators the block's evidence jailed, in id order.
    pub jailed: Vec<ValidatorIndex>,
}

impl Ledger {
    /// Applies a block's transfers in order (a staking operation also to the staking state),
    /// then its evidence (`Staking::slash`: any piece that breaks a rule fails the block),
    /// returns the unbonded stake due, pays subsidy + fees, and at the end of an epoch changes
    /// the sets (`Staking::end_height`). All or nothing: on error the ledger is unchanged.
    ///
    /// The reward is shared by the ledger's own current set (the set of `height`, ADR 0026);
    /// `validators` is used only by a ledger without staking state (`from_accounts`).
    /// `proposer` must be a member of that set (see `distribute`).
    pub fn apply_block(
        &mut self,
        chain_id: &str,
        height: Height,
        proposer: ValidatorIndex,
        validators: &ValidatorSet,
        txs: &[SignedTransfer],
        evidence: &[Evidence],
    ) -> Result<BlockOutcome, TxError> {
        let outcome = self.stage_block_trusting(
            chain_id,
            height,
            proposer,
            validators,
            txs,
            evidence,
            |_, _| false,
        )?;
        self.commit_outcome(&outcome);
        Ok(outcome)
    }

    /// What `apply_block` would do, leaving the ledger as it is: the outcome's `touched` is what
    /// applying the block would change (`commit` makes it so, `state_root_with` tells the state
    /// root it would give). A node checks every candidate block this way and commits the one
    /// finalized, instead of applying each to a copy of the whole ledger.
    ///
    /// The signature of a transfer for which `verified(hash, tx)` holds is not checked again: a
    /// node passes "these exact bytes, signature included, are in my mempool", where they were
    /// admitted only after their signature verified on this chain. Verification is a pure
    /// function of those bytes and the chain id, so skipping it for bytes already verified
    /// changes no outcome: the result is always the one `apply_block` gives. The other
    /// transfers' signatures are checked as one batch (a bad one fails the block).
    // The block's parts, its place and the caller's trust: grouping them in a struct would
    // only rename the arguments at each of the few callers.
    #[allow(clippy::too_many_arguments)]
    pub fn stage_block_trusting(
        &self,
        chain_id: &str,
        height: Height,
        proposer: ValidatorIndex,
        validators: &ValidatorSet,
        txs: &[SignedTransfer],
        evidence: &[Evidence],
        verified: impl Fn(&Hash, &SignedTransfer) -> bool,
    ) -> Result<BlockOutcome, TxError> {
        let mut overlay = Overlay::new(&self.accounts);
        // The staking state is copied only when something changes it.
        let mut staged: Option<Staking> = None;
        let mut staking_refused = Vec::new();
        let mut fees = Amount(0);
        let mut archived = Vec::with_capacity(txs.len());
        let mut unverified = Vec::new();
        for tx in txs {
            let t = &tx.transfer;
            let (mut from, to) = transfer_effect(t, overlay.get(&t.from), overlay.get(&t.to))?;
            let hash = tx.hash();
            if t.op.is_staking() {
                let applied = match (&mut staged, &self.staking) {
                    (Some(s), _) => s.apply_op(t, height).is_ok(),
                    (None, Some(base)) => {
                        let mut s = base.clone();
                        let ok = s.apply_op(t, height).is_ok();
                        if ok {
                            staged = Some(s);
                        }
                        ok
                    }
                    (None, None) => false,
                };
                if !applied {
                    // Refused: the amount taken for a register or a bond goes back.
                    if !matches!(t.op, Op::Unbond) {
                        from.balance = from
                            .balance
                            .checked_add(t.amount)
                            .ok_or(TxError::Overflow)?;
                    }
                    staking_refused.push(hash);
                }
            }
            overlay.set(t.from, from);
            if t.from != t.to {
                overlay.set(t.to, to);
            }
            fees = fees.checked_add(t.fee).ok_or(TxError::Overflow)?;
            if !verified(&hash, tx) {
                unverified.push(tx);
            }
            archived.push(hash);
        }
        if crate::tx::first_bad_signature(chain_id, &unverified).is_some() {
            return Err(TxError::BadSignature);
        }
        // Evidence, after the transfers: a validator jailed here had its bonds of this block
        // counted first, and its slash takes a share of them too.
        let mut slashed = Amount(0);
        let mut jailed = Vec::with_capacity(evidence.len());
        if !evidence.is_empty() {
            crate::staking::check_list(evidence).map_err(TxError::Evidence)?;
            let base = self
                .staking
                .as_ref()
                .ok_or(TxError::Evidence(EvidenceError::NoRegistry))?;
            let s = staged.get_or_insert_with(|| base.clone());
            for e in evidence {
                let burnt = s.slash(e, height, chain_id).map_err(TxError::Evidence)?;
                slashed = slashed.checked_add(burnt).ok_or(TxError::Overflow)?;
                jailed.push(e.first.validator);
            }
        }
        // Unbonded stake due at this height returns to its owners.
        if let Some(base) = &self.staking
            && base
                .unbonding()
                .first()
                .is_some_and(|u| u.release <= height)
        {
            let s = staged.get_or_insert_with(|| base.clone());
            for u in s.release(height) {
                let mut account = overlay.get(&u.owner);
                account.balance = account
                    .balance
                    .checked_add(u.amount)
                    .ok_or(TxError::Overflow)?;
                overlay.set(u.owner, account);
            }
        }
        let subsidy = subsidy(height);
        let total_reward = subsidy.checked_add(fees).ok_or(TxError::Overflow)?;
        let signers = self.staking.as_ref().map_or(validators, |s| s.current());
        let rewards = distribute(total_reward, proposer, signers);
        // Every validator is paid at nearly every block: the rewards are staged in key order (of
        // the accounts paid), as a sorted list beside the overlay rather than an insertion into
        // it each. One owner of several validators is paid once, their sum.
        let mut paid: Vec<(PublicKey, Amount)> = rewards
            .iter()
            .filter(|r| r.amount.0 > 0)
            .map(|r| (r.account, r.amount))
            .collect();
        paid.sort_by_key(|(account, _)| *account);
        paid.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                // The rewards sum to the block's total, which fits 64 bits.
                kept.1 = Amount(kept.1.0.saturating_add(later.1.0));
            }
            same
        });
        let before = self.accounts_in_order(paid.iter().map(|(key, _)| key));
        let mut credited: Vec<(PublicKey, Account)> = Vec::with_capacity(paid.len());
        for ((key, amount), base) in paid.into_iter().zip(before) {
            let mut account = overlay.changed.get(&key).copied().unwrap_or(base);
            account.balance = account
                .balance
                .checked_add(amount)
                .ok_or(TxError::Overflow)?;
            // A credit leaves the balance above the base's or, after the block's transfers,
            // the nonce: every credited account changed.
            credited.push((key, account));
        }
        let touched = overlay.into_changes(credited);
        if let Some(base) = &self.staking
            && base.ends_epoch(height)
        {
            staged
                .get_or_insert_with(|| base.clone())
                .end_height(height);
        }
        let staking = staged.as_ref().map(Staking::record);
        Ok(BlockOutcome {
            height,
            subsidy,
            fees,
            total_reward,
            rewards,
            archived,
            touched,
            staking_refused,
            staking,
            slashed,
            jailed,
        })
    }

    /// Applies a block staged on this very ledger (`stage_block_trusting`): its accounts
    /// (`commit`) and, when it changed it, its staking state.
    pub fn commit_outcome(&mut self, outcome: &BlockOutcome) {
        self.commit(&outcome.touched);
        self.commit_staking(outcome);
    }

    /// `commit_outcome` with the tree's changes already worked out by `stage_state` on this
    /// very ledger: a node checks a block (computing its state root) and then finalizes it,
    /// and working the tree's changes out once instead of twice was a tenth of the simulator's
    /// run at a hundred validators, where every block pays every one of them.
    pub fn commit_staged(&mut self, outcome: &BlockOutcome, staged: StagedState) {
        // Staged on another ledger (a caller's mistake): the changes are worked out afresh, so
        // the ledger is right whatever it was given.
        debug_assert_eq!(staged.base, self.tree.root(), "staged on this ledger");
        if staged.base == self.tree.root() {
            self.commit_delta(&outcome.touched, staged.tree);
        } else {
            self.commit(&outcome.touched);
        }
        self.commit_staking(outcome);
    }

    /// The staking half of `commit_outcome`.
    fn commit_staking(&mut self, outcome: &BlockOutcome) {
        if let Some(record) = &outcome.staking {
            self.staking = self.staged_staking(record);
        }
    }

    /// The staking state of a record staged on this ledger, under its parameters.
    fn staged_staking(&self, record: &StakingRecord) -> Option<Staking> {
        let params = *self.staking.as_ref()?.params();
        let staking = Staking::from_record(record.clone(), params);
        debug_assert!(staking.is_ok(), "a staged record keeps every rule");
        staking.ok()
    }

    /// Applies what a block staged on this very ledger touched (`BlockOutcome::touched` of
    /// `stage_block_trusting`): the accounts, and the accounts' tree by the buckets they fall in.
    pub fn commit(&mut self, touched: &[(PublicKey, Account)]) {
        debug_assert!(
            touched.is_sorted_by(|a, b| a.0 < b.0),
            "touched is sorted by key"
        );
        let delta = self.tree.delta(&self.accounts, touched);
        self.commit_delta(touched, delta);
    }

    /// `commit` with the tree's changes (`AccountsTree::delta` of `touched` on this ledger).
    fn commit_delta(&mut self, touched: &[(PublicKey, Account)], delta: Delta) {
        for (key, account) in touched {
            if *account == Account::default() {
                self.accounts.remove(key);
            } else {
                self.accounts.insert(*key, *account);
            }
        }
        self.tree.commit(delta, &self.accounts);
    }

    /// The accounts of `keys` (ascending), in their order: by one walk of the ledger when they
    /// are many next to it (`WALK_RATIO`), else a look-up each.
    fn accounts_in_order<'k>(
        &self,
        keys: impl Iterator<Item = &'k PublicKey> + Clone,
    ) -> Vec<Account> {
        let wanted = keys.clone().count();
        if wanted.saturating_mul(WALK_RATIO) < self.accounts.len() {
            return keys.map(|key| self.account(key)).collect();
        }
        let mut stored = self.accounts.iter().peekable();
        keys.map(|key| {
            while stored.next_if(|(k, _)| *k < key).is_some() {}
            stored
                .next_if(|(k, _)| *k == key)
                .map_or_else(Account::default, |(_, account)| *account)
        })
        .collect()
    }

    /// The state root this ledger would have with `outcome` committed (`commit_outcome`),
    /// computed without changing it.
    pub fn state_root_with(&self, outcome: &BlockOutcome) -> Hash {
        self.stage_state(outcome).root
    }

    /// `state_root_with`, keeping the tree's changes it worked out for `commit_staged`.
    pub fn stage_state(&self, outcome: &BlockOutcome) -> StagedState {
        debug_assert!(
            outcome.touched.is_sorted_by(|a, b| a.0 < b.0),
            "touched is sorted by key"
        );
        let staking = match &outcome.staking {
            Some(record) => Some(record.root()),
            None => self.staking.as_ref().map(Staking::root),
        };
        let tree = self.tree.delta(&self.accounts, &outcome.touched);
        StagedState {
            root: super::state_root_of(self.tree.root_with(&tree), staking),
            base: self.tree.root(),
            tree,
        }
    }

    /// `ValidatorSet::hash` of the set that signs the height after a block with `outcome`
    /// (`Header::next_set_hash`): the staged current set, or the ledger's own; `None` for a
    /// ledger without staking state.
    pub fn next_set_hash_with(&self, outcome: &BlockOutcome) -> Option<Hash> {
        match &outcome.staking {
            Some(record) => Some(crate::validators::members_hash(&record.current)),
            None => self.staking.as_ref().map(|s| s.current().hash()),
        }
    }
}

/// The state root a staged block leads to and the changes to the accounts' tree that give it
/// (`Ledger::stage_state`), to commit as they are (`Ledger::commit_staged`).
#[derive(Clone, Debug)]
pub struct StagedState {
    root: Hash,
    /// The accounts' root of the ledger it was staged on.
    base: Hash,
    tree: Delta,
}

impl StagedState {
    /// The state root after the block.
    pub fn root(&self) -> Hash {
        self.root
    }
}

/// Where a block touches at least one account in this many of the ledger's, the ledger is walked
/// in key order rather than searched from its root for each (`accounts_in_order`): a search costs
/// some 15 key comparisons in a map of a hundred accounts, a walk two per account.
const WALK_RATIO: usize = 8;

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

    /// The accounts whose state differs from the base, with their new state, sorted by key:
    /// those set that differ, and `credited` (sorted by key, its states computed on top of this
    /// overlay, each differing from the base), which replaces what was set for its accounts.
    fn into_changes(self, credited: Vec<(PublicKey, Account)>) -> Vec<(PublicKey, Account)> {
        let base = self.base;
        let mut changed = self
            .changed
            .into_iter()
            .filter(|(key, account)| *account != base.get(key).copied().unwrap_or_default())
            .peekable();
        let mut credited = credited.into_iter().peekable();
        std::iter::from_fn(|| match (changed.peek(), credited.peek()) {
            (None, None) => None,
            (Some(_), None) => changed.next(),
            (None, Some(_)) => credited.next(),
            (Some((ck, _)), Some((lk, _))) => match ck.cmp(lk) {
                std::cmp::Ordering::Less => changed.next(),
                std::cmp::Ordering::Equal => {
                    changed.next();
                    credited.next()
                }
                std::cmp::Ordering::Greater => credited.next(),
            },
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testkit::{CHAIN, acct, funded, key, pk, transfer, validator_set};
    use proptest::prelude::*;

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
                &[],
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
            .apply_block(CHAIN, Height(5), ValidatorIndex(0), &set, &txs, &[])
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
            ledger.apply_block(
                CHAIN,
                Height(1),
                ValidatorIndex(1),
                &set,
                &[tx.clone(), tx],
                &[]
            ),
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
            ledger.stage_block_trusting(
                CHAIN,
                Height(1),
                ValidatorIndex(0),
                &set,
                &block,
                &[],
                verified,
            )
        };
        // Nothing trusted: the batch fails, the forged one is found.
        assert_eq!(apply(&|_, _| false), Err(TxError::BadSignature));
        // The good ones trusted: the forged one is still checked.
        assert_eq!(
            apply(&|_, tx| good.contains(tx)),
            Err(TxError::BadSignature)
        );
        // Trusting exact bytes of good transfers changes no outcome.
        let mut a = ledger.clone();
        let plain = a.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &good, &[]);
        let trusted = ledger.stage_block_trusting(
            CHAIN,
            Height(1),
            ValidatorIndex(0),
            &set,
            &good,
            &[],
            |_, tx| good[..2].contains(tx),
        );
        assert!(plain.is_ok());
        assert_eq!(plain, trusted);
        let mut b = ledger.clone();
        b.commit(&trusted.unwrap().touched);
        assert_eq!(a, b);
    }

    #[test]
    fn an_empty_block_mints_exactly_the_subsidy() {
        let set = validator_set(&[2, 3, 5]);
        let mut ledger = Ledger::default();
        let out = ledger
            .apply_block(CHAIN, Height(100), ValidatorIndex(2), &set, &[], &[])
            .unwrap();
        assert_eq!(out.total_reward, Amount(560_517_018));
        assert!(out.archived.is_empty());
        assert_eq!(ledger.total_supply(), 560_517_018);
        assert_eq!(out.touched.len(), 3);
    }

    #[test]
    fn commit_walks_or_looks_up_and_gives_the_same_ledger_either_way() {
        let set = validator_set(&[2, 3]);
        // A ledger of a few accounts (walked) and one of many (looked up); a transfer empties
        // one sender's balance, another credits an account not stored yet.
        for extra in [0usize, 100] {
            let mut funds = vec![("alice", 60), ("bob", 5)];
            let names: Vec<String> = (0..extra).map(|i| format!("holder{i}")).collect();
            funds.extend(names.iter().map(|n| (n.as_str(), 7)));
            let before = funded(&funds);
            let txs = [
                transfer(&key("alice"), pk("dave"), 50, 10, 0),
                transfer(&key("bob"), pk("carol"), 4, 1, 0),
            ];
            let staged = before
                .stage_block_trusting(
                    CHAIN,
                    Height(3),
                    ValidatorIndex(1),
                    &set,
                    &txs,
                    &[],
                    |_, _| false,
                )
                .unwrap();
            // The model: every account as it was, those touched replaced.
            let mut model: BTreeMap<PublicKey, Account> =
                before.accounts().map(|(k, a)| (*k, *a)).collect();
            model.extend(staged.touched.iter().copied());
            let expected = Ledger::from_accounts(model);
            let mut after = before.clone();
            after.commit(&staged.touched);
            assert_eq!(after, expected, "{extra} more accounts");
            assert_eq!(before.state_root_with(&staged), expected.state_root());
        }
    }

    #[test]
    fn a_reward_that_would_overflow_a_balance_fails_the_block() {
        let set = validator_set(&[1]);
        let mut ledger = Ledger::from_accounts([(pk("validator1"), acct(u64::MAX - 10, 0))]);
        let before = ledger.clone();
        assert_eq!(
            ledger.apply_block(CHAIN, Height(1), ValidatorIndex(0), &set, &[], &[]),
            Err(TxError::Overflow)
        );
        assert_eq!(ledger, before);
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
                match ledger.apply_block(CHAIN, height, proposer, &set, &txs, &[]) {
                    Ok(out) => {
                        // Staged on the ledger before, the block gives the same outcome, and the
                        // state root predicted is the committed ledger's.
                        let staged = before.stage_block_trusting(CHAIN, height, proposer, &set, &txs, &[], |_, _| false);
                        prop_assert_eq!(staged.as_ref(), Ok(&out));
                        prop_assert_eq!(before.state_root_with(&out), ledger.state_root());
                        // Committed by the changes its check worked out, the same ledger; every
                        // other block goes on from that one, so later roots are computed on the
                        // levels those changes left.
                        let mut by_stage = before.clone();
                        let state = before.stage_state(&out);
                        prop_assert_eq!(state.root(), ledger.state_root());
                        by_stage.commit_staged(&out, state);
                        prop_assert_eq!(&by_stage, &ledger);
                        if i % 2 == 1 {
                            ledger = by_stage;
                        }
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
            prop_assert!(ledger.apply_block(CHAIN, Height(7), ValidatorIndex(1), &set, &txs, &[]).is_err());
            prop_assert_eq!(&ledger, &before);
            prop_assert_eq!(ledger.state_root(), root);
        }
    }
}
