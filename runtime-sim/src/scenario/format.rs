//! The scenario file's vocabulary: validators and their behaviours, durations, faults, the
//! consensus parameters, the network model, the expectations and the workload, each with the
//! defaults a file may leave out. How a file is read and checked is in `parse`.

use serde::{Deserialize, Serialize};
use timed_core::validators::{ConsensusParams, TimeoutParams};

use crate::network::{Latency, LinkModel};

use super::parse::{DurationRepr, FaultRepr};

/// How a validator behaves. Everything but `Honest` is Byzantine and excluded from the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    Honest,
    /// Runs, but nothing it says leaves the machine.
    Silent,
    /// Signs a second, different block for half of its peers.
    EquivocatingProposer,
    /// Signs a conflicting prepare and precommit for half of its peers.
    DoubleVoter,
    /// Also sends random bytes, bad signatures, and far-future heights and rounds.
    GarbageSender,
    /// Forgets its lock and its valid value: it prepares whatever the round's proposal is, and
    /// re-proposes no block, as a validator that lost its lock to a crash without a WAL would.
    /// Played by the simulator on the honest core's votes (`sim::amnesia`), never double voting.
    Amnesia,
    /// Proposes, properly signed, blocks that break one validity rule each: another validator
    /// named as proposer, a timestamp not after the parent's or an hour ahead, a wrong state
    /// root, transaction root or parent, a transfer that cannot apply.
    InvalidProposer,
    /// Forwards valid signed proposals and decisions (its own, others' it received, and those it
    /// serves to a node catching up) with another body under the same signed header: a transfer
    /// added, removed, or two swapped. The altered copy goes first, to part of its peers.
    BodySwapper,
    /// Claims far heights (properly signed votes a million heights up), then answers the sync
    /// requests this draws with nothing, an empty answer, or blocks whose certificates are broken.
    SyncLiar,
    /// Forwards others' re-proposals (those with a valid round) at once, without their polka or
    /// with a broken one, to race the real copy.
    ProofStripper,
    /// Now and then re-sends a valid message it saw earlier (an older height or round) to a
    /// random peer.
    Replayer,
    /// Signs its proposals and votes (and its precommits in the certificates it sends) with a
    /// small-order point added to the signature's R: valid under the cofactored equation, not
    /// under the cofactorless one.
    TorsionSigner,
    /// Two instances of this validator sharing its key, both running the unmodified honest core;
    /// the second instance is node `n + k` (n validators, the k-th twin in index order), which
    /// partitions can place apart from the first. The key counts as Byzantine stake.
    Twins,
    /// Runs the honest core and, the first time it votes in each round, also sends every peer
    /// properly signed nil votes for rounds far ahead of its own (1 to 64 rounds on, one past
    /// the vote keeper's window, the last round) and for far rounds of the next heights: claims
    /// that would lift honest nodes' rounds, and so their timeouts, when a round ends
    /// (`Timer::RoundEnd` joins the highest round seen, at most three on).
    RoundPusher,
}

/// A node that is not in the genesis set: it follows the chain from the start (its core has no
/// vote until a set holding its key is current) and may register (`Membership`). Candidates are
/// the nodes after the validators and their twins, in file order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    /// Its validator name (also its key's seed); default `candidate<k>` from 1.
    #[serde(default)]
    pub name: Option<String>,
    /// Its own account's genesis balance, in base units: it owns its registration and pays its
    /// bond and fees from it.
    #[serde(default)]
    pub funds: u64,
}

/// What a membership event does (ADR 0026): a staking operation, signed by the validator's
/// owner (every simulated validator owns itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MembershipKind {
    /// A candidate registers its key with a bond of `amount` (at least `min_bond`).
    Register,
    /// `amount` more bonded to the validator.
    Bond,
    /// `amount` of its bond unbonded (the rest must be 0 or at least `min_bond`).
    Unbond,
}

/// A staking operation submitted as a signed transfer through the simulated mempool path (a
/// random live node, re-sent until a block holds it). Events go in file order, each after the
/// one before is final (an operator that waits for its receipt), and not before `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub at: Ms,
    pub kind: MembershipKind,
    /// The node whose key is the validator: a genesis validator or a candidate (not a twin).
    #[serde(alias = "validator")]
    pub node: usize,
    /// Base units.
    pub amount: u64,
}

