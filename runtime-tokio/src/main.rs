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
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum, ValueHint};
use timed::{
    addr, app, bench, config, devnet, guard, handshake, httpserve, keys, manual, parse_duration,
    reset, verify, wallet,
};
use timed_core::crypto::Keypair;
use timed_core::types::{Amount, Stake, TimestampMs};
use timed_core::validators::{ConsensusParams, Genesis, GenesisBalance, GenesisValidator};
use tracing::warn;

#[derive(Parser)]
#[command(
    name = "timed",
    version,
    about = "The TIME Coin validator node (BFT, stake-weighted, Tendermint-style)",
    long_about = "The TIME Coin validator node.\n\n\
        Without a subcommand it runs a DEVELOPMENT validator, as in the design notes:\n  \
        timed --validator-id validator1 --port 8001 --peers localhost:8002,localhost:8003 --stake 100\n\
        Keys derive from the validator id (insecure: for development only) and the genesis is \
        formed when every peer has said hello, then kept in the data directory.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    dev: DevArgs,
    /// Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG
    /// (default: info).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct DevArgs {
    /// Development mode: this validator's id (e.g. validator1); its key derives from it.
    #[arg(long)]
    validator_id: Option<String>,
    /// Port for QUIC (UDP) and HTTP (TCP).
    #[arg(long)]
    port: Option<u16>,
    /// Other validators as host:port, comma separated; the genesis is formed once each has said
    /// hello.
    #[arg(long, value_delimiter = ',', value_parser = peer_flag)]
    peers: Vec<String>,
    /// This validator's stake (voting weight) in the genesis being formed: a whole number from 1.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = stake_flag)]
    stake: u64,
    /// Pause between finalizing a block and starting the next ("8s", "500ms", "0" for as fast
    /// as possible). All validators must use the same.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    block_time: Duration,
    /// Where blocks, ledger, WAL and the fixed genesis are kept [default: ./data/<validator-id>].
    /// The double-sign guard file goes beside it, as <DATA_DIR>.last_signed: wiping the data
    /// directory leaves it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to bind (both UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Chain id of the genesis being formed.
    #[arg(long, default_value = "timed-devnet")]
    chain_id: String,
    /// After a start that shows lost signed records (the double-sign guard file says this
    /// validator signed further than its data directory remembers, or there is no guard file),
    /// sign nothing for this many milliseconds and watch the network for signatures of this key
    /// made elsewhere (another instance running it) [default: twice the genesis resend interval,
    /// 4000 with the default parameters; 0, no watch, for a brand-new validator with neither a
    /// guard file nor chain data]. Give it when starting a key copied to a new machine without
    /// its guard file: such a node looks brand new.
    #[arg(long, value_name = "MS")]
    double_sign_check_ms: Option<u64>,
    /// Test aid: shift this node's clock by this many milliseconds (may be negative).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    clock_skew_ms: i64,
    /// Devnet aid: an initial balance PUBLIC_KEY_HEX:UNITS in the genesis being formed
    /// (repeatable; every validator must be given the same).
    #[arg(long = "fund", hide = true)]
    fund: Vec<String>,
    #[command(flatten)]
    http: HttpArgs,
}

/// The limits of the HTTP API, which answers anyone who reaches the port.
#[derive(Args)]
#[command(next_help_heading = "HTTP API limits")]
struct HttpArgs {
    /// Open HTTP connections at most; further ones are closed at once. Lowered to the open-file
    /// limit (raised to its hard limit at start) minus 128 descriptors kept for the node.
    #[arg(long, default_value_t = 1000)]
    http_max_connections: usize,
    /// A connection that sends no complete request head within this long of opening or of its
    /// previous answer is closed (idle keep-alive connections, clients that send slowly).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    http_idle_timeout: Duration,
    /// A request not answered within this long (its body included) gets 503.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    http_request_timeout: Duration,
    /// Requests per second per client IP address (an IPv6 one by its /64), with bursts of twice
    /// as many; each 64 KiB answered counts as one more request. Beyond: 429 with Retry-After.
    /// 0 turns the limit off (behind a proxy, every client shares the proxy's address).
    #[arg(long, default_value_t = 200)]
    http_rate_limit: u32,
    /// Bytes of JSON an answer of `/blocks?from=` or `/summaries` stops before (it says where to
    /// continue). One block is always sent, however large.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    http_max_response_bytes: usize,
    /// Serve `/metrics` on this address (IP:PORT, e.g. 127.0.0.1:9101) instead of the API's, so
    /// that a firewall can open the API (`POST /tx`) and keep the metrics to the monitoring
    /// network [default: on the API's address]. With it, the API's port answers 404 to
    /// `/metrics`.
    #[arg(long, value_name = "IP:PORT", value_parser = addr::listen_address, help_heading = "Metrics")]
    metrics_listen: Option<SocketAddr>,
}

