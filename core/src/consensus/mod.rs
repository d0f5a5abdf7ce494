//! The consensus state machine and its interface to runtimes.
//!
//! # Driving a node (the recipe for a runtime author)
//!
//! Every obligation a runtime has is listed here; the core checks none of them, and each one
//! broken can make an honest validator sign two conflicting messages, break its lock, or lose a
//! finalized block. `runtime-tokio/src/node/driver/` (with `store.rs`, `wal.rs` and `guard.rs`) is
//! the reference implementation.
//!
//! 1. **Build a `Node`.** `Node::new(genesis, key, config)` for a validator that has never signed
//!    on this chain. After any stop or crash, `Node::restore(genesis, key, config, restore)` with a
//!    [`Restore`] holding:
//!    - `last`: the last finalized block with its certificate (`Output::Finalized`, the
//!      certificate as last replaced by `Output::CertificateExtended`), or `None` before block 1;
//!    - `ledger`: the ledger after that block (`Finalized::outcome.touched` applied to the
//!      ledger before it; `Ledger::from_accounts` rebuilds it). Its `state_root` must equal the
//!      block's `header.state_root`, or `restore` fails with `NodeError::LedgerMismatch`;
//!    - `records`: every `PersistRecord` made durable since (the core keeps those of height
//!      `last + 1`, the height it resumes at, and ignores the rest);
//!    - `guard`: the double-sign guard file's content (below), `None` if there is no such file.
//!
//!    A node restored at an older block than the last one it finalized ignores its records of
//!    the height after (they are not of the height it resumes at), catches up, and only the
//!    guard then keeps it from signing a second, different message there: hence rule 3c.
//!    `NodeConfig::double_sign_check_ms` is 0 only for a validator known never to have signed
//!    on this chain.
//! 2. **Feed it inputs.** Call `node.handle(now, Input::Start)` first, then `handle` once per
//!    event: a decoded message (`Input::Message`, with `from` the validator the transport
//!    authenticated the connection as: answers go there, and its claims and rate budgets are
//!    charged to it), a timer that fired, a (re)connected peer, a client's transfer.
//!    `now` is Unix time in milliseconds (all validators of a chain must share the epoch: it is
//!    compared with block timestamps and `Genesis::genesis_time_ms`), from a clock kept in step
//!    with the other validators' (NTP: a block more than `ConsensusParams::max_clock_drift_ms`
//!    ahead of a validator's clock is refused by it). The core reads no clock of its own, and
//!    treats a `now` below an earlier one as the earlier one.
//! 3. **Perform the returned `Output`s in order.** The outputs of one `handle` call are a *step*.
//!    Performing an output later than these rules require is always safe (the real node writes
//!    the records of several steps with one sync before performing any of their outputs);
//!    performing one earlier is not.
//!    - a. `Persist(record)`: make `record` durable (written and fsynced) before performing any
//!      later output of the same step, above all the `Broadcast` of the signed message that
//!      follows it (`Signed`, preceded by `Locked` for a precommit that locks, and by `Prepared`
//!      for a prepare of a block no earlier record holds). This keeps a validator from signing two
//!      different messages for one slot across a crash.
//!    - b. **The double-sign guard**: for each `Persist(record)`, `SignGuard::after(guard,
//!      &record)` returns the new guard when the record changes it (every `Signed` record of a
//!      proposal or vote); write it to the guard file, durably, before the message leaves (as
//!      3a; `guard` is the last value written, or `Restore::guard`). Keep that file beside the
//!      key, apart from the chain data: it is what survives a wiped data directory, a restored
//!      backup or a damaged log, and it must move with the key. One key, one running node: the
//!      core only detects a second one (`Event::ForeignSignature`).
//!    - c. `Finalized(f)`: store `f.block`, `f.certificate` and the ledger changes
//!      (`f.outcome`). The block of height `h` must be durable before any `Persist` record of
//!      height `h + 1` is (so that a restart finds the block whose next height those records
//!      belong to: rule 1); the real node writes it to its log ahead of those records, in one
//!      ordered file (`runtime-tokio/src/storage/store/`). Once block `h` is durable, the records of
//!      heights up to `h` are no longer needed and may be dropped; not before.
//!    - d. `CertificateExtended(cert)`: replace the stored certificate of `cert.height` (the
//!      last finalized block) with `cert`, a superset of it; a restore should be given the
//!      longer one, though either proves the block.
//!    - e. `Broadcast(msg)` / `Send { to, msg }`: best effort (a full queue may drop); the core
//!      re-sends what matters (`Timer::Resend`, `Input::PeerConnected`).
//!    - f. `Schedule { timer, after_ms }`: hand back `Input::Timeout(timer)` once `after_ms`
//!      milliseconds have passed, not earlier (a propose timeout delivered early makes the node
//!      prepare nil). Never cancel one: a timer of a height, round or step the node has left is
//!      ignored.
//!    - g. `ServeSync { to, from, max_blocks }`: answer `to` with `Message::SyncResponse`
//!      holding the finalized blocks from height `from` on, ascending, each with its stored
//!      certificate (`message::Decision`), at most `max_blocks` of them and fewer if the message
//!      would pass `codec::MAX_MESSAGE_BYTES`: pack them with `message::SyncPacker`. Read them from the store (the real node first
//!      stores the blocks it finalized and had not written yet, so the answer lacks none). A
//!      short or missing answer is tolerated (the asker turns to another peer); a wrong one is
//!      refused by it.
//!    - h. `Evidence`, `TxAccepted`/`TxRejected`, `Event`: report, answer the client, log,
//!      count. They oblige nothing else.
//! 4. **Hand over as checked only what the core checked.** `Input::SignatureChecked { from, msg }`
//!    and `Input::SubmitVerifiedTx` make the core skip a signature check. They take a
//!    [`crate::verified::Verified`], which only the core's own checks make: `Verified::votes` (a
//!    burst, one batch), `Verified::proposal`, `Verified::transfers`, or a `VerdictCache` shared by
//!    many nodes of one chain. Check against `node.validators()` and `node.chain_id()`: a
//!    `Verified` made against another set or chain would be believed. Which messages to check
//!    before the core sees them is one policy for every runtime, `verified::precheck`; a message
//!    it leaves out goes in as `Input::Message`, and the core checks what it needs to. Decisions,
//!    sync and block messages are checked in full by the core either way (their certificates and
//!    hashes). A vote the node already counted (`Node::holds_vote`) needs no check at all.
//!
//! The same inputs in the same order give the same outputs, byte for byte.

pub mod io;
pub mod node;

pub use io::{
    Event, Finalized, GuardLock, Input, Misbehaviour, Output, PersistRecord, RoundChange,
    SignGuard, SignPoint, SignStep, Timer, Withheld,
};
pub use node::{
    Footprint, Node, NodeConfig, NodeError, Restore, SYNC_ANSWER_BURST, SYNC_ANSWER_INTERVAL_MS,
    Step,
};
