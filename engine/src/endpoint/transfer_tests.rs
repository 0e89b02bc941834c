//! Transfer scenarios on virtual time: a caller, Switchboard, and desk phones that transfer
//! it by REFER (blind, and attended with Replaces), or the engine moving it on request. The
//! media workers are played by a script that records the commands and hands out ports.
use super::test_net::*;
use super::*;
use crate::acd::{AgentStatus, QueueConfig, Strategy};
use crate::cdr::{CallResult, LegKind};
use switchboard_media::prompt::{synth, Prompt};
use switchboard_media::sdp::Direction;

// Phones: PHONE_A is 1002 (agent a1), PHONE_B 1003 (agent a2), PHONE_C 1004 (an extension).

/// 4000 queues the caller for `sales` (a1 then a2, both logged in); 1002–1004 registered.
fn transfer_net() -> Net {
    let mut net = Net::with(
        Setup::new()
            .registered("1002", &[PHONE_A])
            .registered("1003", &[PHONE_B])
            .registered("1004", &[PHONE_C])
            .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
            .prompt(Prompt::from_samples(
                "ringback",
                &synth::tone(425.0, 200, 8000),
            ))
            .flow("4000", queue_flow())
            .queueing(QueueSettings {
                queues: vec![QueueConfig::new("sales", Strategy::Linear)],
                agents: vec![agent("a1", "1002", 1, true), agent("a2", "1003", 2, true)],
                ..QueueSettings::default()
            }),
    );
    // The first input logs the agents in.
    net.advance(Duration::from_millis(1));
    net
}

fn sipfrag(r: &Request) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// A phone's request inside the dialog our INVITE `inv` made with it (its tag `tag`).
fn phone_in_dialog(
    phone: &str,
    inv: &Request,
    tag: &str,
    method: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-{tag}-{method}-{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:phone@switchboard>;tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:phone@{phone}>\r\n{extra}Content-Length: 0\r\n\r\n",
        inv.headers.get_str(&HeaderName::From).unwrap(),
        inv.headers.call_id().unwrap()
    )
}

fn refer(phone: &str, inv: &Request, tag: &str, cseq: u32, refer_to: &str) -> String {
    phone_in_dialog(
        phone,
        inv,
        tag,
        "REFER",
        cseq,
        &format!("Refer-To: {refer_to}\r\nReferred-By: <sip:phone@switchboard>\r\n"),
    )
}

