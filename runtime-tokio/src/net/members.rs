//! Which validator keys the network side talks to, as the finalized chain says (ADR 0026): the
//! set of the current epoch, the set of the next one, and for a short grace the set that just
//! stopped signing. This module owns that view (`Members`) and the rule that derives it from the
//! ledger's staking state after each stored batch of finalized blocks (`Members::follow`).
//!
//! - **Current and next.** A validator elected for the next epoch is admitted a whole epoch
//!   before it must vote, so it can connect and catch up in time; one of the current set must
//!   be reachable to decide.
//! - **The set that just left.** When the current set changes, the set before it is still
//!   admitted until this node has finalized `GRACE_HEIGHTS` heights past the change: its members
//!   may still owe late precommits of the last height they signed, and peers that lag behind
//!   the boundary still count on them. After that a key of it that is in no other set is
//!   refused at the TLS handshake and its open links are closed.
//! - **Ids.** A peer's id is its registration number (`Staking::id_of`): every member of a set
//!   carries it, so a key of an admitted set maps to its id through the sets alone.
//! - **Addresses.** The registry's address of each member of the current and next sets (the
//!   `Register` operation's `host:port`) is kept for the dialer (`dial::follow_registry`).
//!   A node never learns more than `2 * max_validators` of them.
//!
//! The view is only as fresh as this node's ledger: a node that lags behind admits the sets of
//! its own height, and a newly elected validator waits (its dialer backs off) until the node it
//! dials has caught up with its election.

use std::collections::BTreeMap;
use std::sync::Arc;

use timed_core::crypto::PublicKey;
use timed_core::staking::Staking;
use timed_core::types::{Height, ValidatorIndex};
use timed_core::validators::ValidatorSet;

/// Heights past a change of the current set for which the set before it is still admitted.
/// Long enough for the late precommits of the boundary height and for a peer a few heights
/// behind to finish the old epoch with them; short, so a validator that left does not keep a
/// seat at the table for long.
pub const GRACE_HEIGHTS: u64 = 8;

/// The sets this node admits, after its last stored finalized block.
#[derive(Clone, Debug)]
pub struct Members {
    /// The last finalized height this view reflects (0: the genesis).
    height: Height,
    /// The set of the epoch being built.
    current: Arc<ValidatorSet>,
    /// The set of the next epoch.
    next: Arc<ValidatorSet>,
    /// The set that signed before `current`, admitted until this height (inclusive).
    left: Option<(Arc<ValidatorSet>, Height)>,
    /// The registered address of each member of `current` and `next` that gave one.
    addresses: BTreeMap<ValidatorIndex, String>,
}

impl Members {
    /// The view of a chain with no staking state yet (its genesis set, for ever until told more).
    pub fn genesis(set: &ValidatorSet, addresses: BTreeMap<ValidatorIndex, String>) -> Members {
        let set = Arc::new(set.clone());
        Members {
            height: Height(0),
            current: set.clone(),
            next: set,
            left: None,
            addresses,
        }
    }

    /// The view after finalized height `height`, whose ledger holds `staking`, given the view
    /// before (`self`). `None` when nothing a peer would notice changed (no new set, no grace
    /// ended), so that nobody is woken for nothing.
    pub fn follow(&self, staking: &Staking, height: Height) -> Option<Members> {
        let same = |a: &Arc<ValidatorSet>, b: &Arc<ValidatorSet>| {
            Arc::ptr_eq(a, b) || a.hash() == b.hash()
        };
        let new_current = !same(&self.current, staking.current());
        let new_next = !same(&self.next, staking.next());
        let grace_over = self.left.as_ref().is_some_and(|(_, until)| height > *until);
        if !new_current && !new_next && !grace_over {
            return None;
        }
        let left = if new_current {
            Some((
                self.current.clone(),
                Height(height.0.saturating_add(GRACE_HEIGHTS)),
            ))
        } else {
            self.left.clone().filter(|(_, until)| height <= *until)
        };
        Some(Members {
            left,
            ..Members::of(staking, height)
        })
    }

    /// The view of `staking` after finalized height `height`, with no set in its grace: where
    /// a node starts (a restart does not know which set left before it stopped).
    pub fn of(staking: &Staking, height: Height) -> Members {
        let current = staking.current().clone();
        let next = staking.next().clone();
        let addresses = current
            .iter()
            .chain(next.iter())
            .filter_map(|(id, _)| {
                let r = staking.registration(id)?;
                (!r.address.is_empty()).then(|| (id, r.address.clone()))
            })
            .collect();
        Members {
            height,
            current,
            next,
            left: None,
            addresses,
        }
    }

    /// The sets admitted now, the one that left (while its grace lasts) last.
    fn sets(&self) -> impl Iterator<Item = &ValidatorSet> {
        [
            Some(&self.current),
            Some(&self.next),
            self.left.as_ref().map(|(s, _)| s),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.as_ref())
    }

    /// The id of `key` if it belongs to a set admitted now: what the TLS handshake and the hello
    /// ask. Ids are registration numbers, the same in every set.
    pub fn admitted(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.sets().find_map(|s| s.index_of(key))
    }

    /// Whether validator `id` belongs to a set admitted now.
    pub fn admits_id(&self, id: ValidatorIndex) -> bool {
        self.sets().any(|s| s.get(id).is_some())
    }

    /// The registered name of `id`, if it belongs to a set admitted now.
    pub fn name(&self, id: ValidatorIndex) -> Option<&str> {
        self.sets().find_map(|s| s.get(id)).map(|v| v.name.as_str())
    }

