//! End to end: calls. SIPp and baresip phones call the test line and each other through the
//! real binary, and the tests check what arrives: digits in `/metrics`, RTP at the far end, a
//! WAV file on disk.
//!
//! How the tests stay event-driven with SIPp, which has no way to wait for the test:
//! - A caller scenario writes `<Call-ID> <server RTP port>` to the file named by `-key info`
//!   (written, then renamed) once the call is up, and then waits for an in-dialog MESSAGE. The
//!   test sends that MESSAGE ([`hang_up`]) once it has seen what it waits for — a metric, RTP
//!   packets — and only then does the caller send BYE. No pause guesses how long that takes.
//! - A callee is two SIPp runs on one SIP port: `register_auth.xml` registers the account from
//!   port P and exits, then a UAS scenario binds P (the server sends INVITEs to the flow the
//!   REGISTER came on). SIPp cannot do both in one run: it maps the incoming INVITE (a new
//!   Call-ID) to no call of a client scenario.
//! - Where the test must count RTP both ways, neither SIPp touches media: the SDP names a UDP
//!   socket the test owns (`-key rtp_port`), which sends paced PCMU and counts what arrives. That
//!   counts independently of the server's own code (the media layer exports no packet counters),
//!   and SIPp's `-rtp_echo` could echo but never count.
mod common;

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    free_port, poll_until, sipp_csv, wait_udp_bound, Account, Deadline, Server, ServerConfig, Sipp,
    SippRun, WAIT,
};

/// How long a call may take to come up (authentication, forking, ringing on loopback).
const CALL_UP: Duration = Duration::from_secs(15);

fn caller() -> Account {
    Account::demo(1001)
}

fn callee() -> Account {
    Account::demo(1002)
}

fn server_with(config: ServerConfig) -> Server {
    Server::start(&config.md5_only())
}

fn two_accounts() -> ServerConfig {
    ServerConfig::with_accounts([caller(), callee()])
}

/// A caller SIPp: `scenario` from `caller()` to `number`, authenticating with 407.
fn caller_sipp(server: &Server, scenario: &str, number: &str) -> Sipp {
    server
        .sipp()
        .scenario(scenario)
        .csv(sipp_csv([(caller().user.as_str(), caller().sipp_auth())]))
        .arg("-s")
        .arg(number)
        .arg("-auth_uri")
        .arg(format!("{number}@{}", server.udp))
}

/// Register `account` from SIP port `port` (SIPp then exits; a UAS takes the port over).
async fn register_from(server: &Server, account: &Account, port: u16) {
    server
        .sipp()
        .scenario("register_auth.xml")
        .csv(sipp_csv([(account.user.as_str(), account.sipp_auth())]))
        .port(port)
        .run()
        .await
        .assert_all_successful(1);
}

/// Start a callee UAS on `port` in the background and wait until it listens.
async fn spawn_callee(sipp: Sipp, port: u16) -> tokio::task::JoinHandle<SippRun> {
    let run = tokio::spawn(sipp.port(port).run());
    let bound = tokio::task::spawn_blocking(move || wait_udp_bound(port, WAIT))
        .await
        .unwrap();
    assert!(bound, "the callee SIPp never bound port {port}");
    run
}

/// What a scenario wrote to its `-key info` file: the Call-ID and, when it reports one, the
/// server's RTP port (the last number of the line: `m=audio <port>` or `<port>`).
struct CallInfo {
    call_id: String,
    server_rtp: Option<u16>,
}

/// Wait for `path` to appear (the call is up); `None` after `limit`.
fn wait_info(path: &Path, limit: Duration) -> Option<CallInfo> {
    poll_until(limit, || {
        let text = fs::read_to_string(path).ok()?;
        let mut words = text.split_whitespace();
        let call_id = words.next()?.to_owned();
        let server_rtp = words.next_back().and_then(|w| w.parse().ok());
        Some(CallInfo {
            call_id,
            server_rtp,
        })
    })
}

async fn call_up(path: PathBuf, what: &str) -> CallInfo {
    let info = tokio::task::spawn_blocking(move || wait_info(&path, CALL_UP))
        .await
        .unwrap();
    info.unwrap_or_else(|| panic!("the {what} never reported the call up within {CALL_UP:?}"))
}

/// Tell the caller SIPp listening on `port` to hang up: an in-dialog MESSAGE for `call_id`.
/// SIPp answers it towards the server (SIPp sends everything of a call to its remote peer, not
/// to the Via), so the run ending is the acknowledgement: the MESSAGE is retransmitted every
/// 500 ms until then, for at most [`WAIT`]. The run, whose report says why if it did not end.
async fn finish(port: u16, call_id: String, mut run: tokio::task::JoinHandle<SippRun>) -> SippRun {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "MESSAGE sip:phone@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-hangup-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@127.0.0.1>;tag=hangup\r\n\
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
        match tokio::time::timeout(Duration::from_millis(500), &mut run).await {
            Ok(done) => return done.unwrap(),
            Err(_) if deadline.passed() => {
                let run = run.await.unwrap();
                panic!(
                    "the caller SIPp on {port} did not hang up when told to\n{}\n{}",
                    run.report(),
                    run.messages
                );
            }
            Err(_) => {}
        }
    }
}