/// An INVITE from `from_addr` (account `from`) to `to`.
fn invite(from_addr: &str, from: &str, to: &str, call_id: &str, body: &str) -> String {
    format!(
        "INVITE sip:{to}@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP {from_addr};branch=z9hG4bK-{call_id}-1\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@switchboard>;tag={call_id}-tag\r\nTo: <sip:{to}@switchboard>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@{from_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request from the calling side inside its dialog (To carries our tag).
#[allow(clippy::too_many_arguments)]
fn in_dialog_from(
    from_addr: &str,
    from: &str,
    to: &str,
    method: &str,
    cseq: u32,
    our_tag: &str,
    call_id: &str,
    body: &str,
) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {from_addr};branch=z9hG4bK-{call_id}-{method}-{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@switchboard>;tag={call_id}-tag\r\nTo: <sip:{to}@switchboard>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{from}@{from_addr}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `from` (at `from_addr`) calls `to`, whose phone at `phone` answers with tag `ptag`.
/// Returns our To tag for the caller and the INVITE the phone got.
fn answered(
    net: &mut Net,
    from_addr: &str,
    from: &str,
    to: &str,
    phone: &str,
    ptag: &str,
    call_id: &str,
) -> (String, Request) {
    net.deliver(
        from_addr,
        &invite(from_addr, from, to, call_id, &sdp(4000, "sendrecv")),
    );
    let inv = requests(&net.take(phone), Method::Invite).remove(0);
    net.deliver_msg(
        phone,
        &phone_response(&inv, 200, ptag, phone, Some(&sdp(6000, "sendrecv"))),
    );
    let ok = responses(&net.take(from_addr))
        .into_iter()
        .find(|r| r.code == 200)
        .expect("the caller is answered");
    let tag = to_tag(&ok);
    let ack = format!(
        "ACK sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {from_addr};branch=z9hG4bK-{call_id}-ack\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@switchboard>;tag={call_id}-tag\r\nTo: <sip:{to}@switchboard>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    net.deliver(from_addr, &ack);
    net.take(phone); // the ACK of the phone's 200
    (tag, inv)
}

/// The caller dials 4000 and is queued; agent a1 (1002) answers. Returns the caller's
/// session, our tag and the INVITE a1's phone got.
fn queued_and_answered(net: &mut Net, call_id: &str) -> (SessionId, String, Request) {
    net.deliver(
        CALLER,
        &invite(CALLER, "1001", "4000", call_id, &sdp(4000, "sendrecv")),
    );
    let ok = responses(&net.take(CALLER))
        .into_iter()
        .find(|r| r.code == 200)
        .expect("the flow answers");
    let tag = to_tag(&ok);
    net.deliver(
        CALLER,
        &in_dialog_from(CALLER, "1001", "4000", "ACK", 1, &tag, call_id, ""),
    );
    let inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_A,
        &phone_response(&inv, 200, "p1", PHONE_A, Some(&sdp(6000, "sendrecv"))),
    );
    net.take(PHONE_A);
    assert_eq!(net.status("a1"), AgentStatus::Talking);
    (net.sessions[0], tag, inv)
}

#[test]
fn blind_transfer_to_an_extension_bridges_the_caller_with_the_new_phone() {
    let mut net = transfer_net();
    let (caller, _tag, inv) = queued_and_answered(&mut net, "t1");
    net.advance(Duration::from_secs(20));
    // The agent transfers the caller to extension 1004.
    net.deliver(
        PHONE_A,
        &refer(PHONE_A, &inv, "p1", 2, "<sip:1004@switchboard>"),
    );
    let to_a = net.take(PHONE_A);
    assert_eq!(codes(&to_a), vec![202]);
    let notifies = requests(&to_a, Method::Notify);
    assert_eq!(notifies.len(), 1);
    assert_eq!(sipfrag(&notifies[0]), "SIP/2.0 100 Trying\r\n");
    assert_eq!(
        notifies[0].headers.get_str(&HeaderName::Event),
        Some("refer;id=2")
    );
    assert!(notifies[0]
        .headers
        .get_str(&HeaderName::Other("Subscription-State".into()))
        .unwrap()
        .starts_with("active"));
    assert_eq!(
        notifies[0].headers.get_str(&HeaderName::ContentType),
        Some("message/sipfrag;version=2.0")
    );
    net.deliver_msg(
        PHONE_A,
        &phone_response(&notifies[0], 200, "p1", PHONE_A, None),
    );
    assert!(
        net.take(PHONE_A).is_empty(),
        "no BYE before the final NOTIFY"
    );
    // The agent's part is over: wrap-up.
    assert_eq!(net.status("a1"), AgentStatus::WrapUp);
    // 1004 rings; the caller hears ringback and is not hung up.
    let inv_c = requests(&net.take(PHONE_C), Method::Invite).remove(0);
    assert!(net.commands.iter().any(
        |c| matches!(c, Command::Play { id, repeat: true, .. } if *id == caller)
            && matches!(c, Command::Play { prompts, .. } if prompts[0].name() == "ringback")
    ));
    assert!(net.take(CALLER).is_empty());
    net.deliver_msg(PHONE_C, &phone_response(&inv_c, 180, "pc", PHONE_C, None));
    net.advance(Duration::from_secs(3));
    net.deliver_msg(
        PHONE_C,
        &phone_response(&inv_c, 200, "pc", PHONE_C, Some(&sdp(7000, "sendrecv"))),
    );
    assert_eq!(requests(&net.take(PHONE_C), Method::Ack).len(), 1);
    let c_session = *net.sessions.last().unwrap();
    assert!(net.bridged(caller, c_session), "{:?}", net.commands);
    // The transferor hears 200 OK, then is hung up.
    let notifies = requests(&net.take(PHONE_A), Method::Notify);
    assert_eq!(sipfrag(&notifies[0]), "SIP/2.0 200 OK\r\n");
    assert!(notifies[0]
        .headers
        .get_str(&HeaderName::Other("Subscription-State".into()))
        .unwrap()
        .starts_with("terminated"));
    net.deliver_msg(
        PHONE_A,
        &phone_response(&notifies[0], 200, "p1", PHONE_A, None),
    );
    let byes = requests(&net.take(PHONE_A), Method::Bye);
    assert_eq!(byes.len(), 1, "the transferor is hung up");
    assert!(net.take(CALLER).is_empty(), "the caller stays up");
    assert_eq!(net.ep.active_calls(), 1);
    // They talk 40 s; 1004 hangs up; the caller is hung up; one record.
    net.advance(Duration::from_secs(40));
    net.deliver(
        PHONE_C,
        &phone_in_dialog(PHONE_C, &inv_c, "pc", "BYE", 3, ""),
    );
    assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
    assert_eq!(net.closed.len(), 1);
    let (_, close) = &net.closed[0];
    assert_eq!(close.result, CallResult::Answered);
    assert_eq!(close.agent.as_deref(), Some("a1"));
    assert_eq!(close.queue.as_deref(), Some("sales"));
    assert_eq!(close.talk_ms, Some(20_000 + 40_000));
    assert!(
        close.ivr_trail.iter().any(|t| t.starts_with("main:q")),
        "the flow left behind is in the record: {:?}",
        close.ivr_trail
    );
    let finals: Vec<_> = net
        .legs
        .iter()
        .filter(|l| l.ended_at_ms.is_some())
        .collect();
    assert_eq!(finals.len(), 2, "{:?}", net.legs);
    assert_eq!(finals[0].kind, LegKind::Agent);
    assert_eq!(finals[0].agent.as_deref(), Some("a1"));
    assert_eq!(finals[1].kind, LegKind::Transfer);
    assert_eq!(finals[1].peer, "1004");
    assert_eq!(finals[1].result, Some(CallResult::Answered));
    // Every transaction ends; nothing of the calls is left.
    net.deliver_msg(PHONE_A, &phone_response(&byes[0], 200, "p1", PHONE_A, None));
    net.advance(Duration::from_secs(64));
    assert_eq!(net.ep.calls.footprint(), [0; 7]);
}

#[test]
fn a_transferor_that_hangs_up_itself_and_a_target_that_is_busy_end_the_call() {
    let mut net = transfer_net();
    let (_caller, _tag, inv) = queued_and_answered(&mut net, "t2");
    net.deliver(
        PHONE_A,
        &refer(PHONE_A, &inv, "p1", 2, "<sip:1004@switchboard>"),
    );
    assert_eq!(codes(&net.take(PHONE_A)), vec![202]);
    // The phone hangs up on its own after the 202.
    net.deliver(PHONE_A, &phone_in_dialog(PHONE_A, &inv, "p1", "BYE", 3, ""));
    assert_eq!(codes(&net.take(PHONE_A)), vec![200]);
    let inv_c = requests(&net.take(PHONE_C), Method::Invite).remove(0);
    net.deliver_msg(PHONE_C, &phone_response(&inv_c, 486, "pc", PHONE_C, None));
    // The target is busy: the caller is hung up; the gone transferor hears nothing.
    assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
    assert!(requests(&net.take(PHONE_A), Method::Notify).is_empty());
    let (_, close) = net.closed.last().unwrap();
    assert_eq!(close.result, CallResult::Answered, "the agent served it");
    let transfer = net
        .legs
        .iter()
        .rfind(|l| l.kind == LegKind::Transfer)
        .unwrap();
    assert_eq!(transfer.result, Some(CallResult::NotAnswered));
    assert_eq!(net.status("a1"), AgentStatus::WrapUp);
}

#[test]
fn blind_transfer_to_a_skill_group_queues_the_caller_for_another_agent() {
    let mut net = transfer_net();
    let (caller, _tag, inv) = queued_and_answered(&mut net, "t3");
    net.deliver(
        PHONE_A,
        &refer(PHONE_A, &inv, "p1", 2, "<sip:queue:sales@switchboard>"),
    );
    let to_a = net.take(PHONE_A);
    assert_eq!(codes(&to_a), vec![202]);
    let frags: Vec<String> = requests(&to_a, Method::Notify)
        .iter()
        .map(sipfrag)
        .collect();
    assert_eq!(frags, vec!["SIP/2.0 100 Trying\r\n", "SIP/2.0 200 OK\r\n"]);
    // The caller waits with music; a1 is in wrap-up, so a2 rings.
    assert!(net
        .commands
        .iter()
        .any(|c| matches!(c, Command::Play { id, repeat: true, .. } if *id == caller)));
    let inv_b = requests(&net.take(PHONE_B), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_B,
        &phone_response(&inv_b, 200, "pb", PHONE_B, Some(&sdp(7000, "sendrecv"))),
    );
    assert_eq!(net.status("a2"), AgentStatus::Talking);
    assert!(net.bridged(caller, *net.sessions.last().unwrap()));
    net.advance(Duration::from_secs(10));
    net.deliver(
        PHONE_B,
        &phone_in_dialog(PHONE_B, &inv_b, "pb", "BYE", 3, ""),
    );
    assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
    assert_eq!(net.status("a2"), AgentStatus::WrapUp);
    let (_, close) = net.closed.last().unwrap();
    assert_eq!(close.agent.as_deref(), Some("a2"));
    assert_eq!(close.queue.as_deref(), Some("sales"));
}

#[test]
fn an_unknown_or_unreachable_target_leaves_the_call_as_it_was() {
    let mut net = transfer_net();
    let (caller, _tag, inv) = queued_and_answered(&mut net, "t4");
    let bridges = net.commands.len();
    for (cseq, target, frag) in [
        (2, "<sip:7777@switchboard>", "SIP/2.0 404 Not Found\r\n"),
        (
            3,
            "<sip:1001@switchboard>",
            "SIP/2.0 480 Temporarily Unavailable\r\n",
        ),
    ] {
        net.deliver(PHONE_A, &refer(PHONE_A, &inv, "p1", cseq, target));
        let to_a = net.take(PHONE_A);
        assert_eq!(codes(&to_a), vec![202]);
        let n = requests(&to_a, Method::Notify);
        assert_eq!(n.len(), 1);
        assert_eq!(sipfrag(&n[0]), frag);
        net.deliver_msg(PHONE_A, &phone_response(&n[0], 200, "p1", PHONE_A, None));
        assert!(
            net.take(PHONE_A).is_empty(),
            "no BYE: the agent keeps the caller"
        );
    }
    assert!(!net.commands[bridges..]
        .iter()
        .any(|c| matches!(c, Command::Unbridge { id } if *id == caller)));
    assert_eq!(net.status("a1"), AgentStatus::Talking);
    assert!(net.take(CALLER).is_empty());
}

#[test]
fn refer_edge_cases_are_answered_without_harm() {
    let mut net = transfer_net();
    let (_caller, tag, inv) = queued_and_answered(&mut net, "t5");
    // No Refer-To.
    net.deliver(
        PHONE_A,
        &phone_in_dialog(PHONE_A, &inv, "p1", "REFER", 2, ""),
    );
    assert_eq!(codes(&net.take(PHONE_A)), vec![400]);
    // A Refer-To that is not a URI, and a Replaces that says nothing.
    net.deliver(PHONE_A, &refer(PHONE_A, &inv, "p1", 3, "<<not a uri"));
    assert_eq!(codes(&net.take(PHONE_A)), vec![400]);
    net.deliver(
        PHONE_A,
        &refer(PHONE_A, &inv, "p1", 4, "<sip:1004@switchboard?Replaces=x>"),
    );
    assert_eq!(codes(&net.take(PHONE_A)), vec![400]);
    // The caller's own leg may not transfer (the answering side does).
    net.deliver(
        CALLER,
        &in_dialog_from(CALLER, "1001", "4000", "REFER", 2, &tag, "t5", "").replace(
            "Content-Length: 0",
            "Refer-To: <sip:1004@switchboard>\r\nContent-Length: 0",
        ),
    );
    assert_eq!(codes(&net.take(CALLER)), vec![403]);
    // Outside any dialog: refused; with a To tag that matches nothing: 481.
    let outside = "REFER sip:1002@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-out\r\nMax-Forwards: 70\r\nFrom: <sip:x@switchboard>;tag=x\r\nTo: <sip:1002@switchboard>\r\nCall-ID: out\r\nCSeq: 1 REFER\r\nRefer-To: <sip:1004@switchboard>\r\nContent-Length: 0\r\n\r\n";
    net.deliver("10.0.0.9:5060", outside);
    assert_eq!(codes(&net.take("10.0.0.9:5060")), vec![403]);
    net.deliver(
        "10.0.0.9:5060",
        &outside.replace(
            "To: <sip:1002@switchboard>",
            "To: <sip:1002@switchboard>;tag=nope",
        ),
    );
    assert_eq!(codes(&net.take("10.0.0.9:5060")), vec![481]);
    // The call is untouched and REFER is advertised.
    assert_eq!(net.status("a1"), AgentStatus::Talking);
    assert!(ALLOW.contains("REFER"));
}

#[test]
fn attended_transfer_with_replaces_connects_the_caller_to_the_consulted_phone() {
    let mut net = transfer_net();
    // Call 1: 1001 calls 1002 (A), who answers.
    let (tag1, inv1) = answered(&mut net, CALLER, "1001", "1002", PHONE_A, "p1", "c1");
    let c_session = net.sessions[0];
    // A holds C.
    net.deliver(
        PHONE_A,
        &phone_in_dialog(PHONE_A, &inv1, "p1", "INVITE", 2, "").replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
                sdp(6000, "sendonly").len(),
                sdp(6000, "sendonly")
            ),
        ),
    );
    let hold = requests(&net.take(CALLER), Method::Invite).remove(0);
    assert_eq!(sdp_direction(&hold.body), Direction::SendOnly);
    net.deliver_msg(
        CALLER,
        &phone_response(&hold, 200, &tag1, CALLER, Some(&sdp(4000, "recvonly"))),
    );
    let ok = responses(&net.take(PHONE_A));
    assert_eq!(ok.last().unwrap().code, 200);
    net.deliver(
        PHONE_A,
        &phone_in_dialog(PHONE_A, &inv1, "p1", "ACK", 2, ""),
    );
    // Call 2: A's phone calls 1003 (B), who answers.
    let (tag2, _inv2) = answered(&mut net, PHONE_A, "1002", "1003", PHONE_B, "pb", "c2");
    let b_session = *net.sessions.last().unwrap();
    // A refers C to B, replacing call 2.
    let refer_to =
        format!("<sip:1003@switchboard?Replaces=c2%3Bto-tag%3D{tag2}%3Bfrom-tag%3Dc2-tag>");
    net.deliver(PHONE_A, &refer(PHONE_A, &inv1, "p1", 3, &refer_to));
    let to_a = net.take(PHONE_A);
    assert_eq!(codes(&to_a), vec![202]);
    let notify = requests(&to_a, Method::Notify).remove(0);
    assert_eq!(sipfrag(&notify), "SIP/2.0 200 OK\r\n");
    let byes = requests(&to_a, Method::Bye);
    assert_eq!(byes.len(), 1, "A's leg of call 2 is hung up");
    assert_eq!(byes[0].headers.call_id().unwrap(), "c2");
    net.deliver_msg(PHONE_A, &phone_response(&notify, 200, "p1", PHONE_A, None));
    let byes = requests(&net.take(PHONE_A), Method::Bye);
    assert_eq!(byes.len(), 1, "then A's leg of call 1");
    assert_eq!(
        byes[0].headers.call_id().unwrap(),
        inv1.headers.call_id().unwrap()
    );
    // B's phone is re-offered a port on C's worker, and C is resumed.
    let new_b = *net.sessions.last().unwrap();
    assert_ne!(new_b, b_session);
    assert!(net.bridged(c_session, new_b), "{:?}", net.commands);
    assert!(net
        .commands
        .iter()
        .any(|c| matches!(c, Command::Close { id } if *id == b_session)));
    let re_b = net.phone_answers_all(PHONE_B, "pb", Some(&sdp(7002, "sendrecv")));
    let re_b = requests(&re_b, Method::Invite);
    assert_eq!(re_b.len(), 1);
    assert_eq!(sdp_direction(&re_b[0].body), Direction::SendRecv);
    let resume = requests(&net.take(CALLER), Method::Invite);
    assert_eq!(resume.len(), 1, "C is taken off hold");
    assert_eq!(sdp_direction(&resume[0].body), Direction::SendRecv);
    net.deliver_msg(
        CALLER,
        &phone_response(&resume[0], 200, &tag1, CALLER, Some(&sdp(4000, "sendrecv"))),
    );
    // Call 2's record is closed; call 1 goes on with B, whose sub-record is a transfer.
    assert_eq!(net.closed.len(), 1);
    let call2 = &net.opened[1].call_id;
    assert_eq!(&net.closed[0].0, call2);
    assert_eq!(net.ep.active_calls(), 1);
    let t = net
        .legs
        .iter()
        .rfind(|l| l.kind == LegKind::Transfer)
        .unwrap();
    assert_eq!(t.peer, "1003");
    assert_eq!(t.call_id, net.opened[0].call_id);
    assert!(t.answered_at_ms.is_some());
    // B hangs up: C is hung up, call 1 closes.
    let bye = format!(
        "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_B};branch=z9hG4bK-pb-bye\r\nMax-Forwards: 70\r\nFrom: <sip:phone@switchboard>;tag=pb\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        re_b[0].headers.get_str(&HeaderName::From).unwrap(),
        re_b[0].headers.call_id().unwrap()
    );
    net.deliver(PHONE_B, &bye);
    assert_eq!(requests(&net.take(CALLER), Method::Bye).len(), 1);
    assert_eq!(net.closed.len(), 2);
}

#[test]
fn the_engine_moves_a_caller_to_another_extension_and_refuses_what_it_cannot() {
    let mut net = transfer_net();
    let (_tag, _inv) = answered(&mut net, CALLER, "1001", "1002", PHONE_A, "p1", "e1");
    let caller = net.sessions[0];
    let call_id = net.opened[0].call_id.clone();
    assert_eq!(
        net.ep
            .transfer(net.now, "nope", TransferTarget::Extension("1004".into())),
        Err(TransferError::NoSuchCall {
            call_id: "nope".into()
        })
    );
    assert_eq!(
        net.ep
            .transfer(net.now, &call_id, TransferTarget::Extension("9999".into())),
        Err(TransferError::UnknownTarget {
            target: "9999".into()
        })
    );
    assert_eq!(
        net.ep
            .transfer(net.now, &call_id, TransferTarget::Extension("1001".into())),
        Err(TransferError::Unreachable {
            target: "1001".into()
        })
    );
    net.pump();
    assert!(net.take(PHONE_A).is_empty(), "refusals change nothing");
    net.ep
        .transfer(net.now, &call_id, TransferTarget::Extension("1004".into()))
        .unwrap();
    net.pump();
    assert_eq!(requests(&net.take(PHONE_A), Method::Bye).len(), 1);
    let inv_c = requests(&net.take(PHONE_C), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_C,
        &phone_response(&inv_c, 200, "pc", PHONE_C, Some(&sdp(7000, "sendrecv"))),
    );
    assert!(net.bridged(caller, *net.sessions.last().unwrap()));
    assert!(net.take(CALLER).is_empty());
    assert_eq!(
        net.legs
            .iter()
            .rfind(|l| l.kind == LegKind::Transfer)
            .unwrap()
            .peer,
        "1004"
    );
    // And to an agent's desk phone.
    net.ep
        .transfer(net.now, &call_id, TransferTarget::Agent("a2".into()))
        .unwrap();
    net.pump();
    assert_eq!(requests(&net.take(PHONE_C), Method::Bye).len(), 1);
    assert_eq!(requests(&net.take(PHONE_B), Method::Invite).len(), 1);
}
