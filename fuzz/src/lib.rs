//! Fuzz harnesses for the SIP engine: bytes → transport → parser → transaction layer.
//!
//! The three entry points are plain functions so that the libFuzzer targets in
//! `fuzz_targets/` stay one line each and `tests/replay.rs` can run every seed and every
//! saved regression on stable without any instrumentation (`cargo test` in `fuzz/`).
//!
//! | target            | input layout                                                  |
//! |-------------------|---------------------------------------------------------------|
//! | `sip_datagram`    | `flags`, 4 time-step bytes, then the datagram(s)              |
//! | `sip_stream`      | `flags`, 4 chunk-length bytes, 4 time-step bytes, the stream  |
//! | `parse_roundtrip` | the message, as is                                            |
//!
//! What counts as a failure (besides any panic inside the engine) is listed on
//! [`check_transmit`], [`sip_stream`] and [`roundtrip`].
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchboard_engine::auth::{AccountSecret, DigestConfig, LockoutConfig, ServerSecret};
use switchboard_engine::endpoint::{
    AgentSettings, CallSettings, Endpoint, EndpointConfig, Event, NumberRoute, QueueSettings,
    Received, TestLineSettings, TrunkRoute,
};
use switchboard_engine::registrar::RegistrarConfig;
use switchboard_engine::sip::framing::{self, Frame, FrameError};
use switchboard_engine::sip::msg::{self, ErrorKind, Framing, HeaderName, Message};
use switchboard_engine::sip::transaction::TimerConfig;
use switchboard_engine::sip::transport::{ConnId, Transmit, Transport};

/// Wall clock the endpoint is started at (2027-01-15), as in the engine's own tests.
const UNIX: u64 = 1_800_000_000;
/// Sources in this network skip digest authentication (so the fuzzer reaches the registrar).
const TRUSTED_NET: &str = "127.0.0.2/32";
/// In `sip_datagram` with the `MULTI` flag, the payload is several datagrams split on this.
pub const DELIMITER: &[u8] = b"%%NEXT%%";
/// At most this many datagrams per input (keeps one execution short).
const MAX_DATAGRAMS: usize = 8;
/// The default `sip.max_message_bytes`, which bounds a frame on a stream.
const MAX_MESSAGE: usize = 65_535;

// Flag bits of the first input byte.
const SRC_MASK: u8 = 0b0000_0011;
const PERSIST_FAILS: u8 = 0b0000_0100;
const MULTI: u8 = 0b0000_1000;
const REPEAT: u8 = 0b0001_0000;
const SMALL_MAX: u8 = 0b0000_1000; // sip_stream only: frame limit 1 KiB instead of 64 KiB

fn config() -> EndpointConfig {
    static CONFIG: OnceLock<EndpointConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| EndpointConfig {
            user_agent: Some("Switchboard-fuzz".into()),
            timers: TimerConfig::default(),
            registrar: RegistrarConfig::default(),
            digest: DigestConfig::default(),
            lockout: LockoutConfig::default(),
            trusted: vec![TRUSTED_NET.parse().expect("trusted net")],
            accounts: [("1001", "demo-1001"), ("1002", "demo-1002")]
                .iter()
                .map(|(u, p)| {
                    (
                        u.to_string(),
                        AccountSecret::from_password(u, "switchboard", p),
                    )
                })
                .collect(),
            // The test line, so fuzzed INVITEs and in-dialog requests reach a real call; the
            // service number 4000, whose flow queues callers to two agents whose desk phones
            // are 1001 and 1002 (registered by fuzzed REGISTERs, or not); and a trunk, so a
            // long number dialled by an account goes out through it.
            calls: CallSettings {
                test_line: Some(TestLineSettings {
                    number: "9999".into(),
                    prompt: None,
                }),
                numbers: vec![NumberRoute {
                    number: "4000".into(),
                    trunk: None,
                    flow: "q".into(),
                    enabled: true,
                }],
                trunks: vec![TrunkRoute {
                    name: "carrier".into(),
                    address: addr("127.0.0.1:5080"),
                    sources: Vec::new(),
                }],
                trunk_plan: switchboard_engine::trunk::Trunks::new(&site_config()),
                queueing: queueing(),
                ..CallSettings::default()
            },
        })
        .clone()
}

