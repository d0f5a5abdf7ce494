//! This node's clock offset to its peers, measured from the timestamps of their proposals
//! (`sample_clock`) and summarized as a median (`peers_offset`); a large one is warned about.

use std::time::Instant;

use timed_core::types::{Height, TimestampMs, ValidatorIndex};
use tracing::warn;

use crate::node::clock::unix_ms;
use crate::node::ctx::lock;

use super::Driver;

impl Driver {
    /// Estimates a peer's clock offset from the timestamp of its fresh proposals (one sample per
    /// height, smoothed), and this node's offset to its peers as their `peers_offset`.
    pub(super) fn sample_clock(&mut self, from: ValidatorIndex, height: Height, ts: TimestampMs) {
        if height != self.node.height() {
            return;
        }
        let sample = ts.0 as f64 - unix_ms() as f64;
        let entry = self.offsets.entry(from).or_insert((Height(0), sample));
        if entry.0 >= height {
            return;
        }
        entry.0 = height;
        entry.1 = 0.8 * entry.1 + 0.2 * sample;
        let peers = self
            .node
            .validators()
            .len()
            .saturating_sub(usize::from(self.node.me().is_some()));
        let offset = peers_offset(self.offsets.values().map(|(_, o)| *o), peers);
        {
            let mut live = lock(&self.ctx.live);
            live.clock_offset_ms = offset;
            live.peer_clock_offsets_ms = self
                .offsets
                .iter()
                .map(|(v, (_, o))| (self.chain.name(*v).to_string(), o.round() as i64))
                .collect();
        }
        let Some(offset) = offset else { return };
        self.ctx
            .metrics
            .clock_offset_seconds
            .set(offset as f64 / 1000.0);
        let drift = self.chain.genesis.params.max_clock_drift_ms as i64;
        if offset.abs() > drift / 2
            && self
                .last_skew_warning
                .is_none_or(|t| t.elapsed().as_secs() >= 60)
        {
            self.last_skew_warning = Some(Instant::now());
            let (by, way) = (offset.abs(), if offset < 0 { "ahead of" } else { "behind" });
            warn!(
                clock_offset_ms = offset,
                "Clock skew: this node's clock runs {by} ms {way} its peers' clocks (proposals \
                 more than {drift} ms ahead of a validator's clock are refused); check NTP on \
                 this machine"
            );
        }
    }
}

/// This node's clock offset to its `peers` from their individual offsets (peer clock minus
/// ours): the median; with an even count, of the two middle values the one nearer zero, so that
/// one skewed peer out of two does not make this node look skewed. `None` until more than half
/// of the peers have been measured: one skewed peer heard first says nothing about this clock.
fn peers_offset(offsets: impl Iterator<Item = f64>, peers: usize) -> Option<i64> {
    let mut all: Vec<f64> = offsets.collect();
    if all.is_empty() || 2 * all.len() <= peers {
        return None;
    }
    all.sort_by(f64::total_cmp);
    let n = all.len();
    let m = if n % 2 == 1 {
        all[n / 2]
    } else {
        let (a, b) = (all[n / 2 - 1], all[n / 2]);
        if a.abs() <= b.abs() { a } else { b }
    };
    Some(m.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::peers_offset;

    #[test]
    fn the_offset_to_the_peers_is_their_median_nearest_zero() {
        let of = |v: &[f64], peers| peers_offset(v.iter().copied(), peers);
        assert_eq!(of(&[], 0), None);
        assert_eq!(of(&[-5000.4], 1), Some(-5000));
        // One skewed peer of two: this node's clock is not the odd one.
        assert_eq!(of(&[5000.0, 3.0], 2), Some(3));
        assert_eq!(of(&[-5000.0, -3.0], 2), Some(-3));
        // ...and before the second is measured, nothing is concluded.
        assert_eq!(of(&[5000.0], 2), None);
        assert_eq!(of(&[5000.0, 4.0], 4), None);
        // Every peer disagrees with this node: it is the odd one.
        assert_eq!(of(&[-5001.0, -4990.0], 2), Some(-4990));
        assert_eq!(of(&[7.0, 5000.0, 4.0], 4), Some(7));
        assert_eq!(of(&[10.0, -20.0, 5000.0, 0.0], 4), Some(0));
    }
}
