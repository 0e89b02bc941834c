//! Sub-records (子话单) and call events: what each leg of a call did, for the call records
//! and for the customer's systems.
//!
//! A leg's record is written when the leg starts ringing out and again, complete, when it
//! ends ([`Event::CdrLeg`] is an upsert keyed by the leg id). Call events
//! ([`Event::CallEvent`]) follow the call as it goes: `inbound_ringing` when it arrives,
//! `outbound_ringing` when a leg we placed first rings, `answered` when a leg is answered,
//! `hangup` for each leg that ends and once for the call, and the shell adds `cdr_written`
//! once the main record is final. They are raised in the order they happen, so the outbox
//! delivers them in that order.
use super::*;
use crate::cdr::{CdrLeg, LegKind};
use crate::events::{CallEvent, CallEventKind};
use serde_json::json;

/// An open sub-record and what is known about how it will end.
#[derive(Debug)]
pub(super) struct LegRecord {
    pub leg: CdrLeg,
    /// The call it belongs to (the leg may be detached from it before it ends).
    pub key: CallKey,
    /// Why the leg was not answered, when that is known before it ends (the agent's ring
    /// time passed, the phone said busy).
    pub miss: Option<MissedReason>,
    /// `outbound_ringing` has been raised.
    pub rang: bool,
}

/// Why an unanswered leg failed, from its final response.
pub(super) fn miss_for_code(kind: LegKind, code: u16) -> MissedReason {
    match kind {
        LegKind::Agent => match code {
            486 | 600 | 603 => MissedReason::AgentRejected,
            _ => MissedReason::AgentNoAnswer,
        },
        _ => match code {
            486 | 600 | 603 => MissedReason::CustomerBusy,
            404 | 410 | 484 | 604 => MissedReason::InvalidNumber,
            408 | 480 | 487 => MissedReason::CustomerNoAnswer,
            _ => MissedReason::TrunkFailure,
        },
    }
}

impl Endpoint {
    /// A call event for the customer's systems.
    pub(super) fn call_event(
        &mut self,
        now: Instant,
        call_id: &str,
        kind: CallEventKind,
        data: serde_json::Value,
    ) {
        let at_ms = self.unix_ms(now);
        self.events.push_back(Event::CallEvent(CallEvent {
            kind,
            call_id: call_id.to_owned(),
            at_ms,
            data,
        }));
    }

    /// Open the sub-record of an outbound leg of `key` (ringing starts now).
    pub(super) fn open_leg_record(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        kind: LegKind,
        peer: String,
    ) {
        let Some(call_id) = self.calls.calls.get(&key).map(|c| c.cdr.call_id.clone()) else {
            return;
        };
        let started_at_ms = self.unix_ms(now);
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        let (agent, queue) = match &leg.agent {
            Some((a, q)) => (Some(a.0.clone()), q.as_ref().map(|q| q.0.clone())),
            None => (None, None),
        };
        let record = CdrLeg {
            leg_id: format!("{call_id}-{}", leg_id.0),
            call_id,
            kind,
            peer,
            started_at_ms,
            answered_at_ms: None,
            ended_at_ms: None,
            result: None,
            reason: None,
            agent,
            queue,
            hangup_by: None,
            caller_id: None,
            // A trunk leg is planned before its record opens: the trunk is known by now.
            trunk: leg.trunk.clone(),
        };
        self.events.push_back(Event::CdrLeg(record.clone()));
        leg.record = Some(LegRecord {
            leg: record,
            key,
            miss: None,
            rang: false,
        });
    }

    /// The leg's first provisional response: its phone rings.
    pub(super) fn leg_ringing(&mut self, now: Instant, leg_id: LegId) {
        let Some(rec) = self
            .calls
            .legs
            .get_mut(&leg_id)
            .and_then(|l| l.record.as_mut())
        else {
            return;
        };
        if rec.rang {
            return;
        }
        rec.rang = true;
        let data = leg_data(&rec.leg);
        let call_id = rec.leg.call_id.clone();
        self.call_event(now, &call_id, CallEventKind::OutboundRinging, data);
    }

