//! What the tasks of one node share: identity, store, metrics, the genesis once fixed, the
//! outbound peer queues (and the links back to other instances of a key, `net::twins`), and the
//! status the HTTP API shows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use timed_core::crypto::{Keypair, PublicKey};
use timed_core::follow::LinkId;
use timed_core::ledger::TxError;
use timed_core::message::Message;
use timed_core::tx::SignedTransfer;
use timed_core::types::{Hash, Stake, ValidatorIndex};
use timed_core::validators::{Genesis, ValidatorSet};
use timed_core::verified::Verified;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::net::tls::PeerPolicy;
use crate::node::metrics::Metrics;
use crate::storage::store::Store;
use crate::storage::stored::StoredBlock;

/// Outbound frames queued per peer at most; beyond that frames are dropped (the core re-sends).
pub const PEER_QUEUE: usize = 4096;

/// Outbound bytes queued per peer at most (`net::queue::PeerSender`): four of the largest messages.
/// Frames beyond are dropped, so a peer that never reads cannot pile up gigabytes here.
pub const PEER_QUEUE_BYTES: usize = 4 * timed_core::codec::MAX_MESSAGE_BYTES;
// The largest message (a sync response) with its length prefix must fit an empty queue.
const _: () = assert!(PEER_QUEUE_BYTES >= timed_core::codec::MAX_MESSAGE_BYTES + 4);

/// Announcements of finalized blocks kept for a reader that falls behind; beyond, it misses some
/// (`broadcast`'s lag) and reads the store instead.
pub const FINALIZED_QUEUE: usize = 64;

/// Inputs queued for the core at most; readers wait when it is full (QUIC flow control then
/// slows the peers down).
pub const CORE_QUEUE: usize = 8192;

/// The fixed genesis and what is derived from it.
pub struct Chain {
    pub genesis: Genesis,
    pub hash: Hash,
    pub set: ValidatorSet,
    /// The genesis as this node's hellos carry it, made once.
    pub hello: crate::net::wire::HelloGenesis,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Result<Chain, timed_core::validators::GenesisError> {
        let set = genesis.validate()?;
        let hash = genesis.hash();
        Ok(Chain {
            hello: crate::net::wire::HelloGenesis::of(&genesis, hash),
            hash,
            genesis,
            set,
        })
    }

    pub fn name(&self, index: ValidatorIndex) -> &str {
        self.set.get(index).map_or("?", |v| v.name.as_str())
    }
}

/// Development mode: keys from names, genesis formed at the handshake.
#[derive(Clone, Debug)]
pub struct DevMode {
    pub stake: Stake,
    pub block_time_ms: u64,
    /// How many other validators must say hello before the genesis is formed.
    pub expected_peers: usize,
    pub chain_id: String,
    /// Initial balances of the genesis being formed (`--fund`, a devnet aid).
    pub balances: Vec<timed_core::validators::GenesisBalance>,
    /// Heights per epoch of the genesis being formed (`--epoch-blocks`); `None`: the default.
    pub epoch_blocks: Option<u64>,
}

impl DevMode {
    /// The parameters of the genesis being formed (`handshake::dev_params`).
    pub fn params(&self) -> timed_core::validators::ConsensusParams {
        crate::net::handshake::dev_params(self.block_time_ms, self.epoch_blocks)
    }
}

/// What a node is: a validator takes part in consensus (or waits for its election); a full
/// node only follows the chain from the nodes it dials (`net::upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Validator,
    FullNode,
}

