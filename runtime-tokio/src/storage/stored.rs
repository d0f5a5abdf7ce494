//! A finalized block as this node stores and serves it: the one type both the database
//! (`store.rs`) and the write-ahead log (`wal.rs`) hold, kept apart from both so that neither
//! depends on the other for it.

use serde::{Deserialize, Serialize};
use timed_core::block::{Block, Certificate};
use timed_core::ledger::BlockOutcome;

use crate::node::finality::FinalityMs;

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
