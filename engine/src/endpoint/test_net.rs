//! The harness the endpoint's scenario tests share: one Switchboard `Endpoint` on virtual
//! time, the wire between it and the phones around it, and the media workers played by a
//! script that records the commands and hands out ports. A scenario describes its Switchboard
//! with a `Setup` (accounts, registered phones, service numbers and their flows, queues and
//! agents, trunks), then plays the phones' side message by message.
use super::*;
use crate::acd::{AgentConfig, AgentStatus, AnswerMode};
use crate::ivr::model::{self, Flow, Node, NodeId, NodeKind};
use crate::registrar::Binding;
use crate::sip::msg::{parse, Framing, Message};
use std::sync::Arc;
use switchboard_media::prompt::{Prompt, PromptLibrary};
use switchboard_media::sdp::Direction;

pub(super) const UNIX: u64 = 1_800_000_000;
/// Account 1001's phone, the caller in most scenarios.
pub(super) const CALLER: &str = "10.0.0.1:5060";
pub(super) const PHONE_A: &str = "10.0.0.2:5062";
pub(super) const PHONE_B: &str = "10.0.0.3:5064";
pub(super) const PHONE_C: &str = "10.0.0.4:5066";
/// Switchboard's own SIP address.
pub(super) const LOCAL: &str = "10.0.0.100:5060";

#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

/// What a scenario's Switchboard is configured with, before `Net::with` starts it.
pub(super) struct Setup {
    accounts: Vec<String>,
    /// (account, address) of each phone registered before the scenario starts.
    registered: Vec<(String, String)>,
    prompts: PromptLibrary,
    flows: Vec<Flow>,
    calls: CallSettings,
}

impl Setup {
    /// Accounts 1001–1004 (password `x`), nothing registered, no service numbers; phones ring
    /// for 30 s.
    pub(super) fn new() -> Setup {
        Setup {
            accounts: ["1001", "1002", "1003", "1004"].map(String::from).to_vec(),
            registered: Vec::new(),
            prompts: PromptLibrary::new(),
            flows: Vec::new(),
            calls: CallSettings {
                media_address: "10.0.0.100".parse().unwrap(),
                ring_timeout: Duration::from_secs(30),
                ..CallSettings::default()
            },
        }
    }

    /// Only these accounts exist (bindings of any other are not restored).
    pub(super) fn accounts(mut self, users: &[&str]) -> Setup {
        self.accounts = users.iter().map(|u| u.to_string()).collect();
        self
    }

    /// `account` has a phone registered at each of `addrs`.
    pub(super) fn registered(mut self, account: &str, addrs: &[&str]) -> Setup {
        self.registered
            .extend(addrs.iter().map(|a| (account.to_owned(), a.to_string())));
        self
    }

    /// Dialling `number` reaches the test line.
    pub(super) fn test_line(mut self, number: &str) -> Setup {
        self.calls.test_line = Some(TestLineSettings {
            number: number.into(),
            prompt: None,
        });
        self
    }

    pub(super) fn prompt(mut self, prompt: Prompt) -> Setup {
        self.prompts.add(prompt);
        self
    }

    /// Calls to the service number `number` run `flow`.
    pub(super) fn flow(mut self, number: &str, flow: Flow) -> Setup {
        self.calls.numbers.push(NumberRoute {
            number: number.into(),
            trunk: None,
            flow: flow.name.clone(),
            enabled: true,
        });
        self.flows.push(flow);
        self
    }

    /// Skill groups, agents and the ACD's own settings.
    pub(super) fn queueing(mut self, queueing: QueueSettings) -> Setup {
        self.calls.queueing = queueing;
        self
    }

    /// Calls from `caller` are refused before routing.
    pub(super) fn blacklist_inbound(mut self, caller: &str) -> Setup {
        let yaml = format!("blacklist:\n  inbound: [\"{caller}\"]\n");
        let cfg = crate::config::Config::from_yaml_str(&yaml, "t.yaml").expect("config");
        self.calls.blacklist = cfg.blacklist;
        self
    }

