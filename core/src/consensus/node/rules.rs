//! The rules: Tendermint's Algorithm 1 (its `upon` rules, timeouts and actions), each labelled
//! with the lines it implements. `check_rules` evaluates them after every input until none fires;
//! `start_round`, `propose` and `vote` are the actions they take.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::height::RoundOnce;
use super::{Node, Step};
use crate::block::Certificate;
use crate::consensus::io::{Event, Output, PersistRecord, RoundChange, SignPoint, SignStep, Timer};
use crate::message::{Message, Proposal, Vote, VoteKind};
use crate::types::{Hash, Round, ValidatorIndex};

/// How many rounds past its own a node may jump when a round ends on `Timer::RoundEnd`: enough
/// for a laggard to close in on a node ahead of it (it moves one round per end of round), little
/// for a Byzantine vote far ahead to inflate the timeouts.
const ROUND_END_CATCH_UP: u32 = 3;

impl Node {
    /// L57-L67, the three timeouts of a round, and the node's own timers: the end of a round that
    /// outlived its timeouts, the start of a height, the announce of a decision, the resend.
    pub(super) fn on_timeout(&mut self, timer: Timer) {
        if matches!(timer, Timer::NextHeight { .. } | Timer::Resend { .. }) {
            self.flush_extension();
        }
        match timer {
            // L57-L60: OnTimeoutPropose(h, r): prepare nil.
            Timer::Propose { height, round }
                if height == self.cur.height
                    && round == self.cur.round
                    && self.cur.step == Step::Propose =>
            {
                self.vote(VoteKind::Prepare, None);
                self.cur.step = Step::Prepare;
            }
            // L61-L64: OnTimeoutPrevote(h, r): precommit nil.
            Timer::Prepare { height, round }
                if height == self.cur.height
                    && round == self.cur.round
                    && self.cur.step == Step::Prepare =>
            {
                self.vote(VoteKind::Precommit, None);
                self.cur.step = Step::Precommit;
            }
            // L65-L67: OnTimeoutPrecommit(h, r): StartRound(r + 1).
            Timer::Precommit { height, round }
                if height == self.cur.height
                    && round == self.cur.round
                    && self.cur.step != Step::NewHeight =>
            {
                self.start_round(round.next(), Some(RoundChange::Timeout));
            }
            Timer::RoundEnd { height, round }
                if height == self.cur.height
                    && round == self.cur.round
                    && self.cur.step != Step::NewHeight =>
            {
                self.on_round_end(round);
            }
            Timer::NextHeight { height }
                if height == self.cur.height && self.cur.step == Step::NewHeight =>
            {
                // Round 0, or the round after a lost-records guard's (`apply_guard`).
                self.start_round(self.cur.round, None);
            }
            // Still at the next height: whoever has not shown it finalized `height` gets it.
            Timer::Announce { height } if height.next() == self.cur.height => {
                let peers: Vec<ValidatorIndex> = self
                    .set
                    .iter()
                    .zip(&self.cur.moved_on)
                    .filter(|(_, moved_on)| !**moved_on)
                    .map(|((id, _), _)| id)
                    .collect();
                for peer in peers {
                    self.send_decision(peer);
                }
            }
            Timer::SyncBudget { peer } => self.on_sync_budget(peer),
            Timer::Resend { height } => {
                if height == self.cur.height && self.cur.step != Step::NewHeight {
                    for msg in self.worth_resending() {
                        self.out.push(Output::Broadcast(msg));
                    }
                }
                self.request_sync();
                self.schedule(
                    Timer::Resend {
                        height: self.cur.height,
                    },
                    self.params.resend_interval_ms.max(1),
                );
            }
            _ => {} // stale: the node has moved on
        }
    }

