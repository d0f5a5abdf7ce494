//! Prometheus metrics of one node, served on `/metrics`: OpenMetrics to a scraper that asks for
//! it (Prometheus does), the classic text format (0.0.4) otherwise, which `curl … | promtool check
//! metrics` reads (`classic_text`).
//!
//! Every labelled series exists from the start, at 0, with each label value it can take (the
//! `labels!` enums, and `REJECTIONS` for the core's refusals): an alert on a rate of refusals
//! cannot be written against a series that appears only at the first refusal. Values are in
//! base units (seconds, bytes).
//!
//! The series an operator alerts on follow CometBFT's meanings where it has one (its name in
//! brackets): `height` (consensus_height), `round` (consensus_rounds), `block_rounds` (rounds a
//! block took), `block_interval_seconds` (consensus_block_interval_seconds), `validators` and
//! `validators_power` (consensus_validators, _power), `missing_validators` and
//! `missing_validators_power` (the validators whose precommit is not in the last block's
//! certificate: consensus_missing_validators), `byzantine_validators` and
//! `byzantine_validators_power` (validators this node saw equivocate since it started; CometBFT
//! counts those with evidence in the last block), `validator_power` and
//! `validator_missed_blocks_total` (this validator's stake, and the finalized blocks whose
//! certificate lacks its signature: consensus_validator_power, _missed_blocks), `mempool_size`
//! and `mempool_size_bytes` (mempool_size, mempool_size_bytes), `syncing` (1 while the last block
//! came from peers, not decided here: blocksync_syncing), `peers` (p2p_peers), and the standard
//! `process_*` series (`procmetrics.rs`).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use timed_core::types::ValidatorIndex;
use timed_core::validators::ValidatorSet;

use crate::storage::stored::StoredBlock;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];

/// An enum of the values one label takes, with `ALL` (pre-created) and `label()`.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

labels!(
    /// Why the transport dropped a frame: `timed_frames_dropped_total{reason}`.
    Dropped {
        PeerQueueFull = "peer_queue_full",
        SyncBusy = "sync_busy",
        Oversized = "oversized",
        Undecodable = "undecodable",
        // Dropped by the consensus loop before any signature check (`node/driver/budget.rs`):
        // the peer spent its verification budget, or is cooling off after a provable fault.
        VerifyBudget = "verify_budget",
        CoolingOff = "cooling_off",
    }
);

labels!(
    /// Why a peer connection was refused at its handshake: `timed_handshakes_refused_total{reason}`.
    HandshakeRefused {
        TlsRefusedByPeer = "tls_refused_by_peer",
        Tls = "tls",
        Hello = "hello",
        RefusedByPeer = "refused_by_peer",
    }
);

labels!(
    /// Why a follower's link was closed: `timed_followers_dropped_total{reason}`.
    FollowerDropped {
        // It sent what only a validator sends (a vote, a proposal, a decision, ...).
        NotAFollowersMessage = "not_a_followers_message",
        Undecodable = "undecodable",
        Oversized = "oversized",
        // A transfer whose signature does not hold.
        ForgedTransfer = "forged_transfer",
    }
);

labels!(
    /// What a follower asked for beyond its budget, dropped: `timed_follower_requests_limited_total{kind}`.
    FollowerLimited {
        Sync = "sync",
        Transfer = "transfer",
    }
);

labels!(
    /// Which HTTP limit closed a connection or refused a request: `timed_http_refused_total{reason}`.
    HttpRefused {
        ConnectionCap = "connection_cap",
        AcceptError = "accept_error",
        IdleTimeout = "idle_timeout",
        RateLimit = "rate_limit",
        RequestTimeout = "request_timeout",
    }
);

const VOTE_REJECTIONS: &[&str] = &[
    "unknown_validator",
    "round_too_far",
    "bad_signature",
    "wrong_height",
];

