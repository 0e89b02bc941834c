//! Calls in skill-group queues: the endpoint drives the [`crate::acd::Acd`] and carries out
//! what it decides with the caller's media (music on hold, announcements, the exit key) and
//! with outbound legs to the agents' phones.
//!
//! A flow's `queue` node enqueues the caller. Each [`Offer`] becomes outbound legs: one per
//! registered contact of the agent's desk-phone accounts, or one to the agent's mobile number
//! through a trunk. The legs are forks of the call like a `dial` node's, so answering,
//! cancelling and bridging are the call code's; the ACD is asked first when an agent answers
//! (its view wins: an answer after the offer was withdrawn is hung up). When every leg of an
//! agent has failed, the ACD hears why and offers the caller to the next agent.
//!
//! After every ACD input the endpoint runs [`Endpoint::acd_pump`], which drains events and
//! offers as the ACD's drive-loop contract asks.
use super::*;
use crate::acd::{
    Acd, AcdConfig, AgentConfig, AgentId, AnswerMode, CallId as AcdCall, EnqueueError,
    EnqueueRequest, Event as AcdEvent, Offer, OfferFailure, QueueConfig, QueueId,
    QueueOutcome as AcdOutcome, Refusal, StopReason,
};
use crate::cdr::LegKind;
use crate::ivr::interp::QueueOutcome;
use std::collections::BTreeMap;

/// How often scheduled sign-ins and sign-outs are checked.
const SCHEDULE_CHECK: Duration = Duration::from_secs(15);

/// Media tokens of the queue's own audio (never the flow's).
const MUSIC_TOKEN: u64 = 1 << 48;
const ANNOUNCE_TOKEN: u64 = (1 << 48) + 1;

/// Agents, skill groups and feature codes; part of [`CallSettings`].
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub acd: AcdConfig,
    pub queues: Vec<QueueConfig>,
    pub agents: Vec<AgentSettings>,
    /// Dialled from a desk phone with an agent's PIN appended: bind the phone to the agent and
    /// log the agent in.
    pub login_code: String,
    /// Dialled from a desk phone: log out the agent bound to it.
    pub logout_code: String,
    /// Seeds the ACD's random strategies.
    pub seed: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            acd: AcdConfig::default(),
            queues: Vec::new(),
            agents: Vec::new(),
            login_code: "0000".into(),
            logout_code: "0001".into(),
            seed: 0,
        }
    }
}

/// One agent as the call layer needs it.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub config: AgentConfig,
    pub pin: Option<String>,
    /// The trunk a mobile agent is rung through (`None`: the first trunk).
    pub mobile_trunk: Option<String>,
    /// Logged in when the engine starts.
    pub login_at_start: bool,
    /// Signed in and out by this weekly schedule (排班).
    pub schedule: Option<crate::acd::schedule::Schedule>,
    /// The agent's own display number (专属外显号) on calls out.
    pub caller_id: Option<String>,
}

/// The ACD and the phones it rings.
#[derive(Debug)]
pub(in crate::endpoint) struct AcdState {
    pub acd: Acd,
    /// Desk-phone accounts that ring for each agent (configured, or bound by feature code).
    phones: BTreeMap<AgentId, Vec<String>>,
    mobiles: BTreeMap<AgentId, (String, Option<String>)>,
    pins: BTreeMap<String, AgentId>,
    login_code: String,
    logout_code: String,
    pumping: bool,
    /// Agents or queues changed since the gauges were last set.
    gauges_stale: bool,
    /// Each agent's state and each queue's waiting count as last raised in an
    /// [`crate::events::AcdEvent`]: a change is raised once, whatever inputs led to it.
    raised_agents: BTreeMap<AgentId, crate::acd::AgentStatus>,
    raised_queues: BTreeMap<QueueId, usize>,
    /// Agents to log in at the first input (the core learns the time from its inputs).
    start_logins: Vec<AgentId>,
    /// Scheduled agents, with the shift state last acted on (`None`: not yet).
    schedules: Vec<(AgentId, crate::acd::schedule::Schedule, Option<bool>)>,
    next_schedule_check: Option<Instant>,
    caller_ids: BTreeMap<AgentId, String>,
}

