//! Signed transfers: the chain's only transaction. A transfer moves `amount` from `from` to `to`
//! and pays `fee` to the block's validators; `nonce` must equal the sender's count of transfers so
//! far, so a transfer can be applied once and only once. Its `op` says what the amount does: a
//! payment (`Op::Pay`, the default), or one of the staking operations, whose `to` is a validator's
//! key (`Op::Register`, `Op::Bond`, `Op::Unbond`; ADR 0026 and `crate::staking`).

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, Domain, KeyCache, Keypair, PublicKey, Signature};
use crate::types::{Amount, Hash};

/// The longest validator name a `Register` may carry, in bytes.
pub const MAX_NAME_BYTES: usize = 32;
/// The longest network address (`host:port`) a `Register` may carry, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 64;

/// What a transfer's amount does (ADR 0026).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `amount` moves from `from` to `to`.
    #[default]
    Pay,
    /// `from` registers the validator key `to`, bonding `amount` (at least the genesis's
    /// `min_bond`) to it and owning it from then on.
    Register {
        /// A name for logs and the explorer, 1 to `MAX_NAME_BYTES` bytes.
        name: String,
        /// Where peers reach it (`host:port`), at most `MAX_ADDRESS_BYTES` bytes.
        address: String,
    },
    /// The owner of validator `to` bonds `amount` more to it.
    Bond,
    /// The owner of validator `to` unbonds `amount` of its bond; it returns to `from` after the
    /// unbonding period.
    Unbond,
}

impl Op {
    /// True for the three staking operations.
    pub fn is_staking(&self) -> bool {
        !matches!(self, Op::Pay)
    }

    /// A stable label for logs, metrics and the API.
    pub fn label(&self) -> &'static str {
        match self {
            Op::Pay => "pay",
            Op::Register { .. } => "register",
            Op::Bond => "bond",
            Op::Unbond => "unbond",
        }
    }
}

/// The signed fields of a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The sender's account, whose key must sign.
    pub from: PublicKey,
    /// The receiver's account; not `from`.
    pub to: PublicKey,
    /// Base units moved; nonzero.
    pub amount: Amount,
    /// Base units paid on top of `amount`, to the validators of the block that holds it (with
    /// the subsidy, `ledger::distribute`).
    pub fee: Amount,
    /// The sender's `Account::nonce` when this applies: its count of transfers applied before.
    pub nonce: u64,
    /// What the amount does; a payment when absent (in JSON).
    #[serde(default)]
    pub op: Op,
}

/// A transfer with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransfer {
    /// What was signed.
    pub transfer: Transfer,
    /// By `transfer.from`, in `Domain::Transfer` on the chain's id (checked with the cofactored
    /// rule, `crypto::verify_cofactored`).
    pub signature: Signature,
}

impl Transfer {
    /// The transaction's identity: BLAKE3 of its signed fields (not of the signature, so the hash
    /// cannot be changed by re-encoding a signature).
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/tx", &crate::codec::encode(self)])
    }

    /// Signed with `key` for `chain_id`; `key` must be the sender's (asserted in debug builds
    /// only).
    pub fn sign(self, key: &Keypair, chain_id: &str) -> SignedTransfer {
        debug_assert_eq!(
            key.public_key(),
            self.from,
            "a transfer is signed by its sender"
        );
        let signature = key.sign(Domain::Transfer, chain_id, &self);
        SignedTransfer {
            transfer: self,
            signature,
        }
    }
}

impl SignedTransfer {
    /// The transfer's hash (`Transfer::hash`): the signature is not part of it, so two copies
    /// with different signature bytes share a hash.
    pub fn hash(&self) -> Hash {
        self.transfer.hash()
    }

    /// Checks the sender's signature (the sender's key is the `from` address) with the
    /// transfers' rule, `crypto::verify_cofactored`: a pure function of the transfer's bytes and
    /// the chain id.
    pub fn verify_signature(&self, chain_id: &str) -> Result<(), CryptoError> {
        let msg = self.signing_message(chain_id);
        crypto::verify_cofactored(&self.transfer.from, &msg, &self.signature)
    }

    fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        crypto::signing_message(Domain::Transfer, chain_id, &self.transfer)
    }
}

