//! End to end: which agent a skill group's strategy rings, call after call, and a caller who
//! leaves the queue with its exit key for voicemail.
//!
//! Each strategy gets a server of its own with two or three agents (`wrap_up_s: 0`) whose desk
//! phones are SIPp UASes that answer, talk briefly and hang up; each phone answers exactly the
//! calls the strategy should give it (`-m`), logs every INVITE (`uas_agent_answer_log.xml`), and
//! its run ends by itself. Calls are made one after the other; before the next, the test waits
//! (bounded) for the record to close and for every agent to be idle again. Each call's agent is
//! checked twice: in the record (`cdrs.agent`) and in the phone's log. An agent who must not be
//! rung has a "silent phone": its account registered from a UDP socket the test owns, which
//! fails the test if an INVITE ever arrives there.
//!
//! Strategies that look at counters or idle times across queues (`fewest_calls`,
//! `longest_idle_state`, `returning_customer`) are set up through a second skill group `other`
//! on service number 4001 whose only member is one agent: a call there changes that agent's
//! counters without moving the `sales` group's round-robin cursor.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    free_port, wait_listening, Account, Cdr, CdrBy, Deadline, Server, ServerConfig, SippRun, WAIT,
};
use sqlx::Row;

/// The service number of the `sales` queue.
const SALES: &str = "4000";
/// The service number of the `other` queue.
const OTHER: &str = "4001";

/// A flow that queues the caller in `queue` and hangs up when the agent has hung up or no
/// agent can be found.
fn queue_flow(queue: &str) -> String {
    format!(
        "start: q
nodes:
  q:
    type: queue
    queue: {queue}
    music: hold
    max_wait_s: 30
    timeout: bye
    no_agents: bye
    full: bye
  bye:
    type: hangup
"
    )
}

/// One configured agent: its id, its desk phone's account, and whether it is the only member
/// of the `other` group. Every agent is in `sales`, ranked in the order given.
struct AgentSpec {
    id: &'static str,
    account: u32,
    in_other: bool,
}

const fn agent(id: &'static str, account: u32) -> AgentSpec {
    AgentSpec {
        id,
        account,
        in_other: false,
    }
}

const fn agent_also_in_other(id: &'static str, account: u32) -> AgentSpec {
    AgentSpec {
        id,
        account,
        in_other: true,
    }
}

/// `skill_groups:` and `agents:` for `sales` under `strategy` (a YAML fragment such as
/// `strategy: linear`) and `other` (linear), agents logged in from the start, no wrap-up.
fn acd_yaml(strategy: &str, agents: &[AgentSpec]) -> String {
    let mut y = format!(
        "skill_groups:
  - name: sales
    {strategy}
  - name: other
    strategy: linear
agents:
"
    );
    for (rank, a) in agents.iter().enumerate() {
        let other = if a.in_other { ", other" } else { "" };
        y.push_str(&format!(
            "  - id: \"{id}\"
    answer_mode: desk_phone
    accounts: [\"{account}\"]
    skill_groups: [{{name: sales, order: {order}}}{other}]
    max_ring_s: 5
    wrap_up_s: 0
    sign_in: at_start
",
            id = a.id,
            account = a.account,
            order = rank + 1,
        ));
    }
    y
}

/// A server with `agents` under `strategy` in `sales` (4000) and the `other` queue (4001).
fn start(strategy: &str, agents: &[AgentSpec]) -> Server {
    let config = ServerConfig::with_accounts(agents.iter().map(|a| Account::demo(a.account)))
        .trust("127.0.0.1")
        .flow("main", queue_flow("sales"))
        .flow("other", queue_flow("other"))
        .number(SALES, "main")
        .number(OTHER, "other")
        .extra(&acd_yaml(strategy, agents));
    Server::start(&config)
}

/// A desk phone that answers `calls` calls, one after the other, talking 300 ms each, and logs
/// every INVITE.
struct Phone {
    log: PathBuf,
    run: tokio::task::JoinHandle<SippRun>,
}

impl Phone {
    async fn answering(server: &Server, account: u32, calls: u32) -> Phone {
        let port = free_port();
        server.register_from(&Account::demo(account), port).await;
        let log = server.dir().join(format!("phone-{account}.log"));
        let run = tokio::spawn(
            server
                .sipp()
                .scenario("uas_agent_answer_log.xml")
                .calls(calls)
                .timeout_s(60)
                .arg("-d")
                .arg("300")
                .key("info", log.display())
                .port(port)
                .run(),
        );
        wait_listening(port).await;
        Phone { log, run }
    }

    /// Its run ended with every call answered; the callers it was rung for, in order.
    async fn callers(self, calls: u64) -> Vec<String> {
        let run = self.run.await.unwrap();
        run.assert_all_successful(calls);
        phone_log(&self.log)
            .into_iter()
            .map(|(_, caller, _)| caller)
            .collect()
    }
}

/// `(Call-ID, caller, account)` of every INVITE a phone running `uas_agent_answer_log.xml`
/// logged, in order.
fn phone_log(path: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().map(str::to_owned);
            Some((words.next()?, words.next()?, words.next()?))
        })
        .collect()
}