    /// The leg was answered.
    pub(super) fn leg_answered(&mut self, now: Instant, leg_id: LegId) {
        let at = self.unix_ms(now);
        let Some(rec) = self
            .calls
            .legs
            .get_mut(&leg_id)
            .and_then(|l| l.record.as_mut())
        else {
            return;
        };
        if rec.leg.answered_at_ms.is_some() {
            return;
        }
        rec.leg.answered_at_ms = Some(at);
        let update = rec.leg.clone();
        let data = leg_data(&rec.leg);
        let call_id = rec.leg.call_id.clone();
        self.events.push_back(Event::CdrLeg(update));
        self.call_event(now, &call_id, CallEventKind::Answered, data);
    }

    /// Note why the leg is not being answered, before it ends (the first reason known wins).
    pub(super) fn leg_miss(&mut self, leg_id: LegId, reason: MissedReason) {
        if let Some(rec) = self
            .calls
            .legs
            .get_mut(&leg_id)
            .and_then(|l| l.record.as_mut())
        {
            rec.miss.get_or_insert(reason);
        }
    }

    /// Note a failed leg's final response as its reason.
    pub(super) fn leg_failed_with(&mut self, leg_id: LegId, code: u16) {
        let kind = self
            .calls
            .legs
            .get(&leg_id)
            .and_then(|l| l.record.as_ref())
            .map(|r| r.leg.kind);
        if let Some(kind) = kind {
            self.leg_miss(leg_id, miss_for_code(kind, code));
        }
    }

    /// The leg has ended: its trunk channel (if any) is free again, with the talk time
    /// counted to the quota, and its sub-record is closed.
    pub(super) fn finish_leg_record(&mut self, now: Instant, leg_id: LegId, by: HangupBy) {
        let at = self.unix_ms(now);
        let talk = self
            .calls
            .legs
            .get(&leg_id)
            .and_then(|l| l.record.as_ref())
            .and_then(|r| r.leg.answered_at_ms)
            .map_or(0, |answered| at - answered);
        self.trunk_leg_ended(now, leg_id, talk);
        self.close_leg_record(now, leg_id, by);
    }

    /// Close the leg's sub-record (once) while the leg itself goes on (it moves to another
    /// call): answered legs add their talk time to the call they leave.
    pub(super) fn close_leg_record(&mut self, now: Instant, leg_id: LegId, by: HangupBy) {
        let at = self.unix_ms(now);
        let Some(mut rec) = self
            .calls
            .legs
            .get_mut(&leg_id)
            .and_then(|l| l.record.take())
        else {
            return;
        };
        rec.leg.ended_at_ms = Some(at);
        rec.leg.hangup_by = Some(by);
        match rec.leg.answered_at_ms {
            Some(answered) => {
                rec.leg.result = Some(CallResult::Answered);
                // A click-to-dial call's first leg is the caller's side (its time includes
                // the IVR, or the agent's ringback): talk is on the legs it reaches.
                if let Some(c) = self.calls.calls.get_mut(&rec.key).filter(|c| c.a != leg_id) {
                    c.cdr.talk_ms += (at - answered).max(0);
                }
            }
            None => {
                let reason = rec.miss.unwrap_or(match rec.leg.kind {
                    LegKind::Agent => MissedReason::AgentNoAnswer,
                    _ => MissedReason::CustomerNoAnswer,
                });
                rec.leg.result = Some(reason.result());
                rec.leg.reason = Some(reason);
            }
        }
        let data = leg_data(&rec.leg);
        let call_id = rec.leg.call_id.clone();
        self.events.push_back(Event::CdrLeg(rec.leg));
        self.call_event(now, &call_id, CallEventKind::Hangup, data);
    }
}

/// A leg as call events describe it.
fn leg_data(leg: &CdrLeg) -> serde_json::Value {
    let mut data = json!({
        "leg_id": leg.leg_id,
        "leg_kind": leg.kind.code(),
        "peer": leg.peer,
    });
    let obj = data.as_object_mut().expect("an object");
    if let Some(a) = &leg.agent {
        obj.insert("agent".into(), json!(a));
    }
    if let Some(q) = &leg.queue {
        obj.insert("queue".into(), json!(q));
    }
    if let Some(by) = leg.hangup_by {
        obj.insert("hangup_by".into(), json!(by.code()));
    }
    if let Some(r) = leg.result {
        obj.insert("result".into(), json!(r.code()));
    }
    if let Some(r) = leg.reason {
        obj.insert("missed_reason".into(), json!(r.code()));
    }
    if let Some(c) = &leg.caller_id {
        obj.insert("caller_id".into(), json!(c));
    }
    data
}