/// How a restart lost the node's durable records (its key, and the last-signed point kept
/// beside it, survive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageLoss {
    /// The data directory is gone: no blocks, no ledger, no records (it syncs from genesis).
    Wiped,
    /// An older backup: the blocks up to an earlier height and the ledger after it, no records.
    Backup,
    /// The WAL was cut in the middle: the blocks are there, only a prefix of the records.
    WalCut,
}

impl Behaviour {
    pub fn is_byzantine(self) -> bool {
        self != Behaviour::Honest
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub stake: u64,
    #[serde(default = "honest")]
    pub behaviour: Behaviour,
}

fn honest() -> Behaviour {
    Behaviour::Honest
}

/// A duration in a scenario file: an integer of milliseconds or a string like "90s", "10m", "1h",
/// "250ms".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "DurationRepr", into = "u64")]
pub struct Ms(pub u64);

impl From<Ms> for u64 {
    fn from(m: Ms) -> u64 {
        m.0
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultKind {
    /// Cut the network into groups (nodes not listed form one more group).
    Partition { groups: Vec<Vec<usize>> },
    /// Remove every partition.
    Heal,
    /// The node stops; in-flight messages to it and everything not persisted are lost.
    Crash { node: usize },
    /// The node crashes right after its next `Persist`, before the rest of that step (the send).
    CrashAtPersist { node: usize },
    /// The node comes back from its durable state; on a node that is up, it cancels a pending
    /// crash-at-persist.
    Restart { node: usize },
    /// The node starts behaving differently (e.g. turns silent for good).
    Behave { node: usize, behaviour: Behaviour },
    /// Loss and duplication stop (or start again) on every link.
    Reliable { on: bool },
    /// As `Restart`, but the node's storage lost records (`loss`); its key and last-signed point
    /// survive. On a node that is up it crashes first.
    RestartLost { node: usize, loss: StorageLoss },
    /// With `at_height` only: the first node to finalize that height is cut off from all others
    /// at that very moment, so its precommit and its decision still in flight are lost. The
    /// worst timing for the others' locks (what an amnesia attack needs); `heal` ends it.
    IsolateFinalizer,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FaultRepr")]
pub struct Fault {
    /// Time of the fault, or...
    #[serde(default)]
    pub at: Option<Ms>,
    /// ...the first time an honest node finalizes this height.
    #[serde(default)]
    pub at_height: Option<u64>,
    pub kind: FaultKind,
}

/// After all faults heal, the honest live nodes must gain `gain` heights within `within`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Liveness {
    pub after: Ms,
    pub gain: u64,
    pub within: Ms,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every honest node finalized at least this height by the end.
    #[serde(default)]
    pub min_height: Option<u64>,
    /// Every block finalized on an honest node within this long of its timestamp.
    #[serde(default)]
    pub max_finality_ms: Option<u64>,
    /// No honest node finalizes a new height while the network is partitioned.
    #[serde(default)]
    pub no_progress_while_partitioned: bool,
    /// At least this many pieces of evidence reported by honest nodes.
    #[serde(default)]
    pub min_evidence: Option<u64>,
    /// Every certificate of heights below the last one holds every validator's signature.
    #[serde(default)]
    pub full_certificates: bool,
    #[serde(default)]
    pub liveness: Option<Liveness>,
    /// End the run as soon as the liveness phase succeeded (swarms: no time wasted after).
    #[serde(default)]
    pub stop_at_liveness: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consensus {
    #[serde(default = "d_block_time")]
    pub block_time_ms: u64,
    #[serde(default = "d_propose")]
    pub propose_timeout_ms: u64,
    #[serde(default = "d_propose_delta")]
    pub propose_delta_ms: u64,
    #[serde(default = "d_vote")]
    pub prepare_timeout_ms: u64,
    #[serde(default = "d_vote_delta")]
    pub prepare_delta_ms: u64,
    #[serde(default = "d_vote")]
    pub precommit_timeout_ms: u64,
    #[serde(default = "d_vote_delta")]
    pub precommit_delta_ms: u64,
    #[serde(default = "d_resend")]
    pub resend_interval_ms: u64,
    /// Heights per epoch: the set changes after a multiple of it (ADR 0026).
    #[serde(default = "d_epoch_blocks")]
    pub epoch_blocks: u64,
    /// The least bond of a registration, in base units (genesis validators are exempt).
    #[serde(default = "d_min_bond")]
    pub min_bond: u64,
    /// Validators per set at most.
    #[serde(default = "d_max_validators")]
    pub max_validators: u32,
    /// Heights unbonded stake waits before it returns (at least twice `epoch_blocks`).
    #[serde(default = "d_unbonding_blocks")]
    pub unbonding_blocks: u64,
    /// The part of a double signer's bond burned, in thousandths.
    #[serde(default = "d_slash_permille")]
    pub slash_permille: u32,
}

fn d_epoch_blocks() -> u64 {
    ConsensusParams::default().epoch_blocks
}

fn d_min_bond() -> u64 {
    ConsensusParams::default().min_bond.0
}

fn d_max_validators() -> u32 {
    ConsensusParams::default().max_validators
}

fn d_unbonding_blocks() -> u64 {
    ConsensusParams::default().unbonding_blocks
}

fn d_slash_permille() -> u32 {
    ConsensusParams::default().slash_permille
}

fn d_block_time() -> u64 {
    8_000
}

fn d_propose() -> u64 {
    3_000
}

fn d_propose_delta() -> u64 {
    1_000
}

fn d_vote() -> u64 {
    1_000
}

fn d_vote_delta() -> u64 {
    500
}

fn d_resend() -> u64 {
    2_000
}

impl Default for Consensus {
    fn default() -> Self {
        Consensus {
            block_time_ms: d_block_time(),
            propose_timeout_ms: d_propose(),
            propose_delta_ms: d_propose_delta(),
            prepare_timeout_ms: d_vote(),
            prepare_delta_ms: d_vote_delta(),
            precommit_timeout_ms: d_vote(),
            precommit_delta_ms: d_vote_delta(),
            resend_interval_ms: d_resend(),
            epoch_blocks: d_epoch_blocks(),
            min_bond: d_min_bond(),
            max_validators: d_max_validators(),
            unbonding_blocks: d_unbonding_blocks(),
            slash_permille: d_slash_permille(),
        }
    }
}

impl Consensus {
    pub fn params(&self) -> ConsensusParams {
        ConsensusParams {
            block_time_ms: self.block_time_ms,
            propose_timeout: TimeoutParams {
                base_ms: self.propose_timeout_ms,
                delta_ms: self.propose_delta_ms,
            },
            prepare_timeout: TimeoutParams {
                base_ms: self.prepare_timeout_ms,
                delta_ms: self.prepare_delta_ms,
            },
            precommit_timeout: TimeoutParams {
                base_ms: self.precommit_timeout_ms,
                delta_ms: self.precommit_delta_ms,
            },
            resend_interval_ms: self.resend_interval_ms,
            epoch_blocks: self.epoch_blocks,
            min_bond: timed_core::types::Amount(self.min_bond),
            max_validators: self.max_validators,
            unbonding_blocks: self.unbonding_blocks,
            slash_permille: self.slash_permille,
            ..ConsensusParams::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    pub from: usize,
    pub to: usize,
    pub latency: Latency,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub duplicate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub latency: Latency,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub duplicate: f64,
    #[serde(default)]
    pub links: Vec<LinkOverride>,
}

impl NetworkSpec {
    pub fn default_link(&self) -> LinkModel {
        LinkModel {
            latency: self.latency.clone(),
            jitter_ms: self.jitter_ms,
            loss: self.loss,
            duplicate: self.duplicate,
        }
    }
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency: Latency::Fixed { ms: 10 },
            jitter_ms: 0,
            loss: 0.0,
            duplicate: 0.0,
            links: vec![],
        }
    }
}

/// Clients submitting signed transfers to random live validators: funded client accounts and the
/// validators' own reward accounts send to each other, now and then an invalid transfer (a wrong
/// nonce, more than the balance, a broken signature) that the ledger must refuse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Client accounts funded at genesis.
    #[serde(default = "d_clients")]
    pub clients: usize,
    /// Each client's genesis balance, in units.
    #[serde(default = "d_client_balance")]
    pub balance: u64,
    /// Mean time between two submissions (drawn uniformly in [1, 2·interval]).
    pub interval: Ms,
    /// No submissions after this time (default: the whole run).
    #[serde(default)]
    pub until: Option<Ms>,
}

fn d_clients() -> usize {
    6
}

fn d_client_balance() -> u64 {
    1_000_000_000
}

/// A fault at `ms` milliseconds into the run.
pub(super) fn at(ms: u64, kind: FaultKind) -> Fault {
    Fault {
        at: Some(Ms(ms)),
        at_height: None,
        kind,
    }
}
