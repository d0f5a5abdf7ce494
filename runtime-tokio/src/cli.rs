//! The command line of `timed`: its subcommands and flags as clap reads them (with a
//! `--config` file's keys added, `config.rs`), and the parsers of the flags that need more than
//! a type. What each subcommand does is in `main.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
use timed::{addr, bench, devnet, httpserve, manual, parse_duration, validator, verify, wallet};

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) dev: DevArgs,
    /// Log format: human-readable text, or one JSON object per line. Filter with RUST_LOG
    /// (default: info).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        help_heading = "Logging"
    )]
    pub(crate) log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Development mode: this validator's id (e.g. validator1); its key derives from it.
    #[arg(long)]
    pub(crate) validator_id: Option<String>,
    /// Port for QUIC (UDP) and HTTP (TCP).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Other validators as host:port, comma separated; the genesis is formed once each has said
    /// hello.
    #[arg(long, value_delimiter = ',', value_parser = peer_flag)]
    pub(crate) peers: Vec<String>,
    /// This validator's stake (voting weight) in the genesis being formed: a whole number from 1.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = stake_flag)]
    pub(crate) stake: u64,
    /// Pause between finalizing a block and starting the next ("8s", "500ms", "0" for as fast
    /// as possible). All validators must use the same.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub(crate) block_time: Duration,
    /// Where blocks, ledger, WAL and the fixed genesis are kept [default: ./data/<validator-id>].
    /// The double-sign guard file goes beside it, as <DATA_DIR>.last_signed: wiping the data
    /// directory leaves it.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to bind (both UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,
    /// Chain id of the genesis being formed.
    #[arg(long, default_value = "timed-devnet")]
    pub(crate) chain_id: String,
    /// After a start that shows lost signed records (the double-sign guard file says this
    /// validator signed further than its data directory remembers, or there is no guard file),
    /// sign nothing for this many milliseconds and watch the network for signatures of this key
    /// made elsewhere (another instance running it) [default: twice the genesis resend interval,
    /// 4000 with the default parameters; 0, no watch, for a brand-new validator with neither a
    /// guard file nor chain data]. Give it when starting a key copied to a new machine without
    /// its guard file: such a node looks brand new.
    #[arg(long, value_name = "MS")]
    pub(crate) double_sign_check_ms: Option<u64>,
    /// Test aid: shift this node's clock by this many milliseconds (may be negative).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) clock_skew_ms: i64,
    /// Heights per epoch of the genesis being formed: the validator set changes only after the
    /// last height of an epoch, to the set elected one epoch before (`timed devnet` gives 10, so
    /// that a validator joins or leaves within seconds) [default: 100]. All validators must use
    /// the same.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) epoch_blocks: Option<u64>,
    /// Devnet aid: an initial balance PUBLIC_KEY_HEX:UNITS in the genesis being formed
    /// (repeatable; every validator must be given the same).
    #[arg(long = "fund", hide = true)]
    pub(crate) fund: Vec<String>,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) followers: FollowerArgs,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
}

/// What the node keeps on disk.
#[derive(Args)]
#[command(next_help_heading = "Storage")]
pub(crate) struct StorageArgs {
    /// Keep only the last N finalized blocks (at least 100): older blocks, their certificates
    /// and their transactions' index entries are deleted in the background, so the database
    /// stops growing. The ledger (every balance) is kept whole. The API answers 404 for a pruned
    /// block or transaction, naming the lowest height kept; peers catching up from further back
    /// fetch from other validators, and `timed verify` needs a node that keeps everything
    /// [default: keep everything].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(timed::pruner::MIN_RETAIN_BLOCKS..))]
    pub(crate) retain_blocks: Option<u64>,
    /// Write a snapshot of the ledger (every balance and the staking state, cut into chunks
    /// that each verify alone against the block's state root) at every height that is a
    /// multiple of N, keeping the last two under <data-dir>/snapshots; the API serves them
    /// (GET /snapshots) so that a new node can start from one. 0 writes none.
    #[arg(long, value_name = "N", default_value_t = timed::snapshots::DEFAULT_SNAPSHOT_INTERVAL)]
    pub(crate) snapshot_interval: u64,
    /// When the data directory is empty, start from the newest snapshot these nodes' HTTP APIs
    /// offer (http://HOST:PORT, comma-separated) instead of replaying the chain: the chain up
    /// to it is verified from the genesis, the snapshot against that block's state root, and
    /// its chunks are fetched from all of them at once; a node that serves anything false is
    /// avoided. Ignored when the data directory holds a chain.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub(crate) state_sync: Vec<String>,
}

/// Full nodes and other readers of the chain that connect to this node.
#[derive(Args)]
pub(crate) struct FollowerArgs {
    /// Followers (full nodes, and anything else that only reads the chain over QUIC) this node
    /// serves at once: each is pushed every finalized block and may ask for older ones and
    /// submit transfers, within a rate budget; it never votes. 0 admits none (a validator
    /// behind sentry full nodes).
    #[arg(long, value_name = "N", default_value_t = timed::followers::DEFAULT_MAX_FOLLOWERS)]
    pub(crate) max_followers: usize,
}

