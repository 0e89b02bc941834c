//! `/api/v1/flows`: the IVR flows of `ivr.flows_dir` — listed, read, validated, published,
//! their operation log, and their picture.
//!
//! The API never publishes a flow itself. `PUT` validates the text with the engine's validator
//! and context (the same [`load::context`] the file watcher uses), and only a valid text is
//! written into the folder (temporary file, then rename, so the watcher never reads half a file).
//! The engine's watcher then publishes it and writes the operation log; `202 Accepted` says
//! exactly that. A version is the SHA-256 of the file's text, as the engine computes it. The
//! API announces the writer to the watcher first ([`load::Publishers`]), so the operation log
//! names the token (`api:<token name>`) rather than `file-watch`.
//!
//! `POST /flows/{name}/test` runs flow tests (the runner of `switchboard flow test`) against
//! the flow as the engine serves it: a script from the body, or every file of
//! `<flows_dir>/tests/` that targets the flow.
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_engine::config::Config;
use switchboard_engine::endpoint::FlowSet;
use switchboard_engine::ivr::flowtest::{self, TestFile, TestFileError, TestOutcome};
use switchboard_engine::ivr::model::Flow;
use switchboard_engine::ivr::validate::{self, FlowError};
use switchboard_engine::ivr::{graph, load};

const READERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];
const PUBLISHERS: &[Role] = &[Role::Admin, Role::Supervisor];
const TESTERS: &[Role] = &[Role::Admin, Role::Supervisor, Role::Developer];

/// The most scripted calls one test run takes (each is bounded by the runner's event limit).
pub const MAX_TESTS: usize = 500;

/// One flow file.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowSummary {
    /// The file's stem (`main` for `main.yaml`).
    pub name: String,
    /// The file's name in the flows folder.
    pub file: String,
    /// SHA-256 of the file's text, in hex (the version the operation log names).
    pub version: String,
    /// Whether the file validates now.
    pub valid: bool,
    /// How many errors the validator reports (0 when valid).
    pub errors: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowList {
    pub items: Vec<FlowSummary>,
}

/// One flow's text.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowText {
    pub name: String,
    pub file: String,
    pub version: String,
    /// The YAML, as stored.
    pub yaml: String,
}

/// A flow text to check.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The flow's name (letters, digits, `-`, `_`); other flows' `goto`s see it by this name.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    pub yaml: String,
}

/// A flow text to publish.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The flow's YAML (the format of `ivr-flows/*.yaml`); a text that does not validate is
    /// refused with `422` and what is wrong in `details.errors`.
    #[schema(min_length = 1)]
    pub yaml: String,
}

/// One thing wrong with a flow text.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowIssue {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The node the error is in, if any.
    pub node: Option<String>,
    /// The option relative to the node (`choices.1`), or a top-level path.
    pub field: String,
    pub message: String,
}

impl From<FlowError> for FlowIssue {
    fn from(e: FlowError) -> FlowIssue {
        FlowIssue {
            file: e.file,
            line: e.line,
            column: e.column,
            node: e.node,
            field: e.field,
            message: e.message,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Every error, in file order (empty when valid).
    pub errors: Vec<FlowIssue>,
}

/// A publish handed to the engine's file watcher.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub name: String,
    /// The version written; the operation log shows it once the watcher has published it.
    pub version: String,
}

/// One row of a flow's operation log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Publication {
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub version: String,
    /// Who published: `api:<token name>` for a flow written through `PUT /flows/{name}`,
    /// `file-watch` for a file changed in the folder, `start-up` for one found at start.
    pub actor: String,
    /// `published` or `rejected`.
    pub action: String,
    /// Unified diff against the version that was serving; `null` for a first publish.
    pub diff: Option<String>,
    /// Why a rejected file was rejected, one error per line.
    pub errors: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct History {
    /// Newest first.
    pub items: Vec<Publication>,
}

fn config(state: &AppState) -> Result<Arc<Config>, ApiError> {
    state.config.clone().ok_or(ApiError::Unavailable)
}

/// The engine's content hash of a flow text.
pub fn version(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The configuration's rule for flow names, which also keeps a name from leaving the flows
/// folder.
pub use switchboard_engine::config::is_flow_name;

/// A flow's name in a path: 1 to 64 letters, digits, `-` or `_` (its file stem). The pattern is
/// for the document; [`checked_name`] is what refuses others.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FlowName {
    /// The flow's name (its file stem: letters, digits, `-`, `_`).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: String,
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    if is_flow_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "name: a flow name is 1 to 64 letters, digits, `-` or `_`".to_owned(),
            json!({ "field": "name", "value": name }),
        ))
    }
}

