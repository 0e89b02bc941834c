//! End to end: IVR flows and call records. SIPp callers dial service numbers bound to flows the
//! test writes, press keys (RFC 4733 from SIPp's capture, or SIP INFO), and the tests read what a
//! contact-center manager reads afterwards: the call record's IVR trail, collected inputs, result
//! and missed-call reason, the SIP answer, and the flows' operation log.
//!
//! How the tests stay event-driven:
//! - Most servers trust 127.0.0.1 (`auth.trusted`), so a SIPp caller's number is simply its
//!   From user (`-key caller`), which the blacklist and the records see. The shipped demo flow is
//!   called by a phone that authenticates with digest (`uac_dtmf_2833_pcap.xml`), as phones do.
//! - A third party (`bridge`) or a dialled desk (`dial`) is a SIPp UAS on a port of its own,
//!   named in the flow's URI.
//! - Most flows end with `hangup`: the server's BYE ends the SIPp run, and [`Server::wait_cdr`]
//!   waits (bounded) for the record to be closed.
//! - Where the test must act while a call is in a flow (publish a flow file), the caller writes
//!   its Call-ID to a file once the call is up and presses its keys only after the test's cue,
//!   an in-dialog MESSAGE ([`cue`]); it writes `<info>.cued` when the cue has arrived.
//! - A published or rejected flow file is seen through the `flow_publications` table, and the
//!   engine's switch to a new version through its log line.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    free_port, poll_until, sipp_csv, wait_udp_bound, Account, Cdr, CdrBy, Deadline, Server,
    ServerConfig, Sipp, SippRun, WAIT,
};

/// How long a call may take to come up on loopback.
const CALL_UP: Duration = Duration::from_secs(15);

/// A server that trusts callers on 127.0.0.1 and watches its flow folder.
fn trusted() -> ServerConfig {
    ServerConfig::default().trust("127.0.0.1").ivr_watch(true)
}

/// A SIPp caller: `scenario` from `caller` to `number`, with its own SIP and RTP ports and the
/// message trace kept.
fn caller(server: &Server, scenario: &str, caller: &str, number: &str) -> Sipp {
    server.dial(scenario, caller, number).trace_msg()
}

/// Wait for a scenario's `-key info` file (the call is up); its first word, the Call-ID.
async fn call_up(path: PathBuf, what: &str) -> String {
    let id = tokio::task::spawn_blocking(move || {
        poll_until(CALL_UP, || {
            let text = fs::read_to_string(&path).ok()?;
            text.split_whitespace().next().map(str::to_owned)
        })
    })
    .await
    .unwrap();
    id.unwrap_or_else(|| panic!("the {what} never reported the call up within {CALL_UP:?}"))
}

/// Cue the caller SIPp on `port` (an in-dialog MESSAGE for `call_id`) and wait until it wrote
/// `<info>.cued`.
async fn cue(port: u16, call_id: &str, info: &Path) {
    let cued = PathBuf::from(format!("{}.cued", info.display()));
    send_cue(port, call_id, || cued.exists()).await;
}

/// Tell the caller SIPp on `port` (`uac_dtmf_2833_pcap.xml`) to hang up, and wait for its run
/// to end.
async fn hang_up(port: u16, call_id: &str, run: tokio::task::JoinHandle<SippRun>) -> SippRun {
    send_cue(port, call_id, || run.is_finished()).await;
    run.await.unwrap()
}

