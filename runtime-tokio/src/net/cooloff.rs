//! Peers cooling off: a validator whose message proved it faulty (a forged signature or
//! certificate, a body that does not match its signed header: see `node/driver/budget.rs` for
//! which) has its links closed and refused until its cool-off ends. This module owns that state,
//! shared by the consensus loop (which starts a cool-off) and the transport (whose links end and
//! whose handshakes are refused while one runs).
//!
//! Bounded: at most one entry per validator index, and an index comes from an authenticated
//! connection (TLS with a genesis key), so no more entries than validators in the set.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use timed_core::types::ValidatorIndex;
use tokio::sync::watch;
use tracing::debug;

/// How long a provably faulty peer is cut off. Long enough that a forger reconnecting at once
/// gains nothing (one forged message per 30 s costs a node nothing measurable), short enough
/// that a validator whose operator fixed a broken node (a corrupted binary, bad memory) is back
/// within a minute without anyone's help.
pub const COOL_OFF: Duration = Duration::from_secs(30);

/// The close code of a link ended by a cool-off (QUIC application error codes are ours).
const COOL_OFF_CLOSE_CODE: u32 = 0xc0;

/// Which validators are cooling off, and until when.
pub struct CoolOff {
    until: Mutex<BTreeMap<ValidatorIndex, Instant>>,
    /// Bumped at every cool-off that starts: the links waiting in `started` look again.
    started: watch::Sender<u64>,
}

impl Default for CoolOff {
    fn default() -> Self {
        CoolOff {
            until: Mutex::new(BTreeMap::new()),
            started: watch::channel(0).0,
        }
    }
}

impl CoolOff {
    fn until(&self) -> std::sync::MutexGuard<'_, BTreeMap<ValidatorIndex, Instant>> {
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a cool-off of `who` for `length` from `now`. Returns false if one was running
    /// already (then it is left as it is: a forger's queued messages do not stretch it, and the
    /// node says so once).
    pub fn start(&self, who: ValidatorIndex, now: Instant, length: Duration) -> bool {
        {
            let mut until = self.until();
            until.retain(|_, end| *end > now);
            if until.contains_key(&who) {
                return false;
            }
            until.insert(who, now + length);
        }
        self.started.send_modify(|n| *n = n.wrapping_add(1));
        true
    }

    /// How long `who` still cools off at `now`, if it does.
    pub fn left(&self, who: ValidatorIndex, now: Instant) -> Option<Duration> {
        let end = *self.until().get(&who)?;
        (end > now).then(|| end - now)
    }

    /// Closes `conn`, a link of `who` just through its hello, if `who` cools off now, and says
    /// so at debug level (the warning was given when the cool-off started); true if it did.
    pub fn refuse(&self, conn: &quinn::Connection, who: ValidatorIndex, name: &str) -> bool {
        let Some(left) = self.left(who, Instant::now()) else {
            return false;
        };
        debug!(peer = %name, "refused a link of {name}: cooling off for {} s more", left.as_secs());
        Self::close(conn);
        true
    }

    /// Closes a link of a peer whose cool-off just started.
    pub fn close(conn: &quinn::Connection) {
        conn.close(
            COOL_OFF_CLOSE_CODE.into(),
            b"cooling off: a message of yours failed verification",
        );
    }

    /// Returns once `who` is cooling off (at once if it is now).
    pub async fn started(&self, who: ValidatorIndex) {
        // Subscribed before looking: a cool-off that starts in between still wakes us.
        let mut changes = self.started.subscribe();
        loop {
            if self.left(who, Instant::now()).is_some() {
                return;
            }
            if changes.changed().await.is_err() {
                // Cannot happen while `self` lives; never wake rather than spin.
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cool_off_runs_once_for_its_length_and_ends() {
        let c = CoolOff::default();
        let (p, q) = (ValidatorIndex(1), ValidatorIndex(2));
        let t0 = Instant::now();
        let len = Duration::from_secs(30);
        assert_eq!(c.left(p, t0), None);
        assert!(c.start(p, t0, len));
        // A second fault while cooling off neither restarts nor stretches it.
        assert!(!c.start(p, t0 + Duration::from_secs(10), len));
        assert_eq!(
            c.left(p, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(c.left(q, t0), None);
        // Over: a new fault starts a new one, and the ended entry is gone (bounded).
        let later = t0 + Duration::from_secs(31);
        assert_eq!(c.left(p, later), None);
        assert!(c.start(q, later, len));
        assert_eq!(c.until().len(), 1);
        assert!(c.start(p, later, len));
    }

    #[tokio::test]
    async fn a_link_waiting_on_a_peer_wakes_when_its_cool_off_starts() {
        let c = std::sync::Arc::new(CoolOff::default());
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.started(ValidatorIndex(3)).await }
        });
        tokio::task::yield_now().await;
        c.start(ValidatorIndex(4), Instant::now(), COOL_OFF);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "woke for another peer");
        c.start(ValidatorIndex(3), Instant::now(), COOL_OFF);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}
