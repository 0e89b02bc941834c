//! `GET /api/v1/events`: call events and agent/queue changes as they happen, as Server-Sent
//! Events (`text/event-stream`), from the engine's [`EventHub`].
//!
//! Each message is `id: <id>`, `event: <kind>` and `data: <json>`: the kinds are
//! `inbound_ringing`, `outbound_ringing`, `answered`, `hangup`, `cdr_written` (the JSON is the
//! call event's webhook body) and `agent_state`, `queue_state` (the agent's or skill group's
//! change). Ids increase, also across restarts.
//!
//! Resuming: a client that reconnects with `Last-Event-ID` (browsers' `EventSource` does it by
//! itself), or `?last_event_id=` where it cannot set headers, first gets every event after that
//! id the server still holds, then live events, with nothing missed or repeated in between.
//! When the server no longer holds them (the id is too old, or from before a restart), or a
//! slow client fell too far behind, it gets an `event: gap` message instead: it should re-read
//! the state through the REST endpoints (`/api/v1/calls`, `/api/v1/agents`, `/api/v1/queues`),
//! then go on with the events after the gap's id.
//!
//! Filters narrow the stream (AND): `types` (comma-separated kinds), `call_id`, `agent`,
//! `queue`. Agent and queue match the agent/queue changes and the call events that name that
//! agent or skill group. Bad filters are refused before the stream starts, in the API's error
//! shape. A comment line goes out every 15 s so proxies keep an idle stream open.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;
use switchboard_engine::events::CallEventKind;
use switchboard_engine::live::{EventHub, Item, LiveEvent, LiveKind, Subscriber};

/// Who may follow the stream.
const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer, Role::Agent];
/// The roles that also get `cdr_written`, which carries the whole record.
const RECORD_READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];
/// How often an idle stream gets a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The SSE `event:` name of a gap message.
pub const GAP: &str = "gap";

/// The stream's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only these kinds, comma-separated: `inbound_ringing`, `outbound_ringing`, `answered`,
    /// `hangup`, `cdr_written` (not to agent tokens: it carries the whole record),
    /// `agent_state`, `queue_state`. Gaps are always sent.
    types: Option<String>,
    /// Only the events of this call (its record's id).
    call_id: Option<String>,
    /// Only this agent's changes and the call events naming this agent.
    agent: Option<String>,
    /// Only this skill group's changes and the call events naming this skill group.
    queue: Option<String>,
    /// Resume after this id, for clients that cannot send `Last-Event-ID` (the header wins
    /// when both are present).
    last_event_id: Option<String>,
}

/// Which events a client asked for.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    /// `None`: every kind.
    kinds: Option<BTreeSet<LiveKind>>,
    call_id: Option<String>,
    agent: Option<String>,
    queue: Option<String>,
    /// Leave out `cdr_written` (the whole record): for roles that may not read records.
    hide_records: bool,
}

impl Filter {
    fn admits(&self, e: &LiveEvent) -> bool {
        let matches = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| got == Some(w))
        };
        !(self.hide_records && e.kind() == LiveKind::Call(CallEventKind::CdrWritten))
            && self.kinds.as_ref().is_none_or(|k| k.contains(&e.kind()))
            && matches(&self.call_id, e.call_id())
            && matches(&self.agent, e.agent())
            && matches(&self.queue, e.queue())
    }
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The filter of a query string; an unknown kind is `422`, naming the allowed ones.
fn filter(q: &EventsQuery) -> Result<Filter, ApiError> {
    let kinds = match q.types.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    LiveKind::from_code(t).ok_or_else(|| ApiError::Invalid {
                        message: format!("types: unknown event type {t:?}"),
                        details: json!({
                            "field": "types",
                            "value": t,
                            "allowed": LiveKind::ALL.iter().map(|k| k.code()).collect::<Vec<_>>(),
                        }),
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()?,
        ),
    };
    Ok(Filter {
        kinds,
        call_id: text(q.call_id.clone()),
        agent: text(q.agent.clone()),
        queue: text(q.queue.clone()),
        hide_records: false,
    })
}

/// Where to resume: the `Last-Event-ID` header, else `?last_event_id=`; `400` when it is not
/// an id (every id this API sends is a non-negative integer).
fn resume_from(headers: &HeaderMap, q: &EventsQuery) -> Result<Option<u64>, ApiError> {
    let (field, value) = match headers.get("last-event-id") {
        Some(v) => ("Last-Event-ID", v.to_str().unwrap_or("\u{fffd}").trim()),
        None => match q.last_event_id.as_deref() {
            Some(v) => ("last_event_id", v.trim()),
            None => return Ok(None),
        },
    };
    // An empty header is how EventSource says "no id yet".
    if value.is_empty() {
        return Ok(None);
    }
    value.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            format!("{field}: not an event id"),
            json!({ "field": field, "value": value }),
        )
    })
}

/// The SSE message of one item.
fn message(item: &Item) -> Event {
    match item {
        Item::Event(e) => Event::default()
            .id(e.id.to_string())
            .event(e.kind().code())
            .data(e.json()),
        Item::Gap { resume, reason } => Event::default().id(resume.to_string()).event(GAP).data(
            json!({
                "reason": reason.code(),
                "message": "events were missed; re-read the state through \
                    GET /api/v1/calls, /api/v1/agents and /api/v1/queues; \
                    the events after this message's id follow",
            })
            .to_string(),
        ),
    }
}

