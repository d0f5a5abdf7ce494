//! `timed wallet`: a key file, a balance, a transfer — through a node's HTTP API.
//!
//! - `timed wallet new [--out FILE]` writes a fresh key (the same JSON file as `timed keygen`,
//!   mode 0600) and prints its address: the public key in hex;
//! - `timed wallet balance ADDRESS --node URL` prints the balance and the next nonce; with
//!   `--verify --genesis FILE` it trusts the node for nothing: it asks for the account's Merkle
//!   proof (`/accounts/{address}?proof=true`), verifies the chain up to the proof's height as
//!   `timed verify` does (from the genesis, or from `--state FILE`), and checks the proof against
//!   that certified header's state root (`ledger::AccountProof::verify`): a light-client
//!   balance;
//! - `timed wallet send --key FILE --to ADDRESS --amount 1.5 --fee 0.001 --node URL` reads the
//!   chain id from `/status` and the nonce from `/accounts`, signs the transfer, submits it with
//!   `POST /tx` and polls `/tx/{hash}` until it is `finalized`, then prints the height and the new
//!   balance.
//!
//! Amounts are written in TIME with at most 8 decimals and parsed exactly, without floating
//! point (`parse_time`): 1 TIME = 100 000 000 units.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::Value;
use timed_core::crypto::{Keypair, PublicKey};
use timed_core::ledger::AccountProof;
use timed_core::tx::{Op, Transfer};
use timed_core::types::Amount;

use crate::amount::{AmountError, format_time, parse_time};
use crate::keys::{self, KeyError};
use crate::tools::client::{Client, ClientError, NodeUrl};
use crate::tools::verify;

/// What `timed devnet` gives its ready wallet: one million TIME.
pub const DEVNET_FUNDS: Amount = Amount(1_000_000 * Amount::UNITS_PER_TIME);

/// The ready wallet's key file in a devnet's data directory.
pub const DEVNET_WALLET_FILE: &str = "wallet.key";

#[derive(Args)]
pub struct WalletArgs {
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Write a new key file and print its address.
    New {
        /// Where to write the key (never overwritten; mode 0600).
        #[arg(long, default_value = "wallet.key")]
        out: PathBuf,
    },
    /// Print an account's balance and next nonce.
    Balance {
        /// The account: a public key of 64 hex digits (as `wallet new` prints).
        address: String,
        /// A node's HTTP API, e.g. http://127.0.0.1:8001.
        #[arg(long)]
        node: String,
        /// Trust the node for nothing: check the balance's Merkle proof against a block header
        /// whose certificate chain from the genesis was verified (needs --genesis).
        #[arg(long, requires = "genesis")]
        verify: bool,
        /// The chain's genesis file, the only thing --verify trusts.
        #[arg(long, requires = "verify")]
        genesis: Option<PathBuf>,
        /// A light client's state file (as `timed verify --state`): the chain is verified from
        /// where it stops, and the progress recorded, instead of from height 1 each time.
        #[arg(long, requires = "verify")]
        state: Option<PathBuf>,
    },
    /// Sign a transfer, submit it and wait until it is finalized.
    Send(SendArgs),
}

#[derive(Args)]
struct SendArgs {
    /// The sender's key file.
    #[arg(long)]
    key: PathBuf,
    /// The receiver: a public key of 64 hex digits.
    #[arg(long)]
    to: String,
    /// Amount in TIME, at most 8 decimals (e.g. 1.5).
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    /// Fee in TIME, at most 8 decimals; it goes to the validators with the block reward.
    #[arg(long, default_value = "0.001", allow_hyphen_values = true)]
    fee: String,
    /// A node's HTTP API, e.g. http://127.0.0.1:8001.
    #[arg(long)]
    node: String,
    /// How long to wait for finalization.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("--{flag}: {source}")]
    Amount {
        flag: &'static str,
        source: AmountError,
    },
    #[error("--amount must be more than zero")]
    ZeroAmount,
    #[error("{0:?} is not an address: an address is a public key of 64 hex digits")]
    BadAddress(String),
    #[error("the receiver is the sender's own address")]
    SelfTransfer,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Node(#[from] ClientError),
    #[error("node {0} has no genesis yet (it is still meeting its peers); retry in a moment")]
    NoGenesis(String),
    #[error(
        "insufficient balance: {amount} TIME + fee {fee} TIME needs {needed} TIME, but {address} \
         holds {available} TIME"
    )]
    InsufficientBalance {
        address: String,
        amount: String,
        fee: String,
        needed: String,
        available: String,
    },
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error("the node's proof of the account at height {height} is false: {source}")]
    BadProof {
        height: u64,
        source: timed_core::ledger::ProofError,
    },
    #[error(
        "the node states {claimed}, but its own proof at height {height} proves {proven}: it is \
         lying"
    )]
    ClaimNotProven {
        claimed: String,
        proven: String,
        height: u64,
    },
    #[error("the node refused the transfer ({reason}): {message}")]
    Refused { reason: String, message: String },
    #[error(
        "transfer {hash} was accepted but not finalized within {secs} s; check later with \
         GET /tx/{hash}"
    )]
    NotFinalized { hash: String, secs: u64 },
}

