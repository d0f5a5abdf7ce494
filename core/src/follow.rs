//! Whom a full node asks for the finalized blocks it lacks: `Upstreams`, the rule without the I/O.
//!
//! A full node takes no part in consensus. It follows the chain through a few *upstream* links,
//! validators or other full nodes that admitted it as a follower. Every upstream pushes each block
//! it finalizes, with its certificate; the node applies those at its height
//! (`consensus::Input::Certified`, the very checks a validator makes of a peer's decision) and
//! asks one upstream at a time for the blocks it lacks, with a sync request.
//!
//! What an upstream says about its height is a hint, never a fact (the certificates are the
//! facts, and the core checks them):
//! - a link *claims* the highest height of a block it sent, before anyone checked it;
//! - the request goes to the eligible link with the fewest failures, claimants first: a link
//!   fails when it does not answer within `ASK_TIMEOUT_MS`, or answers without moving the node
//!   on while it claims a height the node lacks; an answer that moves the node on clears its
//!   failures;
//! - a link that claims nothing the node lacks is still asked, at most once per
//!   `PROBE_INTERVAL_MS` (a link just connected, a node that starts far behind): the pushes show
//!   only the newest blocks;
//! - a link that failed is asked at most once per `PROBE_INTERVAL_MS` doubled per failure (up to
//!   64 intervals), whatever it claims.
//!
//! So one upstream that lies (far claims, garbage, silence) costs the node at most a timeout per
//! lie before the honest ones are preferred, and a node with one honest upstream keeps up.

use std::collections::BTreeMap;

use crate::types::{Height, TimestampMs};

/// A request not answered after this long has failed; the next goes elsewhere.
pub const ASK_TIMEOUT_MS: u64 = 2_000;

/// A link that claims nothing the node lacks is asked at most this often.
pub const PROBE_INTERVAL_MS: u64 = 1_000;

/// A runtime's name for one upstream connection (never reused while the node runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// A sync request to send: the blocks from `start` on, to `link`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    /// Where to send it.
    pub link: LinkId,
    /// The first height wanted: the node's next height.
    pub start: Height,
}

#[derive(Clone, Copy, Debug, Default)]
struct Upstream {
    /// The highest height of a block the link sent (unchecked: a hint).
    claimed: Height,
    /// Requests it failed since its last useful answer.
    failures: u32,
    /// When it was last asked.
    asked: Option<TimestampMs>,
}

/// The upstream links of a full node and the sync request in flight. Its size is the runtime's
/// number of links, which the runtime bounds.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    links: BTreeMap<LinkId, Upstream>,
    /// The request in flight: to whom, since when.
    ask: Option<(LinkId, TimestampMs)>,
}

impl Upstreams {
    /// An empty set of links.
    pub fn new() -> Upstreams {
        Upstreams::default()
    }

    /// A link came up.
    pub fn connected(&mut self, link: LinkId) {
        self.links.entry(link).or_default();
    }

    /// A link went down; a request in flight to it is given up.
    pub fn disconnected(&mut self, link: LinkId) {
        self.links.remove(&link);
        if self.ask.is_some_and(|(l, _)| l == link) {
            self.ask = None;
        }
    }

    /// The links up now.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when no link is up.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// `link` sent a block of `height` (checked or not).
    pub fn heard(&mut self, link: LinkId, height: Height) {
        if let Some(u) = self.links.get_mut(&link) {
            u.claimed = u.claimed.max(height);
        }
    }

    /// `link` answered a sync request; the node's height is now `next`, which `progressed` says
    /// is above what it was before the answer.
    pub fn answered(&mut self, link: LinkId, next: Height, progressed: bool) {
        if self.ask.is_some_and(|(l, _)| l == link) {
            self.ask = None;
        }
        let Some(u) = self.links.get_mut(&link) else {
            return;
        };
        if progressed {
            u.failures = 0;
        } else if u.claimed >= next {
            // It said it holds blocks the node lacks, and did not give them.
            u.failures = u.failures.saturating_add(1);
        }
    }

    /// The request to send now, if any. `next` is the node's height: the first block it lacks.
    pub fn poll(&mut self, now: TimestampMs, next: Height) -> Option<Ask> {
        if let Some((link, at)) = self.ask {
            if now.0.saturating_sub(at.0) < ASK_TIMEOUT_MS {
                return None;
            }
            self.ask = None;
            if let Some(u) = self.links.get_mut(&link) {
                u.failures = u.failures.saturating_add(1);
            }
        }
        let (&link, _) = self
            .links
            .iter()
            .filter(|(_, u)| {
                // A link that failed waits twice as long per failure (to 64 intervals): a liar
                // claiming far heights is asked rarely, while the pushes of the others go on.
                let wait = PROBE_INTERVAL_MS << u.failures.min(6);
                (u.claimed >= next && u.failures == 0)
                    || u.asked.is_none_or(|t| now.0.saturating_sub(t.0) >= wait)
            })
            .min_by_key(|(id, u)| (u.failures, u.claimed < next, **id))?;
        if let Some(u) = self.links.get_mut(&link) {
            u.asked = Some(now);
        }
        self.ask = Some((link, now));
        Some(Ask { link, start: next })
    }

