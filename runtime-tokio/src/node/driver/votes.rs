//! Votes checked before the core sees them: the votes of a group of inputs for the height being
//! decided are verified in one batch (`vote_checks`), so that the core verifies each signature at
//! most once and a forged vote is refused here.

use timed_core::message::{Message, Vote, verify_votes};
use timed_core::types::Height;
use timed_core::validators::ValidatorSet;

use crate::node::ctx::CoreInput;

use super::Driver;

impl Driver {
    pub(super) fn check_votes(&self, inputs: &[CoreInput]) -> Vec<VoteCheck> {
        let node = &self.node;
        vote_checks(
            inputs,
            node.height(),
            node.validators(),
            node.chain_id(),
            |v| node.holds_vote(v),
        )
    }
}

/// What the driver's batch check says of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VoteCheck {
    /// Not a vote this check covers: the core checks it as usual.
    Unchecked,
    /// A vote whose signature is good under the one rule.
    Good,
    /// A vote of a validator of the set whose signature is not: refused without the core.
    Bad,
}

/// Which inputs are votes with a good signature, checked as one batch (`message::verify_votes`:
/// one `verify_batch`, one by one only if it fails), and which have a bad one: each validator
/// signature of the vote path is verified once per node, here (issue 12). Only votes of the
/// deciding height or later: the core checks an older one only if it extends a certificate. A
/// vote of a validator outside the set is left to the core, which refuses it before any
/// signature check; so is one the core `holds` already (a resend, which it does not check
/// again): a peer repeating a vote costs no verification.
pub(super) fn vote_checks(
    inputs: &[CoreInput],
    height: Height,
    set: &ValidatorSet,
    chain_id: &str,
    holds: impl Fn(&Vote) -> bool,
) -> Vec<VoteCheck> {
    let at: Vec<(usize, &Vote)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match input {
            CoreInput::Message {
                msg: Message::Vote(v),
                ..
            } if v.height >= height && set.get(v.validator).is_some() && !holds(v) => Some((i, v)),
            _ => None,
        })
        .collect();
    let mut checks = vec![VoteCheck::Unchecked; inputs.len()];
    if at.is_empty() {
        return checks;
    }
    let votes: Vec<Vote> = at.iter().map(|(_, v)| (*v).clone()).collect();
    let good = verify_votes(&votes, set, chain_id);
    for ((i, _), ok) in at.into_iter().zip(good) {
        checks[i] = if ok { VoteCheck::Good } else { VoteCheck::Bad };
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::{VoteCheck, vote_checks};
    use crate::node::ctx::CoreInput;
    use timed_core::crypto::Keypair;
    use timed_core::message::{Message, Vote, VoteKind};
    use timed_core::types::{Hash, Height, Round, ValidatorIndex};

    /// A burst with one forged vote: the others are good in one batch, the forged one is known
    /// bad (so the core never verifies it again), and what the batch does not cover — an older
    /// height, a validator outside the set, anything but a vote — is left to the core.
    #[test]
    fn a_burst_is_verified_once_and_a_forged_vote_is_refused_here() {
        let (keys, set) = super::super::test_validators();
        let vote = |key: &Keypair, height: u64, v: u16| {
            let vote = Vote::sign(
                key,
                "test",
                Height(height),
                Round(0),
                VoteKind::Prepare,
                Some(Hash([1; 32])),
                ValidatorIndex(v),
            );
            CoreInput::Message {
                from: ValidatorIndex(v),
                msg: Message::Vote(vote),
            }
        };
        let inputs = vec![
            vote(&keys[0], 5, 0),
            vote(&keys[2], 5, 1), // validator 1's vote, signed with validator 2's key
            vote(&keys[2], 5, 2),
            vote(&keys[3], 4, 3),                          // an older height
            vote(&Keypair::insecure_from_name("x"), 5, 9), // outside the set
            CoreInput::PeerConnected(ValidatorIndex(1)),
        ];
        use VoteCheck::*;
        let none = |_: &Vote| false;
        assert_eq!(
            vote_checks(&inputs, Height(5), &set, "test", none),
            vec![Good, Bad, Good, Unchecked, Unchecked, Unchecked]
        );
        // Alone, a good vote is still good (no batch of one).
        assert_eq!(
            vote_checks(&inputs[..1], Height(5), &set, "test", none),
            vec![Good]
        );
        // One the core holds already is a resend: not checked again.
        let CoreInput::Message {
            msg: Message::Vote(held),
            ..
        } = &inputs[2]
        else {
            unreachable!()
        };
        assert_eq!(
            vote_checks(&inputs[..3], Height(5), &set, "test", |v| v == held),
            vec![Good, Bad, Unchecked]
        );
    }
}
