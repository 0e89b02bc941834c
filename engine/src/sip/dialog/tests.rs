//! Dialog tests: messages as text parsed with `msg::parse`, 2xx retransmission on virtual time.
use super::*;
use crate::sip::msg::{self, Framing, Message};
use crate::sip::transport::{Target, Transport};
use bytes::Bytes;

/// The one clock read in these tests: every instant is built from it.
#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    Instant::now()
}

fn parse(text: &str) -> Message {
    let text = text.replace('\n', "\r\n");
    msg::parse(Bytes::from(text.clone()), Framing::Datagram)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn req(text: &str) -> Request {
    match parse(text) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

fn resp(text: &str) -> Response {
    match parse(text) {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKa1
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
Max-Forwards: 68
From: Alice <sip:alice@atlanta.example.com>;tag=a73kszlfl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: f81d4fae@pc33
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Length: 0

";

/// The 200 as the UAC sees it: Record-Route as the proxies left it (p2 nearest the UAS).
fn ok_200(to_tag: &str, code_line: &str) -> Response {
    resp(&format!(
        "SIP/2.0 {code_line}
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKa1
Record-Route: <sip:p2.example.com;lr>
Record-Route: <sip:p1.example.com;lr>
From: Alice <sip:alice@atlanta.example.com>;tag=a73kszlfl
To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}
Call-ID: f81d4fae@pc33
CSeq: 314159 INVITE
Contact: <sip:bob@{to_tag}.biloxi.example.com>
Content-Length: 0

"
    ))
}

fn bob_contact() -> NameAddr {
    NameAddr::parse("<sip:bob@192.0.2.4>").unwrap()
}

fn uas() -> Dialog {
    Dialog::uas_from_invite(&req(INVITE), "314159", bob_contact()).unwrap()
}

fn uac() -> Dialog {
    Dialog::uac_from_response(&req(INVITE), &ok_200("bt1", "200 OK")).unwrap()
}

fn in_dialog(method: &str, seq: u32, extra: &str) -> Request {
    req(&format!(
        "{method} sip:bob@192.0.2.4 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKx{seq}
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=a73kszlfl
To: Bob <sip:bob@biloxi.example.com>;tag=314159
Call-ID: f81d4fae@pc33
CSeq: {seq} {method}
{extra}Content-Length: 0

"
    ))
}

fn route_uris(r: &Request) -> Vec<String> {
    r.headers
        .list(&HeaderName::Route)
        .map(|v| NameAddr::parse(v).unwrap().uri.to_string())
        .collect()
}

#[test]
fn uas_dialog_from_invite_and_200() {
    let mut d = uas();
    assert_eq!(d.state(), DialogState::Early);
    assert_eq!(
        d.id(),
        &DialogId {
            call_id: "f81d4fae@pc33".into(),
            local_tag: "314159".into(),
            remote_tag: "a73kszlfl".into(),
        }
    );
    assert_eq!(
        d.remote_target().to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );
    let rs: Vec<String> = d.route_set().iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(rs, ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]);
    assert_eq!(d.remote_cseq(), Some(314159));
    assert!(!d.is_secure());
    assert!(d.invite_pending());

    let mut ok = Response::for_request(&req(INVITE), 200);
    ok.ensure_to_tag("314159");
    d.response_sent(&ok);
    assert_eq!(d.state(), DialogState::Confirmed);
    assert!(!d.invite_pending());
    // The id seen from a request the peer sends next matches.
    assert_eq!(
        DialogId::of_request(&in_dialog("BYE", 314160, "")).as_ref(),
        Some(d.id())
    );
}

#[test]
fn uas_early_dialog_ends_on_error_response() {
    let mut d = uas();
    let mut busy = Response::for_request(&req(INVITE), 486);
    busy.ensure_to_tag("314159");
    d.response_sent(&busy);
    assert_eq!(d.state(), DialogState::Terminated);
}

#[test]
fn uac_dialog_from_200_reverses_record_route() {
    let d = uac();
    assert_eq!(d.state(), DialogState::Confirmed);
    assert_eq!(d.role(), Role::Uac);
    assert_eq!(d.id().local_tag.as_ref(), "a73kszlfl");
    assert_eq!(d.id().remote_tag.as_ref(), "bt1");
    let rs: Vec<String> = d.route_set().iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(rs, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    assert_eq!(
        d.remote_target().to_string(),
        "sip:bob@bt1.biloxi.example.com"
    );
    assert_eq!(d.local_cseq(), 314160);
    assert!(!d.invite_pending());
}

#[test]
fn responses_that_create_no_dialog() {
    let invite = req(INVITE);
    let mut trying = ok_200("x", "100 Trying");
    trying.code = 100;
    assert_eq!(
        Dialog::uac_from_response(&invite, &trying),
        Err(DialogError::NotDialogCreating { code: 100 })
    );
    let mut no_tag = ok_200("x", "180 Ringing");
    no_tag
        .headers
        .set(HeaderName::To, "<sip:bob@biloxi.example.com>");
    assert!(matches!(
        Dialog::uac_from_response(&invite, &no_tag),
        Err(DialogError::NotDialogCreating { .. })
    ));
}

#[test]
fn bye_in_dialog_has_the_right_headers() {
    let mut d = uac();
    let bye = d.request(Method::Bye);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:bob@bt1.biloxi.example.com");
    assert_eq!(
        route_uris(&bye),
        ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    );
    let cseq = bye.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314160, Method::Bye));
    assert_eq!(bye.headers.from().unwrap().tag(), Some("a73kszlfl"));
    assert_eq!(bye.headers.to().unwrap().tag(), Some("bt1"));
    assert_eq!(bye.headers.call_id().unwrap(), "f81d4fae@pc33");
    assert_eq!(bye.headers.max_forwards().unwrap(), Some(70));
    assert!(!bye.headers.contains(&HeaderName::Via));
    assert!(!bye.headers.contains(&HeaderName::Contact));
    // The transaction layer adds the Via with its branch, and the result survives the wire.
    let mut layer = crate::sip::transaction::TransactionLayer::new(TimerConfig::default());
    layer.send_request(base_instant(), bye, transmit().target);
    let wire = layer.poll_transmit().unwrap().payload;
    let Message::Request(back) = msg::parse(wire, Framing::Datagram).unwrap() else {
        panic!("not a request")
    };
    assert!(back.headers.top_via().unwrap().branch().is_some());
    assert_eq!(back.headers.cseq().unwrap().seq, 314160);
    assert_eq!(
        route_uris(&back),
        ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    );
    assert_eq!(d.local_cseq(), 314161);

    let ack = d.ack_for(314159);
    let cseq = ack.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Ack));
}

