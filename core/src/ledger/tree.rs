//! The accounts' Merkle tree: the commitment to every account that the state root carries, kept
//! up to date by the accounts a block touches, and the proof of one account against it.
//!
//! **Shape.** A binary trie over the 256 bits of an account's key (its Ed25519 public key, the
//! high bit of byte 0 first), made compact: a subtree holding no account is `Hash::ZERO`, one
//! holding a single account is that account's leaf wherever it stands (it is not pushed down to
//! depth 256), and one holding two or more is `node(left, right)`:
//!
//! ```text
//! leaf(key, account) = BLAKE3("timed/account" ‖ key ‖ balance ‖ nonce)   (8-byte big-endian integers)
//! node(left, right)  = BLAKE3("timed/node" ‖ left ‖ right)
//! ```
//!
//! The two tags differ, so a leaf is never taken for a node. The root is a function of the set
//! of accounts alone, whatever order they came in. A path is as long as the prefix its key
//! shares with its nearest neighbour: about log2(accounts) levels, since keys are uniform. A
//! client who grinds keys to share k bits with an account pays 2^k key generations for one path
//! of length k; no path is longer than 256 (`MAX_PROOF_DEPTH`).
//!
//! **Cost.** `AccountsTree` keeps the subtrees of its top levels that hold an account (their
//! hash and how many accounts they hold); below them, the subtree under a prefix (a "bucket") is
//! rehashed from the ledger's accounts when one of them changes. How many levels it keeps follows
//! the number of accounts, so a bucket holds some 8 to 32 of them (`cached_levels`; at most
//! `MAX_CACHED_LEVELS`, 2^17 entries or a few MB at a million accounts): a block touching t
//! accounts costs about t · (bucket + levels) hashes instead of a pass over every account, and a
//! small ledger pays no levels of lone accounts. The state root of a staged block is computed the
//! same way without changing the tree (`Delta`). The levels kept are a cache: the root does not
//! depend on them.
//!
//! **Proofs.** `AccountProof` holds the siblings along the key's path from the root down and
//! what ends the path: the key's own leaf (it has this account), another key's leaf on the same
//! path, or an empty subtree (both: it has none). `AccountProof::verify` recomputes the state
//! root from them; a light client compares it with a certified header's `state_root`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Account;
use crate::crypto::PublicKey;
use crate::types::Hash;

/// The most levels whose subtrees `AccountsTree` keeps (a million accounts fill them, 15 to a
/// bucket).
pub const MAX_CACHED_LEVELS: usize = 16;

/// Accounts per bucket the kept levels aim at.
const BUCKET_ACCOUNTS: u64 = 16;

/// The levels to keep for `accounts` accounts: buckets of about `BUCKET_ACCOUNTS`.
fn cached_levels(accounts: u64) -> usize {
    let buckets = (accounts / BUCKET_ACCOUNTS).max(1).next_power_of_two();
    (buckets.trailing_zeros() as usize).min(MAX_CACHED_LEVELS)
}

/// The deepest a path can be: a key has 256 bits.
pub const MAX_PROOF_DEPTH: usize = 256;

const LEAF_DOMAIN: &[u8] = b"timed/account";
const NODE_DOMAIN: &[u8] = b"timed/node";

/// The leaf of `key`'s account.
pub fn leaf_hash(key: &PublicKey, account: &Account) -> Hash {
    // One buffer and one call: a tree update is mostly these two hashes.
    let mut bytes = [0u8; LEAF_DOMAIN.len() + 48];
    let (domain, rest) = bytes.split_at_mut(LEAF_DOMAIN.len());
    domain.copy_from_slice(LEAF_DOMAIN);
    rest[..32].copy_from_slice(&key.0);
    rest[32..40].copy_from_slice(&account.balance.0.to_be_bytes());
    rest[40..].copy_from_slice(&account.nonce.to_be_bytes());
    Hash(*blake3::hash(&bytes).as_bytes())
}