/// Send an in-dialog MESSAGE for `call_id` to the SIPp on `port` until `done` holds: again
/// every 500 ms (SIPp answers a repeat with its last answer), for at most [`WAIT`]. SIPp answers
/// towards the server (its remote peer), so `done` must look at what SIPp does next.
async fn send_cue(port: u16, call_id: &str, done: impl Fn() -> bool) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "MESSAGE sip:phone@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-cue-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@127.0.0.1>;tag=cue\r\n\
         To: <sip:phone@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n",
        local.port()
    );
    let deadline = Deadline::after(WAIT);
    loop {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
            .await
            .unwrap();
        let round = Deadline::after(Duration::from_millis(500));
        while !round.passed() {
            if done() {
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

/// The trail entries of `cdr`, for messages.
fn trail(cdr: &Cdr) -> String {
    format!("{:?}", cdr.ivr_trail)
}

/// `steps` appear in the trail in this order, as consecutive entries.
#[track_caller]
fn assert_trail_has(cdr: &Cdr, steps: &[&str], server: &Server) {
    let found = cdr
        .ivr_trail
        .windows(steps.len())
        .any(|w| w.iter().zip(steps).all(|(a, b)| a == b));
    assert!(
        found,
        "expected {steps:?} in the IVR trail {}\n{cdr:#?}\n--- server log ---\n{}",
        trail(cdr),
        server.log()
    );
}

/// The final answer SIPp received to its INVITE ("403 Forbidden").
fn final_answer(run: &SippRun) -> String {
    run.received()
        .iter()
        .map(|m| m.lines().next().unwrap_or_default().trim().to_owned())
        .filter_map(|l| l.strip_prefix("SIP/2.0 ").map(str::to_owned))
        .find(|l| !l.starts_with('1'))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Menus and digits
// ---------------------------------------------------------------------------------------------

/// A menu on `beep`: `1` plays a prompt and hangs up; no key or a wrong key hangs up.
const MENU_FLOW: &str = r#"description: "Menu: 1 plays a prompt"
start: menu
nodes:
  menu:
    type: menu
    prompt: beep
    choices:
      "1": one
    timeout_s: 10
    retries: 0
    no_input: bye
    invalid: bye
  one:
    type: play
    prompt: beep
    next: bye
  bye:
    type: hangup
"#;

/// SIPp's capture of RFC 4733 digit 1, played into a call to 4000, takes the menu's `1` branch:
/// the record's trail shows the key, then the prompt node, then the hang-up.
#[tokio::test]
async fn digit_1_from_the_pcap_takes_the_menu_branch() {
    let server = Server::start(&trusted().flow("main", MENU_FLOW).number("4000", "main"));
    let info = server.dir().join("caller.info");
    server
        .run_ok(
            caller(&server, "uac_ivr_pcap_1.xml", "5550101", "4000").key("info", info.display()),
        )
        .await;

    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        ["main:menu→1", "main:one→next", "main:bye"],
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.customer_number, "5550101");
    assert_eq!(cdr.flow.as_deref(), Some("main"));
    assert_eq!(cdr.hangup_by.as_deref(), Some("system"), "{cdr:#?}");
    assert!(
        cdr.ended_at_ms.is_some() && cdr.result.is_some(),
        "{cdr:#?}"
    );
    server.assert_no_panic();
}

/// The shipped demo flow (`ivr-flows/main.yaml`, with the `survey` it uses) on 4000, called by
/// a phone that authenticates (digest) and plays RFC 4733 digit 1: service hours are open, key
/// 1 leads to the sales queue, which has no agent, so the caller goes on to voicemail; the
/// caller hangs up once the server logged the queue's answer. The record's trail shows that path.
#[tokio::test]
async fn shipped_main_flow_takes_digit_1_to_sales_then_voicemail() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("ivr-flows");
    let read = |name: &str| fs::read_to_string(shipped.join(name)).expect("a shipped flow");
    let phone = Account::demo(1001);
    let server = Server::start(
        &ServerConfig::with_accounts([phone.clone()])
            .md5_only()
            .flow("main", read("main.yaml"))
            .flow("survey", read("survey.yaml"))
            .number("4000", "main")
            // The skill groups the flow queues to, with nobody in them.
            .extra("skill_groups:\n  - name: sales\n  - name: support\n"),
    );
    let port = free_port();
    let info = server.dir().join("caller.info");
    let run = tokio::spawn(
        server
            .sipp()
            .scenario("uac_dtmf_2833_pcap.xml")
            .csv(sipp_csv([(phone.user.as_str(), phone.sipp_auth())]))
            .arg("-s")
            .arg("4000")
            .arg("-auth_uri")
            .arg(format!("4000@{}", server.udp))
            .port(port)
            .key("info", info.display())
            .trace_msg()
            .run(),
    );
    let call_id = call_up(info, "caller").await;

    let deadline = Deadline::after(WAIT);
    while !server.log().contains("queue=sales") {
        assert!(
            !deadline.passed(),
            "the call never reached the sales queue\n{}",
            server.log()
        );
        deadline.tick().await;
    }
    let run = hang_up(port, &call_id, run).await;
    assert!(
        run.code == Some(0) && run.successful == 1,
        "{}\n--- server log ---\n{}",
        run.report(),
        server.log()
    );

    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        [
            "main:hours→open",
            "main:menu→1",
            "main:sales→no_agents",
            "main:voicemail"
        ],
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.customer_number, "1001");
    assert_eq!(cdr.hangup_by.as_deref(), Some("caller"), "{cdr:#?}");
    server.assert_no_panic();
}

/// A voicemail that reaches its maximum length and a flow that then says goodbye and hangs up:
/// the caller was served (the engine's rule: a flow that ends by itself after a voicemail is
/// not a missed call), and the record links the recording. The mailbox's folder does not exist
/// before its first voicemail.
#[tokio::test]
async fn voicemail_left_is_linked_and_not_a_missed_call() {
    let flow = r#"description: "Straight to voicemail"
start: voicemail
nodes:
  voicemail:
    type: voicemail
    beep: true
    max_length_s: 1
    mailbox: sales
    done: goodbye
  goodbye:
    type: play
    prompt: beep
    next: bye
  bye:
    type: hangup
"#;
    let server = Server::start(&trusted().flow("main", flow).number("4000", "main"));
    let info = server.dir().join("caller.info");
    server
        .run_ok(
            caller(&server, "uac_ivr_until_bye.xml", "5550109", "4000").key("info", info.display()),
        )
        .await;
    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        ["main:voicemail→done", "main:goodbye→next", "main:bye"],
        "{cdr:#?}"
    );
    let wav = fs::read_dir(server.recordings_dir().join("voicemail").join("sales"))
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).next())
        .unwrap_or_else(|| panic!("no voicemail file\n{cdr:#?}"));
    assert_eq!(
        cdr.recording_path.as_deref(),
        Some(wav.display().to_string().as_str()),
        "the record links the voicemail: {cdr:#?}"
    );
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (Some("answered"), None),
        "{cdr:#?}"
    );
    server.assert_no_panic();
}

