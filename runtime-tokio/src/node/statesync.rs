//! State sync (`timed run --state-sync URL,…`, issue 15): an empty data directory filled from a
//! recent snapshot served by other nodes (`storage::snapshots`, `api::snapshots`), so that a new
//! node starts at that height instead of replaying every block. It trusts the genesis file and
//! nothing else:
//!
//! 1. Every server is asked which snapshots it keeps (`GET /snapshots`); the newest height that
//!    any of them offers is tried first, with the servers that offer it, then the next older
//!    one if no server could give it whole (a server listing a height it does not have costs
//!    one attempt, not the sync).
//! 2. The block of that height is verified as the light client verifies a chain
//!    (`tools::verify::verified_block`: every block from the genesis, each certificate against
//!    its height's proven set, each set hand-over proven), asking the servers in turn until one
//!    gives a chain that holds. Its header's `state_root` is then a fact.
//! 3. A manifest is taken from the first server whose manifest verifies against that state root
//!    (`Restore::new`); a server whose manifest does not is avoided from then on.
//! 4. The chunks are fetched from every server still trusted, in parallel, one request in flight
//!    per server; each is checked against the manifest (`Restore::add`). A server that sends a
//!    chunk that does not decode or does not check is avoided from then on and its chunk asked
//!    of another; one that fails to answer is given `RETRIES` more chances.
//!
//!    Steps 3 and 4 start early: while the chain is verified (step 2), a manifest and its chunks
//!    are fetched (`prefetch`, at most `PREFETCH_BYTES` of them), and judged as above once the
//!    state root is known; only what is missing then is asked again. Nothing fetched early is
//!    trusted before it is judged.
//! 5. The ledger the chunks make (its state root is the header's) and the verified block are
//!    written to the store (`Store::import`), durably, as a store pruned below that height; the
//!    node then starts as it would on that data directory and follows the chain from there.
//!
//! So one server that lies (a forged chain, manifest or chunk) costs a retry elsewhere, and the
//! sync completes while one honest server offers the snapshot. Nothing is written before the
//! whole state checked: an interrupted sync leaves the directory empty.

use std::collections::VecDeque;
use std::time::Instant;

use timed_core::codec;
use timed_core::ledger::snapshot::{Chunk, Manifest, Restore};
use timed_core::ledger::{BlockOutcome, Ledger, subsidy};
use timed_core::message::Decision;
use timed_core::staking::StakingParams;
use timed_core::types::{Amount, Height};
use timed_core::validators::Genesis;
use tracing::{info, warn};

use crate::storage::store::{Store, StoreError, StoredBlock};
use crate::storage::stored::FinalityMs;
use crate::tools::client::{Client, ClientError, NodeUrl};
use crate::tools::verify;

/// Failed requests (no answer, an HTTP error) a server is forgiven before it is avoided.
pub const RETRIES: u32 = 3;

/// Why a state sync did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StateSyncError {
    #[error("--state-sync: {0}")]
    Url(ClientError),
    #[error("--state-sync: none of {0} offers a snapshot (GET /snapshots lists none)")]
    NoSnapshot(String),
    #[error(
        "--state-sync: no server gave a chain from the genesis to height {height} that verifies \
         (the last: {reason})"
    )]
    NoChain { height: u64, reason: String },
    #[error(
        "--state-sync: no server gave a manifest of height {height} that verifies against its \
         certified state root (the last: {reason})"
    )]
    NoManifest { height: u64, reason: String },
    #[error(
        "--state-sync: every server that offered the snapshot of height {height} failed or \
         lied; {missing} chunks still missing (the last: {reason})"
    )]
    NoChunks {
        height: u64,
        missing: usize,
        reason: String,
    },
    #[error("--state-sync: cannot write the state to the data directory: {0}")]
    Store(#[from] StoreError),
}

/// One server's standing.
struct Server {
    /// `None` while a request of it is in flight.
    client: Option<Client>,
    failures: u32,
    liar: bool,
}

impl Server {
    fn usable(&self) -> bool {
        !self.liar && self.failures <= RETRIES
    }
}