impl AcdState {
    pub fn new(settings: &QueueSettings) -> AcdState {
        let mut acd = Acd::new(settings.acd.clone(), settings.seed);
        for q in &settings.queues {
            if let Err(e) = acd.add_queue(q.clone()) {
                tracing::warn!(error = %e, "skill group not added");
            }
        }
        let mut phones = BTreeMap::new();
        let mut mobiles = BTreeMap::new();
        let mut pins = BTreeMap::new();
        let mut start_logins = Vec::new();
        let mut schedules = Vec::new();
        let mut caller_ids = BTreeMap::new();
        for a in &settings.agents {
            let id = a.config.id.clone();
            match &a.config.answer_mode {
                AnswerMode::DeskPhone { accounts } => {
                    phones.insert(id.clone(), accounts.clone());
                }
                AnswerMode::Mobile { number } => {
                    mobiles.insert(id.clone(), (number.clone(), a.mobile_trunk.clone()));
                }
                AnswerMode::Softphone => {}
            }
            if let Some(pin) = &a.pin {
                pins.insert(pin.clone(), id.clone());
            }
            if let Err(e) = acd.add_agent(a.config.clone()) {
                tracing::warn!(error = %e, "agent not added");
                continue;
            }
            if a.login_at_start {
                start_logins.push(id.clone());
            }
            if let Some(c) = &a.caller_id {
                caller_ids.insert(id.clone(), c.clone());
            }
            if let Some(s) = &a.schedule {
                schedules.push((id, s.clone(), None));
            }
        }
        AcdState {
            acd,
            phones,
            mobiles,
            pins,
            login_code: settings.login_code.clone(),
            logout_code: settings.logout_code.clone(),
            pumping: false,
            gauges_stale: true,
            raised_agents: BTreeMap::new(),
            raised_queues: BTreeMap::new(),
            start_logins,
            schedules,
            next_schedule_check: None,
            caller_ids,
        }
    }

    /// Log in the agents configured to be logged in from the start.
    pub fn start(&mut self, now: Instant) {
        if !self.schedules.is_empty() && self.next_schedule_check.is_none() {
            self.next_schedule_check = Some(now);
        }
        if self.start_logins.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.start_logins) {
            if let Err(e) = self.acd.login(&id, now) {
                tracing::warn!(agent = %id, error = %e, "agent not logged in at start");
            }
        }
        // Start-up logins are not news to anyone.
        while self.acd.poll_event().is_some() {}
    }

    /// The agent whose desk phone `account` is, if any.
    pub fn agent_of_phone(&self, account: &str) -> Option<AgentId> {
        self.agent_of_account(account)
    }

    /// The agent's own display number.
    pub fn caller_id(&self, agent: &AgentId) -> Option<&str> {
        self.caller_ids.get(agent).map(String::as_str)
    }

    /// The agent a desk-phone account is bound to.
    fn agent_of_account(&self, account: &str) -> Option<AgentId> {
        self.phones
            .iter()
            .find(|(_, accounts)| accounts.iter().any(|a| a == account))
            .map(|(id, _)| id.clone())
    }
}

/// A caller's visit to a queue.
#[derive(Debug)]
pub(super) struct QueueVisit {
    pub queue: QueueId,
    pub exit_key: Option<char>,
    pub music: Option<Arc<Prompt>>,
    /// Waiting in the queue (not yet answered, not yet out).
    pub waiting: bool,
    /// Connected to this agent through the queue.
    pub agent: Option<AgentId>,
    /// When the caller entered the queue.
    pub entered: Instant,
}

/// A state an agent can be put in from outside (the agent's own choice or a supervisor's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentControl<'a> {
    Idle,
    Busy,
    /// An admin-defined break state, by name.
    Break(&'a str),
}

/// What a feature code asks.
pub(super) enum FeatureCode {
    Login(AgentId),
    Logout,
    /// A login with a PIN no agent has.
    BadPin,
}

impl Endpoint {
    /// Whether `callee`, dialled by `caller` (an account), is a feature code.
    pub(super) fn feature_code(&self, caller: &str, callee: &str) -> Option<FeatureCode> {
        if !self.accounts.contains_key(caller) {
            return None;
        }
        let st = &self.acd;
        if callee == st.logout_code {
            return Some(FeatureCode::Logout);
        }
        let pin = callee.strip_prefix(st.login_code.as_str())?;
        if pin.is_empty() {
            return None;
        }
        Some(match st.pins.get(pin) {
            Some(a) => FeatureCode::Login(a.clone()),
            None => FeatureCode::BadPin,
        })
    }

    /// Carry out a feature code dialled from `account`'s phone. True if it took effect.
    pub(super) fn run_feature_code(
        &mut self,
        now: Instant,
        account: &str,
        code: &FeatureCode,
    ) -> bool {
        match code {
            FeatureCode::Login(agent) => {
                match self.acd.acd.login(agent, now) {
                    Ok(()) | Err(crate::acd::AcdError::AlreadyLoggedIn { .. }) => {}
                    Err(e) => {
                        tracing::info!(%agent, error = %e, "agent login refused");
                        return false;
                    }
                }
                // The phone now rings for this agent only (before any offer is made).
                for (other, accounts) in self.acd.phones.iter_mut() {
                    if other != agent && accounts.iter().any(|a| a == account) {
                        accounts.retain(|a| a != account);
                        if accounts.is_empty() {
                            tracing::warn!(agent = %other, %account, "agent's only desk phone was taken by another agent's login");
                        }
                    }
                }
                self.acd.mobiles.remove(agent);
                let phones = self.acd.phones.entry(agent.clone()).or_default();
                if !phones.iter().any(|a| a == account) {
                    phones.push(account.to_owned());
                }
                tracing::info!(%agent, %account, "agent logged in from a desk phone");
                self.acd_pump(now);
                true
            }
            FeatureCode::Logout => {
                let Some(agent) = self.acd.agent_of_account(account) else {
                    return false;
                };
                match self.acd.acd.logout(&agent, now) {
                    Ok(()) => {
                        tracing::info!(%agent, %account, "agent logged out from a desk phone");
                        self.acd_pump(now);
                        true
                    }
                    Err(e) => {
                        tracing::info!(%agent, error = %e, "agent logout refused");
                        false
                    }
                }
            }
            FeatureCode::BadPin => {
                metrics::counter!("agent_login_failures_total").increment(1);
                tracing::info!(%account, "agent login with an unknown PIN");
                false
            }
        }
    }

