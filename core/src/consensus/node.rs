//! The consensus state machine of one validator: Tendermint's Algorithm 1 (Buchman, Kwon,
//! Milosevic, 2018) under our names: *proposal*, *prepare* (prevote) and *precommit*.
//!
//! Every `upon` rule of the paper is one method below, labelled with the lines it implements. After
//! each input the rules are evaluated until none fires; each firing moves `(height, round, step)`
//! strictly forward, so the evaluation ends. Deviations from the paper, and why:
//! - a `NewHeight` step: after finalizing, round 0 of the next height starts `block_time` later
//!   (docs/design.md §2.1); only the decision rule (L49) runs while waiting;
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
//!
//! The node's state is split by what owns it, one child module each:
//!
//! | module | owns |
//! |---|---|
//! | `node` (this file) | the chain so far, the mempool, the entry point `Node::handle` and its dispatch |
//! | `height` | `HeightState`, everything of the height being decided, replaced whole by the next |
//! | `rules` | the `upon` rules of Algorithm 1, its timeouts and its actions (L11-L67) |
//! | `incoming` | proposals, votes and decisions as they arrive, before the rules see them |
//! | `blocks` | candidate blocks: checking them (`valid(v)`), building one, fetching one a quorum named |
//! | `catchup` | `CatchUp`: who claims which height, the sync request in flight, sync answers |
//! | `guard` | `Guard`: the double-sign guard when signing, the start-up watch, foreign signatures |
//! | `restore` | rebuilding a node from its last block, its records and its guard file |

mod blocks;
mod catchup;
mod evidence;
mod guard;
mod height;
mod incoming;
mod restore;
mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::consensus::io::{Event, Input, Output, SignPoint, SignStep, Timer};
use crate::crypto::Keypair;
use crate::ledger::mempool::Mempool;
use crate::ledger::{Ledger, TxError};
use crate::message::{Decision, Message, Vote};
use crate::tx::SignedTransfer;
use crate::types::{Hash, Height, Round, TimestampMs, ValidatorIndex};
use crate::validators::{ConsensusParams, Genesis, GenesisError, ValidatorSet};
use crate::votes::MAX_ROUNDS_AHEAD;

use catchup::CatchUp;
pub use catchup::{SYNC_ANSWER_BURST, SYNC_ANSWER_INTERVAL_MS};
use guard::Guard;
use height::HeightState;
pub use height::Step;
pub use restore::Restore;

/// Proposals are accepted for at most this many rounds beyond the current one: each may carry a
/// full block, so the window is kept small (a proposer re-sends its proposal anyway).
pub const PROPOSAL_ROUNDS_AHEAD: u32 = 4;

/// Messages for the next height are kept for rounds below this.
const NEXT_HEIGHT_ROUNDS: u32 = 2;

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
    /// The validator set of the height being decided (the ledger's current set, ADR 0026).
    set: Arc<ValidatorSet>,
    /// The set of the height before (late precommits of the last decision are its members').
    prev_set: Arc<ValidatorSet>,
    key: Keypair,
    me: Option<ValidatorIndex>,
    now: TimestampMs,
    started: bool,

    // The chain so far.
    parent_hash: Hash,
    parent_time: TimestampMs,
    last_decision: Option<Decision>,
    /// Late precommits joined `last_decision`'s certificate since the runtime was last handed
    /// it (`flush_extension`).
    extension_unsent: bool,
    ledger: Ledger,
    mempool: Mempool,

    /// Everything of the height being decided; the next height replaces it whole
    /// (`enter_height`).
    cur: HeightState,

    // What outlives a height.
    /// Verified messages for `height + 1`, at most one per (signer, round, slot).
    next_height: BTreeMap<(ValidatorIndex, SignPoint), Message>,
    /// Claims of peers' heights and the sync request in flight.
    catch_up: CatchUp,
    /// The double-sign guard (see `SignPoint`, `Withheld`).
    guard: Guard,
    /// When each peer was last sent a block it asked for: one answer per peer per
    /// `block_answer_gap`, so that a flood of requests costs one block per gap.
    block_answered: BTreeMap<ValidatorIndex, TimestampMs>,
    /// When each peer was last sent the last decision (reset by `finalize`): at most one per
    /// peer per `block_answer_gap`.
    decision_sent: BTreeMap<ValidatorIndex, TimestampMs>,

    /// Double votes to punish when this node proposes, one per offender (`evidence.rs`).
    evidence: BTreeMap<ValidatorIndex, crate::vote::Evidence>,

    /// The last proposer looked up, with its (height, round): `start_round` and the round's
    /// proposal (arriving at every node) ask for the same one, and a schedule turn costs O(n).
    proposer_memo: Option<(Height, Round, ValidatorIndex)>,

    out: Vec<Output>,
}

