//! End to end: skill-group queues. SIPp callers dial a service number whose flow queues them;
//! agents' desk phones are SIPp UASes that registered their accounts first (a digest REGISTER run on
//! the port the UAS then takes over); the tests read what a manager and an integrator read
//! afterwards: the call record with its agent, skill group, queue wait and one sub-record per
//! ring attempt, and the call events a webhook receiver got.
//!
//! Event-driven throughout: the test waits (bounded) for the record to close, for SIPp runs to
//! end and for the receiver's requests; agents' ring times are a few seconds so a skipped
//! agent costs little.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, Account, CdrBy, Deadline, Server, ServerConfig};
use sqlx::Row;

const FLOW: &str = "\
start: q
nodes:
  q:
    type: queue
    queue: sales
    music: hold
    max_wait_s: 60
    exit_key: \"9\"
    exit: bye
    timeout: bye
    no_agents: bye
    full: bye
  bye:
    type: hangup
";

/// Two agents in `sales` under `strategy`, logged in from the start: 8001 on account 1001 and
/// 8002 on account 1002, each ringing at most 2 s.
fn skill_group(strategy: &str) -> String {
    format!(
        "skill_groups:
  - name: sales
    strategy: {strategy}
agents:
  - id: \"8001\"
    answer_mode: desk_phone
    accounts: [\"1001\"]
    skill_groups: [{{name: sales, order: 1}}]
    max_ring_s: 2
    wrap_up_s: 1
    sign_in: at_start
  - id: \"8002\"
    answer_mode: desk_phone
    accounts: [\"1002\"]
    skill_groups: [{{name: sales, order: 2}}]
    max_ring_s: 2
    wrap_up_s: 1
    sign_in: at_start
"
    )
}

fn config(strategy: &str, extra: &str) -> ServerConfig {
    ServerConfig::with_accounts([Account::demo(1001), Account::demo(1002)])
        .trust("127.0.0.1")
        .flow("main", FLOW)
        .number("4000", "main")
        .extra(&skill_group(strategy))
        .extra(extra)
}

/// The ACD columns of the main record and its legs: (agent, queue, queue_wait_ms,
/// talk_ms, legs as (agent, result, reason)).
#[allow(clippy::type_complexity)]
async fn acd_record(
    server: &Server,
    call_id: &str,
) -> (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Vec<(Option<String>, Option<String>, Option<String>)>,
) {
    let mut db = server.db().await;
    let row =
        sqlx::query("SELECT agent, queue, queue_wait_ms, talk_ms FROM cdrs WHERE call_id = ?")
            .bind(call_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    let legs = sqlx::query(
        "SELECT agent, result, reason FROM cdr_legs WHERE call_id = ? ORDER BY started_at_ms, leg_id",
    )
    .bind(call_id)
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    (row.get(0), row.get(1), row.get(2), row.get(3), legs)
}

/// A caller dials 4000 and waits in the queue; agent 8001 (first under `linear`) lets it ring
/// out and is skipped; agent 8002 answers, talks and hangs up; the flow then ends the call.
/// The record says who served, after what wait, with both ring attempts; the webhook receiver,
/// down during the call, gets every event afterwards, signed and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_queue_skips_an_agent_who_does_not_answer_and_the_next_one_serves() {
    let hook_port = free_port();
    let webhook = format!(
        "webhooks:
  - name: crm
    url: \"http://127.0.0.1:{hook_port}/events\"
    secret: \"test-secret-0123456789\"
    backoff_initial_ms: 200
    backoff_max_ms: 1000
"
    );
    let server = Server::start(&config("linear", &webhook).record_calls());
    let (p1, p2) = (free_port(), free_port());
    let ring_out = server
        .phone(
            &Account::demo(1001),
            server.sipp().scenario("uas_cancelled.xml"),
            p1,
        )
        .await;
    let answer = server
        .phone(
            &Account::demo(1002),
            server
                .sipp()
                .scenario("uas_agent_answer.xml")
                .arg("-d")
                .arg("1500")
                .key("info", server.dir().join("agent.info").display()),
            p2,
        )
        .await;
    let caller = server
        .dial("uac_ivr_until_bye.xml", "5550100", "4000")
        .key("info", server.dir().join("caller.info").display())
        .run()
        .await;
    assert_eq!(
        caller.code,
        Some(0),
        "{}\n{}",
        caller.report(),
        server.log()
    );
    let skipped = ring_out.await.unwrap();
    assert_eq!(
        skipped.code,
        Some(0),
        "agent 8001's phone was rung and cancelled\n{}",
        skipped.report()
    );
    let served = answer.await.unwrap();
    assert_eq!(
        served.code,
        Some(0),
        "agent 8002's phone answered\n{}",
        served.report()
    );
    let info = std::fs::read_to_string(server.dir().join("agent.info")).unwrap();
    assert!(
        info.contains("5550100"),
        "the agent's phone showed the caller: {info}"
    );

    let cdr = server.wait_cdr(CdrBy::Caller("5550100"), 1).await;
    assert_eq!(cdr.result.as_deref(), Some("answered"));
    assert!(cdr.recording_path.is_some(), "the call is recorded");
    let (agent, queue, wait, talk, legs) = acd_record(&server, &cdr.call_id).await;
    assert_eq!(agent.as_deref(), Some("8002"));
    assert_eq!(queue.as_deref(), Some("sales"));
    assert!(
        wait.unwrap() >= 2_000,
        "waited through 8001's 2 s ring: {wait:?}"
    );
    assert!(talk.unwrap() >= 1_000, "talked 1.5 s: {talk:?}");
    assert_eq!(
        legs,
        vec![
            (
                Some("8001".into()),
                Some("not_answered".into()),
                Some("agent_no_answer".into())
            ),
            (Some("8002".into()), Some("answered".into()), None),
        ]
    );

    // The receiver comes up only now: the outbox has been retrying.
    let got = Receiver::start(hook_port).await;
    let events = got.wait_for("cdr_written", Duration::from_secs(20)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "inbound_ringing",
            "outbound_ringing",
            "hangup",
            "outbound_ringing",
            "answered",
            "hangup",
            "hangup",
            "cdr_written"
        ],
        "{events:#?}"
    );
    for e in &events {
        assert!(
            switchboard_engine::webhook::verify(
                b"test-secret-0123456789",
                e.timestamp,
                e.body.as_bytes(),
                &e.signature
            ),
            "a valid signature on {}",
            e.kind
        );
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["call_id"], cdr.call_id.as_str());
    }
    let record: serde_json::Value = serde_json::from_str(&events.last().unwrap().body).unwrap();
    assert_eq!(record["data"]["agent"], "8002");
    server.assert_no_panic();
}

