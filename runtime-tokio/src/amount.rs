//! Amounts of TIME as people write them: at most 8 decimals, parsed exactly without floating
//! point (`parse_time`), printed with every significant decimal (`format_time`); 1 TIME =
//! 100 000 000 units. Shared by the wallet and the other tools and by the API's answers.

use timed_core::types::Amount;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is empty")]
    Empty,
    #[error("{0:?}: an amount cannot be negative")]
    Negative(String),
    #[error("{0:?} is not an amount in TIME (write digits with an optional point, e.g. 1.5)")]
    NotANumber(String),
    #[error("{0:?} has more than 8 decimals (the smallest unit is 0.00000001 TIME)")]
    TooManyDecimals(String),
    #[error("{0:?} is too large (at most 184467440737.09551615 TIME)")]
    Overflow(String),
}

/// Parses an amount in TIME ("1.5", "0.00000001", "3") into units, exactly.
pub fn parse_time(text: &str) -> Result<Amount, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with('-') {
        return Err(AmountError::Negative(text.into()));
    }
    let not_a_number = || AmountError::NotANumber(text.into());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(not_a_number());
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > 8 {
        return Err(AmountError::TooManyDecimals(text.into()));
    }
    let overflow = || AmountError::Overflow(text.into());
    let mut units: u64 = 0;
    for b in whole.bytes() {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(u64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    units = units
        .checked_mul(Amount::UNITS_PER_TIME)
        .ok_or_else(overflow)?;
    let mut frac: u64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        frac += u64::from(b - b'0') * 10u64.pow(7 - i as u32);
    }
    units.checked_add(frac).map(Amount).ok_or_else(overflow)
}

/// Units as TIME with every significant decimal: 150000000 → "1.5", 1 → "0.00000001".
pub fn format_time(amount: Amount) -> String {
    let whole = amount.0 / Amount::UNITS_PER_TIME;
    let frac = amount.0 % Amount::UNITS_PER_TIME;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:08}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_time_parse_exactly() {
        assert_eq!(parse_time("1.5"), Ok(Amount(150_000_000)));
        assert_eq!(parse_time("0.00000001"), Ok(Amount(1)));
        assert_eq!(parse_time("1"), Ok(Amount(100_000_000)));
        assert_eq!(parse_time("0"), Ok(Amount(0)));
        assert_eq!(parse_time("0.1"), Ok(Amount(10_000_000)));
        assert_eq!(parse_time("007.25000000"), Ok(Amount(725_000_000)));
        // The largest representable: u64::MAX units.
        assert_eq!(parse_time("184467440737.09551615"), Ok(Amount(u64::MAX)));
    }

    #[test]
    fn malformed_amounts_are_refused_with_the_reason() {
        assert_eq!(
            parse_time("1.123456789"),
            Err(AmountError::TooManyDecimals("1.123456789".into()))
        );
        assert_eq!(parse_time("-1"), Err(AmountError::Negative("-1".into())));
        assert_eq!(parse_time(""), Err(AmountError::Empty));
        assert_eq!(
            parse_time("184467440737.09551616"),
            Err(AmountError::Overflow("184467440737.09551616".into()))
        );
        assert_eq!(
            parse_time("99999999999999999999"),
            Err(AmountError::Overflow("99999999999999999999".into()))
        );
        for bad in [
            "1e3", "+1", ".5", "1.", "1.2.3", " 1", "1 ", "0x10", "1,5", "NaN", "inf", "١",
        ] {
            assert_eq!(
                parse_time(bad),
                Err(AmountError::NotANumber(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_print_with_their_significant_decimals() {
        for (units, text) in [
            (150_000_000, "1.5"),
            (1, "0.00000001"),
            (100_000_000, "1"),
            (0, "0"),
            (u64::MAX, "184467440737.09551615"),
        ] {
            assert_eq!(format_time(Amount(units)), text);
            assert_eq!(parse_time(text), Ok(Amount(units)));
        }
    }
}