/// Fills the store, empty, with a verified snapshot from `urls` (module docs); returns its
/// height.
pub async fn sync(
    genesis: &Genesis,
    urls: &[String],
    store: &Store,
) -> Result<(Height, Ledger), StateSyncError> {
    let start = Instant::now();
    let mut servers: Vec<(String, Server)> = Vec::new();
    for url in urls {
        let url = NodeUrl::parse(url).map_err(StateSyncError::Url)?;
        let shown = url.shown.clone();
        servers.push((
            shown,
            Server {
                client: Some(Client::new(url)),
                failures: 0,
                liar: false,
            },
        ));
    }
    let names = urls.join(", ");
    // 1. The snapshots offered (at most `snapshots::KEEP` a server), newest first. A height no
    //    server can back with a chain, a manifest and its chunks is given up for the next one:
    //    a server that lists a height it does not have cannot stop the sync.
    let mut offers: Vec<(usize, u64)> = Vec::new();
    for (i, (name, s)) in servers.iter_mut().enumerate() {
        let Some(client) = s.client.as_mut() else {
            continue;
        };
        match client.get::<serde_json::Value>("/snapshots").await {
            Ok(v) => {
                let listed = v["snapshots"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                offers.extend(
                    listed
                        .iter()
                        .take(crate::storage::snapshots::KEEP)
                        .filter_map(|o| o["height"].as_u64())
                        .map(|h| (i, h)),
                );
            }
            Err(e) => warn!("State sync: {name} lists no snapshots: {e}"),
        }
    }
    let mut heights: Vec<u64> = offers.iter().map(|(_, h)| *h).collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights.dedup();
    let mut failure = None;
    for height in heights {
        let offering: Vec<usize> = offers
            .iter()
            .filter(|(_, h)| *h == height)
            .map(|(i, _)| *i)
            .collect();
        match sync_at(genesis, store, &mut servers, &offering, height, start).await {
            Ok(ledger) => return Ok((Height(height), ledger)),
            Err(e @ StateSyncError::Store(_)) => return Err(e),
            Err(e) => {
                warn!("State sync: the snapshot of height {height} cannot be taken: {e}");
                failure = Some(e);
            }
        }
    }
    Err(failure.unwrap_or(StateSyncError::NoSnapshot(names)))
}

/// Steps 2 to 5 for the snapshot of `height`, which the servers `offering` list.
async fn sync_at(
    genesis: &Genesis,
    store: &Store,
    servers: &mut [(String, Server)],
    offering: &[usize],
    height: u64,
    start: Instant,
) -> Result<Ledger, StateSyncError> {
    info!(
        "State sync: the snapshot of height {height}, offered by {} of {} servers; verifying the \
         chain from the genesis to it",
        offering.len(),
        servers.len()
    );
    // The manifest and chunks are fetched while the chain is verified (`prefetch`), and judged
    // once its state root is known.
    let urls: Vec<(usize, NodeUrl)> = offering
        .iter()
        .filter_map(|&i| Some((i, servers[i].1.client.as_ref()?.url().clone())))
        .collect();
    let mut prefetching = AbortOnDrop(tokio::spawn(prefetch(urls, height)));
    // 2. Its block, verified from the genesis.
    let mut last: Option<(Decision, u64)> = None;
    let mut reason = String::new();
    for &i in offering {
        let (name, s) = &mut servers[i];
        let Some(client) = s.client.as_mut() else {
            continue;
        };
        match verify::verified_block(genesis, None, client, height).await {
            Ok(found) => {
                last = Some(found);
                break;
            }
            Err(e) => {
                warn!("State sync: the chain {name} serves does not verify: {e}");
                reason = e.to_string();
                s.liar = matches!(e, verify::VerifyError::Invalid { .. });
            }
        }
    }
    let Some((last, blocks_verified)) = last else {
        return Err(StateSyncError::NoChain { height, reason });
    };
    let state_root = last.block.header.state_root;
    let early: Prefetched = (&mut prefetching.0).await.unwrap_or_default();
    // 3. A manifest that verifies against it: the one fetched early, else one asked now.
    let params = StakingParams::from(&genesis.params);
    let judge_manifest = |answer: Result<Vec<u8>, ClientError>| match answer {
        Ok(bytes) => Ok(codec::decode::<Manifest>(&bytes, codec::MAX_MESSAGE_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                (m.height.0 == height)
                    .then_some(m)
                    .ok_or_else(|| "it is of another height".to_string())
            })
            .and_then(|m| Restore::new(m, params, &state_root).map_err(|e| e.to_string()))),
        Err(e) => Err(e),
    };
    let mut restore = None;
    // Per server, its answer fetched early, if any.
    let mut asked: Vec<(usize, Option<Answer>)> = offering.iter().map(|&i| (i, None)).collect();
    if let Some((i, answer)) = early.manifest {
        asked.retain(|(j, _)| *j != i);
        asked.insert(0, (i, Some(answer)));
    }
    for (i, answer) in asked {
        let (name, s) = &mut servers[i];
        if s.liar {
            continue;
        }
        let answer = match answer {
            Some(a) => a,
            None => {
                let Some(client) = s.client.as_mut() else {
                    continue;
                };
                client
                    .get_bytes(&format!("/snapshots/{height}/manifest"))
                    .await
            }
        };
        match judge_manifest(answer) {
            Ok(Ok(r)) => {
                restore = Some(r);
                break;
            }
            Ok(Err(e)) => {
                warn!("State sync: avoiding {name}: its manifest of height {height} is false: {e}");
                reason = e;
                s.liar = true;
            }
            Err(e) => {
                warn!("State sync: {name} gave no manifest: {e}");
                reason = e.to_string();
                s.failures += 1;
            }
        }
    }
    let Some(mut restore) = restore else {
        return Err(StateSyncError::NoManifest { height, reason });
    };
    // 4. The chunks, from every server still trusted: those fetched early first.
    let chunks = restore.missing().count();
    for (i, index, answer) in early.chunks {
        let (name, s) = &mut servers[i];
        if s.liar || !restore.missing().any(|m| m == index) {
            continue;
        }
        if let Err((lied, why)) = judge_chunk(&mut restore, index, answer) {
            blame(name, s, height, index, lied, &why);
            reason = why;
        }
    }
    let mut queue: VecDeque<u32> = restore.missing().collect();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        for &i in offering {
            let (_, s) = &mut servers[i];
            if !s.usable() || s.client.is_none() {
                continue;
            }
            let Some(index) = queue.pop_front() else {
                break;
            };
            let Some(client) = s.client.take() else {
                continue;
            };
            ask_chunk(&mut in_flight, i, client, height, index);
        }
        let Some(Ok((i, index, client, answer))) = in_flight.join_next().await else {
            break;
        };
        let (name, s) = &mut servers[i];
        s.client = Some(client);
        if let Err((lied, why)) = judge_chunk(&mut restore, index, answer) {
            blame(name, s, height, index, lied, &why);
            reason = why;
            queue.push_back(index);
        }
        if queue.is_empty() && in_flight.is_empty() {
            break;
        }
    }
    let missing = restore.missing().count();
    if missing > 0 {
        return Err(StateSyncError::NoChunks {
            height,
            missing,
            reason,
        });
    }
    let ledger = restore.finish().expect("every chunk is in");
    debug_assert_eq!(ledger.state_root(), state_root);
    // 5. Written as a store pruned below the snapshot's height.
    let accounts = ledger.accounts().count();
    store.import(genesis, &stored(last), &ledger)?;
    let avoided: Vec<&str> = servers
        .iter()
        .filter(|(_, s)| s.liar)
        .map(|(n, _)| n.as_str())
        .collect();
    info!(
        "State sync done in {:.1?}: height {height}, {accounts} accounts in {chunks} chunks, \
         {blocks_verified} blocks verified from the genesis{}",
        start.elapsed(),
        if avoided.is_empty() {
            String::new()
        } else {
            format!("; avoided for serving false data: {}", avoided.join(", "))
        }
    );
    Ok(ledger)
}

