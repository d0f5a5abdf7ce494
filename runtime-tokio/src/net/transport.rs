//! The QUIC transport: one endpoint per node (UDP, the `--port`/`--listen` address), the accept
//! loop and the inbound side of a link, what both sides of a link share (the hello read, the
//! read loop, `LinkError`), and queueing a frame for a peer; the outbound side is `dial.rs`, the
//! queue itself `queue.rs`.
//!
//! Each node dials every peer (its `--peers`, and the validators of the current and next sets at
//! the addresses they registered) and sends its consensus messages on its own outbound connection;
//! it reads the peer's messages from the peer's outbound (our inbound) connection. Every
//! established outbound connection reaches the core as `PeerConnected`, which makes the core
//! re-send its current messages to that peer. A link whose peer leaves every admitted validator
//! set (`net::members`) is closed. An inbound connection also keeps its way back
//! open, used to reach another process of the same key that we do not dial (`twins.rs`, ADR
//! 0024). Sync responses are sized to the room left in the asker's queue (`syncserve.rs`),
//! so a peer that does not read its blocks does not make us read more of them from the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use timed_core::codec;
use timed_core::crypto::PublicKey;
use timed_core::message::Message;
use timed_core::types::ValidatorIndex;
use tracing::{debug, error, info, warn};

use crate::net::cooloff::CoolOff;
use crate::net::dial::{dial_loop, follow_registry};
use crate::net::handshake::{self, Verdict};
use crate::net::queue::PeerSender;
use crate::net::tls::{self, Instance};
use crate::net::twins;
use crate::net::wire::{self, FrameError, HelloReply, MAX_FRAME_BYTES};
use crate::node::ctx::Gossiped;
use crate::node::ctx::{CoreInput, Ctx, Role, lock};
use crate::node::metrics::HandshakeRefused;

pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Queues `frame` on one peer's queue; a full queue drops it, counted (the core re-sends what
/// matters). Which queues a frame goes to is `twins.rs`'s business.
pub fn queue_on(ctx: &Ctx, tx: &PeerSender, frame: Bytes) {
    let len = frame.len() as u64;
    if tx.try_send(frame).is_ok() {
        ctx.metrics.bytes_out.inc_by(len);
    } else {
        ctx.metrics
            .dropped(crate::node::metrics::Dropped::PeerQueueFull);
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
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
    #[error(
        "the address validator {expected} registered is {found}'s: not dialing {found} there \
         (it is reached at its own address)"
    )]
    NotThere { expected: u16, found: String },
}

/// The peer's validator key, and which process of that key it is (its certificate).
pub(super) fn peer_identity(conn: &quinn::Connection) -> Option<(PublicKey, Instance)> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let cert = certs.first()?;
    Some((tls::peer_key(cert).ok()?, tls::instance(cert)))
}

pub(super) async fn resolve(addr: &str, want_v4: bool) -> Result<SocketAddr, LinkError> {
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

pub(super) async fn read_hello(recv: &mut quinn::RecvStream) -> Result<HelloReply, LinkError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read_hello(recv))
        .await
        .map_err(|_| LinkError::Timeout)??
        .ok_or_else(|| LinkError::Lost("stream closed during the hello".into()))
}

