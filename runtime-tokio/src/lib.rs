#![forbid(unsafe_code)]
//! The TIME Coin validator node as a library: what the `timed` binary (`main.rs`, the command
//! line only) runs, and the transport a peer speaks.
//!
//! Public, for the binary: starting a node (`app`), the addresses operators write (`addr`), the
//! subcommands (`devnet`, `bench`, `wallet`, `verify`, `reset`), the configuration file (`config`), completions and manual pages (`manual`), key and genesis files (`keys`,
//! `handshake`), the double-sign guard's file paths (`guard`) and the HTTP limits
//! (`httpserve::Limits`).
//!
//! Public, for anything that connects to a node as a peer: the QUIC TLS configuration
//! authenticated by a validator key (`tls`), the hello and the framing on the stream (`wire`), and
//! how a development network forms its genesis (`handshake::dev_genesis`). The node's insides
//! (core driver, store, write-ahead log, peer queues, metrics) stay private.

pub mod addr;
pub mod app;
pub mod bench;
mod bench_tx;
mod client;
pub mod config;
mod ctx;
mod dashboard;
pub mod devnet;
mod driver;
mod finality;
pub mod guard;
pub mod handshake;
mod health;
mod http;
mod httpc;
pub mod httpserve;
pub mod keys;
pub mod logs;
pub mod manual;
mod metrics;
mod net;
mod procmetrics;
pub mod reset;
mod store;
mod stored;
mod syncserve;
pub mod tls;
mod txbatch;
mod txverify;
pub mod verify;
mod wal;
pub mod wallet;
pub mod wire;

use std::time::Duration;

pub use ctx::{DevMode, set_clock_skew_ms, unix_ms};

/// This binary's version (Cargo.toml) and the commit it was built from (`build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("TIMED_COMMIT");

/// Parses "8s", "500ms", "2m", "1.5s" or a bare number of seconds ("0").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 8s, 500ms, 0)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
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
    }
}
