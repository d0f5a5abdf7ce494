//! What crosses between the core and a runtime: the `Input`s a runtime feeds, the `Output`s it must
//! perform (in order), the timers it keeps, and the records it must make durable.

use serde::{Deserialize, Serialize};

use crate::block::{Block, Certificate};
use crate::ledger::{BlockOutcome, TxError};
use crate::message::{Message, Proposal, VoteKind};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, Stake, ValidatorIndex};
use crate::verified::{CheckedDecisions, Verified};
use crate::votes::Evidence;

/// A timer the core asked for. Timers carry the height and round they were set in; one that fires
/// after the node moved on is ignored, so a runtime never needs to cancel anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// No proposal arrived in time (Algorithm 1, L57): prepare nil. Set at the start of every
    /// round, after `ConsensusParams::propose_timeout` for that round.
    Propose {
        /// The height it was set in.
        height: Height,
        /// The round it was set in.
        round: Round,
    },
    /// Prepares of a quorum arrived but none for one value (L34, fired at L61): precommit nil.
    Prepare {
        /// The height it was set in.
        height: Height,
        /// The round it was set in.
        round: Round,
    },
    /// Precommits of a quorum arrived but none for one value (L47, fired at L65): start the
    /// next round.
    Precommit {
        /// The height it was set in.
        height: Height,
        /// The round it was set in.
        round: Round,
    },
    /// The longest a round may last: twice the sum of its three timeouts after it started. Still
    /// in it, the node moves on, with or without a quorum of votes, to the next round or the
    /// highest it has seen votes of (see `Node`).
    RoundEnd {
        /// The height it was set in.
        height: Height,
        /// The round it ends.
        round: Round,
    },
    /// `block_time_ms` after finalizing `height - 1`: start the first round of `height` (round
    /// 0, or the round after the guard's when records were lost).
    NextHeight {
        /// The height to start.
        height: Height,
    },
    /// Every `resend_interval_ms`: re-send own messages if still in `height`, ask a peer for the
    /// finalized blocks it lacks if behind, and set the next one.
    Resend {
        /// The height the node was at when it was set.
        height: Height,
    },
    /// Shortly after this node finalized `height`: send its decision to the peers not heard
    /// from at the next height since.
    Announce {
        /// The height finalized.
        height: Height,
    },
    /// `peer`'s budget of sync answers has a token again: answer its deferred request.
    SyncBudget {
        /// The peer whose request waits.
        peer: ValidatorIndex,
    },
}

/// Something that happened, handed to `Node::handle` with the current time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The node starts (or restarts); first input of every node.
    Start,
    /// A decoded message from an authenticated peer. Its content is not trusted yet.
    Message {
        /// The validator the transport authenticated the sender as (not the message's signer,
        /// which may differ for a forwarded message).
        from: ValidatorIndex,
        /// The message.
        msg: Message,
    },
    /// As `Message`, its author's signature verified already by the core's own check
    /// (`verified::Verified`: a proposal or vote against this node's validator set and chain
    /// id, a `Transaction` on this chain). Verification is a pure function, so a runtime may
    /// verify once for many nodes (the simulator's `VerdictCache`) or on other threads, in
    /// batches; everything else in the message (a polka, a certificate, the block, the
    /// transfer's nonce and balance) is still checked here.
    SignatureChecked {
        /// As in `Message`.
        from: ValidatorIndex,
        /// The message, verified.
        msg: Verified,
    },
    /// A peer's sync answer (`Message::SyncResponse`) whose certificates the runtime checked
    /// already, off the loop (`verified::CertificateChecker`, from `Node::certificate_checker`):
    /// handled as the message, without checking again a certificate whose set is still the
    /// one of its height. Everything else (bodies, the blocks themselves) is checked here.
    SyncChecked {
        /// As in `Message`.
        from: ValidatorIndex,
        /// The answer's blocks, checked.
        answer: CheckedDecisions,
    },
    /// A timer set by an earlier `Output::Schedule` has fired.
    Timeout(Timer),
    /// A connection to `peer` was (re-)established.
    PeerConnected(ValidatorIndex),
    /// A client submitted a transfer to this node.
    SubmitTx(SignedTransfer),
    /// As `SubmitTx`, the transfer's signature verified already (`Verified::transfers`, one
    /// batch per client request, off the core's thread); anything but a transfer is ignored.
    SubmitVerifiedTx(Verified),
    /// Finalized blocks with their certificates, in height order, from a source outside
    /// consensus: a full node's upstream (a validator or another full node it follows, see
    /// [`crate::follow`]). Each block at the node's height is checked exactly as a peer's
    /// `Decision` is (body against header, certificate against that height's set, the block
    /// applied to the ledger) and finalized; blocks below are skipped, and the first one above,
    /// or one that fails, ends the batch. The source is nobody's claim: it is not a validator,
    /// and nothing about it is recorded.
    Certified(Vec<crate::message::Decision>),
}