/// Most voicemails end with the caller hanging up while the recording runs: the record still
/// links the file.
#[tokio::test]
async fn voicemail_ended_by_the_caller_is_linked_to_the_record() {
    let flow = r#"description: "Straight to voicemail"
start: voicemail
nodes:
  voicemail:
    type: voicemail
    beep: false
    max_length_s: 60
    mailbox: support
    done: bye
  bye:
    type: hangup
"#;
    let phone = Account::demo(1001);
    let server = Server::start(
        &ServerConfig::with_accounts([phone.clone()])
            .md5_only()
            .flow("main", flow)
            .number("4000", "main"),
    );
    // The mailbox's folder exists here, as after its first voicemail: this test is about the
    // link (voicemail_left_is_linked_and_not_a_missed_call starts without it).
    let mailbox = server.recordings_dir().join("voicemail").join("support");
    fs::create_dir_all(&mailbox).unwrap();
    let port = free_port();
    let info = server.dir().join("caller.info");
    let run = tokio::spawn(
        server
            .sipp()
            .scenario("uac_dtmf_2833_pcap.xml")
            .csv(sipp_csv([(phone.user.as_str(), phone.sipp_auth())]))
            .arg("-s")
            .arg("4000")
            .arg("-auth_uri")
            .arg(format!("4000@{}", server.udp))
            .port(port)
            .key("info", info.display())
            .trace_msg()
            .run(),
    );
    let call_id = call_up(info, "caller").await;
    let wav = tokio::task::spawn_blocking(move || {
        poll_until(WAIT, || {
            fs::read_dir(&mailbox)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "wav"))
        })
    })
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("no voicemail recording started\n{}", server.log()));
    let run = hang_up(port, &call_id, run).await;
    assert!(
        run.code == Some(0) && run.successful == 1,
        "{}\n--- server log ---\n{}",
        run.report(),
        server.log()
    );
    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(cdr.ivr_trail, ["main:voicemail"], "{cdr:#?}");
    assert_eq!(
        cdr.recording_path.as_deref(),
        Some(wav.display().to_string().as_str()),
        "the record links the voicemail: {cdr:#?}\n{}",
        server.log()
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Collecting digits
// ---------------------------------------------------------------------------------------------

/// A `collect` into `account` ending with `#`, then a prompt and a hang-up.
fn collect_flow(sensitive: bool) -> String {
    format!(
        r##"description: "Account number"
start: account
nodes:
  account:
    type: collect
    prompt: beep
    variable: account
    end_key: "#"
    first_digit_timeout_s: 20
    inter_digit_timeout_s: 10
    sensitive: {sensitive}
    ok: thanks
    no_input: bye
    invalid: bye
  thanks:
    type: play
    prompt: beep
    next: bye
  bye:
    type: hangup
"##
    )
}

/// Call 4000 and press `keys` by SIP INFO; the closed record.
async fn call_with_info_keys(server: &Server, from: &str, keys: &str) -> Cdr {
    let port = free_port();
    let info = server.dir().join(format!("caller-{from}.info"));
    let run = tokio::spawn(
        caller(server, "uac_ivr_info_digits.xml", from, "4000")
            .port(port)
            .key("info", info.display())
            .key("digits", keys)
            .key("keys", keys.chars().count())
            .run(),
    );
    let call_id = call_up(info.clone(), "caller").await;
    cue(port, &call_id, &info).await;
    let run = run.await.unwrap();
    assert!(
        run.code == Some(0) && run.successful == 1,
        "the caller did not press {keys} and get hung up on\n{}\n--- messages ---\n{}\n--- server log ---\n{}",
        run.report(),
        run.messages,
        server.log()
    );
    // (status line, CSeq) of every answer to an INFO, repeats (a retransmitted INFO) once.
    let mut answers: Vec<(String, String)> = run
        .received()
        .iter()
        .filter_map(|m| {
            let cseq = m
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("cseq:"))?
                .trim()
                .to_owned();
            cseq.ends_with(" INFO").then(|| {
                let status = m.lines().next().unwrap_or_default().trim().to_owned();
                (status, cseq)
            })
        })
        .collect();
    answers.sort();
    answers.dedup();
    assert_eq!(
        answers.len(),
        keys.chars().count(),
        "one answer per INFO: {answers:?}\n{}",
        run.messages
    );
    assert!(
        answers.iter().all(|(status, _)| status == "SIP/2.0 200 OK"),
        "every INFO is answered 200: {answers:?}"
    );
    server.wait_cdr(CdrBy::Caller(from), 1).await
}

