//! Quantities as people write and read them, shared by both runtimes so that each has one
//! representation: durations as text (the node's flags and configuration file, the simulator's
//! scenario files) and percentiles of samples (the devnet's, the load bench's and the
//! simulator's reports). Pure functions of their arguments, like the rest of the core; no float
//! arithmetic decides a duration.

use core::fmt;

/// Why a duration did not parse; the text is quoted in each message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing, or only spaces.
    Empty,
    /// Not a sequence of numbers with units.
    Malformed(String),
    /// A unit that is not ms, s, m or h.
    UnknownUnit {
        /// The text given.
        text: String,
        /// The unit found in it.
        unit: String,
    },
    /// More milliseconds than a `u64` holds.
    TooLong(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "an empty duration (try 8s, 500ms, 2h30m)"),
            DurationError::Malformed(t) => {
                write!(f, "{t:?} is not a duration (try 8s, 500ms, 1.5s, 2h30m)")
            }
            DurationError::UnknownUnit { text, unit } => {
                write!(f, "unknown unit {unit:?} in {text:?} (use ms, s, m or h)")
            }
            DurationError::TooLong(t) => write!(f, "the duration {t:?} is too long"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration into milliseconds: one or more numbers each followed by a unit — `ms`, `s`,
/// `m` or `h` — as in "250ms", "1.5s", "90s", "10m", "2h30m"; or a bare number, counted in
/// `bare_unit_ms` (1,000 where a flag has always been in seconds, 1 where a file has been in
/// milliseconds). A fraction is allowed down to the millisecond ("1.5s", "0.25m"); finer
/// digits are refused rather than rounded.
pub fn parse_duration_ms(text: &str, bare_unit_ms: u64) -> Result<u64, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let too_long = || DurationError::TooLong(text.to_string());
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() {
            return Err(malformed());
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_ms = match unit.trim() {
            "" if total == 0 && next.is_empty() => bare_unit_ms,
            "" => return Err(malformed()),
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        let ms = scaled(number, unit_ms).ok_or_else(malformed)?;
        total = ms
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_long)?;
        rest = next;
    }
    Ok(total)
}

/// `number` (digits, at most one '.') times `unit_ms`: `None` if malformed or finer than a
/// millisecond, `Some(None)` if it overflows.
fn scaled(number: &str, unit_ms: u64) -> Option<Option<u64>> {
    let (whole, fraction) = match number.split_once('.') {
        Some((_, f)) if f.contains('.') => return None,
        Some(("", "")) => return None,
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut ms = whole.checked_mul(unit_ms);
    if !fraction.is_empty() {
        let digits = u32::try_from(fraction.len()).ok()?;
        let scale = 10u64.checked_pow(digits)?;
        let fraction: u64 = fraction.parse().ok()?;
        let part = u128::from(fraction) * u128::from(unit_ms);
        if part % u128::from(scale) != 0 {
            return None;
        }
        let part = u64::try_from(part / u128::from(scale)).ok();
        ms = ms.and_then(|ms| ms.checked_add(part?));
    }
    Some(ms)
}

/// The sample at quantile `p` (0.0 to 1.0) of `sorted` (ascending), by the nearest rank; 0 for
/// no samples. Every report (devnet, load bench, simulator) uses this one definition, so their
/// p50 and p99 mean the same.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let last = sorted.len() - 1;
    let rank = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[rank.min(last)]
}

