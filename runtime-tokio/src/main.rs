#![forbid(unsafe_code)]
//! `timed`: the TIME Coin validator node.
//!
//! - `timed --validator-id validator1 --port 8001 --peers localhost:8002,localhost:8003 --stake 100`
//!   runs a development validator (keys from names, genesis formed at the handshake);
//! - `timed run --genesis FILE --key FILE --data-dir DIR --listen ADDR --peers ...` runs a real one;
//! - `timed keygen`, `timed genesis` prepare a real network (`timed init` writes a key and a
//!   configuration file for `timed run --config`; `timed reset` deletes chain data);
//! - `timed devnet --nodes N` starts a whole local network in one command.
//!
//! `anyhow` is used here, at the edge, only; the modules have their own error types.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches};
use timed::{
    addr, app, bench, config, devnet, guard, handshake, keys, manual, reset, validator, verify,
    wallet,
};
use timed_core::crypto::Keypair;
use timed_core::types::{Amount, Stake, TimestampMs};
use timed_core::validators::{ConsensusParams, Genesis, GenesisBalance, GenesisValidator};
use tracing::warn;

mod cli;
use cli::*;

fn init_logs(format: LogFormat) {
    timed::logs::init(matches!(format, LogFormat::Json));
}

/// An error and its causes on one line, each cause once: the errors that name their cause in
/// their own text (`cannot read key file K: No such file or directory (os error 2)`) also give it
/// as their source, which `{:#}` would print a second time.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One thread for the consensus loop and QUIC; HTTP and sync answers run on threads of
    // their own (docs/dependencies.md, trap 5).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The command line, with the settings of a `--config` file added (`config.rs`).
fn parse() -> Result<Cli, clap::Error> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let args = match config::apply(args, &Cli::command()) {
        Ok(args) => args,
        Err(e) => {
            timed::logs::fatal(&e.to_string());
            std::process::exit(2);
        }
    };
    let matches = Cli::command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

fn main() {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("timed: {first} (see timed --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        timed::logs::fatal(&one_line(&e));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => {
            init_logs(cli.log_format);
            run_dev(cli.dev)
        }
        Some(Command::Run(a)) => {
            init_logs(cli.log_format);
            run_real(a)
        }
        Some(Command::Keygen { out }) => {
            let key = keys::generate()?;
            keys::save(&out, &key)?;
            println!("{}", hex::encode(key.public_key().0));
            eprintln!("timed: wrote a new validator key to {}", out.display());
            Ok(())
        }
        Some(Command::Init { dir }) => init(&dir),
        Some(Command::Completions { shell }) => {
            Ok(manual::print(&manual::completions(shell, Cli::command()))?)
        }
        Some(Command::Man { dir: None }) => Ok(manual::print(&manual::man(Cli::command())?)?),
        Some(Command::Man { dir: Some(dir) }) => {
            let pages = manual::man_pages(Cli::command(), &dir)
                .with_context(|| format!("cannot write manual pages to {}", dir.display()))?;
            eprintln!(
                "timed: wrote {} manual pages to {}",
                pages.len(),
                dir.display()
            );
            Ok(())
        }
        Some(Command::Reset(a)) => reset_data(a),
        Some(Command::Genesis(a)) => make_genesis(a),
        Some(Command::GenesisHash { file }) => {
            // The hash of the genesis's canonical encoding, not of the file's bytes: a file
            // reformatted (spaces, key order) is the same genesis.
            let genesis = handshake::read_genesis(&file)?;
            genesis.validate().context("the genesis is invalid")?;
            println!("{}", hex::encode(genesis.hash().0));
            Ok(())
        }
        Some(Command::Wallet(a)) => Ok(runtime()?.block_on(wallet::run(a))?),
        Some(Command::Validator(a)) => Ok(runtime()?.block_on(validator::run(a))?),
        Some(Command::Verify(a)) => Ok(runtime()?.block_on(verify::run(a))?),
        Some(Command::Devnet(a)) => runtime()?.block_on(devnet::run(a)),
        Some(Command::Bench(a)) => runtime()?.block_on(bench::run(a)),
    }
}