/// Every (kind, reason) of `Event::Rejected`: the core's `reject` calls, its `VoteRejected`,
/// `TxError` and block fault reasons, and the driver's batch check of vote signatures. The core's
/// sources are checked against this list by a test (`the_listed_rejections_are_the_cores`).
pub const REJECTIONS: &[(&str, &[&str])] = &[
    (
        "proposal",
        &[
            "round_too_far",
            "wrong_proposer",
            "malformed",
            "bad_signature",
            "body_mismatch",
            "bad_polka",
            "cannot_build_block",
        ],
    ),
    ("prepare", VOTE_REJECTIONS),
    ("precommit", VOTE_REJECTIONS),
    (
        "decision",
        &[
            "body_mismatch",
            "bad_certificate",
            "certified_block_invalid",
        ],
    ),
    ("sync_request", &["rate_limited"]),
    ("block_request", &["rate_limited"]),
    ("block_response", &["not_asked", "body_mismatch"]),
    (
        "block",
        &[
            "block_wrong_proposer",
            "block_wrong_chain",
            "block_wrong_height",
            "block_wrong_parent",
            "block_timestamp_not_after_parent",
            "block_timestamp_in_future",
            "block_unknown_proposer",
            "block_bad_transaction",
            "block_wrong_state_root",
            "block_wrong_next_set",
            "block_bad_evidence",
        ],
    ),
    (
        "transaction",
        &[
            "bad_signature",
            "bad_nonce",
            "insufficient_balance",
            "zero_amount",
            "self_transfer",
            "bad_registration",
            "overflow",
            "duplicate",
            "mempool_full",
            "nonce_too_far_ahead",
            // A block's refusal, never a single transfer's; listed because `TxError` names it.
            "bad_evidence",
        ],
    ),
];

/// Every (kind, reason) of a refusal that proves the peer that sent the message faulty, and
/// starts its cool-off (`node/driver/budget.rs` says why these): `timed_peer_faults_total`.
pub const FAULTS: &[(&str, &str)] = &[
    ("prepare", "bad_signature"),
    ("precommit", "bad_signature"),
    ("proposal", "bad_signature"),
    ("proposal", "body_mismatch"),
    ("decision", "bad_certificate"),
    ("decision", "body_mismatch"),
    ("block_response", "body_mismatch"),
];

pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub round: Gauge,
    pub peers: Gauge,
    pub clock_offset_seconds: Gauge<f64, AtomicU64>,
    pub blocks_finalized: Counter,
    pub votes_received: Family<Labels1, Counter>,
    pub rejected: Family<Labels2, Counter>,
    peer_faults: Family<Labels2, Counter>,
    frames_dropped: Family<Labels1, Counter>,
    handshakes_refused: Family<Labels1, Counter>,
    pub followers: Gauge,
    pub upstreams: Gauge,
    pub snapshot_height: Gauge,
    followers_dropped: Family<Labels1, Counter>,
    follower_limited: Family<Labels1, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub evidence: Counter,
    pub sync_requests: Counter,
    pub http_connections: Gauge,
    http_refused: Family<Labels1, Counter>,
    pub finality_seconds: Histogram,
    pub persist_seconds: Histogram,
    pub store_seconds: Histogram,
    pub tx_batch_size: Histogram,
    block_rounds: Histogram,
    block_interval_seconds: Histogram,
    validators: Gauge,
    validators_power: Gauge,
    missing_validators: Gauge,
    missing_validators_power: Gauge,
    byzantine_validators: Gauge,
    byzantine_validators_power: Gauge,
    validator_power: Gauge,
    validator_missed_blocks: Counter,
    mempool_size: Gauge,
    mempool_size_bytes: Gauge,
    syncing: Gauge,
    /// The last block seen (height, timestamp in ms), for the interval to the next.
    last_block: Mutex<Option<(u64, u64)>>,
    /// The validators seen equivocating.
    byzantine: Mutex<BTreeSet<ValidatorIndex>>,
    /// When the process started (seconds since the epoch), for `process_start_time_seconds`.
    started: f64,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("timed");
        let m = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            peers: Gauge::default(),
            clock_offset_seconds: Gauge::default(),
            blocks_finalized: Counter::default(),
            votes_received: Family::default(),
            rejected: Family::default(),
            peer_faults: Family::default(),
            frames_dropped: Family::default(),
            handshakes_refused: Family::default(),
            followers: Gauge::default(),
            upstreams: Gauge::default(),
            snapshot_height: Gauge::default(),
            followers_dropped: Family::default(),
            follower_limited: Family::default(),
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
            block_rounds: Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]),
            block_interval_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 13)),
            validators: Gauge::default(),
            validators_power: Gauge::default(),
            missing_validators: Gauge::default(),
            missing_validators_power: Gauge::default(),
            byzantine_validators: Gauge::default(),
            byzantine_validators_power: Gauge::default(),
            validator_power: Gauge::default(),
            validator_missed_blocks: Counter::default(),
            mempool_size: Gauge::default(),
            mempool_size_bytes: Gauge::default(),
            syncing: Gauge::default(),
            last_block: Mutex::new(None),
            byzantine: Mutex::new(BTreeSet::new()),
            started: crate::unix_ms() as f64 / 1000.0,
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "build",
            "The version and commit of this timed binary",
            Info::new([("version", crate::VERSION), ("commit", crate::COMMIT)]),
        );
        r.register("height", "The height being decided", m.height.clone());
        r.register("round", "The current round", m.round.clone());
        r.register(
            "peers",
            "Peers with an open outbound connection",
            m.peers.clone(),
        );
        r.register(
            "followers",
            "Followers (full nodes, readers of the chain) connected to this node",
            m.followers.clone(),
        );
        r.register(
            "snapshot_height",
            "Height of the newest snapshot this node serves (0: none yet; --snapshot-interval)",
            m.snapshot_height.clone(),
        );
        r.register(
            "upstreams",
            "Nodes this full node follows with an open connection (0 on a validator)",
            m.upstreams.clone(),
        );
        r.register(
            "followers_dropped",
            "Follower links closed for what the follower sent, by reason",
            m.followers_dropped.clone(),
        );
        r.register(
            "follower_requests_limited",
            "Requests of followers dropped beyond their rate budget, by kind",
            m.follower_limited.clone(),
        );
        r.register(
            "clock_offset_seconds",
            "Estimated offset of the peers' clocks to this node's (median; positive: theirs are \
             ahead)",
            m.clock_offset_seconds.clone(),
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
            "peer_faults",
            "Messages that proved their sender faulty (a forged signature or certificate, a body \
             not matching its signed header), by kind and reason; each cuts the sender off for a \
             while",
            m.peer_faults.clone(),
        );
        r.register(
            "frames_dropped",
            "Frames dropped by the transport, or unchecked by the consensus loop, by reason",
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
        m.register_alerting(r);
        m.pre_create();
        Metrics { registry, ..m }
    }

    /// The series of the alert rules (`deploy/alerts.yml`), with CometBFT's meanings.
    fn register_alerting(&self, r: &mut Registry) {
        let gauges: [(&str, &str, &Gauge); 10] = [
            ("validators", "Validators in the set", &self.validators),
            (
                "validators_power",
                "Total stake of the validators",
                &self.validators_power,
            ),
            (
                "missing_validators",
                "Validators whose precommit is not in the last finalized block's certificate",
                &self.missing_validators,
            ),
            (
                "missing_validators_power",
                "Stake of the missing validators",
                &self.missing_validators_power,
            ),
            (
                "byzantine_validators",
                "Validators this node saw equivocate since it started",
                &self.byzantine_validators,
            ),
            (
                "byzantine_validators_power",
                "Stake of the byzantine validators",
                &self.byzantine_validators_power,
            ),
            (
                "validator_power",
                "This validator's stake (0 for an observer)",
                &self.validator_power,
            ),
            (
                "mempool_size",
                "Transfers pending in the mempool",
                &self.mempool_size,
            ),
            (
                "mempool_size_bytes",
                "Bytes of the transfers pending in the mempool",
                &self.mempool_size_bytes,
            ),
            (
                "syncing",
                "1 while the last finalized block came from peers (catching up), 0 once decided here",
                &self.syncing,
            ),
        ];
        for (name, help, g) in &gauges {
            r.register(*name, *help, (*g).clone());
        }
        r.register(
            "validator_missed_blocks",
            "Finalized blocks whose certificate lacks this validator's signature",
            self.validator_missed_blocks.clone(),
        );
        r.register(
            "block_rounds",
            "Rounds a finalized block took (its certificate's round + 1)",
            self.block_rounds.clone(),
        );
        r.register(
            "block_interval_seconds",
            "Time between a finalized block's timestamp and its parent's",
            self.block_interval_seconds.clone(),
        );
    }

    /// The validator set and this validator's place in it.
    pub fn set_validators(&self, set: &ValidatorSet, me: Option<ValidatorIndex>) {
        self.validators.set(set.len() as i64);
        self.validators_power.set(set.total_stake().0 as i64);
        let mine = me.and_then(|i| set.get(i)).map_or(0, |v| v.stake.0);
        self.validator_power.set(mine as i64);
    }

    /// A finalized block: its rounds, its interval, who signed its certificate, and whether it
    /// was decided here (`finality_ms` is known only for those).
    pub fn on_block(&self, set: &ValidatorSet, me: Option<ValidatorIndex>, f: &StoredBlock) {
        self.set_validators(set, me);
        let signed: BTreeSet<ValidatorIndex> = f
            .certificate
            .signatures
            .iter()
            .map(|s| s.validator)
            .collect();
        let missing: Vec<u64> = set
            .iter()
            .filter(|(i, _)| !signed.contains(i))
            .map(|(_, v)| v.stake.0)
            .collect();
        self.missing_validators.set(missing.len() as i64);
        self.missing_validators_power
            .set(missing.iter().sum::<u64>() as i64);
        if me.is_some_and(|i| !signed.contains(&i)) {
            self.validator_missed_blocks.inc();
        }
        self.block_rounds
            .observe(f64::from(f.certificate.round.0) + 1.0);
        let (h, ts) = (f.block.height().0, f.block.header.timestamp.0);
        let mut last = self.last_block.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((lh, lts)) = *last
            && lh + 1 == h
        {
            self.block_interval_seconds
                .observe(ts.saturating_sub(lts) as f64 / 1000.0);
        }
        *last = Some((h, ts));
        self.syncing.set(i64::from(f.finality_ms.0.is_none()));
    }

    /// A validator seen equivocating.
    pub fn on_evidence(&self, set: &ValidatorSet, who: ValidatorIndex) {
        let mut seen = self.byzantine.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(who);
        let power: u64 = seen
            .iter()
            .filter_map(|i| set.get(*i))
            .map(|v| v.stake.0)
            .sum();
        self.byzantine_validators.set(seen.len() as i64);
        self.byzantine_validators_power.set(power as i64);
    }

    /// The mempool's size: `len` transfers of one fixed size.
    pub fn mempool(&self, len: usize) {
        let each = std::mem::size_of::<timed_core::tx::SignedTransfer>();
        self.mempool_size.set(len as i64);
        self.mempool_size_bytes.set((len * each) as i64);
    }

    /// Every labelled series at 0, with each value its labels can take.
    fn pre_create(&self) {
        for kind in ["prepare", "precommit"] {
            let _ = self.votes_received.get_or_create(&[("kind", kind)]);
        }
        for (kind, reasons) in REJECTIONS {
            for reason in *reasons {
                let _ = self
                    .rejected
                    .get_or_create(&[("kind", kind), ("reason", reason)]);
            }
        }
        for (kind, reason) in FAULTS {
            let _ = self
                .peer_faults
                .get_or_create(&[("kind", kind), ("reason", reason)]);
        }
        for r in Dropped::ALL {
            let _ = self.frames_dropped.get_or_create(&[("reason", r.label())]);
        }
        for r in HandshakeRefused::ALL {
            let _ = self
                .handshakes_refused
                .get_or_create(&[("reason", r.label())]);
        }
        for r in HttpRefused::ALL {
            let _ = self.http_refused.get_or_create(&[("reason", r.label())]);
        }
        for r in FollowerDropped::ALL {
            let _ = self
                .followers_dropped
                .get_or_create(&[("reason", r.label())]);
        }
        for k in FollowerLimited::ALL {
            let _ = self.follower_limited.get_or_create(&[("kind", k.label())]);
        }
    }

    pub fn follower_dropped(&self, reason: FollowerDropped) {
        self.followers_dropped
            .get_or_create(&[("reason", reason.label())])
            .inc();
    }

    pub fn follower_limited(&self, kind: FollowerLimited) {
        self.follower_limited
            .get_or_create(&[("kind", kind.label())])
            .inc();
    }

    pub fn dropped(&self, reason: Dropped) {
        self.frames_dropped
            .get_or_create(&[("reason", reason.label())])
            .inc();
    }

    /// A message that proved its sender faulty (one of `FAULTS`).
    pub fn peer_fault(&self, kind: &'static str, reason: &'static str) {
        self.peer_faults
            .get_or_create(&[("kind", kind), ("reason", reason)])
            .inc();
    }

    pub fn handshake_refused(&self, reason: HandshakeRefused) {
        self.handshakes_refused
            .get_or_create(&[("reason", reason.label())])
            .inc();
    }

    pub fn http_refused(&self, reason: HttpRefused) {
        self.http_refused
            .get_or_create(&[("reason", reason.label())])
            .inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out.push_str(&super::procmetrics::encode(self.started));
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }

    /// The classic Prometheus text format (0.0.4).
    pub fn encode_classic(&self) -> String {
        classic_text(&self.encode())
    }
}

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a counter's HELP and TYPE
/// name its samples (`x_total`, where OpenMetrics names the family `x`), an info metric is a
/// gauge named `x_info`, and there are no UNIT lines and no `# EOF`.
pub fn classic_text(openmetrics: &str) -> String {
    use std::collections::HashMap;
    let mut suffix: HashMap<&str, &str> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            match kind {
                "counter" => suffix.insert(name, "_total"),
                "info" => suffix.insert(name, "_info"),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = match tail {
                    "info" if prefix == "# TYPE " => "gauge",
                    "unknown" if prefix == "# TYPE " => "untyped",
                    t => t,
                };
                let added = suffix.get(name).copied().unwrap_or("");
                out.push_str(&format!("{prefix}{name}{added} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoted strings of `text` between `open` and the next `close`.
    fn literals_after<'a>(text: &'a str, open: &str, close: &str) -> Vec<Vec<&'a str>> {
        text.match_indices(open)
            .map(|(i, _)| {
                let body = &text[i + open.len()..];
                let body = &body[..body.find(close).unwrap_or(body.len())];
                body.split('"').skip(1).step_by(2).collect()
            })
            .collect()
    }

    fn listed(kind: &str) -> &'static [&'static str] {
        REJECTIONS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&[], |(_, r)| r)
    }

    /// Read from the core's sources: every `reject` call with literal labels, and every reason of
    /// `BlockFault`, `VoteRejected` and `TxError`, is a pre-created series. A refusal added to
    /// the core without its series here fails this test.
    #[test]
    fn the_listed_rejections_are_the_cores() {
        let node = &[
            include_str!("../../../core/src/consensus/node.rs"),
            include_str!("../../../core/src/consensus/node/blocks.rs"),
            include_str!("../../../core/src/consensus/node/catchup.rs"),
            include_str!("../../../core/src/consensus/node/incoming.rs"),
            include_str!("../../../core/src/consensus/node/rules.rs"),
        ]
        .concat();
        let votes = include_str!("../../../core/src/votes/mod.rs");
        let ledger = include_str!("../../../core/src/ledger/mod.rs");
        let calls = literals_after(node, "self.reject(", ")");
        assert!(calls.len() > 20, "{} reject calls found", calls.len());
        for call in calls {
            if let [kind, reason] = call[..] {
                assert!(listed(kind).contains(&reason), "({kind}, {reason})");
            }
        }
        let reasons = |text| literals_after(text, "fn reason(", "\n    }").concat();
        let checks = [
            (reasons(node), "block"),
            (reasons(votes), "prepare"),
            (reasons(votes), "precommit"),
            (reasons(ledger), "transaction"),
        ];
        for (found, kind) in checks {
            assert!(found.len() >= 3, "{kind}: {found:?}");
            for r in found {
                assert!(listed(kind).contains(&r), "({kind}, {r})");
            }
        }
    }

    /// Before any event, each labelled series is there at 0, with its labels.
    #[test]
    fn every_labelled_series_exists_from_the_start() {
        let text = Metrics::new().encode_classic();
        for line in [
            "timed_rejected_total{kind=\"proposal\",reason=\"bad_signature\"} 0",
            "timed_rejected_total{kind=\"transaction\",reason=\"mempool_full\"} 0",
            "timed_frames_dropped_total{reason=\"peer_queue_full\"} 0",
            "timed_frames_dropped_total{reason=\"verify_budget\"} 0",
            "timed_peer_faults_total{kind=\"decision\",reason=\"bad_certificate\"} 0",
            "timed_handshakes_refused_total{reason=\"tls\"} 0",
            "timed_http_refused_total{reason=\"rate_limit\"} 0",
            "timed_votes_received_total{kind=\"precommit\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn the_classic_format_names_each_family_by_its_samples() {
        let m = Metrics::new();
        m.blocks_finalized.inc();
        let text = m.encode_classic();
        assert!(
            text.contains("# HELP timed_blocks_finalized_total Blocks"),
            "{text}"
        );
        assert!(text.contains("# TYPE timed_blocks_finalized_total counter\n"));
        assert!(text.contains("\ntimed_blocks_finalized_total 1\n"));
        assert!(text.contains("# TYPE timed_height gauge\ntimed_height 0\n"));
        assert!(text.contains("# TYPE timed_finality_seconds histogram\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(!text.contains("_ms"), "base units only:\n{text}");
        assert_eq!(
            classic_text(
                "# HELP x_build Build.\n# TYPE x_build info\nx_build_info{v=\"1\"} 1\n# EOF\n"
            ),
            "# HELP x_build_info Build.\n# TYPE x_build_info gauge\nx_build_info{v=\"1\"} 1\n"
        );
    }
}
