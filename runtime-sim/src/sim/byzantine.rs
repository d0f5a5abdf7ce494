//! The plumbing of the Byzantine behaviours: what each does to the messages its honest core
//! sends or it receives (forged proposals, double votes, garbage, swapped bodies, stripped polkas,
//! replays, torsion signatures, far claims, pushed rounds, sync lies). The forgeries themselves
//! are in `crate::adversary`.

use std::rc::Rc;

use rand::RngExt;
use timed_core::block::Block;
use timed_core::codec;
use timed_core::message::{Decision, Message, Proposal, Vote};
use timed_core::tx::Transfer;
use timed_core::types::{Amount, Hash, Height, Round, TimestampMs, ValidatorIndex};

use crate::adversary;

use crate::scenario::Behaviour;

use super::{CHAIN_ID, Simulation, Wire};

/// Messages a replayer remembers (the oldest are forgotten first).
pub(super) const REPLAY_MEMORY: usize = 256;

/// Which proposal an invalid proposer forged: (node, height, round, valid round).
pub(super) type InvalidKey = (usize, Height, Round, Option<Round>);

impl Simulation {
    /// Counts a round pusher's vote reaching an honest node at its height, far ahead of its round.
    pub(super) fn note_pushed(&mut self, from: usize, to: usize, msg: &Message) {
        if self.nodes[from].behaviour != Behaviour::RoundPusher
            || self.nodes[to].behaviour != Behaviour::Honest
        {
            return;
        }
        if let (Message::Vote(v), Some(core)) = (msg, self.nodes[to].core.as_ref())
            && v.height == core.height()
            && v.round.0 > core.round().0.saturating_add(1)
        {
            self.stats.pushed_votes_delivered += 1;
        }
    }

    /// Whether node `i` does something with the messages it receives besides handing them to
    /// its core.
    pub(super) fn relays(&self, i: usize) -> bool {
        matches!(
            self.nodes[i].behaviour,
            Behaviour::BodySwapper | Behaviour::ProofStripper | Behaviour::Replayer
        )
    }

    /// What an adversary does with a message it received from node `from`: a body swapper
    /// forwards others' proposals and decisions with another body, a proof stripper others'
    /// re-proposals without a valid polka, a replayer remembers it.
    pub(super) fn relay(&mut self, a: usize, from: usize, msg: &Rc<Wire>) {
        let me = self.nodes[a].validator;
        let peers: Vec<usize> = (0..self.nodes.len())
            .filter(|j| *j != from && self.nodes[*j].validator != me)
            .collect();
        match self.nodes[a].behaviour {
            Behaviour::Replayer => self.remember(a, msg),
            Behaviour::BodySwapper => {
                let forged = match &msg.msg {
                    Message::Proposal(p) if p.proposer.as_usize() != me => {
                        let mut p = p.clone();
                        p.block = adversary::swap_body(&p.block, &self.keys[me], &mut self.rng);
                        Message::Proposal(p)
                    }
                    Message::Decision(d) => {
                        let mut d = d.clone();
                        d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                        Message::Decision(d)
                    }
                    _ => return,
                };
                let forged = Wire::new(forged);
                for j in peers {
                    if self.rng.random_bool(0.5) {
                        self.stats.forged += 1;
                        self.send_fast(a, j, forged.clone());
                    }
                }
            }
            Behaviour::ProofStripper => {
                let Message::Proposal(p) = &msg.msg else {
                    return;
                };
                if p.valid_round.is_none() || p.proposer.as_usize() == me {
                    return;
                }
                let stripped =
                    Wire::new(Message::Proposal(adversary::strip_polka(p, &mut self.rng)));
                for j in peers {
                    self.stats.forged += 1;
                    self.send_fast(a, j, stripped.clone());
                }
            }
            _ => {}
        }
    }

    /// A replayer keeps the last `REPLAY_MEMORY` messages worth replaying.
    pub(super) fn remember(&mut self, i: usize, msg: &Rc<Wire>) {
        if adversary::replayable(msg) {
            let memory = &mut self.nodes[i].memory;
            if memory.len() >= REPLAY_MEMORY {
                memory.pop_front();
            }
            memory.push_back(msg.clone());
        }
    }

    /// A torsion signer's messages leave with its signatures made again with a torsion point.
    pub(super) fn disguise(&mut self, i: usize, msg: Message) -> Rc<Wire> {
        if self.nodes[i].behaviour != Behaviour::TorsionSigner {
            return Wire::new(msg);
        }
        let v = self.nodes[i].validator;
        match adversary::torsion_rewrite(&msg, &self.keys[v], ValidatorIndex(v as u16)) {
            Some(m) => {
                self.stats.forged += 1;
                Wire::new(m)
            }
            None => Wire::new(msg),
        }
    }

