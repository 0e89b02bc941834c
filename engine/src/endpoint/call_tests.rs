//! B2BUA scenarios on virtual time: a caller (UAC) ↔ Switchboard ↔ the dialled account's
//! phones (UAS), with the media workers played by a script that records the commands and
//! hands out ports. Loss is simulated by dropping messages on the wire; the transaction
//! layer's retransmissions must recover.
use super::test_net::*;
use super::*;
use crate::sip::msg::Message;
use switchboard_media::control::MediaEvent;
use switchboard_media::sdp::Direction;

/// A call from 1001 to 1002 that the one phone answers; returns (caller's To tag, the
/// phone's INVITE).
fn answered_call(net: &mut Net, call_id: &str) -> (String, Request) {
    net.deliver(
        CALLER,
        &caller_invite("1002", call_id, &sdp(4000, "sendrecv")),
    );
    let invites = requests(&net.take(PHONE_A), Method::Invite);
    assert_eq!(invites.len(), 1, "one INVITE to the registered phone");
    let inv = invites[0].clone();
    let offer = sdp_direction(&inv.body);
    assert_eq!(offer, Direction::SendRecv);
    net.deliver_msg(PHONE_A, &phone_response(&inv, 180, "phone", PHONE_A, None));
    assert_eq!(
        codes(&net.take(CALLER)),
        vec![180],
        "the caller hears ringing"
    );
    net.deliver_msg(
        PHONE_A,
        &phone_response(&inv, 200, "phone", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    assert_eq!(
        requests(&net.take(PHONE_A), Method::Ack).len(),
        1,
        "the phone's 2xx is ACKed"
    );
    let answer = responses(&net.take(CALLER));
    assert_eq!(answer.iter().map(|r| r.code).collect::<Vec<_>>(), vec![200]);
    assert_eq!(sdp_direction(&answer[0].body), Direction::SendRecv);
    let tag = to_tag(&answer[0]);
    net.deliver(CALLER, &caller_ack(&tag, call_id));
    assert!(
        net.commands
            .iter()
            .any(|c| matches!(c, Command::Bridge { .. })),
        "the two legs' media are bridged: {:?}",
        net.commands
    );
    (tag, inv)
}

#[test]
fn account_call_is_answered_bridged_and_hung_up_by_the_caller() {
    let mut net = Net::new(&[PHONE_A]);
    let (tag, _inv) = answered_call(&mut net, "c1");
    net.deliver(CALLER, &caller_in_dialog("BYE", 2, &tag, "c1", ""));
    assert_eq!(codes(&net.take(CALLER)), vec![200]);
    let byes = requests(&net.take(PHONE_A), Method::Bye);
    assert_eq!(byes.len(), 1, "the BYE is passed on");
    let closes = net
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Close { .. }))
        .count();
    assert_eq!(closes, 2, "both RTP sessions close");
    assert_eq!(net.ep.active_calls(), 0);
    let (_, close) = net.closed.last().expect("the record is closed");
    assert_eq!(close.result, crate::cdr::CallResult::Answered);
    let (ring, answer) = (close.ring_at_ms.unwrap(), close.answered_at_ms.unwrap());
    assert!(ring <= answer && answer <= close.ended_at_ms, "{close:?}");
    // Once every transaction is over, nothing of the call is left.
    net.deliver_msg(
        PHONE_A,
        &phone_response(&byes[0], 200, "phone", PHONE_A, None),
    );
    net.advance(Duration::from_secs(64));
    assert_eq!(net.ep.calls.footprint(), [0; 7]);
}

#[test]
fn callee_hangup_reaches_the_caller() {
    let mut net = Net::new(&[PHONE_A]);
    let (_tag, inv) = answered_call(&mut net, "c2");
    let bye = format!(
        "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bK-pb\r\nMax-Forwards: 70\r\nFrom: <sip:1002@switchboard>;tag=phone\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
        inv.headers.get_str(&HeaderName::From).unwrap(),
        inv.headers.call_id().unwrap()
    );
    net.deliver(PHONE_A, &bye);
    assert_eq!(codes(&net.take(PHONE_A)), vec![200]);
    let byes = requests(&net.take(CALLER), Method::Bye);
    assert_eq!(byes.len(), 1);
    assert_eq!(
        byes[0].uri.to_string(),
        format!("sip:1001@{CALLER}"),
        "sent to the caller's Contact"
    );
}

#[test]
fn parallel_fork_first_answer_wins_and_the_other_phone_is_cancelled() {
    let mut net = Net::new(&[PHONE_A, PHONE_B]);
    net.deliver(CALLER, &caller_invite("1002", "f1", &sdp(4000, "sendrecv")));
    let a = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    let b = requests(&net.take(PHONE_B), Method::Invite).remove(0);
    net.deliver_msg(PHONE_A, &phone_response(&a, 180, "pa", PHONE_A, None));
    net.deliver_msg(PHONE_B, &phone_response(&b, 180, "pb", PHONE_B, None));
    assert_eq!(
        codes(&net.take(CALLER)),
        vec![180],
        "ringing is reported once"
    );
    net.deliver_msg(
        PHONE_B,
        &phone_response(&b, 200, "pb", PHONE_B, Some(&sdp(7000, "sendrecv"))),
    );
    let cancels = requests(&net.take(PHONE_A), Method::Cancel);
    assert_eq!(cancels.len(), 1, "the phone that lost is cancelled");
    assert_eq!(
        cancels[0].headers.top_via().unwrap().branch(),
        a.headers.top_via().unwrap().branch(),
        "CANCEL carries its INVITE's branch (RFC 3261 §9.1)"
    );
    let ok = responses(&net.take(CALLER));
    assert_eq!(ok.iter().map(|r| r.code).collect::<Vec<_>>(), vec![200]);
    net.deliver(CALLER, &caller_ack(&to_tag(&ok[0]), "f1"));
    // The cancelled phone answers 200 to CANCEL and 487 to its INVITE; the layer ACKs the 487.
    net.deliver_msg(
        PHONE_A,
        &phone_response(&cancels[0], 200, "pa", PHONE_A, None),
    );
    net.deliver_msg(PHONE_A, &phone_response(&a, 487, "pa", PHONE_A, None));
    assert_eq!(requests(&net.take(PHONE_A), Method::Ack).len(), 1);
    assert_eq!(net.ep.active_calls(), 1);
    // The ringing timer of the answered call is spent; the loser's leg is forgotten once its
    // transactions end.
    net.advance(Duration::from_secs(64));
    let [calls, legs, ..] = net.ep.calls.footprint();
    assert_eq!((calls, legs), (1, 2), "the call and its two live legs");
}

