//! End to end: desk phones call customers out through a trunk. SIPp plays the carrier: it
//! challenges each INVITE with 407, verifies the digest of the second one, answers, and notes
//! the Request-URI (the callee the carrier's way) and the From (the display number shown).
//! The trunk picks the display number by the callee's region; the outbound blacklist and an
//! unknown region's fallback are checked from the records.
mod common;

use std::time::Duration;

use common::{free_port, Account, CdrBy, Server, ServerConfig, Sipp};
use sqlx::Row;

/// call type, customer number, trunk number, display number, result.
type OutboundRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn trunk(carrier_port: u16) -> String {
    format!(
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
      mode: region
      number: \"+861088880000\"
      group: main
caller_id_groups:
  - name: main
    numbers:
      - number: \"+861088880000\"
        city: Beijing
      - number: \"+862088880000\"
        city: Guangzhou
    default: [\"+861088880000\"]
regions:
  prefixes:
    - {{ prefix: \"+8610\", city: Beijing, province: Beijing }}
    - {{ prefix: \"+8620\", city: Guangzhou, province: Guangdong }}
    - {{ prefix: \"+86769\", city: Dongguan, province: Guangdong }}
  capitals: {{ Guangdong: Guangzhou, Beijing: Beijing }}
"
    )
}

/// Desk phone 1001 (trusted on loopback) dials `number` and hangs up after half a second.
fn desk_call(server: &Server, number: &str) -> Sipp {
    server
        .dial("uac_ivr_hang_up_after.xml", "1001", number)
        .arg("-d")
        .arg("500")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_out_show_the_display_number_of_the_callee_region() {
    let carrier_port = free_port();
    let config = ServerConfig::with_accounts([Account::demo(1001)])
        .trust("127.0.0.1")
        .extra(&trunk(carrier_port))
        .extra("blacklist:\n  inbound: []\n  outbound: [\"+8613900000000\"]\n");
    let server = Server::start(&config);
    let info = server.dir().join("carrier.info");
    let carrier = tokio::spawn(
        server
            .sipp()
            .scenario("uas_carrier_invite.xml")
            .port(carrier_port)
            .calls(3)
            .key("info", info.display())
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || {
        common::wait_udp_bound(carrier_port, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(bound, "the carrier SIPp never listened");

    // Beijing (national format as dialled), Guangzhou (E.164), Dongguan (no number there: the
    // capital of Guangdong, Guangzhou).
    for number in ["01088881234", "+862088881234", "076922223333"] {
        server.run_ok(desk_call(&server, number)).await;
    }
    let carrier = carrier.await.unwrap();
    carrier.assert_all_successful(3);
    let lines = std::fs::read_to_string(&info).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(
        lines,
        [
            "INVITE sip:01088881234@127.0.0.1:PORT sip:01088880000@DOMAIN",
            "INVITE sip:02088881234@127.0.0.1:PORT sip:02088880000@DOMAIN",
            "INVITE sip:076922223333@127.0.0.1:PORT sip:02088880000@DOMAIN",
        ]
        .map(|l| l
            .replace("PORT", &carrier_port.to_string())
            .replace("DOMAIN", "switchboard")),
        "the carrier gets the callee and the display number in national format"
    );

    // The records: outbound, the customer in E.164, the display number as the trunk number.
    let mut db = server.db().await;
    let rows = sqlx::query(
        "SELECT call_type, customer_number, trunk_number, caller_id, result FROM cdrs \
         ORDER BY started_at_ms",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let got: Vec<OutboundRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let want = |customer: &str, cid: &str| {
        (
            "outbound".to_owned(),
            customer.to_owned(),
            Some(cid.to_owned()),
            Some(cid.to_owned()),
            Some("answered".to_owned()),
        )
    };
    assert_eq!(
        got,
        [
            want("+861088881234", "+861088880000"),
            want("+862088881234", "+862088880000"),
            want("+8676922223333", "+862088880000"),
        ]
    );

    // A blacklisted number never reaches the carrier.
    let refused = desk_call(&server, "13900000000").run().await;
    assert_ne!(refused.code, Some(0));
    let cdr = server.wait_cdr(CdrBy::Caller("+8613900000000"), 1).await;
    assert_eq!(cdr.missed_reason.as_deref(), Some("outbound_blacklisted"));
    assert!(!server.log().contains("trunk-secret-e2e"));
    server.assert_no_panic();
}

/// A trunk's quota counted only in memory: after a restart, a trunk that had used its minutes
/// placed calls again. The legs' records name their trunk, and start-up seeds the quota from
/// them: one minute a month, a real call of about a second plus a minute already in the
/// records from earlier, and after the restart the next call is refused as arrears (402).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_over_its_quota_stays_refused_after_a_restart() {
    let carrier_port = free_port();
    let config = ServerConfig::with_accounts([Account::demo(1001)])
        .trust("127.0.0.1")
        .extra(&trunk(carrier_port).replace(
            "      group: main\n",
            "      group: main\n    quota: { outbound_minutes: 1, period: month }\n",
        ));
    let mut server = Server::start(&config);
    let carrier = tokio::spawn(
        server
            .sipp()
            .scenario("uas_carrier_invite.xml")
            .port(carrier_port)
            .key("info", server.dir().join("carrier.info").display())
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || {
        common::wait_udp_bound(carrier_port, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(bound, "the carrier SIPp never listened");
    server.run_ok(desk_call(&server, "01088881234")).await;
    carrier.await.unwrap().assert_all_successful(1);
    server.wait_cdr(CdrBy::Caller("+861088881234"), 1).await;

    // The leg names its trunk.
    let mut db = server.db().await;
    let (trunk, answered_at_ms): (Option<String>, Option<i64>) =
        sqlx::query_as("SELECT trunk, answered_at_ms FROM cdr_legs WHERE kind = 'outbound'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(trunk.as_deref(), Some("carrier"));
    let answered_at_ms = answered_at_ms.expect("the carrier answered");
    drop(db);
    assert!(server.terminate(Duration::from_secs(20)).is_some());

    // A minute of talk through the trunk earlier this month, in the records.
    let mut db = {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(server.db_path());
        sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap()
    };
    let (answered, ended) = (answered_at_ms, answered_at_ms + 60_000);
    sqlx::query(
        "INSERT INTO cdrs (call_id, call_type, direction, customer_number, started_at_ms, \
         last_seen_ms, answered_at_ms, ended_at_ms, result) \
         VALUES ('earlier', 'outbound', 'outbound', '+861088880001', ?, ?, ?, ?, 'answered')",
    )
    .bind(answered)
    .bind(ended)
    .bind(answered)
    .bind(ended)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cdr_legs (leg_id, call_id, kind, peer, started_at_ms, answered_at_ms, \
         ended_at_ms, result, trunk) \
         VALUES ('earlier-1', 'earlier', 'outbound', '+861088880001', ?, ?, ?, 'answered', \
         'carrier')",
    )
    .bind(answered)
    .bind(answered)
    .bind(ended)
    .execute(&mut db)
    .await
    .unwrap();
    drop(db);

    let server = Server::start_in(server.dir_handle(), &config);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("trunk quota seeded")
                && l.contains("trunk=carrier minutes_used=1.0 minutes_limit=1")),
        "{}",
        server.log()
    );
    let refused = desk_call(&server, "+862088881234").trace_msg().run().await;
    assert!(
        refused
            .received()
            .iter()
            .any(|m| m.starts_with("SIP/2.0 402 ")),
        "{}",
        refused.report()
    );
    let cdr = server.wait_cdr(CdrBy::Caller("+862088881234"), 1).await;
    assert_eq!(cdr.missed_reason.as_deref(), Some("arrears"));
    server.assert_no_panic();
}
