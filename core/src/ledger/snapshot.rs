//! Snapshots of the ledger: what a node serves so that another can start from a recent state
//! instead of replaying every block, and the checks that make every piece of it verifiable on
//! its own against a certified state root.
//!
//! A snapshot of the ledger after height `h` is a `Manifest` and its `Chunk`s. The manifest cuts
//! the accounts' Merkle tree (`tree`) at a depth `d` (`depth`): one `Part` per `d`-bit key
//! prefix, in prefix order —
//!
//! - `Empty`: no account has the prefix;
//! - `Leaf(key, account)`: exactly one does, given in full (nothing to fetch);
//! - `Chunk(root)`: the root of the subtree under the prefix, whose accounts make up chunk
//!   number `prefix`, fetched separately.
//!
//! It also carries the staking state. `Manifest::verify` joins the parts up the tree as the
//! ledger does and checks that the accounts' root and the staking root give the state root of a
//! certified header of `h`: the manifest is then the real one, part by part (a forged part would
//! be a hash collision). `Manifest::check` then checks a chunk alone: its accounts sorted,
//! distinct, non-empty, all under the chunk's prefix, hashing to the part's root. A chunk that
//! fails was sent by a peer that lied (or served another snapshot): the state sync avoids it.
//!
//! A `Chunk` part may in truth hold one account (a part's label cannot be checked when its
//! sibling is not empty: the parent hashes the same either way): its chunk is then that one
//! account, and it checks like any other. An honest maker gives lone accounts as `Leaf`.
//!
//! `Restore` gathers the checked chunks and gives the ledger when all are in.
//!
//! The depth is chosen (`choose_depth`) so that no chunk holds more than `MAX_CHUNK_ACCOUNTS`
//! accounts; a ledger where even 16 bits leave a prefix fuller than that (keys ground to share a
//! prefix) has no snapshot (`SnapshotError::TooDense`): it still syncs by blocks.

use std::collections::BTreeMap;

use super::tree::{self, Subtree};
use super::{Account, Ledger};
use crate::crypto::PublicKey;
use crate::staking::{Staking, StakingParams, StakingRecord};
use crate::types::{Hash, Height};

/// The most accounts in one chunk: some 200 kB encoded, well inside a message.
pub const MAX_CHUNK_ACCOUNTS: usize = 4096;

/// The deepest a manifest cuts the tree: 65,536 parts.
pub const MAX_SNAPSHOT_DEPTH: u8 = 16;

/// One key prefix of a snapshot (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// No account has the prefix.
    Empty,
    /// The one account with the prefix.
    Leaf(PublicKey, Account),
    /// The root of the subtree under the prefix, whose accounts are a chunk.
    Chunk(Hash),
}

/// What a snapshot of the ledger after `height` is made of, apart from its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The height whose block the ledger is the state after.
    pub height: Height,
    /// The bits of the prefix that parts are cut at.
    pub depth: u8,
    /// `2^depth` parts, in prefix order.
    pub parts: Vec<Part>,
    /// The staking state; `None` for a ledger without.
    pub staking: Option<StakingRecord>,
}

/// The accounts under one prefix of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The manifest's height.
    pub height: Height,
    /// The prefix: the part's index.
    pub index: u32,
    /// Sorted by key, none empty.
    pub accounts: Vec<(PublicKey, Account)>,
}

/// Why a snapshot cannot be made or a manifest is not the one of a certified state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Some 16-bit key prefix holds more than `MAX_CHUNK_ACCOUNTS` accounts.
    #[error(
        "some key prefix of 16 bits holds more than {MAX_CHUNK_ACCOUNTS} accounts: no \
         snapshot can be cut (the chain still syncs by blocks)"
    )]
    TooDense,
    /// `depth` above `MAX_SNAPSHOT_DEPTH`, or not `2^depth` parts.
    #[error("the manifest has {parts} parts at depth {depth}: it needs 2^depth, depth at most 16")]
    Shape {
        /// The manifest's depth.
        depth: u8,
        /// Its number of parts.
        parts: usize,
    },
    /// A `Leaf` part whose key is not under its prefix.
    #[error("part {0} gives an account whose key is not under its prefix")]
    LeafOffPrefix(u32),
    /// A `Leaf` part with an empty account (an empty account is never stored).
    #[error("part {0} gives an empty account")]
    EmptyLeaf(u32),
    /// The staking record breaks a rule of the staking state.
    #[error("the manifest's staking state is refused: {0}")]
    Staking(String),
    /// The parts and the staking state do not give the certified state root.
    #[error("the manifest gives state root {computed}, but the certified header's is {certified}")]
    RootMismatch {
        /// The state root the manifest gives, in hex.
        computed: String,
        /// The certified one, in hex.
        certified: String,
    },
}

