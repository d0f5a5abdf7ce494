//! Messages checked before the core sees them, by the core's one pre-check policy
//! (`verified::precheck`, which the simulator follows too): in each group of inputs the votes it
//! names are verified as one batch and its proposals alone, so that the core verifies each
//! signature at most once, and one that fails is refused here as a forgery. What passes reaches
//! the core as `Verified` (`Input::SignatureChecked`), a type only the core's checks make.

use timed_core::message::{Message, Vote};
use timed_core::types::{Height, ValidatorIndex};
use timed_core::validators::ValidatorSet;
use timed_core::verified::{Precheck, Verified, precheck};

use crate::node::ctx::CoreInput;

use super::Driver;

impl Driver {
    pub(super) fn precheck(&self, inputs: Vec<CoreInput>) -> Vec<Prechecked> {
        let node = &self.node;
        prechecked(
            inputs,
            node.height(),
            |h| node.set_for(h),
            node.chain_id(),
            |v| node.holds_vote(v),
        )
    }
}

/// One input after the pre-check.
pub(super) enum Prechecked {
    /// For the core: a message whose signature verified (now `CoreInput::Checked`), or one the
    /// policy leaves to the core, or any other input, as it came.
    Input(CoreInput),
    /// A proposal or vote of a validator of the set whose signature fails: refused here.
    Forged { from: ValidatorIndex, msg: Message },
}

/// Applies the policy to `inputs`, in order: the votes it names verified as one batch per
/// validator set (`Verified::votes`: one `verify_batch`, one by one only if it fails; the votes
/// of a height are checked against its set, `sets`), its proposals alone.
pub(super) fn prechecked<'s>(
    inputs: Vec<CoreInput>,
    height: Height,
    sets: impl Fn(Height) -> Option<&'s ValidatorSet>,
    chain_id: &str,
    holds: impl Fn(&Vote) -> bool,
) -> Vec<Prechecked> {
    let mut out: Vec<Option<Prechecked>> = Vec::with_capacity(inputs.len());
    let mut votes: Vec<(usize, ValidatorIndex, Vote)> = Vec::new();
    for input in inputs {
        let at = out.len();
        match input {
            CoreInput::Message { from, msg }
                if precheck(&msg, height, &sets, &holds) == Precheck::Check =>
            {
                match msg {
                    Message::Vote(v) => {
                        votes.push((at, from, v));
                        out.push(None);
                    }
                    Message::Proposal(p) => {
                        let Some(set) = sets(p.height) else {
                            unreachable!("the policy checks only proposals of a known set")
                        };
                        out.push(Some(match Verified::proposal(p, set, chain_id) {
                            Ok(msg) => Prechecked::Input(CoreInput::Checked { from, msg }),
                            Err(p) => Prechecked::Forged {
                                from,
                                msg: Message::Proposal(p),
                            },
                        }))
                    }
                    msg => out.push(Some(Prechecked::Input(CoreInput::Message { from, msg }))),
                }
            }
            input => out.push(Some(Prechecked::Input(input))),
        }
    }
    // One batch per set: the heights of a burst span at most three (ADR 0026).
    while let Some((_, _, first)) = votes.first() {
        let Some(set) = sets(first.height) else {
            unreachable!("the policy checks only votes of a known set")
        };
        let (group, rest): (Vec<_>, Vec<_>) = votes
            .into_iter()
            .partition(|(_, _, v)| sets(v.height).is_some_and(|s| std::ptr::eq(s, set)));
        votes = rest;
        let (places, batch): (Vec<(usize, ValidatorIndex)>, Vec<Vote>) = group
            .into_iter()
            .map(|(at, from, v)| ((at, from), v))
            .unzip();
        for ((at, from), verdict) in places
            .into_iter()
            .zip(Verified::votes(batch, set, chain_id))
        {
            out[at] = Some(match verdict {
                Ok(msg) => Prechecked::Input(CoreInput::Checked { from, msg }),
                Err(v) => Prechecked::Forged {
                    from,
                    msg: Message::Vote(v),
                },
            });
        }
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::{Prechecked, prechecked};
    use crate::node::ctx::CoreInput;
    use timed_core::crypto::Keypair;
    use timed_core::message::{Message, Vote, VoteKind};
    use timed_core::types::{Hash, Height, Round, ValidatorIndex};

    /// What became of each input: verified, forged, or left as it came.
    fn kinds(out: &[Prechecked]) -> Vec<&'static str> {
        out.iter()
            .map(|p| match p {
                Prechecked::Input(CoreInput::Checked { .. }) => "good",
                Prechecked::Forged { .. } => "bad",
                Prechecked::Input(_) => "core",
            })
            .collect()
    }

    /// A burst with one forged vote: the others are good in one batch, the forged one is known
    /// bad (so the core never verifies it again), and what the policy leaves out — a height two
    /// back, a validator outside the set, anything but a proposal or vote — goes to the core.
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
        let inputs = || {
            vec![
                vote(&keys[0], 5, 0),
                vote(&keys[2], 5, 1), // validator 1's vote, signed with validator 2's key
                vote(&keys[2], 5, 2),
                vote(&keys[3], 4, 3), // the height before: late
                vote(&keys[3], 3, 3), // two back
                vote(&Keypair::insecure_from_name("x"), 5, 9), // outside the set
                CoreInput::PeerConnected(ValidatorIndex(1)),
            ]
        };
        let none = |_: &Vote| false;
        assert_eq!(
            kinds(&prechecked(
                inputs(),
                Height(5),
                |_| Some(&set),
                "test",
                none
            )),
            vec!["good", "bad", "good", "core", "core", "core", "core"]
        );
        // Alone, a good vote is still good (no batch of one).
        let one: Vec<CoreInput> = inputs().into_iter().take(1).collect();
        assert_eq!(
            kinds(&prechecked(one, Height(5), |_| Some(&set), "test", none)),
            vec!["good"]
        );
        // One the core holds already is a resend: not checked again.
        let CoreInput::Message {
            msg: Message::Vote(held),
            ..
        } = &inputs()[2]
        else {
            unreachable!()
        };
        let three: Vec<CoreInput> = inputs().into_iter().take(3).collect();
        assert_eq!(
            kinds(&prechecked(
                three,
                Height(5),
                |_| Some(&set),
                "test",
                |v| v == held
            )),
            vec!["good", "bad", "core"]
        );
    }
}
