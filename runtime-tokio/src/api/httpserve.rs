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

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

use crate::api::limits::{FD_RESERVE, RateLimiter, connection_cap};
// The binary and `app.rs` name the limits here, beside the server they configure.
pub use crate::api::limits::{Limits, raise_fd_limit};
use crate::node::ctx::Ctx;

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
    // Subscribed before the consensus loop starts: the dashboard's window misses no block.
    let finalized = ctx.finalized.subscribe();
    runtime.spawn(crate::api::dashboard::follow(ctx.clone(), finalized));
    std::thread::Builder::new()
        .name("timed-http".into())
        .spawn(move || {
            lower_priority();
            let api = crate::api::http::router(ctx.clone(), metrics.is_none());
            runtime.block_on(async {
                let api = serve(ctx.clone(), listener, cap, api);
                match metrics {
                    Some(m) => {
                        let router = crate::api::http::metrics_router(ctx.clone());
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
                        .http_refused(crate::node::metrics::HttpRefused::ConnectionCap);
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
                    .http_refused(crate::node::metrics::HttpRefused::AcceptError);
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
                    ctx.metrics.http_refused(crate::node::metrics::HttpRefused::IdleTimeout);
                }
                debug!(%addr, "HTTP connection ended: {e}");
            }
        }
        _ = watchdog(&activity, limits.idle_timeout) => {
            ctx.metrics.http_refused(crate::node::metrics::HttpRefused::IdleTimeout);
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
            .http_refused(crate::node::metrics::HttpRefused::RateLimit);
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
                .http_refused(crate::node::metrics::HttpRefused::RequestTimeout);
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