/// One RTP endpoint the test owns: sends PCMU packets whose payload is all `fill`, and counts
/// packets whose payload is all `expect` (what the other end sent, relayed by the server).
struct RtpPeer {
    sock: UdpSocket,
    fill: u8,
    expect: u8,
    seq: u16,
    sent: usize,
    heard: usize,
}

impl RtpPeer {
    fn bind(fill: u8, expect: u8) -> RtpPeer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        RtpPeer {
            sock,
            fill,
            expect,
            seq: 0,
            sent: 0,
            heard: 0,
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// One 20 ms PCMU packet (RFC 3550 header, payload type 0).
    fn send(&mut self, to: SocketAddr) {
        let mut pkt = vec![0x80, 0];
        pkt.extend_from_slice(&self.seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&u32::from(self.fill).to_be_bytes());
        pkt.extend(std::iter::repeat_n(self.fill, 160));
        let _ = self.sock.send_to(&pkt, to);
        self.seq = self.seq.wrapping_add(1);
        self.sent += 1;
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let pkt = &buf[..n];
            if n > 12 && pkt[0] >> 6 == 2 {
                let header = 12 + 4 * usize::from(pkt[0] & 0x0f);
                if n > header && pkt[header..].iter().all(|&b| b == self.expect) {
                    self.heard += 1;
                }
            }
        }
    }
}

/// Send paced RTP both ways (a → `a_to`, b → `b_to`, one packet each per 20 ms) until each side
/// heard `want` packets from the other, or `limit` passes; `(a heard, b heard)`.
fn exchange(
    a: &mut RtpPeer,
    a_to: SocketAddr,
    b: &mut RtpPeer,
    b_to: SocketAddr,
    want: usize,
    limit: Duration,
) -> (usize, usize) {
    let _ = poll_until(limit, || {
        a.send(a_to);
        b.send(b_to);
        a.drain();
        b.drain();
        (a.heard >= want && b.heard >= want).then_some(())
    });
    (a.heard, b.heard)
}

