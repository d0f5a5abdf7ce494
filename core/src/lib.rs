#![forbid(unsafe_code)]
#![deny(missing_docs)]
//! `timed-core`: one validator's whole consensus as a pure, deterministic state machine.
//!
//! No sockets, files, threads, clocks or global randomness: time arrives with every input, and the
//! same inputs in the same order give the same outputs, byte for byte. A runtime (the `timed` node,
//! the `timed-sim` simulator, a test harness) feeds `consensus::Input`s to `consensus::Node::handle`
//! and performs the returned `consensus::Output`s in order — the recipe is in [`consensus`].
//!
//! | module | owns |
//! |---|---|
//! | [`types`] | newtypes: `Height`, `Round`, `Stake`, `ValidatorIndex`, `Hash`, `TimestampMs`, `Amount` |
//! | [`crypto`] | Ed25519 keys, domain-separated signing, the one verification rule |
//! | [`codec`] | the binary encoding's rules, the versioned envelope, size limits |
//! | [`formats`] | the layout of every type that is sent, stored, signed or hashed |
//! | [`validators`] | the genesis, its validation, the `ValidatorSet`, quorums, the proposer draw |
//! | [`votes`] | the `VoteKeeper`: tallies per round, duplicates, equivocation evidence |
//! | [`block`] | headers, blocks, certificates |
//! | [`tx`] | signed transfers |
//! | [`ledger`] | accounts, block application, subsidy and rewards, the mempool |
//! | [`message`] | what validators send each other |
//! | [`consensus`] | the state machine (Tendermint's Algorithm 1), the only producer of outputs |

pub mod block;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod formats;
pub mod ledger;
pub mod message;
pub mod tx;
pub mod types;
pub mod validators;
pub mod votes;
