//! Votes: the prepare and precommit of Algorithm 1, what each signs (its domain, the chain id and
//! `Vote::signed_fields`), and how one or a burst of them is checked. Below blocks (a certificate is
//! a set of vote signatures) and messages (which carry votes).

use serde::{Deserialize, Serialize};

use crate::crypto::{self, CryptoError, Domain, Keypair, PublicKey, Signature};
use crate::types::{Hash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;

/// Tendermint's prevote is our `Prepare`; its precommit our `Precommit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// Tendermint's prevote (L22-L33, L57-L60).
    Prepare,
    /// Tendermint's precommit (L36-L46, L61-L64).
    Precommit,
}

impl VoteKind {
    /// The signature domain of a vote of this kind (the kind is signed only through it).
    pub fn domain(self) -> Domain {
        match self {
            VoteKind::Prepare => Domain::Prepare,
            VoteKind::Precommit => Domain::Precommit,
        }
    }

    /// Its name in events, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::Prepare => "prepare",
            VoteKind::Precommit => "precommit",
        }
    }
}

/// A signed prepare or precommit for a block (`Some(hash)`) or for nothing (`None`, nil).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The height voted at.
    pub height: Height,
    /// The round voted in.
    pub round: Round,
    /// Prepare or precommit; signed as the signature's domain.
    pub kind: VoteKind,
    /// The block's hash (`id(v)`), or `None` for nil.
    pub block: Option<Hash>,
    /// The voter: its key in the validator set checks the signature.
    pub validator: ValidatorIndex,
    /// Over the kind's domain, the chain id and `Vote::signed_fields`.
    pub signature: Signature,
}

/// Why a vote's or a proposal's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedMessageError {
    /// The named signer is not in the validator set.
    #[error("signer {0} is not a validator of this chain")]
    UnknownValidator(ValidatorIndex),
    /// The signature fails the chain's rule.
    #[error("signature does not verify: {0}")]
    BadSignature(#[from] CryptoError),
}

impl Vote {
    /// What a vote's signature covers (besides domain and chain id).
    pub fn signed_fields(
        height: Height,
        round: Round,
        block: Option<Hash>,
        validator: ValidatorIndex,
    ) -> (Height, Round, Option<Hash>, ValidatorIndex) {
        (height, round, block, validator)
    }

    /// A vote signed with `key`, which should be the key of `validator` (not checked).
    pub fn sign(
        key: &Keypair,
        chain_id: &str,
        height: Height,
        round: Round,
        kind: VoteKind,
        block: Option<Hash>,
        validator: ValidatorIndex,
    ) -> Vote {
        let signature = key.sign(
            kind.domain(),
            chain_id,
            &Vote::signed_fields(height, round, block, validator),
        );
        Vote {
            height,
            round,
            kind,
            block,
            validator,
            signature,
        }
    }

    /// Checks the signature of the named validator with the chain's one rule (`crypto::verify`):
    /// the verdict a certificate or a batch of votes holding it gives it too.
    pub fn verify(&self, set: &ValidatorSet, chain_id: &str) -> Result<(), SignedMessageError> {
        let v = set
            .get(self.validator)
            .ok_or(SignedMessageError::UnknownValidator(self.validator))?;
        let msg = crypto::signing_message(
            self.kind.domain(),
            chain_id,
            &Vote::signed_fields(self.height, self.round, self.block, self.validator),
        );
        Ok(crypto::verify(&v.verifying_key, &msg, &self.signature)?)
    }
}

/// Two signed votes of one validator for one (height, round, kind): what the vote keeper reports
/// when a second vote arrives (`votes::AddOutcome::Equivocation`) and, when the two are for
/// different values (`conflicts`), the proof a block carries to slash the signer (ADR 0026).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The vote counted.
    pub first: Vote,
    /// The conflicting vote (another value, or the same value with other signature bytes).
    pub second: Vote,
}

