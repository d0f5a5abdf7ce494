//! Agreement, validity and conservation of what checked nodes finalize: one block per height, each
//! extending the last, built by a proposer of its rounds, certified, and applying to the checker's
//! own ledger to the root, outcome and total supply it names.

use timed_core::block::{self, Certificate};
use timed_core::consensus::Finalized;
use timed_core::ledger::subsidy;
use timed_core::types::{Hash, Height, Round};

use super::*;

/// Base units a block's outcome says it slashed (evidence, ADR 0026 point 6).
fn slashed_in(outcome: &BlockOutcome) -> u128 {
    u128::from(outcome.slashed.0)
}

impl Checker {
    /// The total supply there must be after height `h`: the genesis's (balances and bonds), the
    /// subsidies of heights 1 to `h`, less what was slashed up to `h` (ADR 0026, point 7).
    pub(super) fn supply_after(&mut self, h: Height) -> u128 {
        while self.supply.len() as u64 <= h.0 {
            let next = Height(self.supply.len() as u64);
            let last = *self.supply.last().expect("the genesis supply is there");
            self.supply.push(last + u128::from(subsidy(next).0));
        }
        let slashed = self.slashed.range(..=h).next_back().map_or(0, |(_, s)| *s);
        self.supply[h.0 as usize].saturating_sub(slashed)
    }

    /// What the block of height `h` burned by slashing (`outcome`), added to the run's total.
    fn note_slashed(&mut self, h: Height, outcome: &BlockOutcome) {
        let burned = slashed_in(outcome);
        if burned > 0 {
            let total = self.slashed.values().next_back().copied().unwrap_or(0) + burned;
            self.slashed.insert(h, total);
        }
    }

    /// The live supplies of heights the reference has now applied (`after_step`).
    pub(super) fn check_pending(&mut self) {
        for node in 0..self.pending_supply.len() {
            if let Some((h, supply)) = self.pending_supply[node]
                && h <= self.reference_height
            {
                self.pending_supply[node] = None;
                self.check_supply(node, "the core's ledger", h, supply);
            }
        }
    }

    /// A live honest core's ledger after it finalized `height - 1`: conservation.
    pub(super) fn check_supply(&mut self, node: usize, what: &str, h: Height, supply: u128) {
        let expected = self.supply_after(h);
        if supply != expected {
            let detail = format!(
                "{what} after height {h} holds {supply} units in all, but genesis and subsidies \
                 less what was slashed make {expected}"
            );
            self.fail(Some(node), "conservation", detail);
        }
    }

    /// Validity of the first block decided at a height, against the checker's own chain and
    /// ledger (later copies are compared with it by the fork and ledger-diverged checks).
    pub(super) fn check_valid(&mut self, node: usize, f: &Finalized) {
        let b = &f.block;
        let h = b.height();
        let mut faults: Vec<String> = vec![];
        if b.header.chain_id != self.chain_id {
            faults.push(format!("chain id {:?}", b.header.chain_id));
        }
        match self.chain.get(&Height(h.0 - 1)) {
            None => faults.push(format!("height {} was never decided", h.0 - 1)),
            Some((parent, time)) => {
                if b.header.parent_hash != *parent {
                    faults.push(format!(
                        "parent {} is not the block below",
                        b.header.parent_hash.short()
                    ));
                }
                if b.header.timestamp <= *time {
                    faults.push(format!(
                        "timestamp {} not after its parent's {}",
                        b.header.timestamp.0, time.0
                    ));
                }
            }
        }
        // The set of `h`: the reference's own current set when it is at `h - 1`.
        let set = self.set_at(h).clone();
        let proposer_ok =
            (0..=f.certificate.round.0).any(|r| set.proposer(h, Round(r)) == b.header.proposer);
        if !proposer_ok {
            faults.push(format!(
                "its proposer {} proposes none of rounds 0 to {}",
                b.header.proposer, f.certificate.round
            ));
        }
        if b.txs.len() > self.params.max_block_txs as usize {
            faults.push(format!("{} transactions", b.txs.len()));
        }
        if block::tx_root(&b.txs) != b.header.tx_root {
            faults.push("wrong transaction root".into());
        }
        if self.reference_height.0 + 1 != h.0 {
            faults.push(format!("decided after height {}", self.reference_height));
        } else if set.get(b.header.proposer).is_some() {
            let mut after = self.reference.clone();
            match after.apply_block(
                &self.chain_id,
                h,
                b.header.proposer,
                &set,
                &b.txs,
                &b.evidence,
            ) {
                Err(e) => faults.push(format!("its transactions do not apply: {e}")),
                Ok(outcome) => {
                    if after.state_root() != b.header.state_root {
                        faults.push("state root is not the ledger's after it".into());
                    }
                    if outcome != f.outcome {
                        faults.push("outcome differs from the ledger's".into());
                    }
                    if after.staking().map(|s| s.current().hash()) != Some(b.header.next_set_hash) {
                        faults.push("next set hash is not the set of the next height".into());
                    }
                    self.note_slashed(h, &outcome);
                    self.reference = after;
                    self.reference_height = h;
                    self.txs_decided += b.txs.len() as u64;
                    self.learn_sets(h);
                    self.check_pending();
                }
            }
        }
        if !faults.is_empty() {
            let detail = format!("invalid block at height {h}: {}", faults.join("; "));
            self.fail(Some(node), "validity", detail);
        }
    }

