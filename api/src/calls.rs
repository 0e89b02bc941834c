//! `/api/v1/calls`: the calls in progress (with the caller's IVR position, queue and agent),
//! hanging one up, moving a caller elsewhere, sending DTMF into a call, and recording it on
//! demand — through the engine's control handle.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use switchboard_engine::acd::{AgentId, QueueId};
use switchboard_engine::endpoint::{
    check_dtmf_duration, parse_dtmf, CallControlError, DtmfTarget, TransferError, TransferTarget,
};
use switchboard_engine::rt::ControlError;

const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Agent, Role::Developer];
const CONTROLLERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];

/// A call in progress.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LiveCall {
    /// The call record's id (`GET /api/v1/cdrs/{call_id}` once it has ended).
    pub call_id: String,
    pub caller: String,
    /// What the caller dialled.
    pub callee: String,
    /// `flow`, `account`, `click_to_dial`, `test_line` or `feature_code`.
    pub kind: String,
    /// Where the call stands: `dialing` (click-to-dial, the first party not answered yet),
    /// `ringing`, `ivr` (in the flow), `queued` (waiting for an agent) or `talking`.
    pub state: String,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    /// The flow and node the caller is in now (the IVR position).
    pub flow: Option<String>,
    pub node: Option<String>,
    /// The skill group it is queued to or was served from, and whether it waits there now.
    pub queue: Option<String>,
    pub waiting: bool,
    pub agent: Option<String>,
}

impl From<switchboard_engine::endpoint::LiveCall> for LiveCall {
    fn from(c: switchboard_engine::endpoint::LiveCall) -> LiveCall {
        LiveCall {
            call_id: c.call_id,
            caller: c.caller,
            callee: c.callee,
            kind: c.kind.to_owned(),
            state: c.state.to_owned(),
            started_at_ms: c.started_at_ms,
            answered_at_ms: c.answered_at_ms,
            flow: c.flow,
            node: c.node,
            queue: c.queue,
            waiting: c.waiting,
            agent: c.agent,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LiveCallList {
    pub items: Vec<LiveCall>,
}

/// Where to move the caller.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// `agent` (an agent's phones), `queue` (a skill group), `flow` (a published flow),
    /// `number` (out through a trunk) or `extension` (an account's phones).
    pub to: TargetKind,
    /// The agent id, skill group, flow name, number or account; not blank.
    #[schema(min_length = 1, pattern = r"\S")]
    pub target: String,
}

#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Agent,
    Queue,
    Flow,
    Number,
    Extension,
}

/// Digits to send into a call.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendDtmf {
    /// 1 to 32 of `0`–`9`, `*`, `#`, `A`–`D`, sent one after another.
    #[schema(pattern = "^[0-9*#A-D]{1,32}$", example = "1234#")]
    pub digits: String,
    /// Who hears them: `customer` (default; the caller of an inbound call, the dialled number
    /// of a call an agent placed) or `agent` (the agent or phone bridged to the customer).
    #[serde(default)]
    pub to: Party,
    /// How long each digit sounds: 40–2000 ms, default 160.
    #[serde(
        default = "default_duration_ms",
        deserialize_with = "crate::error::whole_number"
    )]
    #[schema(minimum = 40, maximum = 2000, default = 160)]
    pub duration_ms: u64,
}

fn default_duration_ms() -> u64 {
    160
}

#[derive(Deserialize, Clone, Copy, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    #[default]
    Customer,
    Agent,
}

/// A recording that started.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordingStarted {
    pub call_id: String,
    /// The file (stereo WAV: the caller left, the other side right); also the record's
    /// `recording_path`.
    pub recording_path: String,
}

fn stopped(_: ControlError) -> ApiError {
    ApiError::Unavailable
}

/// The answer to a refused call-control request.
fn refused(e: CallControlError) -> ApiError {
    match e {
        CallControlError::NoSuchCall { call_id } => ApiError::NotFound {
            what: "call",
            id: Some(call_id),
        },
        e @ (CallControlError::NoSuchParty { .. }
        | CallControlError::NotAnswered { .. }
        | CallControlError::AlreadyRecording { .. }
        | CallControlError::NotRecording { .. }) => ApiError::Conflict {
            message: e.to_string(),
            details: json!({ "reason": e.to_string() }),
        },
        e @ (CallControlError::NoDigits
        | CallControlError::TooManyDigits { .. }
        | CallControlError::InvalidDigit { .. }) => ApiError::Validation {
            reason: e.to_string(),
            field: Some("digits".into()),
        },
        e @ CallControlError::DurationOutOfRange { .. } => ApiError::Validation {
            reason: e.to_string(),
            field: Some("duration_ms".into()),
        },
    }
}

