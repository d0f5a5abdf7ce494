//! What one peer may make this node verify (issue 12: no single Byzantine validator can stall
//! the consensus loop with signature checks). This module owns the per-peer budgets and the
//! decision that a refused message proves its sender faulty:
//!
//! - A token bucket of signature checks per validator (`Budget`): the votes, proposals (with
//!   their polka) and decisions a peer sends unasked are charged the signatures they may cost
//!   before anything is verified; over budget they are dropped, unchecked and never queued.
//! - A peer whose message fails a check no honest validator's message can fail (a forged
//!   signature of a validator of the set, a forged certificate, a body that does not match its
//!   signed header) is cut off for `net::cooloff::COOL_OFF`: its links are closed and refused,
//!   and what it already queued is dropped unchecked (`Suspect`, `Driver::on_fault`).

use std::time::{Duration, Instant};

use timed_core::block::{Block, Certificate};
use timed_core::consensus::{Event, Output};
use timed_core::message::{Decision, Message, Vote};
use timed_core::types::{Height, ValidatorIndex};
use timed_core::validators::ValidatorSet;
use timed_core::verified::{Precheck, precheck};
use tracing::warn;

use crate::net::cooloff::COOL_OFF;
use crate::node::ctx::CoreInput;
use crate::node::metrics::{Dropped, FAULTS};

use super::{Driver, Todo};

/// The shortest a height is taken to last when working out the rate, whatever the block time.
/// At block time 0 a loopback devnet of five decides up to 567 heights a second (BENCHMARKS.md),
/// but each in round 0 by votes alone: an honest peer then costs about 2.3 checks a height,
/// some 1,300 a second, a tenth of the 14,400 this gives five validators. The worst case of a
/// height (`per_height`) is not reached at that pace.
const FASTEST_HEIGHT_MS: u64 = 5;

/// How many times what an honest peer can need the budget allows.
const HONEST_MARGIN: u64 = 4;

/// Signature checks a second every peer may cost at least, whatever the set and block time:
/// at 41 us a check alone, 20-26 us in a batch (BENCHMARKS.md), this is 2-4 % of a core per
/// peer, which an honest peer at a slow block time never comes near, and a flooding one cannot
/// pass.
const MIN_RATE: u64 = 1_000;

/// Over budget, a drop is logged at most this often (the rest are counted only).
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Signature checks one honest peer can make this node do in one height at most: its prepare
/// and precommit (2), its proposal (1) with the polka of a re-proposal (`n` prepares), the
/// certificate of a decision it announces (`n` precommits), and the prepares it echoes to a
/// node locked in an earlier round (`n`). Votes it re-sends cost nothing (the loop skips the
/// ones the core holds, `votes.rs`), so re-sends are not counted.
fn per_height(validators: u64) -> u64 {
    3 * validators + 3
}

/// The refill rate (checks a second) and the burst of every peer's bucket, for `validators`
/// validators and a block time of `block_time_ms`.
///
/// An honest peer costs at most `per_height(n)` a height, and the network decides at most one
/// height per block time (per `FASTEST_HEIGHT_MS` at block time 0); the rate is
/// `HONEST_MARGIN` times that, at least `MIN_RATE`. Four validators at 8 s blocks: 4 * 15 / 8 s
/// = 7.5 a second, so `MIN_RATE`'s 1000; at block time 0: 4 * 15 * 200 = 12 000 a second
/// (see `FASTEST_HEIGHT_MS` for what an honest peer costs there). A round
/// past 0 follows a failed one (a proposer down or Byzantine, a timeout), rare among honest
/// rounds: the margin covers it.
///
/// The burst is one second of refill, and at least two heights' worth: a catching-up
/// neighbour's decisions, a restart's re-sent votes and a re-proposal's polka fit at once.
pub(super) fn limits(validators: usize, block_time_ms: u64) -> (f64, f64) {
    let need = per_height(validators as u64);
    let heights_per_sec = 1000.0 / block_time_ms.max(FASTEST_HEIGHT_MS) as f64;
    let rate = (HONEST_MARGIN as f64 * need as f64 * heights_per_sec).max(MIN_RATE as f64);
    let burst = rate.max(2.0 * need as f64);
    (rate, burst)
}

