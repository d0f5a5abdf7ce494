//! `timed verify`: a light client. It trusts a genesis file and nothing else — not the node it
//! asks — and checks the node's chain block by block (`GET /blocks/{h}`):
//!
//! - the header is of this chain (chain id) and of the height asked for;
//! - the block's hash is the hash of its header (a hash the node claims beside it must match),
//!   and the header's `tx_root` commits to the transactions served with it;
//! - the header links to the previous block's hash (the genesis hash for height 1) and its
//!   timestamp is after the previous one's; its proposer is a validator of the genesis;
//! - the certificate proves the block final: `timed_core::block::Certificate::verify` against the
//!   genesis validator set (known signers in order, a quorum of stake, every precommit signature
//!   valid, checked as one batch).
//!
//! With `--state FILE` the last verified height and hash are kept in a small JSON file: a later
//! run resumes from there (and checks the first new block links to it). Without it every run
//! starts at height 1.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use timed_core::block::{self, Block, Certificate, CertificateError};
use timed_core::types::{Hash, Height, TimestampMs};
use timed_core::validators::{Genesis, ValidatorSet};

use crate::net::handshake::{GenesisFileError, read_genesis};
use crate::tools::client::{Client, ClientError, NodeUrl};

#[derive(Args)]
pub struct VerifyArgs {
    /// The genesis file of the chain: its validators are the only thing trusted.
    #[arg(long)]
    genesis: PathBuf,
    /// A node's HTTP API, e.g. http://127.0.0.1:8001.
    #[arg(long)]
    node: String,
    /// Verify up to this height [default: the node's latest finalized height].
    #[arg(long)]
    height: Option<u64>,
    /// A state file (JSON: genesis hash, last verified height and block hash). A run starts
    /// after the height recorded there and records its progress; without --state every run
    /// starts at height 1 and records nothing.
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
    #[error("block {height}: the node's answer is not a block with a certificate: {reason}")]
    Malformed { height: u64, reason: String },
    #[error("block {height}: {problem}")]
    Invalid { height: u64, problem: Problem },
}

/// What is wrong with a block the node served.
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
    #[error("its proposer (validator index {0}) is not in the genesis")]
    UnknownProposer(u16),
    #[error("{}: {source}", certificate_kind(.source))]
    Certificate { source: CertificateError },
}

fn certificate_kind(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::NoQuorum { .. } => "short certificate",
        CertificateError::BadSignature => "forged certificate",
        CertificateError::WrongBlock { .. } => "certificate of another block",
        CertificateError::WrongHeight { .. } => "certificate of another height",
        CertificateError::Unordered | CertificateError::UnknownValidator(_) => {
            "malformed certificate"
        }
    }
}

/// The last verified block, as kept in the state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Checkpoint {
    genesis_hash: Hash,
    height: u64,
    block_hash: Hash,
    timestamp_ms: u64,
}

/// What `/blocks/{h}` serves that a light client reads.
#[derive(Deserialize)]
struct Served {
    block: Block,
    certificate: Certificate,
    #[serde(default)]
    hash: Option<String>,
}

/// The genesis and what is derived from it.
pub struct Trusted {
    genesis: Genesis,
    hash: Hash,
    set: ValidatorSet,
}

