//! Calls out through trunks: a desk phone dialling a customer, a flow's `dial` to a number, an
//! agent rung on their mobile.
//!
//! Every such leg is planned by [`crate::trunk::Trunks::plan_outbound`] first: the number is
//! normalized to E.164 and written the carrier's way, the outbound blacklist, the quota and the
//! channel cap are checked, and the display number (外显号) is chosen — fixed, the agent's own,
//! or by the customer's region. The carrier's digest challenge (401/407) on the INVITE is
//! answered once with the trunk's credentials. Channels and minutes are counted back when the
//! leg ends.
use super::*;
use crate::trunk::{OutboundPlan, OutboundRefusal, ReadChallenge};

/// The SIP answer a desk phone gets when its outbound call is refused before anything is sent.
pub(super) fn refusal_answer(r: &OutboundRefusal) -> (u16, &'static str) {
    match r {
        OutboundRefusal::InvalidNumber(_) => (484, "Address Incomplete"),
        OutboundRefusal::Blacklisted => (403, "Forbidden (outbound blacklist)"),
        OutboundRefusal::Arrears => (402, "Payment Required (trunk quota used up)"),
        OutboundRefusal::TrunkNumberDisabled { .. } => (403, "Forbidden (trunk number disabled)"),
        OutboundRefusal::NoTrunk | OutboundRefusal::TrunkDisabled | OutboundRefusal::Busy => {
            (503, "Service Unavailable (no trunk)")
        }
    }
}

/// Where a planned trunk leg goes, leaving from `local`: the carrier's address, and the
/// Request-URI with the callee the carrier's way.
pub(super) fn trunk_destination(plan: &OutboundPlan, local: SocketAddr) -> Option<(Target, Uri)> {
    let uri = Uri::parse(&format!("sip:{}@{}", plan.callee_wire, plan.address)).ok()?;
    let target = Target {
        transport: Transport::Udp,
        addr: plan.address,
        conn: None,
        local,
    };
    Some((target, uri))
}

/// Whether a dialled string is meant for the public network: a number of at least seven
/// digits (shorter ones are extensions and feature codes: unknown ones get 404, not a trunk).
pub(super) fn looks_like_number(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 7
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'))
}

impl Endpoint {
    /// Plan a call out to `dialled`; `agent` picks the agent's own display number when the
    /// trunk's policy says so.
    pub(super) fn plan_trunk_call(
        &mut self,
        now: Instant,
        dialled: &str,
        trunk: Option<&str>,
        agent: Option<&crate::acd::AgentId>,
    ) -> Result<OutboundPlan, OutboundRefusal> {
        let unix_ms = self.unix_ms(now);
        let agent_cid = agent.and_then(|a| self.acd.caller_id(a)).map(str::to_owned);
        self.call_cfg
            .trunk_plan
            .plan_outbound(dialled, trunk, agent_cid.as_deref(), unix_ms)
    }

    /// One outbound leg of `key` through the planned trunk: the Request-URI and To carry the
    /// callee the carrier's way, From the display number.
    pub(super) fn trunk_leg_planned(
        &mut self,
        key: CallKey,
        incoming: &Request,
        plan: &OutboundPlan,
    ) -> Option<LegId> {
        let a = self.calls.calls.get(&key)?.a;
        let (session, local) = {
            let l = self.calls.legs.get(&a)?;
            (l.session, l.target.local)
        };
        let (target, uri) = trunk_destination(plan, local)?;
        let leg_id =
            self.new_outbound(key, session, target, incoming, uri, &plan.callee_wire, &[])?;
        self.dress_trunk_leg(leg_id, plan);
        Some(leg_id)
    }

