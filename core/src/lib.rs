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
//! | [`codec`] | the binary encoding's rules, the envelope's version and size limits |
//! | [`formats`] | the layout of every type that is sent, stored, signed or hashed |
//! | [`validators`] | the genesis, the `ValidatorSet`, quorums, the proposer draw |
//! | [`genesis`] | the rules a genesis must pass (`Genesis::validate`) |
//! | [`vote`] | prepares and precommits: what each signs, checking one or a burst |
//! | [`votes`] | the `VoteKeeper`: tallies per round, duplicates, equivocation evidence |
//! | [`block`] | headers, blocks, certificates |
//! | [`tx`] | signed transfers |
//! | [`ledger`] | accounts, block application, subsidy and rewards, the mempool |
//! | [`message`] | what validators send each other, and the envelope it travels in |
//! | [`verified`] | `Verified` messages (made only by the core's checks), the pre-check policy, the verdict cache |
//! | [`consensus`] | the state machine (Tendermint's Algorithm 1), the only producer of outputs |
//! | [`follow`] | a full node's upstream links: whom to ask for the blocks it lacks |
//!
//! # Dependency order
//!
//! Each module builds only on those before it (`use crate::…`, tests aside):
//!
//! `types`, `codec` → `crypto` → `tx` → `validators` → `vote` → `block` → `message` → `verified`
//! → `genesis` → `votes` → `ledger` → `consensus` → `formats`
//!
//! `codec` names no type of the domain: the envelope (`message::encode_message`) sits beside the
//! messages, and `codec` re-exports it only so that callers keep their path. A vote is below the
//! block (a certificate is a set of vote signatures) and the message (which carries votes);
//! `Genesis` is defined in `validators` (the set is built from it) but validated in `genesis`,
//! whose size rule needs the layout of a proposal; `formats`, which writes every type's layout,
//! is last. `units` (durations as text, percentiles) stands apart: it uses nothing of the
//! domain and nothing of the domain uses it; the runtimes share it.

pub mod block;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod follow;
pub mod formats;
pub mod genesis;
pub mod ledger;
pub mod message;
pub mod staking;
pub mod tx;
pub mod types;
pub mod units;
pub mod validators;
pub mod verified;
pub mod vote;
pub mod votes;