impl HttpArgs {
    fn limits(&self) -> Result<httpserve::Limits> {
        if self.http_max_connections == 0 {
            bail!("--http-max-connections must be at least 1");
        }
        if self.http_idle_timeout.is_zero() || self.http_request_timeout.is_zero() {
            bail!("--http-idle-timeout and --http-request-timeout must be positive");
        }
        if self.http_max_response_bytes < 1024 {
            bail!("--http-max-response-bytes must be at least 1024");
        }
        Ok(httpserve::Limits {
            max_connections: self.http_max_connections,
            idle_timeout: self.http_idle_timeout,
            request_timeout: self.http_request_timeout,
            rate_per_second: self.http_rate_limit,
            max_response_bytes: self.http_max_response_bytes,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a validator of a real network from a genesis file and a key file (or a configuration
    /// file holding them: `timed run --config timed.toml`).
    Run(RunArgs),
    /// Start a new validator's folder: a key file (validator.key, as `timed keygen` writes) and a
    /// commented configuration file (timed.toml) with every key of `timed run` and its default.
    /// Prints the public key to give to whoever builds the genesis. Never overwrites a file.
    Init {
        /// The folder to write in (created if missing).
        #[arg(long, default_value = ".", value_hint = ValueHint::DirPath)]
        dir: PathBuf,
    },
    /// Delete a stopped node's chain data (timed.redb, wal.log) so that it fetches the chain
    /// again from its peers. Keeps the key, the double-sign guard file (KEY.last_signed, or
    /// DATA_DIR.last_signed for a development validator: the last point this validator signed,
    /// so the restarted node still never signs twice) and the genesis the directory is bound to.
    Reset(ResetArgs),
    /// Generate a validator key file (and print its public key).
    Keygen {
        /// Where to write the key (never overwritten; mode 0600).
        #[arg(long, default_value = "validator.key")]
        out: PathBuf,
    },
    /// A wallet: `wallet new`, `wallet balance ADDRESS --node URL`,
    /// `wallet send --key FILE --to ADDRESS --amount 1.5 --fee 0.001 --node URL`.
    Wallet(wallet::WalletArgs),
    /// Light client: check a node's blocks against a genesis file alone (certificates, quorum,
    /// hash links).
    Verify(verify::VerifyArgs),
    /// Build a genesis file from the validators' public keys, stakes and addresses.
    Genesis(GenesisArgs),
    /// Print the hash of a genesis file: the one `timed genesis` printed, every node logs at start
    /// ("Genesis fixed") and `/status` shows as genesis_hash. Operators compare it out of band.
    GenesisHash {
        /// The genesis file (JSON).
        file: PathBuf,
    },
    /// Start a whole local network on loopback and print each finalized block.
    Devnet(devnet::DevnetArgs),
    /// Benchmarks of a real node: `timed bench catchup --blocks 10000` times a fresh node
    /// syncing a generated chain over QUIC; `timed bench tx --rate 10000` measures finalized
    /// transfers per second.
    Bench(bench::BenchArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell. Install it,
    /// for bash: `timed completions bash > /etc/bash_completion.d/timed` (or
    /// ~/.local/share/bash-completion/completions/timed); zsh: into a folder of $fpath as
    /// `_timed`; fish: ~/.config/fish/completions/timed.fish.
    Completions {
        /// The shell.
        shell: manual::Shell,
    },
    /// Print the manual page (roff) of timed, or with --dir write one page per subcommand
    /// (timed.1, timed-run.1, ...): `timed man --dir /usr/local/share/man/man1`, then
    /// `man timed-run`. Each is what `timed SUBCOMMAND --help` says.
    Man {
        /// Write every page into this folder instead of printing timed.1.
        #[arg(long, value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ResetArgs {
    /// The node's data directory (its --data-dir).
    #[arg(long, value_hint = ValueHint::DirPath)]
    data_dir: PathBuf,
    /// The validator's key file, if it has one: only to name its guard file in what is kept
    /// (neither is touched).
    #[arg(long, value_hint = ValueHint::FilePath)]
    key: Option<PathBuf>,
    /// Delete without asking (needed when standard input is not a terminal).
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A configuration file (TOML) whose keys are these flags without their dashes, e.g.
    /// `http-idle-timeout = "10s"` (`timed init` writes one with every key); a flag given here
    /// overrides the file's key. Relative paths in it are relative to its folder.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    config: Option<PathBuf>,
    /// The genesis file (JSON, from `timed genesis`).
    #[arg(long, value_hint = ValueHint::FilePath)]
    genesis: PathBuf,
    /// This validator's key file (from `timed keygen`). The double-sign guard file (the last
    /// point this validator signed) is kept beside it, as <KEY>.last_signed: keep the two
    /// together when moving or backing up the key.
    #[arg(long, value_hint = ValueHint::FilePath)]
    key: PathBuf,
    /// Where blocks, ledger and WAL are kept.
    #[arg(long, value_hint = ValueHint::DirPath)]
    data_dir: PathBuf,
    /// Address for QUIC (UDP) and HTTP (TCP): an IP address of this machine and a port, e.g.
    /// 0.0.0.0:8001.
    #[arg(long, value_parser = addr::listen_address)]
    listen: SocketAddr,
    /// Peers as host:port, comma separated [default: the genesis addresses].
    #[arg(long, value_delimiter = ',', value_parser = peer_flag)]
    peers: Vec<String>,
    /// After a start that shows lost signed records (the double-sign guard file says this
    /// validator signed further than its data directory remembers, or there is no guard file),
    /// sign nothing for this many milliseconds and watch the network for signatures of this key
    /// made elsewhere (another instance running it) [default: twice the genesis resend interval,
    /// 4000 with the default parameters; 0, no watch, for a brand-new validator with neither a
    /// guard file nor chain data]. Give it when starting a key copied to a new machine without
    /// its guard file: such a node looks brand new.
    #[arg(long, value_name = "MS")]
    double_sign_check_ms: Option<u64>,
    /// Test aid: shift this node's clock by this many milliseconds (may be negative).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    clock_skew_ms: i64,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args)]
struct GenesisArgs {
    /// A validator as NAME:PUBLIC_KEY_HEX:STAKE[:HOST:PORT]; repeat for each.
    #[arg(long = "validator", required = true)]
    validators: Vec<String>,
    /// An initial balance as PUBLIC_KEY_HEX:UNITS (1 TIME = 100000000 units); repeatable.
    #[arg(long = "balance")]
    balances: Vec<String>,
    /// The chain id.
    #[arg(long, default_value = "timed-mainnet")]
    chain_id: String,
    /// Pause between blocks ("8s", "1s", "0").
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    block_time: Duration,
    /// Genesis time in milliseconds since the Unix epoch [default: now].
    #[arg(long)]
    genesis_time_ms: Option<u64>,
    /// Where to write the genesis file.
    #[arg(long, default_value = "genesis.json")]
    out: PathBuf,
}

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
    // One thread: the consensus loop, QUIC and HTTP (DEPENDENCIES.md, trap 5).
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
        }),
        guard: guard::path_for_data_dir(&data_dir),
        double_sign_check_ms: a.double_sign_check_ms,
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
    let genesis = handshake::read_genesis(&a.genesis)?;
    let key = keys::load(&a.key)?;
    let name = genesis
        .validators
        .iter()
        .find(|v| v.public_key == key.public_key())
        .map_or_else(
            || format!("observer-{}", hex::encode(&key.public_key().0[..4])),
            |v| v.name.clone(),
        );
    let peers = if a.peers.is_empty() {
        genesis_peers(&genesis, &key)?
    } else {
        a.peers.into_iter().filter(|p| !p.is_empty()).collect()
    };
    let setup = app::Setup {
        name,
        key,
        dev: None,
        genesis: Some(genesis),
        guard: guard::path_for_key(&a.key),
        double_sign_check_ms: a.double_sign_check_ms,
        data_dir: a.data_dir,
        listen: a.listen,
        metrics_listen: a.http.metrics_listen,
        peers,
        http,
    };
    runtime()?.block_on(app::run_node(setup))
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

/// `--stake`: a whole number from 1 (a negative one reaches here, not clap's "unexpected
/// argument").
fn stake_flag(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("the stake must be at least 1 (it is this validator's voting weight)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{text:?} is not a stake: a whole number from 1 (this validator's voting weight), \
             e.g. --stake 100"
        )),
    }
}

/// `--peers`: each HOST:PORT (`addr::peer_address`); an empty one (`--peers ""`) means none.
fn peer_flag(text: &str) -> Result<String, addr::AddressError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    addr::peer_address(text)
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
