//! Service hours (DOMAIN.md, "Service hours"): is a calendar open at an instant?
//!
//! The instant is converted to the calendar's local date and wall-clock time with the IANA
//! zone (a tz database is bundled, so the answer does not depend on the host's zoneinfo), then
//! the rules apply in this order:
//! 1. a **special working day** covering the date: open inside its own intervals, else closed;
//! 2. a **holiday** covering the date: closed all day;
//! 3. the **weekly** intervals of the date's weekday.
//!
//! Intervals are minutes since local midnight, `[start, end)`, compared with the wall clock, so
//! "09:00–17:00" means that on the local clock on DST-change days too. In the hour repeated
//! when clocks go back both passes count as that wall-clock time; the hour skipped when clocks
//! go forward never occurs.
use super::model::{Calendar, DateRange};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HoursError {
    #[error("calendar {calendar:?}: unknown time zone {zone:?}")]
    UnknownZone { calendar: String, zone: String },
    #[error("Unix time {unix} is outside the supported range")]
    OutOfRange { unix: i64 },
}

/// Whether `cal` is open at `unix` (seconds since the Unix epoch, UTC).
pub fn is_open(cal: &Calendar, unix: i64) -> Result<bool, HoursError> {
    let zone = jiff::tz::TimeZone::get(&cal.time_zone).map_err(|_| HoursError::UnknownZone {
        calendar: cal.name.clone(),
        zone: cal.time_zone.clone(),
    })?;
    let local = jiff::Timestamp::from_second(unix)
        .map_err(|_| HoursError::OutOfRange { unix })?
        .to_zoned(zone);
    let date = (local.year(), local.month(), local.day());
    // Both are small non-negative values (hour < 24, minute < 60).
    let minute = local.hour() as u16 * 60 + local.minute() as u16;

    if let Some((_, hours)) = cal.special_days.iter().find(|(r, _)| covers(r, date)) {
        return Ok(within(hours, minute));
    }
    if cal.holidays.iter().any(|r| covers(r, date)) {
        return Ok(false);
    }
    let weekday = local.weekday().to_monday_zero_offset() as usize;
    Ok(within(&cal.weekly[weekday], minute))
}

fn covers(range: &DateRange, date: (i16, i8, i8)) -> bool {
    // Tuples compare lexicographically: year, then month, then day.
    range.from <= date && date <= range.to
}

