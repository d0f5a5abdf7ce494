//! A peer's outbound queue, bounded in bytes as well as in frames (`PeerSender`): a peer that
//! stops reading costs this node `PEER_QUEUE_BYTES` at most, not a frame count times the largest
//! message (4,096 × 4 MiB). What does not fit is dropped and counted; the core re-sends what
//! matters. Also the frame a consensus message travels in (`frame_of`), and the task that writes a
//! queue to its stream (`PeerReceiver::pump`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use timed_core::codec;
use timed_core::message::Message;
use tokio::sync::mpsc;

/// A consensus message as a ready-to-write frame (length prefix included).
pub fn frame_of(msg: &Message) -> Bytes {
    frame_of_body(&codec::encode_message(msg))
}

/// An encoded message as a ready-to-write frame (one read from a peer, passed on as it came).
pub fn frame_of_body(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
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
    pub(super) bytes: Arc<QueueBytes>,
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

    /// Writes the queued frames to `send` until the queue's senders are gone, a write fails (the
    /// peer stopped reading this stream), the connection ends or the node shuts down.
    pub async fn pump(
        mut self,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                frame = self.recv() => {
                    let Some(frame) = frame else { break };
                    if send.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                _ = conn.closed() => break,
                _ = shutdown.changed() => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ctx::PEER_QUEUE;

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
