//! End to end: a blind transfer by REFER. A SIPp caller dials a service number whose flow
//! queues it; agent 8001's desk phone (a SIPp UAS that registered account 1001 first) answers,
//! talks, and sends REFER to extension 1002; 1002's phone (another SIPp UAS) rings, answers,
//! talks and hangs up. The caller's call stays up throughout and ends with 1002's BYE. The
//! test reads what a manager reads afterwards: one record, served by 8001, with the agent's
//! ring attempt and a transfer sub-record for 1002, both answered.
//!
//! Event-driven: the test waits (bounded) for the SIPp runs to end and for the record to close.
mod common;

use common::{free_port, Account, CdrBy, Server, ServerConfig};
use sqlx::Row;

const FLOW: &str = "\
start: q
nodes:
  q:
    type: queue
    queue: sales
    music: hold
    max_wait_s: 60
    timeout: bye
    no_agents: bye
    full: bye
  bye:
    type: hangup
";

/// One agent in `sales`: 8001 on account 1001; account 1002 is a plain extension.
const SKILL_GROUP: &str = "skill_groups:
  - name: sales
    strategy: linear
agents:
  - id: \"8001\"
    answer_mode: desk_phone
    accounts: [\"1001\"]
    skill_groups: [{name: sales, order: 1}]
    max_ring_s: 5
    wrap_up_s: 1
    sign_in: at_start
";

fn config() -> ServerConfig {
    ServerConfig::with_accounts([Account::demo(1001), Account::demo(1002)])
        .trust("127.0.0.1")
        .flow("main", FLOW)
        .number("4000", "main")
        .extra(SKILL_GROUP)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_transfers_a_queued_caller_blind_to_an_extension() {
    let server = Server::start(&config());
    let (p1, p2) = (free_port(), free_port());
    let agent = server
        .phone(
            &Account::demo(1001),
            server
                .sipp()
                .scenario("uas_agent_refer.xml")
                .arg("-d")
                .arg("1000")
                .key("target", "1002"),
            p1,
        )
        .await;
    let extension = server
        .phone(
            &Account::demo(1002),
            server
                .sipp()
                .scenario("uas_agent_answer.xml")
                .arg("-d")
                .arg("1500")
                .key("info", server.dir().join("ext.info").display()),
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
        "the caller stayed up until the extension hung up\n{}\n{}",
        caller.report(),
        server.log()
    );
    let transferor = agent.await.unwrap();
    assert_eq!(
        transferor.code,
        Some(0),
        "the agent's REFER got 202, NOTIFYs 100 and 200, then BYE\n{}\n{}",
        transferor.report(),
        server.log()
    );
    let target = extension.await.unwrap();
    assert_eq!(
        target.code,
        Some(0),
        "the extension was rung and answered\n{}",
        target.report()
    );
    let info = std::fs::read_to_string(server.dir().join("ext.info")).unwrap();
    assert!(
        info.contains("5550100"),
        "the extension's phone showed the caller: {info}"
    );

    let cdr = server.wait_cdr(CdrBy::Caller("5550100"), 1).await;
    assert_eq!(cdr.result.as_deref(), Some("answered"));
    let mut db = server.db().await;
    let row = sqlx::query("SELECT agent, queue FROM cdrs WHERE call_id = ?")
        .bind(&cdr.call_id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(row.get::<Option<String>, _>(0).as_deref(), Some("8001"));
    assert_eq!(row.get::<Option<String>, _>(1).as_deref(), Some("sales"));
    let legs: Vec<(String, String, Option<String>)> = sqlx::query(
        "SELECT kind, peer, result FROM cdr_legs WHERE call_id = ? ORDER BY started_at_ms, leg_id",
    )
    .bind(&cdr.call_id)
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    assert_eq!(
        legs,
        vec![
            ("agent".into(), "1001".into(), Some("answered".into())),
            ("transfer".into(), "1002".into(), Some("answered".into())),
        ]
    );
    server.assert_no_panic();
}