/// Why a chunk is not the one of its part: its sender lied, or served another snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Another height than the manifest's.
    #[error("the chunk is of height {got}, the manifest of {expected}")]
    WrongHeight {
        /// The manifest's.
        expected: Height,
        /// The chunk's.
        got: Height,
    },
    /// No such part, or a part that is not a `Chunk`.
    #[error("the manifest has no chunk {0}")]
    NoSuchChunk(u32),
    /// No account, or more than `MAX_CHUNK_ACCOUNTS`.
    #[error("the chunk holds {0} accounts: a chunk holds 1 to {MAX_CHUNK_ACCOUNTS}")]
    Size(usize),
    /// Keys not strictly ascending, an empty account, or a key off the chunk's prefix.
    #[error("the chunk's accounts are not sorted, distinct, non-empty and under its prefix")]
    Malformed,
    /// The accounts do not hash to the part's root.
    #[error("the chunk's accounts do not hash to the manifest's root for it")]
    RootMismatch,
}

/// The depth at which no prefix holds more than `MAX_CHUNK_ACCOUNTS` of `accounts`.
fn choose_depth(accounts: &BTreeMap<PublicKey, Account>) -> Result<u8, SnapshotError> {
    // Counts per 16-bit prefix, then summed up level by level.
    let mut counts = vec![0usize; 1 << MAX_SNAPSHOT_DEPTH];
    for key in accounts.keys() {
        counts[tree::prefix(key, usize::from(MAX_SNAPSHOT_DEPTH)) as usize] += 1;
    }
    let mut levels = vec![counts];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let above: Vec<usize> = below.chunks(2).map(|p| p.iter().sum()).collect();
        levels.push(above);
    }
    // levels[i] is depth 16 - i.
    for depth in 0..=MAX_SNAPSHOT_DEPTH {
        let level = &levels[usize::from(MAX_SNAPSHOT_DEPTH - depth)];
        if level.iter().all(|&n| n <= MAX_CHUNK_ACCOUNTS) {
            return Ok(depth);
        }
    }
    Err(SnapshotError::TooDense)
}

impl Ledger {
    /// The manifest of a snapshot of this ledger, the state after `height`.
    pub fn snapshot_manifest(&self, height: Height) -> Result<Manifest, SnapshotError> {
        let depth = choose_depth(&self.accounts)?;
        let parts = (0..1u32 << depth)
            .map(|index| {
                let mut under = self.accounts_under(index, depth);
                match (under.next(), under.next()) {
                    (None, _) => Part::Empty,
                    (Some((k, a)), None) => Part::Leaf(*k, *a),
                    (Some(first), Some(second)) => {
                        let leaves: Vec<(PublicKey, Hash)> = [first, second]
                            .into_iter()
                            .chain(under)
                            .map(|(k, a)| (*k, tree::leaf_hash(k, a)))
                            .collect();
                        Part::Chunk(tree::subtree(&leaves, usize::from(depth)))
                    }
                }
            })
            .collect();
        Ok(Manifest {
            height,
            depth,
            parts,
            staking: self.staking.as_ref().map(Staking::record),
        })
    }

    /// Chunk `index` of this ledger's snapshot cut at `depth` (`None`: no such part).
    pub fn snapshot_chunk(&self, height: Height, depth: u8, index: u32) -> Option<Chunk> {
        if depth > MAX_SNAPSHOT_DEPTH || u64::from(index) >= 1u64 << depth {
            return None;
        }
        Some(Chunk {
            height,
            index,
            accounts: self
                .accounts_under(index, depth)
                .map(|(k, a)| (*k, *a))
                .collect(),
        })
    }