/// What reaches the core loop from the network and the API.
pub enum CoreInput {
    Message {
        from: ValidatorIndex,
        msg: Message,
    },
    /// As `Message`, its signature verified already by the core's check (`txverify.rs`, the
    /// driver's pre-check): `Input::SignatureChecked`.
    Checked {
        from: ValidatorIndex,
        msg: Verified,
    },
    PeerConnected(ValidatorIndex),
    SubmitTx(SignedTransfer, oneshot::Sender<Result<Hash, TxError>>),
    /// As `SubmitTx`, its signature verified already (a `Message::Transaction`):
    /// `Input::SubmitVerifiedTx`.
    SubmitVerifiedTx(Verified, oneshot::Sender<Result<Hash, TxError>>),
    /// The API asks for a transfer in the mempool.
    PendingTx(Hash, oneshot::Sender<Option<SignedTransfer>>),
    /// The API asks for an account's proof (`GET /accounts/{address}?proof=true`): answered
    /// once the loop stored every block it finalized, with the height of the last one, whose
    /// header's state root the proof holds under.
    ProveAccount(timed_core::crypto::PublicKey, ProofReply),
    /// A follower asks for blocks (`net::followers`, within its budget already): served from the
    /// store once the loop committed what it finalized.
    ServeFollower {
        to: crate::net::syncserve::Asker,
        from: timed_core::types::Height,
        max_blocks: u32,
    },
    /// A sync answer whose certificates were checked off the loop (`synccheck.rs`):
    /// `Input::SyncChecked`.
    SyncChecked {
        from: ValidatorIndex,
        answer: timed_core::verified::CheckedDecisions,
    },
    /// A full node's link to a node it follows came up (`net::upstream`).
    UpstreamUp(LinkId),
    /// That link went down.
    UpstreamDown(LinkId),
    /// Finalized blocks an upstream pushed (`answer: false`) or sent in answer to this node's
    /// sync request (`answer: true`): `Input::Certified`.
    Upstream {
        link: LinkId,
        blocks: Vec<timed_core::message::Decision>,
        answer: bool,
    },
}

/// Where the consensus loop answers an account proof: the height whose header the proof holds
/// under, and the proof.
pub type ProofReply =
    oneshot::Sender<(timed_core::types::Height, timed_core::ledger::AccountProof)>;

/// What a peer sent that goes through the verifier (`txverify.rs`), in arrival order.
pub enum Gossiped {
    /// A transfer, to be verified in a batch.
    Tx(ValidatorIndex, SignedTransfer),
    /// A message carrying a block, passed on after the transfers before it.
    Block(ValidatorIndex, Box<Message>),
}

/// What the consensus loop announces about the chain once it is stored, for whoever follows it
/// (the API's dashboard window): the loop publishes, the readers keep their own views.
#[derive(Clone, Debug)]
pub enum Finalized {
    /// A block just committed to the store (shared, not copied: a full block is megabytes).
    Block(Arc<StoredBlock>),
    /// A longer certificate for a block already finalized.
    Extended(Arc<timed_core::block::Certificate>),
}

/// An open outbound connection.
pub struct PeerQueue {
    pub name: String,
    pub tx: crate::net::queue::PeerSender,
    pub generation: u64,
    /// The process it reaches (its certificate): its inbound connection to us is not used to
    /// send to it (`net::twins`).
    pub instance: crate::net::tls::Instance,
}

/// The part of `/status` the core loop keeps current.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Live {
    /// Last finalized height (0 before the first block).
    pub height: u64,
    /// Height and round being decided.
    pub deciding_height: u64,
    pub round: u32,
    /// Step within the round: new_height (waiting for the block time), propose, prepare,
    /// precommit.
    pub step: &'static str,
    /// Distinct blocks known at the deciding height and not finalized (proposals of its rounds,
    /// a decision's block not yet checked, a restored lock's block); 0 while waiting for the
    /// next height.
    pub pending_blocks: u64,
    pub pending_transactions: usize,
    pub last_block_hash: Option<String>,
    pub finality_latency_ms: Option<u64>,
    /// This node's clock offset to its peers (ms; positive: the peers' clocks are ahead), once
    /// more than half of them have been measured.
    pub clock_offset_ms: Option<i64>,
    /// Each peer's clock offset to ours (ms), from the timestamps of its proposals.
    pub peer_clock_offsets_ms: BTreeMap<String, i64>,
    pub evidence: u64,
    pub blocks_finalized_here: u64,
}

