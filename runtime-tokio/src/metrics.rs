//! Prometheus metrics of one node, served as text on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub round: Gauge,
    pub peers: Gauge,
    pub clock_offset_ms: Gauge,
    pub blocks_finalized: Counter,
    pub votes_received: Family<Labels1, Counter>,
    pub rejected: Family<Labels2, Counter>,
    pub frames_dropped: Family<Labels1, Counter>,
    pub handshakes_refused: Family<Labels1, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub evidence: Counter,
    pub sync_requests: Counter,
    pub http_connections: Gauge,
    pub http_refused: Family<Labels1, Counter>,
    pub finality_seconds: Histogram,
    pub persist_seconds: Histogram,
    pub store_seconds: Histogram,
    pub tx_batch_size: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("timed");
        let m = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            peers: Gauge::default(),
            clock_offset_ms: Gauge::default(),
            blocks_finalized: Counter::default(),
            votes_received: Family::default(),
            rejected: Family::default(),
            frames_dropped: Family::default(),
            handshakes_refused: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            evidence: Counter::default(),
            sync_requests: Counter::default(),
            http_connections: Gauge::default(),
            http_refused: Family::default(),
            finality_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 18)),
            persist_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 18)),
            store_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 18)),
            tx_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("height", "The height being decided", m.height.clone());
        r.register("round", "The current round", m.round.clone());
        r.register(
            "peers",
            "Peers with an open outbound connection",
            m.peers.clone(),
        );
        r.register(
            "clock_offset_ms",
            "Estimated offset of the peers' clocks to this node's (median)",
            m.clock_offset_ms.clone(),
        );
        r.register(
            "blocks_finalized",
            "Blocks finalized by this node",
            m.blocks_finalized.clone(),
        );
        r.register(
            "votes_received",
            "Votes counted, by kind",
            m.votes_received.clone(),
        );
        r.register(
            "rejected",
            "Messages refused by the core, by kind and reason",
            m.rejected.clone(),
        );
        r.register(
            "frames_dropped",
            "Frames dropped by the transport, by reason",
            m.frames_dropped.clone(),
        );
        r.register(
            "handshakes_refused",
            "Connections refused at the handshake, by reason",
            m.handshakes_refused.clone(),
        );
        r.register("bytes_in", "Frame bytes received", m.bytes_in.clone());
        r.register(
            "bytes_out",
            "Frame bytes queued for sending",
            m.bytes_out.clone(),
        );
        r.register("evidence", "Equivocations seen", m.evidence.clone());
        r.register(
            "sync_requests",
            "Catch-up requests this node sent",
            m.sync_requests.clone(),
        );
        r.register(
            "http_connections",
            "Open HTTP connections",
            m.http_connections.clone(),
        );
        r.register(
            "http_refused",
            "HTTP connections closed or requests refused by a limit, by reason",
            m.http_refused.clone(),
        );
        r.register(
            "finality_seconds",
            "From a block's timestamp to its finalization here",
            m.finality_seconds.clone(),
        );
        r.register(
            "persist_seconds",
            "Time to make a batch of persist records durable",
            m.persist_seconds.clone(),
        );
        r.register(
            "store_seconds",
            "Time to commit a finalized block to the database (not synced)",
            m.store_seconds.clone(),
        );
        r.register(
            "tx_batch_size",
            "Gossiped transfers whose signatures were verified as one batch",
            m.tx_batch_size.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
