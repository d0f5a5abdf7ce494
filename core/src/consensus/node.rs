//! The consensus state machine of one validator: Tendermint's Algorithm 1 (Buchman, Kwon,
//! Milosevic, 2018) under our names: *proposal*, *prepare* (prevote) and *precommit*.
//!
//! Every `upon` rule of the paper is one method below, labelled with the lines it implements. After
//! each input the rules are evaluated until none fires; each firing moves `(height, round, step)`
//! strictly forward, so the evaluation ends. Deviations from the paper, and why:
//! - a `NewHeight` step: after finalizing, round 0 of the next height starts `block_time` later
//!   (DESIGN §2.1); only the decision rule (L49) runs while waiting;
//! - `Decision` messages and sync responses finalize a height directly when they carry a valid
//!   certificate (catch-up); the certificate proves what L49 would have seen;
//! - messages for the next height are kept (verified, bounded per validator) and replayed when the
//!   node gets there, so a node that finalizes a little late does not miss the next proposal;
//! - own signed messages are re-sent on `PeerConnected` and on a periodic timer (gossip stand-in);
//! - a re-proposal carries the prepares of its `validRound` (a polka), and L28 accepts that proof
//!   as well as its own tally: a double voter can show a quorum to one node and hide it from the
//!   rest, which the paper's "every message eventually reaches everyone" would not allow;
//! - L36's `validValue`/`validRound` update also fires for a polka of an earlier round of the
//!   height, once the node holds that block, and a node that counted a polka of an earlier round
//!   for a block it never received asks a validator that prepared it (`BlockRequest`); see
//!   `follow_polkas` for why;
//! - a precommit of an earlier round is answered with the prepares of its polka that this node
//!   holds, and a vote of its own key below its guard is adopted as its own: a node that lost its
//!   records can prove the polka it is locked on again (`echo_polka`, `adopt_own_vote`).

use std::collections::{BTreeMap, BTreeSet};

use crate::block::{self, Block, Certificate};
use crate::consensus::io::{
    Event, Finalized, Input, Misbehaviour, Output, PersistRecord, RoundChange, SignGuard,
    SignPoint, SignStep, Timer, Withheld,
};
use crate::crypto::Keypair;
use crate::ledger::mempool::Mempool;
use crate::ledger::{BlockOutcome, Ledger, TxError};
use crate::message::{Decision, MAX_SYNC_BLOCKS, Message, Proposal, Vote, VoteKind};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
use crate::validators::{ConsensusParams, Genesis, GenesisError, ValidatorSet};
use crate::votes::{AddOutcome, MAX_ROUNDS_AHEAD, VoteKeeper};

/// Proposals are accepted for at most this many rounds beyond the current one: each may carry a
/// full block, so the window is kept small (a proposer re-sends its proposal anyway).
pub const PROPOSAL_ROUNDS_AHEAD: u32 = 4;

/// How many rounds past its own a node may jump when a round ends on `Timer::RoundEnd`: enough
/// for a laggard to close in on a node ahead of it (it moves one round per end of round), little
/// for a Byzantine vote far ahead to inflate the timeouts.
const ROUND_END_CATCH_UP: u32 = 3;

/// Messages for the next height are kept for rounds below this.
const NEXT_HEIGHT_ROUNDS: u32 = 2;

/// How long after finalizing a height its decision waits for peers to show they have it too
/// (`Timer::Announce`): long enough for their next-height messages on a fast network, short next
/// to any timeout.
const ANNOUNCE_DELAY_MS: u64 = 20;

/// The block fetch in flight (at most one): the block wanted, when it was last asked for, and how
/// many times, so that each retry asks the next of the validators that prepared it.
#[derive(Clone, Copy, Debug)]
struct BlockFetch {
    hash: Hash,
    asked_at: TimestampMs,
    attempts: u32,
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

/// Settings of one node that are not protocol parameters (those are in the genesis).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Pending transactions kept at most.
    pub mempool_capacity: usize,
    /// After a start that shows lost records (no double-sign guard, or a guard beyond the last
    /// record), sign nothing for this long and watch for signatures of this node's key that it
    /// did not make (CometBFT's `double_sign_check_height`, in time rather than heights: peers
    /// re-send their messages every `resend_interval`, so two intervals show another instance).
    /// 0 turns the watch off (a brand-new validator, or tests).
    pub double_sign_check_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            mempool_capacity: 20_000,
            double_sign_check_ms: 0,
        }
    }
}

/// A peer may be sent this many sync answers in a burst, then one per
/// `SYNC_ANSWER_INTERVAL_MS`: an honest node asks once per answer it has applied, which at 64
/// blocks an answer allows 16,000 blocks/s, while a flood of requests costs one answer per 4 ms.
const SYNC_ANSWER_BURST: u64 = 16;
const SYNC_ANSWER_INTERVAL_MS: u64 = 4;

/// What a node is rebuilt from after a crash: its last finalized block, the ledger after it, and
/// the records it asked to persist since.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    /// The last finalized block and its certificate (the longest stored); `None` before block 1.
    /// Its chain id must be the genesis's (`NodeError::WrongChain`).
    pub last: Option<Decision>,
    /// The ledger after `last`; its state root must be `last`'s (`NodeError::LedgerMismatch`).
    /// `None` stands for the genesis ledger. Ignored when `last` is `None`.
    pub ledger: Option<Ledger>,
    /// The `PersistRecord`s made durable since `last`, in any order; those of other heights than
    /// `last + 1` are ignored. A record whose block does not match its header is skipped.
    pub records: Vec<PersistRecord>,
    /// The double-sign guard file: the last point this validator signed and its last lock.
    pub guard: Option<SignGuard>,
}

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The genesis breaks a rule of `Genesis::validate`.
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// `Restore::ledger` is not the ledger after `Restore::last`.
    #[error("the restored ledger's state root {ledger} differs from the last block's {block}")]
    LedgerMismatch {
        /// The restored ledger's state root.
        ledger: Hash,
        /// The state root in the last block's header.
        block: Hash,
    },
    /// `Restore::last` belongs to another chain.
    #[error("the restored last block is for chain {got:?}, this node runs {expected:?}")]
    WrongChain {
        /// The genesis's chain id.
        expected: String,
        /// The block's chain id.
        got: String,
    },
}

/// A block checked against the ledger, with the ledger it leads to.
#[derive(Clone, Debug)]
struct Checked {
    after: Ledger,
    outcome: BlockOutcome,
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
        }
    }
}

/// Slot of a signed message within a round: one proposal, one prepare, one precommit.
type SignedSlot = (Round, SignStep);

fn slot_of(msg: &Message) -> Option<SignedSlot> {
    SignPoint::of(Height(0), msg).map(|p| (p.round, p.step))
}

/// Where this node is in catching up (`Node::request_sync`).
#[derive(Clone, Copy, Debug)]
struct SyncAsk {
    peer: ValidatorIndex,
    at: TimestampMs,
}

/// Item counts of a node's variable-size state; see `Node::footprint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Blocks held at the current height plus the verdicts kept on them.
    pub blocks: usize,
    /// Proposals stored, one per round at most.
    pub proposals: usize,
    /// Vote slots of the vote keeper (`VoteKeeper::memory_votes`).
    pub vote_slots: usize,
    /// Messages of the next height kept for replay.
    pub next_height_messages: usize,
    /// Transfers in the mempool.
    pub pending_txs: usize,
}

impl Footprint {
    /// The most a node of `validators` validators with a mempool of `mempool_capacity` may hold
    /// while its round is `round`: every bound the node keeps, written down in one place.
    pub fn bound(validators: usize, round: Round, mempool_capacity: usize) -> Footprint {
        let rounds = round.0 as usize + MAX_ROUNDS_AHEAD as usize + 1;
        let proposal_rounds = round.0 as usize + PROPOSAL_ROUNDS_AHEAD as usize + 1;
        Footprint {
            // A block per proposal, one from a decision, a restored lock, and fetched ones (each
            // named by the prepare quorum of a round, of which a round holds at most one: a
            // validator's stake counts once); each with its verdict.
            blocks: 2 * (proposal_rounds + 2 + rounds),
            proposals: proposal_rounds,
            vote_slots: rounds * 2 * validators,
            next_height_messages: validators * NEXT_HEIGHT_ROUNDS as usize * 3,
            pending_txs: mempool_capacity,
        }
    }

    /// True when every count is within `bound`.
    pub fn within(&self, bound: &Footprint) -> bool {
        self.blocks <= bound.blocks
            && self.proposals <= bound.proposals
            && self.vote_slots <= bound.vote_slots
            && self.next_height_messages <= bound.next_height_messages
            && self.pending_txs <= bound.pending_txs
    }
}

/// One validator's consensus. Feed it `Input`s with the time; perform the `Output`s in order.
pub struct Node {
    chain_id: String,
    params: ConsensusParams,
    set: ValidatorSet,
    key: Keypair,
    me: Option<ValidatorIndex>,
    now: TimestampMs,
    started: bool,

