//! The node's clock: milliseconds since the Unix epoch as the core is handed them (`unix_ms`),
//! with a shift that tests of the clock-offset estimate set (`set_clock_skew_ms`).

use std::sync::atomic::{AtomicI64, Ordering};

/// A shift added to this process's clock (`--clock-skew-ms`, a test aid).
static CLOCK_SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts what `unix_ms` reads by `ms` (tests of the clock-offset estimate).
pub fn set_clock_skew_ms(ms: i64) {
    CLOCK_SKEW_MS.store(ms, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch (plus the test skew, if any): the clock handed to the core.
pub fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    u64::try_from(now.saturating_add(CLOCK_SKEW_MS.load(Ordering::Relaxed))).unwrap_or(0)
}