/// The node over two subtrees.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut bytes = [0u8; NODE_DOMAIN.len() + 64];
    let (domain, rest) = bytes.split_at_mut(NODE_DOMAIN.len());
    domain.copy_from_slice(NODE_DOMAIN);
    rest[..32].copy_from_slice(&left.0);
    rest[32..].copy_from_slice(&right.0);
    Hash(*blake3::hash(&bytes).as_bytes())
}

/// Bit `depth` of `key` (0 is the high bit of byte 0): `true` goes right.
fn bit(key: &PublicKey, depth: usize) -> bool {
    (key.0[depth / 8] >> (7 - depth % 8)) & 1 == 1
}

/// The top `depth` bits of `key` as an index at that level (`depth` ≤ `MAX_CACHED_LEVELS`).
pub(super) fn prefix(key: &PublicKey, depth: usize) -> u32 {
    if depth == 0 {
        return 0;
    }
    u32::from_be_bytes([key.0[0], key.0[1], key.0[2], key.0[3]]) >> (32 - depth)
}

/// The least and the greatest key under the `depth`-bit prefix `index`.
pub(super) fn prefix_bounds(index: u32, depth: usize) -> (PublicKey, PublicKey) {
    let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
    if depth > 0 {
        let top = index << (32 - depth);
        let rest = u32::MAX >> depth;
        low[..4].copy_from_slice(&top.to_be_bytes());
        high[..4].copy_from_slice(&(top | rest).to_be_bytes());
    }
    (PublicKey(low), PublicKey(high))
}

/// The root of the subtree holding `leaves` (sorted by key, distinct, all sharing their first
/// `depth` bits), each given with its leaf hash.
pub(super) fn subtree(leaves: &[(PublicKey, Hash)], depth: usize) -> Hash {
    match leaves {
        [] => Hash::ZERO,
        [(_, leaf)] => *leaf,
        _ => {
            // Distinct keys part before bit 256.
            debug_assert!(depth < MAX_PROOF_DEPTH);
            let split = leaves.partition_point(|(key, _)| !bit(key, depth));
            node_hash(
                &subtree(&leaves[..split], depth + 1),
                &subtree(&leaves[split..], depth + 1),
            )
        }
    }
}

/// A kept subtree: its root and how many accounts it holds (one means the root is that
/// account's leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Subtree {
    pub(super) root: Hash,
    accounts: u64,
}

impl Subtree {
    /// The subtree of one account: its leaf.
    pub(super) fn leaf(key: &PublicKey, account: &Account) -> Subtree {
        Subtree {
            root: leaf_hash(key, account),
            accounts: 1,
        }
    }

    /// A subtree of two accounts or more, whose root is `root` (a node).
    pub(super) fn many(root: Hash) -> Subtree {
        Subtree { root, accounts: 2 }
    }
}

/// The subtree over two siblings, either of which may be empty (`None`).
pub(super) fn join(left: Option<Subtree>, right: Option<Subtree>) -> Option<Subtree> {
    let accounts = left.map_or(0, |s| s.accounts) + right.map_or(0, |s| s.accounts);
    match accounts {
        0 => None,
        // A lone account rises as its leaf.
        1 => left.or(right),
        _ => Some(Subtree {
            root: node_hash(
                &left.map_or(Hash::ZERO, |s| s.root),
                &right.map_or(Hash::ZERO, |s| s.root),
            ),
            accounts,
        }),
    }
}

/// Hashes a level's index for its map: a multiply (Fibonacci hashing), fixed, so the maps hold
/// no randomness (the core has none but its seed) and cost a few nanoseconds a look-up.
#[derive(Clone, Copy, Default)]
struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Level = std::collections::HashMap<u32, Subtree, std::hash::BuildHasherDefault<IndexHasher>>;

/// The top levels of the accounts' tree (module docs). How many it keeps depends on its
/// history, so trees are equal when their roots are: the root is a function of the accounts.
#[derive(Clone, Debug)]
pub(super) struct AccountsTree {
    /// `levels[d]`: the subtrees under each `d`-bit prefix that hold an account, for d in
    /// `0..levels.len()`; the last level's are the buckets.
    levels: Vec<Level>,
}

impl PartialEq for AccountsTree {
    fn eq(&self, other: &Self) -> bool {
        self.root() == other.root()
    }
}

