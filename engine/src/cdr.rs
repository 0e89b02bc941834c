//! Call detail records (通话记录): the typed vocabulary of a call's main record and its legs.
//!
//! A call has one main record (主话单), opened when the call arrives ([`CdrOpen`]) and closed when it
//! ends ([`CdrClose`]), and one sub-record (子话单, [`CdrLeg`]) per leg to an agent, a transfer target, a
//! third-party system or an outbound number. The store writes them (`crate::store`); this module only
//! defines what they hold, so that the interpreter, the call actors, the API and reports share one
//! meaning for every value.
//!
//! ## Stable codes
//! Every enum stored in a record has a `code()`: snake_case text written to the database and sent to the
//! customer's systems. Codes are a public contract: a code is never renamed or reused; new variants get
//! new codes. `label(Lang)` is what a person reads (zh/en), and may be reworded at any time.
//!
//! ## Call result and missed-call reason
//! Two separate fields, as the contact-center seed requires (DOMAIN.md, "Call records"): the result
//! says *whether* the call was served, the reason says *why not*. Since the seed's 2023-11 rule,
//! the system-side refusals (blacklisted caller, disabled trunk number, arrears, an inbound route that
//! did not match or did not complete) all share one result, [`CallResult::SystemNotAnswered`], and are
//! told apart only by [`MissedReason`]. [`MissedReason::result`] is the one place that mapping lives.
//!
//! ## Times
//! Wall-clock instants are unix milliseconds (`i64`), handed in by the runtime: nothing here reads a
//! clock.
//!
//! ## The record as integrators receive it
//! [`to_json`] is the one JSON shape of a stored record: the `data` of the `cdr_written` webhook
//! event and what the HTTP API returns. Its keys are snake_case and, like the codes, a contract:
//! keys are added, never renamed or removed. Every key is always present; `null` means unknown or
//! does not apply (`ended_at_ms`, `result` and the durations are `null` while the call is up).
//! Enum fields hold their stable codes, never labels. Times are unix milliseconds; the durations
//! are computed for the reader:
//!
//! - `duration_ms`: from `started_at_ms` to `ended_at_ms`;
//! - `ring_ms`: from `ring_at_ms` to the answer, or to the end when never answered;
//! - `talk_ms`: the ACD's talk time summed over answered legs when it gave one, else from the
//!   answer to the end;
//! - per leg, `ring_ms` from its start (a leg rings from the moment it is placed) to its answer or
//!   end, `talk_ms` from its answer to its end, `duration_ms` from start to end.
//!
//! `satisfaction` lists `{"question", "score"}` in the order given; `inputs` lists `{"name",
//! "value"}` with sensitive values already masked; `legs` are ordered by start. `marked` says
//! whether someone marked the record for follow-up (标记); `mark` then holds the optional `note`,
//! `marked_by` (the API token's id) and `marked_at_ms`, and is `null` otherwise. An answered
//! inbound call, served by agent 8001 on its second offer:
//!
//! ```json
//! {
//!   "call_id": "c-1", "call_type": "inbound", "direction": "inbound",
//!   "customer_number": "13800000001", "trunk_number": "02188880000", "service_number": "4000",
//!   "caller_id": null,
//!   "started_at_ms": 1700000000000, "ring_at_ms": 1700000020000,
//!   "answered_at_ms": 1700000025000, "ended_at_ms": 1700000095000,
//!   "duration_ms": 95000, "ring_ms": 5000, "talk_ms": 70000,
//!   "result": "answered", "missed_reason": null, "hangup_by": "caller",
//!   "agent": "8001", "queue": "sales", "queue_wait_ms": 12000, "wrap_up_ms": 30000,
//!   "satisfaction": [{"question": 1, "score": 5}],
//!   "flow": "main", "flow_version": "9f86d081884c7d65",
//!   "ivr_trail": ["main:menu→1", "main:sales→answered_then_hangup"],
//!   "inputs": [{"name": "id_card", "value": "11**************34"}],
//!   "recording_path": "data/recordings/c-1.wav", "recording_duration_ms": 70000,
//!   "marked": false, "mark": null,
//!   "legs": [
//!     {"leg_id": "l-1", "kind": "agent", "peer": "8002", "agent": "8002", "queue": "sales",
//!      "caller_id": null, "trunk": null, "started_at_ms": 1700000008000, "answered_at_ms": null,
//!      "ended_at_ms": 1700000020000, "duration_ms": 12000, "ring_ms": 12000, "talk_ms": null,
//!      "result": "not_answered", "reason": "agent_no_answer", "hangup_by": "system"},
//!     {"leg_id": "l-2", "kind": "agent", "peer": "8001", "agent": "8001", "queue": "sales",
//!      "caller_id": null, "trunk": null, "started_at_ms": 1700000020000,
//!      "answered_at_ms": 1700000025000, "ended_at_ms": 1700000095000, "duration_ms": 75000, "ring_ms": 5000, "talk_ms": 70000,
//!      "result": "answered", "reason": null, "hangup_by": "caller"}
//!   ]
//! }
//! ```
use serde_json::{json, Value};
use std::fmt;

