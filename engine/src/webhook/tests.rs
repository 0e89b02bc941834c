//! The outbox against a real SQLite file and a real HTTP receiver on loopback.
//!
//! The receiver is a few lines of HTTP/1.1 over tokio: it answers each request as the test's
//! `reply` function says (a status, a dropped connection, or no answer at all) and reports every
//! request on a channel. Tests wait on that channel with a bounded timeout, never on the clock.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::*;
use crate::config::Password;
use crate::events::{CallEvent, CallEventKind};
use crate::store::Store;

const SECRET: &str = "whsec-test-0123456789";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Read the request, then close without answering.
    Drop,
    /// Read the request and never answer (the sender's timeout fires).
    Hang,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// What the receiver answered.
    reply: Reply,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn call_and_kind(&self) -> (String, String) {
        let v = self.json();
        (
            v["call_id"].as_str().unwrap().to_owned(),
            v["event"].as_str().unwrap().to_owned(),
        )
    }

    fn acked(&self) -> bool {
        matches!(self.reply, Reply::Status(s) if (200..300).contains(&s))
    }
}

/// `reply(request, n)` decides the answer to the `n`-th request (from 0).
async fn receiver(
    reply: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener, reply))
}

fn serve(
    listener: TcpListener,
    reply: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
) -> mpsc::UnboundedReceiver<Request> {
    let (tx, rx) = mpsc::unbounded_channel();
    let reply = Arc::new(reply);
    let count = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(std::sync::Mutex::new(()));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (tx, reply, count, order) =
                (tx.clone(), reply.clone(), count.clone(), order.clone());
            tokio::spawn(async move {
                let Some(mut request) = read_request(&mut stream).await else {
                    return;
                };
                {
                    // Deciding and reporting under one lock: the channel's order is the order
                    // of the decisions, which tests that make one reply depend on another need.
                    let _order = order.lock().unwrap();
                    request.reply = reply(&request, count.fetch_add(1, Ordering::SeqCst));
                    let _ = tx.send(request.clone());
                }
                match request.reply {
                    Reply::Status(status) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    Reply::Drop => {}
                    Reply::Hang => {
                        // Until the sender gives up and closes.
                        let mut sink = [0u8; 64];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    rx
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        path,
        headers,
        body,
        reply: Reply::Status(0),
    })
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Request>) -> Request {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the receiver heard nothing in time")
        .expect("the receiver stopped")
}

/// Collect requests until `done` says the acknowledged ones are complete.
async fn collect_until(
    rx: &mut mpsc::UnboundedReceiver<Request>,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    let mut all = Vec::new();
    while !done(&all) {
        all.push(next(rx).await);
    }
    all
}

fn acked(all: &[Request]) -> Vec<&Request> {
    all.iter().filter(|r| r.acked()).collect()
}

fn hook(name: &str, addr: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        name: name.to_owned(),
        url: format!("http://{addr}/{name}").parse().unwrap(),
        secret: Password::new(SECRET),
        events: CallEventKind::ALL.to_vec(),
        timeout: Duration::from_millis(300),
        max_attempts: None,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
    }
}

fn event(call_id: &str, kind: CallEventKind, n: i64) -> CallEvent {
    CallEvent {
        kind,
        call_id: call_id.to_owned(),
        at_ms: 1_732_000_000_000 + n,
        data: json!({ "n": n }),
    }
}

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}/x.db", dir.path().display());
    Store::open(&url).await.unwrap()
}

/// What every acknowledged request must satisfy: a valid signature over the exact body, headers
/// that agree with the body, a timestamp near now.
fn assert_well_formed(r: &Request) {
    let timestamp: u64 = r.header(TIMESTAMP_HEADER).parse().unwrap();
    assert!(
        verify(
            SECRET.as_bytes(),
            timestamp,
            &r.body,
            r.header(SIGNATURE_HEADER)
        ),
        "{r:?}"
    );
    let now_s = u64::try_from(crate::rt::unix_ms() / 1000).unwrap();
    assert!(now_s.abs_diff(timestamp) < 60, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header(EVENT_HEADER), r.json()["event"].as_str().unwrap());
    r.header(DELIVERY_HEADER).parse::<i64>().unwrap();
}