/// Verifies the signatures of many transfers, one verdict per transfer in order: one batch when
/// all are good (the common case, about twice as fast per signature), one by one only when the
/// batch fails, to find the bad ones. Each verdict is the one `verify_signature` gives (the
/// cofactored rule's batch form agrees with it, whatever the batch holds).
pub fn verify_signatures(chain_id: &str, txs: &[&SignedTransfer]) -> Vec<bool> {
    verify_signatures_with(chain_id, txs, &KeyCache::none())
}

/// As `verify_signatures`, with the senders' keys decompressed once and kept in `keys` (a
/// runtime keeps one cache for all the batches it checks).
pub fn verify_signatures_with(
    chain_id: &str,
    txs: &[&SignedTransfer],
    keys: &KeyCache,
) -> Vec<bool> {
    if batch_ok(chain_id, txs, keys) {
        return vec![true; txs.len()];
    }
    txs.iter()
        .map(|tx| tx.verify_signature(chain_id).is_ok())
        .collect()
}

/// The index of the first transfer whose signature does not verify, if any: one batch, and one
/// by one only when the batch fails, stopping at the first bad one.
pub fn first_bad_signature(chain_id: &str, txs: &[&SignedTransfer]) -> Option<usize> {
    if batch_ok(chain_id, txs, &KeyCache::none()) {
        return None;
    }
    txs.iter()
        .position(|tx| tx.verify_signature(chain_id).is_err())
}

/// One cofactored batch over `txs`; trivially true for none, a single check for one.
fn batch_ok(chain_id: &str, txs: &[&SignedTransfer], keys: &KeyCache) -> bool {
    match txs {
        [] => true,
        [tx] => tx.verify_signature(chain_id).is_ok(),
        _ => {
            let messages: Vec<Vec<u8>> = txs.iter().map(|t| t.signing_message(chain_id)).collect();
            let items: Vec<(&[u8], Signature, PublicKey)> = txs
                .iter()
                .zip(&messages)
                .map(|(t, m)| (m.as_slice(), t.signature, t.transfer.from))
                .collect();
            crypto::verify_batch_cofactored_with(&items, keys).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_every_bad_signature_or_the_first() {
        let keys: Vec<Keypair> = (0..6)
            .map(|i| Keypair::insecure_from_name(&format!("s{i}")))
            .collect();
        let mut txs: Vec<SignedTransfer> = keys
            .iter()
            .map(|k| {
                Transfer {
                    from: k.public_key(),
                    to: keys[0].public_key(),
                    amount: Amount(1),
                    fee: Amount(1),
                    nonce: 0,
                    op: Default::default(),
                }
                .sign(k, "test")
            })
            .collect();
        fn refs(txs: &[SignedTransfer]) -> Vec<&SignedTransfer> {
            txs.iter().collect()
        }
        assert_eq!(verify_signatures("test", &refs(&txs)), vec![true; 6]);
        assert_eq!(first_bad_signature("test", &refs(&txs)), None);
        assert_eq!(first_bad_signature("other", &refs(&txs)), Some(0));
        txs[2].signature.0[3] ^= 1;
        txs[4].transfer.amount = Amount(2);
        assert_eq!(
            verify_signatures("test", &refs(&txs)),
            vec![true, true, false, true, false, true]
        );
        assert_eq!(first_bad_signature("test", &refs(&txs)), Some(2));
        assert_eq!(verify_signatures("test", &[]), Vec::<bool>::new());
        assert_eq!(verify_signatures("test", &refs(&txs[2..3])), vec![false]);
    }

    #[test]
    fn a_signed_transfer_verifies_only_on_its_chain_and_unaltered() {
        let alice = Keypair::insecure_from_name("alice");
        let bob = Keypair::insecure_from_name("bob");
        let tx = Transfer {
            from: alice.public_key(),
            to: bob.public_key(),
            amount: Amount(5),
            fee: Amount(1),
            nonce: 0,
            op: Default::default(),
        }
        .sign(&alice, "test");
        assert!(tx.verify_signature("test").is_ok());
        assert!(tx.verify_signature("other").is_err());
        let mut altered = tx.clone();
        altered.transfer.amount = Amount(500);
        assert!(altered.verify_signature("test").is_err());
        assert_ne!(altered.hash(), tx.hash());
    }
}