/// A caller who hangs up while the only agent's phone rings abandoned the queue: the record
/// says so, with the time waited, and the agent is idle again (not stuck reserved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_in_the_queue_is_abandoned_with_its_wait() {
    let server = Server::start(&config("ring_all", ""));
    let p1 = free_port();
    let ring = server
        .phone(
            &Account::demo(1001),
            server.sipp().scenario("uas_cancelled.xml"),
            p1,
        )
        .await;
    let caller = server
        .dial("uac_ivr_hang_up_after.xml", "5550101", "4000")
        .arg("-d")
        .arg("1500")
        .run()
        .await;
    assert_eq!(
        caller.code,
        Some(0),
        "{}\n{}",
        caller.report(),
        server.log()
    );
    let cancelled = ring.await.unwrap();
    assert_eq!(
        cancelled.code,
        Some(0),
        "the ringing phone was cancelled\n{}",
        cancelled.report()
    );
    let cdr = server.wait_cdr(CdrBy::Caller("5550101"), 1).await;
    assert_eq!(cdr.result.as_deref(), Some("not_answered"));
    assert_eq!(cdr.missed_reason.as_deref(), Some("abandoned_in_queue"));
    let (_, queue, wait, _, legs) = acd_record(&server, &cdr.call_id).await;
    assert_eq!(queue.as_deref(), Some("sales"));
    let wait = wait.unwrap();
    assert!((1_000..5_000).contains(&wait), "waited about 1.5 s: {wait}");
    assert_eq!(legs.len(), 1, "one ring attempt: {legs:?}");
    server.assert_no_panic();
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    kind: String,
    timestamp: u64,
    signature: String,
    body: String,
}

/// A minimal HTTP/1.1 webhook receiver on 127.0.0.1: answers 200 to every POST and keeps what
/// it got, in arrival order.
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    async fn start(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let sink = got.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(serve(stream, sink));
            }
        });
        Receiver { got }
    }

    /// Everything received, once an event of `kind` is among it (bounded wait).
    async fn wait_for(&self, kind: &str, limit: Duration) -> Vec<Delivery> {
        let deadline = Deadline::after(limit);
        loop {
            {
                let got = self.got.lock().unwrap();
                if got.iter().any(|d| d.kind == kind) {
                    return got.clone();
                }
            }
            assert!(!deadline.passed(), "no {kind} event within {limit:?}");
            deadline.tick().await;
        }
    }
}

async fn serve(mut stream: tokio::net::TcpStream, sink: Arc<Mutex<Vec<Delivery>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        // One request at a time: headers, then Content-Length bytes of body.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let len: usize = header("content-length").parse().unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            sink.lock().unwrap().push(Delivery {
                kind: header("x-switchboard-event"),
                timestamp: header("x-switchboard-timestamp").parse().unwrap_or(0),
                signature: header("x-switchboard-signature"),
                body,
            });
            buf.drain(..end + 4 + len);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    }
}
