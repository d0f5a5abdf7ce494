//! The outbound side of the QUIC transport: one dialer per configured peer address, and one per
//! validator of the current and next sets at the address it registered (`follow_registry`), which
//! connects, says hello, keeps the session (our consensus messages go out on our own outbound
//! connection) and redials with backoff, warning about an address that never answers. The session
//! also reads what the peer writes back on the same stream: nothing, unless that peer does not
//! dial this process itself (another instance of our key is at the address it knows for us:
//! `twins.rs`, ADR 0024).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timed_core::crypto::PublicKey;
use timed_core::types::ValidatorIndex;
use tracing::{debug, error, info, warn};

use crate::net::addr;
use crate::net::handshake::{self, Verdict};
use crate::net::members::Members;
use crate::net::queue::peer_queue;
use crate::net::tls::{self, Instance};
use crate::net::transport::{
    BACKOFF_MAX, BACKOFF_MIN, GENERATION, HANDSHAKE_TIMEOUT, LinkError, peer_identity, read_hello,
    read_loop, resolve,
};
use crate::net::wire::{self, HelloReply};
use crate::node::ctx::{CoreInput, Ctx, PEER_QUEUE, PEER_QUEUE_BYTES, PeerQueue, lock};

pub(super) async fn dial_loop(ctx: Arc<Ctx>, endpoint: quinn::Endpoint, addr: String) {
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = ctx.shutdown.clone();
    let mut last_error = String::new();
    let mut unanswered = Unanswered::default();
    let mut again = false;
    loop {
        let result = tokio::select! {
            r = dial_once(&ctx, &endpoint, &addr, None) => r,
            _ = shutdown.changed() => return,
        };
        let again_before = std::mem::take(&mut again);
        if result.is_ok() {
            unanswered = Unanswered::default();
        }
        match result {
            Ok(DialEnd::Myself) => {
                debug!(%addr, "this peer address is this node itself; not dialing it");
                return;
            }
            Ok(DialEnd::Pending) => {
                let mut chain = ctx.chain.subscribe();
                tokio::select! {
                    _ = chain.wait_for(|c| c.is_some()) => {},
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Ok(DialEnd::Closed) => backoff = BACKOFF_MIN,
            // Once at once; should it repeat, with the backoff (no busy loop on a confused peer).
            Ok(DialEnd::Again) if !again_before => {
                again = true;
                backoff = BACKOFF_MIN;
                continue;
            }
            Ok(DialEnd::Again) => backoff = (backoff * 2).min(BACKOFF_MAX),
            Err(LinkError::Redial) => {
                backoff = BACKOFF_MIN;
                continue;
            }
            Err(e) => {
                let text = e.to_string();
                match &e {
                    LinkError::RefusedByPeer(_) | LinkError::RefusedByUs(_) => {
                        error!(peer = %addr, "{text}")
                    }
                    _ if unanswered.failed(&addr, &e) => {}
                    _ if text != last_error => debug!(peer = %addr, "dial failed: {text}"),
                    _ => {}
                }
                last_error = text;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()) % 50);
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {},
            _ = ctx.redial.notified() => backoff = BACKOFF_MIN,
            _ = shutdown.changed() => return,
        }
    }
}

/// How long a dialer of a registered address waits before its first attempt: the dialers of
/// `--peers` start at once, and one of them may reach the same validator under another name
/// (`localhost:8001` and `127.0.0.1:8001`); then this one stays idle.
const REGISTRY_FIRST_DIAL: Duration = Duration::from_secs(1);

/// How often an idle dialer of a registered address looks again whether another dialer still
/// reaches its validator.
const REGISTRY_IDLE_CHECK: Duration = Duration::from_secs(2);

/// The longest wait between two attempts at a registered address that does not resolve: an
/// address on chain is anyone's to write, and a bad one must not cost a lookup every few
/// seconds for ever.
const REGISTRY_RESOLVE_BACKOFF: Duration = Duration::from_secs(60);

/// Dials the validators of the current and next sets at the addresses they registered
/// (`Register { address }`, `net::members`), beside the `--peers` dialers: one task per
/// validator, started when it enters one of the sets, ended when it belongs to none (grace
/// included) — so at most `2 * max_validators` of them. An address that is not HOST:PORT is
/// logged once and never dialed; one that is `configured` (a `--peers` entry) is left to its
/// own dialer; a validator reached already (through another address) is not dialed again.
pub(super) async fn follow_registry(
    ctx: Arc<Ctx>,
    endpoint: quinn::Endpoint,
    configured: Vec<String>,
) {
    let mut members = ctx.policy.subscribe();
    let mut shutdown = ctx.shutdown.clone();
    let running: Arc<Mutex<BTreeSet<ValidatorIndex>>> = Arc::default();
    let mut malformed: BTreeSet<(ValidatorIndex, String)> = BTreeSet::new();
    let me = ctx.key.public_key();
    loop {
        let plan = match members.borrow_and_update().as_ref() {
            None => Plan::default(),
            Some(m) => registry_plan(m, &me, &configured, &lock(&running)),
        };
        for (id, address, e) in plan.malformed {
            if malformed.insert((id, address.clone())) {
                warn!(
                    validator = id.0,
                    "Validator {} registered the address {address:?}, which cannot be dialed \
                     ({e}); not dialing it (it may still dial us)",
                    id.0
                );
            }
        }
        for (id, address) in plan.dial {
            lock(&running).insert(id);
            let (ctx, endpoint, running) = (ctx.clone(), endpoint.clone(), running.clone());
            tokio::spawn(async move {
                registry_dial_loop(&ctx, &endpoint, id, &address).await;
                lock(&running).remove(&id);
            });
        }
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// What `follow_registry` makes of a view of the sets.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Validators to start dialing, at their registered address.
    dial: Vec<(ValidatorIndex, String)>,
    /// Registered addresses that are not HOST:PORT, never dialed.
    malformed: Vec<(ValidatorIndex, String, addr::AddressError)>,
}

/// The validators of `members`' current and next sets to start dialing at their registered
/// address: not this node (`me`), not one whose address is a `--peers` entry (`configured`,
/// dialed already), not one `running` a dialer already, and not at an address that is not
/// HOST:PORT.
fn registry_plan(
    members: &Members,
    me: &PublicKey,
    configured: &[String],
    running: &BTreeSet<ValidatorIndex>,
) -> Plan {
    let own = members.admitted(me);
    let mut plan = Plan::default();
    for (id, address) in members.dial_targets() {
        if Some(id) == own || running.contains(&id) || configured.iter().any(|c| c == address) {
            continue;
        }
        match addr::peer_address(address) {
            Ok(a) => plan.dial.push((id, a)),
            Err(e) => plan.malformed.push((id, address.to_string(), e)),
        }
    }
    plan
}

/// One registered validator's dialer (`follow_registry`): until it belongs to no admitted set.
async fn registry_dial_loop(ctx: &Ctx, endpoint: &quinn::Endpoint, id: ValidatorIndex, addr: &str) {
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = BACKOFF_MIN;
    let mut unanswered = Unanswered::default();
    let mut wait = REGISTRY_FIRST_DIAL;
    let mut logged = false;
    let mut squatted = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = ctx.redial.notified() => {},
            _ = shutdown.changed() => return,
        }
        if !ctx.policy.members().is_some_and(|m| m.admits_id(id)) {
            debug!(%addr, "validator {} left the sets: no longer dialed", id.0);
            return;
        }
        if lock(&ctx.peers).contains_key(&id) {
            // Reached through another address: idle while that link lasts.
            wait = REGISTRY_IDLE_CHECK;
            continue;
        }
        if !logged {
            logged = true;
            info!(%addr, "Dialing validator {} at its registered address {addr}", id.0);
        }
        let result = tokio::select! {
            r = dial_once(ctx, endpoint, addr, Some(id)) => r,
            _ = shutdown.changed() => return,
        };
        backoff = match result {
            Ok(DialEnd::Myself) => return,
            Ok(DialEnd::Closed | DialEnd::Again) | Err(LinkError::Redial) => BACKOFF_MIN,
            // The peer has no genesis yet (it adopts ours from this hello): not in a busy loop
            // should it stay so.
            Ok(DialEnd::Pending) => (backoff * 2).min(BACKOFF_MAX),
            Err(e @ LinkError::Resolve(_)) => {
                unanswered.failed(addr, &e);
                (backoff * 2).clamp(BACKOFF_MAX, REGISTRY_RESOLVE_BACKOFF)
            }
            // The address is another validator's (a registration may name any address): that
            // one is reached through its own; this one is tried again rarely.
            Err(e @ LinkError::NotThere { .. }) => {
                if !squatted {
                    squatted = true;
                    warn!(peer = %addr, "{e}; trying again every minute");
                }
                REGISTRY_RESOLVE_BACKOFF
            }
            Err(e) => {
                match &e {
                    // Refused both ways: a peer that has not caught up with the election yet
                    // refuses a newcomer for up to an epoch; logged at debug level only.
                    LinkError::RefusedByPeer(_) | LinkError::RefusedByUs(_) => {
                        debug!(peer = %addr, "{e}")
                    }
                    _ => {
                        unanswered.failed(addr, &e);
                    }
                }
                (backoff * 2).min(BACKOFF_MAX)
            }
        };
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()) % 50);
        wait = backoff + jitter;
    }
}

