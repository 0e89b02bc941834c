//! `/api/v1/reports`: call-center figures per trunk number, per skill group and per agent, by
//! day, week (Monday to Sunday) or month, in a time zone.
//!
//! Every report takes `from` and `to` (an RFC 3339 time, or a date such as `2026-11-01`: `from`
//! is then that day's start and `to` the end of that day, both in `tz`), `period`
//! (`day`, `week`, `month`; default `day`), `tz` (an IANA name; default UTC, as the
//! configuration names no time zone of its own) and an optional filter. A range is at most
//! 400 days. Rows are one per period and key, for the keys with something to count in that
//! period, ordered by period then key, paged by an opaque `next_cursor` like the record search.
//! A call counts in the period it started in; only ended calls count. Ratios and averages are
//! `null` when their denominator is 0. The figures' exact meaning is in
//! `switchboard_engine::store::reports` and on each field below.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use switchboard_engine::store::reports::{self, Period, ReportRow, Span};

/// Who may read reports.
const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];
/// The longest range a report covers.
pub const MAX_DAYS: i64 = 400;
/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 200;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// The trunk report's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrunkQuery {
    /// Start, inclusive: RFC 3339 (`2026-11-01T00:00:00+08:00`) or a date (`2026-11-01`, its
    /// start in `tz`). Required; not after `to`, and at most 400 days before it.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    from: Option<String>,
    /// End, exclusive: RFC 3339, or a date (included: the report runs to its end in `tz`).
    /// Required.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    to: Option<String>,
    /// `day` (default), `week` (Monday first) or `month`.
    #[param(value_type = Option<crate::schema::query::PeriodCode>, inline)]
    period: Option<String>,
    /// An IANA time zone (`Asia/Shanghai`); default `UTC`.
    tz: Option<String>,
    /// Only this trunk number (中继号码); spaces are ignored.
    trunk_number: Option<String>,
    /// Page size: 1–1000, default 200.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, as returned: any other text is `400`.
    cursor: Option<String>,
}

/// The skill-group report's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SkillGroupQuery {
    /// Start, inclusive: RFC 3339 or a date. Required; not after `to`, and at most 400 days
    /// before it.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    from: Option<String>,
    /// End, exclusive: RFC 3339, or a date (included). Required.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    to: Option<String>,
    /// `day` (default), `week` (Monday first) or `month`.
    #[param(value_type = Option<crate::schema::query::PeriodCode>, inline)]
    period: Option<String>,
    /// An IANA time zone (`Asia/Shanghai`); default `UTC`.
    tz: Option<String>,
    /// Only this skill group.
    skill_group: Option<String>,
    /// Page size: 1–1000, default 200.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, as returned: any other text is `400`.
    cursor: Option<String>,
}

/// The agent report's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Start, inclusive: RFC 3339 or a date. Required; not after `to`, and at most 400 days
    /// before it.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    from: Option<String>,
    /// End, exclusive: RFC 3339, or a date (included). Required.
    #[param(required = true, value_type = crate::schema::query::ReportBound, inline)]
    to: Option<String>,
    /// `day` (default), `week` (Monday first) or `month`.
    #[param(value_type = Option<crate::schema::query::PeriodCode>, inline)]
    period: Option<String>,
    /// An IANA time zone (`Asia/Shanghai`); default `UTC`.
    tz: Option<String>,
    /// Only this agent.
    agent: Option<String>,
    /// Page size: 1–1000, default 200.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page, as returned: any other text is `400`.
    cursor: Option<String>,
}

/// What every report's query holds, checked.
struct Range {
    period: Period,
    tz_name: String,
    from_ms: i64,
    to_ms: i64,
    spans: Vec<Span>,
    limit: u32,
    cursor: Option<(String, String)>,
}

fn invalid(field: &str, value: &str, message: &str, extra: serde_json::Value) -> ApiError {
    let mut details = json!({ "field": field, "value": value });
    if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    ApiError::Invalid {
        message: format!("{field}: {message}"),
        details,
    }
}