/// The language of a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    Zh,
    En,
}

/// Defines a fieldless enum with a stable code and zh/en labels per variant, plus `ALL`, `code()`,
/// `label()`, `from_code()` and a `Display` that prints the code.
macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = ($code:literal, $zh:literal, $en:literal), )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code stored in the database and sent to integrations; never changes.
            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// What a person reads.
            pub fn label(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $(
                        ($name::$variant, Lang::Zh) => $zh,
                        ($name::$variant, Lang::En) => $en,
                    )+
                }
            }

            /// The variant with this code; `None` for an unknown code (e.g. a row written by a newer
            /// version).
            pub fn from_code(code: &str) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

coded_enum! {
    /// Call type (通话类型): how the call came to exist.
    pub enum CallType {
        /// A customer called a service number.
        Inbound = ("inbound", "呼入", "Inbound"),
        /// An agent or the system called a customer.
        Outbound = ("outbound", "外呼", "Outbound"),
        /// Between two of our own phones (accounts, agents).
        Internal = ("internal", "内部通话", "Internal"),
        /// Started by the click-to-dial API: the customer is dialled first, then enters a flow.
        ClickToDial = ("click_to_dial", "点击拨号", "Click-to-dial"),
    }
}

coded_enum! {
    /// Call direction (呼叫类型), seen from the contact center.
    pub enum Direction {
        Inbound = ("inbound", "呼入", "Inbound"),
        Outbound = ("outbound", "呼出", "Outbound"),
    }
}

coded_enum! {
    /// Call result (通话结果): whether the call was served.
    ///
    /// "Answered" means a person (or a system standing in for one) was connected: an agent or an
    /// extension for inbound calls, a third-party system reached through a `bridge` node, the customer
    /// for outbound calls. The IVR itself answering the call to play prompts does not make it
    /// answered: a caller who hangs up in the menu is [`CallResult::NotAnswered`] with
    /// [`MissedReason::HungUpInIvr`].
    pub enum CallResult {
        /// 接通: a party was connected.
        Answered = ("answered", "接通", "Answered"),
        /// 未接通: the caller or the callee side did not pick up, or the caller gave up (in the IVR, in
        /// the queue), or no agent could take the call.
        NotAnswered = ("not_answered", "未接通", "Not answered"),
        /// 系统未应答: the system refused the call before any routing could serve it: blacklisted
        /// caller, disabled trunk number, arrears, inbound route not matched or not completed.
        SystemNotAnswered = ("system_not_answered", "系统未应答", "System not answered"),
        /// 呼叫失败: a failure on our side or the carrier's (trunk failure, a crash repaired at
        /// start-up).
        Failed = ("failed", "呼叫失败", "Failed"),
    }
}

