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
//!   asked last (`asked`, `reply_queue`), sized to that instance's queue. Two
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

/// The links back on inbound connections, by validator, and which instance asked last. Its
/// methods decide where a frame goes, given the instance our outbound connection reaches
/// (`dialed`); the functions below take the locks and queue.
#[derive(Default)]
pub struct Twins {
    links: BTreeMap<ValidatorIndex, Vec<Link>>,
    asked: BTreeMap<ValidatorIndex, Instance>,
}

/// A registered link: its id (for `unregister`), the queue to pump, and whether it was a twin
/// when it came (our outbound connection reaches another instance of the key).
pub struct Registered {
    pub id: u64,
    rx: PeerReceiver,
    twin: bool,
}

impl Twins {
    fn add(
        &mut self,
        index: ValidatorIndex,
        instance: Instance,
        dialed: Option<Instance>,
    ) -> Result<Registered, String> {
        let links = self.links.entry(index).or_default();
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
            twin: dialed.is_some_and(|d| d != instance),
        })
    }

    fn remove(&mut self, index: ValidatorIndex, id: u64) {
        if let Some(links) = self.links.get_mut(&index) {
            links.retain(|l| l.id != id);
            if links.is_empty() {
                self.links.remove(&index);
                self.asked.remove(&index);
            }
        }
    }

    /// The links of `to` that frames go to: not the instance our outbound connection reaches
    /// (`dialed`), nor `except` (the one a relayed message came from).
    fn used(
        &self,
        to: ValidatorIndex,
        dialed: Option<Instance>,
        except: Option<Instance>,
    ) -> impl Iterator<Item = &Link> {
        self.links
            .get(&to)
            .into_iter()
            .flatten()
            .filter(move |l| Some(l.instance) != dialed && Some(l.instance) != except)
    }

    /// Whether `to` has a link from an instance other than `instance`.
    fn has_other(&self, to: ValidatorIndex, instance: Instance) -> bool {
        self.links
            .get(&to)
            .is_some_and(|links| links.iter().any(|l| l.instance != instance))
    }

    /// The link an answer to `to` goes to: the newest one of the instance that asked last,
    /// unless our outbound connection reaches it (`None`: the outbound connection, as with no
    /// request on record or the asker gone).
    fn reply_link(&self, to: ValidatorIndex, dialed: Option<Instance>) -> Option<&Link> {
        let asker = *self.asked.get(&to)?;
        if dialed == Some(asker) {
            return None;
        }
        self.links
            .get(&to)?
            .iter()
            .rev()
            .find(|l| l.instance == asker)
    }
}

/// Our outbound connection to `index`: its instance and queue, if it is up.
fn outbound(ctx: &Ctx, index: ValidatorIndex) -> Option<(Instance, PeerSender)> {
    lock(&ctx.peers)
        .get(&index)
        .map(|p| (p.instance, p.tx.clone()))
}

/// Registers the link back on an inbound connection of validator `index` from `instance`, or
/// says why not (too many already).
pub fn register(
    ctx: &Ctx,
    index: ValidatorIndex,
    instance: Instance,
) -> Result<Registered, String> {
    let dialed = outbound(ctx, index).map(|(i, _)| i);
    lock(&ctx.twins).add(index, instance, dialed)
}

/// Forgets a link (its connection ended, or its peer stopped reading it): its queue's receiver
/// then ends.
pub fn unregister(ctx: &Ctx, index: ValidatorIndex, id: u64) {
    lock(&ctx.twins).remove(index, id);
}