    /// The trunks of a `trunks:` configuration section: where calls out go, and how.
    pub(super) fn trunks(mut self, yaml: &str) -> Setup {
        let cfg = crate::config::Config::from_yaml_str(yaml, "t.yaml").expect("config");
        self.calls.trunks = cfg
            .trunks
            .iter()
            .map(|t| TrunkRoute {
                name: t.name.clone(),
                address: t.address,
                sources: t.trusted_sources.clone(),
            })
            .collect();
        self.calls.trunk_plan = crate::trunk::Trunks::new(&cfg);
        self
    }
}

/// One Switchboard and everything it has said, on virtual time.
pub(super) struct Net {
    pub(super) ep: Endpoint,
    pub(super) now: Instant,
    next_port: u16,
    /// Media sessions in the order they were opened.
    pub(super) sessions: Vec<SessionId>,
    pub(super) commands: Vec<Command>,
    wire: Vec<(Target, Message)>,
    pub(super) http: Vec<(u64, u64, HttpRequest)>,
    pub(super) opened: Vec<crate::cdr::CdrOpen>,
    pub(super) closed: Vec<(String, crate::cdr::CdrClose)>,
    /// Sub-record writes, in order (a leg appears when it starts and again when it ends).
    pub(super) legs: Vec<crate::cdr::CdrLeg>,
    pub(super) call_events: Vec<crate::events::CallEvent>,
    pub(super) acd_events: Vec<crate::events::AcdEvent>,
}

impl Net {
    /// Accounts 1001–1003, 1002 with a phone at each of `contacts`, and the test line on 9999.
    pub(super) fn new(contacts: &[&str]) -> Net {
        Net::with(
            Setup::new()
                .accounts(&["1001", "1002", "1003"])
                .registered("1002", contacts)
                .test_line("9999"),
        )
    }

    pub(super) fn with(setup: Setup) -> Net {
        let Setup {
            accounts,
            registered,
            prompts,
            flows,
            mut calls,
        } = setup;
        calls.prompts = Arc::new(prompts);
        let config = EndpointConfig {
            user_agent: None,
            timers: TimerConfig::default(),
            registrar: crate::registrar::RegistrarConfig::default(),
            digest: DigestConfig::default(),
            lockout: LockoutConfig::default(),
            trusted: vec!["10.0.0.0/24".parse().unwrap()],
            accounts: accounts
                .iter()
                .map(|u| {
                    (
                        u.clone(),
                        AccountSecret::from_password(u, "switchboard", "x"),
                    )
                })
                .collect(),
            calls,
        };
        let mut ep = Endpoint::new(config, ServerSecret::from_bytes([3; 32]), 9);
        if !flows.is_empty() {
            ep.publish_flows(flows.into_iter().map(Arc::new));
        }
        let bindings = registered
            .iter()
            .enumerate()
            .map(|(i, (aor, addr))| Binding {
                aor: aor.clone(),
                contact: format!("<sip:{aor}@{addr}>"),
                expires_at: UNIX + 3600,
                q: 1000,
                call_id: format!("reg-{i}"),
                cseq: 1,
                transport: Transport::Udp,
                source: addr.parse().unwrap(),
                local: LOCAL.parse().unwrap(),
                conn: None,
                user_agent: None,
                registered_at: UNIX,
            })
            .collect();
        ep.restore_bindings(bindings, UNIX);
        Net {
            ep,
            now: base(),
            next_port: 20000,
            sessions: Vec::new(),
            commands: Vec::new(),
            wire: Vec::new(),
            http: Vec::new(),
            opened: Vec::new(),
            closed: Vec::new(),
            legs: Vec::new(),
            call_events: Vec::new(),
            acd_events: Vec::new(),
        }
    }

