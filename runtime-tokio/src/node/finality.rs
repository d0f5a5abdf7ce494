//! What counts as finality: the time from a block's timestamp to its finalization here, measured
//! only for the blocks this node decided live — those it saw proposed (or proposed itself) while
//! deciding their height. A block it caught up on (a peer's sync answer after a restart, a
//! decision for a height it was not following) says how long the node was away, not how fast the
//! network finalizes: after a restart such blocks read ~33 s and flattened the dashboard's chart
//! for 120 blocks, and they fed `timed_finality_seconds`.

use std::collections::VecDeque;

use timed_core::consensus::{Event, Output};
use timed_core::types::{Hash, TimestampMs};

use crate::storage::stored::FinalityMs;

/// The blocks proposed at the height this node was deciding, as its core reported them.
#[derive(Default)]
pub struct Witness {
    proposed: VecDeque<Hash>,
}

/// Blocks remembered: a height's rounds each propose one, and a few heights pass between a
/// proposal and the store.
const REMEMBERED: usize = 64;

impl Witness {
    /// Remembers the block of a proposal this node made or accepted at its height.
    pub fn note(&mut self, out: &Output) {
        if let Output::Event(
            Event::Proposing { block, .. } | Event::ProposalAccepted { block, .. },
        ) = out
        {
            if self.proposed.len() == REMEMBERED {
                self.proposed.pop_front();
            }
            self.proposed.push_back(*block);
        }
    }

    /// The finality of block `hash` of time `timestamp`, finalized now (`now_ms`).
    pub fn finality(&self, hash: &Hash, timestamp: TimestampMs, now_ms: u64) -> FinalityMs {
        FinalityMs(
            self.proposed
                .contains(hash)
                .then(|| now_ms.saturating_sub(timestamp.0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::types::{Height, Round, ValidatorIndex};

    #[test]
    fn only_a_block_seen_proposed_has_a_finality() {
        let mut w = Witness::default();
        let (seen, mine, synced) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        w.note(&Output::Event(Event::ProposalAccepted {
            height: Height(5),
            round: Round(0),
            proposer: ValidatorIndex(1),
            block: seen,
        }));
        w.note(&Output::Event(Event::Proposing {
            height: Height(6),
            round: Round(0),
            block: mine,
            txs: 0,
            reproposal: false,
        }));
        let at = TimestampMs(1_000);
        assert_eq!(w.finality(&seen, at, 1_250), FinalityMs(Some(250)));
        assert_eq!(w.finality(&mine, at, 1_007), FinalityMs(Some(7)));
        assert_eq!(w.finality(&synced, at, 34_000), FinalityMs(None));
        // Remembered for a while, not for ever.
        for i in 0..REMEMBERED as u8 {
            w.note(&Output::Event(Event::Proposing {
                height: Height(7),
                round: Round(u32::from(i)),
                block: Hash([100 + i; 32]),
                txs: 0,
                reproposal: false,
            }));
        }
        assert_eq!(w.finality(&seen, at, 1_250), FinalityMs(None));
    }
}
