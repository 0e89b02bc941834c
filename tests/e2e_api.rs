//! End to end: the HTTP API of the running binary on a real SQLite database — tokens made by the
//! CLI and the API, the error shape, roles, CDR search, paging, the CSV export and the OpenAPI
//! document.
mod common;

use common::api::Api;
use common::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use switchboard_engine::cdr::{
    CallResult, CallType, CdrClose, CdrLeg, CdrOpen, Direction, LegKind, MissedReason,
};
use switchboard_engine::store::Store;

const WRONG: &str =
    "sb_000000000000_0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn tokens_are_created_listed_and_revoked() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let admin = server.token("admin", "ops");
    let developer = server.token("developer", "ci");

    // Create: success, then every way to get it wrong.
    let body = r#"{"name": "crm", "role": "supervisor"}"#;
    let (status, created) = api
        .call(Method::POST, "/api/v1/tokens", Some(&admin), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let supervisor = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["role"], "supervisor");
    assert!(supervisor.starts_with(&format!("sb_{id}_")));

    let missing = api
        .call(Method::POST, "/api/v1/tokens", None, Some(body))
        .await;
    Api::assert_error(&missing, 401, "unauthorized");
    let resp = api
        .raw(Method::POST, "/api/v1/tokens", Some(WRONG), Some(body))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let role = api
        .call(Method::POST, "/api/v1/tokens", Some(&developer), Some(body))
        .await;
    Api::assert_error(&role, 403, "forbidden");
    let malformed = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some("{\"name\":"),
        )
        .await;
    Api::assert_error(&malformed, 400, "invalid_body");
    let unknown = r#"{"name": "crm", "role": "agent", "rolle": "admin"}"#;
    let unknown = api
        .call(Method::POST, "/api/v1/tokens", Some(&admin), Some(unknown))
        .await;
    Api::assert_error(&unknown, 422, "validation_failed");
    assert_eq!(unknown.1["error"]["details"]["field"], "rolle");
    let bad_role = r#"{"name": "crm", "role": "root"}"#;
    let bad_role = api
        .call(Method::POST, "/api/v1/tokens", Some(&admin), Some(bad_role))
        .await;
    Api::assert_error(&bad_role, 422, "validation_failed");
    let huge = format!(r#"{{"name": "{}", "role": "agent"}}"#, "x".repeat(2 << 20));
    let huge = api
        .call(Method::POST, "/api/v1/tokens", Some(&admin), Some(&huge))
        .await;
    Api::assert_error(&huge, 413, "body_too_large");

    // List: every token, never a secret or a hash.
    let (status, list) = api
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "ci", "crm"]);
    let text = list.to_string();
    for secret in [&admin, &developer, &supervisor] {
        assert!(!text.contains(&secret[16..]), "a secret leaked: {text}");
    }
    assert!(!text.contains("hash"), "{text}");
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/tokens", None, None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/tokens", Some(WRONG), None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/tokens", Some(&supervisor), None)
            .await,
        403,
        "forbidden",
    );

    // The supervisor's token works until revoked, then is refused.
    assert_eq!(
        api.call(Method::GET, "/api/v1/cdrs", Some(&supervisor), None)
            .await
            .0,
        StatusCode::OK
    );
    let path = format!("/api/v1/tokens/{id}");
    Api::assert_error(
        &api.call(Method::DELETE, &path, None, None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::DELETE, &path, Some(WRONG), None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::DELETE, &path, Some(&developer), None)
            .await,
        403,
        "forbidden",
    );
    let (status, _) = api.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs", Some(&supervisor), None)
            .await,
        401,
        "unauthorized",
    );
    let nope = api
        .call(
            Method::DELETE,
            "/api/v1/tokens/ffffffffffff",
            Some(&admin),
            None,
        )
        .await;
    Api::assert_error(&nope, 404, "not_found");

    // The CLI sees the same tokens, and revokes too.
    let list = server.cli(&["token", "list"]);
    assert!(list.status.success(), "{list:?}");
    assert!(
        list.stdout.contains("crm") && list.stdout.contains("ci"),
        "{list:?}"
    );
    assert!(!list.stdout.contains(&admin[16..]), "{list:?}");
    let dev_id = &developer[3..15];
    assert!(server.cli(&["token", "revoke", dev_id]).status.success());
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs", Some(&developer), None)
            .await,
        401,
        "unauthorized",
    );
    assert!(!server
        .cli(&["token", "revoke", "ffffffffffff"])
        .status
        .success());
}

