//! The double-sign guard while running: what may be signed (`may_sign`), the durability rule
//! when signing (`sign_and_send`), the start-up watch, and signatures of this node's key that it
//! did not make (`foreign_signature`). Its state outlives a height.

use super::Node;
use super::height::slot_of;
use crate::block::Certificate;
use crate::consensus::io::{
    Event, Output, PersistRecord, SignGuard, SignPoint, SignStep, Withheld,
};
use crate::message::{Message, Vote, VoteKind};
use crate::types::{Height, TimestampMs};

/// The double-sign guard's state (see `SignPoint`, `Withheld`).
#[derive(Debug)]
pub(super) struct Guard {
    /// Nothing at or below this point is signed (unless this node holds its own record of it).
    pub(super) floor: Option<SignPoint>,
    /// The start-up watch: set at `Start` when the restore shows lost records.
    pub(super) needs_watch: bool,
    pub(super) watch_until: Option<TimestampMs>,
    pub(super) check_ms: u64,
    /// Another instance is using this key: sign nothing more.
    pub(super) key_elsewhere: bool,
    /// The guard given at restore, applied at its height whether the node restored there or
    /// reaches it by catching up (`apply_guard`); and whether the records were lost.
    pub(super) restored: Option<SignGuard>,
    pub(super) lost_records: bool,
    /// Whether the node started with a guard (kept after `restored` is applied and dropped).
    pub(super) had_guard: bool,
}

impl Guard {
    /// No guard yet; a start-up watch of `check_ms` if a restore shows lost records.
    pub(super) fn new(check_ms: u64) -> Guard {
        Guard {
            floor: None,
            needs_watch: false,
            watch_until: None,
            check_ms,
            key_elsewhere: false,
            restored: None,
            lost_records: false,
            had_guard: false,
        }
    }
}

impl Node {
    /// A valid signature of this node's key at `point` that this node has no record of making.
    /// Below the guard it may be this node's own from before a crash that lost its records; above
    /// it, it never was (the guard is durable before each signature leaves): another instance
    /// holds the key, or the guard itself was restored from a backup. Either way nothing at or
    /// below `point` is signed now; and once the start-up watch is over, a signature at this
    /// node's own height means another instance is live, and nothing is signed at all. One of a
    /// height it has not reached (a certificate met while catching up, a vote from ahead) only
    /// raises the guard: it is as likely this key's earlier life on another machine (a key moved
    /// without its guard file), and a live twin shows itself again once this node catches up.
    ///
    /// A node that started with a guard knows more, even while it watches: its earlier lives
    /// signed nothing above that guard (it is durable before each signature leaves), so one at
    /// its own height above it (this point passed the floor, which is at least the guard) is a
    /// live instance's, or the guard file is an old copy; stopping is the safe side of both. It
    /// must not wait for the watch to end: a twin at the chain's tip signs each slot before the
    /// other's identical vote reaches it (so that vote is never foreign), and at its first
    /// proposer slot it would propose another block (seen with two real processes, ADR 0024).
    pub(super) fn foreign_signature(&mut self, point: SignPoint) {
        if self.guard.floor.is_some_and(|floor| point <= floor) {
            return;
        }
        self.guard.floor = Some(point);
        self.out
            .push(Output::Event(Event::ForeignSignature { point }));
        if point.height == self.cur.height && (self.guard.had_guard || !self.watching()) {
            self.guard.key_elsewhere = true;
        }
    }

    pub(super) fn watching(&self) -> bool {
        !self.started || self.guard.watch_until.is_some_and(|until| self.now < until)
    }

    /// Whether this node may sign at `point`, which it has not signed before.
    pub(super) fn may_sign(&self, point: SignPoint) -> Result<(), Withheld> {
        if self.guard.key_elsewhere {
            Err(Withheld::KeyActiveElsewhere)
        } else if self.watching() {
            Err(Withheld::Watching)
        } else if self.guard.floor.is_some_and(|floor| point <= floor) {
            Err(Withheld::BelowGuard)
        } else {
            Ok(())
        }
    }

    /// The rules called for a signature at `point` and the double-sign guard refused it: the node
    /// goes on as a validator that stayed silent in that step.
    pub(super) fn withhold(&mut self, point: SignPoint, reason: Withheld) {
        self.out
            .push(Output::Event(Event::SigningWithheld { point, reason }));
    }

    /// The durability rule: what this node signs is persisted before it is sent.
    pub(super) fn sign_and_send(&mut self, msg: Message) {
        let slot = slot_of(&msg).expect("only proposals and votes are signed");
        debug_assert!(
            !self.cur.signed.contains_key(&slot),
            "a slot is signed once"
        );
        let point = SignPoint::of(self.cur.height, &msg).expect("a signed message");
        debug_assert!(self.may_sign(point).is_ok(), "signing is gated by may_sign");
        // Points only grow: the guard a runtime keeps is the last one.
        self.guard.floor = Some(point);
        if let Message::Vote(Vote {
            kind: VoteKind::Prepare,
            block: Some(hash),
            ..
        }) = &msg
            && let Some(block) = self.cur.blocks.get(hash)
            && self.cur.persisted_blocks.insert(*hash)
        {
            self.out.push(Output::Persist(PersistRecord::Prepared {
                height: self.cur.height,
                block: block.clone(),
            }));
        }
        if let Message::Proposal(p) = &msg {
            // Its own proposal's record holds the block.
            self.cur.persisted_blocks.insert(p.block.hash());
        }
        self.out.push(Output::Persist(PersistRecord::Signed {
            height: self.cur.height,
            msg: msg.clone(),
        }));
        self.out.push(Output::Broadcast(msg.clone()));
        self.cur.signed.insert(slot, msg);
    }

    /// A vote of this node's key, at or below its guard, of which it holds no record: signed by
    /// an earlier life whose records are lost (or by another instance, which the guard and the
    /// watch deal with; this vote is genuine either way). It is kept as this node's own: no
    /// other vote will be signed in its slot (none could be: it is below the guard), and it
    /// counts, as it does at every peer. An earlier life's prepare is how a polka it locked on
    /// is proven again (`echo_polka`).
    pub(super) fn adopt_own_vote(&mut self, msg: Message) {
        let round = self.cur.round;
        self.restore_signed(msg);
        self.cur.round = round;
    }

    /// A certified precommit of this node's key that it has no record of is a foreign signature.
    pub(super) fn check_own_signature_in(&mut self, certificate: &Certificate, height: Height) {
        let Some(me) = self.me else { return };
        if !certificate.signatures.iter().any(|s| s.validator == me) {
            return;
        }
        let point = SignPoint {
            height,
            round: certificate.round,
            step: SignStep::Precommit,
        };
        let ours = height == self.cur.height
            && matches!(self.cur.signed.get(&(point.round, point.step)),
                Some(Message::Vote(v)) if v.block == Some(certificate.block_hash));
        if !ours {
            self.foreign_signature(point);
        }
    }
}