/// Per call, the kinds in acknowledged order, each delivery id counted once.
fn per_call(acked: &[&Request]) -> HashMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut calls: HashMap<String, Vec<String>> = HashMap::new();
    for r in acked {
        if seen.insert(r.header(DELIVERY_HEADER).to_owned()) {
            let (call, kind) = r.call_and_kind();
            calls.entry(call).or_default().push(kind);
        }
    }
    calls
}

#[test]
fn signature_matches_an_independent_hmac() {
    let body = br#"{"event":"answered","call_id":"c-1","at_ms":1732000000000,"data":{}}"#;
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec-test-0123456789",
    //   b"1732000000." + body, hashlib.sha256).hexdigest())'
    let expected = "v1=6f2f5c6898914a848f66d92f8123eb94600a0376ada93dfeef31b9c150f2c3e5";
    assert_eq!(sign(SECRET.as_bytes(), 1_732_000_000, body), expected);
    assert!(verify(SECRET.as_bytes(), 1_732_000_000, body, expected));
    // A rotation header with the old and the new signature.
    let both = format!("v1=00ff, {expected}");
    assert!(verify(SECRET.as_bytes(), 1_732_000_000, body, &both));
    // Anything else changed, and it fails.
    assert!(!verify(SECRET.as_bytes(), 1_732_000_001, body, expected));
    assert!(!verify(
        b"another-secret-entirely",
        1_732_000_000,
        body,
        expected
    ));
    assert!(!verify(SECRET.as_bytes(), 1_732_000_000, b"{}", expected));
    assert!(!verify(
        SECRET.as_bytes(),
        1_732_000_000,
        body,
        &expected.to_uppercase()[3..]
    ));
    for bad in [
        "",
        "v1=",
        "v1=zz",
        "v0=6f2f",
        &expected[3..],
        &expected[..20],
    ] {
        assert!(
            !verify(SECRET.as_bytes(), 1_732_000_000, body, bad),
            "{bad}"
        );
    }
}

#[test]
fn back_off_doubles_caps_and_spreads_by_a_fifth() {
    let (initial, max) = (Duration::from_secs(1), Duration::from_secs(300));
    let at = |failures, unit| retry_delay(initial, max, failures, unit);
    assert_eq!(at(1, 0.5), Duration::from_secs(1));
    assert_eq!(at(2, 0.5), Duration::from_secs(2));
    assert_eq!(at(5, 0.5), Duration::from_secs(16));
    assert_eq!(at(9, 0.5), Duration::from_secs(256));
    assert_eq!(at(10, 0.5), Duration::from_secs(300));
    assert_eq!(at(u32::MAX, 0.5), Duration::from_secs(300));
    assert_eq!(at(1, 0.0), Duration::from_millis(800));
    assert_eq!(at(3, 1.0), Duration::from_millis(4800));

    let mut config = hook("crm", "127.0.0.1:1".parse().unwrap());
    config.backoff_initial = initial;
    config.backoff_max = max;
    assert_eq!(
        after_failure(&config, 3, 10_000, 0.5),
        AfterFailure::Retry { at_ms: 14_000 }
    );
    config.max_attempts = NonZeroU32::new(3);
    assert_eq!(
        after_failure(&config, 2, 10_000, 0.5),
        AfterFailure::Retry { at_ms: 12_000 }
    );
    assert_eq!(after_failure(&config, 3, 10_000, 0.5), AfterFailure::GiveUp);
}

