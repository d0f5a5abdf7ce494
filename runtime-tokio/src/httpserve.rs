//! Serving the HTTP API (`http.rs`) without endangering consensus: the server's own thread and
//! runtime, its accept loop, and every limit a client meets.
//!
//! - **Its own thread.** The consensus loop, QUIC and the WAL run on the main thread's runtime;
//!   HTTP requests are read, answered from the store (redb serves readers beside the writer) and
//!   encoded as JSON on the `timed-http` threads. A client can slow the HTTP API, not block
//!   production. Requests for the core (`POST /tx`, a mempool lookup) still cross as messages.
//!   Those threads also run at a lower scheduling priority (nice 10, Linux): on a machine short of
//!   cores, the kernel gives the consensus thread the CPU first.
//! - **Descriptors.** At start the soft `RLIMIT_NOFILE` is raised to the hard limit
//!   (`raise_fd_limit`); the connection cap is then at most that limit minus `FD_RESERVE`, which
//!   stays for the WAL, redb, QUIC and the runtimes. Beyond the cap a new connection is closed at
//!   once. An `accept` that fails (`EMFILE` and the like) is logged and retried after a pause:
//!   never a reason to stop.
//! - **Timeouts.** A connection must deliver a request's head within `idle_timeout` of opening or
//!   of its previous answer (idle keep-alive connections and slowloris senders alike), and a
//!   request must be answered within `request_timeout` (its body included).
//! - **Rate.** Each client IP address (an IPv6 one by its /64) has a token bucket: a request
//!   costs one token, and each 64 KiB answered one more; an empty bucket answers 429 with
//!   `Retry-After`.
//! - **Size.** Ranges (`/blocks`, `/summaries`) stop before `max_response_bytes` (`http.rs`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::ctx::{Ctx, lock};

/// Descriptors kept for the node itself (WAL and its rewrite, redb, the QUIC socket, runtimes,
/// standard streams), whatever the HTTP clients do.
pub const FD_RESERVE: u64 = 128;

/// Each this many bytes answered cost a client one more token.
const BYTES_PER_TOKEN: u64 = 64 * 1024;

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
        let mut buckets = lock(&self.buckets);
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
        if let Some(b) = lock(&self.buckets).get_mut(&client_key(ip)) {
            b.tokens -= extra as f64;
        }
    }
}

/// The nice value of the HTTP threads: consensus (0) first when both want a core.
const HTTP_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (on Linux, nice applies to one thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HTTP_NICE)
    {
        debug!("Cannot lower the priority of an HTTP thread: {e}");
    }
}

/// Connections at most on the metrics address (`--metrics-listen`): a few scrapers.
const METRICS_CONNECTIONS: usize = 32;