/// What a node must be able to restore after a crash so that it never contradicts itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistRecord {
    /// A proposal or vote this node signed at `height`. After a restart at that height the
    /// node sends these very bytes again and never signs another message for their slot.
    Signed {
        /// The height signed at.
        height: Height,
        /// The signed `Message::Proposal` or `Message::Vote`.
        msg: Message,
    },
    /// This node locked on `block` in `round` at `height` (it precommitted it), with the prepares
    /// that made it lock, so that after a restart it can still prove them when it re-proposes.
    Locked {
        /// The height of the lock.
        height: Height,
        /// `lockedRound` (L39).
        round: Round,
        /// `lockedValue` (L38), the whole block.
        block: Block,
        /// The prepares of `round` for `block` worth a quorum (L36), as counted then.
        polka: Certificate,
    },
    /// The block of another validator's proposal that this node prepared at `height`, kept with
    /// its prepare (in the same step, so one sync covers both): a polka may name it, a validator
    /// may lock on it, and if the proposer then loses its records, the voters' copies are the
    /// only ones left to give it back (`BlockRequest`; swarm seed 1595, where a plain crash of
    /// the one voter took the last copy with it).
    Prepared {
        /// The height of the block.
        height: Height,
        /// The block prepared.
        block: Block,
    },
}

impl PersistRecord {
    /// The height the record belongs to: `Node::restore` keeps only those of the height it
    /// resumes at, and a runtime may drop those up to a height once that height's block is
    /// durable.
    pub fn height(&self) -> Height {
        match self {
            PersistRecord::Signed { height, .. }
            | PersistRecord::Locked { height, .. }
            | PersistRecord::Prepared { height, .. } => *height,
        }
    }

    /// For a `Signed` record, the point this node signed at: what the runtime's double-sign guard
    /// must hold, durably, before the message leaves (see `SignPoint`).
    pub fn sign_point(&self) -> Option<SignPoint> {
        match self {
            PersistRecord::Signed { height, msg } => SignPoint::of(*height, msg),
            PersistRecord::Locked { .. } | PersistRecord::Prepared { .. } => None,
        }
    }
}

/// The three things a validator signs in a round, in the order it signs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignStep {
    /// The round's proposal (L14-L19).
    Proposal,
    /// The prepare (prevote: L22-L33, L57-L60).
    Prepare,
    /// The precommit (L36-L46, L61-L64).
    Precommit,
}

impl SignStep {
    /// Its name in logs and messages: `proposal`, `prepare`, `precommit`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignStep::Proposal => "proposal",
            SignStep::Prepare => "prepare",
            SignStep::Precommit => "precommit",
        }
    }
}

