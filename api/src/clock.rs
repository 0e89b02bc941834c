//! The HTTP shell's clocks. Like the engine's `rt`, this crate is a shell: it reads clocks here
//! and hands the values to sans-IO logic ([`crate::auth::FailureLimiter`]) and to the store.
#![allow(clippy::disallowed_methods)] // the shell is where clocks are read

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}