/// The receiver drops the first connection, leaves the second unanswered, answers 503 and 500,
/// and only then 200: every event still arrives, signed, in order per call, each delivery id once.
#[tokio::test]
async fn a_receiver_that_is_down_gets_everything_in_order_per_call() {
    let (addr, mut rx) = receiver(|_, n| match n {
        0 => Reply::Drop,
        1 => Reply::Hang,
        2 => Reply::Status(503),
        3 => Reply::Status(500),
        _ => Reply::Status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let outbox = Outbox::new(store.pool().clone(), vec![hook("crm", addr)]);
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    use CallEventKind::*;
    let events = [
        event("a", InboundRinging, 1),
        event("b", InboundRinging, 2),
        event("a", Answered, 3),
        event("b", Hangup, 4),
        event("a", Hangup, 5),
        event("a", CdrWritten, 6),
        event("b", CdrWritten, 7),
    ];
    for e in &events {
        outbox.enqueue(e).await.unwrap();
    }
    let all = collect_until(&mut rx, |all| {
        per_call(&acked(all)).values().map(Vec::len).sum::<usize>() == 7
    })
    .await;
    let acked = acked(&all);
    for r in &acked {
        assert_well_formed(r);
        assert_eq!(r.path, "/crm");
    }
    let calls = per_call(&acked);
    assert_eq!(
        calls["a"],
        ["inbound_ringing", "answered", "hangup", "cdr_written"]
    );
    assert_eq!(calls["b"], ["inbound_ringing", "hangup", "cdr_written"]);
    // Acknowledged once each: no row is sent again after its 2xx.
    assert_eq!(acked.len(), 7);
    // Retries carry the same delivery id and body as the first try.
    for failed in all.iter().filter(|r| !r.acked()) {
        let same = acked
            .iter()
            .find(|r| r.header(DELIVERY_HEADER) == failed.header(DELIVERY_HEADER))
            .unwrap();
        assert_eq!(same.body, failed.body);
    }
    assert_eq!(all.iter().filter(|r| !r.acked()).count(), 4);
    // The bodies are the events as serialized.
    let bodies: Vec<serde_json::Value> = acked.iter().map(|r| r.json()).collect();
    for e in &events {
        assert!(bodies.contains(&serde_json::to_value(e).unwrap()), "{e:?}");
    }
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

/// Nothing listens on the port at first (connection refused): the attempt is recorded with the
/// cause, and once a receiver binds the port the event arrives.
#[tokio::test]
async fn a_closed_port_is_retried_until_a_receiver_listens() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let outbox = Outbox::new(store.pool().clone(), vec![hook("crm", addr)]);
    outbox
        .enqueue(&event("c-1", CallEventKind::Answered, 1))
        .await
        .unwrap();
    // One pass by hand, against the closed port.
    let client = reqwest::Client::new();
    assert!(delivery::deliver_due(&outbox, 0, &client).await.unwrap());
    let (attempts, failed, error): (i64, bool, String) =
        sqlx::query_as("SELECT attempts, failed, last_error FROM webhook_outbox")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((attempts, failed), (1, false));
    assert!(error.to_lowercase().contains("connect"), "{error}");
    assert!(!error.contains(SECRET), "{error}");
    assert_eq!(outbox.pending("crm").await.unwrap(), 1);

    let listener = TcpListener::bind(addr).await.unwrap();
    let mut rx = serve(listener, |_, _| Reply::Status(200));
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    let r = next(&mut rx).await;
    assert_well_formed(&r);
    assert_eq!(r.call_and_kind(), ("c-1".to_owned(), "answered".to_owned()));
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

/// Events enqueued while no worker runs survive closing and reopening the database.
#[tokio::test]
async fn rows_left_before_a_restart_are_delivered_after_it() {
    let (addr, mut rx) = receiver(|_, _| Reply::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store(&dir).await;
        let outbox = Outbox::new(store.pool().clone(), vec![hook("crm", addr)]);
        for (n, kind) in [
            CallEventKind::InboundRinging,
            CallEventKind::Answered,
            CallEventKind::Hangup,
        ]
        .into_iter()
        .enumerate()
        {
            outbox.enqueue(&event("c-1", kind, n as i64)).await.unwrap();
        }
        assert_eq!(outbox.pending("crm").await.unwrap(), 3);
        store.pool().close().await;
    }
    let store = store(&dir).await;
    let outbox = Outbox::new(store.pool().clone(), vec![hook("crm", addr)]);
    assert_eq!(outbox.pending("crm").await.unwrap(), 3);
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    let all = collect_until(&mut rx, |all| all.len() == 3).await;
    let kinds: Vec<String> = all.iter().map(|r| r.call_and_kind().1).collect();
    assert_eq!(kinds, ["inbound_ringing", "answered", "hangup"]);
    all.iter().for_each(assert_well_formed);
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

/// Only subscribed kinds are stored, per webhook; a kind nobody wants is not stored at all.
#[tokio::test]
async fn events_go_only_where_they_are_subscribed() {
    let (addr, mut rx) = receiver(|_, _| Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut hangups = hook("hangups", addr);
    hangups.events = vec![CallEventKind::Hangup, CallEventKind::CdrWritten];
    let mut answers = hook("answers", addr);
    answers.events = vec![CallEventKind::Answered, CallEventKind::Hangup];
    let outbox = Outbox::new(store.pool().clone(), vec![hangups, answers]);
    outbox
        .enqueue(&event("c-1", CallEventKind::InboundRinging, 1))
        .await
        .unwrap();
    outbox
        .enqueue(&event("c-1", CallEventKind::Answered, 2))
        .await
        .unwrap();
    outbox
        .enqueue(&event("c-1", CallEventKind::Hangup, 3))
        .await
        .unwrap();
    outbox
        .enqueue(&event("c-1", CallEventKind::CdrWritten, 4))
        .await
        .unwrap();
    assert_eq!(outbox.pending("hangups").await.unwrap(), 2);
    assert_eq!(outbox.pending("answers").await.unwrap(), 2);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        stored, 4,
        "inbound_ringing has no subscriber and is not stored"
    );

    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    let all = collect_until(&mut rx, |all| all.len() == 4).await;
    let mut seen: Vec<(String, String)> = all
        .iter()
        .map(|r| (r.path.clone(), r.call_and_kind().1))
        .collect();
    seen.sort();
    let expected = [
        ("/answers", "answered"),
        ("/answers", "hangup"),
        ("/hangups", "cdr_written"),
        ("/hangups", "hangup"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, k)| ((*p).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(seen, expected);
    // Each webhook has its own rows: four different delivery ids.
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|r| r.header(DELIVERY_HEADER)).collect();
    assert_eq!(ids.len(), 4);
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

/// An event the receiver always refuses is given up after `max_attempts`, marked failed, and the
/// call's later events then go out.
#[tokio::test]
async fn giving_up_marks_the_row_failed_and_lets_the_call_proceed() {
    let (addr, mut rx) = receiver(|r, _| {
        if r.call_and_kind().1 == "answered" {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut crm = hook("crm", addr);
    crm.max_attempts = NonZeroU32::new(2);
    let outbox = Outbox::new(store.pool().clone(), vec![crm]);
    for (n, kind) in [
        CallEventKind::InboundRinging,
        CallEventKind::Answered,
        CallEventKind::Hangup,
    ]
    .into_iter()
    .enumerate()
    {
        outbox.enqueue(&event("c-1", kind, n as i64)).await.unwrap();
    }
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    let all = collect_until(&mut rx, |all| {
        all.iter()
            .any(|r| r.acked() && r.call_and_kind().1 == "hangup")
    })
    .await;
    let kinds: Vec<(String, bool)> = all
        .iter()
        .map(|r| (r.call_and_kind().1, r.acked()))
        .collect();
    let expected = [
        ("inbound_ringing", true),
        ("answered", false),
        ("answered", false),
        ("hangup", true),
    ];
    let expected: Vec<(String, bool)> = expected
        .iter()
        .map(|(k, a)| ((*k).to_owned(), *a))
        .collect();
    assert_eq!(kinds, expected);
    // The hangup was sent only after the answered row was given up, so this is settled.
    let (attempts, failed, error): (i64, bool, String) = sqlx::query_as(
        "SELECT attempts, failed, last_error FROM webhook_outbox WHERE kind = 'answered'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((attempts, failed, error.as_str()), (2, true, "HTTP 500"));
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

/// Call `stuck` is refused until call `free` is fully delivered: if one call's failures held up
/// the others, `free` would never finish and neither would this test.
#[tokio::test]
async fn a_stuck_call_does_not_hold_up_other_calls() {
    let free_done = Arc::new(AtomicBool::new(false));
    let flag = free_done.clone();
    let (addr, mut rx) = receiver(move |r, _| {
        let (call, kind) = r.call_and_kind();
        if call == "free" {
            if kind == "hangup" {
                flag.store(true, Ordering::SeqCst);
            }
            Reply::Status(200)
        } else if flag.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Status(503)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let outbox = Outbox::new(store.pool().clone(), vec![hook("crm", addr)]);
    outbox
        .enqueue(&event("stuck", CallEventKind::InboundRinging, 1))
        .await
        .unwrap();
    outbox
        .enqueue(&event("stuck", CallEventKind::Hangup, 2))
        .await
        .unwrap();
    outbox
        .enqueue(&event("free", CallEventKind::InboundRinging, 3))
        .await
        .unwrap();
    outbox
        .enqueue(&event("free", CallEventKind::Hangup, 4))
        .await
        .unwrap();
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn_delivery(outbox.clone(), shutdown);
    let all = collect_until(&mut rx, |all| acked(all).len() == 4).await;
    let order: Vec<(String, String)> = acked(&all).iter().map(|r| r.call_and_kind()).collect();
    let expected = [
        ("free", "inbound_ringing"),
        ("free", "hangup"),
        ("stuck", "inbound_ringing"),
        ("stuck", "hangup"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, k)| ((*c).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(order, expected);
    // The stuck call's hangup was never sent before its first event got through.
    let stuck: Vec<(String, bool)> = all
        .iter()
        .filter(|r| r.call_and_kind().0 == "stuck")
        .map(|r| (r.call_and_kind().1, r.acked()))
        .collect();
    let first_ack = stuck.iter().position(|(_, a)| *a).unwrap();
    assert!(
        stuck[..first_ack]
            .iter()
            .all(|(k, _)| k == "inbound_ringing"),
        "{stuck:?}"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(WAIT, worker).await.unwrap().unwrap();
}

#[tokio::test]
async fn pruning_removes_only_old_settled_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let outbox = Outbox::new(
        store.pool().clone(),
        vec![hook("crm", "127.0.0.1:1".parse().unwrap())],
    );
    for n in 0..4 {
        outbox
            .enqueue(&event(&format!("c-{n}"), CallEventKind::Hangup, n))
            .await
            .unwrap();
    }
    let day = 86_400_000;
    let now = 100 * day;
    let rows = outbox.due("crm", i64::MAX, 10).await.unwrap();
    assert_eq!(rows.len(), 4);
    outbox
        .mark_delivered(rows[0].id, now - 8 * day)
        .await
        .unwrap();
    outbox
        .mark_delivered(rows[1].id, now - 6 * day)
        .await
        .unwrap();
    outbox
        .mark_failed_attempt(rows[2].id, 3, now - 8 * day, true, "HTTP 500")
        .await
        .unwrap();
    // rows[3] is still pending, however old.
    assert_eq!(outbox.prune(now, RETENTION).await.unwrap(), 2);
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM webhook_outbox ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(left, [rows[1].id, rows[3].id]);
    assert_eq!(outbox.pending("crm").await.unwrap(), 1);
    // Ids are never reused after pruning: a receiver's de-duplication stays sound.
    outbox
        .enqueue(&event("c-9", CallEventKind::Hangup, 9))
        .await
        .unwrap();
    let newest: i64 = sqlx::query_scalar("SELECT MAX(id) FROM webhook_outbox")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(newest > rows[3].id);
}
