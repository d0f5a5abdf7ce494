//! Answers peers' sync requests (`Output::ServeSync`) from the store, on a thread of its own: a
//! read of up to 4 MiB of finalized blocks never runs on the consensus loop (issue 12).
//!
//! One thread serves the requests in order, so each response is packed (`SyncPacker`, the
//! core's one rule) within the room the queue of the asking instance has when it is read
//! (`twins::reply_room`), and at most one response is held in memory at a time. Requests wait in
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

use crate::net::queue::frame_of;
use crate::net::twins::{reply_room, send_reply};
use crate::node::ctx::Ctx;

/// Requests waiting to be served, at most: a few per peer of a large set.
const QUEUE: usize = 256;

struct Request {
    to: ValidatorIndex,
    from: Height,
    max_blocks: u32,
}

/// The handle the driver keeps; the thread ends when it is dropped.
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
    pub fn serve(&self, to: ValidatorIndex, from: Height, max_blocks: u32) -> bool {
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

fn run(ctx: &Ctx, rx: Receiver<Request>) {
    for r in rx {
        let budget = reply_room(ctx, r.to, MAX_MESSAGE_BYTES);
        if budget == 0 {
            continue; // gone, or not reading: nothing is read for it
        }
        let mut answer = SyncPacker::new(r.max_blocks, budget);
        match ctx.store.sync_answer(r.from, &mut answer) {
            Ok(()) => {
                let blocks = answer.into_blocks();
                send_reply(ctx, r.to, frame_of(&Message::SyncResponse { blocks }));
            }
            // Not fatal: nothing this node signs depends on it. The read error says which file.
            Err(e) => error!(
                "cannot read blocks from {} to serve a peer catching up: {e}",
                r.from
            ),
        }
    }
}