pub async fn run(a: WalletArgs) -> Result<(), WalletError> {
    match a.command {
        WalletCommand::New { out } => {
            let key = keys::generate()?;
            keys::save(&out, &key)?;
            println!("{}", hex::encode(key.public_key().0));
            eprintln!("timed: wrote a new wallet key to {}", out.display());
            Ok(())
        }
        WalletCommand::Balance {
            address,
            node,
            verify,
            genesis,
            state,
        } => {
            let key = parse_address(&address)?;
            let mut client = Client::new(NodeUrl::parse(&node)?);
            if let (true, Some(genesis)) = (verify, genesis) {
                return verified_balance(&mut client, &key, &genesis, state.as_deref()).await;
            }
            let account = fetch_account(&mut client, &key).await?;
            println!(
                "{} TIME ({} units), next nonce {}",
                format_time(account.balance),
                account.balance.0,
                account.nonce
            );
            Ok(())
        }
        WalletCommand::Send(s) => send(s).await,
    }
}

/// What `/accounts/{address}?proof=true` serves that the wallet reads.
#[derive(Deserialize)]
struct ProvenView {
    balance: Amount,
    nonce: u64,
    proof: ServedProof,
}

#[derive(Deserialize)]
struct ServedProof {
    height: u64,
    #[serde(flatten)]
    proof: AccountProof,
}

/// `wallet balance --verify`: the node's proof of the account, checked against the state root
/// of a header verified from the genesis; the balance the node states beside it must be the
/// one proven.
async fn verified_balance(
    client: &mut Client,
    key: &PublicKey,
    genesis: &Path,
    state: Option<&Path>,
) -> Result<(), WalletError> {
    let path = format!("/accounts/{}?proof=true", hex::encode(key.0));
    let served: ProvenView = client.get(&path).await?;
    let height = served.proof.height;
    let genesis =
        crate::net::handshake::read_genesis(genesis).map_err(verify::VerifyError::from)?;
    let (last, verified) = verify::verified_block(&genesis, state, client, height).await?;
    let account = served
        .proof
        .proof
        .verify(key, &last.block.header.state_root)
        .map_err(|source| WalletError::BadProof { height, source })?;
    if (account.balance, account.nonce) != (served.balance, served.nonce) {
        let shown = |balance: Amount, nonce: u64| {
            format!("{} TIME, next nonce {nonce}", format_time(balance))
        };
        return Err(WalletError::ClaimNotProven {
            claimed: shown(served.balance, served.nonce),
            proven: shown(account.balance, account.nonce),
            height,
        });
    }
    println!(
        "{} TIME ({} units), next nonce {}: proven at height {height} against the state root of \
         a header certified from the genesis ({verified} blocks verified now)",
        format_time(account.balance),
        account.balance.0,
        account.nonce
    );
    Ok(())
}

fn parse_address(text: &str) -> Result<PublicKey, WalletError> {
    keys::parse_public_key(text).ok_or_else(|| WalletError::BadAddress(text.to_string()))
}

#[derive(Deserialize)]
pub struct AccountView {
    pub balance: Amount,
    pub nonce: u64,
}

pub async fn fetch_account(
    client: &mut Client,
    key: &PublicKey,
) -> Result<AccountView, ClientError> {
    client
        .get(&format!("/accounts/{}", hex::encode(key.0)))
        .await
}