impl Node {
    /// A node at height 1 of a fresh chain.
    pub fn new(genesis: &Genesis, key: Keypair, config: NodeConfig) -> Result<Node, NodeError> {
        let mut nodes = Node::new_many(genesis, [key], config)?;
        Ok(nodes.pop().expect("one key, one node"))
    }

    /// `new` for one node of each of `keys`, the genesis checked and its ledger built once and
    /// shared: the simulator starts a hundred validators of one chain, and checking the same
    /// hundred keys a hundred times took a twentieth of its run.
    pub fn new_many(
        genesis: &Genesis,
        keys: impl IntoIterator<Item = Keypair>,
        config: NodeConfig,
    ) -> Result<Vec<Node>, NodeError> {
        // Checked before anything is built from it.
        let set = Arc::new(genesis.validate()?);
        let ledger = Ledger::from_genesis_set(genesis, Some(&set));
        let hash = genesis.hash();
        Ok(keys
            .into_iter()
            .map(|key| Node::with_parts(genesis, &set, hash, key, config.clone(), ledger.clone()))
            .collect())
    }

    /// A node at height 1 of `genesis`, whose set (`Genesis::validate`) and hash are given.
    fn with_parts(
        genesis: &Genesis,
        set: &Arc<ValidatorSet>,
        genesis_hash: Hash,
        key: Keypair,
        config: NodeConfig,
        ledger: Ledger,
    ) -> Node {
        let set = set.clone();
        let me = set.index_of(&key.public_key());
        Node {
            chain_id: genesis.chain_id.clone(),
            params: genesis.params.clone(),
            cur: HeightState::new(Height(1), &set),
            prev_set: set.clone(),
            set,
            key,
            me,
            now: TimestampMs(0),
            started: false,
            parent_hash: genesis_hash,
            parent_time: genesis.genesis_time_ms,
            last_decision: None,
            extension_unsent: false,
            ledger,
            mempool: Mempool::new(config.mempool_capacity),
            next_height: BTreeMap::new(),
            catch_up: CatchUp::default(),
            guard: Guard::new(config.double_sign_check_ms),
            block_answered: BTreeMap::new(),
            decision_sent: BTreeMap::new(),
            evidence: BTreeMap::new(),
            proposer_memo: None,
            out: Vec::new(),
        }
    }

    /// The height being decided: the last finalized one plus one.
    pub fn height(&self) -> Height {
        self.cur.height
    }

    /// The current round of `height`.
    pub fn round(&self) -> Round {
        self.cur.round
    }