    /// The ACD, for the control interface.
    pub fn acd(&self) -> &Acd {
        &self.acd.acd
    }

    /// Control interface: log an agent in (then calls may be offered at once).
    pub fn agent_login(
        &mut self,
        now: Instant,
        agent: &AgentId,
    ) -> Result<(), crate::acd::AcdError> {
        let r = self.acd.acd.login(agent, now);
        self.acd_pump(now);
        r
    }

    /// Control interface: log an agent out; callers left with no logged-in agent in their
    /// queue take the flow's `no_agents` exit.
    pub fn agent_logout(
        &mut self,
        now: Instant,
        agent: &AgentId,
    ) -> Result<(), crate::acd::AcdError> {
        let r = self.acd.acd.logout(agent, now);
        self.acd_pump(now);
        r
    }

    /// Control interface: idle (callable), busy, or one of the admin's break states.
    pub fn agent_set_state(
        &mut self,
        now: Instant,
        agent: &AgentId,
        state: AgentControl<'_>,
    ) -> Result<(), crate::acd::AcdError> {
        let r = match state {
            AgentControl::Idle => self.acd.acd.set_idle(agent, now),
            AgentControl::Busy => self.acd.acd.set_busy(agent, now),
            AgentControl::Break(name) => self.acd.acd.set_break(agent, name, now),
        };
        self.acd_pump(now);
        r
    }

