//! Proposals, votes and decisions as they arrive: the cheap refusals, the signature check, the
//! evidence of equivocation, counting into the vote keeper, the echo of a polka to a node locked
//! on it, and the messages of other heights (late, kept for the next height, or a sign that this
//! node is behind). The rules (`rules`) run on what this leaves in the height's state.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{NEXT_HEIGHT_ROUNDS, Node, PROPOSAL_ROUNDS_AHEAD};
use crate::block::{self, Certificate};
use crate::consensus::io::{Event, Misbehaviour, Output, SignPoint};
use crate::message::{Decision, MAX_SYNC_BLOCKS, Message, Proposal, Vote, VoteKind};
use crate::types::{Hash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::votes::{AddOutcome, MAX_ROUNDS_AHEAD};

impl Node {
    pub(super) fn on_proposal(&mut self, from: ValidatorIndex, p: Proposal, verified: bool) {
        if p.height != self.cur.height {
            return self.on_other_height(from, Message::Proposal(p), verified);
        }
        if p.round > Round(self.cur.round.0.saturating_add(PROPOSAL_ROUNDS_AHEAD)) {
            return self.reject("proposal", "round_too_far");
        }
        if p.proposer != self.proposer(p.height, p.round) {
            return self.reject("proposal", "wrong_proposer");
        }
        if p.block.header.height != p.height || p.valid_round.is_some_and(|vr| vr >= p.round) {
            return self.reject("proposal", "malformed");
        }
        let hash = p.block.hash();
        if let Some((known, first)) = self.cur.proposals.get(&p.round) {
            if *known == hash && first.valid_round == p.valid_round {
                // A re-send, or a copy forwarded by someone else. The polka travels outside the
                // proposer's signature: a copy stripped of it (or with a bad one) may have come
                // first, so a later copy's polka still counts (issue 12, defect 7). One check
                // per sender and round bounds the work a flood of copies can cause.
                if p.valid_round.is_some()
                    && p.polka.is_some()
                    && !self.cur.polka_proven.contains(&p.round)
                    && self.cur.polka_checked.insert((p.round, from))
                {
                    self.check_carried_polka(&p, hash);
                }
                return;
            }
            // Reported once per round: a Byzantine proposer cannot turn this into an output flood.
            if !self.cur.double_proposals.contains(&p.round)
                && p.verify(&self.set, &self.chain_id).is_ok()
            {
                if Some(p.proposer) == self.me {
                    let point =
                        SignPoint::of(self.cur.height, &Message::Proposal(p)).expect("proposal");
                    return self.foreign_signature(point);
                }
                self.cur.double_proposals.insert(p.round);
                let first = first.clone();
                self.out
                    .push(Output::Evidence(Box::new(Misbehaviour::DoubleProposal {
                        first,
                        second: p,
                    })));
            }
            return;
        }
        if !verified && p.verify(&self.set, &self.chain_id).is_err() {
            return self.reject("proposal", "bad_signature");
        }
        if Some(p.proposer) == self.me {
            // Signed with our key, and not stored as ours for this round: not made by this node.
            let point = SignPoint::of(self.cur.height, &Message::Proposal(p)).expect("a proposal");
            return self.foreign_signature(point);
        }
        // The signature covers the header only: a copy with another body must not be stored
        // or judged under the real block's hash (issue 12, defect 1).
        if !self.body_matches(&p.block) {
            return self.reject("proposal", "body_mismatch");
        }
        self.cur.moved_on(p.proposer);
        self.out.push(Output::Event(Event::ProposalAccepted {
            height: p.height,
            round: p.round,
            proposer: p.proposer,
            block: hash,
        }));
        self.cur
            .blocks
            .entry(hash)
            .or_insert_with(|| p.block.clone());
        let round = p.round;
        self.cur.proposals.insert(round, (hash, p.clone()));
        if p.valid_round.is_some() && p.polka.is_some() {
            self.cur.polka_checked.insert((round, from));
            self.check_carried_polka(&p, hash);
        }
    }

    /// Checks the polka a re-proposal carries for its `valid_round`; a valid one lets L28 fire
    /// in the proposal's round, and is kept with the stored proposal.
    pub(super) fn check_carried_polka(&mut self, p: &Proposal, hash: Hash) {
        let (Some(vr), Some(polka)) = (p.valid_round, &p.polka) else {
            return;
        };
        if self.has_polka_in_tally(vr, hash) {
            return; // L28 fires on the tally; nothing to check
        }
        if polka.round == vr
            && polka
                .verify_prepares(&self.set, &self.chain_id, self.cur.height, &hash)
                .is_ok()
        {
            self.cur.polka_proven.insert(p.round);
            if let Some((_, stored)) = self.cur.proposals.get_mut(&p.round) {
                stored.polka = Some(polka.clone());
            }
        } else {
            self.reject("proposal", "bad_polka");
        }
    }

    pub(super) fn has_polka_in_tally(&self, round: Round, hash: Hash) -> bool {
        self.set.is_quorum(
            self.cur
                .votes
                .stake_for(round, VoteKind::Prepare, Some(hash)),
        )
    }

    /// The prepares of `round` for `hash` this node holds, as a polka to show its peers.
    pub(super) fn polka(&self, round: Round, hash: Hash) -> Option<Certificate> {
        if self.has_polka_in_tally(round, hash) {
            return Some(Certificate::from_prepares(
                self.cur.height,
                round,
                hash,
                self.cur.votes.votes(round, VoteKind::Prepare),
            ));
        }
        self.cur
            .restored_polka
            .as_ref()
            .filter(|c| c.round == round && c.block_hash == hash)
            .cloned()
    }

    pub(super) fn on_vote(&mut self, from: ValidatorIndex, vote: Vote, verified: bool) {
        let kind = vote.kind.name();
        if vote.height != self.cur.height {
            return self.on_other_height(from, Message::Vote(vote), verified);
        }
        // Cheap refusals before the signature check.
        if self.set.get(vote.validator).is_none() {
            return self.reject(kind, "unknown_validator");
        }
        if vote.round > Round(self.cur.round.0.saturating_add(MAX_ROUNDS_AHEAD)) {
            return self.reject(kind, "round_too_far");
        }
        if self.cur.votes.contains(&vote) {
            // Counted before, so its signature was checked: a resend.
            return self.echo_polka(&vote);
        }
        if !verified && vote.verify(&self.set, &self.chain_id).is_err() {
            return self.reject(kind, "bad_signature");
        }
        self.echo_polka(&vote);
        if Some(vote.validator) == self.me {
            // Our own votes are counted when signed; one that arrives is not ours, unless it is
            // from an earlier life of this node whose records are lost.
            let msg = Message::Vote(vote);
            let point = SignPoint::of(self.cur.height, &msg).expect("a vote");
            match self.cur.signed.get(&(point.round, point.step)) {
                Some(own) if *own == msg => {}
                None if self.guard.floor.is_some_and(|floor| point <= floor) => {
                    self.adopt_own_vote(msg)
                }
                _ => self.foreign_signature(point),
            }
            return;
        }
        self.count_vote(vote);
    }

    /// Answers a validator's precommit for a block in an earlier round of this height with the
    /// prepares for that block and round this node holds: the signer is locked there (L36
    /// precommits what it locks) and may need that polka proven again. A validator that lost
    /// its records keeps its lock (the guard) and resends the lock round's precommit, but the
    /// voters of that polka left the round long ago and resend only the current round's votes:
    /// where every quorum needs the locked node, nobody could prove the polka again, its lock
    /// would hold every later quorum off, and the height would stall for good (swarm seed
    /// 1962). With the prepares back (its own among them, `adopt_own_vote`), it counts the
    /// polka, fetches the block from a voter (`follow_polkas`) and re-proposes it with that
    /// proof at its turn, which L28 lets every node prepare.
    ///
    /// Sent to the signer alone, once per (signer, round) per `resend_interval`, and only
    /// prepares already counted: nothing new is signed, nothing is broadcast, and a replayed
    /// precommit costs one polka's worth of small votes per interval at most.
    pub(super) fn echo_polka(&mut self, vote: &Vote) {
        let Some(block) = vote.block else { return };
        if vote.kind != VoteKind::Precommit
            || vote.round >= self.cur.round
            || Some(vote.validator) == self.me
        {
            return;
        }
        let key = (vote.validator, vote.round);
        let gap = self.params.resend_interval_ms.max(1);
        if self
            .cur
            .echoed
            .get(&key)
            .is_some_and(|at| self.now.0 < at.0.saturating_add(gap))
        {
            return;
        }
        let prepares: Vec<Message> = self
            .cur
            .votes
            .votes(vote.round, VoteKind::Prepare)
            .into_iter()
            .filter(|p| p.block == Some(block))
            .map(|p| Message::Vote(p.clone()))
            .collect();
        if prepares.is_empty() {
            return;
        }
        self.cur.echoed.insert(key, self.now);
        for msg in prepares {
            self.out.push(Output::Send {
                to: vote.validator,
                msg,
            });
        }
    }

    /// Counts a vote whose signature is known good (or our own).
    pub(super) fn count_vote(&mut self, vote: Vote) {
        let (round, kind, block, validator) = (vote.round, vote.kind, vote.block, vote.validator);
        match self.cur.votes.add(vote, self.cur.round) {
            Ok(AddOutcome::Counted) => {
                self.cur.moved_on(validator);
                self.company_arrived(round, validator);
                self.out.push(Output::Event(Event::VoteCounted {
                    height: self.cur.height,
                    round,
                    kind,
                    validator,
                    block,
                    weight: self.cur.votes.stake_for(round, kind, block),
                    total: self.set.total_stake(),
                }));
                self.note_commit_quorum(round, kind, block);
            }
            Ok(AddOutcome::Equivocation(evidence)) => {
                self.note_evidence(&evidence);
                self.out
                    .push(Output::Evidence(Box::new(Misbehaviour::DoubleVote(
                        *evidence,
                    ))));
            }
            Ok(AddOutcome::Duplicate | AddOutcome::AlreadyReported) => {}
            Err(e) => self.reject(kind.name(), e.reason()),
        }
    }

    /// Notes a precommit quorum for `block` in `round`, after a vote of `kind` for it counted.
    pub(super) fn note_commit_quorum(&mut self, round: Round, kind: VoteKind, block: Option<Hash>) {
        if let (VoteKind::Precommit, Some(block)) = (kind, block)
            && self.set.is_quorum(
                self.cur
                    .votes
                    .stake_for(round, VoteKind::Precommit, Some(block)),
            )
        {
            self.cur.commit_quorums.insert((round, block));
        }
    }

    /// A proposal or vote for another height: stale, kept for the next height, or a sign that
    /// this node is behind.
    pub(super) fn on_other_height(&mut self, from: ValidatorIndex, msg: Message, verified: bool) {
        let (height, signer) = match &msg {
            Message::Proposal(p) => (p.height, p.proposer),
            Message::Vote(v) => (v.height, v.validator),
            _ => return,
        };
        let Some(point) = SignPoint::of(height, &msg) else {
            return;
        };
        if height < self.cur.height {
            // Its sender may still be deciding the height we decided last. A precommit that can
            // still join the decided block's certificate is the common case of a peer about to
            // decide too, and is left alone (ADR 0002); any other message of that height shows
            // its sender lacks the decision: one of another kind or round, or a precommit the
            // certificate holds already, which its signer sends again only because it is still
            // at that height a resend interval later (`Timer::Resend`).
            if let Some(d) = &self.last_decision
                && d.block.height() == height
                && !matches!(&msg, Message::Vote(v) if can_join(&d.certificate, v))
            {
                self.send_decision(from);
            }
            if let Message::Vote(v) = msg {
                self.extend_certificate(v, verified);
            }
            return; // late: that height is final here
        }
        let Some(set) = self.set_for(height) else {
            // Beyond the next epoch: its set is unknown here, so its signature cannot be
            // checked. Its sender (whose link is authenticated) hints that the chain is ahead.
            self.note_claim(from, Height(height.0 - 1));
            return self.request_sync();
        };
        let signature_ok = verified
            || match &msg {
                Message::Proposal(p) => p.verify(set, &self.chain_id).is_ok(),
                Message::Vote(v) => v.verify(set, &self.chain_id).is_ok(),
                _ => false,
            };
        if !signature_ok {
            return self.reject(msg.kind(), "bad_signature");
        }
        if Some(signer) == self.me {
            // This node has not reached `height`: it did not sign this.
            return self.foreign_signature(point);
        }
        // A validator working on `height` has finalized `height - 1` (a claim: see `claims`).
        self.note_claim(signer, Height(height.0 - 1));
        if height == self.cur.height.next() && point.round.0 < NEXT_HEIGHT_ROUNDS {
            // The signature covers the header only: a copy with another body, kept here, would
            // take the real proposal's place and be refused once the node reaches `height`,
            // leaving it without a proposal for the round (a Byzantine forwarder's copy arrives
            // right after the real one). So the body is checked before it is kept.
            if let Message::Proposal(p) = &msg
                && !self.body_matches(&p.block)
            {
                return self.reject("proposal", "body_mismatch");
            }
            self.next_height.insert((signer, point), msg);
        } else if height > self.cur.height.next() {
            self.request_sync();
        }
    }

    /// A late precommit for the last finalized block joins its certificate.
    pub(super) fn extend_certificate(&mut self, vote: Vote, verified: bool) {
        let Some(decision) = &mut self.last_decision else {
            return;
        };
        let cert = &mut decision.certificate;
        if !can_join(cert, &vote) {
            return;
        }
        let Err(at) = cert
            .signatures
            .binary_search_by_key(&vote.validator, |s| s.validator)
        else {
            return; // checked by `can_join`
        };
        if !verified && vote.verify(&self.prev_set, &self.chain_id).is_err() {
            return self.reject("precommit", "bad_signature");
        }
        cert.signatures.insert(
            at,
            block::CommitSignature {
                validator: vote.validator,
                signature: vote.signature,
            },
        );
        self.extension_unsent = true;
        if cert.signatures.len() == self.prev_set.len() {
            self.flush_extension(); // nothing more can join
        }
    }

    /// Hands the runtime the last decision's certificate if late precommits joined it since it
    /// was last handed over (`Output::CertificateExtended`): when it is complete, when the next
    /// height's first round is due (`Timer::NextHeight`), at each `Timer::Resend`, and before the
    /// next decision. Not at each late precommit: at 100 validators some 30 arrive per height,
    /// and each would have cost the runtime a copy and a store write of the whole certificate.
    /// Either certificate proves the block; the longer one is for light clients and rewards
    /// shown, and waits at most a block time or a resend interval.
    pub(super) fn flush_extension(&mut self) {
        if std::mem::take(&mut self.extension_unsent)
            && let Some(d) = &self.last_decision
        {
            self.out
                .push(Output::CertificateExtended(d.certificate.clone()));
        }
    }

    /// Finalized blocks from a full node's upstream (`Input::Certified`): each at this node's
    /// height goes the way of a peer's decision, with no sender to note a claim of.
    pub(super) fn on_certified(&mut self, mut blocks: Vec<Decision>) {
        blocks.truncate(MAX_SYNC_BLOCKS as usize);
        self.apply_certified(None, blocks, Vec::new());
    }

    /// Applies `blocks` (a sync answer from `from`, or an upstream's blocks), in height order,
    /// from this node's height on, each as a decision (`on_decision_certified`), until one is
    /// beyond this node's height or does not apply.
    ///
    /// `checked`: per block, the set its certificate was found to hold under off the loop
    /// (`Input::SyncChecked`), or empty. A mark counts only if that set signs as the set of
    /// the block's height when the block is applied (`ValidatorSet::signs_as`: the same ids,
    /// keys and stakes, so the same verdict). The blocks left without
    /// one are checked a run at a time (`batch_certified`): the run under this height's set,
    /// then, once an epoch's end is applied, the next run under the new set.
    pub(super) fn apply_certified(
        &mut self,
        from: Option<ValidatorIndex>,
        blocks: Vec<Decision>,
        checked: Vec<Option<Arc<ValidatorSet>>>,
    ) {
        let usable = |mark: &Option<Arc<ValidatorSet>>, set: &ValidatorSet| {
            mark.as_ref().is_some_and(|m| m.signs_as(set))
        };
        let mut marks: VecDeque<Option<Arc<ValidatorSet>>> = checked.into();
        marks.resize(blocks.len(), None);
        let mut blocks: VecDeque<Decision> = blocks.into();
        // The set this loop batched the rest under last: none yet.
        let mut batched_under: *const ValidatorSet = std::ptr::null();
        while let Some(mut d) = blocks.pop_front() {
            let mut mark = marks.pop_front().flatten();
            let at = self.cur.height;
            if !usable(&mark, &self.set)
                && d.block.height() == at
                && !std::ptr::eq(batched_under, &*self.set)
            {
                // None checked yet under this set (the first block, or an epoch's end
                // applied): batch the rest under it. (A set's address reused by chance only
                // costs this batch.)
                blocks.push_front(d);
                marks.push_front(mark);
                let fresh = self.batch_certified(blocks.make_contiguous());
                for (m, held) in marks.iter_mut().zip(fresh) {
                    if held && !usable(m, &self.set) {
                        *m = Some(self.set.clone());
                    }
                }
                batched_under = Arc::as_ptr(&self.set);
                d = blocks.pop_front().expect("pushed back above");
                mark = marks.pop_front().flatten();
            }
            let certified = usable(&mark, &self.set);
            match d.block.height().cmp(&at) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Equal => self.on_decision_certified(from, d, certified),
            }
            if self.cur.height == at {
                break; // it did not apply; the rest cannot either
            }
        }
    }

    /// Which of `blocks` (a sync answer, an upstream's blocks) have certificates that hold,
    /// checked as one batch (`block::verify_certificates`): the run of consecutive heights from
    /// this node's on that this height's set signs (an epoch's end ends it). Their
    /// certificates are not checked again (`on_decision_certified`): the batch's verdict is
    /// each signature's own (the one rule). When the batch names a fault, none is marked, each
    /// is checked as it comes and the fault is refused where it is, as without the batch.
    /// Deviation from checking each decision alone: same verdicts, one batch (catch-up speed,
    /// issue 15).
    pub(super) fn batch_certified(&self, blocks: &[Decision]) -> Vec<bool> {
        let mut marks = vec![false; blocks.len()];
        let start = self.cur.height;
        let mut run: Vec<(usize, Hash)> = Vec::new();
        for (i, d) in blocks.iter().enumerate() {
            let h = d.block.height();
            if h < start {
                continue;
            }
            if h.0 != start.0 + run.len() as u64
                || !self.set_for(h).is_some_and(|s| std::ptr::eq(s, &*self.set))
            {
                break;
            }
            run.push((i, d.block.hash()));
        }
        if run.len() < 2 {
            return marks; // one alone is checked as it comes
        }
        let checks: Vec<block::CertificateCheck<'_>> = run
            .iter()
            .map(|(i, hash)| block::CertificateCheck {
                certificate: &blocks[*i].certificate,
                set: &self.set,
                height: blocks[*i].block.height(),
                block_hash: hash,
            })
            .collect();
        if block::verify_certificates(&self.chain_id, &checks).is_ok() {
            for (i, _) in run {
                marks[i] = true;
            }
        }
        marks
    }

    /// A certified block from `from` (a peer's `Decision` or sync answer), or from a full
    /// node's upstream (`None`: `on_certified`).
    pub(super) fn on_decision(&mut self, from: Option<ValidatorIndex>, d: Decision) {
        self.on_decision_certified(from, d, false)
    }

    /// As `on_decision`; `certified`: its certificate already held in a batch under the set of
    /// its height (`batch_certified`).
    pub(super) fn on_decision_certified(
        &mut self,
        from: Option<ValidatorIndex>,
        d: Decision,
        certified: bool,
    ) {
        let height = d.block.height();
        if height < self.cur.height {
            return;
        }
        // The certificate covers the header only (issue 12, defect 1).
        if !self.body_matches(&d.block) {
            return self.reject("decision", "body_mismatch");
        }
        let hash = d.block.hash();
        let Some(set) = self.set_for(height) else {
            // Beyond the next epoch: its set is unknown here. A certificate that holds under
            // the newest set this node knows still shows the chain is that far (a hint, as
            // that set may have changed since: the blocks fetched are each checked against
            // their own set). Without it, a lagging validator with more than a third of the
            // stake, hearing only claims of smaller ones, would never ask, and the chain would
            // wait for it for good (swarm seed 1142).
            let newest = self.ledger.staking().map_or(&*self.set, |s| &**s.next());
            if d.certificate
                .verify(newest, &self.chain_id, height, &hash)
                .is_ok()
            {
                self.catch_up.proven = self.catch_up.proven.max(height);
            }
            if let Some(from) = from {
                self.note_claim(from, Height(height.0 - 1));
            }
            return self.request_sync();
        };
        if !certified
            && d.certificate
                .verify(set, &self.chain_id, height, &hash)
                .is_err()
        {
            return self.reject("decision", "bad_certificate");
        }
        self.check_own_signature_in(&d.certificate, height);
        if height > self.cur.height {
            // A fact: `height` is final. Its sender holds it, and its signers finalized at least
            // the height before.
            self.catch_up.proven = self.catch_up.proven.max(height);
            if let Some(from) = from {
                self.note_claim(from, height);
            }
            let signers: Vec<ValidatorIndex> = d
                .certificate
                .signatures
                .iter()
                .map(|s| s.validator)
                .collect();
            for signer in signers {
                self.note_claim(signer, Height(height.0 - 1));
            }
            return self.request_sync();
        }
        self.cur.blocks.entry(hash).or_insert(d.block);
        if self.check(hash, true) {
            self.finalize(hash, d.certificate, false);
        }
    }
}

/// Whether `vote` is a precommit `cert` lacks: of its height, round and block, by a validator
/// whose signature it does not hold yet. (Its signature is not checked here.)
fn can_join(cert: &Certificate, vote: &Vote) -> bool {
    vote.kind == VoteKind::Precommit
        && vote.height == cert.height
        && vote.round == cert.round
        && vote.block == Some(cert.block_hash)
        && cert
            .signatures
            .binary_search_by_key(&vote.validator, |s| s.validator)
            .is_err()
}
