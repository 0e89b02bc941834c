//! `/api/v1/cdrs`: searching call records, one record, the CSV export, and marking a record
//! for follow-up (标记).
//!
//! Filters are the same for the search and the export; each set filter narrows the result (AND).
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchboard_engine::cdr::{self, CallResult, CallType, HangupBy, Lang, MissedReason};
use switchboard_engine::store::marks::CdrMark;
use switchboard_engine::store::search::{CdrCursor, CdrFilter};
use switchboard_engine::store::{CdrRow, Store};

/// Who may read call records.
const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];
/// Who may mark and unmark records: the people who follow calls up.
const MARKERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Agent];
/// The longest note a mark takes, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 500;
/// Records read from the store per chunk of the CSV export.
const EXPORT_PAGE: u32 = 200;

/// The search's query string. Every value arrives as text and is parsed here, so a bad value
/// is answered with the field it came in and what would have been accepted; an empty value is
/// the parameter not given.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CdrQuery {
    /// Started at or after: unix milliseconds or RFC 3339 (`2026-11-21T08:00:00+08:00`).
    #[param(value_type = Option<crate::schema::query::Instant>, inline)]
    from: Option<String>,
    /// Started before: unix milliseconds or RFC 3339.
    #[param(value_type = Option<crate::schema::query::Instant>, inline)]
    to: Option<String>,
    /// The customer's number; spaces are ignored (`138 0000 0000` matches `13800000000`).
    customer_number: Option<String>,
    /// The trunk number (中继号码) the call came in on or went out through; spaces are ignored.
    trunk_number: Option<String>,
    /// A call type code: `inbound`, `outbound`, `internal`, `click_to_dial`.
    #[param(value_type = Option<crate::schema::query::CallTypeCode>, inline)]
    call_type: Option<String>,
    /// A result code: `answered`, `not_answered`, `system_not_answered`, `failed`.
    #[param(value_type = Option<crate::schema::query::ResultCode>, inline)]
    result: Option<String>,
    /// A missed-call reason code (`queue_timeout`, `blacklisted`, …).
    #[param(value_type = Option<crate::schema::query::MissedReasonCode>, inline)]
    missed_reason: Option<String>,
    /// The skill group the call was last queued to.
    queue: Option<String>,
    /// The agent who served the call last.
    agent: Option<String>,
    /// `true`: only marked records (标记); `false`: only unmarked ones.
    #[param(value_type = Option<crate::schema::query::MarkedFlag>, inline)]
    marked: Option<String>,
    /// Page size: 1–500, default 50 (search only).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_cursor` of the previous page (search only), as returned: any other text is
    /// `400`.
    cursor: Option<String>,
    /// Column titles and labels of the export: `zh` (default) or `en` (export only).
    #[param(value_type = Option<crate::schema::query::LangCode>, inline)]
    lang: Option<String>,
}

/// A page of records, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CdrPage {
    /// Each a main record with its `legs`, the shape documented in `engine/src/cdr.rs`
    /// (`to_json`): stable snake_case keys, enum codes, unix milliseconds.
    #[schema(value_type = Vec<crate::schema::CdrRecord>)]
    pub items: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn bad(field: &str, value: &str, message: &str, allowed: Option<Vec<&str>>) -> ApiError {
    let mut details = json!({ "field": field, "value": value });
    if let Some(allowed) = allowed {
        details["allowed"] = json!(allowed);
    }
    ApiError::bad_request(format!("{field}: {message}"), details)
}

fn time(field: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            bad(
                field,
                value,
                "not unix milliseconds nor an RFC 3339 time",
                None,
            )
        })
}

fn code<T: Copy>(
    field: &str,
    value: &str,
    from_code: fn(&str) -> Option<T>,
    all: &[T],
    code: fn(T) -> &'static str,
) -> Result<T, ApiError> {
    from_code(value).ok_or_else(|| {
        bad(
            field,
            value,
            "unknown code",
            Some(all.iter().map(|&v| code(v)).collect()),
        )
    })
}

fn number(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|v| !v.is_empty())
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// An opaque cursor: hex of `<started_at_ms>:<call_id>`.
fn encode_cursor(c: &CdrCursor) -> String {
    hex::encode(format!("{}:{}", c.started_at_ms, c.call_id))
}

fn decode_cursor(value: &str) -> Result<CdrCursor, ApiError> {
    let invalid = || bad("cursor", value, "not a cursor this API returned", None);
    let bytes = hex::decode(value).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (ms, call_id) = text.split_once(':').ok_or_else(invalid)?;
    Ok(CdrCursor {
        started_at_ms: ms.parse().map_err(|_| invalid())?,
        call_id: call_id.to_owned(),
    })
}