/// A registered phone that must never ring: a UDP socket on the port its account registered
/// from, keeping every datagram that arrives.
struct SilentPhone {
    got: Arc<Mutex<Vec<String>>>,
}

impl SilentPhone {
    async fn register(server: &Server, account: u32) -> SilentPhone {
        let port = free_port();
        server.register_from(&Account::demo(account), port).await;
        let sock = tokio::net::UdpSocket::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = got.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf).await {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        SilentPhone { got }
    }

    #[track_caller]
    fn assert_never_rung(&self) {
        let got = self.got.lock().unwrap();
        assert!(
            !got.iter().any(|m| m.starts_with("INVITE ")),
            "a phone that must not ring got an INVITE:\n{got:#?}"
        );
    }
}

/// `caller` dials `number` and stays until the flow hangs up (after the agent did); then the
/// record is closed and every one of `agents` agents is idle again. The record and the agent
/// who served (`cdrs.agent`).
async fn call(
    server: &Server,
    caller: &str,
    number: &str,
    nth_from_caller: usize,
    agents: usize,
) -> (Cdr, Option<String>) {
    let run = server
        .dial("uac_ivr_until_bye.xml", caller, number)
        .key(
            "info",
            server.dir().join(format!("caller-{caller}.info")).display(),
        )
        .timeout_s(30)
        .run()
        .await;
    assert!(
        run.code == Some(0) && run.successful == 1,
        "the call from {caller} to {number} failed\n{}\n--- server log ---\n{}",
        run.report(),
        server.log()
    );
    let cdr = server
        .wait_cdr(CdrBy::Caller(caller), nth_from_caller)
        .await;
    server
        .wait_metric(r#"agents{state="idle"}"#, |v| v == agents as f64)
        .await;
    let agent = served_by(server, &cdr.call_id).await;
    (cdr, agent)
}

/// `cdrs.agent` of the call `call_id`.
async fn served_by(server: &Server, call_id: &str) -> Option<String> {
    let mut db = server.db().await;
    sqlx::query("SELECT agent FROM cdrs WHERE call_id = ?")
        .bind(call_id)
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0)
}