#[test]
fn reinvite_carries_contact_and_its_ack_reuses_the_cseq() {
    let mut d = uac();
    let inv = d.request(Method::Invite);
    assert_eq!(inv.headers.cseq().unwrap().seq, 314160);
    let contact = inv.headers.contacts().unwrap().unwrap();
    assert_eq!(
        contact[0].uri.to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );
    assert!(d.invite_pending());
    let ack = d.request(Method::Ack);
    assert_eq!(ack.headers.cseq().unwrap().seq, 314160);
    assert_eq!(d.local_cseq(), 314161);
}

#[test]
fn strict_route_goes_in_the_request_uri() {
    let invite = req(INVITE);
    let mut ok = ok_200("bt1", "200 OK");
    ok.headers.set(
        HeaderName::RecordRoute,
        "<sip:p2.example.com>, <sip:p1.example.com>",
    );
    let mut d = Dialog::uac_from_response(&invite, &ok).unwrap();
    let bye = d.request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:p1.example.com");
    assert_eq!(
        route_uris(&bye),
        ["sip:p2.example.com", "sip:bob@bt1.biloxi.example.com"]
    );
}

#[test]
fn lower_cseq_is_refused_with_500() {
    let mut d = uas();
    assert_eq!(d.receive_request(&in_dialog("INFO", 314160, "")), Ok(()));
    assert_eq!(d.remote_cseq(), Some(314160));
    let err = d
        .receive_request(&in_dialog("INFO", 314158, ""))
        .unwrap_err();
    assert_eq!(
        err,
        DialogError::OutOfOrder {
            seq: 314158,
            last: 314160
        }
    );
    assert_eq!(err.status(), 500);
    assert_eq!(d.remote_cseq(), Some(314160));
    // An ACK carries its INVITE's number and is not ordered.
    assert_eq!(d.receive_request(&in_dialog("ACK", 314159, "")), Ok(()));
}

