//! Scheduled sign-in and sign-out: weekly shifts on an IANA zone's wall clock.
//!
//! A [`Schedule`] answers two questions for the shell that signs agents in and out: is the
//! agent on duty at an instant ([`Schedule::on_duty`]), and when does that next change
//! ([`Schedule::next_change`]), so that one timer per agent is enough. Time arrives as Unix
//! milliseconds; nothing here reads a clock.
//!
//! ## Wall-clock semantics
//! A shift is `[from, to)` in local minutes on each of its days; `to < from` runs past
//! midnight into the next day (a Friday 22:00–06:00 shift ends on Saturday morning). Like the
//! IVR's service hours (`ivr::hours`), shifts follow the local clock on DST-change days too:
//! a shift starting in the hour skipped when clocks go forward starts when the clock jumps
//! past its start; in the hour repeated when clocks go back, both passes count as that wall
//! time. The zone data is bundled, so answers do not depend on the host's zoneinfo.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// Minutes in a day; a shift may end at `24:00`.
pub const DAY_MINUTES: u16 = 24 * 60;

/// One weekly shift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shift {
    /// The days the shift *starts* on, Monday first.
    pub days: [bool; 7],
    /// Local minutes since midnight, below [`DAY_MINUTES`].
    pub from: u16,
    /// Local minutes since midnight, at most [`DAY_MINUTES`]; below `from`: the next day.
    pub to: u16,
}

impl Shift {
    fn overnight(&self) -> bool {
        self.to < self.from
    }
}

/// Why a schedule can not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone {zone:?} (expected an IANA name such as `Asia/Shanghai`)")]
    UnknownZone { zone: String },
    #[error("a schedule needs at least one shift")]
    NoShifts,
    #[error("shift {shift} is on no day")]
    NoDays { shift: usize },
    #[error("shift {shift} starts and ends at the same time")]
    Empty { shift: usize },
    #[error("shift {shift}: {minutes} minutes is not a time of day")]
    OutOfDay { shift: usize, minutes: u16 },
}

/// An agent's weekly shifts in one time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    zone_name: String,
    zone: TimeZone,
    shifts: Vec<Shift>,
}

/// Beyond this the calendar arithmetic would leave jiff's range; such instants are off duty.
fn timestamp(unix_ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(unix_ms).ok()
}

impl Schedule {
    /// `zone` is an IANA name (`Asia/Shanghai`, `UTC`).
    pub fn new(zone: &str, shifts: Vec<Shift>) -> Result<Schedule, ScheduleError> {
        let tz = TimeZone::get(zone).map_err(|_| ScheduleError::UnknownZone {
            zone: zone.to_owned(),
        })?;
        if shifts.is_empty() {
            return Err(ScheduleError::NoShifts);
        }
        for (shift, s) in shifts.iter().enumerate() {
            if !s.days.iter().any(|d| *d) {
                return Err(ScheduleError::NoDays { shift });
            }
            if s.from >= DAY_MINUTES {
                return Err(ScheduleError::OutOfDay {
                    shift,
                    minutes: s.from,
                });
            }
            if s.to > DAY_MINUTES {
                return Err(ScheduleError::OutOfDay {
                    shift,
                    minutes: s.to,
                });
            }
            if s.from == s.to {
                return Err(ScheduleError::Empty { shift });
            }
        }
        Ok(Schedule {
            zone_name: zone.to_owned(),
            zone: tz,
            shifts,
        })
    }

    /// The IANA zone name as configured.
    pub fn timezone(&self) -> &str {
        &self.zone_name
    }

    pub fn shifts(&self) -> &[Shift] {
        &self.shifts
    }

    /// Whether the agent should be signed in at this instant.
    pub fn on_duty(&self, unix_ms: i64) -> bool {
        let Some(ts) = timestamp(unix_ms) else {
            return false;
        };
        let local = ts.to_zoned(self.zone.clone());
        let today = usize::from(local.weekday().to_monday_zero_offset() as u8);
        let yesterday = (today + 6) % 7;
        // Both are small non-negative values (hour < 24, minute < 60).
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.shifts.iter().any(|s| {
            let started_today = s.days[today]
                && if s.overnight() {
                    s.from <= minute
                } else {
                    s.from <= minute && minute < s.to
                };
            let from_yesterday = s.overnight() && s.days[yesterday] && minute < s.to;
            started_today || from_yesterday
        })
    }