/// Keys sent as SIP INFO (`application/dtmf-relay`) into a `collect` that ends with `#` are
/// stored in the call record as the node's variable, without the end key.
#[tokio::test]
async fn collect_ending_with_hash_stores_the_digits() {
    let server = Server::start(
        &trusted()
            .flow("main", collect_flow(false))
            .number("4000", "main"),
    );
    let cdr = call_with_info_keys(&server, "5550102", "1234#").await;
    assert_eq!(
        cdr.inputs,
        [("account.account".to_owned(), "1234".to_owned())],
        "{cdr:#?}"
    );
    assert_trail_has(&cdr, &["main:account→ok", "main:thanks→next"], &server);
    let shown = server.cli(&["cdr", "show", &cdr.call_id]);
    assert!(
        shown.status.success() && shown.stdout.contains("account.account = 1234"),
        "`switchboard cdr show` shows the input: {shown:#?}"
    );
    server.assert_no_panic();
}

/// A `sensitive` collect keeps only the first two and last two digits in the call record.
#[tokio::test]
async fn sensitive_collect_is_masked_in_the_record() {
    let server = Server::start(
        &trusted()
            .flow("main", collect_flow(true))
            .number("4000", "main"),
    );
    let cdr = call_with_info_keys(&server, "5550103", "1234567890#").await;
    assert_eq!(
        cdr.inputs,
        [("account.account".to_owned(), "12******90".to_owned())],
        "{cdr:#?}"
    );
    let shown = server.cli(&["cdr", "show", &cdr.call_id]);
    assert!(
        shown.status.success() && shown.stdout.contains("account.account = 12******90"),
        "`switchboard cdr show` shows the masked input: {shown:#?}"
    );
    assert_trail_has(&cdr, &["main:account→ok", "main:thanks→next"], &server);
    // Nor does the unmasked number leak into the log.
    assert!(
        !server.log().contains("1234567890"),
        "the log shows the sensitive input:\n{}",
        server.log()
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Service hours
// ---------------------------------------------------------------------------------------------

/// An `hours` node on `calendar` (YAML of one calendar, indented for `calendars.office`).
fn hours_flow(calendar: &str) -> String {
    format!(
        r#"description: "Service hours"
start: hours
calendars:
  office:
{calendar}
nodes:
  hours:
    type: hours
    calendar: office
    open: open_msg
    closed: closed_msg
  open_msg:
    type: play
    prompt: welcome
    next: bye
  closed_msg:
    type: play
    prompt: goodbye
    next: bye
  bye:
    type: hangup
"#
    )
}

/// `YYYY-MM-DD` of the UTC day `days` after 1970-01-01 (H. Hinnant's civil-from-days).
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Calendars whose answer is the same at any time the test runs (the clock is the server's):
/// open around the clock; every day a holiday (a holiday beats weekly hours); and every day a
/// holiday but yesterday, today and tomorrow (UTC) special working days (a special day beats a
/// holiday; three days so that midnight during the test changes nothing).
#[tokio::test]
async fn hours_branch_at_a_fixed_clock() {
    let today = common::unix_days_now();
    let specials: Vec<String> = (today - 1..=today + 1)
        .map(|d| format!("      \"{}\": [\"00:00-24:00\"]", civil(d)))
        .collect();
    let open = "    time_zone: UTC\n    weekly: { daily: [\"00:00-24:00\"] }";
    let closed = "    time_zone: Asia/Shanghai\n    weekly: { daily: [\"00:00-24:00\"] }\n    \
                  holidays: [\"2000-01-01..2099-12-31\"]";
    let special = format!(
        "    time_zone: UTC\n    holidays: [\"2000-01-01..2099-12-31\"]\n    special_days:\n{}",
        specials.join("\n")
    );
    let server = Server::start(
        &trusted()
            .flow("open", hours_flow(open))
            .flow("closed", hours_flow(closed))
            .flow("special", hours_flow(&special))
            .number("4001", "open")
            .number("4002", "closed")
            .number("4003", "special"),
    );
    for (number, flow, exit, prompt) in [
        ("4001", "open", "open", "open_msg"),
        ("4002", "closed", "closed", "closed_msg"),
        ("4003", "special", "open", "open_msg"),
    ] {
        let info = server.dir().join(format!("caller-{number}.info"));
        server
            .run_ok(
                caller(&server, "uac_ivr_until_bye.xml", "5550104", number)
                    .key("info", info.display()),
            )
            .await;
        let cdr = server.wait_cdr(CdrBy::Service(number), 1).await;
        assert_eq!(
            cdr.ivr_trail,
            [
                format!("{flow}:hours→{exit}"),
                format!("{flow}:{prompt}→next"),
                format!("{flow}:bye")
            ],
            "a call to {number}: {cdr:#?}\n{}",
            server.log()
        );
    }
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Missed-call reasons
// ---------------------------------------------------------------------------------------------

/// A blacklisted caller (an exact number, or a prefix) is refused with 403 and the reason
/// `blacklisted`; a number bound to no flow gets 404 and `inbound_route_not_matched`; a caller who
/// hangs up 2 s after the answer leaves `inbound_route_not_completed`. All of them are "system
/// not answered". A caller who stays 6 s in the menu and hangs up "hung up in IVR", "not
/// answered" (past the 5 s during which a hang-up counts as the route not completing).
#[tokio::test]
async fn blacklisted_unrouted_and_quick_hangup_reasons() {
    let long_menu = MENU_FLOW.replace("timeout_s: 10", "timeout_s: 60");
    let server = Server::start(
        &trusted()
            .flow("main", long_menu)
            .number("4000", "main")
            .blacklist("5550666")
            .blacklist("55507*"),
    );
    // Started first: it takes 6 s.
    let patient = tokio::spawn(
        caller(&server, "uac_ivr_hang_up_after.xml", "5550110", "4000")
            .arg("-d")
            .arg("6000")
            .run(),
    );

    for (from, number, answer, reason) in [
        ("5550666", "4000", "403", "blacklisted"),
        ("5550777", "4000", "403", "blacklisted"),
        ("5550105", "4999", "404", "inbound_route_not_matched"),
    ] {
        let run = server
            .run_ok(caller(&server, "uac_ivr_refused.xml", from, number))
            .await;
        let got = final_answer(&run);
        assert!(
            got.starts_with(answer),
            "{from} calling {number}: expected {answer}, got {got:?}\n{}",
            run.messages
        );
        let cdr = server.wait_cdr(CdrBy::Caller(from), 1).await;
        assert_eq!(
            (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
            (Some("system_not_answered"), Some(reason)),
            "{from} calling {number}: {cdr:#?}"
        );
        assert!(cdr.ivr_trail.is_empty(), "no flow ran: {cdr:#?}");
    }

    server
        .run_ok(
            caller(&server, "uac_ivr_hang_up_after.xml", "5550106", "4000")
                .arg("-d")
                .arg("2000"),
        )
        .await;
    let cdr = server.wait_cdr(CdrBy::Caller("5550106"), 1).await;
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (
            Some("system_not_answered"),
            Some("inbound_route_not_completed")
        ),
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.hangup_by.as_deref(), Some("caller"), "{cdr:#?}");
    assert_eq!(cdr.service_number.as_deref(), Some("4000"), "{cdr:#?}");
    assert_eq!(cdr.ivr_trail, ["main:menu"], "{cdr:#?}");

    let patient = patient.await.unwrap();
    assert!(
        patient.code == Some(0) && patient.successful == 1,
        "{}\n--- server log ---\n{}",
        patient.report(),
        server.log()
    );
    let cdr = server.wait_cdr(CdrBy::Caller("5550110"), 1).await;
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (Some("not_answered"), Some("hung_up_in_ivr")),
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.hangup_by.as_deref(), Some("caller"), "{cdr:#?}");
    assert_eq!(cdr.ivr_trail, ["main:menu"], "{cdr:#?}");

    // What a manager reads, in Chinese: every reason by its label.
    let list = server.cli(&["cdr", "list", "--lang", "zh"]);
    assert!(list.status.success(), "{list:#?}");
    for (caller, label) in [
        ("5550666", "客户号码黑名单"),
        ("5550105", "呼入路由未匹配"),
        ("5550106", "呼入路由未完成"),
        ("5550110", "IVR中挂机"),
    ] {
        assert!(
            list.stdout
                .lines()
                .any(|l| l.contains(caller) && l.contains(label)),
            "`switchboard cdr list --lang zh` shows {caller} with {label}:\n{}",
            list.stdout
        );
    }
    server.assert_no_panic();
}

/// The blacklist reads numbers as the README promises: a leading `+` and spaces are ignored,
/// on the entry and on the caller's number.
#[tokio::test]
async fn blacklist_ignores_plus_and_spaces() {
    let server = Server::start(
        &trusted()
            .flow("main", MENU_FLOW)
            .number("4000", "main")
            .blacklist("+8613800000001")
            .blacklist("13900000002")
            .blacklist("021 5555 0000"),
    );
    for from in ["8613800000001", "+13900000002", "02155550000"] {
        let run = server
            .run_ok(caller(&server, "uac_ivr_refused.xml", from, "4000"))
            .await;
        assert!(
            final_answer(&run).starts_with("403"),
            "{from}: {}",
            run.messages
        );
        let cdr = server.wait_cdr(CdrBy::Caller(from), 1).await;
        assert_eq!(
            cdr.missed_reason.as_deref(),
            Some("blacklisted"),
            "{from}: {cdr:#?}"
        );
    }
    server.assert_no_panic();
}

/// A service number switched off in the configuration (`enabled: false`) is refused, and the
/// record says why: "trunk number disabled", not "no route".
#[tokio::test]
async fn disabled_number_is_refused_as_trunk_number_disabled() {
    let server = Server::start(
        &trusted()
            .flow("main", MENU_FLOW)
            .disabled_number("4000", "main"),
    );
    let run = server
        .run_ok(caller(&server, "uac_ivr_refused.xml", "5550111", "4000"))
        .await;
    let cdr = server.wait_cdr(CdrBy::Caller("5550111"), 1).await;
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (Some("system_not_answered"), Some("trunk_number_disabled")),
        "answered {:?}: {cdr:#?}",
        final_answer(&run)
    );
    // Not 404: the number exists, it is switched off for now.
    assert!(
        final_answer(&run).starts_with("480"),
        "answered {:?}\n{}",
        final_answer(&run),
        run.messages
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Third-party bridge
// ---------------------------------------------------------------------------------------------

/// A `bridge` to the voice bot at 127.0.0.1:`bot_port`: the caller's number goes along as
/// `X-Case`, the bot's `X-Intent` comes back as `intent`, and a `switch` routes on it; if the bot
/// can not be reached, the caller hears `busy`.
fn bridge_flow(bot_port: u16) -> String {
    format!(
        r#"description: "Voice bot, then by intent"
start: bot
nodes:
  bot:
    type: bridge
    uri: "sip:bot@127.0.0.1:{bot_port}"
    headers:
      X-Case: "{{{{ caller }}}}"
    result_headers:
      X-Intent: intent
    ring_timeout_s: 30
    returned: route
    failed: sorry
  route:
    type: switch
    cases:
      - when: "vars.intent == 'billing'"
        goto: billing
    default: bye
  billing:
    type: play
    prompt: beep
    next: bye
  sorry:
    type: play
    prompt: busy
    next: bye
  bye:
    type: hangup
"#
    )
}

/// The caller hangs up while talking to the bot: the bot's leg is hung up too, and the call
/// was answered (a third party was connected), ended by the caller in the `bridge` node.
#[tokio::test]
async fn caller_hanging_up_during_the_bridge_ends_the_third_party_leg() {
    let bot_port = free_port();
    let phone = Account::demo(1001);
    let server = Server::start(
        &ServerConfig::with_accounts([phone.clone()])
            .md5_only()
            .flow("main", bridge_flow(bot_port))
            .number("4000", "main"),
    );
    let bot_info = server.dir().join("bot.info");
    let bot = tokio::spawn(
        server
            .sipp()
            .scenario("uas_answer.xml")
            .port(bot_port)
            .key("info", bot_info.display())
            .key("rtp_port", common::free_media_port())
            .trace_msg()
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(bot_port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the bot SIPp never bound port {bot_port}");
    let port = free_port();
    let info = server.dir().join("caller.info");
    let run = tokio::spawn(
        server
            .sipp()
            .scenario("uac_dtmf_2833_pcap.xml")
            .csv(sipp_csv([(phone.user.as_str(), phone.sipp_auth())]))
            .arg("-s")
            .arg("4000")
            .arg("-auth_uri")
            .arg(format!("4000@{}", server.udp))
            .port(port)
            .key("info", info.display())
            .trace_msg()
            .run(),
    );
    let call_id = call_up(info, "caller").await;
    call_up(bot_info, "bot").await;
    let run = hang_up(port, &call_id, run).await;
    assert!(
        run.code == Some(0) && run.successful == 1,
        "{}\n--- server log ---\n{}",
        run.report(),
        server.log()
    );
    let bot = bot.await.unwrap();
    assert!(
        bot.code == Some(0) && bot.successful == 1,
        "the bot's leg was not hung up\n{}\n{}",
        bot.report(),
        bot.messages
    );
    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(cdr.ivr_trail, ["main:bot"], "{cdr:#?}");
    assert_eq!(
        (cdr.result.as_deref(), cdr.missed_reason.as_deref()),
        (Some("answered"), None),
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.hangup_by.as_deref(), Some("caller"), "{cdr:#?}");
    server.assert_no_panic();
}

/// A bot that answers busy (486): the caller goes on at once at the bridge's `failed` exit, not
/// after the 30 s ring timeout.
#[tokio::test]
async fn busy_third_party_takes_the_failed_exit() {
    let bot_port = free_port();
    let server = Server::start(
        &trusted()
            .flow("main", bridge_flow(bot_port))
            .number("4000", "main"),
    );
    let bot = tokio::spawn(
        server
            .sipp()
            .scenario("uas_busy.xml")
            .port(bot_port)
            .trace_msg()
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(bot_port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the bot SIPp never bound port {bot_port}");
    server
        .run_ok(
            caller(&server, "uac_ivr_until_bye.xml", "5550112", "4000")
                .key("info", server.dir().join("caller.info").display()),
        )
        .await;
    let bot = bot.await.unwrap();
    assert!(
        bot.code == Some(0) && bot.successful == 1,
        "the bot did not get the INVITE and the ACK of its 486\n{}",
        bot.report()
    );
    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        ["main:bot→failed", "main:sorry→next", "main:bye"],
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_ne!(cdr.result.as_deref(), Some("answered"), "{cdr:#?}");
    server.assert_no_panic();
}

/// A `dial` to a SIP URI whose phone answers busy (486) takes the `busy` exit at once.
#[tokio::test]
async fn dial_to_a_busy_uri_takes_the_busy_exit() {
    let desk_port = free_port();
    let flow = format!(
        r#"description: "Dial a desk"
start: desk
nodes:
  desk:
    type: dial
    uri: "sip:desk@127.0.0.1:{desk_port}"
    ring_timeout_s: 30
    answered: bye
    no_answer: bye
    busy: sorry
    failed: bye
  sorry:
    type: play
    prompt: busy
    next: bye
  bye:
    type: hangup
"#
    );
    let server = Server::start(&trusted().flow("main", flow).number("4000", "main"));
    let desk = tokio::spawn(
        server
            .sipp()
            .scenario("uas_busy.xml")
            .port(desk_port)
            .trace_msg()
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(desk_port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the desk SIPp never bound port {desk_port}");
    server
        .run_ok(
            caller(&server, "uac_ivr_until_bye.xml", "5550113", "4000")
                .key("info", server.dir().join("caller.info").display()),
        )
        .await;
    let desk = desk.await.unwrap();
    assert!(
        desk.code == Some(0) && desk.successful == 1,
        "the desk did not get the INVITE and the ACK of its 486\n{}",
        desk.report()
    );
    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        ["main:desk→busy", "main:sorry→next", "main:bye"],
        "{cdr:#?}\n{}",
        server.log()
    );
    server.assert_no_panic();
}

/// A `bridge` to a SIPp "voice bot" passes the caller's number as a header; when the bot hangs
/// up with `X-Intent: billing`, the caller is back in the flow, the `switch` reads the intent,
/// and the call ends as answered (a third party was connected).
#[tokio::test]
async fn third_party_bridge_returns_the_caller_to_the_flow() {
    let bot_port = free_port();
    let server = Server::start(
        &trusted()
            .flow("main", bridge_flow(bot_port))
            .number("4000", "main"),
    );
    let bot_info = server.dir().join("bot.info");
    let bot = tokio::spawn(
        server
            .sipp()
            .scenario("uas_bot_bye.xml")
            .port(bot_port)
            .key("info", bot_info.display())
            .trace_msg()
            .run(),
    );
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(bot_port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the bot SIPp never bound port {bot_port}");

    let caller_run = caller(&server, "uac_ivr_until_bye.xml", "5550100", "4000")
        .key("info", server.dir().join("caller.info").display())
        .run()
        .await;
    let bot = bot.await.unwrap();
    assert!(
        bot.code == Some(0) && bot.successful == 1,
        "the bot did not get the call with X-Case: 5550100 and hang up\n{}\n--- messages ---\n{}\n--- server log ---\n{}",
        bot.report(),
        bot.messages,
        server.log()
    );
    assert!(
        caller_run.code == Some(0) && caller_run.successful == 1,
        "the caller was not hung up on by the flow\n{}\n--- messages ---\n{}\n--- server log ---\n{}",
        caller_run.report(),
        caller_run.messages,
        server.log()
    );
    let seen = fs::read_to_string(&bot_info).unwrap_or_default();
    assert!(
        seen.split_whitespace().nth(1) == Some("5550100"),
        "the bot saw X-Case {seen:?}"
    );

    let cdr = server.wait_cdr(CdrBy::Service("4000"), 1).await;
    assert_eq!(
        cdr.ivr_trail,
        [
            "main:bot→returned",
            "main:route→case1",
            "main:billing→next",
            "main:bye"
        ],
        "{cdr:#?}\n{}",
        server.log()
    );
    assert_eq!(cdr.result.as_deref(), Some("answered"), "{cdr:#?}");
    assert_eq!(cdr.missed_reason, None, "{cdr:#?}");
    assert!(cdr.answered_at_ms.is_some(), "{cdr:#?}");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Publishing while calls are up
// ---------------------------------------------------------------------------------------------

/// The flow a publish test starts with: a menu whose `1` plays `one`.
const SERVING_FLOW: &str = r#"description: "Menu, version 1"
start: menu
nodes:
  menu:
    type: menu
    prompt: beep
    choices:
      "1": one
    timeout_s: 60
    retries: 0
    no_input: bye
    invalid: bye
  one:
    type: play
    prompt: beep
    next: bye
  bye:
    type: hangup
"#;

/// Not YAML: a flow sequence left open on line 9, which the YAML reader finds out on line 10.
const BROKEN_YAML: &str = r#"description: "Menu, broken"
start: menu
nodes:
  menu:
    type: menu
    prompt: beep
    choices:
      "1": one
    timeout_s: [60
    retries: 0
"#;

/// Valid YAML, invalid flow: key `1` leads to no node (line 8).
fn dangling_exit() -> String {
    SERVING_FLOW.replace("\"1\": one", "\"1\": nowhere")
}

/// A valid new version: key `1` plays `two`.
fn next_version() -> String {
    SERVING_FLOW
        .replace("version 1", "version 2")
        .replace("\"1\": one", "\"1\": two")
        .replace("  one:\n", "  two:\n")
}

/// Wait until the engine logged that it serves `version` of a flow (the operation log row is
/// written just before the engine switches).
async fn wait_serving(server: &Server, version: &str) {
    let prefix = format!("version={}", &version[..16]);
    let deadline = Deadline::after(WAIT);
    while !server.log().contains(&prefix) {
        assert!(
            !deadline.passed(),
            "the engine never logged {prefix}\n{}",
            server.log()
        );
        deadline.tick().await;
    }
}

/// Publishing a broken flow file while a call is in the menu: the file is rejected (its errors,
/// with file and line, in the operation log and the server's log), the call goes on on the
/// version it started with, and a later valid file serves the next call.
#[tokio::test]
async fn broken_flow_published_during_a_call() {
    let server = Server::start(&trusted().flow("main", SERVING_FLOW).number("4000", "main"));
    let file = server.flows_dir().join("main.yaml").display().to_string();

    // A call sits in the menu (60 s timeout) until the test cues its key.
    let port = free_port();
    let info = server.dir().join("first.info");
    let first = tokio::spawn(
        caller(&server, "uac_ivr_info_digits.xml", "5550107", "4000")
            .port(port)
            .key("info", info.display())
            .key("digits", "1")
            .key("keys", 1)
            .timeout_s(60)
            .run(),
    );
    let call_id = call_up(info.clone(), "first caller").await;

    // Not YAML.
    server.write_flow("main", BROKEN_YAML);
    let rejected = server
        .wait_publication("main", |p| p.action == "rejected")
        .await;
    let errors = rejected.errors.clone().unwrap_or_default();
    assert!(
        errors.contains(&format!("{file}:10:")) && errors.contains("line 9"),
        "the YAML error names {file}, line 10 where the reader stopped, and line 9 where the \
         sequence opened: {rejected:#?}"
    );

    // YAML, but a key leading nowhere.
    server.write_flow("main", &dangling_exit());
    let rejected = server
        .wait_publication("main", |p| {
            p.action == "rejected" && p.errors.as_deref().is_some_and(|e| e.contains("nowhere"))
        })
        .await;
    let errors = rejected.errors.clone().unwrap_or_default();
    assert!(
        errors.contains(&format!("{file}:8:")) && errors.contains("[menu]"),
        "the error names {file} line 8 and the node: {rejected:#?}"
    );
    let log = server.log();
    assert!(
        log.contains("invalid") && log.contains(&format!("{file}:8:")),
        "the server's log reports the rejection:\n{log}"
    );

    // The call in progress goes on, on the version it started with.
    cue(port, &call_id, &info).await;
    let first = first.await.unwrap();
    assert!(
        first.code == Some(0) && first.successful == 1,
        "the call in the menu did not go on after the rejected publishes\n{}\n--- messages ---\n{}\n--- server log ---\n{}",
        first.report(),
        first.messages,
        server.log()
    );
    let first_cdr = server.wait_cdr(CdrBy::Caller("5550107"), 1).await;
    assert_eq!(
        first_cdr.ivr_trail,
        ["main:menu→1", "main:one→next", "main:bye"],
        "{first_cdr:#?}"
    );

    // A valid new version serves the next call.
    server.write_flow("main", &next_version());
    let published = server
        .wait_publication("main", |p| {
            p.action == "published" && p.diff.as_deref().is_some_and(|d| d.contains("two"))
        })
        .await;
    assert_eq!(published.actor, "file-watch", "{published:#?}");
    // Nothing is lost from the operation log: every publish, accepted or not, in order.
    let log: Vec<(String, String)> = server
        .publications("main")
        .await
        .into_iter()
        .map(|p| (p.actor, p.action))
        .collect();
    let expected = [
        ("start-up", "published"),
        ("file-watch", "rejected"),
        ("file-watch", "rejected"),
        ("file-watch", "published"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(log, expected, "the operation log of flow main");
    wait_serving(&server, &published.version).await;
    let second = call_with_info_keys(&server, "5550108", "1").await;
    assert_eq!(
        second.ivr_trail,
        ["main:menu→1", "main:two→next", "main:bye"],
        "{second:#?}"
    );
    assert_eq!(
        second.flow_version.as_deref(),
        Some(published.version.as_str()),
        "{second:#?}"
    );
    assert_ne!(first_cdr.flow_version, second.flow_version);
    server.assert_no_panic();
}

/// The operation log's diff of a publish is against the version that was serving, also when
/// rejected files came in between: what an admin reads there is what changed for callers.
#[tokio::test]
async fn published_diff_is_against_the_serving_version() {
    let server = Server::start(&trusted().flow("main", SERVING_FLOW).number("4000", "main"));
    server.write_flow("main", &dangling_exit());
    server
        .wait_publication("main", |p| p.action == "rejected")
        .await;
    server.write_flow("main", &next_version());
    let published = server
        .wait_publication("main", |p| {
            p.action == "published" && p.actor == "file-watch"
        })
        .await;
    let diff = published.diff.clone().unwrap_or_default();
    assert!(
        diff.contains("-      \"1\": one") && diff.contains("+      \"1\": two"),
        "the diff shows key 1 moving from `one` to `two`:\n{diff}"
    );
    assert!(
        !diff.contains("nowhere"),
        "the diff is against the rejected file, not the serving version:\n{diff}"
    );
}