#[test]
fn reinvite_contact_refreshes_the_remote_target() {
    let mut d = uas();
    let mut ok = Response::for_request(&req(INVITE), 200);
    ok.ensure_to_tag("314159");
    d.response_sent(&ok);
    let reinvite = in_dialog("INVITE", 314160, "Contact: <sip:alice@198.51.100.7:5070>\n");
    assert_eq!(d.receive_request(&reinvite), Ok(()));
    assert_eq!(d.remote_target().to_string(), "sip:alice@198.51.100.7:5070");
    // A non-refresh request leaves it alone.
    let info = in_dialog("INFO", 314161, "Contact: <sip:elsewhere@203.0.113.1>\n");
    assert_eq!(d.receive_request(&info), Ok(()));
    assert_eq!(d.remote_target().to_string(), "sip:alice@198.51.100.7:5070");
}

#[test]
fn uac_target_refresh_from_2xx_to_reinvite() {
    let mut d = uac();
    let _ = d.request(Method::Invite);
    let mut ok = ok_200("bt1", "200 OK");
    ok.headers.set(HeaderName::CSeq, "314160 INVITE");
    ok.headers.set(HeaderName::Contact, "<sip:bob@203.0.113.9>");
    d.response_received(&ok);
    assert_eq!(d.remote_target().to_string(), "sip:bob@203.0.113.9");
    assert!(!d.invite_pending());
}

#[test]
fn bye_terminates() {
    let mut d = uas();
    assert_eq!(d.receive_request(&in_dialog("BYE", 314160, "")), Ok(()));
    assert_eq!(d.state(), DialogState::Terminated);
    assert_eq!(
        d.receive_request(&in_dialog("INFO", 314161, ""))
            .map_err(|e| e.status()),
        Err(481)
    );
}

#[test]
fn forking_gives_two_early_dialogs() {
    let invite = req(INVITE);
    let mut dialogs = Dialogs::new();
    let r1 = ok_200("fork1", "180 Ringing");
    let r2 = ok_200("fork2", "183 Session Progress");
    for r in [&r1, &r2] {
        assert!(dialogs.find_response(r).is_none());
        let d = Dialog::uac_from_response(&invite, r).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert!(d.invite_pending());
        assert!(dialogs.insert(d).is_none());
    }
    assert_eq!(dialogs.len(), 2);
    let d1 = dialogs.find_response(&r1).unwrap();
    assert_eq!(
        d1.remote_target().to_string(),
        "sip:bob@fork1.biloxi.example.com"
    );

    // fork2 answers: it is confirmed; fork1 stays early for the TU to end (BYE after ACK or
    // let it die with the INVITE transaction).
    let ok2 = ok_200("fork2", "200 OK");
    dialogs.find_response(&ok2).unwrap().response_received(&ok2);
    assert_eq!(
        dialogs.find_response(&ok2).unwrap().state(),
        DialogState::Confirmed
    );
    assert_eq!(
        dialogs.find_response(&r1).unwrap().state(),
        DialogState::Early
    );
}