    /// The accounts under the `depth`-bit prefix `index`, in key order.
    fn accounts_under(
        &self,
        index: u32,
        depth: u8,
    ) -> impl Iterator<Item = (&PublicKey, &Account)> {
        let (low, high) = tree::prefix_bounds(index, usize::from(depth));
        self.accounts.range(low..=high)
    }
}

impl Manifest {
    /// Checks that this manifest is the snapshot of the state whose root is `state_root` (the
    /// certified header's of `height`): its shape, every `Leaf` under its prefix, the staking
    /// record under the chain's `params`, and the root the parts join up to.
    pub fn verify(&self, params: StakingParams, state_root: &Hash) -> Result<(), SnapshotError> {
        let depth = usize::from(self.depth);
        if self.depth > MAX_SNAPSHOT_DEPTH || self.parts.len() != 1 << depth {
            return Err(SnapshotError::Shape {
                depth: self.depth,
                parts: self.parts.len(),
            });
        }
        let mut level: Vec<Option<Subtree>> = Vec::with_capacity(self.parts.len());
        for (index, part) in self.parts.iter().enumerate() {
            let index = index as u32;
            level.push(match part {
                Part::Empty => None,
                Part::Leaf(key, account) => {
                    if tree::prefix(key, depth) != index {
                        return Err(SnapshotError::LeafOffPrefix(index));
                    }
                    if *account == Account::default() {
                        return Err(SnapshotError::EmptyLeaf(index));
                    }
                    Some(Subtree::leaf(key, account))
                }
                // One account or more: counted as two, it is hashed with its sibling as a node
                // is (module docs: when it holds one, its sibling is not empty).
                Part::Chunk(root) => Some(Subtree::many(*root)),
            });
        }
        while level.len() > 1 {
            level = level.chunks(2).map(|p| tree::join(p[0], p[1])).collect();
        }
        let accounts_root = level[0].map_or(Hash::ZERO, |s| s.root);
        let staking_root = match &self.staking {
            Some(record) => {
                Staking::from_record(record.clone(), params)
                    .map_err(|e| SnapshotError::Staking(e.to_string()))?;
                Some(record.root())
            }
            None => None,
        };
        let computed = super::state_root_of(accounts_root, staking_root);
        if computed != *state_root {
            return Err(SnapshotError::RootMismatch {
                computed: hex::encode(computed.0),
                certified: hex::encode(state_root.0),
            });
        }
        Ok(())
    }

    /// The indexes of the parts to fetch as chunks.
    pub fn chunks(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Part::Chunk(_)))
            .map(|(i, _)| i as u32)
    }

    /// Checks `chunk` against this manifest (verified first): it is exactly the accounts under
    /// its prefix.
    pub fn check(&self, chunk: &Chunk) -> Result<(), ChunkError> {
        if chunk.height != self.height {
            return Err(ChunkError::WrongHeight {
                expected: self.height,
                got: chunk.height,
            });
        }
        let Some(Part::Chunk(root)) = self.parts.get(chunk.index as usize) else {
            return Err(ChunkError::NoSuchChunk(chunk.index));
        };
        let n = chunk.accounts.len();
        if n == 0 || n > MAX_CHUNK_ACCOUNTS {
            return Err(ChunkError::Size(n));
        }
        let depth = usize::from(self.depth);
        let sorted = chunk.accounts.windows(2).all(|w| w[0].0 < w[1].0);
        let well_formed = chunk
            .accounts
            .iter()
            .all(|(k, a)| *a != Account::default() && tree::prefix(k, depth) == chunk.index);
        if !sorted || !well_formed {
            return Err(ChunkError::Malformed);
        }
        let leaves: Vec<(PublicKey, Hash)> = chunk
            .accounts
            .iter()
            .map(|(k, a)| (*k, tree::leaf_hash(k, a)))
            .collect();
        if tree::subtree(&leaves, depth) != *root {
            return Err(ChunkError::RootMismatch);
        }
        Ok(())
    }
}

