//! End to end: the realtime event stream (`GET /api/v1/events`, Server-Sent Events) of the
//! running binary. A client connects, a SIPp caller dials a flow, and the client sees the
//! call's events in order up to its record; reconnecting with `Last-Event-ID` replays exactly
//! what came after; an id the server no longer holds (or from before a restart) gets a `gap`
//! message; agents' changes made through the API arrive as `agent_state`; a stop ends the
//! stream instead of holding the server up.
//!
//! The SSE client is the test's own: reqwest's body read chunk by chunk, messages split at blank
//! lines. Every read is bounded by a deadline; nothing waits for time to pass.
mod common;

use common::{Server, ServerConfig, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A menu that waits a minute for a key: the caller's hang-up ends the call.
const MENU_FLOW: &str = r#"start: menu
nodes:
  menu:
    type: menu
    prompt: beep
    choices:
      "1": bye
    timeout_s: 60
    retries: 0
    no_input: bye
    invalid: bye
  bye:
    type: hangup
"#;

/// One agent in one skill group, signed in at start.
const AGENTS: &str = "skill_groups:
  - name: sales
    strategy: linear
agents:
  - id: \"8001\"
    answer_mode: softphone
    skill_groups: [sales]
    sign_in: at_start
";

const WRONG: &str =
    "sb_000000000000_0000000000000000000000000000000000000000000000000000000000000000";

/// A client without an overall timeout: a stream stays open as long as the test reads it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One SSE message.
#[derive(Clone, Debug, PartialEq)]
struct Msg {
    id: Option<String>,
    event: String,
    data: Value,
}

impl Msg {
    fn id(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("a numeric id: {self:?}"))
    }
}

/// An open event stream.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    /// `GET path` with the token and, when given, `Last-Event-ID`; requires `200` and
    /// `text/event-stream`.
    async fn open(server: &Server, token: &str, path: &str, last_event_id: Option<&str>) -> Events {
        let mut req = client()
            .get(format!("http://{}{path}", server.http))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET {path}: {content_type}"
        );
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next message (comment lines, the keep-alives, are skipped); `None` when the server
    /// ended the stream. Fails if nothing comes within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Msg> {
        match tokio::time::timeout(limit, self.read()).await {
            Ok(msg) => msg,
            Err(_) => panic!("no event within {limit:?}; unparsed: {:?}", self.buf),
        }
    }

    async fn read(&mut self) -> Option<Msg> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(msg) = parse(&block) {
                    return Some(msg);
                }
            }
            let chunk = self.resp.chunk().await.expect("read the event stream")?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Messages up to and including the first that `last` accepts, all within `limit`.
    async fn until(&mut self, limit: Duration, last: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let mut got = Vec::new();
        let read = async {
            loop {
                let Some(msg) = self.read().await else {
                    return false;
                };
                let done = last(&msg);
                got.push(msg);
                if done {
                    return true;
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(true) => got,
            Ok(false) => panic!("the stream ended; so far: {got:#?}"),
            Err(_) => panic!("not within {limit:?}; so far: {got:#?}"),
        }
    }

    /// The next `n` messages.
    async fn take(&mut self, n: usize) -> Vec<Msg> {
        let mut got = Vec::new();
        for _ in 0..n {
            let msg = self
                .next(WAIT)
                .await
                .unwrap_or_else(|| panic!("the stream ended; so far: {got:#?}"));
            got.push(msg);
        }
        got
    }
}

/// One message block: `id:`, `event:`, `data:` lines; `None` for a block of comments only.
fn parse(block: &str) -> Option<Msg> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    let event = event?;
    let data = serde_json::from_str(&data.join("\n"))
        .unwrap_or_else(|e| panic!("data is JSON: {e}: {block:?}"));
    Some(Msg { id, event, data })
}

/// A SIPp caller from `from` to `number`, hanging up half a second after the answer; it must
/// succeed.
async fn call(server: &Server, scenario: &str, from: &str, number: &str) {
    let run = server
        .dial(scenario, from, number)
        .arg("-d")
        .arg("500")
        .run()
        .await;
    assert!(
        run.code == Some(0) && run.successful == 1,
        "the SIPp call failed\n{}\n--- server log ---\n{}",
        run.report(),
        server.log()
    );
}