/// `from` or `to`: an instant, or a date taken in `tz` (its start for `from`, its end for `to`).
fn bound(field: &str, value: Option<&str>, tz: &TimeZone, end: bool) -> Result<i64, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Err(invalid(
            field,
            "",
            "required: an RFC 3339 time or a date",
            json!({}),
        ));
    };
    let bad = || {
        invalid(
            field,
            value,
            "not an RFC 3339 time (2026-11-01T08:00:00+08:00) nor a date (2026-11-01)",
            json!({}),
        )
    };
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // Only a bare date: a civil time without an offset names no instant.
    let is_date = value.len() == 10 && value.bytes().filter(|&b| b == b'-').count() == 2;
    if !is_date {
        return Err(bad());
    }
    let date: Date = value.parse().map_err(|_| bad())?;
    let date = if end {
        date.checked_add(1.day()).map_err(|_| bad())?
    } else {
        date
    };
    Ok(date
        .to_zoned(tz.clone())
        .map_err(|_| bad())?
        .timestamp()
        .as_millisecond())
}

/// An opaque cursor: hex of `<period label>:<key>` of the last row returned.
fn encode_cursor(label: &str, key: &str) -> String {
    hex::encode(format!("{label}:{key}"))
}

fn decode_cursor(value: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "cursor: not a cursor this API returned",
            json!({ "field": "cursor", "value": value }),
        )
    };
    let text = String::from_utf8(hex::decode(value).map_err(|_| bad())?).map_err(|_| bad())?;
    let (label, key) = text.split_once(':').ok_or_else(bad)?;
    Ok((label.to_owned(), key.to_owned()))
}

impl Range {
    fn parse(
        from: Option<String>,
        to: Option<String>,
        period: Option<String>,
        tz: Option<String>,
        limit: Option<String>,
        cursor: Option<String>,
    ) -> Result<Range, ApiError> {
        let period = match period.as_deref() {
            None => Period::Day,
            Some(v) => Period::from_code(v).ok_or_else(|| {
                invalid(
                    "period",
                    v,
                    "unknown period",
                    json!({ "allowed": Period::ALL.map(Period::code) }),
                )
            })?,
        };
        let tz_name = tz.unwrap_or_else(|| "UTC".to_owned());
        let zone = TimeZone::get(&tz_name).map_err(|_| {
            invalid(
                "tz",
                &tz_name,
                "unknown time zone; expected an IANA name such as Asia/Shanghai",
                json!({}),
            )
        })?;
        let from_ms = bound("from", from.as_deref(), &zone, false)?;
        let to_ms = bound("to", to.as_deref(), &zone, true)?;
        if from_ms > to_ms {
            return Err(ApiError::Invalid {
                message: "from is after to".into(),
                details: json!({ "field": "from", "from_ms": from_ms, "to_ms": to_ms }),
            });
        }
        if to_ms - from_ms > MAX_DAYS * 86_400_000 {
            return Err(ApiError::Invalid {
                message: format!("a report covers at most {MAX_DAYS} days"),
                details: json!({ "field": "to", "max_days": MAX_DAYS }),
            });
        }
        let spans = reports::spans(from_ms, to_ms, period, &zone).map_err(|e| {
            invalid(
                "from",
                from.as_deref().unwrap_or_default(),
                &e.to_string(),
                json!({}),
            )
        })?;
        let limit = match limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<u32>() {
                Ok(n @ 1..=MAX_LIMIT) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        format!("limit: a page holds 1 to {MAX_LIMIT} rows"),
                        json!({ "field": "limit", "value": v, "min": 1, "max": MAX_LIMIT }),
                    ))
                }
            },
        };
        let cursor = cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(Range {
            period,
            tz_name,
            from_ms,
            to_ms,
            spans,
            limit,
            cursor,
        })
    }

    /// The page of `rows` after the cursor, as items, and the next cursor.
    fn page<T, I>(
        &self,
        rows: Vec<ReportRow<T>>,
        item: impl Fn(&Span, ReportRow<T>) -> I,
    ) -> (Vec<I>, Option<String>) {
        let after = |r: &ReportRow<T>| match &self.cursor {
            None => true,
            Some((label, key)) => {
                (self.spans[r.period].label.as_str(), r.key.as_str())
                    > (label.as_str(), key.as_str())
            }
        };
        let mut rows: Vec<ReportRow<T>> = rows.into_iter().filter(after).collect();
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = more
            .then(|| {
                rows.last()
                    .map(|r| encode_cursor(&self.spans[r.period].label, &r.key))
            })
            .flatten();
        let items = rows
            .into_iter()
            .map(|r| item(&self.spans[r.period], r))
            .collect();
        (items, next)
    }

    fn header(&self) -> (String, String, i64, i64) {
        (
            self.period.code().to_owned(),
            self.tz_name.clone(),
            self.from_ms,
            self.to_ms,
        )
    }
}

