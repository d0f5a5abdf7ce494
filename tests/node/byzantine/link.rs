//! The Byzantine validator's transport: the node's own QUIC/TLS configuration with its key
//! (`timed::tls`), the hello and framing of `timed::wire`, one endpoint that listens where the
//! honest nodes dial it and dials each of them.
//!
//! As between honest nodes, each side sends on the connection it dialed: what an honest node
//! sends arrives on the connection it opened to us (read here, handed to `attack.rs`), and what
//! we send goes out on the connections we opened (one queue per peer). In dev mode the first
//! hellos carry no genesis: the honest nodes form it once each has heard from all its peers,
//! this validator among them, and we adopt it from the first hello that carries it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use timed::tls;
use timed::wire::{self, HELLO_VERSION, Hello, HelloGenesis, HelloReply, MAX_FRAME_BYTES};
use timed_core::codec;
use timed_core::crypto::{Keypair, PublicKey};
use timed_core::message::Message;
use timed_core::types::{Stake, ValidatorIndex};
use timed_core::validators::{Genesis, ValidatorSet};
use tokio::sync::{Notify, mpsc, watch};

use super::Stats;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const REDIAL: Duration = Duration::from_millis(100);
/// Frames queued per peer at most; the adversary drops what does not fit, as a node does.
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot dial: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Write(#[from] std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] wire::FrameError),
    #[error("the handshake timed out")]
    Timeout,
    #[error("the peer presented no usable certificate")]
    NoCertificate,
    #[error("the peer closed the stream during the hello")]
    Closed,
    #[error("the peer refused us: {0}")]
    Refused(String),
    #[error("the peer's key is not in the genesis")]
    NotInGenesis,
    #[error("a peer came up: dialing again at once")]
    Redial,
}

/// The genesis, once the honest nodes fixed it, and what the adversary derives from it.
pub struct Chain {
    pub genesis: Genesis,
    pub set: ValidatorSet,
    pub me: ValidatorIndex,
}

/// What the tasks of the adversary share.
pub struct Shared {
    pub key: Keypair,
    pub name: String,
    pub block_time_ms: u64,
    pub chain: watch::Sender<Option<Arc<Chain>>>,
    /// Our outbound connections, by peer: bytes to write (frames, or not).
    peers: Mutex<BTreeMap<ValidatorIndex, mpsc::Sender<Bytes>>>,
    /// Decoded messages of the honest nodes, for `attack.rs`.
    inbound: mpsc::Sender<(ValidatorIndex, Message)>,
    /// Woken when a peer we have no connection to dials us: it is up, so a dial attempt sent
    /// before it listened (waiting for a retransmission) starts over at once.
    redial: Notify,
    /// The frame sent first on every new connection, if any (a claim to be ahead).
    greeting: Mutex<Option<Bytes>>,
    pub stats: Stats,
}

impl Shared {
    pub fn new(
        key: Keypair,
        name: String,
        block_time_ms: u64,
        inbound: mpsc::Sender<(ValidatorIndex, Message)>,
    ) -> Shared {
        Shared {
            key,
            name,
            block_time_ms,
            chain: watch::channel(None).0,
            peers: Mutex::default(),
            inbound,
            redial: Notify::new(),
            greeting: Mutex::default(),
            stats: Stats::default(),
        }
    }

    pub fn chain(&self) -> Option<Arc<Chain>> {
        self.chain.borrow().clone()
    }

    fn hello(&self) -> Hello {
        Hello {
            version: HELLO_VERSION,
            name: self.name.clone(),
            public_key: self.key.public_key(),
            stake: Stake(100),
            block_time_ms: self.block_time_ms,
            genesis: self
                .chain()
                .map(|c| HelloGenesis::of(&c.genesis, c.genesis.hash())),
        }
    }

    /// Takes the genesis an honest node fixed, if it lists this validator.
    fn adopt(&self, genesis: &Genesis) {
        if self.chain().is_some() {
            return;
        }
        let Ok(set) = genesis.validate() else { return };
        let Some(me) = set.index_of(&self.key.public_key()) else {
            return;
        };
        self.chain.send_replace(Some(Arc::new(Chain {
            genesis: genesis.clone(),
            set,
            me,
        })));
    }

    /// What every new connection carries first from now on.
    pub fn greet_with(&self, frame: Option<Bytes>) {
        *lock(&self.greeting) = frame;
    }

    /// The peers we hold a connection to.
    pub fn connected(&self) -> Vec<ValidatorIndex> {
        lock(&self.peers).keys().copied().collect()
    }

    /// Queues `msg` for `to`; false if it is not connected or its queue is full.
    pub fn send(&self, to: ValidatorIndex, msg: &Message) -> bool {
        self.send_raw(to, codec::encode_message(msg))
    }

    /// Queues a payload as one frame, whatever its bytes.
    pub fn send_raw(&self, to: ValidatorIndex, payload: Vec<u8>) -> bool {
        self.send_unframed(to, frame(&payload))
    }

