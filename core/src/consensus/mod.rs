//! The consensus state machine and its interface to runtimes.
//!
//! # Driving a node (the recipe for a runtime author)
//!
//! 1. Build a `Node` with `Node::new(genesis, key, config)` — or, after a crash,
//!    `Node::restore(..)` from the last finalized block, the ledger after it and every
//!    `PersistRecord` the node emitted since, and the double-sign guard (`Restore::guard`: the
//!    last `SignPoint` it signed and its last lock, kept in a file of its own beside the key).
//! 2. Call `node.handle(now, Input::Start)`, then `handle` for every event: a decoded message from
//!    an authenticated peer, a timer that fired, a (re)connected peer, a submitted transaction.
//!    `now` is milliseconds on the runtime's clock; the core reads no clock of its own.
//! 3. Perform the returned `Output`s **in order**:
//!    - `Persist(record)`: make it durable (fsync) before performing any later output of the same
//!      call. This is what keeps a validator from signing two different votes across a crash.
//!      Also keep the double-sign guard: `SignGuard::after(guard, &record)`, when it returns a
//!      new guard, is written to the guard file, durably, before the message leaves. The guard
//!      outlives a wiped or damaged data directory.
//!    - `Broadcast(msg)` / `Send { to, msg }`: best effort; the core re-sends what matters.
//!    - `Schedule { timer, after_ms }`: deliver `Input::Timeout(timer)` later. Never cancel: stale
//!      timers are ignored by the core.
//!    - `Finalized(..)`: store the block, certificate and ledger changes; records of that height
//!      and below may be dropped.
//!    - `ServeSync { .. }`: answer a peer's catch-up request from the block store.
//!    - `Evidence`, `TxAccepted`/`TxRejected`, `Event`: report, log, count.
//!
//! The same inputs in the same order give the same outputs, byte for byte.

pub mod io;
pub mod node;

pub use io::{
    Event, Finalized, GuardLock, Input, Misbehaviour, Output, PersistRecord, RoundChange,
    SignGuard, SignPoint, SignStep, Timer, Withheld,
};
pub use node::{Footprint, Node, NodeConfig, NodeError, Restore, Step};
