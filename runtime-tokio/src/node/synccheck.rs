//! Sync answers' certificates checked off the consensus loop, and the next answer asked for
//! before the loop asks (catch-up speed, issue 15).
//!
//! A node catching up spends about half of its loop checking the certificates of the blocks it
//! fetches. Here the answers to its requests are checked on the blocking pool
//! (`CertificateChecker::check`, from `Node::certificate_checker`), and handed to the core as
//! `Input::SyncChecked`, while the loop applies the answer before. For the loop to have that
//! answer before to apply, the next request goes out when an answer arrives (a *read-ahead*:
//! to the peer that answered, from the height after its last block, only when its answer was
//! full), and the core's own request for those blocks, when it makes it, is not sent again.
//!
//! Bounds, as for any hostile input:
//! - Only the answer to a request this node sent (its core's, or a read-ahead) is checked here,
//!   one at a time; any other goes to the core as it came (the core checks it there, and the
//!   loop's budget and cool-off apply as before).
//! - At most `MAX_AHEAD` read-aheads wait for the core's request; they and the requests
//!   expected are forgotten after `PATIENCE`, and at most `MAX_EXPECTED` are kept.
//! - Answers keep their order of arrival: the core applies them in the order they came.
//!
//! The core's rules are unchanged: it asks one peer at a time, rotates on silence, and checks
//! every block (a certificate checked here counts only if its set is still the set of its
//! height when the block is applied).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timed_core::message::{Decision, MAX_SYNC_BLOCKS, Message};
use timed_core::types::{Height, ValidatorIndex};
use timed_core::verified::CertificateChecker;
use tokio::sync::mpsc;

use crate::net::queue::frame_of;
use crate::net::twins::send_frame;
use crate::node::ctx::{CoreInput, Ctx, lock};

/// Read-aheads waiting for the core's request at most: the core applies one answer while the
/// next is checked and the one after is on its way.
const MAX_AHEAD: usize = 2;
/// Requests whose answer is awaited, kept at most.
const MAX_EXPECTED: usize = 8;
/// A request not answered (or a read-ahead not asked for by the core) within this is forgotten.
const PATIENCE: Duration = Duration::from_secs(5);

/// An answer of at least this many blocks is checked in two halves at once (`check`).
const SPLIT_FROM: usize = 16;

/// Sync answers in (`SyncResponse`s, from the peers' read loops), waiting for their check.
pub const ANSWER_QUEUE: usize = 4;

/// What the loop and the checker share: the checker the loop published last, and the requests
/// in flight.
#[derive(Default)]
pub struct SyncCheck {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    checker: Option<CertificateChecker>,
    /// The height `checker` was made at.
    published: Height,
    /// Requests sent (the core's or read ahead), by peer and first height, whose answer is
    /// awaited.
    expected: Vec<(ValidatorIndex, Height, Instant)>,
    /// Requests read ahead that the core has not made yet.
    ahead: Vec<(ValidatorIndex, Height, Instant)>,
}

impl Inner {
    fn forget_old(&mut self, now: Instant) {
        let fresh = |e: &(ValidatorIndex, Height, Instant)| now.duration_since(e.2) < PATIENCE;
        self.expected.retain(fresh);
        self.ahead.retain(fresh);
        if self.expected.len() > MAX_EXPECTED {
            self.expected.drain(..self.expected.len() - MAX_EXPECTED);
        }
    }
}

impl SyncCheck {
    /// The checker of the node's heights from `height` on (`Node::certificate_checker`),
    /// made only when the height moved.
    pub fn publish(&self, height: Height, make: impl FnOnce() -> CertificateChecker) {
        let mut inner = lock(&self.inner);
        if inner.checker.is_none() || inner.published != height {
            inner.checker = Some(make());
            inner.published = height;
        }
    }

    /// The core asks `peer` for the blocks from `from` on: whether to send the request. Not
    /// when a read-ahead asked the same already (its answer is on its way or here).
    pub fn core_asks(&self, peer: ValidatorIndex, from: Height) -> bool {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.forget_old(now);
        // A read-ahead below what the core asks for now is of no more use.
        inner.ahead.retain(|(_, h, _)| *h >= from);
        if let Some(i) = inner
            .ahead
            .iter()
            .position(|(p, h, _)| *p == peer && *h == from)
        {
            inner.ahead.remove(i);
            return false;
        }
        inner.expected.push((peer, from, now));
        true
    }

