//! A full node's upstream links: the nodes it follows (validators or other full nodes, its
//! `--peers`). One dialer per address connects, says hello (the follower's side of
//! `followers.rs`), then passes what the upstream pushes and answers (`Decision`s,
//! `SyncResponse`s) to the consensus loop as `CoreInput::Upstream`, and writes what the loop
//! sends it: sync requests and the transfers clients submitted here.
//!
//! Whom to ask for which blocks is the core's rule (`timed_core::follow::Upstreams`, kept by the
//! driver); checking the blocks is the core's too (`Input::Certified`). This module only moves
//! bytes, so an upstream that lies or goes silent costs the node nothing but its own link.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use timed_core::codec;
use timed_core::follow::LinkId;
use timed_core::message::Message;
use tracing::{debug, info, warn};

use crate::net::queue::{PeerReceiver, PeerSender, peer_queue};
use crate::net::tls;
use crate::net::transport::{
    BACKOFF_MAX, BACKOFF_MIN, HANDSHAKE_TIMEOUT, LinkError, peer_identity, queue_on, read_hello,
    resolve,
};
use crate::net::wire::{self, FrameError, HelloGenesis, HelloReply, MAX_FRAME_BYTES};
use crate::node::ctx::{CoreInput, Ctx, PEER_QUEUE, PEER_QUEUE_BYTES, lock};

struct Link {
    name: String,
    tx: PeerSender,
}

/// The upstream links up now.
#[derive(Default)]
pub struct UpstreamLinks {
    links: Mutex<BTreeMap<LinkId, Link>>,
    next: AtomicU64,
}

