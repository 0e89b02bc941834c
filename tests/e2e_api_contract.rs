//! End to end: the OpenAPI document says what the handlers take. A client that reads only the
//! document — and builds its requests from it, as a generated client or a fuzzer does — is not
//! refused for a request the document allows: an empty query value is the parameter not given
//! (and the document says so with `allowEmptyValue`), and what a handler refuses in a body (a
//! blank name, a break without a name, digits that are no DTMF) is a constraint in its schema.
//!
//! Found by running Schemathesis with `--checks all` (`positive_data_acceptance`): `?limit=`
//! was `400`, `{"state":"break","break_name":null}` and `{"name":""}` were `422`, while the
//! document allowed all three.
mod common;

use common::api::Api;
use common::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The parameter `name` of `method path` in the document.
fn param<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

/// A component schema's property.
fn property<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
    let p = &doc["components"]["schemas"][schema]["properties"][name];
    assert!(p.is_object(), "{schema}.{name} is not in the document");
    p
}

#[tokio::test]
async fn empty_query_values_are_parameters_not_given() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let token = server.token("admin", "ops");
    let admin = Some(token.as_str());

    // Each with every optional parameter empty answers as without them.
    for (empty, plain) in [
        (
            "/api/v1/cdrs?from=&to=&customer_number=&call_type=&result=&missed_reason=&queue=&agent=&marked=&limit=&cursor=",
            "/api/v1/cdrs",
        ),
        (
            "/api/v1/blacklist?direction=&q=&limit=&cursor=",
            "/api/v1/blacklist",
        ),
        (
            "/api/v1/reports/trunks?from=2026-11-01&to=2026-11-02&period=&tz=&trunk_number=&limit=&cursor=",
            "/api/v1/reports/trunks?from=2026-11-01&to=2026-11-02",
        ),
        // A bare name, with no `=`, is an empty value too.
        ("/api/v1/cdrs?limit&cursor", "/api/v1/cdrs"),
    ] {
        let got = api.get(empty, admin).await;
        assert_eq!(got.0, StatusCode::OK, "{empty}: {}", got.1);
        assert_eq!(got, api.get(plain, admin).await, "{empty}");
    }
    let csv = "/api/v1/blacklist/export.csv";
    assert_eq!(
        api.text(&format!("{csv}?direction=&lang="), &token).await,
        api.text(csv, &token).await
    );

    // A required parameter left empty is missing; a value that is there is still checked.
    let missing = api
        .get("/api/v1/reports/trunks?from=&to=2026-11-02", admin)
        .await;
    Api::assert_error(&missing, 422, "validation_failed");
    assert_eq!(missing.1["error"]["details"]["field"], "from");
    for bad in [
        "/api/v1/cdrs?limit=0",
        "/api/v1/cdrs?limit=%20",
        "/api/v1/blacklist?direction=sideways",
        "/api/v1/cdrs?cursor=zz",
    ] {
        Api::assert_error(&api.get(bad, admin).await, 400, "bad_request");
    }
    // An unknown parameter with a value is refused; empty, it says nothing and is let be.
    Api::assert_error(
        &api.get("/api/v1/cdrs?colour=red", admin).await,
        400,
        "bad_request",
    );
    assert_eq!(
        api.get("/api/v1/cdrs?colour=", admin).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_document_states_what_the_handlers_refuse() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let admin = server.token("admin", "ops");
    let admin = Some(admin.as_str());
    let (status, doc) = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);

    // Every operation has an id of its own: tools link operations by them (a duplicate `one`
    // sent Schemathesis from a new call's `cdr_url` to `GET /api/v1/flows/{name}`).
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: operationId {id:?} twice"
            );
        }
    }
    assert!(
        ids.contains("cdrs_one") && ids.contains("flows_one"),
        "{ids:?}"
    );

    // Query strings: optional parameters take an empty value; the typed ones say their type.
    let limit = param(&doc, "/api/v1/cdrs", "get", "limit");
    assert_eq!(limit["allowEmptyValue"], true);
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&1.into(), &500.into())
    );
    let call_type = param(&doc, "/api/v1/cdrs", "get", "call_type");
    assert!(call_type["schema"]["enum"]
        .as_array()
        .unwrap()
        .contains(&"click_to_dial".into()));
    assert!(call_type["description"].is_string(), "{call_type}");
    let from = param(&doc, "/api/v1/reports/agents", "get", "from");
    assert_eq!(from["required"], true);
    assert!(from.get("allowEmptyValue").is_none(), "{from}");
    let direction = param(&doc, "/api/v1/blacklist", "get", "direction");
    assert_eq!(
        direction["schema"]["enum"],
        serde_json::json!(["inbound", "outbound"])
    );

    // Bodies: the constraints are in the schemas, and the handlers refuse what breaks them.
    assert_eq!(property(&doc, "CreateToken", "name")["minLength"], 1);
    let blank = api
        .post(
            "/api/v1/tokens",
            admin,
            r#"{"name": "  ", "role": "agent"}"#,
        )
        .await;
    Api::assert_error(&blank, 422, "validation_failed");
    assert_eq!(blank.1["error"]["details"]["field"], "name");

    assert_eq!(property(&doc, "Transfer", "target")["minLength"], 1);
    assert_eq!(
        property(&doc, "SendDtmf", "digits")["pattern"],
        "^[0-9*#A-D]{1,32}$"
    );
    assert_eq!(property(&doc, "SendDtmf", "duration_ms")["minimum"], 40);
    for (body, field) in [
        (r#"{"to": "agent", "target": ""}"#, "target"),
        (r#"{"digits": ""}"#, "digits"),
        (r#"{"digits": "1", "duration_ms": 10}"#, "duration_ms"),
    ] {
        let path = if field == "target" {
            "/api/v1/calls/none/transfer"
        } else {
            "/api/v1/calls/none/dtmf"
        };
        let got = api.post(path, admin, body).await;
        Api::assert_error(&got, 422, "validation_failed");
        assert_eq!(got.1["error"]["details"]["field"], field, "{body}");
    }

    // JSON has one number type: a whole number written with a point is the integer.
    let got = api
        .post(
            "/api/v1/calls/none/dtmf",
            admin,
            r#"{"digits": "1", "duration_ms": 160.0}"#,
        )
        .await;
    Api::assert_error(&got, 404, "not_found");
    let got = api
        .post(
            "/api/v1/calls/none/dtmf",
            admin,
            r#"{"digits": "1", "duration_ms": 160.5}"#,
        )
        .await;
    Api::assert_error(&got, 422, "validation_failed");

    let customer = property(&doc, "ClickRequest", "customer");
    assert!(customer["pattern"].is_string(), "{customer}");
    let variables = property(&doc, "ClickRequest", "variables");
    assert_eq!(variables["maxProperties"], 32);
    assert!(
        variables["propertyNames"]["pattern"].is_string(),
        "{variables}"
    );
    let got = api
        .post(
            "/api/v1/calls",
            admin,
            r#"{"customer": "+8613800000001", "flow": "main", "variables": {"1st": "x"}}"#,
        )
        .await;
    Api::assert_error(&got, 422, "validation_failed");
    assert_eq!(got.1["error"]["details"]["field"], "variables");

    // An agent's state: a break needs its name, as a string; the other states take none.
    let set_state = &doc["components"]["schemas"]["SetState"]["oneOf"];
    let on_break = set_state
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["properties"]["state"]["enum"] == serde_json::json!(["break"]))
        .unwrap_or_else(|| panic!("no break branch in {set_state}"));
    assert_eq!(on_break["properties"]["break_name"]["type"], "string");
    assert!(on_break["required"]
        .as_array()
        .unwrap()
        .contains(&"break_name".into()));
    let state = "/api/v1/agents/8001/state";
    for body in [
        r#"{"state": "break", "break_name": null}"#,
        r#"{"state": "break"}"#,
        r#"{"state": "idle", "break_name": "lunch"}"#,
    ] {
        let got = api.put(state, admin, body).await;
        Api::assert_error(&got, 422, "validation_failed");
        assert_eq!(got.1["error"]["details"]["field"], "break_name", "{body}");
    }

    // A blacklist import starts with its header; an empty body has none.
    let import = &doc["paths"]["/api/v1/blacklist/import"]["post"]["requestBody"]["content"]
        ["text/csv"]["schema"];
    let import = match import["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => import,
    };
    assert!(import["pattern"]
        .as_str()
        .is_some_and(|p| p.contains("direction,number")));
    let resp = api
        .request(Method::POST, "/api/v1/blacklist/import", admin)
        .header("content-type", "text/csv")
        .send()
        .await
        .unwrap();
    Api::assert_error(&Api::read(resp).await, 422, "validation_failed");
}