    /// An answer from `peer` whose first block is of height `first`: the checker to check it
    /// with if it answers a request of ours, and whether to read ahead from `next` (then
    /// recorded as sent).
    fn answered(
        &self,
        peer: ValidatorIndex,
        first: Height,
        next: Option<Height>,
    ) -> (Option<CertificateChecker>, bool) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.forget_old(now);
        let Some(i) = inner
            .expected
            .iter()
            .position(|(p, h, _)| *p == peer && *h == first)
        else {
            return (None, false);
        };
        inner.expected.remove(i);
        let ahead = next.filter(|_| inner.ahead.len() < MAX_AHEAD);
        if let Some(next) = ahead {
            inner.expected.push((peer, next, now));
            inner.ahead.push((peer, next, now));
        }
        (inner.checker.clone(), ahead.is_some())
    }
}

/// Runs until the core stops: sync answers in, in arrival order; each that answers a request
/// of ours checked on the blocking pool and handed over as `CoreInput::SyncChecked`, the others
/// as they came.
pub async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<(ValidatorIndex, Vec<Decision>)>) {
    while let Some((from, mut blocks)) = rx.recv().await {
        // The core applies no more of an answer (`on_sync_response`): none beyond is checked.
        blocks.truncate(MAX_SYNC_BLOCKS as usize);
        let first = blocks.first().map(|d| d.block.height());
        let next = read_ahead_from(&blocks);
        let (checker, read_ahead) = match first {
            Some(first) => ctx.sync_check.answered(from, first, next),
            None => (None, false),
        };
        if let (true, Some(next)) = (read_ahead, next) {
            let request = Message::SyncRequest {
                from: next,
                max_blocks: MAX_SYNC_BLOCKS,
            };
            send_frame(&ctx, from, frame_of(&request));
        }
        let input = match checker {
            Some(checker) => {
                match check(checker, blocks).await {
                    Some(answer) => {
                        tracing::debug!(
                            blocks = answer.blocks().len(),
                            checked = answer.checked(),
                            "sync answer checked off the loop"
                        );
                        CoreInput::SyncChecked { from, answer }
                    }
                    None => continue, // the check panicked: the answer is lost, the core asks again
                }
            }
            None => {
                tracing::debug!(?first, "sync answer to the core unchecked");
                CoreInput::Message {
                    from,
                    msg: Message::SyncResponse { blocks },
                }
            }
        };
        if ctx.to_core.send(input).await.is_err() {
            return; // the core stopped
        }
    }
}

/// Where to read ahead after an answer of `blocks`: past its last, when it is full and of
/// consecutive heights (the peer has more). Its heights are the peer's word, any `u64`.
fn read_ahead_from(blocks: &[Decision]) -> Option<Height> {
    let (first, last) = (
        blocks.first()?.block.height(),
        blocks.last()?.block.height(),
    );
    let span = u64::try_from(blocks.len()).ok()?.checked_sub(1)?;
    let consecutive = first.0.checked_add(span) == Some(last.0);
    let after = last.0.checked_add(1)?;
    (blocks.len() == MAX_SYNC_BLOCKS as usize && consecutive).then_some(Height(after))
}