/// The snapshot's block as the store keeps it. Its outcome holds what its body alone tells (the
/// subsidy, the fees, the transactions): this node did not apply it, so the accounts it touched
/// and the rewards it paid are left empty.
fn stored(last: Decision) -> StoredBlock {
    let height = last.block.height();
    let fees = last
        .block
        .txs
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.transfer.fee.0));
    let minted = subsidy(height);
    StoredBlock {
        outcome: BlockOutcome {
            height,
            subsidy: minted,
            fees: Amount(fees),
            total_reward: Amount(minted.0.saturating_add(fees)),
            rewards: Vec::new(),
            archived: last.block.txs.iter().map(|t| t.hash()).collect(),
            touched: Vec::new(),
            staking_refused: Vec::new(),
            staking: None,
            slashed: Amount(0),
            jailed: Vec::new(),
        },
        block: last.block,
        certificate: last.certificate,
        finality_ms: FinalityMs(None),
    }
}

/// A chunk's answer judged against the verified manifest: added, or why not and whether the
/// server lied (a chunk that does not decode, is not the one asked or does not check) rather
/// than failed to answer.
fn judge_chunk(
    restore: &mut Restore,
    index: u32,
    answer: Result<Vec<u8>, ClientError>,
) -> Result<(), (bool, String)> {
    match answer {
        Ok(bytes) => match codec::decode::<Chunk>(&bytes, codec::MAX_MESSAGE_BYTES) {
            Ok(chunk) if chunk.index == index => restore
                .add(chunk)
                .map(|_| ())
                .map_err(|e| (true, e.to_string())),
            Ok(_) => Err((true, "it sent another chunk than asked".into())),
            Err(e) => Err((true, format!("it does not decode: {e}"))),
        },
        Err(e) => Err((false, e.to_string())),
    }
}

