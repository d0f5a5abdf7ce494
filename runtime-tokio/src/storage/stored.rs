//! A finalized block as this node stores and serves it: the one type both the database
//! (`store.rs`) and the write-ahead log (`wal.rs`) hold, kept apart from both so that neither
//! depends on the other for it; and its finality (`FinalityMs`, measured by `node/finality.rs`).

use serde::{Deserialize, Serialize};
use timed_core::block::{Block, Certificate};
use timed_core::codec::{CodecError, Reader, Wire};
use timed_core::ledger::BlockOutcome;

/// A finalized block as stored and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    pub block: Block,
    pub certificate: Certificate,
    pub outcome: BlockOutcome,
    /// Milliseconds from the block's timestamp to its finalization on this node, if it decided
    /// the block live (`finality.rs`).
    pub finality_ms: FinalityMs,
}

timed_core::wire_struct!(StoredBlock {
    block,
    certificate,
    outcome,
    finality_ms,
});

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

/// An empty block at height `h` with a certificate of no signatures, for the store's and the
/// WAL's tests (one builder for both).
#[cfg(test)]
pub(crate) fn test_block(h: u64, finality_ms: Option<u64>) -> StoredBlock {
    use timed_core::block::Header;
    use timed_core::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};
    let block = Block {
        header: Header {
            chain_id: "test".into(),
            height: Height(h),
            parent_hash: Hash([1; 32]),
            timestamp: TimestampMs(h),
            proposer: ValidatorIndex(0),
            tx_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
            next_set_hash: Hash([3; 32]),
            evidence_root: timed_core::block::evidence_root(&[]),
        },
        txs: Vec::new(),
        evidence: Vec::new(),
    };
    StoredBlock {
        certificate: Certificate {
            height: Height(h),
            round: Round(0),
            block_hash: block.hash(),
            signatures: Vec::new(),
        },
        block,
        outcome: BlockOutcome {
            height: Height(h),
            subsidy: Amount(1),
            fees: Amount(0),
            total_reward: Amount(1),
            rewards: Vec::new(),
            archived: Vec::new(),
            touched: Vec::new(),
            staking_refused: Vec::new(),
            staking: None,
            slashed: Amount(0),
            jailed: Vec::new(),
        },
        finality_ms: FinalityMs(finality_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::FinalityMs;

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
