//! Signed transfers: the chain's only transaction. A transfer moves `amount` from `from` to `to`
//! and pays `fee` to the block's validators; `nonce` must equal the sender's count of transfers so
//! far, so a transfer can be applied once and only once.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, Domain, Keypair, PublicKey, Signature};
use crate::types::{Amount, Hash};

/// The signed fields of a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: PublicKey,
    pub to: PublicKey,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransfer {
    pub transfer: Transfer,
    pub signature: Signature,
}

impl Transfer {
    /// The transaction's identity: BLAKE3 of its signed fields (not of the signature, so the hash
    /// cannot be changed by re-encoding a signature).
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"timed/tx", &crate::codec::encode(self)])
    }

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
    pub fn hash(&self) -> Hash {
        self.transfer.hash()
    }

    /// Checks the sender's signature (the sender's key is the `from` address).
    pub fn verify_signature(&self, chain_id: &str) -> Result<(), CryptoError> {
        let vk = self.transfer.from.verifying_key()?;
        let msg = crypto::signing_message(Domain::Transfer, chain_id, &self.transfer);
        crypto::verify(&vk, &msg, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
