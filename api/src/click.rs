//! Click-to-dial (`POST /api/v1/calls`) and a call's status (`GET /api/v1/calls/{call_id}`).
//!
//! The request is checked (the number, the target, the trunk's blacklist, quota and channels)
//! before anything is dialled, so every refusal is an answer with a typed code; an accepted
//! request answers `201` with the call's id at once, and the call goes on in the engine. Its
//! progress is in the call events (webhooks, `GET /api/v1/events`) and in the status endpoint,
//! which shows the live call while it lasts and its record once it has ended.
//!
//! An `Idempotency-Key` header makes a retry safe: the same token sending the same request with
//! the same key within a day gets the first answer again (marked `Idempotent-Replayed: true`),
//! not a second call; the same key with a different request is refused. Kept answers are the
//! call placed (`201`) and refusals of the request itself (`400`, `403`, `422`); a refusal that
//! may clear (an agent busy, a quota, a trunk: `402`, `409`, `429`, `503`) is not kept, so a retry with
//! the key tries again.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_engine::acd::{AgentId, QueueId};
use switchboard_engine::endpoint::{ClickError, ClickOrder, ClickTarget, ClickToDial};
use switchboard_engine::store::idempotency::Claim;

const DIALLERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Agent, Role::Developer];
const READERS: &[Role] = DIALLERS;
/// Who sees the record of an ended call here (as `GET /api/v1/cdrs/{call_id}` allows).
const RECORD_READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];

/// How long a client is asked to wait when the trunk's channels are all in use.
pub const TRUNK_BUSY_RETRY_S: u64 = 5;

/// The longest `Idempotency-Key` taken.
const MAX_KEY_LEN: usize = 255;
/// At most this many flow variables, each name at most 64 and each value at most 1 024
/// characters (counted as JSON Schema's `maxLength` counts them, so the document can say it).
const MAX_VARIABLES: usize = 32;

/// Start a call: the customer first (then a flow, a skill group or an agent), or the agent first.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickRequest {
    /// The customer's number: E.164 (`+8613800000001`) or as people type it (`138 0000 0001`,
    /// `010-8888 0000`, `0044 20 7946 0000`); spaces, dashes, dots and brackets are dropped.
    /// The trunk's number format (country code, national and international prefixes) makes it
    /// E.164, which has 6 to 15 digits; the pattern is the shape with the shipped format.
    #[schema(
        pattern = r"^(\+|00|0)?[1-9]([ ().-]?[0-9]){5,12}$",
        example = "+8613800000001"
    )]
    pub customer: String,
    /// Run this published flow when the customer answers. Exactly one of `flow`, `skill_group`
    /// and `agent` is given (a blank one counts as not given); naming a flow, skill group,
    /// agent or trunk that does not exist is `422` with its own code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Queue the customer to this skill group when they answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_group: Option<String>,
    /// Connect the customer to this agent (ring the agent first with `order: agent_first`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `customer_first` (default) or `agent_first` (needs `agent`).
    #[serde(default)]
    pub order: Order,
    /// The trunk to call out through (default: the first usable one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// Flow variables set before the flow starts (`vars.<name>` in the flow's templates): at
    /// most 32, each name 1–64 letters, digits and `_` not starting with a digit, each value at
    /// most 1 024 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = variables_schema)]
    pub variables: BTreeMap<String, String>,
    /// How long the first party may ring, 5–300 s (default: the server's ring timeout).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::error::optional_whole_number"
    )]
    #[schema(minimum = 5, maximum = 300)]
    pub ring_timeout_s: Option<u32>,
}

/// `variables` as [`engine_request`] checks them: names in `propertyNames`, which the derive
/// does not write.
fn variables_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(MAX_VARIABLES))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z_][A-Za-z0-9_]{0,63}$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(1024)),
        ))
        .build()
}

#[derive(Deserialize, Serialize, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    CustomerFirst,
    AgentFirst,
}

/// An accepted click-to-dial request.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClickStarted {
    /// The call record's id: the status is at `status_url`, the record (once the call has ended)
    /// at `cdr_url`, and every call event carries it.
    pub call_id: String,
    pub status_url: String,
    pub cdr_url: String,
}

