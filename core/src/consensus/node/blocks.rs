//! Candidate blocks of the current height and the verdicts on them: whether a block's body is the
//! one its header commits to, `valid(v)` (checked once per height, what it changes kept for
//! finalizing), building this node's own block, and getting a block a quorum prepared that this
//! node lacks (`BlockRequest`/`BlockResponse`), with the answer budgets those requests cost.

use std::collections::BTreeMap;

use super::height::BlockFetch;
use super::{Node, Step};
use crate::block::{self, Block};
use crate::consensus::io::{Event, Output};
use crate::ledger::{BlockOutcome, StagedState, TxError};
use crate::message::{Message, VoteKind};
use crate::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};

/// A block checked against the ledger, with what applying it does (`BlockOutcome::touched`:
/// the accounts it changes, committed to the ledger if it is finalized). The changes rather
/// than the ledger after it: a copy of every account per block checked was a tenth of the
/// check at 100 validators, and nearly every block checked is the one finalized.
#[derive(Clone, Debug)]
pub(super) struct Checked {
    pub(super) outcome: BlockOutcome,
    /// The state root it leads to, with the tree's changes that give it: committed as they
    /// are when the block is finalized, not worked out again.
    pub(super) staged: StagedState,
}

/// Why a block is not valid (a stable label for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockFault {
    WrongChain,
    WrongHeight,
    WrongParent,
    TimestampNotAfterParent,
    /// Not a permanent fault: the block may become acceptable as the clock advances.
    TimestampInFuture,
    UnknownProposer,
    BadTransaction,
    WrongStateRoot,
    /// `next_set_hash` is not the hash of the set the block leaves for the next height.
    WrongNextSet,
    /// A piece of evidence breaks a rule (`staking::EvidenceError`).
    BadEvidence,
}

impl BlockFault {
    fn reason(self) -> &'static str {
        match self {
            BlockFault::WrongChain => "block_wrong_chain",
            BlockFault::WrongHeight => "block_wrong_height",
            BlockFault::WrongParent => "block_wrong_parent",
            BlockFault::TimestampNotAfterParent => "block_timestamp_not_after_parent",
            BlockFault::TimestampInFuture => "block_timestamp_in_future",
            BlockFault::UnknownProposer => "block_unknown_proposer",
            BlockFault::BadTransaction => "block_bad_transaction",
            BlockFault::WrongStateRoot => "block_wrong_state_root",
            BlockFault::WrongNextSet => "block_wrong_next_set",
            BlockFault::BadEvidence => "block_bad_evidence",
        }
    }
}

impl Node {
    /// Whether a block's body is the one its header commits to (and within the size bound): a
    /// block enters no store, cache or verdict keyed by its hash before this holds. The tx root
    /// covers every transfer with its signature, so the hash then fixes every byte of the block.
    pub(super) fn body_matches(&self, block: &Block) -> bool {
        block.txs.len() <= self.params.max_block_txs as usize
            && block.evidence.len() <= block::MAX_BLOCK_EVIDENCE
            && block::tx_root(&block.txs) == block.header.tx_root
            && block::evidence_root(&block.evidence) == block.header.evidence_root
    }

    /// valid(v): checks the block once per height and remembers the verdict. A block with a
    /// timestamp too far ahead is not remembered as invalid: the clock may catch up.
    pub(super) fn check(&mut self, hash: Hash, certified: bool) -> bool {
        if let Some(verdict) = self.cur.checked.get(&hash) {
            return verdict.is_some();
        }
        let Some(block) = self.cur.blocks.get(&hash) else {
            return false;
        };
        match self.check_block(block, certified) {
            Ok(checked) => {
                self.cur.checked.insert(hash, Some(Box::new(checked)));
                true
            }
            Err(fault) => {
                if fault != BlockFault::TimestampInFuture {
                    self.cur.checked.insert(hash, None);
                }
                self.reject("block", fault.reason());
                false
            }
        }
    }

