//! End to end: the reports of the running binary (`/api/v1/reports/*`) over a real SQLite
//! database holding a scripted set of call records and agent states, whose right answers are
//! worked out by hand below; and the reports' authentication, roles and query checks.
mod common;

use common::api::Api;
use common::{Account, Deadline, Server, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_engine::cdr::{
    CallResult, CallType, CdrClose, CdrLeg, CdrOpen, Direction, LegKind, MissedReason,
};
use switchboard_engine::events::AcdEvent;
use switchboard_engine::store::reports::AgentStateRow;
use switchboard_engine::store::Store;

/// Report requests on the shared client.
impl Api {
    /// The body of a `200`.
    async fn ok(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.get(path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }
}

const WRONG: &str =
    "sb_000000000000_0000000000000000000000000000000000000000000000000000000000000000";

/// Two skill groups with their service-level thresholds: sales 20 s, support 10 s.
const GROUPS: &str = "skill_groups:
  - name: sales
    strategy: round_robin
    service_level_s: 20
  - name: support
    strategy: round_robin
    service_level_s: 10
";

const TRUNK: &str = "02188880000";
const TRUNK_2: &str = "02188880001";

/// Unix ms of `hh:mm` UTC on 2026-11-`day`.
fn at(day: u32, hh: i64, mm: i64) -> i64 {
    // 2026-11-01T00:00:00Z
    const NOV_1: i64 = 1_793_491_200_000;
    NOV_1 + i64::from(day - 1) * 86_400_000 + (hh * 60 + mm) * 60_000
}

/// One scripted call.
struct Call {
    id: &'static str,
    start: i64,
    direction: Direction,
    customer: &'static str,
    trunk: &'static str,
    queue: Option<&'static str>,
    /// Who answered, after how long in the queue, and how long they talked.
    agent: Option<&'static str>,
    wait_s: i64,
    talk_s: i64,
    reason: Option<MissedReason>,
    /// Agents whose phones rang without an answer, before the answer.
    missed_by: &'static [&'static str],
}

fn call(id: &'static str, start: i64, customer: &'static str) -> Call {
    Call {
        id,
        start,
        direction: Direction::Inbound,
        customer,
        trunk: TRUNK,
        queue: None,
        agent: None,
        wait_s: 0,
        talk_s: 0,
        reason: None,
        missed_by: &[],
    }
}

impl Call {
    fn queued(mut self, queue: &'static str, wait_s: i64) -> Call {
        self.queue = Some(queue);
        self.wait_s = wait_s;
        self
    }
    fn answered(mut self, agent: &'static str, talk_s: i64) -> Call {
        self.agent = Some(agent);
        self.talk_s = talk_s;
        self
    }
    fn lost(mut self, reason: MissedReason) -> Call {
        self.reason = Some(reason);
        self
    }
    fn missed_by(mut self, agents: &'static [&'static str]) -> Call {
        self.missed_by = agents;
        self
    }
}