/// A call's status: in progress (with where it stands), or ended (with its record).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallStatus {
    pub call_id: String,
    /// `in_progress` or `ended`.
    pub status: String,
    /// While in progress: the call as `GET /api/v1/calls` lists it, with its `state`
    /// (`dialing`, `ringing`, `ivr`, `queued`, `talking`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::calls::LiveCall>,
    /// Once ended: the call record with its legs, as `GET /api/v1/cdrs/{call_id}` gives it
    /// (admin, supervisor and developer tokens; an agent's token sees only the status).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::schema::CdrRecord>)]
    pub cdr: Option<Value>,
}

fn refused(status: StatusCode, code: &'static str, message: String, details: Value) -> ApiError {
    ApiError::Refused {
        status,
        code,
        message,
        details,
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::Validation {
        reason: reason.into(),
        field: Some(field.to_owned()),
    }
}

/// A name given and not blank, trimmed.
fn named(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The engine's request, or what is wrong with the body.
fn engine_request(body: &ClickRequest) -> Result<ClickToDial, ApiError> {
    let customer = body.customer.trim();
    if customer.is_empty() {
        return Err(invalid("customer", "customer must not be empty"));
    }
    let target = match (
        named(&body.flow),
        named(&body.skill_group),
        named(&body.agent),
    ) {
        (Some(f), None, None) => ClickTarget::Flow(f.to_owned()),
        (None, Some(q), None) => ClickTarget::Queue(QueueId(q.to_owned())),
        (None, None, Some(a)) => ClickTarget::Agent(AgentId(a.to_owned())),
        _ => {
            return Err(invalid(
                "flow",
                "give exactly one of flow, skill_group and agent",
            ))
        }
    };
    let order = match body.order {
        Order::CustomerFirst => ClickOrder::CustomerFirst,
        Order::AgentFirst => ClickOrder::AgentFirst,
    };
    if body.variables.len() > MAX_VARIABLES {
        return Err(invalid(
            "variables",
            format!("at most {MAX_VARIABLES} variables"),
        ));
    }
    for (name, value) in &body.variables {
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok_name {
            return Err(invalid(
                "variables",
                format!(
                    "{name:?} is not a variable name (letters, digits and _, not first a digit)"
                ),
            ));
        }
        if value.chars().count() > 1024 {
            return Err(invalid(
                "variables",
                format!("the value of {name} is over 1024 characters"),
            ));
        }
    }
    let ring_timeout = match body.ring_timeout_s {
        None => None,
        Some(s @ 5..=300) => Some(Duration::from_secs(u64::from(s))),
        Some(_) => return Err(invalid("ring_timeout_s", "ring_timeout_s is 5 to 300")),
    };
    Ok(ClickToDial {
        customer: customer.to_owned(),
        target,
        order,
        trunk: named(&body.trunk).map(str::to_owned),
        variables: body.variables.clone(),
        ring_timeout,
    })
}

/// The engine's refusal as the API answers it.
fn refusal(e: ClickError) -> ApiError {
    let message = e.to_string();
    let (status, code, details) = match &e {
        ClickError::InvalidNumber { number } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_number",
            json!({ "field": "customer", "number": number }),
        ),
        ClickError::Blacklisted => (
            StatusCode::FORBIDDEN,
            "blacklisted",
            json!({ "field": "customer" }),
        ),
        ClickError::UnknownFlow { name } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_flow",
            json!({ "field": "flow", "flow": name }),
        ),
        ClickError::UnknownQueue { name } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_skill_group",
            json!({ "field": "skill_group", "skill_group": name }),
        ),
        ClickError::UnknownAgent { id } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agent",
            json!({ "field": "agent", "agent": id }),
        ),
        ClickError::AgentUnreachable { id } => (
            StatusCode::CONFLICT,
            "agent_unreachable",
            json!({ "field": "agent", "agent": id }),
        ),
        ClickError::AgentNotAvailable { id } => (
            StatusCode::CONFLICT,
            "agent_not_available",
            json!({ "field": "agent", "agent": id }),
        ),
        ClickError::AgentFirstNeedsAgent => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            json!({ "field": "order" }),
        ),
        ClickError::UnknownTrunk { name } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_trunk",
            json!({ "field": "trunk", "trunk": name }),
        ),
        ClickError::NoTrunk { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no_trunk",
            json!({ "field": "trunk", "reason": reason }),
        ),
        ClickError::OverQuota => (StatusCode::PAYMENT_REQUIRED, "over_quota", json!({})),
        // Too many calls at once for the trunk's channels: the client's load, retried later
        // (`Retry-After`), as a concurrency limit is.
        ClickError::TrunkBusy => (
            StatusCode::TOO_MANY_REQUESTS,
            "trunk_busy",
            json!({ "retry_after_s": TRUNK_BUSY_RETRY_S }),
        ),
        ClickError::NotListening => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", json!({})),
    };
    refused(status, code, message, details)
}

