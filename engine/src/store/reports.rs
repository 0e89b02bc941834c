//! The agent-state log and the reports read from the records: per trunk number (中继号码报表),
//! per skill group (技能组) and per agent (座席), by day, week or month in a time zone — the SQL
//! behind `GET /api/v1/reports/*`.
//!
//! ## The agent-state log
//! The endpoint raises an [`AcdEvent::AgentState`] each time an agent's state changes (and every
//! agent's first state at start-up). [`Store::record_acd_event`] closes the agent's open row of
//! `agent_states` at the event's time and opens the next one, in one transaction, so an agent
//! has at most one open row. Rows a crash (or a stop) left open are closed at start-up by
//! [`Store::repair_open_agent_states`] at the last time the engine is known to have written
//! anything: the log claims no state nobody saw.
//!
//! ## Periods
//! A report covers `[from, to)` cut into [`Span`]s: calendar days, weeks starting on Monday, or
//! months of the report's time zone, the first and last clipped to the range. A call counts in
//! the period it started in; a state's time is split across the periods it overlaps.
//!
//! ## What is counted
//! Only ended calls (a call in progress counts once its record is closed). See each counts
//! type for the exact meaning of every figure. SQLite adds up each period over the start-time
//! indexes, so a report reads a few rows per period and key, never every record: over 400 000
//! records and 1.6 million agent states, a 400-day report by day takes well under a second
//! to a little over one (agents).
use super::{Store, StoreError};
use crate::cdr::{CallResult, Direction, MissedReason};
use crate::events::AcdEvent;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::BTreeMap;

/// How a report's range is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    pub fn code(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn from_code(code: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// One period of a report: `[start_ms, end_ms)` in unix milliseconds, clipped to the report's
/// range. `label` is the local date the calendar period starts on (the Monday of a week, the
/// first of a month), e.g. `2026-11-01`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The periods of `[from_ms, to_ms)` in `tz`, in order and contiguous; empty when the range is.
/// Fails only for instants outside the calendar's range (years beyond ±9999).
pub fn spans(
    from_ms: i64,
    to_ms: i64,
    period: Period,
    tz: &TimeZone,
) -> Result<Vec<Span>, jiff::Error> {
    let mut out = Vec::new();
    if from_ms >= to_ms {
        return Ok(out);
    }
    let first = Timestamp::from_millisecond(from_ms)?
        .to_zoned(tz.clone())
        .date();
    let mut start = match period {
        Period::Day => first,
        Period::Week => {
            first.checked_sub(i64::from(first.weekday().to_monday_zero_offset()).days())?
        }
        Period::Month => first.first_of_month(),
    };
    loop {
        let next = match period {
            Period::Day => start.checked_add(1.day())?,
            Period::Week => start.checked_add(1.week())?,
            Period::Month => start.checked_add(1.month())?,
        };
        // Midnight, or the first instant of the day where a time-zone change skips midnight.
        let s = start.to_zoned(tz.clone())?.timestamp().as_millisecond();
        if s >= to_ms {
            break;
        }
        let e = next.to_zoned(tz.clone())?.timestamp().as_millisecond();
        out.push(Span {
            label: start.to_string(),
            start_ms: s.max(from_ms),
            end_ms: e.min(to_ms),
        });
        start = next;
    }
    Ok(out)
}

/// The whole range the spans cover.
fn range(spans: &[Span]) -> Option<(i64, i64)> {
    Some((spans.first()?.start_ms, spans.last()?.end_ms))
}

/// One row of a report: a period ([`Span`] index) and a key (trunk number, skill group, agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow<T> {
    pub period: usize,
    pub key: String,
    pub counts: T,
}

fn rows<T>(map: BTreeMap<(usize, String), T>) -> Vec<ReportRow<T>> {
    map.into_iter()
        .map(|((period, key), counts)| ReportRow {
            period,
            key,
            counts,
        })
        .collect()
}

/// A trunk number's calls in one period (inbound and outbound main records with that
/// `trunk_number`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrunkCounts {
    /// Inbound records (`inbound_calls`).
    pub inbound_calls: u64,
    /// Inbound records whose missed-call reason is `inbound_route_not_matched`
    /// (`inbound_route_none_calls`, 呼入路由未匹配呼损数).
    pub inbound_route_none_calls: u64,
    /// Inbound records with result `answered`.
    pub answered: u64,
    /// Inbound records not answered, by missed-call reason code (`unknown` when none is stored);
    /// their sum is `inbound_calls - answered`.
    pub lost_by_reason: BTreeMap<String, u64>,
    /// Outbound records.
    pub outbound_calls: u64,
    /// Outbound records with result `answered` (the customer picked up).
    pub outbound_answered: u64,
}