fn loopback(port: Option<u16>, what: &str) -> SocketAddr {
    let port = port.unwrap_or_else(|| panic!("the {what} reported no server RTP port"));
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The u-law bytes the two test peers send: neither is silence (0xFF), and G.711 decode and
/// re-encode gives each back unchanged, so a relayed packet is recognisable even if the server
/// transcodes through linear samples.
const CALLER_FILL: u8 = 0x9A;
const CALLEE_FILL: u8 = 0x1C;

/// A SIPp phone sends RFC 4733 digit 1 (SIPp's capture, payload type 101, offered with
/// `a=rtpmap:101 telephone-event/8000`) into a test-line call: the server counts exactly that
/// digit, once per key press, as RFC 4733, and no other.
#[tokio::test]
async fn dtmf_2833_pcap_to_test_line_reports_digit_1() {
    let server = server_with(ServerConfig::with_accounts([caller()]));
    let sip_port = free_port();
    let info = server.dir().join("caller.info");
    let run = tokio::spawn(
        caller_sipp(&server, "uac_dtmf_2833_pcap.xml", "9999")
            .port(sip_port)
            .key("info", info.display())
            .trace_msg()
            .run(),
    );
    let call = call_up(info, "caller").await;

    server
        .wait_metric(r#"test_line_digits_total{digit="1",via="rfc4733"}"#, |v| {
            v >= 1.0
        })
        .await;
    finish(sip_port, call.call_id, run)
        .await
        .assert_all_successful(1);

    let m = server.metrics().await;
    let one = m.value(r#"test_line_digits_total{digit="1",via="rfc4733"}"#);
    assert_eq!(
        m.sum("test_line_digits_total"),
        one,
        "only digit 1 was sent\n{}",
        m.text
    );
    assert_eq!(
        one, 1.0,
        "one key press (its end packets sent three times) is one digit\n{}",
        m.text
    );
    assert_eq!(
        m.value(r#"calls_total{kind="test_line"}"#),
        1.0,
        "{}",
        m.text
    );
    assert!(server.log().contains("test line heard DTMF digit"));
    server.assert_no_panic();
}

/// A bridged call is recorded: SIPp's G.711 A-law capture (speech, payload type 8) plays from
/// the caller into a call to a registered SIPp; after the hang-up the WAV file is a valid
/// 8 kHz stereo file whose left channel (the caller) carries that audio and whose right channel
/// (the callee, sending u-law silence) is far quieter.
///
/// The callee's RTP goes to a socket of the test's: once 100 packets (2 s) of the caller's
/// audio have been relayed there, the caller hangs up.
#[tokio::test]
async fn g711a_pcap_is_recorded() {
    let server = server_with(two_accounts().record_calls());
    let callee_port = free_port();
    register_from(&server, &callee(), callee_port).await;
    let callee_info = server.dir().join("callee.info");
    let mut callee_rtp = RtpPeer::bind(0xFF, 0);
    let callee_run = spawn_callee(
        server
            .sipp()
            .scenario("uas_answer.xml")
            .key("rtp_port", callee_rtp.port())
            .key("info", callee_info.display()),
        callee_port,
    )
    .await;
    let caller_port = free_port();
    let caller_info = server.dir().join("caller.info");
    let caller_run = tokio::spawn(
        caller_sipp(&server, "uac_g711a_pcap.xml", "1002")
            .port(caller_port)
            .key("info", caller_info.display())
            .run(),
    );
    let leg_b = call_up(callee_info, "callee").await;
    let call = call_up(caller_info, "caller").await;
    let b_to = loopback(leg_b.server_rtp, "callee");

    // Any packet at all arriving counts here (the payload is A-law speech turned into u-law).
    let heard = tokio::task::spawn_blocking(move || {
        let mut heard = 0;
        let mut buf = [0u8; 2048];
        let _ = poll_until(CALL_UP, || {
            callee_rtp.send(b_to);
            while let Ok(n) = callee_rtp.sock.recv(&mut buf) {
                heard += usize::from(n > 12);
            }
            (heard >= 100).then_some(())
        });
        heard
    })
    .await
    .unwrap();
    assert!(
        heard >= 100,
        "the callee heard {heard} RTP packets of the caller's audio"
    );
    finish(caller_port, call.call_id, caller_run)
        .await
        .assert_all_successful(1);
    callee_run.await.unwrap().assert_all_successful(1);

    // "recording finished" is logged once the file is complete (header sizes written).
    let log = poll_until(WAIT, || {
        let log = server.log();
        log.contains("recording finished").then_some(log)
    })
    .unwrap_or_else(|| panic!("no recording finished\n{}", server.log()));
    let wavs: Vec<PathBuf> = fs::read_dir(server.recordings_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{log}");
    let mut reader = hound::WavReader::open(&wavs[0]).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16),
        "{spec:?}"
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let rms = |channel: usize| {
        let ch: Vec<f64> = samples
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|&s| f64::from(s))
            .collect();
        (ch.iter().map(|s| s * s).sum::<f64>() / ch.len().max(1) as f64).sqrt()
    };
    let (left, right) = (rms(0), rms(1));
    assert!(
        samples.len() >= 2 * 8000,
        "at least a second of audio, got {} frames",
        samples.len() / 2
    );
    assert!(
        left > 300.0 && right < left / 10.0,
        "left (caller) RMS {left:.0}, right (callee) RMS {right:.0}"
    );
    server.assert_no_panic();
}

/// Two phones call each other through the server and audio flows both ways: SIPp does the
/// signalling for 1001 (caller) and 1002 (callee), and the SDP of each names a UDP socket of the
/// test's, which sends PCMU with a payload of its own and counts the other's packets arriving.
#[tokio::test]
async fn two_phones_call_each_other_with_rtp_both_ways() {
    let server = server_with(two_accounts());
    bridged_call_with_audio(&server, "uac_rtp_by_test.xml", "uas_answer.xml").await;
}

/// Hold and resume: the caller re-INVITEs with a=sendonly and the answer says a=recvonly (the
/// callee SIPp gets the hold as a re-INVITE offering a=sendonly and answers a=recvonly); then
/// a=sendrecv both ways again. Every direction is an `ereg check_it` in the scenarios. After the
/// resume, audio flows both ways as in the plain call.
#[tokio::test]
async fn hold_and_unhold_keeps_audio_both_ways() {
    let server = server_with(two_accounts());
    bridged_call_with_audio(&server, "uac_hold_unhold.xml", "uas_hold_unhold.xml").await;
    let m = server.metrics().await;
    assert!(
        m.value(r#"sip_requests_received_total{method="INVITE"}"#) >= 4.0,
        "two INVITEs (407, then authenticated) and two re-INVITEs\n{}",
        m.text
    );
}

async fn bridged_call_with_audio(server: &Server, caller_scenario: &str, callee_scenario: &str) {
    let callee_port = free_port();
    register_from(server, &callee(), callee_port).await;
    let mut a = RtpPeer::bind(CALLER_FILL, CALLEE_FILL);
    let mut b = RtpPeer::bind(CALLEE_FILL, CALLER_FILL);
    let callee_info = server.dir().join("callee.info");
    let callee_run = spawn_callee(
        server
            .sipp()
            .scenario(callee_scenario)
            .key("rtp_port", b.port())
            .key("info", callee_info.display()),
        callee_port,
    )
    .await;
    let caller_port = free_port();
    let caller_info = server.dir().join("caller.info");
    let caller_run = tokio::spawn(
        caller_sipp(server, caller_scenario, "1002")
            .port(caller_port)
            .key("rtp_port", a.port())
            .key("info", caller_info.display())
            .trace_msg()
            .run(),
    );
    let leg_b = call_up(callee_info, "callee").await;
    let leg_a = call_up(caller_info, "caller").await;
    let (a_to, b_to) = (
        loopback(leg_a.server_rtp, "caller"),
        loopback(leg_b.server_rtp, "callee"),
    );

    const WANT: usize = 50;
    let (a_heard, b_heard) =
        tokio::task::spawn_blocking(move || exchange(&mut a, a_to, &mut b, b_to, WANT, CALL_UP))
            .await
            .unwrap();
    finish(caller_port, leg_a.call_id, caller_run)
        .await
        .assert_all_successful(1);
    callee_run.await.unwrap().assert_all_successful(1);
    assert!(
        a_heard >= WANT && b_heard >= WANT,
        "relayed packets: caller heard {a_heard}, callee heard {b_heard} (want {WANT} each)"
    );
    let m = server
        .wait_metric(r#"calls_ended_total{reason="caller_hangup"}"#, |v| v == 1.0)
        .await;
    assert_eq!(m, 1.0);
    let m = server.metrics().await;
    assert_eq!(m.value(r#"calls_total{kind="account"}"#), 1.0, "{}", m.text);
    server.assert_no_panic();
}

/// The final answer the caller got, from its message trace.
fn final_answer(run: &SippRun) -> String {
    run.received()
        .into_iter()
        .filter(|m| m.contains(" INVITE\r\n") || m.contains(" INVITE\n"))
        .map(|m| m.lines().next().unwrap_or_default().trim().to_owned())
        .rfind(|l| !l.starts_with("SIP/2.0 1") && !l.starts_with("SIP/2.0 407"))
        .unwrap_or_default()
}

/// The callee is busy (its phone answers 486): the caller gets 486.
#[tokio::test]
async fn busy_callee_gives_486() {
    let server = server_with(two_accounts());
    let callee_port = free_port();
    register_from(&server, &callee(), callee_port).await;
    let callee_run = spawn_callee(server.sipp().scenario("uas_busy.xml"), callee_port).await;
    let run = caller_sipp(&server, "uac_rejected.xml", "1002")
        .key("rtp_port", free_port())
        .trace_msg()
        .run()
        .await;
    run.assert_all_successful(1);
    callee_run.await.unwrap().assert_all_successful(1);
    assert!(
        final_answer(&run).starts_with("SIP/2.0 486"),
        "{}\n{}",
        final_answer(&run),
        run.report()
    );
}

/// A call to an account with no registered phone gets 480 at once; an unknown number gets 404.
#[tokio::test]
async fn unregistered_account_gives_480() {
    let server = server_with(two_accounts());
    let run = caller_sipp(&server, "uac_rejected.xml", "1002")
        .key("rtp_port", free_port())
        .trace_msg()
        .run()
        .await;
    run.assert_all_successful(1);
    assert!(
        final_answer(&run).starts_with("SIP/2.0 480"),
        "{}\n{}",
        final_answer(&run),
        run.report()
    );

    let run = caller_sipp(&server, "uac_rejected.xml", "5555")
        .key("rtp_port", free_port())
        .trace_msg()
        .run()
        .await;
    run.assert_all_successful(1);
    assert!(
        final_answer(&run).starts_with("SIP/2.0 404"),
        "{}\n{}",
        final_answer(&run),
        run.report()
    );
}

/// The caller gives up while the callee rings: its CANCEL is answered 200 and its INVITE 487,
/// and the callee's phone gets a CANCEL of its own (answered 200, its INVITE 487).
#[tokio::test]
async fn caller_cancel_propagates() {
    let server = server_with(two_accounts());
    let callee_port = free_port();
    register_from(&server, &callee(), callee_port).await;
    let callee_run = spawn_callee(server.sipp().scenario("uas_cancelled.xml"), callee_port).await;
    let run = caller_sipp(&server, "uac_cancel.xml", "1002")
        .key("rtp_port", free_port())
        .run()
        .await;
    run.assert_all_successful(1);
    callee_run.await.unwrap().assert_all_successful(1);
    server
        .wait_metric(r#"calls_ended_total{reason="caller_cancelled"}"#, |v| {
            v == 1.0
        })
        .await;
}
