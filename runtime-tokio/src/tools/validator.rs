//! `timed validator register|bond|unbond`: the staking operations (ADR 0026) from the command
//! line, signed by the owner account's key file and submitted to a node's HTTP API as
//! `timed wallet send` does (`wallet::submit`: the nonce from `/accounts`, `POST /tx`, then
//! `/tx/{hash}` polled until finalized).
//!
//! Before submitting, the operation is checked against the node's staking state
//! (`POST /validators/check`): an operation that breaks a staking rule is otherwise admitted,
//! and refused only in its block, where it still costs its fee. So a bond below the minimum, a
//! key registered before or an owner that is not the registration's stops here with the node's
//! reason (`StakingError`'s message). The check is advice (an operation pending before it may
//! change the verdict); after finalization the block's outcome is read, and an operation the
//! block refused (`staking_refused`) is reported as such, with the reason the node gives then.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use timed_core::crypto::PublicKey;
use timed_core::tx::{MAX_ADDRESS_BYTES, MAX_NAME_BYTES, Op, Transfer};
use timed_core::types::Amount;

use crate::amount::{format_time, parse_time};
use crate::keys;
use crate::tools::client::{Client, ClientError, NodeUrl};
use crate::tools::wallet::{WalletError, submit};

/// What `timed validator --help` (and each of its commands' `--help`) explains.
pub const ABOUT: &str = "Register a validator, or change its bond, with a staking transfer.\n\n\
    A staking transfer is signed by the OWNER account (--key, a wallet key file): the account \
    that pays the bond, may change it later, and receives the validator's rewards and its \
    unbonded stake. The validator's own key (--validator or --validator-key) only signs blocks.\n\n\
    Rules (the genesis fixes the numbers; `GET /validators` shows them under params):\n  \
    - a registration bonds at least min_bond; a key registers once, a name is taken once;\n  \
    - only the owner may bond or unbond; an unbond leaves nothing or at least min_bond;\n  \
    - the set changes at epoch ends (epoch_blocks heights each): a change made in epoch e \
    signs from epoch e + 2 (one epoch of notice), if its bond is among the max_validators \
    largest;\n  \
    - unbonded stake returns to the owner after unbonding_blocks heights (it stays slashable \
    until then).\n\n\
    Each command checks the operation against the node's staking state first (a staking \
    transfer that breaks a rule would still cost its fee), submits it, waits until it is \
    finalized and says when it takes effect.";

#[derive(Args)]
pub struct ValidatorArgs {
    #[command(subcommand)]
    command: ValidatorCommand,
}

#[derive(Subcommand)]
enum ValidatorCommand {
    /// Register a validator key with a name, an address and a first bond (at least min_bond).
    #[command(long_about = ABOUT)]
    Register(RegisterArgs),
    /// Bond more stake to a validator this account owns.
    #[command(long_about = ABOUT)]
    Bond(ChangeArgs),
    /// Unbond stake from a validator this account owns; it returns after unbonding_blocks.
    #[command(long_about = ABOUT)]
    Unbond(ChangeArgs),
}

/// What every staking command needs: the owner, the node, the fee and the wait.
#[derive(Args)]
struct Common {
    /// The owner account's key file (as `timed wallet new` writes): it signs and pays.
    #[arg(long)]
    key: PathBuf,
    /// A node's HTTP API, e.g. http://127.0.0.1:8001.
    #[arg(long)]
    node: String,
    /// Fee in TIME, at most 8 decimals.
    #[arg(long, default_value = "0.001", allow_hyphen_values = true)]
    fee: String,
    /// How long to wait for finalization.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    timeout: Duration,
}

/// The validator an operation is about: its public key, given or read from its key file.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// The validator's public key (64 hex digits, as `timed keygen` prints).
    #[arg(long)]
    validator: Option<String>,
    /// The validator's key file (only its public key is read).
    #[arg(long)]
    validator_key: Option<PathBuf>,
}

#[derive(Args)]
struct RegisterArgs {
    #[command(flatten)]
    target: Target,
    /// Its name, 1 to 32 bytes, unique on the chain.
    #[arg(long)]
    name: String,
    /// Where its peers reach it, HOST:PORT, at most 64 bytes.
    #[arg(long)]
    address: String,
    /// The first bond in TIME (at least the chain's min_bond).
    #[arg(long, allow_hyphen_values = true)]
    bond: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ChangeArgs {
    #[command(flatten)]
    target: Target,
    /// The amount in TIME.
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Node(#[from] ClientError),
    #[error("--{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("the node refused the {op} ({reason}): {message}")]
    Refused {
        op: &'static str,
        reason: String,
        message: String,
    },
    #[error(
        "the {op} was finalized at height {height} (transfer {hash}) but refused by the staking \
         rules there; its fee was paid and nothing else changed: {why}"
    )]
    RefusedInBlock {
        op: &'static str,
        height: u64,
        hash: String,
        why: String,
    },
}

fn flag(flag: &'static str, reason: impl ToString) -> ValidatorError {
    ValidatorError::Flag {
        flag,
        reason: reason.to_string(),
    }
}

fn parse_amount(name: &'static str, text: &str) -> Result<Amount, ValidatorError> {
    let a = parse_time(text).map_err(|e| flag(name, e))?;
    if a.0 == 0 {
        return Err(flag(name, "must be more than zero"));
    }
    Ok(a)
}

