//! The block subsidy and its distribution (docs/design.md §6), in integer arithmetic only.
//!
//! `subsidy(h) = floor(1e8 × (1 + ln h))` units. A float's `ln` may differ between platforms by an
//! ulp, and one ulp is a chain split, so the logarithm is computed in fixed point:
//!
//! 1. `log2 h = k + f`, where `k` is the position of the highest set bit (from the leading zeros)
//!    and the fraction `f ∈ [0, 1)` comes bit by bit from repeatedly squaring the mantissa
//!    `x = h / 2^k ∈ [1, 2)`, held in 63 fractional bits (`x² < 4` fits a `u128`): if `x² ≥ 2` the
//!    next bit of `f` is 1 and `x ← x²/2`, else it is 0 and `x ← x²`. 64 bits of `f` are produced.
//! 2. `ln h = k·ln 2 + f·ln 2`, with `ln 2` as a 64-bit fixed-point constant.
//! 3. `subsidy = 1e8 + floor(1e8 · ln h)`.
//!
//! Every step truncates, so the computed `ln h` is below the true value by less than 2^-56
//! (≈ 1.4e-17); times 1e8 that is under 1e-9 units, while no tabulated height (see
//! `tests/data/rewards-vectors.csv`) has an exact value within 1.1e-4 of an integer. The test
//! `subsidy_matches_every_reference_vector` checks all 2 044 of them.
//!
//! `distribute` splits `subsidy + fees`: a tenth to the proposer, the rest by stake with floors, and
//! what the floors leave to the proposer, so the amounts always sum to the total exactly.

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::types::{Amount, Height, ValidatorIndex};
use crate::validators::ValidatorSet;

/// One validator's part of a block's reward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// The validator.
    pub validator: ValidatorIndex,
    /// The account credited: the validator's owner (a genesis validator's own key).
    pub account: PublicKey,
    /// Base units credited (may be 0).
    pub amount: Amount,
}

/// `floor(ln 2 · 2^64)`.
const LN2_Q64: u128 = 0xB172_17F7_D1CF_79AB;

/// `log2(h)` for `h ≥ 1` in fixed point: `(k, f)` with `log2 h ≈ k + f / 2^64`, `f` truncated.
fn log2_q64(h: u64) -> (u32, u64) {
    debug_assert!(h >= 1);
    let k = 63 - h.leading_zeros();
    // The mantissa h / 2^k ∈ [1, 2) with 63 fractional bits: the top bit of a u64 is the 1.
    let mut x = u128::from(h << (63 - k));
    let mut frac: u64 = 0;
    for bit in (0..64).rev() {
        // x² ∈ [1, 4) with 126 fractional bits.
        let sq = x * x;
        if sq >> 127 != 0 {
            // x² ≥ 2: this bit is 1, and x ← x²/2 (still 63 fractional bits after >> 64).
            frac |= 1 << bit;
            x = sq >> 64;
        } else {
            x = sq >> 63;
        }
        debug_assert!(x >> 63 == 1 && x >> 64 == 0, "the mantissa stays in [1, 2)");
    }
    (k, frac)
}

/// The subsidy of the block at `height`: `floor(100 000 000 × (1 + ln height))` units, exact for
/// every `u64` height (`u64::MAX` gives 4 536 141 955).
///
/// Height 0 is the genesis state, not a block: nothing is minted for it, so `subsidy(0)` is 0.
pub fn subsidy(height: Height) -> Amount {
    if height.0 == 0 {
        return Amount(0);
    }
    let (k, frac) = log2_q64(height.0);
    // ln h in 64 fractional bits: k·ln2 + f·ln2 (the second product has 128 fractional bits).
    let ln_q64 = u128::from(k) * LN2_Q64 + ((u128::from(frac) * LN2_Q64) >> 64);
    // ln h < 45, so 1e8 · ln_q64 < 2^27 · 2^70: no overflow.
    let units = u128::from(Amount::UNITS_PER_TIME);
    let minted = units + ((units * ln_q64) >> 64);
    // ≤ 1e8 · (1 + ln 2^64) < 4.6e9.
    Amount(u64::try_from(minted).expect("the subsidy is below 5e9 units"))
}

