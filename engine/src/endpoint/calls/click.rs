//! Click-to-dial (点击拨号): a call the control interface starts, not a phone.
//!
//! **Customer first** (the website's "call me" button): the customer is dialled through a trunk
//! (the trunk's number rules, display number, blacklist, quota and channel cap apply, as for any
//! call out), and when they answer they run a flow — a published one by name, or a one-node flow
//! made here that queues them to a skill group or dials an agent. From then on the call is an
//! ordinary flow call whose caller is the customer: keys, queueing, agents, surveys, transfers.
//!
//! **Agent first** (the classic web callback): the agent's phone rings first; when the agent
//! answers, they hear ringback while the customer is dialled through the trunk, and the two are
//! bridged when the customer answers. The agent counts as on an outbound call from the start, so
//! the ACD offers them no queue call meanwhile.
//!
//! Either way the call's first leg is one we placed (we are its UAC): it plays the caller's role
//! in the call (its BYE is the caller hanging up; before it answers, ending the call CANCELs it).
//! The record is `click_to_dial`, outbound, with the customer in E.164, the display number as
//! the trunk number, and a sub-record for every leg.
use super::*;
use crate::acd::{AgentId, AnswerMode, QueueId};
use crate::ivr::model::{DialTarget, HangupCause, Node, NodeId, NodeKind, Template};
use crate::trunk::{OutboundPlan, OutboundRefusal};
use std::collections::BTreeMap;

/// What the customer is connected to once they answer (customer first), or who is rung first
/// (agent first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClickTarget {
    /// A published flow, by name.
    Flow(String),
    /// A skill group's queue.
    Queue(QueueId),
    /// One agent.
    Agent(AgentId),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClickOrder {
    /// Dial the customer, then run the flow (or queue, or agent).
    #[default]
    CustomerFirst,
    /// Ring the agent, then dial the customer and bridge them. The target must be an agent.
    AgentFirst,
}

/// A click-to-dial request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickToDial {
    /// The customer's number as typed (spaces, `+`, national forms are normalized).
    pub customer: String,
    pub target: ClickTarget,
    pub order: ClickOrder,
    /// The trunk to dial out through (`None`: the trunk plan's choice).
    pub trunk: Option<String>,
    /// Flow variables set before the flow starts (`vars.<name>` in templates).
    pub variables: BTreeMap<String, String>,
    /// How long the first party may ring (default: the configured ring timeout).
    pub ring_timeout: Option<Duration>,
}

/// Why a click-to-dial request was refused before anything was dialled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClickError {
    #[error("{number:?} is not a number that can be dialled")]
    InvalidNumber { number: String },
    #[error("the number is on the outbound blacklist")]
    Blacklisted,
    #[error("no published flow named {name:?}")]
    UnknownFlow { name: String },
    #[error("no skill group named {name:?}")]
    UnknownQueue { name: String },
    #[error("no agent with id {id:?}")]
    UnknownAgent { id: String },
    #[error(
        "agent {id} has no phone that can be rung now (not registered, or no trunk for a mobile)"
    )]
    AgentUnreachable { id: String },
    #[error("agent {id} is logged out or already on a call")]
    AgentNotAvailable { id: String },
    #[error("the agent-first order needs an agent as its target")]
    AgentFirstNeedsAgent,
    #[error("no trunk named {name:?}")]
    UnknownTrunk { name: String },
    #[error("no usable trunk: {reason}")]
    NoTrunk { reason: String },
    #[error("the trunk's quota for this period is used up")]
    OverQuota,
    #[error("every channel of the trunk is busy")]
    TrunkBusy,
    #[error("no SIP listener to place calls from")]
    NotListening,
}

impl ClickError {
    fn of_refusal(r: OutboundRefusal, number: &str) -> ClickError {
        match r {
            OutboundRefusal::InvalidNumber(_) => ClickError::InvalidNumber {
                number: number.to_owned(),
            },
            OutboundRefusal::Blacklisted => ClickError::Blacklisted,
            OutboundRefusal::Arrears => ClickError::OverQuota,
            OutboundRefusal::Busy => ClickError::TrunkBusy,
            r @ (OutboundRefusal::NoTrunk
            | OutboundRefusal::TrunkDisabled
            | OutboundRefusal::TrunkNumberDisabled { .. }) => ClickError::NoTrunk {
                reason: r.to_string(),
            },
        }
    }
}

