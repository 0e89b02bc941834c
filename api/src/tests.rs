//! The router in process: the OpenAPI document against [`ROUTES`], and the conventions every
//! endpoint shares. The binary's end-to-end tests (`tests/e2e_api.rs`) cover each endpoint.
use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use utoipa::OpenApi;

async fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/sb.db", dir.path().display()))
        .await
        .unwrap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    (dir, AppState::new(metrics, store))
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_served() {
    let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|&(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let list = &doc["paths"]["/api/v1/cdrs"]["get"];
    assert!(list["responses"]["401"].is_object(), "{list}");
    let names: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for filter in [
        "from",
        "to",
        "customer_number",
        "trunk_number",
        "missed_reason",
        "cursor",
    ] {
        assert!(names.contains(&filter), "{filter} in {names:?}");
    }
}

/// Every flow endpoint documents its `{name}` the same way: the pattern the handlers check.
#[test]
fn flow_names_in_paths_carry_their_pattern() {
    let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/flows/{name}") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let name = op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "name"))
                .unwrap_or_else(|| panic!("{method} {path}: no name parameter"));
            assert_eq!(name["in"], "path", "{method} {path}");
            assert_eq!(
                name["schema"]["pattern"], "^[A-Za-z0-9_-]{1,64}$",
                "{method} {path}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 5, "get, put, history, graph, test: {seen}");
}

#[tokio::test]
async fn every_route_is_mounted_and_guarded() {
    let (_dir, state) = state().await;
    for &(method, path) in ROUTES {
        let path = path.replace("{id}", "x").replace("{call_id}", "x");
        let req = Request::builder()
            .method(method.to_ascii_uppercase().as_str())
            .uri(&path)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (status, body) = send(&state, req).await;
        if path.ends_with("openapi.json") {
            assert_eq!(status, StatusCode::OK);
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_shape() {
    let (_dir, state) = state().await;
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let (status, body) = send(&state, get("/api/v1/nope")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &"not_found".into())
    );
    let (status, body) = send(
        &state,
        Request::put("/api/v1/cdrs").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::METHOD_NOT_ALLOWED, &"method_not_allowed".into())
    );
}

/// Ten bad tokens from one address, then even a good one is turned away for the cooldown.
#[tokio::test]
async fn repeated_failures_are_rate_limited() {
    let (_dir, state) = state().await;
    let (_, good) = auth::create_token(&state.store, "admin", auth::Role::Admin, 1)
        .await
        .unwrap();
    let with = |token: &str| {
        Request::get("/api/v1/tokens")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&state, with(&good)).await.0, StatusCode::OK);
    for _ in 0..10 {
        assert_eq!(
            send(&state, with("sb_nope")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, body) = send(&state, with(&good)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests");
}

/// The documented record is the record sent: every key `to_json` writes is a property of the
/// schema, and the other way round, for the main record and its legs.
#[test]
fn the_record_schema_matches_to_json() {
    use switchboard_engine::cdr::{CallType, CdrClose, CdrLeg, CdrOpen, Direction, LegKind};
    let row = switchboard_engine::store::CdrRow {
        open: CdrOpen {
            call_id: "c".into(),
            call_type: CallType::Inbound,
            direction: Direction::Inbound,
            customer_number: "1".into(),
            trunk_number: None,
            service_number: None,
            started_at_ms: 0,
        },
        close: Some(CdrClose::default()),
        legs: vec![CdrLeg {
            leg_id: "l".into(),
            call_id: "c".into(),
            kind: LegKind::Agent,
            peer: "8001".into(),
            started_at_ms: 0,
            answered_at_ms: None,
            ended_at_ms: None,
            result: None,
            reason: None,
            agent: None,
            queue: None,
            hangup_by: None,
            caller_id: None,
            trunk: None,
        }],
        mark: Some(switchboard_engine::store::marks::CdrMark {
            note: Some("call back".into()),
            by: "0123456789ab".into(),
            at_ms: 0,
        }),
    };
    let json = switchboard_engine::cdr::to_json(&row);
    let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let schemas = &doc["components"]["schemas"];
    assert_eq!(keys(&schemas["CdrRecord"]["properties"]), keys(&json));
    assert_eq!(
        keys(&schemas["CdrLegRecord"]["properties"]),
        keys(&json["legs"][0])
    );
    assert_eq!(
        keys(&schemas["CdrMarkRecord"]["properties"]),
        keys(&json["mark"])
    );
}
