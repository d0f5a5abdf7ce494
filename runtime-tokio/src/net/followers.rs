//! Followers: connections from nodes that only read the chain (full nodes, and through them
//! wallets, explorers and public API nodes) to this node, validator or full node alike. This
//! module owns their registry, what is pushed to them and what they may send.
//!
//! - **Who.** A peer whose hello carries our genesis and whose key is in no validator set this
//!   node admits (on a full node: any peer) is a follower, while fewer than `--max-followers` are
//!   connected (0 admits none: a validator behind sentries), and fewer than
//!   `MAX_FOLLOWERS_PER_ADDRESS` from its IP address. A follower never reaches the
//!   consensus core: it cannot vote, propose, or claim a height there.
//! - **What it is sent.** Every block this node finalizes, with its certificate, as a
//!   `Decision`, pushed as soon as the block is in the write-ahead log (`publish`, one encoding
//!   shared by all followers); and the answers to its sync requests, read from the store on the
//!   sync thread (`syncserve.rs`) and sized to the room in its queue. The queue is bounded in
//!   bytes like a validator's: a follower that does not read misses pushes, and asks again.
//!   A sync request passes through the consensus loop, which commits its finalized blocks to
//!   the store first (as for a validator's): a block pushed is always there to be asked for.
//! - **What it may send.** `SyncRequest`, within the budget the core gives each validator
//!   (`SYNC_ANSWER_BURST`, then one per `SYNC_ANSWER_INTERVAL_MS`), and `Transaction`, within
//!   `TX_BURST` then one per `TX_INTERVAL_MS`, its signature checked off the consensus loop and
//!   then submitted as a client's (the core broadcasts it to the validators). A request beyond
//!   its budget is dropped and counted. Anything else — a vote, a proposal, a decision, a frame
//!   that does not decode or is over `FOLLOWER_FRAME_BYTES`, a transfer whose signature fails —
//!   closes the link at once, counted by reason; none of it reaches the core. (A block request
//!   is ignored: a registered validator follows here until its election, and its process may
//!   ask for one.)
//! - **Until elected.** A follower whose key enters a validator set this node admits is
//!   disconnected, quietly: it redials and is welcomed as a validator.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use timed_core::block::{Block, Certificate};
use timed_core::codec;
use timed_core::consensus::{SYNC_ANSWER_BURST, SYNC_ANSWER_INTERVAL_MS};
use timed_core::crypto::PublicKey;
use timed_core::message::{Decision, Message};
use timed_core::units::TokenBucket;
use tracing::{info, warn};

use crate::net::queue::{PeerReceiver, PeerSender, frame_of, peer_queue};
use crate::net::syncserve::Asker;
use crate::net::transport::queue_on;
use crate::net::wire::{self, FrameError};
use crate::node::ctx::{CoreInput, Ctx, PEER_QUEUE, Role, lock};
use crate::node::metrics::{FollowerDropped, FollowerLimited};

/// Followers a node admits unless told otherwise (`--max-followers`).
pub const DEFAULT_MAX_FOLLOWERS: usize = 32;

/// The largest frame a follower may send: a sync request or a transfer is far smaller.
pub const FOLLOWER_FRAME_BYTES: usize = 64 * 1024;

/// Bytes queued for one follower at most: the largest sync answer and a few pushed blocks. Pushed
/// frames are shared (`Bytes`), so many followers cost one copy of each push.
pub const FOLLOWER_QUEUE_BYTES: usize = 2 * codec::MAX_MESSAGE_BYTES;
const _: () = assert!(FOLLOWER_QUEUE_BYTES >= codec::MAX_MESSAGE_BYTES + 4);

/// Transfers a follower may forward in a burst, then one per `TX_INTERVAL_MS` (1,000 a second:
/// a busy full node forwards its clients' transfers).
const TX_BURST: u64 = 1_000;
const TX_INTERVAL_MS: u64 = 1;

/// Followers from one IP address at most: one host cannot take every seat.
pub const MAX_FOLLOWERS_PER_ADDRESS: usize = 8;

struct Link {
    name: String,
    tx: PeerSender,
    from: IpAddr,
}

/// The followers connected now.
pub struct Followers {
    max: usize,
    links: Mutex<BTreeMap<u64, Link>>,
    next: AtomicU64,
}