/// A peer not answering is worth a warning after this long (peers started one after the other
/// do not answer at first)...
const UNANSWERED_WARN: Duration = Duration::from_secs(10);
/// ...and again after this long, while it still does not.
const UNANSWERED_REWARN: Duration = Duration::from_secs(300);

/// Since when one peer address fails to answer, and the last warning about it.
#[derive(Default)]
struct Unanswered {
    since: Option<Instant>,
    warned: Option<(Instant, std::mem::Discriminant<LinkError>)>,
}

impl Unanswered {
    /// Warns, with the address, about a name that does not resolve (at once: it will not start
    /// to) or a peer silent for `UNANSWERED_WARN`; once per kind of failure and
    /// `UNANSWERED_REWARN`. Returns whether it warned.
    fn failed(&mut self, addr: &str, e: &LinkError) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        let kind = std::mem::discriminant(e);
        let resolve = matches!(e, LinkError::Resolve(_));
        let due = self
            .warned
            .is_none_or(|(at, k)| k != kind || at.elapsed() >= UNANSWERED_REWARN);
        if !due || !(resolve || since.elapsed() >= UNANSWERED_WARN) {
            return false;
        }
        self.warned = Some((Instant::now(), kind));
        if resolve {
            warn!(
                peer = %addr,
                "Peer address {addr} does not resolve to an IP address (no such host?); still \
                 trying: check --peers (or the genesis's addresses) and DNS"
            );
        } else {
            warn!(
                peer = %addr,
                "Peer {addr} has not answered for {} s ({e}); still trying: is it running, and \
                 does every firewall on the way let UDP through to its port?",
                since.elapsed().as_secs()
            );
        }
        true
    }
}

