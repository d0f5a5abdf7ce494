//! The workload: a client submits a signed transfer now and then (about one in ten invalid on
//! purpose) to a random live node, from a random stream of its own.

use rand::RngExt;
use timed_core::consensus::Input;
use timed_core::tx::Transfer;
use timed_core::types::Amount;
use tracing::debug;

use super::{CHAIN_ID, Ev, Simulation};

impl Simulation {
    pub(super) fn schedule_submit(&mut self) {
        let Some(w) = &self.scenario.transactions else {
            return;
        };
        let next = self.now + self.workload_rng.random_range(1..=2 * w.interval.0);
        if w.until.is_none_or(|u| next <= u.0) {
            self.push(next, Ev::Submit);
        }
    }

    /// One transfer from a random sender (a client or a validator) to another account, handed
    /// to a random live node; about one in ten is invalid on purpose.
    pub(super) fn submit(&mut self) {
        self.schedule_submit();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_up())
            .collect();
        if up.is_empty() {
            return;
        }
        let rng = &mut self.workload_rng;
        let target = up[rng.random_range(0..up.len())];
        // Clients and genesis validators (candidates' accounts are for their staking alone).
        let senders = self.clients.len() + self.set.len();
        let from = rng.random_range(0..senders);
        let mut to = rng.random_range(0..senders - 1);
        if to >= from {
            to += 1;
        }
        let key_of = |k: usize| {
            if k < self.clients.len() {
                &self.clients[k]
            } else {
                &self.keys[k - self.clients.len()]
            }
        };
        let (sender, receiver) = (key_of(from).clone(), key_of(to).public_key());
        let Some(core) = self.nodes[target].core.as_ref() else {
            return;
        };
        let account = core.ledger().account(&sender.public_key());
        // Nonces run ahead of the target's ledger while transfers are pending; when they run too
        // far (transfers lost with a crashed node or a full mempool), start again from the ledger.
        let issued = self.next_nonce.entry(sender.public_key()).or_insert(0);
        if *issued < account.nonce || *issued > account.nonce + 8 {
            *issued = account.nonce;
        }
        let mut nonce = *issued;
        let balance = account.balance.0;
        let mut amount = rng.random_range(0..=balance / 8) + 1;
        let fee = rng.random_range(0..=1_000u64.min(balance / 16));
        let mut broken = false;
        match rng.random_range(0..30u8) {
            0 => nonce += rng.random_range(1..100u64),
            1 => amount = balance.saturating_add(1),
            2 => broken = true,
            _ => *issued += 1,
        }
        let mut tx = Transfer {
            from: sender.public_key(),
            to: receiver,
            amount: Amount(amount),
            fee: Amount(fee),
            nonce,
            op: Default::default(),
        }
        .sign(&sender, CHAIN_ID);
        if broken {
            tx.signature.0[0] ^= 1;
        }
        debug!("t={} n{target} submit {}", self.now, tx.hash().short());
        self.stats.txs_submitted += 1;
        self.step(target, Input::SubmitTx(tx));
    }
}
