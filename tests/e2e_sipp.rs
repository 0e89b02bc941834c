//! End to end: what SIPp sees of OPTIONS and INVITE.
//!
//! SIPp 3.6.1 reads only the first challenge and computes only MD5, while the server offers
//! SHA-256 first when configured to: the server SIPp authenticates against runs with
//! `auth: { algorithms: [md5] }` ([`ServerConfig::md5_only`]).
mod common;

use common::{sipp_csv, Account, Server, ServerConfig};

/// OPTIONS is answered 200 without authentication, over UDP and TCP, and the answer's Allow
/// header names INVITE and REGISTER (checked by the scenario's `ereg check_it="true"`). The
/// server runs its default algorithms: nothing here authenticates.
#[tokio::test]
async fn options_is_answered_with_allow() {
    let server = Server::start(&ServerConfig::default());

    let run = server.sipp().scenario("options.xml").calls(3).run().await;
    run.assert_all_successful(3);
    let run = server
        .sipp()
        .tcp()
        .scenario("options.xml")
        .calls(3)
        .run()
        .await;
    run.assert_all_successful(3);

    let m = server.metrics().await;
    // At least: a slow answer may have drawn a retransmission, which counts as received.
    assert!(
        m.value(r#"sip_requests_received_total{method="OPTIONS"}"#) >= 6.0,
        "{}",
        m.text
    );
    assert_eq!(m.sum("sip_auth_failures_total"), 0.0);
}

/// SIPp's built-in `uac` calls a number nobody has. It cannot answer a digest challenge, so the
/// server trusts 127.0.0.1 (`auth.trusted`): the INVITE goes straight to routing and gets 404.
/// SIPp counts the call as failed (it expects 200) and its error log shows the 404.
#[tokio::test]
async fn builtin_uac_to_an_unknown_number_gets_404() {
    let server =
        Server::start(&ServerConfig::with_accounts([Account::demo(1001)]).trust("127.0.0.1/32"));

    let run = server
        .sipp()
        .builtin("uac")
        .arg("-s")
        .arg("5555")
        .run()
        .await;
    assert!(
        run.code == Some(1) && run.failed == 1 && run.successful == 0,
        "the call must fail\n{}",
        run.report()
    );
    assert!(
        run.errors.contains("SIP/2.0 404 Not Found"),
        "SIPp's error log must show the 404\n{}",
        run.report()
    );
    let m = server
        .wait_metric(r#"sip_responses_sent_total{status="404"}"#, |v| v >= 1.0)
        .await;
    assert!(m >= 1.0);
    let m = server.metrics().await;
    assert_eq!(
        m.value(r#"sip_responses_sent_total{status="407"}"#),
        0.0,
        "a trusted source is never challenged\n{}",
        m.text
    );
}

/// A phone that is not trusted: its INVITE is challenged with 407, it acknowledges, retries with
/// Proxy-Authorization, and then gets 404 for the unknown number, which it acknowledges. Every
/// step is the scenario's expectation.
///
/// SIPp signs the digest `uri` as `sip:<remote_ip>:<remote_port>` unless told otherwise; the
/// server checks that it equals the Request-URI (RFC 3261 §22.4), so `-auth_uri` names the
/// Request-URI SIPp actually sends.
#[tokio::test]
async fn authenticated_invite_to_an_unknown_number_gets_404() {
    let server = Server::start(&ServerConfig::with_accounts([Account::demo(1001)]).md5_only());

    let run = server
        .sipp()
        .scenario("invite_auth_404.xml")
        .csv(sipp_csv([("1001", Account::demo(1001).sipp_auth())]))
        .arg("-s")
        .arg("5555")
        .arg("-auth_uri")
        .arg(format!("5555@{}", server.udp))
        .calls(3)
        .run()
        .await;
    run.assert_all_successful(3);

    let m = server.metrics().await;
    assert!(
        m.value(r#"sip_responses_sent_total{status="407"}"#) >= 3.0,
        "{}",
        m.text
    );
    assert!(
        m.value(r#"sip_responses_sent_total{status="404"}"#) >= 3.0,
        "{}",
        m.text
    );
    assert_eq!(m.value("sip_auth_failures_total"), 0.0, "{}", m.text);
}
