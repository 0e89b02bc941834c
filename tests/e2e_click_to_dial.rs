//! End to end: click-to-dial through the HTTP API of the running binary. SIPp plays the carrier
//! behind a trunk (it challenges the INVITE, checks our digest, answers as the customer) and an
//! agent's desk phone (registered with digest, then answering as a UAS on the same port). The
//! test reads what an integrator reads: the `201` with the call id, the status endpoint while
//! the call runs and the record with both legs once it has ended.
mod common;

use std::time::Duration;

use common::api::Api;
use common::{free_port, Account, Deadline, Server, ServerConfig, Sipp};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Agent 8001 in `sales`, on account 1001's desk phone, logged in from the start; a trunk to the
/// carrier SIPp at `carrier_port` with a fixed display number.
fn config(carrier_port: u16) -> ServerConfig {
    ServerConfig::with_accounts([Account::demo(1001)])
        .flow(
            "callback",
            "start: greet\nnodes:\n  greet:\n    type: play\n    prompt: hold\n    next: q\n  q:\n    type: queue\n    queue: sales\n    timeout: bye\n    no_agents: bye\n    full: bye\n  bye:\n    type: hangup\n",
        )
        .extra(&format!(
            "trunks:
  - name: carrier
    address: \"127.0.0.1:{carrier_port}\"
    auth:
      username: \"sb-trunk\"
      password: \"trunk-secret-e2e\"
    number_format:
      country_code: \"86\"
      national_prefix: \"0\"
      outbound: national
    caller_id:
      mode: fixed
      number: \"+861088880000\"
skill_groups:
  - name: sales
    strategy: linear
agents:
  - id: \"8001\"
    answer_mode: desk_phone
    accounts: [\"1001\"]
    skill_groups: [{{name: sales, order: 1}}]
    max_ring_s: 10
    wrap_up_s: 1
    sign_in: at_start
blacklist:
  outbound: [\"+8613900000000\"]
"
        ))
}

/// Click-to-dial requests on the shared client.
impl Api {
    /// `POST /api/v1/calls` with an `Idempotency-Key` if given: status, body and headers.
    async fn dial(
        &self,
        token: &str,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self
            .request(Method::POST, "/api/v1/calls", Some(token))
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let headers = resp.headers().clone();
        let (status, body) = Api::read(resp).await;
        (status, body, headers)
    }

    /// The call's status until its record is closed (at most 30 s): the record.
    async fn ended(&self, token: &str, call_id: &str, server: &Server) -> Value {
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let (status, body) = self
                .get(&format!("/api/v1/calls/{call_id}"), Some(token))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] == "ended" && !body["cdr"]["ended_at_ms"].is_null() {
                return body["cdr"].clone();
            }
            assert!(
                !deadline.passed(),
                "the call never ended: {body}\n{}",
                server.log()
            );
            deadline.tick().await;
        }
    }
}

fn carrier(server: &Server, port: u16, calls: u32) -> Sipp {
    server
        .sipp()
        .scenario("uas_carrier_invite.xml")
        .port(port)
        .calls(calls)
        .key("info", server.dir().join("carrier.info").display())
}

