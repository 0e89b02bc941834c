//! Transaction tests on virtual time: a [`Pair`] harness (after quinn-proto's
//! `tests/util.rs`) jumps straight to `poll_timeout()` and drains every output, so Timer B's
//! 32 seconds take microseconds and every instant is asserted exactly.
use super::*;
use crate::sip::msg::{self, Framing, HeaderName, Message, Method, Request, Response};
use crate::sip::transport::{ConnId, Target, Transport};
use std::time::{Duration, Instant};

/// The one clock read in these tests: every instant is built from it.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn target(transport: Transport) -> Target {
    Target {
        transport,
        addr: "192.0.2.10:5060".parse().unwrap(),
        conn: (transport == Transport::Tcp).then_some(ConnId(7)),
        local: "192.0.2.1:5060".parse().unwrap(),
    }
}

fn udp() -> Target {
    target(Transport::Udp)
}

fn tcp() -> Target {
    target(Transport::Tcp)
}

fn parse(bytes: &[u8]) -> Message {
    msg::parse(Bytes::copy_from_slice(bytes), Framing::Datagram)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn parse_request(bytes: &[u8]) -> Request {
    match parse(bytes) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

fn parse_response(bytes: &[u8]) -> Response {
    match parse(bytes) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

fn vector(name: &str) -> Request {
    let path = format!(
        "{}/../tests/vectors/sip-torture/valid/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_request(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// A request as a UA at 192.0.2.10 sends it, with two Route headers (for the ACK test).
fn req(method: &str, branch: &str, call_id: &str, seq: u32) -> Request {
    parse_request(
        format!(
            "{method} sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
             Route: <sip:p1.example.com;lr>\r\n\
             Route: <sip:p2.example.com;lr>\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// A response to `request` as the far end (or our TU) builds it, with a To tag on anything
/// but 100.
fn answer(request: &Request, code: u16, to_tag: &str) -> Response {
    let mut r = Response::for_request(request, code);
    if code != 100 {
        r.ensure_to_tag(to_tag);
    }
    r
}

/// The ACK a UAC sends for `response` to `invite`: with the INVITE's branch for a non-2xx
/// (§17.1.1.3), or a new one for a 2xx (§13.2.2.4).
fn ack_for(invite: &Request, response: &Response, branch: Option<&str>) -> Request {
    let mut ack = invite.clone();
    ack.method = Method::Ack;
    let seq = invite.headers.cseq().unwrap().seq;
    ack.headers.set(HeaderName::CSeq, format!("{seq} ACK"));
    ack.headers.set(
        HeaderName::To,
        response.headers.get(&HeaderName::To).unwrap().clone(),
    );
    if let Some(b) = branch {
        let mut via = ack.headers.top_via().unwrap();
        via.params.set("branch", Some(b.to_owned()));
        ack.headers.set_top_via(&via);
    }
    ack
}

fn with_method(request: &Request, method: Method) -> Request {
    let mut r = request.clone();
    let seq = r.headers.cseq().unwrap().seq;
    r.headers.set(HeaderName::CSeq, format!("{seq} {method}"));
    r.method = method;
    r.body = Bytes::new();
    r
}

/// The transaction layer on a virtual clock, with everything it output and when.
struct Pair {
    layer: TransactionLayer,
    base: Instant,
    now: Instant,
    sent: Vec<(Duration, Transmit)>,
    events: Vec<(Duration, TxEvent)>,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(TimerConfig::default())
    }

    fn with(cfg: TimerConfig) -> Pair {
        let base = base_instant();
        Pair {
            layer: TransactionLayer::new(cfg),
            base,
            now: base,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn t(&self) -> Duration {
        self.now - self.base
    }

    fn collect(&mut self) {
        let t = self.t();
        while let Some(tx) = self.layer.poll_transmit() {
            self.sent.push((t, tx));
        }
        while let Some(ev) = self.layer.poll_event() {
            self.events.push((t, ev));
        }
    }

    /// Jump to the next wake-up and fire it; false when nothing is armed.
    fn step(&mut self) -> bool {
        let Some(at) = self.layer.poll_timeout() else {
            return false;
        };
        assert!(at >= self.now, "poll_timeout went back in time");
        self.now = at;
        self.layer.handle_timeout(at);
        self.collect();
        true
    }

    /// Run until no timer is armed.
    fn drive(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the layer never went idle");
    }

    /// Fire every timer due up to `t` (from the start), then stand at `t`.
    fn advance_to(&mut self, t: Duration) {
        let until = self.base + t;
        assert!(until >= self.now);
        while self.layer.poll_timeout().is_some_and(|at| at <= until) {
            self.step();
        }
        self.now = until;
    }

    fn request(&mut self, request: Request, reply_to: Target) -> Incoming {
        let incoming = self.layer.handle_request(self.now, request, reply_to);
        self.collect();
        incoming
    }

    /// A request that must start a server transaction.
    fn new_server(&mut self, request: Request, reply_to: Target) -> ServerTxId {
        match self.request(request, reply_to) {
            Incoming::Request { id, .. } => id,
            other => panic!("expected a new transaction, got {other:?}"),
        }
    }

    fn respond(&mut self, id: ServerTxId, response: Response) -> bool {
        let ok = self.layer.respond(self.now, id, response);
        self.collect();
        ok
    }

    fn send(&mut self, request: Request, target: Target) -> ClientTxId {
        let id = self.layer.send_request(self.now, request, target);
        self.collect();
        id
    }

    fn response(&mut self, response: Response) -> bool {
        let matched = self.layer.handle_response(self.now, response);
        self.collect();
        matched
    }

    fn sent_times(&self) -> Vec<Duration> {
        self.sent.iter().map(|(t, _)| *t).collect()
    }

    fn take_sent(&mut self) -> Vec<(Duration, Transmit)> {
        std::mem::take(&mut self.sent)
    }

    fn take_events(&mut self) -> Vec<(Duration, TxEvent)> {
        std::mem::take(&mut self.events)
    }
}

fn times(list: &[u64]) -> Vec<Duration> {
    list.iter().copied().map(ms).collect()
}

fn status(tx: &Transmit) -> u16 {
    parse_response(&tx.payload).code
}

// ---------------------------------------------------------------------------------------------
// Client transactions
// ---------------------------------------------------------------------------------------------

#[test]
fn invite_client_over_udp_retransmits_on_timer_a_and_times_out_on_timer_b() {
    let mut p = Pair::new();
    let id = p.send(req("INVITE", "z9hG4bKinv1", "c1", 1), udp());
    p.drive();
    assert_eq!(
        p.sent_times(),
        times(&[0, 500, 1_500, 3_500, 7_500, 15_500, 31_500])
    );
    let first = &p.sent[0].1;
    assert!(
        p.sent.iter().all(|(_, tx)| tx == first),
        "retransmissions are the same bytes"
    );
    assert_eq!(first.target, udp());
    assert_eq!(
        p.events,
        vec![
            (ms(32_000), TxEvent::ClientTimeout { id }),
            (ms(32_000), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
    assert!(p.layer.is_empty());
}

#[test]
fn non_invite_client_over_udp_backs_off_to_t2_until_timer_f() {
    let mut p = Pair::new();
    let id = p.send(req("OPTIONS", "z9hG4bKopt1", "c1", 1), udp());
    p.drive();
    assert_eq!(
        p.sent_times(),
        times(&[0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert_eq!(
        p.events,
        vec![
            (ms(32_000), TxEvent::ClientTimeout { id }),
            (ms(32_000), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
    assert!(p.layer.is_empty());
}

#[test]
fn non_invite_client_after_a_provisional_retransmits_every_t2_then_completes_on_timer_k() {
    let mut p = Pair::new();
    let request = req("REGISTER", "z9hG4bKreg1", "c1", 1);
    let id = p.send(request.clone(), udp());
    p.advance_to(ms(1_000));
    assert!(p.response(answer(&request, 100, "")));
    // Timer E, armed in Trying for 1.5 s, still fires; from then on every T2 (RFC 3261 §17.1.2.2).
    p.advance_to(ms(20_000));
    assert_eq!(
        p.sent_times(),
        times(&[0, 500, 1_500, 5_500, 9_500, 13_500, 17_500])
    );
    let ok = answer(&request, 200, "r1");
    assert!(p.response(ok.clone()));
    p.advance_to(ms(21_000));
    assert!(
        p.response(ok.clone()),
        "a retransmitted final still matches"
    );
    p.drive();
    assert_eq!(
        p.sent.len(),
        7,
        "no retransmission after the final response"
    );
    let events = p.take_events();
    assert_eq!(
        events,
        vec![
            (
                ms(1_000),
                TxEvent::Response {
                    id,
                    response: answer(&request, 100, "")
                }
            ),
            (ms(20_000), TxEvent::Response { id, response: ok }),
            // Timer K = T4 after the final response.
            (ms(25_000), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
}

#[test]
fn over_tcp_nothing_is_retransmitted_and_d_and_k_are_zero() {
    // Timer B still fires.
    let mut p = Pair::new();
    let inv = p.send(req("INVITE", "z9hG4bKt1", "c1", 1), tcp());
    p.drive();
    assert_eq!(p.sent_times(), times(&[0]));
    assert_eq!(p.sent[0].1.target.conn, Some(ConnId(7)));
    assert_eq!(
        p.events[0],
        (ms(32_000), TxEvent::ClientTimeout { id: inv })
    );

    // Timer F still fires.
    let mut p = Pair::new();
    let opt = p.send(req("OPTIONS", "z9hG4bKt2", "c2", 1), tcp());
    p.drive();
    assert_eq!(p.sent_times(), times(&[0]));
    assert_eq!(
        p.events[0],
        (ms(32_000), TxEvent::ClientTimeout { id: opt })
    );

    // Timer K = 0: the transaction ends with its final response.
    let mut p = Pair::new();
    let request = req("OPTIONS", "z9hG4bKt3", "c3", 1);
    let id = p.send(request.clone(), tcp());
    p.advance_to(ms(1_000));
    p.response(answer(&request, 200, "x"));
    assert!(p.layer.is_empty());
    assert_eq!(
        p.events.last(),
        Some(&(ms(1_000), TxEvent::Terminated(TxKey::Client(id))))
    );
    assert_eq!(p.layer.poll_timeout(), None);

    // Timer D = 0: the INVITE ends with the ACK for its non-2xx final response.
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKt4", "c4", 1);
    let id = p.send(invite.clone(), tcp());
    p.advance_to(ms(2_000));
    p.response(answer(&invite, 486, "x"));
    assert_eq!(p.sent_times(), times(&[0, 2_000]));
    assert_eq!(parse_request(&p.sent[1].1.payload).method, Method::Ack);
    assert!(p.layer.is_empty());
    assert_eq!(
        p.events.last(),
        Some(&(ms(2_000), TxEvent::Terminated(TxKey::Client(id))))
    );
}

#[test]
fn invite_client_acks_a_non_2xx_final_itself_and_re_acks_its_retransmissions() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKack1", "call-ack@example.com", 7);
    let id = p.send(invite.clone(), udp());
    p.advance_to(ms(200));
    let ringing = answer(&invite, 180, "far1");
    p.response(ringing.clone());
    p.advance_to(ms(1_000));
    let busy = answer(&invite, 486, "far1");
    p.response(busy.clone());
    p.advance_to(ms(2_000));
    p.response(busy.clone());
    // No INVITE retransmission after the 180: A stopped.
    assert_eq!(p.sent_times(), times(&[0, 1_000, 2_000]));
    let ack_tx = &p.sent[1].1;
    assert_eq!(ack_tx, &p.sent[2].1, "the same ACK is re-sent");
    assert_eq!(ack_tx.target, udp());
    let ack = parse_request(&ack_tx.payload);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    let h = &ack.headers;
    assert_eq!(h.get_all(&HeaderName::Via).count(), 1);
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKack1"));
    assert_eq!(h.call_id().unwrap(), "call-ack@example.com");
    assert_eq!(h.from().unwrap(), invite.headers.from().unwrap());
    assert_eq!(h.to().unwrap().tag(), Some("far1"));
    assert_eq!(h.to().unwrap().uri, invite.headers.to().unwrap().uri);
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (7, Method::Ack));
    let routes: Vec<_> = h.get_all(&HeaderName::Route).collect();
    let invite_routes: Vec<_> = invite.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, invite_routes);
    assert_eq!(h.max_forwards().unwrap(), Some(70));

    p.drive();
    assert_eq!(
        p.events,
        vec![
            (
                ms(200),
                TxEvent::Response {
                    id,
                    response: ringing
                }
            ),
            (ms(1_000), TxEvent::Response { id, response: busy }),
            // Timer D = 32 s after the final response; its retransmission is not passed up.
            (ms(33_000), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
}

#[test]
fn invite_client_in_accepted_passes_every_2xx_up_until_timer_m() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKacc1", "c1", 1);
    let id = p.send(invite.clone(), udp());
    p.advance_to(ms(1_000));
    let ok = answer(&invite, 200, "fork1");
    p.response(ok.clone());
    p.advance_to(ms(2_000));
    p.response(ok.clone());
    p.advance_to(ms(3_000));
    let other_fork = answer(&invite, 200, "fork2");
    p.response(other_fork.clone());
    p.advance_to(ms(4_000));
    assert!(
        p.response(answer(&invite, 486, "fork3")),
        "matched, but dropped"
    );
    p.drive();
    assert_eq!(
        p.sent_times(),
        times(&[0, 500]),
        "the layer never ACKs a 2xx"
    );
    assert_eq!(
        p.events,
        vec![
            (
                ms(1_000),
                TxEvent::Response {
                    id,
                    response: ok.clone()
                }
            ),
            (ms(2_000), TxEvent::Response { id, response: ok }),
            (
                ms(3_000),
                TxEvent::Response {
                    id,
                    response: other_fork
                }
            ),
            // Timer M = 64·T1 after the first 2xx (RFC 6026 §7.2).
            (ms(33_000), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
}

#[test]
fn a_cancel_is_a_client_transaction_of_its_own_on_the_invites_branch() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKcc1", "c1", 1);
    let inv = p.send(invite.clone(), udp());
    let cancel_req = with_method(&invite, Method::Cancel);
    let cancel = p.send(cancel_req.clone(), udp());
    assert_ne!(inv, cancel);
    assert_eq!(p.layer.len(), 2);
    p.response(answer(&cancel_req, 200, "t"));
    p.response(answer(&invite, 487, "t"));
    let ids: Vec<(ClientTxId, u16)> = p
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            TxEvent::Response { id, response } => Some((*id, response.code)),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![(cancel, 200), (inv, 487)]);
}

#[test]
fn an_invite_cancelled_but_never_answered_is_abandoned_64_t1_after_the_cancel() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKab1", "c1", 1);
    let inv = p.send(invite.clone(), udp());
    p.advance_to(ms(1_000));
    p.response(answer(&invite, 180, "t"));
    p.advance_to(ms(5_000));
    let cancel_req = with_method(&invite, Method::Cancel);
    let cancel = p.send(cancel_req.clone(), udp());
    p.advance_to(ms(5_100));
    p.response(answer(&cancel_req, 200, "t"));
    p.drive();
    let ends: Vec<_> = p
        .events
        .iter()
        .filter(|(_, e)| !matches!(e, TxEvent::Response { .. }))
        .cloned()
        .collect();
    assert_eq!(
        ends,
        vec![
            (ms(10_100), TxEvent::Terminated(TxKey::Client(cancel))),
            (ms(37_000), TxEvent::ClientTimeout { id: inv }),
            (ms(37_000), TxEvent::Terminated(TxKey::Client(inv))),
        ]
    );
}

#[test]
fn responses_that_match_nothing_are_reported_unmatched() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKm1", "c1", 1);
    p.send(invite.clone(), udp());
    // Same branch, other method; other branch; no Via; no CSeq.
    assert!(!p.response(answer(&with_method(&invite, Method::Bye), 200, "t")));
    assert!(!p.response(answer(&req("INVITE", "z9hG4bKm2", "c1", 1), 200, "t")));
    let mut no_via = answer(&invite, 200, "t");
    no_via.headers.remove_all(&HeaderName::Via);
    assert!(!p.response(no_via));
    let mut no_cseq = answer(&invite, 200, "t");
    no_cseq.headers.remove_all(&HeaderName::CSeq);
    assert!(!p.response(no_cseq));
    assert!(p.events.is_empty());
}

#[test]
fn send_request_supplies_a_branch_when_the_request_lacks_one() {
    let mut p = Pair::new();
    // A top Via without a branch gets one.
    let mut request = req("OPTIONS", "x", "c1", 1);
    let mut via = request.headers.top_via().unwrap();
    via.params.0.clear();
    request.headers.set_top_via(&via);
    p.send(request, udp());
    let sent = parse_request(&p.sent[0].1.payload);
    let branch = sent.headers.top_via().unwrap().branch().unwrap().to_owned();
    assert!(branch.starts_with("z9hG4bK") && branch.len() > 7);
    assert!(p.response(answer(&sent, 200, "t")));

    // No Via at all: one is added for the local address.
    let mut request = req("OPTIONS", "x", "c2", 1);
    request.headers.remove_all(&HeaderName::Via);
    p.send(request, tcp());
    let sent = parse_request(&p.sent[1].1.payload);
    let via = sent.headers.top_via().unwrap();
    assert_eq!(&*via.transport, "TCP");
    assert_eq!(
        via.to_string().split(';').next(),
        Some("SIP/2.0/TCP 192.0.2.1:5060")
    );
    assert!(p.response(answer(&sent, 200, "t")));
}

#[test]
fn new_branches_carry_the_cookie_and_never_repeat() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let branches: std::collections::HashSet<String> =
        (0..1_000).map(|_| layer.new_branch()).collect();
    assert_eq!(branches.len(), 1_000);
    assert!(branches
        .iter()
        .all(|b| b.starts_with("z9hG4bK") && b.bytes().all(msg::is_token_char)));
}

#[test]
fn a_transport_error_fails_a_client_transaction_at_once() {
    let mut p = Pair::new();
    let id = p.send(req("INVITE", "z9hG4bKte", "c1", 1), tcp());
    assert!(p.layer.handle_transport_error(TxKey::Client(id)));
    p.collect();
    assert_eq!(
        p.take_events(),
        vec![
            (ms(0), TxEvent::ClientTimeout { id }),
            (ms(0), TxEvent::Terminated(TxKey::Client(id))),
        ]
    );
    assert!(!p.layer.handle_transport_error(TxKey::Client(id)));
    assert_eq!(p.layer.poll_timeout(), None);
}

#[test]
fn an_ack_sent_through_send_request_goes_out_once_without_a_transaction() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKa2", "c1", 1);
    let ack = ack_for(&invite, &answer(&invite, 200, "t"), Some("z9hG4bKa3"));
    let id = p.send(ack, udp());
    p.drive();
    assert_eq!(p.sent_times(), times(&[0]));
    assert_eq!(
        p.events,
        vec![(ms(0), TxEvent::Terminated(TxKey::Client(id)))]
    );
    assert!(p.layer.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Server transactions
// ---------------------------------------------------------------------------------------------

#[test]
fn non_invite_server_re_sends_its_last_response_to_retransmissions_until_timer_j() {
    let mut p = Pair::new();
    let register = req("REGISTER", "z9hG4bKsr1", "c1", 1);
    let id = p.new_server(register.clone(), udp());
    assert_eq!(p.layer.len(), 1);

    // Trying: nothing to re-send yet.
    p.advance_to(ms(100));
    assert_eq!(p.request(register.clone(), udp()), Incoming::Absorbed);
    assert!(p.sent.is_empty());

    // Proceeding: the provisional is re-sent.
    p.advance_to(ms(200));
    assert!(p.respond(id, answer(&register, 100, "")));
    p.advance_to(ms(300));
    assert_eq!(p.request(register.clone(), udp()), Incoming::Absorbed);

    // Completed: the final is re-sent, byte for byte.
    p.advance_to(ms(1_000));
    assert!(p.respond(id, answer(&register, 200, "s1")));
    p.advance_to(ms(2_000));
    assert_eq!(p.request(register.clone(), udp()), Incoming::Absorbed);
    assert!(
        !p.respond(id, answer(&register, 500, "s1")),
        "one final response only"
    );

    let sent = p.take_sent();
    let codes: Vec<(Duration, u16)> = sent.iter().map(|(t, tx)| (*t, status(tx))).collect();
    assert_eq!(
        codes,
        vec![
            (ms(200), 100),
            (ms(300), 100),
            (ms(1_000), 200),
            (ms(2_000), 200)
        ]
    );
    assert_eq!(sent[2].1, sent[3].1);
    assert!(sent.iter().all(|(_, tx)| tx.target == udp()));

    p.drive();
    assert_eq!(
        p.take_events(),
        vec![(ms(33_000), TxEvent::Terminated(TxKey::Server(id)))]
    );
    assert_eq!(p.layer.len(), 0);
    assert!(
        !p.respond(id, answer(&register, 200, "s1")),
        "a dead id is ignored"
    );
    // After Timer J the same request is a new transaction.
    assert!(matches!(
        p.request(register, udp()),
        Incoming::Request { .. }
    ));
}

#[test]
fn non_invite_server_over_tcp_ends_with_its_final_response() {
    let mut p = Pair::new();
    let register = req("REGISTER", "z9hG4bKst1", "c1", 1);
    let id = p.new_server(register.clone(), tcp());
    assert!(p.respond(id, answer(&register, 200, "s1")));
    assert_eq!(p.sent[0].1.target, tcp());
    assert!(
        p.layer.is_empty(),
        "Timer J is zero on a reliable transport"
    );
    assert_eq!(
        p.events,
        vec![(ms(0), TxEvent::Terminated(TxKey::Server(id)))]
    );
    assert_eq!(p.layer.poll_timeout(), None);
}

#[test]
fn invite_server_retransmits_a_non_2xx_final_on_timer_g_until_the_ack_then_timer_i() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKsi1", "c1", 1);
    let id = p.new_server(invite.clone(), udp());
    p.advance_to(ms(100));
    assert!(p.respond(id, answer(&invite, 180, "s1")));
    p.advance_to(ms(1_000));
    let busy = answer(&invite, 486, "s1");
    assert!(p.respond(id, busy.clone()));
    assert!(!p.respond(id, answer(&invite, 180, "s1")));
    p.advance_to(ms(10_000));
    assert_eq!(p.request(invite.clone(), udp()), Incoming::Absorbed);
    p.advance_to(ms(20_000));
    assert_eq!(
        p.request(ack_for(&invite, &busy, None), udp()),
        Incoming::Absorbed
    );
    p.advance_to(ms(21_000));
    assert_eq!(
        p.request(ack_for(&invite, &busy, None), udp()),
        Incoming::Absorbed,
        "an ACK retransmission is absorbed in Confirmed"
    );
    p.drive();
    let codes: Vec<(Duration, u16)> = p.sent.iter().map(|(t, tx)| (*t, status(tx))).collect();
    // G: T1, 2T1, 4T1, then capped at T2; the INVITE retransmission at 10 s is answered too.
    assert_eq!(
        codes,
        vec![
            (ms(100), 180),
            (ms(1_000), 486),
            (ms(1_500), 486),
            (ms(2_500), 486),
            (ms(4_500), 486),
            (ms(8_500), 486),
            (ms(10_000), 486),
            (ms(12_500), 486),
            (ms(16_500), 486),
        ]
    );
    // Timer I = T4 after the ACK; no AckTimeout.
    assert_eq!(
        p.events,
        vec![(ms(25_000), TxEvent::Terminated(TxKey::Server(id)))]
    );
}

#[test]
fn invite_server_without_an_ack_gives_up_on_timer_h() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKsh1", "c1", 1);
    let id = p.new_server(invite.clone(), udp());
    assert!(p.respond(id, answer(&invite, 404, "s1")));
    p.drive();
    assert_eq!(
        p.sent_times(),
        times(&[0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert!(p.sent.iter().all(|(_, tx)| status(tx) == 404));
    assert_eq!(
        p.events,
        vec![
            (ms(32_000), TxEvent::AckTimeout { id }),
            (ms(32_000), TxEvent::Terminated(TxKey::Server(id))),
        ]
    );
    assert!(p.layer.is_empty());
}

#[test]
fn invite_server_over_tcp_does_not_retransmit_and_timer_i_is_zero() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKsit", "c1", 1);
    let id = p.new_server(invite.clone(), tcp());
    let busy = answer(&invite, 486, "s1");
    assert!(p.respond(id, busy.clone()));
    p.advance_to(ms(5_000));
    assert_eq!(p.sent_times(), times(&[0]));
    assert_eq!(
        p.request(ack_for(&invite, &busy, None), tcp()),
        Incoming::Absorbed
    );
    assert!(p.layer.is_empty());
    assert_eq!(
        p.events,
        vec![(ms(5_000), TxEvent::Terminated(TxKey::Server(id)))]
    );
}

#[test]
fn invite_server_sends_100_trying_itself_after_200_ms_of_silence() {
    // The TU is slow: 100 Trying at 200 ms, then the TU's 180; no second 100.
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKtr1", "c1", 1);
    let id = p.new_server(invite.clone(), udp());
    p.advance_to(ms(1_000));
    assert!(p.respond(id, answer(&invite, 180, "s1")));
    p.advance_to(ms(5_000));
    let codes: Vec<(Duration, u16)> = p.sent.iter().map(|(t, tx)| (*t, status(tx))).collect();
    assert_eq!(codes, vec![(ms(200), 100), (ms(1_000), 180)]);
    let trying = parse_response(&p.sent[0].1.payload);
    assert_eq!(
        trying.headers.to().unwrap().tag(),
        None,
        "100 carries no To tag"
    );
    assert_eq!(trying.headers.call_id().unwrap(), "c1");
    assert_eq!(
        trying.headers.top_via().unwrap().branch(),
        Some("z9hG4bKtr1")
    );
    assert_eq!(trying.headers.cseq().unwrap().method, Method::Invite);

    // The TU answers within 200 ms: no 100 Trying from the layer.
    let mut p = Pair::new();
    let id = p.new_server(invite.clone(), udp());
    p.advance_to(ms(150));
    assert!(p.respond(id, answer(&invite, 180, "s1")));
    p.advance_to(ms(5_000));
    assert_eq!(p.sent.len(), 1);
    assert_eq!(status(&p.sent[0].1), 180);

    // A retransmitted INVITE before 200 ms is answered 100 at once, and only once.
    let mut p = Pair::new();
    p.new_server(invite.clone(), udp());
    p.advance_to(ms(50));
    assert_eq!(p.request(invite.clone(), udp()), Incoming::Absorbed);
    p.advance_to(ms(500));
    let codes: Vec<(Duration, u16)> = p.sent.iter().map(|(t, tx)| (*t, status(tx))).collect();
    assert_eq!(codes, vec![(ms(50), 100)]);
    p.advance_to(ms(600));
    assert_eq!(p.request(invite, udp()), Incoming::Absorbed);
    assert_eq!(p.sent.len(), 2, "a later retransmission gets the 100 again");
}

#[test]
fn invite_server_accepted_absorbs_retransmissions_and_passes_acks_up_until_timer_l() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKsa1", "c1", 1);
    let id = p.new_server(invite.clone(), udp());
    p.advance_to(ms(500));
    let ok = answer(&invite, 200, "s1");
    assert!(p.respond(id, ok.clone()));
    p.advance_to(ms(1_000));
    assert_eq!(p.request(invite.clone(), udp()), Incoming::Absorbed);
    // The ACK for a 2xx has its own branch (RFC 3261 §13.2.2.4)…
    p.advance_to(ms(2_000));
    let ack = ack_for(&invite, &ok, Some("z9hG4bKsa1-ack"));
    assert_eq!(
        p.request(ack.clone(), udp()),
        Incoming::Ack2xx { request: ack }
    );
    // …but one that reuses the INVITE's matches the transaction, and still goes up.
    let ack = ack_for(&invite, &ok, None);
    assert_eq!(
        p.request(ack.clone(), udp()),
        Incoming::Ack2xx { request: ack }
    );
    // The TU's own 2xx retransmissions pass; nothing else does.
    p.advance_to(ms(3_000));
    assert!(p.respond(id, ok.clone()));
    assert!(!p.respond(id, answer(&invite, 486, "s1")));
    assert!(!p.respond(id, answer(&invite, 180, "s1")));
    p.drive();
    let codes: Vec<(Duration, u16)> = p.sent.iter().map(|(t, tx)| (*t, status(tx))).collect();
    assert_eq!(
        codes,
        vec![
            (ms(200), 100),
            (ms(500), 200),
            (ms(1_000), 200),
            (ms(3_000), 200)
        ]
    );
    // Timer L = 64·T1 after the 2xx; no AckTimeout unless the layer retransmits 2xx.
    assert_eq!(
        p.events,
        vec![(ms(32_500), TxEvent::Terminated(TxKey::Server(id)))]
    );
}

#[test]
fn with_2xx_retransmission_on_the_layer_repeats_the_2xx_until_the_ack() {
    let mut p = Pair::new();
    p.layer.set_retransmit_2xx(true);
    let invite = req("INVITE", "z9hG4bKs2x", "c1", 1);
    let id = p.new_server(invite.clone(), udp());
    let ok = answer(&invite, 200, "s1");
    assert!(p.respond(id, ok.clone()));
    p.advance_to(ms(10_000));
    let ack = ack_for(&invite, &ok, Some("z9hG4bKs2x-ack"));
    assert_eq!(
        p.request(ack.clone(), udp()),
        Incoming::Ack2xx { request: ack }
    );
    p.drive();
    assert_eq!(p.sent_times(), times(&[0, 500, 1_500, 3_500, 7_500]));
    assert_eq!(
        p.events,
        vec![(ms(32_000), TxEvent::Terminated(TxKey::Server(id)))]
    );

    // No ACK: retransmissions until Timer L, then AckTimeout.
    let mut p = Pair::new();
    p.layer.set_retransmit_2xx(true);
    let id = p.new_server(invite.clone(), udp());
    assert!(p.respond(id, ok));
    p.drive();
    assert_eq!(
        p.sent_times(),
        times(&[0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert_eq!(
        p.events,
        vec![
            (ms(32_000), TxEvent::AckTimeout { id }),
            (ms(32_000), TxEvent::Terminated(TxKey::Server(id))),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Matching: CANCEL, RFC 2543, odd input
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_target_finds_the_invite_only_while_it_is_proceeding() {
    let mut p = Pair::new();
    let invite = req("INVITE", "z9hG4bKcan1", "c1", 1);
    let inv = p.new_server(invite.clone(), udp());
    let cancel = with_method(&invite, Method::Cancel);
    // The CANCEL is a server transaction of its own.
    let can = p.new_server(cancel.clone(), udp());
    assert_ne!(inv, can);
    assert_eq!(p.layer.cancel_target(&cancel), Some(inv));
    assert_eq!(p.layer.request_of(inv), Some(&invite));
    assert_eq!(p.layer.request_of(can), None, "only INVITEs are kept");
    // The same branch from another sent-by, or another branch, cancels nothing.
    let mut elsewhere = cancel.clone();
    let mut via = elsewhere.headers.top_via().unwrap();
    via.port = Some(5070);
    elsewhere.headers.set_top_via(&via);
    assert_eq!(p.layer.cancel_target(&elsewhere), None);
    let other = with_method(&req("INVITE", "z9hG4bKcan2", "c1", 1), Method::Cancel);
    assert_eq!(p.layer.cancel_target(&other), None);
    assert_eq!(
        p.layer.cancel_target(&invite),
        None,
        "only a CANCEL cancels"
    );

    // The TU's part: 200 to the CANCEL, 487 to the INVITE.
    assert!(p.respond(can, answer(&cancel, 200, "s1")));
    let terminated = answer(&invite, 487, "s1");
    assert!(p.respond(inv, terminated.clone()));
    assert_eq!(p.layer.cancel_target(&cancel), None, "already answered");
    // A retransmitted CANCEL gets its 200 again.
    p.advance_to(ms(100));
    assert_eq!(p.request(cancel, udp()), Incoming::Absorbed);
    assert_eq!(status(&p.sent.last().unwrap().1), 200);
    // The ACK for the 487 ends in the INVITE transaction.
    assert_eq!(
        p.request(ack_for(&invite, &terminated, None), udp()),
        Incoming::Absorbed
    );
}

#[test]
fn rfc_2543_invite_without_a_branch_is_matched_by_its_fields() {
    let mut p = Pair::new();
    let invite = vector("inv2543");
    assert_eq!(invite.headers.top_via().unwrap().branch(), None);
    let id = p.new_server(invite.clone(), udp());
    // A retransmission is absorbed (and, the TU being silent, answered 100 at once).
    p.advance_to(ms(100));
    assert_eq!(p.request(invite.clone(), udp()), Incoming::Absorbed);
    assert_eq!(p.layer.len(), 1);
    assert_eq!(status(&p.sent[0].1), 100);
    // The RFC 2543 CANCEL: same Request-URI, Call-ID, tags, CSeq number and top Via.
    let cancel = with_method(&invite, Method::Cancel);
    assert_eq!(p.layer.cancel_target(&cancel), Some(id));
    let mut other_call = cancel.clone();
    other_call
        .headers
        .set(HeaderName::CallId, "another@ift.client.example.com");
    assert_eq!(p.layer.cancel_target(&other_call), None);

    p.advance_to(ms(1_000));
    let busy = answer(&invite, 486, "2543tag");
    assert!(p.respond(id, busy.clone()));
    // An ACK whose To tag is not that of our response belongs to no transaction.
    let stray = ack_for(&invite, &answer(&invite, 486, "other"), None);
    assert_eq!(
        p.request(stray.clone(), udp()),
        Incoming::Ack2xx { request: stray }
    );
    // The ACK matches by the To tag of the response we sent (RFC 3261 §17.2.3).
    p.advance_to(ms(2_000));
    let ack = ack_for(&invite, &busy, None);
    assert_eq!(ack.headers.top_via().unwrap().branch(), None);
    assert_eq!(p.request(ack, udp()), Incoming::Absorbed);
    p.drive();
    // 100 at 0.1 s, 486 at 1 s and on Timer G at 1.5 s; nothing after the ACK at 2 s.
    assert_eq!(p.sent_times(), times(&[100, 1_000, 1_500]));
    assert_eq!(
        p.events,
        vec![(ms(7_000), TxEvent::Terminated(TxKey::Server(id)))]
    );
}

#[test]
fn a_branch_that_is_only_the_magic_cookie_falls_back_to_rfc_2543_matching() {
    let mut p = Pair::new();
    let options = vector("badbranch");
    assert_eq!(options.headers.top_via().unwrap().branch(), Some("z9hG4bK"));
    let id = p.new_server(options.clone(), udp());
    assert_eq!(p.request(options.clone(), udp()), Incoming::Absorbed);
    // The same "branch" on an unrelated request must not merge the two.
    let mut unrelated = options.clone();
    unrelated
        .headers
        .set(HeaderName::CallId, "another-call@example.org");
    let other = p.new_server(unrelated, udp());
    assert_ne!(id, other);
    assert_eq!(p.layer.len(), 2);
    assert!(p.respond(id, answer(&options, 200, "s1")));
    assert_eq!(p.request(options, udp()), Incoming::Absorbed);
    assert_eq!(p.sent.len(), 2, "the 200 is re-sent");
}

#[test]
fn requests_missing_what_matching_needs_are_dropped_without_panic() {
    let mut p = Pair::new();
    // No Via at all.
    let mut no_via = req("OPTIONS", "z9hG4bKbad1", "c1", 1);
    no_via.headers.remove_all(&HeaderName::Via);
    assert_eq!(p.request(no_via.clone(), udp()), Incoming::Absorbed);
    let mut ack = with_method(&no_via, Method::Ack);
    assert_eq!(p.request(ack.clone(), udp()), Incoming::Absorbed);
    // An unreadable Via.
    ack.headers.set(HeaderName::Via, "garbage");
    assert_eq!(p.request(ack, udp()), Incoming::Absorbed);
    // RFC 2543 matching without a CSeq or Call-ID.
    let mut legacy = vector("inv2543");
    legacy.headers.remove_all(&HeaderName::CSeq);
    assert_eq!(p.request(legacy.clone(), udp()), Incoming::Absorbed);
    assert_eq!(
        p.layer
            .cancel_target(&with_method_raw(&legacy, Method::Cancel)),
        None
    );
    let mut legacy = vector("inv2543");
    legacy.headers.remove_all(&HeaderName::CallId);
    assert_eq!(p.request(legacy, udp()), Incoming::Absorbed);
    // An ACK with a cookie branch but nothing else readable: a transaction-less ACK.
    let mut bare = Request::new(Method::Ack, msg::Uri::parse("sip:x@example.com").unwrap());
    bare.headers
        .push(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKbare");
    assert!(matches!(p.request(bare, udp()), Incoming::Ack2xx { .. }));
    assert!(p.layer.is_empty());
    assert!(p.sent.is_empty());
    // Responses the TU should not be able to send.
    let options = req("OPTIONS", "z9hG4bKbad2", "c2", 1);
    let id = p.new_server(options.clone(), udp());
    let mut odd = answer(&options, 200, "t");
    odd.code = 700;
    assert!(!p.respond(id, odd.clone()));
    odd.code = 99;
    assert!(!p.respond(id, odd));
    assert!(!p.respond(ServerTxId(9_999), answer(&options, 200, "t")));
}

fn with_method_raw(request: &Request, method: Method) -> Request {
    let mut r = request.clone();
    r.method = method;
    r
}

// ---------------------------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hundred_thousand_server_transactions_come_and_go_through_the_timer_heap() {
    const N: usize = 100_000;
    let mut p = Pair::new();
    let template = req("REGISTER", "z9hG4bKscale", "scale@example.com", 1);
    let reply = answer(&template, 200, "s1");
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        // Spread over 5 s, as a burst of 20,000/s would be.
        p.now = p.base + Duration::from_micros(50 * i as u64);
        let mut request = template.clone();
        request.headers.set(
            HeaderName::Via,
            format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKscale{i}"),
        );
        match p.layer.handle_request(p.now, request, udp()) {
            Incoming::Request { id, .. } => ids.push(id),
            other => panic!("{other:?}"),
        }
        assert!(p.layer.respond(p.now, *ids.last().unwrap(), reply.clone()));
        while p.layer.poll_transmit().is_some() {}
    }
    assert_eq!(p.layer.len(), N);
    assert_eq!(p.layer.poll_timeout(), Some(p.base + ms(32_000)));
    p.drive();
    assert_eq!(p.layer.len(), 0);
    let terminated = p
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Terminated(TxKey::Server(_))))
        .count();
    assert_eq!(terminated, N);
    assert_eq!(p.layer.out.schedule.len(), 0, "no stale timer left behind");
    assert!(p.layer.server_index.is_empty());
}