    /// Evaluates the `upon` rules until none fires.
    pub(super) fn check_rules(&mut self) {
        loop {
            let before = (self.cur.height, self.cur.round, self.cur.step);
            if self.try_decide() {
                continue;
            }
            if !self.started || self.cur.step == Step::NewHeight {
                return;
            }
            if self.try_round_skip() {
                debug_assert!((self.cur.height, self.cur.round) > (before.0, before.1));
                continue;
            }
            let fired = match self.cur.step {
                Step::Propose => self.try_prepare(),
                Step::Prepare => {
                    self.try_step_timer(VoteKind::Prepare);
                    self.try_precommit()
                }
                Step::Precommit => {
                    self.try_update_valid();
                    false
                }
                Step::NewHeight => false,
            };
            if fired {
                debug_assert!(
                    (self.cur.height, self.cur.round, self.cur.step) > before,
                    "rules must make progress"
                );
                continue;
            }
            self.try_step_timer(VoteKind::Precommit);
            return;
        }
    }

    /// L49-L54: a proposal with a precommit quorum for it, in any round: decide.
    pub(super) fn try_decide(&mut self) -> bool {
        let quorums: Vec<(Round, Hash)> = self.cur.commit_quorums.iter().copied().collect();
        for (round, hash) in quorums {
            if !self.cur.blocks.contains_key(&hash) {
                continue; // wait for the block (a proposal, or a peer's Decision)
            }
            if !self.check(hash, true) {
                self.cur.commit_quorums.remove(&(round, hash));
                self.reject("decision", "certified_block_invalid");
                continue;
            }
            let precommits = self.cur.votes.votes(round, VoteKind::Precommit);
            let certificate =
                Certificate::from_precommits(self.cur.height, round, hash, precommits);
            self.out.push(Output::Event(Event::PrecommitQuorum {
                height: self.cur.height,
                round,
                block: Some(hash),
            }));
            self.finalize(hash, certificate, true);
            return true;
        }
        false
    }

    /// L55-L56: more than a third of the stake in a higher round: go there.
    pub(super) fn try_round_skip(&mut self) -> bool {
        let target = self
            .cur
            .votes
            .rounds_in((Bound::Excluded(self.cur.round), Bound::Unbounded))
            .rev()
            .find(|r| {
                self.set
                    .is_more_than_third(self.cur.votes.stake_in_round(*r))
            });
        match target {
            Some(round) => {
                self.start_round(round, Some(RoundChange::Skip));
                true
            }
            None => false,
        }
    }

    /// L22-L27 (fresh proposal) and L28-L33 (re-proposal with a prepare quorum from `vr`).
    pub(super) fn try_prepare(&mut self) -> bool {
        let Some((hash, proposal)) = self.cur.proposals.get(&self.cur.round) else {
            return false;
        };
        let (hash, valid_round) = (*hash, proposal.valid_round);
        let built_by_proposer = proposal.block.header.proposer == proposal.proposer;
        let acceptable = match valid_round {
            // L22: valid(v) ∧ (lockedRound = −1 ∨ lockedValue = v), where a fresh block is valid
            // only if its header names the round's proposer: the header says who is paid for it.
            // (A re-proposal's block was built in an earlier round; its polka vouches for it.)
            None if !built_by_proposer => {
                self.reject("block", "block_wrong_proposer");
                false
            }
            None => {
                self.cur.locked.is_none_or(|(_, locked)| locked == hash) && self.check(hash, false)
            }
            // L28: 2f+1 PREVOTE(h, vr, id(v)) ∧ valid(v) ∧ (lockedRound ≤ vr ∨ lockedValue = v)
            // (the prepares counted here, or the polka the proposal carried)
            Some(vr) => {
                if !self.cur.polka_proven.contains(&self.cur.round)
                    && !self.has_polka_in_tally(vr, hash)
                {
                    return false; // wait for the prepares of round vr, or the timeout
                }
                self.cur
                    .locked
                    .is_none_or(|(lr, locked)| lr <= vr || locked == hash)
                    && self.check(hash, false)
            }
        };
        self.vote(VoteKind::Prepare, acceptable.then_some(hash));
        self.cur.step = Step::Prepare;
        true
    }