    /// After a broadcast: a sync liar claims a far height to some peers; a replayer re-sends an
    /// old message to a random peer now and then (and remembers its own); a round pusher, at its
    /// first vote of a round, sends every peer its votes for far rounds.
    pub(super) fn adversary_extras(&mut self, i: usize, msg: &Rc<Wire>) {
        let me = self.nodes[i].validator;
        match self.nodes[i].behaviour {
            Behaviour::SyncLiar => {
                let Message::Vote(v) = &msg.msg else { return };
                if v.validator.as_usize() != me {
                    return;
                }
                for j in 0..self.nodes.len() {
                    if self.nodes[j].validator != me && self.rng.random_bool(0.5) {
                        let ahead = self.rng.random_range(1_000..1_000_000u64);
                        let claim =
                            adversary::far_claim(&self.keys[me], v.validator, v.height, ahead);
                        self.stats.forged += 1;
                        self.send(i, j, Wire::new(claim));
                    }
                }
            }
            Behaviour::RoundPusher => {
                let Message::Vote(v) = &msg.msg else { return };
                let at = (v.height, v.round);
                if v.validator.as_usize() != me || self.nodes[i].pushed_at >= Some(at) {
                    return;
                }
                self.nodes[i].pushed_at = Some(at);
                let key = &self.keys[me];
                let set = self.checker.set_at(v.height);
                let votes = adversary::pushed_votes(key, v.validator, set, v.height, v.round);
                for vote in votes {
                    let vote = Wire::new(vote);
                    for j in 0..self.nodes.len() {
                        if self.nodes[j].validator != me {
                            self.stats.forged += 1;
                            self.send(i, j, vote.clone());
                        }
                    }
                }
            }
            Behaviour::Replayer => {
                self.remember(i, msg);
                let len = self.nodes[i].memory.len();
                if len == 0 || !self.rng.random_bool(0.3) {
                    return;
                }
                let old = self.nodes[i].memory[self.rng.random_range(0..len)].clone();
                let mut j = self.rng.random_range(0..self.nodes.len());
                if self.nodes[j].validator == me {
                    j = (j + 1) % self.nodes.len();
                }
                if self.nodes[j].validator != me {
                    self.stats.forged += 1;
                    self.send(i, j, old);
                }
            }
            _ => {}
        }
    }

    /// Node `i` answers node `j`'s sync request with `blocks`, through its behaviour: a sync
    /// liar answers nothing, an empty answer, blocks whose certificates are broken, or bytes; a
    /// body swapper the blocks with other bodies.
    pub(super) fn serve_sync(
        &mut self,
        i: usize,
        j: usize,
        from: Height,
        mut blocks: Vec<Decision>,
    ) {
        let me = self.nodes[i].validator;
        match self.nodes[i].behaviour {
            Behaviour::SyncLiar => {
                self.stats.forged += 1;
                match self.rng.random_range(0..4u8) {
                    0 => return,
                    1 => blocks.clear(),
                    2 => {
                        for d in &mut blocks {
                            d.certificate.signatures.truncate(1);
                            d.certificate.block_hash = adversary::bogus_hash(b"cert", from);
                        }
                        if blocks.is_empty() {
                            return;
                        }
                    }
                    _ => {
                        let len = self.rng.random_range(1..128usize);
                        let mut bytes = vec![0u8; len];
                        self.rng.fill(&mut bytes[..]);
                        bytes[0] = codec::WIRE_VERSION;
                        if self.network.connected(i, j) {
                            self.push_garbage(i, j, bytes);
                        }
                        return;
                    }
                }
            }
            Behaviour::BodySwapper => {
                for d in &mut blocks {
                    d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                }
                self.stats.forged += blocks.len() as u64;
            }
            _ => {}
        }
        let msg = Wire::new(Message::SyncResponse { blocks });
        self.send_as(i, j, &msg);
    }