/// The trunk and display-number part of the configuration, as a site would write it.
fn site_config() -> switchboard_engine::config::Config {
    let yaml = "trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
    auth: { username: \"sb\", password: \"carrier-secret-1\" }
    number_format: { country_code: \"86\", national_prefix: \"0\", outbound: national }
    caller_id: { mode: fixed, number: \"+861088880000\" }
";
    switchboard_engine::config::Config::from_yaml_str(yaml, "fuzz.yaml").expect("fuzz config")
}

/// One skill group, ring-all, with two agents on the two accounts, logged in from the start
/// (ring-all rings both, so answers, failures and cancels all happen).
fn queueing() -> QueueSettings {
    use switchboard_engine::acd::{AgentConfig, AnswerMode, QueueConfig, Strategy};
    let agent = |id: &str, account: &str| {
        let mut config = AgentConfig::new(id).in_queue("sales");
        config.answer_mode = AnswerMode::DeskPhone {
            accounts: vec![account.into()],
        };
        config.max_ring = Duration::from_secs(10);
        config.wrap_up = Duration::from_secs(2);
        AgentSettings {
            config,
            pin: Some(format!("{id}{id}")),
            mobile_trunk: None,
            login_at_start: true,
            schedule: None,
            caller_id: None,
        }
    };
    let mut queue = QueueConfig::new("sales", Strategy::RingAll);
    queue.max_wait = Duration::from_secs(60);
    queue.announce_every = Some(Duration::from_secs(15));
    QueueSettings {
        queues: vec![queue],
        agents: vec![agent("81", "1001"), agent("82", "1002")],
        ..QueueSettings::default()
    }
}

/// The flow behind 4000: queue (exit key 0), then hang up whatever happens.
fn queue_flow() -> std::sync::Arc<switchboard_engine::ivr::model::Flow> {
    let yaml = "start: q
nodes:
  q:
    type: queue
    queue: sales
    exit_key: \"0\"
    max_wait_s: 60
    exit: bye
    timeout: bye
    no_agents: bye
    full: bye
  bye:
    type: hangup
";
    let ctx = switchboard_engine::ivr::validate::Context {
        queues: ["sales".to_owned()].into_iter().collect(),
        ..Default::default()
    };
    std::sync::Arc::new(
        switchboard_engine::ivr::validate::validate("q.yaml", yaml, &ctx).expect("the fuzz flow"),
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A virtual time step from one input byte: 50 ms × (1…32) × 2^(0…7), i.e. 50 ms … 204.8 s,
/// dense where the transaction timers are (T1 = 500 ms, T2 = 4 s, 64·T1 = 32 s).
pub fn time_step(b: u8) -> Duration {
    let mantissa = u64::from(b & 0x1f) + 1;
    Duration::from_millis((50 * mantissa) << (b >> 5))
}

/// Splits `n` leading bytes off (fewer if the input is shorter).
fn take(data: &[u8], n: usize) -> (&[u8], &[u8]) {
    data.split_at(n.min(data.len()))
}

fn split_on<'a>(mut data: &'a [u8], delim: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(delim.len()).position(|w| w == delim) {
        out.push(&data[..i]);
        data = &data[i + delim.len()..];
    }
    out.push(data);
    out
}

/// Drives one [`Endpoint`] on virtual time the way `engine/src/rt.rs` does, checking
/// everything it transmits.
struct Driver {
    ep: Endpoint,
    base: Instant,
    now: Instant,
    unix: u64,
    persist_ok: bool,
    transport: Transport,
    conn: Option<ConnId>,
    sent: usize,
}

impl Driver {
    fn new(transport: Transport, conn: Option<ConnId>, persist_ok: bool) -> Driver {
        // The harness is the shell: it may read the clock (once; time is virtual after).
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        let mut ep = Endpoint::new(config(), ServerSecret::from_bytes([7; 32]), 42);
        ep.publish_flows([queue_flow()]);
        Driver {
            ep,
            base,
            now: base,
            unix: UNIX,
            persist_ok,
            transport,
            conn,
            sent: 0,
        }
    }

    /// One datagram or one frame into the endpoint, then drain it.
    fn deliver(&mut self, from: Received, data: Bytes) {
        let framing = match from.transport {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp => Framing::Stream,
        };
        // Responses to a message that parsed must parse again; the stateless 400/505 to one
        // that did not may echo the broken header, so only its framing is checked.
        let strict = msg::parse(data.clone(), framing).is_ok();
        self.ep.handle_message(self.now, self.unix, from, data);
        self.drain(strict);
    }

    fn drain(&mut self, strict: bool) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.ep.poll_event() {
                progressed = true;
                match ev {
                    Event::Persist { token, .. } => {
                        self.ep.handle_persisted(self.now, token, self.persist_ok)
                    }
                    // The media workers are played by a script: every session gets a port
                    // (or, when stores fail, none), and commands go nowhere.
                    Event::OpenMedia { id, .. } => {
                        let result = if self.persist_ok {
                            Ok(addr("127.0.0.1:20000"))
                        } else {
                            Err("no ports".to_string())
                        };
                        self.ep.handle_media_opened(self.now, id, result);
                    }
                    Event::Media(_)
                    | Event::CdrOpen(_)
                    | Event::CdrClose { .. }
                    | Event::CdrLeg(_)
                    | Event::CallEvent(_)
                    | Event::Acd(_) => {}
                    // Answered at once as failed: no network in the fuzzer.
                    Event::Http { call, token, .. } => {
                        self.ep
                            .handle_http(self.now, call, token, Err("no network".into()))
                    }
                }
            }
            while let Some(t) = self.ep.poll_transmit() {
                progressed = true;
                self.sent += 1;
                check_transmit(&t, strict, self.transport, self.conn);
            }
            if !progressed {
                break;
            }
        }
        if let Some(t) = self.ep.poll_timeout() {
            // A wake-up in the past would make the shell spin.
            assert!(t >= self.base, "poll_timeout before the start of time");
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.unix += by.as_secs();
        self.ep.handle_timeout(self.now, self.unix);
        // Everything the timers send belongs to a transaction, so to a message that parsed.
        self.drain(true);
    }

    /// Leak check: with no more input, every transaction ends within 64·T1 plus T4
    /// (RFC 3261 §17); give it four times 40 s of virtual time, fired in steps so that
    /// timers armed by a firing (G → H, then I) get their turn.
    fn settle(&mut self) {
        for _ in 0..4 {
            self.advance(Duration::from_secs(40));
        }
        assert_eq!(
            self.ep.transactions(),
            0,
            "transactions still alive 160 s after the last input"
        );
    }
}

/// What every transmitted payload must satisfy:
/// - it goes out on the transport (and TCP connection) its request came in on, to a port
///   other than 0;
/// - it is a response with a valid status line: `SIP/2.0 SP 3DIGIT(100…699) SP reason CRLF`,
///   the reason free of CR/LF — or a request a call originated, which must parse;
/// - it is exactly one frame for the stream framer: `framing::check` finds the whole payload
///   (so its Content-Length is right, and a TCP peer stays in sync);
/// - when `strict` (it answers a message that parsed, or it was sent by a timer), it parses
///   again (`Framing::Stream`) as a response with the same status code.
pub fn check_transmit(t: &Transmit, strict: bool, transport: Transport, conn: Option<ConnId>) {
    let p = &t.payload;
    let show = || String::from_utf8_lossy(p).into_owned();
    // A request of our own (a call's BYE, CANCEL, ACK, INVITE to a phone): built from parsed
    // input, so it always parses, is one frame, and goes to a real port.
    if !p.starts_with(b"SIP/2.0 ") {
        assert_ne!(t.target.addr.port(), 0, "request to port 0:\n{}", show());
        assert_eq!(
            framing::check(p, usize::MAX),
            Ok(Frame::Message(p.len())),
            "a request we sent is not exactly one frame:\n{}",
            show()
        );
        match msg::parse(p.clone(), Framing::Stream) {
            Ok(Message::Request(_)) => return,
            other => panic!("a request we sent does not parse: {other:?}\n{}", show()),
        }
    }
    assert_eq!(t.target.transport, transport, "answer on another transport");
    if transport == Transport::Tcp {
        assert_eq!(t.target.conn, conn, "answer on another connection");
    }
    // A Via sent-by of port 0 once sent answers to port 0 (regressions/sip_datagram).
    assert_ne!(t.target.addr.port(), 0, "answer to port 0:\n{}", show());
    let line_end = p
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("no CRLF in a transmitted payload:\n{}", show()));
    let line = &p[..line_end];
    let rest = line
        .strip_prefix(b"SIP/2.0 ")
        .unwrap_or_else(|| panic!("endpoint sent a non-response:\n{}", show()));
    let code = rest
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
        .filter(|c| (100..=699).contains(c))
        .unwrap_or_else(|| panic!("bad status code in:\n{}", show()));
    assert_eq!(
        rest.get(3),
        Some(&b' '),
        "no SP after the status code:\n{}",
        show()
    );
    assert!(
        !rest[4..].iter().any(|&c| c == b'\r' || c == b'\n'),
        "CR/LF in the reason phrase:\n{}",
        show()
    );
    assert_eq!(
        framing::check(p, usize::MAX),
        Ok(Frame::Message(p.len())),
        "a transmitted payload is not exactly one frame:\n{}",
        show()
    );
    if strict {
        match msg::parse(p.clone(), Framing::Stream) {
            Ok(Message::Response(r)) => assert_eq!(r.code, code),
            other => panic!(
                "a response to a well-formed message does not parse again: {other:?}\n{}",
                show()
            ),
        }
    }
}

/// `flags`, four time-step bytes, then the datagram. Flags: bits 0–1 pick the source
/// (0 untrusted 127.0.0.1:5999, 1 trusted 127.0.0.2:5070, 2 untrusted [::1]:5999,
/// 3 127.0.0.1:0 which cannot be answered); bit 2 fails every store write (500 path);
/// bit 3 splits the payload into up to 8 datagrams on [`DELIMITER`]; bit 4 delivers each
/// datagram twice (a retransmission). A time step follows each datagram while steps last, the
/// rest after the last one; then the leak check ([`Driver::settle`]). Returns how many
/// messages the endpoint sent (for the replay tests' sanity check).
pub fn sip_datagram(data: &[u8]) -> usize {
    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let (steps, payload) = take(rest, 4);
    let remote = match flags & SRC_MASK {
        0 => addr("127.0.0.1:5999"),
        1 => addr("127.0.0.2:5070"),
        2 => addr("[::1]:5999"),
        _ => addr("127.0.0.1:0"),
    };
    let local = if remote.is_ipv4() {
        addr("127.0.0.1:5060")
    } else {
        addr("[::1]:5060")
    };
    let from = Received {
        transport: Transport::Udp,
        local,
        remote,
        conn: None,
    };
    let datagrams = if flags & MULTI != 0 {
        let mut d = split_on(payload, DELIMITER);
        d.truncate(MAX_DATAGRAMS);
        d
    } else {
        vec![payload]
    };
    let mut d = Driver::new(Transport::Udp, None, flags & PERSIST_FAILS == 0);
    let mut steps = steps.iter();
    for dg in datagrams {
        let dg = Bytes::copy_from_slice(dg);
        d.deliver(from, dg.clone());
        if flags & REPEAT != 0 {
            d.deliver(from, dg);
        }
        if let Some(&s) = steps.next() {
            d.advance(time_step(s));
        }
    }
    for &s in steps {
        d.advance(time_step(s));
    }
    d.settle();
    d.sent
}

/// `flags`, four chunk-length bytes (1…256 octets each, cycled), four time-step bytes (one
/// after each of the first four chunks), then the stream. Flags: bit 0 trusted source,
/// bit 1 IPv6, bit 2 store writes fail, bit 3 frame limit 1 KiB.
///
/// Mirrors the connection task of `engine/src/rt.rs`: append a chunk to the buffer, then
/// `framing::check` until `Incomplete`; a `Message(n)` is split off and handed to
/// `Endpoint::handle_message` as TCP (which parses it with `Framing::Stream`); `Ping`/`Skip`
/// are dropped; `TooLarge`/`Invalid` close the connection (no more input). Checked besides
/// [`check_transmit`]: the framer's lengths stay inside the buffer and the limit, and a frame
/// it cuts is never one the parser finds unterminated or shorter than its Content-Length
/// (the framer and the parser agree on where a message ends). Returns how many messages the
/// endpoint sent.
pub fn sip_stream(data: &[u8]) -> usize {
    let Some((&flags, rest)) = data.split_first() else {
        return 0;
    };
    let (chunks, rest) = take(rest, 4);
    let (steps, stream) = take(rest, 4);
    let v6 = flags & 0b10 != 0;
    let remote = match (flags & 1 != 0, v6) {
        (false, false) => addr("127.0.0.1:40000"),
        (true, false) => addr("127.0.0.2:40000"),
        (_, true) => addr("[::1]:40000"),
    };
    let local = if v6 {
        addr("[::1]:5060")
    } else {
        addr("127.0.0.1:5060")
    };
    let max = if flags & SMALL_MAX != 0 {
        1024
    } else {
        MAX_MESSAGE
    };
    let conn = Some(ConnId(7));
    let from = Received {
        transport: Transport::Tcp,
        local,
        remote,
        conn,
    };
    let mut d = Driver::new(Transport::Tcp, conn, flags & PERSIST_FAILS == 0);
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut i = 0;
    'conn: while pos < stream.len() {
        let len = if chunks.is_empty() {
            stream.len()
        } else {
            usize::from(chunks[i % chunks.len()]) + 1
        };
        let end = stream.len().min(pos + len);
        buf.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            match framing::check(&buf, max) {
                Ok(Frame::Message(n)) => {
                    assert!(
                        n > 0 && n <= buf.len() && n <= max,
                        "Message({n}) of {}",
                        buf.len()
                    );
                    let frame = buf.split_to(n).freeze();
                    check_frame(&frame);
                    d.deliver(from, frame);
                }
                Ok(Frame::Ping(n)) => {
                    assert!(
                        n >= 4 && n % 2 == 0 && n <= buf.len(),
                        "Ping({n}) of {}",
                        buf.len()
                    );
                    let _ = buf.split_to(n);
                }
                Ok(Frame::Skip(n)) => {
                    assert!(n > 0 && n < buf.len(), "Skip({n}) of {}", buf.len());
                    let _ = buf.split_to(n);
                }
                Err(FrameError::Incomplete) => break,
                Err(FrameError::TooLarge { .. } | FrameError::Invalid { .. }) => break 'conn,
            }
        }
        if let Some(&s) = steps.get(i) {
            d.advance(time_step(s));
        }
        i += 1;
    }
    d.settle();
    d.sent
}