/// A click-to-dial call's own state, beside the ordinary call state.
#[derive(Debug)]
pub(super) struct Click {
    order: ClickOrder,
    /// The customer's number as requested, and the trunk asked for: agent first, the customer
    /// is planned again when the agent answers (channels and quota may have gone meanwhile).
    customer: String,
    trunk: Option<String>,
    /// The agent asked for (their display number, their ACD state).
    agent: Option<AgentId>,
    /// What legs to the customer are built from: From is ours (the display number replaces it
    /// when the trunk has one), never the customer's own number.
    customer_template: Request,
    /// Agent first: the customer's leg once placed.
    customer_leg: Option<LegId>,
    /// The variables the flow starts with.
    variables: BTreeMap<String, String>,
    ring_timeout: Duration,
    /// Why the customer was not reached, for the main record.
    customer_miss: Option<MissedReason>,
}

impl Click {
    /// Why the call missed, when the click-to-dial side knows: the customer (or, agent first,
    /// the agent) was not reached — also when the call was cut off while that leg still rang.
    pub(super) fn missed_reason(&self, first_answered: bool) -> Option<MissedReason> {
        self.customer_miss.or_else(|| {
            (!first_answered).then_some(match self.order {
                ClickOrder::CustomerFirst => MissedReason::CustomerNoAnswer,
                ClickOrder::AgentFirst => MissedReason::AgentNoAnswer,
            })
        })
    }
}

/// The name the made-up flows run under (in the record's `flow` and trail).
const CLICK_FLOW: &str = "click-to-dial";

/// A one-node flow: queue to `queue`, or dial `target`; every other way ends the call.
fn direct_flow(first: NodeKind) -> Flow {
    let name = match &first {
        NodeKind::Queue { .. } => "queue",
        _ => "agent",
    };
    Flow {
        name: CLICK_FLOW.to_owned(),
        // Made here, not from a file: no content hash (the record has no `flow_version`).
        version: String::new(),
        start: NodeId(0),
        nodes: vec![
            Node {
                name: name.to_owned(),
                line: 0,
                kind: first,
            },
            Node {
                name: "end".to_owned(),
                line: 0,
                kind: NodeKind::Hangup {
                    cause: HangupCause::Normal,
                },
            },
        ],
        calendars: BTreeMap::new(),
        file: "(click-to-dial)".to_owned(),
    }
}

impl Endpoint {
    /// Where a click-to-dial call's legs leave from: the UDP listener.
    pub fn set_originate_from(&mut self, local: SocketAddr) {
        self.call_cfg.originate_from = Some(local);
    }

