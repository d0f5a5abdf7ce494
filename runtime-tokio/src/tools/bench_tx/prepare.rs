//! What the transfer bench does before its clock starts: the senders' keys (`sender_key`), paying
//! them from the funded key (`fund`), and signing and encoding every batch on every core
//! (`sign_all`), so that the figure is the network's and not the generator's signing speed.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use timed_core::crypto::Keypair;
use timed_core::tx::{SignedTransfer, Transfer};
use timed_core::types::Amount;

use crate::amount::format_time;
use crate::tools::client::Client;
use crate::tools::wallet::fetch_account;

use super::post_batch;

pub(super) fn sender_key(seed: &[u8; 32], i: usize) -> Keypair {
    let mut h = blake3::Hasher::new();
    h.update(b"timed/bench-tx/");
    h.update(seed);
    h.update(&(i as u64).to_be_bytes());
    Keypair::from_seed(*h.finalize().as_bytes())
}

/// Pays each sender from the funded key, 64 transfers at a time.
pub(super) async fn fund(
    client: &mut Client,
    chain_id: &str,
    funder: &Keypair,
    senders: &[Keypair],
    each: Amount,
) -> Result<()> {
    let account = fetch_account(client, &funder.public_key()).await?;
    let fee = Amount(1);
    let needed = (each.0 + fee.0) as u128 * senders.len() as u128;
    if u128::from(account.balance.0) < needed {
        bail!(
            "the funded key holds {} TIME; funding {} senders needs {} TIME",
            format_time(account.balance),
            senders.len(),
            format_time(Amount(needed.min(u128::from(u64::MAX)) as u64))
        );
    }
    let mut nonce = account.nonce;
    for group in senders.chunks(64) {
        let txs: Vec<SignedTransfer> = group
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Transfer {
                    from: funder.public_key(),
                    to: s.public_key(),
                    amount: each,
                    fee,
                    nonce: nonce + i as u64,
                    op: Default::default(),
                }
                .sign(funder, chain_id)
            })
            .collect();
        let refused = post_batch(client, &serde_json::to_vec(&txs)?).await?;
        if !refused.is_empty() {
            bail!("funding transfers were refused: {refused:?}");
        }
        nonce += group.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while fetch_account(client, &funder.public_key()).await?.nonce < nonce {
            if Instant::now() > deadline {
                bail!("the funding transfers were not finalized within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Transfers signed and encoded for one `POST /txs`.
/// The `k`-th of the list is due at `t0 + k · interval`.
pub(super) struct Batch {
    pub(super) body: Vec<u8>,
    pub(super) hashes: Vec<String>,
}

/// Signs `count` transfers among the senders (sender j mod n, its nonce j / n) on every core,
/// and encodes them as JSON batches. Returns the batches and each transfer's hash.
pub(super) fn sign_all(
    chain_id: &str,
    senders: &[Keypair],
    count: usize,
    batch: usize,
) -> Vec<Batch> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batches = count.div_ceil(batch);
    let per_thread = batches.div_ceil(threads);
    let n = senders.len();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for b in (t * per_thread)..((t + 1) * per_thread).min(batches) {
                        let txs: Vec<SignedTransfer> = (b * batch..((b + 1) * batch).min(count))
                            .map(|j| {
                                let from = &senders[j % n];
                                Transfer {
                                    from: from.public_key(),
                                    to: senders[(j + 1) % n].public_key(),
                                    amount: Amount(1),
                                    fee: Amount(1),
                                    nonce: (j / n) as u64,
                                    op: Default::default(),
                                }
                                .sign(from, chain_id)
                            })
                            .collect();
                        let hashes = txs.iter().map(|t| hex::encode(t.hash().0)).collect();
                        let body = serde_json::to_vec(&txs).expect("transfers serialize");
                        out.push(Batch { body, hashes });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a signing thread panicked"))
            .collect()
    })
}