impl Target {
    fn key(&self) -> Result<PublicKey, ValidatorError> {
        match (&self.validator, &self.validator_key) {
            (Some(hex), _) => keys::parse_public_key(hex).ok_or_else(|| {
                flag(
                    "validator",
                    format!("{hex:?} is not a public key: 64 hex digits"),
                )
            }),
            (None, Some(file)) => Ok(keys::load(file)?.public_key()),
            // clap requires one of the two.
            (None, None) => Err(flag("validator", "give --validator or --validator-key")),
        }
    }
}

/// A registration's name and address within the transfer's bounds (the node refuses others as
/// malformed, `TxError::BadRegistration`).
fn registration(name: &str, address: &str) -> Result<Op, ValidatorError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(flag(
            "name",
            format!(
                "{name:?} is {} bytes: a name is 1 to {MAX_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(flag(
            "address",
            format!(
                "{} bytes: an address is at most {MAX_ADDRESS_BYTES}",
                address.len()
            ),
        ));
    }
    let address = crate::net::addr::peer_address(address).map_err(|e| flag("address", e))?;
    Ok(Op::Register {
        name: name.to_string(),
        address,
    })
}

pub async fn run(a: ValidatorArgs) -> Result<(), ValidatorError> {
    let (target, op, amount, common) = match a.command {
        ValidatorCommand::Register(r) => {
            let op = registration(&r.name, &r.address)?;
            (r.target, op, parse_amount("bond", &r.bond)?, r.common)
        }
        ValidatorCommand::Bond(c) => (
            c.target,
            Op::Bond,
            parse_amount("amount", &c.amount)?,
            c.common,
        ),
        ValidatorCommand::Unbond(c) => (
            c.target,
            Op::Unbond,
            parse_amount("amount", &c.amount)?,
            c.common,
        ),
    };
    let validator = target.key()?;
    let fee = parse_time(&common.fee).map_err(|e| flag("fee", e))?;
    let owner = keys::load(&common.key)?;
    let mut client = Client::new(NodeUrl::parse(&common.node)?);
    let label = op.label();
    let draft = Transfer {
        from: owner.public_key(),
        to: validator,
        amount,
        fee,
        nonce: 0,
        op: op.clone(),
    };
    check(&mut client, &draft).await??;
    let sent = submit(
        &mut client,
        &owner,
        validator,
        amount,
        fee,
        op,
        common.timeout,
    )
    .await?;
    let block: Value = client.get(&format!("/blocks/{}", sent.height)).await?;
    let refused = block["outcome"]["staking_refused"]
        .as_array()
        .is_some_and(|list| list.iter().any(|h| h.as_str() == Some(sent.hash.as_str())));
    if refused {
        let why = match check(&mut client, &draft).await? {
            Err(ValidatorError::Refused { message, .. }) => message,
            _ => "the node no longer says why (a transfer before it in the block changed the \
                  registry)"
                .to_string(),
        };
        return Err(ValidatorError::RefusedInBlock {
            op: label,
            height: sent.height,
            hash: sent.hash,
            why,
        });
    }
    let sets: Value = client.get("/validators").await?;
    let params = &sets["params"];
    let epoch_blocks = params["epoch_blocks"].as_u64().unwrap_or(1).max(1);
    let epoch = sent.height.saturating_sub(1) / epoch_blocks;
    let signs_from = (epoch + 2) * epoch_blocks + 1;
    let key = hex::encode(validator.0);
    let effect = match label {
        "unbond" => format!(
            "{} TIME returns to the owner at the end of height {}; the bond left counts in the \
             set from height {signs_from} (epoch {})",
            format_time(amount),
            sent.height + params["unbonding_blocks"].as_u64().unwrap_or(0),
            epoch + 2
        ),
        _ => format!(
            "elected at the end of epoch {epoch} (height {}); signs from height {signs_from} \
             (epoch {}) if its bond is among the {} largest",
            (epoch + 1) * epoch_blocks,
            epoch + 2,
            params["max_validators"].as_u64().unwrap_or(0)
        ),
    };
    println!(
        "{label} of validator {key} ({} TIME, fee {} TIME) finalized at height {} (transfer {}); \
         {effect}",
        format_time(amount),
        format_time(fee),
        sent.height,
        sent.hash
    );
    Ok(())
}

/// The node's verdict on `draft` (`POST /validators/check`): `Ok(Err(Refused))` with its reason
/// when a staking rule would refuse it.
async fn check(
    client: &mut Client,
    draft: &Transfer,
) -> Result<Result<(), ValidatorError>, ValidatorError> {
    match client.post::<_, Value>("/validators/check", draft).await {
        Ok(_) => Ok(Ok(())),
        Err(ClientError::Status {
            status: 422,
            message,
            body,
            ..
        }) => Ok(Err(ValidatorError::Refused {
            op: draft.op.label(),
            reason: body["reason"].as_str().unwrap_or("refused").to_string(),
            message,
        })),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_keeps_to_the_transfers_bounds() {
        assert!(registration("v5", "127.0.0.1:9005").is_ok());
        let e = registration("", "127.0.0.1:9005").unwrap_err().to_string();
        assert!(e.starts_with("--name:"), "{e}");
        let e = registration(&"n".repeat(33), "127.0.0.1:9005")
            .unwrap_err()
            .to_string();
        assert!(e.contains("33 bytes"), "{e}");
        let long = format!("{}.example:9005", "h".repeat(60));
        let e = registration("v5", &long).unwrap_err().to_string();
        assert!(
            e.starts_with("--address:") && e.contains("at most 64"),
            "{e}"
        );
        let e = registration("v5", "no-port").unwrap_err().to_string();
        assert!(e.starts_with("--address:"), "{e}");
    }
}