/// The limits of the HTTP API, which answers anyone who reaches the port.
#[derive(Args)]
#[command(next_help_heading = "HTTP API limits")]
pub(crate) struct HttpArgs {
    /// Open HTTP connections at most; further ones are closed at once. Lowered to the open-file
    /// limit (raised to its hard limit at start) minus 128 descriptors kept for the node.
    #[arg(long, default_value_t = 1000)]
    pub(crate) http_max_connections: usize,
    /// A connection that sends no complete request head within this long of opening or of its
    /// previous answer is closed (idle keep-alive connections, clients that send slowly).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) http_idle_timeout: Duration,
    /// A request not answered within this long (its body included) gets 503.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) http_request_timeout: Duration,
    /// Requests per second per client IP address (an IPv6 one by its /64), with bursts of twice
    /// as many; each 64 KiB answered counts as one more request. Beyond: 429 with Retry-After.
    /// 0 turns the limit off (behind a proxy, every client shares the proxy's address).
    #[arg(long, default_value_t = 200)]
    pub(crate) http_rate_limit: u32,
    /// Bytes of JSON an answer of `/blocks?from=` or `/summaries` stops before (it says where to
    /// continue). One block is always sent, however large.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub(crate) http_max_response_bytes: usize,
    /// Serve `/metrics` on this address (IP:PORT, e.g. 127.0.0.1:9101) instead of the API's, so
    /// that a firewall can open the API (`POST /tx`) and keep the metrics to the monitoring
    /// network [default: on the API's address]. With it, the API's port answers 404 to
    /// `/metrics`.
    #[arg(long, value_name = "IP:PORT", value_parser = addr::listen_address, help_heading = "Metrics")]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

impl HttpArgs {
    pub(crate) fn limits(&self) -> Result<httpserve::Limits> {
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
pub(crate) enum Command {
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
    /// Staking: `validator register --validator-key FILE --name N --address HOST:PORT --bond
    /// 1000 --key OWNER.key --node URL`, `validator bond|unbond --validator KEY --amount 10
    /// --key OWNER.key --node URL` (see `timed validator --help` for the rules).
    #[command(long_about = validator::ABOUT)]
    Validator(validator::ValidatorArgs),
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
pub(crate) struct ResetArgs {
    /// The node's data directory (its --data-dir).
    #[arg(long, value_hint = ValueHint::DirPath)]
    pub(crate) data_dir: PathBuf,
    /// The validator's key file, if it has one: only to name its guard file in what is kept
    /// (neither is touched).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) key: Option<PathBuf>,
    /// Delete without asking (needed when standard input is not a terminal).
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// A configuration file (TOML) whose keys are these flags without their dashes, e.g.
    /// `http-idle-timeout = "10s"` (`timed init` writes one with every key); a flag given here
    /// overrides the file's key. Relative paths in it are relative to its folder.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub(crate) config: Option<PathBuf>,
    /// The genesis file (JSON, from `timed genesis`).
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) genesis: PathBuf,
    /// This validator's key file (from `timed keygen`). The double-sign guard file (the last
    /// point this validator signed) is kept beside it, as <KEY>.last_signed: keep the two
    /// together when moving or backing up the key. Not given with --full-node.
    #[arg(long, value_hint = ValueHint::FilePath)]
    pub(crate) key: Option<PathBuf>,
    /// Run a full node: follow the chain from --peers (validators or other full nodes), check
    /// every block and certificate as a validator does, serve the whole HTTP API, forward
    /// submitted transfers to the nodes followed, and serve followers of its own. It signs
    /// nothing and needs no validator key: its node key (for QUIC) is made once and kept in
    /// <DATA_DIR>/node.key.
    #[arg(long)]
    pub(crate) full_node: bool,
    /// Where blocks, ledger and WAL are kept.
    #[arg(long, value_hint = ValueHint::DirPath)]
    pub(crate) data_dir: PathBuf,
    /// Address for QUIC (UDP) and HTTP (TCP): an IP address of this machine and a port, e.g.
    /// 0.0.0.0:8001.
    #[arg(long, value_parser = addr::listen_address)]
    pub(crate) listen: SocketAddr,
    /// Peers as host:port, comma separated [default: the genesis addresses].
    #[arg(long, value_delimiter = ',', value_parser = peer_flag)]
    pub(crate) peers: Vec<String>,
    /// After a start that shows lost signed records (the double-sign guard file says this
    /// validator signed further than its data directory remembers, or there is no guard file),
    /// sign nothing for this many milliseconds and watch the network for signatures of this key
    /// made elsewhere (another instance running it) [default: twice the genesis resend interval,
    /// 4000 with the default parameters; 0, no watch, for a brand-new validator with neither a
    /// guard file nor chain data]. Give it when starting a key copied to a new machine without
    /// its guard file: such a node looks brand new.
    #[arg(long, value_name = "MS")]
    pub(crate) double_sign_check_ms: Option<u64>,
    /// Test aid: shift this node's clock by this many milliseconds (may be negative).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) clock_skew_ms: i64,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) followers: FollowerArgs,
    #[command(flatten)]
    pub(crate) http: HttpArgs,
}

#[derive(Args)]
pub(crate) struct GenesisArgs {
    /// A validator as NAME:PUBLIC_KEY_HEX:STAKE[:HOST:PORT]; repeat for each.
    #[arg(long = "validator", required = true)]
    pub(crate) validators: Vec<String>,
    /// An initial balance as PUBLIC_KEY_HEX:UNITS (1 TIME = 100000000 units); repeatable.
    #[arg(long = "balance")]
    pub(crate) balances: Vec<String>,
    /// The chain id.
    #[arg(long, default_value = "timed-mainnet")]
    pub(crate) chain_id: String,
    /// Pause between blocks ("8s", "1s", "0").
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub(crate) block_time: Duration,
    /// Genesis time in milliseconds since the Unix epoch [default: now].
    #[arg(long)]
    pub(crate) genesis_time_ms: Option<u64>,
    /// Where to write the genesis file.
    #[arg(long, default_value = "genesis.json")]
    pub(crate) out: PathBuf,
}

/// `--stake`: a whole number from 1 (a negative one reaches here, not clap's "unexpected
/// argument").
pub(crate) fn stake_flag(text: &str) -> Result<u64, String> {
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
pub(crate) fn peer_flag(text: &str) -> Result<String, addr::AddressError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    addr::peer_address(text)
}
