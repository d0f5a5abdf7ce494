//! The state of the height being decided, as one value: `HeightState`. Finalizing a height
//! replaces it with `HeightState::new` for the next one, so nothing of a height can leak into the
//! next by a forgotten reset. What outlives a height (the chain, the mempool, the next-height
//! buffer, catch-up, the double-sign guard, the peers' answer budgets) lives beside it in `Node`.

use std::collections::{BTreeMap, BTreeSet};

use super::Node;
use super::blocks::Checked;
use crate::block::{Block, Certificate};
use crate::consensus::io::{Finalized, Output, SignPoint, SignStep, Timer};
use crate::message::{Decision, Message, Proposal};
use crate::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::votes::VoteKeeper;

/// How long after finalizing a height its decision waits for peers to show they have it too
/// (`Timer::Announce`): long enough for their next-height messages on a fast network, short next
/// to any timeout.
const ANNOUNCE_DELAY_MS: u64 = 20;

/// The block fetch in flight (at most one): the block wanted, when it was last asked for, and how
/// many times, so that each retry asks the next of the validators that prepared it.
#[derive(Clone, Copy, Debug)]
pub(super) struct BlockFetch {
    pub(super) hash: Hash,
    pub(super) asked_at: TimestampMs,
    pub(super) attempts: u32,
}

/// Where a node is within a height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Waiting `block_time_ms` before the first round of this height; only the decision rule
    /// (L49) runs.
    NewHeight,
    /// Waiting for the round's proposal (L22, L28) or the propose timeout (L57).
    Propose,
    /// Prepared (prevoted); waiting for a prepare quorum (L36, L44) or the prepare timeout (L61).
    Prepare,
    /// Precommitted; waiting for a decision (L49), a higher round (L55) or the precommit
    /// timeout (L65).
    Precommit,
}

/// Slot of a signed message within a round: one proposal, one prepare, one precommit.
pub(super) type SignedSlot = (Round, SignStep);

pub(super) fn slot_of(msg: &Message) -> Option<SignedSlot> {
    SignPoint::of(Height(0), msg).map(|p| (p.round, p.step))
}

/// What has happened once already in the current round, so that it does not happen twice
/// (Algorithm 1's "for the first time").
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RoundOnce {
    /// L34: the prepare timeout is scheduled.
    pub(super) prepare_timer: bool,
    /// L47: the precommit timeout is scheduled.
    pub(super) precommit_timer: bool,
    /// L36: `validValue`/`validRound` were updated from this round's polka.
    pub(super) valid_updated: bool,
    /// The round ended (`Timer::RoundEnd`) while no other validator had voted in it or
    /// later: the node stays until one does (see `Node::on_round_end`, ADR 0027).
    pub(super) waiting_for_company: bool,
}

/// Everything of one height: where the node is in it (round, step), its lock and valid value
/// (Algorithm 1's `lockedRound`/`lockedValue`, `validRound`/`validValue`), the proposals, blocks
/// and votes seen, and what this node signed in it.
pub(super) struct HeightState {
    pub(super) height: Height,
    pub(super) round: Round,
    pub(super) step: Step,
    pub(super) locked: Option<(Round, Hash)>,
    pub(super) valid: Option<(Round, Hash)>,
    pub(super) blocks: BTreeMap<Hash, Block>,
    pub(super) checked: BTreeMap<Hash, Option<Box<Checked>>>,
    pub(super) proposals: BTreeMap<Round, (Hash, Proposal)>,
    /// Rounds whose proposal carried a valid polka for its `valid_round` (L28 may fire on it).
    pub(super) polka_proven: BTreeSet<Round>,
    /// The polka behind `locked`, read back from the `Locked` record after a crash, when the vote
    /// keeper no longer holds those prepares.
    pub(super) restored_polka: Option<Certificate>,
    pub(super) double_proposals: BTreeSet<Round>,
    pub(super) votes: VoteKeeper,
    pub(super) signed: BTreeMap<SignedSlot, Message>,
    /// (round, block) pairs holding a precommit quorum: L49 fires once the block is known.
    pub(super) commit_quorums: BTreeSet<(Round, Hash)>,
    /// The "for the first time" flags of the current round; `start_round` replaces them.
    pub(super) once: RoundOnce,
    /// (round, sender) pairs whose copy of the round's re-proposal had its polka checked: a later
    /// copy may carry the polka an earlier one lacked, and each sender gets one check per round.
    pub(super) polka_checked: BTreeSet<(Round, ValidatorIndex)>,
    /// When this node last answered a validator's prepare of an earlier round with its own
    /// matching prepare (`echo_polka`): once per (validator, round) per `resend_interval`.
    pub(super) echoed: BTreeMap<(ValidatorIndex, Round), TimestampMs>,
    /// Blocks of this height whose bytes a record of this node holds (its own proposals, and
    /// the `Prepared` blocks): each is persisted once.
    pub(super) persisted_blocks: BTreeSet<Hash>,
    /// The block this node is fetching.
    pub(super) block_fetch: Option<BlockFetch>,
    /// By position in the set of `height`: whether a proposal or a vote of the member was
    /// counted at `height` (it finalized `height - 1`). Flags, not a set: it is marked at every
    /// counted vote.
    pub(super) moved_on: Vec<bool>,
}