fn check_frame(frame: &Bytes) {
    if let Err(e) = msg::parse(frame.clone(), Framing::Stream) {
        assert!(
            !matches!(
                e.kind,
                ErrorKind::Unterminated | ErrorKind::Truncated { .. }
            ),
            "framing::check and parse disagree on a frame ({}):\n{:?}",
            e.kind,
            String::from_utf8_lossy(frame)
        );
    }
}

/// The input as one message, parsed both as a datagram and as a stream frame; for each that
/// parses, [`roundtrip`], and every lazily-typed accessor is exercised (they must not panic).
pub fn parse_roundtrip(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(m) = msg::parse(buf.clone(), framing) {
            roundtrip(&m);
            accessors(&m);
        }
    }
}

/// parse → encode → parse again must give the same message: same kind, method and
/// Request-URI (or status code and reason), Call-ID, CSeq, body, and the same header fields
/// in the same order (Content-Length aside, which encode always rewrites from the body).
/// The encoding must be one whole frame, and encoding is a fixed point (encode ∘ parse ∘
/// encode = encode).
pub fn roundtrip(m1: &Message) {
    let enc1 = m1.encode();
    let show = || String::from_utf8_lossy(&enc1).into_owned();
    assert_eq!(
        framing::check(&enc1, usize::MAX),
        Ok(Frame::Message(enc1.len())),
        "an encoded message is not exactly one frame:\n{}",
        show()
    );
    let m2 = match msg::parse(enc1.clone(), Framing::Stream) {
        Ok(m) => m,
        Err(e) => panic!("an encoded message does not parse again ({e}):\n{}", show()),
    };
    match (m1, &m2) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(a.method, b.method, "method changed:\n{}", show());
            assert_eq!(a.uri, b.uri, "Request-URI changed:\n{}", show());
            assert_eq!(a.body, b.body, "body changed:\n{}", show());
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!(a.code, b.code, "status code changed:\n{}", show());
            assert_eq!(a.reason, b.reason, "reason changed:\n{}", show());
            assert_eq!(a.body, b.body, "body changed:\n{}", show());
        }
        _ => panic!("request/response changed kind:\n{}", show()),
    }
    let (h1, h2) = (m1.headers(), m2.headers());
    assert_eq!(h1.call_id(), h2.call_id(), "Call-ID changed:\n{}", show());
    assert_eq!(h1.cseq(), h2.cseq(), "CSeq changed:\n{}", show());
    let fields = |h: &msg::Headers| {
        h.0.iter()
            .filter(|f| f.name != HeaderName::ContentLength)
            .map(|f| (f.name.as_str().to_owned(), f.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(h1), fields(h2), "header fields changed:\n{}", show());
    assert_eq!(
        enc1,
        m2.encode(),
        "encode is not a fixed point:\n{}",
        show()
    );
}

/// The typed accessors the endpoint calls lazily; none may panic on any parsed message.
fn accessors(m: &Message) {
    let h = m.headers();
    let _ = h.top_via();
    for v in h.list(&HeaderName::Via) {
        let _ = msg::Via::parse(v).map(|via| {
            let _ = (via.branch(), via.received(), via.rport(), via.maddr());
            via.to_string()
        });
    }
    let _ = h.from().map(|f| f.to_string());
    let _ = h.to().map(|t| (t.tag().map(str::to_owned), t.uri.aor()));
    let _ = h.max_forwards();
    let _ = h.expires();
    if let Ok(Some(contacts)) = h.contacts() {
        for c in contacts {
            let _ = (c.uri.aor(), c.uri.user_decoded(), c.to_string());
        }
    }
    for name in [
        HeaderName::Require,
        HeaderName::Supported,
        HeaderName::Accept,
    ] {
        let _ = h.tokens(&name).count();
    }
    for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
        for raw in h.get_all(&name) {
            let _ = switchboard_engine::auth::Credentials::parse(&String::from_utf8_lossy(raw));
        }
    }
    if let Message::Request(r) = m {
        let _ = (r.uri.aor(), r.uri.user_decoded(), r.uri.to_string());
        let mut resp = msg::Response::for_request(r, 200);
        resp.ensure_to_tag("f00");
        let _ = resp.encode();
    }
}

