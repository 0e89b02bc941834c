//! Click-to-dial scenarios on virtual time: the customer dialled first through a trunk and then
//! queued to an agent, the agent-first callback, and every way the customer is not reached.
use super::test_net::*;
use super::*;
use crate::acd::{AgentStatus, QueueConfig, Strategy};
use crate::cdr::{CallResult, CallType, LegKind, MissedReason};
use crate::sip::msg::{Message, Uri};
use switchboard_media::prompt::{synth, Prompt};

const CARRIER: &str = "10.0.0.9:5080";
const CUSTOMER: &str = "13800000001";

/// A trunk to CARRIER (national format, fixed display number), skill group `sales` with agent
/// 8001 on account 1002's phone at PHONE_A, logged in; number 139… on the outbound blacklist.
fn click_net() -> Net {
    let yaml = format!(
        "trunks:
  - name: carrier
    address: \"{CARRIER}\"
    number_format: {{ country_code: \"86\", national_prefix: \"0\", outbound: national }}
    caller_id: {{ mode: fixed, number: \"+861088880000\" }}
blacklist:
  outbound: [\"+86139*\"]
"
    );
    let mut net = Net::with(
        Setup::new()
            .registered("1002", &[PHONE_A])
            .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
            .prompt(Prompt::from_samples(
                "ringback",
                &synth::tone(425.0, 200, 8000),
            ))
            .flow("4000", queue_flow())
            .trunks(&yaml)
            .queueing(QueueSettings {
                queues: vec![QueueConfig::new("sales", Strategy::Linear)],
                agents: vec![agent("8001", "1002", 1, true)],
                ..QueueSettings::default()
            }),
    );
    net.ep.set_originate_from(LOCAL.parse().unwrap());
    // Agents who log in at start do so at the first input.
    net.advance(Duration::ZERO);
    net
}

fn request(target: ClickTarget, order: ClickOrder) -> ClickToDial {
    ClickToDial {
        customer: "138 0000 0001".to_owned(),
        target,
        order,
        trunk: None,
        variables: [("ticket".to_owned(), "T-42".to_owned())].into(),
        ring_timeout: Some(Duration::from_secs(20)),
    }
}

fn dial(net: &mut Net, req: ClickToDial) -> String {
    let now = net.now;
    let id = net.ep.click_to_dial(now, req).expect("accepted");
    net.pump();
    id
}

/// A far end's request inside the dialog our INVITE `inv` made (its To tag is `tag`).
fn in_dialog(inv: &Request, method: Method, tag: &str, from: &str) -> Message {
    let mut r = Request::new(
        method.clone(),
        Uri::parse("sip:switchboard@10.0.0.100:5060").unwrap(),
    );
    r.headers.push(
        HeaderName::Via,
        format!("SIP/2.0/UDP {from};branch=z9hG4bK-far-{method}"),
    );
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(
        HeaderName::From,
        format!(
            "{};tag={tag}",
            inv.headers.get_str(&HeaderName::To).unwrap()
        ),
    );
    r.headers.push(
        HeaderName::To,
        inv.headers.get_str(&HeaderName::From).unwrap().to_owned(),
    );
    r.headers.push(
        HeaderName::CallId,
        inv.headers.get_str(&HeaderName::CallId).unwrap().to_owned(),
    );
    r.headers.push(HeaderName::CSeq, format!("1 {method}"));
    Message::Request(r)
}

fn closed(net: &Net, id: &str) -> crate::cdr::CdrClose {
    net.closed
        .iter()
        .find(|(c, _)| c == id)
        .map(|(_, c)| c.clone())
        .expect("the record is closed")
}

#[test]
fn the_customer_is_dialled_first_then_queued_to_an_agent() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(
            ClickTarget::Queue("sales".into()),
            ClickOrder::CustomerFirst,
        ),
    );
    // The customer's INVITE goes to the carrier, the trunk's way, showing the display number.
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    assert_eq!(inv.uri.user.as_deref(), Some("013800000001"));
    assert_eq!(
        inv.headers.from().unwrap().uri.user.as_deref(),
        Some("01088880000")
    );
    assert_eq!(net.opened[0].call_type, CallType::ClickToDial);
    assert_eq!(net.opened[0].customer_number, "+8613800000001");
    assert_eq!(net.ep.live_calls()[0].state, "dialing");
    assert!(
        requests_any(&net.take(PHONE_A)).is_empty(),
        "no agent is rung before the customer answers"
    );
    net.deliver_msg(CARRIER, &phone_response(&inv, 180, "cust", CARRIER, None));
    net.advance(Duration::from_secs(3));
    net.deliver_msg(
        CARRIER,
        &phone_response(&inv, 200, "cust", CARRIER, Some(&sdp(7000, "sendrecv"))),
    );
    assert_eq!(requests(&net.take(CARRIER), Method::Ack).len(), 1);
    // The customer is queued, and the agent's phone rings with the customer's number.
    let agent_inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    assert_eq!(
        agent_inv.headers.from().unwrap().uri.user.as_deref(),
        Some("+8613800000001"),
        "the agent sees who they will talk to"
    );
    assert_eq!(net.status("8001"), AgentStatus::Ringing);
    net.advance(Duration::from_secs(2));
    net.deliver_msg(
        PHONE_A,
        &phone_response(
            &agent_inv,
            200,
            "agent",
            PHONE_A,
            Some(&sdp(8000, "sendrecv")),
        ),
    );
    let customer_session = net.sessions[0];
    let agent_session = *net.sessions.last().unwrap();
    assert!(net.bridged(customer_session, agent_session));
    assert_eq!(net.status("8001"), AgentStatus::Talking);
    assert_eq!(net.ep.live_calls()[0].state, "talking");
    net.advance(Duration::from_secs(30));
    // The customer hangs up: the agent gets BYE, and the record is complete.
    net.deliver_msg(CARRIER, &in_dialog(&inv, Method::Bye, "cust", CARRIER));
    assert_eq!(responses(&net.take(CARRIER))[0].code, 200);
    assert_eq!(requests(&net.take(PHONE_A), Method::Bye).len(), 1);
    let close = closed(&net, &id);
    assert_eq!(close.result, CallResult::Answered);
    assert_eq!(close.agent.as_deref(), Some("8001"));
    assert_eq!(close.queue.as_deref(), Some("sales"));
    assert_eq!(close.flow.as_deref(), Some("click-to-dial"));
    assert_eq!(
        close.flow_version, None,
        "a flow made here has no file version"
    );
    assert!(
        close.ivr_trail.iter().any(|s| s.contains("queue")),
        "{:?}",
        close.ivr_trail
    );
    assert_eq!(close.talk_ms, Some(30_000));
    assert_eq!(close.hangup_by, Some(crate::cdr::HangupBy::Caller));
    let legs: Vec<_> = net
        .legs
        .iter()
        .filter(|l| l.ended_at_ms.is_some())
        .collect();
    assert_eq!(legs.len(), 2, "{legs:?}");
    let customer = legs.iter().find(|l| l.kind == LegKind::Outbound).unwrap();
    assert_eq!(customer.peer, "+8613800000001");
    assert!(customer.answered_at_ms.is_some());
    assert_eq!(customer.trunk.as_deref(), Some("carrier"));
    let agent_leg = legs.iter().find(|l| l.kind == LegKind::Agent).unwrap();
    assert_eq!(agent_leg.agent.as_deref(), Some("8001"));
    assert!(agent_leg.answered_at_ms.is_some());
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn a_named_flow_starts_with_the_requests_variables() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(ClickTarget::Flow("main".into()), ClickOrder::CustomerFirst),
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(
        CARRIER,
        &phone_response(&inv, 200, "cust", CARRIER, Some(&sdp(7000, "sendrecv"))),
    );
    let live = net.ep.live_calls();
    assert_eq!(live[0].kind, "click_to_dial");
    assert_eq!(live[0].flow.as_deref(), Some("main"));
    assert!(requests(&net.take(PHONE_A), Method::Invite).len() == 1);
    net.ep.hang_up_call(net.now, &id).unwrap();
    net.pump();
    assert_eq!(requests(&net.take(CARRIER), Method::Bye).len(), 1);
    assert_eq!(requests(&net.take(PHONE_A), Method::Cancel).len(), 0);
}

#[test]
fn a_busy_customer_ends_the_call_before_any_agent_is_rung() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(
            ClickTarget::Queue("sales".into()),
            ClickOrder::CustomerFirst,
        ),
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(CARRIER, &phone_response(&inv, 486, "cust", CARRIER, None));
    assert_eq!(requests(&net.take(CARRIER), Method::Ack).len(), 1);
    assert!(requests_any(&net.take(PHONE_A)).is_empty());
    let close = closed(&net, &id);
    assert_eq!(close.missed_reason, Some(MissedReason::CustomerBusy));
    assert_eq!(close.result, MissedReason::CustomerBusy.result());
    assert_eq!(net.status("8001"), AgentStatus::Idle);
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn a_customer_who_does_not_answer_is_cancelled_at_the_ring_timeout() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(
            ClickTarget::Queue("sales".into()),
            ClickOrder::CustomerFirst,
        ),
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(CARRIER, &phone_response(&inv, 180, "cust", CARRIER, None));
    net.advance(Duration::from_secs(19));
    assert!(requests(&net.take(CARRIER), Method::Cancel).is_empty());
    net.advance(Duration::from_secs(1));
    assert_eq!(requests(&net.take(CARRIER), Method::Cancel).len(), 1);
    let close = closed(&net, &id);
    assert_eq!(close.missed_reason, Some(MissedReason::CustomerNoAnswer));
    let leg = net
        .legs
        .iter()
        .rev()
        .find(|l| l.kind == LegKind::Outbound)
        .unwrap();
    assert_eq!(leg.reason, Some(MissedReason::CustomerNoAnswer));
}

#[test]
fn requests_that_cannot_be_dialled_are_refused_with_their_reason() {
    let mut net = click_net();
    use ClickOrder::{AgentFirst, CustomerFirst};
    let queue = |q: &str| ClickTarget::Queue(q.into());
    let cases = [
        (
            ClickTarget::Flow("nope".into()),
            CustomerFirst,
            CUSTOMER,
            "UnknownFlow",
        ),
        (queue("nope"), CustomerFirst, CUSTOMER, "UnknownQueue"),
        (
            ClickTarget::Agent("nope".into()),
            CustomerFirst,
            CUSTOMER,
            "UnknownAgent",
        ),
        (queue("sales"), AgentFirst, CUSTOMER, "AgentFirstNeedsAgent"),
        (queue("sales"), CustomerFirst, "13900000000", "Blacklisted"),
        (queue("sales"), CustomerFirst, "12ab", "InvalidNumber"),
    ];
    for (target, order, customer, want) in cases {
        let mut r = request(target, order);
        r.customer = customer.into();
        let now = net.now;
        let got = net.ep.click_to_dial(now, r).unwrap_err();
        assert!(
            format!("{got:?}").starts_with(want),
            "{customer}: {got:?}, not {want}"
        );
    }
    net.pump();
    assert!(net.opened.is_empty(), "a refused request makes no record");
    assert!(requests_any(&net.take(CARRIER)).is_empty());
}

#[test]
fn agent_first_rings_the_agent_then_the_customer_and_bridges_them() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(ClickTarget::Agent("8001".into()), ClickOrder::AgentFirst),
    );
    assert!(
        requests_any(&net.take(CARRIER)).is_empty(),
        "the agent first"
    );
    let agent_inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    assert_eq!(
        agent_inv.headers.from().unwrap().uri.user.as_deref(),
        Some("+8613800000001")
    );
    assert_eq!(
        net.status("8001"),
        AgentStatus::Talking,
        "no queue call is offered meanwhile"
    );
    net.deliver_msg(
        PHONE_A,
        &phone_response(
            &agent_inv,
            200,
            "agent",
            PHONE_A,
            Some(&sdp(8000, "sendrecv")),
        ),
    );
    assert_eq!(requests(&net.take(PHONE_A), Method::Ack).len(), 1);
    assert!(
        net.commands
            .iter()
            .any(|c| matches!(c, Command::Play { repeat: true, .. })),
        "the agent hears ringback"
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    assert_eq!(inv.uri.user.as_deref(), Some("013800000001"));
    net.advance(Duration::from_secs(4));
    net.deliver_msg(
        CARRIER,
        &phone_response(&inv, 200, "cust", CARRIER, Some(&sdp(7000, "sendrecv"))),
    );
    assert!(net.bridged(net.sessions[0], net.sessions[1]));
    net.advance(Duration::from_secs(10));
    // The agent hangs up.
    net.deliver_msg(
        PHONE_A,
        &in_dialog(&agent_inv, Method::Bye, "agent", PHONE_A),
    );
    assert_eq!(requests(&net.take(CARRIER), Method::Bye).len(), 1);
    let close = closed(&net, &id);
    assert_eq!(close.result, CallResult::Answered);
    assert_eq!(close.agent.as_deref(), Some("8001"));
    assert_eq!(
        close.talk_ms,
        Some(10_000),
        "talk starts when the customer answers"
    );
    assert_eq!(net.opened[0].call_type, CallType::ClickToDial);
    let kinds: Vec<LegKind> = net
        .legs
        .iter()
        .filter(|l| l.ended_at_ms.is_some())
        .map(|l| l.kind)
        .collect();
    assert!(kinds.contains(&LegKind::Agent) && kinds.contains(&LegKind::Outbound));
    assert_ne!(net.status("8001"), AgentStatus::Talking);
    assert_eq!(net.ep.active_calls(), 0);
}

#[test]
fn agent_first_with_a_customer_who_does_not_answer_lets_the_agent_go() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(ClickTarget::Agent("8001".into()), ClickOrder::AgentFirst),
    );
    let agent_inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_A,
        &phone_response(
            &agent_inv,
            200,
            "agent",
            PHONE_A,
            Some(&sdp(8000, "sendrecv")),
        ),
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(CARRIER, &phone_response(&inv, 180, "cust", CARRIER, None));
    net.advance(Duration::from_secs(20));
    assert_eq!(requests(&net.take(CARRIER), Method::Cancel).len(), 1);
    assert_eq!(requests(&net.take(PHONE_A), Method::Bye).len(), 1);
    let close = closed(&net, &id);
    assert_eq!(close.missed_reason, Some(MissedReason::CustomerNoAnswer));
    assert_ne!(net.status("8001"), AgentStatus::Talking);
    // A second agent-first call is not refused as "on a call".
    net.advance(Duration::from_secs(60));
    let now = net.now;
    assert!(net
        .ep
        .click_to_dial(
            now,
            request(ClickTarget::Agent("8001".into()), ClickOrder::AgentFirst)
        )
        .is_ok());
}