/// A skill group's calls in one period: main records whose `queue` is the group (the group the
/// call was last queued to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkillGroupCounts {
    /// Calls into the group (`inbound_toQueue_calls`).
    pub calls: u64,
    /// Calls into the group that no agent served (no `agent` on the record)
    /// (`inbound_toQueue_loss_calls`).
    pub loss_calls: u64,
    /// Calls from a customer number that had already called into the same group earlier in
    /// the same period: per period and group, calls minus distinct customer numbers (an empty
    /// customer number never repeats).
    pub repeat_calls: u64,
    /// Talk time summed over the calls (the record's talk time, else answer to end).
    pub talk_ms: i64,
    /// Queue wait summed over the calls.
    pub queue_wait_ms: i64,
    /// Calls an agent answered within the group's service-level threshold of queue wait;
    /// `None` when the group's threshold is not known (a group no longer configured).
    pub within_service_level: Option<u64>,
}

/// An agent's period: time in each state and the agent's calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentCounts {
    /// Milliseconds in each state within the period, keyed by state code (`idle`, `busy`,
    /// `ringing`, `talking`, `wrap_up`) or `break:<the admin's break name>`; logged-out time is
    /// not counted. A state still going counts up to now.
    pub time_in_state_ms: BTreeMap<String, i64>,
    /// Agent legs (子话单 of kind `agent`) that rang this agent.
    pub calls_offered: u64,
    /// Of those, the ones the agent answered.
    pub calls_answered: u64,
    /// Talk time of the answered legs that have ended.
    pub talk_ms: i64,
    /// Outbound main records the agent placed (the record's `agent`).
    pub outbound_calls: u64,
}

/// A row of the agent-state log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStateRow {
    pub agent: String,
    pub state: String,
    pub break_name: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

impl AgentStateRow {
    /// The report's key: the state code, or `break:<name>` for a break.
    fn key(&self) -> String {
        state_key(&self.state, self.break_name.clone())
    }
}