    /// The request in flight, if any.
    pub fn in_flight(&self) -> Option<LinkId> {
        self.ask.map(|(l, _)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: LinkId = LinkId(1);
    const B: LinkId = LinkId(2);

    fn t(ms: u64) -> TimestampMs {
        TimestampMs(ms)
    }

    #[test]
    fn a_new_link_is_probed_at_once_and_then_at_most_once_per_interval() {
        let mut u = Upstreams::new();
        assert_eq!(u.poll(t(0), Height(5)), None, "no link, no request");
        u.connected(A);
        let ask = u.poll(t(0), Height(5)).expect("a new link is probed");
        assert_eq!(
            ask,
            Ask {
                link: A,
                start: Height(5)
            }
        );
        assert_eq!(u.poll(t(10), Height(5)), None, "one request in flight");
        u.answered(A, Height(5), false); // nothing there, and it claimed nothing
        assert_eq!(u.poll(t(20), Height(5)), None, "probed a moment ago");
        assert!(u.poll(t(PROBE_INTERVAL_MS), Height(5)).is_some());
    }

    #[test]
    fn a_claimant_is_asked_again_as_soon_as_its_answer_helped() {
        let mut u = Upstreams::new();
        u.connected(A);
        u.heard(A, Height(500));
        assert!(u.poll(t(0), Height(1)).is_some());
        u.answered(A, Height(65), true);
        assert_eq!(
            u.poll(t(1), Height(65)),
            Some(Ask {
                link: A,
                start: Height(65)
            }),
            "more is missing: asked at once, not after a probe interval"
        );
    }

    #[test]
    fn a_liar_loses_its_turn_to_an_honest_link_after_one_failure() {
        let mut u = Upstreams::new();
        u.connected(A); // the liar: a far claim, then nothing useful
        u.connected(B);
        u.heard(A, Height(1_000_000));
        u.heard(B, Height(40));
        // Claimants tie on failures: the lower id goes first.
        assert_eq!(u.poll(t(0), Height(10)).map(|a| a.link), Some(A));
        u.answered(A, Height(10), false);
        assert_eq!(u.poll(t(1), Height(10)).map(|a| a.link), Some(B));
        u.answered(B, Height(41), true);
        // Caught up with B's claim: B has nothing more, and the liar waits out its backoff.
        assert_eq!(u.poll(t(2), Height(41)), None);
        // B pushes a block past a gap: it is asked at once.
        u.heard(B, Height(45));
        assert_eq!(u.poll(t(3), Height(41)).map(|a| a.link), Some(B));
        u.answered(B, Height(46), true);
        assert_eq!(
            u.poll(t(4), Height(46)),
            None,
            "B was just asked, A backs off"
        );
        // The liar is asked again only after two probe intervals (one failure), and after B.
        let late = t(2 * PROBE_INTERVAL_MS);
        assert_eq!(u.poll(late, Height(46)).map(|a| a.link), Some(B));
        u.answered(B, Height(46), false);
        assert_eq!(u.poll(late, Height(46)).map(|a| a.link), Some(A));
    }

    #[test]
    fn silence_past_the_timeout_is_a_failure_and_the_next_request_goes_elsewhere() {
        let mut u = Upstreams::new();
        u.connected(A);
        u.connected(B);
        u.heard(A, Height(100));
        u.heard(B, Height(100));
        assert_eq!(u.poll(t(0), Height(10)).map(|a| a.link), Some(A));
        assert_eq!(u.poll(t(ASK_TIMEOUT_MS - 1), Height(10)), None);
        assert_eq!(
            u.poll(t(ASK_TIMEOUT_MS), Height(10)).map(|a| a.link),
            Some(B),
            "A timed out"
        );
    }

    #[test]
    fn a_link_that_goes_down_takes_its_request_with_it() {
        let mut u = Upstreams::new();
        u.connected(A);
        u.connected(B);
        u.heard(A, Height(100));
        assert_eq!(u.poll(t(0), Height(10)).map(|a| a.link), Some(A));
        u.disconnected(A);
        assert_eq!(u.in_flight(), None);
        assert_eq!(u.poll(t(1), Height(10)).map(|a| a.link), Some(B));
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn an_empty_answer_from_a_link_that_claimed_nothing_missing_is_no_failure() {
        let mut u = Upstreams::new();
        u.connected(A);
        u.connected(B);
        u.heard(A, Height(9)); // all the node has
        assert_eq!(u.poll(t(0), Height(10)).map(|a| a.link), Some(A));
        u.answered(A, Height(10), false);
        assert_eq!(u.poll(t(1), Height(10)).map(|a| a.link), Some(B));
        u.answered(B, Height(10), false);
        // Both probed without fault: after the interval A (the lower id) again, not B first.
        assert_eq!(
            u.poll(t(PROBE_INTERVAL_MS), Height(10)).map(|a| a.link),
            Some(A)
        );
    }
}