/// The chain id a node runs (what a transfer's signature covers).
pub async fn fetch_chain_id(client: &mut Client) -> Result<String, WalletError> {
    let status: Value = client.get("/status").await?;
    status["chain_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| WalletError::NoGenesis(client.url().shown.clone()))
}

/// The outcome of a transfer that was finalized.
pub struct Sent {
    pub hash: String,
    pub height: u64,
}

/// Signs and submits `amount` from `key` to `to`, and waits for its finalization.
pub async fn transfer(
    client: &mut Client,
    key: &Keypair,
    to: PublicKey,
    amount: Amount,
    fee: Amount,
    timeout: Duration,
) -> Result<Sent, WalletError> {
    if to == key.public_key() {
        return Err(WalletError::SelfTransfer);
    }
    submit(client, key, to, amount, fee, Op::Pay, timeout).await
}

/// Signs a transfer of `amount` from `key` to `to` doing `op` (a payment or a staking
/// operation: `tools/validator.rs`) with the account's next nonce, submits it and waits for its
/// finalization. The balance must hold what the ledger takes: amount and fee, or the fee alone
/// for an unbond (its amount comes out of the bond).
pub async fn submit(
    client: &mut Client,
    key: &Keypair,
    to: PublicKey,
    amount: Amount,
    fee: Amount,
    op: Op,
    timeout: Duration,
) -> Result<Sent, WalletError> {
    if amount.0 == 0 {
        return Err(WalletError::ZeroAmount);
    }
    let chain_id = fetch_chain_id(client).await?;
    let account = fetch_account(client, &key.public_key()).await?;
    let needed = match op {
        Op::Unbond => fee,
        _ => amount.checked_add(fee).unwrap_or(Amount(u64::MAX)),
    };
    if needed > account.balance {
        return Err(WalletError::InsufficientBalance {
            address: hex::encode(key.public_key().0),
            amount: format_time(amount),
            fee: format_time(fee),
            needed: format_time(needed),
            available: format_time(account.balance),
        });
    }
    let tx = Transfer {
        from: key.public_key(),
        to,
        amount,
        fee,
        nonce: account.nonce,
        op,
    }
    .sign(key, &chain_id);
    let hash = hex::encode(tx.hash().0);
    match client.post::<_, Value>("/tx", &tx).await {
        Ok(_) => {}
        Err(ClientError::Status {
            status: 422,
            message,
            body,
            ..
        }) => {
            let reason = body["reason"].as_str().unwrap_or("refused").to_string();
            let message = match reason.as_str() {
                "duplicate" => format!(
                    "{message}: a transfer with nonce {} from this account is already pending; \
                     wait for it to be finalized",
                    account.nonce
                ),
                _ => message,
            };
            return Err(WalletError::Refused { reason, message });
        }
        Err(e) => return Err(e.into()),
    }
    let started = Instant::now();
    loop {
        match client.get::<Value>(&format!("/tx/{hash}")).await {
            Ok(t) if t["status"] == "finalized" => {
                return Ok(Sent {
                    height: t["height"].as_u64().unwrap_or(0),
                    hash,
                });
            }
            Ok(_) | Err(ClientError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() >= timeout {
            return Err(WalletError::NotFinalized {
                hash,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(s: SendArgs) -> Result<(), WalletError> {
    let amount = parse_time(&s.amount).map_err(|source| WalletError::Amount {
        flag: "amount",
        source,
    })?;
    let fee = parse_time(&s.fee).map_err(|source| WalletError::Amount {
        flag: "fee",
        source,
    })?;
    let to = parse_address(&s.to)?;
    let key = keys::load(&s.key)?;
    let mut client = Client::new(NodeUrl::parse(&s.node)?);
    let sent = transfer(&mut client, &key, to, amount, fee, s.timeout).await?;
    let after = fetch_account(&mut client, &key.public_key()).await?;
    println!(
        "sent {} TIME (fee {} TIME) to {}: transfer {} finalized at height {}; balance now {} TIME",
        format_time(amount),
        format_time(fee),
        hex::encode(to.0),
        sent.hash,
        sent.height,
        format_time(after.balance)
    );
    Ok(())
}

/// The devnet's ready wallet in `dir`: the key file there, or a new one written there.
pub fn devnet_wallet(dir: &Path) -> Result<(PathBuf, Keypair), KeyError> {
    let path = dir.join(DEVNET_WALLET_FILE);
    if path.exists() {
        return Ok((path.clone(), keys::load(&path)?));
    }
    let key = keys::generate()?;
    keys::save(&path, &key)?;
    Ok((path, key))
}