/// The file of flow `name`, if there is one (`.yaml`, or `.yml`).
fn flow_path(config: &Config, name: &str) -> Option<PathBuf> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| config.ivr.flows_dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Validates `text` as flow `name` against the configuration, as the engine would: the other
/// flows are the folder's, plus this one.
fn check(config: &Config, name: &str, file: &str, text: &str) -> Result<Flow, Vec<FlowError>> {
    let mut names = load::flow_names(&config.ivr.flows_dir);
    names.insert(name.to_owned());
    // No decoded prompts: the context takes prompt names from the prompt folder's files, as
    // `switchboard flow validate` does.
    let ctx = load::context(config, &Default::default(), names);
    validate::validate(file, text, &ctx)
}

fn not_found(name: String) -> ApiError {
    ApiError::NotFound {
        what: "flow",
        id: Some(name),
    }
}

fn invalid(name: &str, errors: Vec<FlowError>) -> ApiError {
    let n = errors.len();
    let issues: Vec<FlowIssue> = errors.into_iter().map(FlowIssue::from).collect();
    ApiError::Invalid {
        message: format!(
            "flow {name} does not validate ({n} error{})",
            if n == 1 { "" } else { "s" }
        ),
        details: json!({ "errors": issues }),
    }
}

/// Runs file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// Reads flow `name`: its path and text; `404` when there is no such file.
fn read(config: &Config, name: String) -> Result<(PathBuf, String), ApiError> {
    checked_name(&name)?;
    let Some(path) = flow_path(config, &name) else {
        return Err(not_found(name));
    };
    let text = std::fs::read_to_string(&path).map_err(ApiError::internal)?;
    Ok((path, text))
}