    /// The first instant after `unix_ms` at which [`Schedule::on_duty`] changes (`None`: it
    /// never does, e.g. shifts that cover the whole week).
    ///
    /// Duty changes only where the wall clock crosses a shift boundary: at a boundary's
    /// instant(s) (two in a repeated hour) or at a zone transition (a boundary in a skipped
    /// hour is crossed when the clock jumps). Those candidates over the next eight local days
    /// cover a whole week; the first at which duty differs from now is the answer.
    pub fn next_change(&self, unix_ms: i64) -> Option<i64> {
        let now = timestamp(unix_ms)?;
        let on = self.on_duty(unix_ms);
        let today = now.to_zoned(self.zone.clone()).date();
        // Close to the end of jiff's range: look as far as possible.
        let horizon = now
            .checked_add(SignedDuration::from_hours(10 * 24))
            .unwrap_or(Timestamp::MAX);
        let mut candidates: Vec<Timestamp> = Vec::new();
        for offset in -1..=8i64 {
            let Ok(date) = today.checked_add(offset.days()) else {
                continue;
            };
            let weekday = usize::from(date.weekday().to_monday_zero_offset() as u8);
            for s in self.shifts.iter().filter(|s| s.days[weekday]) {
                let end_date = if s.overnight() || s.to == DAY_MINUTES {
                    date.tomorrow().ok()
                } else {
                    Some(date)
                };
                let start = at(date, s.from);
                let end = end_date.and_then(|d| at(d, s.to % DAY_MINUTES));
                for dt in [start, end].into_iter().flatten() {
                    let ambiguous = self.zone.to_ambiguous_timestamp(dt);
                    candidates.extend(ambiguous.earlier().ok());
                    candidates.extend(ambiguous.later().ok());
                }
            }
        }
        candidates.extend(
            self.zone
                .following(now)
                .map(|t| t.timestamp())
                .take_while(|t| *t <= horizon),
        );
        candidates.retain(|t| *t > now && *t <= horizon);
        candidates.sort();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|t| t.as_millisecond())
            .find(|ms| self.on_duty(*ms) != on)
    }
}

