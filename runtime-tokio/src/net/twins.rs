//! Every live instance of a peer's validator key, and which of them a frame goes to.
//!
//! A node sends to a peer on the connection it dials itself (`ctx.peers`, `dial.rs`), at the
//! address it knows for that peer: that reaches one process. A second process with the same key
//! (a copy started elsewhere by mistake) dials us from another address, and without more it
//! would hear nothing from us: it would never learn the chain, nor meet the first instance's
//! signatures that make it stop signing (issue 12, ADR 0024). So every inbound connection keeps
//! the acceptor's half of its stream open after the hello as a link back to the process that
//! dialed (`Link`), with a byte-bounded queue of its own:
//!
//! - **which process**: the TLS certificate's hash (`tls::Instance`; its serial number is random
//!   per process). An inbound connection from the process our own outbound connection reaches is
//!   not used (it hears us there already); every other one is: a twin of the key, or any instance
//!   at all while our outbound connection to that key is down.
//! - **sends and broadcasts** to a validator go to our outbound connection and to each used link
//!   (`send_frame`, `broadcast_frame`);
//! - **what one instance signs** (its proposals and votes, as it sent them) is passed on to the
//!   key's other instances (`relay`): a copy meets the first instance's signatures at its own
//!   height as soon as they are made, which is what makes it stop signing (`Node::
//!   foreign_signature`), instead of only in the certificates it may never need to ask for.
//! - **answers to requests** (`SyncRequest`, whose answer is the big one) go to the instance that
//!   asked last (`asked`, `reply_room`, `send_reply`), sized to that instance's queue. Two
//!   instances asking at the same moment may see one answer go to the other; the one left
//!   without asks again. A `BlockResponse` is an ordinary send (the core does not say whom it
//!   answers): every instance gets it, the asker among them.
//! - **bounds**: at most `INSTANCES_PER_KEY` inbound connections per validator key (each with its
//!   queue of `PEER_QUEUE_BYTES`); one more is refused at the hello, with the reason sent to it and
//!   logged. Only genesis keys pass TLS, and nothing here dials anyone: a link only answers a
//!   connection the peer opened.
//!
//! Lock order: `ctx.peers` before `ctx.twins`, never the other way.

use std::collections::BTreeMap;

use bytes::Bytes;
use timed_core::types::ValidatorIndex;
use tracing::warn;

use crate::net::queue::{PeerReceiver, PeerSender, frame_of_body, peer_queue};
use crate::net::tls::Instance;
use crate::net::transport::{GENERATION, LinkError, queue_on, read_loop};
use crate::node::ctx::{CoreInput, Ctx, PEER_QUEUE, PEER_QUEUE_BYTES, lock};

/// Inbound connections of one validator key at most: the instance we dial, a twin, and room for
/// a reconnection whose old connection has not timed out yet.
pub const INSTANCES_PER_KEY: usize = 4;

/// The way back to the process at the other end of one inbound connection.
struct Link {
    instance: Instance,
    id: u64,
    tx: PeerSender,
}

/// The links back on inbound connections, by validator, and which instance asked last.
#[derive(Default)]
pub struct Twins {
    links: BTreeMap<ValidatorIndex, Vec<Link>>,
    asked: BTreeMap<ValidatorIndex, Instance>,
}

/// A registered link: its id (for `unregister`), the queue to pump, and what it was when it
/// came: whether frames go to it (it is not the instance our outbound connection reaches, or that
/// connection is down), and whether it is a twin (our outbound connection reaches another).
pub struct Registered {
    pub id: u64,
    rx: PeerReceiver,
    used: bool,
    twin: bool,
}

/// Our outbound connection's instance for `index`, if it is up.
fn dialed(ctx: &Ctx, index: ValidatorIndex) -> Option<Instance> {
    lock(&ctx.peers).get(&index).map(|p| p.instance)
}

/// Registers the link back on an inbound connection of validator `index` from `instance`, or
/// says why not (too many already).
pub fn register(
    ctx: &Ctx,
    index: ValidatorIndex,
    instance: Instance,
) -> Result<Registered, String> {
    let dialed = dialed(ctx, index);
    let mut twins = lock(&ctx.twins);
    let links = twins.links.entry(index).or_default();
    if links.len() >= INSTANCES_PER_KEY {
        return Err(format!(
            "{} connections of this validator's key are open here already (at most \
             {INSTANCES_PER_KEY}): is the key running in more places than one?",
            links.len()
        ));
    }
    let (tx, rx) = peer_queue(PEER_QUEUE, PEER_QUEUE_BYTES);
    let id = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    links.push(Link { instance, id, tx });
    Ok(Registered {
        id,
        rx,
        used: dialed != Some(instance),
        twin: dialed.is_some_and(|d| d != instance),
    })
}

/// Serves an inbound connection of validator `index`, welcomed with `link` registered: reads its
/// frames, and writes the link's queue back on the acceptor's half of its stream, until the
/// connection ends. A peer that does not read that half loses the link, not the connection.
pub(super) async fn serve_inbound(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    (index, instance): (ValidatorIndex, Instance),
    link: Registered,
    name: &str,
) -> Result<(), LinkError> {
    if link.twin {
        warn!(
            peer = name,
            "Another process with the key of {name} connected from {}: this node now sends to both \
             (a validator key must run in one place only; the copy should say so and sign nothing)",
            conn.remote_address()
        );
    }
    if link.used {
        // The core re-sends its current messages to `index`: this instance has none of them.
        let _ = ctx.to_core.send(CoreInput::PeerConnected(index)).await;
    }
    let reads = async {
        let r = read_loop(ctx, conn, recv, (index, instance), name).await;
        conn.close(0u32.into(), b"bye");
        r
    };
    let writes = async {
        link.rx.pump(conn, &mut send, ctx.shutdown.clone()).await;
        unregister(ctx, index, link.id);
    };
    tokio::join!(reads, writes).0
}

