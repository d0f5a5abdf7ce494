//! Test fixtures shared by the ledger's, the rewards' and the mempool's tests: named keys, a
//! validator set, funded ledgers and signed transfers.

use crate::crypto::{Keypair, PublicKey};
use crate::ledger::{Account, Ledger};
use crate::tx::{SignedTransfer, Transfer};
use crate::types::{Amount, Stake};
use crate::validators::{GenesisValidator, ValidatorSet};

pub const CHAIN: &str = "test-chain";

pub fn key(name: &str) -> Keypair {
    Keypair::insecure_from_name(name)
}

pub fn pk(name: &str) -> PublicKey {
    key(name).public_key()
}

/// Validators named `validator1`, `validator2`, … with the given stakes, in that order.
pub fn validator_set(stakes: &[u64]) -> ValidatorSet {
    let members: Vec<GenesisValidator> = stakes
        .iter()
        .enumerate()
        .map(|(i, s)| GenesisValidator {
            name: format!("validator{}", i + 1),
            public_key: pk(&format!("validator{}", i + 1)),
            stake: Stake(*s),
            address: None,
        })
        .collect();
    ValidatorSet::new(&members).expect("a valid test set")
}

/// A ledger where each named account holds the given balance, nonce 0.
pub fn funded(balances: &[(&str, u64)]) -> Ledger {
    Ledger::from_accounts(balances.iter().map(|(name, b)| {
        (
            pk(name),
            Account {
                balance: Amount(*b),
                nonce: 0,
            },
        )
    }))
}

pub fn transfer(
    from: &Keypair,
    to: PublicKey,
    amount: u64,
    fee: u64,
    nonce: u64,
) -> SignedTransfer {
    Transfer {
        from: from.public_key(),
        to,
        amount: Amount(amount),
        fee: Amount(fee),
        nonce,
        op: Default::default(),
    }
    .sign(from, CHAIN)
}

/// An account with `balance` base units and `nonce`.
pub fn acct(balance: u64, nonce: u64) -> Account {
    Account {
        balance: Amount(balance),
        nonce,
    }
}