    /// Start a click-to-dial call; its record id comes back at once, and the call goes on as
    /// its legs answer (call events, [`Endpoint::live_calls`]).
    pub fn click_to_dial(&mut self, now: Instant, req: ClickToDial) -> Result<String, ClickError> {
        let local = self
            .call_cfg
            .originate_from
            .ok_or(ClickError::NotListening)?;
        if req.order == ClickOrder::AgentFirst && !matches!(req.target, ClickTarget::Agent(_)) {
            return Err(ClickError::AgentFirstNeedsAgent);
        }
        // The target first: a request for an unknown flow dials nobody.
        let (flow, callee_label) = match &req.target {
            ClickTarget::Flow(name) => match self.flows.0.get(name) {
                Some(f) => (Some(f.clone()), name.clone()),
                None => return Err(ClickError::UnknownFlow { name: name.clone() }),
            },
            ClickTarget::Queue(q) => {
                let Some(queue) = self.acd.acd.queue(q) else {
                    return Err(ClickError::UnknownQueue { name: q.0.clone() });
                };
                let c = queue.config();
                let music = self.call_cfg.prompts.get("hold").map(|_| "hold".to_owned());
                let end = NodeId(1);
                let kind = NodeKind::Queue {
                    queue: q.0.clone(),
                    priority: None,
                    max_wait: c.max_wait,
                    announce_every: c.announce_every,
                    music,
                    exit_key: None,
                    after_agent: None,
                    timeout: end,
                    exit: end,
                    no_agents: end,
                    full: end,
                    agent_unavailable: None,
                };
                (Some(Arc::new(direct_flow(kind))), format!("queue:{}", q.0))
            }
            ClickTarget::Agent(id) => {
                let Some(agent) = self.acd.acd.agent(id) else {
                    return Err(ClickError::UnknownAgent { id: id.0.clone() });
                };
                if req.order == ClickOrder::AgentFirst {
                    (None, format!("agent:{}", id.0))
                } else {
                    let target = match &agent.config().answer_mode {
                        AnswerMode::DeskPhone { accounts } => accounts
                            .iter()
                            .find(|a| !self.registrar.lookup(a, self.last_unix).is_empty())
                            .map(|a| DialTarget::Extension(Template(a.clone()))),
                        AnswerMode::Mobile { number } if !self.call_cfg.trunks.is_empty() => {
                            Some(DialTarget::Number {
                                number: Template(number.clone()),
                                trunk: None,
                            })
                        }
                        _ => None,
                    };
                    let Some(target) = target else {
                        return Err(ClickError::AgentUnreachable { id: id.0.clone() });
                    };
                    let end = NodeId(1);
                    let kind = NodeKind::Dial {
                        target,
                        ring_timeout: self.call_cfg.ring_timeout,
                        answered: end,
                        no_answer: end,
                        busy: end,
                        failed: end,
                    };
                    (Some(Arc::new(direct_flow(kind))), format!("agent:{}", id.0))
                }
            }
        };
        let agent = match &req.target {
            ClickTarget::Agent(a) => Some(a.clone()),
            _ => None,
        };
        if let Some(a) = &agent {
            // The agent is asked for by name: they must be signed in and free. Rung without
            // warning (customer first), not on a break either.
            use crate::acd::AgentStatus;
            let status = self.acd.acd.agent(a).map(|x| x.state().status());
            let free = match req.order {
                ClickOrder::CustomerFirst => {
                    matches!(status, Some(AgentStatus::Idle | AgentStatus::Busy))
                }
                ClickOrder::AgentFirst => matches!(
                    status,
                    Some(AgentStatus::Idle | AgentStatus::Busy | AgentStatus::Break(_))
                ),
            };
            if !free {
                return Err(ClickError::AgentNotAvailable { id: a.0.clone() });
            }
        }
        if let Some(t) = &req.trunk {
            if !self.call_cfg.trunks.iter().any(|x| x.name == *t) {
                return Err(ClickError::UnknownTrunk { name: t.clone() });
            }
        }
        // The customer's leg: planned now, so a refusal answers the request.
        let plan = self
            .plan_trunk_call(now, &req.customer, req.trunk.as_deref(), agent.as_ref())
            .map_err(|r| ClickError::of_refusal(r, &req.customer))?;
        let ring_timeout = req.ring_timeout.unwrap_or(self.call_cfg.ring_timeout);
        // Agent first: the agent's phone (the most recently registered contact of their first
        // registered desk-phone account, or their mobile through the trunk).
        let agent_first = match (&req.order, &agent) {
            (ClickOrder::AgentFirst, Some(a)) => {
                Some(self.agent_first_target(now, a, req.trunk.as_deref())?)
            }
            _ => None,
        };
        let key = CallKey(self.calls.next());
        let started_ms = self.unix_ms(now);
        let call_id = format!("{:016x}{:016x}", self.tags.next_u64(), self.tags.next_u64());
        // The request every leg is built from: the customer calls the target.
        let domain = self.call_cfg.domain.clone();
        let template = {
            let mut r = Request::new(
                Method::Invite,
                Uri::parse(&format!("sip:click-to-dial@{domain}")).expect("a well-formed URI"),
            );
            r.headers.push(
                HeaderName::From,
                format!(
                    "<sip:{}@{domain}>;tag={}",
                    plan.callee_e164,
                    self.tags.next()
                ),
            );
            r.headers
                .push(HeaderName::To, format!("<sip:click-to-dial@{domain}>"));
            r.headers.push(HeaderName::MaxForwards, "70");
            r
        };
        let customer_template = {
            let mut r = template.clone();
            r.headers.set(
                HeaderName::From,
                format!("<sip:switchboard@{domain}>;tag={}", self.tags.next()),
            );
            r
        };
        let unreachable = || ClickError::AgentUnreachable {
            id: agent.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
        };
        let (a, a_kind, a_peer) = match &agent_first {
            None => {
                let (target, uri) = outbound::trunk_destination(&plan, local).ok_or_else(|| {
                    ClickError::InvalidNumber {
                        number: req.customer.clone(),
                    }
                })?;
                let a = self.first_leg(target, uri, &customer_template, &plan.callee_wire);
                self.dress_trunk_leg(a, &plan);
                (a, LegKind::Outbound, plan.callee_e164.clone())
            }
            Some(AgentPhone::Contact(b)) => {
                let target = Target {
                    transport: b.transport,
                    addr: b.source,
                    conn: b.conn,
                    local: b.local,
                };
                let uri = NameAddr::parse(&b.contact)
                    .map(|n| n.uri)
                    .or_else(|_| Uri::parse(&b.contact))
                    .map_err(|_| unreachable())?;
                let a = self.first_leg(target, uri, &template, &b.aor);
                (a, LegKind::Agent, b.aor.clone())
            }
            Some(AgentPhone::Mobile(mobile)) => {
                let (target, uri) =
                    outbound::trunk_destination(mobile, local).ok_or_else(unreachable)?;
                let a = self.first_leg(target, uri, &template, &mobile.callee_wire);
                self.dress_trunk_leg(a, mobile);
                (a, LegKind::Agent, mobile.callee_e164.clone())
            }
        };
        {
            let leg = self.calls.legs.get_mut(&a).expect("just made");
            leg.call = Some(key);
            // Only a template for the legs this call places: with no server transaction, it is
            // never answered as an INVITE of ours.
            leg.invite = Some(template);
        }
        let session = self.calls.legs[&a].session;
        self.events.push_back(Event::OpenMedia {
            id: session,
            near: None,
        });
        let deadline = now + ring_timeout;
        self.calls.arm(deadline, key, TimerKey::Ring);
        let open = CdrOpen {
            call_id: call_id.clone(),
            call_type: CallType::ClickToDial,
            direction: cdr::Direction::Outbound,
            customer_number: plan.callee_e164.clone(),
            trunk_number: plan.caller_id.clone(),
            service_number: None,
            started_at_ms: started_ms,
        };
        self.events.push_back(Event::CdrOpen(open));
        let caller_id = plan.caller_id.clone();
        let customer = plan.callee_e164.clone();
        let agent_first = agent_first.is_some();
        self.calls.calls.insert(
            key,
            Call {
                kind: if agent_first {
                    Kind::Bridge
                } else {
                    Kind::Flow
                },
                a,
                forks: Vec::new(),
                winner: None,
                fork_codes: Vec::new(),
                ring_deadline: Some(deadline),
                answered: false,
                caller: customer.clone(),
                callee: callee_label.clone(),
                flow_def: flow,
                flow: None,
                bye_reason: None,
                queue: None,
                cdr: CdrDraft {
                    call_id: call_id.clone(),
                    started_ms,
                    answered_ms: None,
                    ring_ms: None,
                    recording: None,
                    recording_stopping: false,
                    agent: agent.as_ref().map(|a| a.0.clone()),
                    wrap_up_ms: None,
                    queue: None,
                    queue_wait: Duration::ZERO,
                    talk_ms: 0,
                    queue_miss: None,
                    caller_id: caller_id.clone(),
                    far_end_hung_up: false,
                },
                click: Some(Box::new(Click {
                    order: req.order,
                    customer: req.customer.clone(),
                    trunk: req.trunk.clone(),
                    agent: agent.clone(),
                    customer_template,
                    customer_leg: None,
                    variables: req.variables,
                    ring_timeout,
                    customer_miss: None,
                })),
            },
        );
        if let Some(a) = &agent {
            // The agent is on this call from now on: no queue call is offered meanwhile.
            if let Err(e) =
                self.acd
                    .acd
                    .outbound_started(a, crate::acd::CallId(key.0), Some(&customer), now)
            {
                tracing::warn!(agent = %a, error = %e, "click-to-dial: the agent's call not counted");
            }
            self.acd_pump(now);
        }
        self.open_leg_record(now, key, a, a_kind, a_peer);
        if let Some(rec) = self.calls.legs.get_mut(&a).and_then(|l| l.record.as_mut()) {
            if a_kind == LegKind::Outbound {
                rec.leg.caller_id = caller_id;
            }
            rec.leg.agent = agent.as_ref().map(|a| a.0.clone());
        }
        tracing::info!(call = key.0, %customer, target = %callee_label, order = ?req.order, "click-to-dial call started");
        metrics::counter!("calls_total", "kind" => "click_to_dial").increment(1);
        Ok(call_id)
    }

