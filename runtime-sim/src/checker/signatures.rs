//! Signature verdicts, each computed once for the whole run: votes on the wire verified in
//! batches by the core's `VerdictCache` (keyed by what a signature covers; the same cache makes
//! the `Verified` messages the nodes are given), and certificates whose good signatures are
//! remembered (the nodes' certificates share most of theirs).

use timed_core::block::{Certificate, CommitSignature};
use timed_core::crypto::Signature;
use timed_core::message::{Message, Vote, VoteKind};
use timed_core::types::{Hash, Height, ValidatorIndex};
use timed_core::verified::Verified;

use super::*;

/// Whether two signatures are the same bytes: without a call to `memcmp` per comparison, which
/// a certificate extension makes for each of its signatures (4 % of a scale run's time).
fn same(a: &Signature, b: &Signature) -> bool {
    a.0.iter().zip(&b.0).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Certificates (height, round, block) whose good signatures are kept before that cache starts
/// over (6.5 kB each with 100 validators).
const MAX_CERTIFICATES: usize = 4 * 1024;

/// Votes verified as one batch at most (the core's `VerdictCache` batches so).
pub const BATCH: usize = timed_core::verified::VERDICT_BATCH;

impl Checker {
    /// A vote is on its way to a node: its verdict will be needed, and is computed with the
    /// others' at the first delivery that needs one (`signature_ok`). Once per message (`seen`
    /// is shared by its copies); a vote that reaches nobody is never verified.
    pub fn on_wire(&mut self, msg: &Message, seen: &Seen) {
        if seen.wired.replace(true) || seen.verdict.get().is_some() {
            return;
        }
        if let Message::Vote(v) = msg {
            self.verdicts.expect(v);
        }
    }

    /// Verifies a certificate as `Certificate::verify` would, but each precommit signature once
    /// for the whole run: the nodes' certificates share most of their signatures, and checking
    /// every node's certificate as a fresh batch was a quarter of the simulator's time.
    pub(super) fn certificate_ok(
        &mut self,
        cert: &Certificate,
        height: Height,
        block: &Hash,
    ) -> bool {
        if cert.height != height || cert.block_hash != *block {
            return false;
        }
        // The set of its height. Also: every signer is in it, so it has a position below.
        let set = self.set_at(height).clone();
        match cert.signed_stake(&set) {
            Ok(stake) if set.is_quorum(stake) => {}
            _ => return false,
        }
        let at = |v: ValidatorIndex| set.position(v).expect("a signer of the set");
        let slot = (height, cert.round, *block);
        let new: Vec<&CommitSignature> = match self.cert_signatures.get(&slot) {
            Some(known) => cert
                .signatures
                .iter()
                .filter(|s| {
                    !known[at(s.validator)]
                        .as_ref()
                        .is_some_and(|k| same(k, &s.signature))
                })
                .collect(),
            None => cert.signatures.iter().collect(),
        };
        if new.is_empty() {
            return true;
        }
        let mut good = vec![];
        let mut ok = true;
        for s in new {
            let vote = Vote {
                height,
                round: cert.round,
                kind: VoteKind::Precommit,
                block: Some(*block),
                validator: s.validator,
                signature: s.signature,
            };
            if !self.signature_ok(&Message::Vote(vote)) {
                ok = false;
                break;
            }
            good.push((s.validator, s.signature));
        }
        if self.cert_signatures.len() >= MAX_CERTIFICATES
            && !self.cert_signatures.contains_key(&slot)
        {
            self.cert_signatures.clear();
        }
        let n = set.len();
        let known = self
            .cert_signatures
            .entry(slot)
            .or_insert_with(|| vec![None; n]);
        for (v, signature) in good {
            known[at(v)] = Some(signature);
        }
        ok
    }

    /// Distinct proposals and votes whose signature was verified so far: the verifications the
    /// workload needs (one per distinct message), for `timed-sim bench`'s crypto floor.
    pub fn distinct_signed_messages(&self) -> usize {
        self.verdicts.len()
    }

    /// From now on, verifies every signature on this thread (`Simulation::verify_on_this_thread`).
    pub fn verify_on_this_thread(&mut self) {
        self.verdicts.verify_here();
    }

    /// From now on, verifies the votes on the wire on a second thread
    /// (`Simulation::verify_on_second_thread`).
    pub fn verify_on_second_thread(&mut self) {
        self.verdicts.verify_on_second_thread();
    }

    /// Takes back the verdicts of every vote on the wire (`verdicts`): after it, what the cache
    /// holds no longer depends on the threads' speeds.
    pub fn settle_verdicts(&mut self) {
        self.verdicts.settle();
    }

    /// Whether the author's signature of a proposal or vote verifies (false for other messages),
    /// remembered for the run by the core's `VerdictCache`: computed, never assumed.
    pub fn signature_ok(&mut self, msg: &Message) -> bool {
        self.verdicts.verdict(msg)
    }

    /// `msg` as the core's `Verified`, if its signature verifies (a look-up, once its verdict is
    /// known); else `msg` back.
    #[allow(clippy::result_large_err)] // the message back, moved, as `VerdictCache::check`
    pub fn verified(&mut self, msg: Message) -> Result<Verified, Message> {
        self.verdicts.check(msg)
    }
}