    /// Make an outbound leg a trunk leg: From and P-Asserted-Identity carry the display number,
    /// and the trunk's channel is counted until the leg ends.
    pub(super) fn dress_trunk_leg(&mut self, leg_id: LegId, plan: &OutboundPlan) {
        let domain = self.call_cfg.domain.clone();
        let Some(leg) = self.calls.legs.get_mut(&leg_id) else {
            return;
        };
        leg.trunk = Some(plan.trunk.clone());
        if let (Some(cid), Some(invite)) = (&plan.caller_id_wire, leg.out_invite.as_mut()) {
            let from = format!("<sip:{cid}@{domain}>;tag={}", leg.local_tag);
            invite.headers.set(HeaderName::From, from);
            invite.headers.push(
                HeaderName::Other("P-Asserted-Identity".into()),
                format!("<sip:{cid}@{domain}>"),
            );
        }
        if let Some(rec) = leg.record.as_mut() {
            rec.leg.caller_id = plan.caller_id.clone();
            rec.leg.trunk = Some(plan.trunk.clone());
        }
        self.call_cfg.trunk_plan.call_started(&plan.trunk);
        metrics::counter!("trunk_calls_total", "trunk" => plan.trunk.clone()).increment(1);
    }

    /// The carrier challenged our INVITE: send it again once with the trunk's credentials.
    /// False when there is nothing to answer with (then the challenge is a failure).
    pub(super) fn answer_trunk_challenge(
        &mut self,
        now: Instant,
        leg_id: LegId,
        resp: &Response,
    ) -> bool {
        let Some(leg) = self.calls.legs.get(&leg_id) else {
            return false;
        };
        if leg.auth_sent || !matches!(resp.code, 401 | 407) {
            return false;
        }
        let Some(trunk) = leg.trunk.clone() else {
            return false;
        };
        let Some(creds) = self.call_cfg.trunk_plan.credentials(&trunk).cloned() else {
            tracing::warn!(%trunk, "the carrier asks for credentials and the trunk has none");
            return false;
        };
        let Ok(challenge) = ReadChallenge::from_response(resp) else {
            return false;
        };
        let Some(mut invite) = leg.out_invite.clone() else {
            return false;
        };
        let cnonce = format!("{:016x}", self.tags.next_u64());
        let uri = invite.uri.to_string();
        let Ok((header, value)) = challenge.answer("INVITE", &uri, &creds, &cnonce, 1) else {
            return false;
        };
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1) + 1;
        invite
            .headers
            .set(HeaderName::CSeq, format!("{seq} INVITE"));
        invite.headers.remove_all(&HeaderName::Via);
        invite.headers.push(header, value);
        let target = leg.target;
        let addr = self.call_cfg.media_address;
        let host = if target.local.ip().is_unspecified() {
            SocketAddr::new(addr, target.local.port())
        } else {
            target.local
        };
        let via = format!(
            "SIP/2.0/{} {host};branch={};rport",
            target.transport,
            self.tx.new_branch()
        );
        invite
            .headers
            .0
            .insert(0, crate::sip::msg::Header::new(HeaderName::Via, via));
        let tx = self.tx.send_request(now, invite.clone(), target);
        let leg = self.calls.legs.get_mut(&leg_id).expect("exists");
        // An early dialog from a provisional answer to the challenged INVITE is not this
        // INVITE's: its answers come with a new To tag.
        if let Some(d) = leg.dialog.take() {
            self.calls.by_dialog.remove(d.id());
        }
        leg.acked_cseq = None;
        leg.auth_sent = true;
        leg.out_invite = Some(invite);
        leg.out_tx = Some(tx);
        leg.provisional_seen = false;
        self.calls.track_client(tx, leg_id, Purpose::Invite);
        tracing::debug!(%trunk, "answered the carrier's challenge");
        true
    }

    /// A trunk leg is over: its channel is free again and its talk time counts to the quota.
    pub(super) fn trunk_leg_ended(&mut self, now: Instant, leg_id: LegId, talk_ms: i64) {
        let Some(trunk) = self
            .calls
            .legs
            .get_mut(&leg_id)
            .and_then(|l| l.trunk.take())
        else {
            return;
        };
        let unix_ms = self.unix_ms(now);
        let seconds = (talk_ms.max(0) as u64).div_ceil(1000);
        self.call_cfg
            .trunk_plan
            .call_ended(&trunk, seconds, unix_ms);
    }
}