    /// Sends one message from `i` to `j`, through `i`'s Byzantine behaviour and the network.
    pub(super) fn send_as(&mut self, i: usize, j: usize, msg: &Rc<Wire>) {
        match self.nodes[i].behaviour {
            Behaviour::Honest
            | Behaviour::GarbageSender
            | Behaviour::Amnesia
            | Behaviour::SyncLiar
            | Behaviour::Replayer
            | Behaviour::TorsionSigner
            | Behaviour::Twins
            | Behaviour::RoundPusher => self.send(i, j, msg.clone()),
            Behaviour::BodySwapper | Behaviour::ProofStripper => {
                let me = self.nodes[i].validator;
                let forged = match (&msg.msg, self.nodes[i].behaviour) {
                    (Message::Proposal(p), Behaviour::BodySwapper)
                        if p.proposer.as_usize() == me =>
                    {
                        let mut p = p.clone();
                        p.block = adversary::swap_body(&p.block, &self.keys[me], &mut self.rng);
                        Some(Message::Proposal(p))
                    }
                    (Message::Decision(d), Behaviour::BodySwapper) => {
                        let mut d = d.clone();
                        d.block = adversary::swap_body(&d.block, &self.keys[me], &mut self.rng);
                        Some(Message::Decision(d))
                    }
                    (Message::Proposal(p), Behaviour::ProofStripper)
                        if p.proposer.as_usize() == me && p.valid_round.is_some() =>
                    {
                        Some(Message::Proposal(adversary::strip_polka(p, &mut self.rng)))
                    }
                    _ => None,
                };
                match forged {
                    // The forged copy first; the real one a mean link delay later.
                    Some(f) if self.second_half(i, j) => {
                        self.stats.forged += 1;
                        self.send(i, j, Wire::new(f));
                        let later = self.network.link(i, j).latency.mean_ms().round() as u64 + 1;
                        self.send_after(i, j, msg.clone(), later);
                    }
                    _ => self.send(i, j, msg.clone()),
                }
            }
            Behaviour::InvalidProposer => match &msg.msg {
                Message::Proposal(p) if p.proposer.as_usize() == i => {
                    let bad = self.invalid_proposal(i, p);
                    self.send(i, j, bad);
                }
                _ => self.send(i, j, msg.clone()),
            },
            Behaviour::Silent => {}
            Behaviour::EquivocatingProposer => {
                if let Message::Proposal(p) = &msg.msg
                    && p.proposer.as_usize() == i
                    && self.second_half(i, j)
                {
                    let forged = self.forge_proposal(i, p);
                    self.send(i, j, Wire::new(Message::Proposal(forged)));
                }
                self.send(i, j, msg.clone());
            }
            Behaviour::DoubleVoter => {
                if let Message::Vote(v) = &msg.msg
                    && v.validator.as_usize() == i
                    && self.second_half(i, j)
                {
                    let other = match v.block {
                        Some(_) => None,
                        None => Some(Hash::of(&[b"timed-sim/forged", &v.height.0.to_be_bytes()])),
                    };
                    let forged = Vote::sign(
                        &self.keys[i],
                        CHAIN_ID,
                        v.height,
                        v.round,
                        v.kind,
                        other,
                        v.validator,
                    );
                    self.send(i, j, Wire::new(Message::Vote(forged)));
                }
                self.send(i, j, msg.clone());
            }
        }
    }

    /// The peers of `i` in the upper half of the index order get the forged messages first.
    pub(super) fn second_half(&self, i: usize, j: usize) -> bool {
        let pos = if j > i { j - 1 } else { j };
        pos >= (self.nodes.len() - 1) / 2
    }

    /// The same block one millisecond later: a different hash, still valid, properly signed.
    pub(super) fn forge_proposal(&self, i: usize, p: &Proposal) -> Proposal {
        let mut block: Block = p.block.clone();
        block.header.timestamp = TimestampMs(block.header.timestamp.0 + 1);
        Proposal::sign(
            &self.keys[i],
            CHAIN_ID,
            p.round,
            p.valid_round,
            block,
            p.proposer,
        )
    }

