//! End to end: phones (SIPp) register with digest authentication, wrong passwords meet the
//! lock-out, and registrations outlive the process.
//!
//! SIPp 3.6.1 reads only the first WWW-Authenticate challenge and computes only MD5, while the
//! server may offer SHA-256 first: every server here that SIPp authenticates against runs
//! with `auth: { algorithms: [md5] }` ([`ServerConfig::md5_only`]).
mod common;

use common::{sipp_csv, strong_accounts, Account, Server, ServerConfig};
use std::time::Duration;

/// 100 accounts with strong passwords register over UDP at 200 per second: every REGISTER is
/// challenged and then accepted, the registrar holds one binding per account, and every binding
/// is on disk (the server answers 200 only once its binding is committed).
#[tokio::test]
async fn hundred_accounts_register_with_digest_auth_over_udp() {
    let accounts = strong_accounts(2001, 100, 0x5eed_2001);
    let server = Server::start(&ServerConfig::with_accounts(accounts.clone()).md5_only());

    let run = server
        .sipp()
        .scenario("register_auth.xml")
        .csv(sipp_csv(
            accounts.iter().map(|a| (a.user.as_str(), a.sipp_auth())),
        ))
        .calls(100)
        .rate(200)
        .run()
        .await;
    run.assert_all_successful(100);

    server
        .wait_metric("sip_registrations", |v| v == 100.0)
        .await;
    let m = server.metrics().await;
    assert_eq!(m.value("sip_registered_accounts"), 100.0, "{}", m.text);
    assert_eq!(m.value("sip_auth_failures_total"), 0.0, "{}", m.text);

    let rows = server.stored_registrations().await;
    assert_eq!(rows.len(), 100, "rows in registrations: {rows:?}");
    let users: Vec<&str> = rows.iter().map(|(aor, _, _)| aor.as_str()).collect();
    let expected: Vec<&str> = accounts.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(users, expected, "one row per account");
    assert!(
        rows.iter()
            .all(|(_, t, ua)| t == "UDP" && ua.as_deref() == Some("SIPp")),
        "{rows:?}"
    );
    // The generated passwords pass the policy: no weak-password warning at start-up.
    assert!(!server.log().contains("weak password"), "{}", server.log());
}

/// The same over TCP (`-t t1`: all REGISTERs on one connection): challenges and 200s come back
/// on the connection, and the bindings remember the transport.
#[tokio::test]
async fn accounts_register_with_digest_auth_over_tcp() {
    let accounts = strong_accounts(3001, 20, 0x5eed_3001);
    let server = Server::start(&ServerConfig::with_accounts(accounts.clone()).md5_only());

    let run = server
        .sipp()
        .tcp()
        .scenario("register_auth.xml")
        .csv(sipp_csv(
            accounts.iter().map(|a| (a.user.as_str(), a.sipp_auth())),
        ))
        .calls(20)
        .rate(100)
        .run()
        .await;
    run.assert_all_successful(20);

    server.wait_metric("sip_registrations", |v| v == 20.0).await;
    assert_eq!(
        server.metrics().await.value("sip_registered_accounts"),
        20.0
    );
    let rows = server.stored_registrations().await;
    assert_eq!(rows.len(), 20, "{rows:?}");
    assert!(rows.iter().all(|(_, t, _)| t == "TCP"), "{rows:?}");
}