fn run_dev(a: DevArgs) -> Result<()> {
    let Some(name) = a.validator_id else {
        bail!("give --validator-id (development mode) or a subcommand such as `run` or `devnet`");
    };
    if name.is_empty() || name.len() > 64 {
        bail!("--validator-id must be 1 to 64 characters");
    }
    let Some(port) = a.port else {
        bail!("give --port (the QUIC/UDP and HTTP/TCP port of this validator)");
    };
    timed::logs::name_node(&name);
    skew_clock(a.clock_skew_ms);
    let http = a.http.limits()?;
    let key = Keypair::insecure_from_name(&name);
    warn!(
        "⚠️  DEVELOPMENT MODE: the key of {name} derives from its id and is public knowledge; \
         never hold value with it. Use `timed keygen`, `timed genesis` and `timed run` for a real \
         network."
    );
    let peers: Vec<String> = a.peers.into_iter().filter(|p| !p.is_empty()).collect();
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from("data").join(&name));
    let setup = app::Setup {
        dev: Some(timed::DevMode {
            stake: Stake(a.stake),
            block_time_ms: a.block_time.as_millis() as u64,
            expected_peers: peers.len(),
            chain_id: a.chain_id,
            balances: parse_balances(&a.fund, "--fund")?,
            epoch_blocks: a.epoch_blocks,
        }),
        guard: guard::path_for_data_dir(&data_dir),
        double_sign_check_ms: a.double_sign_check_ms,
        retain_blocks: a.storage.retain_blocks,
        snapshot_interval: a.storage.snapshot_interval,
        state_sync: a.storage.state_sync.clone(),
        role: timed::Role::Validator,
        max_followers: a.followers.max_followers,
        data_dir,
        listen: SocketAddr::new(a.bind, port),
        metrics_listen: a.http.metrics_listen,
        name,
        key,
        genesis: None,
        peers,
        http,
    };
    runtime()?.block_on(app::run_node(setup))
}

fn skew_clock(ms: i64) {
    if ms != 0 {
        timed::set_clock_skew_ms(ms);
        warn!("TEST AID: this node's clock is shifted by {ms} ms (--clock-skew-ms)");
    }
}

fn run_real(a: RunArgs) -> Result<()> {
    skew_clock(a.clock_skew_ms);
    let http = a.http.limits()?;
    // Checked here, not by clap's relations: a configuration file's key is checked alone.
    match (&a.key, a.full_node) {
        (Some(_), true) => bail!(
            "--key and --full-node exclude each other: a full node signs nothing and keeps a key \
             of its own for QUIC (in its data directory); drop one of them"
        ),
        (None, false) => bail!(
            "give --key FILE (this validator's key, from `timed keygen` or `timed init`), or \
             --full-node to follow the chain without one"
        ),
        _ => {}
    }
    let genesis = handshake::read_genesis(&a.genesis)?;
    let (key, guard, role) = match &a.key {
        Some(path) => (
            keys::load(path)?,
            guard::path_for_key(path),
            timed::Role::Validator,
        ),
        None => {
            let path = a.data_dir.join("node.key");
            (
                node_key(&path)?,
                guard::path_for_key(&path),
                timed::Role::FullNode,
            )
        }
    };
    let name = match genesis
        .validators
        .iter()
        .find(|v| v.public_key == key.public_key())
    {
        Some(v) if role == timed::Role::Validator => v.name.clone(),
        Some(v) => bail!(
            "{} holds the key of validator {:?}: a full node needs a key of its own (remove the \
             file; a new one is made)",
            a.data_dir.join("node.key").display(),
            v.name
        ),
        None if role == timed::Role::FullNode => {
            format!("full-node-{}", hex::encode(&key.public_key().0[..4]))
        }
        None => format!("observer-{}", hex::encode(&key.public_key().0[..4])),
    };
    let peers: Vec<String> = if a.peers.is_empty() {
        genesis_peers(&genesis, &key)?
    } else {
        a.peers.into_iter().filter(|p| !p.is_empty()).collect()
    };
    if role == timed::Role::FullNode && peers.is_empty() {
        bail!(
            "a full node follows other nodes: give --peers host:port,... (validators or full \
             nodes), or a genesis that lists validators' addresses"
        );
    }
    let setup = app::Setup {
        name,
        key,
        role,
        max_followers: a.followers.max_followers,
        dev: None,
        genesis: Some(genesis),
        guard,
        double_sign_check_ms: a.double_sign_check_ms,
        retain_blocks: a.storage.retain_blocks,
        snapshot_interval: a.storage.snapshot_interval,
        state_sync: a.storage.state_sync.clone(),
        data_dir: a.data_dir,
        listen: a.listen,
        metrics_listen: a.http.metrics_listen,
        peers,
        http,
    };
    runtime()?.block_on(app::run_node(setup))
}