/// A caller's whole call reaches a connected client in order, each message's id one more than
/// the last, ending with the record, which the REST API then serves. Reconnecting with the
/// second message's id (as a header, or in the query string) replays exactly the rest; filters
/// narrow the replay; an id the server never held gets a gap, then live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_streamed_in_order_and_a_reconnect_replays_exactly_the_rest() {
    let server = Server::start(
        &ServerConfig::default()
            .trust("127.0.0.1")
            .flow("main", MENU_FLOW)
            .number("4000", "main"),
    );
    let token = server.token("supervisor", "supervisor");
    let mut live = Events::open(&server, &token, "/api/v1/events", None).await;

    call(&server, "uac_ivr_hang_up_after.xml", "5550101", "4000").await;
    let msgs = live.until(WAIT * 2, |m| m.event == "cdr_written").await;
    let kinds: Vec<&str> = msgs.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"inbound_ringing"), "{msgs:#?}");
    assert!(kinds.contains(&"hangup"), "{msgs:#?}");
    let call_id = msgs[0].data["call_id"].as_str().unwrap().to_owned();
    assert_eq!(msgs[0].data["data"]["caller"], "5550101", "{msgs:#?}");
    assert_eq!(msgs[0].data["data"]["callee"], "4000", "{msgs:#?}");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.data["call_id"], call_id.as_str(), "one call: {msgs:#?}");
        assert_eq!(m.data["event"], m.event.as_str(), "the JSON names its kind");
        if i > 0 {
            assert_eq!(m.id(), msgs[i - 1].id() + 1, "no event missed: {msgs:#?}");
        }
    }
    let record = &msgs.last().unwrap().data["data"];
    assert_eq!(record["call_id"], call_id.as_str(), "{record}");
    // The record the event announces is there to read.
    let resp = client()
        .get(format!("http://{}/api/v1/cdrs/{call_id}", server.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["call_id"], call_id.as_str(), "{stored}");
    assert!(msgs.len() >= 3, "{msgs:#?}");

    // An agent's token gets the same call without its record (agents read no records).
    let agent = server.token("agent", "desk");
    let first_id = msgs[0].id.clone().unwrap();
    let mut replay = Events::open(&server, &agent, "/api/v1/events", Some(&first_id)).await;
    let seen = replay.take(msgs.len() - 2).await;
    let want: Vec<_> = msgs[1..]
        .iter()
        .filter(|m| m.event != "cdr_written")
        .cloned()
        .collect();
    assert_eq!(seen, want, "everything but the record");

    // Resuming after the second message replays exactly the rest, by header or by query.
    let second = msgs[1].id.clone().unwrap();
    let rest = &msgs[2..];
    let mut by_header = Events::open(&server, &token, "/api/v1/events", Some(&second)).await;
    assert_eq!(by_header.take(rest.len()).await, rest);
    let path = format!("/api/v1/events?last_event_id={second}");
    let mut by_query = Events::open(&server, &token, &path, None).await;
    assert_eq!(by_query.take(rest.len()).await, rest);

    // Filters narrow the replay: this call's hang-ups and record only.
    let first = msgs[0].id.clone().unwrap();
    let path = format!("/api/v1/events?types=hangup,cdr_written&call_id={call_id}");
    let mut filtered = Events::open(&server, &token, &path, Some(&first)).await;
    let wanted: Vec<Msg> = msgs[1..]
        .iter()
        .filter(|m| m.event == "hangup" || m.event == "cdr_written")
        .cloned()
        .collect();
    assert_eq!(filtered.take(wanted.len()).await, wanted);

    // An id this server never gave out: a gap first (resumable from its id), then live
    // events — here a refused call's.
    let mut old = Events::open(&server, &token, "/api/v1/events", Some("1")).await;
    let gap = old.next(WAIT).await.unwrap();
    assert_eq!(gap.event, "gap", "{gap:?}");
    assert_eq!(gap.data["reason"], "too_old", "{gap:?}");
    assert_eq!(
        gap.id(),
        msgs.last().unwrap().id(),
        "the newest id: {gap:?}"
    );
    call(&server, "uac_ivr_refused.xml", "5550102", "4999").await;
    let after = old.until(WAIT, |m| m.event == "cdr_written").await;
    assert_eq!(after[0].event, "inbound_ringing", "{after:#?}");
    assert_eq!(after[0].data["data"]["caller"], "5550102", "{after:#?}");
    assert_eq!(after[0].id(), gap.id() + 1, "{after:#?}");
    // The first client, still connected, saw the same.
    let also = live.until(WAIT, |m| m.event == "cdr_written").await;
    assert_eq!(also, after);
    // The agent's stream went from the first call's last event straight to the second call's:
    // no record in between.
    let without_record: Vec<_> = after
        .iter()
        .filter(|m| m.event != "cdr_written")
        .cloned()
        .collect();
    assert!(!without_record.is_empty() && without_record.len() < after.len());
    assert_eq!(replay.take(without_record.len()).await, without_record);
    server.assert_no_panic();
}

