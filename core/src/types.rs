//! The newtypes every other module speaks in: heights, rounds, stake, validator indices, hashes,
//! timestamps and money. Bare integers never cross a module boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A block height. Height 0 is the genesis state; the first block is height 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// Height 0: the genesis state, which no block has.
    pub const GENESIS: Height = Height(0);

    /// The next height. Saturates: height `u64::MAX` is unreachable in practice.
    pub fn next(self) -> Height {
        Height(self.0.saturating_add(1))
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A consensus round within one height; round 0 is the first attempt.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u32);

impl Round {
    /// The first round of every height.
    pub const ZERO: Round = Round(0);

    /// The next round. Saturates at `u32::MAX`.
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Voting weight of a validator (or a sum of them), in the genesis's stake units (a validator
/// has at least 1). Thresholds compare a sum with the set's total (`ValidatorSet::is_quorum`). Not
/// money: stake is fixed in the genesis and unrelated to `Amount`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Stake(pub u64);

impl fmt::Display for Stake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Position of a validator in the (ordered) validator set: its place in the genesis's list, from
/// 0. It names the signer of votes, proposals and certificate entries.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ValidatorIndex(pub u16);

impl ValidatorIndex {
    /// The index as a `usize`, for indexing per-validator vectors.
    pub fn as_usize(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ValidatorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Milliseconds since the Unix epoch (or since the start of a simulation): the only clock the core
/// knows is the one handed to it with each input.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TimestampMs(pub u64);

impl TimestampMs {
    /// `ms` milliseconds later, saturating at `u64::MAX`.
    pub fn saturating_add_ms(self, ms: u64) -> TimestampMs {
        TimestampMs(self.0.saturating_add(ms))
    }
}

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Money in base units; 1 TIME = 100 000 000 units.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Base units in one TIME.
    pub const UNITS_PER_TIME: u64 = 100_000_000;

    /// The sum, or `None` on overflow of 64 bits.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// The difference, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    /// Truncated to two decimals, as the reward rules prescribe for logs (docs/design.md §6): `5.60 TIME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::UNITS_PER_TIME;
        let cents = (self.0 % Self::UNITS_PER_TIME) / 1_000_000;
        write!(f, "{whole}.{cents:02} TIME")
    }
}

/// Implements serde for a fixed-size byte array newtype: a byte string in binary serde formats
/// (never an array of integers), lowercase hex in human-readable formats such as JSON. (Not the
/// wire or disk format: that is `codec::Wire`, see `formats`.)
macro_rules! fixed_bytes_serde {
    ($ty:ident, $len:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "{} bytes ({} hex digits)", $len, 2 * $len)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        <[u8; $len]>::try_from(v)
                            .map($ty)
                            .map_err(|_| E::invalid_length(v.len(), &self))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        let mut out = [0u8; $len];
                        hex::decode_to_slice(v, &mut out)
                            .map_err(|_| E::invalid_length(v.len(), &self))?;
                        Ok($ty(out))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)?;
                Ok($ty(out))
            }
        }
    };
}
pub(crate) use fixed_bytes_serde;

/// A BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

fixed_bytes_serde!(Hash, 32);

impl Hash {
    /// All zero bytes: no digest of anything, a placeholder (tests, tools).
    pub const ZERO: Hash = Hash([0; 32]);

    /// BLAKE3 of `parts` concatenated.
    pub fn of(parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// The first 4 bytes in hex, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_display_truncates_to_two_decimals() {
        assert_eq!(Amount(560_517_018).to_string(), "5.60 TIME");
        assert_eq!(Amount(100_000_000).to_string(), "1.00 TIME");
        assert_eq!(Amount(199_999_999).to_string(), "1.99 TIME");
        assert_eq!(Amount(5).to_string(), "0.00 TIME");
    }

    #[test]
    fn hash_is_its_32_bytes_on_the_wire_and_hex_in_json() {
        let h = Hash::of(&[b"x"]);
        let bytes = crate::codec::encode(&h);
        assert_eq!(bytes, h.0.to_vec());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(h.0)));
        let back: Hash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(crate::codec::decode::<Hash>(&bytes, 64).unwrap(), h);
        assert!(crate::codec::decode::<Hash>(&bytes[..31], 64).is_err());
    }
}
