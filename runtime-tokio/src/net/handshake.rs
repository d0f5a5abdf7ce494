//! The hello exchange, and how a development network fixes its genesis.
//!
//! Every connection starts with both sides' `Hello` (name, key, stake, block time, genesis if
//! fixed). The TLS layer has already proven that the peer holds the key of its certificate; the
//! hello must name that same key.
//!
//! **With a genesis** (a genesis file, or one fixed earlier and read from the data directory) the
//! TLS layer admits only keys of the validator sets the chain admits now (`net::members`: the
//! current and next sets, and the one that just left during its grace), and a hello is accepted
//! when the peer's genesis is the same (same hash). The peer's id is its registration number,
//! looked up by its key. A peer without a genesis yet (a dev node still forming one) may adopt
//! ours.
//!
//! **Dev mode, before the genesis** (`timed --validator-id … --peers … --stake …`): `host:port`
//! says nothing about who listens there, so no key can be pinned before the first contact. Dev keys
//! are derived from names (`Keypair::insecure_from_name`), so a hello is checked for consistency
//! instead: its key must be the dev key of its name, and its block time must equal ours. The node
//! records each validator heard from; once it has heard from as many distinct validators as it has
//! `--peers`, it forms the genesis: those validators and itself sorted by name, chain id
//! `timed-devnet`, genesis time 0, our block time. Every node of a fully meshed configuration
//! forms the same genesis. It is written to `<data-dir>/genesis.json` and never changes; the TLS
//! policy then admits its keys, and the sets the chain elects after it. A peer whose genesis
//! differs is refused with both hashes in the reason.
//! Nothing here is secure — anyone knowing the names knows the keys — and the node says so.

use std::path::Path;
use std::sync::Arc;

use timed_core::crypto::{Keypair, PublicKey};
use timed_core::types::{TimestampMs, ValidatorIndex};
use timed_core::validators::{ConsensusParams, Genesis, GenesisValidator};
use tracing::info;

use crate::net::members::Members;
use crate::net::wire::{HELLO_VERSION, Hello, HelloGenesis};
use crate::node::ctx::{Chain, Ctx, Role, lock};

/// What the hello exchange concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same genesis on both sides: exchange consensus messages with validator `index`.
    Ready(ValidatorIndex),
    /// Same genesis, and the peer is no validator this node admits (or this node is a full
    /// node): it may follow the chain from here (`net::followers`), while there is room.
    Follower,
    /// One side has no genesis yet; redial once ours is fixed.
    Pending,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisFileError {
    #[error("cannot read genesis file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("genesis file {path} is not valid JSON for a genesis: {reason}")]
    Parse { path: String, reason: String },
    #[error("genesis file {path} is invalid: {source}")]
    Invalid {
        path: String,
        source: timed_core::validators::GenesisError,
    },
    #[error("cannot write genesis file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub fn read_genesis(path: &Path) -> Result<Genesis, GenesisFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| GenesisFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let genesis: Genesis = serde_json::from_str(&text).map_err(|e| GenesisFileError::Parse {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    genesis
        .validate()
        .map_err(|source| GenesisFileError::Invalid {
            path: shown,
            source,
        })?;
    Ok(genesis)
}

