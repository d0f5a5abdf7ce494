//! `timed verify`: a light client. It trusts a genesis file and nothing else — not the node it
//! asks — and checks the node's chain block by block (`GET /blocks/{h}`):
//!
//! - the header is of this chain (chain id) and of the height asked for;
//! - the block's hash is the hash of its header (a hash the node claims beside it must match),
//!   and the header's `tx_root` commits to the transactions served with it;
//! - the header links to the previous block's hash (the genesis hash for height 1) and its
//!   timestamp is after the previous one's; its proposer is a member of the height's set;
//! - the certificate proves the block final: `timed_core::block::Certificate::verify` against the
//!   set of the height (known signers in order, a quorum of stake, every precommit signature
//!   valid, checked as one batch).
//!
//! **Set changes (ADR 0026).** The set changes only after the last height of an epoch
//! (`epoch_blocks` of the genesis), to the set that header's `next_set_hash` names; every other
//! header must name the set that signed it. The light client starts from the genesis set and
//! accepts a new set only through that chain of proof: at an epoch's last height `h`, once the
//! certificate of `h` holds under the set already proven, it asks the node for the members of the
//! next set (`GET /validators?height=h+1`) and takes them only if their hash is the certified
//! `next_set_hash` (the hash covers each member's id, key and stake: all a certificate check
//! reads; names and owners are shown, never trusted). A node that lies about the members is
//! named (`Problem::ForgedHandOver`: the height, the certified hash and the one served), and a
//! certificate by signers the proven set does not hold is named with the set it was checked
//! against and where that set was proven (`Problem::Certificate`). When the hash is unchanged
//! nothing is asked. The members are asked of the node being verified: it is the only source the
//! client has, and the hash check makes it unnecessary to trust it.
//!
//! With `--state FILE` the last verified height and hash, and the set of the next height with
//! where it was proven, are kept in a small JSON file: a later run resumes from there (and
//! checks the first new block links to it). Without it every run starts at height 1.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use timed_core::block::{self, Block, Certificate, CertificateCheck, CertificateError};
use timed_core::codec;
use timed_core::message::Decision;
use timed_core::types::{Hash, Height, TimestampMs};
use timed_core::validators::{Genesis, Member, ValidatorSet, members_hash};

use crate::net::handshake::{GenesisFileError, read_genesis};
use crate::tools::client::{Client, ClientError, NodeUrl};

#[derive(Args)]
pub struct VerifyArgs {
    /// The genesis file of the chain: its validators are the only thing trusted; every later set
    /// is accepted only as certified by the set before it.
    #[arg(long)]
    genesis: PathBuf,
    /// A node's HTTP API, e.g. http://127.0.0.1:8001.
    #[arg(long)]
    node: String,
    /// Verify up to this height [default: the node's latest finalized height].
    #[arg(long)]
    height: Option<u64>,
    /// A state file (JSON: genesis hash, last verified height and block hash, the proven set of
    /// the next height). A run starts after the height recorded there and records its progress;
    /// without --state every run starts at height 1 and records nothing.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Genesis(#[from] GenesisFileError),
    #[error(transparent)]
    Node(#[from] ClientError),
    #[error("state file {path}: {reason}")]
    State { path: String, reason: String },
    #[error("node {url} has no finalized block yet")]
    NoBlocks { url: String },
    #[error("node {url} has finalized up to height {tip}; height {asked} cannot be verified yet")]
    BeyondTip { url: String, asked: u64, tip: u64 },
    #[error("node {url} has no block at height {height}")]
    Missing { url: String, height: u64 },
    #[error(
        "node {url} is at height {height}, behind height {verified} that the state file verified \
         already: ask a node that is up to date"
    )]
    Behind {
        url: String,
        height: u64,
        verified: u64,
    },
    #[error(
        "node {url} pruned block {height}: it keeps blocks from height {lowest} on \
         (--retain-blocks); verify against a node that keeps every block, or resume from a \
         --state file saved at height {lowest} or later"
    )]
    Pruned {
        url: String,
        height: u64,
        lowest: u64,
    },
    #[error("block {height}: the node's answer is not a block with a certificate: {reason}")]
    Malformed { height: u64, reason: String },
    #[error("block {height}: {problem}")]
    Invalid { height: u64, problem: Problem },
}