coded_enum! {
    /// Missed-call reason (未接原因): why a call that was not answered was not. Empty (`None`) on
    /// answered calls.
    pub enum MissedReason {
        /// 客户号码黑名单: the caller is on the inbound blacklist.
        Blacklisted = ("blacklisted", "客户号码黑名单", "Customer number blacklisted"),
        /// 中继号码停用: the dialled trunk number (or service number) is switched off.
        TrunkNumberDisabled = ("trunk_number_disabled", "中继号码停用", "Trunk number disabled"),
        /// 欠费: the account or trunk is over its credit or quota.
        Arrears = ("arrears", "欠费", "Arrears"),
        /// 呼入路由未完成: a route matched but the caller hung up before it finished routing (e.g.
        /// within the first seconds, before the flow played anything).
        InboundRouteNotCompleted = ("inbound_route_not_completed", "呼入路由未完成", "Inbound route not completed"),
        /// 呼入路由未匹配: no service number or flow for the dialled number.
        InboundRouteNotMatched = ("inbound_route_not_matched", "呼入路由未匹配", "Inbound route not matched"),
        /// IVR中挂机: the caller hung up while in the flow (menu, prompt, input).
        HungUpInIvr = ("hung_up_in_ivr", "IVR中挂机", "Hung up in IVR"),
        /// 排队放弃: the caller hung up, or left by the exit key, while waiting in a queue.
        AbandonedInQueue = ("abandoned_in_queue", "排队中放弃", "Abandoned in queue"),
        /// 排队超时: the queue's maximum wait passed.
        QueueTimeout = ("queue_timeout", "排队超时", "Queue timeout"),
        /// 队列已满: the queue refused the caller.
        QueueFull = ("queue_full", "队列已满", "Queue full"),
        /// 无座席在线: nobody in the skill group was signed in.
        NoAgentOnline = ("no_agent_online", "无座席在线", "No agent online"),
        /// 座席未接听: the offered agent's phone rang out.
        AgentNoAnswer = ("agent_no_answer", "座席未接听", "Agent did not answer"),
        /// 座席拒接: the agent rejected the call or the phone was busy.
        AgentRejected = ("agent_rejected", "座席拒接", "Agent rejected"),
        /// 客户未接听 (outbound): the customer's phone rang out.
        CustomerNoAnswer = ("customer_no_answer", "客户未接听", "Customer did not answer"),
        /// 客户忙 (outbound).
        CustomerBusy = ("customer_busy", "客户忙", "Customer busy"),
        /// 空号 (outbound): the number does not exist.
        InvalidNumber = ("invalid_number", "空号", "Invalid number"),
        /// 中继故障: the carrier failed the call (5xx, no response).
        TrunkFailure = ("trunk_failure", "中继故障", "Trunk failure"),
        /// 系统故障: our own failure, including a record left open by a crash and closed at start-up.
        SystemFailure = ("system_failure", "系统故障", "System failure"),
        /// 外呼黑名单: the dialled customer number is on the outbound blacklist (`blacklist.outbound`).
        OutboundBlacklisted = ("outbound_blacklisted", "外呼号码黑名单", "Outbound number blacklisted"),
    }
}

impl MissedReason {
    /// The call result this reason implies.
    pub fn result(self) -> CallResult {
        use MissedReason::*;
        match self {
            Blacklisted
            | TrunkNumberDisabled
            | Arrears
            | InboundRouteNotCompleted
            | InboundRouteNotMatched
            | OutboundBlacklisted => CallResult::SystemNotAnswered,
            HungUpInIvr | AbandonedInQueue | QueueTimeout | QueueFull | NoAgentOnline
            | AgentNoAnswer | AgentRejected | CustomerNoAnswer | CustomerBusy | InvalidNumber => {
                CallResult::NotAnswered
            }
            TrunkFailure | SystemFailure => CallResult::Failed,
        }
    }
}

coded_enum! {
    /// Who ended the call (挂机方).
    pub enum HangupBy {
        /// The party that placed the call (the customer on inbound calls).
        Caller = ("caller", "主叫挂机", "Caller"),
        /// The party that was called (an agent on inbound calls, the customer on outbound calls).
        Callee = ("callee", "被叫挂机", "Callee"),
        /// Switchboard: a flow's `hangup` node, a timeout, a failure, a shutdown.
        System = ("system", "系统挂机", "System"),
    }
}

coded_enum! {
    /// What a sub-record's leg was for.
    pub enum LegKind {
        /// Offered to an agent (from a queue or a direct dial).
        Agent = ("agent", "座席", "Agent"),
        /// A transfer to another agent, group or number.
        Transfer = ("transfer", "转接", "Transfer"),
        /// A `bridge` node's third-party system (转第三方系统).
        ThirdParty = ("third_party", "第三方系统", "Third-party system"),
        /// A call out through a trunk.
        Outbound = ("outbound", "外呼", "Outbound"),
    }
}

