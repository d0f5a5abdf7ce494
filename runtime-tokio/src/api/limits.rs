//! The limits an HTTP client meets, apart from the server that applies them (`httpserve.rs`):
//! the `--http-*` settings (`Limits`), the descriptors kept for the node (`raise_fd_limit`,
//! `connection_cap`) and the per-client token buckets (`RateLimiter`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Descriptors kept for the node itself (WAL and its rewrite, redb, the QUIC socket, runtimes,
/// standard streams), whatever the HTTP clients do.
pub const FD_RESERVE: u64 = 128;

/// Each this many bytes answered cost a client one more token.
pub const BYTES_PER_TOKEN: u64 = 64 * 1024;

/// The limits of the HTTP API (`--http-*` flags).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most (before the descriptor limit lowers it).
    pub max_connections: usize,
    /// From opening, or from the previous answer, to a complete request head.
    pub idle_timeout: Duration,
    /// From a request's head to its answer.
    pub request_timeout: Duration,
    /// Tokens per second per client; 0: no rate limit.
    pub rate_per_second: u32,
    /// Bytes of JSON a range answer stops before.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1000,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            rate_per_second: 200,
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Raises the soft limit of open files to the hard one; returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    // "Unlimited" is not a number of descriptors the kernel hands out; a million is plenty.
    let soft = now.current.unwrap_or(1 << 20);
    let hard = now.maximum.unwrap_or(1 << 20);
    if soft >= hard {
        return soft;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: now.maximum,
        },
    ) {
        Ok(()) => {
            debug!("Raised the open-file limit from {soft} to {hard}");
            hard
        }
        Err(e) => {
            warn!("Cannot raise the open-file limit from {soft} to {hard} ({e}); keeping {soft}");
            soft
        }
    }
}

/// The connection cap: as asked, but never more than the descriptors left after the reserve.
pub fn connection_cap(asked: usize, fd_limit: u64) -> usize {
    let spare = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    asked.min(spare).max(1)
}

/// Whose bucket a request takes from: an IPv4 address, or an IPv6 /64 (one host's usual share).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client: `rate` tokens a second, up to two seconds' worth saved.
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Clients remembered at most before the full buckets are forgotten.
const MAX_CLIENTS: usize = 4096;

impl RateLimiter {
    /// The buckets, ignoring poisoning (no lock is held across code that may panic mid-update).
    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn new(rate_per_second: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate_per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        2.0 * self.rate
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst());
        b.at = now;
    }

    /// Takes a token for a request of `ip`, or says how long to wait for one.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets();
        if buckets.len() >= MAX_CLIENTS {
            let burst = self.burst();
            for b in buckets.values_mut() {
                self.refill(b, now);
            }
            buckets.retain(|_, b| b.tokens < burst);
            // Thousands of clients all busy at once (or addresses made up by the thousand):
            // forgetting them all costs a burst each, keeping them a scan per request.
            if buckets.len() >= MAX_CLIENTS {
                buckets.clear();
            }
        }
        let b = buckets.entry(client_key(ip)).or_insert(Bucket {
            tokens: self.burst(),
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Charges `ip` for an answer of `bytes` (its bucket may go below zero: the next requests
    /// wait it off).
    pub fn charge(&self, ip: IpAddr, bytes: u64) {
        let extra = bytes / BYTES_PER_TOKEN;
        if self.rate <= 0.0 || extra == 0 {
            return;
        }
        if let Some(b) = self.buckets().get_mut(&client_key(ip)) {
            b.tokens -= extra as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_the_reserve_to_the_node() {
        assert_eq!(connection_cap(1000, 1 << 20), 1000);
        assert_eq!(connection_cap(1000, 1024), 1024 - FD_RESERVE as usize);
        assert_eq!(connection_cap(1000, 256), 128);
        assert_eq!(connection_cap(1000, 64), 1);
    }

    #[test]
    fn an_empty_bucket_says_when_to_come_back() {
        let limiter = RateLimiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..20 {
            assert!(limiter.take(ip, t).is_ok());
        }
        let wait = limiter.take(ip, t).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another client is not affected; a tenth of a second later one more request passes.
        assert!(limiter.take("192.0.2.2".parse().unwrap(), t).is_ok());
        assert!(limiter.take(ip, t + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn large_answers_cost_more() {
        let limiter = RateLimiter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert!(limiter.take(ip, t).is_ok());
        limiter.charge(ip, 4 * 1024 * 1024);
        let wait = limiter.take(ip, t).unwrap_err();
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
    }

    #[test]
    fn the_clients_remembered_stay_bounded() {
        let limiter = RateLimiter::new(1);
        let t = Instant::now();
        for i in 0..3 * MAX_CLIENTS as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.take(ip, t);
            let _ = limiter.take(ip, t);
            let _ = limiter.take(ip, t);
        }
        assert!(limiter.buckets().len() <= MAX_CLIENTS);
    }

    #[test]
    fn a_disabled_limiter_lets_everything_through() {
        let limiter = RateLimiter::new(0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10_000 {
            assert!(limiter.take(ip, Instant::now()).is_ok());
        }
    }
}