/// A point a validator signs at: `(height, round, step)`, ordered as an honest validator signs
/// them (it never signs at a point below one it signed before).
///
/// The double-sign guard: a runtime keeps the last point its validator signed in a small file of
/// its own beside the key, independent of the chain data, and makes it durable before each
/// signed message leaves (`PersistRecord::sign_point` of every `Signed` record). Given back in
/// `Restore::guard`, it keeps a node whose records were lost (a wiped data directory, a restored
/// backup, a damaged write-ahead log) from signing anything at or below that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SignPoint {
    /// Compared first.
    pub height: Height,
    /// Compared second.
    pub round: Round,
    /// Compared last, in signing order.
    pub step: SignStep,
}

impl SignPoint {
    /// The point a signed proposal or vote fills, at the height it names; `None` for other
    /// messages. One slot per point per validator: the one representation of a signed slot
    /// (the core's records and next-height buffer, the guard, the simulator's checker).
    pub fn of_signed(msg: &Message) -> Option<SignPoint> {
        let height = match msg {
            Message::Proposal(p) => p.height,
            Message::Vote(v) => v.height,
            _ => return None,
        };
        SignPoint::of(height, msg)
    }

    /// The point of a signed proposal or vote of `height`; `None` for other messages.
    pub fn of(height: Height, msg: &Message) -> Option<SignPoint> {
        let (round, step) = match msg {
            Message::Proposal(p) => (p.round, SignStep::Proposal),
            Message::Vote(v) if v.kind == VoteKind::Prepare => (v.round, SignStep::Prepare),
            Message::Vote(v) => (v.round, SignStep::Precommit),
            _ => return None,
        };
        Some(SignPoint {
            height,
            round,
            step,
        })
    }
}

impl std::fmt::Display for SignPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "height {} round {} {}",
            self.height.0,
            self.round.0,
            self.step.as_str()
        )
    }
}

/// What a validator's double-sign guard file holds: the last point it signed, and the last lock
/// it took (a precommit for a block is a lock, Algorithm 1 L36-L43). With both, a node whose
/// records are lost neither signs twice nor breaks its lock: it knows the round and block it is
/// locked on, though not the block itself (L22 compares hashes; L28 compares rounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignGuard {
    /// The highest point signed: nothing at or below it is signed again (`Withheld::BelowGuard`)
    /// unless the node's own records hold that very message.
    pub last: SignPoint,
    /// The last precommit for a block this validator signed, at any height; the node applies
    /// it only at its height (when restored there, or on reaching it by catching up).
    pub lock: Option<GuardLock>,
}

/// The lock a `SignGuard` keeps: at `height`, locked on `block` in `round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardLock {
    /// The height of the lock.
    pub height: Height,
    /// `lockedRound` (the precommit's round).
    pub round: Round,
    /// The hash of `lockedValue` (the block precommitted).
    pub block: Hash,
}

impl SignGuard {
    /// The guard after `record`, if the record changes it (a `Signed` record does): the one
    /// rule by which every runtime keeps its guard file. Write the result durably before the
    /// message leaves.
    pub fn after(guard: Option<SignGuard>, record: &PersistRecord) -> Option<SignGuard> {
        let PersistRecord::Signed { height, msg } = record else {
            return None;
        };
        let point = SignPoint::of(*height, msg)?;
        let mut next = guard.unwrap_or(SignGuard {
            last: point,
            lock: None,
        });
        next.last = next.last.max(point);
        if let Message::Vote(v) = msg
            && v.kind == VoteKind::Precommit
            && let Some(block) = v.block
        {
            next.lock = Some(GuardLock {
                height: *height,
                round: v.round,
                block,
            });
        }
        (Some(next) != guard).then_some(next)
    }
}

/// Why a node did not sign where the rules said it would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Withheld {
    /// At or below the last point the double-sign guard holds: signed before, maybe differently,
    /// by an earlier life of this node whose records are lost.
    BelowGuard,
    /// In the first `double_sign_check_ms` after a start without its records, the node watches
    /// for signatures of its own key before it signs anything.
    Watching,
    /// A signature of this node's key that it did not make was seen while it was running: another
    /// instance is using the key. This node signs nothing more until it is restarted.
    KeyActiveElsewhere,
}

