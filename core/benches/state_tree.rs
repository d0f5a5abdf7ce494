//! What the accounts' Merkle tree (`ledger::tree`) costs: building it, a block's update of it,
//! one account's proof, against what the flat state root it replaced cost per block.
//!
//! Two ledgers: a million accounts (a large chain) and a hundred (a small devnet, where every
//! block touches every validator's account). Keys are BLAKE3 of the account's index, so they
//! are uniform, as Ed25519 public keys are; every account has a nonzero balance.
//!
//! - `state_tree_build/{n}_accounts`: `Ledger::from_accounts` of `n` accounts given in key order
//!   (as `Ledger::accounts` lists them): the accounts map and the whole tree, O(n) hashes. Once
//!   per node start, so few samples (`sample_size(10)`, flat sampling); the ledger is dropped
//!   outside the timed part.
//! - `state_tree_block/{n}_accounts_{t}_touched`: one block's update: `Ledger::commit` of `t`
//!   accounts (sorted by key, with new balances and nonces), then `Ledger::state_root`. At a
//!   million accounts `t` = 1,000 accounts picked by index (so at random places in the tree); at
//!   a hundred, all of them. Each iteration commits one of two prebuilt sets of new accounts,
//!   the other one than the iteration before, on the same ledger: every iteration is a real
//!   change of every touched leaf, and no ledger is cloned. Reported per touched account as well
//!   (`Throughput::Elements(t)`).
//! - `state_tree_proof/prove_1000000_accounts` and `/verify_1000000_accounts`: `Ledger::prove` of one
//!   account, and `AccountProof::verify` of one prebuilt proof against the state root, cycling
//!   through the 1,000 accounts above so that no single bucket's size decides the figure. The
//!   mean proof depth is printed to stderr once.
//! - `old_flat_root/...`: the reference, what the state root cost per block before the tree:
//!   one `blake3::Hasher` pass over every account's 32-byte key, 8-byte balance and 8-byte nonce
//!   in key order, fed as the old `Ledger::state_root` fed them (three `update`s an account).
//!   `vec_{n}_accounts` reads them from a prebuilt `Vec` (the hashing alone);
//!   `ledger_walk_1000000_accounts` walks `Ledger::accounts` (the old code's very path, the
//!   B-tree walk included). Compare `state_tree_block` with these: the old root was this pass on
//!   every block, whatever it touched.

use std::hint::black_box;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use timed_core::crypto::PublicKey;
use timed_core::ledger::{Account, AccountProof, Ledger};
use timed_core::types::Amount;

const LARGE: usize = 1_000_000;
const LARGE_TOUCHED: usize = 1_000;
const SMALL: usize = 100;

fn key(i: usize) -> PublicKey {
    PublicKey(*blake3::hash(&(i as u64).to_be_bytes()).as_bytes())
}

/// `n` accounts, sorted by key.
fn accounts(n: usize) -> Vec<(PublicKey, Account)> {
    let mut accounts: Vec<(PublicKey, Account)> = (0..n)
        .map(|i| {
            let account = Account {
                balance: Amount(1_000_000 + i as u64),
                nonce: (i % 7) as u64,
            };
            (key(i), account)
        })
        .collect();
    accounts.sort_unstable_by_key(|(k, _)| *k);
    accounts
}

/// `t` of the `n` accounts (every `n / t`-th by index, so at random places in the key order),
/// with balance and nonce raised by `bump`, sorted by key: what a block's `touched` looks like.
fn touched(n: usize, t: usize, bump: u64) -> Vec<(PublicKey, Account)> {
    let mut touched: Vec<(PublicKey, Account)> = (0..n)
        .step_by(n / t)
        .take(t)
        .map(|i| {
            let account = Account {
                balance: Amount(1_000_000 + i as u64 + bump),
                nonce: (i % 7) as u64 + bump,
            };
            (key(i), account)
        })
        .collect();
    touched.sort_unstable_by_key(|(k, _)| *k);
    touched
}

/// The old flat state root's pass over the accounts (its domain and staking root aside).
fn flat_root<'a>(accounts: impl Iterator<Item = (&'a PublicKey, &'a Account)>) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    for (key, account) in accounts {
        hasher.update(&key.0);
        hasher.update(&account.balance.0.to_be_bytes());
        hasher.update(&account.nonce.to_be_bytes());
    }
    hasher.finalize()
}

fn state_tree(c: &mut Criterion) {
    let large = accounts(LARGE);
    let small = accounts(SMALL);

    let mut group = c.benchmark_group("state_tree_build");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for accounts in [&large, &small] {
        group.bench_function(format!("{}_accounts", accounts.len()), |b| {
            b.iter_with_large_drop(|| Ledger::from_accounts(black_box(accounts).iter().copied()));
        });
    }
    group.finish();

    let mut large_ledger = Ledger::from_accounts(large.iter().copied());
    let mut small_ledger = Ledger::from_accounts(small.iter().copied());

    let mut group = c.benchmark_group("state_tree_block");
    for (ledger, n, t) in [
        (&mut large_ledger, LARGE, LARGE_TOUCHED),
        (&mut small_ledger, SMALL, SMALL),
    ] {
        let blocks = [touched(n, t, 1), touched(n, t, 2)];
        assert_eq!(blocks[0].len(), t);
        let mut next = 0;
        group.throughput(Throughput::Elements(t as u64));
        group.bench_function(format!("{n}_accounts_{t}_touched"), |b| {
            b.iter(|| {
                ledger.commit(black_box(&blocks[next]));
                next ^= 1;
                ledger.state_root()
            });
        });
        assert_eq!(ledger.accounts().count(), n, "the touched accounts stay");
    }
    group.finish();

    let probes: Vec<PublicKey> = touched(LARGE, LARGE_TOUCHED, 0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let root = large_ledger.state_root();
    let proofs: Vec<AccountProof> = probes.iter().map(|k| large_ledger.prove(k)).collect();
    for (k, proof) in probes.iter().zip(&proofs) {
        assert_eq!(proof.verify(k, &root), Ok(large_ledger.account(k)));
    }
    let depth: usize = proofs.iter().map(|p| p.siblings.len()).sum();
    eprintln!(
        "proofs at {LARGE} accounts: {:.1} siblings on average",
        depth as f64 / proofs.len() as f64
    );

    let mut group = c.benchmark_group("state_tree_proof");
    let mut i = 0;
    group.bench_function(format!("prove_{LARGE}_accounts"), |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            large_ledger.prove(black_box(&probes[i]))
        });
    });
    let mut i = 0;
    group.bench_function(format!("verify_{LARGE}_accounts"), |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            black_box(&proofs[i]).verify(&probes[i], black_box(&root))
        });
    });
    group.finish();

    let mut group = c.benchmark_group("old_flat_root");
    for accounts in [&large, &small] {
        group.bench_function(format!("vec_{}_accounts", accounts.len()), |b| {
            b.iter(|| flat_root(black_box(accounts).iter().map(|(k, a)| (k, a))));
        });
    }
    group.bench_function(format!("ledger_walk_{LARGE}_accounts"), |b| {
        b.iter(|| flat_root(black_box(&large_ledger).accounts()));
    });
    group.finish();
}

criterion_group!(benches, state_tree);
criterion_main!(benches);
