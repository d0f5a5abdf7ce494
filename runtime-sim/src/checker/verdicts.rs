//! The verdicts on the run's signatures (the core's `VerdictCache`), with the votes put on the
//! wire verified on a second thread while this one runs the nodes.
//!
//! A vote is put on the wire some 20 to 70 simulated milliseconds before its first delivery
//! needs its verdict, and other nodes' events happen in between: time for another core to
//! verify it. Each wired vote goes to the verifier at once; the verifier takes whatever has
//! arrived (up to `BATCH`) as one batch, and sends the verdicts back in the order the votes
//! came. A delivery whose verdict is missing takes batches back, in that order, until its own
//! is in.
//!
//! Why this keeps a run deterministic: a verdict is a pure function of what the signature
//! covers, the signature, the set and the chain id (`VerdictCache`), so which thread computes
//! it, and in which batch, changes nothing a node sees. What the cache holds at a given step
//! may differ from run to run; only its count is reported, and only after every vote wired
//! was taken back (`settle`, at the end of `Simulation::run_until`).
//!
//! Without a second core (`available_parallelism` of 1), or for a set smaller than a batch
//! (whose rounds do not fill one: the hop to the other thread then cost more than it saved),
//! the cache verifies on this thread, in batches at the first verdict asked for.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SendError, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use timed_core::message::{Message, Vote};
use timed_core::validators::ValidatorSet;
use timed_core::verified::{VerdictCache, Verified, VoteVerdicts};

use super::BATCH;

/// A vote for the verifier, with the set and chain id to verify it against.
type Job = (Vote, Arc<ValidatorSet>, Arc<str>);