#[test]
fn early_dialog_route_set_is_recomputed_from_the_2xx() {
    let invite = req(INVITE);
    let ringing = ok_200("bt1", "180 Ringing");
    let mut d = Dialog::uac_from_response(&invite, &ringing).unwrap();
    let mut ok = ok_200("bt1", "200 OK");
    ok.headers
        .set(HeaderName::RecordRoute, "<sip:p9.example.com;lr>");
    d.response_received(&ok);
    assert_eq!(d.state(), DialogState::Confirmed);
    assert_eq!(d.route_set().len(), 1);
    assert_eq!(d.route_set()[0].uri.to_string(), "sip:p9.example.com;lr");
}

#[test]
fn lookups_by_request_and_response() {
    let mut dialogs = Dialogs::new();
    dialogs.insert(uas());
    dialogs.insert(uac());
    // A request from Alice to our UAS dialog: To tag ours, From tag hers.
    let bye = in_dialog("BYE", 314160, "");
    assert_eq!(dialogs.find(&bye).unwrap().role(), Role::Uas);
    // A response to our UAC dialog: From tag ours, To tag theirs.
    assert_eq!(
        dialogs
            .find_response(&ok_200("bt1", "200 OK"))
            .unwrap()
            .role(),
        Role::Uac
    );
    assert!(dialogs.find_response(&ok_200("other", "200 OK")).is_none());
    // Out-of-dialog request (no To tag): no dialog.
    assert!(dialogs.find(&req(INVITE)).is_none());
    dialogs.find(&bye).unwrap().terminate();
    dialogs.remove_terminated();
    assert_eq!(dialogs.len(), 1);
}

#[test]
fn glare_answers_491_and_pending_invite_500() {
    // Our re-INVITE is out; theirs crosses it.
    let mut d = uas();
    let mut ok = Response::for_request(&req(INVITE), 200);
    ok.ensure_to_tag("314159");
    d.response_sent(&ok);
    let ours = d.request(Method::Invite);
    assert_eq!(ours.headers.cseq().unwrap().seq, 1);
    let theirs = in_dialog("INVITE", 314160, "Contact: <sip:alice@192.0.2.50>\n");
    let err = d.receive_request(&theirs).unwrap_err();
    assert_eq!(err, DialogError::Glare { ours: 1 });
    assert_eq!(err.status(), 491);
    // The refused request must not refresh the target.
    assert_eq!(
        d.remote_target().to_string(),
        "sip:alice@pc33.atlanta.example.com"
    );

    // A second INVITE before we answered the first (RFC 3261 §14.2): 500.
    let mut d = uas();
    let err = d
        .receive_request(&in_dialog("INVITE", 314160, ""))
        .unwrap_err();
    assert_eq!(err, DialogError::InviteInProgress { pending: 314159 });
    assert_eq!(err.status(), 500);
}

#[test]
fn glare_backoff_ranges() {
    let ms = |d: Duration| d.as_millis();
    assert_eq!(ms(glare_backoff(true, 0)), 2100);
    assert_eq!(ms(glare_backoff(true, 190)), 4000);
    assert_eq!(ms(glare_backoff(true, 191)), 2100);
    assert_eq!(ms(glare_backoff(false, 0)), 0);
    assert_eq!(ms(glare_backoff(false, 200)), 2000);
    for r in [1, 7, 12345, u32::MAX] {
        let o = ms(glare_backoff(true, r));
        assert!((2100..=4000).contains(&o) && o % 10 == 0, "{o}");
        let n = ms(glare_backoff(false, r));
        assert!(n <= 2000 && n % 10 == 0, "{n}");
    }
    assert_eq!(uac().glare_backoff(0), Duration::from_millis(2100));
    assert_eq!(uas().glare_backoff(0), Duration::ZERO);
}

fn transmit() -> Transmit {
    Transmit {
        target: Target {
            transport: Transport::Udp,
            addr: "192.0.2.10:5060".parse().unwrap(),
            conn: None,
            local: "192.0.2.1:5060".parse().unwrap(),
        },
        payload: Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
    }
}