    /// L34-L35 (prepares) and L47-L48 (precommits): 2f+1 votes of `kind` in this round, whatever
    /// their values, for the first time: start that step's timeout.
    pub(super) fn try_step_timer(&mut self, kind: VoteKind) {
        let (already, timeout) = match kind {
            VoteKind::Prepare => (
                &mut self.cur.once.prepare_timer,
                self.params.prepare_timeout,
            ),
            VoteKind::Precommit => (
                &mut self.cur.once.precommit_timer,
                self.params.precommit_timeout,
            ),
        };
        if *already
            || !self
                .set
                .is_quorum(self.cur.votes.stake_any(self.cur.round, kind))
        {
            return;
        }
        *already = true;
        let (height, round) = (self.cur.height, self.cur.round);
        let timer = match kind {
            VoteKind::Prepare => Timer::Prepare { height, round },
            VoteKind::Precommit => Timer::Precommit { height, round },
        };
        self.schedule(timer, timeout.at(round));
    }

    /// L36-L43 with step = prepare (lock and precommit the value), and L44-L46 (precommit nil).
    pub(super) fn try_precommit(&mut self) -> bool {
        let round = self.cur.round;
        if let Some(&(hash, _)) = self.cur.proposals.get(&round)
            && self.set.is_quorum(
                self.cur
                    .votes
                    .stake_for(round, VoteKind::Prepare, Some(hash)),
            )
            && self.check(hash, false)
        {
            self.out.push(Output::Event(Event::PrepareQuorum {
                height: self.cur.height,
                round,
                block: Some(hash),
            }));
            self.cur.locked = Some((round, hash));
            self.cur.valid = Some((round, hash));
            self.cur.once.valid_updated = true;
            if self.me.is_some() {
                let block = self.cur.blocks[&hash].clone();
                let polka = Certificate::from_prepares(
                    self.cur.height,
                    round,
                    hash,
                    self.cur.votes.votes(round, VoteKind::Prepare),
                );
                self.out.push(Output::Persist(PersistRecord::Locked {
                    height: self.cur.height,
                    round,
                    block,
                    polka,
                }));
            }
            self.vote(VoteKind::Precommit, Some(hash));
            self.cur.step = Step::Precommit;
            return true;
        }
        if self
            .set
            .is_quorum(self.cur.votes.stake_for(round, VoteKind::Prepare, None))
        {
            self.out.push(Output::Event(Event::PrepareQuorum {
                height: self.cur.height,
                round,
                block: None,
            }));
            self.vote(VoteKind::Precommit, None);
            self.cur.step = Step::Precommit;
            return true;
        }
        false
    }

    /// L36-L43 with step = precommit: only `validValue`/`validRound` are updated.
    pub(super) fn try_update_valid(&mut self) {
        if self.cur.once.valid_updated {
            return;
        }
        let round = self.cur.round;
        if let Some(&(hash, _)) = self.cur.proposals.get(&round)
            && self.set.is_quorum(
                self.cur
                    .votes
                    .stake_for(round, VoteKind::Prepare, Some(hash)),
            )
            && self.check(hash, false)
        {
            self.cur.valid = Some((round, hash));
            self.cur.once.valid_updated = true;
        }
    }

    /// L11-L21: StartRound(round).
    pub(super) fn start_round(&mut self, round: Round, reason: Option<RoundChange>) {
        self.cur.round = round;
        self.cur.step = Step::Propose;
        self.cur.once = RoundOnce::default();
        if let Some(reason) = reason {
            self.out.push(Output::Event(Event::RoundChanged {
                height: self.cur.height,
                round,
                reason,
            }));
        }
        // Every round ends at the latest after twice the sum of its three timeouts (twice: a slow
        // round that would still complete is not cut short). Algorithm 1 moves on
        // from a round only after a quorum of votes of some kind (L34, L47) or f+1 in a higher
        // one (L55), which assumes every honest node votes in every round it is in. A node whose
        // records were lost cannot (its votes of the rounds up to its guard's are gone and may
        // not be signed again), and two such nodes with under a third of the stake between them
        // left the others waiting for their votes forever (swarm seed 16). Moving to the next
        // round is always safe (locks and quorums carry safety, not rounds), and the bound grows
        // with the round as the timeouts do, so a slow network is not rushed.
        self.schedule_round_end();
        // The proposer sets the timeout too: when it proposes, it prepares at once and the timer
        // finds it past the step; when it cannot (the guard withholds its signature, no block
        // applies), the timeout still ends its round (L57).
        let after = self.params.propose_timeout.at(round);
        self.schedule(
            Timer::Propose {
                height: self.cur.height,
                round,
            },
            after,
        );
        let proposer = self.proposer(self.cur.height, round);
        if Some(proposer) == self.me {
            self.propose(proposer);
        }
    }

