//! Rebuilding a node after a stop or a crash: from its last finalized block, the ledger after it,
//! its records of the next height and its double-sign guard file (`Restore`), and applying that
//! guard when the node reaches the guard's height.

use std::sync::Arc;

use super::Node;
use super::height::slot_of;
use super::{HeightState, NodeConfig, NodeError};
use crate::consensus::io::{PersistRecord, SignGuard, SignStep};
use crate::crypto::Keypair;
use crate::ledger::Ledger;
use crate::message::{Decision, Message, Vote, VoteKind};
use crate::validators::Genesis;

/// What a node is rebuilt from after a crash: its last finalized block, the ledger after it, and
/// the records it asked to persist since.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    /// The last finalized block and its certificate (the longest stored); `None` before block 1.
    /// Its chain id must be the genesis's (`NodeError::WrongChain`).
    pub last: Option<Decision>,
    /// The ledger after `last`; its state root must be `last`'s (`NodeError::LedgerMismatch`).
    /// `None` stands for the genesis ledger. Ignored when `last` is `None`.
    pub ledger: Option<Ledger>,
    /// The `PersistRecord`s made durable since `last`, in any order; those of other heights than
    /// `last + 1` are ignored. A record whose block does not match its header is skipped.
    pub records: Vec<PersistRecord>,
    /// The double-sign guard file: the last point this validator signed and its last lock.
    pub guard: Option<SignGuard>,
}

impl Node {
    /// A node rebuilt after a crash from its last finalized block, the ledger after it, and its
    /// persisted records. It re-sends what it signed in the current height and never signs a
    /// different message for a slot it already signed.
    pub fn restore(
        genesis: &Genesis,
        key: Keypair,
        config: NodeConfig,
        restore: Restore,
    ) -> Result<Node, NodeError> {
        // Checked before anything is built from it. The genesis ledger is built only when
        // there is nothing after it (a million genesis balances cost seconds, for a ledger a
        // restored one would replace).
        let set = Arc::new(genesis.validate()?);
        let ledger = match (&restore.last, restore.ledger) {
            (Some(_), Some(ledger)) => ledger,
            _ => Ledger::from_genesis_set(genesis, Some(&set)),
        };
        let mut node = Node::with_parts(genesis, &set, genesis.hash(), key, config, ledger);
        if let Some(last) = restore.last {
            if last.block.header.chain_id != node.chain_id {
                return Err(NodeError::WrongChain {
                    expected: node.chain_id.clone(),
                    got: last.block.header.chain_id.clone(),
                });
            }
            if node.ledger.state_root() != last.block.header.state_root {
                return Err(NodeError::LedgerMismatch {
                    ledger: node.ledger.state_root(),
                    block: last.block.header.state_root,
                });
            }
            // The set of the next height is the ledger's; the one before is not kept (a late
            // precommit of the last block, checked against it, is merely refused).
            node.move_sets_on();
            node.prev_set = node.set.clone();
            node.cur = HeightState::new(last.block.height().next(), &node.set);
            node.parent_hash = last.block.hash();
            node.parent_time = last.block.header.timestamp;
            node.last_decision = Some(last);
        }
        // Records lost: a guard beyond every record (or no guard at all) means this node may
        // have signed things it no longer remembers.
        let last_record = restore.records.iter().filter_map(|r| r.sign_point()).max();
        let guard_point = restore.guard.map(|g| g.last);
        let lost = restore.guard.is_none() || guard_point > last_record;
        node.guard.needs_watch = node.guard.check_ms > 0 && lost;
        node.guard.floor = guard_point;
        for record in restore.records {
            if record.height() != node.cur.height {
                continue;
            }
            match record {
                PersistRecord::Signed { msg, .. } => node.restore_signed(msg),
                PersistRecord::Locked {
                    round,
                    block,
                    polka,
                    ..
                } => {
                    if node.cur.locked.is_none_or(|(r, _)| round > r) && node.body_matches(&block) {
                        // It locked in `round`, so it had reached it, whether or not the
                        // precommit that followed the lock was logged (a log cut between the
                        // two): lockedRound never passes the round (Algorithm 1).
                        node.cur.round = node.cur.round.max(round);
                        let hash = block.hash();
                        node.cur.locked = Some((round, hash));
                        node.cur.valid = Some((round, hash));
                        node.cur.blocks.insert(hash, block);
                        node.cur.restored_polka = Some(polka);
                    }
                }
                PersistRecord::Prepared { block, .. } => {
                    if node.body_matches(&block) {
                        let hash = block.hash();
                        node.cur.blocks.entry(hash).or_insert(block);
                        node.cur.persisted_blocks.insert(hash);
                    }
                }
            }
        }
        node.guard.had_guard = restore.guard.is_some();
        node.guard.restored = restore.guard;
        node.guard.lost_records = lost;
        node.apply_guard();
        node.out.clear();
        Ok(node)
    }

