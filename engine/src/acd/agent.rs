//! One agent: configuration, the state machine and the counters reports read.
//!
//! Every transition is a method that either moves the agent and returns the
//! [`StateChange`] (for the event stream and the CDRs) or refuses with a typed
//! [`AcdError`] and leaves the agent untouched. Time spent in the state being left is added
//! to [`AgentStats::time_in`] under the state's [`AgentStatus`] (break states under the
//! admin's name), so reports never have to replay events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{AcdError, AgentId, CallId, QueueId};

/// How the agent's phone is reached when a call is offered (the call layer's concern; the
/// ACD only carries it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerMode {
    /// One or more SIP accounts registered by desk phones; all ring.
    DeskPhone { accounts: Vec<String> },
    /// The agent's mobile number, rung through a trunk.
    Mobile { number: String },
    /// The browser softphone.
    Softphone,
}

/// The state an agent is put in when logging in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialState {
    #[default]
    Idle,
    Busy,
}

/// An agent's membership of one skill group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Position for top-down, round robin and progressive ringing: lower first, ties by agent id.
    pub order: u32,
    /// Weight for [`super::Strategy::WeightedRandom`].
    pub weight: u32,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            order: 0,
            weight: 1,
        }
    }
}

/// An agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub id: AgentId,
    pub answer_mode: AnswerMode,
    /// The skill groups the agent answers for.
    pub skill_groups: BTreeMap<QueueId, Membership>,
    pub initial_state: InitialState,
    /// Wrap-up (话后整理) after every call; zero goes straight back to idle.
    pub wrap_up: Duration,
    /// How long an offer rings before it counts as not answered.
    pub max_ring: Duration,
    /// After this many offers missed in a row (no answer or rejected) the agent is made busy.
    pub auto_busy_after: Option<u32>,
}

impl AgentConfig {
    /// An agent on a softphone with 30 s ring time, no wrap-up and no auto-busy.
    pub fn new(id: impl Into<AgentId>) -> Self {
        AgentConfig {
            id: id.into(),
            answer_mode: AnswerMode::Softphone,
            skill_groups: BTreeMap::new(),
            initial_state: InitialState::Idle,
            wrap_up: Duration::ZERO,
            max_ring: Duration::from_secs(30),
            auto_busy_after: None,
        }
    }

    /// Builder: member of `queue` with the default membership.
    pub fn in_queue(mut self, queue: impl Into<QueueId>) -> Self {
        self.skill_groups
            .insert(queue.into(), Membership::default());
        self
    }

    /// Builder: member of `queue` at `order` with `weight`.
    pub fn in_queue_with(mut self, queue: impl Into<QueueId>, order: u32, weight: u32) -> Self {
        self.skill_groups
            .insert(queue.into(), Membership { order, weight });
        self
    }
}

/// An agent's state, with the times the state machine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    /// Callable.
    Idle {
        since: Instant,
    },
    /// Not callable, set by the agent or by auto-busy.
    Busy {
        since: Instant,
    },
    /// An admin-defined break state (小休); never callable.
    Break {
        name: String,
        since: Instant,
    },
    /// A call is offered and ringing; the reservation ends at `until` at the latest.
    Reserved {
        call: CallId,
        since: Instant,
        until: Instant,
    },
    Talking {
        call: CallId,
        since: Instant,
    },
    /// Wrap-up; ends at `until` and never before.
    WrapUp {
        since: Instant,
        until: Instant,
    },
}

impl AgentState {
    /// The state's name, as reports and events show it.
    pub fn status(&self) -> AgentStatus {
        match self {
            AgentState::LoggedOut => AgentStatus::LoggedOut,
            AgentState::Idle { .. } => AgentStatus::Idle,
            AgentState::Busy { .. } => AgentStatus::Busy,
            AgentState::Break { name, .. } => AgentStatus::Break(name.clone()),
            AgentState::Reserved { .. } => AgentStatus::Ringing,
            AgentState::Talking { .. } => AgentStatus::Talking,
            AgentState::WrapUp { .. } => AgentStatus::WrapUp,
        }
    }

