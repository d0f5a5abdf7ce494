//! What crosses between the core and a runtime: the `Input`s a runtime feeds, the `Output`s it must
//! perform (in order), the timers it keeps, and the records it must make durable.

use serde::{Deserialize, Serialize};

use crate::block::{Block, Certificate};
use crate::ledger::{BlockOutcome, TxError};
use crate::message::{Message, Proposal, VoteKind};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, Stake, ValidatorIndex};
use crate::votes::Evidence;

/// A timer the core asked for. Timers carry the height and round they were set in; one that fires
/// after the node moved on is ignored, so a runtime never needs to cancel anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// No proposal arrived in time (Algorithm 1, L57).
    Propose { height: Height, round: Round },
    /// Prepares of a quorum arrived but none for one value (L61).
    Prepare { height: Height, round: Round },
    /// Precommits of a quorum arrived but none for one value (L65).
    Precommit { height: Height, round: Round },
    /// The longest a round may last: twice the sum of its three timeouts after it started. Still
    /// in it, the node moves on, with or without a quorum of votes, to the next round or the
    /// highest it has seen votes of (see `Node`).
    RoundEnd { height: Height, round: Round },
    /// `block_time` after finalizing `height - 1`: start round 0 of `height`.
    NextHeight { height: Height },
    /// Periodic: re-send own messages if still in `height`, and chase peers that are ahead.
    Resend { height: Height },
    /// Shortly after this node finalized `height`: send its decision to the peers not heard
    /// from at the next height since.
    Announce { height: Height },
}

/// Something that happened, handed to `Node::handle` with the current time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The node starts (or restarts); first input of every node.
    Start,
    /// A decoded message from an authenticated peer. Its content is not trusted yet.
    Message { from: ValidatorIndex, msg: Message },
    /// As `Message`, but the driver has already verified the author's signature of this proposal
    /// or vote against this node's validator set and chain id, or the sender's signature of this
    /// `Transaction` on this chain (`tx::verify_signatures`). Verification is a pure function, so
    /// a driver may verify once for many nodes (the simulator) or on other threads, in batches;
    /// everything else in the message (a polka, a certificate, the block, the transfer's nonce and
    /// balance) is still checked here.
    SignatureChecked { from: ValidatorIndex, msg: Message },
    /// A timer set by an earlier `Output::Schedule` has fired.
    Timeout(Timer),
    /// A connection to `peer` was (re-)established.
    PeerConnected(ValidatorIndex),
    /// A client submitted a transfer to this node.
    SubmitTx(SignedTransfer),
    /// As `SubmitTx`, but the runtime has verified the transfer's signature on this chain
    /// (`tx::verify_signatures`, one batch per client request, off the core's thread).
    SubmitVerifiedTx(SignedTransfer),
}

/// What a node must be able to restore after a crash so that it never contradicts itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistRecord {
    /// A proposal or vote this node signed at `height`.
    Signed { height: Height, msg: Message },
    /// This node locked on `block` in `round` at `height` (it precommitted it), with the prepares
    /// that made it lock, so that after a restart it can still prove them when it re-proposes.
    Locked {
        height: Height,
        round: Round,
        block: Block,
        polka: Certificate,
    },
    /// The block of another validator's proposal that this node prepared at `height`, kept with
    /// its prepare (in the same step, so one sync covers both): a polka may name it, a validator
    /// may lock on it, and if the proposer then loses its records, the voters' copies are the
    /// only ones left to give it back (`BlockRequest`; swarm seed 1595, where a plain crash of
    /// the one voter took the last copy with it).
    Prepared { height: Height, block: Block },
}

impl PersistRecord {
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
    Proposal,
    Prepare,
    Precommit,
}

impl SignStep {
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
    pub height: Height,
    pub round: Round,
    pub step: SignStep,
}

impl SignPoint {
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
    pub last: SignPoint,
    pub lock: Option<GuardLock>,
}

/// The lock a `SignGuard` keeps: at `height`, locked on `block` in `round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardLock {
    pub height: Height,
    pub round: Round,
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
    DoubleVote(Evidence),
    DoubleProposal { first: Proposal, second: Proposal },
}

impl Misbehaviour {
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
    pub block: Block,
    pub certificate: Certificate,
    pub outcome: BlockOutcome,
}

/// How a round was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundChange {
    /// The precommit timeout of the previous round expired (L65).
    Timeout,
    /// More than a third of the stake was seen in a higher round (L55).
    Skip,
}

/// Observability: things a runtime logs and counts. They oblige nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Proposing {
        height: Height,
        round: Round,
        block: Hash,
        txs: usize,
        reproposal: bool,
    },
    ProposalAccepted {
        height: Height,
        round: Round,
        proposer: ValidatorIndex,
        block: Hash,
    },
    VoteCounted {
        height: Height,
        round: Round,
        kind: VoteKind,
        validator: ValidatorIndex,
        block: Option<Hash>,
        /// Stake now behind this value in this round and kind.
        weight: Stake,
        total: Stake,
    },
    /// A message was refused; `reason` is a stable label for metrics.
    Rejected {
        kind: &'static str,
        reason: &'static str,
    },
    PrepareQuorum {
        height: Height,
        round: Round,
        block: Option<Hash>,
    },
    PrecommitQuorum {
        height: Height,
        round: Round,
        block: Option<Hash>,
    },
    RoundChanged {
        height: Height,
        round: Round,
        reason: RoundChange,
    },
    /// The rules called for this node to sign at `point`, and it did not (see `Withheld`).
    SigningWithheld { point: SignPoint, reason: Withheld },
    /// A valid signature of this node's key at `point` that this node has no record of making:
    /// another instance of the key is running, or this node's records were lost or restored
    /// from a backup. It signs nothing at or below `point`; once its start-up watch is over, it
    /// signs nothing at all (`Withheld::KeyActiveElsewhere`).
    ForeignSignature { point: SignPoint },
    /// This node is behind; it asked `peer` for blocks from `from`.
    SyncRequested { peer: ValidatorIndex, from: Height },
    /// This node counted a prepare quorum of an earlier round for `block` of `height` without
    /// holding it; it asked `peer`.
    BlockRequested {
        peer: ValidatorIndex,
        height: Height,
        block: Hash,
    },
}

/// What the runtime must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make `record` durable before performing any later output of this same step.
    Persist(PersistRecord),
    Broadcast(Message),
    Send {
        to: ValidatorIndex,
        msg: Message,
    },
    /// Deliver `Input::Timeout(timer)` after `after_ms` milliseconds.
    Schedule {
        timer: Timer,
        after_ms: u64,
    },
    /// Store the block, its certificate and outcome; persisted records of heights up to and
    /// including this block's are no longer needed.
    Finalized(Box<Finalized>),
    Evidence(Box<Misbehaviour>),
    /// A late precommit added a signature to the certificate of the last finalized block
    /// (finality came at the quorum; the rest is kept for light clients and logs). Replace the
    /// stored certificate of `certificate.height` with this one.
    CertificateExtended(Certificate),
    /// `to` asked for finalized blocks from `from`: reply with `Message::SyncResponse` holding up
    /// to `max_blocks` of them (fewer if the reply would pass `codec::MAX_MESSAGE_BYTES`).
    ServeSync {
        to: ValidatorIndex,
        from: Height,
        max_blocks: u32,
    },
    TxAccepted {
        hash: Hash,
    },
    TxRejected {
        hash: Hash,
        error: TxError,
    },
    Event(Event),
}