    /// Drains the endpoint: datagrams onto the wire, media workers' answers straight back.
    pub(super) fn pump(&mut self) {
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                let m = parse(t.payload.clone(), Framing::Datagram).expect("we send valid SIP");
                self.wire.push((t.target, m));
            }
            let Some(ev) = self.ep.poll_event() else {
                return;
            };
            match ev {
                Event::OpenMedia { id, .. } => {
                    let port = self.next_port;
                    self.next_port += 2;
                    self.sessions.push(id);
                    let addr = SocketAddr::new("10.0.0.100".parse().unwrap(), port);
                    self.ep.handle_media_opened(self.now, id, Ok(addr));
                }
                Event::Media(c) => self.commands.push(c),
                Event::Persist { token, .. } => self.ep.handle_persisted(self.now, token, true),
                Event::Http {
                    call,
                    token,
                    request,
                } => self.http.push((call, token, request)),
                Event::CdrOpen(open) => self.opened.push(open),
                Event::CdrClose { call_id, close } => self.closed.push((call_id, close)),
                Event::CdrLeg(leg) => self.legs.push(leg),
                Event::CallEvent(e) => self.call_events.push(e),
                Event::Acd(e) => self.acd_events.push(e),
            }
        }
    }

    pub(super) fn deliver(&mut self, from: &str, text: &str) {
        let received = Received {
            transport: Transport::Udp,
            local: LOCAL.parse().unwrap(),
            remote: from.parse().unwrap(),
            conn: None,
        };
        self.ep
            .handle_message(self.now, UNIX, received, Bytes::from(text.to_owned()));
        self.pump();
    }

    pub(super) fn deliver_msg(&mut self, from: &str, m: &Message) {
        let text = String::from_utf8(m.encode().to_vec()).unwrap();
        self.deliver(from, &text);
    }

    /// Everything sent to `addr` since the last call, in order.
    pub(super) fn take(&mut self, addr: &str) -> Vec<Message> {
        let addr: SocketAddr = addr.parse().unwrap();
        let (mine, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|(t, _)| t.addr == addr);
        self.wire = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// Moves the clock on by `d`, firing every timer due on the way, and ends with an input at
    /// the new time (the first input is also when agents who log in at start do).
    pub(super) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.ep.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.ep.handle_timeout(self.now, UNIX);
            self.pump();
        }
        self.now = end;
        self.ep.handle_timeout(self.now, UNIX);
        self.pump();
    }

    pub(super) fn status(&self, agent: &str) -> AgentStatus {
        self.ep.acd().agent(&agent.into()).unwrap().state().status()
    }

    /// Whether the media of sessions `a` and `b` were ever bridged.
    pub(super) fn bridged(&self, a: SessionId, b: SessionId) -> bool {
        self.commands.iter().any(|c| {
            matches!(c, Command::Bridge { a: x, b: y } if (*x, *y) == (a, b) || (*x, *y) == (b, a))
        })
    }

    /// The phone at `addr` answers every request it was sent with 200 (NOTIFY, BYE,
    /// re-INVITE with `sdp` when given); returns what it got.
    pub(super) fn phone_answers_all(
        &mut self,
        addr: &str,
        tag: &str,
        body: Option<&str>,
    ) -> Vec<Message> {
        let got = self.take(addr);
        for r in requests_any(&got) {
            if r.method == Method::Ack {
                continue;
            }
            let b = (r.method == Method::Invite).then_some(body).flatten();
            self.deliver_msg(addr, &phone_response(&r, 200, tag, addr, b));
        }
        got
    }
}

pub(super) fn sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na={dir}\r\n"
    )
}

pub(super) fn sdp_direction(body: &[u8]) -> Direction {
    let s = switchboard_media::sdp::SessionDescription::parse_bytes(body).unwrap();
    s.media_direction(&s.media[0])
}

