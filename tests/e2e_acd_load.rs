//! End to end under load: 200 callers at once into one skill group of 20 agents. Afterwards
//! nothing may be left stuck: every call has exactly one closed record, answered by an agent;
//! the agents' call counts add up; and the gauges show every agent idle and nobody waiting.
//!
//! All 20 desk phones are one SIPp UAS: the 20 accounts registered from the same port (one
//! REGISTER run, one account per call), the server sends each INVITE to the address its
//! account registered from, and the UAS logs the Request-URI's account for every INVITE it
//! answers. The callers are one SIPp UAC that stays in each call until the server's BYE, which
//! the flow sends once the agent has hung up.
mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{free_port, sipp_csv, wait_udp_bound, Account, Server, ServerConfig, WAIT};

/// Callers, all at once.
const CALLERS: u32 = 200;
/// Agents in the one skill group.
const AGENTS: u32 = 20;
/// The first agent's account (`1001`); agent `8001` rings it, `8002` rings `1002`, ….
const FIRST_ACCOUNT: u32 = 1001;

const FLOW: &str = "\
start: q
nodes:
  q:
    type: queue
    queue: sales
    music: hold
    max_wait_s: 110
    timeout: bye
    no_agents: bye
    full: bye
  bye:
    type: hangup
";

/// `sales` (round robin) with `AGENTS` agents, logged in from the start, without wrap-up.
fn acd_yaml() -> String {
    let mut y = String::from(
        "skill_groups:
  - name: sales
    strategy: round_robin
agents:
",
    );
    for n in 0..AGENTS {
        y.push_str(&format!(
            "  - id: \"{}\"
    accounts: [\"{}\"]
    skill_groups: [sales]
    max_ring_s: 10
    wrap_up_s: 0
    sign_in: at_start
",
            8001 + n,
            FIRST_ACCOUNT + n
        ));
    }
    y
}

/// A server with the skill group and its 20 agents, and the port all 20 desk phones registered
/// from (every account registers from one port, which a UAS then takes over).
async fn server_with_twenty_phones() -> (Server, u16) {
    let accounts: Vec<Account> = (0..AGENTS)
        .map(|n| Account::demo(FIRST_ACCOUNT + n))
        .collect();
    // Every caller holds a media session and every talking agent another: more than the 200
    // ports a test server gets by default.
    let base = (free_port() & !1).clamp(20_000, 58_000);
    let mut config = ServerConfig::with_accounts(accounts.clone())
        .trust("127.0.0.1")
        .flow("main", FLOW)
        .number("4000", "main")
        .extra(&acd_yaml());
    config.rtp_ports = Some((base, base + 999));
    let server = Server::start(&config);
    let phones = free_port();
    server
        .sipp()
        .scenario("register_auth.xml")
        .csv(sipp_csv(
            accounts.iter().map(|a| (a.user.as_str(), a.sipp_auth())),
        ))
        .calls(AGENTS)
        .rate(50)
        .port(phones)
        .run()
        .await
        .assert_all_successful(u64::from(AGENTS));
    (server, phones)
}

/// 200 simultaneous callers (`-m 200 -r 50 -l 200`) queue for 20 agents whose phones answer
/// and talk 500 ms: every call is served, recorded once and closed, and afterwards no agent
/// is ringing or talking and nobody waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_callers_on_twenty_agents_leave_nothing_stuck() {
    let (server, phones) = server_with_twenty_phones().await;
    let phone_log = server.dir().join("phones.log");
    let answering = tokio::spawn(
        server
            .sipp()
            .scenario("uas_agent_answer_log.xml")
            .calls(CALLERS)
            .timeout_s(120)
            .arg("-d")
            .arg("500")
            .key("info", phone_log.display())
            .port(phones)
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(phones, WAIT))
        .await
        .unwrap();
    assert!(bound, "the phones' SIPp never bound port {phones}");

    let callers = server
        .dial("uac_ivr_until_bye.xml", "5550100", "4000")
        .key("info", server.dir().join("caller.info").display())
        .calls(CALLERS)
        .rate(50)
        .arg("-l")
        .arg(CALLERS.to_string())
        .timeout_s(120)
        .run()
        .await;
    let answering = answering.await.unwrap();
    assert!(
        callers.code == Some(0) && callers.successful == u64::from(CALLERS),
        "every caller was served and got the flow's BYE\n{}\n--- phones ---\n{}\n--- server log ---\n{}",
        callers.report(),
        answering.report(),
        last_lines(&server.log(), 80)
    );
    answering.assert_all_successful(u64::from(CALLERS));

    // No agent is left ringing, talking or reserved, and nobody waits.
    for (series, want) in [
        (r#"agents{state="ringing"}"#, 0.0),
        (r#"agents{state="talking"}"#, 0.0),
        (r#"agents{state="wrap_up"}"#, 0.0),
        (r#"agents{state="idle"}"#, f64::from(AGENTS)),
        (r#"queue_waiting{queue="sales"}"#, 0.0),
    ] {
        server.wait_metric(series, |v| v == want).await;
    }

    // Exactly one record per call, each closed and answered by an agent. Records are written
    // as calls end, so the last ones may lag the callers' run by a moment: wait (bounded).
    let mut db = server.db().await;
    let deadline = common::Deadline::after(WAIT);
    let (total, closed): (i64, i64) = loop {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(ended_at_ms) FROM cdrs WHERE service_number = '4000'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if counts.1 >= i64::from(CALLERS) || deadline.passed() {
            break counts;
        }
        deadline.tick().await;
    };
    assert_eq!(
        (total, closed),
        (i64::from(CALLERS), i64::from(CALLERS)),
        "(records, closed records) for {CALLERS} calls"
    );
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cdrs WHERE ended_at_ms IS NULL")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(open, 0, "no record is left open");
    let distinct: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT call_id) FROM cdrs WHERE service_number = '4000'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(distinct, i64::from(CALLERS), "one record per call");
    /// `(call_id, result, missed_reason, agent)`.
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let unserved: Vec<Row> = sqlx::query_as(
        "SELECT call_id, result, missed_reason, agent FROM cdrs \
         WHERE result IS NOT 'answered' OR agent IS NULL OR queue IS NOT 'sales'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(
        unserved.is_empty(),
        "every call was answered by an agent of sales: {unserved:#?}"
    );

    // One ring attempt per call, answered and closed: none missed, none left ringing.
    let legs: (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(ended_at_ms), COUNT(DISTINCT call_id) FROM cdr_legs \
         WHERE result = 'answered' AND agent IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let all_legs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cdr_legs")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let n = i64::from(CALLERS);
    assert_eq!(
        (legs, all_legs),
        ((n, n, n), n),
        "((answered legs, closed, calls), every leg)"
    );

    // The calls per agent add up, and match the INVITEs each account's phone answered.
    let per_agent: BTreeMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT agent, COUNT(*) FROM cdrs GROUP BY agent")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(per_agent.values().sum::<i64>(), i64::from(CALLERS));
    let mut per_account: BTreeMap<String, i64> = BTreeMap::new();
    for line in fs::read_to_string(&phone_log).unwrap().lines() {
        let account = line.split_whitespace().nth(2).unwrap_or_default();
        *per_account.entry(account.to_owned()).or_default() += 1;
    }
    let per_account_as_agent: BTreeMap<String, i64> = per_account
        .iter()
        .map(|(account, n)| {
            let account: u32 = account.parse().expect("an account number");
            ((account - FIRST_ACCOUNT + 8001).to_string(), *n)
        })
        .collect();
    assert_eq!(
        per_agent, per_account_as_agent,
        "calls per agent in the records and INVITEs per account on the phones"
    );

    // For the report: how long the burst took on this machine and the longest queue wait.
    let (span_ms, max_wait_ms): (i64, i64) = sqlx::query_as(
        "SELECT MAX(ended_at_ms) - MIN(started_at_ms), MAX(queue_wait_ms) FROM cdrs",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(
        max_wait_ms >= 500,
        "callers arrive faster than 20 agents serve them, so some wait at least one talk time: \
         longest wait {max_wait_ms} ms"
    );
    eprintln!(
        "{CALLERS} calls on {AGENTS} agents: {span_ms} ms from the first INVITE to the last \
         hang-up, longest queue wait {max_wait_ms} ms, calls per agent {per_agent:?}"
    );
    server.assert_no_panic();
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// 200 callers at once, half of them patient (they hang up 1.5 s after the flow answered
/// them) and half impatient (0.4 s), on 20 agents whose phones ring 150 ms, answer and stay
/// until the server's BYE. Callers hang up while they wait, while an agent's phone rings
/// (CANCEL), just as it answers (the server's CANCEL crosses the phone's 200) and while they
/// talk. Whatever the race, every record is closed, either answered by an agent or abandoned
/// in the queue, every ring attempt is closed and matches a call the phones completed, and
/// afterwards every agent is idle and nobody waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_callers_hanging_up_at_any_moment_leave_nothing_stuck() {
    let (server, phones) = server_with_twenty_phones().await;
    // How many calls the phones get is up to the races, so their run ends at its limit, well
    // after the callers are gone.
    let answering = tokio::spawn(
        server
            .sipp()
            .scenario("uas_answer_cancel_crossing.xml")
            .calls(CALLERS)
            .timeout_s(12)
            .port(phones)
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(phones, WAIT))
        .await
        .unwrap();
    assert!(bound, "the phones' SIPp never bound port {phones}");

    let callers = |caller: &str, talk_ms: u32| {
        server
            .dial("uac_ivr_hang_up_after.xml", caller, "4000")
            .arg("-d")
            .arg(talk_ms.to_string())
            .calls(CALLERS / 2)
            .rate(100)
            .arg("-l")
            .arg(CALLERS.to_string())
            .timeout_s(60)
            .run()
    };
    let (patient, impatient) = tokio::join!(callers("5550200", 1500), callers("5550201", 400));
    for run in [&patient, &impatient] {
        assert!(
            run.code == Some(0) && run.successful == u64::from(CALLERS / 2),
            "every caller got in and hung up\n{}\n--- server log ---\n{}",
            run.report(),
            last_lines(&server.log(), 80)
        );
    }

    for (series, want) in [
        (r#"agents{state="ringing"}"#, 0.0),
        (r#"agents{state="talking"}"#, 0.0),
        (r#"agents{state="wrap_up"}"#, 0.0),
        (r#"agents{state="idle"}"#, f64::from(AGENTS)),
        (r#"queue_waiting{queue="sales"}"#, 0.0),
    ] {
        server.wait_metric(series, |v| v == want).await;
    }

    let mut db = server.db().await;
    let deadline = common::Deadline::after(WAIT);
    let closed: i64 = loop {
        let closed: i64 = sqlx::query_scalar("SELECT COUNT(ended_at_ms) FROM cdrs")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if closed >= i64::from(CALLERS) || deadline.passed() {
            break closed;
        }
        deadline.tick().await;
    };
    let n = i64::from(CALLERS);
    let (total, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT call_id) FROM cdrs")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(
        (total, distinct, closed),
        (n, n, n),
        "(records, calls, closed records)"
    );
    let outcomes: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT IFNULL(result, '-') || ' ' || IFNULL(missed_reason, '-') || ' ' || \
         IIF(agent IS NULL, 'no agent', 'agent'), COUNT(*) FROM cdrs GROUP BY 1",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let answered = outcomes
        .get("answered - agent")
        .copied()
        .unwrap_or_default();
    let abandoned = outcomes
        .get("not_answered abandoned_in_queue no agent")
        .copied()
        .unwrap_or_default();
    assert!(
        answered + abandoned == n && answered >= i64::from(AGENTS),
        "every call was answered by an agent or abandoned in the queue: {outcomes:#?}"
    );
    let open_legs: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT call_id, agent, result FROM cdr_legs WHERE ended_at_ms IS NULL")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(
        open_legs.is_empty(),
        "no ring attempt left open: {open_legs:#?}"
    );
    let legs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cdr_legs")
        .fetch_one(&mut db)
        .await
        .unwrap();
    eprintln!("200 callers hanging up after 1.5 s or 0.4 s: {outcomes:?}, {legs} ring attempts");
    // The phones' run ends at its limit (how many calls they get is up to the races): every
    // call they got ended properly, one per ring attempt recorded.
    let answering = answering.await.unwrap();
    assert!(
        answering.failed == 0 && answering.successful == legs as u64,
        "the phones completed one call per ring attempt ({legs})\n{}",
        answering.report()
    );
    server.assert_no_panic();
}
