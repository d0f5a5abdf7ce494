#![forbid(unsafe_code)]
//! `timed-core`: one validator's whole consensus as a pure, deterministic state machine.
//!
//! (The runtime author's recipe is written in the `consensus` module as it is built.)

pub mod block;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod ledger;
pub mod message;
pub mod tx;
pub mod types;
pub mod validators;
pub mod votes;