/// Signature checks left to one peer, refilled over time.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One bucket per validator id heard from: bounded by the registry, whatever peers send.
pub(super) struct Budget {
    rate: f64,
    burst: f64,
    buckets: Vec<Bucket>,
    last_warning: Option<Instant>,
}

impl Budget {
    pub(super) fn new(validators: usize, block_time_ms: u64, now: Instant) -> Budget {
        let (rate, burst) = limits(validators, block_time_ms);
        Budget {
            rate,
            burst,
            buckets: vec![
                Bucket {
                    tokens: burst,
                    last: now
                };
                validators
            ],
            last_warning: None,
        }
    }

    /// Takes `cost` checks from `from`'s bucket if it holds them. Buckets are by id: a
    /// validator that registered after the genesis gets its bucket, full, when it first sends
    /// (a peer's id comes from its handshake, so only validators the network admits have one;
    /// ids are `u16`, so the table holds 65,536 buckets at most).
    pub(super) fn charge(&mut self, from: ValidatorIndex, cost: u64, now: Instant) -> bool {
        let i = usize::from(from.0);
        if i >= self.buckets.len() {
            let full = Bucket {
                tokens: self.burst,
                last: now,
            };
            self.buckets.resize(i + 1, full);
        }
        let b = &mut self.buckets[i];
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens < cost as f64 {
            return false;
        }
        b.tokens -= cost as f64;
        true
    }

    /// Whether a drop now is worth a log line (one every `DROP_WARN_EVERY`).
    fn warn_now(&mut self, now: Instant) -> bool {
        let due = self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= DROP_WARN_EVERY);
        if due {
            self.last_warning = Some(now);
        }
        due
    }
}

/// The signature checks `msg` may cost this node at `height`, charged before any is made.
///
/// - A vote: one if the pre-check policy checks it (`verified::precheck`: of this height or
///   later and not held by the core, or a late precommit of the height before), else nothing
///   (the core checks none of the others).
/// - A proposal: its signature and its polka's.
/// - A decision of this height or later: its certificate's signatures (an older one is
///   dropped by the core before any check).
/// - Nothing else. Transfers are verified in batches beside the loop (`txverify.rs`). Sync
///   responses and block responses answer our own requests, which the core paces; an unasked
///   one costs at most one certificate check, at the block of our height, and that check either
///   finalizes the height (progress no budget should slow while catching up) or fails and
///   proves the sender faulty (a cool-off); a certificate short of a quorum or with unknown
///   signers fails before any signature is checked. A block response carries no signature.
pub(super) fn cost<'s>(
    msg: &Message,
    height: Height,
    sets: impl Fn(Height) -> Option<&'s ValidatorSet>,
    holds: impl Fn(&Vote) -> bool,
) -> u64 {
    let signatures = |c: &Certificate| c.signatures.len() as u64;
    match msg {
        Message::Vote(_) => u64::from(precheck(msg, height, sets, holds) == Precheck::Check),
        Message::Proposal(p) => 1 + p.polka.as_ref().map_or(0, signatures),
        Message::Decision(d) if d.block.height() >= height => signatures(&d.certificate),
        _ => 0,
    }
}

/// What the loop keeps of a peer's message while the core judges it: enough to tell whether
/// the core's refusal proves the sender faulty, which the core does not say (it reports a
/// refusal's kind and reason, not its sender).
pub(super) struct Suspect {
    /// The vote's or proposal's signer is a validator of the set: its bad signature is a
    /// forgery (an unknown signer's is refused as `bad_signature` too on some paths).
    signer_known: bool,
    /// Of each decision carried (one, or a sync response's), its height and whether its
    /// certificate is sound but for its signatures: of the right height and block, ordered
    /// known signers worth a quorum. Only then was a `bad_certificate` a failed signature
    /// check; a certificate short of a quorum is refused before any.
    certificates: Vec<(Height, bool)>,
    /// A sync response: the block refused is the one at the node's height after it.
    response: bool,
}

/// A certificate's height, and whether it is sound but for its signatures (`Suspect`).
fn sound(b: &Block, c: &Certificate, set: &ValidatorSet) -> (Height, bool) {
    (
        b.height(),
        c.height == b.height()
            && c.block_hash == b.hash()
            && c.signed_stake(set).is_ok_and(|s| set.is_quorum(s)),
    )
}

