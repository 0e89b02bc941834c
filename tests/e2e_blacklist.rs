//! End to end: the blacklists (客户号码黑名单) managed through the HTTP API of the running binary,
//! on a real SQLite database. An entry added through the API refuses the next SIPp call from
//! that number (403, the record's missed-call reason `blacklisted`), survives a restart, and once
//! deleted lets the next call through; CSV import reports exactly the bad lines and the export
//! reads back in; and every way to get a request wrong is answered in the API's error shape.
//!
//! The servers trust 127.0.0.1 (`auth.trusted`), so a SIPp caller's number is its From user
//! (`-key caller`), which the blacklist sees.
mod common;

use common::api::Api;
use common::{Cdr, CdrBy, Server, ServerConfig, Sipp, SippRun};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The service number callers dial, bound to a flow that plays a beep and hangs up.
const SERVICE: &str = "4000";
const HELLO_FLOW: &str = "start: hello\nnodes:\n  hello:\n    type: play\n    prompt: beep\n    next: bye\n  bye:\n    type: hangup\n";
const WRONG: &str =
    "sb_000000000000_0000000000000000000000000000000000000000000000000000000000000000";

fn config() -> ServerConfig {
    ServerConfig::default()
        .trust("127.0.0.1")
        .flow("hello", HELLO_FLOW)
        .number(SERVICE, "hello")
        .blacklist("5550777")
}