    fn since(&self) -> Option<Instant> {
        match self {
            AgentState::LoggedOut => None,
            AgentState::Idle { since }
            | AgentState::Busy { since }
            | AgentState::Break { since, .. }
            | AgentState::Reserved { since, .. }
            | AgentState::Talking { since, .. }
            | AgentState::WrapUp { since, .. } => Some(*since),
        }
    }

    /// The call the agent is ringing for or talking on.
    pub fn call(&self) -> Option<CallId> {
        match self {
            AgentState::Reserved { call, .. } | AgentState::Talking { call, .. } => Some(*call),
            _ => None,
        }
    }
}

/// A state's name without its times: the key of time-in-state reports and what
/// [`StateChange`] carries. Break states keep the admin's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentStatus {
    LoggedOut,
    Idle,
    Busy,
    Break(String),
    Ringing,
    Talking,
    WrapUp,
}

impl AgentStatus {
    /// Every state's name, in this order.
    pub const CODES: [&'static str; 7] = [
        "logged_out",
        "idle",
        "busy",
        "break",
        "ringing",
        "talking",
        "wrap_up",
    ];

    /// The state's stable name (`break` for every break; the admin's name is beside it), as
    /// the API, the events, the agent-state log and the `agents{state}` gauge show it.
    pub fn code(&self) -> &'static str {
        Self::CODES[self.index()]
    }

    /// The state's place in [`AgentStatus::CODES`].
    pub fn index(&self) -> usize {
        match self {
            AgentStatus::LoggedOut => 0,
            AgentStatus::Idle => 1,
            AgentStatus::Busy => 2,
            AgentStatus::Break(_) => 3,
            AgentStatus::Ringing => 4,
            AgentStatus::Talking => 5,
            AgentStatus::WrapUp => 6,
        }
    }
}

/// One agent transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub agent: AgentId,
    pub from: AgentStatus,
    pub to: AgentStatus,
    pub at: Instant,
}

/// Why a ringing offer ended without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OfferFailure {
    /// Rang until the agent's max ring time (or the phone's own timeout).
    NoAnswer,
    /// The agent declined.
    Rejected,
    /// The phone answered busy (486/600).
    Busy,
}

/// Counters for reports and for the strategies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Closed intervals per state; the current state's open interval is added by
    /// [`Agent::time_in`].
    pub time_in: BTreeMap<AgentStatus, Duration>,
    /// Queue calls offered (rung).
    pub offered: u64,
    /// Queue (inbound) calls answered.
    pub answered: u64,
    /// Offers not answered (no answer, rejected, busy).
    pub missed: u64,
    /// Misses since the last answer; drives auto-busy.
    pub consecutive_missed: u32,
    /// Outbound calls placed by the agent.
    pub outbound: u64,
    /// When the agent's last call (inbound or outbound) ended.
    pub last_call_ended: Option<Instant>,
}

/// One agent: its configuration, state and counters.
#[derive(Clone, Debug)]
pub struct Agent {
    config: AgentConfig,
    state: AgentState,
    stats: AgentStats,
}

impl Agent {
    /// A logged-out agent.
    pub fn new(config: AgentConfig) -> Self {
        Agent {
            config,
            state: AgentState::LoggedOut,
            stats: AgentStats::default(),
        }
    }

    pub fn id(&self) -> &AgentId {
        &self.config.id
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    pub fn stats(&self) -> &AgentStats {
        &self.stats
    }

    pub fn is_logged_in(&self) -> bool {
        self.state != AgentState::LoggedOut
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.state, AgentState::Idle { .. })
    }

