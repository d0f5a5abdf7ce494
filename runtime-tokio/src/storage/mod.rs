//! What survives a restart: finalized blocks and state in redb (`store`, `stored`), the
//! write-ahead log of the round in progress (`wal`) and the double-sign guard file (`guard`); `reset`
//! deletes the chain data and keeps the guard; `pruner` deletes old blocks (`--retain-blocks`).

pub mod guard;
pub mod pruner;
pub mod reset;
pub mod snapshots;
pub(crate) mod store;
pub(crate) mod stored;
pub(crate) mod wal;
