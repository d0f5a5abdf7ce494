//! `timed devnet join`: one more validator on a running devnet, from start to leave.
//!
//! It starts a development validator in the devnet's style (a key derived from its name, the
//! devnet's genesis copied into its data directory, every devnet validator as `--peers`), then
//! bonds it: a `Register { name, address }` transfer from the devnet's wallet (`wallet.key` in
//! the devnet's directory: the only funded account of a devnet; it owns the registration and
//! is paid its rewards) to the new key, of the genesis's minimum bond unless `--bond` says
//! more, submitted with `POST /tx`. Then it follows the chain through a devnet validator's API
//! and says what happens: pending (registered, elected at an epoch's end), active at height H,
//! signing (its signature in the certificates), earning (its rewards). After `--leave-after`
//! signed heights, or on Ctrl-C, it unbonds the whole bond (an `Unbond` from the wallet), waits
//! until the chain has gone past the last height it signs, says so and stops the validator.
//!
//! The transfers are built here with the core's types directly (`staking_transfer`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use timed_core::crypto::{Keypair, PublicKey};
use timed_core::tx::{Op, Transfer};
use timed_core::types::Amount;

use crate::amount::format_time;
use crate::net::handshake::read_genesis;
use crate::tools::client::{Client, ClientError, NodeUrl};
use crate::tools::devnet::{Children, LAYOUT_FILE, Layout, free_port};
use crate::{keys, tools::wallet};

#[derive(Args)]
pub struct JoinArgs {
    /// The running devnet's directory: its --data-dir, or the one it printed ("data and logs in
    /// DIR"). The new validator's data and log go there too.
    #[arg(long)]
    dir: PathBuf,
    /// The new validator's name; its key derives from it [default: the first validatorN with
    /// no folder in the devnet's directory].
    #[arg(long)]
    name: Option<String>,
    /// Its bond, in base units [default: the genesis's minimum bond; 100 on a devnet].
    #[arg(long)]
    bond: Option<u64>,
    /// Unbond after it signed this many heights, then stop once it left [default: keep signing
    /// until Ctrl-C, then unbond and leave].
    #[arg(long)]
    leave_after: Option<u64>,
    /// A devnet validator's API to submit to and follow the chain through [default:
    /// validator1's].
    #[arg(long)]
    node: Option<String>,
}

/// The fee of each staking transfer: what `timed wallet send` pays by default (0.001 TIME).
const FEE: Amount = Amount(Amount::UNITS_PER_TIME / 1000);

/// How long a staking transfer may take to be finalized.
const TX_TIMEOUT: Duration = Duration::from_secs(60);

