//! The peer-to-peer side: QUIC connections and peer queues (`transport`), the hello exchange and
//! the dev genesis (`handshake`), TLS authenticated by validator keys (`tls`), framing (`wire`),
//! peer addresses (`addr`) and answers to peers' sync requests (`syncserve`).

pub mod addr;
pub mod handshake;
pub(crate) mod syncserve;
pub mod tls;
pub(crate) mod transport;
pub mod wire;