    /// The call's first leg, to `target`: its INVITE, built from `template`, leaves once its RTP
    /// port is bound.
    fn first_leg(&mut self, target: Target, uri: Uri, template: &Request, callee: &str) -> LegId {
        let a = self.new_leg(Side::Outbound, target);
        let invite = self.outbound_invite(a, template, uri, callee, 70);
        if let Some(l) = self.calls.legs.get_mut(&a) {
            l.out_invite = Some(invite);
        }
        a
    }

    /// The phone an agent-first call rings.
    fn agent_first_target(
        &mut self,
        now: Instant,
        agent: &AgentId,
        trunk: Option<&str>,
    ) -> Result<AgentPhone, ClickError> {
        let unreachable = || ClickError::AgentUnreachable {
            id: agent.0.clone(),
        };
        let mode = self
            .acd
            .acd
            .agent(agent)
            .map(|a| a.config().answer_mode.clone())
            .ok_or_else(|| ClickError::UnknownAgent {
                id: agent.0.clone(),
            })?;
        match mode {
            AnswerMode::DeskPhone { accounts } => {
                for account in &accounts {
                    let newest = self
                        .registrar
                        .lookup(account, self.last_unix)
                        .into_iter()
                        .max_by_key(|b| b.expires_at)
                        .cloned();
                    if let Some(b) = newest {
                        return Ok(AgentPhone::Contact(Box::new(b)));
                    }
                }
                Err(unreachable())
            }
            AnswerMode::Mobile { number } if !self.call_cfg.trunks.is_empty() => self
                .plan_trunk_call(now, &number, trunk, Some(agent))
                .map(|p| AgentPhone::Mobile(Box::new(p)))
                .map_err(|_| unreachable()),
            _ => Err(unreachable()),
        }
    }

