//! When the Byzantine validator sends what, and to whom: it reacts to the honest nodes'
//! messages (a new height and round, a proposal, a decision, a sync request) and, every tick,
//! floods what needs no trigger (far-future messages, unasked lies, garbage, replayed frames).
//!
//! It keeps only what the attacks need, for the last few heights: the blocks proposed, the
//! decisions seen, the slots it already equivocated or voted in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use timed_core::block::Block;
use timed_core::codec;
use timed_core::message::{Decision, MAX_SYNC_BLOCKS, Message, Proposal, Vote, VoteKind};
use timed_core::types::{Hash, Height, Round, ValidatorIndex};
use tokio::sync::{mpsc, watch};

use super::forge::{self, Signer, bogus_hash};
use super::link::{self, Chain, Shared};
use super::{Attacks, Stats};

const TICK: Duration = Duration::from_millis(50);
/// Far-future messages per peer per tick (each of another round or height).
const FAR_PER_TICK: u64 = 4;
/// Heights of blocks and decisions kept, below the highest seen.
const KEEP_HEIGHTS: u64 = 70;
/// Every this many ticks: a burst of sync requests (more than a node answers at once), and an
/// oversized frame.
const BURST_EVERY: u64 = 10;
const OVERSIZED_EVERY: u64 = 100;
const SYNC_BURST: usize = 24;

pub async fn run(
    shared: Arc<Shared>,
    mut inbound: mpsc::Receiver<(ValidatorIndex, Message)>,
    attacks: watch::Receiver<Attacks>,
) {
    let mut chain = shared.chain.subscribe();
    let Ok(chain) = chain.wait_for(|c| c.is_some()).await.map(|c| c.clone()) else {
        return;
    };
    let Some(chain) = chain else { return };
    let mut brain = Brain::new(shared, chain);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            m = inbound.recv() => {
                let Some((from, msg)) = m else { return };
                brain.on_message(from, msg, *attacks.borrow());
            }
            _ = tick.tick() => brain.on_tick(*attacks.borrow()),
        }
    }
}

struct Brain {
    shared: Arc<Shared>,
    chain: Arc<Chain>,
    signer: Signer,
    /// The highest (height, round) an honest node was seen in.
    tip: (Height, Round),
    /// Slots already reacted to, and those proposed in.
    slots: BTreeSet<(Height, Round)>,
    proposed: BTreeSet<(Height, Round)>,
    /// Support votes already signed.
    voted: BTreeSet<(Height, Round, VoteKind)>,
    blocks: BTreeMap<(Height, Round), Block>,
    decisions: BTreeMap<Height, Decision>,
    /// The frames `replay` sends, and the height they were built for.
    replayed: Option<(Height, [Bytes; 2])>,
    /// Makes each forged thing different.
    n: u64,
    ticks: u64,
}