/// `(agent, result)` of each ring attempt of `call_id`, in order.
async fn legs(server: &Server, call_id: &str) -> Vec<(Option<String>, Option<String>)> {
    let mut db = server.db().await;
    sqlx::query(
        "SELECT agent, result FROM cdr_legs WHERE call_id = ? ORDER BY started_at_ms, leg_id",
    )
    .bind(call_id)
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Make each call `(caller, number, expected agent)` in turn and check who served it.
async fn calls_go_to(server: &Server, agents: usize, script: &[(&str, &str, &str)]) {
    for (i, (caller, number, expected)) in script.iter().enumerate() {
        let nth = script[..=i].iter().filter(|c| c.0 == *caller).count();
        let (cdr, agent) = call(server, caller, number, nth, agents).await;
        assert_eq!(
            (cdr.result.as_deref(), agent.as_deref()),
            (Some("answered"), Some(*expected)),
            "call {} from {caller} to {number}: {cdr:#?}\n--- server log ---\n{}",
            i + 1,
            server.log()
        );
    }
}

/// `linear` rings the first agent in rank order whenever it is free: both calls go to 8001,
/// and 8002's phone never rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_always_rings_the_first_free_agent() {
    let server = start(
        "strategy: linear",
        &[agent("8001", 1001), agent("8002", 1002)],
    );
    let first = Phone::answering(&server, 1001, 2).await;
    let second = SilentPhone::register(&server, 1002).await;
    calls_go_to(
        &server,
        2,
        &[("5550101", SALES, "8001"), ("5550102", SALES, "8001")],
    )
    .await;
    assert_eq!(first.callers(2).await, ["5550101", "5550102"]);
    second.assert_never_rung();
    server.assert_no_panic();
}

/// `round_robin` continues after the agent who answered last: 8001, 8002, then 8001 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_turns() {
    let server = start(
        "strategy: round_robin",
        &[agent("8001", 1001), agent("8002", 1002)],
    );
    let first = Phone::answering(&server, 1001, 2).await;
    let second = Phone::answering(&server, 1002, 1).await;
    calls_go_to(
        &server,
        2,
        &[
            ("5550111", SALES, "8001"),
            ("5550112", SALES, "8002"),
            ("5550113", SALES, "8001"),
        ],
    )
    .await;
    assert_eq!(first.callers(2).await, ["5550111", "5550113"]);
    assert_eq!(second.callers(1).await, ["5550112"]);
    server.assert_no_panic();
}

/// `fewest_calls` counts an agent's calls from every queue: after 8001 served a caller of the
/// `other` queue, `sales` rings 8002 (linear and round robin would ring 8001); with one call
/// each, the tie goes to the first in rank, 8001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewest_calls_rings_the_agent_with_the_fewest_calls() {
    let server = start(
        "strategy: fewest_calls",
        &[agent_also_in_other("8001", 1001), agent("8002", 1002)],
    );
    let first = Phone::answering(&server, 1001, 2).await;
    let second = Phone::answering(&server, 1002, 1).await;
    calls_go_to(
        &server,
        2,
        &[
            ("5550121", OTHER, "8001"),
            ("5550122", SALES, "8002"),
            ("5550123", SALES, "8001"),
        ],
    )
    .await;
    assert_eq!(first.callers(2).await, ["5550121", "5550123"]);
    assert_eq!(second.callers(1).await, ["5550122"]);
    server.assert_no_panic();
}

/// `longest_idle_state` rings the agent idle the longest: 8001 has just served a caller of the
/// `other` queue, so `sales` rings 8002 (idle since login, first in rank among those), then
/// 8003 (idle since login), not 8001 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_idle_state_rings_the_agent_idle_the_longest() {
    let server = start(
        "strategy: longest_idle_state",
        &[
            agent_also_in_other("8001", 1001),
            agent("8002", 1002),
            agent("8003", 1003),
        ],
    );
    let first = Phone::answering(&server, 1001, 1).await;
    let second = Phone::answering(&server, 1002, 1).await;
    let third = Phone::answering(&server, 1003, 1).await;
    calls_go_to(
        &server,
        3,
        &[
            ("5550131", OTHER, "8001"),
            ("5550132", SALES, "8002"),
            ("5550133", SALES, "8003"),
        ],
    )
    .await;
    assert_eq!(first.callers(1).await, ["5550131"]);
    assert_eq!(second.callers(1).await, ["5550132"]);
    assert_eq!(third.callers(1).await, ["5550133"]);
    server.assert_no_panic();
}