    // The chain so far.
    height: Height,
    parent_hash: Hash,
    parent_time: TimestampMs,
    last_decision: Option<Decision>,
    ledger: Ledger,
    mempool: Mempool,

    // State of the current height (reset by `enter_height`).
    round: Round,
    step: Step,
    locked: Option<(Round, Hash)>,
    valid: Option<(Round, Hash)>,
    blocks: BTreeMap<Hash, Block>,
    checked: BTreeMap<Hash, Option<Box<Checked>>>,
    proposals: BTreeMap<Round, (Hash, Proposal)>,
    /// Rounds whose proposal carried a valid polka for its `valid_round` (L28 may fire on it).
    polka_proven: BTreeSet<Round>,
    /// The polka behind `locked`, read back from the `Locked` record after a crash, when the vote
    /// keeper no longer holds those prepares.
    restored_polka: Option<Certificate>,
    double_proposals: BTreeSet<Round>,
    votes: VoteKeeper,
    signed: BTreeMap<SignedSlot, Message>,
    /// (round, block) pairs holding a precommit quorum: L49 fires once the block is known.
    commit_quorums: BTreeSet<(Round, Hash)>,
    // "For the first time" flags of the current round.
    prepare_timer_set: bool,
    precommit_timer_set: bool,
    valid_updated: bool,

    /// Verified messages for `height + 1`, at most one per (signer, round, slot).
    next_height: BTreeMap<(ValidatorIndex, Round, u8), Message>,
    /// The highest height each validator has shown it finalized: by signing a message of the
    /// next height, or by sending a certified decision. Claims, not facts: catch-up starts only
    /// on a claim backed by more than a third of the stake, or on a certificate (`proven`).
    claims: BTreeMap<ValidatorIndex, Height>,
    /// The highest height a certificate this node verified shows final.
    proven: Height,
    /// The sync request waiting for its answer.
    sync_ask: Option<SyncAsk>,
    /// Sync requests per peer that went unanswered or did not help, since its last useful
    /// answer: the next target is the claimant with the fewest.
    sync_failures: BTreeMap<ValidatorIndex, u32>,
    /// Where the rotation over sync targets resumes.
    sync_cursor: u16,
    /// Per peer, a token bucket of sync answers: (tokens, when last refilled).
    sync_budget: BTreeMap<ValidatorIndex, (u64, TimestampMs)>,
    /// (round, sender) pairs whose copy of the round's re-proposal had its polka checked (reset by
    /// `enter_height`): a later copy may carry the polka an earlier one lacked, and each sender
    /// gets one check per round.
    polka_checked: BTreeSet<(Round, ValidatorIndex)>,
    /// When this node last answered a validator's prepare of an earlier round with its own
    /// matching prepare (`echo_old_prepare`; reset by `enter_height`): once per (validator,
    /// round) per `resend_interval`.
    echoed: BTreeMap<(ValidatorIndex, Round), TimestampMs>,
    /// Blocks of this height whose bytes a record of this node holds (its own proposals, and
    /// the `Prepared` blocks; reset by `enter_height`): each is persisted once.
    persisted_blocks: BTreeSet<Hash>,

    // The double-sign guard (see `SignPoint`, `Withheld`).
    /// Nothing at or below this point is signed (unless this node holds its own record of it).
    sign_floor: Option<SignPoint>,
    /// The start-up watch: set at `Start` when the restore shows lost records.
    needs_watch: bool,
    watch_until: Option<TimestampMs>,
    double_sign_check_ms: u64,
    /// Another instance is using this key: sign nothing more.
    key_elsewhere: bool,
    /// The guard given at restore, applied at its height whether the node restored there or
    /// reaches it by catching up (`apply_guard`); and whether the records were lost.
    guard: Option<SignGuard>,
    lost_records: bool,
    /// The block this node is fetching (reset by `enter_height`).
    block_fetch: Option<BlockFetch>,
    /// When each peer was last sent a block it asked for: one answer per peer per
    /// `block_answer_gap`, so that a flood of requests costs one block per gap.
    block_answered: BTreeMap<ValidatorIndex, TimestampMs>,
    /// When each peer was last sent the last decision (reset by `finalize`): at most one per
    /// peer per `block_answer_gap`.
    decision_sent: BTreeMap<ValidatorIndex, TimestampMs>,
    /// Validators with a proposal or a vote counted at `height`: they finalized `height - 1`
    /// (reset by `enter_height`).
    moved_on: BTreeSet<ValidatorIndex>,

    out: Vec<Output>,
}

impl Node {
    /// A node at height 1 of a fresh chain.
    pub fn new(genesis: &Genesis, key: Keypair, config: NodeConfig) -> Result<Node, NodeError> {
        let set = genesis.validate()?;
        let me = set.index_of(&key.public_key());
        let height = Height(1);
        Ok(Node {
            chain_id: genesis.chain_id.clone(),
            params: genesis.params.clone(),
            votes: VoteKeeper::new(height, &set),
            set,
            key,
            me,
            now: TimestampMs(0),
            started: false,
            height,
            parent_hash: genesis.hash(),
            parent_time: genesis.genesis_time_ms,
            last_decision: None,
            ledger: Ledger::from_genesis(genesis),
            mempool: Mempool::new(config.mempool_capacity),
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
            signed: BTreeMap::new(),
            commit_quorums: BTreeSet::new(),
            prepare_timer_set: false,
            precommit_timer_set: false,
            valid_updated: false,
            next_height: BTreeMap::new(),
            claims: BTreeMap::new(),
            proven: Height(0),
            sync_ask: None,
            sync_failures: BTreeMap::new(),
            sync_cursor: 0,
            sync_budget: BTreeMap::new(),
            polka_checked: BTreeSet::new(),
            echoed: BTreeMap::new(),
            persisted_blocks: BTreeSet::new(),
            sign_floor: None,
            needs_watch: false,
            watch_until: None,
            double_sign_check_ms: config.double_sign_check_ms,
            key_elsewhere: false,
            guard: None,
            lost_records: false,
            block_fetch: None,
            block_answered: BTreeMap::new(),
            decision_sent: BTreeMap::new(),
            moved_on: BTreeSet::new(),
            out: Vec::new(),
        })
    }

    /// A node rebuilt after a crash from its last finalized block, the ledger after it, and its
    /// persisted records. It re-sends what it signed in the current height and never signs a
    /// different message for a slot it already signed.
    pub fn restore(
        genesis: &Genesis,
        key: Keypair,
        config: NodeConfig,
        restore: Restore,
    ) -> Result<Node, NodeError> {
        let mut node = Node::new(genesis, key, config)?;
        if let Some(last) = restore.last {
            if last.block.header.chain_id != node.chain_id {
                return Err(NodeError::WrongChain {
                    expected: node.chain_id.clone(),
                    got: last.block.header.chain_id.clone(),
                });
            }
            let ledger = restore
                .ledger
                .unwrap_or_else(|| Ledger::from_genesis(genesis));
            if ledger.state_root() != last.block.header.state_root {
                return Err(NodeError::LedgerMismatch {
                    ledger: ledger.state_root(),
                    block: last.block.header.state_root,
                });
            }
            node.ledger = ledger;
            node.height = last.block.height().next();
            node.parent_hash = last.block.hash();
            node.parent_time = last.block.header.timestamp;
            node.votes = VoteKeeper::new(node.height, &node.set);
            node.last_decision = Some(last);
        }
        // Records lost: a guard beyond every record (or no guard at all) means this node may
        // have signed things it no longer remembers.
        let last_record = restore.records.iter().filter_map(|r| r.sign_point()).max();
        let guard_point = restore.guard.map(|g| g.last);
        let lost = restore.guard.is_none() || guard_point > last_record;
        node.needs_watch = node.double_sign_check_ms > 0 && lost;
        node.sign_floor = guard_point;
        for record in restore.records {
            if record.height() != node.height {
                continue;
            }
            match record {
                PersistRecord::Signed { msg, .. } => node.restore_signed(msg),
                PersistRecord::Locked {
                    round,
                    block,
                    polka,
                    ..
                } => {
                    if node.locked.is_none_or(|(r, _)| round > r) && node.body_matches(&block) {
                        let hash = block.hash();
                        node.locked = Some((round, hash));
                        node.valid = Some((round, hash));
                        node.blocks.insert(hash, block);
                        node.restored_polka = Some(polka);
                    }
                }
                PersistRecord::Prepared { block, .. } => {
                    if node.body_matches(&block) {
                        let hash = block.hash();
                        node.blocks.entry(hash).or_insert(block);
                        node.persisted_blocks.insert(hash);
                    }
                }
            }
        }
        node.guard = restore.guard;
        node.lost_records = lost;
        node.apply_guard();
        node.out.clear();
        Ok(node)
    }