/// Run to the end on virtual time, returning the offsets (ms) of retransmissions and events.
fn drive(
    m: &mut Uas2xx,
    t0: Instant,
    ack_at_ms: Option<u64>,
) -> (Vec<u64>, Vec<(u64, Uas2xxEvent)>) {
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    while let Some(at) = m.poll_timeout() {
        let offset = (at - t0).as_millis() as u64;
        if ack_at_ms.is_some_and(|a| a <= offset) {
            m.ack_received();
            break;
        }
        m.handle_timeout(at);
        while let Some(t) = m.poll_transmit() {
            assert_eq!(t, transmit());
            sent.push(offset);
        }
        while let Some(e) = m.poll_event() {
            events.push((offset, e));
        }
    }
    (sent, events)
}

#[test]
fn uas_2xx_retransmits_until_ack_timeout() {
    let t0 = base_instant();
    let mut m = Uas2xx::new(t0, transmit(), &TimerConfig::default());
    let (sent, events) = drive(&mut m, t0, None);
    assert_eq!(
        sent,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(events, [(32000, Uas2xxEvent::AckTimeout)]);
    assert!(m.is_done());
}

#[test]
fn uas_2xx_stops_on_ack() {
    let t0 = base_instant();
    let mut m = Uas2xx::new(t0, transmit(), &TimerConfig::default());
    let (sent, events) = drive(&mut m, t0, Some(5000));
    assert_eq!(sent, [500, 1500, 3500]);
    assert!(events.is_empty());
    assert!(m.is_done());
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn uas_2xx_late_wakeup_catches_up() {
    let t0 = base_instant();
    let mut m = Uas2xx::new(t0, transmit(), &TimerConfig::default());
    m.handle_timeout(t0 + Duration::from_millis(4000));
    let mut n = 0;
    while m.poll_transmit().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_millis(7500)));
    m.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(m.poll_event(), Some(Uas2xxEvent::AckTimeout));
}

#[test]
fn garbage_never_panics() {
    let mut d = uas();
    let mut r = in_dialog("INFO", 314170, "");
    r.headers.set(HeaderName::CSeq, "banana");
    assert!(matches!(d.receive_request(&r), Err(DialogError::Field(_))));
    let mut r = in_dialog("INVITE", 314171, "");
    r.headers.set(HeaderName::Contact, "<<<");
    assert_eq!(d.receive_request(&r).map_err(|e| e.status()), Err(400));
    let mut junk = ok_200("bt1", "200 OK");
    junk.headers.set(HeaderName::CSeq, "x");
    d.response_received(&junk);
    d.response_sent(&junk);
    let mut no_contact = req(INVITE);
    no_contact.headers.remove_all(&HeaderName::Contact);
    assert_eq!(
        Dialog::uas_from_invite(&no_contact, "t", bob_contact()),
        Err(DialogError::NoContact)
    );
}

#[test]
fn uas_response_echoes_record_route_and_adds_contact() {
    let d = uas();
    let ringing = d.response_to(&req(INVITE), 180);
    assert_eq!(ringing.headers.to().unwrap().tag(), Some("314159"));
    let rr: Vec<&str> = ringing.headers.list(&HeaderName::RecordRoute).collect();
    assert_eq!(rr, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
    let contact = ringing.headers.contacts().unwrap().unwrap();
    assert_eq!(contact[0].uri.to_string(), "sip:bob@192.0.2.4");
    // The 2xx builds the same dialog id on the UAC side, with the route set reversed.
    let ok = d.response_to(&req(INVITE), 200);
    let uac = Dialog::uac_from_response(&req(INVITE), &ok).unwrap();
    assert_eq!(uac.id().remote_tag.as_ref(), "314159");
    assert_eq!(uac.route_set()[0].uri.to_string(), "sip:p1.example.com;lr");
    assert_eq!(uac.remote_target().to_string(), "sip:bob@192.0.2.4");
    // An in-dialog BYE's 200 carries neither.
    let bye_ok = d.response_to(&in_dialog("BYE", 314160, ""), 200);
    assert!(!bye_ok.headers.contains(&HeaderName::RecordRoute));
    assert!(!bye_ok.headers.contains(&HeaderName::Contact));
}