    /// At the guard's height, the guard says what records may have been lost. Its lock stands
    /// (L22/L28 need its round and block hash, not the block) unless the records hold a newer
    /// one: also when the records look whole, for they may be those of a later life that
    /// restarted without the earlier one's (swarm seed 77: wiped, caught up, crashed again).
    /// And when records were lost, its votes up to the guard's round are gone and cannot be
    /// signed again, while peers may be waiting for them: it starts in the round after the
    /// guard's, where its votes pull the others along when they need its stake (L55), and
    /// `Timer::RoundEnd` moves them when they do not.
    pub(super) fn apply_guard(&mut self) {
        let Some(guard) = self.guard.restored else {
            return;
        };
        if guard.last.height < self.cur.height {
            self.guard.restored = None;
            return;
        }
        if let Some(lock) = guard.lock
            && lock.height == self.cur.height
            && self.cur.locked.is_none_or(|(r, _)| lock.round > r)
        {
            self.cur.locked = Some((lock.round, lock.block));
            self.cur.valid = None;
            self.cur.restored_polka = None;
        }
        // The guard's lock is the precommit this node signed for the lock's block in the lock's
        // round (`SignGuard::after`), so signing it again gives the very same bytes (Ed25519
        // signing is deterministic), not a second vote. Resent, it tells the others this node
        // is locked there, and they answer with the prepares of that polka they hold
        // (`echo_polka`). Where every quorum needs this node's stake, the polka it locked on
        // included its own prepare too, which it signs again for the same reason: without it
        // nobody could prove that polka again, and its lock would hold every later quorum off
        // (swarm seed 3834).
        if let (Some(lock), Some(me)) = (guard.lock, self.me)
            && lock.height == self.cur.height
            && self.cur.locked == Some((lock.round, lock.block))
        {
            let others = self.set.total_stake().0 - self.set.stake_of(me).0;
            let needed = !self.set.is_quorum(crate::types::Stake(others));
            for (kind, step) in [
                (VoteKind::Prepare, SignStep::Prepare),
                (VoteKind::Precommit, SignStep::Precommit),
            ] {
                if (kind == VoteKind::Precommit || needed)
                    && !self.cur.signed.contains_key(&(lock.round, step))
                {
                    let round = self.cur.round;
                    let vote = Vote::sign(
                        &self.key,
                        &self.chain_id,
                        self.cur.height,
                        lock.round,
                        kind,
                        Some(lock.block),
                        me,
                    );
                    self.restore_signed(Message::Vote(vote));
                    self.cur.round = round;
                }
            }
        }
        if self.guard.lost_records
            && guard.last.height == self.cur.height
            && self.cur.round <= guard.last.round
        {
            self.cur.round = guard.last.round.next();
        }
    }

    pub(super) fn restore_signed(&mut self, msg: Message) {
        let Some(slot) = slot_of(&msg) else { return };
        self.cur.round = self.cur.round.max(slot.0);
        match &msg {
            Message::Proposal(p) => {
                let hash = p.block.hash();
                if !self.body_matches(&p.block) {
                    return; // not what this node signed: its record is damaged
                }
                // Our own re-proposal: its polka lets us prepare it again (L28), even when a
                // voter of that polka is down now (issue 12, defect 2).
                if let (Some(vr), Some(polka)) = (p.valid_round, &p.polka)
                    && polka.round == vr
                    && polka
                        .verify_prepares(&self.set, &self.chain_id, self.cur.height, &hash)
                        .is_ok()
                {
                    self.cur.polka_proven.insert(p.round);
                }
                self.cur.blocks.insert(hash, p.block.clone());
                self.cur.persisted_blocks.insert(hash);
                self.cur.proposals.insert(p.round, (hash, p.clone()));
            }
            Message::Vote(v) => {
                // Our own vote; the keeper accepts it as any other.
                let _ = self.cur.votes.add(v.clone(), v.round);
                self.note_commit_quorum(v.round, v.kind, v.block);
            }
            _ => {}
        }
        self.cur.signed.insert(slot, msg);
    }
}