impl Evidence {
    /// Whether the two votes are of one validator, height, round and kind, for two different
    /// values: a double vote. Two signatures of one value are not: the rule accepts more than one
    /// encoding of a signature (ZIP-215), so anyone can make a second copy of an honest vote, and
    /// only a second *value* is something the validator itself signed.
    pub fn conflicts(&self) -> bool {
        let (a, b) = (&self.first, &self.second);
        a.validator == b.validator
            && a.height == b.height
            && a.round == b.round
            && a.kind == b.kind
            && a.block != b.block
    }

    /// Checks both signatures against `key`, the registered key of the votes' validator, with
    /// the chain's one rule.
    pub fn verify_with(&self, key: &PublicKey, chain_id: &str) -> Result<(), CryptoError> {
        let key = key.verifying_key()?;
        for v in [&self.first, &self.second] {
            let msg = crypto::signing_message(
                v.kind.domain(),
                chain_id,
                &Vote::signed_fields(v.height, v.round, v.block, v.validator),
            );
            crypto::verify(&key, &msg, &v.signature)?;
        }
        Ok(())
    }
}

/// Verifies the signatures of many votes at once: one batch when all are good (the common case,
/// at about the batch rate per signature), and one by one only when the batch fails, to find the
/// bad ones. Returns one verdict per vote, in order: each the verdict `Vote::verify` gives it
/// (the one rule's batch form agrees with it, whatever else the burst holds, so which votes a
/// node happens to check together changes nothing). A driver that receives votes in bursts uses
/// it through `verified::Verified::votes` and hands the good ones to the core as
/// `Input::SignatureChecked`.
pub fn verify_votes(votes: &[Vote], set: &ValidatorSet, chain_id: &str) -> Vec<bool> {
    let keys: Option<Vec<_>> = votes
        .iter()
        .map(|v| set.get(v.validator).map(|info| info.verifying_key))
        .collect();
    if let Some(keys) = keys
        && votes.len() > 1
    {
        let messages: Vec<Vec<u8>> = votes
            .iter()
            .map(|v| {
                crypto::signing_message(
                    v.kind.domain(),
                    chain_id,
                    &Vote::signed_fields(v.height, v.round, v.block, v.validator),
                )
            })
            .collect();
        let items: Vec<(&[u8], Signature, ed25519_dalek::VerifyingKey)> = votes
            .iter()
            .zip(&messages)
            .zip(keys)
            .map(|((v, m), k)| (m.as_slice(), v.signature, k))
            .collect();
        if crypto::verify_batch(&items).is_ok() {
            return vec![true; votes.len()];
        }
    }
    votes
        .iter()
        .map(|v| v.verify(set, chain_id).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validators::insecure_dev_validators;

    #[test]
    fn verify_votes_accepts_good_batches_and_names_each_bad_vote() {
        let (keys, members) = insecure_dev_validators(&[100, 100, 100, 100]);
        let set = ValidatorSet::new(&members).unwrap();
        let chain = "verify-votes-test";
        let mut votes: Vec<Vote> = (0..4u16)
            .map(|i| {
                Vote::sign(
                    &keys[i as usize],
                    chain,
                    Height(3),
                    Round(0),
                    VoteKind::Prepare,
                    None,
                    ValidatorIndex(i),
                )
            })
            .collect();
        assert_eq!(verify_votes(&votes, &set, chain), vec![true; 4]);
        votes[1].round = Round(1); // no longer what was signed
        votes[3].validator = ValidatorIndex(9); // not a validator
        assert_eq!(
            verify_votes(&votes, &set, chain),
            vec![true, false, true, false]
        );
        assert_eq!(verify_votes(&votes[..1], &set, chain), vec![true]);
        assert!(verify_votes(&[], &set, chain).is_empty());
        assert_eq!(verify_votes(&votes, &set, "another-chain"), vec![false; 4]);
    }
}
