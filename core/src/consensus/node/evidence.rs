//! The node's pool of double votes to punish (ADR 0026 point 6): filled by the vote keeper's
//! equivocations, drawn from when this node proposes (`build_block`), pruned after each block.
//! Its state outlives a height: a double vote of height `h` can only be punished from `h + 1`.
//!
//! Bounded: one piece per validator, at most `MAX_EVIDENCE_POOL`, and only against registered,
//! unjailed validators within the evidence window. Nothing here is trusted: the pool holds what
//! the keeper saw (each vote already verified), and the ledger checks every piece again when a
//! block carries it.

use super::Node;
use crate::block::MAX_BLOCK_EVIDENCE;
use crate::types::{Height, ValidatorIndex};
use crate::vote::Evidence;

/// At most this many offenders are remembered at once. A double vote is kept until a block of
/// this node or another punishes it, so the pool only fills with more than a block's worth of
/// offenders at once; those past the cap are dropped (another node's pool may hold them).
pub const MAX_EVIDENCE_POOL: usize = 4 * MAX_BLOCK_EVIDENCE;

impl Node {
    /// Keeps a double vote the vote keeper reported, if it is one a block could punish: two
    /// values (not two signatures of one), by a registered validator not yet jailed.
    pub(super) fn note_evidence(&mut self, evidence: &Evidence) {
        let id = evidence.first.validator;
        if !evidence.conflicts()
            || self.evidence.contains_key(&id)
            || self.evidence.len() >= MAX_EVIDENCE_POOL
            || !self.punishable(evidence, self.cur.height.next())
        {
            return;
        }
        self.evidence.insert(id, evidence.clone());
    }

    /// The evidence a block of the current height may carry: up to `MAX_BLOCK_EVIDENCE` pieces
    /// that pass every rule on this node's ledger, signatures included, in id order.
    pub(super) fn evidence_to_punish(&self) -> Vec<Evidence> {
        let Some(staking) = self.ledger.staking() else {
            return Vec::new();
        };
        self.evidence
            .values()
            .filter(|e| {
                staking
                    .check_evidence(e, self.cur.height, &self.chain_id)
                    .is_ok()
            })
            .take(MAX_BLOCK_EVIDENCE)
            .cloned()
            .collect()
    }

    /// Drops what no later block can punish: the validator was jailed (by this block or an
    /// earlier one), or the double vote fell out of the window.
    pub(super) fn prune_evidence(&mut self) {
        let next = self.cur.height;
        let keep: Vec<ValidatorIndex> = self
            .evidence
            .iter()
            .filter(|(_, e)| self.punishable(e, next))
            .map(|(id, _)| *id)
            .collect();
        self.evidence.retain(|id, _| keep.contains(id));
    }

    /// The cheap rules (no signature): a registered validator not jailed, a height within the
    /// window of a block at `height` (or `height` itself, punishable from the next one).
    fn punishable(&self, evidence: &Evidence, height: Height) -> bool {
        let Some(staking) = self.ledger.staking() else {
            return false;
        };
        let oldest = height.0.saturating_sub(staking.params().unbonding_blocks);
        evidence.first.height.0 >= oldest
            && staking
                .registration(evidence.first.validator)
                .is_some_and(|r| !r.jailed)
    }

    /// The double votes this node holds for punishing, in id order.
    pub fn pending_evidence(&self) -> impl Iterator<Item = &Evidence> {
        self.evidence.values()
    }
}