impl UpstreamLinks {
    fn add(&self, name: &str) -> (LinkId, PeerReceiver) {
        let id = LinkId(self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = peer_queue(PEER_QUEUE, PEER_QUEUE_BYTES);
        lock(&self.links).insert(
            id,
            Link {
                name: name.to_string(),
                tx,
            },
        );
        (id, rx)
    }

    fn remove(&self, id: LinkId) {
        lock(&self.links).remove(&id);
    }

    pub fn len(&self) -> usize {
        lock(&self.links).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the nodes followed now.
    pub fn names(&self) -> Vec<String> {
        lock(&self.links).values().map(|l| l.name.clone()).collect()
    }

    /// Queues `frame` for upstream `to`, if its link is up.
    pub fn send(&self, ctx: &Ctx, to: LinkId, frame: Bytes) {
        if let Some(l) = lock(&self.links).get(&to) {
            queue_on(ctx, &l.tx, frame);
        }
    }

    /// Queues `frame` for every upstream (a transfer a client submitted here).
    pub fn broadcast(&self, ctx: &Ctx, frame: Bytes) {
        for l in lock(&self.links).values() {
            queue_on(ctx, &l.tx, frame.clone());
        }
    }
}

/// Dials `addr` for as long as the node runs, with backoff after a failure.
pub(super) async fn dial_loop(ctx: Arc<Ctx>, endpoint: quinn::Endpoint, addr: String) {
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = ctx.shutdown.clone();
    let mut last_error = String::new();
    loop {
        let result = tokio::select! {
            r = dial_once(&ctx, &endpoint, &addr) => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                let text = e.to_string();
                // Said once; the same failure again is only logged at debug level.
                if text != last_error {
                    warn!(%addr, "Cannot follow {addr}: {text} (retrying)");
                    last_error = text;
                } else {
                    debug!(%addr, "cannot follow {addr}: {e}");
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection to an upstream, from the dial to its end.
async fn dial_once(ctx: &Ctx, endpoint: &quinn::Endpoint, addr: &str) -> Result<(), LinkError> {
    let Some(chain) = ctx.chain() else {
        return Err(LinkError::Connect("no genesis yet".into()));
    };
    let local_v4 = endpoint.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    let target = resolve(addr, local_v4).await?;
    let connecting = endpoint
        .connect(target, tls::SERVER_NAME)
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| LinkError::Timeout)?
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let (key, _) =
        peer_identity(&conn).ok_or_else(|| LinkError::Lost("no peer certificate".into()))?;
    if key == ctx.key.public_key() {
        conn.close(0u32.into(), b"self");
        return Err(LinkError::RefusedByUs(
            "this address is this node itself".into(),
        ));
    }
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    wire::write_frame(
        &mut send,
        &wire::encode_hello(&HelloReply::Welcome(ctx.hello())),
    )
    .await
    .map_err(|e| LinkError::Lost(e.to_string()))?;
    let hello = match read_hello(&mut recv).await? {
        HelloReply::Welcome(h) => h,
        HelloReply::Refused(reason) => {
            conn.close(0u32.into(), b"refused");
            return Err(LinkError::RefusedByPeer(reason));
        }
    };
    if hello.public_key != key {
        conn.close(0u32.into(), b"refused");
        return Err(LinkError::RefusedByUs(
            "its hello names a key other than its TLS certificate's".into(),
        ));
    }
    if hello.genesis.as_ref().map(HelloGenesis::hash) != Some(chain.hash) {
        conn.close(0u32.into(), b"refused");
        return Err(LinkError::RefusedByUs(format!(
            "{} runs another genesis than this node's {} (or none yet)",
            hello.name,
            hex::encode(&chain.hash.0[..8])
        )));
    }
    let name = hello.name;
    let (link, rx) = ctx.upstreams.add(&name);
    ctx.metrics.upstreams.set(ctx.upstreams.len() as i64);
    info!(peer = %name, "Following {name} at {addr}");
    let _ = ctx.to_core.send(CoreInput::UpstreamUp(link)).await;
    let reads = async {
        read_loop(ctx, recv, link, &name).await;
        conn.close(0u32.into(), b"bye");
    };
    let writes = rx.pump(&conn, &mut send, ctx.shutdown.clone());
    tokio::join!(reads, writes);
    ctx.upstreams.remove(link);
    ctx.metrics.upstreams.set(ctx.upstreams.len() as i64);
    let _ = ctx.to_core.send(CoreInput::UpstreamDown(link)).await;
    info!(peer = %name, "No longer following {name}: the connection ended");
    // A link that ends at once does not redial in a busy loop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Passes an upstream's blocks to the consensus loop until its stream ends. What a follower is
/// not sent is ignored, counted; what does not decode too.
async fn read_loop(ctx: &Ctx, mut recv: quinn::RecvStream, link: LinkId, name: &str) {
    let mut buf = Vec::new();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let read = tokio::select! {
            r = wire::read_frame(&mut recv, &mut buf, MAX_FRAME_BYTES) => r,
            _ = shutdown.changed() => return,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return,
            Err(FrameError::TooLarge { size, limit }) => {
                ctx.metrics
                    .dropped(crate::node::metrics::Dropped::Oversized);
                warn!(
                    peer = name,
                    "{name} sent a frame of {size} bytes (limit {limit}); closing the link"
                );
                return;
            }
            Err(_) => return,
        }
        ctx.metrics.bytes_in.inc_by(buf.len() as u64 + 4);
        let input = match codec::decode_message(&buf) {
            Ok(Message::Decision(d)) => CoreInput::Upstream {
                link,
                blocks: vec![d],
                answer: false,
            },
            Ok(Message::SyncResponse { blocks }) => CoreInput::Upstream {
                link,
                blocks,
                answer: true,
            },
            Ok(other) => {
                debug!(
                    peer = name,
                    "ignored a {} from the node followed",
                    other.kind()
                );
                continue;
            }
            Err(_) => {
                ctx.metrics
                    .dropped(crate::node::metrics::Dropped::Undecodable);
                continue;
            }
        };
        if ctx.to_core.send(input).await.is_err() {
            return; // the core stopped
        }
    }
}