/// Seven closed records and one still up, on two customers, two queues and three results.
async fn seed(server: &Server) {
    let store = Store::open(&common::db_url(server.dir())).await.unwrap();
    for i in 0..8i64 {
        let id = format!("call-{i}");
        store
            .open_cdr(&CdrOpen {
                call_id: id.clone(),
                call_type: if i == 5 {
                    CallType::Outbound
                } else {
                    CallType::Inbound
                },
                direction: if i == 5 {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                customer_number: if i % 2 == 0 {
                    "13800000000".into()
                } else {
                    "13900000001".into()
                },
                trunk_number: Some("02188880000".into()),
                service_number: Some("4000".into()),
                // Two records share each start time: the call id orders them.
                started_at_ms: 1_700_000_000_000 + (i / 2) * 60_000,
            })
            .await
            .unwrap();
        if i == 7 {
            continue; // still up
        }
        let answered = i % 3 == 0;
        let close = CdrClose {
            ended_at_ms: 1_700_000_000_000 + (i / 2) * 60_000 + 30_000,
            answered_at_ms: answered.then_some(1_700_000_000_000 + (i / 2) * 60_000 + 5_000),
            result: if answered {
                CallResult::Answered
            } else {
                CallResult::NotAnswered
            },
            missed_reason: (!answered).then_some(MissedReason::QueueTimeout),
            agent: answered.then(|| "8001".to_owned()),
            queue: Some(if i < 4 { "sales" } else { "support" }.into()),
            ivr_trail: vec!["main:menu→1".into()],
            ..CdrClose::default()
        };
        store.close_cdr(&id, &close).await.unwrap();
        store
            .upsert_cdr_leg(&CdrLeg {
                leg_id: format!("leg-{i}"),
                call_id: id,
                kind: LegKind::Agent,
                peer: "8001".into(),
                started_at_ms: 1_700_000_000_000 + (i / 2) * 60_000 + 1_000,
                answered_at_ms: close.answered_at_ms,
                ended_at_ms: Some(close.ended_at_ms),
                result: Some(close.result),
                reason: close.missed_reason,
                agent: Some("8001".into()),
                queue: close.queue.clone(),
                hangup_by: None,
                caller_id: None,
                trunk: None,
            })
            .await
            .unwrap();
    }
}

fn call_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn call_records_are_searched_paged_and_exported() {
    let server = Server::start(&ServerConfig::default());
    seed(&server).await;
    let api = Api::new(&server);
    let developer = server.token("developer", "ci");
    let agent = server.token("agent", "desk");

    // Every page once, newest first, no duplicates.
    let mut seen = Vec::new();
    let mut path = "/api/v1/cdrs?limit=3".to_owned();
    for _ in 0..10 {
        let (status, page) = api.call(Method::GET, &path, Some(&developer), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(call_ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/cdrs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..8).rev().map(|i| format!("call-{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 8);

    // Filters, each answering what it names.
    let get = |query: &str| {
        let path = format!("/api/v1/cdrs?{query}");
        let api = &api;
        let developer = developer.clone();
        async move { api.call(Method::GET, &path, Some(&developer), None).await }
    };
    let (_, page) = get("customer_number=138%200000%200000").await;
    assert_eq!(call_ids(&page), ["call-6", "call-4", "call-2", "call-0"]);
    let (_, page) = get("trunk_number=13800000000").await;
    assert!(
        call_ids(&page).is_empty(),
        "customer and trunk numbers are separate filters"
    );
    let (_, page) = get("result=answered&queue=sales").await;
    assert_eq!(call_ids(&page), ["call-3", "call-0"]);
    let (_, page) = get("missed_reason=queue_timeout&agent=8001").await;
    assert!(call_ids(&page).is_empty());
    let (_, page) = get("call_type=outbound").await;
    assert_eq!(call_ids(&page), ["call-5"]);
    let (_, page) = get("from=2023-11-14T22:14:20Z&to=1700000180000").await;
    assert_eq!(call_ids(&page), ["call-5", "call-4", "call-3", "call-2"]);
    let (_, page) = get("customer_number=13900000001&limit=1").await;
    assert_eq!(
        page["items"][0]["legs"].as_array().map(Vec::len),
        Some(0),
        "call-7 is still up"
    );
    let bad = get("missed_reason=bored").await;
    Api::assert_error(&bad, 400, "bad_request");
    assert_eq!(bad.1["error"]["details"]["field"], "missed_reason");
    assert!(bad.1["error"]["details"]["allowed"]
        .as_array()
        .unwrap()
        .contains(&json!("queue_timeout")));
    Api::assert_error(&get("limit=501").await, 400, "bad_request");
    Api::assert_error(&get("cursor=nonsense").await, 400, "bad_request");
    Api::assert_error(&get("colour=blue").await, 400, "bad_request");
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs", None, None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs", Some(WRONG), None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs", Some(&agent), None)
            .await,
        403,
        "forbidden",
    );

    // One record, with its legs, in the shape the webhook carries.
    let (status, record) = api
        .call(Method::GET, "/api/v1/cdrs/call-3", Some(&developer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["result"], "answered");
    assert_eq!(record["legs"][0]["leg_id"], "leg-3");
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/nope", Some(&developer), None)
            .await,
        404,
        "not_found",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/call-3", None, None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/call-3", Some(WRONG), None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/call-3", Some(&agent), None)
            .await,
        403,
        "forbidden",
    );

    // The export: BOM, Chinese titles, labels, one line per main record.
    let resp = api
        .raw(
            Method::GET,
            "/api/v1/cdrs/export.csv?lang=zh",
            Some(&developer),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xef\xbb\xbf", "Excel needs the BOM");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("通话ID,通话类型") && lines[0].contains("未接原因"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 8, "{text}");
    assert!(
        lines[1].starts_with("call-7,"),
        "newest first: {}",
        lines[1]
    );
    assert!(text.contains("排队超时") && text.contains("接通"), "{text}");
    let resp = api
        .raw(
            Method::GET,
            "/api/v1/cdrs/export.csv?lang=en&queue=sales&result=answered",
            Some(&developer),
            None,
        )
        .await;
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("Customer number"), "{}", lines[0]);
    assert_eq!(lines.len(), 3, "{text}");
    Api::assert_error(
        &api.call(
            Method::GET,
            "/api/v1/cdrs/export.csv?lang=fr",
            Some(&developer),
            None,
        )
        .await,
        400,
        "bad_request",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/export.csv", None, None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/export.csv", Some(WRONG), None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/cdrs/export.csv", Some(&agent), None)
            .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let (status, doc) = api
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for &(method, path) in switchboard_api::ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        if !path.ends_with("openapi.json") {
            assert!(op["security"].is_array(), "{method} {path} needs a token");
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
        }
    }
    let unknown = api.call(Method::GET, "/api/v1/nowhere", None, None).await;
    Api::assert_error(&unknown, 404, "not_found");
}

/// Guessing tokens gets an address `429` after ten wrong ones, even for a good token; the log
/// names the address and the token id tried, never the secret.
#[tokio::test]
async fn wrong_tokens_are_rate_limited_and_logged_without_secrets() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let admin = server.token("admin", "ops");
    let secret = "0123456789abcdef".repeat(4);
    let guess = format!("sb_abcdefabcdef_{secret}");
    for _ in 0..10 {
        let got = api
            .call(Method::GET, "/api/v1/tokens", Some(&guess), None)
            .await;
        Api::assert_error(&got, 401, "unauthorized");
    }
    let resp = api
        .raw(Method::GET, "/api/v1/tokens", Some(&admin), None)
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    let log = server.log();
    assert!(
        log.contains("API authentication failed") && log.contains("abcdefabcdef"),
        "{log}"
    );
    assert!(log.contains("127.0.0.1"), "{log}");
    assert!(!log.contains(&secret), "a secret reached the log");
}

/// Agents and queues through the engine: sign in, state changes, sign out, the live view; the
/// engine's refusals come back as 409/404/422, roles and tokens as everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_signed_in_put_on_a_break_and_out_and_queues_show_them() {
    let server = Server::start(&ServerConfig::default().extra(
        "acd:\n  break_states: [lunch]\nskill_groups:\n  - name: sales\n    strategy: linear\nagents:\n  - id: \"8001\"\n    answer_mode: softphone\n    skill_groups: [sales]\n  - id: \"8002\"\n    answer_mode: softphone\n    skill_groups: [sales]\n    sign_in: at_start\n",
    ));
    let api = Api::new(&server);
    let sup = server.token("supervisor", "lead");
    let dev = server.token("developer", "crm");
    let sup = Some(sup.as_str());

    // The live view, before anything.
    let (status, agents) = api.call(Method::GET, "/api/v1/agents", sup, None).await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let state_of = |agents: &Value, id: &str| {
        agents["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state_of(&agents, "8001"), "logged_out");
    assert_eq!(state_of(&agents, "8002"), "idle", "signed in at start");

    // Sign in, twice: the second is refused by the engine.
    let path = "/api/v1/agents/8001/login";
    let (status, body) = api.call(Method::POST, path, sup, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    Api::assert_error(
        &api.call(Method::POST, path, sup, None).await,
        409,
        "conflict",
    );
    Api::assert_error(
        &api.call(Method::POST, "/api/v1/agents/9999/login", sup, None)
            .await,
        404,
        "not_found",
    );

    // A break under the admin's name; another name, a missing name, an unknown field.
    let state = "/api/v1/agents/8001/state";
    let (status, body) = api
        .call(
            Method::PUT,
            state,
            sup,
            Some(r#"{"state":"break","break_name":"lunch"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, agents) = api.call(Method::GET, "/api/v1/agents", sup, None).await;
    assert_eq!(state_of(&agents, "8001"), "break");
    let on_break = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "8001")
        .unwrap()["break_name"]
        .clone();
    assert_eq!(on_break, "lunch");
    for (body, code) in [
        (r#"{"state":"break","break_name":"nap"}"#, 422),
        (r#"{"state":"break"}"#, 422),
        (r#"{"state":"idle","mood":"good"}"#, 422),
        (r#"{"state":"asleep"}"#, 422),
        (r#"{"state":"#, 400),
    ] {
        let got = api.call(Method::PUT, state, sup, Some(body)).await;
        assert_eq!(got.0.as_u16(), code, "{body}: {}", got.1);
        assert!(got.1["error"]["code"].is_string());
    }

    // The queue view counts members by state.
    let (status, queues) = api.call(Method::GET, "/api/v1/queues", sup, None).await;
    assert_eq!(status, StatusCode::OK, "{queues}");
    let sales = &queues["items"][0];
    assert_eq!(sales["id"], "sales");
    assert_eq!(sales["waiting"], 0);
    assert_eq!(sales["agents_by_state"]["break"], 1);
    assert_eq!(sales["agents_by_state"]["idle"], 1);

    // Idle again, then out; out twice is refused.
    let (status, _) = api
        .call(Method::PUT, state, sup, Some(r#"{"state":"idle"}"#))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let out = "/api/v1/agents/8001/logout";
    let (status, _) = api.call(Method::POST, out, sup, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    Api::assert_error(
        &api.call(Method::POST, out, sup, None).await,
        409,
        "conflict",
    );

    // Tokens and roles: none, a wrong one, and a developer (not an agent manager).
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/agents", None, None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/queues", Some(WRONG), None)
            .await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::POST, path, Some(dev.as_str()), None).await,
        403,
        "forbidden",
    );
    server.assert_no_panic();
}

/// Calls in progress through the engine: a SIPp caller on the test line is listed, moved into a
/// flow that hangs up (the caller gets the BYE), and a second one is hung up by the API; what
/// cannot be done is refused in the error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_calls_are_listed_moved_and_hung_up() {
    let server = Server::start(
        &ServerConfig::default()
            .trust("127.0.0.1")
            .flow("farewell", "start: bye\nnodes:\n  bye:\n    type: hangup\n"),
    );
    let api = Api::new(&server);
    let sup = server.token("supervisor", "lead");
    let sup = Some(sup.as_str());
    let agent = server.token("agent", "desk");

    // A caller that stays until the server hangs up.
    let caller = |n: &str| {
        let info = server.dir().join(format!("{n}.info"));
        let run = tokio::spawn(
            server
                .dial("uac_ivr_until_bye.xml", n, "9999")
                .key("info", info.display())
                .run(),
        );
        (run, info)
    };
    let listed = |api: &Api, caller: &'static str| {
        let api = api.clone();
        let sup = sup.map(str::to_owned);
        async move {
            let deadline = common::Deadline::after(std::time::Duration::from_secs(15));
            loop {
                let (status, calls) = api
                    .call(Method::GET, "/api/v1/calls", sup.as_deref(), None)
                    .await;
                assert_eq!(status, StatusCode::OK, "{calls}");
                if let Some(c) = calls["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    // Listed once answered: only an answered call can be moved.
                    .find(|c| c["caller"] == caller && !c["answered_at_ms"].is_null())
                {
                    return c.clone();
                }
                assert!(!deadline.passed(), "{caller} never listed: {calls}");
                deadline.tick().await;
            }
        }
    };

    let (first, _) = caller("5550101");
    let call = listed(&api, "5550101").await;
    assert_eq!(call["kind"], "test_line");
    assert_eq!(call["callee"], "9999");
    let id = call["call_id"].as_str().unwrap().to_owned();

    // Refusals first: unknown field, unknown target kind, an unknown flow, no such call, role.
    let path = format!("/api/v1/calls/{id}/transfer");
    for (body, status, code) in [
        (
            r#"{"to":"flow","target":"farewell","now":true}"#,
            422,
            "validation_failed",
        ),
        (r#"{"to":"moon","target":"x"}"#, 422, "validation_failed"),
        (
            r#"{"to":"flow","target":"nowhere"}"#,
            422,
            "validation_failed",
        ),
        (r#"{"to":"flow""#, 400, "invalid_body"),
    ] {
        let got = api.call(Method::POST, &path, sup, Some(body)).await;
        Api::assert_error(&got, status, code);
    }
    Api::assert_error(
        &api.call(
            Method::POST,
            "/api/v1/calls/nosuchcall/transfer",
            sup,
            Some(r#"{"to":"flow","target":"farewell"}"#),
        )
        .await,
        404,
        "not_found",
    );
    Api::assert_error(
        &api.call(
            Method::DELETE,
            &format!("/api/v1/calls/{id}"),
            Some(agent.as_str()),
            None,
        )
        .await,
        403,
        "forbidden",
    );

    // Into the flow, which hangs up: the caller's run ends with the server's BYE.
    let (status, body) = api
        .call(
            Method::POST,
            &path,
            sup,
            Some(r#"{"to":"flow","target":"farewell"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = first.await.unwrap();
    assert!(run.code == Some(0), "{}", run.report());

    // A second caller is hung up by the API; then it is gone.
    let (second, _) = caller("5550102");
    let call = listed(&api, "5550102").await;
    let id = call["call_id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(Method::DELETE, &format!("/api/v1/calls/{id}"), sup, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let run = second.await.unwrap();
    assert!(run.code == Some(0), "{}", run.report());
    Api::assert_error(
        &api.call(Method::DELETE, &format!("/api/v1/calls/{id}"), sup, None)
            .await,
        404,
        "not_found",
    );
    let cdr = server.wait_cdr(common::CdrBy::Caller("5550102"), 1).await;
    assert_eq!(cdr.hangup_by.as_deref(), Some("system"), "{cdr:#?}");
    server.assert_no_panic();
}

/// Waits (bounded) until the newest entry of `flow`'s operation log publishes `version`;
/// returns that entry.
async fn published(api: &Api, token: Option<&str>, flow: &str, version: &str) -> Value {
    let path = format!("/api/v1/flows/{flow}/history");
    let deadline = common::Deadline::after(std::time::Duration::from_secs(15));
    loop {
        let (status, history) = api.call(Method::GET, &path, token, None).await;
        assert_eq!(status, StatusCode::OK, "{history}");
        let newest = &history["items"][0];
        if newest["action"] == "published" && newest["version"] == version {
            return newest.clone();
        }
        assert!(!deadline.passed(), "{version} never published: {history}");
        deadline.tick().await;
    }
}

/// IVR flows over HTTP: listed with their versions, read, checked, published through the
/// engine's file watcher (the operation log shows it), drawn; invalid texts are refused with
/// their line and field, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_are_listed_validated_published_and_drawn() {
    const BYE: &str = "start: bye\nnodes:\n  bye:\n    type: hangup\n";
    const BROKEN: &str = "start: nowhere\nnodes:\n  bye:\n    type: hangup\n";
    let server = Server::start(
        &ServerConfig::default()
            .ivr_watch(true)
            .flow("main", BYE)
            .flow("broken", BROKEN),
    );
    let api = Api::new(&server);
    let sup = server.token("supervisor", "lead");
    let sup = Some(sup.as_str());
    let dev = server.token("developer", "ci");
    let agent = server.token("agent", "desk");
    let main_file = server.dir().join("flows").join("main.yaml");

    // List: both files, the engine's version hash, and whether each validates.
    let (status, list) = api.call(Method::GET, "/api/v1/flows", sup, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["broken", "main"]);
    assert_eq!(items[0]["valid"], false);
    assert_eq!(items[1]["valid"], true);
    assert_eq!(items[1]["file"], "main.yaml");
    let version = items[1]["version"].as_str().unwrap().to_owned();
    assert_eq!(version.len(), 64);

    // One flow's text, for a developer too.
    let (status, main) = api
        .call(Method::GET, "/api/v1/flows/main", Some(&dev), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{main}");
    assert_eq!(main["yaml"], BYE);
    assert_eq!(main["version"], version.as_str());

    // Validate: a good text, and a bad one whose error names its line and field.
    let check = |yaml: &str| json!({ "name": "main", "yaml": yaml }).to_string();
    let (status, good) = api
        .call(
            Method::POST,
            "/api/v1/flows/validate",
            sup,
            Some(&check(BYE)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{good}");
    assert_eq!(good, json!({ "valid": true, "errors": [] }));
    let (status, bad) = api
        .call(
            Method::POST,
            "/api/v1/flows/validate",
            sup,
            Some(&check(BROKEN)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bad}");
    assert_eq!(bad["valid"], false);
    let start = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "start")
        .unwrap_or_else(|| panic!("no error on start: {bad}"));
    assert_eq!(start["line"], 1, "{bad}");
    assert!(start["message"].as_str().unwrap().contains("nowhere"));

    // Publish a new version: accepted, then published by the watcher within a bounded wait,
    // and logged with the token that wrote it as the actor.
    let next = format!("# second version\n{BYE}");
    let body = json!({ "yaml": next }).to_string();
    let (status, accepted) = api
        .call(Method::PUT, "/api/v1/flows/main", sup, Some(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let new_version = accepted["version"].as_str().unwrap().to_owned();
    assert_ne!(new_version, version);
    assert_eq!(std::fs::read_to_string(&main_file).unwrap(), next);
    let newest = published(&api, sup, "main", &new_version).await;
    assert_eq!(newest["actor"], "api:lead", "{newest}");
    assert!(newest["diff"]
        .as_str()
        .unwrap()
        .contains("+# second version"));

    // The same file edited by hand is the file watcher's change, not the API user's.
    std::fs::write(
        &main_file,
        format!("# edited by hand, in the folder\n{BYE}"),
    )
    .unwrap();
    let (_, by_hand) = api.call(Method::GET, "/api/v1/flows/main", sup, None).await;
    let by_hand = by_hand["version"].as_str().unwrap().to_owned();
    let newest = published(&api, sup, "main", &by_hand).await;
    assert_eq!(newest["actor"], "file-watch", "{newest}");
    // Back to the API's text, through the API: its token again.
    let (status, again) = api
        .call(Method::PUT, "/api/v1/flows/main", sup, Some(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let newest = published(&api, sup, "main", &new_version).await;
    assert_eq!(newest["actor"], "api:lead", "{newest}");

    // Publishing an invalid text is refused with its errors, and the file is left alone.
    let body = json!({ "yaml": BROKEN }).to_string();
    let refused = api
        .call(Method::PUT, "/api/v1/flows/main", sup, Some(&body))
        .await;
    Api::assert_error(&refused, 422, "validation_failed");
    assert!(
        !refused.1["error"]["details"]["errors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{}",
        refused.1
    );
    assert_eq!(std::fs::read_to_string(&main_file).unwrap(), next);
    let bad_name = api
        .call(Method::PUT, "/api/v1/flows/main.yaml", sup, Some(&body))
        .await;
    Api::assert_error(&bad_name, 400, "bad_request");

    // The picture; an invalid flow has none.
    let resp = api
        .raw(Method::GET, "/api/v1/flows/main/graph.svg", sup, None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    let svg = resp.text().await.unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/flows/broken/graph.svg", sup, None)
            .await,
        422,
        "validation_failed",
    );

    // Tokens, roles, unknown fields and unknown flows.
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/flows", None, None).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::GET, "/api/v1/flows", Some(&agent), None)
            .await,
        403,
        "forbidden",
    );
    Api::assert_error(
        &api.call(Method::PUT, "/api/v1/flows/main", Some(&dev), Some(&body))
            .await,
        403,
        "forbidden",
    );
    let unknown = api
        .call(
            Method::POST,
            "/api/v1/flows/validate",
            sup,
            Some(r#"{"name":"main","yaml":"","colour":"red"}"#),
        )
        .await;
    Api::assert_error(&unknown, 422, "validation_failed");
    assert_eq!(unknown.1["error"]["details"]["field"], "colour");
    for path in [
        "/api/v1/flows/nowhere",
        "/api/v1/flows/nowhere/history",
        "/api/v1/flows/nowhere/graph.svg",
    ] {
        Api::assert_error(
            &api.call(Method::GET, path, sup, None).await,
            404,
            "not_found",
        );
    }
    server.assert_no_panic();
}

/// Flow tests over HTTP, run against the flow the engine serves: a script from the body (one
/// passing test, one failing with its message), the folder's tests of the flow when the body
/// is empty, and scripts that do not parse refused with their line and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_tests_run_against_the_published_flow() {
    const ROUTED: &str = "start: route\nnodes:\n  route:\n    type: switch\n    cases:\n      - { when: \"caller.startswith('400')\", goto: vip }\n    default: bye\n  vip:\n    type: set\n    vars: { level: vip }\n    next: bye\n  bye:\n    type: hangup\n";
    const SCRIPT: &str = "flow: routed\ntests:\n  - name: a 400 caller is marked vip\n    caller: \"4001\"\n    expect:\n      trail: [route, vip, bye]\n      end: { hangup: normal }\n      vars: { level: vip }\n  - name: any caller is vip\n    caller: \"5001\"\n    expect:\n      trail: [route, vip, bye]\n";
    let server = Server::start(&ServerConfig::default().flow("routed", ROUTED));
    let api = Api::new(&server);
    let dev = server.token("developer", "ci");
    let dev = Some(dev.as_str());
    let agent = server.token("agent", "desk");
    let path = "/api/v1/flows/routed/test";
    let script = |yaml: &str| json!({ "yaml": yaml }).to_string();

    // A script in the body: one test passes, one fails and says why.
    let (status, run) = api
        .call(Method::POST, path, dev, Some(&script(SCRIPT)))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["flow"], "routed");
    assert_eq!(run["version"].as_str().unwrap().len(), 64);
    assert_eq!(
        run["summary"],
        json!({ "total": 2, "passed": 1, "failed": 1 })
    );
    let ok = &run["results"][0];
    assert_eq!(ok["name"], "a 400 caller is marked vip");
    assert_eq!(ok["passed"], true, "{ok}");
    assert_eq!(ok["failures"], json!([]));
    assert_eq!(ok["end"], "{hangup: normal}");
    let nodes: Vec<&str> = ok["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["route", "vip", "bye"]);
    let failed = &run["results"][1];
    assert_eq!(failed["passed"], false, "{failed}");
    assert_eq!(failed["line"], 9);
    let message = failed["failures"][0]["message"].as_str().unwrap();
    assert!(message.contains("trail"), "{message}");

    // No script: the folder's test files of this flow run; another flow's are left alone.
    let (status, run) = api.call(Method::POST, path, dev, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(
        run["summary"]["total"], 0,
        "no tests folder, no tests: {run}"
    );
    let tests_dir = server.dir().join("flows").join("tests");
    std::fs::create_dir_all(&tests_dir).unwrap();
    let passing = SCRIPT.split("  - name: any caller").next().unwrap();
    std::fs::write(tests_dir.join("routed.yaml"), passing).unwrap();
    std::fs::write(tests_dir.join("other.yaml"), "flow: other\ntests: oops\n").unwrap();
    for body in [None, Some("{}"), Some("null")] {
        let (status, run) = api.call(Method::POST, path, dev, body).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(
            run["summary"],
            json!({ "total": 1, "passed": 1, "failed": 0 })
        );
        assert_eq!(run["results"][0]["file"], "tests/routed.yaml");
    }
    // A broken file of this flow in the folder is refused with its file and line.
    std::fs::write(
        tests_dir.join("routed-broken.yaml"),
        "flow: routed\ntests:\n  - name: x\n    digits: [\"x\"]\n    expect: { trail: [route] }\n",
    )
    .unwrap();
    let broken = api.call(Method::POST, path, dev, Some("{}")).await;
    Api::assert_error(&broken, 422, "validation_failed");
    let issue = &broken.1["error"]["details"]["errors"][0];
    assert_eq!(issue["file"], "tests/routed-broken.yaml", "{issue}");
    assert_eq!(issue["line"], 4, "{issue}");
    assert_eq!(issue["field"], "tests[0].digits[0]", "{issue}");

    // Scripts that do not parse, or test another flow.
    let bad = api
        .call(
            Method::POST,
            path,
            dev,
            Some(&script(
                "flow: routed\ntests:\n  - name: x\n    expect: { colour: red }\n",
            )),
        )
        .await;
    Api::assert_error(&bad, 422, "validation_failed");
    let issue = &bad.1["error"]["details"]["errors"][0];
    assert_eq!(issue["line"], 4, "{issue}");
    assert!(
        issue["message"].as_str().unwrap().contains("colour"),
        "{issue}"
    );
    let elsewhere = api
        .call(
            Method::POST,
            path,
            dev,
            Some(&script(&SCRIPT.replace("flow: routed", "flow: main"))),
        )
        .await;
    Api::assert_error(&elsewhere, 422, "validation_failed");
    assert_eq!(
        elsewhere.1["error"]["details"]["errors"][0]["field"],
        "flow"
    );
    // A run is bounded: past the limit of scripted calls, nothing runs.
    let many: String = (0..=switchboard_api::flows::MAX_TESTS)
        .map(|i| format!("  - name: t{i}\n    expect: {{ trail: [route] }}\n"))
        .collect();
    let too_many = api
        .call(
            Method::POST,
            path,
            dev,
            Some(&script(&format!("flow: routed\ntests:\n{many}"))),
        )
        .await;
    Api::assert_error(&too_many, 422, "validation_failed");
    assert_eq!(too_many.1["error"]["details"]["field"], "tests");

    // Tokens, roles, malformed bodies, unknown fields, unknown flows.
    Api::assert_error(
        &api.call(Method::POST, path, None, Some("{}")).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::POST, path, Some(WRONG), Some("{}")).await,
        401,
        "unauthorized",
    );
    Api::assert_error(
        &api.call(Method::POST, path, Some(&agent), Some("{}")).await,
        403,
        "forbidden",
    );
    Api::assert_error(
        &api.call(Method::POST, path, dev, Some("{\"yaml\": ")).await,
        400,
        "invalid_body",
    );
    let unknown = api
        .call(Method::POST, path, dev, Some(r#"{"yaml":null,"only":"x"}"#))
        .await;
    Api::assert_error(&unknown, 422, "validation_failed");
    assert_eq!(unknown.1["error"]["details"]["field"], "only");
    Api::assert_error(
        &api.call(Method::POST, "/api/v1/flows/nowhere/test", dev, Some("{}"))
            .await,
        404,
        "not_found",
    );
    server.assert_no_panic();
}
