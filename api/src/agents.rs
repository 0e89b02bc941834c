//! `/api/v1/agents` and `/api/v1/queues`: agents' sign-in and state, and the queues' live state,
//! through the engine's control handle ([`switchboard_engine::rt::EngineHandle`]).
//!
//! The engine owns agent state; these handlers only ask it. A request the current state
//! refuses (a talking agent asked to go on a break, a second login) is `409 conflict` with the
//! engine's reason; an unknown agent is `404`; an unknown break name is `422`.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use switchboard_engine::acd::{AcdError, AgentId};
use switchboard_engine::rt::{AgentStateRequest, ControlError};

const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Agent];
const CHANGERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Agent];

/// One agent as it stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    /// `logged_out`, `idle`, `busy`, `break`, `ringing`, `talking` or `wrap_up`.
    pub state: String,
    /// The break state's name (the admin's), when `state` is `break`.
    pub break_name: Option<String>,
    pub skill_groups: Vec<String>,
    /// Queue calls answered since the engine started.
    pub inbound_calls: u64,
    /// Calls placed since the engine started.
    pub outbound_calls: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentList {
    pub items: Vec<Agent>,
}

/// One skill group's queue as it stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Queue {
    pub id: String,
    /// Callers waiting now.
    pub waiting: usize,
    /// How long the caller waiting longest has waited, in milliseconds.
    pub longest_wait_ms: Option<u64>,
    /// Members by state (`idle`, `ringing`, `talking`, `wrap_up`, `busy`, `break`, `logged_out`).
    pub agents_by_state: BTreeMap<String, usize>,
    /// Since the engine started: callers who entered, were answered, abandoned.
    pub entered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the skill group's service-level time, as a fraction of the callers who
    /// left the queue; `null` before any.
    pub service_level: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub items: Vec<Queue>,
}

/// The state to put an agent in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetState {
    /// `idle` (callable), `busy`, or `break` with `break_name`.
    pub state: StateName,
    /// One of the admin's break states (`acd.break_states`); only with `state: break`.
    pub break_name: Option<String>,
}

/// Written by hand, as the rule ties the two fields: `break_name` is a string that goes with
/// `state: break` and only with it — a break without a name is refused, not taken as a break
/// of no kind, as every break state is one the admin named (and reports count them by name).
impl utoipa::PartialSchema for SetState {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let state = |values: &[&str]| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values.to_vec()))
        };
        let working = ObjectBuilder::new()
            .description(Some("`idle` (callable) or `busy`; no `break_name`."))
            .property("state", state(&["idle", "busy"]))
            .required("state")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let on_break = ObjectBuilder::new()
            .description(Some(
                "A break: `break_name` is one of the admin's break states (`acd.break_states`).",
            ))
            .property("state", state(&["break"]))
            .property(
                "break_name",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .required("state")
            .required("break_name")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .description(Some("The state to put an agent in."))
            .item(working)
            .item(on_break)
            .into()
    }
}

impl utoipa::ToSchema for SetState {}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Idle,
    Busy,
    Break,
}

fn refused(e: ControlError) -> ApiError {
    match e {
        ControlError::Stopped => ApiError::Unavailable,
        ControlError::Refused(AcdError::UnknownAgent { agent }) => ApiError::NotFound {
            what: "agent",
            id: Some(agent.0),
        },
        ControlError::Refused(AcdError::UnknownBreak { name }) => ApiError::Validation {
            reason: format!("no break state named {name:?}"),
            field: Some("break_name".into()),
        },
        ControlError::Refused(other) => ApiError::Conflict {
            message: other.to_string(),
            details: json!({ "reason": other.to_string() }),
        },
    }
}

/// Every agent with its state and counters.
#[utoipa::path(
    get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, description = "The agents", body = AgentList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AgentList>, ApiError> {
    caller.require(READERS)?;
    let snapshot = state.engine()?.acd_snapshot().await.map_err(refused)?;
    let items = snapshot
        .agents
        .into_iter()
        .map(|a| Agent {
            id: a.id,
            state: a.state.to_owned(),
            break_name: a.break_name,
            skill_groups: a.skill_groups,
            inbound_calls: a.inbound_calls,
            outbound_calls: a.outbound_calls,
        })
        .collect();
    Ok(Json(AgentList { items }))
}

/// Every skill group's queue: callers waiting, the longest wait, agents by state, counters.
#[utoipa::path(
    get, path = "/api/v1/queues", tag = "agents",
    responses((status = 200, description = "The queues", body = QueueList)),
    security(("bearer" = []))
)]
pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueList>, ApiError> {
    caller.require(READERS)?;
    let snapshot = state.engine()?.acd_snapshot().await.map_err(refused)?;
    let items = snapshot
        .queues
        .into_iter()
        .map(|q| Queue {
            id: q.id,
            waiting: q.waiting,
            longest_wait_ms: q.longest_wait_ms,
            agents_by_state: q
                .agents_by_state
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            entered: q.entered,
            answered: q.answered,
            abandoned: q.abandoned,
            service_level: q.service_level,
        })
        .collect();
    Ok(Json(QueueList { items }))
}

/// Sign an agent in; calls may be offered at once (in the agent's initial state).
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/login", tag = "agents",
    params(("id" = String, Path, description = "The agent's id (工号)")),
    responses(
        (status = 204, description = "Signed in"),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "Already signed in", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(CHANGERS)?;
    state
        .engine()?
        .agent_login(AgentId(id))
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign an agent out; callers left with nobody signed in to their queue go on in their flow.
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/logout", tag = "agents",
    params(("id" = String, Path, description = "The agent's id (工号)")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "Not signed in, or on a call", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(CHANGERS)?;
    state
        .engine()?
        .agent_logout(AgentId(id))
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Put a signed-in agent in `idle`, `busy` or one of the admin's break states.
#[utoipa::path(
    put, path = "/api/v1/agents/{id}/state", tag = "agents",
    params(("id" = String, Path, description = "The agent's id (工号)")),
    request_body = SetState,
    responses(
        (status = 204, description = "Changed"),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "Refused in the agent's current state", body = ErrorBody),
        (status = 422, description = "Unknown field, state or break name", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SetState>,
) -> Result<StatusCode, ApiError> {
    caller.require(CHANGERS)?;
    let request = match (body.state, body.break_name) {
        (StateName::Idle, None) => AgentStateRequest::Idle,
        (StateName::Busy, None) => AgentStateRequest::Busy,
        (StateName::Break, Some(name)) => AgentStateRequest::Break(name),
        (StateName::Break, None) => {
            return Err(ApiError::Validation {
                reason: "a break needs break_name".into(),
                field: Some("break_name".into()),
            })
        }
        (_, Some(_)) => {
            return Err(ApiError::Validation {
                reason: "break_name goes only with state: break".into(),
                field: Some("break_name".into()),
            })
        }
    };
    state
        .engine()?
        .agent_state(AgentId(id), request)
        .await
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}