/// Every call in progress, oldest first.
#[utoipa::path(
    get, path = "/api/v1/calls", tag = "calls",
    responses((status = 200, description = "The calls in progress", body = LiveCallList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LiveCallList>, ApiError> {
    caller.require(READERS)?;
    let calls = state.engine()?.live_calls().await.map_err(stopped)?;
    let items = calls.into_iter().map(LiveCall::from).collect();
    Ok(Json(LiveCallList { items }))
}

/// Hang a call up: every leg is ended, and its record says the system hung up.
#[utoipa::path(
    delete, path = "/api/v1/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    responses(
        (status = 204, description = "Hung up"),
        (status = 404, description = "No such call in progress", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn hang_up(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(CONTROLLERS)?;
    state
        .engine()?
        .hang_up(call_id.clone())
        .await
        .map_err(stopped)?
        .map_err(|_| ApiError::NotFound {
            what: "call",
            id: Some(call_id),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move an answered call's caller to an agent, a skill group, a flow, a number or an
/// extension; the party it talks to (or its queue, or the phones ringing for it) is let go.
#[utoipa::path(
    post, path = "/api/v1/calls/{call_id}/transfer", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    request_body = Transfer,
    responses(
        (status = 202, description = "The caller is on the way to the target"),
        (status = 404, description = "No such call in progress", body = ErrorBody),
        (status = 409, description = "Not answered yet, or already being transferred", body = ErrorBody),
        (status = 422, description = "Unknown or unreachable target, or a malformed body", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn transfer(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
    ApiJson(body): ApiJson<Transfer>,
) -> Result<StatusCode, ApiError> {
    caller.require(CONTROLLERS)?;
    let t = body.target.trim().to_owned();
    if t.is_empty() {
        return Err(ApiError::Validation {
            reason: "target must not be empty".into(),
            field: Some("target".into()),
        });
    }
    let target = match body.to {
        TargetKind::Agent => TransferTarget::Agent(AgentId(t)),
        TargetKind::Queue => TransferTarget::Queue(QueueId(t)),
        TargetKind::Flow => TransferTarget::Flow(t),
        TargetKind::Number => TransferTarget::Number(t),
        TargetKind::Extension => TransferTarget::Extension(t),
    };
    let result = state
        .engine()?
        .transfer(call_id, target)
        .await
        .map_err(stopped)?;
    match result {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(TransferError::NoSuchCall { call_id }) => Err(ApiError::NotFound {
            what: "call",
            id: Some(call_id),
        }),
        Err(e @ (TransferError::NotAnswered { .. } | TransferError::InProgress { .. })) => {
            Err(ApiError::Conflict {
                message: e.to_string(),
                details: json!({ "reason": e.to_string() }),
            })
        }
        Err(e @ (TransferError::UnknownTarget { .. } | TransferError::Unreachable { .. })) => {
            Err(ApiError::Validation {
                reason: e.to_string(),
                field: Some("target".into()),
            })
        }
    }
}

/// Send DTMF digits into an answered call, to the customer or to the agent, one after another
/// as the party's leg negotiated them (RFC 4733 events, or in-band tones).
#[utoipa::path(
    post, path = "/api/v1/calls/{call_id}/dtmf", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    request_body = SendDtmf,
    responses(
        (status = 202, description = "The digits are on their way"),
        (status = 404, description = "No such call in progress", body = ErrorBody),
        (status = 409, description = "The party is not answered, or the call has none (no agent yet)", body = ErrorBody),
        (status = 422, description = "Digits or duration out of range, or a malformed body", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send_dtmf(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
    ApiJson(body): ApiJson<SendDtmf>,
) -> Result<StatusCode, ApiError> {
    caller.require(CONTROLLERS)?;
    // Checked here as well as in the engine, so a bad request is told apart before the call is
    // looked up.
    parse_dtmf(&body.digits).map_err(refused)?;
    let duration = check_dtmf_duration(Duration::from_millis(body.duration_ms)).map_err(refused)?;
    let to = match body.to {
        Party::Customer => DtmfTarget::Customer,
        Party::Agent => DtmfTarget::Agent,
    };
    state
        .engine()?
        .send_dtmf(call_id, to, body.digits, duration)
        .await
        .map_err(stopped)?
        .map_err(refused)?;
    Ok(StatusCode::ACCEPTED)
}

/// Start recording an answered call: the caller's leg, stereo, into a file under the
/// recordings folder, named in the call record at once; its length follows when it ends.
#[utoipa::path(
    post, path = "/api/v1/calls/{call_id}/recording", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    responses(
        (status = 202, description = "Recording", body = RecordingStarted),
        (status = 404, description = "No such call in progress", body = ErrorBody),
        (status = 409, description = "Already recording, or not answered yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<RecordingStarted>), ApiError> {
    caller.require(CONTROLLERS)?;
    let recording_path = state
        .engine()?
        .start_recording(call_id.clone())
        .await
        .map_err(stopped)?
        .map_err(refused)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RecordingStarted {
            call_id,
            recording_path,
        }),
    ))
}

/// Stop recording a call. The file is finished in the background; the record's
/// `recording_duration_ms` is set once it is.
#[utoipa::path(
    delete, path = "/api/v1/calls/{call_id}/recording", tag = "calls",
    params(("call_id" = String, Path, description = "The call record's id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 404, description = "No such call in progress", body = ErrorBody),
        (status = 409, description = "Not recording", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stop_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(CONTROLLERS)?;
    state
        .engine()?
        .stop_recording(call_id)
        .await
        .map_err(stopped)?
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}