/// Every flow file in the flows folder, with its version and whether it validates now.
#[utoipa::path(
    get, path = "/api/v1/flows", tag = "flows",
    responses((status = 200, description = "The flows, by name", body = FlowList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<FlowList>, ApiError> {
    caller.require(READERS)?;
    let config = config(&state)?;
    let items = blocking(move || {
        let mut items = Vec::new();
        for name in load::flow_names(&config.ivr.flows_dir) {
            let Some(path) = flow_path(&config, &name) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let errors = check(&config, &name, &path.display().to_string(), &text)
                .err()
                .map_or(0, |e| e.len());
            items.push(FlowSummary {
                file: file_name(&path),
                version: version(&text),
                valid: errors == 0,
                errors,
                name,
            });
        }
        Ok(items)
    })
    .await?;
    Ok(Json(FlowList { items }))
}

/// One flow's YAML and version.
#[utoipa::path(
    get, path = "/api/v1/flows/{name}", tag = "flows",
    params(FlowName),
    responses(
        (status = 200, description = "The flow's text", body = FlowText),
        (status = 404, description = "No such flow", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(FlowName { name }): Path<FlowName>,
) -> Result<Json<FlowText>, ApiError> {
    caller.require(READERS)?;
    let config = config(&state)?;
    let (path, text) = blocking(move || read(&config, name)).await?;
    Ok(Json(FlowText {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file: file_name(&path),
        version: version(&text),
        yaml: text,
    }))
}

/// Check a flow text against the configuration (prompts, skill groups, accounts, the other
/// flows) without publishing it. `200` either way; the errors name line, column, node and field.
#[utoipa::path(
    post, path = "/api/v1/flows/validate", tag = "flows",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "Valid or not, with every error", body = Validation),
        (status = 422, description = "Unknown or missing field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn check_text(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ValidateRequest>,
) -> Result<Json<Validation>, ApiError> {
    caller.require(READERS)?;
    checked_name(&body.name)?;
    let config = config(&state)?;
    let errors = blocking(move || {
        let file = format!("{}.yaml", body.name);
        Ok(check(&config, &body.name, &file, &body.yaml).err())
    })
    .await?
    .unwrap_or_default();
    Ok(Json(Validation {
        valid: errors.is_empty(),
        errors: errors.into_iter().map(FlowIssue::from).collect(),
    }))
}

/// Publish a flow: validated first (`422` with every error, nothing written), then written into
/// the flows folder, where the engine's watcher publishes it (within about a second) and logs
/// it in the operation log.
#[utoipa::path(
    put, path = "/api/v1/flows/{name}", tag = "flows",
    params(FlowName),
    request_body = PublishRequest,
    responses(
        (status = 202, description = "Written; the engine publishes it", body = Accepted),
        (status = 422, description = "The flow does not validate (`details.errors`), or an unknown field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(FlowName { name }): Path<FlowName>,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    caller.require(PUBLISHERS)?;
    checked_name(&name)?;
    let config = config(&state)?;
    let publishers = state.engine.as_ref().map(|e| e.flow_publishers().clone());
    let accepted = blocking(move || {
        let dir = &config.ivr.flows_dir;
        // An existing `.yml` is replaced in place; otherwise the file is `<name>.yaml`.
        let path = flow_path(&config, &name).unwrap_or_else(|| dir.join(format!("{name}.yaml")));
        check(&config, &name, &path.display().to_string(), &body.yaml)
            .map_err(|errors| invalid(&name, errors))?;
        std::fs::create_dir_all(dir).map_err(ApiError::internal)?;
        let version = version(&body.yaml);
        // Announced before the rename, so the watcher finds it when it sees the new text. The
        // same text written again is no change to the watcher, so it is not announced.
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == body.yaml);
        if let (Some(publishers), false) = (&publishers, unchanged) {
            let actor = format!("api:{}", caller.token_name);
            publishers.announce(&name, &version, &actor, crate::clock::unix_ms());
        }
        // Not `*.yaml`: the watcher never takes the temporary file for a flow.
        // Its own name per request: two publishes of one flow at once never write into
        // each other's file.
        let tmp = dir.join(format!(
            ".{name}.{:016x}.publish.tmp",
            rand::random::<u64>()
        ));
        std::fs::write(&tmp, &body.yaml)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ApiError::internal(format!("{}: {e}", path.display()))
            })?;
        tracing::info!(flow = %name, token = %caller.token_id, "flow written for publishing");
        Ok(Accepted { version, name })
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// A flow's operation log: every publish and rejection, newest first.
#[utoipa::path(
    get, path = "/api/v1/flows/{name}/history", tag = "flows",
    params(FlowName),
    responses(
        (status = 200, description = "The operation log, newest first", body = History),
        (status = 404, description = "No such flow and no log of one", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(FlowName { name }): Path<FlowName>,
) -> Result<Json<History>, ApiError> {
    caller.require(READERS)?;
    checked_name(&name)?;
    let config = config(&state)?;
    let rows = state.store.flow_publications(&name).await?;
    if rows.is_empty() && flow_path(&config, &name).is_none() {
        return Err(not_found(name));
    }
    let items = rows
        .into_iter()
        .rev()
        .map(|r| Publication {
            id: r.id,
            at_ms: r.entry.at_ms,
            version: r.entry.version,
            actor: r.entry.actor,
            action: r.entry.action.code().to_owned(),
            diff: r.entry.diff,
            errors: r.entry.errors,
        })
        .collect();
    Ok(Json(History { items }))
}

/// The flow drawn as SVG (the picture `switchboard flow graph` draws).
#[utoipa::path(
    get, path = "/api/v1/flows/{name}/graph.svg", tag = "flows",
    params(FlowName),
    responses(
        (status = 200, description = "The picture", content_type = "image/svg+xml", body = String),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 422, description = "The flow does not validate (`details.errors`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn graph_svg(
    State(state): State<AppState>,
    caller: Caller,
    Path(FlowName { name }): Path<FlowName>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let config = config(&state)?;
    let svg = blocking(move || {
        let (path, text) = read(&config, name.clone())?;
        let flow = check(&config, &name, &path.display().to_string(), &text)
            .map_err(|errors| invalid(&name, errors))?;
        Ok(graph::svg(&flow))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// Flow tests to run. Without `yaml` (an empty body, `{}`), every test file in the flows
/// folder's `tests/` that targets the flow runs.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// A test file's text (the format of `ivr-flows/tests/*.yaml`); its `flow:` must name this
    /// flow. A text that is not such a file is refused with `422` and what is wrong in
    /// `details.errors`.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub yaml: Option<String>,
}

/// One step of a test call's path through the flows.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrailEntry {
    pub flow: String,
    pub node: String,
    /// How the call left the node (a menu key, `timeout`, …), if it did.
    pub exit: Option<String>,
}

/// One thing a test expected that the call did not do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestFailure {
    pub message: String,
}

/// How one scripted call went.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    /// `request` for the script in the body, `tests/<file>` for one from the folder.
    pub file: String,
    /// 1-based line of the test in its file.
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// The nodes the call passed, in order.
    pub trail: Vec<TrailEntry>,
    /// How the call ended (`{queue: sales}`, `{hangup: normal}`, …); `null` when it did not.
    pub end: Option<String>,
    /// Empty when the test passed.
    pub failures: Vec<TestFailure>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestSummary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
}

/// A flow test run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestRun {
    pub flow: String,
    /// The published version the tests ran against.
    pub version: String,
    pub summary: TestSummary,
    /// In file order.
    pub results: Vec<TestResult>,
}

impl From<TestOutcome> for TestResult {
    fn from(o: TestOutcome) -> TestResult {
        TestResult {
            passed: o.passed(),
            file: o.file,
            line: o.line,
            name: o.name,
            trail: o
                .trail
                .into_iter()
                .map(|t| TrailEntry {
                    flow: t.flow,
                    node: t.node,
                    exit: t.exit,
                })
                .collect(),
            end: o.end.map(|e| e.to_string()),
            failures: o
                .failures
                .into_iter()
                .map(|message| TestFailure { message })
                .collect(),
        }
    }
}

/// An optional JSON body: an empty body (or `null`) is `None`; anything else goes through
/// [`ApiJson`] (content type, syntax, unknown fields) like every other body.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge {
                        limit: crate::error::MAX_BODY_BYTES,
                    }
                } else {
                    ApiError::InvalidBody {
                        reason: e.body_text(),
                    }
                }
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        // `null` is no body too, as the OpenAPI document (`Option<T>`) describes it.
        let ApiJson(value) = ApiJson::<Option<T>>::from_request(req, state).await?;
        Ok(OptionalJson(value))
    }
}