/// Agents' state changes made through the API reach a client filtered to that agent. A stop
/// ends the stream (the server does not wait on the client). After a restart the ids go on
/// above the old ones, and the last id from before it is answered with a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_changes_are_streamed_and_ids_keep_increasing_across_a_restart() {
    let config = ServerConfig::default().extra(AGENTS);
    let mut server = Server::start(&config);
    let token = server.token("admin", "admin");
    let path = "/api/v1/events?types=agent_state&agent=8001";
    let mut live = Events::open(&server, &token, path, None).await;
    let set = |server: &Server, state: &'static str| {
        let url = format!("http://{}/api/v1/agents/8001/state", server.http);
        let token = token.clone();
        async move {
            let resp = client()
                .put(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(format!(r#"{{"state":"{state}"}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{state}");
        }
    };
    set(&server, "busy").await;
    set(&server, "idle").await;
    let msgs = live.until(WAIT, |m| m.data["state"] == "idle").await;
    let states: Vec<(&str, &str, &str)> = msgs
        .iter()
        .map(|m| {
            (
                m.event.as_str(),
                m.data["agent"].as_str().unwrap(),
                m.data["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("agent_state", "8001", "busy"),
            ("agent_state", "8001", "idle")
        ]
    );
    let last = msgs.last().unwrap().id();

    // A stop ends the stream; the server does not sit out its shutdown timeout for it.
    let status = server.terminate(Duration::from_secs(8));
    assert!(
        status.is_some_and(|s| s.success()),
        "stopped cleanly: {status:?}\n{}",
        server.log()
    );
    assert_eq!(live.next(WAIT).await, None, "the stream ended");

    let server = Server::start_in(server.dir_handle(), &config);
    let mut resumed = Events::open(&server, &token, path, Some(&last.to_string())).await;
    let gap = resumed.next(WAIT).await.unwrap();
    assert_eq!(gap.event, "gap", "{gap:?}");
    assert_eq!(gap.data["reason"], "too_old", "{gap:?}");
    assert!(gap.id() > last, "{} > {last}", gap.id());
    set(&server, "busy").await;
    let busy = resumed.next(WAIT).await.unwrap();
    assert_eq!(busy.data["state"], "busy", "{busy:?}");
    assert!(busy.id() > gap.id(), "{busy:?} after {gap:?}");
    // The gap's id resumes: what came after it is replayed.
    let mut after_gap = Events::open(&server, &token, path, Some(&gap.id.clone().unwrap())).await;
    assert_eq!(after_gap.next(WAIT).await.unwrap(), busy);
    server.assert_no_panic();
}

/// Who may open the stream and what is refused before it starts, in the API's error shape;
/// and the OpenAPI document describes it as `text/event-stream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_for_every_role_and_bad_requests_are_refused_before_it_starts() {
    let server = Server::start(&ServerConfig::default());
    // Every role may follow the stream (there is no role it refuses, so no 403).
    let mut tokens = Vec::new();
    for role in ["admin", "supervisor", "developer", "agent"] {
        let token = server.token(role, role);
        drop(Events::open(&server, &token, "/api/v1/events", None).await);
        tokens.push(token);
    }
    let token = tokens[3].as_str();
    let request = |method: Method, path: &str, token: Option<&str>, last: Option<&str>| {
        let mut req = client().request(method, format!("http://{}{path}", server.http));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last);
        }
        async move {
            let resp = tokio::time::timeout(WAIT, req.send())
                .await
                .expect("an answer")
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // (method, path, token, Last-Event-ID, status, code)
    #[allow(clippy::type_complexity)]
    let cases: [(Method, &str, Option<&str>, Option<&str>, u16, &str); 9] = [
        (
            Method::GET,
            "/api/v1/events",
            None,
            None,
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/api/v1/events",
            Some(WRONG),
            None,
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/api/v1/events?types=answered,ringing",
            Some(token),
            None,
            422,
            "validation_failed",
        ),
        (
            Method::GET,
            "/api/v1/events?since=5",
            Some(token),
            None,
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/events?last_event_id=yesterday",
            Some(token),
            None,
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/events",
            Some(token),
            Some("-3"),
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/api/v1/events/42",
            Some(token),
            None,
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/api/v1/events",
            Some(token),
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/api/v1/events",
            Some(token),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, token, last, status, code) in cases {
        let what = format!("{method} {path} (Last-Event-ID {last:?})");
        let (got, body) = request(method, path, token, last).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
        assert!(body["error"]["details"].is_object(), "{what}: {body}");
    }
    let (_, unknown) = request(
        Method::GET,
        "/api/v1/events?types=ringing",
        Some(token),
        None,
    )
    .await;
    assert_eq!(unknown["error"]["details"]["field"], "types", "{unknown}");
    assert!(
        unknown["error"]["details"]["allowed"]
            .as_array()
            .unwrap()
            .contains(&Value::from("agent_state")),
        "{unknown}"
    );

    let (status, doc) = request(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let op = &doc["paths"]["/api/v1/events"]["get"];
    assert!(
        op["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{op}"
    );
    assert!(op["responses"]["401"].is_object(), "{op}");
    server.assert_no_panic();
}