/// Spawns the accept loop, a dialer per peer address, and the dialers of the validators whose
/// addresses the chain's registry gives (`dial::follow_registry`).
///
/// A full node dials its peers as the nodes it follows (`upstream.rs`) and nothing else; what
/// connects to it is a follower.
pub fn start(ctx: Arc<Ctx>, endpoint: quinn::Endpoint, peers: Vec<String>) {
    tokio::spawn(accept_loop(ctx.clone(), endpoint.clone()));
    if ctx.role == Role::FullNode {
        for addr in peers {
            tokio::spawn(crate::net::upstream::dial_loop(
                ctx.clone(),
                endpoint.clone(),
                addr,
            ));
        }
        return;
    }
    for addr in peers.clone() {
        tokio::spawn(dial_loop(ctx.clone(), endpoint.clone(), addr));
    }
    tokio::spawn(follow_registry(ctx, endpoint, peers));
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

/// What an inbound connection welcomed by the hello exchange is.
enum Inbound {
    /// A validator's, with the link back to its instance.
    Validator(ValidatorIndex, twins::Registered),
    /// A follower's (`followers.rs`).
    Follower,
}

async fn accept_one(ctx: &Ctx, incoming: quinn::Incoming) -> Result<(), LinkError> {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => return Err(inbound_handshake_error(ctx, e)),
    };
    let (key, instance) =
        peer_identity(&conn).ok_or_else(|| LinkError::Lost("no peer certificate".into()))?;
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
    // Ready: the link back to this instance, registered before we welcome it (or refused, one
    // instance too many); Pending: none.
    let verdict = handshake::on_hello(ctx, &hello, key).and_then(|v| match v {
        Verdict::Ready(index) => {
            twins::register(ctx, index, instance).map(|l| Some(Inbound::Validator(index, l)))
        }
        Verdict::Follower => Ok(Some(Inbound::Follower)),
        Verdict::Pending => Ok(None),
    });
    let reply = match &verdict {
        Ok(_) => HelloReply::Welcome(mine),
        Err(reason) => HelloReply::Refused(reason.clone()),
    };
    let written = wire::write_frame(&mut send, &wire::encode_hello(&reply)).await;
    if let (Ok(Some(Inbound::Validator(index, link))), Err(_)) = (&verdict, &written) {
        twins::unregister(ctx, *index, link.id);
    }
    written.map_err(|e| LinkError::Lost(e.to_string()))?;
    match verdict {
        Err(reason) => {
            let _ = send.finish();
            ctx.metrics
                .handshake_refused(crate::node::metrics::HandshakeRefused::Hello);
            error!(peer = %hello.name, "Refused peer: {reason}");
            // Let the reason reach the peer before the connection goes.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            Ok(())
        }
        Ok(None) => {
            let _ = send.finish();
            conn.closed().await;
            Ok(())
        }
        Ok(Some(Inbound::Follower)) => {
            crate::net::followers::serve(ctx, &conn, send, recv, (key, &hello.name)).await;
            Ok(())
        }
        Ok(Some(Inbound::Validator(index, link))) => {
            if ctx.cooloff.refuse(&conn, index, &hello.name) {
                twins::unregister(ctx, index, link.id);
                return Ok(());
            }
            // A peer that reaches us is up: if we have no connection to it, our dialer may be
            // sleeping off a backoff of seconds (it learns from our outbound connection only).
            if !lock(&ctx.peers).contains_key(&index) {
                ctx.redial.notify_waiters();
            }
            twins::serve_inbound(ctx, &conn, send, recv, (index, instance), link, &hello.name).await
        }
    }
}

/// Returns once validator `from` belongs to no set the policy admits (`net::members`); never
/// before a genesis.
pub(super) async fn left_the_sets(ctx: &Ctx, from: ValidatorIndex) {
    let mut members = ctx.policy.subscribe();
    loop {
        if members
            .borrow_and_update()
            .as_ref()
            .is_some_and(|m| !m.admits_id(from))
        {
            return;
        }
        if members.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Reads `from`'s frames on one stream; `instance`, the process at the other end, is where the
/// answers to its requests go (`twins::asked`).
pub(super) async fn read_loop(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut recv: quinn::RecvStream,
    (from, instance): (ValidatorIndex, Instance),
    name: &str,
) -> Result<(), LinkError> {
    let mut buf = Vec::new();
    let mut warned = false;
    // A message of this peer proved it faulty: the link ends (a frame half read is dropped).
    let mut cooling = std::pin::pin!(ctx.cooloff.started(from));
    // The peer left every set the chain admits (its grace included): the link ends too.
    let mut left = std::pin::pin!(left_the_sets(ctx, from));
    loop {
        let read = tokio::select! {
            r = wire::read_frame(&mut recv, &mut buf, MAX_FRAME_BYTES) => r,
            _ = &mut cooling => {
                CoolOff::close(conn);
                return Ok(());
            }
            _ = &mut left => {
                info!(
                    peer = %name,
                    "Closing the link of {name}: it is no longer in the current or next \
                     validator set, and the grace after it left is over"
                );
                conn.close(0u32.into(), b"not a validator");
                return Ok(());
            }
        };
        match read {
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
                let own = match &msg {
                    Message::Proposal(p) => p.proposer == from,
                    Message::Vote(v) => v.validator == from,
                    _ => false,
                };
                if own {
                    twins::relay(ctx, (from, instance), &buf);
                }
                let sent = match msg {
                    // Verified in batches on the way (`txverify.rs`), and blocks kept behind the
                    // transfers that came before them.
                    Message::Transaction(tx) => {
                        ctx.gossip.send(Gossiped::Tx(from, tx)).await.is_ok()
                    }
                    msg @ (Message::Proposal(_) | Message::Decision(_)) => ctx
                        .gossip
                        .send(Gossiped::Block(from, Box::new(msg)))
                        .await
                        .is_ok(),
                    // Checked off the loop when it answers our request (`synccheck.rs`).
                    Message::SyncResponse { blocks } => {
                        ctx.sync_answers.send((from, blocks)).await.is_ok()
                    }
                    msg => {
                        if matches!(
                            msg,
                            Message::SyncRequest { .. } | Message::BlockRequest { .. }
                        ) {
                            twins::asked(ctx, from, instance);
                        }
                        ctx.to_core
                            .send(CoreInput::Message { from, msg })
                            .await
                            .is_ok()
                    }
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