/// A validator caught signing two different things for the same slot.
// Rare and always boxed inside `Output`, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Misbehaviour {
    /// Two different votes of one validator for one (height, round, kind), both signatures
    /// valid (`VoteKeeper::add`). Only the first was counted.
    DoubleVote(Evidence),
    /// Two different proposals (another block or another `valid_round`) of the round's proposer
    /// for one round, both signatures valid. Only the first is kept; reported once per round.
    DoubleProposal {
        /// The proposal kept.
        first: Proposal,
        /// The conflicting one.
        second: Proposal,
    },
}

impl Misbehaviour {
    /// The validator that signed both.
    pub fn validator(&self) -> ValidatorIndex {
        match self {
            Misbehaviour::DoubleVote(e) => e.first.validator,
            Misbehaviour::DoubleProposal { first, .. } => first.proposer,
        }
    }
}

/// A finalized block, its proof, and what it did to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finalized {
    /// The block, whole.
    pub block: Block,
    /// Precommits worth a quorum for it (L49): those this node counted, or the certificate of
    /// the decision it caught up with. A longer one may follow (`Output::CertificateExtended`).
    pub certificate: Certificate,
    /// What applying it did to the ledger: rewards, archived transfers, the touched accounts.
    pub outcome: BlockOutcome,
}

/// How a round was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundChange {
    /// A timer of the previous round expired: its precommit timeout (L65), or its
    /// `Timer::RoundEnd`.
    Timeout,
    /// More than a third of the stake was seen in a higher round (L55).
    Skip,
}

/// Observability: things a runtime logs and counts. They oblige nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// This node is the round's proposer and signs a proposal (L14-L19).
    Proposing {
        /// The height proposed at.
        height: Height,
        /// The round proposed in.
        round: Round,
        /// The hash of the block proposed.
        block: Hash,
        /// Transfers in the block.
        txs: usize,
        /// Whether it proposes `validValue` with its `validRound`; a block it is locked on but
        /// can no longer prove the polka of is proposed as fresh (`false`).
        reproposal: bool,
    },
    /// Another validator's proposal passed the signature, proposer and body checks and is
    /// stored as its round's proposal (whether the block is valid is judged when prepared).
    ProposalAccepted {
        /// The proposal's height.
        height: Height,
        /// The proposal's round.
        round: Round,
        /// Its signer, the round's proposer.
        proposer: ValidatorIndex,
        /// The hash of the block proposed.
        block: Hash,
    },
    /// A new vote joined the tally (a duplicate or a conflicting one does not).
    VoteCounted {
        /// The vote's height.
        height: Height,
        /// The vote's round.
        round: Round,
        /// Prepare or precommit.
        kind: VoteKind,
        /// The voter.
        validator: ValidatorIndex,
        /// The value voted for; `None` is nil.
        block: Option<Hash>,
        /// Stake now behind this value in this round and kind.
        weight: Stake,
        /// The validator set's total stake, the base of every threshold.
        total: Stake,
    },
    /// A message was refused; `reason` is a stable label for metrics.
    Rejected {
        /// What was refused (`proposal`, `prepare`, `precommit`, `block`, `decision`,
        /// `transaction`, `sync_request`, ...): a stable label.
        kind: &'static str,
        /// Why, as a stable label (`bad_signature`, `round_too_far`, `block_wrong_parent`, ...).
        reason: &'static str,
    },
    /// Prepares worth a quorum for one value in the current round, in the prepare step (L36,
    /// L44): the rule that precommits it fires.
    PrepareQuorum {
        /// The height.
        height: Height,
        /// The round.
        round: Round,
        /// The value; `None` is nil (L44).
        block: Option<Hash>,
    },
    /// Precommits worth a quorum for a block it holds and judged valid (L49): it finalizes it.
    PrecommitQuorum {
        /// The height.
        height: Height,
        /// The round of the precommits.
        round: Round,
        /// The block (always `Some` today: a nil quorum ends the round by its timeout).
        block: Option<Hash>,
    },
    /// This node entered `round` of `height` other than at the start of the height.
    RoundChanged {
        /// The height.
        height: Height,
        /// The round entered.
        round: Round,
        /// Timeout or skip.
        reason: RoundChange,
    },
    /// The rules called for this node to sign at `point`, and it did not (see `Withheld`).
    SigningWithheld {
        /// Where it would have signed.
        point: SignPoint,
        /// Why it did not.
        reason: Withheld,
    },
    /// A valid signature of this node's key at `point` that this node has no record of making:
    /// another instance of the key is running, or this node's records were lost or restored
    /// from a backup. It signs nothing at or below `point`; a foreign signature at its own
    /// height seen once its start-up watch is over makes it sign nothing at all
    /// (`Withheld::KeyActiveElsewhere`).
    ForeignSignature {
        /// Where the foreign signature was made.
        point: SignPoint,
    },
    /// This node is behind; it asked `peer` for blocks from `from`.
    SyncRequested {
        /// The validator asked.
        peer: ValidatorIndex,
        /// The first height asked for: this node's own.
        from: Height,
    },
    /// This node counted a prepare quorum of an earlier round for `block` of `height` without
    /// holding it; it asked `peer`.
    BlockRequested {
        /// A validator whose prepare for the block was counted.
        peer: ValidatorIndex,
        /// The height of the block (this node's).
        height: Height,
        /// The hash the quorum prepared.
        block: Hash,
    },
}

