//! `Verified`: a proposal, vote or transfer whose signature the core's own verification found
//! good under the one rule. Only the functions of this module make one, so a runtime cannot
//! hand the core a message as checked without having checked it (`Input::SignatureChecked` and
//! `Input::SubmitVerifiedTx` take a `Verified`); and one pre-check policy, `precheck`, says for
//! both runtimes which messages to verify before the core sees them.
//!
//! A signature's verdict is a pure function of what it covers, the signature, the set and the
//! chain id. So a verdict may be computed once for many nodes of one chain (the simulator) and
//! kept: `VerdictCache` keys verdicts by exactly those fields and is bound to one set and chain
//! id.

// A check that fails hands its message back, moved, for the core to refuse (or the runtime to
// count as a forgery): a `Result` whose error is the message itself, as large as it is, instead
// of a copy of every message checked.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use crate::block::{self, CertificateCheck};
use crate::crypto::KeyCache;
use crate::crypto::Signature;
use crate::message::{Decision, Message, Proposal};
use crate::tx::{self, SignedTransfer};
use crate::types::{Hash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::vote::{Vote, VoteKind, verify_votes};

/// A message whose author's signature verified, made only here: its field is private, so a
/// runtime cannot wrap a message it did not check.
///
/// ```compile_fail
/// use timed_core::message::Message;
/// use timed_core::types::Height;
/// let claimed = timed_core::verified::Verified(Message::SyncRequest { from: Height(1), max_blocks: 1 });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified(Message);

impl Verified {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.0
    }

    /// The message, for the core to act on.
    pub fn into_message(self) -> Message {
        self.0
    }

    /// A proposal whose proposer's signature verifies against `set` on `chain_id` (its body and
    /// polka are outside that signature: the core checks them); else the proposal back.
    pub fn proposal(p: Proposal, set: &ValidatorSet, chain_id: &str) -> Result<Verified, Proposal> {
        match p.verify(set, chain_id) {
            Ok(()) => Ok(Verified(Message::Proposal(p))),
            Err(_) => Err(p),
        }
    }

    /// Votes checked as one batch (`vote::verify_votes`: each gets the verdict it gets alone):
    /// the good ones verified, the others back, in order.
    pub fn votes(
        votes: Vec<Vote>,
        set: &ValidatorSet,
        chain_id: &str,
    ) -> Vec<Result<Verified, Vote>> {
        let good = verify_votes(&votes, set, chain_id);
        votes
            .into_iter()
            .zip(good)
            .map(|(v, ok)| {
                if ok {
                    Ok(Verified(Message::Vote(v)))
                } else {
                    Err(v)
                }
            })
            .collect()
    }

    /// Transfers checked as one batch on `chain_id` (`tx::verify_signatures_with`), as
    /// `Message::Transaction`s: the good ones verified, the others back, in order.
    pub fn transfers(
        txs: Vec<SignedTransfer>,
        chain_id: &str,
        keys: &KeyCache,
    ) -> Vec<Result<Verified, SignedTransfer>> {
        let refs: Vec<&SignedTransfer> = txs.iter().collect();
        let good = tx::verify_signatures_with(chain_id, &refs, keys);
        txs.into_iter()
            .zip(good)
            .map(|(t, ok)| {
                if ok {
                    Ok(Verified(Message::Transaction(t)))
                } else {
                    Err(t)
                }
            })
            .collect()
    }
}

/// Checks the certificates of finalized blocks (a sync answer, an upstream's blocks) away from
/// the core's loop, on any thread: what a node catching up spends most of its time on, done
/// while the loop applies the blocks before them. Made by `Node::certificate_checker`, which
/// names the set of each height it knows (the current epoch's and the next one's); a pure
/// function of its inputs.
#[derive(Clone, Debug)]
pub struct CertificateChecker {
    chain_id: Arc<str>,
    /// Heights `first..=last` and the set that signs them.
    spans: Vec<(Height, Height, Arc<ValidatorSet>)>,
}

