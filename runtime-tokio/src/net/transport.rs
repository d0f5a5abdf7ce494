//! The QUIC transport: one endpoint per node (UDP, the `--port`/`--listen` address), an accept
//! loop, and one dialer per configured peer address that redials with backoff.
//!
//! Each node dials every peer and sends its consensus messages on its own outbound connection;
//! it reads the peer's messages from the peer's outbound (our inbound) connection. Every
//! established outbound connection reaches the core as `PeerConnected`, which makes the core
//! re-send its current messages to that peer.
//!
//! Frames for a peer wait in a queue bounded in bytes as well as in frames (`PeerSender`): a peer
//! that stops reading costs this node `PEER_QUEUE_BYTES` at most, not a frame count times the
//! largest message (4,096 × 4 MiB). What does not fit is dropped and counted; the core re-sends
//! what matters. Sync responses are sized to the room left in that queue (`sync_budget`), so a
//! peer that does not read its blocks does not make us read more of them from the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use timed_core::codec;
use timed_core::crypto::PublicKey;
use timed_core::message::Message;
use timed_core::types::ValidatorIndex;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::net::handshake::{self, Verdict};
use crate::net::tls;
use crate::net::wire::{self, FrameError, HelloReply, MAX_FRAME_BYTES};
use crate::node::ctx::{CoreInput, Ctx, PEER_QUEUE, PEER_QUEUE_BYTES, PeerQueue, lock};
use crate::node::metrics::HandshakeRefused;
use crate::node::txverify::Gossiped;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A consensus message as a ready-to-write frame (length prefix included).
pub fn frame_of(msg: &Message) -> Bytes {
    let body = codec::encode_message(msg);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Why a frame was not queued for a peer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    #[error("{queued} bytes are already queued for this peer (limit {limit}); dropped {len} more")]
    Bytes {
        queued: usize,
        len: usize,
        limit: usize,
    },
    #[error("{0} frames are already queued for this peer")]
    Frames(usize),
    #[error("the connection to this peer is closing")]
    Closed,
}

/// Bytes queued for one peer, and what was dropped because they were too many.
#[derive(Debug, Default)]
pub struct QueueBytes {
    queued: AtomicUsize,
    pub dropped_frames: AtomicU64,
    pub dropped_bytes: AtomicU64,
}

/// The sending half of a peer's queue: bounded in frames (the channel) and in bytes.
#[derive(Clone, Debug)]
pub struct PeerSender {
    tx: mpsc::Sender<Bytes>,
    bytes: Arc<QueueBytes>,
    limit: usize,
}

/// The receiving half: gives the room of each frame back once it leaves the queue.
pub struct PeerReceiver {
    rx: mpsc::Receiver<Bytes>,
    bytes: Arc<QueueBytes>,
}

/// A queue for one peer of at most `frames` frames and `limit` bytes.
pub fn peer_queue(frames: usize, limit: usize) -> (PeerSender, PeerReceiver) {
    let (tx, rx) = mpsc::channel(frames);
    let bytes = Arc::new(QueueBytes::default());
    (
        PeerSender {
            tx,
            bytes: bytes.clone(),
            limit,
        },
        PeerReceiver { rx, bytes },
    )
}

impl PeerSender {
    /// Queues `frame` unless the queue holds too many bytes or frames already; never waits.
    pub fn try_send(&self, frame: Bytes) -> Result<(), QueueFull> {
        let len = frame.len();
        let limit = self.limit;
        // Reserve the bytes first, so that two senders cannot both pass the check.
        if let Err(queued) =
            self.bytes
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    (q.saturating_add(len) <= limit).then_some(q + len)
                })
        {
            self.dropped(len);
            return Err(QueueFull::Bytes { queued, len, limit });
        }
        self.tx.try_send(frame).map_err(|e| {
            self.bytes.queued.fetch_sub(len, Ordering::AcqRel);
            self.dropped(len);
            match e {
                mpsc::error::TrySendError::Full(_) => QueueFull::Frames(self.tx.max_capacity()),
                mpsc::error::TrySendError::Closed(_) => QueueFull::Closed,
            }
        })
    }

    fn dropped(&self, len: usize) {
        self.bytes.dropped_frames.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .dropped_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Bytes that may still be queued before frames are dropped.
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.bytes.queued.load(Ordering::Acquire))
    }

    #[cfg(test)]
    fn counts(&self) -> &QueueBytes {
        &self.bytes
    }
}