    /// Time spent in `status`, including the current open interval up to `now`.
    pub fn time_in(&self, status: &AgentStatus, now: Instant) -> Duration {
        let closed = self.stats.time_in.get(status).copied().unwrap_or_default();
        let open = match self.state.since() {
            Some(since) if self.state.status() == *status => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        closed + open
    }

    /// Inbound answered plus outbound calls: the "fewest calls" measure.
    pub fn total_calls(&self) -> u64 {
        self.stats.answered + self.stats.outbound
    }

    /// The instant the agent wants to be woken at: the end of a wrap-up or of a ring.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            AgentState::WrapUp { until, .. } | AgentState::Reserved { until, .. } => Some(until),
            _ => None,
        }
    }

    fn go(&mut self, to: AgentState, now: Instant) -> StateChange {
        let from = self.state.status();
        if let Some(since) = self.state.since() {
            *self.stats.time_in.entry(from.clone()).or_default() +=
                now.saturating_duration_since(since);
        }
        self.state = to;
        StateChange {
            agent: self.config.id.clone(),
            from,
            to: self.state.status(),
            at: now,
        }
    }

    fn not_in_call(&self) -> Result<(), AcdError> {
        match &self.state {
            AgentState::LoggedOut => Err(AcdError::NotLoggedIn {
                agent: self.config.id.clone(),
            }),
            AgentState::Reserved { call, .. } | AgentState::Talking { call, .. } => {
                Err(AcdError::InCall {
                    agent: self.config.id.clone(),
                    call: *call,
                })
            }
            _ => Ok(()),
        }
    }

    fn unchanged(&self) -> AcdError {
        AcdError::AlreadyInState {
            agent: self.config.id.clone(),
            status: self.state.status(),
        }
    }

    /// Log in, into the configured initial state. Clears the consecutive-miss count.
    pub fn login(&mut self, now: Instant) -> Result<StateChange, AcdError> {
        if self.is_logged_in() {
            return Err(AcdError::AlreadyLoggedIn {
                agent: self.config.id.clone(),
            });
        }
        self.stats.consecutive_missed = 0;
        let to = match self.config.initial_state {
            InitialState::Idle => AgentState::Idle { since: now },
            InitialState::Busy => AgentState::Busy { since: now },
        };
        Ok(self.go(to, now))
    }

    /// Log out; refused while ringing or talking. Allowed during wrap-up (the agent leaves
    /// without becoming callable).
    pub fn logout(&mut self, now: Instant) -> Result<StateChange, AcdError> {
        self.not_in_call()?;
        Ok(self.go(AgentState::LoggedOut, now))
    }

    /// Become callable. Refused during wrap-up: wrap-up ends by time only.
    pub fn set_idle(&mut self, now: Instant) -> Result<StateChange, AcdError> {
        self.not_in_call()?;
        match self.state {
            AgentState::Idle { .. } => Err(self.unchanged()),
            AgentState::WrapUp { until, .. } => Err(AcdError::WrapUpNotOver {
                agent: self.config.id.clone(),
                until,
            }),
            _ => {
                self.stats.consecutive_missed = 0;
                Ok(self.go(AgentState::Idle { since: now }, now))
            }
        }
    }

    /// Become busy (from idle, a break or wrap-up — leaving wrap-up for busy never makes the
    /// agent callable early).
    pub fn set_busy(&mut self, now: Instant) -> Result<StateChange, AcdError> {
        self.not_in_call()?;
        if matches!(self.state, AgentState::Busy { .. }) {
            return Err(self.unchanged());
        }
        Ok(self.go(AgentState::Busy { since: now }, now))
    }

    /// Take a break under an admin-defined name (the facade checks the name).
    pub fn set_break(&mut self, name: &str, now: Instant) -> Result<StateChange, AcdError> {
        self.not_in_call()?;
        if matches!(&self.state, AgentState::Break { name: current, .. } if current == name) {
            return Err(self.unchanged());
        }
        Ok(self.go(
            AgentState::Break {
                name: name.to_owned(),
                since: now,
            },
            now,
        ))
    }

    /// Offer `call`: idle → reserved until `now + max_ring`.
    pub fn reserve(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        if !self.is_idle() {
            return Err(AcdError::NotIdle {
                agent: self.config.id.clone(),
                status: self.state.status(),
            });
        }
        self.stats.offered += 1;
        let until = now + self.config.max_ring;
        Ok(self.go(
            AgentState::Reserved {
                call,
                since: now,
                until,
            },
            now,
        ))
    }

    fn check_reserved(&self, call: CallId) -> Result<(), AcdError> {
        match self.state {
            AgentState::Reserved { call: c, .. } if c == call => Ok(()),
            _ => Err(AcdError::NotOffered {
                agent: self.config.id.clone(),
                call,
            }),
        }
    }

    /// The offered call was answered: reserved → talking.
    pub fn answer(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        self.check_reserved(call)?;
        self.stats.answered += 1;
        self.stats.consecutive_missed = 0;
        Ok(self.go(AgentState::Talking { call, since: now }, now))
    }

    /// The offer failed: reserved → idle, or busy when the auto-busy threshold is reached.
    pub fn offer_failed(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        self.check_reserved(call)?;
        self.stats.missed += 1;
        self.stats.consecutive_missed += 1;
        let auto_busy = self
            .config
            .auto_busy_after
            .is_some_and(|n| self.stats.consecutive_missed >= n.max(1));
        Ok(if auto_busy {
            self.go(AgentState::Busy { since: now }, now)
        } else {
            self.go(AgentState::Idle { since: now }, now)
        })
    }

    /// The offer was withdrawn through no fault of the agent (caller gone, answered by another
    /// agent, queue timeout): reserved → idle, not counted as missed.
    pub fn cancel_offer(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        self.check_reserved(call)?;
        Ok(self.go(AgentState::Idle { since: now }, now))
    }

    /// The agent places an outbound call: idle, busy or a break → talking.
    pub fn start_outbound(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        self.not_in_call()?;
        if let AgentState::WrapUp { until, .. } = self.state {
            return Err(AcdError::WrapUpNotOver {
                agent: self.config.id.clone(),
                until,
            });
        }
        self.stats.outbound += 1;
        Ok(self.go(AgentState::Talking { call, since: now }, now))
    }

    /// The call ended: talking → wrap-up until `now + wrap_up` (idle when there is none).
    pub fn hang_up(&mut self, call: CallId, now: Instant) -> Result<StateChange, AcdError> {
        match self.state {
            AgentState::Talking { call: c, .. } if c == call => {}
            _ => {
                return Err(AcdError::NotTalking {
                    agent: self.config.id.clone(),
                    call,
                })
            }
        }
        self.stats.last_call_ended = Some(now);
        let to = if self.config.wrap_up.is_zero() {
            AgentState::Idle { since: now }
        } else {
            AgentState::WrapUp {
                since: now,
                until: now + self.config.wrap_up,
            }
        };
        Ok(self.go(to, now))
    }

    /// Ends a wrap-up whose time has come (and nothing else: ring deadlines are the facade's,
    /// because a missed ring moves the call on). `None` when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<StateChange> {
        match self.state {
            AgentState::WrapUp { until, .. } if until <= now => {
                Some(self.go(AgentState::Idle { since: now }, now))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        super::super::test_epoch()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn agent() -> Agent {
        let mut c = AgentConfig::new("a1").in_queue("q");
        c.wrap_up = secs(10);
        c.max_ring = secs(15);
        Agent::new(c)
    }

    #[test]
    fn login_goes_to_the_initial_state_and_twice_is_refused() {
        let t = t0();
        let mut a = agent();
        let ch = a.login(t).unwrap();
        assert_eq!(
            (ch.from, ch.to),
            (AgentStatus::LoggedOut, AgentStatus::Idle)
        );
        assert!(matches!(a.login(t), Err(AcdError::AlreadyLoggedIn { .. })));

        let mut c = AgentConfig::new("b");
        c.initial_state = InitialState::Busy;
        let mut b = Agent::new(c);
        assert_eq!(b.login(t).unwrap().to, AgentStatus::Busy);
    }

    #[test]
    fn logged_out_agent_refuses_everything_but_login() {
        let t = t0();
        let mut a = agent();
        let call = CallId(1);
        assert!(matches!(a.set_idle(t), Err(AcdError::NotLoggedIn { .. })));
        assert!(matches!(a.set_busy(t), Err(AcdError::NotLoggedIn { .. })));
        assert!(matches!(
            a.set_break("lunch", t),
            Err(AcdError::NotLoggedIn { .. })
        ));
        assert!(matches!(a.logout(t), Err(AcdError::NotLoggedIn { .. })));
        assert!(matches!(a.reserve(call, t), Err(AcdError::NotIdle { .. })));
        assert!(matches!(
            a.answer(call, t),
            Err(AcdError::NotOffered { .. })
        ));
        assert!(matches!(
            a.hang_up(call, t),
            Err(AcdError::NotTalking { .. })
        ));
        assert!(matches!(
            a.start_outbound(call, t),
            Err(AcdError::NotLoggedIn { .. })
        ));
        assert_eq!(*a.state(), AgentState::LoggedOut);
    }

    #[test]
    fn idle_busy_break_move_freely_and_same_state_is_refused() {
        let t = t0();
        let mut a = agent();
        a.login(t).unwrap();
        assert!(matches!(
            a.set_idle(t),
            Err(AcdError::AlreadyInState { .. })
        ));
        assert_eq!(a.set_busy(t + secs(1)).unwrap().to, AgentStatus::Busy);
        assert!(matches!(
            a.set_busy(t),
            Err(AcdError::AlreadyInState { .. })
        ));
        let ch = a.set_break("lunch", t + secs(3)).unwrap();
        assert_eq!(
            (ch.from, ch.to),
            (AgentStatus::Busy, AgentStatus::Break("lunch".into()))
        );
        assert!(matches!(
            a.set_break("lunch", t),
            Err(AcdError::AlreadyInState { .. })
        ));
        assert_eq!(
            a.set_break("training", t + secs(6)).unwrap().to,
            AgentStatus::Break("training".into())
        );
        assert_eq!(a.set_idle(t + secs(10)).unwrap().to, AgentStatus::Idle);
        assert_eq!(a.logout(t + secs(11)).unwrap().to, AgentStatus::LoggedOut);

        // Time per state, under the admin's break names.
        let now = t + secs(20);
        assert_eq!(a.time_in(&AgentStatus::Idle, now), secs(2));
        assert_eq!(a.time_in(&AgentStatus::Busy, now), secs(2));
        assert_eq!(a.time_in(&AgentStatus::Break("lunch".into()), now), secs(3));
        assert_eq!(
            a.time_in(&AgentStatus::Break("training".into()), now),
            secs(4)
        );
    }

    #[test]
    fn a_full_call_cycle_and_wrap_up_by_time_only() {
        let t = t0();
        let mut a = agent();
        let call = CallId(7);
        a.login(t).unwrap();
        assert_eq!(
            a.reserve(call, t + secs(1)).unwrap().to,
            AgentStatus::Ringing
        );
        assert_eq!(a.poll_timeout(), Some(t + secs(16)));
        assert!(matches!(
            a.answer(CallId(8), t),
            Err(AcdError::NotOffered { .. })
        ));
        assert_eq!(
            a.answer(call, t + secs(3)).unwrap().to,
            AgentStatus::Talking
        );
        assert_eq!(
            a.hang_up(call, t + secs(63)).unwrap().to,
            AgentStatus::WrapUp
        );
        assert_eq!(a.stats().last_call_ended, Some(t + secs(63)));
        assert_eq!(a.poll_timeout(), Some(t + secs(73)));

        // Never early: neither the agent nor a timer before `until` ends wrap-up.
        assert!(matches!(
            a.set_idle(t + secs(70)),
            Err(AcdError::WrapUpNotOver { .. })
        ));
        assert!(a.handle_timeout(t + secs(72)).is_none());
        assert_eq!(
            a.handle_timeout(t + secs(73)).unwrap().to,
            AgentStatus::Idle
        );
        assert!(a.handle_timeout(t + secs(80)).is_none());

        let now = t + secs(80);
        assert_eq!(a.time_in(&AgentStatus::Ringing, now), secs(2));
        assert_eq!(a.time_in(&AgentStatus::Talking, now), secs(60));
        assert_eq!(a.time_in(&AgentStatus::WrapUp, now), secs(10));
        assert_eq!(a.time_in(&AgentStatus::Idle, now), secs(1 + 7));
        assert_eq!(
            (a.stats().offered, a.stats().answered, a.stats().missed),
            (1, 1, 0)
        );
    }

    #[test]
    fn in_a_call_the_agent_cannot_change_state() {
        let t = t0();
        let mut a = agent();
        let call = CallId(1);
        a.login(t).unwrap();
        a.reserve(call, t).unwrap();
        for r in [
            a.clone().set_idle(t),
            a.clone().set_busy(t),
            a.clone().set_break("x", t),
            a.clone().logout(t),
        ] {
            assert!(matches!(r, Err(AcdError::InCall { .. })), "{r:?}");
        }
        assert!(matches!(
            a.reserve(CallId(2), t),
            Err(AcdError::NotIdle { .. })
        ));
        assert!(matches!(
            a.hang_up(call, t),
            Err(AcdError::NotTalking { .. })
        ));
        a.answer(call, t).unwrap();
        for r in [
            a.clone().set_idle(t),
            a.clone().set_busy(t),
            a.clone().set_break("x", t),
            a.clone().logout(t),
        ] {
            assert!(matches!(r, Err(AcdError::InCall { .. })), "{r:?}");
        }
        assert!(matches!(
            a.start_outbound(CallId(3), t),
            Err(AcdError::InCall { .. })
        ));
    }

    #[test]
    fn wrap_up_may_be_left_for_busy_a_break_or_logout_but_not_idle() {
        let t = t0();
        let mut a = agent();
        let call = CallId(1);
        a.login(t).unwrap();
        a.reserve(call, t).unwrap();
        a.answer(call, t).unwrap();
        a.hang_up(call, t).unwrap();
        assert!(matches!(
            a.clone().start_outbound(CallId(2), t),
            Err(AcdError::WrapUpNotOver { .. })
        ));
        assert_eq!(a.clone().set_busy(t).unwrap().to, AgentStatus::Busy);
        assert_eq!(
            a.clone().set_break("b", t).unwrap().to,
            AgentStatus::Break("b".into())
        );
        assert_eq!(a.logout(t).unwrap().to, AgentStatus::LoggedOut);
    }

    #[test]
    fn missed_offers_count_and_auto_busy_after_n_in_a_row() {
        let t = t0();
        let mut c = AgentConfig::new("a");
        c.auto_busy_after = Some(2);
        let mut a = Agent::new(c);
        a.login(t).unwrap();
        a.reserve(CallId(1), t).unwrap();
        assert_eq!(a.offer_failed(CallId(1), t).unwrap().to, AgentStatus::Idle);
        // An answer in between resets the run.
        a.reserve(CallId(2), t).unwrap();
        a.answer(CallId(2), t).unwrap();
        a.hang_up(CallId(2), t).unwrap();
        a.reserve(CallId(3), t).unwrap();
        assert_eq!(a.offer_failed(CallId(3), t).unwrap().to, AgentStatus::Idle);
        a.reserve(CallId(4), t).unwrap();
        assert!(matches!(
            a.offer_failed(CallId(5), t),
            Err(AcdError::NotOffered { .. })
        ));
        assert_eq!(a.offer_failed(CallId(4), t).unwrap().to, AgentStatus::Busy);
        assert_eq!(
            (
                a.stats().offered,
                a.stats().missed,
                a.stats().consecutive_missed
            ),
            (4, 3, 2)
        );
        // Going idle again starts a new run.
        a.set_idle(t).unwrap();
        assert_eq!(a.stats().consecutive_missed, 0);
    }

    #[test]
    fn cancelled_offers_are_not_misses() {
        let t = t0();
        let mut a = agent();
        a.login(t).unwrap();
        a.reserve(CallId(1), t).unwrap();
        assert_eq!(a.cancel_offer(CallId(1), t).unwrap().to, AgentStatus::Idle);
        assert!(matches!(
            a.cancel_offer(CallId(1), t),
            Err(AcdError::NotOffered { .. })
        ));
        assert_eq!(a.stats().missed, 0);
    }

    #[test]
    fn outbound_calls_count_and_end_in_wrap_up() {
        let t = t0();
        let mut a = agent();
        a.login(t).unwrap();
        a.set_busy(t).unwrap();
        assert_eq!(
            a.start_outbound(CallId(9), t).unwrap().to,
            AgentStatus::Talking
        );
        assert_eq!(
            a.hang_up(CallId(9), t + secs(5)).unwrap().to,
            AgentStatus::WrapUp
        );
        assert_eq!((a.stats().outbound, a.total_calls()), (1, 1));
    }

    #[test]
    fn no_wrap_up_configured_goes_straight_to_idle() {
        let t = t0();
        let mut a = Agent::new(AgentConfig::new("a"));
        a.login(t).unwrap();
        a.reserve(CallId(1), t).unwrap();
        a.answer(CallId(1), t).unwrap();
        assert_eq!(a.hang_up(CallId(1), t).unwrap().to, AgentStatus::Idle);
    }
}