enum DialEnd {
    Myself,
    Pending,
    /// The hello we sent had no genesis, and we have one now: dial again at once.
    Again,
    Closed,
}

/// Dials `addr` once and serves the link while it lasts. With `expect`, the peer must be that
/// validator (a registered address); another is refused there.
async fn dial_once(
    ctx: &Ctx,
    endpoint: &quinn::Endpoint,
    addr: &str,
    expect: Option<ValidatorIndex>,
) -> Result<DialEnd, LinkError> {
    let local_v4 = endpoint.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
    let target = resolve(addr, local_v4).await?;
    let connecting = endpoint
        .connect(target, tls::SERVER_NAME)
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let redial = ctx.redial.notified();
    let conn = tokio::select! {
        c = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting) => c,
        // An attempt sent before the peer was listening waits for a retransmission: start over.
        _ = redial => return Err(LinkError::Redial),
    };
    let conn = conn.map_err(|_| LinkError::Timeout)?.map_err(|e| match e {
        quinn::ConnectionError::TransportError(t)
            if t.code.to_string().contains("crypto") || t.to_string().contains("certificate") =>
        {
            LinkError::RefusedByPeer(format!(
                "TLS handshake refused ({t}): our key is not in its genesis, or its key not in ours"
            ))
        }
        e => LinkError::Connect(e.to_string()),
    })?;
    let (key, instance) =
        peer_identity(&conn).ok_or_else(|| LinkError::Lost("no peer certificate".into()))?;
    if key == ctx.key.public_key() {
        conn.close(0u32.into(), b"self");
        return Ok(DialEnd::Myself);
    }
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let mine = ctx.hello();
    let sent_genesis = mine.genesis.is_some();
    wire::write_frame(&mut send, &wire::encode_hello(&HelloReply::Welcome(mine)))
        .await
        .map_err(|e| LinkError::Lost(e.to_string()))?;
    let reply = read_hello(&mut recv).await.map_err(|e| match e {
        LinkError::Lost(s) => {
            LinkError::Lost(format!("{s} (the peer may have refused our certificate)"))
        }
        e => e,
    })?;
    let hello = match reply {
        HelloReply::Welcome(h) => h,
        HelloReply::Refused(reason) => {
            ctx.metrics
                .handshake_refused(crate::node::metrics::HandshakeRefused::RefusedByPeer);
            conn.close(0u32.into(), b"refused");
            return Err(LinkError::RefusedByPeer(reason));
        }
    };
    match handshake::on_hello(ctx, &hello, key).map(|v| handshake::dialer_verdict(sent_genesis, v))
    {
        Err(reason) => {
            conn.close(0u32.into(), b"refused");
            Err(LinkError::RefusedByUs(format!("{}: {reason}", hello.name)))
        }
        Ok(Verdict::Follower) => {
            conn.close(0u32.into(), b"not a validator");
            Err(LinkError::RefusedByUs(format!(
                "{} is not a validator of the sets this node admits (a full node, or a \
                 validator not elected yet): validators do not dial it",
                hello.name
            )))
        }
        Ok(Verdict::Pending) if ctx.chain().is_some() => {
            // Our genesis was fixed while the hellos crossed: the next hello carries it.
            conn.close(0u32.into(), b"pending");
            Ok(DialEnd::Again)
        }
        Ok(Verdict::Pending) => {
            conn.close(0u32.into(), b"pending");
            Ok(DialEnd::Pending)
        }
        Ok(Verdict::Ready(index)) => {
            if let Some(expected) = expect.filter(|e| *e != index) {
                conn.close(0u32.into(), b"not the validator expected");
                return Err(LinkError::NotThere {
                    expected: expected.0,
                    found: hello.name,
                });
            }
            if ctx.cooloff.refuse(&conn, index, &hello.name) {
                // Not again before its cool-off ends.
                let left = ctx.cooloff.left(index, Instant::now()).unwrap_or_default();
                tokio::time::sleep(left).await;
                return Ok(DialEnd::Closed);
            }
            let reads = async {
                let _ = read_loop(ctx, &conn, recv, (index, instance), &hello.name).await;
            };
            tokio::join!(
                session(ctx, &conn, send, (index, instance), &hello.name),
                reads
            );
            Ok(DialEnd::Closed)
        }
    }
}