/// Splits `total` as docs/design.md §6.4 says; the amounts sum to `total` exactly. One entry per validator,
/// in ascending id order.
///
/// The proposer receives `total / 10`; `rest = total − total/10` is shared by stake, validator `i`
/// receiving `floor(rest · stake_i / T)` (in `u128`), and what the floors leave (fewer units than
/// there are validators) also goes to the proposer. The proposer's entry holds all three parts.
///
/// `proposer` must be a member of `validators` (it comes from `ValidatorSet::proposer`). If it is
/// not, a debug build panics and a release build pays the proposer's parts to the first member, so the
/// sum paid is still `total`.
pub fn distribute(
    total: Amount,
    proposer: ValidatorIndex,
    validators: &ValidatorSet,
) -> Vec<Reward> {
    let position = validators.position(proposer);
    debug_assert!(
        position.is_some(),
        "the proposer {proposer} is not in the set of {}",
        validators.len()
    );
    let proposer = position.unwrap_or(0);
    let proposer_cut = total.0 / 10;
    let rest = total.0 - proposer_cut;
    let stake_total = u128::from(validators.total_stake().0);
    let mut paid: u64 = 0;
    let mut rewards: Vec<Reward> = validators
        .iter()
        .map(|(index, v)| {
            // rest < 2^64 and stake < 2^64, so the product fits a u128; the quotient ≤ rest.
            let share = u128::from(rest) * u128::from(v.stake.0) / stake_total;
            let share = u64::try_from(share).expect("a share is at most rest");
            paid += share;
            Reward {
                validator: index,
                account: v.owner,
                amount: Amount(share),
            }
        })
        .collect();
    // Σ floor(rest·s_i/T) ≤ rest, and rest − Σ < number of validators.
    let leftover = rest - paid;
    debug_assert!(leftover < validators.len() as u64);
    let entry = &mut rewards[proposer];
    entry.amount = Amount(entry.amount.0 + proposer_cut + leftover);
    rewards
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testkit::{pk, validator_set as set};

    #[test]
    fn rewards_of_a_set_of_sparse_ids_go_to_the_owners_and_the_proposer_by_id() {
        let owner = |n: &str| crate::crypto::Keypair::insecure_from_name(n).public_key();
        let members = [(4u16, 100u64), (7, 300)]
            .iter()
            .map(|&(id, stake)| crate::validators::Member {
                id: ValidatorIndex(id),
                name: format!("v{id}"),
                public_key: pk(&format!("v{id}")),
                stake: crate::types::Stake(stake),
                owner: owner(&format!("owner{id}")),
            })
            .collect();
        let set = ValidatorSet::from_members(members).unwrap();
        let rewards = distribute(Amount(1_000), ValidatorIndex(7), &set);
        // Proposer 100; rest 900 split 1:3 (225, 675).
        assert_eq!(
            rewards,
            vec![
                Reward {
                    validator: ValidatorIndex(4),
                    account: owner("owner4"),
                    amount: Amount(225)
                },
                Reward {
                    validator: ValidatorIndex(7),
                    account: owner("owner7"),
                    amount: Amount(775)
                },
            ]
        );
    }
    use proptest::prelude::*;

    fn amounts(rewards: &[Reward]) -> Vec<u64> {
        rewards.iter().map(|r| r.amount.0).collect()
    }

    #[test]
    fn subsidy_matches_the_worked_values() {
        assert_eq!(subsidy(Height(1)), Amount(100_000_000));
        assert_eq!(subsidy(Height(2)), Amount(169_314_718));
        assert_eq!(subsidy(Height(100)), Amount(560_517_018));
        assert_eq!(subsidy(Height(1000)), Amount(790_775_527));
    }

    #[test]
    fn height_zero_is_not_a_block_and_mints_nothing() {
        assert_eq!(subsidy(Height::GENESIS), Amount(0));
    }

    #[test]
    fn subsidy_handles_the_largest_height() {
        assert_eq!(subsidy(Height(u64::MAX)), Amount(4_536_141_955));
    }

    #[test]
    fn subsidy_matches_every_reference_vector() {
        let csv = include_str!("../../tests/data/rewards-vectors.csv");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("height,subsidy_units"));
        let mut rows = 0;
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let (h, s) = line.split_once(',').expect("two columns");
            let h: u64 = h.trim().parse().expect("a height");
            let s: u64 = s.trim().parse().expect("an amount");
            assert_eq!(subsidy(Height(h)), Amount(s), "height {h}");
            rows += 1;
        }
        assert_eq!(rows, 2_044, "every row of the reference file was checked");
    }

    #[test]
    fn ln2_constant_agrees_with_its_series() {
        // ln 2 = Σ_{k≥1} 1 / (k · 2^k), summed in 120 fractional bits; each term truncates, so
        // 200 terms lose under 200 · 2^-120 and the first 64 bits are exact.
        let one: u128 = 1 << 120;
        let sum: u128 = (1..200u32)
            .map(|k| (one >> k.min(127)) / u128::from(k))
            .sum();
        assert_eq!(sum >> (120 - 64), LN2_Q64);
    }

    #[test]
    fn subsidy_grows_with_height() {
        let mut last = subsidy(Height(1));
        for h in [2u64, 3, 10, 1 << 20, 1 << 40, u64::MAX / 3, u64::MAX] {
            let s = subsidy(Height(h));
            assert!(s > last, "subsidy({h}) = {s:?} after {last:?}");
            last = s;
        }
    }

    #[test]
    fn proposer_takes_a_tenth_and_the_rest_goes_by_stake() {
        // total 1000: proposer #1 takes 100; 900 split 1:2 → 300 and 600.
        let r = distribute(Amount(1000), ValidatorIndex(1), &set(&[100, 200]));
        assert_eq!(amounts(&r), vec![300, 700]);
        assert_eq!(r[0].validator, ValidatorIndex(0));
        assert_eq!(r[1].account, pk("validator2"));
    }

    #[test]
    fn what_the_floors_leave_goes_to_the_proposer() {
        // total 100: proposer #0 takes 10; 90 split in thirds → 30 each, no remainder.
        assert_eq!(
            amounts(&distribute(
                Amount(100),
                ValidatorIndex(0),
                &set(&[1, 1, 1])
            )),
            vec![40, 30, 30]
        );
        // total 101: proposer #2 takes 10; 91/3 → 30 each, 1 left over to #2.
        assert_eq!(
            amounts(&distribute(
                Amount(101),
                ValidatorIndex(2),
                &set(&[1, 1, 1])
            )),
            vec![30, 30, 41]
        );
    }

    #[test]
    fn distribute_handles_extreme_totals_and_stakes() {
        let r = distribute(
            Amount(u64::MAX),
            ValidatorIndex(0),
            &set(&[u64::MAX / 2, 1]),
        );
        assert_eq!(
            r.iter().map(|r| u128::from(r.amount.0)).sum::<u128>(),
            u128::from(u64::MAX)
        );
        assert_eq!(
            amounts(&distribute(Amount(0), ValidatorIndex(0), &set(&[5, 7]))),
            vec![0, 0]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn rewards_paid_always_sum_to_subsidy_plus_fees(
            stakes in proptest::collection::vec(1u64..=u64::MAX / 16, 1..=10),
            height in any::<u64>(),
            fees in any::<u64>(),
            proposer in any::<u16>(),
        ) {
            let set = set(&stakes);
            let proposer = ValidatorIndex(proposer % stakes.len() as u16);
            let sub = subsidy(Height(height));
            let total = sub.checked_add(Amount(fees)).unwrap_or(Amount(u64::MAX));
            let rewards = distribute(total, proposer, &set);
            prop_assert_eq!(rewards.len(), stakes.len());
            let paid: u128 = rewards.iter().map(|r| u128::from(r.amount.0)).sum();
            prop_assert_eq!(paid, u128::from(total.0));
            for (i, r) in rewards.iter().enumerate() {
                prop_assert_eq!(r.validator, ValidatorIndex(i as u16));
            }
            // The proposer never gets less than its tenth.
            prop_assert!(rewards[proposer.as_usize()].amount.0 >= total.0 / 10);
        }
    }
}
