//! End to end: call control through the HTTP API of the running binary on a real SQLite
//! database — marking call records (标记), sending DTMF into a live call, and recording a live
//! call on demand.
//!
//! The live calls are placed by the test itself over UDP to the test line (9999): it holds the
//! RTP socket the server sends to, so the digits can be checked as the customer receives them.
mod common;

use common::api::Api;
use common::{Deadline, Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_engine::cdr::{CallResult, CallType, CdrClose, CdrOpen, Direction};
use switchboard_engine::store::Store;
use tokio::net::UdpSocket;

/// Requests only these tests make, on the shared client.
impl Api {
    /// The refusals every authenticated endpoint gives: no token, an unknown token, and the
    /// role `forbidden` (which the endpoint does not admit).
    async fn assert_guarded(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        forbidden: &str,
    ) {
        let none = self.call(method.clone(), path, None, body).await;
        Api::assert_error(&none, 401, "unauthorized");
        let wrong = self.call(method.clone(), path, Some(WRONG), body).await;
        Api::assert_error(&wrong, 401, "unauthorized");
        let role = self.call(method, path, Some(forbidden), body).await;
        Api::assert_error(&role, 403, "forbidden");
    }
}

const WRONG: &str =
    "sb_000000000000_0000000000000000000000000000000000000000000000000000000000000000";

/// The public id of a token (`sb_<id>_<secret>`): what a mark names as its author.
fn token_id(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

#[tokio::test]
async fn call_records_are_marked_filtered_exported_and_unmarked() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let desk = server.token("agent", "desk");
    let lead = server.token("supervisor", "lead");
    let crm = server.token("developer", "crm");

    // One call that ended, one still up.
    let store = Store::open(&common::db_url(server.dir())).await.unwrap();
    for (id, at) in [
        ("ended-1", 1_700_000_000_000),
        ("open-1", 1_700_000_060_000),
    ] {
        store
            .open_cdr(&CdrOpen {
                call_id: id.into(),
                call_type: CallType::Inbound,
                direction: Direction::Inbound,
                customer_number: "13800000000".into(),
                trunk_number: None,
                service_number: Some("4000".into()),
                started_at_ms: at,
            })
            .await
            .unwrap();
    }
    let ended = CdrClose {
        ended_at_ms: 1_700_000_030_000,
        result: CallResult::NotAnswered,
        ..CdrClose::default()
    };
    assert!(store.close_cdr("ended-1", &ended).await.unwrap());

    let mark = "/api/v1/cdrs/ended-1/mark";
    let (status, record) = api
        .call(
            Method::PUT,
            mark,
            Some(&desk),
            Some(r#"{"note":"  客户要求回电  "}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["call_id"], "ended-1");
    assert_eq!(record["marked"], true);
    assert_eq!(
        record["mark"]["note"], "客户要求回电",
        "the note is trimmed"
    );
    assert_eq!(record["mark"]["marked_by"], token_id(&desk));
    assert!(record["mark"]["marked_at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        record.as_object().unwrap().len(),
        3,
        "the mark only, not the record an agent may not read: {record}"
    );
    let (_, read) = api
        .call(Method::GET, "/api/v1/cdrs/ended-1", Some(&lead), None)
        .await;
    assert_eq!(
        read["mark"], record["mark"],
        "the mark is stored, not only answered"
    );

    // A call still in progress is marked too, without a note; its close keeps the mark.
    let (status, open) = api
        .call(
            Method::PUT,
            "/api/v1/cdrs/open-1/mark",
            Some(&lead),
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{open}");
    assert_eq!(
        (&open["marked"], &open["mark"]["note"]),
        (&json!(true), &Value::Null)
    );
    let close = CdrClose {
        ended_at_ms: 1_700_000_090_000,
        result: CallResult::Answered,
        answered_at_ms: Some(1_700_000_065_000),
        ..CdrClose::default()
    };
    assert!(store.close_cdr("open-1", &close).await.unwrap());
    let (_, closed) = api
        .call(Method::GET, "/api/v1/cdrs/open-1", Some(&lead), None)
        .await;
    assert_eq!(closed["result"], "answered");
    assert_eq!(closed["mark"], open["mark"], "the close keeps the mark");

    // Searched and exported by mark.
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = api
        .call(Method::GET, "/api/v1/cdrs?marked=true", Some(&lead), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), ["open-1", "ended-1"]);
    let bad = api
        .call(Method::GET, "/api/v1/cdrs?marked=yes", Some(&lead), None)
        .await;
    Api::assert_error(&bad, 400, "bad_request");
    assert_eq!(bad.1["error"]["details"]["field"], "marked");

    // 500 characters is the limit, counted as characters, not bytes.
    let long = "记".repeat(500);
    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/cdrs/open-1/mark",
            Some(&desk),
            Some(&json!({ "note": long }).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mark"]["note"], long.as_str());
    let too_long = api
        .call(
            Method::PUT,
            "/api/v1/cdrs/open-1/mark",
            Some(&desk),
            Some(&json!({ "note": format!("{long}!") }).to_string()),
        )
        .await;
    Api::assert_error(&too_long, 422, "validation_failed");
    assert_eq!(too_long.1["error"]["details"]["field"], "note");

    // An agent removes only its own marks; the supervisor's (set again here) stays.
    let (status, _) = api
        .call(
            Method::PUT,
            "/api/v1/cdrs/open-1/mark",
            Some(&lead),
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let others = api
        .call(
            Method::DELETE,
            "/api/v1/cdrs/open-1/mark",
            Some(&desk),
            None,
        )
        .await;
    Api::assert_error(&others, 403, "forbidden");
    // Unmarked: gone from the marked search, and the export says so in both languages.
    let (status, body) = api
        .call(
            Method::DELETE,
            "/api/v1/cdrs/open-1/mark",
            Some(&lead),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (_, unmarked) = api
        .call(Method::GET, "/api/v1/cdrs/open-1", Some(&lead), None)
        .await;
    assert_eq!(
        (&unmarked["marked"], &unmarked["mark"]),
        (&json!(false), &Value::Null)
    );
    let (status, _) = api
        .call(
            Method::DELETE,
            "/api/v1/cdrs/open-1/mark",
            Some(&desk),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "unmarking twice is no error"
    );
    let (_, page) = api
        .call(Method::GET, "/api/v1/cdrs?marked=true", Some(&lead), None)
        .await;
    assert_eq!(ids(&page), ["ended-1"]);
    let (_, page) = api
        .call(Method::GET, "/api/v1/cdrs?marked=false", Some(&lead), None)
        .await;
    assert_eq!(ids(&page), ["open-1"]);
    let en = api.text("/api/v1/cdrs/export.csv?lang=en", &lead).await;
    let lines: Vec<&str> = en.lines().collect();
    assert!(lines[0].ends_with(",Marked"), "{en}");
    assert!(
        lines[1].starts_with("open-1,") && lines[1].ends_with(",No"),
        "{en}"
    );
    assert!(
        lines[2].starts_with("ended-1,") && lines[2].ends_with(",Yes"),
        "{en}"
    );
    let zh = api.text("/api/v1/cdrs/export.csv?marked=true", &lead).await;
    let lines: Vec<&str> = zh.lines().collect();
    assert!(lines[0].ends_with(",标记"), "{zh}");
    assert_eq!(lines.len(), 2, "{zh}");
    assert!(lines[1].ends_with(",是"), "{zh}");

    // Refusals: tokens and roles, bodies, records that do not exist.
    api.assert_guarded(Method::PUT, mark, Some("{}"), &crm)
        .await;
    api.assert_guarded(Method::DELETE, mark, None, &crm).await;
    let malformed = api
        .call(Method::PUT, mark, Some(&desk), Some(r#"{"note":"#))
        .await;
    Api::assert_error(&malformed, 400, "invalid_body");
    let unknown = api
        .call(Method::PUT, mark, Some(&desk), Some(r#"{"notes":"x"}"#))
        .await;
    Api::assert_error(&unknown, 422, "validation_failed");
    assert_eq!(unknown.1["error"]["details"]["field"], "notes");
    let wrong_type = api
        .call(Method::PUT, mark, Some(&desk), Some(r#"{"note":5}"#))
        .await;
    Api::assert_error(&wrong_type, 422, "validation_failed");
    for method in [Method::PUT, Method::DELETE] {
        let missing = api
            .call(
                method,
                "/api/v1/cdrs/no-such-call/mark",
                Some(&desk),
                Some("{}"),
            )
            .await;
        Api::assert_error(&missing, 404, "not_found");
        assert_eq!(missing.1["error"]["details"]["id"], "no-such-call");
    }
    // None of the refusals touched the mark.
    let (_, read) = api
        .call(Method::GET, "/api/v1/cdrs/ended-1", Some(&lead), None)
        .await;
    assert_eq!(read["mark"], record["mark"]);
    server.assert_no_panic();
}

/// A caller the test plays itself: a SIP dialog to the test line over UDP, and the RTP socket
/// its SDP names.
struct Caller {
    sip: UdpSocket,
    rtp: UdpSocket,
    server: SocketAddr,
    number: String,
    call_id: String,
    /// The RTP timestamps of the telephone events seen so far (each end is sent three times).
    seen: std::sync::Mutex<Vec<u32>>,
}

impl Caller {
    /// Calls 9999 from `number` (trusted source: no authentication) and ACKs the answer.
    async fn dial(server: SocketAddr, number: &str) -> Caller {
        let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (sip_port, rtp_port) = (
            sip.local_addr().unwrap().port(),
            rtp.local_addr().unwrap().port(),
        );
        let call_id = format!("ctl-{number}-{sip_port}");
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        );
        let invite = format!(
            "INVITE sip:9999@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-{call_id}-1\r\n\
             From: <sip:{number}@127.0.0.1>;tag=c{sip_port}\r\nTo: <sip:9999@{server}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:{number}@127.0.0.1:{sip_port}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        sip.send_to(invite.as_bytes(), server).await.unwrap();
        let ok = loop {
            let msg = recv_sip(&sip).await;
            if msg.starts_with("SIP/2.0 200") {
                break msg;
            }
            assert!(msg.starts_with("SIP/2.0 1"), "the test line answers: {msg}");
        };
        let to = header(&ok, "To");
        let ack = format!(
            "ACK sip:9999@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK-{call_id}-ack\r\n\
             From: <sip:{number}@127.0.0.1>;tag=c{sip_port}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), server).await.unwrap();
        Caller {
            sip,
            rtp,
            server,
            number: number.to_owned(),
            call_id,
            seen: Default::default(),
        }
    }

    /// Waits for the server's BYE and answers it.
    async fn answer_bye(&self) {
        loop {
            let msg = recv_sip(&self.sip).await;
            if !msg.starts_with("BYE ") {
                continue;
            }
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                ok.push_str(&format!("{name}: {}\r\n", header(&msg, name)));
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            self.sip.send_to(ok.as_bytes(), self.server).await.unwrap();
            assert!(msg.contains(&self.call_id), "{msg}");
            return;
        }
    }

    /// The telephone events (payload type 101) that arrive within `limit`, one per event:
    /// (RTP timestamp, event code, the final duration in timestamp units), in arrival order,
    /// until `count` events have ended.
    async fn dtmf_events(&self, count: usize, limit: Duration) -> Vec<(u32, u8, u16)> {
        let deadline = Deadline::after(limit);
        let mut events: Vec<(u32, u8, u16)> = Vec::new();
        let mut buf = [0u8; 1500];
        while events.len() < count {
            assert!(!deadline.passed(), "only {events:?} within {limit:?}");
            let Ok(n) =
                tokio::time::timeout(Duration::from_millis(100), self.rtp.recv(&mut buf)).await
            else {
                continue;
            };
            let n = n.unwrap();
            let p = &buf[..n];
            if n < 16 || p[1] & 0x7f != 101 {
                continue;
            }
            let header_len = 12 + 4 * usize::from(p[0] & 0x0f);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let (code, end) = (p[header_len], p[header_len + 1] & 0x80 != 0);
            let duration = u16::from_be_bytes([p[header_len + 2], p[header_len + 3]]);
            // The end packet is sent three times; the first one counts.
            let mut seen = self.seen.lock().unwrap();
            if end && !seen.contains(&ts) {
                seen.push(ts);
                events.push((ts, code, duration));
            }
        }
        events
    }
}

async fn recv_sip(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("a SIP message within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A header's value (the first one), by its full name.
fn header(msg: &str, name: &str) -> String {
    msg.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// The live call of `caller`, once the API lists it answered.
async fn live_call_id(api: &Api, token: &str, caller: &str) -> String {
    let deadline = Deadline::after(Duration::from_secs(15));
    loop {
        let (status, calls) = api
            .call(Method::GET, "/api/v1/calls", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{calls}");
        if let Some(c) = calls["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["caller"] == caller && !c["answered_at_ms"].is_null())
        {
            return c["call_id"].as_str().unwrap().to_owned();
        }
        assert!(!deadline.passed(), "{caller} never listed: {calls}");
        deadline.tick().await;
    }
}

#[tokio::test]
async fn dtmf_reaches_the_customer_as_telephone_events_one_after_another() {
    let server = Server::start(&ServerConfig::default().trust("127.0.0.1"));
    let api = Api::new(&server);
    let lead = server.token("supervisor", "lead");
    let desk = server.token("agent", "desk");
    let caller = Caller::dial(server.udp, "5550201").await;
    let id = live_call_id(&api, &lead, &caller.number).await;
    let path = format!("/api/v1/calls/{id}/dtmf");

    let (status, body) = api
        .call(
            Method::POST,
            &path,
            Some(&lead),
            Some(r#"{"digits":"12#"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let events = caller.dtmf_events(3, Duration::from_secs(5)).await;
    let codes: Vec<u8> = events.iter().map(|e| e.1).collect();
    assert_eq!(codes, [1, 2, 11], "1, 2 and # in order: {events:?}");
    for e in &events {
        assert_eq!(e.2, 1280, "160 ms at 8 kHz by default: {events:?}");
    }
    for w in events.windows(2) {
        let gap = w[1].0.wrapping_sub(w[0].0.wrapping_add(u32::from(w[0].2)));
        assert!(
            (160..8000).contains(&gap),
            "a gap of at least 20 ms between digits: {events:?}"
        );
    }
    let (status, body) = api
        .call(
            Method::POST,
            &path,
            Some(&lead),
            Some(r#"{"digits":"D","to":"customer","duration_ms":40}"#),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let events = caller.dtmf_events(1, Duration::from_secs(5)).await;
    assert_eq!((events[0].1, events[0].2), (15, 320), "{events:?}");

    // The test line has no agent to send digits to.
    let no_agent = api
        .call(
            Method::POST,
            &path,
            Some(&lead),
            Some(r#"{"digits":"1","to":"agent"}"#),
        )
        .await;
    Api::assert_error(&no_agent, 409, "conflict");

    // Refusals: tokens and roles, bodies, values, calls that do not exist.
    api.assert_guarded(Method::POST, &path, Some(r#"{"digits":"1"}"#), &desk)
        .await;
    for (body, status, code, field) in [
        (r#"{"digits":"1""#, 400, "invalid_body", None),
        (
            r#"{"digits":"1","tone":1}"#,
            422,
            "validation_failed",
            Some("tone"),
        ),
        (r#"{"to":"customer"}"#, 422, "validation_failed", None),
        (
            r#"{"digits":"1","to":"boss"}"#,
            422,
            "validation_failed",
            None,
        ),
        (
            r#"{"digits":"12x"}"#,
            422,
            "validation_failed",
            Some("digits"),
        ),
        (r#"{"digits":""}"#, 422, "validation_failed", Some("digits")),
        (
            r#"{"digits":"123456789012345678901234567890123"}"#,
            422,
            "validation_failed",
            Some("digits"),
        ),
        (
            r#"{"digits":"1","duration_ms":39}"#,
            422,
            "validation_failed",
            Some("duration_ms"),
        ),
        (
            r#"{"digits":"1","duration_ms":2001}"#,
            422,
            "validation_failed",
            Some("duration_ms"),
        ),
    ] {
        let got = api.call(Method::POST, &path, Some(&lead), Some(body)).await;
        Api::assert_error(&got, status, code);
        if let Some(field) = field {
            assert_eq!(got.1["error"]["details"]["field"], field, "{body}");
        }
    }
    let missing = api
        .call(
            Method::POST,
            "/api/v1/calls/no-such-call/dtmf",
            Some(&lead),
            Some(r#"{"digits":"1"}"#),
        )
        .await;
    Api::assert_error(&missing, 404, "not_found");
    // None of the refusals sent anything.
    let mut buf = [0u8; 1500];
    let quiet = Deadline::after(Duration::from_secs(3));
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), caller.rtp.recv(&mut buf)).await
    {
        // Only the last accepted digit's repeated end packets may still come.
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        assert!(
            buf[1] & 0x7f != 101 || caller.seen.lock().unwrap().contains(&ts),
            "a refused request sent a digit ({n} bytes)"
        );
        if quiet.passed() {
            break;
        }
    }

    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/calls/{id}"),
            Some(&lead),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    caller.answer_bye().await;
    server.assert_no_panic();
}

#[tokio::test]
async fn a_live_call_is_recorded_on_demand_and_its_record_keeps_the_file() {
    let server = Server::start(&ServerConfig::default().trust("127.0.0.1"));
    let api = Api::new(&server);
    let lead = server.token("supervisor", "lead");
    let desk = server.token("agent", "desk");
    let caller = Caller::dial(server.udp, "5550301").await;
    let id = live_call_id(&api, &lead, &caller.number).await;
    let path = format!("/api/v1/calls/{id}/recording");

    api.assert_guarded(Method::POST, &path, None, &desk).await;
    api.assert_guarded(Method::DELETE, &path, None, &desk).await;
    let not_yet = api.call(Method::DELETE, &path, Some(&lead), None).await;
    Api::assert_error(&not_yet, 409, "conflict");

    let (status, started) = api.call(Method::POST, &path, Some(&lead), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["call_id"], id.as_str());
    let file = std::path::PathBuf::from(started["recording_path"].as_str().unwrap());
    assert!(
        file.starts_with(server.recordings_dir()),
        "{file:?} is under the recordings folder"
    );
    let appeared = common::poll_until(Duration::from_secs(5), || file.exists().then_some(()));
    assert!(appeared.is_some(), "{file:?} was never created");
    let again = api.call(Method::POST, &path, Some(&lead), None).await;
    Api::assert_error(&again, 409, "conflict");

    // Some audio from the caller, so the file has a length.
    let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    packet.extend([0xffu8; 160]);
    let to = server_rtp(&caller).await;
    for i in 0u16..25 {
        packet[2..4].copy_from_slice(&i.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
        caller.rtp.send_to(&packet, to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, body) = api.call(Method::DELETE, &path, Some(&lead), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let twice = api.call(Method::DELETE, &path, Some(&lead), None).await;
    Api::assert_error(&twice, 409, "conflict");
    // The file is finished in the background; its length reaches the call.
    let finished = common::poll_until(Duration::from_secs(10), || {
        server
            .log()
            .lines()
            .any(|l| l.contains("recording finished") && l.contains(&*file.to_string_lossy()))
            .then_some(())
    });
    assert!(finished.is_some(), "{}", server.log());

    for method in [Method::POST, Method::DELETE] {
        let missing = api
            .call(
                method,
                "/api/v1/calls/no-such-call/recording",
                Some(&lead),
                None,
            )
            .await;
        Api::assert_error(&missing, 404, "not_found");
    }

    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/calls/{id}"),
            Some(&lead),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    caller.answer_bye().await;
    let deadline = Deadline::after(Duration::from_secs(10));
    let record = loop {
        let (status, record) = api
            .call(
                Method::GET,
                &format!("/api/v1/cdrs/{id}"),
                Some(&lead),
                None,
            )
            .await;
        if status == StatusCode::OK && !record["ended_at_ms"].is_null() {
            break record;
        }
        assert!(!deadline.passed(), "the record was never closed: {record}");
        deadline.tick().await;
    };
    assert_eq!(record["recording_path"], started["recording_path"]);
    let ms = record["recording_duration_ms"].as_i64().unwrap_or(-1);
    assert!(ms >= 200, "about half a second recorded: {record}");
    let wav = std::fs::metadata(&file).unwrap().len();
    assert!(
        wav > 44,
        "the WAV holds audio, not only its header ({wav} bytes)"
    );
    server.assert_no_panic();
}

/// Where the server takes this call's RTP: the address of the first packet it sent us (the
/// test line greets with a beep), as symmetric RTP has it.
async fn server_rtp(caller: &Caller) -> SocketAddr {
    let mut buf = [0u8; 1500];
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), caller.rtp.recv_from(&mut buf))
        .await
        .expect("the server sends RTP to the caller")
        .unwrap();
    from
}