/// Pumps our frames to one peer until the connection ends.
async fn session(
    ctx: &Ctx,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    (index, instance): (ValidatorIndex, Instance),
    name: &str,
) {
    let (tx, rx) = peer_queue(PEER_QUEUE, PEER_QUEUE_BYTES);
    let counts = tx.bytes.clone();
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    {
        let mut peers = lock(&ctx.peers);
        peers.insert(
            index,
            PeerQueue {
                name: name.to_string(),
                tx,
                generation,
                instance,
            },
        );
        ctx.metrics.peers.set(peers.len() as i64);
    }
    info!(peer = name, "Peer connected: {name}");
    let _ = ctx.to_core.send(CoreInput::PeerConnected(index)).await;
    // A cool-off ends the link through `read_loop`, which closes the connection.
    rx.pump(conn, &mut send, ctx.shutdown.clone()).await;
    {
        let mut peers = lock(&ctx.peers);
        if peers
            .get(&index)
            .is_some_and(|p| p.generation == generation)
        {
            peers.remove(&index);
        }
        ctx.metrics.peers.set(peers.len() as i64);
    }
    conn.close(0u32.into(), b"bye");
    let dropped = counts.dropped_frames.load(Ordering::Relaxed);
    if dropped > 0 {
        info!(
            peer = name,
            "Peer disconnected: {name} ({dropped} frames, {} bytes, did not fit its send queue)",
            counts.dropped_bytes.load(Ordering::Relaxed)
        );
    } else {
        info!(peer = name, "Peer disconnected: {name}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::crypto::Keypair;
    use timed_core::staking::Staking;
    use timed_core::tx::{Op, Transfer};
    use timed_core::types::{Amount, Height, TimestampMs};
    use timed_core::validators::{ConsensusParams, Genesis, insecure_dev_validators};

    /// Two genesis validators (validator1 at 127.0.0.1:9001) and, elected into the next set,
    /// validator3 to validator5 registered at `addresses`.
    fn view(addresses: [&str; 3]) -> Members {
        let (keys, mut validators) = insecure_dev_validators(&[100, 100]);
        validators[0].address = Some("127.0.0.1:9001".into());
        let genesis = Genesis {
            chain_id: "test".into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: ConsensusParams {
                epoch_blocks: 2,
                unbonding_blocks: 4,
                min_bond: Amount(100),
                ..ConsensusParams::default()
            },
        };
        let set = genesis.validate().unwrap();
        let mut staking = Staking::from_genesis(&genesis, &set);
        for (i, address) in addresses.iter().enumerate() {
            let name = format!("validator{}", i + 3);
            let t = Transfer {
                from: keys[0].public_key(),
                to: Keypair::insecure_from_name(&name).public_key(),
                amount: Amount(100),
                fee: Amount(0),
                nonce: i as u64,
                op: Op::Register {
                    name,
                    address: address.to_string(),
                },
            };
            staking.apply_op(&t, Height(1)).unwrap();
        }
        staking.end_height(Height(2));
        Members::of(&staking, Height(2))
    }

    #[test]
    fn registered_addresses_are_dialed_once_each_and_a_malformed_one_never() {
        let m = view(["127.0.0.1:9003", "no port here", "localhost:9005"]);
        let me = Keypair::insecure_from_name("validator5").public_key();
        let plan = registry_plan(&m, &me, &[], &BTreeSet::new());
        // validator1 (genesis address), validator3; not validator5 (this node).
        assert_eq!(
            plan.dial,
            vec![
                (ValidatorIndex(0), "127.0.0.1:9001".to_string()),
                (ValidatorIndex(2), "127.0.0.1:9003".to_string()),
            ]
        );
        assert_eq!(plan.malformed.len(), 1);
        assert_eq!(plan.malformed[0].0, ValidatorIndex(3));
        assert!(matches!(plan.malformed[0].2, addr::AddressError::NoPort(_)));
        // A --peers entry has its own dialer, and a validator with one running gets no other.
        let configured = ["127.0.0.1:9001".to_string()];
        let running = BTreeSet::from([ValidatorIndex(2)]);
        let plan = registry_plan(&m, &me, &configured, &running);
        assert!(plan.dial.is_empty(), "{:?}", plan.dial);
    }
}