    /// At the guard's height, the guard says what records may have been lost. Its lock stands
    /// (L22/L28 need its round and block hash, not the block) unless the records hold a newer
    /// one: also when the records look whole, for they may be those of a later life that
    /// restarted without the earlier one's (swarm seed 77: wiped, caught up, crashed again).
    /// And when records were lost, its votes up to the guard's round are gone and cannot be
    /// signed again, while peers may be waiting for them: it starts in the round after the
    /// guard's, where its votes pull the others along when they need its stake (L55), and
    /// `Timer::RoundEnd` moves them when they do not.
    fn apply_guard(&mut self) {
        let Some(guard) = self.guard else {
            return;
        };
        if guard.last.height < self.height {
            self.guard = None;
            return;
        }
        if let Some(lock) = guard.lock
            && lock.height == self.height
            && self.locked.is_none_or(|(r, _)| lock.round > r)
        {
            self.locked = Some((lock.round, lock.block));
            self.valid = None;
            self.restored_polka = None;
        }
        // The guard's lock is the precommit this node signed for the lock's block in the lock's
        // round (`SignGuard::after`), so signing it again gives the very same bytes (Ed25519
        // signing is deterministic), not a second vote. Resent, it tells the others this node
        // is locked there, and they answer with the prepares of that polka they hold
        // (`echo_polka`). Where every quorum needs this node's stake, the polka it locked on
        // included its own prepare too, which it signs again for the same reason: without it
        // nobody could prove that polka again, and its lock would hold every later quorum off
        // (swarm seed 3834).
        if let (Some(lock), Some(me)) = (guard.lock, self.me)
            && lock.height == self.height
            && self.locked == Some((lock.round, lock.block))
        {
            let others = self.set.total_stake().0 - self.set.stake_of(me).0;
            let needed = !self.set.is_quorum(crate::types::Stake(others));
            for (kind, step) in [
                (VoteKind::Prepare, SignStep::Prepare),
                (VoteKind::Precommit, SignStep::Precommit),
            ] {
                if (kind == VoteKind::Precommit || needed)
                    && !self.signed.contains_key(&(lock.round, step))
                {
                    let round = self.round;
                    let vote = Vote::sign(
                        &self.key,
                        &self.chain_id,
                        self.height,
                        lock.round,
                        kind,
                        Some(lock.block),
                        me,
                    );
                    self.restore_signed(Message::Vote(vote));
                    self.round = round;
                }
            }
        }
        if self.lost_records && guard.last.height == self.height && self.round <= guard.last.round {
            self.round = guard.last.round.next();
        }
    }

    fn restore_signed(&mut self, msg: Message) {
        let Some(slot) = slot_of(&msg) else { return };
        self.round = self.round.max(slot.0);
        match &msg {
            Message::Proposal(p) => {
                let hash = p.block.hash();
                if !self.body_matches(&p.block) {
                    return; // not what this node signed: its record is damaged
                }
                // Our own re-proposal: its polka lets us prepare it again (L28), even when a
                // voter of that polka is down now (issue 12, defect 2).
                if let (Some(vr), Some(polka)) = (p.valid_round, &p.polka)
                    && polka.round == vr
                    && polka
                        .verify_prepares(&self.set, &self.chain_id, self.height, &hash)
                        .is_ok()
                {
                    self.polka_proven.insert(p.round);
                }
                self.blocks.insert(hash, p.block.clone());
                self.persisted_blocks.insert(hash);
                self.proposals.insert(p.round, (hash, p.clone()));
            }
            Message::Vote(v) => {
                // Our own vote; the keeper accepts it as any other.
                let _ = self.votes.add(v.clone(), v.round);
                self.note_commit_quorum(v);
            }
            _ => {}
        }
        self.signed.insert(slot, msg);
    }

    // ----- accessors -------------------------------------------------------------------------