async fn carrier_listening(port: u16) {
    let bound =
        tokio::task::spawn_blocking(move || common::wait_udp_bound(port, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(bound, "the carrier SIPp never listened");
}

fn legs(cdr: &Value) -> Vec<(String, Option<String>, String)> {
    let mut legs: Vec<(String, Option<String>, String)> = cdr["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["agent"].as_str().map(str::to_owned),
                l["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    legs.sort();
    legs
}

/// The customer is dialled through the trunk and answers; the flow greets them and queues them
/// to `sales`; agent 8001's phone rings with the customer's number, answers, talks and hangs
/// up; the customer gets BYE. The record: click-to-dial, the customer in E.164, the display
/// number, the flow's trail, and both legs answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_is_called_then_queued_to_an_agent() {
    let carrier_port = free_port();
    let server = Server::start(&config(carrier_port));
    let api = Api::new(&server);
    let website = server.token("developer", "website");
    let carrier_run = tokio::spawn(carrier(&server, carrier_port, 1).run());
    carrier_listening(carrier_port).await;
    let agent = server
        .phone(
            &Account::demo(1001),
            server
                .sipp()
                .scenario("uas_agent_answer.xml")
                .arg("-d")
                .arg("1000")
                .key("info", server.dir().join("agent.info").display()),
            free_port(),
        )
        .await;

    let (status, body, headers) = api
        .dial(
            &website,
            json!({"customer": "010 8888 1234", "flow": "callback", "variables": {"ticket": "T-1"}}),
            Some("repair-request-1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", server.log());
    let call_id = body["call_id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/api/v1/calls/{call_id}")
    );
    // The same request again with the same key: the first answer, not a second call.
    let (again, body2, headers2) = api
        .dial(
            &website,
            json!({"customer": "010 8888 1234", "flow": "callback", "variables": {"ticket": "T-1"}}),
            Some("repair-request-1"),
        )
        .await;
    assert_eq!(again, StatusCode::CREATED);
    assert_eq!(body2["call_id"], body["call_id"]);
    assert_eq!(headers2["idempotent-replayed"], "true");
    // The same key for another request is refused.
    let (reused, body3, _) = api
        .dial(
            &website,
            json!({"customer": "010 8888 9999", "flow": "callback"}),
            Some("repair-request-1"),
        )
        .await;
    assert_eq!(reused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body3["error"]["code"], "idempotency_key_reused");

    // While it runs, the status shows the live call.
    let (status, live) = api
        .get(&format!("/api/v1/calls/{call_id}"), Some(&website))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The greeting and the agent's second of talk are still ahead: the call is up.
    assert_eq!(live["status"], "in_progress", "{live}");
    assert_eq!(live["live"]["kind"], "click_to_dial", "{live}");
    assert_eq!(live["live"]["caller"], "+861088881234", "{live}");

    let served = agent.await.unwrap();
    assert_eq!(
        served.code,
        Some(0),
        "the agent's phone answered\n{}",
        served.report()
    );
    let info = std::fs::read_to_string(server.dir().join("agent.info")).unwrap();
    assert!(
        info.contains("861088881234"),
        "the agent saw the customer: {info}"
    );
    carrier_run.await.unwrap().assert_all_successful(1);
    let lines = std::fs::read_to_string(server.dir().join("carrier.info")).unwrap();
    assert_eq!(
        lines.trim(),
        format!("INVITE sip:01088881234@127.0.0.1:{carrier_port} sip:01088880000@switchboard"),
        "the carrier got the customer and the display number, national format"
    );

    let cdr = api.ended(&website, &call_id, &server).await;
    assert_eq!(cdr["call_type"], "click_to_dial", "{cdr}");
    assert_eq!(cdr["direction"], "outbound");
    assert_eq!(cdr["customer_number"], "+861088881234");
    assert_eq!(cdr["trunk_number"], "+861088880000");
    assert_eq!(cdr["result"], "answered");
    assert_eq!(cdr["agent"], "8001");
    assert_eq!(cdr["queue"], "sales");
    assert_eq!(cdr["flow"], "callback");
    let trail: Vec<&str> = cdr["ivr_trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        trail.iter().any(|s| s.contains("greet")) && trail.iter().any(|s| s.contains("q")),
        "{trail:?}"
    );
    assert_eq!(
        legs(&cdr),
        vec![
            (
                "agent".to_owned(),
                Some("8001".to_owned()),
                "answered".to_owned()
            ),
            ("outbound".to_owned(), None, "answered".to_owned()),
        ]
    );
    // The record is the same through the CDR endpoint.
    let (status, by_id) = api
        .get(&format!("/api/v1/cdrs/{call_id}"), Some(&website))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["call_type"], "click_to_dial");
}

/// Agent first: the agent's phone rings with the customer's number and answers; then the carrier
/// gets the customer's INVITE and answers; the agent hangs up and the customer gets BYE.
/// Refusals come back typed before anything is dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_rung_first_then_the_customer() {
    let carrier_port = free_port();
    let server = Server::start(&config(carrier_port));
    let api = Api::new(&server);
    let desk = server.token("agent", "desk-8001");

    // Refusals: typed, and nothing is dialled.
    for (body, status, code) in [
        (
            json!({"customer": "139 0000 0000", "skill_group": "sales"}),
            403,
            "blacklisted",
        ),
        (
            json!({"customer": "12ab", "skill_group": "sales"}),
            422,
            "invalid_number",
        ),
        (
            json!({"customer": "01088881234", "flow": "nope"}),
            422,
            "unknown_flow",
        ),
        (
            json!({"customer": "01088881234", "skill_group": "nope"}),
            422,
            "unknown_skill_group",
        ),
        (
            json!({"customer": "01088881234", "agent": "8009"}),
            422,
            "unknown_agent",
        ),
        (
            json!({"customer": "01088881234", "agent": "8001", "order": "agent_first"}),
            409,
            "agent_unreachable",
        ),
        (
            json!({"customer": "01088881234", "flow": "callback", "agent": "8001"}),
            422,
            "validation_failed",
        ),
        (
            json!({"customer": "01088881234", "flow": "callback", "colour": "red"}),
            422,
            "validation_failed",
        ),
        (
            json!({"customer": "01088881234", "skill_group": "sales", "order": "agent_first"}),
            422,
            "validation_failed",
        ),
    ] {
        let (got, err, _) = api.dial(&desk, body.clone(), None).await;
        assert_eq!(got.as_u16(), status, "{body} → {err}");
        assert_eq!(err["error"]["code"], code, "{body} → {err}");
    }

    let carrier_run = tokio::spawn(carrier(&server, carrier_port, 1).run());
    carrier_listening(carrier_port).await;
    let agent = server
        .phone(
            &Account::demo(1001),
            server
                .sipp()
                .scenario("uas_agent_answer.xml")
                .arg("-d")
                .arg("2500")
                .key("info", server.dir().join("agent.info").display()),
            free_port(),
        )
        .await;
    let (status, body, _) = api
        .dial(
            &desk,
            json!({"customer": "+86 10 8888 4321", "agent": "8001", "order": "agent_first"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", server.log());
    let call_id = body["call_id"].as_str().unwrap().to_owned();
    let served = agent.await.unwrap();
    assert_eq!(served.code, Some(0), "{}", served.report());
    carrier_run.await.unwrap().assert_all_successful(1);
    let info = std::fs::read_to_string(server.dir().join("agent.info")).unwrap();
    assert!(
        info.contains("861088884321"),
        "the agent saw the customer: {info}"
    );

    // The CRM (a developer token) reads the record; the agent's token sees only the status.
    let crm = server.token("developer", "crm");
    let cdr = api.ended(&crm, &call_id, &server).await;
    let (_, seen) = api
        .get(&format!("/api/v1/calls/{call_id}"), Some(&desk))
        .await;
    assert_eq!(seen["status"], "ended");
    assert!(seen.get("cdr").is_none(), "{seen}");
    assert_eq!(cdr["call_type"], "click_to_dial", "{cdr}");
    assert_eq!(cdr["customer_number"], "+861088884321");
    assert_eq!(cdr["result"], "answered");
    assert_eq!(cdr["agent"], "8001");
    assert!(cdr["talk_ms"].as_i64().unwrap() >= 1_000, "{cdr}");
    assert_eq!(
        legs(&cdr),
        vec![
            (
                "agent".to_owned(),
                Some("8001".to_owned()),
                "answered".to_owned()
            ),
            ("outbound".to_owned(), None, "answered".to_owned()),
        ]
    );
    // A call that never was, and a body that is not JSON.
    let (status, err) = api.get("/api/v1/calls/0000000000000000", Some(&desk)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    let (status, err) = api
        .post("/api/v1/calls", Some(&desk), "{\"customer\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_body");
    // Without a token, nothing is dialled.
    let body = json!({"customer": "01088881234", "skill_group": "sales"});
    let (status, _) = api.post("/api/v1/calls", None, &body.to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