    fn check_block(&self, block: &Block, certified: bool) -> Result<Checked, BlockFault> {
        let h = &block.header;
        if h.chain_id != self.chain_id {
            return Err(BlockFault::WrongChain);
        }
        if h.height != self.cur.height {
            return Err(BlockFault::WrongHeight);
        }
        if h.parent_hash != self.parent_hash {
            return Err(BlockFault::WrongParent);
        }
        if h.timestamp <= self.parent_time {
            return Err(BlockFault::TimestampNotAfterParent);
        }
        // A certified block was accepted by a quorum; this node's clock does not get a veto.
        if !certified && h.timestamp > self.now.saturating_add_ms(self.params.max_clock_drift_ms) {
            return Err(BlockFault::TimestampInFuture);
        }
        if self.set.get(h.proposer).is_none() {
            return Err(BlockFault::UnknownProposer);
        }
        // The body was matched to the header when the block entered `blocks` (`body_matches`,
        // on every path in): not hashed again here.
        debug_assert!(
            self.body_matches(block),
            "blocks enter only with a matching body"
        );
        // Transfers this node verified at admission (the exact bytes are in its mempool) are not
        // verified again; the rest are, as one batch. Same verdict either way (`Ledger::
        // stage_block_trusting`), so nodes whose mempools differ still agree on the block.
        let outcome = self
            .ledger
            .stage_block_trusting(
                &self.chain_id,
                self.cur.height,
                h.proposer,
                &self.set,
                &block.txs,
                &block.evidence,
                |hash, tx| self.mempool.holds(hash, tx),
            )
            .map_err(|e| match e {
                TxError::Evidence(_) => BlockFault::BadEvidence,
                _ => BlockFault::BadTransaction,
            })?;
        let staged = self.ledger.stage_state(&outcome);
        if staged.root() != h.state_root {
            return Err(BlockFault::WrongStateRoot);
        }
        if self.next_set_hash(&outcome) != h.next_set_hash {
            return Err(BlockFault::WrongNextSet);
        }
        Ok(Checked { outcome, staged })
    }

    /// The set hash a block staged with `outcome` must name for the next height
    /// (`Header::next_set_hash`).
    fn next_set_hash(&self, outcome: &crate::ledger::BlockOutcome) -> Hash {
        self.ledger
            .next_set_hash_with(outcome)
            .unwrap_or_else(|| self.set.hash())
    }

    /// A new block of pending transfers on top of the parent; checked by construction. `None`
    /// only when not even an empty block applies (a balance at the edge of 64 bits): the node
    /// then does not propose, and the round times out to another proposer.
    pub(super) fn build_block(&mut self, me: ValidatorIndex) -> Option<Hash> {
        let timestamp = self
            .now
            .max(TimestampMs(self.parent_time.0.saturating_add(1)));
        let selected = self
            .mempool
            .select(&self.ledger, self.params.max_block_txs as usize);
        let evidence = self.evidence_to_punish();
        // `select` promises a clean apply, and the evidence was checked on this ledger; should
        // an edge case break that, the block without evidence, then an empty block, still makes
        // progress.
        let mut attempts = Vec::with_capacity(3);
        if !evidence.is_empty() {
            attempts.push((selected.clone(), evidence));
        }
        attempts.push((selected, Vec::new()));
        attempts.push((Vec::new(), Vec::new()));
        let (txs, evidence, outcome) = attempts.into_iter().find_map(|(txs, evidence)| {
            let outcome = self
                .ledger
                .stage_block_trusting(
                    &self.chain_id,
                    self.cur.height,
                    me,
                    &self.set,
                    &txs,
                    &evidence,
                    |h, tx| self.mempool.holds(h, tx),
                )
                .ok()?;
            Some((txs, evidence, outcome))
        })?;
        let staged = self.ledger.stage_state(&outcome);
        let header = block::Header {
            chain_id: self.chain_id.clone(),
            height: self.cur.height,
            parent_hash: self.parent_hash,
            timestamp,
            proposer: me,
            tx_root: block::tx_root(&txs),
            state_root: staged.root(),
            next_set_hash: self.next_set_hash(&outcome),
            evidence_root: block::evidence_root(&evidence),
        };
        let block = Block {
            header,
            txs,
            evidence,
        };
        let hash = block.hash();
        self.cur.blocks.insert(hash, block);
        self.cur
            .checked
            .insert(hash, Some(Box::new(Checked { outcome, staged })));
        Some(hash)
    }