    /// Queues bytes to be written as they are (a length prefix that lies, for one).
    pub fn send_unframed(&self, to: ValidatorIndex, bytes: impl Into<Bytes>) -> bool {
        let bytes = bytes.into();
        let sent = lock(&self.peers)
            .get(&to)
            .is_some_and(|tx| tx.try_send(bytes).is_ok());
        if sent {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }
}

/// `payload` with its length prefix, ready to be queued (and queued again: clones share it).
pub fn frame(payload: &[u8]) -> Bytes {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An endpoint on `listen` speaking TLS with `shared.key`, admitting any Ed25519 key (the honest
/// nodes' TLS pins the genesis keys; here nothing needs protecting).
pub fn endpoint(shared: &Shared, listen: SocketAddr) -> quinn::Endpoint {
    let (server, client) =
        tls::quic_configs(&shared.key, tls::PeerPolicy::any()).expect("QUIC configuration");
    let mut endpoint = quinn::Endpoint::server(server, listen).expect("bind the adversary's port");
    endpoint.set_default_client_config(client);
    endpoint
}

fn peer_key(conn: &quinn::Connection) -> Result<PublicKey, LinkError> {
    let certs = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(LinkError::NoCertificate)?;
    let cert = certs.first().ok_or(LinkError::NoCertificate)?;
    tls::peer_key(cert).map_err(|_| LinkError::NoCertificate)
}

async fn read_hello(recv: &mut quinn::RecvStream) -> Result<HelloReply, LinkError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read_hello(recv))
        .await
        .map_err(|_| LinkError::Timeout)??
        .ok_or(LinkError::Closed)
}

fn index_of(shared: &Shared, key: &PublicKey) -> Result<ValidatorIndex, LinkError> {
    shared
        .chain()
        .and_then(|c| c.set.index_of(key))
        .ok_or(LinkError::NotInGenesis)
}

/// Accepts the honest nodes' connections and reads what they send.
pub async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = accept_one(&shared, incoming).await;
        });
    }
}

async fn accept_one(shared: &Shared, incoming: quinn::Incoming) -> Result<(), LinkError> {
    let conn = incoming.await?;
    let key = peer_key(&conn)?;
    let (mut send, mut recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| LinkError::Timeout)??;
    let HelloReply::Welcome(theirs) = read_hello(&mut recv).await? else {
        return Ok(());
    };
    if let Some(HelloGenesis::Whole(g)) = &theirs.genesis {
        shared.adopt(g);
    }
    let mine = shared.hello();
    let ready = theirs.genesis.is_some() && mine.genesis.is_some();
    wire::write_frame(&mut send, &wire::encode_hello(&HelloReply::Welcome(mine))).await?;
    let _ = send.finish();
    if !ready {
        // The dialer redials once it has a genesis.
        conn.closed().await;
        return Ok(());
    }
    let from = index_of(shared, &key)?;
    shared.stats.handshakes_in.fetch_add(1, Ordering::Relaxed);
    if !lock(&shared.peers).contains_key(&from) {
        shared.redial.notify_waiters();
    }
    let mut buf = Vec::new();
    while wire::read_frame(&mut recv, &mut buf, MAX_FRAME_BYTES).await? {
        if let Ok(msg) = codec::decode_message(&buf) {
            shared.stats.received.fetch_add(1, Ordering::Relaxed);
            if shared.inbound.send((from, msg)).await.is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Dials an honest node again and again: a connection that is refused, pending or closed
/// (a node closes one that sent an oversized frame) is dialed anew.
pub async fn dial_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint, addr: SocketAddr) {
    loop {
        match dial_once(&shared, &endpoint, addr).await {
            Err(LinkError::Redial) => continue,
            Err(LinkError::Refused(reason)) => eprintln!("byzantine: {addr} refused us: {reason}"),
            _ => {}
        }
        tokio::time::sleep(REDIAL).await;
    }
}

async fn dial_once(
    shared: &Shared,
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<(), LinkError> {
    let connecting = endpoint.connect(addr, tls::SERVER_NAME)?;
    let redial = shared.redial.notified();
    let conn = tokio::select! {
        c = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting) => c.map_err(|_| LinkError::Timeout)??,
        _ = redial => return Err(LinkError::Redial),
    };
    let key = peer_key(&conn)?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mine = shared.hello();
    let sent_genesis = mine.genesis.is_some();
    wire::write_frame(&mut send, &wire::encode_hello(&HelloReply::Welcome(mine))).await?;
    let theirs = match read_hello(&mut recv).await? {
        HelloReply::Welcome(h) => h,
        HelloReply::Refused(reason) => return Err(LinkError::Refused(reason)),
    };
    if let Some(HelloGenesis::Whole(g)) = &theirs.genesis {
        shared.adopt(g);
    }
    if !sent_genesis || theirs.genesis.is_none() {
        conn.close(0u32.into(), b"pending");
        return Ok(());
    }
    let to = index_of(shared, &key)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    if let Some(greeting) = lock(&shared.greeting).clone() {
        let _ = tx.try_send(greeting);
    }
    lock(&shared.peers).insert(to, tx);
    shared.stats.handshakes_out.fetch_add(1, Ordering::Relaxed);
    let result = async {
        loop {
            tokio::select! {
                bytes = rx.recv() => {
                    let Some(bytes) = bytes else { return Ok(()) };
                    send.write_all(&bytes).await.map_err(std::io::Error::from)?;
                }
                e = conn.closed() => return Err(LinkError::Connection(e)),
            }
        }
    }
    .await;
    lock(&shared.peers).remove(&to);
    result
}