/// What is wrong with a block the node served, or with the set it served beside it.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("its chain id is {got:?}, the genesis says {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("the node served height {got} for height {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("the node claims hash {claimed}, but the header hashes to {computed}")]
    HashMismatch { claimed: String, computed: String },
    #[error("the transactions do not match the header's tx_root")]
    TxRootMismatch,
    #[error("its parent hash is {got}, but the verified block before it is {expected}")]
    BrokenLink { expected: String, got: String },
    #[error("its timestamp {got} ms is not after its parent's {parent} ms")]
    TimestampNotAfterParent { parent: u64, got: u64 },
    #[error("its proposer (validator id {id}) is not in the set of this height ({set})")]
    UnknownProposer { id: u16, set: String },
    #[error("{}: {source} (checked against {set})", certificate_kind(.source))]
    Certificate {
        source: CertificateError,
        /// The set it was checked against and where that set was proven.
        set: String,
    },
    #[error(
        "its header names set {found} for the next height, but the set changes only after an \
         epoch's last height (every {epoch_blocks}) and this height is signed by {expected}"
    )]
    SetChangedMidEpoch {
        expected: String,
        found: String,
        epoch_blocks: u64,
    },
    #[error(
        "forged hand-over: the certificate of height {height} names set {expected} for height \
         {next}, but the node served members for it that hash to {found}"
    )]
    ForgedHandOver {
        height: u64,
        next: u64,
        expected: String,
        found: String,
    },
    #[error(
        "the node's members of the set of height {next} match the certified hash but do not \
         form a set: {reason}"
    )]
    MalformedSet { next: u64, reason: String },
    #[error("the node's answer to /validators?height={next} is not a list of members: {reason}")]
    UnreadableSet { next: u64, reason: String },
}

fn certificate_kind(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::NoQuorum { .. } => "short certificate",
        CertificateError::BadSignature => "forged certificate",
        CertificateError::WrongBlock { .. } => "certificate of another block",
        CertificateError::WrongHeight { .. } => "certificate of another height",
        CertificateError::UnknownValidator(_) => {
            "certificate by a signer outside the proven set (a set that was never proven)"
        }
        CertificateError::Unordered => "malformed certificate",
    }
}

/// The last verified block, and the set of the height after it, as kept in the state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Checkpoint {
    genesis_hash: Hash,
    height: u64,
    block_hash: Hash,
    timestamp_ms: u64,
    /// The members of the set of `height + 1`; absent in files of versions before set changes
    /// (then the genesis set, which is right only within the first epoch).
    #[serde(default)]
    set: Option<Vec<Member>>,
    /// The height whose certificate proved `set` (0: the genesis).
    #[serde(default)]
    set_proven_at: u64,
}

/// What `/blocks/{h}` serves that a light client reads.
#[derive(Deserialize)]
struct Served {
    block: Block,
    certificate: Certificate,
    #[serde(default)]
    hash: Option<String>,
}

/// What `/blocks?from=H&limit=N` serves that a light client reads.
#[derive(Deserialize)]
struct ServedPage {
    blocks: Vec<Served>,
}

/// The blocks of a `/blocks?from=H&limit=N&format=codec` answer: the wire version byte, then
/// a codec sequence of decisions. `None` for anything else (another version, garbage: the
/// caller asks again as JSON); what it holds is checked like any served block.
fn decode_codec_page(bytes: &[u8]) -> Option<Vec<Served>> {
    let (&version, rest) = bytes.split_first()?;
    if version != timed_core::codec::WIRE_VERSION {
        return None;
    }
    let decisions = codec::decode::<Vec<Decision>>(rest, rest.len()).ok()?;
    Some(
        decisions
            .into_iter()
            .map(|d| Served {
                block: d.block,
                certificate: d.certificate,
                hash: None,
            })
            .collect(),
    )
}