impl PeerReceiver {
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.recv().await?;
        self.bytes.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

/// Queues `frame` for one peer; a full queue drops it, counted (the core re-sends what matters).
pub fn queue_frame(ctx: &Ctx, p: &PeerQueue, frame: Bytes) {
    let len = frame.len() as u64;
    if p.tx.try_send(frame).is_ok() {
        ctx.metrics.bytes_out.inc_by(len);
    } else {
        ctx.metrics
            .dropped(crate::node::metrics::Dropped::PeerQueueFull);
    }
}

/// Queues `frame` for `to`, if it is connected.
pub fn send_frame(ctx: &Ctx, to: ValidatorIndex, frame: Bytes) {
    if let Some(p) = lock(&ctx.peers).get(&to) {
        queue_frame(ctx, p, frame);
    }
}

/// The byte budget of a sync response to `to`: at most `most`, and no more than its queue can
/// take now (the frame's length prefix and the message's own fields aside). A peer that is not
/// connected, or does not read, gets nothing read from the store for it.
pub fn sync_budget(ctx: &Ctx, to: ValidatorIndex, most: usize) -> usize {
    const OVERHEAD: usize = 1024;
    lock(&ctx.peers)
        .get(&to)
        .map_or(0, |p| p.tx.room().saturating_sub(OVERHEAD).min(most))
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("the peer refused us: {0}")]
    RefusedByPeer(String),
    #[error("we refused the peer: {0}")]
    RefusedByUs(String),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("a peer came up: dialing again at once")]
    Redial,
}

fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::peer_key(certs.first()?).ok()
}

async fn resolve(addr: &str, want_v4: bool) -> Result<SocketAddr, LinkError> {
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|_| LinkError::Resolve(addr.into()))?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == want_v4)
        .or(addrs.first())
        .copied()
        .ok_or_else(|| LinkError::Resolve(addr.into()))
}

async fn read_hello(recv: &mut quinn::RecvStream) -> Result<HelloReply, LinkError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read_hello(recv))
        .await
        .map_err(|_| LinkError::Timeout)??
        .ok_or_else(|| LinkError::Lost("stream closed during the hello".into()))
}

/// Spawns the accept loop and a dialer per peer address.
pub fn start(ctx: Arc<Ctx>, endpoint: quinn::Endpoint, peers: Vec<String>) {
    tokio::spawn(accept_loop(ctx.clone(), endpoint.clone()));
    for addr in peers {
        tokio::spawn(dial_loop(ctx.clone(), endpoint.clone(), addr));
    }
}

async fn accept_loop(ctx: Arc<Ctx>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            if let Err(e) = accept_one(&ctx, incoming).await {
                match e {
                    LinkError::Lost(_) | LinkError::Timeout => {
                        debug!(%remote, "inbound connection ended: {e}")
                    }
                    e => warn!(%remote, "inbound connection refused: {e}"),
                }
            }
        });
    }
}

/// Why an inbound TLS handshake failed, from whose side: a peer that gives up on its attempt
/// (a dialer starting over once we came up) is not refused by anyone.
fn inbound_handshake_error(ctx: &Ctx, e: quinn::ConnectionError) -> LinkError {
    let (reason, error) = match &e {
        quinn::ConnectionError::ConnectionClosed(close) if is_crypto(close.error_code) => (
            HandshakeRefused::TlsRefusedByPeer,
            LinkError::RefusedByPeer(format!(
                "TLS handshake refused ({e}): our key is not in its genesis, or its key not in ours"
            )),
        ),
        quinn::ConnectionError::ConnectionClosed(_)
        | quinn::ConnectionError::ApplicationClosed(_) => {
            return LinkError::Lost(format!("the peer gave up during the TLS handshake ({e})"));
        }
        _ => (
            HandshakeRefused::Tls,
            LinkError::RefusedByUs(format!(
                "TLS handshake failed ({e}); a key outside our genesis is refused here"
            )),
        ),
    };
    ctx.metrics.handshake_refused(reason);
    error
}

/// QUIC reserves close codes 0x100–0x1ff for TLS alerts.
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