/// Customers A, B, C, … and the twelve calls of 2 and 3 November 2026 (UTC):
///
/// | call | start (UTC)  | trunk  | skill group | customer | outcome                                     |
/// |------|--------------|--------|-------------|----------|---------------------------------------------|
/// | c1   | 02 09:00     | TRUNK  | sales       | A        | 8001 after 5 s wait, talks 60 s             |
/// | c2   | 02 09:10     | TRUNK  | sales       | B        | 8001 rings out; 8002 after 30 s, talks 120 s|
/// | c3   | 02 09:20     | TRUNK  | sales       | A        | abandoned after 40 s; 8002 rang out         |
/// | c4   | 02 10:00     | TRUNK  | support     | C        | 8001 after 8 s, talks 90 s                  |
/// | c5   | 02 10:30     | TRUNK  | –           | D        | inbound route not matched                   |
/// | c6   | 02 11:00     | TRUNK  | –           | E        | outbound by 8001, answered, 30 s            |
/// | c7   | 03 09:00     | TRUNK  | sales       | A        | 8002 after 10 s, talks 30 s                 |
/// | c8   | 03 09:30     | TRUNK  | sales       | F        | queue timeout after 60 s; 8001 rang out     |
/// | c9   | 03 10:00     | TRUNK  | support     | C        | abandoned after 20 s                        |
/// | c10  | 03 11:00     | TRUNK_2| –           | G        | hung up in the IVR                          |
/// | c11  | 03 12:00     | TRUNK  | –           | H        | blacklisted                                 |
/// | c12  | 03 23:30     | TRUNK  | support     | C        | 8001 after 4 s, talks 45 s (04 07:30 in Shanghai) |
fn calls() -> Vec<Call> {
    use MissedReason::*;
    vec![
        call("c1", at(2, 9, 0), "A")
            .queued("sales", 5)
            .answered("8001", 60),
        call("c2", at(2, 9, 10), "B")
            .queued("sales", 30)
            .answered("8002", 120)
            .missed_by(&["8001"]),
        call("c3", at(2, 9, 20), "A")
            .queued("sales", 40)
            .lost(AbandonedInQueue)
            .missed_by(&["8002"]),
        call("c4", at(2, 10, 0), "C")
            .queued("support", 8)
            .answered("8001", 90),
        call("c5", at(2, 10, 30), "D").lost(InboundRouteNotMatched),
        Call {
            direction: Direction::Outbound,
            ..call("c6", at(2, 11, 0), "E").answered("8001", 30)
        },
        call("c7", at(3, 9, 0), "A")
            .queued("sales", 10)
            .answered("8002", 30),
        call("c8", at(3, 9, 30), "F")
            .queued("sales", 60)
            .lost(QueueTimeout)
            .missed_by(&["8001"]),
        call("c9", at(3, 10, 0), "C")
            .queued("support", 20)
            .lost(AbandonedInQueue),
        Call {
            trunk: TRUNK_2,
            ..call("c10", at(3, 11, 0), "G").lost(HungUpInIvr)
        },
        call("c11", at(3, 12, 0), "H").lost(Blacklisted),
        call("c12", at(3, 23, 30), "C")
            .queued("support", 4)
            .answered("8001", 45),
    ]
}

/// The agents' states: 8001 idle 08:00–12:00, on the Lunch break 12:00–13:00, idle 13:00–17:00
/// on the 2nd; 8002 busy from 22:00 on the 2nd to 02:00 on the 3rd (split at midnight), then
/// idle until 03:00.
fn states() -> Vec<AcdEvent> {
    let s = |agent: &str, state: &'static str, break_name: Option<&str>, at_ms: i64| {
        AcdEvent::AgentState {
            agent: agent.into(),
            state,
            break_name: break_name.map(Into::into),
            at_ms,
        }
    };
    vec![
        s("8001", "idle", None, at(2, 8, 0)),
        s("8001", "break", Some("Lunch"), at(2, 12, 0)),
        s("8001", "idle", None, at(2, 13, 0)),
        s("8001", "logged_out", None, at(2, 17, 0)),
        s("8002", "busy", None, at(2, 22, 0)),
        s("8002", "idle", None, at(3, 2, 0)),
        s("8002", "logged_out", None, at(3, 3, 0)),
    ]
}