/// What `/validators?height=H` serves that a light client reads.
#[derive(Deserialize)]
struct ServedSet {
    validators: Vec<Member>,
}

/// The genesis and what is derived from it.
pub struct Trusted {
    genesis: Genesis,
    hash: Hash,
    set: ValidatorSet,
    epoch_blocks: u64,
}

/// The set of the next height to verify, proven from the genesis.
pub struct Proven {
    set: ValidatorSet,
    hash: Hash,
    /// The height whose certificate named it (0: the genesis).
    at: u64,
}

impl Proven {
    fn describe(&self) -> String {
        let hash = hex::encode(self.hash.0);
        if self.at == 0 {
            format!("the genesis set {hash}")
        } else {
            format!(
                "set {hash}, proven by the certificate of height {}",
                self.at
            )
        }
    }
}

/// Why a served set was refused (`Problem` without the height it is reported at).
fn served_set(next: u64, expected: Hash, members: Vec<Member>) -> Result<ValidatorSet, Problem> {
    let found = members_hash(&members);
    if found != expected {
        return Err(Problem::ForgedHandOver {
            height: next - 1,
            next,
            expected: hex::encode(expected.0),
            found: hex::encode(found.0),
        });
    }
    ValidatorSet::from_members(members).map_err(|e| Problem::MalformedSet {
        next,
        reason: e.to_string(),
    })
}

impl Trusted {
    pub fn new(genesis: Genesis) -> Result<Trusted, timed_core::validators::GenesisError> {
        let set = genesis.validate()?;
        Ok(Trusted {
            hash: genesis.hash(),
            epoch_blocks: genesis.params.epoch_blocks.max(1),
            genesis,
            set,
        })
    }

    fn start(&self) -> Checkpoint {
        Checkpoint {
            genesis_hash: self.hash,
            height: 0,
            block_hash: self.hash,
            timestamp_ms: self.genesis.genesis_time_ms.0,
            set: None,
            set_proven_at: 0,
        }
    }

    fn genesis_set(&self) -> Proven {
        Proven {
            hash: self.set.hash(),
            set: self.set.clone(),
            at: 0,
        }
    }

    /// Whether the sets change after `height` (the last of its epoch).
    fn ends_epoch(&self, height: u64) -> bool {
        height.is_multiple_of(self.epoch_blocks)
    }

    /// Checks the block of height `after.height + 1` under `set`, the proven set of that
    /// height; returns the new checkpoint (its set still `set`'s) and the hash the header names
    /// for the next height. (The chain is checked by `check_structure` and a batch of
    /// certificates, `verify_range`; this is the same, block by block, for the tests.)
    #[cfg(test)]
    fn check(
        &self,
        after: &Checkpoint,
        set: &Proven,
        block: &Block,
        certificate: &Certificate,
        claimed: Option<&str>,
    ) -> Result<(Checkpoint, Hash), Problem> {
        let (checked, named) = self.check_structure(after, set, block, claimed)?;
        certificate
            .verify(
                &set.set,
                &self.genesis.chain_id,
                Height(checked.height),
                &checked.block_hash,
            )
            .map_err(|source| Problem::Certificate {
                source,
                set: set.describe(),
            })?;
        self.check_named(checked.height, set, named)?;
        Ok((checked, named))
    }