#[test]
fn a_late_second_answer_is_acked_and_hung_up() {
    let mut net = Net::new(&[PHONE_A, PHONE_B]);
    net.deliver(CALLER, &caller_invite("1002", "f2", &sdp(4000, "sendrecv")));
    let a = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    let b = requests(&net.take(PHONE_B), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_A,
        &phone_response(&a, 200, "pa", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    // Phone B answered at the same moment, before it could see a CANCEL.
    net.deliver_msg(
        PHONE_B,
        &phone_response(&b, 200, "pb", PHONE_B, Some(&sdp(7000, "sendrecv"))),
    );
    let to_b = net.take(PHONE_B);
    assert_eq!(requests(&to_b, Method::Ack).len(), 1, "every 2xx is ACKed");
    assert_eq!(
        requests(&to_b, Method::Bye).len(),
        1,
        "the loser's dialog is ended"
    );
    assert_eq!(
        codes(&net.take(CALLER)),
        vec![200],
        "the caller is answered once"
    );
}

#[test]
fn busy_phone_gives_the_caller_486() {
    let mut net = Net::new(&[PHONE_A]);
    net.deliver(CALLER, &caller_invite("1002", "b1", &sdp(4000, "sendrecv")));
    let a = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(PHONE_A, &phone_response(&a, 486, "pa", PHONE_A, None));
    assert_eq!(codes(&net.take(CALLER)), vec![486]);
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn unregistered_account_gives_480_and_unknown_number_404() {
    let mut net = Net::new(&[]);
    net.deliver(CALLER, &caller_invite("1002", "u1", &sdp(4000, "sendrecv")));
    assert_eq!(codes(&net.take(CALLER)), vec![480]);
    net.deliver(CALLER, &caller_invite("5555", "u2", &sdp(4000, "sendrecv")));
    assert_eq!(codes(&net.take(CALLER)), vec![404]);
}

#[test]
fn no_answer_within_the_ring_timeout_gives_480_and_cancels() {
    let mut net = Net::new(&[PHONE_A]);
    net.deliver(CALLER, &caller_invite("1002", "n1", &sdp(4000, "sendrecv")));
    let a = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(PHONE_A, &phone_response(&a, 180, "pa", PHONE_A, None));
    net.take(CALLER);
    net.advance(Duration::from_secs(29));
    assert!(requests(&net.take(PHONE_A), Method::Cancel).is_empty());
    net.advance(Duration::from_secs(2));
    // Sent once and retransmitted (Timer E) while the phone does not answer it.
    let cancels = requests(&net.take(PHONE_A), Method::Cancel);
    assert!(!cancels.is_empty());
    assert!(cancels
        .iter()
        .all(|c| c.headers.top_via().unwrap().branch() == a.headers.top_via().unwrap().branch()));
    let finals: Vec<u16> = codes(&net.take(CALLER))
        .into_iter()
        .filter(|c| *c >= 200)
        .collect();
    // (Re-sent by Timer G while the caller does not ACK it.)
    assert!(
        !finals.is_empty() && finals.iter().all(|c| *c == 480),
        "{finals:?}"
    );
}

#[test]
fn caller_cancel_is_propagated_and_answered_487_on_the_early_dialog() {
    let mut net = Net::new(&[PHONE_A]);
    net.deliver(CALLER, &caller_invite("1002", "x1", &sdp(4000, "sendrecv")));
    let a = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(PHONE_A, &phone_response(&a, 180, "pa", PHONE_A, None));
    let ringing = responses(&net.take(CALLER)).remove(0);
    let cancel = format!(
        "CANCEL sip:1002@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-x1-1\r\nMax-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=caller\r\nTo: <sip:1002@switchboard>\r\nCall-ID: x1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    net.deliver(CALLER, &cancel);
    let to_caller = responses(&net.take(CALLER));
    let codes: Vec<u16> = to_caller.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![200, 487]);
    assert_eq!(
        to_tag(&to_caller[1]),
        to_tag(&ringing),
        "487 on the same early dialog"
    );
    assert_eq!(requests(&net.take(PHONE_A), Method::Cancel).len(), 1);
}

#[test]
fn lost_invite_and_lost_answer_are_recovered_by_retransmission() {
    let mut net = Net::new(&[PHONE_A]);
    net.deliver(CALLER, &caller_invite("1002", "l1", &sdp(4000, "sendrecv")));
    // The first INVITE to the phone is lost; Timer A re-sends it after T1.
    let first = requests(&net.take(PHONE_A), Method::Invite);
    assert_eq!(first.len(), 1);
    net.advance(Duration::from_millis(600));
    let again = requests(&net.take(PHONE_A), Method::Invite);
    assert_eq!(again.len(), 1, "retransmitted after 500 ms");
    assert_eq!(again[0].body, first[0].body);
    let inv = again[0].clone();
    net.deliver_msg(
        PHONE_A,
        &phone_response(&inv, 200, "pa", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    net.take(PHONE_A);
    // Our 200 to the caller is lost: it is re-sent until the ACK comes (RFC 3261 §13.3.1.4).
    let ok = responses(&net.take(CALLER))
        .into_iter()
        .find(|r| r.code == 200)
        .expect("the caller is answered");
    net.advance(Duration::from_millis(600));
    let re = responses(&net.take(CALLER));
    assert!(
        re.iter().any(|r| r.code == 200 && r.body == ok.body),
        "2xx retransmitted: {re:?}"
    );
    // The phone's 200 arrives again (its ACK was lost too): ACKed again, nothing else.
    net.deliver_msg(
        PHONE_A,
        &phone_response(&inv, 200, "pa", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    let to_phone = net.take(PHONE_A);
    assert_eq!(requests(&to_phone, Method::Ack).len(), 1);
    assert_eq!(to_phone.len(), 1);
    net.deliver(CALLER, &caller_ack(&to_tag(&ok), "l1"));
    net.advance(Duration::from_secs(5));
    assert!(
        responses(&net.take(CALLER)).is_empty(),
        "no more 2xx after the ACK"
    );
    assert_eq!(net.ep.active_calls(), 1);
}

#[test]
fn reordered_ringing_after_the_answer_changes_nothing() {
    let mut net = Net::new(&[PHONE_A]);
    net.deliver(CALLER, &caller_invite("1002", "r1", &sdp(4000, "sendrecv")));
    let inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_A,
        &phone_response(&inv, 200, "pa", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    net.deliver_msg(PHONE_A, &phone_response(&inv, 180, "pa", PHONE_A, None));
    assert_eq!(
        codes(&net.take(CALLER)),
        vec![200],
        "a late 180 is not relayed after the 200"
    );
}

#[test]
fn hold_is_passed_on_as_a_fresh_offer_and_resume_restores_sendrecv() {
    let mut net = Net::new(&[PHONE_A]);
    let (tag, _inv) = answered_call(&mut net, "h1");
    // The caller puts the call on hold.
    net.deliver(
        CALLER,
        &caller_in_dialog("INVITE", 2, &tag, "h1", &sdp(4000, "sendonly")),
    );
    assert!(
        codes(&net.take(CALLER)).iter().all(|c| *c < 200),
        "answered only once the phone agreed"
    );
    let re = requests(&net.take(PHONE_A), Method::Invite);
    assert_eq!(re.len(), 1, "a re-INVITE to the phone");
    assert_eq!(sdp_direction(&re[0].body), Direction::SendOnly);
    net.deliver_msg(
        PHONE_A,
        &phone_response(&re[0], 200, "phone", PHONE_A, Some(&sdp(6000, "recvonly"))),
    );
    assert_eq!(requests(&net.take(PHONE_A), Method::Ack).len(), 1);
    let ok = responses(&net.take(CALLER));
    let ok: Vec<&Response> = ok.iter().filter(|r| r.code >= 200).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].code, 200);
    assert_eq!(
        sdp_direction(&ok[0].body),
        Direction::RecvOnly,
        "hold answered recvonly"
    );
    net.deliver(CALLER, &caller_ack(&tag, "h1"));
    // Resume.
    net.deliver(
        CALLER,
        &caller_in_dialog("INVITE", 3, &tag, "h1", &sdp(4000, "sendrecv")),
    );
    let re = requests(&net.take(PHONE_A), Method::Invite);
    assert_eq!(sdp_direction(&re[0].body), Direction::SendRecv);
    net.deliver_msg(
        PHONE_A,
        &phone_response(&re[0], 200, "phone", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    let ok: Vec<Response> = responses(&net.take(CALLER))
        .into_iter()
        .filter(|r| r.code >= 200)
        .collect();
    assert_eq!(
        sdp_direction(&ok[0].body),
        Direction::SendRecv,
        "resume restores two-way audio"
    );
    // Each leg's media was reconfigured for hold and again for resume.
    let configures = net
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Configure { .. }))
        .count();
    assert!(configures >= 6, "{configures} configures");
}

#[test]
fn a_second_reinvite_before_the_first_is_answered_gets_500_with_retry_after() {
    let mut net = Net::new(&[PHONE_A]);
    let (tag, _) = answered_call(&mut net, "g1");
    net.deliver(
        CALLER,
        &caller_in_dialog("INVITE", 2, &tag, "g1", &sdp(4000, "sendonly")),
    );
    net.take(PHONE_A);
    // A second one from the same side before the first is answered: RFC 3261 §14.2.
    net.deliver(
        CALLER,
        &caller_in_dialog("INVITE", 3, &tag, "g1", &sdp(4000, "sendrecv")),
    );
    let finals: Vec<Response> = responses(&net.take(CALLER))
        .into_iter()
        .filter(|r| r.code >= 200)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0].code, 500);
    assert!(finals[0].headers.contains(&HeaderName::RetryAfter));
}

#[test]
fn reinvites_crossing_on_the_two_legs_get_491() {
    let mut net = Net::new(&[PHONE_A]);
    let (tag, inv) = answered_call(&mut net, "g2");
    // The phone re-INVITEs: we pass it on to the caller and wait for the caller's answer.
    let reinvite = format!(
        "INVITE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bK-pr1\r\nMax-Forwards: 70\r\nFrom: <sip:1002@switchboard>;tag=phone\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 INVITE\r\nContact: <sip:1002@{PHONE_A}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        inv.headers.get_str(&HeaderName::From).unwrap(),
        inv.headers.call_id().unwrap(),
        sdp(6000, "sendonly").len(),
        sdp(6000, "sendonly")
    );
    net.deliver(PHONE_A, &reinvite);
    assert_eq!(requests(&net.take(CALLER), Method::Invite).len(), 1);
    // Meanwhile the caller re-INVITEs too: glare on the caller's dialog (RFC 3261 §14.1).
    net.deliver(
        CALLER,
        &caller_in_dialog("INVITE", 2, &tag, "g2", &sdp(4000, "sendonly")),
    );
    let finals: Vec<u16> = codes(&net.take(CALLER))
        .into_iter()
        .filter(|c| *c >= 200)
        .collect();
    assert_eq!(finals, vec![491]);
}

#[test]
fn info_dtmf_on_one_leg_is_sent_on_the_other() {
    let mut net = Net::new(&[PHONE_A]);
    let (tag, _) = answered_call(&mut net, "d1");
    net.commands.clear();
    net.deliver(
        CALLER,
        &caller_in_dialog("INFO", 2, &tag, "d1", "Signal=7\r\nDuration=160\r\n"),
    );
    assert_eq!(codes(&net.take(CALLER)), vec![200]);
    let sent: Vec<&Command> = net
        .commands
        .iter()
        .filter(|c| matches!(c, Command::SendDtmf { .. }))
        .collect();
    assert_eq!(sent.len(), 1, "{:?}", net.commands);
    let Command::SendDtmf { digit, .. } = sent[0] else {
        unreachable!()
    };
    assert_eq!(digit.as_char(), '7');
}

#[test]
fn test_line_answers_plays_after_ack_and_reports_rfc4733_digits() {
    let mut net = Net::new(&[]);
    net.deliver(CALLER, &caller_invite("9999", "t1", &sdp(4000, "sendrecv")));
    let ok = responses(&net.take(CALLER));
    let ok: Vec<&Response> = ok.iter().filter(|r| r.code >= 200).collect();
    assert_eq!(ok[0].code, 200);
    assert!(
        !net.commands
            .iter()
            .any(|c| matches!(c, Command::Echo { .. } | Command::Play { .. })),
        "nothing plays before the ACK"
    );
    let tag = to_tag(ok[0]);
    net.deliver(CALLER, &caller_ack(&tag, "t1"));
    assert!(net
        .commands
        .iter()
        .any(|c| matches!(c, Command::Echo { .. } | Command::Play { .. })));
    let session = net
        .commands
        .iter()
        .find_map(|c| match c {
            Command::Configure { id, params } => {
                assert_eq!(params.telephone_event, Some(101));
                Some(*id)
            }
            _ => None,
        })
        .unwrap();
    net.ep.handle_media(
        net.now,
        MediaEvent::Digit {
            id: session,
            digit: switchboard_media::dtmf::rfc4733::Digit::from_char('1').unwrap(),
            via: switchboard_media::control::DtmfVia::Rfc4733,
            duration: Duration::from_millis(100),
            relay_to: None,
        },
    );
    net.pump();
    assert!(
        net.commands
            .iter()
            .any(|c| matches!(c, Command::SendDtmf { .. })),
        "the digit is spoken back"
    );
}

#[test]
fn rtp_timeout_ends_the_call_with_bye_on_both_legs() {
    let mut net = Net::new(&[PHONE_A]);
    let (_tag, _) = answered_call(&mut net, "m1");
    let session = net
        .commands
        .iter()
        .find_map(|c| match c {
            Command::Bridge { a, .. } => Some(*a),
            _ => None,
        })
        .unwrap();
    net.ep.handle_media(
        net.now,
        MediaEvent::Inactive {
            id: session,
            silent_for: Duration::from_secs(30),
        },
    );
    net.pump();
    assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
    assert_eq!(requests(&net.take(PHONE_A), Method::Bye).len(), 1);
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn an_offer_we_cannot_take_gets_488_with_a_warning() {
    let mut net = Net::new(&[]);
    let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    net.deliver(CALLER, &caller_invite("9999", "w1", g729));
    let finals: Vec<Response> = responses(&net.take(CALLER))
        .into_iter()
        .filter(|r| r.code >= 200)
        .collect();
    assert_eq!(finals[0].code, 488);
    assert!(finals[0].headers.contains(&HeaderName::Warning));
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn late_offer_caller_gets_our_offer_in_the_200_and_answers_in_the_ack() {
    let mut net = Net::new(&[]);
    net.deliver(CALLER, &caller_invite("9999", "lo1", ""));
    let ok: Vec<Response> = responses(&net.take(CALLER))
        .into_iter()
        .filter(|r| r.code >= 200)
        .collect();
    assert_eq!(ok[0].code, 200);
    assert!(!ok[0].body.is_empty(), "our offer is in the 200");
    let tag = to_tag(&ok[0]);
    let body = sdp(4000, "sendrecv");
    let ack = format!(
        "ACK sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-lo1-ack\r\nMax-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=caller\r\nTo: <sip:9999@switchboard>;tag={tag}\r\nCall-ID: lo1\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    net.deliver(CALLER, &ack);
    assert!(
        net.commands
            .iter()
            .any(|c| matches!(c, Command::Configure { .. })),
        "the ACK's answer configures media"
    );
    assert!(net
        .commands
        .iter()
        .any(|c| matches!(c, Command::Echo { .. } | Command::Play { .. })));
}

// ---------------------------------------------------------------------------------------------
// Service numbers and IVR flows
// ---------------------------------------------------------------------------------------------

mod flows {
    use super::*;
    use crate::cdr::{CallResult, MissedReason};
    use crate::ivr::model::{self, Flow, NodeId, NodeKind};
    use switchboard_media::prompt::{synth, Prompt};

    /// menu (1 → sales notice → bye, 2 → dial 1002 → bye, 3 → bridge to the third party →
    /// bye, 4 → http lookup → bye; no input or invalid → bye).
    fn main_flow() -> Flow {
        let ids = |n: u32| NodeId(n);
        Flow {
            name: "main".into(),
            version: "0123456789abcdef".into(),
            start: ids(0),
            nodes: vec![
                node(
                    "menu",
                    NodeKind::Menu {
                        prompts: vec!["welcome".into()],
                        choices: vec![('1', ids(1)), ('2', ids(2)), ('3', ids(4)), ('4', ids(5))],
                        timeout: Duration::from_secs(5),
                        retries: 0,
                        no_input_prompts: vec![],
                        invalid_prompts: vec![],
                        no_input: ids(3),
                        invalid: ids(3),
                    },
                ),
                node(
                    "sales",
                    NodeKind::Play {
                        prompts: vec!["welcome".into()],
                        barge_in: false,
                        next: ids(3),
                    },
                ),
                node(
                    "agent",
                    NodeKind::Dial {
                        target: model::DialTarget::Extension(model::Template("1002".into())),
                        ring_timeout: Duration::from_secs(20),
                        answered: ids(3),
                        no_answer: ids(3),
                        busy: ids(3),
                        failed: ids(3),
                    },
                ),
                node(
                    "bye",
                    NodeKind::Hangup {
                        cause: model::HangupCause::Normal,
                    },
                ),
                node(
                    "bot",
                    NodeKind::Bridge {
                        uri: model::Template("sip:bot@10.0.0.3:5064".into()),
                        headers: vec![("X-Caller".into(), model::Template("{{ caller }}".into()))],
                        result_headers: vec![("X-Intent".into(), "intent".into())],
                        ring_timeout: Duration::from_secs(20),
                        returned: ids(3),
                        failed: ids(3),
                    },
                ),
                node(
                    "lookup",
                    NodeKind::Http {
                        method: model::HttpMethod::Get,
                        url: model::Template("http://crm.example/c/{{ caller }}".into()),
                        headers: vec![],
                        body: None,
                        timeout: Duration::from_secs(2),
                        extract: vec![("level".into(), "/level".into())],
                        ok: ids(3),
                        error: ids(3),
                    },
                ),
            ],
            calendars: Default::default(),
            file: "main.yaml".into(),
        }
    }

    fn flow_net(contacts: &[&str], blacklist: &str) -> Net {
        let mut setup = Setup::new()
            .registered("1002", contacts)
            .prompt(Prompt::from_samples(
                "welcome",
                &synth::tone(440.0, 200, 8000),
            ))
            .prompt(Prompt::from_samples("beep", &synth::beep()))
            .flow("4000", main_flow());
        if !blacklist.is_empty() {
            setup = setup.blacklist_inbound(blacklist);
        }
        Net::with(setup)
    }

    /// Answer the caller's INVITE to 4000 and ACK: the flow starts.
    fn enter(net: &mut Net, call_id: &str) -> (String, SessionId) {
        let tag = enter_service(net, call_id);
        let session = net
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Play { id, .. } => Some(*id),
                _ => None,
            })
            .expect("the menu prompt plays after the ACK");
        (tag, session)
    }

    fn play_done(net: &mut Net, session: SessionId) {
        let token = net
            .commands
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Play { id, token, .. } if *id == session => Some(*token),
                _ => None,
            })
            .expect("something plays");
        net.ep
            .handle_media(net.now, MediaEvent::PlayDone { id: session, token });
        net.pump();
    }

    fn key(net: &mut Net, session: SessionId, c: char) {
        net.ep.handle_media(
            net.now,
            MediaEvent::Digit {
                id: session,
                digit: switchboard_media::dtmf::rfc4733::Digit::from_char(c).unwrap(),
                via: switchboard_media::control::DtmfVia::Rfc4733,
                duration: Duration::from_millis(100),
                relay_to: None,
            },
        );
        net.pump();
    }

    #[test]
    fn digit_1_takes_the_menu_branch_and_the_record_shows_the_trail() {
        let mut net = flow_net(&[], "");
        let (_tag, session) = enter(&mut net, "v1");
        assert_eq!(net.opened.len(), 1);
        assert_eq!(net.opened[0].service_number.as_deref(), Some("4000"));
        play_done(&mut net, session);
        key(&mut net, session, '1');
        play_done(&mut net, session);
        // The flow hung up: BYE to the caller, with the cause, and the record is closed.
        let byes = requests(&net.take(CALLER), Method::Bye);
        assert_eq!(byes.len(), 1);
        assert_eq!(
            byes[0].headers.get_str(&HeaderName::Other("Reason".into())),
            Some("Q.850;cause=16;text=\"Normal call clearing\"")
        );
        let (_, close) = net.closed.last().expect("record closed");
        assert_eq!(
            close.ivr_trail,
            vec!["main:menu→1", "main:sales→next", "main:bye"]
        );
        assert_eq!(close.flow.as_deref(), Some("main"));
        assert_eq!(close.missed_reason, Some(MissedReason::HungUpInIvr));
    }

    #[test]
    fn blacklisted_unrouted_and_quick_hangups_get_their_missed_call_reasons() {
        let mut net = flow_net(&[], "1001");
        net.deliver(CALLER, &caller_invite("4000", "k1", &sdp(4000, "sendrecv")));
        assert_eq!(codes(&net.take(CALLER)), vec![403]);
        assert_eq!(
            net.closed[0].1.missed_reason,
            Some(MissedReason::Blacklisted)
        );
        assert_eq!(net.closed[0].1.result, CallResult::SystemNotAnswered);

        let mut net = flow_net(&[], "");
        net.deliver(CALLER, &caller_invite("4001", "k2", &sdp(4000, "sendrecv")));
        assert_eq!(codes(&net.take(CALLER)), vec![404]);
        assert_eq!(
            net.closed[0].1.missed_reason,
            Some(MissedReason::InboundRouteNotMatched)
        );
        assert_eq!(
            net.opened[0].service_number.as_deref(),
            Some("4001"),
            "the record keeps the number dialled, routed or not"
        );

        let (tag, _session) = enter(&mut net, "k3");
        net.advance(Duration::from_secs(2));
        service_bye(&mut net, &tag, "k3");
        let (_, close) = net.closed.last().unwrap();
        assert_eq!(
            close.missed_reason,
            Some(MissedReason::InboundRouteNotCompleted)
        );
        assert_eq!(close.result, CallResult::SystemNotAnswered);
    }

    /// A blacklist given while running (the HTTP API's entries) refuses the next call and, once
    /// emptied, lets the one after in; an update older than the last applied is dropped.
    #[test]
    fn a_blacklist_set_at_run_time_applies_to_the_next_call() {
        use crate::config::{Blacklist, NumberPattern};
        let mut net = flow_net(&[], "");
        let caller = Blacklist {
            inbound: vec![NumberPattern::parse("1001").unwrap()],
            outbound: Vec::new(),
        };
        assert!(net.ep.set_blacklist(2, caller));
        assert!(
            !net.ep.set_blacklist(1, Blacklist::default()),
            "an older update"
        );
        net.deliver(CALLER, &caller_invite("4000", "r1", &sdp(4000, "sendrecv")));
        assert_eq!(codes(&net.take(CALLER)), vec![403]);
        assert_eq!(
            net.closed[0].1.missed_reason,
            Some(MissedReason::Blacklisted)
        );
        assert!(net.ep.set_blacklist(3, Blacklist::default()));
        enter(&mut net, "r2");
    }

    #[test]
    fn a_dialled_extension_answers_then_the_caller_returns_to_the_flow() {
        let mut net = flow_net(&[PHONE_A], "");
        let (_tag, session) = enter(&mut net, "x1");
        key(&mut net, session, '2');
        let inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
        net.deliver_msg(
            PHONE_A,
            &phone_response(&inv, 200, "pa", PHONE_A, Some(&sdp(6000, "sendrecv"))),
        );
        assert!(net
            .commands
            .iter()
            .any(|c| matches!(c, Command::Bridge { .. })));
        // The phone hangs up: the caller is unbridged and the flow goes on (to `bye`).
        let bye = format!(
            "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bK-xb\r\nMax-Forwards: 70\r\nFrom: <sip:1002@switchboard>;tag=pa\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
            inv.headers.get_str(&HeaderName::From).unwrap(),
            inv.headers.call_id().unwrap()
        );
        net.deliver(PHONE_A, &bye);
        assert!(net
            .commands
            .iter()
            .any(|c| matches!(c, Command::Unbridge { .. })));
        assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
        let (_, close) = net.closed.last().unwrap();
        assert_eq!(close.result, CallResult::Answered);
        assert!(close.answered_at_ms.is_some());
        assert_eq!(close.ivr_trail.last().map(String::as_str), Some("main:bye"));
        assert!(
            close.ivr_trail.iter().any(|t| t == "main:agent→answered"),
            "{:?}",
            close.ivr_trail
        );
    }

    #[test]
    fn the_third_party_hangs_up_and_its_headers_come_back_as_variables() {
        let mut net = flow_net(&[], "");
        let (_tag, session) = enter(&mut net, "b1");
        key(&mut net, session, '3');
        let inv = requests(&net.take(PHONE_B), Method::Invite).remove(0);
        assert_eq!(
            inv.headers.get_str(&HeaderName::Other("X-Caller".into())),
            Some("1001")
        );
        net.deliver_msg(
            PHONE_B,
            &phone_response(&inv, 200, "bot", PHONE_B, Some(&sdp(7000, "sendrecv"))),
        );
        let bye = format!(
            "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_B};branch=z9hG4bK-bb\r\nMax-Forwards: 70\r\nFrom: <sip:bot@10.0.0.3>;tag=bot\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nX-Intent: billing\r\nContent-Length: 0\r\n\r\n",
            inv.headers.get_str(&HeaderName::From).unwrap(),
            inv.headers.call_id().unwrap()
        );
        net.deliver(PHONE_B, &bye);
        let (_, close) = net.closed.last().expect("the flow went on to `bye`");
        assert!(
            close.ivr_trail.iter().any(|t| t == "main:bot→returned"),
            "{:?}",
            close.ivr_trail
        );
    }

    #[test]
    fn an_http_node_asks_the_shell_and_goes_on_with_the_answer() {
        let mut net = flow_net(&[], "");
        let (_tag, session) = enter(&mut net, "h1");
        key(&mut net, session, '4');
        let (call, token, req) = net.http.pop().expect("an HTTP request");
        assert_eq!(req.url, "http://crm.example/c/1001");
        net.ep
            .handle_http(net.now, call, token, Ok((200, r#"{"level":"vip"}"#.into())));
        net.pump();
        let (_, close) = net.closed.last().expect("ended");
        assert!(
            close.ivr_trail.iter().any(|t| t == "main:lookup→ok"),
            "{:?}",
            close.ivr_trail
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Skill-group queues: the flow queues the caller, the ACD picks agents, their desk phones ring
// ---------------------------------------------------------------------------------------------

mod queue {
    use super::*;
    use crate::acd::{QueueConfig, Strategy};
    use crate::cdr::{CallResult, LegKind, MissedReason};
    use crate::endpoint::QueueSettings;
    use crate::events::CallEventKind;
    use crate::ivr::model::{self, NodeId, NodeKind};
    use std::sync::Arc;
    use switchboard_media::prompt::{synth, Prompt};

    const AGENT_1: &str = PHONE_A; // account 1002
    const AGENT_2: &str = PHONE_B; // account 1003

    fn queue_net(strategy: Strategy, logged_in: bool) -> Net {
        Net::with(
            Setup::new()
                .registered("1002", &[AGENT_1])
                .registered("1003", &[AGENT_2])
                .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
                .prompt(Prompt::from_samples("beep", &synth::beep()))
                .flow("4000", queue_flow())
                .queueing(QueueSettings {
                    queues: vec![QueueConfig::new("sales", strategy)],
                    agents: vec![
                        agent("a1", "1002", 1, logged_in),
                        agent("a2", "1003", 2, logged_in),
                    ],
                    ..QueueSettings::default()
                }),
        )
    }

    fn phone_bye(net: &mut Net, phone: &str, inv: &Request, tag: &str) {
        let bye = format!(
            "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-{tag}-bye\r\nMax-Forwards: 70\r\nFrom: <sip:agent@switchboard>;tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
            inv.headers.get_str(&HeaderName::From).unwrap(),
            inv.headers.call_id().unwrap()
        );
        net.deliver(phone, &bye);
    }

    #[test]
    fn an_agent_who_does_not_answer_is_skipped_and_the_next_one_serves_the_caller() {
        let mut net = queue_net(Strategy::Linear, true);
        let _tag = enter_service(&mut net, "q1");
        assert!(
            net.commands
                .iter()
                .any(|c| matches!(c, Command::Play { repeat: true, .. })),
            "music on hold plays while the caller waits"
        );
        // Linear: agent a1 first, a2 not yet.
        let inv1 = requests(&net.take(AGENT_1), Method::Invite).remove(0);
        assert!(requests(&net.take(AGENT_2), Method::Invite).is_empty());
        net.deliver_msg(AGENT_1, &phone_response(&inv1, 180, "p1", AGENT_1, None));
        // a1's phone rings out its 10 s: cancelled, and a2's phone rings.
        net.advance(Duration::from_secs(10));
        assert_eq!(requests(&net.take(AGENT_1), Method::Cancel).len(), 1);
        let inv2 = requests(&net.take(AGENT_2), Method::Invite).remove(0);
        assert_eq!(
            inv2.headers.from().unwrap().uri.user.as_deref(),
            Some("1001"),
            "the agent's phone shows the caller's number"
        );
        net.deliver_msg(
            AGENT_2,
            &phone_response(&inv2, 200, "p2", AGENT_2, Some(&sdp(6000, "sendrecv"))),
        );
        assert!(net
            .commands
            .iter()
            .any(|c| matches!(c, Command::Bridge { .. })));
        assert_eq!(
            net.ep.acd().agent(&"a2".into()).unwrap().state().status(),
            crate::acd::AgentStatus::Talking
        );
        // Talk 30 s; the agent hangs up; the flow ends the call (no after-agent node).
        net.advance(Duration::from_secs(30));
        phone_bye(&mut net, AGENT_2, &inv2, "p2");
        assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
        assert_eq!(
            net.ep.acd().agent(&"a2".into()).unwrap().state().status(),
            crate::acd::AgentStatus::WrapUp
        );
        let (_, close) = net.closed.last().expect("record closed");
        assert_eq!(close.result, CallResult::Answered);
        assert_eq!(close.agent.as_deref(), Some("a2"));
        assert_eq!(close.queue.as_deref(), Some("sales"));
        assert_eq!(close.queue_wait_ms, Some(10_000));
        assert_eq!(close.talk_ms, Some(30_000));
        assert_eq!(close.wrap_up_ms, Some(5_000));
        assert_eq!(
            close.hangup_by,
            Some(crate::cdr::HangupBy::Callee),
            "the agent hung up; the flow only ended the call after"
        );
        // One sub-record per ring attempt, each final write complete.
        let finals: Vec<_> = net
            .legs
            .iter()
            .filter(|l| l.ended_at_ms.is_some())
            .collect();
        assert_eq!(finals.len(), 2, "{:?}", net.legs);
        assert_eq!(finals[0].agent.as_deref(), Some("a1"));
        assert_eq!(finals[0].reason, Some(MissedReason::AgentNoAnswer));
        assert_eq!(finals[0].kind, LegKind::Agent);
        assert_eq!(finals[1].agent.as_deref(), Some("a2"));
        assert_eq!(finals[1].result, Some(CallResult::Answered));
        // The events tell the same story, in order.
        let kinds: Vec<CallEventKind> = net.call_events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                CallEventKind::InboundRinging,
                CallEventKind::OutboundRinging,
                CallEventKind::Hangup,
                CallEventKind::Answered,
                CallEventKind::Hangup,
                CallEventKind::Hangup,
            ]
        );
        // Wrap-up ends by time: a2 is idle again 5 s later.
        net.advance(Duration::from_secs(5));
        assert_eq!(
            net.ep.acd().agent(&"a2".into()).unwrap().state().status(),
            crate::acd::AgentStatus::Idle
        );
    }

    #[test]
    fn a_caller_who_hangs_up_while_waiting_abandoned_the_queue_with_its_wait() {
        let mut net = queue_net(Strategy::RingAll, true);
        let tag = enter_service(&mut net, "q2");
        let inv1 = requests(&net.take(AGENT_1), Method::Invite).remove(0);
        let inv2 = requests(&net.take(AGENT_2), Method::Invite).remove(0);
        net.deliver_msg(AGENT_1, &phone_response(&inv1, 180, "p1", AGENT_1, None));
        net.deliver_msg(AGENT_2, &phone_response(&inv2, 180, "p2", AGENT_2, None));
        net.advance(Duration::from_secs(7));
        service_bye(&mut net, &tag, "q2");
        assert_eq!(requests(&net.take(AGENT_1), Method::Cancel).len(), 1);
        assert_eq!(requests(&net.take(AGENT_2), Method::Cancel).len(), 1);
        let (_, close) = net.closed.last().expect("record closed");
        assert_eq!(close.missed_reason, Some(MissedReason::AbandonedInQueue));
        assert_eq!(close.result, CallResult::NotAnswered);
        assert_eq!(close.queue_wait_ms, Some(7_000));
        for a in ["a1", "a2"] {
            assert_eq!(
                net.ep.acd().agent(&a.into()).unwrap().state().status(),
                crate::acd::AgentStatus::Idle,
                "{a} is released, not stuck reserved"
            );
        }
    }

    #[test]
    fn the_exit_key_takes_the_flow_on_and_no_agent_online_is_its_own_reason() {
        let mut net = queue_net(Strategy::Linear, true);
        let _tag = enter_service(&mut net, "q3");
        let inv1 = requests(&net.take(AGENT_1), Method::Invite).remove(0);
        net.deliver_msg(AGENT_1, &phone_response(&inv1, 180, "p1", AGENT_1, None));
        let session = net
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Play { id, .. } => Some(*id),
                _ => None,
            })
            .unwrap();
        net.advance(Duration::from_secs(3));
        net.ep.handle_media(
            net.now,
            MediaEvent::Digit {
                id: session,
                digit: switchboard_media::dtmf::rfc4733::Digit::from_char('9').unwrap(),
                via: switchboard_media::control::DtmfVia::Rfc4733,
                duration: Duration::from_millis(100),
                relay_to: None,
            },
        );
        net.pump();
        assert_eq!(
            requests(&net.take(AGENT_1), Method::Cancel).len(),
            1,
            "the ringing agent is released"
        );
        // The flow plays its notice, then hangs up: the trail shows the exit.
        let notice = net
            .commands
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Play {
                    token,
                    repeat: false,
                    ..
                } => Some(*token),
                _ => None,
            })
            .expect("the exit branch plays its notice");
        net.ep.handle_media(
            net.now,
            MediaEvent::PlayDone {
                id: session,
                token: notice,
            },
        );
        net.pump();
        let (_, close) = net.closed.last().expect("record closed");
        assert!(
            close.ivr_trail.iter().any(|t| t == "main:q→exit"),
            "{:?}",
            close.ivr_trail
        );
        assert_eq!(close.missed_reason, Some(MissedReason::AbandonedInQueue));
        assert_eq!(close.queue_wait_ms, Some(3_000));

        // Nobody logged in: the queue refuses at once.
        let mut net = queue_net(Strategy::Linear, false);
        let _tag = enter_service(&mut net, "q4");
        assert!(net.take(AGENT_1).is_empty());
        let (_, close) = net.closed.last().expect("the flow hung up");
        assert_eq!(close.missed_reason, Some(MissedReason::NoAgentOnline));
        assert_eq!(close.queue.as_deref(), Some("sales"));
    }

    #[test]
    fn agents_on_a_break_are_not_rung_and_the_last_logout_sends_callers_on() {
        use crate::endpoint::AgentControl;
        let mut net = queue_net(Strategy::Linear, true);
        let mut settings_breaks = std::collections::BTreeSet::new();
        settings_breaks.insert("lunch".to_owned());
        // Re-make the ACD with a break state named `lunch`.
        let settings = QueueSettings {
            acd: crate::acd::AcdConfig {
                break_names: settings_breaks,
                ..Default::default()
            },
            queues: vec![QueueConfig::new("sales", Strategy::Linear)],
            agents: vec![agent("a1", "1002", 1, true), agent("a2", "1003", 2, true)],
            ..QueueSettings::default()
        };
        net.ep.acd = crate::endpoint::calls::AcdState::new(&settings);
        let now = net.now;
        net.ep.set_clock(now, 1_800_000_000_000);
        assert!(
            net.ep
                .agent_set_state(now, &"a1".into(), AgentControl::Break("nap"))
                .is_err(),
            "only the admin's break names"
        );
        net.ep
            .agent_set_state(now, &"a1".into(), AgentControl::Break("lunch"))
            .unwrap();
        let _tag = enter_service(&mut net, "b1");
        assert!(net.take(AGENT_1).is_empty(), "a1 is on lunch");
        let inv2 = requests(&net.take(AGENT_2), Method::Invite).remove(0);
        net.deliver_msg(AGENT_2, &phone_response(&inv2, 180, "p2", AGENT_2, None));
        // Both log out: nobody is left to answer, the caller goes on in the flow (to `bye`).
        net.ep.agent_logout(net.now, &"a1".into()).unwrap();
        net.pump();
        assert!(net.closed.is_empty(), "a2 is still logged in");
        net.ep.agent_logout(net.now, &"a2".into()).unwrap_err();
        // a2 is ringing for the call: the ACD refuses to log out an agent mid-offer.
        net.advance(Duration::from_secs(10));
        let _ = net.take(AGENT_2);
        net.ep.agent_logout(net.now, &"a2".into()).unwrap();
        net.pump();
        let (_, close) = net.closed.last().expect("the flow hung up");
        assert_eq!(close.missed_reason, Some(MissedReason::NoAgentOnline));
    }

    #[test]
    fn a_desk_phone_logs_its_agent_in_with_the_feature_code_and_pin() {
        let mut net = queue_net(Strategy::Linear, false);
        // 1001 dials 0000 + a2's PIN: the phone is now a2's, and a2 is logged in.
        net.deliver(
            CALLER,
            &caller_invite("00007272", "f1", &sdp(4000, "sendrecv")),
        );
        let ok = responses(&net.take(CALLER));
        assert_eq!(ok.last().unwrap().code, 200);
        assert_eq!(
            net.ep.acd().agent(&"a2".into()).unwrap().state().status(),
            crate::acd::AgentStatus::Idle
        );
        // A wrong PIN is refused.
        net.deliver(
            CALLER,
            &caller_invite("00001111", "f2", &sdp(4000, "sendrecv")),
        );
        assert_eq!(codes(&net.take(CALLER)), vec![403]);
    }

    /// Call memory on and set to fall back when the bound agent is away; the caller (1001)
    /// bound to a1; the queue node's `agent_unavailable` exit leads to `personal` (a busy
    /// hang-up). a2 comes first in linear order.
    fn memory_net(a1_logged_in: bool) -> Net {
        let mut net = queue_net(Strategy::Linear, true);
        let mut flow = queue_flow();
        let personal = NodeId(flow.nodes.len() as u32);
        if let NodeKind::Queue {
            agent_unavailable, ..
        } = &mut flow.nodes[0].kind
        {
            *agent_unavailable = Some(personal);
        }
        flow.nodes.push(node(
            "personal",
            NodeKind::Hangup {
                cause: model::HangupCause::Busy,
            },
        ));
        net.ep.publish_flows([Arc::new(flow)]);
        let settings = QueueSettings {
            acd: crate::acd::AcdConfig {
                break_names: ["lunch".to_owned()].into(),
                memory: crate::acd::MemoryConfig {
                    validity: Some(Duration::from_secs(7 * 86_400)),
                    service_numbers: Default::default(),
                    refuse_when_unavailable: true,
                },
            },
            queues: vec![QueueConfig::new("sales", Strategy::Linear)],
            agents: vec![
                agent("a1", "1002", 2, a1_logged_in),
                agent("a2", "1003", 1, true),
            ],
            ..QueueSettings::default()
        };
        net.ep.acd = crate::endpoint::calls::AcdState::new(&settings);
        let now = net.now;
        net.ep.set_clock(now, 1_800_000_000_000);
        net.ep.acd.acd.memory_mut().bind(
            "1001",
            crate::acd::Binding {
                agent: "a1".into(),
                expires_at: now + Duration::from_secs(86_400),
                service_numbers: Default::default(),
            },
        );
        net
    }

    #[test]
    fn a_caller_whose_own_agent_is_away_takes_the_flows_call_memory_fallback() {
        use crate::endpoint::AgentControl;
        for away in ["on a break", "logged out"] {
            let mut net = memory_net(away == "on a break");
            if away == "on a break" {
                net.ep
                    .agent_set_state(net.now, &"a1".into(), AgentControl::Break("lunch"))
                    .unwrap();
            }
            let _tag = enter_service(&mut net, "m1");
            assert!(net.take(AGENT_1).is_empty(), "a1 is {away}");
            assert!(
                requests(&net.take(AGENT_2), Method::Invite).is_empty(),
                "a2 is idle, but the caller is a1's customer: the flow decides ({away})"
            );
            let (_, close) = net.closed.last().expect("the flow hung up");
            assert_eq!(
                close.ivr_trail,
                ["main:q→agent_unavailable", "main:personal"],
                "a1 {away}"
            );
            assert_eq!(close.queue.as_deref(), Some("sales"));
            assert_eq!(close.missed_reason, Some(MissedReason::NoAgentOnline));
        }
    }

    #[test]
    fn a_caller_whose_own_agent_is_idle_rings_that_agent_before_the_linear_order() {
        let mut net = memory_net(true);
        let _tag = enter_service(&mut net, "m2");
        let inv1 = requests(&net.take(AGENT_1), Method::Invite);
        assert_eq!(inv1.len(), 1, "a1, the caller's own agent, rings");
        assert!(
            requests(&net.take(AGENT_2), Method::Invite).is_empty(),
            "a2 is first in linear order, but not for a1's customer"
        );
        net.deliver_msg(
            AGENT_1,
            &phone_response(&inv1[0], 200, "p1", AGENT_1, Some(&sdp(6000, "sendrecv"))),
        );
        assert_eq!(
            net.ep.acd().agent(&"a1".into()).unwrap().state().status(),
            crate::acd::AgentStatus::Talking
        );
        phone_bye(&mut net, AGENT_1, &inv1[0], "p1");
        let (_, close) = net.closed.last().expect("record closed");
        assert_eq!(close.result, CallResult::Answered);
        assert_eq!(close.agent.as_deref(), Some("a1"));

        // Without the binding the same call rings a2 first.
        let mut net = memory_net(true);
        net.ep.acd.acd.memory_mut().unbind("1001");
        let _tag = enter_service(&mut net, "m3");
        assert!(net.take(AGENT_1).is_empty());
        assert_eq!(requests(&net.take(AGENT_2), Method::Invite).len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Calls out through a trunk
// ---------------------------------------------------------------------------------------------

mod outbound {
    use super::*;
    use crate::cdr::{CallType, LegKind};

    const CARRIER: &str = "10.0.0.9:5080";

    fn trunk_net() -> Net {
        let yaml = format!(
            "trunks:
  - name: carrier
    address: \"{CARRIER}\"
    auth: {{ username: \"sb\", password: \"carrier-secret-1\" }}
    number_format: {{ country_code: \"86\", national_prefix: \"0\", outbound: national }}
    caller_id: {{ mode: fixed, number: \"+861088880000\" }}
"
        );
        Net::with(Setup::new().trunks(&yaml))
    }

    #[test]
    fn a_desk_phone_calls_out_answering_the_carriers_challenge() {
        let mut net = trunk_net();
        net.deliver(
            CALLER,
            &caller_invite("13800000001", "o1", &sdp(4000, "sendrecv")),
        );
        let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
        assert_eq!(inv.uri.user.as_deref(), Some("013800000001"));
        assert_eq!(
            inv.headers.from().unwrap().uri.user.as_deref(),
            Some("01088880000"),
            "the display number, the carrier's way"
        );
        let mut challenge = Response::for_request(&inv, 407);
        challenge.ensure_to_tag("c1");
        challenge.headers.push(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
        );
        net.deliver_msg(CARRIER, &Message::Response(challenge));
        let again = net.take(CARRIER);
        assert_eq!(requests(&again, Method::Ack).len(), 1, "the 407 is ACKed");
        let inv2 = requests(&again, Method::Invite).remove(0);
        assert!(inv2
            .headers
            .get_str(&HeaderName::ProxyAuthorization)
            .is_some_and(|v| v.contains("username=\"sb\"")));
        assert_eq!(inv2.headers.cseq().unwrap().seq, 2);
        net.deliver_msg(
            CARRIER,
            &phone_response(&inv2, 200, "c2", CARRIER, Some(&sdp(7000, "sendrecv"))),
        );
        assert_eq!(
            responses(&net.take(CALLER)).last().unwrap().code,
            200,
            "the desk phone is connected"
        );
        assert_eq!(net.opened[0].call_type, CallType::Outbound);
        assert_eq!(net.opened[0].customer_number, "+8613800000001");
        assert!(net.legs.iter().any(
            |l| l.kind == LegKind::Outbound && l.caller_id.as_deref() == Some("+861088880000")
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by review: each test opens with the story of its bug
// ---------------------------------------------------------------------------------------------

mod regressions {
    use super::*;
    use crate::acd::{AgentStatus, QueueConfig, Strategy};
    use crate::endpoint::QueueSettings;
    use switchboard_media::prompt::{synth, Prompt};

    fn queue_setup(queue: QueueConfig, agents: Vec<crate::endpoint::AgentSettings>) -> Setup {
        Setup::new()
            .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
            .flow("4000", queue_flow())
            .queueing(QueueSettings {
                queues: vec![queue],
                agents,
                ..QueueSettings::default()
            })
    }

    /// A queue with no pause between rounds and an agent whose phone is not registered: each
    /// offer failed at once and the ACD offered the same caller to the same agent again in
    /// the same instant, and the engine never came back from the input.
    #[test]
    fn an_unreachable_agent_with_no_retry_delay_does_not_hang_the_engine() {
        let mut queue = QueueConfig::new("sales", Strategy::Linear);
        queue.retry_delay = Duration::ZERO;
        // 1002 is an agent's phone, and nothing is registered for it.
        let mut net = Net::with(queue_setup(queue, vec![agent("a1", "1002", 1, true)]));
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            enter_service(&mut net, "z1");
            let _ = tx.send(());
            net
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the engine loops on an agent without a phone"
        );
        let mut net = worker.join().unwrap();
        // Rounds are a second apart now: a minute of waiting is a bounded number of tries.
        net.advance(Duration::from_secs(60));
        assert_eq!(net.status("a1"), AgentStatus::Idle);
    }

    /// An agent's phone answered with audio we cannot take: the ACD had already counted the
    /// answer, so the agent stayed "talking" to nobody and the caller heard silence until it
    /// gave up. The answer is read first now; an unusable one is a failed offer and the next
    /// agent rings.
    #[test]
    fn an_agent_answer_without_usable_audio_is_a_failed_offer() {
        let mut net = Net::with(
            queue_setup(
                QueueConfig::new("sales", Strategy::Linear),
                vec![agent("a1", "1002", 1, true), agent("a2", "1003", 2, true)],
            )
            .registered("1002", &[PHONE_A])
            .registered("1003", &[PHONE_B]),
        );
        enter_service(&mut net, "z2");
        let inv1 = requests(&net.take(PHONE_A), Method::Invite).remove(0);
        let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        net.deliver_msg(
            PHONE_A,
            &phone_response(&inv1, 200, "p1", PHONE_A, Some(g729)),
        );
        let to_a = net.take(PHONE_A);
        assert_eq!(
            requests(&to_a, Method::Bye).len(),
            1,
            "the unusable answer is hung up"
        );
        assert_ne!(net.status("a1"), AgentStatus::Talking);
        assert_eq!(
            requests(&net.take(PHONE_B), Method::Invite).len(),
            1,
            "the next agent rings"
        );
    }

    /// The caller hung up on the agent after 30 s: the call was closed before its legs, so
    /// the record lost the talk time and the leg's hang-up event came after the call's.
    #[test]
    fn a_caller_hanging_up_on_the_agent_keeps_the_talk_time_and_the_event_order() {
        let mut net = Net::with(
            queue_setup(
                QueueConfig::new("sales", Strategy::Linear),
                vec![agent("a1", "1002", 1, true)],
            )
            .registered("1002", &[PHONE_A]),
        );
        let tag = enter_service(&mut net, "z3");
        let inv1 = requests(&net.take(PHONE_A), Method::Invite).remove(0);
        net.deliver_msg(
            PHONE_A,
            &phone_response(&inv1, 200, "p1", PHONE_A, Some(&sdp(6000, "sendrecv"))),
        );
        net.advance(Duration::from_secs(30));
        service_bye(&mut net, &tag, "z3");
        let (_, close) = net.closed.last().expect("closed");
        assert_eq!(close.talk_ms, Some(30_000));
        let last = net.call_events.last().expect("events");
        assert_eq!(last.kind, crate::events::CallEventKind::Hangup);
        assert!(
            last.data.get("leg_id").is_none(),
            "the call's own hang-up comes last: {:?}",
            net.call_events
        );
    }

    /// A phone that answers an offer with 100 Trying only, then nothing: when the agent's ring
    /// time ran out no CANCEL was sent (100 was not counted as a provisional), so the phone
    /// rang on after the ACD had let the agent go.
    #[test]
    fn a_phone_that_only_sent_100_is_cancelled_when_the_ring_time_ends() {
        let mut net = Net::with(
            queue_setup(
                QueueConfig::new("sales", Strategy::Linear),
                vec![agent("a1", "1002", 1, true)],
            )
            .registered("1002", &[PHONE_A]),
        );
        enter_service(&mut net, "z4");
        let inv1 = requests(&net.take(PHONE_A), Method::Invite).remove(0);
        net.deliver_msg(PHONE_A, &phone_response(&inv1, 100, "p1", PHONE_A, None));
        net.advance(Duration::from_secs(11));
        // One CANCEL transaction (retransmitted while the phone does not answer it), for the
        // INVITE's branch.
        let cancels = requests(&net.take(PHONE_A), Method::Cancel);
        assert!(!cancels.is_empty(), "the phone is cancelled");
        let branch = |r: &Request| r.headers.top_via().unwrap().branch().map(str::to_owned);
        assert!(cancels.iter().all(|c| branch(c) == branch(&inv1)));
    }

    /// A supervisor signed a scheduled agent out in mid-shift, and 15 s later the schedule
    /// signed them in again: it acted on the state, not on the shift's changes.
    #[test]
    fn a_sign_out_in_mid_shift_stands_until_the_next_shift_change() {
        let mut a1 = agent("a1", "1002", 1, false);
        a1.schedule = Some(
            crate::acd::schedule::Schedule::new(
                "UTC",
                vec![crate::acd::schedule::Shift {
                    days: [true; 7],
                    from: 0,
                    to: 1440,
                }],
            )
            .unwrap(),
        );
        let mut net = Net::with(queue_setup(
            QueueConfig::new("sales", Strategy::Linear),
            vec![a1],
        ));
        let now = net.now;
        net.ep.set_clock(now, UNIX as i64 * 1000);
        net.advance(Duration::from_secs(1));
        assert_eq!(
            net.status("a1"),
            AgentStatus::Idle,
            "signed in by the shift"
        );
        net.ep.agent_logout(net.now, &"a1".into()).unwrap();
        net.advance(Duration::from_secs(60));
        assert_eq!(net.status("a1"), AgentStatus::LoggedOut);
    }
}

mod regressions_signalling {
    use super::*;

    const CARRIER: &str = "10.0.0.9:5080";

    /// The carrier sent 183 and then challenged the INVITE with 407: the early dialog of the
    /// 183 stayed on the leg, so the 200 to the re-sent INVITE (a new To tag) was taken for a
    /// stray fork, ACKed and hung up, and the desk phone never got connected.
    #[test]
    fn a_provisional_before_the_carriers_challenge_does_not_lose_the_call() {
        let yaml = format!(
            "trunks:
  - name: carrier
    address: \"{CARRIER}\"
    auth: {{ username: \"sb\", password: \"carrier-secret-1\" }}
    number_format: {{ country_code: \"86\", national_prefix: \"0\", outbound: national }}
"
        );
        let mut net = Net::with(Setup::new().trunks(&yaml));
        net.deliver(
            CALLER,
            &caller_invite("13800000001", "y1", &sdp(4000, "sendrecv")),
        );
        let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
        net.deliver_msg(CARRIER, &phone_response(&inv, 183, "c1", CARRIER, None));
        let mut challenge = Response::for_request(&inv, 407);
        challenge.ensure_to_tag("c1");
        challenge.headers.push(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
        );
        net.deliver_msg(CARRIER, &Message::Response(challenge));
        let inv2 = requests(&net.take(CARRIER), Method::Invite).remove(0);
        net.deliver_msg(
            CARRIER,
            &phone_response(&inv2, 200, "c2", CARRIER, Some(&sdp(7000, "sendrecv"))),
        );
        assert!(requests(&net.take(CARRIER), Method::Bye).is_empty());
        assert_eq!(
            responses(&net.take(CALLER)).last().map(|r| r.code),
            Some(200),
            "the desk phone is connected"
        );
    }

    /// An account posed as another in From (`1002`, authenticated as 1001) to sign out the
    /// agent of 1002's phone with the logout code: the caller is the account it
    /// authenticated as, so 1001 — who has no agent — is refused.
    #[test]
    fn the_caller_is_the_authenticated_account_not_the_from_header() {
        use crate::acd::{QueueConfig, Strategy};
        let mut net = Net::with(Setup::new().queueing(crate::endpoint::QueueSettings {
            queues: vec![QueueConfig::new("sales", Strategy::Linear)],
            agents: vec![agent("a2", "1002", 1, true)],
            ..Default::default()
        }));
        net.advance(Duration::from_millis(1));
        assert_eq!(net.status("a2"), crate::acd::AgentStatus::Idle);
        let req = crate::sip::msg::parse(
            Bytes::from(caller_invite("0001", "y2", &sdp(4000, "sendrecv")).replace(
                "From: <sip:1001@switchboard>",
                "From: <sip:1002@switchboard>",
            )),
            crate::sip::msg::Framing::Datagram,
        )
        .unwrap();
        let Message::Request(req) = req else {
            panic!("a request")
        };
        // As the endpoint does after a successful digest check for account 1001.
        let from = Received {
            transport: Transport::Udp,
            local: LOCAL.parse().unwrap(),
            remote: CALLER.parse().unwrap(),
            conn: None,
        };
        let mut req = req;
        let reply_to = crate::endpoint::stamp_via(&mut req.headers, from).unwrap();
        let id = match net.ep.tx.handle_request(net.now, req.clone(), reply_to) {
            crate::sip::transaction::Incoming::Request { id, .. } => id,
            _ => panic!("a new server transaction"),
        };
        net.ep
            .start_call(net.now, UNIX, from, id, &req, Some("1001".into()));
        net.pump();
        assert_eq!(codes(&net.take(CALLER)), vec![403]);
        assert_eq!(net.status("a2"), crate::acd::AgentStatus::Idle);
    }
}