/// A full node's key for QUIC: read from `path`, or made and kept there on the first start.
fn node_key(path: &Path) -> Result<Keypair> {
    if path.exists() {
        return Ok(keys::load(path)?);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let key = keys::generate()?;
    keys::save(path, &key)?;
    tracing::info!("Made this full node's key: {}", path.display());
    Ok(key)
}

/// `timed init`: a key and a configuration file for it, nothing overwritten.
fn init(dir: &Path) -> Result<()> {
    let file = dir.join(config::FILE_NAME);
    let key_file = dir.join("validator.key");
    let guard_file = guard::path_for_key(&key_file);
    for path in [&file, &key_file, &guard_file] {
        if path.exists() {
            bail!(
                "{} already exists; refusing to overwrite it (timed init starts a new validator: \
                 give another --dir)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let key = keys::generate()?;
    let preset = |key: &'static str, toml: &str, active: bool| config::Preset {
        key,
        toml: toml.to_string(),
        active,
    };
    let presets = [
        preset("genesis", "\"genesis.json\"", true),
        preset("key", "\"validator.key\"", true),
        preset("data-dir", "\"data\"", true),
        preset("listen", "\"0.0.0.0:8001\"", true),
        preset(
            "peers",
            "[\"203.0.113.7:8001\", \"validator3.example.org:8001\"]",
            false,
        ),
        preset("double-sign-check-ms", "4000", false),
    ];
    let text = config::template(&Cli::command(), &presets);
    keys::save(&key_file, &key)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("{}", hex::encode(key.public_key().0));
    eprintln!(
        "timed: wrote {} and {} (the line above is its public key). Next: give the public key \
         and this node's address to whoever builds the genesis (timed genesis --validator \
         NAME:PUBLIC_KEY:STAKE:HOST:PORT ...), put the genesis at {}, check {}, then run: timed \
         run --config {}",
        key_file.display(),
        file.display(),
        dir.join("genesis.json").display(),
        file.display(),
        file.display()
    );
    Ok(())
}

/// `timed reset`: says what it deletes and keeps, asks unless --yes, deletes.
fn reset_data(a: ResetArgs) -> Result<()> {
    use std::io::IsTerminal;
    let plan = reset::plan(&a.data_dir, a.key.as_deref())?;
    for path in &plan.delete {
        eprintln!("timed: delete {}", path.display());
    }
    for kept in &plan.keep {
        eprintln!("timed: keep {kept}");
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("nothing deleted: give --yes to delete the files above");
        }
        eprint!("Delete these files? Type yes: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("nothing deleted");
        }
    }
    reset::execute(&plan)?;
    eprintln!(
        "timed: deleted the chain data of {}; the node fetches the chain from its peers when it \
         starts again",
        a.data_dir.display()
    );
    Ok(())
}

/// The addresses of the genesis's other validators, each checked.
fn genesis_peers(genesis: &Genesis, key: &Keypair) -> Result<Vec<String>> {
    let mut peers = Vec::new();
    for v in &genesis.validators {
        if v.public_key == key.public_key() {
            continue;
        }
        if let Some(address) = &v.address {
            let checked = addr::peer_address(address).with_context(|| {
                format!(
                    "the genesis gives validator {} the address {address:?}, which cannot be \
                     dialed; every validator must use the same genesis file: give --peers to \
                     override its addresses",
                    v.name
                )
            })?;
            peers.push(checked);
        }
    }
    Ok(peers)
}

/// Balances written as PUBLIC_KEY_HEX:UNITS.
fn parse_balances(list: &[String], flag: &str) -> Result<Vec<GenesisBalance>> {
    let mut balances = Vec::new();
    for b in list {
        let (key, amount) = b
            .split_once(':')
            .with_context(|| format!("{flag} {b:?}: expected PUBLIC_KEY_HEX:UNITS"))?;
        balances.push(GenesisBalance {
            account: keys::parse_public_key(key)
                .with_context(|| format!("{flag} {b:?}: the key must be 64 hex digits"))?,
            amount: Amount(
                amount
                    .parse()
                    .with_context(|| format!("{flag} {b:?}: units must be a number"))?,
            ),
        });
    }
    Ok(balances)
}

fn make_genesis(a: GenesisArgs) -> Result<()> {
    let mut validators = Vec::new();
    for v in &a.validators {
        let parts: Vec<&str> = v.splitn(4, ':').collect();
        let [name, key, stake, rest @ ..] = parts.as_slice() else {
            bail!("--validator {v:?}: expected NAME:PUBLIC_KEY_HEX:STAKE[:HOST:PORT]");
        };
        let public_key = keys::parse_public_key(key)
            .with_context(|| format!("--validator {v:?}: the public key must be 64 hex digits"))?;
        let stake: u64 = stake
            .parse()
            .with_context(|| format!("--validator {v:?}: the stake must be a number"))?;
        let address = match rest.first() {
            Some(a) => Some(
                addr::peer_address(a)
                    .with_context(|| format!("--validator {v:?}: the address after the stake"))?,
            ),
            None => None,
        };
        validators.push(GenesisValidator {
            name: name.to_string(),
            public_key,
            stake: Stake(stake),
            address,
        });
    }
    let balances = parse_balances(&a.balances, "--balance")?;
    let genesis = Genesis {
        chain_id: a.chain_id,
        genesis_time_ms: TimestampMs(a.genesis_time_ms.unwrap_or_else(timed::unix_ms)),
        validators,
        balances,
        params: ConsensusParams {
            block_time_ms: a.block_time.as_millis() as u64,
            ..ConsensusParams::default()
        },
    };
    genesis.validate().context("the genesis is invalid")?;
    if a.out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a genesis",
            a.out.display()
        );
    }
    handshake::write_genesis(&a.out, &genesis)?;
    println!("{}", hex::encode(genesis.hash().0));
    eprintln!(
        "timed: wrote genesis {} with {} validators to {}",
        hex::encode(&genesis.hash().0[..8]),
        genesis.validators.len(),
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key file k.key: {source}")]
    struct Naming {
        source: std::io::Error,
    }

    /// An error whose text names its source prints it once, a context above it still shows, and
    /// a cause not named above is kept.
    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(Naming { source: io() }).context("cannot start");
        let line = one_line(&e);
        assert_eq!(
            line,
            format!("cannot start: cannot read key file k.key: {}", io())
        );
        let plain = anyhow::Error::new(io()).context("cannot create data directory d");
        assert_eq!(
            one_line(&plain),
            format!("cannot create data directory d: {}", io())
        );
    }

    #[test]
    fn a_stake_is_a_whole_number_from_one() {
        assert_eq!(stake_flag("100"), Ok(100));
        assert!(stake_flag("0").unwrap_err().contains("at least 1"));
        assert!(
            stake_flag("-1")
                .unwrap_err()
                .contains("\"-1\" is not a stake")
        );
        assert!(stake_flag("1.5").is_err());
    }
}
