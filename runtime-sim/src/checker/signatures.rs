//! Signature verdicts, each computed once for the whole run: votes on the wire verified in
//! batches, a cache keyed by what a signature covers, and certificates whose good signatures are
//! remembered (the nodes' certificates share most of theirs).

use timed_core::block::{Certificate, CommitSignature};
use timed_core::crypto::Signature;
use timed_core::message::{self, Message, Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, ValidatorIndex};

use super::*;

/// What a signature verdict depends on: the fields the signature covers, and the signature (a
/// proposal's body and polka are outside its signature). Cheaper than hashing an encoding of the
/// whole message, which each delivery did (a tenth of a 100-validator run).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum VerdictKey {
    Proposal(
        Height,
        Round,
        Option<Round>,
        Hash,
        ValidatorIndex,
        Signature,
    ),
    Vote(Height, Round, bool, Option<Hash>, ValidatorIndex, Signature),
}

/// Whether two signatures are the same bytes: without a call to `memcmp` per comparison, which
/// a certificate extension makes for each of its signatures (4 % of a scale run's time).
fn same(a: &Signature, b: &Signature) -> bool {
    a.0.iter().zip(&b.0).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn vote_key(v: &Vote) -> VerdictKey {
    VerdictKey::Vote(
        v.height,
        v.round,
        v.kind == VoteKind::Prepare,
        v.block,
        v.validator,
        v.signature,
    )
}

/// Signature verdicts kept before the cache starts over (about 40 bytes each).
const MAX_VERDICTS: usize = 1 << 20;

/// Certificates (height, round, block) whose good signatures are kept before that cache starts
/// over (6.5 kB each with 100 validators).
const MAX_CERTIFICATES: usize = 4 * 1024;

/// Votes verified as one batch at most: a bad signature in a batch costs a single check of each
/// of its votes (`message::verify_votes`), and beyond a few dozen a batch is hardly cheaper per
/// signature.
pub const BATCH: usize = 32;

/// Votes waiting for a batch at most; more are verified at once.
const MAX_PENDING: usize = 4 * 1024;

impl Checker {
    /// A vote is on its way to a node: its verdict will be needed, and is computed with the
    /// others' at the first delivery that needs one (`signature_ok`). Once per message (`seen`
    /// is shared by its copies); a vote that reaches nobody is never verified.
    pub fn on_wire(&mut self, msg: &Message, seen: &Seen) {
        if seen.wired.replace(true) || seen.verdict.get().is_some() {
            return;
        }
        if let Message::Vote(v) = msg
            && !self.verdicts.contains_key(&vote_key(v))
        {
            self.pending.push(v.clone());
            if self.pending.len() >= MAX_PENDING {
                self.verify_pending();
            }
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
        // Also: every signer is in the set, so its index is in range below.
        match cert.signed_stake(&self.set) {
            Ok(stake) if self.set.is_quorum(stake) => {}
            _ => return false,
        }
        let slot = (height, cert.round, *block);
        let new: Vec<&CommitSignature> = match self.cert_signatures.get(&slot) {
            Some(known) => cert
                .signatures
                .iter()
                .filter(|s| {
                    !known[s.validator.as_usize()]
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
        let n = self.set.len();
        let known = self
            .cert_signatures
            .entry(slot)
            .or_insert_with(|| vec![None; n]);
        for (v, signature) in good {
            known[v.as_usize()] = Some(signature);
        }
        ok
    }

    /// Distinct proposals and votes whose signature was verified so far: the verifications the
    /// workload needs (one per distinct message), for `timed-sim bench`'s crypto floor.
    pub fn distinct_signed_messages(&self) -> usize {
        self.verdicts.len()
    }

    /// Whether the author's signature of a proposal or vote verifies (false for other messages),
    /// remembered for the run. A forged signature still fails: the verdict is computed, not assumed.
    pub fn signature_ok(&mut self, msg: &Message) -> bool {
        if !matches!(msg, Message::Proposal(_) | Message::Vote(_)) {
            return false;
        }
        let key = match msg {
            Message::Proposal(p) => VerdictKey::Proposal(
                p.height,
                p.round,
                p.valid_round,
                p.block.hash(),
                p.proposer,
                p.signature,
            ),
            Message::Vote(v) => vote_key(v),
            _ => return false,
        };
        if let Some(&ok) = self.verdicts.get(&key) {
            return ok;
        }
        if let Message::Vote(_) = msg
            && !self.pending.is_empty()
        {
            self.verify_pending();
            if let Some(&ok) = self.verdicts.get(&key) {
                return ok;
            }
        }
        // Not put on the wire (a vote of a certificate or a polka), or a proposal: alone.
        let ok = match msg {
            Message::Proposal(p) => p.verify(&self.set, &self.chain_id).is_ok(),
            Message::Vote(v) => v.verify(&self.set, &self.chain_id).is_ok(),
            _ => false,
        };
        self.remember(key, ok);
        ok
    }

    /// Verifies the votes waiting for a verdict, in batches of `BATCH`.
    pub(super) fn verify_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for batch in pending.chunks(BATCH) {
            let verdicts = message::verify_votes(batch, &self.set, &self.chain_id);
            for (v, ok) in batch.iter().zip(verdicts) {
                self.remember(vote_key(v), ok);
            }
        }
    }

    pub(super) fn remember(&mut self, key: VerdictKey, ok: bool) {
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, ok);
    }
}
