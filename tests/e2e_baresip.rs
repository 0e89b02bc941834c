//! End to end: a real softphone, baresip, registers.
//!
//! Why the server offers MD5 by default: baresip 1.0.0 (libre as packaged by Debian) knows only
//! MD5 and gives up the moment any challenge names another algorithm ("Register: Function not
//! implemented"), whatever the order — so a `[sha256, md5]` default would shut it out.
mod common;

use common::{Account, Baresip, Server, ServerConfig};
use std::time::Duration;

/// baresip registers account 1001 against the server's default authentication settings: the
/// registrar holds its binding and the database row names baresip as the user agent.
#[tokio::test]
async fn baresip_registers_with_the_default_configuration() {
    let server = Server::start(&ServerConfig::with_accounts([Account::demo(1001)]));
    let mut phone = Baresip::register(server.dir(), server.udp, &Account::demo(1001));

    server
        .wait_metric("sip_registered_accounts", |v| v == 1.0)
        .await;
    let rows = server.stored_registrations().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (aor, transport, ua) = &rows[0];
    assert_eq!(aor, "1001");
    assert_eq!(transport, "UDP");
    assert!(
        ua.as_deref().is_some_and(|ua| ua.contains("baresip")),
        "user agent {ua:?}"
    );

    let out = phone.output();
    let authorization = authorization_lines(&out);
    assert!(!authorization.is_empty(), "no Authorization sent:\n{out}");
    assert!(
        authorization
            .iter()
            .all(|l| l.contains(r#"username="1001""#) && !l.contains("SHA-256")),
        "{authorization:?}"
    );
    phone.kill();
}

/// The Authorization header lines baresip sent (its `-s` SIP trace).
fn authorization_lines(trace: &str) -> Vec<&str> {
    trace
        .lines()
        .filter(|l| l.starts_with("Authorization:"))
        .collect()
}

/// Two baresip phones registered as 1001 and 1002 call each other through Switchboard: the
/// callee answers (auto-answer), each phone plays `prompts/hold.wav` as its microphone, and
/// each reports a receive bit rate near 64 kbit/s (its own `audio=<tx>/<rx>` status line) — so
/// audio crossed the server both ways. A key pressed on each phone (RFC 4733) is relayed to
/// the other leg. The callee's hang-up ends the caller's call too.
#[tokio::test]
async fn two_baresip_phones_talk_and_send_dtmf_through_switchboard() {
    let server = Server::start(&ServerConfig::with_accounts([
        Account::demo(1001),
        Account::demo(1002),
    ]));
    let (ctrl_a, ctrl_b) = (common::free_port(), common::free_port());
    let a = Baresip::phone(server.dir(), server.udp, &Account::demo(1001), ctrl_a);
    let b = Baresip::phone(server.dir(), server.udp, &Account::demo(1002), ctrl_b);
    server
        .wait_metric("sip_registered_accounts", |v| v == 2.0)
        .await;

    let dial = format!("sip:1002@{}", server.udp);
    let answer = tokio::task::spawn_blocking(move || Baresip::command(ctrl_a, "dial", Some(&dial)))
        .await
        .unwrap();
    assert!(answer.contains(r#""ok":true"#), "dial: {answer}");
    server.wait_metric("calls_active", |v| v == 1.0).await;

    // Audio both ways: each phone's receive rate climbs to G.711's 64 kbit/s (RTP headers
    // excluded, baresip shows a little less).
    common::poll_until(Duration::from_secs(15), || {
        (a.max_rx_bitrate() > 40_000 && b.max_rx_bitrate() > 40_000).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no two-way audio: caller rx {} bit/s, callee rx {} bit/s\n{}",
            a.max_rx_bitrate(),
            b.max_rx_bitrate(),
            server.log()
        )
    });

    for (ctrl, key) in [(ctrl_a, "5"), (ctrl_b, "7")] {
        let r = tokio::task::spawn_blocking(move || Baresip::command(ctrl, "sndcode", Some(key)))
            .await
            .unwrap();
        assert!(r.contains(r#""ok":true"#), "sndcode: {r}");
    }
    server
        .wait_metric(r#"dtmf_relayed_total{via="rfc4733"}"#, |v| v >= 2.0)
        .await;

    let r = tokio::task::spawn_blocking(move || Baresip::command(ctrl_b, "hangup", None))
        .await
        .unwrap();
    assert!(r.contains(r#""ok":true"#), "hangup: {r}");
    server.wait_metric("calls_active", |v| v == 0.0).await;
    server
        .wait_metric(r#"calls_ended_total{reason="callee_hangup"}"#, |v| v == 1.0)
        .await;
    common::poll_until(Duration::from_secs(5), || {
        a.output().contains("session closed").then_some(())
    })
    .unwrap_or_else(|| panic!("the caller's phone never heard the BYE:\n{}", a.output()));
}

/// baresip calls the test line 9999 and presses 5: the line reports digit 5 heard as an
/// RFC 4733 event.
#[tokio::test]
async fn baresip_calls_the_test_line_and_its_key_is_heard() {
    let server = Server::start(&ServerConfig::with_accounts([Account::demo(1001)]));
    let ctrl = common::free_port();
    let _phone = Baresip::phone(server.dir(), server.udp, &Account::demo(1001), ctrl);
    server
        .wait_metric("sip_registered_accounts", |v| v == 1.0)
        .await;
    let dial = format!("sip:9999@{}", server.udp);
    tokio::task::spawn_blocking(move || Baresip::command(ctrl, "dial", Some(&dial)))
        .await
        .unwrap();
    server.wait_metric("calls_active", |v| v == 1.0).await;
    tokio::task::spawn_blocking(move || Baresip::command(ctrl, "sndcode", Some("5")))
        .await
        .unwrap();
    server
        .wait_metric(r#"test_line_digits_total{digit="5",via="rfc4733"}"#, |v| {
            v == 1.0
        })
        .await;
    tokio::task::spawn_blocking(move || Baresip::command(ctrl, "hangup", None))
        .await
        .unwrap();
    server.wait_metric("calls_active", |v| v == 0.0).await;
}