/// Forgets a link (its connection ended, or its peer stopped reading it): its queue's receiver
/// then ends.
pub fn unregister(ctx: &Ctx, index: ValidatorIndex, id: u64) {
    let mut twins = lock(&ctx.twins);
    if let Some(links) = twins.links.get_mut(&index) {
        links.retain(|l| l.id != id);
        if links.is_empty() {
            twins.links.remove(&index);
            twins.asked.remove(&index);
        }
    }
}

/// `instance` of validator `from` sent a request: its answer goes back to that instance.
pub fn asked(ctx: &Ctx, from: ValidatorIndex, instance: Instance) {
    let mut twins = lock(&ctx.twins);
    if twins.links.contains_key(&from) {
        twins.asked.insert(from, instance);
    }
}

/// Passes `body`, a proposal or vote that `instance` of validator `from` signed itself, on to the
/// other instances of that key: our outbound connection's, unless it is `instance`, and every
/// used link of another instance. Nothing is done (beyond one look) while the key has one
/// instance, the usual case.
pub fn relay(ctx: &Ctx, (from, instance): (ValidatorIndex, Instance), body: &[u8]) {
    let others = |twins: &Twins| {
        twins
            .links
            .get(&from)
            .is_some_and(|links| links.iter().any(|l| l.instance != instance))
    };
    if !others(&lock(&ctx.twins)) {
        return;
    }
    let frame = frame_of_body(body);
    let dialed = {
        let peers = lock(&ctx.peers);
        let p = peers.get(&from).filter(|p| p.instance != instance);
        if let Some(p) = p {
            queue_on(ctx, &p.tx, frame.clone());
        }
        peers.get(&from).map(|p| p.instance)
    };
    let twins = lock(&ctx.twins);
    for link in twins.links.get(&from).into_iter().flatten() {
        if link.instance != instance && Some(link.instance) != dialed {
            queue_on(ctx, &link.tx, frame.clone());
        }
    }
}

/// Queues `frame` on every used link of `to` (`dialed`: the instance our outbound connection
/// reaches, which has the frame already).
fn queue_on_links(
    ctx: &Ctx,
    twins: &Twins,
    to: ValidatorIndex,
    dialed: Option<Instance>,
    frame: &Bytes,
) {
    for link in twins.links.get(&to).into_iter().flatten() {
        if Some(link.instance) != dialed {
            queue_on(ctx, &link.tx, frame.clone());
        }
    }
}

/// Queues `frame` for every live instance of `to`.
pub fn send_frame(ctx: &Ctx, to: ValidatorIndex, frame: Bytes) {
    let dialed = {
        let peers = lock(&ctx.peers);
        let p = peers.get(&to);
        if let Some(p) = p {
            queue_on(ctx, &p.tx, frame.clone());
        }
        p.map(|p| p.instance)
    };
    queue_on_links(ctx, &lock(&ctx.twins), to, dialed, &frame);
}

/// Queues `frame` for every live instance of every peer.
pub fn broadcast_frame(ctx: &Ctx, frame: Bytes) {
    let dialed: BTreeMap<ValidatorIndex, Instance> = {
        let peers = lock(&ctx.peers);
        for p in peers.values() {
            queue_on(ctx, &p.tx, frame.clone());
        }
        peers.iter().map(|(i, p)| (*i, p.instance)).collect()
    };
    let twins = lock(&ctx.twins);
    for &to in twins.links.keys() {
        queue_on_links(ctx, &twins, to, dialed.get(&to).copied(), &frame);
    }
}

/// The queue an answer to `to` goes to: the instance that asked last (our outbound connection if
/// that is the one it reaches, else the newest link back to it); with no request on record, or
/// the asker gone, our outbound connection.
fn reply_queue(ctx: &Ctx, to: ValidatorIndex) -> Option<PeerSender> {
    let (dialed, outbound) = match lock(&ctx.peers).get(&to) {
        Some(p) => (Some(p.instance), Some(p.tx.clone())),
        None => (None, None),
    };
    let twins = lock(&ctx.twins);
    let Some(asker) = twins.asked.get(&to).copied() else {
        return outbound;
    };
    if dialed == Some(asker) {
        return outbound;
    }
    let link = twins
        .links
        .get(&to)
        .and_then(|links| links.iter().rev().find(|l| l.instance == asker));
    link.map(|l| l.tx.clone()).or(outbound)
}

/// The byte budget of an answer to `to`: at most `most`, and no more than the queue of the
/// instance that asked can take now (the frame's length prefix and the message's own fields
/// aside). An instance that is gone, or does not read, gets nothing read from the store for it.
pub fn reply_room(ctx: &Ctx, to: ValidatorIndex, most: usize) -> usize {
    const OVERHEAD: usize = 1024;
    reply_queue(ctx, to).map_or(0, |q| q.room().saturating_sub(OVERHEAD).min(most))
}

/// Queues an answer for the instance of `to` that asked last.
pub fn send_reply(ctx: &Ctx, to: ValidatorIndex, frame: Bytes) {
    if let Some(q) = reply_queue(ctx, to) {
        queue_on(ctx, &q, frame);
    }
}