/// A token bucket over milliseconds: at most `burst` tokens, one more every `interval_ms`; each
/// request takes one. Kept as two integers so that a map of them per peer stays small (the
/// core's sync answers per validator, the node's requests per follower).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u64,
    /// When `tokens` was last brought up to date (a multiple of `interval_ms` after the start).
    since_ms: u64,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now_ms`.
    pub fn full(burst: u64, now_ms: u64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            since_ms: now_ms,
        }
    }

    /// Milliseconds from `now_ms` until `take` finds a token (0: there is one now).
    pub fn ready_in(&self, now_ms: u64, interval_ms: u64) -> u64 {
        if self.tokens > 0 {
            return 0;
        }
        self.since_ms
            .saturating_add(interval_ms.max(1))
            .saturating_sub(now_ms)
    }

    /// Takes a token at `now_ms` if there is one (after refilling); false when empty.
    pub fn take(&mut self, now_ms: u64, burst: u64, interval_ms: u64) -> bool {
        let interval_ms = interval_ms.max(1);
        let refilled = (now_ms.saturating_sub(self.since_ms) / interval_ms)
            .saturating_add(self.tokens)
            .min(burst);
        self.since_ms = if refilled == burst {
            now_ms
        } else {
            self.since_ms + refilled.saturating_sub(self.tokens) * interval_ms
        };
        self.tokens = refilled.saturating_sub(1);
        refilled > 0
    }
}

#[cfg(test)]
mod tests {
    use super::{DurationError, parse_duration_ms, percentile};

    #[test]
    fn durations_in_every_unit_and_combination() {
        let s = |t| parse_duration_ms(t, 1_000);
        assert_eq!(s("8s"), Ok(8_000));
        assert_eq!(s("500ms"), Ok(500));
        assert_eq!(s("1.5s"), Ok(1_500));
        assert_eq!(s(".5s"), Ok(500));
        assert_eq!(s("2m"), Ok(120_000));
        assert_eq!(s("2h30m"), Ok(9_000_000));
        assert_eq!(s("1m30s250ms"), Ok(90_250));
        assert_eq!(s(" 90s "), Ok(90_000));
        // A bare number is in the caller's unit.
        assert_eq!(s("0"), Ok(0));
        assert_eq!(s("3"), Ok(3_000));
        assert_eq!(parse_duration_ms("250", 1), Ok(250));
    }

    #[test]
    fn bad_durations_say_why() {
        let s = |t| parse_duration_ms(t, 1_000);
        assert_eq!(s(""), Err(DurationError::Empty));
        assert!(matches!(s("fast"), Err(DurationError::Malformed(_))));
        assert!(matches!(
            s("5 parsecs"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "parsecs"
        ));
        assert!(matches!(s("1.2.3s"), Err(DurationError::Malformed(_))));
        assert!(matches!(s("1.0005s"), Err(DurationError::Malformed(_))));
        assert!(matches!(s("5s3"), Err(DurationError::Malformed(_))));
        assert!(matches!(s("-1s"), Err(DurationError::Malformed(_))));
        assert!(matches!(
            s("99999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(s("fast").unwrap_err().to_string().contains("\"fast\""));
    }

    proptest::proptest! {
        /// A flag or a scenario file is user input: any text parses or is refused, never
        /// panics; and a number of whole seconds written with its unit reads back exactly.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,24}", secs in 0u64..1_000_000) {
            let _ = parse_duration_ms(&text, 1_000);
            let _ = parse_duration_ms(&text, 1);
            proptest::prop_assert_eq!(parse_duration_ms(&format!("{secs}s"), 1), Ok(secs * 1_000));
        }

        /// Text made of the grammar's own characters reaches every branch of the parser.
        #[test]
        fn near_misses_parse_or_are_refused(text in "[0-9.hms ]{0,30}") {
            let _ = parse_duration_ms(&text, 1_000);
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&v, 0.5), 6);
        assert_eq!(percentile(&v, 0.99), 10);
        assert_eq!(percentile(&v, 1.0), 10);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn a_token_bucket_gives_its_burst_then_one_token_per_interval() {
        let mut b = super::TokenBucket::full(3, 1_000);
        assert!((0..3).all(|_| b.take(1_000, 3, 4)));
        assert!(!b.take(1_000, 3, 4), "empty");
        assert!(!b.take(1_003, 3, 4), "not a whole interval yet");
        assert!(b.take(1_004, 3, 4));
        assert!(
            !b.take(1_007, 3, 4),
            "the partial interval was kept, not lost"
        );
        assert!(b.take(1_008, 3, 4));
        // A long pause refills to the burst, never beyond.
        assert!((0..3).all(|_| b.take(100_000, 3, 4)));
        assert!(!b.take(100_000, 3, 4));
    }
}