/// A phone with a wrong password is challenged again after every attempt; after
/// `max_failures` (3) wrong answers the account name is locked and the next attempt is refused
/// with 403 without being verified. The sequence 401, 401, 401, 401, 403 is the scenario's own
/// expectation. While locked, even the right password is refused.
#[tokio::test]
async fn wrong_password_is_challenged_again_then_locked_out() {
    let server = Server::start(
        &ServerConfig::with_accounts([Account::demo(1001)])
            .md5_only()
            .lockout(3),
    );
    let wrong = Account::new("1001", "not-the-password-1001");

    let run = server
        .sipp()
        .scenario("register_wrong_password.xml")
        .csv(sipp_csv([("1001", wrong.sipp_auth())]))
        .run()
        .await;
    run.assert_all_successful(1);

    let m = server.metrics().await;
    assert!(m.sum("sip_auth_lockouts_total") >= 1.0, "{}", m.text);
    assert_eq!(
        m.value(r#"sip_auth_lockouts_total{key="account"}"#),
        1.0,
        "{}",
        m.text
    );
    // Three guesses were verified and failed; the fourth was refused unverified.
    assert_eq!(m.value("sip_auth_failures_total"), 3.0, "{}", m.text);
    assert_eq!(m.value("sip_auth_rejected_locked_total"), 1.0, "{}", m.text);

    // The owner, with the right password, is refused for the cool-down too: the 403 comes where
    // register_auth.xml expects 200.
    let run = server
        .sipp()
        .scenario("register_auth.xml")
        .csv(sipp_csv([("1001", Account::demo(1001).sipp_auth())]))
        .run()
        .await;
    assert!(
        run.code == Some(1) && run.failed == 1 && run.errors.contains("SIP/2.0 403"),
        "a locked account must be refused even with the right password\n{}",
        run.report()
    );
    let m = server.metrics().await;
    assert_eq!(m.value("sip_registrations"), 0.0, "{}", m.text);
    assert!(server.stored_registrations().await.is_empty());
}

/// Guessing at a name that is no account gets exactly what guessing at a real account gets:
/// the same status codes in the same order (401 ×4, then 403 once the name is locked), with the
/// same reason phrases and the same headers. The server reveals nothing about which accounts
/// exist.
#[tokio::test]
async fn unknown_user_is_indistinguishable_from_a_wrong_password() {
    let server = Server::start(
        &ServerConfig::with_accounts([Account::demo(1001), Account::demo(1002)])
            .md5_only()
            .lockout(3),
    );
    let guess = |user: &str| {
        server
            .sipp()
            .scenario("register_wrong_password.xml")
            .csv(sipp_csv([(
                user,
                Account::new(user, "not-the-password-42").sipp_auth(),
            )]))
            .trace_msg()
            .run()
    };

    let known = guess("1002").await;
    known.assert_all_successful(1);
    let unknown = guess("7777").await;
    unknown.assert_all_successful(1);

    let shapes = |run: &common::SippRun| -> Vec<(String, Vec<String>)> {
        run.received()
            .iter()
            .map(|m| common::message_shape(m))
            .collect()
    };
    let (known_shapes, unknown_shapes) = (shapes(&known), shapes(&unknown));
    let status: Vec<&str> = known_shapes.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        status,
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 403 Forbidden"
        ],
        "{}",
        known.messages
    );
    assert_eq!(
        known_shapes, unknown_shapes,
        "an unknown user must see the same responses as a known one\n--- known ---\n{}\n--- unknown ---\n{}",
        known.messages, unknown.messages
    );

    let m = server.metrics().await;
    assert_eq!(
        m.value(r#"sip_auth_lockouts_total{key="account"}"#),
        2.0,
        "both names are locked\n{}",
        m.text
    );
}

/// Registrations are durable: five phones register, the server is killed (SIGKILL, no chance
/// to flush anything), and a new server on the same database has all five bindings the moment
/// it is ready. A clean stop (SIGTERM) and another start keep them too.
#[tokio::test]
async fn registrations_survive_a_kill_and_a_restart() {
    let accounts: Vec<Account> = (1001..=1005).map(Account::demo).collect();
    let config = ServerConfig::with_accounts(accounts.clone()).md5_only();
    let mut first = Server::start(&config);
    let run = first
        .sipp()
        .scenario("register_auth.xml")
        .csv(sipp_csv(
            accounts.iter().map(|a| (a.user.as_str(), a.sipp_auth())),
        ))
        .calls(5)
        .rate(50)
        .run()
        .await;
    run.assert_all_successful(5);
    first.wait_metric("sip_registrations", |v| v == 5.0).await;
    first.kill();

    // New ports, same database file: the bindings are what matters.
    let mut second = Server::start_in(first.dir_handle(), &config);
    let m = second.metrics().await;
    assert_eq!(
        m.value("sip_registrations"),
        5.0,
        "restored after SIGKILL\n{}",
        m.text
    );
    assert_eq!(m.value("sip_registered_accounts"), 5.0, "{}", m.text);

    let status = second
        .terminate(Duration::from_secs(10))
        .expect("SIGTERM stops the server within 10 s");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let third = Server::start_in(first.dir_handle(), &config);
    let m = third.metrics().await;
    assert_eq!(
        m.value("sip_registrations"),
        5.0,
        "restored after SIGTERM\n{}",
        m.text
    );
    assert_eq!(third.stored_registrations().await.len(), 5);
}