    /// The current step of the round.
    pub fn step(&self) -> Step {
        self.cur.step
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

    /// The validator set of the height being decided.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    /// A checker of sync answers' certificates for the heights whose sets this node knows from
    /// its own height on (this epoch's and the next one's, as `set_for`), to run off the loop
    /// (`Input::SyncChecked`). Cheap: the sets are shared.
    pub fn certificate_checker(&self) -> crate::verified::CertificateChecker {
        let cur = self.cur.height;
        let spans = match self.ledger.staking() {
            None => vec![(cur, Height(u64::MAX), self.set.clone())],
            Some(staking) => {
                let epoch = staking.params().epoch_blocks.max(1);
                // The last height of this epoch (`set_for`: epochs are `1..=e`, `e+1..=2e`, ...).
                let end = (cur.0.saturating_sub(1) / epoch + 1).saturating_mul(epoch);
                vec![
                    (cur, Height(end), self.set.clone()),
                    (
                        Height(end.saturating_add(1)),
                        Height(end.saturating_add(epoch)),
                        staking.next().clone(),
                    ),
                ]
            }
        };
        crate::verified::CertificateChecker::new(&self.chain_id, spans)
    }

    /// The validator set of `height`, if this node knows it: the height before the one being
    /// decided, that one, and every height up to the end of the next epoch (ADR 0026: a set
    /// is elected one epoch ahead). What a signature of that height checked with
    /// `SignatureChecked` must be verified against; a message of a height whose set is unknown
    /// is left to the core unchecked (it takes it as a hint).
    pub fn set_for(&self, height: Height) -> Option<&ValidatorSet> {
        let cur = self.cur.height;
        if height == cur {
            return Some(&self.set);
        }
        if height.next() == cur {
            return Some(&self.prev_set);
        }
        if height <= cur {
            return None;
        }
        let Some(staking) = self.ledger.staking() else {
            return Some(&self.set); // no staking state: the set never changes
        };
        let epoch = staking.params().epoch_blocks;
        let epoch_of = |h: Height| h.0.saturating_sub(1) / epoch;
        match epoch_of(height).checked_sub(epoch_of(cur)) {
            Some(0) => Some(&self.set),
            Some(1) => Some(staking.next()),
            _ => None,
        }
    }

    /// After a decision: the sets move on with the ledger (the set of the new height is the
    /// ledger's current one), and this node's id in the new set is looked up again.
    fn move_sets_on(&mut self) {
        if let Some(current) = self.ledger.staking().map(|s| s.current().clone()) {
            self.prev_set = std::mem::replace(&mut self.set, current);
            self.me = self.set.index_of(&self.key.public_key());
        } else {
            self.prev_set = self.set.clone();
        }
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
        self.cur.locked
    }

    /// Whether this very vote (signature included) is counted already: a resend, which the node
    /// takes without checking its signature again, so a driver need not check it either.
    pub fn holds_vote(&self, vote: &Vote) -> bool {
        self.cur.votes.contains(vote)
    }

    /// Distinct blocks known at the current height and not finalized: proposed in some round,
    /// carried by a decision still waiting to be checked, or restored with a lock. 0 between
    /// finalizing a height and the first proposal of the next.
    pub fn pending_blocks(&self) -> usize {
        self.cur.blocks.len()
    }

    /// How much this node holds, in items, for the bounded-memory checks of tests and fuzzers.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            blocks: self.cur.blocks.len() + self.cur.checked.len(),
            proposals: self.cur.proposals.len(),
            vote_slots: self.cur.votes.memory_votes(),
            next_height_messages: self.next_height.len(),
            pending_txs: self.mempool.len(),
        }
    }

    /// Handles one input at time `now` and returns what to do, in order.
    pub fn handle(&mut self, now: TimestampMs, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.handle_into(now, input, &mut out);
        out
    }

    /// As `handle`, appending what to do to `out`: a driver that empties and reuses one buffer
    /// allocates nothing per input for the outputs (the simulator runs millions of inputs, most
    /// with an output or two).
    pub fn handle_into(&mut self, now: TimestampMs, input: Input, out: &mut Vec<Output>) {
        debug_assert!(
            self.out.is_empty(),
            "outputs are handed over at every input"
        );
        // The node pushes to `self.out`: the caller's buffer takes its place for this input.
        std::mem::swap(&mut self.out, out);
        self.on_input(now, input);
        std::mem::swap(&mut self.out, out);
    }

    fn on_input(&mut self, now: TimestampMs, input: Input) {
        // A clock that steps back is held still: the core's time never decreases.
        self.now = self.now.max(now);
        match input {
            Input::Start => self.on_start(),
            Input::Message { from, msg } => self.on_message(from, msg, false),
            Input::SignatureChecked { from, msg } => {
                self.on_message(from, msg.into_message(), true)
            }
            Input::SyncChecked { from, answer } => {
                let (blocks, marks) = answer.into_parts();
                self.on_sync_response(from, blocks, marks)
            }
            Input::Timeout(timer) => self.on_timeout(timer),
            Input::PeerConnected(peer) => self.on_peer_connected(peer),
            Input::SubmitTx(tx) => self.on_submit_tx(tx, false),
            Input::SubmitVerifiedTx(v) => {
                if let Message::Transaction(tx) = v.into_message() {
                    self.on_submit_tx(tx, true)
                }
            }
            Input::Certified(blocks) => self.on_certified(blocks),
        }
        self.check_rules();
        self.follow_polkas();
        self.assert_invariants();
    }

    /// What holds between any two steps, whatever the input was (checked in debug builds: the
    /// tests, the fuzzers and the simulator's test runs). A failure is a bug of the core, never
    /// of the input.
    fn assert_invariants(&self) {
        let cur = &self.cur;
        match &self.last_decision {
            // The chain's tip is the parent of the height being decided.
            Some(d) => {
                debug_assert_eq!(d.block.height().next(), cur.height, "decided height + 1");
                debug_assert_eq!(
                    d.block.hash(),
                    self.parent_hash,
                    "decided block is the parent"
                );
                debug_assert_eq!(
                    d.certificate.block_hash, self.parent_hash,
                    "its certificate"
                );
            }
            None => debug_assert!(!self.extension_unsent, "an extension of no decision"),
        }
        // Algorithm 1: lockedRound and validRound never pass the round the node is in, nor do
        // the rounds it signed in. Except where a restore put it behind its own guard (a
        // block it had finalized lost): the guard's lock and its re-signed votes stand at
        // their round while the node, barred from signing anything of this height, catches up.
        let behind_guard = self
            .guard
            .restored
            .is_some_and(|g| g.last.height > cur.height);
        if !behind_guard {
            debug_assert!(cur.locked.is_none_or(|(r, _)| r <= cur.round), "lock ahead");
            debug_assert!(cur.valid.is_none_or(|(r, _)| r <= cur.round), "valid ahead");
        }
        for ((round, _), msg) in &cur.signed {
            debug_assert!(
                behind_guard || *round <= cur.round,
                "signed ahead of its round"
            );
            debug_assert_eq!(
                SignPoint::of_signed(msg).map(|p| p.height),
                Some(cur.height),
                "signed at another height"
            );
        }
        // Kept for the next height, and only that one.
        debug_assert!(
            self.next_height
                .keys()
                .all(|(_, p)| p.height == cur.height.next()),
            "a kept message of another height"
        );
        debug_assert_eq!(cur.moved_on.len(), self.set.len(), "a flag per validator");
    }

    fn on_start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        if self.guard.needs_watch {
            self.guard.watch_until = Some(self.now.saturating_add_ms(self.guard.check_ms));
        }
        // A restarted node first repeats what it signed, so peers see it again.
        for msg in self.worth_resending() {
            self.out.push(Output::Broadcast(msg));
        }
        self.schedule(
            Timer::Resend {
                height: self.cur.height,
            },
            self.params.resend_interval_ms,
        );
        self.start_round(self.cur.round, None);
    }

    fn on_message(&mut self, from: ValidatorIndex, msg: Message, verified: bool) {
        match msg {
            Message::Proposal(p) => self.on_proposal(from, p, verified),
            Message::Vote(v) => self.on_vote(from, v, verified),
            Message::Decision(d) => self.on_decision(Some(from), d),
            Message::SyncRequest {
                from: start,
                max_blocks,
            } => self.on_sync_request(from, start, max_blocks),
            Message::SyncResponse { blocks } => self.on_sync_response(from, blocks, Vec::new()),
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
        let lock_round = self.cur.locked.map(|(r, _)| r);
        self.cur
            .signed
            .iter()
            .filter(|((round, step), _)| {
                *round == self.cur.round
                    || (Some(*round) == lock_round && *step != SignStep::Proposal)
            })
            .map(|(_, msg)| msg.clone())
            .collect()
    }

    /// The proposer of `(height, round)` (`ValidatorSet::proposer`), remembered for the next ask.
    fn proposer(&mut self, height: Height, round: Round) -> ValidatorIndex {
        match self.proposer_memo {
            Some((h, r, proposer)) if (h, r) == (height, round) => proposer,
            _ => {
                let proposer = self.set.proposer(height, round);
                self.proposer_memo = Some((height, round, proposer));
                proposer
            }
        }
    }

    fn schedule(&mut self, timer: Timer, after_ms: u64) {
        self.out.push(Output::Schedule { timer, after_ms });
    }

    fn reject(&mut self, kind: &'static str, reason: &'static str) {
        self.out
            .push(Output::Event(Event::Rejected { kind, reason }));
    }
}