fn within(intervals: &[(u16, u16)], minute: u16) -> bool {
    intervals
        .iter()
        .any(|&(start, end)| start <= minute && minute < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weekdays 09:00–18:00, weekends closed.
    fn office(zone: &str) -> Calendar {
        let day = vec![(9 * 60, 18 * 60)];
        Calendar {
            name: "office".into(),
            time_zone: zone.into(),
            weekly: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
            holidays: vec![],
            special_days: vec![],
        }
    }

    /// Unix seconds of a UTC date-time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn day(y: i16, m: i8, d: i8) -> DateRange {
        DateRange {
            from: (y, m, d),
            to: (y, m, d),
        }
    }

    #[test]
    fn weekly_hours_in_the_calendars_zone() {
        let cal = office("Asia/Shanghai"); // UTC+8, no DST
                                           // Wednesday 2024-05-15: 09:00 local is 01:00 UTC.
        assert!(!is_open(&cal, utc(2024, 5, 15, 0, 59)).unwrap());
        assert!(is_open(&cal, utc(2024, 5, 15, 1, 0)).unwrap());
        assert!(is_open(&cal, utc(2024, 5, 15, 9, 59)).unwrap());
        // 18:00 local: the end is exclusive.
        assert!(!is_open(&cal, utc(2024, 5, 15, 10, 0)).unwrap());
        // Saturday 2024-05-18 10:00 local.
        assert!(!is_open(&cal, utc(2024, 5, 18, 2, 0)).unwrap());
        // Friday 23:30 UTC is already Saturday 07:30 in Shanghai: the local weekday counts.
        assert!(!is_open(&cal, utc(2024, 5, 17, 23, 30)).unwrap());
    }

    #[test]
    fn special_day_beats_holiday_beats_weekly() {
        let mut cal = office("Asia/Shanghai");
        // National Day week, 2024-10-01..07, is a holiday...
        cal.holidays.push(DateRange {
            from: (2024, 10, 1),
            to: (2024, 10, 7),
        });
        // ...but the 1st is staffed 10:00–12:00, and Saturday the 12th is a make-up working day.
        cal.special_days
            .push((day(2024, 10, 1), vec![(10 * 60, 12 * 60)]));
        cal.special_days
            .push((day(2024, 10, 12), vec![(9 * 60, 18 * 60)]));

        // 10-01 (Tuesday) 11:00 local: special day, open.
        assert!(is_open(&cal, utc(2024, 10, 1, 3, 0)).unwrap());
        // 10-01 15:00 local: weekly hours would be open, the special day's are not.
        assert!(!is_open(&cal, utc(2024, 10, 1, 7, 0)).unwrap());
        // 10-02 (Wednesday) 11:00 local: holiday, closed although weekly hours are open.
        assert!(!is_open(&cal, utc(2024, 10, 2, 3, 0)).unwrap());
        // 10-08 (Tuesday): after the holiday, weekly hours again.
        assert!(is_open(&cal, utc(2024, 10, 8, 3, 0)).unwrap());
        // 10-12 (Saturday) 11:00 local: special working day, open.
        assert!(is_open(&cal, utc(2024, 10, 12, 3, 0)).unwrap());
        // 10-13 (Sunday): weekend, closed.
        assert!(!is_open(&cal, utc(2024, 10, 13, 3, 0)).unwrap());
    }

    #[test]
    fn wall_clock_hours_across_a_dst_change() {
        let cal = office("America/New_York");
        // Friday 2024-03-08 (EST, UTC−5): 09:00 local is 14:00 UTC.
        assert!(!is_open(&cal, utc(2024, 3, 8, 13, 30)).unwrap());
        assert!(is_open(&cal, utc(2024, 3, 8, 14, 0)).unwrap());
        // Clocks go forward on Sunday the 10th. Monday 2024-03-11 (EDT, UTC−4): 09:00 local is
        // 13:00 UTC, so 13:30 UTC is open now, and 22:00 UTC (18:00 local) is closed.
        assert!(is_open(&cal, utc(2024, 3, 11, 13, 30)).unwrap());
        assert!(!is_open(&cal, utc(2024, 3, 11, 22, 0)).unwrap());
        assert!(is_open(&cal, utc(2024, 3, 11, 21, 59)).unwrap());
        // And back on Sunday 2024-11-03; Monday the 4th (EST): 13:30 UTC is 08:30, closed.
        assert!(!is_open(&cal, utc(2024, 11, 4, 13, 30)).unwrap());
        assert!(is_open(&cal, utc(2024, 11, 4, 14, 0)).unwrap());
    }

    #[test]
    fn the_repeated_hour_counts_twice_by_wall_clock() {
        let mut cal = office("America/New_York");
        // Open 01:00–02:00 local on Sunday 2024-11-03, when 01:xx happens twice.
        cal.special_days.push((day(2024, 11, 3), vec![(60, 120)]));
        assert!(is_open(&cal, utc(2024, 11, 3, 5, 30)).unwrap()); // 01:30 EDT
        assert!(is_open(&cal, utc(2024, 11, 3, 6, 30)).unwrap()); // 01:30 EST
        assert!(!is_open(&cal, utc(2024, 11, 3, 7, 30)).unwrap()); // 02:30 EST
    }

    #[test]
    fn whole_day_interval_ends_at_midnight() {
        let mut cal = office("UTC");
        cal.weekly[6] = vec![(0, 24 * 60)];
        // Sunday 2024-05-19 23:59 and 00:00.
        assert!(is_open(&cal, utc(2024, 5, 19, 23, 59)).unwrap());
        assert!(is_open(&cal, utc(2024, 5, 19, 0, 0)).unwrap());
    }

    #[test]
    fn errors_are_values() {
        let cal = office("Mars/Olympus_Mons");
        assert_eq!(
            is_open(&cal, 0),
            Err(HoursError::UnknownZone {
                calendar: "office".into(),
                zone: "Mars/Olympus_Mons".into()
            })
        );
        let cal = office("UTC");
        assert_eq!(
            is_open(&cal, i64::MAX),
            Err(HoursError::OutOfRange { unix: i64::MAX })
        );
    }
}