impl Store {
    /// Stores an agent or queue change: an agent's state is logged (the open row closed, the
    /// new one opened, in one transaction); a queue's change is not kept.
    pub async fn record_acd_event(&self, event: &AcdEvent) -> Result<(), StoreError> {
        let AcdEvent::AgentState {
            agent,
            state,
            break_name,
            at_ms,
        } = event
        else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE agent_states SET ended_at_ms = max(started_at_ms, ?) \
             WHERE agent = ? AND ended_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(agent)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO agent_states (agent, state, break_name, started_at_ms) VALUES (?, ?, ?, ?)",
        )
        .bind(agent)
        .bind(*state)
        .bind(break_name)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the agent states a crash or a stop left open, at the last time the engine is
    /// known to have written (the latest state change or call-record write), never later than
    /// `now_ms` nor before the state began. Returns how many rows were closed. Run at start-up,
    /// before the engine raises the agents' first states.
    pub async fn repair_open_agent_states(&self, now_ms: i64) -> Result<u64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT max(t) FROM ( \
               SELECT max(started_at_ms) AS t FROM agent_states \
               UNION ALL SELECT max(ended_at_ms) FROM agent_states \
               UNION ALL SELECT max(last_seen_ms) FROM cdrs)",
        )
        .fetch_one(&self.pool)
        .await?;
        let end = last.unwrap_or(now_ms).min(now_ms);
        self.close_open_agent_states(end).await
    }

    /// End every agent's open state row at `at_ms` (a graceful stop); the rows closed.
    pub async fn close_open_agent_states(&self, at_ms: i64) -> Result<u64, StoreError> {
        let closed = sqlx::query(
            "UPDATE agent_states SET ended_at_ms = max(started_at_ms, ?) WHERE ended_at_ms IS NULL",
        )
        .bind(at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(closed)
    }

    /// The agent-state rows overlapping `[from_ms, to_ms)`, oldest first (by start, then id).
    pub async fn agent_states(
        &self,
        from_ms: i64,
        to_ms: i64,
        agent: Option<&str>,
    ) -> Result<Vec<AgentStateRow>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT agent, state, break_name, started_at_ms, ended_at_ms FROM agent_states \
             WHERE started_at_ms < ",
        );
        q.push_bind(to_ms)
            .push(" AND (ended_at_ms IS NULL OR ended_at_ms > ")
            .push_bind(from_ms)
            .push(")");
        if let Some(a) = agent {
            q.push(" AND agent = ").push_bind(a.to_owned());
        }
        q.push(" ORDER BY started_at_ms, id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AgentStateRow {
                    agent: r.try_get("agent")?,
                    state: r.try_get("state")?,
                    break_name: r.try_get("break_name")?,
                    started_at_ms: r.try_get("started_at_ms")?,
                    ended_at_ms: r.try_get("ended_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The trunk-number report: one row per period and trunk number with calls, ordered by
    /// period then trunk number. Each period is counted by SQLite, over the start-time index.
    pub async fn trunk_report(
        &self,
        spans: &[Span],
        trunk_number: Option<&str>,
    ) -> Result<Vec<ReportRow<TrunkCounts>>, StoreError> {
        let mut out: BTreeMap<(usize, String), TrunkCounts> = BTreeMap::new();
        for (p, span) in spans.iter().enumerate() {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT trunk_number, direction, result, missed_reason, count(*) AS n FROM cdrs \
                 WHERE trunk_number IS NOT NULL AND ended_at_ms IS NOT NULL AND started_at_ms >= ",
            );
            q.push_bind(span.start_ms)
                .push(" AND started_at_ms < ")
                .push_bind(span.end_ms);
            if let Some(t) = trunk_number {
                q.push(" AND trunk_number = ").push_bind(t.to_owned());
            }
            q.push(" GROUP BY trunk_number, direction, result, missed_reason");
            for r in q.build().fetch_all(&self.pool).await? {
                let n = r.try_get::<i64, _>("n")?.max(0) as u64;
                let direction: String = r.try_get("direction")?;
                let answered = r.try_get::<Option<String>, _>("result")?.as_deref()
                    == Some(CallResult::Answered.code());
                let reason: Option<String> = r.try_get("missed_reason")?;
                let c = out.entry((p, r.try_get("trunk_number")?)).or_default();
                if direction == Direction::Inbound.code() {
                    c.inbound_calls += n;
                    if answered {
                        c.answered += n;
                    } else {
                        let reason = reason.unwrap_or_else(|| "unknown".to_owned());
                        if reason == MissedReason::InboundRouteNotMatched.code() {
                            c.inbound_route_none_calls += n;
                        }
                        *c.lost_by_reason.entry(reason).or_default() += n;
                    }
                } else {
                    c.outbound_calls += n;
                    if answered {
                        c.outbound_answered += n;
                    }
                }
            }
        }
        Ok(rows(out))
    }

    /// The skill-group report: one row per period and group with calls, ordered by period then
    /// group. `service_levels` holds each configured group's threshold in milliseconds.
    pub async fn skill_group_report(
        &self,
        spans: &[Span],
        group: Option<&str>,
        service_levels: &BTreeMap<String, i64>,
    ) -> Result<Vec<ReportRow<SkillGroupCounts>>, StoreError> {
        let mut out: BTreeMap<(usize, String), SkillGroupCounts> = BTreeMap::new();
        for (p, span) in spans.iter().enumerate() {
            // Repeat calls: calls with a customer number, minus the distinct numbers.
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT queue, count(*) AS calls, sum(agent IS NULL) AS loss, \
                 count(nullif(customer_number, '')) \
                   - count(DISTINCT nullif(customer_number, '')) AS repeats, \
                 sum(max(coalesce(talk_ms, ended_at_ms - answered_at_ms, 0), 0)) AS talk, \
                 sum(max(coalesce(queue_wait_ms, 0), 0)) AS wait, \
                 sum(agent IS NOT NULL AND answered_at_ms IS NOT NULL \
                     AND coalesce(queue_wait_ms, 0) <= ",
            );
            if service_levels.is_empty() {
                q.push("-1");
            } else {
                q.push("CASE queue");
                for (g, t) in service_levels {
                    q.push(" WHEN ")
                        .push_bind(g.clone())
                        .push(" THEN ")
                        .push_bind(*t);
                }
                q.push(" ELSE -1 END");
            }
            q.push(
                ") AS within FROM cdrs \
                 WHERE queue IS NOT NULL AND ended_at_ms IS NOT NULL AND started_at_ms >= ",
            );
            q.push_bind(span.start_ms)
                .push(" AND started_at_ms < ")
                .push_bind(span.end_ms);
            if let Some(g) = group {
                q.push(" AND queue = ").push_bind(g.to_owned());
            }
            q.push(" GROUP BY queue");
            for r in q.build().fetch_all(&self.pool).await? {
                let queue: String = r.try_get("queue")?;
                let count = |col: &str| -> Result<u64, sqlx::Error> {
                    Ok(r.try_get::<Option<i64>, _>(col)?.unwrap_or(0).max(0) as u64)
                };
                let counts = SkillGroupCounts {
                    calls: count("calls")?,
                    loss_calls: count("loss")?,
                    repeat_calls: count("repeats")?,
                    talk_ms: r.try_get::<Option<i64>, _>("talk")?.unwrap_or(0),
                    queue_wait_ms: r.try_get::<Option<i64>, _>("wait")?.unwrap_or(0),
                    within_service_level: match service_levels.contains_key(&queue) {
                        true => Some(count("within")?),
                        false => None,
                    },
                };
                out.insert((p, queue), counts);
            }
        }
        Ok(rows(out))
    }

    /// The agent report: one row per period and agent with any state time or call, ordered by
    /// period then agent. States still going count up to `now_ms`.
    ///
    /// Each period's states are summed by SQLite over the rows that began in it; the few that
    /// run on past its end (at most one per agent) and the ones begun before the report's range
    /// are spread over the later periods here.
    pub async fn agent_report(
        &self,
        spans: &[Span],
        agent: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<ReportRow<AgentCounts>>, StoreError> {
        let Some((lo, hi)) = range(spans) else {
            return Ok(Vec::new());
        };
        let mut out: BTreeMap<(usize, String), AgentCounts> = BTreeMap::new();
        // The end of a row for the report: its end, or now while it goes on.
        let end_of =
            |s: &AgentStateRow| s.ended_at_ms.unwrap_or(now_ms.max(s.started_at_ms)).min(hi);
        // States begun before the range and still going at its start.
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT agent, state, break_name, started_at_ms, ended_at_ms FROM agent_states \
             WHERE started_at_ms < ",
        );
        q.push_bind(lo)
            .push(" AND (ended_at_ms IS NULL OR ended_at_ms > ")
            .push_bind(lo)
            .push(")");
        if let Some(a) = agent {
            q.push(" AND agent = ").push_bind(a.to_owned());
        }
        for s in q.build().fetch_all(&self.pool).await? {
            let s = state_row(&s)?;
            let end = end_of(&s);
            spread(&mut out, spans, 0, &s, lo, end);
        }
        for (p, span) in spans.iter().enumerate() {
            let (s, e) = (span.start_ms, span.end_ms);
            // The part of each state begun in this period that lies in it.
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT agent, state, break_name, \
                 sum(min(coalesce(ended_at_ms, max(",
            );
            q.push_bind(now_ms)
                .push(", started_at_ms)), ")
                .push_bind(e)
                .push(
                    ") - started_at_ms) AS ms FROM agent_states \
                     WHERE state != 'logged_out' AND started_at_ms >= ",
                )
                .push_bind(s)
                .push(" AND started_at_ms < ")
                .push_bind(e);
            if let Some(a) = agent {
                q.push(" AND agent = ").push_bind(a.to_owned());
            }
            q.push(" GROUP BY agent, state, break_name");
            for r in q.build().fetch_all(&self.pool).await? {
                let ms = r.try_get::<Option<i64>, _>("ms")?.unwrap_or(0);
                if ms <= 0 {
                    continue;
                }
                let key = state_key(&r.try_get::<String, _>("state")?, r.try_get("break_name")?);
                *out.entry((p, r.try_get("agent")?))
                    .or_default()
                    .time_in_state_ms
                    .entry(key)
                    .or_default() += ms;
            }
            // The rest of the states begun in this period and going on past its end.
            if p + 1 < spans.len() {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "SELECT agent, state, break_name, started_at_ms, ended_at_ms \
                     FROM agent_states WHERE state != 'logged_out' AND started_at_ms >= ",
                );
                q.push_bind(s)
                    .push(" AND started_at_ms < ")
                    .push_bind(e)
                    .push(" AND (ended_at_ms IS NULL OR ended_at_ms > ")
                    .push_bind(e)
                    .push(")");
                if let Some(a) = agent {
                    q.push(" AND agent = ").push_bind(a.to_owned());
                }
                for r in q.build().fetch_all(&self.pool).await? {
                    let row = state_row(&r)?;
                    let end = end_of(&row);
                    spread(&mut out, spans, p + 1, &row, e, end);
                }
            }
            // Calls offered and answered: the agent legs begun in this period. The literal
            // `kind = 'agent'` lets SQLite use the partial index of agent legs.
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT agent, count(*) AS offered, count(answered_at_ms) AS answered, \
                 sum(CASE WHEN answered_at_ms IS NOT NULL AND ended_at_ms IS NOT NULL \
                     THEN max(ended_at_ms - answered_at_ms, 0) ELSE 0 END) AS talk \
                 FROM cdr_legs WHERE kind = 'agent' AND agent IS NOT NULL AND started_at_ms >= ",
            );
            q.push_bind(s).push(" AND started_at_ms < ").push_bind(e);
            if let Some(a) = agent {
                q.push(" AND agent = ").push_bind(a.to_owned());
            }
            q.push(" GROUP BY agent");
            for r in q.build().fetch_all(&self.pool).await? {
                let c = out.entry((p, r.try_get("agent")?)).or_default();
                c.calls_offered += r.try_get::<i64, _>("offered")?.max(0) as u64;
                c.calls_answered += r.try_get::<i64, _>("answered")?.max(0) as u64;
                c.talk_ms += r.try_get::<Option<i64>, _>("talk")?.unwrap_or(0);
            }
            // Calls out: outbound main records the agent placed.
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT agent, count(*) AS n FROM cdrs \
                 WHERE direction = 'outbound' AND agent IS NOT NULL AND ended_at_ms IS NOT NULL \
                 AND started_at_ms >= ",
            );
            q.push_bind(s).push(" AND started_at_ms < ").push_bind(e);
            if let Some(a) = agent {
                q.push(" AND agent = ").push_bind(a.to_owned());
            }
            q.push(" GROUP BY agent");
            for r in q.build().fetch_all(&self.pool).await? {
                out.entry((p, r.try_get("agent")?))
                    .or_default()
                    .outbound_calls += r.try_get::<i64, _>("n")?.max(0) as u64;
            }
        }
        Ok(rows(out))
    }
}