    /// Whether `leg_id` is the first leg of a click-to-dial call.
    pub(super) fn is_click_first_leg(&self, key: CallKey, leg_id: LegId) -> bool {
        self.calls
            .calls
            .get(&key)
            .is_some_and(|c| c.click.is_some() && c.a == leg_id)
    }

    /// The first leg answered (its 2xx is ACKed): the customer (customer first) or the agent
    /// (agent first). False: the answer had no usable audio and the call is ending.
    pub(super) fn click_first_answered(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        resp: &Response,
    ) {
        let Some((negotiated, answer)) = self.read_answer(leg_id, resp) else {
            tracing::warn!(
                call = key.0,
                "click-to-dial: the answer had no usable audio; hanging up"
            );
            self.leg_answered(now, leg_id);
            if let Some(c) = self.calls.calls.get_mut(&key) {
                c.answered = true;
            }
            self.end_call(now, key, EndReason::MediaFailure, None);
            return;
        };
        let session = self.settle_answer(leg_id, negotiated, answer);
        self.leg_answered(now, leg_id);
        let at = self.unix_ms(now);
        let Some(call) = self.calls.calls.get_mut(&key) else {
            return;
        };
        call.answered = true;
        call.ring_deadline = None;
        let Some(click) = call.click.as_mut() else {
            return;
        };
        match click.order {
            ClickOrder::CustomerFirst => {
                // The customer answered: the call is answered, and the flow starts.
                call.cdr.answered_ms = Some(at);
                let vars = click.variables.clone();
                let start = call
                    .flow_def
                    .take()
                    .map(|f| (f, call.caller.clone(), call.callee.clone()));
                tracing::info!(call = key.0, "click-to-dial: the customer answered");
                if let Some((flow, caller, called)) = start {
                    let info = CallInfo {
                        caller,
                        called,
                        vars,
                    };
                    self.start_flow(now, key, flow, info);
                }
            }
            ClickOrder::AgentFirst => {
                // The agent answered: they hear ringback while the customer is dialled.
                let ring_timeout = click.ring_timeout;
                let (customer, trunk, agent) = (
                    click.customer.clone(),
                    click.trunk.clone(),
                    click.agent.clone(),
                );
                let template = click.customer_template.clone();
                tracing::info!(
                    call = key.0,
                    "click-to-dial: the agent answered; dialling the customer"
                );
                if let Some(p) = self.call_cfg.prompts.get("ringback") {
                    self.events.push_back(Event::Media(Command::Play {
                        id: session,
                        prompts: vec![p],
                        repeat: true,
                        token: 0,
                    }));
                }
                // Planned again: channels and quota may have gone while the agent's phone rang.
                let plan = match self.plan_trunk_call(
                    now,
                    &customer,
                    trunk.as_deref(),
                    agent.as_ref(),
                ) {
                    Ok(p) => p,
                    Err(r) => {
                        tracing::info!(call = key.0, refusal = %r, "click-to-dial: the customer cannot be dialled now");
                        self.click_customer_missed(now, key, r.missed_reason());
                        return;
                    }
                };
                let Some(l) = self.trunk_leg_planned(key, &template, &plan) else {
                    self.click_customer_missed(now, key, MissedReason::TrunkFailure);
                    return;
                };
                self.open_leg_record(now, key, l, LegKind::Outbound, plan.callee_e164.clone());
                if let Some(rec) = self.calls.legs.get_mut(&l).and_then(|x| x.record.as_mut()) {
                    rec.leg.caller_id = plan.caller_id.clone();
                }
                let deadline = now + ring_timeout;
                if let Some(c) = self.calls.calls.get_mut(&key) {
                    c.forks = vec![l];
                    c.ring_deadline = Some(deadline);
                    if let Some(click) = c.click.as_mut() {
                        click.customer_leg = Some(l);
                    }
                }
                self.calls.arm(deadline, key, TimerKey::Ring);
            }
        }
    }