pub(super) fn requests_any(ms: &[Message]) -> Vec<Request> {
    ms.iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn requests(ms: &[Message], method: Method) -> Vec<Request> {
    requests_any(ms)
        .into_iter()
        .filter(|r| r.method == method)
        .collect()
}

pub(super) fn responses(ms: &[Message]) -> Vec<Response> {
    ms.iter()
        .filter_map(|m| match m {
            Message::Response(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn codes(ms: &[Message]) -> Vec<u16> {
    responses(ms).iter().map(|r| r.code).collect()
}

pub(super) fn to_tag(r: &Response) -> String {
    r.headers.to().unwrap().tag().unwrap().to_owned()
}

/// The caller's (1001's) INVITE to `to`.
pub(super) fn caller_invite(to: &str, call_id: &str, body: &str) -> String {
    format!(
        "INVITE sip:{to}@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-1\r\nMax-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=caller\r\nTo: <sip:{to}@switchboard>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{CALLER}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request from the caller inside its dialog with 1002 (To carries our tag).
pub(super) fn caller_in_dialog(
    method: &str,
    cseq: u32,
    to_tag: &str,
    call_id: &str,
    body: &str,
) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else if method == "INFO" {
        "Content-Type: application/dtmf-relay\r\n".into()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-{method}-{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=caller\r\nTo: <sip:1002@switchboard>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{CALLER}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The caller's ACK of our 2xx in its dialog with 1002.
pub(super) fn caller_ack(to_tag: &str, call_id: &str) -> String {
    format!(
        "ACK sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-ack\r\nMax-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=caller\r\nTo: <sip:1002@switchboard>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A phone's answer to a request it received; a 1xx/2xx to an INVITE carries the phone's
/// Contact (`contact` is its address).
pub(super) fn phone_response(
    req: &Request,
    code: u16,
    tag: &str,
    contact: &str,
    body: Option<&str>,
) -> Message {
    let mut r = Response::for_request(req, code);
    if code > 100 {
        r.ensure_to_tag(tag);
    }
    if code > 100 && code < 300 && req.method == Method::Invite {
        r.headers
            .push(HeaderName::Contact, format!("<sip:phone@{contact}>"));
    }
    if let Some(b) = body {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(b.to_owned());
    }
    Message::Response(r)
}

/// A flow node at line 1 of its file.
pub(super) fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: name.into(),
        line: 1,
        kind,
    }
}

/// `main`: queue `sales` (exit key 9, 60 s max wait, music `hold`) → every outcome goes to
/// `bye`, except the exit key, which plays a notice first.
pub(super) fn queue_flow() -> Flow {
    Flow {
        name: "main".into(),
        version: "q1".into(),
        start: NodeId(0),
        nodes: vec![
            node(
                "q",
                NodeKind::Queue {
                    queue: "sales".into(),
                    priority: None,
                    max_wait: Duration::from_secs(60),
                    announce_every: None,
                    music: Some("hold".into()),
                    exit_key: Some('9'),
                    after_agent: None,
                    timeout: NodeId(1),
                    exit: NodeId(2),
                    no_agents: NodeId(1),
                    full: NodeId(1),
                    agent_unavailable: None,
                },
            ),
            node(
                "bye",
                NodeKind::Hangup {
                    cause: model::HangupCause::Normal,
                },
            ),
            node(
                "left",
                NodeKind::Play {
                    prompts: vec!["hold".into()],
                    barge_in: false,
                    next: NodeId(1),
                },
            ),
        ],
        calendars: Default::default(),
        file: "main.yaml".into(),
    }
}

/// Agent `id` of queue `sales` (at `order`), answering on `account`'s desk phone: rung for
/// 10 s, 5 s of wrap-up, PIN `7{order}7{order}`.
pub(super) fn agent(id: &str, account: &str, order: u32, login: bool) -> AgentSettings {
    let mut config = AgentConfig::new(id).in_queue_with("sales", order, 1);
    config.answer_mode = AnswerMode::DeskPhone {
        accounts: vec![account.into()],
    };
    config.max_ring = Duration::from_secs(10);
    config.wrap_up = Duration::from_secs(5);
    AgentSettings {
        config,
        pin: Some(format!("7{order}7{order}")),
        mobile_trunk: None,
        login_at_start: login,
        schedule: None,
        caller_id: None,
    }
}

/// The caller dials the service number 4000 and ACKs our 200 (a flow answers at once): the
/// flow starts. Our To tag, for the caller's later requests.
pub(super) fn enter_service(net: &mut Net, call_id: &str) -> String {
    net.deliver(
        CALLER,
        &caller_invite("4000", call_id, &sdp(4000, "sendrecv")),
    );
    let ok: Vec<Response> = responses(&net.take(CALLER))
        .into_iter()
        .filter(|r| r.code >= 200)
        .collect();
    assert_eq!(ok[0].code, 200, "a service number answers at once");
    let tag = to_tag(&ok[0]);
    net.deliver(CALLER, &service_dialog(&caller_ack(&tag, call_id)));
    tag
}

/// The caller hangs up its call to 4000.
pub(super) fn service_bye(net: &mut Net, tag: &str, call_id: &str) {
    net.deliver(
        CALLER,
        &service_dialog(&caller_in_dialog("BYE", 2, tag, call_id, "")),
    );
}

/// A caller's in-dialog request, addressed to the service number 4000 instead of 1002.
fn service_dialog(request: &str) -> String {
    request.replace("sip:1002@switchboard>;tag", "sip:4000@switchboard>;tag")
}