/// Blacklist requests on the shared client: CSV in and out, and a walk over every page.
impl Api {
    async fn import(&self, token: &str, content_type: &str, csv: &[u8]) -> (StatusCode, Value) {
        let resp = self
            .request(Method::POST, "/api/v1/blacklist/import", Some(token))
            .header("content-type", content_type)
            .body(csv.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/v1/blacklist/import: {e}"));
        Api::read(resp).await
    }

    async fn export(&self, token: &str, query: &str) -> String {
        let resp = self
            .raw(
                Method::GET,
                &format!("/api/v1/blacklist/export.csv{query}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        resp.text().await.unwrap()
    }

    /// Every entry, walking the pages `limit` at a time.
    async fn all(&self, token: &str, query: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/blacklist?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.call(Method::GET, &path, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            let got = page["items"].as_array().unwrap();
            assert!(got.len() <= limit as usize, "{page}");
            items.extend(got.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }
}

/// `(direction, number, note)` of listed entries, as a set.
fn entries(items: &[Value]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|e| {
            (
                e["direction"].as_str().unwrap().to_owned(),
                e["number"].as_str().unwrap().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A SIPp caller from `from` to the service number; `uac_ivr_until_bye.xml` writes the Call-ID
/// to its `info` file once the call is up.
fn caller(server: &Server, scenario: &str, from: &str) -> Sipp {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let info = server.dir().join(format!("caller-{from}-{n}.info"));
    server
        .dial(scenario, from, SERVICE)
        .key("info", info.display())
        .trace_msg()
}

/// The first final answer the caller received (`403 Forbidden`).
fn final_answer(run: &SippRun) -> String {
    run.received()
        .iter()
        .map(|m| m.lines().next().unwrap_or_default().trim().to_owned())
        .filter_map(|l| l.strip_prefix("SIP/2.0 ").map(str::to_owned))
        .find(|l| !l.starts_with('1'))
        .unwrap_or_default()
}

/// A call from `from` is refused with 403, and its record (the `nth` from that number) says
/// `blacklisted`.
async fn assert_refused(server: &Server, from: &str, nth: usize) {
    let run = server
        .run_ok(caller(server, "uac_ivr_refused.xml", from))
        .await;
    let answer = final_answer(&run);
    assert!(
        answer.starts_with("403"),
        "{from}: {answer:?}\n{}",
        run.messages
    );
    let cdr = server.wait_cdr(CdrBy::Caller(from), nth).await;
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (Some("system_not_answered"), Some("blacklisted")),
        "{cdr:#?}"
    );
}

/// The call reached the flow: not refused, the flow's prompt played.
#[track_caller]
fn assert_flow_ran(cdr: &Cdr) {
    assert_ne!(
        cdr.missed_reason.as_deref(),
        Some("blacklisted"),
        "{cdr:#?}"
    );
    assert_eq!(
        cdr.ivr_trail.first().map(String::as_str),
        Some("hello:hello→next"),
        "{cdr:#?}"
    );
}

/// Added through the API, an inbound entry refuses the next call from that number — and still
/// does after a restart; deleted, it lets the next call through to the flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_added_refuses_the_next_call_survives_a_restart_and_deleted_lets_calls_in() {
    let config = config();
    let mut server = Server::start(&config);
    let api = Api::new(&server);
    let admin = server.token("admin", "admin");

    // Before: the caller gets through.
    server
        .run_ok(caller(&server, "uac_ivr_until_bye.xml", "5550666"))
        .await;
    let cdr = server.wait_cdr(CdrBy::Caller("5550666"), 1).await;
    assert_flow_ran(&cdr);

    let (status, added) = api
        .call(
            Method::POST,
            "/api/v1/blacklist",
            Some(&admin),
            Some(r#"{"direction": "inbound", "number": " +555 0666 ", "note": "骚扰电话"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["number"], "5550666");
    assert_eq!(added["source"], "api");
    assert_eq!(added["note"], "骚扰电话");
    let id = added["id"].as_i64().unwrap();
    assert_refused(&server, "5550666", 2).await;
    // The configured entry keeps working beside it.
    assert_refused(&server, "5550777", 1).await;

    // A restart keeps the entry, and the engine loads it before the first call.
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    let mut server = Server::start_in(server.dir_handle(), &config);
    let api = Api::new(&server);
    let (status, kept) = api
        .call(
            Method::GET,
            &format!("/api/v1/blacklist/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept, added);
    assert_refused(&server, "5550666", 3).await;

    let path = format!("/api/v1/blacklist/{id}");
    let (status, _) = api.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server
        .run_ok(caller(&server, "uac_ivr_until_bye.xml", "5550666"))
        .await;
    let cdr = server.wait_cdr(CdrBy::Caller("5550666"), 4).await;
    assert_flow_ran(&cdr);
    Api::assert_error(
        &api.call(Method::GET, &path, Some(&admin), None).await,
        404,
        "not_found",
    );
    server.assert_no_panic();
    assert!(server.terminate(Duration::from_secs(10)).is_some());
}

/// The list shows configured entries (read-only, no id) before the added ones and pages through
/// both; what cannot be done is refused in the API's error shape.
#[tokio::test]
async fn entries_are_listed_paged_and_wrong_requests_refused() {
    let server = Server::start(&config());
    let api = Api::new(&server);
    let admin = server.token("admin", "admin");
    let supervisor = server.token("supervisor", "supervisor");
    let developer = server.token("developer", "developer");
    let agent = server.token("agent", "agent");

    for (token, direction, number, note) in [
        (&admin, "inbound", "1380000*", Some("号段")),
        (&supervisor, "outbound", "+86 139 0000 0000", None),
        (&admin, "inbound", "13800000001", Some("complaint")),
    ] {
        let body = json!({ "direction": direction, "number": number, "note": note }).to_string();
        let (status, got) = api
            .call(Method::POST, "/api/v1/blacklist", Some(token), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{got}");
    }

    // The configured entry first, without an id; then the added ones, oldest first.
    let (status, page) = api
        .call(Method::GET, "/api/v1/blacklist", Some(&developer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let numbers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["number"].as_str().unwrap())
        .collect();
    assert_eq!(
        numbers,
        ["5550777", "1380000*", "8613900000000", "13800000001"]
    );
    assert_eq!(page["items"][0]["source"], "config");
    assert!(page["items"][0]["id"].is_null());
    assert_eq!(page["items"][1]["created_by"].as_str().unwrap().len(), 12);
    assert!(page["next_cursor"].is_null());
    for limit in [1, 2, 3] {
        let walked = api.all(&supervisor, "", limit).await;
        assert_eq!(
            walked,
            page["items"].as_array().unwrap().clone(),
            "limit {limit}"
        );
    }
    let inbound = api.all(&admin, "&direction=inbound", 1).await;
    assert_eq!(inbound.len(), 3);
    let found = api.all(&admin, "&q=%2B86%20139", 10).await;
    assert_eq!(entries(&found).len(), 1);
    assert_eq!(found[0]["direction"], "outbound");
    let found = api.all(&admin, "&q=COMPLAINT", 10).await;
    assert_eq!(found[0]["number"], "13800000001");

    // Bad queries.
    for query in [
        "?limit=0",
        "?limit=501",
        "?cursor=zz",
        "?direction=sideways",
        "?colour=red",
    ] {
        Api::assert_error(
            &api.call(
                Method::GET,
                &format!("/api/v1/blacklist{query}"),
                Some(&admin),
                None,
            )
            .await,
            400,
            "bad_request",
        );
    }

    // Tokens and roles: developers read, agents do not; only admins and supervisors write.
    let body = r#"{"direction": "inbound", "number": "5550001"}"#;
    for (token, status, code) in [
        (None, 401, "unauthorized"),
        (Some(WRONG), 401, "unauthorized"),
        (Some(developer.as_str()), 403, "forbidden"),
        (Some(agent.as_str()), 403, "forbidden"),
    ] {
        Api::assert_error(
            &api.call(Method::POST, "/api/v1/blacklist", token, Some(body))
                .await,
            status,
            code,
        );
        Api::assert_error(
            &api.call(Method::DELETE, "/api/v1/blacklist/1", token, None)
                .await,
            status,
            code,
        );
        // (Without a token, the import is sent with a wrong one.)
        Api::assert_error(
            &api.import(token.unwrap_or(WRONG), "text/csv", b"direction,number\n")
                .await,
            status,
            code,
        );
    }
    for (token, status) in [(None, 401), (Some(WRONG), 401), (Some(agent.as_str()), 403)] {
        for path in [
            "/api/v1/blacklist",
            "/api/v1/blacklist/1",
            "/api/v1/blacklist/export.csv",
        ] {
            let got = api.call(Method::GET, path, token, None).await;
            assert_eq!(got.0.as_u16(), status, "{path}: {}", got.1);
        }
    }

    // Bodies: malformed, unknown field, not a number, not a direction, a note too long.
    for (body, status, code, field) in [
        (r#"{"direction": "inbound","#, 400, "invalid_body", None),
        (
            r#"{"direction": "inbound", "number": "5550001", "reason": "x"}"#,
            422,
            "validation_failed",
            Some("reason"),
        ),
        (
            r#"{"direction": "inbound", "number": "555-0001"}"#,
            422,
            "validation_failed",
            Some("number"),
        ),
        (
            r#"{"direction": "inbound", "number": "*"}"#,
            422,
            "validation_failed",
            Some("number"),
        ),
        (
            r#"{"direction": "sideways", "number": "5550001"}"#,
            422,
            "validation_failed",
            None,
        ),
    ] {
        let got = api
            .call(Method::POST, "/api/v1/blacklist", Some(&admin), Some(body))
            .await;
        Api::assert_error(&got, status, code);
        if let Some(field) = field {
            assert_eq!(got.1["error"]["details"]["field"], field, "{}", got.1);
        }
    }
    let long = json!({ "direction": "inbound", "number": "5550001", "note": "x".repeat(201) });
    let got = api
        .call(
            Method::POST,
            "/api/v1/blacklist",
            Some(&admin),
            Some(&long.to_string()),
        )
        .await;
    Api::assert_error(&got, 422, "validation_failed");
    assert_eq!(got.1["error"]["details"]["field"], "note");

    // Duplicates: of an added entry (the same number written another way), of a configured one.
    for (number, source) in [("13800000001", "api"), ("555 0777", "config")] {
        let body = json!({ "direction": "inbound", "number": number }).to_string();
        let got = api
            .call(Method::POST, "/api/v1/blacklist", Some(&admin), Some(&body))
            .await;
        Api::assert_error(&got, 409, "conflict");
        assert_eq!(got.1["error"]["details"]["source"], source, "{}", got.1);
    }
    // The same number on the other list is another entry.
    let body = r#"{"direction": "outbound", "number": "13800000001"}"#;
    let (status, _) = api
        .call(Method::POST, "/api/v1/blacklist", Some(&admin), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Not found: an unknown id, and anything that is no id (configured entries have none).
    for id in ["999", "abc", "5550777"] {
        let path = format!("/api/v1/blacklist/{id}");
        Api::assert_error(
            &api.call(Method::GET, &path, Some(&admin), None).await,
            404,
            "not_found",
        );
        Api::assert_error(
            &api.call(Method::DELETE, &path, Some(&admin), None).await,
            404,
            "not_found",
        );
    }
    server.assert_no_panic();
}

/// An import adds the good rows, counts the duplicates and names exactly the bad lines; a body
/// that is no CSV, or has no known header, is refused whole. The export, in either language,
/// reads back in on another server to the same list.
#[tokio::test]
async fn csv_import_reports_bad_lines_and_the_export_reads_back_in() {
    let server = Server::start(&config());
    let api = Api::new(&server);
    let admin = server.token("admin", "admin");
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/blacklist",
            Some(&admin),
            Some(r#"{"direction": "inbound", "number": "13800000001"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let csv = "direction,number,note\n\
               inbound,+86 138 0000 0002,\"spam, twice a day\"\n\
               inbound,13800000001,already listed\n\
               sideways,13800000003,\n\
               outbound,1390*,\n\
               inbound,5550777,configured\n\
               \n\
               inbound,12ab,\n\
               outbound,+86 138 0000 0002,other list\n\
               inbound,8613800000002,twice in the file\n\
               inbound,1,2,3\n";
    let (status, report) = api.import(&admin, "text/csv", csv.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(report["duplicates"], 3, "{report}");
    let lines: Vec<i64> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 8, 11], "{report}");
    assert!(report["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("sideways"));

    // The Chinese header and labels, with the export's byte order mark, CRLF line ends.
    let zh = "\u{feff}方向,号码,备注\r\n呼出,13700000000,\r\n呼入,13600000000,投诉\r\n";
    let (status, report) = api
        .import(&admin, "text/csv; charset=utf-8", zh.as_bytes())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["imported"].as_i64(),
            report["rejected"].as_array().map(Vec::len)
        ),
        (Some(2), Some(0)),
        "{report}"
    );

    // Refused whole: not CSV, no known header, an unknown column, not UTF-8, not text/csv.
    for (content_type, body, status, code, field) in [
        (
            "text/csv",
            b"\x89PNG\r\n\x1a\n\xff\xfe".to_vec(),
            422,
            "validation_failed",
            None,
        ),
        (
            "text/csv",
            b"13800000009,inbound\n".to_vec(),
            422,
            "validation_failed",
            Some("13800000009"),
        ),
        (
            "text/csv",
            b"direction,number,colour\n".to_vec(),
            422,
            "validation_failed",
            Some("colour"),
        ),
        ("text/csv", b"".to_vec(), 422, "validation_failed", None),
        (
            "application/json",
            br#"{"direction":"inbound","number":"1"}"#.to_vec(),
            400,
            "invalid_body",
            None,
        ),
    ] {
        let got = api.import(&admin, content_type, &body).await;
        Api::assert_error(&got, status, code);
        if let Some(field) = field {
            assert_eq!(got.1["error"]["details"]["field"], field, "{}", got.1);
        }
    }

    let listed = api.all(&admin, "", 500).await;
    assert_eq!(listed.len(), 1 + 1 + 3 + 2, "{listed:#?}");

    let zh = api.export(&admin, "").await;
    assert!(zh.starts_with("\u{feff}方向,号码,备注\r\n"), "{zh}");
    assert!(
        zh.contains("呼入,8613800000002,\"spam, twice a day\"\r\n"),
        "{zh}"
    );
    let en = api.export(&admin, "?lang=en").await;
    assert!(en.starts_with("\u{feff}direction,number,note\r\n"), "{en}");
    assert!(en.contains("outbound,1390*,\r\n"), "{en}");
    let only_outbound = api.export(&admin, "?lang=en&direction=outbound").await;
    assert_eq!(only_outbound.lines().count(), 1 + 3, "{only_outbound}");
    Api::assert_error(
        &api.call(
            Method::GET,
            "/api/v1/blacklist/export.csv?lang=fr",
            Some(&admin),
            None,
        )
        .await,
        400,
        "bad_request",
    );

    // Into an empty server, each export gives the same list; the configured entry comes along
    // as an added one.
    for export in [zh, en] {
        let other = Server::start(&ServerConfig::default());
        let other_api = Api::new(&other);
        let other_admin = other.token("admin", "admin");
        let (status, report) = other_api
            .import(&other_admin, "text/csv", export.as_bytes())
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["imported"], listed.len(), "{report}");
        assert_eq!(report["rejected"], json!([]), "{report}");
        let copied = other_api.all(&other_admin, "", 500).await;
        assert_eq!(entries(&copied), entries(&listed));
        // Back into the first server: nothing new.
        let (_, again) = api.import(&admin, "text/csv", export.as_bytes()).await;
        assert_eq!(
            (again["imported"].as_i64(), again["duplicates"].as_u64()),
            (Some(0), Some(listed.len() as u64)),
            "{again}"
        );
        other.assert_no_panic();
    }
    server.assert_no_panic();
}

/// An outbound entry added through the API stops the next call out to that number before any
/// carrier sees it: the record's missed-call reason is `outbound_blacklisted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_entry_stops_the_next_call_out() {
    // Nobody listens at the carrier's address: a call that got past the blacklist would fail
    // there, as a trunk failure.
    let trunk = format!(
        "trunks:\n  - name: carrier\n    address: \"127.0.0.1:{}\"\n    number_format:\n      \
         country_code: \"86\"\n      national_prefix: \"0\"\n      outbound: national\n",
        common::free_port()
    );
    let server = Server::start(
        &ServerConfig::with_accounts([common::Account::demo(1001)])
            .trust("127.0.0.1")
            .extra(&trunk),
    );
    let api = Api::new(&server);
    let supervisor = server.token("supervisor", "supervisor");
    let (status, added) = api
        .call(
            Method::POST,
            "/api/v1/blacklist",
            Some(&supervisor),
            Some(r#"{"direction": "outbound", "number": "+86 139 0000 0000"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");

    // Desk phone 1001 dials the number as people do.
    let run = server
        .dial("uac_ivr_hang_up_after.xml", "1001", "13900000000")
        .arg("-d")
        .arg("500")
        .trace_msg()
        .run()
        .await;
    assert_ne!(run.code, Some(0), "{}", run.report());
    assert!(final_answer(&run).starts_with("403"), "{}", run.messages);
    let cdr = server.wait_cdr(CdrBy::Caller("+8613900000000"), 1).await;
    assert_eq!(
        cdr.missed_reason.as_deref(),
        Some("outbound_blacklisted"),
        "{cdr:#?}"
    );
    server.assert_no_panic();
}