impl Trusted {
    pub fn new(genesis: Genesis) -> Result<Trusted, timed_core::validators::GenesisError> {
        let set = genesis.validate()?;
        Ok(Trusted {
            hash: genesis.hash(),
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
        }
    }

    /// Checks the block of height `after.height + 1`; returns the new checkpoint.
    fn check(
        &self,
        after: &Checkpoint,
        block: &Block,
        certificate: &Certificate,
        claimed: Option<&str>,
    ) -> Result<Checkpoint, Problem> {
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
        if self.set.get(h.proposer).is_none() {
            return Err(Problem::UnknownProposer(h.proposer.0));
        }
        certificate
            .verify(&self.set, &self.genesis.chain_id, Height(height), &computed)
            .map_err(|source| Problem::Certificate { source })?;
        Ok(Checkpoint {
            genesis_hash: self.hash,
            height,
            block_hash: computed,
            timestamp_ms: h.timestamp.0,
        })
    }
}

fn state_error(path: &Path, reason: impl ToString) -> VerifyError {
    VerifyError::State {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn load_state(path: &Path, trusted: &Trusted) -> Result<Checkpoint, VerifyError> {
    if !path.exists() {
        return Ok(trusted.start());
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
    Ok(c)
}

fn save_state(path: &Path, c: &Checkpoint) -> Result<(), VerifyError> {
    let text = serde_json::to_string_pretty(c).map_err(|e| state_error(path, e))?;
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
    let mut at = match &a.state {
        Some(p) => load_state(p, &trusted)?,
        None => trusted.start(),
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
    let result = verify_range(&trusted, &mut client, &mut at, target).await;
    // Progress is recorded even when a later block fails: what was verified stays verified.
    if let Some(p) = &a.state
        && at.height >= first
    {
        save_state(p, &at)?;
    }
    result?;
    println!(
        "verify: heights {first}..={target} of chain {:?} verified against genesis {} ({} \
         validators, quorum {} of {} stake): each block hashes to its header, links to its \
         parent and carries a certificate of valid precommit signatures worth a quorum; last \
         block {}",
        trusted.genesis.chain_id,
        hex::encode(&trusted.hash.0[..8]),
        trusted.set.len(),
        trusted.set.quorum().0,
        trusted.set.total_stake().0,
        hex::encode(at.block_hash.0)
    );
    Ok(())
}

async fn verify_range(
    trusted: &Trusted,
    client: &mut Client,
    at: &mut Checkpoint,
    target: u64,
) -> Result<(), VerifyError> {
    while at.height < target {
        let height = at.height + 1;
        let value: Value = match client.get(&format!("/blocks/{height}")).await {
            Ok(v) => v,
            Err(ClientError::Status { status: 404, .. }) => {
                let tip = client
                    .get::<Value>("/status")
                    .await
                    .ok()
                    .and_then(|s| s["height"].as_u64())
                    .unwrap_or(0);
                return Err(if tip < target {
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
        *at = trusted
            .check(
                at,
                &served.block,
                &served.certificate,
                served.hash.as_deref(),
            )
            .map_err(|problem| VerifyError::Invalid { height, problem })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use timed_core::block::{Header, tx_root};
    use timed_core::crypto::Keypair;
    use timed_core::message::{Vote, VoteKind};
    use timed_core::types::{Round, ValidatorIndex};
    use timed_core::validators::insecure_dev_validators;

    use super::*;

    const CHAIN: &str = "light";

    fn chain() -> (Trusted, Vec<Keypair>, Block) {
        let (keys, validators) = insecure_dev_validators(&[100; 4]);
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: Default::default(),
        };
        let block = Block {
            header: Header {
                chain_id: CHAIN.into(),
                height: Height(1),
                parent_hash: genesis.hash(),
                timestamp: TimestampMs(1_000),
                proposer: ValidatorIndex(0),
                tx_root: tx_root(&[]),
                state_root: Hash::ZERO,
                next_set_hash: Hash::ZERO,
                evidence_root: timed_core::block::evidence_root(&[]),
            },
            txs: vec![],
            evidence: Vec::new(),
        };
        (Trusted::new(genesis).unwrap(), keys, block)
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
                let checked = trusted.check(&trusted.start(), &block, &cert, None);
                assert!(checked.is_ok(), "t{torsion} at {byzantine}: {checked:?}");
                // A bit flipped beside it is still a forgery.
                let mut forged = cert.clone();
                forged.signatures[(byzantine + 1) % 4].signature.0[40] ^= 2;
                assert!(matches!(
                    trusted.check(&trusted.start(), &block, &forged, None),
                    Err(Problem::Certificate {
                        source: CertificateError::BadSignature
                    })
                ));
            }
        }
    }
}
