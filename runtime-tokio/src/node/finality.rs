//! What counts as finality: the time from a block's timestamp to its finalization here, measured
//! only for the blocks this node decided live — those it saw proposed (or proposed itself) while
//! deciding their height. A block it caught up on (a peer's sync answer after a restart, a
//! decision for a height it was not following) says how long the node was away, not how fast the
//! network finalizes: after a restart such blocks read ~33 s and flattened the dashboard's chart
//! for 120 blocks, and they fed `timed_finality_seconds`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use timed_core::codec::{CodecError, Reader, Wire};
use timed_core::consensus::{Event, Output};
use timed_core::types::{Hash, TimestampMs};

/// Milliseconds from a block's timestamp to its finalization on this node, if it decided the
/// block live; `None` (JSON `null`) for a block it caught up on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FinalityMs(pub Option<u64>);

/// How `None` is stored: the stored field was a plain number before blocks caught up on were told
/// apart, and no real latency reaches it.
const NOT_MEASURED: u64 = u64::MAX;

impl Wire for FinalityMs {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.unwrap_or(NOT_MEASURED).put(out);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let ms = u64::get(r)?;
        Ok(FinalityMs((ms != NOT_MEASURED).then_some(ms)))
    }
}

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

    #[test]
    fn a_finality_is_stored_as_the_number_it_was_and_none_reads_back() {
        for f in [FinalityMs(Some(0)), FinalityMs(Some(7)), FinalityMs(None)] {
            let bytes = timed_core::codec::encode(&f);
            assert_eq!(timed_core::codec::decode::<FinalityMs>(&bytes, 16), Ok(f));
        }
        // The layout of a measured one is a plain u64's, as before.
        assert_eq!(
            timed_core::codec::encode(&FinalityMs(Some(300))),
            timed_core::codec::encode(&300u64)
        );
        assert_eq!(
            serde_json::to_string(&FinalityMs(None)).unwrap(),
            "null".to_string()
        );
    }
}