/// The parsed query: the filter, and the paging and language arguments.
struct Search {
    filter: CdrFilter,
    limit: u32,
    cursor: Option<CdrCursor>,
    lang: Lang,
}

impl TryFrom<CdrQuery> for Search {
    type Error = ApiError;

    fn try_from(q: CdrQuery) -> Result<Search, ApiError> {
        let filter = CdrFilter {
            from_ms: q.from.as_deref().map(|v| time("from", v)).transpose()?,
            to_ms: q.to.as_deref().map(|v| time("to", v)).transpose()?,
            customer_number: number(q.customer_number),
            trunk_number: number(q.trunk_number),
            call_type: q
                .call_type
                .as_deref()
                .map(|v| {
                    code(
                        "call_type",
                        v,
                        CallType::from_code,
                        CallType::ALL,
                        CallType::code,
                    )
                })
                .transpose()?,
            result: q
                .result
                .as_deref()
                .map(|v| {
                    code(
                        "result",
                        v,
                        CallResult::from_code,
                        CallResult::ALL,
                        CallResult::code,
                    )
                })
                .transpose()?,
            missed_reason: q
                .missed_reason
                .as_deref()
                .map(|v| {
                    code(
                        "missed_reason",
                        v,
                        MissedReason::from_code,
                        MissedReason::ALL,
                        MissedReason::code,
                    )
                })
                .transpose()?,
            queue: text(q.queue),
            agent: text(q.agent),
            marked: match q.marked.as_deref() {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(v) => {
                    return Err(bad(
                        "marked",
                        v,
                        "not a boolean",
                        Some(vec!["true", "false"]),
                    ))
                }
            },
        };
        let limit = match q.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<u32>() {
                Ok(n @ 1..=MAX_LIMIT) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        format!("limit: a page holds 1 to {MAX_LIMIT} records"),
                        json!({ "field": "limit", "value": v, "min": 1, "max": MAX_LIMIT }),
                    ))
                }
            },
        };
        let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
        let lang = match q.lang.as_deref() {
            None | Some("zh") => Lang::Zh,
            Some("en") => Lang::En,
            Some(v) => return Err(bad("lang", v, "unknown language", Some(vec!["zh", "en"]))),
        };
        Ok(Search {
            filter,
            limit,
            cursor,
            lang,
        })
    }
}

/// Search call records, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/cdrs", tag = "cdrs",
    params(CdrQuery),
    responses((status = 200, description = "A page of records", body = CdrPage)),
    security(("bearer" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CdrQuery>,
) -> Result<Json<CdrPage>, ApiError> {
    caller.require(READERS)?;
    let s = Search::try_from(query)?;
    // One more than asked tells whether another page exists.
    let mut rows = state
        .store
        .search_cdrs(&s.filter, s.cursor.as_ref(), s.limit + 1)
        .await?;
    let more = rows.len() > s.limit as usize;
    rows.truncate(s.limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(&CdrCursor::after(r))))
        .flatten();
    Ok(Json(CdrPage {
        items: rows.iter().map(cdr::to_json).collect(),
        next_cursor,
    }))
}

/// One call record with its legs.
#[utoipa::path(
    get, path = "/api/v1/cdrs/{call_id}", tag = "cdrs",
    params(("call_id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The record with its legs", body = crate::schema::CdrRecord),
        (status = 404, description = "No such record", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    match state.store.cdr(&call_id).await? {
        Some(row) => Ok(Json(cdr::to_json(&row))),
        None => Err(ApiError::NotFound {
            what: "call record",
            id: Some(call_id),
        }),
    }
}

/// A mark's content.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkBody {
    /// Why the record is marked, at most 500 characters; blank is the same as none.
    #[serde(default)]
    pub note: Option<String>,
}