/// Signs a staking operation `op` of `amount` from `owner` for validator `validator`, submits it
/// (`POST /tx`) and waits for its block; returns its hash and height. A staking operation that
/// breaks a staking rule is finalized too, changing nothing but its fee and nonce: that is an
/// error here, with the rule.
pub async fn staking_transfer(
    client: &mut Client,
    owner: &Keypair,
    validator: PublicKey,
    amount: Amount,
    op: Op,
) -> Result<(String, u64)> {
    let chain_id = wallet::fetch_chain_id(client).await?;
    let account = wallet::fetch_account(client, &owner.public_key()).await?;
    let label = op.label();
    let tx = Transfer {
        from: owner.public_key(),
        to: validator,
        amount,
        fee: FEE,
        nonce: account.nonce,
        op,
    }
    .sign(owner, &chain_id);
    let hash = hex::encode(tx.hash().0);
    client
        .post::<_, Value>("/tx", &tx)
        .await
        .with_context(|| format!("the node refused the {label} transfer"))?;
    let started = Instant::now();
    let height = loop {
        match client.get::<Value>(&format!("/tx/{hash}")).await {
            Ok(t) if t["status"] == "finalized" => break t["height"].as_u64().unwrap_or(0),
            Ok(_) | Err(ClientError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() >= TX_TIMEOUT {
            bail!(
                "the {label} transfer {hash} was not finalized within {} s",
                TX_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let block: Value = client.get(&format!("/blocks/{height}")).await?;
    let refused = block["outcome"]["staking_refused"]
        .as_array()
        .is_some_and(|r| r.iter().any(|h| h.as_str() == Some(hash.as_str())));
    if refused {
        bail!(
            "the {label} transfer {hash} was finalized at height {height} but broke a staking \
             rule and changed nothing (a key or name registered already, a bond below the \
             minimum, or not the owner)"
        );
    }
    Ok((hash, height))
}

/// The first height of the epoch after the one of `height`.
fn next_epoch_start(height: u64, epoch: u64) -> u64 {
    (height.saturating_sub(1) / epoch + 1) * epoch + 1
}

pub async fn run(a: JoinArgs) -> Result<()> {
    let layout: Layout =
        serde_json::from_slice(&std::fs::read(a.dir.join(LAYOUT_FILE)).with_context(|| {
            format!(
                "{} is not the directory of a running devnet (no {LAYOUT_FILE}): give the one \
                 `timed devnet` printed",
                a.dir.display()
            )
        })?)
        .with_context(|| format!("{LAYOUT_FILE} in {} is unreadable", a.dir.display()))?;
    let Some(first) = layout.ports.first() else {
        bail!("the devnet in {} has no validators", a.dir.display());
    };
    let genesis_path = a.dir.join("validator1").join("genesis.json");
    let genesis = read_genesis(&genesis_path)?;
    let epoch = genesis.params.epoch_blocks.max(1);
    let name = match a.name {
        Some(n) => n,
        None => (1..)
            .map(|i| format!("validator{i}"))
            .find(|n| !a.dir.join(n).exists())
            .unwrap_or_default(),
    };
    if name.is_empty() || name.len() > timed_core::tx::MAX_NAME_BYTES {
        bail!(
            "--name must be 1 to {} bytes",
            timed_core::tx::MAX_NAME_BYTES
        );
    }
    let key = Keypair::insecure_from_name(&name);
    let bond = Amount(a.bond.unwrap_or(genesis.params.min_bond.0));
    let owner = keys::load(&a.dir.join(wallet::DEVNET_WALLET_FILE))?;
    let node = match &a.node {
        Some(u) => NodeUrl::parse(u)?,
        None => NodeUrl::from_addr(([127, 0, 0, 1], *first).into()),
    };
    let mut client = Client::new(node).with_timeout(Duration::from_secs(5));

    // The validator, in the devnet's style, on the devnet's genesis.
    let port = free_port()?;
    let data = a.dir.join(&name);
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    std::fs::copy(&genesis_path, data.join("genesis.json"))
        .with_context(|| format!("cannot copy the genesis into {}", data.display()))?;
    let log_path = a.dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let peers: Vec<String> = layout
        .ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let exe = std::env::current_exe().context("cannot find the timed executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["--validator-id", &name, "--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--stake", &bond.0.to_string()])
        .args(["--block-time", &format!("{}ms", layout.block_time_ms)])
        .args(["--peers", &peers.join(","), "--http-rate-limit", "0"])
        .arg("--data-dir")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let mut children = Children(vec![(name.clone(), child)]);
    let address = format!("127.0.0.1:{port}");
    println!(
        "join: {name} (key {}) started on {address}; data in {}, log {}",
        hex::encode(key.public_key().0),
        data.display(),
        log_path.display()
    );

    // Bonded: registered by the devnet's wallet.
    let register = Op::Register {
        name: name.clone(),
        address: address.clone(),
    };
    let (_, registered) =
        staking_transfer(&mut client, &owner, key.public_key(), bond, register).await?;
    let id = registration_id(&mut client, registered, &name).await?;
    let elected = next_epoch_start(registered, epoch) - 1;
    let active = elected + epoch + 1;
    println!(
        "join: pending: registered at height {registered} as validator id {id} with a bond of \
         {} units (owner: the devnet wallet, which its rewards go to); elected at the end of \
         height {elected}, signs from height {active} (epochs of {epoch} heights)",
        bond.0
    );

    let mut shutdown = crate::node::app::shutdown_signal();
    let mut follow = Follow::new(id);
    let mut leave_at: Option<u64> = None;
    let mut last_signing: Option<u64> = None;
    let mut unbonded = false;
    loop {
        if let Ok(Some(status)) = children.0[0].1.try_wait() {
            bail!("{name} exited ({status}); see {}", log_path.display());
        }
        follow.poll(&mut client, active, epoch).await;
        let wants_out =
            *shutdown.borrow() || a.leave_after.is_some_and(|n| follow.signed >= n.max(1));
        if wants_out && !unbonded {
            unbonded = true;
            let (_, at) =
                staking_transfer(&mut client, &owner, key.public_key(), bond, Op::Unbond).await?;
            // Unbonded in epoch k: out of `next` at its end, still in `current` for epoch k + 1.
            let last = next_epoch_start(at, epoch) - 1 + epoch;
            last_signing = Some(last);
            leave_at = Some(last + epoch.max(3));
            println!(
                "join: leaving: unbonded at height {at}; signs up to height {last} at most, its \
                 stake returns to the wallet at height {}",
                at + genesis.params.unbonding_blocks
            );
        }
        if let (Some(end), Some(last)) = (leave_at, last_signing)
            && follow.next > end
        {
            match follow.last_signed {
                Some(h) if h > last => bail!(
                    "{name} still signed height {h}, after the last height of its set ({last})"
                ),
                h => println!(
                    "join: left: last signature at height {}; the chain goes on at height {} \
                     without it; earned {} TIME in all",
                    h.map_or_else(|| "none".into(), |h| h.to_string()),
                    follow.next - 1,
                    format_time(Amount(follow.earned))
                ),
            }
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {},
            _ = shutdown.changed() => {},
        }
    }
    children.stop();
    Ok(())
}

/// The id the registration of `name` took: its index in the registry of block `height`'s
/// staking state.
async fn registration_id(client: &mut Client, height: u64, name: &str) -> Result<u64> {
    let block: Value = client.get(&format!("/blocks/{height}")).await?;
    block["outcome"]["staking"]["registry"]
        .as_array()
        .and_then(|r| r.iter().position(|e| e["name"] == name))
        .map(|i| i as u64)
        .with_context(|| format!("block {height} does not show the registration of {name}"))
}

/// What the chain shows of one validator, block by block.
struct Follow {
    id: u64,
    next: u64,
    signed: u64,
    last_signed: Option<u64>,
    earned: u64,
    said_active: bool,
    reported_epoch: Option<u64>,
}

impl Follow {
    fn new(id: u64) -> Follow {
        Follow {
            id,
            next: 1,
            signed: 0,
            last_signed: None,
            earned: 0,
            said_active: false,
            reported_epoch: None,
        }
    }

    /// Reads the blocks finalized since the last poll and says what they show.
    async fn poll(&mut self, client: &mut Client, active: u64, epoch: u64) {
        let Ok(page) = client
            .get::<Value>(&format!("/blocks?from={}&limit=100", self.next))
            .await
        else {
            return;
        };
        for b in page["blocks"].as_array().into_iter().flatten() {
            let Some(h) = b["height"].as_u64() else {
                continue;
            };
            if h < self.next {
                continue;
            }
            self.next = h + 1;
            let signatures = b["certificate"]["signatures"].as_array();
            let signed = signatures.is_some_and(|s| s.iter().any(|x| x["validator"] == self.id));
            let reward: u64 = b["outcome"]["rewards"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["validator"] == self.id)
                .filter_map(|r| r["amount"].as_u64())
                .sum();
            self.earned += reward;
            if h == active && !self.said_active {
                self.said_active = true;
                println!("join: active: height {h} is the first of the set it belongs to");
            }
            if signed {
                self.signed += 1;
                if self.last_signed.is_none() {
                    println!(
                        "join: signing: the certificate of height {h} carries its signature ({} \
                         signatures)",
                        signatures.map_or(0, Vec::len)
                    );
                }
                self.last_signed = Some(h);
            }
            // Once per epoch it signed in, at the epoch's last height.
            let e = (h - 1) / epoch;
            let signed_this_epoch = self.last_signed.is_some_and(|s| (s - 1) / epoch == e);
            if signed_this_epoch && h % epoch == 0 && self.reported_epoch != Some(e) {
                self.reported_epoch = Some(e);
                println!(
                    "join: earning: {} TIME of rewards so far, {} heights signed (height {h})",
                    format_time(Amount(self.earned)),
                    self.signed
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_starts_after_a_multiple_of_its_length() {
        assert_eq!(next_epoch_start(1, 10), 11);
        assert_eq!(next_epoch_start(10, 10), 11);
        assert_eq!(next_epoch_start(11, 10), 21);
        assert_eq!(next_epoch_start(0, 10), 11);
    }
}