    /// The height being decided: the last finalized one plus one.
    pub fn height(&self) -> Height {
        self.height
    }
    /// The current round of `height`.
    pub fn round(&self) -> Round {
        self.round
    }
    /// The current step of the round.
    pub fn step(&self) -> Step {
        self.step
    }
    /// This node's index in the validator set; `None` when its key is not a validator's (it
    /// then follows the chain and signs nothing).
    pub fn me(&self) -> Option<ValidatorIndex> {
        self.me
    }
    /// The chain id of the genesis: what every signature checked with `SignatureChecked` must
    /// be verified against.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    /// The validator set of the genesis (it never changes): what every signature checked with
    /// `SignatureChecked` must be verified against.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }
    /// The consensus parameters of the genesis.
    pub fn params(&self) -> &ConsensusParams {
        &self.params
    }
    /// The ledger after the last finalized block.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    /// The pending transfers.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }
    /// The last finalized block with the longest certificate this node holds for it; `None`
    /// before block 1.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last_decision.as_ref()
    }
    /// `(lockedRound, id(lockedValue))` at the current height (L38-L39); `None` is
    /// `lockedRound = −1`.
    pub fn locked(&self) -> Option<(Round, Hash)> {
        self.locked
    }
    /// Whether this very vote (signature included) is counted already: a resend, which the node
    /// takes without checking its signature again, so a driver need not check it either.
    pub fn holds_vote(&self, vote: &Vote) -> bool {
        self.votes.contains(vote)
    }
    /// Distinct blocks known at the current height and not finalized: proposed in some round,
    /// carried by a decision still waiting to be checked, or restored with a lock. 0 between
    /// finalizing a height and the first proposal of the next.
    pub fn pending_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// How much this node holds, in items, for the bounded-memory checks of tests and fuzzers.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            blocks: self.blocks.len() + self.checked.len(),
            proposals: self.proposals.len(),
            vote_slots: self.votes.memory_votes(),
            next_height_messages: self.next_height.len(),
            pending_txs: self.mempool.len(),
        }
    }

    // ----- the one entry point ---------------------------------------------------------------

    /// Handles one input at time `now` and returns what to do, in order.
    pub fn handle(&mut self, now: TimestampMs, input: Input) -> Vec<Output> {
        // A clock that steps back is held still: the core's time never decreases.
        self.now = self.now.max(now);
        match input {
            Input::Start => self.on_start(),
            Input::Message { from, msg } => self.on_message(from, msg, false),
            Input::SignatureChecked { from, msg } => self.on_message(from, msg, true),
            Input::Timeout(timer) => self.on_timeout(timer),
            Input::PeerConnected(peer) => self.on_peer_connected(peer),
            Input::SubmitTx(tx) => self.on_submit_tx(tx, false),
            Input::SubmitVerifiedTx(tx) => self.on_submit_tx(tx, true),
        }
        self.check_rules();
        self.follow_polkas();
        std::mem::take(&mut self.out)
    }

    fn on_start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        if self.needs_watch {
            self.watch_until = Some(self.now.saturating_add_ms(self.double_sign_check_ms));
        }
        // A restarted node first repeats what it signed, so peers see it again.
        for msg in self.worth_resending() {
            self.out.push(Output::Broadcast(msg));
        }
        self.schedule(
            Timer::Resend {
                height: self.height,
            },
            self.params.resend_interval_ms,
        );
        self.start_round(self.round, None);
    }

    fn on_message(&mut self, from: ValidatorIndex, msg: Message, verified: bool) {
        match msg {
            Message::Proposal(p) => self.on_proposal(from, p, verified),
            Message::Vote(v) => self.on_vote(from, v, verified),
            Message::Decision(d) => self.on_decision(from, d),
            Message::SyncRequest {
                from: start,
                max_blocks,
            } => self.on_sync_request(from, start, max_blocks),
            Message::SyncResponse { blocks } => self.on_sync_response(from, blocks),
            Message::BlockRequest { height, hash } => self.on_block_request(from, height, hash),
            Message::BlockResponse { block } => self.on_block_response(block),
            Message::Transaction(tx) => {
                if let Err(e) = self.admit(tx, verified) {
                    self.reject("transaction", e.reason());
                }
            }
        }
    }

    fn admit(&mut self, tx: SignedTransfer, verified: bool) -> Result<Hash, TxError> {
        if verified {
            self.mempool.insert_verified(tx, &self.ledger)
        } else {
            self.mempool.insert(&self.chain_id, tx, &self.ledger)
        }
    }

    fn on_submit_tx(&mut self, tx: SignedTransfer, verified: bool) {
        let hash = tx.hash();
        match self.admit(tx.clone(), verified) {
            Ok(hash) => {
                self.out.push(Output::TxAccepted { hash });
                self.out.push(Output::Broadcast(Message::Transaction(tx)));
            }
            Err(error) => self.out.push(Output::TxRejected { hash, error }),
        }
    }

    fn on_peer_connected(&mut self, peer: ValidatorIndex) {
        if let Some(d) = &self.last_decision {
            self.out.push(Output::Send {
                to: peer,
                msg: Message::Decision(d.clone()),
            });
        }
        for msg in self.worth_resending() {
            self.out.push(Output::Send { to: peer, msg });
        }
    }

    /// What of this node's own signed messages can still matter (issue 12, defect 9): those of
    /// the current round, and the prepare and precommit of the round it is locked in (its share
    /// of a polka and of a commit quorum that may still complete). Proposals of earlier rounds
    /// (whole blocks) are not repeated: a re-proposal carries its block again, and a node that
    /// misses a polka'd block fetches it (`BlockRequest`).
    fn worth_resending(&self) -> Vec<Message> {
        let lock_round = self.locked.map(|(r, _)| r);
        self.signed
            .iter()
            .filter(|((round, step), _)| {
                *round == self.round || (Some(*round) == lock_round && *step != SignStep::Proposal)
            })
            .map(|(_, msg)| msg.clone())
            .collect()
    }

    // ----- proposals and votes ---------------------------------------------------------------

    fn on_proposal(&mut self, from: ValidatorIndex, p: Proposal, verified: bool) {
        if p.height != self.height {
            return self.on_other_height(from, Message::Proposal(p), verified);
        }
        if p.round > Round(self.round.0.saturating_add(PROPOSAL_ROUNDS_AHEAD)) {
            return self.reject("proposal", "round_too_far");
        }
        if p.proposer != self.set.proposer(p.height, p.round) {
            return self.reject("proposal", "wrong_proposer");
        }
        if p.block.header.height != p.height || p.valid_round.is_some_and(|vr| vr >= p.round) {
            return self.reject("proposal", "malformed");
        }
        let hash = p.block.hash();
        if let Some((known, first)) = self.proposals.get(&p.round) {
            if *known == hash && first.valid_round == p.valid_round {
                // A re-send, or a copy forwarded by someone else. The polka travels outside the
                // proposer's signature: a copy stripped of it (or with a bad one) may have come
                // first, so a later copy's polka still counts (issue 12, defect 7). One check
                // per sender and round bounds the work a flood of copies can cause.
                if p.valid_round.is_some()
                    && p.polka.is_some()
                    && !self.polka_proven.contains(&p.round)
                    && self.polka_checked.insert((p.round, from))
                {
                    self.check_carried_polka(&p, hash);
                }
                return;
            }
            // Reported once per round: a Byzantine proposer cannot turn this into an output flood.
            if !self.double_proposals.contains(&p.round)
                && p.verify(&self.set, &self.chain_id).is_ok()
            {
                if Some(p.proposer) == self.me {
                    let point =
                        SignPoint::of(self.height, &Message::Proposal(p)).expect("proposal");
                    return self.foreign_signature(point);
                }
                self.double_proposals.insert(p.round);
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
            let point = SignPoint::of(self.height, &Message::Proposal(p)).expect("a proposal");
            return self.foreign_signature(point);
        }
        // The signature covers the header only: a copy with another body must not be stored
        // or judged under the real block's hash (issue 12, defect 1).
        if !self.body_matches(&p.block) {
            return self.reject("proposal", "body_mismatch");
        }
        self.moved_on.insert(p.proposer);
        self.out.push(Output::Event(Event::ProposalAccepted {
            height: p.height,
            round: p.round,
            proposer: p.proposer,
            block: hash,
        }));
        self.blocks.entry(hash).or_insert_with(|| p.block.clone());
        let round = p.round;
        self.proposals.insert(round, (hash, p.clone()));
        if p.valid_round.is_some() && p.polka.is_some() {
            self.polka_checked.insert((round, from));
            self.check_carried_polka(&p, hash);
        }
    }

    /// Checks the polka a re-proposal carries for its `valid_round`; a valid one lets L28 fire
    /// in the proposal's round, and is kept with the stored proposal.
    fn check_carried_polka(&mut self, p: &Proposal, hash: Hash) {
        let (Some(vr), Some(polka)) = (p.valid_round, &p.polka) else {
            return;
        };
        if self.has_polka_in_tally(vr, hash) {
            return; // L28 fires on the tally; nothing to check
        }
        if polka.round == vr
            && polka
                .verify_prepares(&self.set, &self.chain_id, self.height, &hash)
                .is_ok()
        {
            self.polka_proven.insert(p.round);
            if let Some((_, stored)) = self.proposals.get_mut(&p.round) {
                stored.polka = Some(polka.clone());
            }
        } else {
            self.reject("proposal", "bad_polka");
        }
    }

    /// Whether a block's body is the one its header commits to (and within the size bound): a
    /// block enters no store, cache or verdict keyed by its hash before this holds. The tx root
    /// covers every transfer with its signature, so the hash then fixes every byte of the block.
    fn body_matches(&self, block: &Block) -> bool {
        block.txs.len() <= self.params.max_block_txs as usize
            && block::tx_root(&block.txs) == block.header.tx_root
    }

    fn has_polka_in_tally(&self, round: Round, hash: Hash) -> bool {
        self.set
            .is_quorum(self.votes.stake_for(round, VoteKind::Prepare, Some(hash)))
    }

    /// The prepares of `round` for `hash` this node holds, as a polka to show its peers.
    fn polka(&self, round: Round, hash: Hash) -> Option<Certificate> {
        if self.has_polka_in_tally(round, hash) {
            return Some(Certificate::from_prepares(
                self.height,
                round,
                hash,
                self.votes.votes(round, VoteKind::Prepare),
            ));
        }
        self.restored_polka
            .as_ref()
            .filter(|c| c.round == round && c.block_hash == hash)
            .cloned()
    }

    fn on_vote(&mut self, from: ValidatorIndex, vote: Vote, verified: bool) {
        let kind = vote.kind.name();
        if vote.height != self.height {
            return self.on_other_height(from, Message::Vote(vote), verified);
        }
        // Cheap refusals before the signature check.
        if self.set.get(vote.validator).is_none() {
            return self.reject(kind, "unknown_validator");
        }
        if vote.round > Round(self.round.0.saturating_add(MAX_ROUNDS_AHEAD)) {
            return self.reject(kind, "round_too_far");
        }
        if self.votes.contains(&vote) {
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
            let point = SignPoint::of(self.height, &msg).expect("a vote");
            match self.signed.get(&(point.round, point.step)) {
                Some(own) if *own == msg => {}
                None if self.sign_floor.is_some_and(|floor| point <= floor) => {
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
    fn echo_polka(&mut self, vote: &Vote) {
        let Some(block) = vote.block else { return };
        if vote.kind != VoteKind::Precommit
            || vote.round >= self.round
            || Some(vote.validator) == self.me
        {
            return;
        }
        let key = (vote.validator, vote.round);
        let gap = self.params.resend_interval_ms.max(1);
        if self
            .echoed
            .get(&key)
            .is_some_and(|at| self.now.0 < at.0.saturating_add(gap))
        {
            return;
        }
        let prepares: Vec<Message> = self
            .votes
            .votes(vote.round, VoteKind::Prepare)
            .into_iter()
            .filter(|p| p.block == Some(block))
            .map(|p| Message::Vote(p.clone()))
            .collect();
        if prepares.is_empty() {
            return;
        }
        self.echoed.insert(key, self.now);
        for msg in prepares {
            self.out.push(Output::Send {
                to: vote.validator,
                msg,
            });
        }
    }

    /// A vote of this node's key, at or below its guard, of which it holds no record: signed by
    /// an earlier life whose records are lost (or by another instance, which the guard and the
    /// watch deal with; this vote is genuine either way). It is kept as this node's own: no
    /// other vote will be signed in its slot (none could be: it is below the guard), and it
    /// counts, as it does at every peer. An earlier life's prepare is how a polka it locked on
    /// is proven again (`echo_polka`).
    fn adopt_own_vote(&mut self, msg: Message) {
        let round = self.round;
        self.restore_signed(msg);
        self.round = round;
    }

    /// A valid signature of this node's key at `point` that this node has no record of making.
    /// Below the guard it may be this node's own from before a crash that lost its records; above
    /// it, it never was (the guard is durable before each signature leaves): another instance
    /// holds the key, or the guard itself was restored from a backup. Either way nothing at or
    /// below `point` is signed now; and once the start-up watch is over, a signature at this
    /// node's own height means another instance is live, and nothing is signed at all. One of a
    /// height it has not reached (a certificate met while catching up, a vote from ahead) only
    /// raises the guard: it is as likely this key's earlier life on another machine (a key moved
    /// without its guard file), and a live twin shows itself again once this node catches up.
    fn foreign_signature(&mut self, point: SignPoint) {
        if self.sign_floor.is_some_and(|floor| point <= floor) {
            return;
        }
        self.sign_floor = Some(point);
        self.out
            .push(Output::Event(Event::ForeignSignature { point }));
        if point.height == self.height && !self.watching() {
            self.key_elsewhere = true;
        }
    }

    fn watching(&self) -> bool {
        !self.started || self.watch_until.is_some_and(|until| self.now < until)
    }

    /// Whether this node may sign at `point`, which it has not signed before.
    fn may_sign(&self, point: SignPoint) -> Result<(), Withheld> {
        if self.key_elsewhere {
            Err(Withheld::KeyActiveElsewhere)
        } else if self.watching() {
            Err(Withheld::Watching)
        } else if self.sign_floor.is_some_and(|floor| point <= floor) {
            Err(Withheld::BelowGuard)
        } else {
            Ok(())
        }
    }

    /// Counts a vote whose signature is known good (or our own).
    fn count_vote(&mut self, vote: Vote) {
        let (round, kind, block, validator) = (vote.round, vote.kind, vote.block, vote.validator);
        match self.votes.add(vote.clone(), self.round) {
            Ok(AddOutcome::Counted) => {
                self.moved_on.insert(validator);
                self.out.push(Output::Event(Event::VoteCounted {
                    height: self.height,
                    round,
                    kind,
                    validator,
                    block,
                    weight: self.votes.stake_for(round, kind, block),
                    total: self.set.total_stake(),
                }));
                self.note_commit_quorum(&vote);
            }
            Ok(AddOutcome::Equivocation(evidence)) => {
                self.out
                    .push(Output::Evidence(Box::new(Misbehaviour::DoubleVote(
                        *evidence,
                    ))));
            }
            Ok(AddOutcome::Duplicate | AddOutcome::AlreadyReported) => {}
            Err(e) => self.reject(kind.name(), e.reason()),
        }
    }

    fn note_commit_quorum(&mut self, vote: &Vote) {
        if let (VoteKind::Precommit, Some(block)) = (vote.kind, vote.block)
            && self.set.is_quorum(self.votes.stake_for(
                vote.round,
                VoteKind::Precommit,
                Some(block),
            ))
        {
            self.commit_quorums.insert((vote.round, block));
        }
    }

    /// A proposal or vote for another height: stale, kept for the next height, or a sign that
    /// this node is behind.
    fn on_other_height(&mut self, from: ValidatorIndex, msg: Message, verified: bool) {
        let (height, signer) = match &msg {
            Message::Proposal(p) => (p.height, p.proposer),
            Message::Vote(v) => (v.height, v.validator),
            _ => return,
        };
        let Some(point) = SignPoint::of(height, &msg) else {
            return;
        };
        if height < self.height {
            // Its sender may still be deciding the height we decided last. (A late precommit
            // for the decided block is the common case of a peer about to decide too: left to
            // `Timer::Announce`.)
            if let Some(d) = &self.last_decision
                && d.block.height() == height
                && !matches!(&msg, Message::Vote(v)
                    if v.kind == VoteKind::Precommit && v.block == Some(d.certificate.block_hash))
            {
                self.send_decision(from);
            }
            if let Message::Vote(v) = msg {
                self.extend_certificate(v, verified);
            }
            return; // late: that height is final here
        }
        let signature_ok = verified
            || match &msg {
                Message::Proposal(p) => p.verify(&self.set, &self.chain_id).is_ok(),
                Message::Vote(v) => v.verify(&self.set, &self.chain_id).is_ok(),
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
        if height == self.height.next() && point.round.0 < NEXT_HEIGHT_ROUNDS {
            // The signature covers the header only: a copy with another body, kept here, would
            // take the real proposal's place and be refused once the node reaches `height`,
            // leaving it without a proposal for the round (a Byzantine forwarder's copy arrives
            // right after the real one). So the body is checked before it is kept.
            if let Message::Proposal(p) = &msg
                && !self.body_matches(&p.block)
            {
                return self.reject("proposal", "body_mismatch");
            }
            self.next_height
                .insert((signer, point.round, point.step as u8), msg);
        } else if height > self.height.next() {
            self.request_sync();
        }
    }

    /// A late precommit for the last finalized block joins its certificate.
    fn extend_certificate(&mut self, vote: Vote, verified: bool) {
        let Some(decision) = &mut self.last_decision else {
            return;
        };
        let cert = &mut decision.certificate;
        if vote.kind != VoteKind::Precommit
            || vote.height != cert.height
            || vote.round != cert.round
            || vote.block != Some(cert.block_hash)
        {
            return;
        }
        let Err(at) = cert
            .signatures
            .binary_search_by_key(&vote.validator, |s| s.validator)
        else {
            return; // already in
        };
        if !verified && vote.verify(&self.set, &self.chain_id).is_err() {
            return self.reject("precommit", "bad_signature");
        }
        cert.signatures.insert(
            at,
            block::CommitSignature {
                validator: vote.validator,
                signature: vote.signature,
            },
        );
        self.out.push(Output::CertificateExtended(cert.clone()));
    }

    // ----- decisions and catch-up ------------------------------------------------------------

    fn on_decision(&mut self, from: ValidatorIndex, d: Decision) {
        let height = d.block.height();
        if height < self.height {
            return;
        }
        // The certificate covers the header only (issue 12, defect 1).
        if !self.body_matches(&d.block) {
            return self.reject("decision", "body_mismatch");
        }
        let hash = d.block.hash();
        if d.certificate
            .verify(&self.set, &self.chain_id, height, &hash)
            .is_err()
        {
            return self.reject("decision", "bad_certificate");
        }
        self.check_own_signature_in(&d.certificate, height);
        if height > self.height {
            // A fact: `height` is final. Its sender holds it, and its signers finalized at least
            // the height before.
            self.proven = self.proven.max(height);
            self.note_claim(from, height);
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
        self.blocks.entry(hash).or_insert(d.block);
        if self.check(hash, true) {
            self.finalize(hash, d.certificate, false);
        }
    }

    /// A certified precommit of this node's key that it has no record of is a foreign signature.
    fn check_own_signature_in(&mut self, certificate: &Certificate, height: Height) {
        let Some(me) = self.me else { return };
        if !certificate.signatures.iter().any(|s| s.validator == me) {
            return;
        }
        let point = SignPoint {
            height,
            round: certificate.round,
            step: SignStep::Precommit,
        };
        let ours = height == self.height
            && matches!(self.signed.get(&(point.round, point.step)),
                Some(Message::Vote(v)) if v.block == Some(certificate.block_hash));
        if !ours {
            self.foreign_signature(point);
        }
    }

    fn on_sync_request(&mut self, from: ValidatorIndex, start: Height, max_blocks: u32) {
        if start.0 < 1 || start >= self.height || max_blocks == 0 || self.set.get(from).is_none() {
            return;
        }
        // A token bucket per peer (issue 12, defect 5): the runtime reads up to a message's worth
        // of blocks for each answer.
        let now = self.now;
        let (tokens, since) = self
            .sync_budget
            .get(&from)
            .copied()
            .unwrap_or((SYNC_ANSWER_BURST, now));
        let refilled = (now.0.saturating_sub(since.0) / SYNC_ANSWER_INTERVAL_MS)
            .saturating_add(tokens)
            .min(SYNC_ANSWER_BURST);
        let since = if refilled == SYNC_ANSWER_BURST {
            now
        } else {
            TimestampMs(since.0 + (refilled - tokens) * SYNC_ANSWER_INTERVAL_MS)
        };
        if refilled == 0 {
            self.sync_budget.insert(from, (0, since));
            return self.reject("sync_request", "rate_limited");
        }
        self.sync_budget.insert(from, (refilled - 1, since));
        self.out.push(Output::ServeSync {
            to: from,
            from: start,
            max_blocks: max_blocks.min(MAX_SYNC_BLOCKS),
        });
    }

    fn on_sync_response(&mut self, from: ValidatorIndex, blocks: Vec<Decision>) {
        let before = self.height;
        let asked = self.sync_ask.filter(|a| a.peer == from);
        if asked.is_some() {
            self.sync_ask = None;
        }
        for d in blocks.into_iter().take(MAX_SYNC_BLOCKS as usize) {
            if d.block.height() < self.height {
                continue;
            }
            if d.block.height() > self.height {
                break;
            }
            let at = self.height;
            self.on_decision(from, d);
            if self.height == at {
                break; // that block did not apply; the rest cannot either
            }
        }
        if asked.is_some() {
            // An answer that does not move this node on is no help.
            if self.height > before {
                self.sync_failures.remove(&from);
            } else {
                self.sync_failed(from);
            }
        }
        self.request_sync();
    }

    fn note_claim(&mut self, peer: ValidatorIndex, finalized: Height) {
        if Some(peer) == self.me || self.set.get(peer).is_none() {
            return;
        }
        let claim = self.claims.entry(peer).or_insert(Height(0));
        *claim = (*claim).max(finalized);
    }

    fn sync_failed(&mut self, peer: ValidatorIndex) {
        let failures = self.sync_failures.entry(peer).or_insert(0);
        *failures = failures.saturating_add(1);
    }

    /// Whether this node is behind by more than a claim: a certificate shows a height it lacks,
    /// or validators holding more than a third of the stake (at least one honest) claim to have
    /// finalized its height. One Byzantine validator's claim of a far height moves nothing.
    fn behind(&self) -> bool {
        self.proven >= self.height || self.credible_height() >= self.height
    }

    /// The highest height that validators holding more than a third of the stake claim to have
    /// finalized (at least one of them honest), or a certificate proves.
    fn credible_height(&self) -> Height {
        let mut claims: Vec<(Height, u64)> = self
            .claims
            .iter()
            .map(|(v, h)| (*h, self.set.stake_of(*v).0))
            .collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        let mut backing: u64 = 0;
        for (height, stake) in claims {
            backing = backing.saturating_add(stake);
            if self.set.is_more_than_third(crate::types::Stake(backing)) {
                return height.max(self.proven);
            }
        }
        self.proven
    }

    /// Asks a peer for the blocks this node misses, one request at a time (issue 12, defect 3).
    /// The target is a validator that claims to have this node's height, the one with the
    /// fewest unanswered or useless requests, in rotation from the last one asked: a peer that
    /// does not answer within `2 · resend_interval`, or answers without moving this node on,
    /// is passed over next time. Claims decide who may be asked, never whether to believe the
    /// answer: every block comes with a certificate that is checked.
    fn request_sync(&mut self) {
        if !self.behind() {
            self.sync_ask = None;
            return;
        }
        if let Some(ask) = self.sync_ask {
            let patience = 2 * self.params.resend_interval_ms.max(1);
            if self.now.0 < ask.at.0.saturating_add(patience) {
                return;
            }
            self.sync_ask = None;
            self.sync_failed(ask.peer);
        }
        let n = (self.set.len() as u16).max(1);
        let cursor = self.sync_cursor % n;
        let credible = self.credible_height();
        // Fewest failures first; then a claim no higher than what others back (a lone far
        // claim is the mark of a liar); then in rotation.
        let Some(peer) = self
            .claims
            .iter()
            .filter(|(_, h)| **h >= self.height)
            .min_by_key(|(v, h)| {
                let failures = self.sync_failures.get(v).copied().unwrap_or(0);
                (failures, **h > credible, (v.0 + n - cursor) % n)
            })
            .map(|(v, _)| *v)
        else {
            return;
        };
        self.sync_cursor = (peer.0 + 1) % n.max(1);
        self.sync_ask = Some(SyncAsk { peer, at: self.now });
        self.out.push(Output::Send {
            to: peer,
            msg: Message::SyncRequest {
                from: self.height,
                max_blocks: MAX_SYNC_BLOCKS,
            },
        });
        self.out.push(Output::Event(Event::SyncRequested {
            peer,
            from: self.height,
        }));
    }

    // ----- blocks a quorum voted for ---------------------------------------------------------
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
    fn follow_polkas(&mut self) {
        if !self.started || self.step == Step::NewHeight {
            return;
        }
        let mut missing = None;
        let floor = self.valid.map(|(vr, _)| vr);
        for round in self.votes.rounds().into_iter().rev() {
            if round > self.round {
                continue; // the node gets there by L55 and L36 proper
            }
            if floor.is_some_and(|vr| round <= vr) {
                break;
            }
            let Some(hash) = self.polka_value(round) else {
                continue;
            };
            if !self.blocks.contains_key(&hash) {
                // Of the current round the proposal may still be on its way (votes are small and
                // often overtake it): the fetch waits until the node has left that round.
                if round < self.round {
                    missing.get_or_insert((round, hash));
                }
                continue;
            }
            // A quorum prepared it, so as for a certified block this node's clock gets no veto
            // (and the verdict is kept: this runs after every input).
            if self.check(hash, true) {
                self.valid = Some((round, hash));
                break;
            }
        }
        if let Some((round, hash)) = missing {
            self.fetch_block(round, hash);
        }
    }

    /// The value holding a prepare quorum in `round`, if any (at most one: stake counts once).
    fn polka_value(&self, round: Round) -> Option<Hash> {
        self.votes
            .tally(round, VoteKind::Prepare)
            .find(|(value, stake)| value.is_some() && self.set.is_quorum(*stake))
            .and_then(|(value, _)| value)
    }

    /// Asks a validator that prepared `hash` in `round` for that block, unless a request for it
    /// is younger than `resend_interval`; each retry asks the next such validator.
    fn fetch_block(&mut self, round: Round, hash: Hash) {
        let patience = self.params.resend_interval_ms.max(1);
        let attempts = match self.block_fetch {
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
            .votes
            .votes(round, VoteKind::Prepare)
            .into_iter()
            .filter(|v| v.block == Some(hash) && Some(v.validator) != self.me)
            .map(|v| v.validator)
            .collect();
        let Some(&peer) = voters.get(attempts as usize % voters.len().max(1)) else {
            return; // only this node voted for it: then it holds the block
        };
        self.block_fetch = Some(BlockFetch {
            hash,
            asked_at: self.now,
            attempts,
        });
        self.out.push(Output::Send {
            to: peer,
            msg: Message::BlockRequest {
                height: self.height,
                hash,
            },
        });
        self.out.push(Output::Event(Event::BlockRequested {
            peer,
            height: self.height,
            block: hash,
        }));
    }

    /// At least this long between two blocks sent to one peer: half the requester's patience,
    /// so that an honest retry (one per `resend_interval`) is never refused for coming early.
    fn block_answer_gap(&self) -> u64 {
        (self.params.resend_interval_ms / 2).max(1)
    }

    /// Whether `peer` was sent something of `sent` less than `block_answer_gap` ago.
    fn answered_within_gap(
        &self,
        sent: &BTreeMap<ValidatorIndex, TimestampMs>,
        peer: ValidatorIndex,
    ) -> bool {
        let gap = self.block_answer_gap();
        sent.get(&peer)
            .is_some_and(|at| self.now.0 < at.0.saturating_add(gap))
    }

    fn on_block_request(&mut self, from: ValidatorIndex, height: Height, hash: Hash) {
        if height != self.height || Some(from) == self.me || self.set.get(from).is_none() {
            return;
        }
        let Some(block) = self.blocks.get(&hash) else {
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
    fn send_decision(&mut self, peer: ValidatorIndex) {
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

    fn on_block_response(&mut self, block: Block) {
        let Some(fetch) = self.block_fetch else {
            return self.reject("block_response", "not_asked");
        };
        if block.header.height != self.height || block.hash() != fetch.hash {
            return self.reject("block_response", "not_asked");
        }
        if !self.body_matches(&block) {
            return self.reject("block_response", "body_mismatch");
        }
        self.block_fetch = None;
        self.blocks.entry(fetch.hash).or_insert(block);
    }

    // ----- timers ----------------------------------------------------------------------------

    fn on_timeout(&mut self, timer: Timer) {
        match timer {
            // L57-L60: OnTimeoutPropose(h, r): prepare nil.
            Timer::Propose { height, round }
                if height == self.height && round == self.round && self.step == Step::Propose =>
            {
                self.vote(VoteKind::Prepare, None);
                self.step = Step::Prepare;
            }
            // L61-L64: OnTimeoutPrevote(h, r): precommit nil.
            Timer::Prepare { height, round }
                if height == self.height && round == self.round && self.step == Step::Prepare =>
            {
                self.vote(VoteKind::Precommit, None);
                self.step = Step::Precommit;
            }
            // L65-L67: OnTimeoutPrecommit(h, r): StartRound(r + 1).
            Timer::Precommit { height, round }
                if height == self.height && round == self.round && self.step != Step::NewHeight =>
            {
                self.start_round(round.next(), Some(RoundChange::Timeout));
            }
            // A round that outlived twice its three timeouts ends (see `start_round`), in a round
            // ahead where a group of validators was seen (`round_end_target`): nodes that each
            // hold under a third of the stake cannot pull one another along (L55), and each
            // moving on by its own clock alone kept them a round apart (swarm seed 2768). At most
            // `ROUND_END_CATCH_UP` rounds further: one Byzantine vote far ahead (the keeper takes
            // them up to `MAX_ROUNDS_AHEAD`) would otherwise inflate every timeout after a stall.
            Timer::RoundEnd { height, round }
                if height == self.height && round == self.round && self.step != Step::NewHeight =>
            {
                let cap = Round(round.0.saturating_add(ROUND_END_CATCH_UP));
                self.start_round(
                    self.round_end_target(round, cap),
                    Some(RoundChange::Timeout),
                );
            }
            Timer::NextHeight { height }
                if height == self.height && self.step == Step::NewHeight =>
            {
                // Round 0, or the round after a lost-records guard's (`apply_guard`).
                self.start_round(self.round, None);
            }
            // Still at the next height: whoever has not shown it finalized `height` gets it.
            Timer::Announce { height } if height.next() == self.height => {
                let peers: Vec<ValidatorIndex> = self.set.iter().map(|(i, _)| i).collect();
                for peer in peers {
                    if !self.moved_on.contains(&peer) {
                        self.send_decision(peer);
                    }
                }
            }
            Timer::Resend { height } => {
                if height == self.height && self.step != Step::NewHeight {
                    for msg in self.worth_resending() {
                        self.out.push(Output::Broadcast(msg));
                    }
                }
                self.request_sync();
                self.schedule(
                    Timer::Resend {
                        height: self.height,
                    },
                    self.params.resend_interval_ms.max(1),
                );
            }
            _ => {} // stale: the node has moved on
        }
    }

    fn schedule(&mut self, timer: Timer, after_ms: u64) {
        self.out.push(Output::Schedule { timer, after_ms });
    }

    // ----- the rules -------------------------------------------------------------------------

    /// Evaluates the `upon` rules until none fires.
    fn check_rules(&mut self) {
        loop {
            let before = (self.height, self.round, self.step);
            if self.try_decide() {
                continue;
            }
            if !self.started || self.step == Step::NewHeight {
                return;
            }
            if self.try_round_skip() {
                debug_assert!((self.height, self.round) > (before.0, before.1));
                continue;
            }
            let fired = match self.step {
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
                    (self.height, self.round, self.step) > before,
                    "rules must make progress"
                );
                continue;
            }
            self.try_step_timer(VoteKind::Precommit);
            return;
        }
    }

    /// L49-L54: a proposal with a precommit quorum for it, in any round: decide.
    fn try_decide(&mut self) -> bool {
        let quorums: Vec<(Round, Hash)> = self.commit_quorums.iter().copied().collect();
        for (round, hash) in quorums {
            if !self.blocks.contains_key(&hash) {
                continue; // wait for the block (a proposal, or a peer's Decision)
            }
            if !self.check(hash, true) {
                self.commit_quorums.remove(&(round, hash));
                self.reject("decision", "certified_block_invalid");
                continue;
            }
            let precommits = self.votes.votes(round, VoteKind::Precommit);
            let certificate = Certificate::from_precommits(self.height, round, hash, precommits);
            self.out.push(Output::Event(Event::PrecommitQuorum {
                height: self.height,
                round,
                block: Some(hash),
            }));
            self.finalize(hash, certificate, true);
            return true;
        }
        false
    }

    /// L55-L56: more than a third of the stake in a higher round: go there.
    fn try_round_skip(&mut self) -> bool {
        let target = self
            .votes
            .rounds()
            .into_iter()
            .rev()
            .take_while(|r| *r > self.round)
            .find(|r| self.set.is_more_than_third(self.votes.stake_in_round(*r)));
        match target {
            Some(round) => {
                self.start_round(round, Some(RoundChange::Skip));
                true
            }
            None => false,
        }
    }

    /// L22-L27 (fresh proposal) and L28-L33 (re-proposal with a prepare quorum from `vr`).
    fn try_prepare(&mut self) -> bool {
        let Some((hash, proposal)) = self.proposals.get(&self.round) else {
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
            None => self.locked.is_none_or(|(_, locked)| locked == hash) && self.check(hash, false),
            // L28: 2f+1 PREVOTE(h, vr, id(v)) ∧ valid(v) ∧ (lockedRound ≤ vr ∨ lockedValue = v)
            // (the prepares counted here, or the polka the proposal carried)
            Some(vr) => {
                if !self.polka_proven.contains(&self.round) && !self.has_polka_in_tally(vr, hash) {
                    return false; // wait for the prepares of round vr, or the timeout
                }
                self.locked
                    .is_none_or(|(lr, locked)| lr <= vr || locked == hash)
                    && self.check(hash, false)
            }
        };
        self.vote(VoteKind::Prepare, acceptable.then_some(hash));
        self.step = Step::Prepare;
        true
    }

    /// L34-L35 (prepares) and L47-L48 (precommits): 2f+1 votes of `kind` in this round, whatever
    /// their values, for the first time: start that step's timeout.
    fn try_step_timer(&mut self, kind: VoteKind) {
        let (already, timeout) = match kind {
            VoteKind::Prepare => (&mut self.prepare_timer_set, self.params.prepare_timeout),
            VoteKind::Precommit => (&mut self.precommit_timer_set, self.params.precommit_timeout),
        };
        if *already || !self.set.is_quorum(self.votes.stake_any(self.round, kind)) {
            return;
        }
        *already = true;
        let (height, round) = (self.height, self.round);
        let timer = match kind {
            VoteKind::Prepare => Timer::Prepare { height, round },
            VoteKind::Precommit => Timer::Precommit { height, round },
        };
        self.schedule(timer, timeout.at(round));
    }

    /// L36-L43 with step = prepare (lock and precommit the value), and L44-L46 (precommit nil).
    fn try_precommit(&mut self) -> bool {
        let round = self.round;
        if let Some(&(hash, _)) = self.proposals.get(&round)
            && self
                .set
                .is_quorum(self.votes.stake_for(round, VoteKind::Prepare, Some(hash)))
            && self.check(hash, false)
        {
            self.out.push(Output::Event(Event::PrepareQuorum {
                height: self.height,
                round,
                block: Some(hash),
            }));
            self.locked = Some((round, hash));
            self.valid = Some((round, hash));
            self.valid_updated = true;
            if self.me.is_some() {
                let block = self.blocks[&hash].clone();
                let polka = Certificate::from_prepares(
                    self.height,
                    round,
                    hash,
                    self.votes.votes(round, VoteKind::Prepare),
                );
                self.out.push(Output::Persist(PersistRecord::Locked {
                    height: self.height,
                    round,
                    block,
                    polka,
                }));
            }
            self.vote(VoteKind::Precommit, Some(hash));
            self.step = Step::Precommit;
            return true;
        }
        if self
            .set
            .is_quorum(self.votes.stake_for(round, VoteKind::Prepare, None))
        {
            self.out.push(Output::Event(Event::PrepareQuorum {
                height: self.height,
                round,
                block: None,
            }));
            self.vote(VoteKind::Precommit, None);
            self.step = Step::Precommit;
            return true;
        }
        false
    }

    /// L36-L43 with step = precommit: only `validValue`/`validRound` are updated.
    fn try_update_valid(&mut self) {
        if self.valid_updated {
            return;
        }
        let round = self.round;
        if let Some(&(hash, _)) = self.proposals.get(&round)
            && self
                .set
                .is_quorum(self.votes.stake_for(round, VoteKind::Prepare, Some(hash)))
            && self.check(hash, false)
        {
            self.valid = Some((round, hash));
            self.valid_updated = true;
        }
    }

    // ----- actions ---------------------------------------------------------------------------

    /// L11-L21: StartRound(round).
    fn start_round(&mut self, round: Round, reason: Option<RoundChange>) {
        self.round = round;
        self.step = Step::Propose;
        self.prepare_timer_set = false;
        self.precommit_timer_set = false;
        self.valid_updated = false;
        if let Some(reason) = reason {
            self.out.push(Output::Event(Event::RoundChanged {
                height: self.height,
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
        let round_end = self
            .params
            .propose_timeout
            .at(round)
            .saturating_add(self.params.prepare_timeout.at(round))
            .saturating_add(self.params.precommit_timeout.at(round))
            .saturating_mul(2);
        self.schedule(
            Timer::RoundEnd {
                height: self.height,
                round,
            },
            round_end,
        );
        // The proposer sets the timeout too: when it proposes, it prepares at once and the timer
        // finds it past the step; when it cannot (the guard withholds its signature, no block
        // applies), the timeout still ends its round (L57).
        let after = self.params.propose_timeout.at(round);
        self.schedule(
            Timer::Propose {
                height: self.height,
                round,
            },
            after,
        );
        let proposer = self.set.proposer(self.height, round);
        if Some(proposer) == self.me {
            self.propose(proposer);
        }
    }

    /// L14-L19: propose `validValue` if there is one, else a new block.
    fn propose(&mut self, me: ValidatorIndex) {
        let round = self.round;
        if let Some(signed) = self.signed.get(&(round, SignStep::Proposal)) {
            // Signed before a crash: repeat it, never sign another.
            self.out.push(Output::Broadcast(signed.clone()));
            return;
        }
        let point = SignPoint {
            height: self.height,
            round,
            step: SignStep::Proposal,
        };
        if let Err(reason) = self.may_sign(point) {
            return self.withhold(point, reason);
        }
        let (hash, valid_round) = match (self.valid, self.locked) {
            (Some((vr, hash)), _) if vr < round && self.blocks.contains_key(&hash) => {
                (hash, Some(vr))
            }
            // Locked on its own block but without the polka to show (its records were lost; the
            // guard kept the lock): it proposes that block again as a fresh one. Proposing any
            // valid block is safe; this one is the only one its own lock lets it prepare (L22),
            // and every node locked on it prepares it too, where a new block would be refused by
            // all of them for as long as the polka cannot be proven again (swarm seed 8499).
            (None, Some((_, hash)))
                if self
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
        let block = self.blocks[&hash].clone();
        let txs = block.txs.len();
        let mut proposal = Proposal::sign(&self.key, &self.chain_id, round, valid_round, block, me);
        if let Some(polka) = valid_round.and_then(|vr| self.polka(vr, hash)) {
            proposal = proposal.with_polka(polka);
            // Our own polka (from our tally or our lock record) justifies preparing our own
            // re-proposal (L28), even when one of its voters is down now (issue 12, defect 2).
            self.polka_proven.insert(round);
        }
        self.out.push(Output::Event(Event::Proposing {
            height: self.height,
            round,
            block: hash,
            txs,
            reproposal: valid_round.is_some(),
        }));
        self.sign_and_send(Message::Proposal(proposal.clone()));
        self.proposals.insert(round, (hash, proposal));
    }

    /// A new block of pending transfers on top of the parent; checked by construction. `None`
    /// only when not even an empty block applies (a balance at the edge of 64 bits): the node
    /// then does not propose, and the round times out to another proposer.
    fn build_block(&mut self, me: ValidatorIndex) -> Option<Hash> {
        let timestamp = self
            .now
            .max(TimestampMs(self.parent_time.0.saturating_add(1)));
        let selected = self
            .mempool
            .select(&self.ledger, self.params.max_block_txs as usize);
        // `select` promises a clean apply; should an edge case break that, an empty block still
        // makes progress.
        let (txs, after, outcome) = [selected, Vec::new()].into_iter().find_map(|txs| {
            let mut after = self.ledger.clone();
            let outcome = after
                .apply_block_trusting(&self.chain_id, self.height, me, &self.set, &txs, |h, tx| {
                    self.mempool.holds(h, tx)
                })
                .ok()?;
            Some((txs, after, outcome))
        })?;
        let header = block::Header {
            chain_id: self.chain_id.clone(),
            height: self.height,
            parent_hash: self.parent_hash,
            timestamp,
            proposer: me,
            tx_root: block::tx_root(&txs),
            state_root: after.state_root(),
        };
        let block = Block { header, txs };
        let hash = block.hash();
        self.blocks.insert(hash, block);
        self.checked
            .insert(hash, Some(Box::new(Checked { after, outcome })));
        Some(hash)
    }

    /// Signs (or repeats) this node's vote of `kind` in the current round and counts it.
    fn vote(&mut self, kind: VoteKind, block: Option<Hash>) {
        let Some(me) = self.me else { return };
        let step = if kind == VoteKind::Prepare {
            SignStep::Prepare
        } else {
            SignStep::Precommit
        };
        let slot = (self.round, step);
        let vote = match self.signed.get(&slot) {
            // Signed before a crash: the same vote again, whatever the rules say now.
            Some(Message::Vote(v)) => {
                self.out.push(Output::Broadcast(Message::Vote(v.clone())));
                v.clone()
            }
            _ => {
                let point = SignPoint {
                    height: self.height,
                    round: self.round,
                    step,
                };
                if let Err(reason) = self.may_sign(point) {
                    return self.withhold(point, reason);
                }
                let v = Vote::sign(
                    &self.key,
                    &self.chain_id,
                    self.height,
                    self.round,
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

    /// The rules called for a signature at `point` and the double-sign guard refused it: the node
    /// goes on as a validator that stayed silent in that step.
    fn withhold(&mut self, point: SignPoint, reason: Withheld) {
        self.out
            .push(Output::Event(Event::SigningWithheld { point, reason }));
    }

    /// The durability rule: what this node signs is persisted before it is sent.
    fn sign_and_send(&mut self, msg: Message) {
        let slot = slot_of(&msg).expect("only proposals and votes are signed");
        debug_assert!(!self.signed.contains_key(&slot), "a slot is signed once");
        let point = SignPoint::of(self.height, &msg).expect("a signed message");
        debug_assert!(self.may_sign(point).is_ok(), "signing is gated by may_sign");
        // Points only grow: the guard a runtime keeps is the last one.
        self.sign_floor = Some(point);
        if let Message::Vote(Vote {
            kind: VoteKind::Prepare,
            block: Some(hash),
            ..
        }) = &msg
            && let Some(block) = self.blocks.get(hash)
            && self.persisted_blocks.insert(*hash)
        {
            self.out.push(Output::Persist(PersistRecord::Prepared {
                height: self.height,
                block: block.clone(),
            }));
        }
        if let Message::Proposal(p) = &msg {
            // Its own proposal's record holds the block.
            self.persisted_blocks.insert(p.block.hash());
        }
        self.out.push(Output::Persist(PersistRecord::Signed {
            height: self.height,
            msg: msg.clone(),
        }));
        self.out.push(Output::Broadcast(msg.clone()));
        self.signed.insert(slot, msg);
    }

    /// valid(v): checks the block once per height and remembers the verdict. A block with a
    /// timestamp too far ahead is not remembered as invalid: the clock may catch up.
    fn check(&mut self, hash: Hash, certified: bool) -> bool {
        if let Some(verdict) = self.checked.get(&hash) {
            return verdict.is_some();
        }
        let Some(block) = self.blocks.get(&hash) else {
            return false;
        };
        match self.check_block(block, certified) {
            Ok(checked) => {
                self.checked.insert(hash, Some(Box::new(checked)));
                true
            }
            Err(fault) => {
                if fault != BlockFault::TimestampInFuture {
                    self.checked.insert(hash, None);
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
        if h.height != self.height {
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
        let mut after = self.ledger.clone();
        // Transfers this node verified at admission (the exact bytes are in its mempool) are not
        // verified again; the rest are, as one batch. Same verdict either way (`Ledger::
        // apply_block_trusting`), so nodes whose mempools differ still agree on the block.
        let outcome = after
            .apply_block_trusting(
                &self.chain_id,
                self.height,
                h.proposer,
                &self.set,
                &block.txs,
                |hash, tx| self.mempool.holds(hash, tx),
            )
            .map_err(|_| BlockFault::BadTransaction)?;
        if after.state_root() != h.state_root {
            return Err(BlockFault::WrongStateRoot);
        }
        Ok(Checked { after, outcome })
    }

    /// Commits block `hash` with `certificate` and moves to the next height.
    fn finalize(&mut self, hash: Hash, certificate: Certificate, announce: bool) {
        let block = self
            .blocks
            .remove(&hash)
            .expect("finalize is called with a known block");
        let checked = self
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
        let Checked { after, outcome } = *checked;
        self.ledger = after;
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
        let height = self.height;
        self.enter_height(height.next());
        if announce {
            // Peers that sent us a decision have it; only a decision of our own is news. It goes
            // `ANNOUNCE_DELAY_MS` later to the peers not heard from at the next height by then
            // (`Timer::Announce`): most decide on their own, which at block time 0 they show
            // within a few milliseconds. Broadcast to all at once, decisions were three messages
            // out of ten there.
            self.schedule(Timer::Announce { height }, ANNOUNCE_DELAY_MS);
        }
    }

    fn enter_height(&mut self, height: Height) {
        self.height = height;
        self.round = Round::ZERO;
        self.step = Step::NewHeight;
        self.locked = None;
        self.valid = None;
        self.blocks.clear();
        self.checked.clear();
        self.proposals.clear();
        self.polka_proven.clear();
        self.polka_checked.clear();
        self.echoed.clear();
        self.persisted_blocks.clear();
        self.restored_polka = None;
        self.double_proposals.clear();
        self.votes = VoteKeeper::new(height, &self.set);
        self.moved_on.clear();
        self.signed.clear();
        self.commit_quorums.clear();
        self.prepare_timer_set = false;
        self.precommit_timer_set = false;
        self.valid_updated = false;
        self.block_fetch = None;
        self.apply_guard();
        if self.started {
            // Even with block time 0 the next round starts from a timer, not inline: a validator
            // holding a quorum alone would otherwise finalize height after height inside one
            // `handle` call and never return.
            self.schedule(Timer::NextHeight { height }, self.params.block_time_ms);
        }
        let buffered = std::mem::take(&mut self.next_height);
        for ((signer, _, _), msg) in buffered {
            // Verified on arrival; the proposer is checked now that the parent is known. Replayed
            // as from its signer, whose budgets and checks it counts against (not validator 0's).
            self.on_message(signer, msg, true);
        }
    }

    /// Where a round that ended on `Timer::RoundEnd` goes: the highest round up to `cap` whose
    /// voters (those seen voting in it or in a later round up to `cap`) are more than one
    /// validator, else the next round. A laggard
    /// joins the round a group ahead of it is in (swarm seed 2768), but one validator's votes far
    /// ahead do not move anybody: a round pusher made every honest node jump three rounds at
    /// each end of round, which kept two honest groups one round apart for good (swarm seed
    /// 2160).
    fn round_end_target(&self, round: Round, cap: Round) -> Round {
        let mut voters: BTreeSet<ValidatorIndex> = BTreeSet::new();
        let rounds = self.votes.rounds();
        for r in rounds.iter().rev().filter(|r| **r > round && **r <= cap) {
            for kind in [VoteKind::Prepare, VoteKind::Precommit] {
                for v in self.votes.votes(*r, kind) {
                    voters.insert(v.validator);
                }
            }
            if voters.len() > 1 {
                return *r;
            }
        }
        round.next()
    }

    fn reject(&mut self, kind: &'static str, reason: &'static str) {
        self.out
            .push(Output::Event(Event::Rejected { kind, reason }));
    }
}