#[test]
fn customer_first_to_an_agent_keeps_the_agent_from_queue_calls_and_needs_them_free() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(ClickTarget::Agent("8001".into()), ClickOrder::CustomerFirst),
    );
    assert_eq!(
        net.status("8001"),
        AgentStatus::Talking,
        "reserved for this callback from the start"
    );
    // A second request for the same agent meanwhile is refused.
    let now = net.now;
    assert!(matches!(
        net.ep.click_to_dial(
            now,
            request(ClickTarget::Agent("8001".into()), ClickOrder::CustomerFirst)
        ),
        Err(ClickError::AgentNotAvailable { .. })
    ));
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(
        CARRIER,
        &phone_response(&inv, 200, "cust", CARRIER, Some(&sdp(7000, "sendrecv"))),
    );
    let agent_inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
    net.deliver_msg(
        PHONE_A,
        &phone_response(
            &agent_inv,
            200,
            "agent",
            PHONE_A,
            Some(&sdp(8000, "sendrecv")),
        ),
    );
    net.advance(Duration::from_secs(5));
    net.deliver_msg(CARRIER, &in_dialog(&inv, Method::Bye, "cust", CARRIER));
    let close = closed(&net, &id);
    assert_eq!(close.result, CallResult::Answered);
    assert_eq!(close.talk_ms, Some(5_000));
    assert_ne!(
        net.status("8001"),
        AgentStatus::Talking,
        "released at the end"
    );
    // Signed out, the agent cannot be asked for.
    net.advance(Duration::from_secs(10));
    let now = net.now;
    net.ep.agent_logout(now, &"8001".into()).unwrap();
    assert!(matches!(
        net.ep.click_to_dial(
            now,
            request(ClickTarget::Agent("8001".into()), ClickOrder::AgentFirst)
        ),
        Err(ClickError::AgentNotAvailable { .. })
    ));
}

#[test]
fn a_call_hung_up_while_the_customer_rings_is_a_customer_no_answer() {
    let mut net = click_net();
    let id = dial(
        &mut net,
        request(ClickTarget::Flow("main".into()), ClickOrder::CustomerFirst),
    );
    let inv = requests(&net.take(CARRIER), Method::Invite).remove(0);
    net.deliver_msg(CARRIER, &phone_response(&inv, 180, "cust", CARRIER, None));
    let now = net.now;
    net.ep.hang_up_call(now, &id).unwrap();
    net.pump();
    assert_eq!(requests(&net.take(CARRIER), Method::Cancel).len(), 1);
    let close = closed(&net, &id);
    assert_eq!(close.missed_reason, Some(MissedReason::CustomerNoAnswer));
    let now = net.now;
    assert!(matches!(
        net.ep.click_to_dial(now, {
            let mut r = request(ClickTarget::Flow("main".into()), ClickOrder::CustomerFirst);
            r.trunk = Some("nope".into());
            r
        }),
        Err(ClickError::UnknownTrunk { .. })
    ));
}