pub struct Ctx {
    pub name: String,
    pub role: Role,
    pub key: Keypair,
    pub dev: Option<DevMode>,
    pub data_dir: PathBuf,
    pub store: Store,
    /// `--snapshot-interval`: a snapshot every this many heights (`storage::snapshots`); 0: none.
    pub snapshot_interval: u64,
    pub metrics: Metrics,
    pub policy: Arc<PeerPolicy>,
    pub chain: watch::Sender<Option<Arc<Chain>>>,
    /// Dev mode: (public key, stake) of every validator heard from, by name (ours included).
    pub known: Mutex<BTreeMap<String, (PublicKey, Stake)>>,
    pub peers: Mutex<BTreeMap<ValidatorIndex, PeerQueue>>,
    /// The links back on inbound connections, to the instances `peers` does not reach; locked
    /// after `peers`, never before.
    pub twins: Mutex<crate::net::twins::Twins>,
    pub to_core: mpsc::Sender<CoreInput>,
    /// Transfers gossiped by peers, to be verified in batches on their way to the core, and the
    /// blocks that follow them (`txverify.rs`).
    pub gossip: mpsc::Sender<Gossiped>,
    /// Peers' sync answers, checked on their way to the core (`synccheck.rs`).
    pub sync_answers: mpsc::Sender<(ValidatorIndex, Vec<timed_core::message::Decision>)>,
    /// The loop's certificate checker and the sync requests in flight (`synccheck.rs`).
    pub sync_check: crate::node::synccheck::SyncCheck,
    pub live: Mutex<Live>,
    /// Wakes the dialers that wait (backoff, or a handshake not answered yet): a peer came up.
    pub redial: tokio::sync::Notify,
    pub started: Instant,
    pub shutdown: watch::Receiver<bool>,
    /// Blocks finalized and certificates extended, as the consensus loop announces them.
    pub finalized: broadcast::Sender<Finalized>,
    /// The limits of the HTTP API (`--http-*` flags).
    pub http: crate::api::limits::Limits,
    /// The account proofs the API may ask of the consensus loop, all clients together
    /// (`api::http::PROOFS_PER_SECOND`): a proof is computed on the loop, and clients enough
    /// to pass the per-client limit must not be able to fill it with them.
    pub proofs: crate::api::limits::RateLimiter,
    /// Peers cut off for a while: a message of theirs proved them faulty (`net::cooloff`).
    pub cooloff: crate::net::cooloff::CoolOff,
    /// The full nodes (and other readers) that follow this node (`net::followers`).
    pub followers: crate::net::followers::Followers,
    /// A full node's links to the nodes it follows (`net::upstream`); empty on a validator.
    pub upstreams: crate::net::upstream::UpstreamLinks,
}

/// Locks a mutex, ignoring poisoning (no lock is held across code that may panic mid-update).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ctx {
    pub fn chain(&self) -> Option<Arc<Chain>> {
        self.chain.borrow().clone()
    }

    /// Our stake: from the genesis once fixed, else from the command line.
    pub fn stake(&self) -> Stake {
        if let Some(c) = self.chain()
            && let Some(i) = c.set.index_of(&self.key.public_key())
        {
            return c.set.stake_of(i);
        }
        self.dev.as_ref().map_or(Stake(0), |d| d.stake)
    }

    pub fn block_time_ms(&self) -> u64 {
        match (self.chain(), &self.dev) {
            (Some(c), _) => c.genesis.params.block_time_ms,
            (None, Some(d)) => d.block_time_ms,
            (None, None) => 0,
        }
    }

    pub fn hello(&self) -> crate::net::wire::Hello {
        crate::net::wire::Hello {
            version: crate::net::wire::HELLO_VERSION,
            name: self.name.clone(),
            public_key: self.key.public_key(),
            stake: self.stake(),
            block_time_ms: self.block_time_ms(),
            genesis: self.chain().map(|c| c.hello.clone()),
        }
    }

    pub fn peer_names(&self) -> Vec<String> {
        lock(&self.peers).values().map(|p| p.name.clone()).collect()
    }
}