    /// A leg of a click-to-dial call failed before answering: the first leg (the customer or
    /// the agent), or the customer's leg of an agent-first call. True when handled here.
    pub(super) fn click_leg_failed(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        code: u16,
    ) -> bool {
        let Some(call) = self.calls.calls.get(&key) else {
            return false;
        };
        let Some(click) = call.click.as_ref() else {
            return false;
        };
        let first = call.a == leg_id;
        let customer_fork = click.customer_leg == Some(leg_id) && call.winner.is_none();
        if !first && !customer_fork {
            return false;
        }
        let kind = if first && click.order == ClickOrder::AgentFirst {
            LegKind::Agent
        } else {
            LegKind::Outbound
        };
        let miss = records::miss_for_code(kind, code);
        self.leg_failed_with(leg_id, code);
        self.finish_leg_record(now, leg_id, HangupBy::Callee);
        if let Some(l) = self.calls.legs.get_mut(&leg_id) {
            // The INVITE has its final answer: nothing to CANCEL.
            l.cancelled = true;
        }
        if customer_fork {
            if let Some(c) = self.calls.calls.get_mut(&key) {
                c.forks.retain(|f| *f != leg_id);
            }
            if let Some(l) = self.calls.legs.get_mut(&leg_id) {
                l.call = None;
            }
            self.close_media(leg_id);
        }
        self.click_customer_missed(now, key, miss);
        true
    }

    /// The customer (or, agent first, the agent) was not reached: the call ends with `miss`.
    fn click_customer_missed(&mut self, now: Instant, key: CallKey, miss: MissedReason) {
        if let Some(click) = self
            .calls
            .calls
            .get_mut(&key)
            .and_then(|c| c.click.as_mut())
        {
            click.customer_miss = Some(miss);
        }
        let reason = match miss {
            MissedReason::CustomerBusy | MissedReason::AgentRejected => EndReason::Busy,
            MissedReason::CustomerNoAnswer | MissedReason::AgentNoAnswer => EndReason::NoAnswer,
            _ => EndReason::Unavailable,
        };
        self.end_call(now, key, reason, None);
    }

    /// The ring timeout of a click-to-dial call: the first leg, or the customer's leg of an
    /// agent-first call, rang too long. True when handled here.
    pub(super) fn click_ring_timeout(&mut self, now: Instant, key: CallKey, at: Instant) -> bool {
        let Some(call) = self.calls.calls.get(&key) else {
            return false;
        };
        let Some(click) = call.click.as_ref() else {
            return false;
        };
        if call.ring_deadline != Some(at) || call.winner.is_some() {
            return true;
        }
        let (leg, miss) = if !call.answered {
            let miss = match click.order {
                ClickOrder::CustomerFirst => MissedReason::CustomerNoAnswer,
                ClickOrder::AgentFirst => MissedReason::AgentNoAnswer,
            };
            (Some(call.a), miss)
        } else if click.order == ClickOrder::AgentFirst {
            (call.forks.first().copied(), MissedReason::CustomerNoAnswer)
        } else {
            // A flow's own dialling: the flow's timers handle it.
            return false;
        };
        tracing::info!(
            call = key.0,
            "click-to-dial: no answer within the ring timeout"
        );
        if let Some(l) = leg {
            self.leg_miss(l, miss);
        }
        self.click_customer_missed(now, key, miss);
        true
    }
}

/// An agent's phone for an agent-first call.
enum AgentPhone {
    Contact(Box<crate::registrar::Binding>),
    Mobile(Box<OutboundPlan>),
}