impl Eq for AccountsTree {}

impl Default for AccountsTree {
    fn default() -> Self {
        AccountsTree::with_levels(0)
    }
}

/// What committing some accounts changes in an `AccountsTree`: the new subtrees of the buckets
/// they fall in and of those buckets' ancestors (`None`: now empty), each level in index order.
#[derive(Clone, Debug)]
pub(super) struct Delta {
    levels: Vec<Vec<(u32, Option<Subtree>)>>,
}

impl AccountsTree {
    /// The tree of `accounts` (none of them empty), built whole: O(accounts) hashes.
    pub(super) fn build(accounts: &BTreeMap<PublicKey, Account>) -> AccountsTree {
        let tree = AccountsTree::with_levels(cached_levels(accounts.len() as u64));
        let everything: Vec<(PublicKey, Account)> =
            accounts.iter().map(|(k, a)| (*k, *a)).collect();
        let delta = tree.delta(&BTreeMap::new(), &everything);
        let mut tree = tree;
        tree.apply(delta);
        tree
    }

    /// An empty tree keeping `depth` levels below the root.
    fn with_levels(depth: usize) -> AccountsTree {
        AccountsTree {
            levels: vec![Level::default(); depth + 1],
        }
    }

    /// The depth of the buckets.
    fn buckets(&self) -> usize {
        self.levels.len() - 1
    }

    /// How many accounts the tree holds.
    fn accounts(&self) -> u64 {
        self.levels[0].get(&0).map_or(0, |s| s.accounts)
    }

    /// The root over every account: `Hash::ZERO` when there is none.
    pub(super) fn root(&self) -> Hash {
        self.levels[0].get(&0).map_or(Hash::ZERO, |s| s.root)
    }

    /// The root the tree would have with `delta` applied.
    pub(super) fn root_with(&self, delta: &Delta) -> Hash {
        let top = match delta.levels[0].first() {
            Some((_, changed)) => *changed,
            None => self.levels[0].get(&0).copied(),
        };
        top.map_or(Hash::ZERO, |s| s.root)
    }

    /// What committing `touched` (sorted by key; an empty account is one removed) over
    /// `accounts` (the accounts this tree is of) changes in the tree.
    pub(super) fn delta(
        &self,
        accounts: &BTreeMap<PublicKey, Account>,
        touched: &[(PublicKey, Account)],
    ) -> Delta {
        let depth = self.buckets();
        let mut delta = Delta {
            levels: vec![Vec::new(); depth + 1],
        };
        let mut rest = touched;
        let mut leaves: Vec<(PublicKey, Hash)> = Vec::new();
        while let Some((first, _)) = rest.first() {
            let bucket = prefix(first, depth);
            let (mine, after) =
                rest.split_at(rest.partition_point(|(k, _)| prefix(k, depth) == bucket));
            rest = after;
            let (low, high) = prefix_bounds(bucket, depth);
            leaves.clear();
            leaves.extend(
                merged(accounts.range(low..=high), mine).map(|(k, a)| (*k, leaf_hash(k, a))),
            );
            let subtree = (!leaves.is_empty()).then(|| Subtree {
                root: subtree(&leaves, depth),
                accounts: leaves.len() as u64,
            });
            delta.levels[depth].push((bucket, subtree));
        }
        for depth in (0..depth).rev() {
            let (above, below) = delta.levels.split_at_mut(depth + 1);
            let (parents, children) = (&mut above[depth], &below[0]);
            let mut i = 0;
            while let Some(&(index, changed)) = children.get(i) {
                let parent = index >> 1;
                // The changed children of `parent`: one, or both (then adjacent, left first).
                let (left, right) = if index & 1 == 0 {
                    match children.get(i + 1) {
                        Some(&(next, other)) if next == index | 1 => {
                            i += 1;
                            (changed, other)
                        }
                        _ => (changed, self.levels[depth + 1].get(&(index | 1)).copied()),
                    }
                } else {
                    (self.levels[depth + 1].get(&(index & !1)).copied(), changed)
                };
                i += 1;
                parents.push((parent, join(left, right)));
            }
        }
        delta
    }