/// Writes a genesis file atomically (temporary file, fsync, rename).
pub fn write_genesis(path: &Path, genesis: &Genesis) -> Result<(), GenesisFileError> {
    use std::io::Write;
    let shown = path.display().to_string();
    let err = |source| GenesisFileError::Write {
        path: shown.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(genesis).expect("a genesis serializes");
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The least bond of a development genesis, in base units: the default `--stake`, so that a
/// validator joining a devnet with the minimum (`timed devnet join`) weighs what each genesis
/// validator weighs, instead of the real default (1,000 TIME) that would outweigh them all.
pub const DEV_MIN_BOND: timed_core::types::Amount = timed_core::types::Amount(100);

/// The parameters of a development genesis: the defaults, with the block time given, the
/// development minimum bond, and `epoch_blocks` if given (then the shortest unbonding period
/// the genesis allows, two epochs).
pub fn dev_params(block_time_ms: u64, epoch_blocks: Option<u64>) -> ConsensusParams {
    let defaults = ConsensusParams::default();
    let (epoch_blocks, unbonding_blocks) = match epoch_blocks {
        Some(e) => (e, e.saturating_mul(2)),
        None => (defaults.epoch_blocks, defaults.unbonding_blocks),
    };
    ConsensusParams {
        block_time_ms,
        min_bond: DEV_MIN_BOND,
        epoch_blocks,
        unbonding_blocks,
        ..defaults
    }
}

/// The genesis of a development network from the validators that said hello.
pub fn dev_genesis(
    chain_id: &str,
    params: ConsensusParams,
    members: impl IntoIterator<Item = (String, PublicKey, timed_core::types::Stake)>,
) -> Genesis {
    let mut validators: Vec<GenesisValidator> = members
        .into_iter()
        .map(|(name, public_key, stake)| GenesisValidator {
            name,
            public_key,
            stake,
            address: None,
        })
        .collect();
    validators.sort_by(|a, b| a.name.cmp(&b.name));
    Genesis {
        chain_id: chain_id.to_string(),
        genesis_time_ms: TimestampMs(0),
        validators,
        balances: vec![],
        params,
    }
}

/// Fixes the genesis of this node: written to the data directory (unless `already_on_disk`),
/// bound to the store, pinned in the TLS policy, published to every task.
pub fn fix_genesis(ctx: &Ctx, genesis: Genesis, already_on_disk: bool) -> Result<(), String> {
    let chain = Chain::new(genesis).map_err(|e| format!("invalid genesis: {e}"))?;
    if !already_on_disk {
        write_genesis(&ctx.data_dir.join("genesis.json"), &chain.genesis)
            .map_err(|e| e.to_string())?;
    }
    ctx.store
        .bind_genesis(&chain.genesis)
        .map_err(|e| e.to_string())?;
    // The genesis set until the consensus loop publishes the sets of its ledger (a restart
    // resumes with them at once: `Driver::new`).
    let addresses = chain
        .genesis
        .validators
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((ValidatorIndex(i as u16), v.address.clone()?)))
        .collect();
    ctx.policy.follow(Members::genesis(&chain.set, addresses));
    let names: Vec<&str> = chain
        .genesis
        .validators
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    info!(
        genesis = %hex::encode(chain.hash.0),
        chain_id = %chain.genesis.chain_id,
        validators = %names.join(","),
        total_stake = chain.set.total_stake().0,
        "Genesis fixed"
    );
    ctx.chain.send_replace(Some(Arc::new(chain)));
    Ok(())
}

fn short(h: &[u8]) -> String {
    hex::encode(&h[..8.min(h.len())])
}

/// Checks a peer's hello (its key proven by TLS) and moves the genesis formation along.
/// `Err` is the reason the connection is refused, sent to the peer and logged.
pub fn on_hello(ctx: &Ctx, peer: &Hello, tls_key: PublicKey) -> Result<Verdict, String> {
    if peer.version != HELLO_VERSION {
        return Err(format!(
            "hello version {} is not supported (this node speaks {HELLO_VERSION})",
            peer.version
        ));
    }
    if peer.public_key != tls_key {
        return Err("the hello names a key other than the TLS certificate's".into());
    }
    if peer.public_key == ctx.key.public_key() {
        return Err("this is my own key: a node connected to itself".into());
    }
    // Serialize genesis formation: one hello at a time decides.
    let mut known = lock(&ctx.known);
    if let Some(chain) = ctx.chain() {
        return match &peer.genesis {
            Some(g) if g.hash() != chain.hash => Err(format!(
                "genesis mismatch: {} runs genesis {} ({}) but this node \
                 ({}) runs genesis {} (chain {:?}, {} validators); the nodes were started with \
                 different --peers/--stake/--block-time/--epoch-blocks or one data directory \
                 holds an old genesis: remove the wrong one's genesis.json and timed.redb",
                peer.name,
                short(&g.hash().0),
                match g {
                    HelloGenesis::Whole(g) =>
                        format!("chain {:?}, {} validators", g.chain_id, g.validators.len()),
                    HelloGenesis::Hash(_) => "too large to send whole".to_string(),
                },
                ctx.name,
                short(&chain.hash.0),
                chain.genesis.chain_id,
                chain.genesis.validators.len(),
            )),
            _ if ctx.role == Role::FullNode => follower(ctx, peer, &chain),
            _ => {
                // Attributed by key through the registry (ids are registration numbers), and
                // only while the key belongs to a set admitted now (TLS asked the same a moment
                // ago; the sets may have moved since).
                let members = ctx.policy.members();
                let Some((index, members)) = members
                    .as_ref()
                    .and_then(|m| Some((m.admitted(&peer.public_key)?, m)))
                else {
                    return follower(ctx, peer, &chain).map_err(|why| {
                        format!(
                            "{} is not a validator of the current or next set of genesis {},                              and cannot follow here: {why}",
                            peer.name,
                            short(&chain.hash.0)
                        )
                    });
                };
                // A genesis validator's name is fixed by the genesis, and checked; one that
                // registered later may run under another (`timed run` names a node from the
                // genesis file, which does not know it): its registered name is what is shown.
                let registered = members.name(index).unwrap_or("?");
                if index.as_usize() < chain.genesis.validators.len() && registered != peer.name {
                    return Err(format!(
                        "the key of {:?} belongs to {:?} in genesis {}",
                        peer.name,
                        registered,
                        short(&chain.hash.0)
                    ));
                }
                if peer.genesis.is_some() {
                    Ok(Verdict::Ready(index))
                } else {
                    Ok(Verdict::Pending)
                }
            }
        };
    }
    let Some(dev) = &ctx.dev else {
        return Err("this node has no genesis".into());
    };
    if peer.public_key != Keypair::insecure_from_name(&peer.name).public_key() {
        return Err(format!(
            "dev mode: the key of {:?} is not the development key derived from its id",
            peer.name
        ));
    }
    if peer.block_time_ms != dev.block_time_ms {
        return Err(format!(
            "{} runs with --block-time {} ms, this node ({}) with {} ms; every validator of a \
             network must use the same block time",
            peer.name, peer.block_time_ms, ctx.name, dev.block_time_ms
        ));
    }
    if let Some(HelloGenesis::Hash(h)) = &peer.genesis {
        return Err(format!(
            "{} runs genesis {}, too large to travel in a hello: start this node with the \
             chain's genesis file (--genesis)",
            peer.name,
            short(&h.0)
        ));
    }
    if let Some(HelloGenesis::Whole(g)) = &peer.genesis {
        let me = g
            .validators
            .iter()
            .find(|v| v.public_key == ctx.key.public_key());
        return match me {
            Some(v) if v.name == ctx.name && v.stake == dev.stake => {
                info!(peer = %peer.name, "Adopting the genesis of a peer that already fixed it");
                fix_genesis(ctx, g.clone(), false)?;
                Ok(Verdict::Pending)
            }
            _ => Err(format!(
                "{} runs genesis {} which does not list this node as {} with stake {}; \
                 fix --peers/--stake, or remove the peers' data directories to form a new genesis",
                peer.name,
                short(&g.hash().0),
                ctx.name,
                dev.stake
            )),
        };
    }
    match known.get(&peer.name) {
        Some((key, stake)) if *key != peer.public_key || *stake != peer.stake => {
            return Err(format!(
                "{} said hello before with another key or stake ({stake}, now {})",
                peer.name, peer.stake
            ));
        }
        Some(_) => {}
        None => {
            info!(peer = %peer.name, stake = peer.stake.0, "Validator said hello");
            known.insert(peer.name.clone(), (peer.public_key, peer.stake));
        }
    }
    if known.len() > dev.expected_peers {
        let mut genesis = dev_genesis(
            &dev.chain_id,
            dev.params(),
            known.iter().map(|(n, (k, s))| (n.clone(), *k, *s)),
        );
        genesis.balances = dev.balances.clone();
        drop(known);
        fix_genesis(ctx, genesis, false)?;
    } else {
        warn_waiting(ctx, known.len() - 1, dev.expected_peers);
    }
    Ok(Verdict::Pending)
}

/// A peer that is no validator here may follow the chain: if its hello carries our genesis
/// (checked by the caller when present) and there is room (`--max-followers`).
fn follower(ctx: &Ctx, peer: &Hello, chain: &Chain) -> Result<Verdict, String> {
    if peer.genesis.is_none() {
        return Err(format!(
            "{} has no genesis: a full node is started with the chain's genesis file ({})",
            peer.name,
            short(&chain.hash.0)
        ));
    }
    ctx.followers.room_for_one().map(|()| Verdict::Follower)
}

/// The dialer's verdict. The acceptor judges the hello the dialer *sent*: `Ready` only if it
/// carried the genesis. The dialer judges the acceptor's reply, but its own genesis may have been
/// fixed while the hellos crossed (another peer's hello completed it): then the acceptor saw no
/// genesis from us and concluded `Pending` — it waits for us to close and redial, and reads
/// nothing on this connection. So a dialer whose hello carried no genesis is never `Ready`; were
/// it, its messages would go into a connection the peer never reads (a link dead until restart,
/// measured as 3–5 s stalls of a devnet at block time 0 whenever that link was needed).
pub fn dialer_verdict(sent_genesis: bool, verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Ready(_) if !sent_genesis => Verdict::Pending,
        v => v,
    }
}