async fn accept_one(ctx: &Ctx, incoming: quinn::Incoming) -> Result<(), LinkError> {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => return Err(inbound_handshake_error(ctx, e)),
    };
    let key = peer_key(&conn).ok_or_else(|| LinkError::Lost("no peer certificate".into()))?;
    let (mut send, mut recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| LinkError::Timeout)?
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let hello = match read_hello(&mut recv).await? {
        HelloReply::Welcome(h) => h,
        HelloReply::Refused(r) => return Err(LinkError::RefusedByPeer(r)),
    };
    // Our hello as it was before this one was processed (which may fix our genesis): both sides
    // then conclude `Ready` exactly when both hellos carried the same genesis.
    let mine = ctx.hello();
    let verdict = handshake::on_hello(ctx, &hello, key);
    let reply = match &verdict {
        Ok(_) => HelloReply::Welcome(mine),
        Err(reason) => HelloReply::Refused(reason.clone()),
    };
    wire::write_frame(&mut send, &wire::encode_hello(&reply))
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let _ = send.finish();
    match verdict {
        Err(reason) => {
            ctx.metrics
                .handshake_refused(crate::node::metrics::HandshakeRefused::Hello);
            error!(peer = %hello.name, "Refused peer: {reason}");
            // Let the reason reach the peer before the connection goes.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            Ok(())
        }
        Ok(Verdict::Pending) => {
            conn.closed().await;
            Ok(())
        }
        Ok(Verdict::Ready(index)) => {
            // A peer that reaches us is up: if we have no connection to it, our dialer may be
            // sleeping off a backoff of seconds (it learns from our outbound connection only).
            if !lock(&ctx.peers).contains_key(&index) {
                ctx.redial.notify_waiters();
            }
            read_loop(ctx, &conn, recv, index, &hello.name).await
        }
    }
}

async fn read_loop(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut recv: quinn::RecvStream,
    from: ValidatorIndex,
    name: &str,
) -> Result<(), LinkError> {
    let mut buf = Vec::new();
    let mut warned = false;
    loop {
        match wire::read_frame(&mut recv, &mut buf, MAX_FRAME_BYTES).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(FrameError::TooLarge { size, limit }) => {
                ctx.metrics
                    .dropped(crate::node::metrics::Dropped::Oversized);
                warn!(peer = %name, "Dropped a frame of {size} bytes (limit {limit}); closing the connection");
                conn.close(1u32.into(), b"frame too large");
                return Ok(());
            }
            Err(e) => return Err(LinkError::Lost(e.to_string())),
        }
        ctx.metrics.bytes_in.inc_by(buf.len() as u64 + 4);
        match codec::decode_message(&buf) {
            Ok(msg) => {
                let sent = match msg {
                    // Verified in batches on the way (`txverify.rs`), and blocks kept behind the
                    // transfers that came before them.
                    Message::Transaction(tx) => {
                        ctx.gossip.send(Gossiped::Tx(from, tx)).await.is_ok()
                    }
                    msg @ (Message::Proposal(_) | Message::Decision(_)) => {
                        ctx.gossip.send(Gossiped::Block(from, msg)).await.is_ok()
                    }
                    msg => ctx
                        .to_core
                        .send(CoreInput::Message { from, msg })
                        .await
                        .is_ok(),
                };
                if !sent {
                    return Ok(()); // the core stopped
                }
            }
            Err(e) => {
                ctx.metrics
                    .dropped(crate::node::metrics::Dropped::Undecodable);
                if !warned {
                    warned = true;
                    warn!(peer = %name, "Dropped an undecodable frame: {e} (further ones from this connection are only counted)");
                }
            }
        }
    }
}

