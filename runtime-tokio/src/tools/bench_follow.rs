//! `timed bench follow`: how far a full node lags behind the validators it follows.
//!
//! 1. A devnet of `--nodes` validators at block time 0 is started (`timed devnet`), and a full
//!    node (`timed run --full-node`) follows its first two validators.
//! 2. Every process logs the moment its consensus loop finalizes each height (the debug line of
//!    target `timed::finalized`, written when the block enters the write-ahead log: before the
//!    store's batching, which would add its own up to 10 ms to both sides).
//! 3. After `--duration`, the lag of each height is the full node's moment minus the earliest
//!    validator's; heights of the first `--warmup` (the full node catching up from its start)
//!    are left out. All processes share one clock (this machine's).
//!
//! Printed: heights counted, lag p50, p90, p99 and max, the devnet's blocks per second and the
//! load average, which says how busy the machine was.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use timed_core::units::percentile;

use crate::tools::bench_tx::start_devnet;
use crate::tools::devnet::{Children, free_port};

/// What every process of the bench logs: warnings, and the moment of each finalization.
const LOG_FILTER: &str = "warn,timed::finalized=debug";

#[derive(Args)]
pub struct FollowArgs {
    /// Validators of the devnet.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How long to run after the full node started.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Left out at the start: the full node catching up from height 0.
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    warmup: Duration,
}

pub async fn run(a: FollowArgs) -> Result<()> {
    if a.nodes < 2 {
        bail!("--nodes must be at least 2: the full node follows two validators");
    }
    let (devnet, urls, _) = start_devnet(a.nodes, &[("RUST_LOG", LOG_FILTER)])?;
    let dir = devnet.dir.clone();
    let genesis = dir.join("validator1").join("genesis.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !genesis.exists() {
        if std::time::Instant::now() > deadline {
            bail!("the devnet fixed no genesis within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peers: Vec<String> = urls
        .iter()
        .take(2)
        .map(|u| u.trim_start_matches("http://").to_string())
        .collect();
    let port = free_port()?;
    let log = dir.join("full-node.log");
    let file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the timed executable")?;
    let child = Command::new(exe)
        .args(["run", "--full-node", "--genesis"])
        .arg(&genesis)
        .arg("--data-dir")
        .arg(dir.join("full-node"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--peers", &peers.join(",")])
        .env("RUST_LOG", LOG_FILTER)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start the full node")?;
    let mut full = Children(vec![("full node".into(), child)]);
    println!(
        "bench follow: {} validators at block time 0, a full node following {}, for {:?}",
        a.nodes,
        peers.join(" and "),
        a.duration
    );
    let start = std::time::Instant::now();
    tokio::time::sleep(a.duration).await;
    let ran = start.elapsed();
    full.stop();
    let validators: Vec<BTreeMap<u64, i64>> = (1..=a.nodes)
        .map(|i| finalized_at(&dir.join(format!("validator{i}.log"))))
        .collect::<Result<_>>()?;
    let follower = finalized_at(&log)?;
    drop(devnet); // stops the validators and removes the directory, the logs with it
    let Some(&first) = follower.values().min() else {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        bail!(
            "the full node finalized nothing; the end of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    let from = first + a.warmup.as_micros() as i64;
    // Microseconds; a full node ahead of every validator (impossible: it needs their
    // certificate) would count as 0.
    let mut lags: Vec<u64> = follower
        .iter()
        .filter(|(_, t)| **t >= from)
        .filter_map(|(h, t)| {
            let earliest = validators.iter().filter_map(|v| v.get(h)).min()?;
            Some(u64::try_from(t - earliest).unwrap_or(0))
        })
        .collect();
    if lags.is_empty() {
        bail!("no height past the warm-up was finalized by both; run longer");
    }
    lags.sort_unstable();
    let ms = |p: f64| percentile(&lags, p) as f64 / 1000.0;
    let heights = follower.len();
    let rate = heights as f64 / ran.as_secs_f64();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "full node lag behind the first validator, {} heights: p50 {:.2} ms, p90 {:.2} ms, p99 \
         {:.2} ms, max {:.2} ms ({rate:.0} heights/s; load average {})",
        lags.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// Each height's moment of finalization (µs since the epoch) in a node's log: the lines of
/// target `timed::finalized`, as the text format writes them.
fn finalized_at(log: &Path) -> Result<BTreeMap<u64, i64>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut at = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("timed::finalized")) {
        let (Some(stamp), Some(height)) = (
            line.split_whitespace().next(),
            line.split("height=").nth(1).and_then(|r| {
                r.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            }),
        ) else {
            continue;
        };
        if let Ok(t) = chrono_micros(stamp) {
            at.entry(height).or_insert(t);
        }
    }
    Ok(at)
}

/// Microseconds since the epoch of an RFC 3339 UTC stamp as the logs write it
/// (`2026-12-03T05:26:30.572558Z`).
fn chrono_micros(stamp: &str) -> Result<i64> {
    let bad = || anyhow::anyhow!("not a log time stamp: {stamp}");
    let s = stamp.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap_or(-1)).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap_or(-1)).collect();
    if d.len() != 3 || t.len() != 3 || d.iter().chain(&t).any(|x| *x < 0) {
        return Err(bad());
    }
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let micros: i64 = format!("{frac:0<6}")[..6].parse().map_err(|_| bad())?;
    Ok(((days * 24 + t[0]) * 60 + t[1]) * 60_000_000 + t[2] * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_time_stamps_read_as_microseconds_since_the_epoch() {
        assert_eq!(chrono_micros("1970-01-01T00:00:00.000001Z").unwrap(), 1);
        // 2026-12-03T05:26:30.572558Z = 1796275590 s since the epoch.
        assert_eq!(
            chrono_micros("2026-12-03T05:26:30.572558Z").unwrap(),
            1_796_275_590_572_558
        );
        assert!(chrono_micros("yesterday").is_err());
    }
}