    /// Makes `delta` (computed on this tree) so.
    fn apply(&mut self, delta: Delta) {
        for (level, changes) in self.levels.iter_mut().zip(delta.levels) {
            for (index, subtree) in changes {
                match subtree {
                    Some(s) => level.insert(index, s),
                    None => level.remove(&index),
                };
            }
        }
    }

    /// Makes `delta` so, `accounts` being the accounts after it; rebuilt whole when the number
    /// of accounts moved 4× away from what its levels suit (amortized: a rebuild costs as many
    /// hashes as the accounts added or removed since the last).
    pub(super) fn commit(&mut self, delta: Delta, accounts: &BTreeMap<PublicKey, Account>) {
        self.apply(delta);
        if cached_levels(self.accounts()).abs_diff(self.buckets()) > 1 {
            *self = AccountsTree::build(accounts);
        }
    }

    /// The path of `key` in the tree of `accounts` (the accounts this tree is of): its siblings
    /// from the root down, and the account whose leaf ends it, if one does.
    pub(super) fn path(
        &self,
        accounts: &BTreeMap<PublicKey, Account>,
        key: &PublicKey,
    ) -> (Vec<Hash>, Option<(PublicKey, Account)>) {
        let mut siblings = Vec::new();
        let only = |depth: usize| {
            let (low, high) = prefix_bounds(prefix(key, depth), depth);
            accounts.range(low..=high).next().map(|(k, a)| (*k, *a))
        };
        let buckets = self.buckets();
        for depth in 0..buckets {
            match self.levels[depth].get(&prefix(key, depth)) {
                None => return (siblings, None),
                Some(s) if s.accounts == 1 => return (siblings, only(depth)),
                Some(_) => {
                    let sibling = prefix(key, depth + 1) ^ 1;
                    let root = self.levels[depth + 1].get(&sibling);
                    siblings.push(root.map_or(Hash::ZERO, |s| s.root));
                }
            }
        }
        // Within the bucket: rehashed from its accounts.
        let (low, high) = prefix_bounds(prefix(key, buckets), buckets);
        let leaves: Vec<(PublicKey, Hash)> = accounts
            .range(low..=high)
            .map(|(k, a)| (*k, leaf_hash(k, a)))
            .collect();
        let mut here = &leaves[..];
        let mut depth = buckets;
        loop {
            match here {
                [] => return (siblings, None),
                [(k, _)] => return (siblings, accounts.get(k).map(|a| (*k, *a))),
                _ => {
                    let (left, right) =
                        here.split_at(here.partition_point(|(k, _)| !bit(k, depth)));
                    let (sibling, next) = if bit(key, depth) {
                        (left, right)
                    } else {
                        (right, left)
                    };
                    siblings.push(subtree(sibling, depth + 1));
                    here = next;
                    depth += 1;
                }
            }
        }
    }
}

/// `base` (in key order, none empty) with `touched` (sorted by key) laid over it, the accounts
/// left empty dropped: the accounts after a commit, in key order.
pub(super) fn merged<'a>(
    base: impl Iterator<Item = (&'a PublicKey, &'a Account)>,
    touched: &'a [(PublicKey, Account)],
) -> impl Iterator<Item = (&'a PublicKey, &'a Account)> {
    let mut base = base.peekable();
    let mut touched = touched.iter().map(|(k, a)| (k, a)).peekable();
    std::iter::from_fn(move || {
        loop {
            let next = match (base.peek(), touched.peek()) {
                (None, None) => return None,
                (Some(_), None) => base.next(),
                (None, Some(_)) => touched.next(),
                (Some((bk, _)), Some((tk, _))) => match (*bk).cmp(tk) {
                    std::cmp::Ordering::Less => base.next(),
                    std::cmp::Ordering::Equal => {
                        base.next();
                        touched.next()
                    }
                    std::cmp::Ordering::Greater => touched.next(),
                },
            };
            // An account left empty is not stored (`Ledger::store`).
            if let Some((_, account)) = next
                && *account == Account::default()
            {
                continue;
            }
            return next;
        }
    })
}