    /// A node stored a finalized block: no fork, a valid block and certificate, heights only go
    /// up, the same rewards everywhere, and `supply_after` (the stored ledger's total) conserved.
    pub fn on_finalized(
        &mut self,
        node: usize,
        f: &Finalized,
        state_root_after: Hash,
        supply_after: u128,
    ) {
        let h = f.block.height();
        let hash = f.block.hash();
        if h <= self.stored_top[node] {
            self.fail(
                Some(node),
                "height-regressed",
                format!("stored height {h} after height {}", self.stored_top[node]),
            );
        }
        self.stored_top[node] = h;
        self.raise_lock_floor();
        match self.decided.get(&h) {
            Some((other, by)) if *other != hash => {
                let detail = format!(
                    "fork at height {h}: node {node} finalized {} but node {by} finalized {}",
                    hash.short(),
                    other.short()
                );
                self.fail(Some(node), "fork", detail);
            }
            Some(_) => {}
            None => {
                self.decided.insert(h, (hash, node));
                self.check_valid(node, f);
                self.chain.insert(h, (hash, f.block.header.timestamp));
            }
        }
        self.check_supply(node, "the stored ledger", h, supply_after);
        if !self.certificate_ok(&f.certificate, h, &hash) {
            self.fail(
                Some(node),
                "bad-certificate",
                format!("certificate of height {h} does not verify"),
            );
        }
        if state_root_after != f.block.header.state_root {
            self.fail(
                Some(node),
                "state-root",
                format!(
                    "stored ledger after height {h} has root {} but the block says {}",
                    state_root_after.short(),
                    f.block.header.state_root.short()
                ),
            );
        }
        let o = &f.outcome;
        let paid: u64 = o.rewards.iter().map(|r| r.amount.0).sum();
        if o.height != h
            || o.subsidy != subsidy(h)
            || paid != o.total_reward.0
            || o.total_reward.0 != o.subsidy.0.saturating_add(o.fees.0)
        {
            self.fail(
                Some(node),
                "rewards",
                format!("outcome of height {h} does not pay subsidy + fees exactly"),
            );
        }
        if self.last_outcome.as_ref() == Some(o) {
            return;
        }
        let od = Hash(*blake3::hash(&timed_core::codec::encode(o)).as_bytes());
        match self.outcomes.get(&h) {
            Some((other, by)) if *other != od => {
                let detail = format!("rewards or balances of height {h} differ from node {by}'s");
                self.fail(Some(node), "ledger-diverged", detail);
            }
            Some(_) => {}
            None => {
                self.outcomes.insert(h, (od, node));
                self.last_outcome = Some(o.clone());
            }
        }
    }

    /// A late precommit extended a stored certificate: it must still verify.
    pub fn on_extended(&mut self, node: usize, cert: &Certificate, block: Option<Hash>) {
        match block {
            None => self.fail(
                Some(node),
                "extended-unknown",
                format!("extended height {} it never stored", cert.height),
            ),
            Some(b) => {
                if !self.certificate_ok(cert, cert.height, &b) {
                    self.fail(
                        Some(node),
                        "bad-certificate",
                        format!(
                            "extended certificate of height {} does not verify",
                            cert.height
                        ),
                    );
                }
            }
        }
    }
}