/// The second thread, and how many of the votes sent to it are not taken back yet.
struct Verifier {
    jobs: Option<Sender<Job>>,
    done: Receiver<(usize, VoteVerdicts)>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl Verifier {
    fn start() -> Option<Verifier> {
        let (jobs, todo) = channel::<Job>();
        let (finished, done) = channel();
        let thread = std::thread::Builder::new()
            .name("sim-verifier".into())
            .spawn(move || verify_all(&todo, &finished))
            .ok()?;
        Some(Verifier {
            jobs: Some(jobs),
            done,
            in_flight: 0,
            thread: Some(thread),
        })
    }
}

/// The verifier's loop: waits for a vote, takes the others already there (same set, at most a
/// batch), verifies them together and sends back how many with their verdicts; ends when the
/// queue closes.
fn verify_all(todo: &Receiver<Job>, finished: &Sender<(usize, VoteVerdicts)>) {
    let mut next = todo.recv().ok();
    while let Some((vote, set, chain_id)) = next.take() {
        let mut votes = vec![vote];
        while votes.len() < BATCH {
            match todo.try_recv() {
                Ok(job) if Arc::ptr_eq(&job.1, &set) => votes.push(job.0),
                Ok(job) => {
                    next = Some(job);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let computed = VoteVerdicts::compute(&votes, &set, chain_id);
        if finished.send((votes.len(), computed)).is_err() {
            return;
        }
        if next.is_none() {
            next = todo.recv().ok();
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether this machine has one core only, so that verdicts are computed on the simulation's
/// thread whatever is asked.
pub fn verifies_on_one_thread() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) < 2
}

/// Whether a run of `validators` verifies the votes on the wire on a second thread by itself:
/// where a round's votes fill batches. A few validators' votes went one at a time, and the hop
/// cost more than it saved (the testnet hour 1.2× slower).
pub fn second_thread_for(validators: usize) -> bool {
    validators >= BATCH && !verifies_on_one_thread()
}

/// Signature verdicts for one set (the registry) and chain id, computed once each.
pub(super) struct Verdicts {
    cache: VerdictCache,
    set: Arc<ValidatorSet>,
    chain_id: Arc<str>,
    /// `None`: verify on this thread.
    verifier: Option<Verifier>,
}

impl Verdicts {
    /// Verdicts against `set` on `chain_id`; on a second thread when `parallel` and the machine
    /// has a second core (`second_thread_for`).
    pub(super) fn new(set: ValidatorSet, chain_id: &str, parallel: bool) -> Verdicts {
        Verdicts {
            cache: VerdictCache::new(set.clone(), chain_id),
            set: Arc::new(set),
            chain_id: chain_id.into(),
            verifier: if parallel && !verifies_on_one_thread() {
                Verifier::start()
            } else {
                None
            },
        }
    }

    /// The same verdicts for another set (a grown registry), keeping the thread.
    pub(super) fn renewed(&mut self, set: ValidatorSet) {
        // Votes in flight were sent with the old set: their verdicts go to the old cache.
        self.take_back_until(|_| false);
        self.cache = VerdictCache::new(set.clone(), &self.chain_id);
        self.set = Arc::new(set);
    }

    /// `v` is on the wire: its verdict will be wanted.
    pub(super) fn expect(&mut self, v: &Vote) {
        let Some(verifier) = &mut self.verifier else {
            return self.cache.expect(v);
        };
        let Some(jobs) = &verifier.jobs else {
            unreachable!("the queue closes only when the verifier is dropped")
        };
        match jobs.send((v.clone(), self.set.clone(), self.chain_id.clone())) {
            Ok(()) => verifier.in_flight += 1,
            Err(SendError((vote, _, _))) => {
                // The thread is gone (it cannot panic on a vote, but should it): verify here.
                self.verify_here();
                self.cache.expect(&vote);
            }
        }
    }

    /// Whether the author's signature of a proposal or vote verifies (false for any other
    /// message).
    pub(super) fn verdict(&mut self, msg: &Message) -> bool {
        self.wait_for(msg);
        self.cache.verdict(msg)
    }

    /// `msg` as `Verified` if its verdict is good; else `msg` back.
    #[allow(clippy::result_large_err)] // the message back, moved, as `VerdictCache::check`
    pub(super) fn check(&mut self, msg: Message) -> Result<Verified, Message> {
        self.wait_for(&msg);
        self.cache.check(msg)
    }

    /// Distinct proposals and votes given a verdict so far; every wired vote among them after
    /// `settle`.
    pub(super) fn len(&self) -> usize {
        self.cache.len()
    }

    /// Takes back every vote in flight.
    pub(super) fn settle(&mut self) {
        self.take_back_until(|_| false);
    }

    /// From now on, verifies the votes on the wire on a second thread, if the machine has a
    /// second core, whatever the size of the set.
    pub(super) fn verify_on_second_thread(&mut self) {
        if self.verifier.is_none() && !verifies_on_one_thread() {
            self.verifier = Verifier::start();
        }
    }

    /// From now on, verifies on this thread: the votes in flight are taken back first.
    pub(super) fn verify_here(&mut self) {
        self.take_back_until(|_| false);
        self.verifier = None;
    }

    /// Takes back the verifier's batches until `msg`'s verdict is in, if it is a vote.
    fn wait_for(&mut self, msg: &Message) {
        if matches!(msg, Message::Vote(_)) && self.cache.known(msg).is_none() {
            self.take_back_until(|cache| cache.known(msg).is_some());
        }
    }

    /// Takes the verifier's batches back in the order sent until `enough` holds or none is left.
    fn take_back_until(&mut self, enough: impl Fn(&VerdictCache) -> bool) {
        while let Some(verifier) = &mut self.verifier
            && verifier.in_flight > 0
        {
            match verifier.done.recv() {
                Ok((votes, computed)) => {
                    verifier.in_flight -= votes;
                    self.cache.absorb(computed);
                    if enough(&self.cache) {
                        return;
                    }
                }
                // The thread is gone: what it held is verified here when asked for.
                Err(_) => self.verifier = None,
            }
        }
    }
}