/// Mark a record for follow-up (标记), ended or still in progress; marking a marked record
/// replaces its note. The mark names the token that set it.
#[utoipa::path(
    put, path = "/api/v1/cdrs/{call_id}/mark", tag = "cdrs",
    params(("call_id" = String, Path, description = "The call's id")),
    request_body = MarkBody,
    responses(
        (status = 200, description = "The record's mark", body = crate::schema::CdrMarkState),
        (status = 404, description = "No such record", body = ErrorBody),
        (status = 422, description = "A note over 500 characters, or a malformed body", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn mark(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
    ApiJson(body): ApiJson<MarkBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(MARKERS)?;
    let note = body
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if let Some(n) = &note {
        let chars = n.chars().count();
        if chars > MAX_NOTE_CHARS {
            return Err(ApiError::Validation {
                reason: format!("note has {chars} characters; at most {MAX_NOTE_CHARS}"),
                field: Some("note".into()),
            });
        }
    }
    let mark = CdrMark {
        note,
        by: caller.token_id.clone(),
        at_ms: crate::clock::unix_ms(),
    };
    let not_found = || ApiError::NotFound {
        what: "call record",
        id: Some(call_id.clone()),
    };
    if !state.store.set_cdr_mark(&call_id, &mark).await? {
        return Err(not_found());
    }
    let row = state.store.cdr(&call_id).await?.ok_or_else(not_found)?;
    // The mark, not the record: agents mark records they may not read.
    let record = cdr::to_json(&row);
    Ok(Json(serde_json::json!({
        "call_id": record["call_id"],
        "marked": record["marked"],
        "mark": record["mark"],
    })))
}

/// Remove a record's mark. A record without a mark is left as it is (also `204`). An agent's
/// token removes only the marks it set.
#[utoipa::path(
    delete, path = "/api/v1/cdrs/{call_id}/mark", tag = "cdrs",
    params(("call_id" = String, Path, description = "The call's id")),
    responses(
        (status = 204, description = "Not marked any more"),
        (status = 403, description = "An agent's token and a mark another token set", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unmark(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(MARKERS)?;
    if caller.role == Role::Agent {
        let set_by = state
            .store
            .cdr(&call_id)
            .await?
            .and_then(|row| row.mark)
            .map(|m| m.by);
        if set_by.is_some_and(|by| by != caller.token_id) {
            return Err(ApiError::Refused {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: "an agent's token removes only the marks it set".into(),
                details: serde_json::json!({ "reason": "marked_by_another" }),
            });
        }
    }
    if !state.store.clear_cdr_mark(&call_id).await? {
        return Err(ApiError::NotFound {
            what: "call record",
            id: Some(call_id),
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The export's columns: (zh title, en title).
const COLUMNS: &[(&str, &str)] = &[
    ("通话ID", "Call ID"),
    ("通话类型", "Call type"),
    ("呼叫类型", "Direction"),
    ("客户号码", "Customer number"),
    ("中继号码", "Trunk number"),
    ("服务号", "Service number"),
    ("外显号码", "Caller ID"),
    ("开始时间", "Started at"),
    ("接通时间", "Answered at"),
    ("结束时间", "Ended at"),
    ("总时长(秒)", "Duration (s)"),
    ("振铃时长(秒)", "Ring time (s)"),
    ("通话时长(秒)", "Talk time (s)"),
    ("通话结果", "Result"),
    ("未接原因", "Missed-call reason"),
    ("挂机方", "Hung up by"),
    ("座席", "Agent"),
    ("技能组", "Skill group"),
    ("排队时长(秒)", "Queue wait (s)"),
    ("IVR流程", "Flow"),
    ("IVR轨迹", "IVR trail"),
    ("满意度", "Satisfaction"),
    ("录音", "Recording"),
    ("子话单数", "Legs"),
    ("标记", "Marked"),
];

/// One CSV field: quoted when it holds a separator, a quote or a line break; a leading `=`,
/// `+`, `-` or `@` that is not a number is prefixed with `'` so a spreadsheet does not run it
/// as a formula.
fn field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '@', '\t', '\r'])
        || (value.starts_with(['+', '-'])
            && !value[1..].bytes().all(|b| b.is_ascii_digit() || b == b' ')
            && value.len() > 1);
    let value = if formula {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&value);
    }
}

pub(crate) fn line(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

fn at(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_second(ms.div_euclid(1000)).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn seconds(ms: Option<i64>) -> String {
    ms.map(|ms| ((ms + 500).div_euclid(1000)).to_string())
        .unwrap_or_default()
}

fn row_fields(row: &CdrRow, lang: Lang) -> Vec<String> {
    let o = &row.open;
    let c = row.close.as_ref();
    let opt = |v: Option<&str>| v.unwrap_or_default().to_owned();
    vec![
        o.call_id.clone(),
        o.call_type.label(lang).to_owned(),
        o.direction.label(lang).to_owned(),
        o.customer_number.clone(),
        opt(o.trunk_number.as_deref()),
        opt(o.service_number.as_deref()),
        opt(c.and_then(|c| c.caller_id.as_deref())),
        at(Some(o.started_at_ms)),
        at(c.and_then(|c| c.answered_at_ms)),
        at(c.map(|c| c.ended_at_ms)),
        seconds(row.duration_ms()),
        seconds(row.ring_ms()),
        seconds(row.talk_ms()),
        opt(c.map(|c| c.result.label(lang))),
        opt(c.and_then(|c| c.missed_reason).map(|r| r.label(lang))),
        opt(c.and_then(|c| c.hangup_by).map(|h: HangupBy| h.label(lang))),
        opt(c.and_then(|c| c.agent.as_deref())),
        opt(c.and_then(|c| c.queue.as_deref())),
        seconds(c.and_then(|c| c.queue_wait_ms)),
        opt(c.and_then(|c| c.flow.as_deref())),
        c.map(|c| c.ivr_trail.join(" | ")).unwrap_or_default(),
        c.map(|c| {
            c.satisfaction
                .iter()
                .map(|(q, s)| format!("{q}:{s}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default(),
        opt(c.and_then(|c| c.recording_path.as_deref())),
        row.legs.len().to_string(),
        match (row.mark.is_some(), lang) {
            (true, Lang::Zh) => "是",
            (false, Lang::Zh) => "否",
            (true, Lang::En) => "Yes",
            (false, Lang::En) => "No",
        }
        .to_owned(),
    ]
}

/// The header: the UTF-8 byte order mark (Excel reads the file as UTF-8 only with it), then the
/// column titles.
fn header_chunk(lang: Lang) -> String {
    let mut out = String::from("\u{feff}");
    let titles: Vec<String> = COLUMNS
        .iter()
        .map(|&(zh, en)| match lang {
            Lang::Zh => zh.to_owned(),
            Lang::En => en.to_owned(),
        })
        .collect();
    line(&mut out, &titles);
    out
}

/// Where the export stream stands.
enum Export {
    Header,
    Page(Option<CdrCursor>),
    Done,
}

/// Export the matching records as CSV, one line per main record, newest first. Streamed: the
/// store is read a page at a time while the response is sent.
#[utoipa::path(
    get, path = "/api/v1/cdrs/export.csv", tag = "cdrs",
    params(CdrQuery),
    responses((status = 200, description = "CSV with a UTF-8 BOM and localized titles", content_type = "text/csv", body = String)),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CdrQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let s = Search::try_from(query)?;
    let (store, filter, lang) = (state.store.clone(), s.filter, s.lang);
    let start = s.cursor;
    let chunks = futures_util::stream::unfold(Export::Header, move |at| {
        let (store, filter): (Store, CdrFilter) = (store.clone(), filter.clone());
        let start = start.clone();
        async move {
            match at {
                Export::Header => Some((Ok(header_chunk(lang)), Export::Page(start))),
                Export::Page(cursor) => {
                    let rows = match store
                        .search_cdrs(&filter, cursor.as_ref(), EXPORT_PAGE)
                        .await
                    {
                        Ok(rows) => rows,
                        Err(e) => {
                            tracing::error!(cause = %e, "CDR export failed");
                            return Some((Err(std::io::Error::other(e)), Export::Done));
                        }
                    };
                    let next = match rows.last() {
                        Some(last) if rows.len() == EXPORT_PAGE as usize => {
                            Export::Page(Some(CdrCursor::after(last)))
                        }
                        _ => Export::Done,
                    };
                    if rows.is_empty() {
                        return None;
                    }
                    let mut out = String::new();
                    for row in &rows {
                        line(&mut out, &row_fields(row, lang));
                    }
                    Some((Ok(out), next))
                }
                Export::Done => None,
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cdrs.csv\"",
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = CdrCursor {
            started_at_ms: 1_700_000_000_000,
            call_id: "c:1".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        for bad in ["zz", "", &hex::encode("nocolon"), &hex::encode("x:1")] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        assert_eq!(time("from", "1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            time("from", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            time("from", "2023-11-15T06:13:20+08:00").unwrap(),
            1_700_000_000_000
        );
        assert!(time("from", "yesterday").is_err());
    }

    #[test]
    fn pasted_numbers_lose_their_spaces() {
        assert_eq!(
            number(Some(" 138 0000 0000 ".into())),
            Some("13800000000".into())
        );
        assert_eq!(number(Some("  ".into())), None);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        line(
            &mut out,
            &[
                "a,b".into(),
                "say \"hi\"".into(),
                "=1+1".into(),
                "+8613800000000".into(),
                "-".into(),
            ],
        );
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",'=1+1,+8613800000000,-\r\n");
    }

    #[test]
    fn the_header_has_a_bom_and_localized_titles() {
        let zh = header_chunk(Lang::Zh);
        assert!(zh.starts_with('\u{feff}'));
        assert!(zh.contains("客户号码") && zh.contains("未接原因"));
        assert!(header_chunk(Lang::En).contains("Customer number"));
        assert!(zh.trim_end().ends_with("标记"));
        assert!(header_chunk(Lang::En).trim_end().ends_with("Marked"));
    }
}