/// Writes the calls and states into the server's database, as the engine would.
async fn seed(server: &Server) {
    let store = Store::open(&common::db_url(server.dir())).await.unwrap();
    for c in calls() {
        store
            .open_cdr(&CdrOpen {
                call_id: c.id.into(),
                call_type: match c.direction {
                    Direction::Inbound => CallType::Inbound,
                    Direction::Outbound => CallType::Outbound,
                },
                direction: c.direction,
                customer_number: c.customer.into(),
                trunk_number: Some(c.trunk.into()),
                service_number: Some("4000".into()),
                started_at_ms: c.start,
            })
            .await
            .unwrap();
        // Each missed ring lasts 5 s, right after the previous one; the answer comes at the
        // end of the wait.
        for (i, agent) in c.missed_by.iter().enumerate() {
            let rang = c.start + 1_000 + i as i64 * 5_000;
            store
                .upsert_cdr_leg(&CdrLeg {
                    leg_id: format!("{}-miss-{i}", c.id),
                    call_id: c.id.into(),
                    kind: LegKind::Agent,
                    peer: (*agent).into(),
                    started_at_ms: rang,
                    answered_at_ms: None,
                    ended_at_ms: Some(rang + 5_000),
                    result: Some(CallResult::NotAnswered),
                    reason: Some(MissedReason::AgentNoAnswer),
                    agent: Some((*agent).into()),
                    queue: c.queue.map(Into::into),
                    hangup_by: None,
                    caller_id: None,
                    trunk: None,
                })
                .await
                .unwrap();
        }
        let answered_at = c.agent.map(|_| c.start + c.wait_s * 1_000);
        let ended =
            answered_at.map_or(c.start + c.wait_s * 1_000 + 1_000, |a| a + c.talk_s * 1_000);
        if let (Some(agent), Some(answered)) = (c.agent, answered_at) {
            let kind = match c.direction {
                Direction::Inbound => LegKind::Agent,
                Direction::Outbound => LegKind::Outbound,
            };
            store
                .upsert_cdr_leg(&CdrLeg {
                    leg_id: format!("{}-answer", c.id),
                    call_id: c.id.into(),
                    kind,
                    peer: agent.into(),
                    started_at_ms: answered - 2_000,
                    answered_at_ms: Some(answered),
                    ended_at_ms: Some(ended),
                    result: Some(CallResult::Answered),
                    reason: None,
                    agent: (kind == LegKind::Agent).then(|| agent.into()),
                    queue: c.queue.map(Into::into),
                    hangup_by: None,
                    caller_id: None,
                    trunk: None,
                })
                .await
                .unwrap();
        }
        let close = CdrClose {
            ended_at_ms: ended,
            answered_at_ms: answered_at,
            result: c.reason.map_or(CallResult::Answered, |r| r.result()),
            missed_reason: c.reason,
            agent: c.agent.map(Into::into),
            queue: c.queue.map(Into::into),
            queue_wait_ms: c.queue.map(|_| c.wait_s * 1_000),
            talk_ms: c.agent.map(|_| c.talk_s * 1_000),
            ..CdrClose::default()
        };
        assert!(store.close_cdr(c.id, &close).await.unwrap());
    }
    for e in states() {
        store.record_acd_event(&e).await.unwrap();
    }
}