impl Followers {
    pub fn new(max: usize) -> Followers {
        Followers {
            max,
            links: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// `--max-followers`: 0 admits none.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        lock(&self.links).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the followers connected now.
    pub fn names(&self) -> Vec<String> {
        lock(&self.links).values().map(|l| l.name.clone()).collect()
    }

    /// Whether one more follower would be admitted now (from an address not yet at its limit),
    /// and if not, why (sent to it).
    pub fn room_for_one(&self) -> Result<(), String> {
        self.seat_for(&lock(&self.links), None)
    }

    /// The rule of `room_for_one`, on the links held locked, for a follower from `from`.
    fn seat_for(&self, links: &BTreeMap<u64, Link>, from: Option<IpAddr>) -> Result<(), String> {
        if self.max == 0 {
            return Err("this node admits no followers (--max-followers 0): follow another".into());
        }
        if links.len() >= self.max {
            return Err(format!(
                "this node serves {} followers already, its limit (--max-followers): follow \
                 another node, or a full node",
                self.max
            ));
        }
        if let Some(ip) = from
            && links.values().filter(|l| l.from == ip).count() >= MAX_FOLLOWERS_PER_ADDRESS
        {
            return Err(format!(
                "this node serves {MAX_FOLLOWERS_PER_ADDRESS} followers from {ip} already, the \
                 most from one address"
            ));
        }
        Ok(())
    }

    fn admit(&self, name: &str, from: IpAddr) -> Result<(u64, PeerReceiver), String> {
        let mut links = lock(&self.links);
        self.seat_for(&links, Some(from))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = peer_queue(PEER_QUEUE, FOLLOWER_QUEUE_BYTES);
        links.insert(
            id,
            Link {
                name: name.to_string(),
                tx,
                from,
            },
        );
        Ok((id, rx))
    }

    fn remove(&self, id: u64) {
        lock(&self.links).remove(&id);
    }

    /// The queue of follower `id`, while it is connected.
    pub fn queue(&self, id: u64) -> Option<PeerSender> {
        lock(&self.links).get(&id).map(|l| l.tx.clone())
    }

    /// Pushes a block just finalized (in the write-ahead log) to every follower: encoded once.
    pub fn publish(&self, ctx: &Ctx, block: &Block, certificate: &Certificate) {
        if self.is_empty() {
            return;
        }
        let frame = frame_of(&Message::Decision(Decision {
            block: block.clone(),
            certificate: certificate.clone(),
        }));
        for link in lock(&self.links).values() {
            queue_on(ctx, &link.tx, frame.clone());
        }
    }
}

/// Serves a follower welcomed by the hello exchange until its connection ends or it sends what a
/// follower may not. The answers and pushes go back on the acceptor's half of its stream.
pub(super) async fn serve(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    (key, name): (PublicKey, &str),
) {
    let (id, rx) = match ctx.followers.admit(name, conn.remote_address().ip()) {
        Ok(admitted) => admitted,
        Err(reason) => {
            // Lost the race for the last seat since the hello was answered, or one address
            // too many.
            info!(peer = name, "Refused follower {name}: {reason}");
            conn.close(2u32.into(), reason.as_bytes());
            return;
        }
    };
    ctx.metrics.followers.set(ctx.followers.len() as i64);
    info!(
        peer = name,
        remote = %conn.remote_address(),
        "Follower connected: {name} ({} of at most {})",
        ctx.followers.len(),
        ctx.followers.max()
    );
    let reads = async {
        let verdict = tokio::select! {
            v = read_loop(ctx, recv, Asker::Follower(id), name) => v,
            // Elected: it is a validator here now, and redials as one (a validator that
            // registered follows the chain until then).
            () = admitted(ctx, key) => {
                info!(peer = name, "{name} is a validator of an admitted set now: closing its follower link, it reconnects as a validator");
                conn.close(0u32.into(), b"elected: reconnect");
                Ok(())
            }
        };
        if let Err(reason) = verdict {
            ctx.metrics.follower_dropped(reason);
            warn!(
                peer = name,
                "Dropped follower {name}: {}",
                dropped_because(reason)
            );
            conn.close(3u32.into(), reason.label().as_bytes());
        } else {
            conn.close(0u32.into(), b"bye");
        }
    };
    let writes = rx.pump(conn, &mut send, ctx.shutdown.clone());
    tokio::join!(reads, writes);
    ctx.followers.remove(id);
    ctx.metrics.followers.set(ctx.followers.len() as i64);
    info!(peer = name, "Follower disconnected: {name}");
}

/// Returns once `key` belongs to a validator set this node admits (never on a full node).
async fn admitted(ctx: &Ctx, key: PublicKey) {
    if ctx.role == Role::FullNode {
        return std::future::pending().await;
    }
    let mut members = ctx.policy.subscribe();
    loop {
        if members
            .borrow_and_update()
            .as_ref()
            .is_some_and(|m| m.admitted(&key).is_some())
        {
            return;
        }
        if members.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn dropped_because(reason: FollowerDropped) -> &'static str {
    match reason {
        FollowerDropped::NotAFollowersMessage => {
            "it sent a message only a validator sends (a follower may ask for blocks and \
             submit transfers, nothing else)"
        }
        FollowerDropped::Undecodable => "it sent a frame that does not decode",
        FollowerDropped::Oversized => "it sent a frame over the follower's limit",
        FollowerDropped::ForgedTransfer => "it sent a transfer whose signature does not hold",
    }
}

/// A follower's budgets: the core's sync budget per peer, and one of transfers.
struct Budgets {
    start: Instant,
    sync: TokenBucket,
    txs: TokenBucket,
}

impl Budgets {
    fn new() -> Budgets {
        Budgets {
            start: Instant::now(),
            sync: TokenBucket::full(SYNC_ANSWER_BURST, 0),
            txs: TokenBucket::full(TX_BURST, 0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// Reads a follower's frames until its stream ends (`Ok`) or it sends what closes its link
/// (`Err`, why).
async fn read_loop(
    ctx: &Ctx,
    mut recv: quinn::RecvStream,
    me: Asker,
    name: &str,
) -> Result<(), FollowerDropped> {
    let mut buf = Vec::new();
    let mut budgets = Budgets::new();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let read = tokio::select! {
            r = wire::read_frame(&mut recv, &mut buf, FOLLOWER_FRAME_BYTES) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(FrameError::TooLarge { .. }) => return Err(FollowerDropped::Oversized),
            Err(_) => return Ok(()), // the connection ended
        }
        ctx.metrics.bytes_in.inc_by(buf.len() as u64 + 4);
        let msg = codec::decode_message(&buf).map_err(|_| FollowerDropped::Undecodable)?;
        match msg {
            Message::SyncRequest {
                from: start,
                max_blocks,
            } => {
                // Slowed down, not dropped (as the core defers a peer's request): a follower
                // that asks faster than the budget, a fast one catching up, would otherwise
                // wait out its patience for an answer never sent. Its frames wait meanwhile,
                // so a flood is answered one request a token.
                let mut limited = false;
                while !budgets.sync.take(
                    budgets.now_ms(),
                    SYNC_ANSWER_BURST,
                    SYNC_ANSWER_INTERVAL_MS,
                ) {
                    if !limited {
                        ctx.metrics.follower_limited(FollowerLimited::Sync);
                        limited = true;
                    }
                    let wait = budgets
                        .sync
                        .ready_in(budgets.now_ms(), SYNC_ANSWER_INTERVAL_MS)
                        .max(1);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
                ctx.metrics.sync_requests.inc();
                // Through the consensus loop, which commits the blocks it finalized before the
                // sync thread reads them: an answer never lacks a block this node pushed.
                let ask = CoreInput::ServeFollower {
                    to: me,
                    from: start,
                    max_blocks: max_blocks.min(timed_core::message::MAX_SYNC_BLOCKS),
                };
                if ctx.to_core.send(ask).await.is_err() {
                    return Ok(()); // the core stopped
                }
            }
            Message::Transaction(tx) => {
                let now = budgets.now_ms();
                if !budgets.txs.take(now, TX_BURST, TX_INTERVAL_MS) {
                    ctx.metrics.follower_limited(FollowerLimited::Transfer);
                    continue;
                }
                let Some(Ok(verified)) = crate::node::txverify::verify(ctx, vec![tx]).await.pop()
                else {
                    return Err(FollowerDropped::ForgedTransfer);
                };
                // The verdict goes nowhere: the follower tracks its transfer by the blocks.
                let (reply, _) = tokio::sync::oneshot::channel();
                if ctx
                    .to_core
                    .send(CoreInput::SubmitVerifiedTx(verified, reply))
                    .await
                    .is_err()
                {
                    return Ok(()); // the core stopped
                }
            }
            // A validator's process that follows here until its election asks for a block now
            // and then: nothing to answer a follower with, and nothing hostile either.
            Message::BlockRequest { .. } => {}
            other => {
                tracing::debug!(
                    peer = name,
                    kind = other.kind(),
                    "a follower sent a {}",
                    other.kind()
                );
                return Err(FollowerDropped::NotAFollowersMessage);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_are_bounded_in_all_and_per_address_and_zero_admits_none() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let f = Followers::new(MAX_FOLLOWERS_PER_ADDRESS + 1);
        let mut held = Vec::new();
        for i in 0..MAX_FOLLOWERS_PER_ADDRESS {
            held.push(f.admit(&format!("a{i}"), a).expect("a seat"));
        }
        let refused = f.admit("one too many", a).err().expect("refused");
        assert!(refused.contains("from 192.0.2.1"), "{refused}");
        assert!(f.room_for_one().is_ok(), "another address still has a seat");
        held.push(f.admit("b", b).expect("the last seat"));
        let full = f.admit("c", b).err().expect("refused");
        assert!(full.contains("--max-followers"), "{full}");
        assert!(f.room_for_one().is_err());
        // A seat freed is a seat again.
        f.remove(held[0].0);
        assert!(f.admit("a again", a).is_ok());
        let none = Followers::new(0);
        assert!(
            none.room_for_one()
                .unwrap_err()
                .contains("--max-followers 0")
        );
        assert!(none.admit("x", a).is_err());
    }
}