/// The `422` for a test file that can not be run, with its line and field.
fn unrunnable(e: TestFileError) -> ApiError {
    let issue = match e {
        TestFileError::Invalid {
            file,
            line,
            column,
            field,
            message,
        } => FlowIssue {
            file,
            line,
            column,
            node: None,
            field,
            message,
        },
        TestFileError::Read { file, source } => FlowIssue {
            file,
            line: 0,
            column: 0,
            node: None,
            field: String::new(),
            message: source.to_string(),
        },
    };
    ApiError::Invalid {
        message: format!(
            "the test file {} can not be run: {}",
            issue.file, issue.message
        ),
        details: json!({ "errors": [issue] }),
    }
}

/// The 1-based line of the top-level `flow:` key, for an error about it.
fn flow_key_line(text: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with("flow:"))
        .map_or(1, |i| i + 1)
}

/// The test files to run for flow `name`: the script of the request, or the folder's files
/// that target the flow. A file that does not parse is an error when it targets the flow or
/// when it is unreadable enough that its target is unknown; one for another flow is skipped.
fn test_files(
    config: &Config,
    name: &str,
    yaml: Option<String>,
) -> Result<Vec<TestFile>, ApiError> {
    if let Some(text) = yaml {
        let file = flowtest::parse("request", &text).map_err(unrunnable)?;
        if file.flow != name {
            return Err(unrunnable(TestFileError::Invalid {
                file: "request".into(),
                line: flow_key_line(&text),
                column: 1,
                field: "flow".into(),
                message: format!("the tests are for flow {:?}, not {name:?}", file.flow),
            }));
        }
        return Ok(vec![file]);
    }
    let dir = config.ivr.flows_dir.join("tests");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new()); // no tests folder: no tests
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        // Named relative to the flows folder: the server's paths are not the client's business.
        let shown = format!("tests/{}", file_name(&path));
        let text = std::fs::read_to_string(&path).map_err(|source| {
            unrunnable(TestFileError::Read {
                file: shown.clone(),
                source,
            })
        })?;
        match flowtest::parse(&shown, &text) {
            Ok(file) if file.flow == name => files.push(file),
            Ok(_) => {}
            Err(e) => match flowtest::target_flow(&text) {
                Some(other) if other != name => {}
                _ => return Err(unrunnable(e)),
            },
        }
    }
    Ok(files)
}