fn warn_waiting(ctx: &Ctx, heard: usize, expected: usize) {
    info!(
        node = %ctx.name,
        "Forming the genesis: heard from {heard} of {expected} peers"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::types::Stake;

    #[test]
    fn a_dialer_whose_hello_had_no_genesis_is_never_ready() {
        let i = ValidatorIndex(1);
        assert_eq!(dialer_verdict(false, Verdict::Ready(i)), Verdict::Pending);
        assert_eq!(dialer_verdict(true, Verdict::Ready(i)), Verdict::Ready(i));
        assert_eq!(dialer_verdict(true, Verdict::Pending), Verdict::Pending);
        assert_eq!(dialer_verdict(false, Verdict::Pending), Verdict::Pending);
    }

    #[test]
    fn dev_genesis_is_independent_of_hello_order() {
        let v = |n: &str| {
            (
                n.to_string(),
                Keypair::insecure_from_name(n).public_key(),
                Stake(100),
            )
        };
        let a = dev_genesis(
            "timed-devnet",
            dev_params(8000, None),
            [v("validator2"), v("validator1"), v("validator3")],
        );
        let b = dev_genesis(
            "timed-devnet",
            dev_params(8000, None),
            [v("validator3"), v("validator2"), v("validator1")],
        );
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.validators[0].name, "validator1");
    }
}