/// The `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "the Idempotency-Key header is 1 to 255 visible ASCII characters",
            json!({ "header": "Idempotency-Key" }),
        ));
    }
    Ok(Some(key.to_owned()))
}

fn json_response(
    status: StatusCode,
    body: String,
    replayed: bool,
    call_id: Option<&str>,
) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    if let Some(id) =
        call_id.and_then(|id| HeaderValue::from_str(&format!("/api/v1/calls/{id}")).ok())
    {
        headers.insert(header::LOCATION, id);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Place a click-to-dial call.
#[utoipa::path(
    post, path = "/api/v1/calls", tag = "calls",
    request_body = ClickRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "Makes a retry safe: the same request with the same key within a day gets the first answer again")),
    responses(
        (status = 201, description = "The call is being placed", body = ClickStarted,
            headers(("Location" = String, description = "The call's status URL"))),
        (status = 400, description = "A malformed Idempotency-Key", body = ErrorBody),
        (status = 402, description = "`over_quota`: the trunk's quota for this period is used up", body = ErrorBody),
        (status = 403, description = "`blacklisted`: the number is on the outbound blacklist (or the role may not dial)", body = ErrorBody),
        (status = 409, description = "`agent_unreachable`, `agent_not_available`, or `idempotency_in_progress`", body = ErrorBody),
        (status = 422, description = "`invalid_number`, `unknown_flow`, `unknown_skill_group`, `unknown_agent`, `unknown_trunk`, `idempotency_key_reused`, or a malformed body", body = ErrorBody),
        (status = 429, description = "`trunk_busy`: every channel of the trunk is in use; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`no_trunk`: no trunk can carry calls (none configured or enabled); `unavailable`: the engine is stopping", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn place(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ClickRequest>,
) -> Result<Response, ApiError> {
    caller.require(DIALLERS)?;
    let key = idempotency_key(&headers)?;
    let request = engine_request(&body)?;
    let engine = state.engine()?.clone();
    let Some(key) = key else {
        return place_call(&engine, request)
            .await
            .map(|(status, body, id)| json_response(status, body, false, Some(&id)));
    };
    let canonical = serde_json::to_string(&body).map_err(ApiError::internal)?;
    let hash = hex::encode(Sha256::digest(format!("POST /api/v1/calls\n{canonical}")));
    let now = crate::clock::unix_ms();
    match state
        .store
        .claim_idempotency(&caller.token_id, &key, &hash, now)
        .await?
    {
        Claim::Answered {
            request_hash,
            status,
            body,
        } if request_hash == hash => {
            let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
            let id = serde_json::from_str::<ClickStarted>(&body)
                .ok()
                .map(|s| s.call_id);
            return Ok(json_response(status, body, true, id.as_deref()));
        }
        Claim::Answered { .. } => {
            return Err(refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request".into(),
                json!({ "header": "Idempotency-Key" }),
            ))
        }
        Claim::InFlight { request_hash } => {
            let (code, message) = if request_hash == hash {
                (
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being served; retry shortly",
                )
            } else {
                (
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                )
            };
            let status = if request_hash == hash {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return Err(refused(
                status,
                code,
                message.into(),
                json!({ "header": "Idempotency-Key" }),
            ));
        }
        Claim::New => {}
    }
    // The call and the note of its answer run on their own: a client that gives up waiting
    // (the very case a retry with the key is for) does not leave the key half done.
    let store = state.store.clone();
    let token_id = caller.token_id.clone();
    let task = tokio::spawn(async move {
        let answer = place_call(&engine, request).await;
        let kept = match &answer {
            Ok((status, body, _)) => Some((*status, body.clone())),
            // A refusal about the request itself is its answer for good; one that may clear
            // (an agent busy, a quota, a trunk) lets a retry with the key try again.
            Err(e) if matches!(e.status().as_u16(), 400 | 403 | 422) => {
                let status = e.status();
                let body = serde_json::to_string(&e.body()).unwrap_or_default();
                Some((status, body))
            }
            Err(_) => None,
        };
        let noted = match &kept {
            Some((status, body)) => {
                store
                    .settle_idempotency(&token_id, &key, status.as_u16(), body)
                    .await
            }
            None => store.release_idempotency(&token_id, &key).await,
        };
        if let Err(e) = noted {
            // The call is placed either way; a retry meanwhile is told to wait, then may run.
            tracing::error!(error = %e, "idempotency key not updated");
        }
        answer
    });
    let (status, body, id) = task.await.map_err(ApiError::internal)??;
    Ok(json_response(status, body, false, Some(&id)))
}

/// Ask the engine; the answer's status, JSON body and call id.
async fn place_call(
    engine: &switchboard_engine::rt::EngineHandle,
    request: ClickToDial,
) -> Result<(StatusCode, String, String), ApiError> {
    let call_id = engine
        .click_to_dial(request)
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(refusal)?;
    let started = ClickStarted {
        status_url: format!("/api/v1/calls/{call_id}"),
        cdr_url: format!("/api/v1/cdrs/{call_id}"),
        call_id: call_id.clone(),
    };
    let body = serde_json::to_string(&started).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, body, call_id))
}