/// A server's bad chunk answer: a liar is avoided from then on, a failure counted.
fn blame(name: &str, s: &mut Server, height: u64, index: u32, lied: bool, why: &str) {
    if lied {
        warn!("State sync: avoiding {name}: chunk {index} of height {height} is false: {why}");
        s.liar = true;
    } else {
        warn!("State sync: {name} failed to give chunk {index}: {why}");
        s.failures += 1;
    }
}

/// A server's answer to one request.
type Answer = Result<Vec<u8>, ClientError>;

/// Asks server `i` (its `client`, lent to the request) for chunk `index` of the snapshot of
/// `height`; the answer comes back with the server, the chunk and the client.
fn ask_chunk(
    in_flight: &mut tokio::task::JoinSet<(usize, u32, Client, Answer)>,
    i: usize,
    mut client: Client,
    height: u64,
    index: u32,
) {
    let path = format!("/snapshots/{height}/chunks/{index}");
    in_flight.spawn(async move {
        let answer = client.get_bytes(&path).await;
        (i, index, client, answer)
    });
}

/// What `prefetch` fetched: a manifest's answer and chunks' answers, by server, none judged.
#[derive(Default)]
struct Prefetched {
    manifest: Option<(usize, Answer)>,
    chunks: Vec<(usize, u32, Answer)>,
}

/// At most this many bytes of chunks are fetched before the manifest is verified: an unverified
/// manifest may name chunks that do not exist; beyond this they are fetched once it holds.
const PREFETCH_BYTES: usize = 512 * 1024 * 1024;

/// Fetches, while the chain is verified, the snapshot of `height` from `servers` (index, URL):
/// the first manifest that decodes as one of that height (verified later), then its chunks, in
/// parallel, one request in flight per server, each chunk asked once. Nothing is judged here:
/// a server's answers are judged, and it blamed, once the state root is known.
async fn prefetch(servers: Vec<(usize, NodeUrl)>, height: u64) -> Prefetched {
    let mut out = Prefetched::default();
    // In the order given: the first servers are asked first.
    let mut clients: VecDeque<(usize, Client)> = servers
        .into_iter()
        .map(|(i, url)| (i, Client::new(url)))
        .collect();
    let mut manifest = None;
    for (i, client) in &mut clients {
        let answer = client
            .get_bytes(&format!("/snapshots/{height}/manifest"))
            .await;
        let decoded = answer.as_ref().ok().and_then(|b| {
            codec::decode::<Manifest>(b, codec::MAX_MESSAGE_BYTES)
                .ok()
                .filter(|m| m.height.0 == height)
        });
        let found = decoded.is_some();
        manifest = manifest.or(decoded);
        out.manifest = Some((*i, answer));
        if found {
            break;
        }
    }
    let Some(manifest) = manifest else {
        return out;
    };
    let mut queue: VecDeque<u32> = manifest.chunks().collect();
    let mut bytes = 0usize;
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while bytes < PREFETCH_BYTES
            && let Some((i, client)) = clients.pop_front()
        {
            let Some(index) = queue.pop_front() else {
                clients.push_front((i, client));
                break;
            };
            ask_chunk(&mut in_flight, i, client, height, index);
        }
        let Some(Ok((i, index, client, answer))) = in_flight.join_next().await else {
            return out;
        };
        bytes += answer.as_ref().map_or(0, Vec::len);
        // A server that fails is asked nothing more here.
        if answer.is_ok() {
            clients.push_back((i, client));
        }
        out.chunks.push((i, index, answer));
    }
}

/// A task aborted when dropped: a sync that fails before its prefetched answers are used
/// stops fetching them.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