impl CertificateChecker {
    /// A checker for `chain_id` whose `spans` name the set of each height they cover.
    pub(crate) fn new(
        chain_id: &str,
        spans: Vec<(Height, Height, Arc<ValidatorSet>)>,
    ) -> CertificateChecker {
        CertificateChecker {
            chain_id: chain_id.into(),
            spans,
        }
    }

    /// `blocks` with the set each certificate holds under, all checked as one batch
    /// (`block::verify_certificates`: the verdict each gets alone). A block of a height no span
    /// covers gets no mark; when the batch fails, none does, and the core checks each block as
    /// it comes, refusing the faulty one where it is.
    pub fn check(&self, blocks: Vec<Decision>) -> CheckedDecisions {
        let span_of = |h: Height| {
            self.spans
                .iter()
                .position(|(first, last, _)| *first <= h && h <= *last)
        };
        let found: Vec<(usize, usize, Hash)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let h = d.block.height();
                span_of(h).map(|s| (i, s, d.block.hash()))
            })
            .collect();
        let checks: Vec<CertificateCheck<'_>> = found
            .iter()
            .map(|(i, s, hash)| CertificateCheck {
                certificate: &blocks[*i].certificate,
                set: &self.spans[*s].2,
                height: blocks[*i].block.height(),
                block_hash: hash,
            })
            .collect();
        let mut marks = vec![None; blocks.len()];
        if !checks.is_empty() && block::verify_certificates(&self.chain_id, &checks).is_ok() {
            for (i, s, _) in &found {
                marks[*i] = Some(*s as u8);
            }
        }
        CheckedDecisions {
            blocks,
            marks,
            sets: self.spans.iter().map(|(_, _, s)| s.clone()).collect(),
        }
    }
}

/// Finalized blocks whose certificates `CertificateChecker::check` checked: each with the set
/// its certificate holds under, if any. Only this module makes one, so a runtime cannot vouch
/// for a certificate it did not check (`Input::SyncChecked`). The core takes a block's mark
/// only if that set signs as the one of the block's height when it applies it
/// (`ValidatorSet::signs_as`): a set that changed since (a validator jailed from the next set,
/// an election the checker did not foresee) makes it check the certificate itself.
#[derive(Clone, Debug)]
pub struct CheckedDecisions {
    blocks: Vec<Decision>,
    /// Per block: the index in `sets` of the set its certificate held under.
    marks: Vec<Option<u8>>,
    sets: Vec<Arc<ValidatorSet>>,
}

impl CheckedDecisions {
    /// The blocks, in the order given.
    pub fn blocks(&self) -> &[Decision] {
        &self.blocks
    }

    /// How many of the blocks have a mark.
    pub fn checked(&self) -> usize {
        self.marks.iter().flatten().count()
    }

    /// `self`'s blocks, then `next`'s, each with its marks: an answer checked in parts (on two
    /// threads).
    pub fn then(mut self, next: CheckedDecisions) -> CheckedDecisions {
        let offset = self.sets.len();
        self.blocks.extend(next.blocks);
        self.marks.extend(next.marks.into_iter().map(|m| {
            // At most two sets a checker, so four here: far within `u8`.
            m.and_then(|i| u8::try_from(usize::from(i) + offset).ok())
        }));
        self.sets.extend(next.sets);
        self
    }

    /// The blocks, and per block the set its certificate held under.
    pub(crate) fn into_parts(self) -> (Vec<Decision>, Vec<Option<Arc<ValidatorSet>>>) {
        let sets = self.sets;
        let marks = self
            .marks
            .into_iter()
            .map(|m| m.map(|i| sets[usize::from(i)].clone()))
            .collect();
        (self.blocks, marks)
    }
}