/// What the runtime must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make `record` durable before performing any later output of this same step, and, if
    /// `SignGuard::after` gives a new guard for it, the guard file too (recipe rules 3a, 3b).
    Persist(PersistRecord),
    /// Send `msg` to every connected validator; best effort.
    Broadcast(Message),
    /// Send `msg` to one validator; best effort.
    Send {
        /// The recipient.
        to: ValidatorIndex,
        /// The message.
        msg: Message,
    },
    /// Deliver `Input::Timeout(timer)` after `after_ms` milliseconds, not earlier. Never
    /// cancelled: a stale timer is ignored.
    Schedule {
        /// What to hand back.
        timer: Timer,
        /// The delay in milliseconds from this step.
        after_ms: u64,
    },
    /// Store the block, its certificate and outcome. Durable before any `Persist` record of the
    /// next height is (recipe rule 3c); once it is durable, persisted records of heights up to
    /// and including this block's are no longer needed.
    Finalized(Box<Finalized>),
    /// A validator signed two conflicting messages: report it (the core does nothing more).
    Evidence(Box<Misbehaviour>),
    /// Late precommits added signatures to the certificate of the last finalized block
    /// (finality came at the quorum; the rest is kept for light clients and logs). Replace the
    /// stored certificate of `certificate.height` with this one. Handed over once for several
    /// (`Node::flush_extension`): when complete, when the next height's first round is due, at
    /// each resend, and before the next `Finalized`.
    CertificateExtended(Certificate),
    /// `to` asked for finalized blocks from `from`: reply with `Message::SyncResponse` holding up
    /// to `max_blocks` of them (fewer if the reply would pass `codec::MAX_MESSAGE_BYTES`).
    ServeSync {
        /// The validator that asked.
        to: ValidatorIndex,
        /// The first height to send; below this node's height.
        from: Height,
        /// The most blocks to send, at most `message::MAX_SYNC_BLOCKS`.
        max_blocks: u32,
    },
    /// A transfer of `Input::SubmitTx` or `Input::SubmitVerifiedTx` entered the mempool (and is
    /// broadcast next).
    TxAccepted {
        /// The transfer's hash (`Transfer::hash`).
        hash: Hash,
    },
    /// A transfer of `Input::SubmitTx` or `Input::SubmitVerifiedTx` was refused.
    TxRejected {
        /// The transfer's hash (`Transfer::hash`).
        hash: Hash,
        /// Why.
        error: TxError,
    },
    /// Something to log or count.
    Event(Event),
}