/// The subscriber's items the filter admits, as SSE messages; ends when the engine stops.
fn messages(sub: Subscriber, filter: Filter) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((sub, filter), |(mut sub, filter)| async move {
        loop {
            let item = sub.next().await?;
            if let Item::Event(e) = &item {
                if !filter.admits(e) {
                    continue;
                }
            }
            return Some((Ok(message(&item)), (sub, filter)));
        }
    })
}

/// Call events and agent/queue changes as they happen (Server-Sent Events).
///
/// Each message: `id: <id>`, `event: <kind>`, `data: <JSON>`. Reconnect with `Last-Event-ID`
/// (or `?last_event_id=`) to get what was missed; when the server no longer has it, an
/// `event: gap` message comes first: re-read the state through the REST endpoints. A comment
/// line is sent every 15 s while idle.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last message received: resume after it"),
    ),
    responses(
        (status = 200, description = "The event stream: `id:`, `event:` (`inbound_ringing`, \
            `outbound_ringing`, `answered`, `hangup`, `cdr_written`, `agent_state`, \
            `queue_state`, `gap`) and `data:` (JSON) per message",
            content_type = "text/event-stream", body = String),
        (status = 422, description = "An unknown event type in `types`", body = ErrorBody),
        (status = 503, description = "The engine is not running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let mut filter = filter(&q)?;
    // An agent's token reads no call records (`GET /api/v1/cdrs` refuses it): nor here.
    filter.hide_records = !RECORD_READERS.contains(&caller.role);
    let after = resume_from(&headers, &q)?;
    let hub: &EventHub = state.events.as_ref().ok_or(ApiError::Unavailable)?;
    let sub = hub.subscribe(after);
    Ok(Sse::new(messages(sub, filter)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_engine::events::{AcdEvent, CallEvent, CallEventKind};
    use switchboard_engine::live::LiveEventBody;

    fn query(types: Option<&str>, call_id: Option<&str>, agent: Option<&str>) -> EventsQuery {
        EventsQuery {
            types: types.map(Into::into),
            call_id: call_id.map(Into::into),
            agent: agent.map(Into::into),
            queue: None,
            last_event_id: None,
        }
    }

    fn call(kind: CallEventKind, call_id: &str, agent: Option<&str>) -> LiveEvent {
        LiveEvent {
            id: 1,
            body: LiveEventBody::Call(CallEvent {
                kind,
                call_id: call_id.into(),
                at_ms: 1,
                data: json!({ "agent": agent, "queue": "sales" }),
            }),
        }
    }

    fn agent_state(agent: &str) -> LiveEvent {
        LiveEvent {
            id: 2,
            body: LiveEventBody::Acd(AcdEvent::AgentState {
                agent: agent.into(),
                state: "idle",
                break_name: None,
                at_ms: 1,
            }),
        }
    }

    #[test]
    fn filters_narrow_by_kind_call_agent_and_queue() {
        let all = filter(&query(None, None, None)).unwrap();
        let answered = call(CallEventKind::Answered, "c-1", Some("8001"));
        let ringing = call(CallEventKind::InboundRinging, "c-2", None);
        let idle = agent_state("8001");
        for e in [&answered, &ringing, &idle] {
            assert!(all.admits(e));
        }
        let kinds = filter(&query(Some(" answered, agent_state ,"), None, None)).unwrap();
        assert!(kinds.admits(&answered) && kinds.admits(&idle) && !kinds.admits(&ringing));
        let one_call = filter(&query(None, Some("c-1"), None)).unwrap();
        assert!(
            one_call.admits(&answered) && !one_call.admits(&ringing) && !one_call.admits(&idle)
        );
        let agent = filter(&query(None, None, Some("8001"))).unwrap();
        assert!(agent.admits(&answered) && agent.admits(&idle) && !agent.admits(&ringing));
        assert!(!agent.admits(&agent_state("8002")));
        let mut q = query(None, None, None);
        q.queue = Some("sales".into());
        let queue = filter(&q).unwrap();
        assert!(queue.admits(&answered) && !queue.admits(&idle));
    }

    #[test]
    fn an_unknown_type_is_refused_with_the_allowed_ones() {
        let e = filter(&query(Some("answered,ringing"), None, None)).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (422, "validation_failed"));
        match e {
            ApiError::Invalid { details, .. } => {
                assert_eq!(details["value"], "ringing");
                assert_eq!(details["allowed"].as_array().unwrap().len(), 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_header_wins_over_the_query_and_ids_must_be_numbers() {
        let mut q = query(None, None, None);
        q.last_event_id = Some("12".into());
        let mut headers = HeaderMap::new();
        assert_eq!(resume_from(&headers, &q).unwrap(), Some(12));
        headers.insert("last-event-id", "34".parse().unwrap());
        assert_eq!(resume_from(&headers, &q).unwrap(), Some(34));
        headers.insert("last-event-id", "".parse().unwrap());
        assert_eq!(resume_from(&headers, &q).unwrap(), None);
        headers.insert("last-event-id", "abc".parse().unwrap());
        assert_eq!(resume_from(&headers, &q).unwrap_err().code(), "bad_request");
    }
}
