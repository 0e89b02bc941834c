//! End to end: a real softphone, baresip, registers.
//!
//! Why the server offers MD5 by default: baresip 1.0.0 (libre as packaged by Debian) knows only
//! MD5 and gives up the moment any challenge names another algorithm ("Register: Function not
//! implemented"), whatever the order — so a `[sha256, md5]` default would shut it out.
mod common;

use common::{Account, Baresip, Server, ServerConfig};

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