    /// Every check of `check` before the certificate's.
    fn check_structure(
        &self,
        after: &Checkpoint,
        set: &Proven,
        block: &Block,
        claimed: Option<&str>,
    ) -> Result<(Checkpoint, Hash), Problem> {
        let h = &block.header;
        let height = after.height + 1;
        if h.chain_id != self.genesis.chain_id {
            return Err(Problem::WrongChain {
                expected: self.genesis.chain_id.clone(),
                got: h.chain_id.clone(),
            });
        }
        if h.height != Height(height) {
            return Err(Problem::WrongHeight {
                expected: height,
                got: h.height.0,
            });
        }
        let computed = block.hash();
        if let Some(c) = claimed
            && !c.eq_ignore_ascii_case(&hex::encode(computed.0))
        {
            return Err(Problem::HashMismatch {
                claimed: c.to_string(),
                computed: hex::encode(computed.0),
            });
        }
        if block::tx_root(&block.txs) != h.tx_root {
            return Err(Problem::TxRootMismatch);
        }
        if h.parent_hash != after.block_hash {
            return Err(Problem::BrokenLink {
                expected: hex::encode(after.block_hash.0),
                got: hex::encode(h.parent_hash.0),
            });
        }
        if h.timestamp <= TimestampMs(after.timestamp_ms) {
            return Err(Problem::TimestampNotAfterParent {
                parent: after.timestamp_ms,
                got: h.timestamp.0,
            });
        }
        if set.set.get(h.proposer).is_none() {
            return Err(Problem::UnknownProposer {
                id: h.proposer.0,
                set: set.describe(),
            });
        }
        Ok((
            Checkpoint {
                genesis_hash: self.hash,
                height,
                block_hash: computed,
                timestamp_ms: h.timestamp.0,
                set: None,
                set_proven_at: set.at,
            },
            h.next_set_hash,
        ))
    }

    /// Once the certificate of `height` holds: what its header names for the next height is
    /// proven, and a change outside an epoch's end breaks the chain's own rule (ADR 0026
    /// point 4).
    fn check_named(&self, height: u64, set: &Proven, named: Hash) -> Result<(), Problem> {
        if !self.ends_epoch(height) && named != set.hash {
            return Err(Problem::SetChangedMidEpoch {
                expected: hex::encode(set.hash.0),
                found: hex::encode(named.0),
                epoch_blocks: self.epoch_blocks,
            });
        }
        Ok(())
    }
}