    /// L14-L19: propose `validValue` if there is one, else a new block.
    pub(super) fn propose(&mut self, me: ValidatorIndex) {
        let round = self.cur.round;
        if let Some(signed) = self.cur.signed.get(&(round, SignStep::Proposal)) {
            // Signed before a crash: repeat it, never sign another.
            self.out.push(Output::Broadcast(signed.clone()));
            return;
        }
        let point = SignPoint {
            height: self.cur.height,
            round,
            step: SignStep::Proposal,
        };
        if let Err(reason) = self.may_sign(point) {
            return self.withhold(point, reason);
        }
        let (hash, valid_round) = match (self.cur.valid, self.cur.locked) {
            (Some((vr, hash)), _) if vr < round && self.cur.blocks.contains_key(&hash) => {
                (hash, Some(vr))
            }
            // Locked on its own block but without the polka to show (its records were lost; the
            // guard kept the lock): it proposes that block again as a fresh one. Proposing any
            // valid block is safe; this one is the only one its own lock lets it prepare (L22),
            // and every node locked on it prepares it too, where a new block would be refused by
            // all of them for as long as the polka cannot be proven again (swarm seed 8499).
            (None, Some((_, hash)))
                if self
                    .cur
                    .blocks
                    .get(&hash)
                    .is_some_and(|b| b.header.proposer == me) =>
            {
                (hash, None)
            }
            _ => match self.build_block(me) {
                Some(hash) => (hash, None),
                None => return self.reject("proposal", "cannot_build_block"),
            },
        };
        let block = self.cur.blocks[&hash].clone();
        let txs = block.txs.len();
        let mut proposal = Proposal::sign(&self.key, &self.chain_id, round, valid_round, block, me);
        if let Some(polka) = valid_round.and_then(|vr| self.polka(vr, hash)) {
            proposal = proposal.with_polka(polka);
            // Our own polka (from our tally or our lock record) justifies preparing our own
            // re-proposal (L28), even when one of its voters is down now (issue 12, defect 2).
            self.cur.polka_proven.insert(round);
        }
        self.out.push(Output::Event(Event::Proposing {
            height: self.cur.height,
            round,
            block: hash,
            txs,
            reproposal: valid_round.is_some(),
        }));
        self.sign_and_send(Message::Proposal(proposal.clone()));
        self.cur.proposals.insert(round, (hash, proposal));
    }

    /// Signs (or repeats) this node's vote of `kind` in the current round and counts it.
    pub(super) fn vote(&mut self, kind: VoteKind, block: Option<Hash>) {
        let Some(me) = self.me else { return };
        let step = if kind == VoteKind::Prepare {
            SignStep::Prepare
        } else {
            SignStep::Precommit
        };
        let slot = (self.cur.round, step);
        let vote = match self.cur.signed.get(&slot) {
            // Signed before a crash: the same vote again, whatever the rules say now.
            Some(Message::Vote(v)) => {
                self.out.push(Output::Broadcast(Message::Vote(v.clone())));
                v.clone()
            }
            _ => {
                let point = SignPoint {
                    height: self.cur.height,
                    round: self.cur.round,
                    step,
                };
                if let Err(reason) = self.may_sign(point) {
                    return self.withhold(point, reason);
                }
                let v = Vote::sign(
                    &self.key,
                    &self.chain_id,
                    self.cur.height,
                    self.cur.round,
                    kind,
                    block,
                    me,
                );
                self.sign_and_send(Message::Vote(v.clone()));
                v
            }
        };
        self.count_vote(vote);
    }

