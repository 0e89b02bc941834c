//! # switchboard-api
//!
//! Switchboard's HTTP side (axum): `/healthz` for liveness probes, `/metrics` in the Prometheus
//! text format, and the versioned JSON API under `/api/v1`.
//!
//! ## `/api/v1` conventions
//! - One error shape for everything ([`error::ApiError`]): `{"error": {"code", "message",
//!   "details"}}`, including unknown paths, malformed bodies and rejected query strings.
//! - JSON bodies go through [`error::ApiJson`] into `deny_unknown_fields` types, at most
//!   [`error::MAX_BODY_BYTES`].
//! - Authentication is the [`auth::Caller`] extractor; each handler states its roles with
//!   [`auth::Caller::require`].
//! - Lists are paged by an opaque `next_cursor` (see [`cdrs`]), never by offset.
//! - Every route is in [`ROUTES`] and in the OpenAPI document ([`openapi::ApiDoc`]); a test
//!   fails when they disagree.
//!
//! The crate is a shell like the engine's `rt`: it reads clocks ([`clock`]) and the store, and
//! leaves decisions to plain functions it can test without a server.
pub mod agents;
pub mod auth;
pub mod blacklist;
pub mod calls;
pub mod cdrs;
pub mod click;
mod clock;
pub mod error;
pub mod events;
pub mod flows;
pub mod openapi;
pub mod reports;
mod schema;
pub mod tokens;

use auth::FailureLimiter;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_engine::config::Config;
use switchboard_engine::live::EventHub;
use switchboard_engine::rt::EngineHandle;
use switchboard_engine::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub metrics: PrometheusHandle,
    pub store: Store,
    pub limiter: Arc<FailureLimiter>,
    /// The running engine (agents, queues, calls); `None` answers those endpoints 503.
    pub engine: Option<EngineHandle>,
    /// The configuration the engine runs (the flows folder, prompts, skill groups); `None`
    /// answers the flow endpoints 503.
    pub config: Option<Arc<Config>>,
    /// The engine's realtime events; `None` answers `/api/v1/events` 503.
    pub events: Option<EventHub>,
}

impl AppState {
    pub fn new(metrics: PrometheusHandle, store: Store) -> AppState {
        AppState {
            metrics,
            store,
            limiter: Arc::new(FailureLimiter::default()),
            engine: None,
            config: None,
            events: None,
        }
    }

    /// With the running engine behind the agent, queue and call endpoints.
    pub fn with_engine(mut self, engine: EngineHandle) -> AppState {
        self.engine = Some(engine);
        self
    }

    /// The running engine, or `503 unavailable` for a state built without one.
    pub fn engine(&self) -> Result<&EngineHandle, ApiError> {
        self.engine.as_ref().ok_or(ApiError::Unavailable)
    }

    /// With the engine's realtime events behind `/api/v1/events`.
    pub fn with_events(mut self, events: EventHub) -> AppState {
        self.events = Some(events);
        self
    }

    /// With the configuration behind the flow endpoints.
    pub fn with_config(mut self, config: Arc<Config>) -> AppState {
        self.config = Some(config);
        self
    }
}

/// Every `/api/v1` route the router serves, as `(method, path)`: the OpenAPI test compares this
/// list with the document, so a route added without its documentation fails.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/blacklist"),
    ("post", "/api/v1/blacklist"),
    ("post", "/api/v1/blacklist/import"),
    ("get", "/api/v1/blacklist/export.csv"),
    ("get", "/api/v1/blacklist/{id}"),
    ("delete", "/api/v1/blacklist/{id}"),
    ("get", "/api/v1/cdrs"),
    ("get", "/api/v1/cdrs/export.csv"),
    ("get", "/api/v1/cdrs/{call_id}"),
    ("put", "/api/v1/cdrs/{call_id}/mark"),
    ("delete", "/api/v1/cdrs/{call_id}/mark"),
    ("get", "/api/v1/agents"),
    ("post", "/api/v1/agents/{id}/login"),
    ("post", "/api/v1/agents/{id}/logout"),
    ("put", "/api/v1/agents/{id}/state"),
    ("get", "/api/v1/queues"),
    ("get", "/api/v1/reports/trunks"),
    ("get", "/api/v1/reports/skill-groups"),
    ("get", "/api/v1/reports/agents"),
    ("get", "/api/v1/calls"),
    ("post", "/api/v1/calls"),
    ("get", "/api/v1/calls/{call_id}"),
    ("delete", "/api/v1/calls/{call_id}"),
    ("post", "/api/v1/calls/{call_id}/transfer"),
    ("post", "/api/v1/calls/{call_id}/dtmf"),
    ("post", "/api/v1/calls/{call_id}/recording"),
    ("delete", "/api/v1/calls/{call_id}/recording"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/flows"),
    ("post", "/api/v1/flows/validate"),
    ("get", "/api/v1/flows/{name}"),
    ("put", "/api/v1/flows/{name}"),
    ("get", "/api/v1/flows/{name}/history"),
    ("get", "/api/v1/flows/{name}/graph.svg"),
    ("post", "/api/v1/flows/{name}/test"),
];

fn api_v1() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/blacklist", get(blacklist::list).post(blacklist::add))
        .route("/blacklist/import", post(blacklist::import))
        .route("/blacklist/export.csv", get(blacklist::export))
        .route(
            "/blacklist/{id}",
            get(blacklist::one).delete(blacklist::remove),
        )
        .route("/cdrs", get(cdrs::search))
        .route("/cdrs/export.csv", get(cdrs::export))
        .route("/cdrs/{call_id}", get(cdrs::one))
        .route("/cdrs/{call_id}/mark", put(cdrs::mark).delete(cdrs::unmark))
        .route("/agents", get(agents::list))
        .route("/agents/{id}/login", post(agents::login))
        .route("/agents/{id}/logout", post(agents::logout))
        .route("/agents/{id}/state", put(agents::set_state))
        .route("/queues", get(agents::queues))
        .route("/reports/trunks", get(reports::trunks))
        .route("/reports/skill-groups", get(reports::skill_groups))
        .route("/reports/agents", get(reports::agents))
        .route("/calls", get(calls::list).post(click::place))
        .route(
            "/calls/{call_id}",
            get(click::status).delete(calls::hang_up),
        )
        .route("/calls/{call_id}/transfer", post(calls::transfer))
        .route("/calls/{call_id}/dtmf", post(calls::send_dtmf))
        .route(
            "/calls/{call_id}/recording",
            post(calls::start_recording).delete(calls::stop_recording),
        )
        .route("/events", get(events::stream))
        .route("/flows", get(flows::list))
        .route("/flows/validate", post(flows::check_text))
        .route("/flows/{name}", get(flows::one).put(flows::publish))
        .route("/flows/{name}/history", get(flows::history))
        .route("/flows/{name}/graph.svg", get(flows::graph_svg))
        .route("/flows/{name}/test", post(flows::run_tests))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(error::MAX_BODY_BYTES))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api_v1())
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        what: "endpoint",
        id: None,
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?addr, "HTTP listening");
    // The peer address is what failed authentications are counted by.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests;
