//! The peer-to-peer side: the QUIC endpoint and the inbound side of a link (`transport`), the
//! outbound side (`dial`), the bounded queue of frames for each peer (`queue`), the hello
//! exchange and the dev genesis (`handshake`), TLS authenticated by validator keys (`tls`), the
//! validator sets whose keys are admitted and whose registered addresses are dialed (`members`),
//! framing (`wire`), peer addresses (`addr`), answers to peers' sync requests (`syncserve`) and
//! every live instance of a peer's key, the links back to those we do not dial (`twins`),
//! the peers cut off for a while after a provable fault (`cooloff`), the nodes that follow
//! this one (`followers`) and, on a full node, those it follows (`upstream`).

pub mod addr;
pub(crate) mod cooloff;
pub(crate) mod dial;
pub mod followers;
pub mod handshake;
pub mod members;
pub(crate) mod queue;
pub(crate) mod syncserve;
pub mod tls;
pub(crate) mod transport;
pub(crate) mod twins;
pub(crate) mod upstream;
pub mod wire;