    //
    // Algorithm 1 updates `validValue` only from a polka of the current round (L36), and assumes
    // that a proposal one honest node received reaches every honest node. An equivocating
    // proposer breaks that: it sends block X to some and Y to others, and a node that stored Y as
    // the round's proposal drops X as a double proposal. If X gathers a polka anyway, the nodes
    // without X (or that saw the polka only after leaving the round) never take X as their valid
    // value, so the only node able to re-propose X with its polka is one that locked on it, and
    // until that node is drawn as proposer its lock keeps every fresh block from a quorum: with
    // stakes where the quorum needs it, the height stalls for as many rounds as the draw takes.
    //
    // The remedy, each part safe on its own:
    // - L36 also fires for a polka of any round up to the current one that is newer than
    //   `validRound`. `validValue` only chooses what this node proposes, and L28 makes every
    //   receiver check the polka and its own lock: proposing X with a genuine polka of round vr is
    //   what any proposer, even a Byzantine one, may do, so locks and safety are untouched.
    // - A node that counted a polka in an earlier round for a block it does not hold asks one of
    //   the validators that prepared it, which checked the block before voting, with
    //   `BlockRequest`, and keeps the `BlockResponse` if its hash is the one asked for. The hash,
    //   signed by a quorum's votes, is the proof; the proposer's signature would add nothing, and
    //   a node holding X only from its restored lock has no proposal to show. (A precommit
    //   quorum for a block not held needs no fetch: those that finalized broadcast a `Decision`,
    //   and sync catches up whoever misses it.)
    //
    // Why fetch rather than have the holder relay X once it sees the polka: a relay is a single
    // broadcast of a whole block that loss or a partition can swallow for good, and one sent to
    // nodes that already hold X; the fetch is retried (every `resend_interval`, each time to the
    // next voter) until the block arrives, and costs a block only where one is missing. A peer
    // cannot abuse it: a request is answered at once or not at all (nothing is held), at most
    // once per peer per `block_answer_gap`, and only with a block of the current height; a
    // response is kept only for the one hash in flight, which a quorum named.

    /// L36 for polkas of earlier rounds, and the fetch of a block a quorum prepared.
    pub(super) fn follow_polkas(&mut self) {
        if !self.started || self.cur.step == Step::NewHeight {
            return;
        }
        let mut missing = None;
        let floor = self.cur.valid.map(|(vr, _)| vr);
        // Descending from the current round (the node gets to later ones by L55 and L36
        // proper), one look-up each: `check` below needs the node, so the rounds are not
        // borrowed across the loop (nor collected, after every input).
        let mut upper = Some(self.cur.round);
        while let Some(round) = upper.and_then(|u| self.cur.votes.rounds_in(..=u).next_back()) {
            upper = round.0.checked_sub(1).map(Round);
            if floor.is_some_and(|vr| round <= vr) {
                break;
            }
            let Some(hash) = self.polka_value(round) else {
                continue;
            };
            if !self.cur.blocks.contains_key(&hash) {
                // Of the current round the proposal may still be on its way (votes are small and
                // often overtake it): the fetch waits until the node has left that round.
                if round < self.cur.round {
                    missing.get_or_insert((round, hash));
                }
                continue;
            }
            // A quorum prepared it, so as for a certified block this node's clock gets no veto
            // (and the verdict is kept: this runs after every input).
            if self.check(hash, true) {
                self.cur.valid = Some((round, hash));
                break;
            }
        }
        if let Some((round, hash)) = missing {
            self.fetch_block(round, hash);
        }
    }

