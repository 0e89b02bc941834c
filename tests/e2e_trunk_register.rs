//! End to end: a trunk registers with its carrier at start-up. SIPp plays the carrier's
//! registrar: it challenges the first REGISTER with 401, verifies the digest of the second
//! (`verifyauth`) and accepts it with 200; with wrong credentials it would answer 403 and fail.
mod common;

use common::{free_port, Server, ServerConfig};

#[tokio::test]
async fn a_trunk_registers_with_its_carrier_answering_the_challenge() {
    let carrier_port = free_port();
    let trunk = format!(
        "trunks:
  - name: carrier
    address: \"127.0.0.1:{carrier_port}\"
    auth:
      username: \"sb-trunk\"
      password: \"trunk-secret-e2e\"
    register:
      enabled: true
      expires_s: 3600
"
    );
    // The server's first REGISTER may leave before SIPp listens: it is retransmitted (Timer E)
    // and SIPp answers the copy that reaches it.
    let server = Server::start(&ServerConfig::default().extra(&trunk));
    let run = server
        .sipp()
        .scenario("uas_register_carrier.xml")
        .port(carrier_port)
        .calls(1)
        .run()
        .await;
    run.assert_all_successful(1);

    server
        .wait_metric(r#"trunk_registered{trunk="carrier"}"#, |v| v == 1.0)
        .await;
    let log = server.log();
    assert!(log.contains("registered with the trunk"), "{log}");
    assert!(
        !log.contains("trunk-secret-e2e"),
        "the password leaked into the log"
    );
}