impl Suspect {
    pub(super) fn of(msg: &Message, set: &ValidatorSet) -> Suspect {
        let known = |v: ValidatorIndex| set.get(v).is_some();
        let (signer_known, certificates, response) = match msg {
            Message::Vote(v) => (known(v.validator), vec![], false),
            Message::Proposal(p) => (known(p.proposer), vec![], false),
            Message::Decision(d) => (false, vec![sound(&d.block, &d.certificate, set)], false),
            Message::SyncResponse { blocks } => return Suspect::of_answer(blocks, set),
            _ => (false, vec![], false),
        };
        Suspect {
            signer_known,
            certificates,
            response,
        }
    }

    /// A sync answer's blocks (`Message::SyncResponse`, or checked already:
    /// `CoreInput::SyncChecked`).
    pub(super) fn of_answer(blocks: &[Decision], set: &ValidatorSet) -> Suspect {
        let certificates = blocks
            .iter()
            .map(|d| sound(&d.block, &d.certificate, set))
            .collect();
        Suspect {
            signer_known: false,
            certificates,
            response: true,
        }
    }

    /// Whether the core's refusal (`kind`, `reason`) of this message proves its sender faulty;
    /// `height` is the node's once the message was handled.
    ///
    /// Honest validators send and forward only what they verified under the one rule
    /// (ADR 0008: batch and single verdicts agree), with one validator set and chain for all:
    /// - a bad signature of a validator of the set is a forgery (a stale or far message is
    ///   refused for its height or round, never as a bad signature);
    /// - so is a sound certificate with a bad signature;
    /// - a body that does not match its signed header (`body_mismatch`) is a fault too, though
    ///   no signature failed: a node stores and serves a block only once its body matched
    ///   (ADR 0010), so only a peer that altered it sends one, and each costs this node the
    ///   hashing of a block of up to megabytes.
    pub(super) fn proves(&self, kind: &str, reason: &str, height: Height) -> bool {
        if !FAULTS.contains(&(kind, reason)) {
            return false;
        }
        match reason {
            "bad_signature" => self.signer_known,
            "bad_certificate" => self
                .certificates
                .iter()
                .any(|(h, sound)| *sound && (!self.response || *h == height)),
            _ => true,
        }
    }

    /// The first refusal among `outputs` that proves the sender faulty.
    fn fault_in(&self, outputs: &[Todo], height: Height) -> Option<(&'static str, &'static str)> {
        outputs.iter().find_map(|t| match t {
            Todo::Output(Output::Event(Event::Rejected { kind, reason }))
                if self.proves(kind, reason, height) =>
            {
                Some((*kind, *reason))
            }
            _ => None,
        })
    }
}

