//! Answers sync requests from the store, on a thread of its own: a read of up to 4 MiB of
//! finalized blocks never runs on the consensus loop (issue 12). The askers are validators (the
//! core's `Output::ServeSync`, already within the core's budget per peer) and followers
//! (`followers.rs`, within the same budget kept there).
//!
//! One thread serves the requests in order, so each response is packed (`SyncPacker`, the
//! core's one rule) within the room the queue of the asker has when it is read (for a
//! validator, the instance of its key that asked: `twins::reply_queue`), and at most one
//! response is held in memory at a time. An asker beyond the last stored block gets an empty
//! answer: a follower reads it as "nothing more here". Requests wait in
//! a bounded channel; when it is full a request is dropped and counted (the
//! peer asks again, and the core already limits how often each peer is answered). The driver
//! commits every finalized block before it hands a request over, so a response never lacks a
//! block the core has finalized.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use timed_core::codec::MAX_MESSAGE_BYTES;
use timed_core::message::{Message, SyncPacker};
use timed_core::types::{Height, ValidatorIndex};
use tracing::error;

use crate::net::queue::{PeerSender, frame_of};
use crate::net::transport::queue_on;
use crate::net::twins::reply_queue;
use crate::node::ctx::Ctx;

/// Requests waiting to be served, at most: a few per peer of a large set.
const QUEUE: usize = 256;

/// Who asked, and so where the answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    /// A validator, through the core.
    Validator(ValidatorIndex),
    /// A follower's link (`followers.rs`).
    Follower(u64),
}

impl Asker {
    fn queue(self, ctx: &Ctx) -> Option<PeerSender> {
        match self {
            Asker::Validator(v) => reply_queue(ctx, v),
            Asker::Follower(id) => ctx.followers.queue(id),
        }
    }
}

struct Request {
    to: Asker,
    from: Height,
    max_blocks: u32,
}

/// The handle the driver and the followers' links keep; the thread ends when the last is dropped.
#[derive(Clone)]
pub struct SyncServer {
    tx: SyncSender<Request>,
}

impl SyncServer {
    pub fn start(ctx: Arc<Ctx>) -> SyncServer {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("timed-sync".into())
            .spawn(move || run(&ctx, rx))
            .expect("spawning the sync thread");
        SyncServer { tx }
    }

    /// Queues a request; false when the queue is full (the request is dropped).
    pub fn serve(&self, to: Asker, from: Height, max_blocks: u32) -> bool {
        match self.tx.try_send(Request {
            to,
            from,
            max_blocks,
        }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Room kept in the asker's queue beside the blocks: the frame's length prefix and the
/// message's own fields.
const OVERHEAD: usize = 1024;

fn run(ctx: &Ctx, rx: Receiver<Request>) {
    for r in rx {
        let Some(queue) = r.to.queue(ctx) else {
            continue; // gone: nothing is read for it
        };
        let budget = queue.room().saturating_sub(OVERHEAD).min(MAX_MESSAGE_BYTES);
        if budget == 0 {
            continue; // not reading: nothing is read for it
        }
        let mut answer = SyncPacker::new(r.max_blocks, budget);
        match ctx.store.sync_answer(r.from, &mut answer) {
            Ok(()) => {
                let blocks = answer.into_blocks();
                queue_on(ctx, &queue, frame_of(&Message::SyncResponse { blocks }));
            }
            // Not fatal: nothing this node signs depends on it. The read error says which file.
            Err(e) => error!(
                "cannot read blocks from {} to serve a peer catching up: {e}",
                r.from
            ),
        }
    }
}
