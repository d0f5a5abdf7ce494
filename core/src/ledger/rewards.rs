//! The block subsidy `floor(1e8 × (1 + ln h))` in exact integer arithmetic, and its distribution.
//! INTERFACE STUB — being implemented (see issue 2); signatures are fixed.

use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::types::{Amount, Height, ValidatorIndex};
use crate::validators::ValidatorSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub validator: ValidatorIndex,
    pub account: PublicKey,
    pub amount: Amount,
}

pub fn subsidy(_height: Height) -> Amount {
    unimplemented!()
}

/// Splits `total` as REWARDS.md says; the amounts sum to `total` exactly. One entry per validator,
/// in index order.
pub fn distribute(
    _total: Amount,
    _proposer: ValidatorIndex,
    _validators: &ValidatorSet,
) -> Vec<Reward> {
    unimplemented!()
}