    /// `p` with its block broken in one way (chosen by height and round), signed again: what an
    /// invalid proposer sends instead of its proposal. The same for every peer.
    pub(super) fn invalid_proposal(&mut self, i: usize, p: &Proposal) -> Rc<Wire> {
        let key = (i, p.height, p.round, p.valid_round);
        if let Some((k, m)) = &self.invalid_cache
            && *k == key
        {
            return m.clone();
        }
        let n = self.set.len();
        let core = self.nodes[i].core.as_ref();
        let parent_time = core
            .and_then(|c| c.last_decision())
            .map_or(self.genesis.genesis_time_ms, |d| d.block.header.timestamp);
        let ledger = core
            .filter(|c| c.height() == p.height)
            .map(|c| c.ledger().clone());
        let mut block: Block = p.block.clone();
        let tag = |what: &[u8]| Hash::of(&[b"timed-sim/invalid", what, &p.height.0.to_be_bytes()]);
        match (p.height.0 + u64::from(p.round.0)) % 7 {
            0 => {
                // Valid in every other respect: the reward goes where the header says, to the
                // next member of the height's set (a jailed validator has left it; the
                // genesis set's next id was once one, and the reward split refused it).
                let current = ledger
                    .as_ref()
                    .and_then(|l| l.staking())
                    .map(|s| s.current().clone());
                let set: &timed_core::validators::ValidatorSet =
                    current.as_deref().unwrap_or(&self.set);
                let ids: Vec<ValidatorIndex> = set.iter().map(|(id, _)| id).collect();
                let other = ids
                    .iter()
                    .copied()
                    .find(|id| *id > p.proposer)
                    .or(ids.first().copied())
                    .unwrap_or(p.proposer);
                block.header.proposer = other;
                if let Some(mut l) = ledger
                    && l.apply_block(CHAIN_ID, p.height, other, set, &block.txs, &block.evidence)
                        .is_ok()
                {
                    block.header.state_root = l.state_root();
                }
            }
            1 => block.header.timestamp = parent_time,
            2 => block.header.state_root = tag(b"state"),
            3 => block.header.tx_root = tag(b"txs"),
            4 => block.header.parent_hash = tag(b"parent"),
            5 => {
                let me = &self.keys[i];
                let nonce = ledger.map_or(0, |l| l.account(&me.public_key()).nonce);
                let tx = Transfer {
                    from: me.public_key(),
                    to: self.keys[(i + 1) % n].public_key(),
                    amount: Amount(u64::MAX / 2),
                    fee: Amount(0),
                    nonce,
                    op: Default::default(),
                }
                .sign(me, CHAIN_ID);
                block.txs.push(tx);
                block.header.tx_root = timed_core::block::tx_root(&block.txs);
            }
            _ => block.header.timestamp = TimestampMs(block.header.timestamp.0 + 3_600_000),
        }
        let mut forged = Proposal::sign(
            &self.keys[i],
            CHAIN_ID,
            p.round,
            p.valid_round,
            block,
            p.proposer,
        );
        forged.polka = p.polka.clone();
        let m = Wire::new(Message::Proposal(forged));
        self.invalid_cache = Some((key, m.clone()));
        m
    }

    /// A garbage sender adds, to one random peer per broadcast, one of: random bytes, its message
    /// with a broken signature, or a properly signed vote for a far-future height or round.
    pub(super) fn garbage(&mut self, i: usize, msg: &Rc<Wire>) {
        if self.nodes[i].behaviour != Behaviour::GarbageSender || self.nodes.len() < 2 {
            return;
        }
        let mut j = self.rng.random_range(0..self.nodes.len() - 1);
        if j >= i {
            j += 1;
        }
        self.stats.garbage_sent += 1;
        let me = ValidatorIndex(i as u16);
        match self.rng.random_range(0..4u8) {
            0 => {
                let len = self.rng.random_range(0..256usize);
                let mut bytes = vec![0u8; len];
                self.rng.fill(&mut bytes[..]);
                // Keep the version byte right half of the time so the CBOR parser is reached.
                if self.rng.random_bool(0.5) && !bytes.is_empty() {
                    bytes[0] = codec::WIRE_VERSION;
                }
                self.push_garbage(i, j, bytes);
            }
            1 => {
                let mut bad = msg.msg.clone();
                let bit = self.rng.random_range(0..64usize);
                match &mut bad {
                    Message::Vote(v) => v.signature.0[bit] ^= 1,
                    Message::Proposal(p) => p.signature.0[bit] ^= 1,
                    _ => return,
                }
                self.send(i, j, Wire::new(bad));
            }
            k => {
                let (height, round) = match &msg.msg {
                    Message::Vote(v) => (v.height, v.round),
                    Message::Proposal(p) => (p.height, p.round),
                    _ => return,
                };
                let (height, round) = if k == 2 {
                    (Height(height.0 + 1_000_000), round)
                } else {
                    (height, Round(round.0.saturating_add(1_000_000)))
                };
                let vote = Vote::sign(
                    &self.keys[i],
                    CHAIN_ID,
                    height,
                    round,
                    timed_core::message::VoteKind::Prepare,
                    None,
                    me,
                );
                self.send(i, j, Wire::new(Message::Vote(vote)));
            }
        }
    }
}