impl Brain {
    fn new(shared: Arc<Shared>, chain: Arc<Chain>) -> Brain {
        let signer = Signer {
            key: shared.key.clone(),
            me: chain.me,
            chain_id: chain.genesis.chain_id.clone(),
        };
        Brain {
            shared,
            chain,
            signer,
            tip: (Height(1), Round::ZERO),
            slots: BTreeSet::new(),
            proposed: BTreeSet::new(),
            voted: BTreeSet::new(),
            blocks: BTreeMap::new(),
            decisions: BTreeMap::new(),
            replayed: None,
            n: 0,
            ticks: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn count(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn peers(&self) -> Vec<ValidatorIndex> {
        self.shared.connected()
    }

    fn broadcast(&self, msg: &Message) {
        for p in self.peers() {
            self.shared.send(p, msg);
        }
    }

    /// The hash of the last decided block seen, as the parent of made-up blocks.
    fn parent(&self) -> Hash {
        self.decisions
            .last_key_value()
            .map_or(Hash::ZERO, |(_, d)| d.block.hash())
    }

    fn on_message(&mut self, from: ValidatorIndex, msg: Message, a: Attacks) {
        match msg {
            Message::Vote(v) if v.validator != self.chain.me => {
                self.seen(v.height, v.round, a);
                if a.support {
                    self.support(&v);
                }
            }
            Message::Proposal(p) if p.proposer != self.chain.me => {
                self.blocks.insert((p.height, p.round), p.block.clone());
                self.seen(p.height, p.round, a);
                if a.swap_bodies {
                    self.swap_proposal(from, p);
                }
            }
            Message::Decision(d) => {
                // The last real decision greets every new connection: a claim to be ahead,
                // backed by a certificate, that puts this validator first among those a node
                // catching up may ask.
                let greeting = a
                    .lie_in_sync
                    .then(|| link::frame(&codec::encode_message(&Message::Decision(d.clone()))));
                self.shared.greet_with(greeting);
                if a.swap_bodies {
                    let n = self.next();
                    let mut forged = d.clone();
                    forged.block = self.signer.swap_body(&d.block, n);
                    self.broadcast(&Message::Decision(forged));
                    Self::count(&self.stats().swapped, 1);
                }
                self.keep_decision(d);
            }
            Message::SyncRequest { from: start, .. } => {
                Self::count(&self.stats().sync_asked, 1);
                if a.lie_in_sync {
                    self.lie(from, start);
                }
            }
            Message::SyncResponse { blocks } => {
                for d in blocks {
                    self.keep_decision(d);
                }
            }
            Message::BlockRequest { height, hash } if a.swap_bodies => {
                let found = self.blocks.values().find(|b| b.hash() == hash).cloned();
                if let Some(block) = found.filter(|b| b.height() == height) {
                    let n = self.next();
                    let block = self.signer.swap_body(&block, n);
                    self.shared.send(from, &Message::BlockResponse { block });
                    Self::count(&self.stats().swapped, 1);
                }
            }
            _ => {}
        }
    }

    fn keep_decision(&mut self, d: Decision) {
        let h = d.block.height();
        self.decisions.insert(h, d);
        while self.decisions.len() as u64 > KEEP_HEIGHTS {
            self.decisions.pop_first();
        }
    }

    /// An honest node is at `height`, `round`: the first time, act on it.
    fn seen(&mut self, height: Height, round: Round, a: Attacks) {
        if (height, round) > self.tip {
            self.tip = (height, round);
            let floor = Height(height.0.saturating_sub(KEEP_HEIGHTS));
            self.slots.retain(|(h, _)| *h >= floor);
            self.proposed.retain(|(h, _)| *h >= floor);
            self.voted.retain(|(h, _, _)| *h >= floor);
            self.blocks.retain(|(h, _), _| *h >= floor);
        }
        if !self.slots.insert((height, round)) {
            return;
        }
        // Its own turns in this round, the next, and the next height's first: honest nodes
        // entering them wait for its proposal, and send nothing before.
        for (h, r) in [
            (height, round),
            (height, Round(round.0 + 1)),
            (height.next(), Round::ZERO),
        ] {
            if self.chain.set.proposer(h, r) == self.chain.me && self.proposed.insert((h, r)) {
                self.propose(h, r, a.equivocate);
            }
        }
        if a.equivocate {
            self.equivocate(height, round);
        }
    }

    /// Peer `i` of `n` gets the first of two versions, the second, or both.
    fn split(&self, i: usize, n: usize, slot: (Height, Round)) -> (bool, bool) {
        let both = (slot.0.0 + u64::from(slot.1.0)) as usize % n.max(1) == i;
        let first = (i + slot.1.0 as usize).is_multiple_of(2);
        (both || first, both || !first)
    }

    fn send_split(&self, slot: (Height, Round), one: &Message, other: &Message) {
        let peers = self.peers();
        for (i, p) in peers.iter().enumerate() {
            let (a, b) = self.split(i, peers.len(), slot);
            if a {
                self.shared.send(*p, one);
            }
            if b {
                self.shared.send(*p, other);
            }
        }
    }

    /// A block no one accepts; two different ones, split among the peers, when equivocating.
    fn propose(&mut self, height: Height, round: Round, twice: bool) {
        let parent = self.parent();
        let (x, y) = (self.next(), self.next());
        let one = self.signer.bogus_proposal(height, round, parent, x);
        if twice {
            let other = self.signer.bogus_proposal(height, round, parent, y);
            self.send_split((height, round), &one, &other);
            Self::count(&self.stats().double_proposals, 1);
        } else {
            self.broadcast(&one);
        }
    }

    fn equivocate(&mut self, height: Height, round: Round) {
        let n = self.next();
        let real = self.blocks.get(&(height, round)).map(Block::hash);
        let a = Some(real.unwrap_or_else(|| bogus_hash("a", n)));
        let b = Some(bogus_hash("b", n));
        for (kind, other) in [(VoteKind::Prepare, b), (VoteKind::Precommit, None)] {
            let one = self.signer.vote_msg(height, round, kind, a);
            let two = self.signer.vote_msg(height, round, kind, other);
            self.send_split((height, round), &one, &two);
        }
        Self::count(&self.stats().equivocations, 1);
    }

    /// Backs an honest vote: the same value, prepared and precommitted, once per slot.
    fn support(&mut self, v: &Vote) {
        for kind in [VoteKind::Prepare, VoteKind::Precommit] {
            if self.voted.insert((v.height, v.round, kind)) {
                let msg = self.signer.vote_msg(v.height, v.round, kind, v.block);
                self.broadcast(&msg);
                Self::count(&self.stats().supported, 1);
            }
        }
    }

    fn swap_proposal(&mut self, from: ValidatorIndex, p: Proposal) {
        let n = self.next();
        let block = self.signer.swap_body(&p.block, n);
        let forged = Message::Proposal(Proposal {
            block: block.clone(),
            ..p
        });
        let response = Message::BlockResponse { block };
        for peer in self.peers().into_iter().filter(|x| *x != from) {
            self.shared.send(peer, &forged);
            self.shared.send(peer, &response);
        }
        Self::count(&self.stats().swapped, 2);
    }

    /// An answer to `to`'s sync request from `start`, never the truth: in turn garbage, the real
    /// blocks with swapped bodies or broken certificates, made-up blocks with forged
    /// certificates, an empty answer, or nothing.
    fn lie(&mut self, to: ValidatorIndex, start: Height) {
        let n = self.next();
        let blocks: Vec<Decision> = match n % 5 {
            0 => {
                self.shared.send_raw(to, forge::garbage(n));
                return Self::count(&self.stats().sync_lies, 1);
            }
            1 => self
                .decisions
                .range(start..)
                .take(MAX_SYNC_BLOCKS as usize)
                .map(|(_, d)| forge::lying_copy(&self.signer, d, n))
                .collect(),
            2 => (0..4)
                .map(|k| self.forged_decision(Height(start.0 + k), n + k))
                .collect(),
            3 => Vec::new(),
            _ => return Self::count(&self.stats().sync_lies, 1),
        };
        self.shared.send(to, &Message::SyncResponse { blocks });
        Self::count(&self.stats().sync_lies, 1);
    }

    fn forged_decision(&self, height: Height, salt: u64) -> Decision {
        let parent = self.parent();
        let validators = self.chain.set.len() as u16;
        self.signer
            .forged_decision(height, parent, salt, validators)
    }

    fn on_tick(&mut self, a: Attacks) {
        self.ticks += 1;
        if a.far_future {
            self.far_future(a.forge_certificates);
        }
        if a.lie_in_sync {
            self.unasked_lies(a.support, a.forge_certificates);
        }
        if a.garbage {
            self.garbage();
        }
        if a.replay_per_tick > 0 {
            self.replay(a.replay_per_tick, a.forge_certificates);
        }
        if a.forge_signatures {
            self.forge_signatures();
        }
        if a.flood_per_tick > 0 {
            self.flood(a.flood_per_tick);
        }
    }

    /// A prepare and a proposal at the tip, signed by this validator, their signatures broken.
    fn forge_signatures(&mut self) {
        let (h, r) = self.tip;
        let n = self.next();
        let parent = self.parent();
        let s = &self.signer;
        let vote = s.vote_msg(h, r, VoteKind::Prepare, Some(bogus_hash("forged", n)));
        let proposal = s.bogus_proposal(h, r, parent, n);
        for msg in [vote, proposal] {
            self.broadcast(&Signer::flip_signature(msg));
        }
        Self::count(&self.stats().forged, 2);
    }

    /// `per_tick` distinct far-round prepares, validly signed, to every peer.
    fn flood(&mut self, per_tick: u32) {
        let (h, r) = self.tip;
        for _ in 0..per_tick {
            let k = self.next();
            let round = Round(r.0.saturating_add(100).saturating_add(k as u32));
            let vote = self.signer.vote_msg(h, round, VoteKind::Prepare, None);
            self.broadcast(&vote);
        }
        Self::count(&self.stats().flooded, u64::from(per_tick));
    }

    /// The same two frames again and again, built once per height: a signed prepare far ahead
    /// (a height no node buffers, so each copy is checked again) and a decision of the tip
    /// whose certificate repeats this validator's real signature for every validator (each copy
    /// costs a full batch verification; only if `forge`). Sending them costs the adversary no
    /// signature.
    fn replay(&mut self, per_tick: u32, forge: bool) {
        let (h, _) = self.tip;
        if self.replayed.as_ref().is_none_or(|(at, _)| *at != h) {
            let vote = self.signer.vote_msg(
                Height(h.0 + 1_000_000),
                Round::ZERO,
                VoteKind::Prepare,
                None,
            );
            let mut d = self.forged_decision(h, h.0);
            let mine = self
                .signer
                .vote(h, Round::ZERO, VoteKind::Precommit, Some(d.block.hash()));
            for s in &mut d.certificate.signatures {
                s.signature = mine.signature;
            }
            let frames =
                [vote, Message::Decision(d)].map(|m| link::frame(&codec::encode_message(&m)));
            self.replayed = Some((h, frames));
        }
        let Some((_, frames)) = &self.replayed else {
            return;
        };
        // The decision's copied signatures are forged: only if forging.
        let frames = &frames[..if forge { 2 } else { 1 }];
        for p in self.peers() {
            for _ in 0..per_tick {
                for f in frames {
                    self.shared.send_unframed(p, f.clone());
                }
            }
        }
        Self::count(
            &self.stats().replays,
            frames.len() as u64 * u64::from(per_tick),
        );
    }

    fn far_future(&mut self, forge: bool) {
        let (h, r) = self.tip;
        let parent = self.parent();
        let mut sent = 0;
        for _ in 0..FAR_PER_TICK {
            let k = self.next();
            let s = &self.signer;
            let mut stranger = s.vote(h, r, VoteKind::Prepare, None);
            stranger.validator = ValidatorIndex(900 + (k % 100) as u16);
            let far_h = Height(h.0 + 1_000_000 + k);
            let msgs = [
                s.vote_msg(
                    h,
                    Round(r.0 + 65 + (k % 900) as u32),
                    VoteKind::Prepare,
                    None,
                ),
                s.vote_msg(
                    h,
                    Round(u32::MAX - (k % 1000) as u32),
                    VoteKind::Precommit,
                    Some(bogus_hash("far", k)),
                ),
                s.vote_msg(far_h, Round::ZERO, VoteKind::Prepare, None),
                s.vote_msg(
                    Height(u64::MAX - k),
                    Round(u32::MAX),
                    VoteKind::Precommit,
                    None,
                ),
                s.bogus_proposal(far_h, Round::ZERO, parent, k),
                s.bogus_proposal(h, Round(r.0 + 1000 + k as u32 % 1000), parent, k),
                Message::Vote(stranger),
                Message::Decision(self.forged_decision(far_h, k)),
            ];
            // The last, a forged certificate, only if forging.
            let msgs = &msgs[..msgs.len() - usize::from(!forge)];
            for msg in msgs {
                self.broadcast(msg);
            }
            sent += msgs.len() as u64;
        }
        Self::count(&self.stats().far, sent);
    }

    /// Forged blocks at the tip, offered unasked (if forging); a claim to have finalized the
    /// tip (unless supporting: a nil prepare of the next height would then be a vote of its own,
    /// which its support votes there would contradict); now and then a burst of sync requests.
    fn unasked_lies(&mut self, supporting: bool, forge: bool) {
        let (h, _) = self.tip;
        let n = self.next();
        if forge {
            let blocks = vec![self.forged_decision(h, n)];
            self.broadcast(&Message::SyncResponse { blocks });
            Self::count(&self.stats().sync_lies, 1);
        }
        if !supporting && self.ticks.is_multiple_of(4) {
            let claim = self
                .signer
                .vote_msg(h.next(), Round::ZERO, VoteKind::Prepare, None);
            self.broadcast(&claim);
        }
        if self.ticks.is_multiple_of(BURST_EVERY) {
            let ask = Message::SyncRequest {
                from: Height(1),
                max_blocks: u32::MAX,
            };
            for p in self.peers() {
                for _ in 0..SYNC_BURST {
                    self.shared.send(p, &ask);
                }
                Self::count(&self.stats().sync_requests, SYNC_BURST as u64);
            }
        }
    }

    fn garbage(&mut self) {
        let n = self.next();
        for p in self.peers() {
            self.shared.send_raw(p, forge::garbage(n));
        }
        Self::count(&self.stats().garbage, 1);
        if self.ticks.is_multiple_of(OVERSIZED_EVERY) {
            // A length prefix of 4 GiB: the peer drops the connection, and we dial again.
            if let Some(p) = self.peers().first() {
                self.shared.send_unframed(*p, vec![0xff; 8]);
                Self::count(&self.stats().garbage, 1);
            }
        }
    }
}