fn state_error(path: &Path, reason: impl ToString) -> VerifyError {
    VerifyError::State {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The checkpoint of a state file and the proven set of the height after it.
fn load_state(path: &Path, trusted: &Trusted) -> Result<(Checkpoint, Proven), VerifyError> {
    if !path.exists() {
        return Ok((trusted.start(), trusted.genesis_set()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| state_error(path, e))?;
    let c: Checkpoint = serde_json::from_str(&text).map_err(|e| state_error(path, e))?;
    if c.genesis_hash != trusted.hash {
        return Err(state_error(
            path,
            format!(
                "it belongs to genesis {}, not to this genesis {}; give another --state",
                hex::encode(c.genesis_hash.0),
                hex::encode(trusted.hash.0)
            ),
        ));
    }
    let proven = match &c.set {
        Some(members) => {
            let set = ValidatorSet::from_members(members.clone())
                .map_err(|e| state_error(path, format!("its set is not a set: {e}")))?;
            Proven {
                hash: set.hash(),
                set,
                at: c.set_proven_at,
            }
        }
        None if c.height < trusted.epoch_blocks => trusted.genesis_set(),
        None => {
            return Err(state_error(
                path,
                "it was written before sets could change and holds no set for the heights after \
                 it; remove it to verify from height 1",
            ));
        }
    };
    Ok((c, proven))
}

fn save_state(path: &Path, c: &Checkpoint, set: &Proven) -> Result<(), VerifyError> {
    let kept = Checkpoint {
        set: Some(set.set.members()),
        set_proven_at: set.at,
        ..c.clone()
    };
    let text = serde_json::to_string_pretty(&kept).map_err(|e| state_error(path, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| state_error(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| state_error(path, e))
}

pub async fn run(a: VerifyArgs) -> Result<(), VerifyError> {
    let genesis = read_genesis(&a.genesis)?;
    let trusted = Trusted::new(genesis).map_err(|source| GenesisFileError::Invalid {
        path: a.genesis.display().to_string(),
        source,
    })?;
    let url = NodeUrl::parse(&a.node)?;
    let mut client = Client::new(url.clone());
    let (mut at, mut set) = match &a.state {
        Some(p) => load_state(p, &trusted)?,
        None => (trusted.start(), trusted.genesis_set()),
    };
    let target = match a.height {
        Some(h) => h,
        None => {
            let status: Value = client.get("/status").await?;
            status["height"].as_u64().unwrap_or(0)
        }
    };
    if target == 0 {
        return Err(VerifyError::NoBlocks { url: url.shown });
    }
    let first = at.height + 1;
    if target < first {
        println!(
            "verify: heights up to {} were verified before (state file); nothing new up to {target}",
            at.height
        );
        return Ok(());
    }
    let mut hand_overs = 0u64;
    let result = verify_range(
        &trusted,
        &mut client,
        &mut at,
        &mut set,
        &mut hand_overs,
        target,
    )
    .await;
    // Progress is recorded even when a later block fails: what was verified stays verified.
    if let Some(p) = &a.state
        && at.height >= first
    {
        save_state(p, &at, &set)?;
    }
    result?;
    println!(
        "verify: heights {first}..={target} of chain {:?} verified against genesis {} ({} \
         validators at the start, epochs of {} heights): each block hashes to its header, links \
         to its parent and carries a certificate of valid precommit signatures worth a quorum of \
         its height's set; {hand_overs} set changes, each proven by a certificate of the set \
         before; the set of height {} has {} validators (quorum {} of {} stake); last block {}",
        trusted.genesis.chain_id,
        hex::encode(&trusted.hash.0[..8]),
        trusted.set.len(),
        trusted.epoch_blocks,
        target + 1,
        set.set.len(),
        set.set.quorum().0,
        set.set.total_stake().0,
        hex::encode(at.block_hash.0)
    );
    Ok(())
}

/// Blocks asked for per range request (`GET /blocks?from=H&limit=N`; a node answers at most
/// 1,000 and fewer beyond its byte bound).
const RANGE_BLOCKS: u64 = 500;

/// Verifies the blocks after `at` up to `target`, moving `at` and `set` along; returns the
/// last block verified with its certificate (`None` when there was none to verify).
///
/// Blocks are fetched by ranges, and the certificates of a run of blocks under one set are
/// checked in one batch (`block::verify_certificates`) once the rest of each block checked:
/// at the end of a page, before a fault found in a later block is reported, and at a set
/// change. The faults reported, and their order, are those of checking block by block.
async fn verify_range(
    trusted: &Trusted,
    client: &mut Client,
    at: &mut Checkpoint,
    set: &mut Proven,
    hand_overs: &mut u64,
    target: u64,
) -> Result<Option<Decision>, VerifyError> {
    let mut last = None;
    while at.height < target {
        let page = fetch_page(client, at.height + 1, target).await?;
        // Checked but for their certificates, all under `set`.
        let mut batch: Vec<(Checkpoint, Served)> = Vec::new();
        let mut cursor = at.clone();
        for served in page {
            let height = cursor.height + 1;
            if height > target {
                break;
            }
            let checked =
                trusted.check_structure(&cursor, set, &served.block, served.hash.as_deref());
            let (checked, named) = match checked {
                Ok(found) => found,
                Err(problem) => {
                    certify(trusted, set, &mut batch, at, &mut last)?;
                    return Err(VerifyError::Invalid { height, problem });
                }
            };
            cursor = checked.clone();
            batch.push((checked, served));
            if named != set.hash {
                certify(trusted, set, &mut batch, at, &mut last)?;
                let invalid = |problem| VerifyError::Invalid { height, problem };
                trusted.check_named(height, set, named).map_err(invalid)?;
                // An epoch's last height: the hand-over, proven by this certificate; the
                // members come from the node and must hash to what it certified.
                let next = height + 1;
                let answer: Value = client.get(&format!("/validators?height={next}")).await?;
                let members = serde_json::from_value::<ServedSet>(answer)
                    .map_err(|e| {
                        invalid(Problem::UnreadableSet {
                            next,
                            reason: e.to_string(),
                        })
                    })?
                    .validators;
                let new = served_set(next, named, members).map_err(invalid)?;
                *set = Proven {
                    set: new,
                    hash: named,
                    at: height,
                };
                *hand_overs += 1;
            }
        }
        certify(trusted, set, &mut batch, at, &mut last)?;
    }
    Ok(last)
}

/// Checks the certificates of `batch` (blocks checked but for them, all under `set`) in one
/// batch, and moves `at` and `last` to the last block whose certificate holds: the whole batch,
/// or the blocks before the first that fails, which is reported.
fn certify(
    trusted: &Trusted,
    set: &Proven,
    batch: &mut Vec<(Checkpoint, Served)>,
    at: &mut Checkpoint,
    last: &mut Option<Decision>,
) -> Result<(), VerifyError> {
    let checks: Vec<CertificateCheck<'_>> = batch
        .iter()
        .map(|(c, s)| CertificateCheck {
            certificate: &s.certificate,
            set: &set.set,
            height: Height(c.height),
            block_hash: &c.block_hash,
        })
        .collect();
    let verdict = verify_certificates_on_cores(&trusted.genesis.chain_id, &checks);
    let good = match &verdict {
        Ok(()) => batch.len(),
        Err((i, _)) => *i,
    };
    if let Some((checked, served)) = batch.drain(..good).next_back() {
        *at = checked;
        *last = Some(Decision {
            block: served.block,
            certificate: served.certificate,
        });
    }
    match verdict {
        Ok(()) => Ok(()),
        Err((_, source)) => Err(VerifyError::Invalid {
            height: at.height + 1,
            problem: Problem::Certificate {
                source,
                set: set.describe(),
            },
        }),
    }
}

/// Below this many certificates a batch is checked on the calling thread.
const PARALLEL_CERTIFICATES: usize = 32;

/// `block::verify_certificates` with the batch cut into one part per core, checked at once:
/// the same verdict (each signature's own, under the one rule), and the first failure by
/// position is still the one named (a part's failure precedes any of a later part's).
fn verify_certificates_on_cores(
    chain_id: &str,
    checks: &[CertificateCheck<'_>],
) -> Result<(), (usize, CertificateError)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if cores < 2 || checks.len() < PARALLEL_CERTIFICATES {
        return block::verify_certificates(chain_id, checks);
    }
    let part = checks.len().div_ceil(cores);
    let verdicts: Vec<Result<(), (usize, CertificateError)>> = std::thread::scope(|s| {
        let running: Vec<_> = checks
            .chunks(part)
            .map(|c| s.spawn(move || block::verify_certificates(chain_id, c)))
            .collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (k, verdict) in verdicts.into_iter().enumerate() {
        verdict.map_err(|(i, e)| (k * part + i, e))?;
    }
    Ok(())
}

/// The blocks from `from` on (up to `target`, at least one): by one range request, or, when the
/// node gives no range starting at `from` (a pruned node starts at its lowest block), by the
/// block alone, whose answer names what is missing.
async fn fetch_page(
    client: &mut Client,
    from: u64,
    target: u64,
) -> Result<Vec<Served>, VerifyError> {
    let limit = (target - from + 1).min(RANGE_BLOCKS);
    let starts = |page: &[Served]| {
        page.first()
            .is_some_and(|b| b.block.header.height == Height(from))
    };
    if limit > 1 {
        // The wire encoding first (a third of the bytes, nothing to parse but the fields);
        // JSON from a node that does not serve it.
        if let Ok(bytes) = client
            .get_bytes(&format!("/blocks?from={from}&limit={limit}&format=codec"))
            .await
            && let Some(page) = decode_codec_page(&bytes)
            && starts(&page)
        {
            return Ok(page);
        }
        if let Ok(page) = client
            .get::<ServedPage>(&format!("/blocks?from={from}&limit={limit}"))
            .await
            && starts(&page.blocks)
        {
            return Ok(page.blocks);
        }
    }
    let height = from;
    let value: Value = match client.get(&format!("/blocks/{height}")).await {
        Ok(v) => v,
        Err(ClientError::Status { status: 404, .. }) => {
            let status = client.get::<Value>("/status").await.ok();
            let field = |name: &str| status.as_ref().and_then(|s| s[name].as_u64());
            let (tip, lowest) = (field("height").unwrap_or(0), field("lowest_height"));
            return Err(if let Some(lowest) = lowest.filter(|l| height < *l) {
                VerifyError::Pruned {
                    url: client.url().shown.clone(),
                    height,
                    lowest,
                }
            } else if tip < target {
                VerifyError::BeyondTip {
                    url: client.url().shown.clone(),
                    asked: target,
                    tip,
                }
            } else {
                VerifyError::Missing {
                    url: client.url().shown.clone(),
                    height,
                }
            });
        }
        Err(e) => return Err(e.into()),
    };
    let served: Served = serde_json::from_value(value).map_err(|e| VerifyError::Malformed {
        height,
        reason: e.to_string(),
    })?;
    Ok(vec![served])
}

/// The block of height `target` with its certificate, verified as `timed verify` verifies a
/// chain: every block from the genesis (or from the checkpoint of `state`, which then records
/// the progress) up to it. Its header's fields are then facts, as far as the genesis is
/// trusted: a light client's root for a proof (`timed wallet balance --verify`), or a state
/// sync's (`node::statesync`). Returns the block and how many blocks were verified for it.
pub async fn verified_block(
    genesis: &Genesis,
    state: Option<&Path>,
    client: &mut Client,
    target: u64,
) -> Result<(Decision, u64), VerifyError> {
    // Validated when it was read (`read_genesis`).
    let trusted = Trusted::new(genesis.clone()).map_err(|source| GenesisFileError::Invalid {
        path: "the genesis".into(),
        source,
    })?;
    let (mut at, mut set) = match state {
        Some(p) => load_state(p, &trusted)?,
        None => (trusted.start(), trusted.genesis_set()),
    };
    if target == 0 {
        return Err(VerifyError::NoBlocks {
            url: client.url().shown.clone(),
        });
    }
    if at.height > target {
        return Err(VerifyError::Behind {
            url: client.url().shown.clone(),
            height: target,
            verified: at.height,
        });
    }
    let first = at.height;
    let mut hand_overs = 0;
    let result = verify_range(&trusted, client, &mut at, &mut set, &mut hand_overs, target).await;
    if let Some(p) = state
        && at.height > first
    {
        save_state(p, &at, &set)?;
    }
    if let Some(last) = result? {
        return Ok((last, at.height - first));
    }
    // Verified before (the state file stops at `target`): the block served now must be that one.
    let served: Served = serde_json::from_value(client.get(&format!("/blocks/{target}")).await?)
        .map_err(|e| VerifyError::Malformed {
            height: target,
            reason: e.to_string(),
        })?;
    let computed = served.block.hash();
    if computed != at.block_hash {
        return Err(VerifyError::Invalid {
            height: target,
            problem: Problem::HashMismatch {
                claimed: hex::encode(computed.0),
                computed: hex::encode(at.block_hash.0),
            },
        });
    }
    Ok((
        Decision {
            block: served.block,
            certificate: served.certificate,
        },
        0,
    ))
}

#[cfg(test)]
mod tests {
    use timed_core::block::{Header, tx_root};
    use timed_core::crypto::Keypair;
    use timed_core::message::{Vote, VoteKind};
    use timed_core::types::{Round, ValidatorIndex};

    use super::*;

    const CHAIN: &str = "light";

    fn chain() -> (Trusted, Vec<Keypair>, Block) {
        let (keys, genesis) = crate::node::driver::test_genesis(CHAIN);
        let trusted = Trusted::new(genesis.clone()).unwrap();
        let block = Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: Height(1),
                parent_hash: genesis.hash(),
                timestamp: TimestampMs(1_000),
                proposer: ValidatorIndex(0),
                tx_root: tx_root(&[]),
                state_root: Hash::ZERO,
                next_set_hash: trusted.set.hash(),
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs: vec![],
            evidence: Vec::new(),
        };
        (trusted, keys, block)
    }

    /// Validator `i`'s precommit for `block`, with `EIGHT_TORSION[torsion]` in its `R` (0: none).
    fn precommit(keys: &[Keypair], i: usize, block: &Block, torsion: u8) -> Vote {
        let validator = ValidatorIndex(i as u16);
        let signature = keys[i].sign_with_torsion(
            VoteKind::Precommit.domain(),
            CHAIN,
            &Vote::signed_fields(Height(1), Round(0), Some(block.hash()), validator),
            torsion,
        );
        Vote {
            height: Height(1),
            round: Round(0),
            kind: VoteKind::Precommit,
            block: Some(block.hash()),
            validator,
            signature,
        }
    }

    /// A validator that signs its precommits with a small-order component in `R`: the node
    /// accepted each of them alone (`Vote::verify`), so the light client must accept the
    /// certificate holding them, wherever they sit in it.
    #[test]
    fn a_certificate_with_torsioned_precommits_verifies_as_its_votes_do() {
        let (trusted, keys, block) = chain();
        let set = trusted.genesis.validate().unwrap();
        for torsion in 1..8u8 {
            for byzantine in 0..4 {
                let votes: Vec<Vote> = (0..4)
                    .map(|i| precommit(&keys, i, &block, if i == byzantine { torsion } else { 0 }))
                    .collect();
                assert!(votes.iter().all(|v| v.verify(&set, CHAIN).is_ok()));
                let cert = Certificate::from_precommits(Height(1), Round(0), block.hash(), &votes);
                let start = (trusted.start(), trusted.genesis_set());
                let checked = trusted.check(&start.0, &start.1, &block, &cert, None);
                assert!(checked.is_ok(), "t{torsion} at {byzantine}: {checked:?}");
                // A bit flipped beside it is still a forgery.
                let mut forged = cert.clone();
                forged.signatures[(byzantine + 1) % 4].signature.0[40] ^= 2;
                assert!(matches!(
                    trusted.check(&start.0, &start.1, &block, &forged, None),
                    Err(Problem::Certificate {
                        source: CertificateError::BadSignature,
                        ..
                    })
                ));
            }
        }
    }

    /// A header that names another set at a height that does not end an epoch breaks the
    /// chain's rule even under a valid certificate; at an epoch's end the named hash is returned
    /// for the hand-over.
    #[test]
    fn a_set_change_is_accepted_only_at_an_epochs_last_height() {
        let (mut trusted, keys, mut block) = chain();
        block.header.next_set_hash = Hash([7; 32]);
        let votes: Vec<Vote> = (0..4).map(|i| precommit(&keys, i, &block, 0)).collect();
        let cert = Certificate::from_precommits(Height(1), Round(0), block.hash(), &votes);
        let start = (trusted.start(), trusted.genesis_set());
        let e = trusted
            .check(&start.0, &start.1, &block, &cert, None)
            .unwrap_err();
        assert!(matches!(e, Problem::SetChangedMidEpoch { .. }), "{e}");
        trusted.epoch_blocks = 1;
        let (_, named) = trusted
            .check(&start.0, &start.1, &block, &cert, None)
            .unwrap();
        assert_eq!(named, Hash([7; 32]));
    }

    /// Members whose hash is not the certified one are refused, naming both hashes; matching
    /// ones form the new set.
    #[test]
    fn served_members_must_hash_to_the_certified_set() {
        let (trusted, _, _) = chain();
        let members = trusted.set.members();
        let certified = members_hash(&members);
        assert!(served_set(11, certified, members.clone()).is_ok());
        let mut lie = members;
        lie[0].stake = timed_core::types::Stake(1_000);
        let found = members_hash(&lie);
        let e = served_set(11, certified, lie).unwrap_err().to_string();
        assert!(e.contains("height 10 names set"), "{e}");
        assert!(e.contains(&hex::encode(certified.0)), "{e}");
        assert!(e.contains(&hex::encode(found.0)), "{e}");
    }
}
