#![forbid(unsafe_code)]
//! The TIME Coin validator node as a library: what the `timed` binary (`main.rs`, the command
//! line only) runs, and the transport a peer speaks.
//!
//! # Layout: one folder a role
//!
//! - `node/`: what runs a validator. `app` (start-up and shutdown), `driver/` (the consensus
//!   loop: the loop and commit path, performing outputs, batch vote checks, per-peer budgets
//!   of signature checks and cool-offs, peers' clock offsets), `ctx` (the state the node's tasks
//!   share, and `Finalized`, what the loop announces), `clock`, `finality`, `txverify`
//!   (gossiped and submitted transfers verified in batches), `metrics` (the counters every role
//!   writes), `logs`.
//! - `net/`: the peers. `transport` (QUIC endpoint, inbound side), `dial` (outbound side),
//!   `queue` (a peer's bounded frame queue), `handshake`, `tls`, `wire` (framing), `addr`,
//!   `syncserve` (answers to sync requests), `twins` (every live instance of a peer's key),
//!   `cooloff` (peers cut off after a provable fault).
//! - `storage/`: what survives a restart. `store/` (redb: writes, tables, reads, errors), `stored`
//!   (the stored block and its finality), `wal/` (file I/O, format, recovery), `guard` (the
//!   double-sign guard file).
//! - `api/`: the HTTP API. `http` (routes), `txbatch`, `health`, `dashboard` (+ its page in
//!   `dashboard/`), `httpserve` (the server's thread and accept loop), `limits`.
//! - `tools/`: the other subcommands, clients of a node: `wallet`, `verify` (light client),
//!   `devnet`, `bench`, `bench_tx/`, and `client`, the one HTTP client they share.
//! - At the root, used by several roles: `keys` (key files), `amount` (TIME amounts as people
//!   write them), `parse_duration`, the version; and for the command line, `config` (the TOML
//!   configuration file of `timed run`, `timed init`'s commented template) and `manual` (shell
//!   completions and manual pages).
//!
//! # Which role may import which
//!
//! - `storage` imports no other role.
//! - `net` imports `storage` and, of `node`, only the shared state (`node::ctx`, `node::metrics`);
//!   never `api` or `tools`.
//! - `api` imports `storage` and, of `node`, the shared state, the clock and the batch verifier
//!   (`node::txverify`); never `net`'s insides or `tools`.
//! - `node` imports `storage`, `net` and `api` (it starts them); only `ctx` is imported back, and
//!   `ctx` itself imports nothing of `net` or `api` but plain types (`net::queue`, `net::tls`,
//!   `net::wire`, `net::twins`, `net::cooloff`, `api::limits`), so no module imports one that imports it back across roles.
//!   The consensus loop does no API work: it announces finalized blocks (`Ctx::finalized`) and
//!   the API keeps its own views from them.
//! - `tools` may import any role (`bench` reads a store, `devnet` waits for the node's signal);
//!   no role imports `tools`.
//!
//! # Public
//!
//! For the binary: starting a node (`app`), the addresses operators write (`addr`), the
//! subcommands (`devnet`, `bench`, `wallet`, `validator`, `verify`), key and genesis files (`keys`,
//! `handshake`), the double-sign guard's file paths (`guard`) and the HTTP limits
//! (`httpserve::Limits`). For anything that connects to a node as a peer: the QUIC TLS
//! configuration authenticated by a validator key (`tls`), the hello and the framing on the
//! stream (`wire`), and how a development network forms its genesis (`handshake::dev_genesis`).
//! These are re-exported here under their old flat names; the node's insides (core driver,
//! store, write-ahead log, peer queues, metrics) stay private.

pub mod amount;
mod api;
pub mod config;
pub mod keys;
pub mod manual;
mod net;
mod node;
mod storage;
mod tools;

pub use api::httpserve;
pub use net::{addr, followers, handshake, tls, wire};
pub use node::{app, logs};
pub use storage::{guard, pruner, reset, snapshots};
pub use tools::{bench, devnet, validator, verify, wallet};

use std::time::Duration;

pub use node::clock::{set_clock_skew_ms, unix_ms};
pub use node::ctx::{DevMode, Role};

/// This binary's version (Cargo.toml) and the commit it was built from (`build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("TIMED_COMMIT");

/// A duration flag: "8s", "500ms", "2m", "1.5s", "2h30m" or a bare number of seconds ("0"), at
/// most a year (`timed_core::units::parse_duration_ms`, the grammar the simulator's files use).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const YEAR_MS: u64 = 365 * 86_400_000;
    let ms = timed_core::units::parse_duration_ms(text, 1_000).map_err(|e| e.to_string())?;
    if ms > YEAR_MS {
        return Err(format!("{text:?} is out of range (at most a year)"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_in_the_units_of_the_flags() {
        assert_eq!(parse_duration("8s").unwrap(), Duration::from_secs(8));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(
            parse_duration("1.5s").unwrap(),
            Duration::from_millis(1_500)
        );
        assert!(parse_duration("400d").is_err());
        assert!(
            parse_duration("9000h")
                .unwrap_err()
                .contains("at most a year")
        );
    }
}