async fn dial_loop(ctx: Arc<Ctx>, endpoint: quinn::Endpoint, addr: String) {
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = ctx.shutdown.clone();
    let mut last_error = String::new();
    let mut unanswered = Unanswered::default();
    let mut again = false;
    loop {
        let result = tokio::select! {
            r = dial_once(&ctx, &endpoint, &addr) => r,
            _ = shutdown.changed() => return,
        };
        let again_before = std::mem::take(&mut again);
        if result.is_ok() {
            unanswered = Unanswered::default();
        }
        match result {
            Ok(DialEnd::Myself) => {
                debug!(%addr, "this peer address is this node itself; not dialing it");
                return;
            }
            Ok(DialEnd::Pending) => {
                let mut chain = ctx.chain.subscribe();
                tokio::select! {
                    _ = chain.wait_for(|c| c.is_some()) => {},
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Ok(DialEnd::Closed) => backoff = BACKOFF_MIN,
            // Once at once; should it repeat, with the backoff (no busy loop on a confused peer).
            Ok(DialEnd::Again) if !again_before => {
                again = true;
                backoff = BACKOFF_MIN;
                continue;
            }
            Ok(DialEnd::Again) => backoff = (backoff * 2).min(BACKOFF_MAX),
            Err(LinkError::Redial) => {
                backoff = BACKOFF_MIN;
                continue;
            }
            Err(e) => {
                let text = e.to_string();
                match &e {
                    LinkError::RefusedByPeer(_) | LinkError::RefusedByUs(_) => {
                        error!(peer = %addr, "{text}")
                    }
                    _ if unanswered.failed(&addr, &e) => {}
                    _ if text != last_error => debug!(peer = %addr, "dial failed: {text}"),
                    _ => {}
                }
                last_error = text;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()) % 50);
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {},
            _ = ctx.redial.notified() => backoff = BACKOFF_MIN,
            _ = shutdown.changed() => return,
        }
    }
}

/// A peer not answering is worth a warning after this long (peers started one after the other
/// do not answer at first)...
const UNANSWERED_WARN: Duration = Duration::from_secs(10);
/// ...and again after this long, while it still does not.
const UNANSWERED_REWARN: Duration = Duration::from_secs(300);

/// Since when one peer address fails to answer, and the last warning about it.
#[derive(Default)]
struct Unanswered {
    since: Option<Instant>,
    warned: Option<(Instant, std::mem::Discriminant<LinkError>)>,
}

impl Unanswered {
    /// Warns, with the address, about a name that does not resolve (at once: it will not start
    /// to) or a peer silent for `UNANSWERED_WARN`; once per kind of failure and
    /// `UNANSWERED_REWARN`. Returns whether it warned.
    fn failed(&mut self, addr: &str, e: &LinkError) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        let kind = std::mem::discriminant(e);
        let resolve = matches!(e, LinkError::Resolve(_));
        let due = self
            .warned
            .is_none_or(|(at, k)| k != kind || at.elapsed() >= UNANSWERED_REWARN);
        if !due || !(resolve || since.elapsed() >= UNANSWERED_WARN) {
            return false;
        }
        self.warned = Some((Instant::now(), kind));
        if resolve {
            warn!(
                peer = %addr,
                "Peer address {addr} does not resolve to an IP address (no such host?); still \
                 trying: check --peers (or the genesis's addresses) and DNS"
            );
        } else {
            warn!(
                peer = %addr,
                "Peer {addr} has not answered for {} s ({e}); still trying: is it running, and \
                 does every firewall on the way let UDP through to its port?",
                since.elapsed().as_secs()
            );
        }
        true
    }
}

enum DialEnd {
    Myself,
    Pending,
    /// The hello we sent had no genesis, and we have one now: dial again at once.
    Again,
    Closed,
}

async fn dial_once(
    ctx: &Ctx,
    endpoint: &quinn::Endpoint,
    addr: &str,
) -> Result<DialEnd, LinkError> {
    let local_v4 = endpoint.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    let target = resolve(addr, local_v4).await?;
    let connecting = endpoint
        .connect(target, tls::SERVER_NAME)
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let redial = ctx.redial.notified();
    let conn = tokio::select! {
        c = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting) => c,
        // An attempt sent before the peer was listening waits for a retransmission: start over.
        _ = redial => return Err(LinkError::Redial),
    };
    let conn = conn.map_err(|_| LinkError::Timeout)?.map_err(|e| match e {
        quinn::ConnectionError::TransportError(t)
            if t.code.to_string().contains("crypto") || t.to_string().contains("certificate") =>
        {
            LinkError::RefusedByPeer(format!(
                "TLS handshake refused ({t}): our key is not in its genesis, or its key not in ours"
            ))
        }
        e => LinkError::Connect(e.to_string()),
    })?;
    let key = peer_key(&conn).ok_or_else(|| LinkError::Lost("no peer certificate".into()))?;
    if key == ctx.key.public_key() {
        conn.close(0u32.into(), b"self");
        return Ok(DialEnd::Myself);
    }
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let mine = ctx.hello();
    let sent_genesis = mine.genesis.is_some();
    wire::write_frame(&mut send, &wire::encode_hello(&HelloReply::Welcome(mine)))
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let reply = read_hello(&mut recv).await.map_err(|e| match e {
        LinkError::Lost(s) => {
            LinkError::Lost(format!("{s} (the peer may have refused our certificate)"))
        }
        e => e,
    })?;
    let hello = match reply {
        HelloReply::Welcome(h) => h,
        HelloReply::Refused(reason) => {
            ctx.metrics
                .handshake_refused(crate::node::metrics::HandshakeRefused::RefusedByPeer);
            conn.close(0u32.into(), b"refused");
            return Err(LinkError::RefusedByPeer(reason));
        }
    };
    match handshake::on_hello(ctx, &hello, key).map(|v| handshake::dialer_verdict(sent_genesis, v))
    {
        Err(reason) => {
            conn.close(0u32.into(), b"refused");
            Err(LinkError::RefusedByUs(format!("{}: {reason}", hello.name)))
        }
        Ok(Verdict::Pending) if ctx.chain().is_some() => {
            // Our genesis was fixed while the hellos crossed: the next hello carries it.
            conn.close(0u32.into(), b"pending");
            Ok(DialEnd::Again)
        }
        Ok(Verdict::Pending) => {
            conn.close(0u32.into(), b"pending");
            Ok(DialEnd::Pending)
        }
        Ok(Verdict::Ready(index)) => {
            session(ctx, &conn, send, index, &hello.name).await;
            Ok(DialEnd::Closed)
        }
    }
}

