//! The client tools of the `timed` binary: the wallet, the staking commands (`validator`), the
//! light client (`verify`), a local network in one command (`devnet`) and one more validator
//! joining it (`devjoin`), the benchmarks (`bench`, `bench_tx`, `bench_follow`,
//! `bench_statesync`) and the HTTP client they use to talk to a node.

pub mod bench;
pub(crate) mod bench_follow;
pub(crate) mod bench_statesync;
pub(crate) mod bench_tx;
pub(crate) mod client;
pub mod devjoin;
pub mod devnet;
pub mod validator;
pub mod verify;
pub mod wallet;