/// A page of a report of `$row`s.
macro_rules! report {
    ($name:ident, $row:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// `day`, `week` or `month`.
            pub period: String,
            /// The time zone periods are cut in.
            pub tz: String,
            /// The range covered, `[from_ms, to_ms)` in unix milliseconds.
            pub from_ms: i64,
            pub to_ms: i64,
            /// Ordered by period, then key.
            pub items: Vec<$row>,
            /// Pass as `cursor` for the next page; `null` on the last page.
            pub next_cursor: Option<String>,
        }

        impl $name {
            fn new(range: &Range, items: Vec<$row>, next_cursor: Option<String>) -> $name {
                let (period, tz, from_ms, to_ms) = range.header();
                $name {
                    period,
                    tz,
                    from_ms,
                    to_ms,
                    items,
                    next_cursor,
                }
            }
        }
    };
}

report!(TrunkReport, TrunkRow, "A page of the trunk-number report.");
report!(
    SkillGroupReport,
    SkillGroupRow,
    "A page of the skill-group report."
);
report!(AgentReport, AgentRow, "A page of the agent report.");

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn average(total: i64, d: u64) -> Option<i64> {
    (d > 0).then(|| (total as f64 / d as f64).round() as i64)
}

/// One trunk number in one period.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrunkRow {
    /// The local date the period starts on (a week's Monday, a month's first day).
    pub period_start: String,
    /// The period, clipped to the report's range: `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub trunk_number: String,
    /// Inbound calls on this trunk number (Total inbound calls).
    pub inbound_calls: u64,
    /// Inbound calls lost because no inbound route matched (呼入路由未匹配呼损数, Inbound routing
    /// not assigned lost calls).
    pub inbound_route_none_calls: u64,
    /// Inbound calls answered.
    pub answered: u64,
    /// Inbound calls not answered, by missed-call reason code; they sum to
    /// `inbound_calls - answered`.
    pub lost_by_reason: BTreeMap<String, u64>,
    /// Outbound calls through this trunk number.
    pub outbound_calls: u64,
    /// Outbound calls the customer answered.
    pub outbound_answered: u64,
}

/// One skill group in one period.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct SkillGroupRow {
    /// The local date the period starts on.
    pub period_start: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub skill_group: String,
    /// Calls into the group (No. of Inbound Skill Groups): records whose skill group is this one.
    pub inbound_toQueue_calls: u64,
    /// Calls into the group no agent served (No. of lost calls in queue).
    pub inbound_toQueue_loss_calls: u64,
    /// Calls from a customer number that had already called into this group earlier in the
    /// same period (per period and group: calls − distinct customer numbers).
    pub repeat_calls: u64,
    /// `repeat_calls / inbound_toQueue_calls`.
    pub repeat_call_rate: Option<f64>,
    /// Talk time / `inbound_toQueue_calls`, in milliseconds.
    pub avg_talk_ms: Option<i64>,
    /// Calls an agent answered within the group's service-level threshold of queue wait /
    /// `inbound_toQueue_calls`; `null` also when the group is not configured any more.
    pub service_level: Option<f64>,
    /// The threshold `service_level` is measured against, from the configuration.
    pub service_level_threshold_ms: Option<i64>,
    /// Queue wait / `inbound_toQueue_calls`, in milliseconds.
    pub avg_queue_wait_ms: Option<i64>,
}