/// `blocks` checked on the blocking pool, in two halves at once when there are enough of them:
/// the loop uses about half a core while it applies the answer before, and the check is what a
/// catch-up waits for. None if a check panicked.
async fn check(
    checker: CertificateChecker,
    mut blocks: Vec<Decision>,
) -> Option<timed_core::verified::CheckedDecisions> {
    if blocks.len() < SPLIT_FROM {
        return tokio::task::spawn_blocking(move || checker.check(blocks))
            .await
            .ok();
    }
    let second = blocks.split_off(blocks.len() / 2);
    let other = checker.clone();
    let (first, second) = tokio::join!(
        tokio::task::spawn_blocking(move || checker.check(blocks)),
        tokio::task::spawn_blocking(move || other.check(second)),
    );
    Some(first.ok()?.then(second.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::consensus::{Node, NodeConfig};

    fn checker() -> CertificateChecker {
        let (keys, genesis) = crate::node::driver::test_genesis("test");
        let node = Node::new(&genesis, keys[0].clone(), NodeConfig::default()).unwrap();
        node.certificate_checker()
    }

    /// Only answers to our own requests are checked off the loop; a full one reads ahead from
    /// the peer that sent it, at most `MAX_AHEAD` answers beyond what the core asked for, and
    /// the core's request for an answer read ahead is not sent again. A peer that answers
    /// unasked (a liar, a flood) gets nothing checked off the loop and no request back.
    #[test]
    fn only_answers_asked_for_are_checked_and_read_ahead_stays_bounded() {
        let sc = SyncCheck::default();
        sc.publish(Height(1), checker);
        let (p, q) = (ValidatorIndex(1), ValidatorIndex(2));
        // Unasked: left to the core, nothing read ahead.
        let (c, ahead) = sc.answered(p, Height(1), Some(Height(65)));
        assert!(c.is_none() && !ahead);
        assert!(sc.core_asks(p, Height(1)));
        // Another peer answering what p was asked: not ours either.
        let (c, ahead) = sc.answered(q, Height(1), Some(Height(65)));
        assert!(c.is_none() && !ahead);
        // p's answer: checked, and 65 read ahead; then 65's answer comes before the core asks
        // for it, and 129 is read ahead; the third is not (two wait for the core already).
        let (c, ahead) = sc.answered(p, Height(1), Some(Height(65)));
        assert!(c.is_some() && ahead);
        let (c, ahead) = sc.answered(p, Height(65), Some(Height(129)));
        assert!(c.is_some() && ahead);
        let (c, ahead) = sc.answered(p, Height(129), Some(Height(193)));
        assert!(c.is_some() && !ahead, "at most {MAX_AHEAD} read ahead");
        // The same answer again (a replay): no longer expected.
        let (c, _) = sc.answered(p, Height(129), Some(Height(193)));
        assert!(c.is_none());
        // The core asks for what was read ahead: not sent; then for the next: sent.
        assert!(!sc.core_asks(p, Height(65)));
        assert!(!sc.core_asks(p, Height(129)));
        assert!(sc.core_asks(p, Height(193)));
        // A read-ahead of p does not stand for a request to q.
        let (_, ahead) = sc.answered(p, Height(193), Some(Height(257)));
        assert!(ahead);
        assert!(sc.core_asks(q, Height(257)));
        // A partial answer reads nothing ahead.
        let (c, ahead) = sc.answered(q, Height(257), None);
        assert!(c.is_some() && !ahead);
    }

    /// An empty block of height `h` with an empty certificate: only its height matters here.
    fn decision(h: u64) -> Decision {
        let s = crate::storage::stored::test_block(h, None);
        Decision {
            block: s.block,
            certificate: s.certificate,
        }
    }

    /// Only a full answer of consecutive heights reads ahead, and heights a peer made up at the
    /// top of the range (a liar's) read nothing ahead and panic nowhere.
    #[test]
    fn only_a_full_consecutive_answer_reads_ahead_whatever_its_heights() {
        let full = |from: u64| -> Vec<Decision> {
            (0..u64::from(MAX_SYNC_BLOCKS))
                .map(|k| decision(from.wrapping_add(k)))
                .collect()
        };
        assert_eq!(read_ahead_from(&full(1)), Some(Height(65)));
        assert_eq!(read_ahead_from(&full(1)[..63]), None, "not full");
        assert_eq!(read_ahead_from(&[]), None);
        let mut gap = full(1);
        gap[10] = decision(500);
        gap.swap(10, 63);
        assert_eq!(read_ahead_from(&gap), None, "not consecutive");
        assert_eq!(
            read_ahead_from(&full(u64::MAX - 63)),
            None,
            "no height after the last"
        );
        assert_eq!(read_ahead_from(&full(u64::MAX - 10)), None, "heights wrap");
        let mut far = full(1);
        far[63] = decision(u64::MAX);
        assert_eq!(read_ahead_from(&far), None);
    }
}