/// Masks a sensitive input for storage and display: the first two and the last two characters stay,
/// every other character becomes `*` (`110101199003071234` → `11**************34`); a value of four
/// characters or fewer is all `*`. Counts characters, not bytes, and keeps the length, as the seeds'
/// `10**************10` does.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 2 || i >= n - 2 { c } else { '*' })
        .collect()
}

/// The separator between a flow and a node in an IVR trail entry.
pub const TRAIL_FLOW_SEP: char = ':';
/// The separator between a node and the exit it left by.
pub const TRAIL_EXIT_SEP: char = '→';

/// One IVR trail entry (IVR轨迹), one per node visit, in order.
///
/// Written `flow:node→exit` when the caller left the node by a named exit (`main:menu→1`), and
/// `flow:node` for the node the call was in when it ended (or one with no exits, such as `hangup`). The
/// flow is named on every entry because a `goto`/`subflow` moves the caller between flows. Flow,
/// node and exit names never contain `:` or `→` (they are plain names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailStep {
    pub flow: String,
    pub node: String,
    pub exit: Option<String>,
}

impl TrailStep {
    /// Reads an entry written by `Display`; `None` for text without a `flow:` part.
    pub fn parse(entry: &str) -> Option<TrailStep> {
        let (flow, rest) = entry.split_once(TRAIL_FLOW_SEP)?;
        let (node, exit) = match rest.split_once(TRAIL_EXIT_SEP) {
            Some((node, exit)) => (node, Some(exit.to_owned())),
            None => (rest, None),
        };
        Some(TrailStep {
            flow: flow.to_owned(),
            node: node.to_owned(),
            exit,
        })
    }
}

impl fmt::Display for TrailStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{TRAIL_FLOW_SEP}{}", self.flow, self.node)?;
        if let Some(exit) = &self.exit {
            write!(f, "{TRAIL_EXIT_SEP}{exit}")?;
        }
        Ok(())
    }
}

/// The main record as opened when a call arrives (the INVITE is accepted for processing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrOpen {
    /// The engine's call id (uuid-like); the record's key.
    pub call_id: String,
    pub call_type: CallType,
    pub direction: Direction,
    /// The customer's number (the caller on inbound calls, the callee on outbound ones), trimmed.
    pub customer_number: String,
    /// The carrier-side number the call came in on or goes out through (中继号码).
    pub trunk_number: Option<String>,
    /// The service number dialled (服务号), when the call reached one.
    pub service_number: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
}

/// What closing the main record adds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdrClose {
    /// Unix milliseconds.
    pub ended_at_ms: i64,
    /// When the customer's or agent's phone started ringing (outbound/agent legs), if it did.
    pub ring_at_ms: Option<i64>,
    /// When a party was connected; `Some` exactly when `result` is [`CallResult::Answered`].
    pub answered_at_ms: Option<i64>,
    pub result: CallResult,
    /// `None` when answered.
    pub missed_reason: Option<MissedReason>,
    /// The IVR trail, entries written as [`TrailStep`] displays them.
    pub ivr_trail: Vec<String>,
    /// Collected inputs, in order: (node or variable name, value). Values of inputs marked sensitive
    /// are already [`mask`]ed: the record never holds them in clear.
    pub inputs: Vec<(String, String)>,
    /// The flow the call entered, and its version (content hash).
    pub flow: Option<String>,
    pub flow_version: Option<String>,
    pub hangup_by: Option<HangupBy>,
    pub recording_path: Option<String>,
    pub recording_duration_ms: Option<i64>,
    /// The agent (座席) who served the call last, if one did.
    pub agent: Option<String>,
    /// The skill group (技能组) the call was last queued to.
    pub queue: Option<String>,
    /// Time spent waiting in queues, summed over every queue the call entered.
    pub queue_wait_ms: Option<i64>,
    /// Talk time with agents or dialled parties, summed over the answered legs.
    pub talk_ms: Option<i64>,
    /// The wrap-up (话后整理) the serving agent was given after the call.
    pub wrap_up_ms: Option<i64>,
    /// Satisfaction answers (满意度): (question number, score), in the order given.
    pub satisfaction: Vec<(u8, u8)>,
    /// The display number (外显号) shown to the customer on an outbound call.
    pub caller_id: Option<String>,
}