/// A call's status: the live call while it lasts, its record once it has ended.
#[utoipa::path(
    get, path = "/api/v1/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    responses(
        (status = 200, description = "In progress (`live`) or ended (`cdr`)", body = CallStatus),
        (status = 404, description = "No such call", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<Json<CallStatus>, ApiError> {
    caller.require(READERS)?;
    let live = state
        .engine()?
        .live_calls()
        .await
        .map_err(|_| ApiError::Unavailable)?
        .into_iter()
        .find(|c| c.call_id == call_id);
    if let Some(c) = live {
        return Ok(Json(CallStatus {
            call_id,
            status: "in_progress".into(),
            live: Some(crate::calls::LiveCall::from(c)),
            cdr: None,
        }));
    }
    match state.store.cdr(&call_id).await? {
        Some(row) => Ok(Json(CallStatus {
            call_id,
            // The engine is done with it; a record still open is being closed right now.
            status: "ended".into(),
            live: None,
            // The record itself only for the roles that read records.
            cdr: RECORD_READERS
                .contains(&caller.role)
                .then(|| switchboard_engine::cdr::to_json(&row)),
        })),
        None => Err(ApiError::NotFound {
            what: "call",
            id: Some(call_id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal is a client error but "no trunk at all" and a stopping engine: the API
    /// fuzz's "no 5xx" holds for everything a client can cause, a full trunk included.
    #[test]
    fn refusals_are_client_errors_and_a_full_trunk_says_when_to_retry() {
        let all = [
            ClickError::InvalidNumber { number: "1".into() },
            ClickError::Blacklisted,
            ClickError::UnknownFlow { name: "f".into() },
            ClickError::UnknownQueue { name: "q".into() },
            ClickError::UnknownAgent { id: "a".into() },
            ClickError::AgentUnreachable { id: "a".into() },
            ClickError::AgentNotAvailable { id: "a".into() },
            ClickError::AgentFirstNeedsAgent,
            ClickError::UnknownTrunk { name: "t".into() },
            ClickError::OverQuota,
            ClickError::TrunkBusy,
        ];
        for e in all {
            let shown = e.to_string();
            assert!(refusal(e).status().is_client_error(), "{shown}");
        }
        let busy = refusal(ClickError::TrunkBusy).into_response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "5");
        let none = refusal(ClickError::NoTrunk {
            reason: "no trunk".into(),
        });
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(none.code(), "no_trunk");
    }
}