/// `returning_customer` over `linear`: a caller 8002 served (through the `other` queue) comes
/// back to 8002 though linear would ring 8001; a new caller gets linear's 8001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_customer_comes_back_to_the_agent_who_served_them() {
    let server = start(
        "strategy: returning_customer\n    base_strategy: linear",
        &[agent("8001", 1001), agent_also_in_other("8002", 1002)],
    );
    let first = Phone::answering(&server, 1001, 1).await;
    let second = Phone::answering(&server, 1002, 2).await;
    calls_go_to(
        &server,
        2,
        &[
            ("5550141", OTHER, "8002"),
            ("5550141", SALES, "8002"),
            ("5550142", SALES, "8001"),
        ],
    )
    .await;
    assert_eq!(first.callers(1).await, ["5550142"]);
    assert_eq!(second.callers(2).await, ["5550141", "5550141"]);
    server.assert_no_panic();
}

/// `ring_all` rings both phones at once; 8001 answers, so 8002's phone gets CANCEL (its
/// scenario expects exactly that), and the record names 8001 with both ring attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_all_rings_every_phone_and_the_first_answer_wins() {
    let server = start(
        "strategy: ring_all",
        &[agent("8001", 1001), agent("8002", 1002)],
    );
    let answers = Phone::answering(&server, 1001, 1).await;
    let port = free_port();
    server.register_from(&Account::demo(1002), port).await;
    let cancelled = tokio::spawn(
        server
            .sipp()
            .scenario("uas_cancelled.xml")
            .timeout_s(30)
            .port(port)
            .run(),
    );
    wait_listening(port).await;
    let (cdr, agent) = call(&server, "5550151", SALES, 1, 2).await;
    assert_eq!(agent.as_deref(), Some("8001"), "{cdr:#?}");
    let cancelled = cancelled.await.unwrap();
    assert_eq!(
        cancelled.code,
        Some(0),
        "8002's phone rang and was cancelled\n{}\n--- server log ---\n{}",
        cancelled.report(),
        server.log()
    );
    assert_eq!(answers.callers(1).await, ["5550151"]);
    let mut legs = legs(&server, &cdr.call_id).await;
    legs.sort();
    assert_eq!(
        legs,
        [
            (Some("8001".into()), Some("answered".into())),
            (Some("8002".into()), Some("not_answered".into())),
        ],
        "{cdr:#?}"
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// The exit key
// ---------------------------------------------------------------------------------------------

/// A queue a caller may leave with `0` for a voicemail of one second, after which the flow
/// hangs up.
const EXIT_FLOW: &str = "\
start: q
nodes:
  q:
    type: queue
    queue: sales
    music: hold
    max_wait_s: 60
    exit_key: \"0\"
    exit: vm
    timeout: bye
    no_agents: bye
    full: bye
  vm:
    type: voicemail
    beep: true
    max_length_s: 1
    mailbox: sales
    done: bye
  bye:
    type: hangup
";

/// A caller waits while the only agent's phone rings and nobody answers, presses 0 (SIP INFO)
/// and leaves a voicemail: the phone gets CANCEL, the record shows the queue left by its exit,
/// the time waited, and the voicemail's file under the mailbox's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_key_leaves_the_queue_for_voicemail() {
    let server = Server::start(
        &ServerConfig::with_accounts([Account::demo(1001)])
            .trust("127.0.0.1")
            .flow("main", EXIT_FLOW)
            .number(SALES, "main")
            .extra(
                "skill_groups:
  - name: sales
    strategy: linear
agents:
  - id: \"8001\"
    accounts: [\"1001\"]
    skill_groups: [sales]
    max_ring_s: 30
    wrap_up_s: 0
    sign_in: at_start
",
            ),
    );
    let phone_port = free_port();
    server.register_from(&Account::demo(1001), phone_port).await;
    let ringing = tokio::spawn(
        server
            .sipp()
            .scenario("uas_cancelled.xml")
            .timeout_s(30)
            .port(phone_port)
            .run(),
    );
    wait_listening(phone_port).await;

    let caller_port = free_port();
    let info = server.dir().join("caller.info");
    let caller = tokio::spawn(
        server
            .dial("uac_ivr_info_digits.xml", "5550161", SALES)
            .key("info", info.display())
            .key("digits", "0")
            .key("keys", 1)
            .port(caller_port)
            .timeout_s(30)
            .trace_msg()
            .run(),
    );
    // The caller presses 0 once the agent's phone rings for it.
    server
        .wait_metric(r#"agents{state="ringing"}"#, |v| v == 1.0)
        .await;
    let call_id = call_up(&info).await;
    cue(caller_port, &call_id, &info).await;
    let caller = caller.await.unwrap();
    assert!(
        caller.code == Some(0) && caller.successful == 1,
        "{}\n--- messages ---\n{}\n--- server log ---\n{}",
        caller.report(),
        caller.messages,
        server.log()
    );
    let ringing = ringing.await.unwrap();
    assert_eq!(
        ringing.code,
        Some(0),
        "the agent's phone rang and was cancelled\n{}",
        ringing.report()
    );

    let cdr = server.wait_cdr(CdrBy::Caller("5550161"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        ["main:q→exit", "main:vm→done", "main:bye"],
        "{cdr:#?}\n--- server log ---\n{}",
        server.log()
    );
    let mailbox = server.recordings_dir().join("voicemail").join("sales");
    let path = cdr
        .recording_path
        .as_deref()
        .unwrap_or_else(|| panic!("the record links no voicemail: {cdr:#?}"));
    assert!(
        Path::new(path).starts_with(&mailbox) && Path::new(path).is_file(),
        "the voicemail {path} is a file under {}",
        mailbox.display()
    );
    let mut db = server.db().await;
    let (queue, wait, agent): (Option<String>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT queue, queue_wait_ms, agent FROM cdrs WHERE call_id = ?")
            .bind(&cdr.call_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(queue.as_deref(), Some("sales"), "{cdr:#?}");
    assert_eq!(agent, None, "nobody answered: {cdr:#?}");
    let wait = wait.unwrap_or_else(|| panic!("no queue wait recorded: {cdr:#?}"));
    assert!(
        (1..30_000).contains(&wait),
        "waited while the phone rang: {wait} ms"
    );
    server.assert_no_panic();
}

/// Wait for the caller's `-key info` file (the call is up); the Call-ID it holds.
async fn call_up(info: &Path) -> String {
    let path = info.to_owned();
    tokio::task::spawn_blocking(move || {
        common::poll_until(Duration::from_secs(15), || {
            let text = fs::read_to_string(&path).ok()?;
            text.split_whitespace().next().map(str::to_owned)
        })
    })
    .await
    .unwrap()
    .expect("the caller never reported the call up")
}

/// Cue the caller SIPp on `port` (`uac_ivr_info_digits.xml`: an in-dialog MESSAGE for
/// `call_id`), again every 500 ms until it wrote `<info>.cued`, for at most [`WAIT`]. SIPp
/// answers the MESSAGE towards the server, its remote peer, so the file is the only sign.
async fn cue(port: u16, call_id: &str, info: &Path) {
    let cued = PathBuf::from(format!("{}.cued", info.display()));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "MESSAGE sip:phone@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-cue\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@127.0.0.1>;tag=cue\r\n\
         To: <sip:phone@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Deadline::after(WAIT);
    loop {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
            .await
            .unwrap();
        let round = Deadline::after(Duration::from_millis(500));
        while !round.passed() {
            if cued.exists() {
                return;
            }
            round.tick().await;
        }
        assert!(
            !deadline.passed(),
            "the caller SIPp on {port} never took the cue"
        );
    }
}