    /// The validators to dial by their registered address: the members of the current and next
    /// sets that gave one, with it.
    pub fn dial_targets(&self) -> impl Iterator<Item = (ValidatorIndex, &str)> {
        self.addresses.iter().map(|(id, a)| (*id, a.as_str()))
    }

    /// The last finalized height this view reflects.
    pub fn height(&self) -> Height {
        self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timed_core::crypto::Keypair;
    use timed_core::tx::{Op, Transfer};
    use timed_core::types::Amount;
    use timed_core::validators::ConsensusParams;

    const EPOCH: u64 = 4;

    /// Four genesis validators of stake 100, epochs of `EPOCH`, a minimum bond of 100.
    fn chain() -> (Vec<Keypair>, Staking) {
        let (keys, mut genesis) = crate::node::driver::test_genesis("test");
        genesis.params = ConsensusParams {
            epoch_blocks: EPOCH,
            unbonding_blocks: 2 * EPOCH,
            min_bond: Amount(100),
            ..ConsensusParams::default()
        };
        let set = genesis.validate().unwrap();
        (keys.clone(), Staking::from_genesis(&genesis, &set))
    }

    fn op(from: &Keypair, to: PublicKey, amount: u64, op: Op) -> Transfer {
        Transfer {
            from: from.public_key(),
            to,
            amount: Amount(amount),
            fee: Amount(0),
            nonce: 0,
            op,
        }
    }

    /// Ends heights `from..=to` of `staking`, following the view after each.
    fn run(staking: &mut Staking, view: &mut Members, from: u64, to: u64) {
        for h in from..=to {
            staking.end_height(Height(h));
            if let Some(v) = view.follow(staking, Height(h)) {
                *view = v;
            }
        }
    }

    #[test]
    fn a_registered_key_is_admitted_from_its_election_not_before() {
        let (keys, mut staking) = chain();
        let mut view = Members::genesis(staking.current(), BTreeMap::new());
        let newcomer = Keypair::insecure_from_name("validator5");
        let stranger = Keypair::insecure_from_name("stranger");
        let register = Op::Register {
            name: "validator5".into(),
            address: "127.0.0.1:9005".into(),
        };
        staking
            .apply_op(
                &op(&keys[0], newcomer.public_key(), 100, register),
                Height(2),
            )
            .unwrap();
        // Registered in epoch 0 (heights 1-4), not yet elected: refused like a stranger.
        run(&mut staking, &mut view, 2, 3);
        assert_eq!(view.admitted(&newcomer.public_key()), None);
        assert_eq!(view.admitted(&stranger.public_key()), None);
        assert_eq!(view.dial_targets().count(), 0);
        // Elected into `next` at the end of epoch 0: admitted with its registration number,
        // and its registered address is dialed.
        run(&mut staking, &mut view, 4, 4);
        assert_eq!(
            view.admitted(&newcomer.public_key()),
            Some(ValidatorIndex(4))
        );
        assert_eq!(view.name(ValidatorIndex(4)), Some("validator5"));
        assert_eq!(
            view.dial_targets().collect::<Vec<_>>(),
            vec![(ValidatorIndex(4), "127.0.0.1:9005")]
        );
        assert_eq!(view.admitted(&stranger.public_key()), None);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                view.admitted(&k.public_key()),
                Some(ValidatorIndex(i as u16))
            );
        }
    }

    #[test]
    fn a_validator_that_left_is_refused_once_the_grace_is_over() {
        let (keys, mut staking) = chain();
        let mut view = Members::genesis(staking.current(), BTreeMap::new());
        let first = keys[0].public_key();
        staking
            .apply_op(&op(&keys[0], first, 100, Op::Unbond), Height(1))
            .unwrap();
        // Epoch 0: unbonded; epoch 1 (5-8): still signs as a member of `current`.
        run(&mut staking, &mut view, 1, 8);
        assert_eq!(view.admitted(&first), Some(ValidatorIndex(0)));
        // Height 8 ended epoch 1: the set without it is current; it is admitted during the
        // grace...
        assert!(staking.current().get(ValidatorIndex(0)).is_none());
        run(&mut staking, &mut view, 9, 8 + GRACE_HEIGHTS);
        assert_eq!(view.admitted(&first), Some(ValidatorIndex(0)));
        assert!(view.admits_id(ValidatorIndex(0)));
        // ...and refused after it, when the others still are.
        run(
            &mut staking,
            &mut view,
            9 + GRACE_HEIGHTS,
            9 + GRACE_HEIGHTS,
        );
        assert_eq!(view.admitted(&first), None);
        assert!(!view.admits_id(ValidatorIndex(0)));
        for (i, k) in keys.iter().enumerate().skip(1) {
            assert_eq!(
                view.admitted(&k.public_key()),
                Some(ValidatorIndex(i as u16))
            );
        }
        assert_eq!(view.height(), Height(9 + GRACE_HEIGHTS));
    }

    #[test]
    fn nothing_changed_wakes_nobody() {
        let (_, mut staking) = chain();
        let view = Members::genesis(staking.current(), BTreeMap::new());
        // Sets elected anew at an epoch's end but equal to the old ones: no new view.
        staking.end_height(Height(EPOCH));
        assert!(view.follow(&staking, Height(EPOCH)).is_none());
        assert_eq!(
            view.admitted(&Keypair::insecure_from_name("x").public_key()),
            None
        );
    }
}