impl Driver {
    /// The inputs the loop goes on with: a peer's message is dropped unchecked if the peer is
    /// cooling off, or if the signatures it may cost are more than its budget holds now.
    pub(super) fn admit(&mut self, inputs: Vec<CoreInput>) -> Vec<CoreInput> {
        let now = Instant::now();
        let mut kept = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (from, msg) = match &input {
                CoreInput::Message { from, msg } => (*from, Some(msg)),
                CoreInput::Checked { from, .. } => (*from, None),
                _ => {
                    kept.push(input);
                    continue;
                }
            };
            if self.cooling_off(from) {
                continue;
            }
            let Some(msg) = msg else {
                kept.push(input);
                continue;
            };
            let node = &self.node;
            let cost = cost(
                msg,
                node.height(),
                |h| node.set_for(h),
                |v| node.holds_vote(v),
            );
            if cost == 0 || self.budget.charge(from, cost, now) {
                kept.push(input);
                continue;
            }
            self.ctx.metrics.dropped(Dropped::VerifyBudget);
            if self.budget.warn_now(now) {
                let who = self.chain.name(from);
                warn!(
                    peer = who,
                    kind = msg.kind(),
                    "Dropped a {} from {who} unchecked: it sent more signatures to verify than \
                     an honest validator can ({:.0} a second, {:.0} at once); further drops are \
                     counted (timed_frames_dropped_total{{reason=\"verify_budget\"}}) and logged \
                     at most every {} s",
                    msg.kind(),
                    self.budget.rate,
                    self.budget.burst,
                    DROP_WARN_EVERY.as_secs()
                );
            }
        }
        kept
    }

    /// Whether `from` cools off now: what it sent is dropped unchecked, counted. Asked again
    /// for each input, since a cut-off may start in the middle of a group.
    pub(super) fn cooling_off(&self, from: ValidatorIndex) -> bool {
        let cooling = self.ctx.cooloff.left(from, Instant::now()).is_some();
        if cooling {
            self.ctx.metrics.dropped(Dropped::CoolingOff);
        }
        cooling
    }

    /// Hands a peer's message to the core (`handle`) and, if the core's refusal of it proves
    /// the peer faulty, cuts the peer off.
    pub(super) fn handle_suspect(
        &mut self,
        from: ValidatorIndex,
        suspect: Suspect,
        input: timed_core::consensus::Input,
        group: &mut super::Group,
    ) {
        let start = group.todo.len();
        self.handle(input, group);
        if let Some((kind, reason)) = suspect.fault_in(&group.todo[start..], self.node.height()) {
            self.on_fault(from, kind, reason);
        }
    }

    /// `from` sent a message refused as (`kind`, `reason`), one of `FAULTS`: counted, and the
    /// peer cooled off (its links close: `net::cooloff`), with one warning when that starts.
    pub(super) fn on_fault(
        &mut self,
        from: ValidatorIndex,
        kind: &'static str,
        reason: &'static str,
    ) {
        self.ctx.metrics.peer_fault(kind, reason);
        if self.ctx.cooloff.start(from, Instant::now(), COOL_OFF) {
            let who = self.chain.name(from);
            warn!(
                peer = who,
                kind,
                reason,
                "Cutting off {who} for {} s: it sent a {kind} refused as {reason} (a forged \
                 signature or certificate, or a body not matching its signed header), which no \
                 honest validator sends; its connections are closed and refused until then",
                COOL_OFF.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_validators;
    use super::*;
    use timed_core::block::CommitSignature;
    use timed_core::crypto::{Keypair, Signature};
    use timed_core::message::{Decision, VoteKind};
    use timed_core::types::{Hash, Round};

    #[test]
    fn the_limits_follow_the_set_and_the_block_time_with_a_floor() {
        // Four validators at 8 s blocks need 7.5 checks a second: the floor.
        assert_eq!(limits(4, 8_000), (1000.0, 1000.0));
        // At block time 0: 4 * 15 * 200 a second.
        assert_eq!(limits(4, 0), (12_000.0, 12_000.0));
        // A large set at 1 s blocks: 4 * 303.
        assert_eq!(limits(100, 1_000), (1212.0, 1212.0));
        // The burst always holds a decision and a re-proposal's polka of the whole set.
        let (_, burst) = limits(10_000, 60_000);
        assert!(burst >= 2.0 * 10_000.0);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(2, 8_000, t0);
        let (p, q) = (ValidatorIndex(0), ValidatorIndex(1));
        // The burst at once, then nothing.
        assert!(b.charge(p, 600, t0));
        assert!(b.charge(p, 400, t0));
        assert!(!b.charge(p, 1, t0));
        // The other peer's bucket is its own.
        assert!(b.charge(q, 1000, t0));
        // A tenth of a second refills a tenth of the rate; a refused charge takes nothing.
        let t1 = t0 + Duration::from_millis(100);
        assert!(!b.charge(p, 101, t1));
        assert!(b.charge(p, 100, t1));
        // Refilled at most to the burst.
        let later = t0 + Duration::from_secs(3600);
        assert!(!b.charge(p, 1001, later));
        assert!(b.charge(p, 1000, later));
        // A validator registered after the genesis (an id past the genesis set's) gets a
        // bucket of its own, as full and as bounded as the others'.
        assert!(b.charge(ValidatorIndex(7), 1000, t0));
        assert!(!b.charge(ValidatorIndex(7), 1, t0));
        assert!(!b.charge(ValidatorIndex(7), 1_000_000, later));
    }

    fn vote(key: &Keypair, v: u16) -> Vote {
        let block = Some(Hash([1; 32]));
        let kind = VoteKind::Precommit;
        Vote::sign(
            key,
            "test",
            Height(5),
            Round(0),
            kind,
            block,
            ValidatorIndex(v),
        )
    }

    #[test]
    fn what_a_message_costs() {
        let (keys, set) = test_validators();
        let v = Message::Vote(vote(&keys[0], 0));
        assert_eq!(cost(&v, Height(5), |_| Some(&set), |_| false), 1);
        // A re-send of a vote the core holds is not checked again.
        assert_eq!(cost(&v, Height(5), |_| Some(&set), |_| true), 0);
        // A precommit of the height before may extend its certificate; older votes are not
        // checked.
        assert_eq!(cost(&v, Height(6), |_| Some(&set), |_| false), 1);
        assert_eq!(cost(&v, Height(7), |_| Some(&set), |_| false), 0);
        let asked = Message::SyncRequest {
            from: Height(1),
            max_blocks: 64,
        };
        assert_eq!(cost(&asked, Height(5), |_| Some(&set), |_| false), 0);
    }

    /// The refusals that prove the sender faulty, and those that do not.
    #[test]
    fn only_a_failed_check_no_honest_message_fails_proves_a_fault() {
        let (keys, set) = test_validators();
        let h = Height(5);
        let known = Suspect::of(&Message::Vote(vote(&keys[1], 1)), &set);
        assert!(known.proves("precommit", "bad_signature", h));
        // Stale or early: refused for its height or round, never a fault.
        assert!(!known.proves("precommit", "wrong_height", h));
        assert!(!known.proves("precommit", "round_too_far", h));
        // A vote naming no validator of the set proves nothing about signatures.
        let stranger = Suspect::of(&Message::Vote(vote(&keys[1], 9)), &set);
        assert!(!stranger.proves("precommit", "bad_signature", h));
        assert!(!stranger.proves("prepare", "unknown_validator", h));

        // A decision: a sound certificate that fails is forged; one short of a quorum fails
        // before any signature check, and is not counted as a forgery.
        let block = timed_core::block::Block {
            header: timed_core::block::Header {
                chain_id: "test".into(),
                height: h,
                parent_hash: Hash::ZERO,
                timestamp: timed_core::types::TimestampMs(1),
                proposer: ValidatorIndex(0),
                tx_root: timed_core::block::tx_root(&[]),
                state_root: Hash::ZERO,
                next_set_hash: Hash::ZERO,
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs: vec![],
            evidence: Vec::new(),
        };
        let certificate = |signers: u16| Certificate {
            height: h,
            round: Round(0),
            block_hash: block.hash(),
            signatures: (0..signers)
                .map(|i| CommitSignature {
                    validator: ValidatorIndex(i),
                    signature: Signature([7; 64]),
                })
                .collect(),
        };
        let decision = |signers| {
            Message::Decision(Decision {
                block: block.clone(),
                certificate: certificate(signers),
            })
        };
        let forged = Suspect::of(&decision(3), &set);
        assert!(forged.proves("decision", "bad_certificate", Height(4)));
        assert!(forged.proves("decision", "body_mismatch", h));
        let short = Suspect::of(&decision(2), &set);
        assert!(!short.proves("decision", "bad_certificate", h));
        assert!(!short.proves("decision", "certified_block_invalid", h));
        // In a sync response, the block refused is the one at the node's height.
        let response = Message::SyncResponse {
            blocks: vec![Decision {
                block: block.clone(),
                certificate: certificate(3),
            }],
        };
        let response = Suspect::of(&response, &set);
        assert!(response.proves("decision", "bad_certificate", h));
        assert!(!response.proves("decision", "bad_certificate", Height(6)));
        // A block response carries no signature, but its body must match the header asked for.
        let answer = Suspect::of(&Message::BlockResponse { block }, &set);
        assert!(answer.proves("block_response", "body_mismatch", h));
        assert!(!answer.proves("block_response", "not_asked", h));
        let asked = Message::BlockRequest {
            height: h,
            hash: Hash::ZERO,
        };
        assert!(!Suspect::of(&asked, &set).proves("block_request", "rate_limited", h));
    }
}