    /// The value holding a prepare quorum in `round`, if any (at most one: stake counts once).
    pub(super) fn polka_value(&self, round: Round) -> Option<Hash> {
        self.cur
            .votes
            .tally(round, VoteKind::Prepare)
            .find(|(value, stake)| value.is_some() && self.set.is_quorum(*stake))
            .and_then(|(value, _)| value)
    }

    /// Asks a validator that prepared `hash` in `round` for that block, unless a request for it
    /// is younger than `resend_interval`; each retry asks the next such validator.
    pub(super) fn fetch_block(&mut self, round: Round, hash: Hash) {
        let patience = self.params.resend_interval_ms.max(1);
        let attempts = match self.cur.block_fetch {
            Some(f) if f.hash == hash => {
                if self.now.0 < f.asked_at.0.saturating_add(patience) {
                    return;
                }
                f.attempts.saturating_add(1)
            }
            _ => 0,
        };
        // In ascending validator order (the keeper's).
        let voters: Vec<ValidatorIndex> = self
            .cur
            .votes
            .votes(round, VoteKind::Prepare)
            .into_iter()
            .filter(|v| v.block == Some(hash) && Some(v.validator) != self.me)
            .map(|v| v.validator)
            .collect();
        let Some(&peer) = voters.get(attempts as usize % voters.len().max(1)) else {
            return; // only this node voted for it: then it holds the block
        };
        self.cur.block_fetch = Some(BlockFetch {
            hash,
            asked_at: self.now,
            attempts,
        });
        self.out.push(Output::Send {
            to: peer,
            msg: Message::BlockRequest {
                height: self.cur.height,
                hash,
            },
        });
        self.out.push(Output::Event(Event::BlockRequested {
            peer,
            height: self.cur.height,
            block: hash,
        }));
    }

    /// At least this long between two blocks sent to one peer: half the requester's patience,
    /// so that an honest retry (one per `resend_interval`) is never refused for coming early.
    pub(super) fn block_answer_gap(&self) -> u64 {
        (self.params.resend_interval_ms / 2).max(1)
    }

    /// Whether `peer` was sent something of `sent` less than `block_answer_gap` ago.
    pub(super) fn answered_within_gap(
        &self,
        sent: &BTreeMap<ValidatorIndex, TimestampMs>,
        peer: ValidatorIndex,
    ) -> bool {
        let gap = self.block_answer_gap();
        sent.get(&peer)
            .is_some_and(|at| self.now.0 < at.0.saturating_add(gap))
    }

    pub(super) fn on_block_request(&mut self, from: ValidatorIndex, height: Height, hash: Hash) {
        if height != self.cur.height || Some(from) == self.me || self.set.get(from).is_none() {
            return;
        }
        let Some(block) = self.cur.blocks.get(&hash) else {
            return;
        };
        if self.answered_within_gap(&self.block_answered, from) {
            return self.reject("block_request", "rate_limited");
        }
        let msg = Message::BlockResponse {
            block: block.clone(),
        };
        self.block_answered.insert(from, self.now);
        self.out.push(Output::Send { to: from, msg });
    }

    /// Sends `peer` the last decision, unless it is us or had it within `block_answer_gap`.
    pub(super) fn send_decision(&mut self, peer: ValidatorIndex) {
        if Some(peer) == self.me || self.set.get(peer).is_none() {
            return;
        }
        if self.answered_within_gap(&self.decision_sent, peer) {
            return;
        }
        let Some(d) = &self.last_decision else {
            return;
        };
        let msg = Message::Decision(d.clone());
        self.decision_sent.insert(peer, self.now);
        self.out.push(Output::Send { to: peer, msg });
    }

    pub(super) fn on_block_response(&mut self, block: Block) {
        let Some(fetch) = self.cur.block_fetch else {
            return self.reject("block_response", "not_asked");
        };
        if block.header.height != self.cur.height || block.hash() != fetch.hash {
            return self.reject("block_response", "not_asked");
        }
        if !self.body_matches(&block) {
            return self.reject("block_response", "body_mismatch");
        }
        self.cur.block_fetch = None;
        self.cur.blocks.entry(fetch.hash).or_insert(block);
    }
}