/// `instance` of validator `from` sent a request: its answer goes back to that instance.
pub fn asked(ctx: &Ctx, from: ValidatorIndex, instance: Instance) {
    let mut twins = lock(&ctx.twins);
    if twins.links.contains_key(&from) {
        twins.asked.insert(from, instance);
    }
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
    if link.twin {
        // The core re-sends its current messages to `index`: this instance has none of them.
        // Not for a link used only while our outbound connection is down (at start-up, most
        // often): the core would take the peer for reachable and may ask it first for blocks
        // on a half that a peer of an older version, or not our twin, does not read.
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

/// Passes `body`, a proposal or vote that `instance` of validator `from` signed itself, on to the
/// other instances of that key: our outbound connection's, unless it is `instance`, and every
/// used link of another instance. Nothing is done (beyond one look) while the key has one
/// instance, the usual case.
pub fn relay(ctx: &Ctx, (from, instance): (ValidatorIndex, Instance), body: &[u8]) {
    if !lock(&ctx.twins).has_other(from, instance) {
        return;
    }
    let frame = frame_of_body(body);
    let out = outbound(ctx, from);
    let dialed = out.as_ref().map(|(i, _)| *i);
    if let Some((i, tx)) = &out
        && *i != instance
    {
        queue_on(ctx, tx, frame.clone());
    }
    for link in lock(&ctx.twins).used(from, dialed, Some(instance)) {
        queue_on(ctx, &link.tx, frame.clone());
    }
}

/// Queues `frame` for every live instance of `to`.
pub fn send_frame(ctx: &Ctx, to: ValidatorIndex, frame: Bytes) {
    let out = outbound(ctx, to);
    if let Some((_, tx)) = &out {
        queue_on(ctx, tx, frame.clone());
    }
    let dialed = out.map(|(i, _)| i);
    for link in lock(&ctx.twins).used(to, dialed, None) {
        queue_on(ctx, &link.tx, frame.clone());
    }
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
        for link in twins.used(to, dialed.get(&to).copied(), None) {
            queue_on(ctx, &link.tx, frame.clone());
        }
    }
}

/// The queue an answer to `to` goes to: the instance of `to` that asked last
/// (`Twins::reply_link`), else our outbound connection's.
pub fn reply_queue(ctx: &Ctx, to: ValidatorIndex) -> Option<PeerSender> {
    let out = outbound(ctx, to);
    let dialed = out.as_ref().map(|(i, _)| *i);
    if let Some(link) = lock(&ctx.twins).reply_link(to, dialed) {
        return Some(link.tx.clone());
    }
    out.map(|(_, tx)| tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Instance = [1; 32];
    const B: Instance = [2; 32];
    const V: ValidatorIndex = ValidatorIndex(0);

    fn used(t: &Twins, dialed: Option<Instance>, except: Option<Instance>) -> Vec<Instance> {
        t.used(V, dialed, except).map(|l| l.instance).collect()
    }

    #[test]
    fn a_key_gets_a_few_connections_and_the_next_is_refused_until_one_ends() {
        let mut t = Twins::default();
        let first = t.add(V, A, Some(A)).unwrap();
        assert!(!first.twin);
        let copy = t.add(V, B, Some(A)).unwrap();
        assert!(copy.twin);
        assert!(!t.add(ValidatorIndex(2), A, None).unwrap().twin);
        for _ in 2..INSTANCES_PER_KEY {
            t.add(V, B, Some(A)).unwrap();
        }
        let refused = t.add(V, B, Some(A)).err().unwrap();
        assert!(refused.contains("at most 4"), "{refused}");
        // Other keys are not affected; a connection that ends makes room.
        assert!(t.add(ValidatorIndex(1), B, None).is_ok());
        t.remove(V, copy.id);
        assert!(t.add(V, B, Some(A)).is_ok());
    }

    #[test]
    fn frames_go_to_every_instance_our_outbound_connection_does_not_reach() {
        let mut t = Twins::default();
        let a = t.add(V, A, Some(A)).unwrap();
        t.add(V, B, Some(A)).unwrap();
        assert_eq!(used(&t, Some(A), None), vec![B]);
        // Our outbound connection is down: every instance is reached on its own connection.
        assert_eq!(used(&t, None, None), vec![A, B]);
        // A relayed signature of A goes to B only, and one of B to A's link only while our
        // outbound connection (which reaches A) is down.
        assert_eq!(used(&t, Some(A), Some(A)), vec![B]);
        assert_eq!(used(&t, Some(A), Some(B)), Vec::<Instance>::new());
        assert_eq!(used(&t, None, Some(B)), vec![A]);
        assert!(t.has_other(V, A) && t.has_other(V, B));
        t.remove(V, a.id);
        assert!(!t.has_other(V, B));
    }

    #[test]
    fn an_answer_goes_to_the_instance_that_asked() {
        let mut t = Twins::default();
        t.add(V, A, Some(A)).unwrap();
        let b = t.add(V, B, Some(A)).unwrap();
        let reply = |t: &Twins, dialed| t.reply_link(V, dialed).map(|l| l.instance);
        assert_eq!(reply(&t, Some(A)), None, "no request on record: outbound");
        t.asked.insert(V, B);
        assert_eq!(reply(&t, Some(A)), Some(B));
        t.asked.insert(V, A);
        assert_eq!(
            reply(&t, Some(A)),
            None,
            "the outbound connection reaches A"
        );
        assert_eq!(reply(&t, None), Some(A), "it is down: A's own link");
        t.asked.insert(V, B);
        t.remove(V, b.id);
        assert_eq!(reply(&t, Some(A)), None, "the asker is gone");
    }
}