impl Default for CallResult {
    /// A record closed with nothing known about it failed.
    fn default() -> Self {
        CallResult::Failed
    }
}

/// A sub-record (子话单): one leg of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrLeg {
    /// The leg's own id (uuid-like).
    pub leg_id: String,
    /// The main record's [`CdrOpen::call_id`].
    pub call_id: String,
    pub kind: LegKind,
    /// Who the leg reached: an agent id, an extension, a number or a SIP URI.
    pub peer: String,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    /// `None` while the leg is up.
    pub ended_at_ms: Option<i64>,
    pub result: Option<CallResult>,
    pub reason: Option<MissedReason>,
    /// The agent the leg rang (agent legs).
    pub agent: Option<String>,
    /// The skill group that offered the call (agent legs from a queue).
    pub queue: Option<String>,
    /// Who ended the leg, once it has ended.
    pub hangup_by: Option<HangupBy>,
    /// The display number shown on the leg (outbound legs through a trunk).
    pub caller_id: Option<String>,
    /// The trunk an outbound leg went out through: its talk time counts to that trunk's quota,
    /// and the quota is seeded from these at start-up.
    pub trunk: Option<String>,
}

impl CdrLeg {
    /// From start to end; `None` while the leg is up.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.ended_at_ms? - self.started_at_ms)
    }

    /// Ring time: a leg rings from the moment it is placed until it is answered, or until it ends
    /// when never answered; `None` while it is still ringing.
    pub fn ring_ms(&self) -> Option<i64> {
        Some(self.answered_at_ms.or(self.ended_at_ms)? - self.started_at_ms)
    }

    /// Talk time: from answer to end; `None` when never answered or still up.
    pub fn talk_ms(&self) -> Option<i64> {
        Some(self.ended_at_ms? - self.answered_at_ms?)
    }
}