fn at(date: Date, minutes: u16) -> Option<DateTime> {
    let hour = i8::try_from(minutes / 60).ok()?;
    let minute = i8::try_from(minutes % 60).ok()?;
    Some(jiff::civil::time(hour, minute, 0, 0).to_datetime(date))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEKDAYS: [bool; 7] = [true, true, true, true, true, false, false];
    const EVERY_DAY: [bool; 7] = [true; 7];

    fn hm(h: u16, m: u16) -> u16 {
        h * 60 + m
    }

    /// Unix milliseconds of a local date-time in `zone` (earlier instant if repeated).
    fn local(zone: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(TimeZone::get(zone).unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        local("UTC", y, mo, d, h, mi)
    }

    fn office() -> Schedule {
        Schedule::new(
            "Asia/Shanghai",
            vec![Shift {
                days: WEEKDAYS,
                from: hm(9, 0),
                to: hm(18, 0),
            }],
        )
        .unwrap()
    }

    #[test]
    fn weekday_office_hours_in_shanghai() {
        let s = office();
        let sh = |d, h, m| local("Asia/Shanghai", 2024, 5, d, h, m);
        // 2024-05-14 is a Tuesday, the 18th a Saturday.
        assert!(s.on_duty(sh(14, 10, 0)));
        assert!(!s.on_duty(sh(18, 10, 0)));
        assert!(s.on_duty(sh(14, 9, 0)), "the start is inclusive");
        assert!(!s.on_duty(sh(14, 18, 0)), "the end is exclusive");
        assert!(!s.on_duty(sh(14, 8, 59)));
        // Friday 17:00 → Friday 18:00; Friday 18:30 → Monday 09:00.
        assert_eq!(s.next_change(sh(17, 17, 0)), Some(sh(17, 18, 0)));
        assert_eq!(s.next_change(sh(17, 18, 30)), Some(sh(20, 9, 0)));
        // Exactly at a boundary: the next one, never the same instant.
        assert_eq!(s.next_change(sh(20, 9, 0)), Some(sh(20, 18, 0)));
        // The local weekday counts: Friday 23:30 UTC is Saturday 07:30 in Shanghai.
        assert!(!s.on_duty(utc(2024, 5, 17, 23, 30)));
    }

    #[test]
    fn an_overnight_shift_ends_the_next_morning() {
        let s = Schedule::new(
            "Asia/Shanghai",
            vec![Shift {
                days: WEEKDAYS,
                from: hm(22, 0),
                to: hm(6, 0),
            }],
        )
        .unwrap();
        let sh = |d, h, m| local("Asia/Shanghai", 2024, 5, d, h, m);
        assert!(s.on_duty(sh(14, 23, 0)));
        assert!(
            s.on_duty(sh(15, 5, 59)),
            "Tuesday's shift runs into Wednesday"
        );
        assert!(!s.on_duty(sh(15, 6, 0)));
        assert!(!s.on_duty(sh(15, 21, 59)));
        // Friday's shift ends on Saturday morning; Saturday's evening is free.
        assert!(s.on_duty(sh(18, 3, 0)));
        assert!(!s.on_duty(sh(18, 23, 0)));
        // Monday early morning: Sunday started no shift.
        assert!(!s.on_duty(sh(20, 3, 0)));
        assert_eq!(s.next_change(sh(14, 12, 0)), Some(sh(14, 22, 0)));
        assert_eq!(s.next_change(sh(14, 22, 0)), Some(sh(15, 6, 0)));
        assert_eq!(s.next_change(sh(18, 7, 0)), Some(sh(20, 22, 0)));
    }

    #[test]
    fn berlin_spring_forward_follows_the_wall_clock() {
        // 2024-03-31 (a Sunday): 02:00 CET becomes 03:00 CEST, at 01:00 UTC.
        let day = Schedule::new(
            "Europe/Berlin",
            vec![Shift {
                days: EVERY_DAY,
                from: hm(9, 0),
                to: hm(18, 0),
            }],
        )
        .unwrap();
        // Saturday 09:00 is 08:00 UTC (CET); Sunday 09:00 is 07:00 UTC (CEST).
        assert!(day.on_duty(utc(2024, 3, 30, 8, 0)));
        assert!(!day.on_duty(utc(2024, 3, 31, 6, 59)));
        assert!(day.on_duty(utc(2024, 3, 31, 7, 0)));
        assert_eq!(
            day.next_change(utc(2024, 3, 30, 17, 30)),
            Some(utc(2024, 3, 31, 7, 0))
        );

        // A night shift across the change lasts seven real hours.
        let night = Schedule::new(
            "Europe/Berlin",
            vec![Shift {
                days: EVERY_DAY,
                from: hm(22, 0),
                to: hm(6, 0),
            }],
        )
        .unwrap();
        assert_eq!(
            night.next_change(utc(2024, 3, 30, 20, 0)),
            Some(utc(2024, 3, 30, 21, 0))
        );
        assert_eq!(
            night.next_change(utc(2024, 3, 30, 21, 0)),
            Some(utc(2024, 3, 31, 4, 0))
        );

        // A shift starting in the skipped hour starts when the clock jumps past it.
        let skipped = Schedule::new(
            "Europe/Berlin",
            vec![Shift {
                days: EVERY_DAY,
                from: hm(2, 30),
                to: hm(5, 0),
            }],
        )
        .unwrap();
        assert!(!skipped.on_duty(utc(2024, 3, 31, 0, 59)));
        assert!(skipped.on_duty(utc(2024, 3, 31, 1, 0)));
        assert_eq!(
            skipped.next_change(utc(2024, 3, 31, 0, 0)),
            Some(utc(2024, 3, 31, 1, 0))
        );
    }

    #[test]
    fn the_repeated_hour_counts_twice() {
        // 2024-10-27: 03:00 CEST goes back to 02:00 CET at 01:00 UTC.
        let s = Schedule::new(
            "Europe/Berlin",
            vec![Shift {
                days: EVERY_DAY,
                from: hm(2, 30),
                to: hm(2, 45),
            }],
        )
        .unwrap();
        assert!(s.on_duty(utc(2024, 10, 27, 0, 30))); // 02:30 CEST
        assert!(s.on_duty(utc(2024, 10, 27, 1, 30))); // 02:30 CET
        assert_eq!(
            s.next_change(utc(2024, 10, 27, 0, 35)),
            Some(utc(2024, 10, 27, 0, 45))
        );
        assert_eq!(
            s.next_change(utc(2024, 10, 27, 0, 45)),
            Some(utc(2024, 10, 27, 1, 30))
        );
    }

    #[test]
    fn a_whole_week_never_changes() {
        let s = Schedule::new(
            "UTC",
            vec![Shift {
                days: EVERY_DAY,
                from: 0,
                to: DAY_MINUTES,
            }],
        )
        .unwrap();
        assert!(s.on_duty(utc(2024, 5, 14, 0, 0)));
        assert_eq!(s.next_change(utc(2024, 5, 14, 0, 0)), None);
        // Out of range instants are off duty, without panicking.
        assert!(!s.on_duty(i64::MAX));
        assert_eq!(s.next_change(i64::MAX), None);
    }

    #[test]
    fn bad_schedules_are_refused() {
        let shift = |days, from, to| Shift { days, from, to };
        assert_eq!(
            Schedule::new("Mars/Olympus_Mons", vec![shift(EVERY_DAY, 0, 60)]),
            Err(ScheduleError::UnknownZone {
                zone: "Mars/Olympus_Mons".into()
            })
        );
        assert_eq!(Schedule::new("UTC", vec![]), Err(ScheduleError::NoShifts));
        assert_eq!(
            Schedule::new("UTC", vec![shift([false; 7], 0, 60)]),
            Err(ScheduleError::NoDays { shift: 0 })
        );
        assert_eq!(
            Schedule::new(
                "UTC",
                vec![shift(EVERY_DAY, 0, 60), shift(EVERY_DAY, 60, 60)]
            ),
            Err(ScheduleError::Empty { shift: 1 })
        );
        assert_eq!(
            Schedule::new("UTC", vec![shift(EVERY_DAY, DAY_MINUTES, 60)]),
            Err(ScheduleError::OutOfDay {
                shift: 0,
                minutes: DAY_MINUTES
            })
        );
    }
}