/// An account proven against a state root: the path of its key in the accounts' tree and the
/// other half of the state root (module docs). What a node serves at
/// `GET /accounts/{address}?proof=true`, and what a light client checks against a certified
/// header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProof {
    /// The siblings along the key's path, from the root's children down.
    pub siblings: Vec<Hash>,
    /// The account whose leaf ends the path: the key's own (its account), another key's that
    /// shares the path (the key has no account), or none: the path ends in an empty subtree
    /// (the key has no account).
    pub leaf: Option<(PublicKey, Account)>,
    /// The staking state's root (`Staking::root`), which the state root covers beside the
    /// accounts; `None` for a ledger without staking state.
    pub staking_root: Option<Hash>,
}

/// Why a proof does not prove an account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// More siblings than a key has bits.
    #[error("the proof is {0} levels deep; no path in the accounts' tree is deeper than 256")]
    TooDeep(usize),
    /// The leaf that ends the path is of a key that does not share the path.
    #[error("the proof ends at the leaf of {0}, which is not on the path of the key asked for")]
    OffPath(String),
    /// The proof's leaf or siblings are not those of the tree under this state root.
    #[error("the proof gives state root {computed}, but the certified header's is {certified}")]
    RootMismatch {
        /// The state root the proof gives, in hex.
        computed: String,
        /// The certified one, in hex.
        certified: String,
    },
}