impl PartialEq for CheckedDecisions {
    fn eq(&self, other: &CheckedDecisions) -> bool {
        self.blocks == other.blocks
            && self.marks == other.marks
            && self.sets.len() == other.sets.len()
            && self
                .sets
                .iter()
                .zip(&other.sets)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for CheckedDecisions {}

/// The pre-check policy both runtimes follow: which messages to verify before the core sees
/// them (in batches, off the core's path, once per node), given the height `height` the node
/// decides and whether it `holds` a vote already. A `Check` goes through `Verified`; a `Skip`
/// goes to the core as it is (it checks it there, if it needs to at all).
///
/// `sets` gives the validator set of a height, if known (`Node::set_for`): a vote or proposal
/// of a height whose set is unknown (beyond the next epoch) is a `Skip`, which the core takes as
/// a hint without checking it.
///
/// - Votes of a validator of the set of their height, of `height` or later, and precommits of
///   the height before
///   (late ones, which may join the last certificate), that the node does not hold: `Check`. A
///   prepare of the height before is of no use to the core, which ignores it unchecked. A vote
///   it holds is a resend, which the core does not check again (a peer repeating one costs no
///   verification); a vote of a validator outside the set is refused by the core before any
///   signature check; an older one is ignored there.
/// - Proposals of `height` or the next one by a validator of `set`: `Check`, alone.
/// - Everything else (decisions, sync answers, requests, transfers, whose checks need the
///   core's state or are made elsewhere): `Skip`.
pub fn precheck<'s>(
    msg: &Message,
    height: Height,
    sets: impl Fn(Height) -> Option<&'s ValidatorSet>,
    holds: impl Fn(&Vote) -> bool,
) -> Precheck {
    let member = |h: Height, v: ValidatorIndex| sets(h).is_some_and(|s| s.get(v).is_some());
    match msg {
        Message::Vote(v)
            if (v.height >= height
                || (v.height.next() == height && v.kind == VoteKind::Precommit))
                && member(v.height, v.validator)
                && !holds(v) =>
        {
            Precheck::Check
        }
        Message::Proposal(p)
            if p.height >= height && p.height <= height.next() && member(p.height, p.proposer) =>
        {
            Precheck::Check
        }
        _ => Precheck::Skip,
    }
}

/// What `precheck` says of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precheck {
    /// Verify it before the core sees it.
    Check,
    /// Hand it to the core as it is.
    Skip,
}

/// What a signature verdict depends on: the fields the signature covers and the signature (a
/// proposal's body and polka are outside its signature).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum VerdictKey {
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

fn key_of(msg: &Message) -> Option<VerdictKey> {
    match msg {
        Message::Proposal(p) => Some(VerdictKey::Proposal(
            p.height,
            p.round,
            p.valid_round,
            p.block.hash(),
            p.proposer,
            p.signature,
        )),
        Message::Vote(v) => Some(vote_key(v)),
        _ => None,
    }
}

/// Verdicts kept before the cache starts over (about 40 bytes each).
const MAX_VERDICTS: usize = 1 << 20;

/// Votes verified as one batch at most: a bad signature in a batch costs a single check of each
/// of its votes, and beyond a few dozen a batch is hardly cheaper per signature.
pub const VERDICT_BATCH: usize = 32;

/// Votes waiting for a batch at most; more are verified at once.
const MAX_PENDING: usize = 4 * 1024;

/// Signature verdicts of proposals and votes for one validator set and chain id, each computed
/// once: for a runtime that drives many nodes of one chain (the simulator). Votes announced with
/// `expect` are verified in batches at the first verdict asked for.
pub struct VerdictCache {
    set: ValidatorSet,
    chain_id: Arc<str>,
    verdicts: HashMap<VerdictKey, bool>,
    pending: Vec<Vote>,
}