/// `items`, each reduced to the keys the test states.
fn pick(report: &Value, keys: &[&str]) -> Vec<Value> {
    report["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|row| {
            keys.iter()
                .map(|k| ((*k).to_owned(), row[*k].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect()
}

#[tokio::test]
async fn reports_count_the_scripted_days_by_hand() {
    let server = Server::start(&ServerConfig::default().extra(GROUPS));
    let api = Api::new(&server);
    let token = server.token("supervisor", "team-lead");
    seed(&server).await;
    let days = "from=2026-11-02&to=2026-11-03";

    // ---- Trunk numbers, by day (UTC) ----
    let trunks = api
        .ok(&format!("/api/v1/reports/trunks?{days}&period=day"), &token)
        .await;
    assert_eq!(trunks["period"], "day");
    assert_eq!(trunks["tz"], "UTC");
    assert_eq!(trunks["from_ms"], at(2, 0, 0));
    assert_eq!(trunks["to_ms"], at(4, 0, 0));
    let keys = [
        "period_start",
        "trunk_number",
        "inbound_calls",
        "inbound_route_none_calls",
        "answered",
        "lost_by_reason",
        "outbound_calls",
        "outbound_answered",
    ];
    assert_eq!(
        pick(&trunks, &keys),
        vec![
            // The 2nd: c1–c5 inbound, of which c1, c2, c4 answered; c3 abandoned, c5 unrouted;
            // c6 out.
            json!({"period_start": "2026-11-02", "trunk_number": TRUNK, "inbound_calls": 5,
                   "inbound_route_none_calls": 1, "answered": 3,
                   "lost_by_reason": {"abandoned_in_queue": 1, "inbound_route_not_matched": 1},
                   "outbound_calls": 1, "outbound_answered": 1}),
            // The 3rd: c7, c8, c9, c11, c12 inbound; c7 and c12 answered.
            json!({"period_start": "2026-11-03", "trunk_number": TRUNK, "inbound_calls": 5,
                   "inbound_route_none_calls": 0, "answered": 2,
                   "lost_by_reason": {"abandoned_in_queue": 1, "blacklisted": 1, "queue_timeout": 1},
                   "outbound_calls": 0, "outbound_answered": 0}),
            json!({"period_start": "2026-11-03", "trunk_number": TRUNK_2, "inbound_calls": 1,
                   "inbound_route_none_calls": 0, "answered": 0,
                   "lost_by_reason": {"hung_up_in_ivr": 1},
                   "outbound_calls": 0, "outbound_answered": 0}),
        ]
    );
    assert_eq!(trunks["items"][0]["from_ms"], at(2, 0, 0));
    assert_eq!(trunks["items"][0]["to_ms"], at(3, 0, 0));

    // The month: the two days added up; a filter keeps one trunk number (spaces ignored).
    let month = api
        .ok(
            "/api/v1/reports/trunks?from=2026-11-01&to=2026-11-30&period=month&trunk_number=021%208888%200000",
            &token,
        )
        .await;
    assert_eq!(
        pick(&month, &keys),
        vec![
            json!({"period_start": "2026-11-01", "trunk_number": TRUNK, "inbound_calls": 10,
                   "inbound_route_none_calls": 1, "answered": 5,
                   "lost_by_reason": {"abandoned_in_queue": 2, "blacklisted": 1,
                                      "inbound_route_not_matched": 1, "queue_timeout": 1},
                   "outbound_calls": 1, "outbound_answered": 1}),
        ]
    );

    // ---- Skill groups, by day (UTC) ----
    let groups = api
        .ok(&format!("/api/v1/reports/skill-groups?{days}"), &token)
        .await;
    let keys = [
        "period_start",
        "skill_group",
        "inbound_toQueue_calls",
        "inbound_toQueue_loss_calls",
        "repeat_calls",
        "repeat_call_rate",
        "avg_talk_ms",
        "service_level",
        "service_level_threshold_ms",
        "avg_queue_wait_ms",
    ];
    assert_eq!(
        pick(&groups, &keys),
        vec![
            // sales on the 2nd: c1, c2, c3. Lost: c3. Repeat: c3 (A called at 09:00): 1/3.
            // Talk (60 + 120 + 0) / 3 = 60 s. Within 20 s: c1 (5 s), not c2 (30 s): 1/3.
            // Wait (5 + 30 + 40) / 3 = 25 s.
            json!({"period_start": "2026-11-02", "skill_group": "sales",
                   "inbound_toQueue_calls": 3, "inbound_toQueue_loss_calls": 1,
                   "repeat_calls": 1, "repeat_call_rate": 1.0 / 3.0, "avg_talk_ms": 60_000,
                   "service_level": 1.0 / 3.0, "service_level_threshold_ms": 20_000,
                   "avg_queue_wait_ms": 25_000}),
            // support on the 2nd: c4 alone, answered in 8 s ≤ 10 s.
            json!({"period_start": "2026-11-02", "skill_group": "support",
                   "inbound_toQueue_calls": 1, "inbound_toQueue_loss_calls": 0,
                   "repeat_calls": 0, "repeat_call_rate": 0.0, "avg_talk_ms": 90_000,
                   "service_level": 1.0, "service_level_threshold_ms": 10_000,
                   "avg_queue_wait_ms": 8_000}),
            // sales on the 3rd: c7 (A again, but a new day: no repeat), c8 lost.
            // Talk 30 / 2 = 15 s; within 20 s: c7 (10 s): 1/2; wait (10 + 60) / 2 = 35 s.
            json!({"period_start": "2026-11-03", "skill_group": "sales",
                   "inbound_toQueue_calls": 2, "inbound_toQueue_loss_calls": 1,
                   "repeat_calls": 0, "repeat_call_rate": 0.0, "avg_talk_ms": 15_000,
                   "service_level": 0.5, "service_level_threshold_ms": 20_000,
                   "avg_queue_wait_ms": 35_000}),
            // support on the 3rd (UTC): c9 lost, c12 (C again): repeat 1/2.
            // Talk 45 / 2 = 22.5 s; within 10 s: c12 (4 s): 1/2; wait (20 + 4) / 2 = 12 s.
            json!({"period_start": "2026-11-03", "skill_group": "support",
                   "inbound_toQueue_calls": 2, "inbound_toQueue_loss_calls": 1,
                   "repeat_calls": 1, "repeat_call_rate": 0.5, "avg_talk_ms": 22_500,
                   "service_level": 0.5, "service_level_threshold_ms": 10_000,
                   "avg_queue_wait_ms": 12_000}),
        ]
    );

    // By month: sales c1 c2 c3 c7 c8 — A three times: 2 repeats of 5 = 0.4; talk 210 / 5 =
    // 42 s; within: c1, c7: 2/5; wait 145 / 5 = 29 s. support c4 c9 c12 — C three times:
    // 2/3; talk 135 / 3 = 45 s; within: c4, c12: 2/3; wait 32 / 3 = 10.667 s → 10 667 ms.
    let month = api
        .ok(
            "/api/v1/reports/skill-groups?from=2026-11-01&to=2026-11-30&period=month",
            &token,
        )
        .await;
    assert_eq!(
        pick(&month, &keys),
        vec![
            json!({"period_start": "2026-11-01", "skill_group": "sales",
                   "inbound_toQueue_calls": 5, "inbound_toQueue_loss_calls": 2,
                   "repeat_calls": 2, "repeat_call_rate": 0.4, "avg_talk_ms": 42_000,
                   "service_level": 0.4, "service_level_threshold_ms": 20_000,
                   "avg_queue_wait_ms": 29_000}),
            json!({"period_start": "2026-11-01", "skill_group": "support",
                   "inbound_toQueue_calls": 3, "inbound_toQueue_loss_calls": 1,
                   "repeat_calls": 2, "repeat_call_rate": 2.0 / 3.0, "avg_talk_ms": 45_000,
                   "service_level": 2.0 / 3.0, "service_level_threshold_ms": 10_000,
                   "avg_queue_wait_ms": 10_667}),
        ]
    );

    // The time-zone edge: c12 starts at 23:30 UTC on the 3rd, 07:30 on the 4th in Shanghai.
    // There, support on the 3rd is c9 alone (C's call on the 2nd was another day), and c12
    // is the 4th's only call.
    let shanghai = api
        .ok(
            "/api/v1/reports/skill-groups?from=2026-11-02&to=2026-11-04&tz=Asia/Shanghai&skill_group=support",
            &token,
        )
        .await;
    assert_eq!(shanghai["tz"], "Asia/Shanghai");
    assert_eq!(
        pick(
            &shanghai,
            &[
                "period_start",
                "inbound_toQueue_calls",
                "inbound_toQueue_loss_calls",
                "repeat_calls",
                "service_level"
            ]
        ),
        vec![
            json!({"period_start": "2026-11-02", "inbound_toQueue_calls": 1,
                   "inbound_toQueue_loss_calls": 0, "repeat_calls": 0, "service_level": 1.0}),
            json!({"period_start": "2026-11-03", "inbound_toQueue_calls": 1,
                   "inbound_toQueue_loss_calls": 1, "repeat_calls": 0, "service_level": 0.0}),
            json!({"period_start": "2026-11-04", "inbound_toQueue_calls": 1,
                   "inbound_toQueue_loss_calls": 0, "repeat_calls": 0, "service_level": 1.0}),
        ]
    );
    // Shanghai's 4th starts at 16:00 UTC on the 3rd.
    assert_eq!(shanghai["items"][2]["from_ms"], at(3, 16, 0));

    // ---- Agents, by day (UTC) ----
    let agents = api
        .ok(&format!("/api/v1/reports/agents?{days}"), &token)
        .await;
    let keys = [
        "period_start",
        "agent",
        "time_in_state_ms",
        "calls_offered",
        "calls_answered",
        "talk_ms",
        "outbound_calls",
    ];
    const H: i64 = 3_600_000;
    assert_eq!(
        pick(&agents, &keys),
        vec![
            // 8001 on the 2nd: idle 08–12 and 13–17 = 8 h, Lunch 1 h. Rung for c1, c2
            // (missed), c4; answered c1 (60 s) and c4 (90 s); called E out (c6).
            json!({"period_start": "2026-11-02", "agent": "8001",
                   "time_in_state_ms": {"idle": 8 * H, "break:Lunch": H},
                   "calls_offered": 3, "calls_answered": 2, "talk_ms": 150_000,
                   "outbound_calls": 1}),
            // 8002 on the 2nd: busy 22–24 = 2 h. Rung for c2 (answered, 120 s) and c3.
            json!({"period_start": "2026-11-02", "agent": "8002",
                   "time_in_state_ms": {"busy": 2 * H},
                   "calls_offered": 2, "calls_answered": 1, "talk_ms": 120_000,
                   "outbound_calls": 0}),
            // 8001 on the 3rd: no state logged; rung for c8 (missed) and c12 (45 s).
            json!({"period_start": "2026-11-03", "agent": "8001",
                   "time_in_state_ms": {},
                   "calls_offered": 2, "calls_answered": 1, "talk_ms": 45_000,
                   "outbound_calls": 0}),
            // 8002 on the 3rd: busy 00–02 = 2 h, idle 02–03 = 1 h; c7 answered, 30 s.
            json!({"period_start": "2026-11-03", "agent": "8002",
                   "time_in_state_ms": {"busy": 2 * H, "idle": H},
                   "calls_offered": 1, "calls_answered": 1, "talk_ms": 30_000,
                   "outbound_calls": 0}),
        ]
    );
    // By week (Monday the 2nd) and for one agent: the two days added up.
    let week = api
        .ok(
            &format!("/api/v1/reports/agents?{days}&period=week&agent=8002"),
            &token,
        )
        .await;
    assert_eq!(
        pick(&week, &keys),
        vec![json!({"period_start": "2026-11-02", "agent": "8002",
                    "time_in_state_ms": {"busy": 4 * H, "idle": H},
                    "calls_offered": 3, "calls_answered": 2, "talk_ms": 150_000,
                    "outbound_calls": 0})]
    );

    // Paging: one row a page walks the same four rows, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/reports/agents?{days}&limit=1");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.ok(&path, &token).await;
        assert!(page["items"].as_array().unwrap().len() <= 1, "{page}");
        for row in page["items"].as_array().unwrap() {
            seen.push(format!("{} {}", row["period_start"], row["agent"]));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 4, "paging does not end: {seen:?}");
    }
    assert_eq!(
        seen,
        [
            "\"2026-11-02\" \"8001\"",
            "\"2026-11-02\" \"8002\"",
            "\"2026-11-03\" \"8001\"",
            "\"2026-11-03\" \"8002\""
        ]
    );

    // A day with nothing to count has no rows; ratios are never computed over nothing.
    let empty = api
        .ok(
            "/api/v1/reports/skill-groups?from=2026-10-01&to=2026-10-02",
            &token,
        )
        .await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["next_cursor"], Value::Null);
}

#[tokio::test]
async fn reports_check_tokens_roles_and_queries() {
    let server = Server::start(&ServerConfig::default());
    let api = Api::new(&server);
    let admin = server.token("admin", "ops");
    let developer = server.token("developer", "ci");
    let agent = server.token("agent", "desk");
    let q = "from=2026-11-01&to=2026-11-02";

    for report in ["trunks", "skill-groups", "agents"] {
        let path = format!("/api/v1/reports/{report}?{q}");
        // Admin, supervisor and developer read reports; an agent may not.
        for token in [&admin, &developer] {
            let body = api.ok(&path, token).await;
            assert_eq!(body["items"], json!([]), "{report}: {body}");
        }
        Api::assert_error(&api.get(&path, None).await, 401, "unauthorized");
        Api::assert_error(&api.get(&path, Some(WRONG)).await, 401, "unauthorized");
        Api::assert_error(&api.get(&path, Some(&agent)).await, 403, "forbidden");

        // Refused queries name the field.
        let base = format!("/api/v1/reports/{report}");
        for (query, field) in [
            ("from=2026-11-01", "to"),
            ("to=2026-11-01", "from"),
            ("from=yesterday&to=2026-11-02", "from"),
            ("from=2026-11-01&to=2026-11-31", "to"),
            ("from=2026-11-01T00:00:00&to=2026-11-02", "from"),
            (&format!("{q}&period=hour"), "period"),
            (&format!("{q}&tz=Mars/Olympus_Mons"), "tz"),
            ("from=2026-11-03&to=2026-11-01", "from"),
            ("from=2025-01-01&to=2026-11-01", "to"),
        ] {
            let got = api.get(&format!("{base}?{query}"), Some(&admin)).await;
            Api::assert_error(&got, 422, "validation_failed");
            assert_eq!(
                got.1["error"]["details"]["field"], field,
                "{query}: {}",
                got.1
            );
        }
        // A parameter the report does not take, a malformed page size or cursor: 400.
        for query in [
            format!("{q}&colour=red"),
            format!("{q}&limit=0"),
            format!("{q}&limit=many"),
            format!("{q}&cursor=zz"),
        ] {
            let got = api.get(&format!("{base}?{query}"), Some(&admin)).await;
            Api::assert_error(&got, 400, "bad_request");
        }
    }
    // Each report takes its own filter only.
    for path in [
        format!("/api/v1/reports/trunks?{q}&agent=8001"),
        format!("/api/v1/reports/agents?{q}&skill_group=sales"),
        format!("/api/v1/reports/skill-groups?{q}&trunk_number=1"),
    ] {
        Api::assert_error(&api.get(&path, Some(&admin)).await, 400, "bad_request");
    }
    // A report that does not exist.
    Api::assert_error(
        &api.get(&format!("/api/v1/reports/queues?{q}"), Some(&admin))
            .await,
        404,
        "not_found",
    );
    // 400 days is the most a report covers (2025-11-01 through 2026-12-05 is 400 days).
    let longest = api
        .get(
            "/api/v1/reports/trunks?from=2025-11-01&to=2026-12-05&period=month",
            Some(&admin),
        )
        .await;
    assert_eq!(longest.0, StatusCode::OK, "{}", longest.1);
}

/// Agent 8001 signs in at start, with a Lunch break the admin defined.
const ONE_AGENT: &str = "acd:
  break_states: [Lunch]
skill_groups:
  - name: sales
    strategy: round_robin
agents:
  - id: \"8001\"
    answer_mode: desk_phone
    accounts: [\"1001\"]
    skill_groups: [{name: sales, order: 1}]
    sign_in: at_start
";

/// 8001's rows of the agent-state log, once `done` holds (at most 10 s).
async fn states_until(
    server: &Server,
    done: impl Fn(&[AgentStateRow]) -> bool,
) -> Vec<AgentStateRow> {
    let store = Store::open(&common::db_url(server.dir())).await.unwrap();
    let deadline = Deadline::after(Duration::from_secs(10));
    loop {
        let rows = store.agent_states(0, i64::MAX, Some("8001")).await.unwrap();
        if done(&rows) {
            return rows;
        }
        assert!(
            !deadline.passed(),
            "agent-state log never got there: {rows:?}"
        );
        deadline.tick().await;
    }
}

#[tokio::test]
async fn the_running_engine_logs_agent_states_and_closes_them_after_a_crash() {
    let config = ServerConfig::with_accounts([Account::demo(1001)]).extra(ONE_AGENT);
    let mut server = Server::start(&config);
    let api = Api::new(&server);
    let admin = server.token("admin", "ops");

    // Signed in at start: the first state is logged, open.
    let rows = states_until(&server, |r| !r.is_empty()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].state.as_str(), rows[0].ended_at_ms),
        ("idle", None)
    );

    // A break closes the idle row where the break begins.
    let (status, _) = api
        .put(
            "/api/v1/agents/8001/state",
            Some(&admin),
            &json!({"state": "break", "break_name": "Lunch"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rows = states_until(&server, |r| r.len() == 2).await;
    assert_eq!(rows[1].state, "break");
    assert_eq!(rows[1].break_name.as_deref(), Some("Lunch"));
    assert_eq!(rows[0].ended_at_ms, Some(rows[1].started_at_ms));
    assert_eq!(rows[1].ended_at_ms, None);

    // The agent report of the hour around now shows both, the break under its name.
    let now = rows[1].started_at_ms;
    let stamp = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
    let report = api
        .ok(
            &format!(
                "/api/v1/reports/agents?from={}&to={}",
                stamp(now - 3_600_000),
                stamp(now + 3_600_000)
            ),
            &admin,
        )
        .await;
    let times = &report["items"][0]["time_in_state_ms"];
    assert_eq!(report["items"][0]["agent"], "8001", "{report}");
    assert!(
        times["idle"].is_i64() && times["break:Lunch"].is_i64(),
        "{report}"
    );

    // A crash leaves the break open; the next start closes it no later than the engine's last
    // write, and logs the agent's first state again.
    server.kill();
    let server = Server::start_in(server.dir_handle(), &config);
    let rows = states_until(&server, |r| r.len() == 3).await;
    let lunch = &rows[1];
    let ended = lunch.ended_at_ms.expect("the crashed break is closed");
    assert!(ended >= lunch.started_at_ms, "{rows:?}");
    assert!(ended <= rows[2].started_at_ms, "{rows:?}");
    assert_eq!(
        (rows[2].state.as_str(), rows[2].ended_at_ms),
        ("idle", None)
    );
}

/// A graceful stop ends the agent's open state at the stop, so the report counts the time up
/// to it (a crash is repaired at the last write instead, see above).
#[tokio::test]
async fn a_graceful_stop_ends_the_open_agent_state_at_the_stop() {
    let config = ServerConfig::with_accounts([Account::demo(1001)]).extra(ONE_AGENT);
    let mut server = Server::start(&config);
    let rows = states_until(&server, |r| !r.is_empty()).await;
    assert_eq!(rows[0].ended_at_ms, None);
    let before_stop = jiff::Timestamp::now().as_millisecond();
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let rows = states_until(&server, |r| r.iter().all(|s| s.ended_at_ms.is_some())).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let ended = rows[0].ended_at_ms.unwrap();
    assert!(
        ended >= before_stop,
        "the idle state ends at the stop ({ended}), not before it ({before_stop})"
    );
}