/// The report's key of a state: its code, or `break:<name>` for a break.
fn state_key(state: &str, break_name: Option<String>) -> String {
    match (state, break_name) {
        ("break", Some(name)) => format!("break:{name}"),
        (state, _) => state.to_owned(),
    }
}

fn state_row(r: &sqlx::sqlite::SqliteRow) -> Result<AgentStateRow, sqlx::Error> {
    Ok(AgentStateRow {
        agent: r.try_get("agent")?,
        state: r.try_get("state")?,
        break_name: r.try_get("break_name")?,
        started_at_ms: r.try_get("started_at_ms")?,
        ended_at_ms: r.try_get("ended_at_ms")?,
    })
}

/// Adds `[start, end)` of state `s` to the periods it overlaps, from span `first` on.
fn spread(
    out: &mut BTreeMap<(usize, String), AgentCounts>,
    spans: &[Span],
    first: usize,
    s: &AgentStateRow,
    start: i64,
    end: i64,
) {
    if s.state == "logged_out" {
        return;
    }
    let key = s.key();
    for (p, span) in spans.iter().enumerate().skip(first) {
        if span.start_ms >= end {
            break;
        }
        let ms = end.min(span.end_ms) - start.max(span.start_ms);
        if ms > 0 {
            *out.entry((p, s.agent.clone()))
                .or_default()
                .time_in_state_ms
                .entry(key.clone())
                .or_default() += ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn labels(spans: &[Span]) -> Vec<&str> {
        spans.iter().map(|s| s.label.as_str()).collect()
    }

    #[test]
    fn days_weeks_and_months_start_at_local_midnight_and_are_clipped_to_the_range() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        // 2026-11-01 is a Sunday. Local Shanghai days start at 16:00 UTC the day before.
        let (from, to) = (ms("2026-10-31T16:00:00Z"), ms("2026-11-03T16:00:00Z"));
        let days = spans(from, to, Period::Day, &shanghai).unwrap();
        assert_eq!(labels(&days), ["2026-11-01", "2026-11-02", "2026-11-03"]);
        assert_eq!(days[1].start_ms, ms("2026-11-01T16:00:00Z"));
        let weeks = spans(from, to, Period::Week, &shanghai).unwrap();
        // The Sunday belongs to the week that began on Monday 26 October, clipped to `from`.
        assert_eq!(labels(&weeks), ["2026-10-26", "2026-11-02"]);
        assert_eq!(
            (weeks[0].start_ms, weeks[0].end_ms),
            (from, ms("2026-11-01T16:00:00Z"))
        );
        assert_eq!(weeks[1].end_ms, to);
        let months = spans(
            from,
            ms("2027-01-10T00:00:00Z"),
            Period::Month,
            &TimeZone::UTC,
        )
        .unwrap();
        assert_eq!(
            labels(&months),
            ["2026-10-01", "2026-11-01", "2026-12-01", "2027-01-01"]
        );
        assert_eq!(months[2].start_ms, ms("2026-12-01T00:00:00Z"));
        assert!(spans(to, from, Period::Day, &shanghai).unwrap().is_empty());
    }

    #[test]
    fn a_day_of_a_clock_change_is_23_hours_long() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let days = spans(
            ms("2026-03-28T23:00:00Z"),
            ms("2026-03-30T22:00:00Z"),
            Period::Day,
            &paris,
        )
        .unwrap();
        assert_eq!(labels(&days), ["2026-03-29", "2026-03-30"]);
        assert_eq!(days[0].end_ms - days[0].start_ms, 23 * 3_600_000);
    }

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sb.db", dir.path().display());
        (dir, Store::open(&url).await.unwrap())
    }

    fn state(agent: &str, state: &'static str, break_name: Option<&str>, at_ms: i64) -> AcdEvent {
        AcdEvent::AgentState {
            agent: agent.into(),
            state,
            break_name: break_name.map(Into::into),
            at_ms,
        }
    }

    #[tokio::test]
    async fn each_state_closes_the_last_and_a_crash_is_repaired_at_the_last_write() {
        let (_dir, store) = temp_store().await;
        store
            .record_acd_event(&state("a1", "idle", None, 1_000))
            .await
            .unwrap();
        store
            .record_acd_event(&state("a2", "idle", None, 1_500))
            .await
            .unwrap();
        store
            .record_acd_event(&state("a1", "break", Some("Lunch"), 4_000))
            .await
            .unwrap();
        store
            .record_acd_event(&AcdEvent::QueueState {
                queue: "sales".into(),
                waiting: 1,
                longest_wait_ms: Some(0),
                at_ms: 4_500,
            })
            .await
            .unwrap();
        let rows = store.agent_states(0, i64::MAX, None).await.unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.agent.as_str(), r.key(), r.started_at_ms, r.ended_at_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a1", "idle".to_owned(), 1_000, Some(4_000)),
                ("a2", "idle".to_owned(), 1_500, None),
                ("a1", "break:Lunch".to_owned(), 4_000, None),
            ]
        );
        // The engine's last write was the break at 4 000: that is where the open rows end.
        assert_eq!(store.repair_open_agent_states(99_000).await.unwrap(), 2);
        let rows = store.agent_states(0, i64::MAX, Some("a2")).await.unwrap();
        assert_eq!(rows[0].ended_at_ms, Some(4_000));
        assert_eq!(store.repair_open_agent_states(99_000).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn state_time_is_split_at_period_edges_and_a_state_going_on_counts_to_now() {
        let (_dir, store) = temp_store().await;
        let day = 86_400_000;
        store
            .record_acd_event(&state("a1", "idle", None, day - 1_000))
            .await
            .unwrap();
        store
            .record_acd_event(&state("a1", "talking", None, day + 2_000))
            .await
            .unwrap();
        store
            .record_acd_event(&state("a1", "logged_out", None, day + 5_000))
            .await
            .unwrap();
        store
            .record_acd_event(&state("a2", "busy", None, day + 10_000))
            .await
            .unwrap();
        let days = spans(0, 2 * day, Period::Day, &TimeZone::UTC).unwrap();
        let rows = store.agent_report(&days, None, day + 12_000).await.unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.period, r.key.as_str(), r.counts.time_in_state_ms.clone()))
            .collect();
        let map = |v: &[(&str, i64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(
            got,
            vec![
                (0, "a1", map(&[("idle", 1_000)])),
                (1, "a1", map(&[("idle", 2_000), ("talking", 3_000)])),
                (1, "a2", map(&[("busy", 2_000)])),
            ]
        );
    }
}