/// A snapshot being put together: a verified manifest and the chunks checked against it.
pub struct Restore {
    manifest: Manifest,
    params: StakingParams,
    /// Chunks still missing, by index.
    missing: std::collections::BTreeSet<u32>,
    accounts: Vec<(PublicKey, Account)>,
}

impl Restore {
    /// Starts from `manifest`, checked against the certified `state_root` of its height.
    pub fn new(
        manifest: Manifest,
        params: StakingParams,
        state_root: &Hash,
    ) -> Result<Restore, SnapshotError> {
        manifest.verify(params, state_root)?;
        let missing = manifest.chunks().collect();
        let accounts = manifest
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Leaf(k, a) => Some((*k, *a)),
                _ => None,
            })
            .collect();
        Ok(Restore {
            manifest,
            params,
            missing,
            accounts,
        })
    }

    /// The manifest being restored.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The chunks not in yet, in index order.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.missing.iter().copied()
    }

    /// Takes `chunk` if it is one still missing and checks; a chunk already in is ignored
    /// (`Ok(false)`), a bad one refused (its sender lied).
    pub fn add(&mut self, chunk: Chunk) -> Result<bool, ChunkError> {
        if !self.missing.contains(&chunk.index) {
            return Ok(false);
        }
        self.manifest.check(&chunk)?;
        self.missing.remove(&chunk.index);
        self.accounts.extend(chunk.accounts);
        Ok(true)
    }

    /// The ledger, once every chunk is in (`None` before). Its state root is the manifest's:
    /// every part was checked against it.
    pub fn finish(self) -> Option<Ledger> {
        if !self.missing.is_empty() {
            return None;
        }
        let staking = match self.manifest.staking {
            // Checked by `verify` already.
            Some(record) => Staking::from_record(record, self.params).ok(),
            None => None,
        };
        Some(Ledger::from_parts(self.accounts, staking))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Amount;

    fn key(i: u32) -> PublicKey {
        PublicKey(*blake3::hash(&i.to_be_bytes()).as_bytes())
    }

    fn ledger(n: u32) -> Ledger {
        Ledger::from_accounts((0..n).map(|i| {
            (
                key(i),
                Account {
                    balance: Amount(u64::from(i) + 1),
                    nonce: u64::from(i % 3),
                },
            )
        }))
    }

    fn params() -> StakingParams {
        StakingParams::from(&crate::validators::ConsensusParams::default())
    }

    /// The whole round trip: manifest verified, every chunk checked, the same ledger back.
    fn round_trip(source: &Ledger) -> Ledger {
        let manifest = source.snapshot_manifest(Height(7)).unwrap();
        let mut restore = Restore::new(manifest.clone(), params(), &source.state_root()).unwrap();
        for index in manifest.chunks().collect::<Vec<_>>() {
            let chunk = source
                .snapshot_chunk(Height(7), manifest.depth, index)
                .unwrap();
            assert_eq!(restore.add(chunk.clone()), Ok(true));
            assert_eq!(restore.add(chunk), Ok(false), "a chunk twice is ignored");
        }
        assert_eq!(restore.missing().count(), 0);
        restore.finish().unwrap()
    }

    #[test]
    fn small_and_large_ledgers_come_back_whole_from_their_snapshot() {
        for n in [0, 1, 2, 50, 5000, 20_000] {
            let source = ledger(n);
            let back = round_trip(&source);
            assert_eq!(back.state_root(), source.state_root(), "{n} accounts");
            assert_eq!(back, source, "{n} accounts");
        }
        // On the wire and on disk: the codec's one encoding, read back bounded.
        let source = ledger(5000);
        let m = source.snapshot_manifest(Height(9)).unwrap();
        let bytes = crate::codec::encode(&m);
        assert_eq!(
            crate::codec::decode::<Manifest>(&bytes, bytes.len()),
            Ok(m.clone())
        );
        assert!(crate::codec::decode::<Manifest>(&bytes, bytes.len() - 1).is_err());
        let c = source.snapshot_chunk(Height(9), m.depth, 0).unwrap();
        let bytes = crate::codec::encode(&c);
        assert_eq!(crate::codec::decode::<Chunk>(&bytes, bytes.len()), Ok(c));
        // 20,000 accounts need chunks under 4,096: depth 3 at least.
        let m = ledger(20_000).snapshot_manifest(Height(1)).unwrap();
        assert!(m.depth >= 3, "{}", m.depth);
        assert_eq!(ledger(50).snapshot_manifest(Height(1)).unwrap().depth, 0);
    }

    /// A ledger with staking state (a genesis's) comes back with it, and a manifest whose
    /// staking record was changed is refused.
    #[test]
    fn the_staking_state_comes_back_and_a_changed_one_is_refused() {
        let (_, validators) = crate::validators::insecure_dev_validators(&[100; 4]);
        let genesis = crate::validators::Genesis {
            chain_id: "snap".into(),
            genesis_time_ms: crate::types::TimestampMs(0),
            balances: validators
                .iter()
                .map(|v| crate::validators::GenesisBalance {
                    account: v.public_key,
                    amount: Amount(1_000),
                })
                .collect(),
            validators,
            params: Default::default(),
        };
        let source = Ledger::from_genesis(&genesis);
        assert!(source.staking().is_some());
        let back = round_trip(&source);
        assert_eq!(back, source);
        assert_eq!(
            back.staking().map(Staking::root),
            source.staking().map(Staking::root)
        );
        let mut m = source.snapshot_manifest(Height(7)).unwrap();
        if let Some(record) = &mut m.staking {
            record.registry[0].bond = Amount(record.registry[0].bond.0 + 1);
        }
        assert!(m.verify(params(), &source.state_root()).is_err());
        let mut none = source.snapshot_manifest(Height(7)).unwrap();
        none.staking = None;
        assert!(matches!(
            none.verify(params(), &source.state_root()),
            Err(SnapshotError::RootMismatch { .. })
        ));
    }

    #[test]
    fn a_chunk_altered_in_any_way_is_refused_and_names_why() {
        let source = ledger(9000);
        let m = source.snapshot_manifest(Height(3)).unwrap();
        let index = m.chunks().next().unwrap();
        let good = source.snapshot_chunk(Height(3), m.depth, index).unwrap();
        assert_eq!(m.check(&good), Ok(()));
        let mut richer = good.clone();
        richer.accounts[0].1.balance = Amount(richer.accounts[0].1.balance.0 + 1);
        let mut fewer = good.clone();
        fewer.accounts.pop();
        let mut unsorted = good.clone();
        unsorted.accounts.swap(0, 1);
        let mut foreign = good.clone();
        let other = m.chunks().nth(1).unwrap();
        foreign.accounts[0] = source
            .snapshot_chunk(Height(3), m.depth, other)
            .unwrap()
            .accounts[0];
        foreign.accounts.sort_by_key(|(k, _)| *k);
        let mut empty_account = good.clone();
        empty_account.accounts[0].1 = Account::default();
        let mut elsewhere = good.clone();
        elsewhere.index = other;
        let mut later = good.clone();
        later.height = Height(4);
        let cases = [
            (richer, ChunkError::RootMismatch),
            (fewer, ChunkError::RootMismatch),
            (unsorted, ChunkError::Malformed),
            (foreign, ChunkError::Malformed),
            (empty_account, ChunkError::Malformed),
            (elsewhere, ChunkError::Malformed),
            (
                later,
                ChunkError::WrongHeight {
                    expected: Height(3),
                    got: Height(4),
                },
            ),
            (
                Chunk {
                    height: Height(3),
                    index,
                    accounts: vec![],
                },
                ChunkError::Size(0),
            ),
        ];
        for (chunk, expected) in cases {
            assert_eq!(m.check(&chunk), Err(expected));
        }
        let mut restore = Restore::new(m.clone(), params(), &source.state_root()).unwrap();
        let mut bad = good.clone();
        bad.accounts.pop();
        assert!(restore.add(bad).is_err());
        assert!(restore.missing().any(|i| i == index), "still missing");
    }

    #[test]
    fn a_forged_manifest_is_refused_against_the_certified_root() {
        let source = ledger(9000);
        let root = source.state_root();
        let m = source.snapshot_manifest(Height(3)).unwrap();
        assert_eq!(m.verify(params(), &root), Ok(()));
        let index = m.chunks().next().unwrap() as usize;
        // A chunk's root changed.
        let mut forged = m.clone();
        forged.parts[index] = Part::Chunk(Hash([9; 32]));
        assert!(matches!(
            forged.verify(params(), &root),
            Err(SnapshotError::RootMismatch { .. })
        ));
        // A chunk dropped (claimed empty).
        let mut dropped = m.clone();
        dropped.parts[index] = Part::Empty;
        assert!(matches!(
            dropped.verify(params(), &root),
            Err(SnapshotError::RootMismatch { .. })
        ));
        // A leaf put under another prefix.
        let mut off = m.clone();
        off.parts[index] = Part::Leaf(key(0), source.account(&key(0)));
        let off_prefix = tree::prefix(&key(0), usize::from(m.depth)) as usize != index;
        if off_prefix {
            assert_eq!(
                off.verify(params(), &root),
                Err(SnapshotError::LeafOffPrefix(index as u32))
            );
        }
        // Parts cut at another depth than they claim.
        let mut shape = m.clone();
        shape.parts.pop();
        assert!(matches!(
            shape.verify(params(), &root),
            Err(SnapshotError::Shape { .. })
        ));
        // The right manifest against another state.
        assert!(matches!(
            m.verify(params(), &ledger(9001).state_root()),
            Err(SnapshotError::RootMismatch { .. })
        ));
    }

    fn at(first: u8, last: u8) -> PublicKey {
        let mut k = [0u8; 32];
        k[0] = first;
        k[31] = last;
        PublicKey(k)
    }

    fn one(balance: u64) -> Account {
        Account {
            balance: Amount(balance),
            nonce: 0,
        }
    }

    /// A lone account given as a `Chunk` part beside a non-empty sibling hashes as its leaf
    /// would, so the manifest verifies: its chunk is that one account, and the restore
    /// completes with the right state. Beside an empty sibling the label shows (the parent
    /// would hash it as a node), and the manifest is refused.
    #[test]
    fn a_lone_account_labelled_as_a_chunk_restores_or_is_refused_never_misleads() {
        // Depth 1: part 0 holds A and C, part 1 holds B alone.
        let (a, b, c) = (at(0x00, 1), at(0x80, 2), at(0x40, 3));
        let source = Ledger::from_accounts([(a, one(1)), (b, one(2)), (c, one(3))]);
        let root = source.state_root();
        let mut m = source.snapshot_manifest(Height(1)).unwrap();
        m.depth = 1;
        let chunk0 = source.snapshot_chunk(Height(1), 1, 0).unwrap();
        let leaves: Vec<_> = chunk0
            .accounts
            .iter()
            .map(|(k, a)| (*k, tree::leaf_hash(k, a)))
            .collect();
        m.parts = vec![
            Part::Chunk(tree::subtree(&leaves, 1)),
            Part::Chunk(tree::leaf_hash(&b, &one(2))),
        ];
        let mut restore = Restore::new(m.clone(), params(), &root).unwrap();
        assert_eq!(restore.add(chunk0), Ok(true));
        let lone = source.snapshot_chunk(Height(1), 1, 1).unwrap();
        assert_eq!(lone.accounts.len(), 1);
        assert_eq!(restore.add(lone), Ok(true));
        assert_eq!(restore.finish().unwrap(), source);

        // Depth 2: A alone in part 0 beside an empty part 1, B alone in part 2.
        let source = Ledger::from_accounts([(a, one(1)), (b, one(2))]);
        let root = source.state_root();
        let mut m = source.snapshot_manifest(Height(1)).unwrap();
        m.depth = 2;
        m.parts = vec![
            Part::Chunk(tree::leaf_hash(&a, &one(1))),
            Part::Empty,
            Part::Leaf(b, one(2)),
            Part::Empty,
        ];
        assert!(matches!(
            m.verify(params(), &root),
            Err(SnapshotError::RootMismatch { .. })
        ));
        m.parts[0] = Part::Leaf(a, one(1));
        assert_eq!(m.verify(params(), &root), Ok(()));
        assert_eq!(m.chunks().count(), 0, "nothing to fetch");
    }
}
