//! What travels on a QUIC stream between two nodes: length-prefixed frames (a 4-byte big-endian
//! length, then that many bytes), at most `MAX_FRAME_BYTES` each.
//!
//! A connection carries one bidirectional stream. The dialer writes a `Hello`; the acceptor answers
//! with its own `Hello` or a `Refused` reason. If both sides hold the same genesis, the dialer then
//! writes consensus messages (`codec::encode_message`) on the same stream, and the acceptor reads
//! them. Each node dials every peer, so each pair of nodes has two connections, one per direction:
//! no tie-breaking between simultaneous dials is ever needed. The acceptor's half stays open after
//! its hello and carries frames only to a process it does not dial itself, another instance of
//! the dialer's key (`twins.rs`); the dialer reads it as it reads an inbound connection.

use serde::{Deserialize, Serialize};
use timed_core::codec;
use timed_core::crypto::PublicKey;
use timed_core::types::{Hash, Stake};
use timed_core::validators::Genesis;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame: the largest consensus message the core accepts.
pub const MAX_FRAME_BYTES: usize = codec::MAX_MESSAGE_BYTES;

/// The largest hello (a genesis of 1 000 validators fits).
pub const MAX_HELLO_BYTES: usize = 1024 * 1024;

/// Version of the hello exchange (3: the genesis may travel as its hash alone, `HelloGenesis`).
pub const HELLO_VERSION: u32 = 3;

/// A genesis whose encoding is larger travels in a hello as its hash alone (`HelloGenesis`):
/// a genesis of a million balances is some 36 MB, far over `MAX_HELLO_BYTES`, and validators
/// of such a chain refused each other's hello.
pub const HELLO_GENESIS_BYTES: usize = 512 * 1024;

/// The genesis as a hello carries it: whole while it is small, so that a development node
/// still forming its genesis may adopt it; else its hash, which is all a node with a genesis
/// compares (a node without one must then be given the file: `--genesis`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloGenesis {
    Whole(Genesis),
    Hash(Hash),
}

impl HelloGenesis {
    /// How `genesis` (of hash `hash`) travels.
    pub fn of(genesis: &Genesis, hash: Hash) -> HelloGenesis {
        if codec::encode(genesis).len() <= HELLO_GENESIS_BYTES {
            HelloGenesis::Whole(genesis.clone())
        } else {
            HelloGenesis::Hash(hash)
        }
    }

    /// The genesis's hash.
    pub fn hash(&self) -> Hash {
        match self {
            HelloGenesis::Whole(g) => g.hash(),
            HelloGenesis::Hash(h) => *h,
        }
    }
}

impl codec::Wire for HelloGenesis {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            HelloGenesis::Whole(g) => {
                out.push(0);
                g.put(out);
            }
            HelloGenesis::Hash(h) => {
                out.push(1);
                h.put(out);
            }
        }
    }
    fn get(r: &mut codec::Reader<'_>) -> Result<Self, codec::CodecError> {
        match r.tag()? {
            0 => Ok(HelloGenesis::Whole(codec::Wire::get(r)?)),
            1 => Ok(HelloGenesis::Hash(codec::Wire::get(r)?)),
            _ => Err(codec::CodecError::Malformed("unknown hello genesis")),
        }
    }
}

/// Who a node is, sent first on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// The validator id (`validator1`): the genesis name.
    pub name: String,
    pub public_key: PublicKey,
    pub stake: Stake,
    /// The block time this node was started with (dev mode: all must agree).
    pub block_time_ms: u64,
    /// The node's genesis, once fixed: whole, or its hash if large.
    pub genesis: Option<HelloGenesis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Sent once per connection: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum HelloReply {
    Welcome(Hello),
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("undecodable frame: {0}")]
    Decode(#[from] codec::CodecError),
}

/// Reads one frame into `buf` (replacing its contents). `Ok(false)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(len) as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    buf.clear();
    buf.resize(size, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("frame larger than 4 GiB"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await
}

timed_core::wire_struct!(Hello {
    version,
    name,
    public_key,
    stake,
    block_time_ms,
    genesis,
});

impl codec::Wire for HelloReply {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            HelloReply::Welcome(hello) => {
                out.push(0);
                hello.put(out);
            }
            HelloReply::Refused(why) => {
                out.push(1);
                why.put(out);
            }
        }
    }
    fn get(r: &mut codec::Reader<'_>) -> Result<Self, codec::CodecError> {
        match r.tag()? {
            0 => Ok(HelloReply::Welcome(codec::Wire::get(r)?)),
            1 => Ok(HelloReply::Refused(codec::Wire::get(r)?)),
            _ => Err(codec::CodecError::Malformed("unknown hello reply")),
        }
    }
}

/// Reads the hello frame of a connection (at most `MAX_HELLO_BYTES`). `Ok(None)` if the stream
/// ends first.
pub async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<HelloReply>, FrameError> {
    let mut buf = Vec::new();
    if !read_frame(r, &mut buf, MAX_HELLO_BYTES).await? {
        return Ok(None);
    }
    Ok(Some(decode_hello(&buf)?))
}

pub fn encode_hello(reply: &HelloReply) -> Vec<u8> {
    codec::encode(reply)
}

pub fn decode_hello(bytes: &[u8]) -> Result<HelloReply, codec::CodecError> {
    codec::decode(bytes, MAX_HELLO_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").await.unwrap();
        let mut buf = Vec::new();
        let mut r = &out[..];
        assert!(read_frame(&mut r, &mut buf, 16).await.unwrap());
        assert_eq!(buf, b"hello");
        assert!(!read_frame(&mut r, &mut buf, 16).await.unwrap());
        let mut r = &out[..];
        assert!(matches!(
            read_frame(&mut r, &mut buf, 4).await,
            Err(FrameError::TooLarge { size: 5, .. })
        ));
    }

    /// A small genesis travels whole, a large one as its hash; both hellos fit the hello's
    /// limit and decode to what was sent.
    #[test]
    fn a_hello_carries_a_large_genesis_as_its_hash() {
        let (_, validators) = timed_core::validators::insecure_dev_validators(&[100, 100]);
        let mut genesis = Genesis {
            chain_id: "hello".into(),
            genesis_time_ms: timed_core::types::TimestampMs(0),
            validators,
            balances: Vec::new(),
            params: Default::default(),
        };
        let hello = |genesis: &Genesis| {
            let g = HelloGenesis::of(genesis, genesis.hash());
            assert_eq!(g.hash(), genesis.hash());
            let reply = HelloReply::Welcome(Hello {
                version: HELLO_VERSION,
                name: "validator1".into(),
                public_key: genesis.validators[0].public_key,
                stake: Stake(100),
                block_time_ms: 1,
                genesis: Some(g.clone()),
            });
            let bytes = encode_hello(&reply);
            assert!(bytes.len() <= MAX_HELLO_BYTES, "{}", bytes.len());
            assert_eq!(decode_hello(&bytes).unwrap(), reply);
            g
        };
        assert!(matches!(hello(&genesis), HelloGenesis::Whole(_)));
        genesis.balances = (0u32..60_000)
            .map(|i| timed_core::validators::GenesisBalance {
                account: timed_core::crypto::PublicKey(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                amount: timed_core::types::Amount(1),
            })
            .collect();
        assert!(codec::encode(&genesis).len() > MAX_HELLO_BYTES);
        assert_eq!(hello(&genesis), HelloGenesis::Hash(genesis.hash()));
    }
}
