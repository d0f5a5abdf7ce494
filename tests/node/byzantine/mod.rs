//! A Byzantine validator for the tests of real `timed` processes: it holds the development key
//! of one genesis validator, speaks the node's real transport (QUIC, TLS with that key, the
//! hello; `link.rs`), takes part in forming the development genesis like any validator, then
//! reads what the honest nodes send and attacks them (`attack.rs`) with messages the core's own
//! signing makes valid (`forge.rs`).
//!
//! It runs on a tokio runtime of its own inside the test process; the test switches attacks on
//! and off (`Adversary::set`) and reads what it did (`Adversary::counts`), so that a test cannot
//! pass because the adversary never connected. None of this is in the `timed` library or binary.

mod attack;
mod forge;
mod link;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use timed_core::crypto::Keypair;
use tokio::sync::{mpsc, watch};

/// Which attacks run. Whatever is on, the adversary proposes when its turn comes (a block no
/// honest node accepts: silence would cost each such round the propose timeout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attacks {
    /// For every (height, round) an honest node is seen in: two prepares and two precommits
    /// (the real block or a made-up one, a made-up one or nil), one to some peers, the other to
    /// the rest, both to one; and two proposals where it is the proposer.
    pub equivocate: bool,
    /// Signed votes and proposals rounds ahead (+65, +1000, near `u32::MAX`) and heights ahead
    /// (+10^6, near `u64::MAX`), votes of validators that do not exist, decisions far ahead
    /// (with forged certificates only if `forge_certificates`).
    pub far_future: bool,
    /// Certificates whose signatures are made up or copied, in the decisions of `far_future`,
    /// `replay_per_tick` and unasked sync answers of `lie_in_sync`: each proves this validator
    /// faulty, and an honest node cuts it off for a while (off, those attacks send only what an
    /// honest validator could).
    pub forge_certificates: bool,
    /// Every tick, to every peer: a prepare of the honest tip's height and round, and a proposal
    /// there, both signed by this validator with one signature byte flipped. Each proves it
    /// faulty.
    pub forge_signatures: bool,
    /// Distinct votes, each validly signed, of rounds far ahead, this many per peer and tick
    /// (50 ms): each costs a node a signature check, until its budget for this peer is spent.
    pub flood_per_tick: u32,
    /// The honest nodes' proposals and decisions forwarded with one transfer more or less under
    /// the same signed header; unasked block responses with another body.
    pub swap_bodies: bool,
    /// Sync requests answered with nothing, garbage, swapped bodies, broken or forged
    /// certificates; unasked sync responses of forged blocks; plausible claims of being
    /// ahead (the last real decision first on every new connection, so that a node catching up
    /// asks this validator first); bursts of sync requests from height 1 for as many blocks as
    /// a request may ask.
    pub lie_in_sync: bool,
    /// Frames that decode to nothing, and now and then a length prefix past the frame limit
    /// (the peer closes that connection; the adversary dials again).
    pub garbage: bool,
    /// Votes for whatever an honest node votes for, so that two honest validators and this one
    /// make a quorum (while the third honest one is down).
    pub support: bool,
    /// Copies per peer and tick (50 ms) of two frames sent again and again: a signed vote far
    /// ahead and a decision whose certificate repeats one real signature. Each copy costs a
    /// node a signature check; it costs the adversary nothing.
    pub replay_per_tick: u32,
}

impl Attacks {
    /// Everything that hurts at once (support aside: it helps), the replays at 400 frames a
    /// second per peer: a rate two busy cores carry beside three nodes (`measure_an_attack` in
    /// `node_byzantine.rs` shows what more does).
    pub fn all() -> Attacks {
        Attacks {
            equivocate: true,
            far_future: true,
            forge_certificates: true,
            forge_signatures: true,
            flood_per_tick: 0,
            swap_bodies: true,
            lie_in_sync: true,
            garbage: true,
            support: false,
            replay_per_tick: 10,
        }
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// What the adversary did so far.
        #[derive(Default)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// `Stats` read at one moment.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct Counts {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Stats {
            pub fn counts(&self) -> Counts {
                Counts { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Connections we dialed that ended the hello ready to carry messages.
    handshakes_out,
    /// Connections the honest nodes dialed that ended the hello ready.
    handshakes_in,
    /// Messages decoded from the honest nodes.
    received,
    /// Frames queued to the honest nodes (anything).
    sent,
    /// Slots in which two prepares and two precommits were sent.
    equivocations,
    /// Rounds in which two different proposals were sent.
    double_proposals,
    /// Messages far ahead in rounds or heights, or of unknown validators.
    far,
    /// Proposals, decisions and block responses sent with a swapped body.
    swapped,
    /// Sync requests the honest nodes sent us.
    sync_asked,
    /// Lies sent in answer to them, or unasked.
    sync_lies,
    /// Sync requests sent to the honest nodes.
    sync_requests,
    /// Undecodable frames and oversized length prefixes.
    garbage,
    /// Frames of `replay`: copies of the same signed bytes.
    replays,
    /// Votes that backed what an honest node voted.
    supported,
    /// Votes and proposals sent with a flipped signature byte.
    forged,
    /// Distinct validly signed far-round votes of `flood_per_tick`.
    flooded,
}

/// The running adversary; stops when dropped.
pub struct Adversary {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<link::Shared>,
    attacks: watch::Sender<Attacks>,
}

impl Adversary {
    /// Validator `name` (its development key) listening on `port` of loopback, where the honest
    /// nodes' `--peers` point, and dialing the honest nodes at `honest` ports.
    pub fn start(name: &str, port: u16, block_time_ms: u64, honest: &[u16]) -> Adversary {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("byzantine")
            .enable_all()
            .build()
            .expect("the adversary's runtime");
        let (inbound_tx, inbound) = mpsc::channel(4096);
        let shared = Arc::new(link::Shared::new(
            Keypair::insecure_from_name(name),
            name.to_string(),
            block_time_ms,
            inbound_tx,
        ));
        let (attacks, attacks_rx) = watch::channel(Attacks::default());
        {
            let _guard = runtime.enter();
            let endpoint = link::endpoint(&shared, SocketAddr::from(([127, 0, 0, 1], port)));
            runtime.spawn(link::accept_loop(shared.clone(), endpoint.clone()));
            for &p in honest {
                let addr = SocketAddr::from(([127, 0, 0, 1], p));
                runtime.spawn(link::dial_loop(shared.clone(), endpoint.clone(), addr));
            }
            runtime.spawn(attack::run(shared.clone(), inbound, attacks_rx));
        }
        Adversary {
            runtime: Some(runtime),
            shared,
            attacks,
        }
    }

    pub fn set(&self, attacks: Attacks) {
        self.attacks.send_replace(attacks);
    }

    pub fn counts(&self) -> Counts {
        self.shared.stats.counts()
    }

    /// How many honest nodes we hold a ready outbound connection to.
    pub fn connected(&self) -> usize {
        self.shared.connected().len()
    }
}

impl Drop for Adversary {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