impl HeightState {
    /// `validator` showed it finalized the height before.
    pub(super) fn moved_on(&mut self, validator: ValidatorIndex) {
        if let Some(flag) = self
            .votes
            .slot_of(validator)
            .and_then(|slot| self.moved_on.get_mut(slot))
        {
            *flag = true;
        }
    }

    /// The state of `height` before anything of it is seen: round 0, waiting for its start.
    pub(super) fn new(height: Height, set: &ValidatorSet) -> HeightState {
        HeightState {
            height,
            round: Round::ZERO,
            step: Step::NewHeight,
            locked: None,
            valid: None,
            blocks: BTreeMap::new(),
            checked: BTreeMap::new(),
            proposals: BTreeMap::new(),
            polka_proven: BTreeSet::new(),
            restored_polka: None,
            double_proposals: BTreeSet::new(),
            votes: VoteKeeper::new(height, set),
            signed: BTreeMap::new(),
            commit_quorums: BTreeSet::new(),
            once: RoundOnce::default(),
            polka_checked: BTreeSet::new(),
            echoed: BTreeMap::new(),
            persisted_blocks: BTreeSet::new(),
            block_fetch: None,
            moved_on: vec![false; set.len()],
        }
    }
}

impl Node {
    /// Commits block `hash` with `certificate` and moves to the next height.
    pub(super) fn finalize(&mut self, hash: Hash, certificate: Certificate, announce: bool) {
        let block = self
            .cur
            .blocks
            .remove(&hash)
            .expect("finalize is called with a known block");
        let checked = self
            .cur
            .checked
            .remove(&hash)
            .flatten()
            .expect("finalize is called with a checked block");
        debug_assert_eq!(certificate.block_hash, hash);
        debug_assert!(
            certificate
                .signed_stake(&self.set)
                .is_ok_and(|s| self.set.is_quorum(s))
        );
        let Checked { outcome, staged } = *checked;
        // The last decision's extensions go before the next one replaces it.
        self.flush_extension();
        // Checked on this very ledger: it has not changed within the height.
        self.ledger.commit_staged(&outcome, staged);
        self.move_sets_on();
        debug_assert_eq!(
            self.ledger.state_root(),
            block.header.state_root,
            "the committed changes lead to the state root checked"
        );
        self.mempool.prune(&self.ledger);
        let decision = Decision { block, certificate };
        self.out.push(Output::Finalized(Box::new(Finalized {
            block: decision.block.clone(),
            certificate: decision.certificate.clone(),
            outcome,
        })));
        self.parent_hash = hash;
        self.parent_time = decision.block.header.timestamp;
        self.decision_sent.clear();
        self.last_decision = Some(decision);
        let height = self.cur.height;
        self.enter_height(height.next());
        self.prune_evidence();
        if announce && self.params.block_time_ms < self.params.resend_interval_ms {
            // Peers that sent us a decision have it; only a decision of our own is news. It goes
            // `ANNOUNCE_DELAY_MS` later to the peers not heard from at the next height by then
            // (`Timer::Announce`): most decide on their own, which at block time 0 they show
            // within a few milliseconds. Broadcast to all at once, decisions were three messages
            // out of ten there.
            //
            // With blocks at least a resend interval apart it is not sent at all (ADR 0002): the
            // peers say nothing during the block time, so silence shows nothing there, and every
            // peer would be sent it (99 decisions of 7 kB per node and height at 100
            // validators). A peer that lacks the decision re-sends its messages of the decided
            // height within a resend interval, which brings it the decision
            // (`on_other_height`) before the next height's first round starts.
            self.schedule(Timer::Announce { height }, ANNOUNCE_DELAY_MS);
        }
    }

    /// Starts `height` from nothing but the chain: the guard given at restore applies to it, its
    /// first round waits `block_time`, and the messages kept for it are replayed.
    pub(super) fn enter_height(&mut self, height: Height) {
        self.cur = HeightState::new(height, &self.set);
        self.apply_guard();
        if self.started {
            // Even with block time 0 the next round starts from a timer, not inline: a validator
            // holding a quorum alone would otherwise finalize height after height inside one
            // `handle` call and never return.
            self.schedule(Timer::NextHeight { height }, self.params.block_time_ms);
        }
        let buffered = std::mem::take(&mut self.next_height);
        for ((signer, _), msg) in buffered {
            // Verified on arrival; the proposer is checked now that the parent is known. Replayed
            // as from its signer, whose budgets and checks it counts against (not validator 0's).
            self.on_message(signer, msg, true);
        }
    }
}