/// Starts the HTTP server on its own thread; it stops when the node shuts down. With `metrics`
/// (`--metrics-listen`), `/metrics` is served there, under the same timeouts and rate limit, and
/// not on `listener`.
pub fn start(
    ctx: Arc<Ctx>,
    listener: std::net::TcpListener,
    metrics: Option<std::net::TcpListener>,
    fd_limit: u64,
) -> io::Result<std::thread::JoinHandle<()>> {
    let limits = ctx.http;
    let cap = connection_cap(limits.max_connections, fd_limit);
    if cap < limits.max_connections {
        warn!(
            "HTTP connections capped at {cap}, not {}: the open-file limit is {fd_limit} and \
             {FD_RESERVE} stay for the node (raise `ulimit -n` for more)",
            limits.max_connections
        );
    }
    info!(
        "HTTP: at most {cap} connections, {} s to send a request, {} s to answer it, {} requests \
         per second per client{}, ranges below {} bytes",
        limits.idle_timeout.as_secs_f64(),
        limits.request_timeout.as_secs_f64(),
        limits.rate_per_second,
        if limits.rate_per_second == 0 {
            " (no limit)"
        } else {
            ""
        },
        limits.max_response_bytes
    );
    listener.set_nonblocking(true)?;
    if let Some(m) = &metrics {
        m.set_nonblocking(true)?;
    }
    // Two workers: a long encoding on one leaves the other to answer `/status`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_name("timed-http")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("timed-http".into())
        .spawn(move || {
            lower_priority();
            let api = crate::http::router(ctx.clone(), metrics.is_none());
            runtime.block_on(async {
                let api = serve(ctx.clone(), listener, cap, api);
                match metrics {
                    Some(m) => {
                        let router = crate::http::metrics_router(ctx.clone());
                        let cap = METRICS_CONNECTIONS.min(cap);
                        tokio::join!(api, serve(ctx, m, cap, router));
                    }
                    None => api.await,
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
}

/// Warns at most once per this long about refused connections and failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

async fn serve(ctx: Arc<Ctx>, listener: std::net::TcpListener, cap: usize, router: Router) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("The HTTP server cannot start: {e}; the node runs without its HTTP API");
            return;
        }
    };
    let rate = Arc::new(RateLimiter::new(ctx.http.rate_per_second));
    let slots = Arc::new(Semaphore::new(cap));
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Duration::from_millis(10);
    let mut last_warning: Option<Instant> = None;
    let mut warn_now = |what: &str| {
        if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            last_warning = Some(Instant::now());
            warn!("{what} (repeats are counted in timed_http_refused_total, not logged)");
        }
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(10);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    ctx.metrics
                        .http_refused(crate::metrics::HttpRefused::ConnectionCap);
                    warn_now(&format!(
                        "HTTP connection from {addr} closed at once: {cap} are open already \
                         (--http-max-connections)"
                    ));
                    drop(stream);
                    continue;
                };
                let (ctx, router, rate) = (ctx.clone(), router.clone(), rate.clone());
                tokio::spawn(async move {
                    ctx.metrics.http_connections.inc();
                    connection(&ctx, router, rate, stream, addr).await;
                    ctx.metrics.http_connections.dec();
                    drop(slot);
                });
            }
            // The client gave up before we took its connection: nothing to do.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or memory: the connection waits in the
                // kernel's backlog while connections close; a busy loop would only burn the CPU.
                ctx.metrics
                    .http_refused(crate::metrics::HttpRefused::AcceptError);
                warn_now(&format!(
                    "Cannot accept an HTTP connection: {e}; retrying in {} ms",
                    backoff.as_millis()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// What the watchdog of one connection reads.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last progress: a request head, an answer, bytes written.
    last_ms: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Marks a request in flight until dropped (answered, failed or cancelled).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's socket that reports the bytes written to it as progress. Bytes read do not count:
/// a slowloris sender makes "progress" a byte at a time.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Returns once the connection has made no progress for `idle` with no request in flight.
async fn watchdog(activity: &Activity, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        if activity.in_flight.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
            return;
        }
    }
}

async fn connection(
    ctx: &Arc<Ctx>,
    router: Router,
    rate: Arc<RateLimiter>,
    stream: TcpStream,
    addr: SocketAddr,
) {
    let limits = ctx.http;
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let (ctx, activity) = (ctx.clone(), activity.clone());
        hyper::service::service_fn(move |req| {
            let (ctx, router, rate, activity) =
                (ctx.clone(), router.clone(), rate.clone(), activity.clone());
            async move { Ok::<_, Infallible>(answer(&ctx, router, &rate, &activity, addr, req).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(io, service);
    let mut shutdown = ctx.shutdown.clone();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                if e.is_timeout() {
                    ctx.metrics.http_refused(crate::metrics::HttpRefused::IdleTimeout);
                }
                debug!(%addr, "HTTP connection ended: {e}");
            }
        }
        _ = watchdog(&activity, limits.idle_timeout) => {
            ctx.metrics.http_refused(crate::metrics::HttpRefused::IdleTimeout);
            debug!(%addr, "HTTP connection closed: no request for {:?}", limits.idle_timeout);
        }
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

fn refusal(code: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": reason }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(
    ctx: &Ctx,
    router: Router,
    rate: &RateLimiter,
    activity: &Arc<Activity>,
    addr: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let _in_flight = InFlight::new(activity);
    if let Err(wait) = rate.take(addr.ip(), Instant::now()) {
        ctx.metrics
            .http_refused(crate::metrics::HttpRefused::RateLimit);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many requests from {}: at most {} per second (each 64 KiB answered counts as \
                 one more); retry in {secs} s",
                addr.ip(),
                ctx.http.rate_per_second
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let limit = ctx.http.request_timeout;
    match tokio::time::timeout(limit, router.oneshot(req)).await {
        Ok(Ok(r)) => {
            if let Some(bytes) = r.body().size_hint().exact() {
                rate.charge(addr.ip(), bytes);
            }
            r
        }
        Ok(Err(never)) => match never {},
        Err(_) => {
            ctx.metrics
                .http_refused(crate::metrics::HttpRefused::RequestTimeout);
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the request was not answered within {} s",
                    limit.as_secs_f64()
                ),
            )
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
        assert!(lock(&limiter.buckets).len() <= MAX_CLIENTS);
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