/// Arbitrary text into the flow validator (`flow_yaml`). It must never panic: every input
/// either validates or gives errors, each naming a line within the text. A flow that validates
/// is then run by the interpreter for a few scripted events (keys, timers, HTTP answers), which
/// must not panic either, and every action's node must exist.
pub fn flow_yaml(data: &[u8]) {
    use switchboard_engine::ivr::interp::{CallInfo, Event as FlowEvent, Interpreter};
    use switchboard_engine::ivr::validate::{validate, Context};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = Context {
        prompts: ["beep", "welcome"].map(String::from).into(),
        queues: ["sales", "support"].map(String::from).into(),
        flows: ["main", "other"].map(String::from).into(),
        extensions: ["1001", "1002"].map(String::from).into(),
    };
    // Lines as YAML counts them: CR, LF and CRLF all break a line (YAML 1.2 §5.4), and the
    // end of the stream may be reported on the line after the last break.
    let lines =
        1 + text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    match validate("main.yaml", text, &ctx) {
        Err(errors) => {
            assert!(!errors.is_empty(), "rejected without an error");
            for e in &errors {
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "error line {} outside a {lines}-line file: {e}",
                    e.line
                );
            }
        }
        Ok(flow) => {
            let flow = std::sync::Arc::new(flow);
            let mut set = std::collections::HashMap::new();
            set.insert("main".to_string(), flow.clone());
            let flows = switchboard_engine::endpoint::FlowSet(set);
            // The interpreter's virtual time starts anywhere; a harness may read the clock once.
            #[allow(clippy::disallowed_methods)]
            let base = Instant::now();
            let mut interp = Interpreter::new(
                flow,
                CallInfo {
                    caller: "13800000000".into(),
                    called: "4000".into(),
                    vars: Default::default(),
                },
                base,
                UNIX as i64,
            );
            let script = [
                FlowEvent::Start,
                FlowEvent::PlayDone,
                FlowEvent::Digit('1'),
                FlowEvent::PlayDone,
                FlowEvent::Timer(1),
                FlowEvent::HttpResponse {
                    status: 200,
                    body: "{\"a\":1}".into(),
                },
                FlowEvent::Digit('#'),
                FlowEvent::CallerHangup,
            ];
            for (i, ev) in script.into_iter().enumerate() {
                let now = base + Duration::from_secs(i as u64 * 7);
                let _ = interp.handle(ev, now, &flows);
            }
            assert!(interp.end().is_some(), "a hung-up caller ends the flow");
        }
    }
}