impl AccountProof {
    /// The account of `key` if this proof holds under `state_root`: the leaf and the siblings
    /// hash up to the accounts' root, and that root with `staking_root` to the state root.
    pub fn verify(&self, key: &PublicKey, state_root: &Hash) -> Result<Account, ProofError> {
        let depth = self.siblings.len();
        if depth > MAX_PROOF_DEPTH {
            return Err(ProofError::TooDeep(depth));
        }
        let (mut hash, account) = match &self.leaf {
            None => (Hash::ZERO, Account::default()),
            Some((other, account)) => {
                if (0..depth).any(|d| bit(other, d) != bit(key, d)) {
                    return Err(ProofError::OffPath(hex::encode(other.0)));
                }
                let mine = if other == key {
                    *account
                } else {
                    Account::default()
                };
                (leaf_hash(other, account), mine)
            }
        };
        for (depth, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(key, depth) {
                node_hash(sibling, &hash)
            } else {
                node_hash(&hash, sibling)
            };
        }
        let computed = super::state_root_of(hash, self.staking_root);
        if computed != *state_root {
            return Err(ProofError::RootMismatch {
                computed: hex::encode(computed.0),
                certified: hex::encode(state_root.0),
            });
        }
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Amount;
    use proptest::prelude::*;

    fn key(bytes: &[u8]) -> PublicKey {
        let mut k = [0u8; 32];
        k[..bytes.len()].copy_from_slice(bytes);
        PublicKey(k)
    }

    fn account(balance: u64, nonce: u64) -> Account {
        Account {
            balance: Amount(balance),
            nonce,
        }
    }

    /// The root by the definition alone, from nothing kept.
    fn reference_root(accounts: &BTreeMap<PublicKey, Account>) -> Hash {
        let leaves: Vec<(PublicKey, Hash)> = accounts
            .iter()
            .map(|(k, a)| (*k, leaf_hash(k, a)))
            .collect();
        subtree(&leaves, 0)
    }

    #[test]
    fn an_empty_tree_is_zero_and_a_lone_account_is_its_leaf() {
        assert_eq!(AccountsTree::build(&BTreeMap::new()).root(), Hash::ZERO);
        let k = key(&[0x80, 1, 2]);
        let one = BTreeMap::from([(k, account(5, 1))]);
        assert_eq!(
            AccountsTree::build(&one).root(),
            leaf_hash(&k, &account(5, 1))
        );
    }

    #[test]
    fn two_accounts_deep_in_a_bucket_hash_through_every_level_they_share() {
        // They share 20 bits: 20 nodes with an empty sibling, then the split.
        let (a, b) = (key(&[7, 7, 0x10]), key(&[7, 7, 0x18]));
        let accounts = BTreeMap::from([(a, account(1, 0)), (b, account(2, 0))]);
        let mut expected = node_hash(
            &leaf_hash(&a, &account(1, 0)),
            &leaf_hash(&b, &account(2, 0)),
        );
        for depth in (0..20).rev() {
            expected = if bit(&a, depth) {
                node_hash(&Hash::ZERO, &expected)
            } else {
                node_hash(&expected, &Hash::ZERO)
            };
        }
        let tree = AccountsTree::build(&accounts);
        assert_eq!(tree.root(), expected);
        let (siblings, leaf) = tree.path(&accounts, &a);
        assert_eq!(siblings.len(), 21);
        assert_eq!(leaf, Some((a, account(1, 0))));
    }

    #[test]
    fn the_prefix_bounds_hold_exactly_the_keys_of_the_prefix() {
        let (low, high) = prefix_bounds(0xabcd, 16);
        assert_eq!(&low.0[..3], &[0xab, 0xcd, 0]);
        assert_eq!(&high.0[..3], &[0xab, 0xcd, 0xff]);
        let (low, high) = prefix_bounds(1, 1);
        assert_eq!((low.0[0], high.0[0]), (0x80, 0xff));
        assert_eq!(prefix(&key(&[0xab, 0xcd, 0xef]), 12), 0xabc);
    }

    fn arb_accounts() -> impl Strategy<Value = BTreeMap<PublicKey, Account>> {
        // Keys from a small alphabet of prefixes, so buckets and shared paths are common.
        let k = (0u8..4, 0u8..3, any::<[u8; 2]>()).prop_map(|(a, b, c)| key(&[a, b, c[0], c[1]]));
        prop::collection::btree_map(k, (1u64..1000, 0u64..3), 0..40).prop_map(|m| {
            m.into_iter()
                .map(|(k, (b, n))| (k, account(b, n)))
                .collect()
        })
    }

    proptest! {
        /// Updated by deltas in any order, the tree's root is the definition's root of the
        /// accounts it ends with.
        #[test]
        fn deltas_keep_the_root_of_the_definition(
            start in arb_accounts(),
            steps in prop::collection::vec(arb_accounts(), 1..4),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut accounts = start;
            let mut tree = AccountsTree::build(&accounts);
            prop_assert_eq!(tree.root(), reference_root(&accounts));
            for step in steps {
                let mut touched: BTreeMap<PublicKey, Account> = step;
                for r in &removed {
                    if !accounts.is_empty() {
                        let k = *r.get(&accounts.keys().copied().collect::<Vec<_>>());
                        touched.insert(k, Account::default());
                    }
                }
                let touched: Vec<(PublicKey, Account)> = touched.into_iter().collect();
                let delta = tree.delta(&accounts, &touched);
                let staged = tree.root_with(&delta);
                for (k, a) in &touched {
                    if *a == Account::default() { accounts.remove(k); } else { accounts.insert(*k, *a); }
                }
                tree.commit(delta, &accounts);
                prop_assert_eq!(staged, tree.root());
                prop_assert_eq!(tree.root(), reference_root(&accounts));
                prop_assert_eq!(&tree, &AccountsTree::build(&accounts));
            }
        }

        /// Every key's path proves its account (or none), and any change of the leaf or of a
        /// sibling fails.
        #[test]
        fn paths_prove_each_key_and_tampering_fails(
            accounts in arb_accounts(),
            probe in (0u8..4, 0u8..3, any::<[u8; 2]>()).prop_map(|(a, b, c)| key(&[a, b, c[0], c[1]])),
            flip in any::<prop::sample::Index>(),
        ) {
            let tree = AccountsTree::build(&accounts);
            let state_root = super::super::state_root_of(tree.root(), None);
            for k in accounts.keys().chain([&probe]) {
                let (siblings, leaf) = tree.path(&accounts, k);
                let proof = AccountProof { siblings, leaf, staking_root: None };
                let proven = proof.verify(k, &state_root);
                prop_assert_eq!(proven, Ok(accounts.get(k).copied().unwrap_or_default()));
                // Another balance in the leaf.
                if let Some((lk, la)) = proof.leaf {
                    let mut bad = proof.clone();
                    bad.leaf = Some((lk, account(la.balance.0 + 1, la.nonce)));
                    let refused = matches!(bad.verify(k, &state_root), Err(ProofError::RootMismatch { .. }));
                    prop_assert!(refused, "a leaf with another balance is refused");
                }
                // A sibling changed.
                if !proof.siblings.is_empty() {
                    let mut bad = proof.clone();
                    let i = flip.index(bad.siblings.len());
                    bad.siblings[i].0[0] ^= 1;
                    prop_assert!(bad.verify(k, &state_root).is_err());
                }
                // Claiming the key has nothing, where it has an account.
                if accounts.contains_key(k) {
                    let mut bad = proof.clone();
                    bad.leaf = None;
                    prop_assert!(bad.verify(k, &state_root).is_err());
                }
                // A staking root where there is none.
                let mut bad = proof.clone();
                bad.staking_root = Some(Hash::ZERO);
                prop_assert!(bad.verify(k, &state_root).is_err());
            }
        }
    }

    /// The kept levels follow the number of accounts up and down, and the root stays the
    /// definition's through every rebuild; every key's proof holds at each size.
    #[test]
    fn the_kept_levels_follow_growth_and_shrinking_and_the_root_never_moves_from_the_definition() {
        let keys: Vec<PublicKey> = (0u32..3000)
            .map(|i| PublicKey(*blake3::hash(&i.to_be_bytes()).as_bytes()))
            .collect();
        let mut accounts = BTreeMap::new();
        let mut tree = AccountsTree::build(&accounts);
        let mut depths = Vec::new();
        let batches: Vec<&[PublicKey]> = keys.chunks(250).collect();
        let steps = batches
            .iter()
            .map(|b| (*b, account(7, 1)))
            .chain(batches.iter().map(|b| (*b, Account::default())));
        for (batch, value) in steps {
            let mut touched: Vec<(PublicKey, Account)> =
                batch.iter().map(|k| (*k, value)).collect();
            touched.sort_by_key(|(k, _)| *k);
            let delta = tree.delta(&accounts, &touched);
            for (k, a) in &touched {
                if *a == Account::default() {
                    accounts.remove(k);
                } else {
                    accounts.insert(*k, *a);
                }
            }
            tree.commit(delta, &accounts);
            assert_eq!(tree.root(), reference_root(&accounts));
            depths.push(tree.buckets());
            let root = super::super::state_root_of(tree.root(), None);
            for k in keys.iter().step_by(97) {
                let (siblings, leaf) = tree.path(&accounts, k);
                let proof = AccountProof {
                    siblings,
                    leaf,
                    staking_root: None,
                };
                assert_eq!(
                    proof.verify(k, &root),
                    Ok(accounts.get(k).copied().unwrap_or_default())
                );
            }
        }
        // 250 accounts keep 4 levels, 3000 keep 8 (within one of the aim), none keeps 0.
        assert!(depths[0] >= 3 && depths[0] <= 5, "{depths:?}");
        assert!(depths.iter().max().unwrap() >= &7, "{depths:?}");
        assert_eq!(tree.buckets(), 0);
        assert_eq!(tree.root(), Hash::ZERO);
    }

    #[test]
    fn a_leaf_off_the_path_and_a_path_too_deep_are_named() {
        let (a, b) = (key(&[0x00, 1]), key(&[0x80, 1]));
        let accounts = BTreeMap::from([(a, account(1, 0)), (b, account(2, 0))]);
        let tree = AccountsTree::build(&accounts);
        let root = super::super::state_root_of(tree.root(), None);
        let (siblings, _) = tree.path(&accounts, &a);
        // b's leaf put at the end of a's path.
        let proof = AccountProof {
            siblings,
            leaf: Some((b, account(2, 0))),
            staking_root: None,
        };
        assert!(matches!(
            proof.verify(&a, &root),
            Err(ProofError::OffPath(_))
        ));
        let deep = AccountProof {
            siblings: vec![Hash::ZERO; 257],
            leaf: None,
            staking_root: None,
        };
        assert_eq!(deep.verify(&a, &root), Err(ProofError::TooDeep(257)));
    }
}