    /// The flow queues its caller.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::endpoint) fn enqueue_call(
        &mut self,
        now: Instant,
        key: CallKey,
        queue: &str,
        priority: i64,
        max_wait: Duration,
        announce_every: Option<Duration>,
        music: Option<&str>,
        exit_key: Option<char>,
    ) -> Option<QueueOutcome> {
        let call = self.calls.calls.get(&key)?;
        let req = EnqueueRequest {
            call: AcdCall(key.0),
            queue: QueueId::from(queue),
            priority,
            caller_number: Some(call.caller.clone()).filter(|c| !c.is_empty()),
            service_number: Some(call.callee.clone()),
            max_wait: Some(max_wait),
            announce_every,
        };
        let queue_id = req.queue.clone();
        let music = music
            .or(Some("hold"))
            .and_then(|m| self.call_cfg.prompts.get(m));
        let refused = match self.acd.acd.enqueue(req, now) {
            Ok(enqueued) => {
                tracing::info!(call = key.0, %queue, position = enqueued.position, "caller queued");
                None
            }
            Err(EnqueueError::Refused(Refusal::Full)) => {
                Some((QueueOutcome::Full, MissedReason::QueueFull))
            }
            Err(EnqueueError::Refused(Refusal::NoAgents)) => {
                Some((QueueOutcome::NoAgents, MissedReason::NoAgentOnline))
            }
            Err(EnqueueError::Refused(Refusal::MemoryAgentUnavailable { .. })) => {
                Some((QueueOutcome::AgentUnavailable, MissedReason::NoAgentOnline))
            }
            Err(EnqueueError::Invalid(e)) => {
                tracing::warn!(call = key.0, %queue, error = %e, "caller not queued");
                Some((QueueOutcome::NoAgents, MissedReason::NoAgentOnline))
            }
        };
        let c = self.calls.calls.get_mut(&key)?;
        c.cdr.queue = Some(queue.to_owned());
        if let Some((outcome, miss)) = refused {
            tracing::info!(call = key.0, %queue, ?outcome, "queue refused the caller");
            c.cdr.queue_miss = Some(miss);
            return Some(outcome);
        }
        self.acd.gauges_stale = true;
        let c = self.calls.calls.get_mut(&key)?;
        c.queue = Some(QueueVisit {
            queue: queue_id,
            exit_key,
            music: music.clone(),
            waiting: true,
            agent: None,
            entered: now,
        });
        self.play_music(key);
        None
    }

    fn play_music(&mut self, key: CallKey) {
        let Some(session) = self.calls.caller_session(key) else {
            return;
        };
        let music = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| c.queue.as_ref())
            .and_then(|q| q.music.clone());
        match music {
            Some(p) => self.events.push_back(Event::Media(Command::Play {
                id: session,
                prompts: vec![p],
                repeat: true,
                token: MUSIC_TOKEN,
            })),
            None => self
                .events
                .push_back(Event::Media(Command::Silence { id: session })),
        }
    }

    /// A prompt of the queue's own ended. True if the token was the queue's.
    pub(super) fn queue_play_done(&mut self, key: CallKey, token: u64) -> bool {
        if token != ANNOUNCE_TOKEN && token != MUSIC_TOKEN {
            return false;
        }
        let waiting = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| c.queue.as_ref())
            .is_some_and(|q| q.waiting);
        if waiting && token == ANNOUNCE_TOKEN {
            self.play_music(key);
        }
        true
    }

    /// A key from a caller in a queue. True if the queue took it (the flow does not see keys
    /// while its caller waits).
    pub(super) fn queue_digit(&mut self, now: Instant, key: CallKey, digit: char) -> bool {
        let Some(q) = self.calls.calls.get(&key).and_then(|c| c.queue.as_ref()) else {
            return false;
        };
        if !q.waiting {
            return false;
        }
        if q.exit_key == Some(digit) {
            tracing::info!(call = key.0, queue = %q.queue, "caller left the queue by the exit key");
            if let Err(e) = self.acd.acd.leave(AcdCall(key.0), now) {
                tracing::warn!(call = key.0, error = %e, "exit key not taken");
            }
            self.acd_pump(now);
        }
        true
    }

    /// The caller is gone (the call is ending): the ACD releases its agents.
    pub(super) fn queue_call_gone(&mut self, now: Instant, key: CallKey) {
        if self.acd.acd.is_active(AcdCall(key.0)) {
            if let Err(e) = self.acd.acd.caller_left(AcdCall(key.0), now) {
                tracing::warn!(call = key.0, error = %e, "ACD did not release the call");
            }
            self.acd_pump(now);
        }
    }

    /// Before a call's record is closed: a caller still waiting abandoned the queue.
    pub(super) fn queue_before_end(&mut self, now: Instant, key: CallKey) {
        let position = self.acd.acd.position(AcdCall(key.0), now);
        let Some(c) = self.calls.calls.get_mut(&key) else {
            return;
        };
        // The caller hangs up on an agent: the agent's wrap-up starts now.
        let connected = c.queue.as_ref().and_then(|q| q.agent.clone());
        if let Some(agent) = connected {
            c.cdr.wrap_up_ms = self
                .acd
                .acd
                .agent(&agent)
                .map(|a| a.config().wrap_up.as_millis() as i64);
        }
        let Some(c) = self.calls.calls.get_mut(&key) else {
            return;
        };
        if let Some(q) = c.queue.as_mut().filter(|q| q.waiting) {
            q.waiting = false;
            c.cdr.queue_miss = Some(MissedReason::AbandonedInQueue);
            c.cdr.queue_wait += now.saturating_duration_since(q.entered);
            tracing::info!(call = key.0, queue = %q.queue, ?position, "caller abandoned the queue");
        }
    }

    /// A leg to an agent was answered: the ACD must agree. False: hang the leg up.
    pub(super) fn agent_leg_answered(&mut self, now: Instant, key: CallKey, leg_id: LegId) -> bool {
        let Some((agent, _)) = self.calls.legs.get(&leg_id).and_then(|l| l.agent.clone()) else {
            return true;
        };
        match self.acd.acd.offer_answered(AcdCall(key.0), &agent, now) {
            Ok(()) => {
                tracing::info!(call = key.0, %agent, "agent answered");
                if let Some(c) = self.calls.calls.get_mut(&key) {
                    c.cdr.agent = Some(agent.0.clone());
                    if let Some(q) = c.queue.as_mut() {
                        q.agent = Some(agent.clone());
                        q.waiting = false;
                    }
                }
                if let Some(s) = self.calls.caller_session(key) {
                    self.events
                        .push_back(Event::Media(Command::Silence { id: s }));
                }
                self.acd_pump(now);
                true
            }
            Err(e) => {
                tracing::info!(call = key.0, %agent, error = %e, "agent answered too late; hanging up");
                false
            }
        }
    }

    /// A leg to an agent failed. True if it was an agent's (handled here).
    pub(super) fn agent_leg_failed(
        &mut self,
        now: Instant,
        key: CallKey,
        leg_id: LegId,
        code: u16,
    ) -> bool {
        let Some((agent, _)) = self.calls.legs.get(&leg_id).and_then(|l| l.agent.clone()) else {
            return false;
        };
        self.leg_failed_with(leg_id, code);
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.forks.retain(|f| *f != leg_id);
        }
        if let Some(leg) = self.calls.legs.get_mut(&leg_id) {
            leg.call = None;
        }
        self.close_media(leg_id);
        self.finish_leg_record(now, leg_id, HangupBy::Callee);
        // Other phones of the same agent may still ring.
        let still_ringing = self.calls.calls.get(&key).is_some_and(|c| {
            c.forks.iter().any(|f| {
                self.calls
                    .legs
                    .get(f)
                    .is_some_and(|l| l.agent.as_ref().is_some_and(|(a, _)| *a == agent))
            })
        });
        if !still_ringing {
            let failure = match code {
                486 | 600 => OfferFailure::Busy,
                603 => OfferFailure::Rejected,
                _ => OfferFailure::NoAnswer,
            };
            tracing::info!(call = key.0, %agent, code, "agent did not take the call");
            if let Err(e) = self
                .acd
                .acd
                .offer_failed(AcdCall(key.0), &agent, failure, now)
            {
                tracing::debug!(call = key.0, %agent, error = %e, "offer already withdrawn");
            }
            self.acd_pump(now);
        }
        true
    }

    /// The agent leg of a queued call ended with the caller still there. True if the call was
    /// connected through the ACD (the flow then hears `AgentDone`).
    pub(super) fn agent_call_over(&mut self, now: Instant, key: CallKey) -> bool {
        let agent = self
            .calls
            .calls
            .get(&key)
            .and_then(|c| c.queue.as_ref())
            .and_then(|q| q.agent.clone());
        let Some(agent) = agent else {
            return false;
        };
        if let Err(e) = self.acd.acd.call_ended(AcdCall(key.0), now) {
            tracing::warn!(call = key.0, error = %e, "ACD did not end the agent's call");
        }
        let wrap = self
            .acd
            .acd
            .agent(&agent)
            .map(|a| a.config().wrap_up.as_millis() as i64);
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.cdr.wrap_up_ms = wrap;
            if let Some(q) = c.queue.as_mut() {
                q.agent = None;
            }
        }
        self.acd_pump(now);
        true
    }

    /// Drain the ACD after an input: events first, then offers, until neither is left.
    pub(in crate::endpoint) fn acd_pump(&mut self, now: Instant) {
        if self.acd.pumping {
            return; // the outer pump picks up what this input produced
        }
        self.acd.pumping = true;
        loop {
            let mut busy = false;
            while let Some(ev) = self.acd.acd.poll_event() {
                busy = true;
                self.acd_event(now, ev);
            }
            if let Some(offer) = self.acd.acd.poll_offer(now) {
                busy = true;
                self.acd_offer(now, offer);
            }
            if !busy {
                break;
            }
            self.acd.gauges_stale = true;
        }
        self.acd.pumping = false;
        // Only after a change: the pump runs after every flow event, most of which touch no
        // agent or queue.
        if std::mem::take(&mut self.acd.gauges_stale) {
            self.acd_gauges(now);
        }
    }

    /// Logs in the agents configured to be logged in from the start, and raises every agent's
    /// first state: the agent-state log and the realtime stream start from a known state.
    pub(in crate::endpoint) fn acd_start(&mut self, now: Instant) {
        self.acd.start(now);
        if !self.acd.pumping && std::mem::take(&mut self.acd.gauges_stale) {
            self.acd_gauges(now);
        }
    }

    /// `agents{state}` and `queue_waiting{queue}` for dashboards and for checks that no agent
    /// is left ringing or talking once the calls are over; and an [`Event::Acd`] for each agent
    /// whose state and each queue whose waiting count differs from what was last raised.
    fn acd_gauges(&mut self, now: Instant) {
        use crate::acd::AgentStatus;
        use crate::events::AcdEvent as Change;
        let at_ms = self.unix_ms(now);
        let mut changes = Vec::new();
        for a in self.acd.acd.agents() {
            let status = a.state().status();
            if self.acd.raised_agents.get(a.id()) == Some(&status) {
                continue;
            }
            let break_name = match &status {
                AgentStatus::Break(name) => Some(name.clone()),
                _ => None,
            };
            changes.push(Change::AgentState {
                agent: a.id().0.clone(),
                state: status.code(),
                break_name,
                at_ms,
            });
            self.acd.raised_agents.insert(a.id().clone(), status);
        }
        for q in self.acd.acd.queues() {
            let id = &q.config().id;
            let waiting = q.len();
            // A queue starts empty: nobody needs to hear that it still is.
            if self.acd.raised_queues.get(id).copied().unwrap_or(0) == waiting {
                continue;
            }
            changes.push(Change::QueueState {
                queue: id.0.clone(),
                waiting,
                longest_wait_ms: q.longest_wait(now).map(|d| d.as_millis() as u64),
                at_ms,
            });
            self.acd.raised_queues.insert(id.clone(), waiting);
        }
        self.events.extend(changes.into_iter().map(Event::Acd));
        let mut counts = [0u32; AgentStatus::CODES.len()];
        for a in self.acd.acd.agents() {
            counts[a.state().status().index()] += 1;
        }
        for (state, n) in AgentStatus::CODES.iter().zip(counts) {
            metrics::gauge!("agents", "state" => *state).set(f64::from(n));
        }
        for q in self.acd.acd.queues() {
            metrics::gauge!("queue_waiting", "queue" => q.config().id.0.clone())
                .set(q.len() as f64);
        }
    }

    /// The ACD's timers.
    pub(in crate::endpoint) fn acd_timeouts(&mut self, now: Instant) {
        if self.acd.next_schedule_check.is_some_and(|t| t <= now) {
            self.acd.next_schedule_check = Some(now + SCHEDULE_CHECK);
            self.apply_schedules(now);
        }
        if self.acd.acd.poll_timeout().is_some_and(|t| t <= now) {
            self.acd.acd.handle_timeout(now);
            self.acd_pump(now);
        }
    }

    pub(in crate::endpoint) fn acd_poll_timeout(&self) -> Option<Instant> {
        [self.acd.acd.poll_timeout(), self.acd.next_schedule_check]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sign scheduled agents in when their shift starts and out when it ends — at the
    /// changes only, so a supervisor's sign-out in mid-shift stands. An agent on a call when
    /// the shift ends is signed out at the first check after the call.
    fn apply_schedules(&mut self, now: Instant) {
        let unix_ms = self.unix_ms(now);
        let due: Vec<(usize, AgentId, bool)> = self
            .acd
            .schedules
            .iter()
            .enumerate()
            .filter_map(|(i, (a, s, last))| {
                let on = s.on_duty(unix_ms);
                (*last != Some(on)).then(|| (i, a.clone(), on))
            })
            .collect();
        for (i, agent, on_duty) in due {
            let logged_in = self.acd.acd.agent(&agent).is_some_and(|a| a.is_logged_in());
            let result = match (on_duty, logged_in) {
                (true, false) => self.acd.acd.login(&agent, now),
                (false, true) => self.acd.acd.logout(&agent, now),
                _ => Ok(()),
            };
            match result {
                Ok(()) => {
                    tracing::info!(%agent, on_duty, "agent signed by schedule");
                    self.acd.schedules[i].2 = Some(on_duty);
                }
                Err(e) => tracing::debug!(%agent, error = %e, "schedule change deferred"),
            }
        }
        self.acd_pump(now);
    }

    fn acd_event(&mut self, now: Instant, ev: AcdEvent) {
        match ev {
            AcdEvent::AgentStateChanged(change) => {
                tracing::debug!(agent = %change.agent, from = ?change.from, to = ?change.to, "agent state");
            }
            AcdEvent::StopRinging {
                call,
                agent,
                reason,
            } => {
                let key = CallKey(call.0);
                let legs: Vec<LegId> = self
                    .calls
                    .calls
                    .get(&key)
                    .map(|c| {
                        c.forks
                            .iter()
                            .copied()
                            .filter(|f| {
                                self.calls.legs.get(f).is_some_and(|l| {
                                    l.agent.as_ref().is_some_and(|(a, _)| *a == agent)
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if reason == StopReason::RingTimeout {
                    tracing::info!(call = call.0, %agent, "agent did not answer in time");
                }
                for l in legs {
                    if reason == StopReason::RingTimeout {
                        self.leg_miss(l, MissedReason::AgentNoAnswer);
                    }
                    if let Some(c) = self.calls.calls.get_mut(&key) {
                        c.forks.retain(|f| *f != l);
                    }
                    self.cancel_fork(now, l);
                    self.finish_leg_record(now, l, HangupBy::System);
                }
            }
            AcdEvent::QueueExit {
                call,
                queue,
                outcome,
                waited,
            } => {
                let key = CallKey(call.0);
                tracing::info!(call = call.0, %queue, ?outcome, waited_ms = waited.as_millis() as u64, "caller left the queue");
                let flow_outcome = {
                    let Some(c) = self.calls.calls.get_mut(&key) else {
                        return;
                    };
                    c.cdr.queue_wait += waited;
                    let (flow, miss) = match outcome {
                        AcdOutcome::Answered { .. } => (None, None),
                        AcdOutcome::Timeout => (
                            Some(QueueOutcome::Timeout),
                            Some(MissedReason::QueueTimeout),
                        ),
                        AcdOutcome::Exited => (
                            Some(QueueOutcome::Exited),
                            Some(MissedReason::AbandonedInQueue),
                        ),
                        AcdOutcome::NoAgents => (
                            Some(QueueOutcome::NoAgents),
                            Some(MissedReason::NoAgentOnline),
                        ),
                        AcdOutcome::Abandoned => (None, Some(MissedReason::AbandonedInQueue)),
                    };
                    if miss.is_some() {
                        c.cdr.queue_miss = miss;
                    }
                    if flow.is_some() {
                        if let Some(q) = c.queue.as_mut() {
                            q.waiting = false;
                        }
                    }
                    flow
                };
                if let Some(outcome) = flow_outcome {
                    if let Some(s) = self.calls.caller_session(key) {
                        self.events
                            .push_back(Event::Media(Command::Silence { id: s }));
                    }
                    if !self.queue_outcome_without_flow(now, key) {
                        self.flow_event(now, key, crate::ivr::interp::Event::Queue(outcome));
                    }
                }
            }
            AcdEvent::Announce {
                call,
                position,
                estimated_wait,
                ..
            } => self.announce(CallKey(call.0), position, estimated_wait),
        }
    }

    /// Tell a waiting caller their position (and the estimated wait, in minutes), from the
    /// prompt library: `queue-position`, the digits `digit-0`…`digit-9`, and
    /// `queue-wait` … `minutes`. Prompts that are missing are skipped; with none at all the
    /// music simply goes on.
    fn announce(&mut self, key: CallKey, position: usize, estimated_wait: Option<Duration>) {
        let Some(session) = self.calls.caller_session(key) else {
            return;
        };
        let lib = self.call_cfg.prompts.clone();
        let mut names: Vec<String> = vec!["queue-position".into()];
        names.extend(position.to_string().chars().map(|d| format!("digit-{d}")));
        if let Some(w) = estimated_wait {
            let minutes = w.as_secs().div_ceil(60).max(1);
            names.push("queue-wait".into());
            names.extend(minutes.to_string().chars().map(|d| format!("digit-{d}")));
            names.push("minutes".into());
        }
        let prompts: Vec<Arc<Prompt>> = names.iter().filter_map(|n| lib.get(n)).collect();
        if prompts.is_empty() {
            tracing::debug!(
                call = key.0,
                position,
                "no announcement prompts; music goes on"
            );
            return;
        }
        self.events.push_back(Event::Media(Command::Play {
            id: session,
            prompts,
            repeat: false,
            token: ANNOUNCE_TOKEN,
        }));
    }

    /// Ring the offered agents.
    fn acd_offer(&mut self, now: Instant, offer: Offer) {
        let key = CallKey(offer.call.0);
        for agent in offer.agents {
            let legs = self.agent_legs(now, key, &agent, &offer.queue);
            if legs.is_empty() {
                tracing::info!(call = key.0, %agent, "agent has no reachable phone");
                if let Err(e) =
                    self.acd
                        .acd
                        .offer_failed(offer.call, &agent, OfferFailure::NoAnswer, now)
                {
                    tracing::debug!(call = key.0, %agent, error = %e, "offer already withdrawn");
                }
            } else {
                tracing::info!(call = key.0, %agent, legs = legs.len(), "ringing agent");
            }
        }
    }

    /// Outbound legs to one agent's phones; empty when none can be rung.
    fn agent_legs(
        &mut self,
        now: Instant,
        key: CallKey,
        agent: &AgentId,
        queue: &QueueId,
    ) -> Vec<LegId> {
        let Some(call) = self.calls.calls.get(&key) else {
            return Vec::new();
        };
        let Some(incoming) = self.calls.legs.get(&call.a).and_then(|l| l.invite.clone()) else {
            return Vec::new();
        };
        let mut legs = Vec::new();
        let mut peers = Vec::new();
        if let Some(accounts) = self.acd.phones.get(agent).cloned() {
            for account in accounts {
                let contacts: Vec<crate::registrar::Binding> = self
                    .registrar
                    .lookup(&account, self.last_unix)
                    .into_iter()
                    .cloned()
                    .collect();
                for l in self.make_forks(key, &incoming, &contacts, &account, &[]) {
                    legs.push(l);
                    peers.push(account.clone());
                }
            }
        } else if let Some((number, trunk)) = self.acd.mobiles.get(agent).cloned() {
            if let Some(l) = self.trunk_leg(now, key, &incoming, &number, trunk.as_deref()) {
                legs.push(l);
                peers.push(number);
            }
        }
        for (l, peer) in legs.iter().zip(peers) {
            if let Some(leg) = self.calls.legs.get_mut(l) {
                leg.agent = Some((agent.clone(), Some(queue.clone())));
            }
            self.open_leg_record(now, key, *l, LegKind::Agent, peer);
        }
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.forks.extend(legs.iter().copied());
        }
        legs
    }

    /// One outbound leg to an agent's mobile `number` through a trunk (the named one, else
    /// the first), planned like any call out.
    pub(super) fn trunk_leg(
        &mut self,
        now: Instant,
        key: CallKey,
        incoming: &Request,
        number: &str,
        trunk: Option<&str>,
    ) -> Option<LegId> {
        match self.plan_trunk_call(now, number, trunk, None) {
            Ok(plan) => self.trunk_leg_planned(key, incoming, &plan),
            Err(refusal) => {
                tracing::warn!(call = key.0, %number, %refusal, "agent's mobile cannot be rung");
                None
            }
        }
    }
}

#[cfg(test)]
mod acd_event_tests {
    use crate::acd::{QueueConfig, Strategy};
    use crate::endpoint::test_net::*;
    use crate::endpoint::{AgentControl, QueueSettings};
    use crate::events::AcdEvent;
    use crate::sip::msg::{HeaderName, Method, Request};
    use std::time::Duration;
    use switchboard_media::prompt::{synth, Prompt};

    const AGENT_1: &str = PHONE_A; // account 1002
    const T0: i64 = UNIX as i64 * 1000;

    fn one_agent_net() -> Net {
        let mut acd = crate::acd::AcdConfig::default();
        acd.break_names.insert("Lunch".into());
        Net::with(
            Setup::new()
                .registered("1002", &[AGENT_1])
                .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
                .flow("4000", queue_flow())
                .queueing(QueueSettings {
                    queues: vec![QueueConfig::new("sales", Strategy::Linear)],
                    agents: vec![agent("a1", "1002", 1, true)],
                    acd,
                    ..QueueSettings::default()
                }),
        )
    }

    fn phone_bye(net: &mut Net, inv: &Request) {
        let bye = format!(
            "BYE sip:switchboard@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT_1};branch=z9hG4bK-p1-bye\r\nMax-Forwards: 70\r\nFrom: <sip:agent@switchboard>;tag=p1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n",
            inv.headers.get_str(&HeaderName::From).unwrap(),
            inv.headers.call_id().unwrap()
        );
        net.deliver(AGENT_1, &bye);
    }

    fn agent_state(state: &'static str, at_ms: i64) -> AcdEvent {
        AcdEvent::AgentState {
            agent: "a1".into(),
            state,
            break_name: None,
            at_ms,
        }
    }

    fn waiting(net: &Net) -> Vec<(usize, i64)> {
        net.acd_events
            .iter()
            .filter_map(|e| match e {
                AcdEvent::QueueState { waiting, at_ms, .. } => Some((*waiting, *at_ms)),
                _ => None,
            })
            .collect()
    }

    fn agent_states(net: &Net) -> Vec<AcdEvent> {
        net.acd_events
            .iter()
            .filter(|e| matches!(e, AcdEvent::AgentState { .. }))
            .cloned()
            .collect()
    }

    #[test]
    fn a_served_caller_raises_ringing_talking_wrap_up_idle_and_the_queue_fills_and_empties() {
        let mut net = one_agent_net();
        // The first input logs a1 in: one event, its first state; an empty queue is not news.
        net.advance(Duration::ZERO);
        assert_eq!(net.acd_events, vec![agent_state("idle", T0)]);

        net.advance(Duration::from_secs(1));
        let _tag = enter_service(&mut net, "e1");
        let inv = requests(&net.take(AGENT_1), Method::Invite).remove(0);
        net.deliver_msg(AGENT_1, &phone_response(&inv, 180, "p1", AGENT_1, None));
        net.advance(Duration::from_secs(4));
        net.deliver_msg(
            AGENT_1,
            &phone_response(&inv, 200, "p1", AGENT_1, Some(&sdp(6000, "sendrecv"))),
        );
        net.advance(Duration::from_secs(30));
        phone_bye(&mut net, &inv);
        // 5 s of wrap-up, then idle again.
        net.advance(Duration::from_secs(5));

        assert_eq!(
            agent_states(&net),
            vec![
                agent_state("idle", T0),
                agent_state("ringing", T0 + 1_000),
                agent_state("talking", T0 + 5_000),
                agent_state("wrap_up", T0 + 35_000),
                agent_state("idle", T0 + 40_000),
            ]
        );
        assert_eq!(waiting(&net), vec![(1, T0 + 1_000), (0, T0 + 5_000)]);
        // Nothing changes, nothing is raised.
        let before = net.acd_events.len();
        net.advance(Duration::from_secs(60));
        assert_eq!(net.acd_events.len(), before);
    }

    #[test]
    fn a_break_is_raised_with_its_name_and_a_logout_as_logged_out() {
        let mut net = one_agent_net();
        net.advance(Duration::ZERO);
        let now = net.now;
        net.ep
            .agent_set_state(now, &"a1".into(), AgentControl::Break("Lunch"))
            .unwrap();
        net.pump();
        net.advance(Duration::from_secs(2));
        let now = net.now;
        net.ep.agent_logout(now, &"a1".into()).unwrap();
        net.pump();
        assert_eq!(
            agent_states(&net),
            vec![
                agent_state("idle", T0),
                AcdEvent::AgentState {
                    agent: "a1".into(),
                    state: "break",
                    break_name: Some("Lunch".into()),
                    at_ms: T0,
                },
                agent_state("logged_out", T0 + 2_000),
            ]
        );
    }
}