/// The record as integrators receive it; the shape is described in the module docs.
pub fn to_json(row: &crate::store::CdrRow) -> Value {
    let o = &row.open;
    let c = row.close.as_ref();
    let inputs: Vec<Value> = c
        .map(|c| c.inputs.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let satisfaction: Vec<Value> = c
        .map(|c| c.satisfaction.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|&(question, score)| json!({ "question": question, "score": score }))
        .collect();
    json!({
        "call_id": o.call_id,
        "call_type": o.call_type.code(),
        "direction": o.direction.code(),
        "customer_number": o.customer_number,
        "trunk_number": o.trunk_number,
        "service_number": o.service_number,
        "caller_id": c.and_then(|c| c.caller_id.as_deref()),
        "started_at_ms": o.started_at_ms,
        "ring_at_ms": c.and_then(|c| c.ring_at_ms),
        "answered_at_ms": c.and_then(|c| c.answered_at_ms),
        "ended_at_ms": c.map(|c| c.ended_at_ms),
        "duration_ms": row.duration_ms(),
        "ring_ms": row.ring_ms(),
        "talk_ms": row.talk_ms(),
        "result": c.map(|c| c.result.code()),
        "missed_reason": c.and_then(|c| c.missed_reason).map(MissedReason::code),
        "hangup_by": c.and_then(|c| c.hangup_by).map(HangupBy::code),
        "agent": c.and_then(|c| c.agent.as_deref()),
        "queue": c.and_then(|c| c.queue.as_deref()),
        "queue_wait_ms": c.and_then(|c| c.queue_wait_ms),
        "wrap_up_ms": c.and_then(|c| c.wrap_up_ms),
        "satisfaction": satisfaction,
        "flow": c.and_then(|c| c.flow.as_deref()),
        "flow_version": c.and_then(|c| c.flow_version.as_deref()),
        "ivr_trail": c.map(|c| c.ivr_trail.as_slice()).unwrap_or_default(),
        "inputs": inputs,
        "recording_path": c.and_then(|c| c.recording_path.as_deref()),
        "recording_duration_ms": c.and_then(|c| c.recording_duration_ms),
        "marked": row.mark.is_some(),
        "mark": row.mark.as_ref().map(|m| json!({
            "note": m.note,
            "marked_by": m.by,
            "marked_at_ms": m.at_ms,
        })),
        "legs": row.legs.iter().map(leg_json).collect::<Vec<_>>(),
    })
}

/// One sub-record in [`to_json`]'s `legs`.
fn leg_json(leg: &CdrLeg) -> Value {
    json!({
        "leg_id": leg.leg_id,
        "kind": leg.kind.code(),
        "peer": leg.peer,
        "agent": leg.agent,
        "queue": leg.queue,
        "caller_id": leg.caller_id,
        "trunk": leg.trunk,
        "started_at_ms": leg.started_at_ms,
        "answered_at_ms": leg.answered_at_ms,
        "ended_at_ms": leg.ended_at_ms,
        "duration_ms": leg.duration_ms(),
        "ring_ms": leg.ring_ms(),
        "talk_ms": leg.talk_ms(),
        "result": leg.result.map(CallResult::code),
        "reason": leg.reason.map(MissedReason::code),
        "hangup_by": leg.hangup_by.map(HangupBy::code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The codes are a contract with databases and integrations: this table is the only place a test
    /// names them, and it must never change except by adding rows.
    #[test]
    fn codes_are_stable() {
        let call_types: Vec<&str> = CallType::ALL.iter().map(|v| v.code()).collect();
        assert_eq!(
            call_types,
            ["inbound", "outbound", "internal", "click_to_dial"]
        );
        let directions: Vec<&str> = Direction::ALL.iter().map(|v| v.code()).collect();
        assert_eq!(directions, ["inbound", "outbound"]);
        let results: Vec<&str> = CallResult::ALL.iter().map(|v| v.code()).collect();
        assert_eq!(
            results,
            ["answered", "not_answered", "system_not_answered", "failed"]
        );
        let reasons: Vec<(&str, &str)> = MissedReason::ALL
            .iter()
            .map(|v| (v.code(), v.result().code()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("blacklisted", "system_not_answered"),
                ("trunk_number_disabled", "system_not_answered"),
                ("arrears", "system_not_answered"),
                ("inbound_route_not_completed", "system_not_answered"),
                ("inbound_route_not_matched", "system_not_answered"),
                ("hung_up_in_ivr", "not_answered"),
                ("abandoned_in_queue", "not_answered"),
                ("queue_timeout", "not_answered"),
                ("queue_full", "not_answered"),
                ("no_agent_online", "not_answered"),
                ("agent_no_answer", "not_answered"),
                ("agent_rejected", "not_answered"),
                ("customer_no_answer", "not_answered"),
                ("customer_busy", "not_answered"),
                ("invalid_number", "not_answered"),
                ("trunk_failure", "failed"),
                ("system_failure", "failed"),
                ("outbound_blacklisted", "system_not_answered"),
            ]
        );
        let hangups: Vec<&str> = HangupBy::ALL.iter().map(|v| v.code()).collect();
        assert_eq!(hangups, ["caller", "callee", "system"]);
        let legs: Vec<&str> = LegKind::ALL.iter().map(|v| v.code()).collect();
        assert_eq!(legs, ["agent", "transfer", "third_party", "outbound"]);
    }

    fn check<T: Copy + PartialEq + fmt::Debug + fmt::Display>(
        all: &[T],
        code: fn(T) -> &'static str,
        label: fn(T, Lang) -> &'static str,
        from_code: fn(&str) -> Option<T>,
    ) {
        let mut seen = HashSet::new();
        for &v in all {
            let c = code(v);
            assert!(seen.insert(c), "duplicate code {c}");
            assert!(
                !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c} is not snake_case"
            );
            assert_eq!(from_code(c), Some(v));
            assert_eq!(v.to_string(), c);
            assert!(!label(v, Lang::Zh).is_empty() && !label(v, Lang::En).is_empty());
            assert_ne!(label(v, Lang::Zh), label(v, Lang::En));
        }
        assert_eq!(from_code("no_such_code"), None);
        assert_eq!(from_code(""), None);
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        check(
            CallType::ALL,
            CallType::code,
            CallType::label,
            CallType::from_code,
        );
        check(
            Direction::ALL,
            Direction::code,
            Direction::label,
            Direction::from_code,
        );
        check(
            CallResult::ALL,
            CallResult::code,
            CallResult::label,
            CallResult::from_code,
        );
        check(
            MissedReason::ALL,
            MissedReason::code,
            MissedReason::label,
            MissedReason::from_code,
        );
        check(
            HangupBy::ALL,
            HangupBy::code,
            HangupBy::label,
            HangupBy::from_code,
        );
        check(
            LegKind::ALL,
            LegKind::code,
            LegKind::label,
            LegKind::from_code,
        );
    }

    #[test]
    fn the_seed_labels_are_kept() {
        assert_eq!(MissedReason::Blacklisted.label(Lang::Zh), "客户号码黑名单");
        assert_eq!(
            MissedReason::TrunkNumberDisabled.label(Lang::Zh),
            "中继号码停用"
        );
        assert_eq!(MissedReason::Arrears.label(Lang::Zh), "欠费");
        assert_eq!(
            MissedReason::InboundRouteNotCompleted.label(Lang::Zh),
            "呼入路由未完成"
        );
        assert_eq!(
            MissedReason::InboundRouteNotMatched.label(Lang::Zh),
            "呼入路由未匹配"
        );
        assert_eq!(CallResult::SystemNotAnswered.label(Lang::Zh), "系统未应答");
        assert_eq!(CallResult::Answered.label(Lang::Zh), "接通");
        assert_eq!(CallResult::NotAnswered.label(Lang::Zh), "未接通");
    }

    /// The record of the module docs' example.
    fn documented_record() -> crate::store::CdrRow {
        let t0 = 1_700_000_000_000;
        let leg = |leg_id: &str, agent: &str, started: i64| CdrLeg {
            leg_id: leg_id.into(),
            call_id: "c-1".into(),
            kind: LegKind::Agent,
            peer: agent.into(),
            started_at_ms: t0 + started,
            answered_at_ms: None,
            ended_at_ms: None,
            result: None,
            reason: None,
            agent: Some(agent.into()),
            queue: Some("sales".into()),
            hangup_by: None,
            caller_id: None,
            trunk: None,
        };
        crate::store::CdrRow {
            open: CdrOpen {
                call_id: "c-1".into(),
                call_type: CallType::Inbound,
                direction: Direction::Inbound,
                customer_number: "13800000001".into(),
                trunk_number: Some("02188880000".into()),
                service_number: Some("4000".into()),
                started_at_ms: t0,
            },
            close: Some(CdrClose {
                ended_at_ms: t0 + 95_000,
                ring_at_ms: Some(t0 + 20_000),
                answered_at_ms: Some(t0 + 25_000),
                result: CallResult::Answered,
                missed_reason: None,
                ivr_trail: vec![
                    "main:menu→1".into(),
                    "main:sales→answered_then_hangup".into(),
                ],
                inputs: vec![("id_card".into(), mask("110101199003071234"))],
                flow: Some("main".into()),
                flow_version: Some("9f86d081884c7d65".into()),
                hangup_by: Some(HangupBy::Caller),
                recording_path: Some("data/recordings/c-1.wav".into()),
                recording_duration_ms: Some(70_000),
                agent: Some("8001".into()),
                queue: Some("sales".into()),
                queue_wait_ms: Some(12_000),
                talk_ms: None,
                wrap_up_ms: Some(30_000),
                satisfaction: vec![(1, 5)],
                caller_id: None,
            }),
            legs: vec![
                CdrLeg {
                    ended_at_ms: Some(t0 + 20_000),
                    result: Some(CallResult::NotAnswered),
                    reason: Some(MissedReason::AgentNoAnswer),
                    hangup_by: Some(HangupBy::System),
                    ..leg("l-1", "8002", 8_000)
                },
                CdrLeg {
                    answered_at_ms: Some(t0 + 25_000),
                    ended_at_ms: Some(t0 + 95_000),
                    result: Some(CallResult::Answered),
                    hangup_by: Some(HangupBy::Caller),
                    ..leg("l-2", "8001", 20_000)
                },
            ],
            mark: None,
        }
    }

    /// The example in the module docs is what `to_json` produces, key for key: the docs are read
    /// by integrators, so they must not drift from the code.
    #[test]
    fn the_documented_json_is_what_integrators_receive() {
        let source = include_str!("cdr.rs");
        let example: String = source
            .lines()
            .skip_while(|l| l.trim() != "//! ```json")
            .skip(1)
            .take_while(|l| l.trim() != "//! ```")
            .map(|l| l.trim_start_matches("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let documented: Value = serde_json::from_str(&example).expect("the docs' example parses");
        assert_eq!(to_json(&documented_record()), documented);
    }

    #[test]
    fn json_of_an_open_call_has_every_key_with_nulls() {
        let mut row = documented_record();
        let closed = to_json(&row);
        row.close = None;
        row.legs.truncate(1);
        row.legs[0] = CdrLeg {
            ended_at_ms: None,
            result: None,
            reason: None,
            hangup_by: None,
            ..row.legs[0].clone()
        };
        let open = to_json(&row);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&open), keys(&closed));
        for key in [
            "ended_at_ms",
            "duration_ms",
            "ring_ms",
            "talk_ms",
            "result",
            "agent",
        ] {
            assert_eq!(open[key], Value::Null, "{key}");
        }
        assert_eq!(open["satisfaction"], json!([]));
        assert_eq!(open["ivr_trail"], json!([]));
        // A leg still ringing has no ring time yet.
        let leg = &open["legs"][0];
        assert_eq!(keys(leg), keys(&closed["legs"][0]));
        assert_eq!(
            (&leg["ring_ms"], &leg["talk_ms"], &leg["duration_ms"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
    }

    #[test]
    fn the_acd_talk_time_wins_over_answer_to_end() {
        let mut row = documented_record();
        // Two answered legs (a transfer) talked 50 s in all, less than answer to end.
        row.close.as_mut().unwrap().talk_ms = Some(50_000);
        assert_eq!(to_json(&row)["talk_ms"], json!(50_000));
        // Nothing rang: no ring time, whatever else is known.
        row.close.as_mut().unwrap().ring_at_ms = None;
        assert_eq!(to_json(&row)["ring_ms"], Value::Null);
        // Unanswered: the ring lasts until the end.
        let close = row.close.as_mut().unwrap();
        close.ring_at_ms = Some(close.ended_at_ms - 7_000);
        close.answered_at_ms = None;
        close.talk_ms = None;
        assert_eq!(
            (
                to_json(&row)["ring_ms"].clone(),
                to_json(&row)["talk_ms"].clone()
            ),
            (json!(7_000), Value::Null)
        );
    }

    #[test]
    fn a_marked_record_says_so_with_its_note_author_and_time() {
        let mut row = documented_record();
        row.mark = Some(crate::store::marks::CdrMark {
            note: Some("回访".into()),
            by: "0123456789ab".into(),
            at_ms: 1_700_000_100_000,
        });
        let json = to_json(&row);
        assert_eq!(json["marked"], json!(true));
        assert_eq!(
            json["mark"],
            json!({"note": "回访", "marked_by": "0123456789ab", "marked_at_ms": 1_700_000_100_000_i64})
        );
    }

    #[test]
    fn masking_keeps_two_characters_each_side() {
        assert_eq!(mask("110101199003071234"), "11**************34");
        assert_eq!(mask("12345"), "12*45");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask("12"), "**");
        assert_eq!(mask(""), "");
        // Characters, not bytes: never splits a UTF-8 sequence.
        assert_eq!(mask("张三李四王五"), "张三**王五");
    }

    #[test]
    fn trail_entries_round_trip() {
        for text in ["main:menu→1", "main:goodbye", "support:ask_id→ok"] {
            let step = TrailStep::parse(text).unwrap();
            assert_eq!(step.to_string(), text);
        }
        assert_eq!(
            TrailStep::parse("main:menu→1"),
            Some(TrailStep {
                flow: "main".into(),
                node: "menu".into(),
                exit: Some("1".into())
            })
        );
        assert_eq!(TrailStep::parse("menu"), None);
    }
}
