//! Outbound minutes per trunk per calendar period (欠费: over it, calls are refused as arrears).
//!
//! A period is a calendar day or month in the trunk's time zone (carriers bill by their local
//! calendar, `Asia/Shanghai` for Chinese carriers; UTC by default). Usage counts talk seconds as
//! the records hold them, so that the counter seeded from the records at start-up and the counter
//! kept while running agree. Time arrives as Unix milliseconds; nothing here reads a clock.
use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::QuotaPeriod;

/// One trunk's limit.
#[derive(Debug, Clone)]
pub struct QuotaLimit {
    pub seconds: u64,
    pub period: QuotaPeriod,
    pub zone: TimeZone,
}

impl QuotaLimit {
    /// `None` for an unknown zone name (validation has already refused it).
    pub fn new(outbound_minutes: u64, period: QuotaPeriod, timezone: &str) -> Option<QuotaLimit> {
        Some(QuotaLimit {
            seconds: outbound_minutes.saturating_mul(60),
            period,
            zone: TimeZone::get(timezone).ok()?,
        })
    }

    /// The first day of the period `unix_ms` falls in.
    fn period_of(&self, unix_ms: i64) -> Date {
        let ts = Timestamp::from_millisecond(unix_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let day = ts.to_zoned(self.zone.clone()).date();
        match self.period {
            QuotaPeriod::Day => day,
            QuotaPeriod::Month => day.first_of_month(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    period: Date,
    seconds: u64,
}

/// Usage counters for the trunks that have a quota.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    limits: HashMap<String, QuotaLimit>,
    usage: HashMap<String, Usage>,
}

impl Quota {
    pub fn new() -> Quota {
        Quota::default()
    }

    pub fn set_limit(&mut self, trunk: &str, limit: QuotaLimit) {
        self.limits.insert(trunk.to_owned(), limit);
    }

    /// Where the period containing `unix_ms` starts, in Unix milliseconds: the shell sums the
    /// talk time of the trunk's outbound calls since then and hands it to [`Quota::seed`].
    /// `None` when the trunk has no quota.
    ///
    /// The sum is expected from something like
    /// `SELECT SUM(talk_seconds) FROM cdrs WHERE trunk = ? AND direction = 'outbound' AND started_at >= ?`.
    pub fn period_start_ms(&self, trunk: &str, unix_ms: i64) -> Option<i64> {
        let limit = self.limits.get(trunk)?;
        let start = limit.period_of(unix_ms);
        start
            .to_zoned(limit.zone.clone())
            .ok()
            .map(|z| z.timestamp().as_millisecond())
    }

    /// Sets the usage of the period containing `unix_ms` (start-up, from the records).
    pub fn seed(&mut self, trunk: &str, seconds: u64, unix_ms: i64) {
        let Some(limit) = self.limits.get(trunk) else {
            return;
        };
        let period = limit.period_of(unix_ms);
        self.usage
            .insert(trunk.to_owned(), Usage { period, seconds });
    }

    /// A call of `seconds` ended at `unix_ms`; it counts in that instant's period.
    pub fn add_usage(&mut self, trunk: &str, seconds: u64, unix_ms: i64) {
        let Some(limit) = self.limits.get(trunk) else {
            return;
        };
        let period = limit.period_of(unix_ms);
        let usage = self
            .usage
            .entry(trunk.to_owned())
            .or_insert(Usage { period, seconds: 0 });
        // A new period starts from zero; a late report for an earlier period is not carried
        // into the new one.
        if usage.period < period {
            *usage = Usage { period, seconds: 0 };
        }
        if usage.period == period {
            usage.seconds = usage.seconds.saturating_add(seconds);
        }
    }

    /// Seconds used in the period containing `unix_ms`.
    pub fn used(&self, trunk: &str, unix_ms: i64) -> u64 {
        let (Some(limit), Some(usage)) = (self.limits.get(trunk), self.usage.get(trunk)) else {
            return 0;
        };
        if usage.period == limit.period_of(unix_ms) {
            usage.seconds
        } else {
            0
        }
    }

    /// Whether the trunk has used all its minutes of the current period.
    pub fn over_quota(&self, trunk: &str, unix_ms: i64) -> bool {
        self.limits
            .get(trunk)
            .is_some_and(|l| self.used(trunk, unix_ms) >= l.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn quota(minutes: u64, period: QuotaPeriod, zone: &str) -> Quota {
        let mut q = Quota::new();
        q.set_limit("carrier", QuotaLimit::new(minutes, period, zone).unwrap());
        q
    }

    #[test]
    fn usage_adds_up_to_the_limit() {
        let mut q = quota(10, QuotaPeriod::Month, "UTC");
        let t = ms("2026-03-10T12:00:00Z");
        assert!(!q.over_quota("carrier", t));
        q.add_usage("carrier", 540, t);
        assert!(!q.over_quota("carrier", t));
        q.add_usage("carrier", 59, t);
        assert!(!q.over_quota("carrier", t));
        q.add_usage("carrier", 1, t);
        assert!(q.over_quota("carrier", t));
        // A trunk without a quota is never over it.
        q.add_usage("other", 1_000_000, t);
        assert!(!q.over_quota("other", t));
    }

    #[test]
    fn a_new_month_starts_from_zero() {
        let mut q = quota(1, QuotaPeriod::Month, "UTC");
        q.add_usage("carrier", 60, ms("2026-03-31T23:59:59Z"));
        assert!(q.over_quota("carrier", ms("2026-03-31T23:59:59Z")));
        assert!(!q.over_quota("carrier", ms("2026-04-01T00:00:00Z")));
        q.add_usage("carrier", 30, ms("2026-04-01T00:00:10Z"));
        assert_eq!(q.used("carrier", ms("2026-04-15T00:00:00Z")), 30);
    }

    #[test]
    fn the_day_follows_the_trunks_time_zone() {
        // Shanghai is UTC+8: 16:00 UTC is already the next day there.
        let mut q = quota(1, QuotaPeriod::Day, "Asia/Shanghai");
        q.add_usage("carrier", 60, ms("2026-03-10T15:59:00Z"));
        assert!(q.over_quota("carrier", ms("2026-03-10T15:59:59Z")));
        assert!(!q.over_quota("carrier", ms("2026-03-10T16:00:00Z")));
        assert_eq!(
            q.period_start_ms("carrier", ms("2026-03-10T17:00:00Z")),
            Some(ms("2026-03-10T16:00:00Z"))
        );
        let utc = quota(1, QuotaPeriod::Month, "UTC");
        assert_eq!(
            utc.period_start_ms("carrier", ms("2026-03-10T17:00:00Z")),
            Some(ms("2026-03-01T00:00:00Z"))
        );
        assert_eq!(utc.period_start_ms("other", 0), None);
    }

    #[test]
    fn seeding_from_the_records_counts_for_the_current_period() {
        let mut q = quota(100, QuotaPeriod::Month, "UTC");
        let now = ms("2026-03-10T12:00:00Z");
        q.seed("carrier", 6_000, now);
        assert!(q.over_quota("carrier", now));
        q.seed("carrier", 5_940, now);
        assert!(!q.over_quota("carrier", now));
        q.add_usage("carrier", 60, now);
        assert!(q.over_quota("carrier", now));
    }
}