impl VerdictCache {
    /// An empty cache for `set` on `chain_id`.
    pub fn new(set: ValidatorSet, chain_id: &str) -> VerdictCache {
        VerdictCache {
            set,
            chain_id: chain_id.into(),
            verdicts: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// `v`'s verdict will be wanted: it joins the next batch.
    pub fn expect(&mut self, v: &Vote) {
        if !self.verdicts.contains_key(&vote_key(v)) {
            self.pending.push(v.clone());
            if self.pending.len() >= MAX_PENDING {
                self.verify_pending();
            }
        }
    }

    /// Whether the author's signature of a proposal or vote verifies (false for any other
    /// message), computed once: the verdict is computed, never assumed.
    pub fn verdict(&mut self, msg: &Message) -> bool {
        let Some(key) = key_of(msg) else {
            return false;
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
        let ok = match msg {
            Message::Proposal(p) => p.verify(&self.set, &self.chain_id).is_ok(),
            Message::Vote(v) => v.verify(&self.set, &self.chain_id).is_ok(),
            _ => false,
        };
        self.remember(key, ok);
        ok
    }

    /// The verdict on a proposal's or vote's signature if it was computed already: a look-up
    /// that never verifies.
    pub fn known(&self, msg: &Message) -> Option<bool> {
        self.verdicts.get(&key_of(msg)?).copied()
    }

    /// Takes in verdicts computed elsewhere (`VoteVerdicts::compute`, on another thread); those
    /// computed for another set or chain id are dropped, to be computed here when asked for.
    pub fn absorb(&mut self, computed: VoteVerdicts) {
        if computed.set != self.set.hash() || *computed.chain_id != *self.chain_id {
            return;
        }
        for (key, ok) in computed.verdicts {
            self.remember(key, ok);
        }
    }

    /// `msg` as `Verified` if its verdict is good; else `msg` back.
    pub fn check(&mut self, msg: Message) -> Result<Verified, Message> {
        if self.verdict(&msg) {
            Ok(Verified(msg))
        } else {
            Err(msg)
        }
    }

    /// Distinct proposals and votes given a verdict so far (what verifying each once costs).
    pub fn len(&self) -> usize {
        self.verdicts.len()
    }

    /// Whether no verdict was computed yet.
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    fn verify_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let computed = VoteVerdicts::compute(&pending, &self.set, self.chain_id.clone());
        self.absorb(computed);
    }

    fn remember(&mut self, key: VerdictKey, ok: bool) {
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, ok);
    }
}

/// Verdicts on a batch of votes (`vote::verify_votes`: each the verdict it gets alone), computed
/// on any thread for a `VerdictCache` of the same set and chain id to take in
/// (`VerdictCache::absorb`): the simulator verifies on a second core while its first runs the
/// nodes. Only `compute` makes one, so a runtime cannot hand the cache a verdict it did not
/// compute.
pub struct VoteVerdicts {
    /// `ValidatorSet::hash` of the set they were computed with.
    set: Hash,
    chain_id: Arc<str>,
    verdicts: Vec<(VerdictKey, bool)>,
}

impl VoteVerdicts {
    /// Verifies `votes` against `set` on `chain_id`, in batches of `VERDICT_BATCH`.
    pub fn compute(votes: &[Vote], set: &ValidatorSet, chain_id: Arc<str>) -> VoteVerdicts {
        let mut verdicts = Vec::with_capacity(votes.len());
        for batch in votes.chunks(VERDICT_BATCH) {
            let good = verify_votes(batch, set, &chain_id);
            verdicts.extend(batch.iter().map(vote_key).zip(good));
        }
        VoteVerdicts {
            set: set.hash(),
            chain_id,
            verdicts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TimestampMs;
    use crate::validators::{Genesis, insecure_dev_validators};

    fn set() -> (Vec<crate::crypto::Keypair>, ValidatorSet) {
        let (keys, validators) = insecure_dev_validators(&[100; 4]);
        let g = Genesis {
            chain_id: "v".into(),
            genesis_time_ms: TimestampMs(0),
            validators,
            balances: vec![],
            params: Default::default(),
        };
        (keys, g.validate().unwrap())
    }

    fn vote(keys: &[crate::crypto::Keypair], h: u64, v: u16) -> Vote {
        Vote::sign(
            &keys[v as usize],
            "v",
            Height(h),
            Round(0),
            VoteKind::Prepare,
            None,
            ValidatorIndex(v),
        )
    }

    #[test]
    fn the_policy_checks_votes_from_the_height_before_on_and_proposals_of_this_and_the_next() {
        let (keys, set) = set();
        let none = |_: &Vote| false;
        let at = |msg: &Message| precheck(msg, Height(5), |_| Some(&set), none);
        assert_eq!(at(&Message::Vote(vote(&keys, 4, 1))), Precheck::Skip); // a late prepare
        let mut late = vote(&keys, 4, 1);
        late.kind = VoteKind::Precommit;
        assert_eq!(at(&Message::Vote(late)), Precheck::Check);
        assert_eq!(at(&Message::Vote(vote(&keys, 9, 1))), Precheck::Check);
        assert_eq!(at(&Message::Vote(vote(&keys, 3, 1))), Precheck::Skip);
        let mut outsider = vote(&keys, 5, 1);
        outsider.validator = ValidatorIndex(7);
        assert_eq!(at(&Message::Vote(outsider)), Precheck::Skip);
        let held = vote(&keys, 5, 2);
        assert_eq!(
            precheck(
                &Message::Vote(held.clone()),
                Height(5),
                |_| Some(&set),
                |v| *v == held
            ),
            Precheck::Skip
        );
        let request = Message::SyncRequest {
            from: Height(1),
            max_blocks: 1,
        };
        assert_eq!(at(&request), Precheck::Skip);
    }

    #[test]
    fn the_cache_verifies_once_and_a_forgery_stays_refused() {
        let (keys, set) = set();
        let mut cache = VerdictCache::new(set.clone(), "v");
        let good = vote(&keys, 1, 0);
        let mut forged = vote(&keys, 1, 1);
        forged.signature.0[10] ^= 1;
        cache.expect(&good);
        cache.expect(&forged);
        assert!(cache.check(Message::Vote(good.clone())).is_ok());
        assert!(cache.check(Message::Vote(forged.clone())).is_err());
        assert!(cache.check(Message::Vote(forged)).is_err());
        assert_eq!(cache.len(), 2);
        // Another chain id: the same signature does not verify.
        let mut other = VerdictCache::new(set, "w");
        assert!(other.check(Message::Vote(good)).is_err());
    }

    #[test]
    fn verdicts_computed_elsewhere_count_only_for_their_own_set_and_chain() {
        let (keys, set) = set();
        let good = vote(&keys, 1, 0);
        let mut forged = vote(&keys, 1, 1);
        forged.signature.0[10] ^= 1;
        let votes = [good.clone(), forged.clone()];
        let mut cache = VerdictCache::new(set.clone(), "v");
        assert_eq!(cache.known(&Message::Vote(good.clone())), None);
        cache.absorb(VoteVerdicts::compute(&votes, &set, "v".into()));
        assert_eq!(cache.known(&Message::Vote(good.clone())), Some(true));
        assert_eq!(cache.known(&Message::Vote(forged.clone())), Some(false));
        assert_eq!(cache.len(), 2);
        // Computed on another chain id, or with another set: dropped, not taken for verdicts.
        let mut fresh = VerdictCache::new(set.clone(), "v");
        fresh.absorb(VoteVerdicts::compute(&votes, &set, "w".into()));
        let (_, members) = insecure_dev_validators(&[100; 5]);
        let bigger = ValidatorSet::new(&members).unwrap();
        fresh.absorb(VoteVerdicts::compute(&votes, &bigger, "v".into()));
        assert!(fresh.is_empty());
        assert!(fresh.check(Message::Vote(good)).is_ok());
    }
}