/// Run flow tests against the flow as the engine serves it: the script in the body, or (with an
/// empty body or `{}`) every file in the flows folder's `tests/` that targets this flow. `200`
/// whether the tests pass or fail; `422` for a script that does not parse (line and field in
/// `details.errors`).
#[utoipa::path(
    post, path = "/api/v1/flows/{name}/test", tag = "flows",
    params(FlowName),
    request_body(
        content = Option<TestRequest>,
        description = "Optional: a test script; without one, the folder's tests of the flow run"
    ),
    responses(
        (status = 200, description = "Every test's result and a summary", body = TestRun),
        (status = 404, description = "No flow of that name is published", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (
            status = 422, body = ErrorBody,
            description = "A test file that does not parse (`details.errors`), or an unknown field"
        ),
        (status = 503, description = "The engine is not running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_tests(
    State(state): State<AppState>,
    caller: Caller,
    Path(FlowName { name }): Path<FlowName>,
    OptionalJson(body): OptionalJson<TestRequest>,
) -> Result<Json<TestRun>, ApiError> {
    caller.require(TESTERS)?;
    checked_name(&name)?;
    let config = config(&state)?;
    let flows: FlowSet = state
        .engine()?
        .flows()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let Some(flow) = flows.0.get(&name).cloned() else {
        return Err(not_found(name));
    };
    let yaml = body.unwrap_or_default().yaml;
    let results = blocking(move || {
        let files = test_files(&config, &name, yaml)?;
        let total: usize = files.iter().map(|f| f.tests.len()).sum();
        if total > MAX_TESTS {
            return Err(ApiError::Invalid {
                message: format!("{total} tests in one run; at most {MAX_TESTS}"),
                details: json!({ "field": "tests", "limit": MAX_TESTS, "count": total }),
            });
        }
        // Each scripted call stops at the runner's event limit, so a run is bounded.
        Ok(files
            .iter()
            .flat_map(|f| f.run(&flows))
            .map(TestResult::from)
            .collect::<Vec<_>>())
    })
    .await?;
    let passed = results.iter().filter(|r| r.passed).count();
    Ok(Json(TestRun {
        flow: flow.name.clone(),
        version: flow.version.clone(),
        summary: TestSummary {
            total: results.len(),
            passed,
            failed: results.len() - passed,
        },
        results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names_cannot_leave_the_folder() {
        for ok in ["main", "after-hours", "v2_sales"] {
            assert!(is_flow_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "a.yaml",
            ".hidden",
            &"x".repeat(65),
        ] {
            assert!(!is_flow_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_version_is_the_engines_content_hash() {
        let ctx = validate::Context::default();
        let text = "start: bye\nnodes:\n  bye:\n    type: hangup\n";
        let flow = validate::validate("x.yaml", text, &ctx).unwrap();
        assert_eq!(version(text), flow.version);
    }
}