    /// Twice the sum of the current round's three timeouts: how long a round lasts at most
    /// (`start_round`), or after company came (`company_arrived`).
    fn schedule_round_end(&mut self) {
        let round = self.cur.round;
        let round_end = self
            .params
            .propose_timeout
            .at(round)
            .saturating_add(self.params.prepare_timeout.at(round))
            .saturating_add(self.params.precommit_timeout.at(round))
            .saturating_mul(2);
        self.schedule(
            Timer::RoundEnd {
                height: self.cur.height,
                round,
            },
            round_end,
        );
    }

    /// The end of a round that outlived twice its three timeouts (ADR 0027).
    ///
    /// A node alone, that no other validator has joined in this round or a later one, stays:
    /// the others are behind, and they come to it (they see its votes ahead, so their rounds
    /// end, and `round_end_target` takes them at least one round on). Moving on alone kept two
    /// honest validators a round apart for good when neither could pull the other (each under
    /// a third of the stake, L55): the laggard entered each round just before the one ahead
    /// left it (swarm-membership seed 358, after a restart with lost records put one of them
    /// two rounds ahead). Its round ends again a full round after company arrives
    /// (`company_arrived`), so the two then share most of a round.
    ///
    /// A node with company goes on to a round ahead where a group of validators was seen
    /// (`round_end_target`): nodes that each hold under a third of the stake cannot pull one
    /// another along (L55), and each moving on by its own clock alone kept them a round apart
    /// (swarm seed 2768). At most `ROUND_END_CATCH_UP` rounds further: one Byzantine vote far
    /// ahead (the keeper takes them up to `MAX_ROUNDS_AHEAD`) would otherwise inflate every
    /// timeout after a stall.
    fn on_round_end(&mut self, round: Round) {
        let company = self
            .cur
            .votes
            .rounds_in((Bound::Included(round), Bound::Unbounded))
            .any(|r| {
                [VoteKind::Prepare, VoteKind::Precommit]
                    .into_iter()
                    .any(|kind| {
                        self.cur
                            .votes
                            .votes(r, kind)
                            .iter()
                            .any(|v| Some(v.validator) != self.me)
                    })
            });
        if !company {
            self.cur.once.waiting_for_company = true;
            return;
        }
        let cap = Round(round.0.saturating_add(ROUND_END_CATCH_UP));
        self.start_round(
            self.round_end_target(round, cap),
            Some(RoundChange::Timeout),
        );
    }

    /// A vote of another validator, in this round or a later one, ends the wait of a node whose
    /// round ended alone (`on_round_end`): its round now ends a full round later, so that the
    /// one who came shares most of it.
    pub(super) fn company_arrived(&mut self, round: Round, validator: ValidatorIndex) {
        if self.cur.once.waiting_for_company
            && round >= self.cur.round
            && Some(validator) != self.me
        {
            self.cur.once.waiting_for_company = false;
            self.schedule_round_end();
        }
    }

    /// Where a round that ended on `Timer::RoundEnd` goes: the highest round up to `cap` whose
    /// voters (those seen voting in it or in a later round up to `cap`) are more than one
    /// validator, else the next round. A laggard
    /// joins the round a group ahead of it is in (swarm seed 2768), but one validator's votes far
    /// ahead do not move anybody: a round pusher made every honest node jump three rounds at
    /// each end of round, which kept two honest groups one round apart for good (swarm seed
    /// 2160).
    pub(super) fn round_end_target(&self, round: Round, cap: Round) -> Round {
        let mut voters: BTreeSet<ValidatorIndex> = BTreeSet::new();
        let rounds = self
            .cur
            .votes
            .rounds_in((Bound::Excluded(round), Bound::Included(cap)));
        for r in rounds.rev() {
            for kind in [VoteKind::Prepare, VoteKind::Precommit] {
                for v in self.cur.votes.votes(r, kind) {
                    voters.insert(v.validator);
                }
            }
            if voters.len() > 1 {
                return r;
            }
        }
        round.next()
    }
}