/// One agent in one period.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentRow {
    /// The local date the period starts on.
    pub period_start: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub agent: String,
    /// Milliseconds in each state within the period: `idle`, `busy`, `ringing`, `talking`,
    /// `wrap_up`, and each break under `break:<the admin's break name>` (`break:Lunch`). Only
    /// states the agent was in appear; logged-out time is not counted; a state still going
    /// counts up to now.
    pub time_in_state_ms: BTreeMap<String, i64>,
    /// Calls that rang this agent (agent sub-records).
    pub calls_offered: u64,
    /// Of those, the ones the agent answered.
    pub calls_answered: u64,
    /// Talk time of the answered calls, in milliseconds.
    pub talk_ms: i64,
    /// Calls the agent placed out.
    pub outbound_calls: u64,
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Calls per trunk number (中继号码报表).
#[utoipa::path(
    get, path = "/api/v1/reports/trunks", tag = "reports",
    params(TrunkQuery),
    responses(
        (status = 200, description = "A page of rows, one per period and trunk number", body = TrunkReport),
        (status = 422, description = "A bad date, period or time zone, from after to, or a range over 400 days", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn trunks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TrunkQuery>,
) -> Result<Json<TrunkReport>, ApiError> {
    caller.require(READERS)?;
    let range = Range::parse(q.from, q.to, q.period, q.tz, q.limit, q.cursor)?;
    let trunk = q
        .trunk_number
        .map(|v| v.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|v| !v.is_empty());
    let rows = state
        .store
        .trunk_report(&range.spans, trunk.as_deref())
        .await?;
    let (items, next) = range.page(rows, |s, r| TrunkRow {
        period_start: s.label.clone(),
        from_ms: s.start_ms,
        to_ms: s.end_ms,
        trunk_number: r.key,
        inbound_calls: r.counts.inbound_calls,
        inbound_route_none_calls: r.counts.inbound_route_none_calls,
        answered: r.counts.answered,
        lost_by_reason: r.counts.lost_by_reason,
        outbound_calls: r.counts.outbound_calls,
        outbound_answered: r.counts.outbound_answered,
    });
    Ok(Json(TrunkReport::new(&range, items, next)))
}

/// Calls per skill group (技能组): calls into the group, lost, repeat calls, talk, service level,
/// queue wait.
#[utoipa::path(
    get, path = "/api/v1/reports/skill-groups", tag = "reports",
    params(SkillGroupQuery),
    responses(
        (status = 200, description = "A page of rows, one per period and skill group", body = SkillGroupReport),
        (status = 422, description = "A bad date, period or time zone, from after to, or a range over 400 days", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn skill_groups(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SkillGroupQuery>,
) -> Result<Json<SkillGroupReport>, ApiError> {
    caller.require(READERS)?;
    let range = Range::parse(q.from, q.to, q.period, q.tz, q.limit, q.cursor)?;
    let thresholds: BTreeMap<String, i64> = state
        .config
        .iter()
        .flat_map(|c| c.acd.queues.iter())
        .map(|q| (q.id.0.clone(), q.service_level.as_millis() as i64))
        .collect();
    let rows = state
        .store
        .skill_group_report(&range.spans, text(q.skill_group).as_deref(), &thresholds)
        .await?;
    let (items, next) = range.page(rows, |s, r| {
        let c = r.counts;
        SkillGroupRow {
            period_start: s.label.clone(),
            from_ms: s.start_ms,
            to_ms: s.end_ms,
            service_level_threshold_ms: thresholds.get(&r.key).copied(),
            skill_group: r.key,
            inbound_toQueue_calls: c.calls,
            inbound_toQueue_loss_calls: c.loss_calls,
            repeat_calls: c.repeat_calls,
            repeat_call_rate: ratio(c.repeat_calls, c.calls),
            avg_talk_ms: average(c.talk_ms, c.calls),
            service_level: c.within_service_level.and_then(|n| ratio(n, c.calls)),
            avg_queue_wait_ms: average(c.queue_wait_ms, c.calls),
        }
    });
    Ok(Json(SkillGroupReport::new(&range, items, next)))
}

/// Per agent (座席): time in each state, calls offered and answered, talk time, calls out.
#[utoipa::path(
    get, path = "/api/v1/reports/agents", tag = "reports",
    params(AgentQuery),
    responses(
        (status = 200, description = "A page of rows, one per period and agent", body = AgentReport),
        (status = 422, description = "A bad date, period or time zone, from after to, or a range over 400 days", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> Result<Json<AgentReport>, ApiError> {
    caller.require(READERS)?;
    let range = Range::parse(q.from, q.to, q.period, q.tz, q.limit, q.cursor)?;
    let rows = state
        .store
        .agent_report(
            &range.spans,
            text(q.agent).as_deref(),
            crate::clock::unix_ms(),
        )
        .await?;
    let (items, next) = range.page(rows, |s, r| AgentRow {
        period_start: s.label.clone(),
        from_ms: s.start_ms,
        to_ms: s.end_ms,
        agent: r.key,
        time_in_state_ms: r.counts.time_in_state_ms,
        calls_offered: r.counts.calls_offered,
        calls_answered: r.counts.calls_answered,
        talk_ms: r.counts.talk_ms,
        outbound_calls: r.counts.outbound_calls,
    });
    Ok(Json(AgentReport::new(&range, items, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(from: &str, to: &str, period: &str, tz: &str) -> Result<Range, ApiError> {
        Range::parse(
            Some(from.into()),
            Some(to.into()),
            Some(period.into()),
            Some(tz.into()),
            None,
            None,
        )
    }

    #[test]
    fn dates_are_whole_days_in_the_time_zone() {
        let r = parse("2026-11-01", "2026-11-02", "day", "Asia/Shanghai").unwrap();
        // 2026-11-01 00:00 +08:00 to 2026-11-03 00:00 +08:00.
        assert_eq!(r.from_ms, 1_793_462_400_000);
        assert_eq!(r.to_ms - r.from_ms, 2 * 86_400_000);
        assert_eq!(r.spans.len(), 2);
    }

    #[test]
    fn bad_queries_are_refused_with_the_field() {
        for (from, to, period, tz, field) in [
            ("yesterday", "2026-11-02", "day", "UTC", "from"),
            ("2026-11-01T08:00:00", "2026-11-02", "day", "UTC", "from"),
            ("2026-11-01", "2026-13-02", "day", "UTC", "to"),
            ("2026-11-01", "2026-11-02", "hour", "UTC", "period"),
            ("2026-11-01", "2026-11-02", "day", "Mars/Olympus", "tz"),
            ("2026-11-03", "2026-11-01", "day", "UTC", "from"),
            ("2025-01-01", "2026-11-01", "month", "UTC", "to"),
        ] {
            let Err(ApiError::Invalid { details, .. }) = parse(from, to, period, tz) else {
                panic!("{from} {to} {period} {tz} accepted");
            };
            assert_eq!(details["field"], field, "{details}");
        }
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(
            decode_cursor(&encode_cursor("2026-11-01", "a:b")).unwrap(),
            ("2026-11-01".to_owned(), "a:b".to_owned())
        );
        assert!(decode_cursor("zz").is_err());
    }
}