/// Pumps our frames to one peer until the connection ends.
async fn session(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    index: ValidatorIndex,
    name: &str,
) {
    let (tx, mut rx) = peer_queue(PEER_QUEUE, PEER_QUEUE_BYTES);
    let counts = tx.bytes.clone();
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    {
        let mut peers = lock(&ctx.peers);
        peers.insert(
            index,
            PeerQueue {
                name: name.to_string(),
                tx,
                generation,
            },
        );
        ctx.metrics.peers.set(peers.len() as i64);
    }
    info!(peer = name, "Peer connected: {name}");
    let _ = ctx.to_core.send(CoreInput::PeerConnected(index)).await;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                if send.write_all(&frame).await.is_err() {
                    break;
                }
            }
            _ = conn.closed() => break,
            _ = shutdown.changed() => break,
        }
    }
    {
        let mut peers = lock(&ctx.peers);
        if peers
            .get(&index)
            .is_some_and(|p| p.generation == generation)
        {
            peers.remove(&index);
        }
        ctx.metrics.peers.set(peers.len() as i64);
    }
    conn.close(0u32.into(), b"bye");
    let dropped = counts.dropped_frames.load(Ordering::Relaxed);
    if dropped > 0 {
        info!(
            peer = name,
            "Peer disconnected: {name} ({dropped} frames, {} bytes, did not fit its send queue)",
            counts.dropped_bytes.load(Ordering::Relaxed)
        );
    } else {
        info!(peer = name, "Peer disconnected: {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that never reads: its queue stops at the byte bound, long before the frame bound,
    /// and what is dropped is counted.
    #[tokio::test]
    async fn a_peer_that_never_reads_costs_at_most_the_byte_bound() {
        const LIMIT: usize = 1024 * 1024;
        let (tx, mut rx) = peer_queue(PEER_QUEUE, LIMIT);
        let frame = Bytes::from(vec![0u8; 100 * 1024]);
        let mut queued = 0usize;
        for _ in 0..1000 {
            if tx.try_send(frame.clone()).is_ok() {
                queued += frame.len();
            }
        }
        assert_eq!(
            queued,
            10 * frame.len(),
            "ten frames of 100 KiB fit in 1 MiB"
        );
        assert!(queued <= LIMIT);
        assert_eq!(tx.room(), LIMIT - queued);
        assert_eq!(tx.counts().dropped_frames.load(Ordering::Relaxed), 990);
        assert_eq!(
            tx.counts().dropped_bytes.load(Ordering::Relaxed),
            990 * frame.len() as u64
        );
        assert!(matches!(
            tx.try_send(frame.clone()),
            Err(QueueFull::Bytes { .. })
        ));
        // Small frames still fit in the room left; a frame read gives its room back.
        assert!(tx.try_send(Bytes::from(vec![0u8; LIMIT - queued])).is_ok());
        assert_eq!(tx.room(), 0);
        assert_eq!(rx.recv().await.map(|f| f.len()), Some(frame.len()));
        assert_eq!(tx.room(), frame.len());
        assert!(tx.try_send(frame.clone()).is_ok());
    }

    #[tokio::test]
    async fn the_frame_bound_still_holds_for_small_frames() {
        let (tx, _rx) = peer_queue(4, 1024 * 1024);
        for _ in 0..4 {
            tx.try_send(Bytes::from_static(b"vote")).unwrap();
        }
        assert_eq!(
            tx.try_send(Bytes::from_static(b"vote")),
            Err(QueueFull::Frames(4))
        );
        assert_eq!(tx.room(), 1024 * 1024 - 16);
    }
}
