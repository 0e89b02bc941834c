//! # ACD: agents, skill groups, queues and call distribution
//!
//! A sans-IO core: plain data and functions, no sockets, no tasks, no clock. Time arrives as
//! `now: Instant` on every input; randomness comes from a seeded generator given to
//! [`Acd::new`], so identical inputs give identical outputs (all maps are `BTreeMap`s).
//!
//! * [`agent`]: one agent's configuration, state machine ([`AgentState`]) and counters;
//! * [`queue`]: a skill group's waiting callers, ordering score, estimated wait, service level;
//! * [`strategy`]: the distribution strategies ([`Strategy`]) as a pure [`strategy::pick`];
//! * [`memory`]: call memory (外呼记忆), customer number → agent;
//! * [`Acd`]: the facade that owns all of them and that the call layer drives.
//!
//! ## Drive-loop contract
//! Inputs (each takes `now`):
//! * from the flow: [`Acd::enqueue`], [`Acd::leave`] (exit key), [`Acd::caller_left`] (hang-up);
//! * from the agent legs: [`Acd::offer_answered`], [`Acd::offer_failed`], [`Acd::call_ended`],
//!   [`Acd::outbound_started`];
//! * from the control interface: [`Acd::login`], [`Acd::logout`], [`Acd::set_idle`],
//!   [`Acd::set_busy`], [`Acd::set_break`], [`Acd::remember`];
//! * from the timer: [`Acd::handle_timeout`] when [`Acd::poll_timeout`]'s instant is reached.
//!
//! After **any** input the driver drains, in this order:
//! 1. [`Acd::poll_event`] until `None`: [`Event`]s for the call layer (stop ringing an agent,
//!    a caller leaves the queue with its [`QueueOutcome`], announce position and wait) and for
//!    records (agent state changes). Draining them first means a released agent's
//!    [`Event::StopRinging`] is handled before any new offer to that agent;
//! 2. [`Acd::poll_offer`] until `None`: each [`Offer`] names agents to ring for a call (the
//!    agents are already reserved; ring-all and progressive ringing may add agents to a call
//!    that is already ringing), then [`Acd::poll_event`] again for the reservations' state
//!    changes;
//! 3. [`Acd::poll_timeout`]: the next instant to call [`Acd::handle_timeout`] at.
//!
//! Inputs that do not fit the current state (an answer from an agent whose offer already
//! timed out, say) are refused with a typed [`AcdError`] and change nothing: the ACD's view
//! wins and the call layer hangs that leg up. A refusal of an enqueue that the flow must
//! branch on ([`Refusal::Full`], [`Refusal::NoAgents`], [`Refusal::MemoryAgentUnavailable`])
//! is kept apart from such errors in [`EnqueueError`].
//!
//! ## Guarantees
//! * An agent is in at most one call; only [`AgentState::Idle`] agents are offered calls.
//! * A reservation always ends: answered → talking; no answer (the agent's max ring time,
//!   enforced here), rejected or busy → idle (or busy on reaching auto-busy); caller gone,
//!   answered elsewhere, exit or queue timeout → idle, not counted as a miss.
//! * Wrap-up ends by time only, at its `until`, never earlier and always.
//! * Every accepted caller leaves the queue exactly once, with one [`QueueOutcome`].
//!
//! ## Distribution
//! Callers across all queues are served by score (see [`queue`]); callers routed by call
//! memory go before the others, since they want one agent only. A missed agent is not
//! offered the same caller again until every callable member has missed it; then, after the
//! queue's `retry_delay`, a new round starts. "No agents" means no member of the queue is
//! logged in (busy and break count as logged in): such an enqueue is refused, and when the
//! last logged-in member logs out the waiting callers leave with [`QueueOutcome::NoAgents`].

pub mod agent;
pub mod memory;
pub mod queue;
pub mod schedule;
pub mod strategy;

#[cfg(test)]
mod tests;

/// The one clock reading of the tests: the base of their virtual time.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
fn test_epoch() -> Instant {
    Instant::now()
}

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use agent::{
    Agent, AgentConfig, AgentState, AgentStats, AgentStatus, AnswerMode, InitialState, Membership,
    OfferFailure, StateChange,
};
pub use memory::{Binding, CallMemory, MemoryConfig};
pub use queue::{Queue, QueueConfig, QueueStats};
pub use strategy::Strategy;

use queue::Waiting;
use strategy::{Member, PickContext};

/// The shortest pause before a new round of offers to a caller every member has missed.
pub const MIN_RETRY_DELAY: Duration = Duration::from_secs(1);

/// An agent (座席).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub String);

/// A skill group (技能组) and its queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub String);

/// A call, as the call layer numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

macro_rules! string_id {
    ($t:ident) => {
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.to_owned())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $t(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_id!(AgentId);
string_id!(QueueId);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call {}", self.0)
    }
}

/// An input that does not fit the current state or configuration. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("agent {agent} is not logged in")]
    NotLoggedIn { agent: AgentId },
    #[error("agent {agent} is already logged in")]
    AlreadyLoggedIn { agent: AgentId },
    #[error("agent {agent} is already {status:?}")]
    AlreadyInState { agent: AgentId, status: AgentStatus },
    #[error("agent {agent} is ringing for or talking on {call}")]
    InCall { agent: AgentId, call: CallId },
    #[error("agent {agent} is in wrap-up until {until:?}")]
    WrapUpNotOver { agent: AgentId, until: Instant },
    #[error("agent {agent} is {status:?}, not idle")]
    NotIdle { agent: AgentId, status: AgentStatus },
    #[error("{call} is not offered to agent {agent}")]
    NotOffered { agent: AgentId, call: CallId },
    #[error("agent {agent} is not talking on {call}")]
    NotTalking { agent: AgentId, call: CallId },
    #[error("no agent {agent}")]
    UnknownAgent { agent: AgentId },
    #[error("no queue {queue}")]
    UnknownQueue { queue: QueueId },
    #[error("no break state named {name:?}")]
    UnknownBreak { name: String },
    #[error("{call} is not known to the ACD")]
    UnknownCall { call: CallId },
    #[error("{call} is already queued or connected")]
    DuplicateCall { call: CallId },
    #[error("agent {agent} is already configured")]
    DuplicateAgent { agent: AgentId },
    #[error("queue {queue} is already configured")]
    DuplicateQueue { queue: QueueId },
}

/// Why a caller was not queued; the flow takes the matching exit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the queue is full")]
    Full,
    #[error("no agent of the queue is logged in")]
    NoAgents,
    /// Call memory bound the caller to an agent who is not idle; the flow goes to its
    /// fallback node (only with [`MemoryConfig::refuse_when_unavailable`]).
    #[error("agent {agent} bound by call memory is not available")]
    MemoryAgentUnavailable { agent: AgentId },
}

/// [`Acd::enqueue`]'s failure: a refusal to branch on, or a bad input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Invalid(#[from] AcdError),
}

/// A caller to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnqueueRequest {
    pub call: CallId,
    pub queue: QueueId,
    /// Higher is served first (VIP); see [`queue`] for the score.
    pub priority: i64,
    pub caller_number: Option<String>,
    /// The dialled service number (call memory applies per service number).
    pub service_number: Option<String>,
    /// `None`: the queue's default.
    pub max_wait: Option<Duration>,
    /// `None`: the queue's default.
    pub announce_every: Option<Duration>,
}

impl EnqueueRequest {
    pub fn new(call: CallId, queue: impl Into<QueueId>) -> Self {
        EnqueueRequest {
            call,
            queue: queue.into(),
            priority: 0,
            caller_number: None,
            service_number: None,
            max_wait: None,
            announce_every: None,
        }
    }
}

/// A caller accepted into a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// 1-based position at enqueue.
    pub position: usize,
    /// Call memory routes the caller straight to this (idle) agent.
    pub memory_agent: Option<AgentId>,
}

/// Agents to ring for a call; they are reserved until answered, failed or cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub call: CallId,
    pub queue: QueueId,
    pub agents: Vec<AgentId>,
}

/// How a caller left the queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueOutcome {
    Answered {
        agent: AgentId,
    },
    /// Max wait reached (the flow's `timeout` exit).
    Timeout,
    /// The exit key (the flow's `exit` exit).
    Exited,
    /// The caller hung up.
    Abandoned,
    /// The last logged-in member logged out (the flow's `no_agents` exit).
    NoAgents,
}

/// Why the ACD withdrew an offer from an agent's phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StopReason {
    /// The agent's max ring time passed (counted as a miss).
    RingTimeout,
    /// Another agent answered (ring-all, progressive).
    AnsweredElsewhere,
    CallerLeft,
    Exited,
    QueueTimeout,
}

/// What the ACD tells the call layer and the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    AgentStateChanged(StateChange),
    /// Stop ringing `agent` for `call`; its reservation is already released.
    StopRinging {
        call: CallId,
        agent: AgentId,
        reason: StopReason,
    },
    /// The caller left the queue; exactly one per accepted caller.
    QueueExit {
        call: CallId,
        queue: QueueId,
        outcome: QueueOutcome,
        waited: Duration,
    },
    /// Announce position and estimated wait (`None`: unknown, no agent available).
    Announce {
        call: CallId,
        queue: QueueId,
        position: usize,
        estimated_wait: Option<Duration>,
    },
}

/// ACD-wide configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcdConfig {
    /// The admin's break state names (小休); others are refused.
    pub break_names: BTreeSet<String>,
    pub memory: MemoryConfig,
}

#[derive(Clone, Debug)]
struct Connected {
    agent: AgentId,
    queue: Option<QueueId>,
    since: Instant,
}

/// The ACD: agents, queues and call memory, driven as described in the module docs.
#[derive(Debug)]
pub struct Acd {
    config: AcdConfig,
    agents: BTreeMap<AgentId, Agent>,
    queues: BTreeMap<QueueId, Queue>,
    /// Waiting call → its queue.
    waiting: BTreeMap<CallId, QueueId>,
    connected: BTreeMap<CallId, Connected>,
    memory: CallMemory,
    /// Caller number → the agent who last answered them (returning customer first).
    last_served: BTreeMap<String, AgentId>,
    events: VecDeque<Event>,
    rng: StdRng,
    seq: u64,
}

impl Acd {
    pub fn new(config: AcdConfig, seed: u64) -> Self {
        Acd {
            config,
            agents: BTreeMap::new(),
            queues: BTreeMap::new(),
            waiting: BTreeMap::new(),
            connected: BTreeMap::new(),
            memory: CallMemory::default(),
            last_served: BTreeMap::new(),
            events: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
        }
    }

    pub fn add_queue(&mut self, config: QueueConfig) -> Result<(), AcdError> {
        if self.queues.contains_key(&config.id) {
            return Err(AcdError::DuplicateQueue { queue: config.id });
        }
        self.queues.insert(config.id.clone(), Queue::new(config));
        Ok(())
    }

    /// Adds a logged-out agent; its skill groups must exist.
    pub fn add_agent(&mut self, config: AgentConfig) -> Result<(), AcdError> {
        if self.agents.contains_key(&config.id) {
            return Err(AcdError::DuplicateAgent { agent: config.id });
        }
        if let Some(q) = config
            .skill_groups
            .keys()
            .find(|q| !self.queues.contains_key(*q))
        {
            return Err(AcdError::UnknownQueue { queue: q.clone() });
        }
        self.agents.insert(config.id.clone(), Agent::new(config));
        Ok(())
    }

    pub fn agent(&self, id: &AgentId) -> Option<&Agent> {
        self.agents.get(id)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn queue(&self, id: &QueueId) -> Option<&Queue> {
        self.queues.get(id)
    }

    pub fn memory(&self) -> &CallMemory {
        &self.memory
    }

    /// For loading persisted bindings.
    pub fn memory_mut(&mut self) -> &mut CallMemory {
        &mut self.memory
    }

    /// Calls queued or connected (through the ACD) right now.
    pub fn is_active(&self, call: CallId) -> bool {
        self.waiting.contains_key(&call) || self.connected.contains_key(&call)
    }

    /// Current 1-based position of a waiting call.
    pub fn position(&self, call: CallId, now: Instant) -> Option<usize> {
        let q = self.waiting.get(&call)?;
        self.queues[q].position(call, now)
    }

    fn agent_mut(&mut self, id: &AgentId) -> Result<&mut Agent, AcdError> {
        self.agents
            .get_mut(id)
            .ok_or_else(|| AcdError::UnknownAgent { agent: id.clone() })
    }

    fn emit(&mut self, change: StateChange) {
        self.events.push_back(Event::AgentStateChanged(change));
    }

    // ---- control interface -------------------------------------------------------------

    pub fn login(&mut self, agent: &AgentId, now: Instant) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.login(now)?;
        self.emit(change);
        Ok(())
    }

    /// Logs out; when that leaves a queue with no logged-in member, its callers leave with
    /// [`QueueOutcome::NoAgents`].
    pub fn logout(&mut self, agent: &AgentId, now: Instant) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.logout(now)?;
        self.emit(change);
        let groups: Vec<QueueId> = self.agents[agent]
            .config()
            .skill_groups
            .keys()
            .cloned()
            .collect();
        for q in groups {
            if self.logged_in_members(&q) == 0 {
                let calls: Vec<CallId> = self.queues[&q].order(now);
                for call in calls {
                    self.remove_waiting(call, QueueOutcome::NoAgents, StopReason::CallerLeft, now);
                }
            }
        }
        Ok(())
    }

    pub fn set_idle(&mut self, agent: &AgentId, now: Instant) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.set_idle(now)?;
        self.emit(change);
        Ok(())
    }

    pub fn set_busy(&mut self, agent: &AgentId, now: Instant) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.set_busy(now)?;
        self.emit(change);
        Ok(())
    }

    /// A break under one of the admin's names.
    pub fn set_break(&mut self, agent: &AgentId, name: &str, now: Instant) -> Result<(), AcdError> {
        if !self.config.break_names.contains(name) {
            return Err(AcdError::UnknownBreak {
                name: name.to_owned(),
            });
        }
        let change = self.agent_mut(agent)?.set_break(name, now)?;
        self.emit(change);
        Ok(())
    }

    /// Binds `customer` to `agent` in call memory for the configured validity and service
    /// numbers. Does nothing when call memory is off.
    pub fn remember(&mut self, customer: &str, agent: &AgentId, now: Instant) {
        if let Some(validity) = self.config.memory.validity {
            let binding = Binding {
                agent: agent.clone(),
                expires_at: now + validity,
                service_numbers: self.config.memory.service_numbers.clone(),
            };
            self.memory.bind(customer, binding);
        }
    }

    /// The agent places an outbound call (counted for "fewest calls"; the customer is
    /// remembered by call memory). End it with [`Acd::call_ended`].
    pub fn outbound_started(
        &mut self,
        agent: &AgentId,
        call: CallId,
        customer: Option<&str>,
        now: Instant,
    ) -> Result<(), AcdError> {
        if self.is_active(call) {
            return Err(AcdError::DuplicateCall { call });
        }
        let change = self.agent_mut(agent)?.start_outbound(call, now)?;
        self.emit(change);
        self.connected.insert(
            call,
            Connected {
                agent: agent.clone(),
                queue: None,
                since: now,
            },
        );
        if let Some(c) = customer {
            self.remember(c, agent, now);
        }
        Ok(())
    }

    // ---- callers -----------------------------------------------------------------------

    fn logged_in_members(&self, queue: &QueueId) -> usize {
        self.agents
            .values()
            .filter(|a| a.is_logged_in() && a.config().skill_groups.contains_key(queue))
            .count()
    }

    /// Members who will take calls soon: logged in, not busy, not on a break.
    fn available_members(&self, queue: &QueueId) -> usize {
        self.agents
            .values()
            .filter(|a| a.config().skill_groups.contains_key(queue))
            .filter(|a| {
                !matches!(
                    a.state(),
                    AgentState::LoggedOut | AgentState::Busy { .. } | AgentState::Break { .. }
                )
            })
            .count()
    }

    /// Queue a caller. Call memory is looked up first: a valid binding to an idle agent
    /// routes the caller to that agent (even if the queue is full or has no agent logged in).
    pub fn enqueue(&mut self, req: EnqueueRequest, now: Instant) -> Result<Enqueued, EnqueueError> {
        let Some(queue) = self.queues.get(&req.queue) else {
            return Err(AcdError::UnknownQueue { queue: req.queue }.into());
        };
        if self.is_active(req.call) {
            return Err(AcdError::DuplicateCall { call: req.call }.into());
        }
        let mut pinned = None;
        if self.config.memory.validity.is_some() {
            let bound = req
                .caller_number
                .as_deref()
                .and_then(|c| self.memory.lookup(c, req.service_number.as_deref(), now));
            if let Some(agent) = bound {
                if self.agents.get(agent).is_some_and(Agent::is_idle) {
                    pinned = Some(agent.clone());
                } else if self.config.memory.refuse_when_unavailable {
                    return Err(Refusal::MemoryAgentUnavailable {
                        agent: agent.clone(),
                    }
                    .into());
                }
            }
        }
        if pinned.is_none() {
            let refusal = if queue.config.max_len.is_some_and(|max| queue.len() >= max) {
                Some(Refusal::Full)
            } else if self.logged_in_members(&req.queue) == 0 {
                Some(Refusal::NoAgents)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                let stats = &mut self.queues.get_mut(&req.queue).expect("checked").stats;
                match refusal {
                    Refusal::Full => stats.refused_full += 1,
                    _ => stats.refused_no_agents += 1,
                }
                return Err(refusal.into());
            }
        }
        self.seq += 1;
        let queue = self.queues.get_mut(&req.queue).expect("checked");
        let announce_every = req
            .announce_every
            .or(queue.config.announce_every)
            .filter(|d| !d.is_zero());
        let waiting = Waiting {
            call: req.call,
            priority: req.priority,
            caller_number: req.caller_number,
            seq: self.seq,
            enqueued_at: now,
            deadline: now + req.max_wait.unwrap_or(queue.config.max_wait),
            announce_every,
            next_announce: announce_every.map(|d| now + d),
            pinned: pinned.clone(),
            ringing: BTreeSet::new(),
            tried: BTreeSet::new(),
            last_failure: None,
            retry_at: None,
            next_step: None,
        };
        queue.waiting.insert(req.call, waiting);
        queue.stats.entered += 1;
        let position = queue.position(req.call, now).expect("just inserted");
        self.waiting.insert(req.call, req.queue);
        Ok(Enqueued {
            position,
            memory_agent: pinned,
        })
    }

    /// The caller pressed the exit key.
    pub fn leave(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
        if !self.waiting.contains_key(&call) {
            return Err(AcdError::UnknownCall { call });
        }
        self.remove_waiting(call, QueueOutcome::Exited, StopReason::Exited, now);
        Ok(())
    }

    /// The caller hung up: abandoned if waiting, the end of the call if connected.
    pub fn caller_left(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
        if self.connected.contains_key(&call) {
            return self.call_ended(call, now);
        }
        if !self.waiting.contains_key(&call) {
            return Err(AcdError::UnknownCall { call });
        }
        self.remove_waiting(call, QueueOutcome::Abandoned, StopReason::CallerLeft, now);
        Ok(())
    }

    /// Removes a waiting caller, releasing its reservations, counting and reporting it.
    fn remove_waiting(
        &mut self,
        call: CallId,
        outcome: QueueOutcome,
        stop: StopReason,
        now: Instant,
    ) {
        let Some(qid) = self.waiting.remove(&call) else {
            return;
        };
        let queue = self.queues.get_mut(&qid).expect("index consistent");
        let w = queue.waiting.remove(&call).expect("index consistent");
        let waited = now.saturating_duration_since(w.enqueued_at);
        let within = waited <= queue.config.service_level;
        let st = &mut queue.stats;
        match &outcome {
            QueueOutcome::Answered { .. } => {
                st.answered += 1;
                st.answered_within_sl += u64::from(within);
                st.answered_wait += waited;
            }
            QueueOutcome::Timeout => st.timeouts += 1,
            QueueOutcome::Exited => st.exited += 1,
            QueueOutcome::Abandoned => {
                st.abandoned += 1;
                st.abandoned_within_sl += u64::from(within);
            }
            QueueOutcome::NoAgents => st.no_agents += 1,
        }
        for agent in w.ringing {
            let a = self.agents.get_mut(&agent).expect("ringing agents exist");
            let change = a
                .cancel_offer(call, now)
                .expect("ringing agents are reserved for the call");
            self.emit(change);
            self.events.push_back(Event::StopRinging {
                call,
                agent,
                reason: stop,
            });
        }
        self.events.push_back(Event::QueueExit {
            call,
            queue: qid,
            outcome,
            waited,
        });
    }

    // ---- agent legs --------------------------------------------------------------------

    /// `agent` answered `call`: the caller leaves the queue answered, other ringing agents
    /// are released, and the caller is remembered for returning-customer routing.
    pub fn offer_answered(
        &mut self,
        call: CallId,
        agent: &AgentId,
        now: Instant,
    ) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.answer(call, now)?;
        self.emit(change);
        let qid = self.waiting[&call].clone();
        let queue = self.queues.get_mut(&qid).expect("index consistent");
        let w = queue
            .waiting
            .get_mut(&call)
            .expect("reserved agents ring for waiting calls");
        w.ringing.remove(agent);
        let caller = w.caller_number.clone();
        queue.last_answered = Some(agent.clone());
        self.remove_waiting(
            call,
            QueueOutcome::Answered {
                agent: agent.clone(),
            },
            StopReason::AnsweredElsewhere,
            now,
        );
        self.connected.insert(
            call,
            Connected {
                agent: agent.clone(),
                queue: Some(qid),
                since: now,
            },
        );
        if let Some(c) = caller {
            self.last_served.insert(c.clone(), agent.clone());
            self.remember(&c, agent, now);
        }
        Ok(())
    }

    /// The offer to `agent` failed; the caller goes on to the next agent.
    pub fn offer_failed(
        &mut self,
        call: CallId,
        agent: &AgentId,
        _reason: OfferFailure,
        now: Instant,
    ) -> Result<(), AcdError> {
        let change = self.agent_mut(agent)?.offer_failed(call, now)?;
        self.emit(change);
        let qid = &self.waiting[&call];
        let queue = self.queues.get_mut(qid).expect("index consistent");
        let w = queue
            .waiting
            .get_mut(&call)
            .expect("reserved agents ring for waiting calls");
        w.ringing.remove(agent);
        w.tried.insert(agent.clone());
        w.last_failure = Some(now);
        if w.pinned.as_ref() == Some(agent) {
            w.pinned = None;
        }
        if w.ringing.is_empty() {
            w.next_step = None;
        }
        Ok(())
    }

    /// The connected call ended (either side hung up): the agent goes to wrap-up.
    pub fn call_ended(&mut self, call: CallId, now: Instant) -> Result<(), AcdError> {
        let Some(c) = self.connected.get(&call) else {
            return Err(AcdError::UnknownCall { call });
        };
        let agent = c.agent.clone();
        let change = self.agent_mut(&agent)?.hang_up(call, now)?;
        self.emit(change);
        let c = self.connected.remove(&call).expect("checked");
        if let Some(q) = c.queue {
            let handle =
                now.saturating_duration_since(c.since) + self.agents[&agent].config().wrap_up;
            self.queues
                .get_mut(&q)
                .expect("queues are never removed")
                .record_handle_time(handle);
        }
        Ok(())
    }

    // ---- outputs -----------------------------------------------------------------------

    /// The next agents to ring, reserved already. Call until `None` after every input.
    pub fn poll_offer(&mut self, now: Instant) -> Option<Offer> {
        let mut order: Vec<(bool, std::cmp::Reverse<i128>, u64, CallId, QueueId)> = Vec::new();
        for (qid, q) in &self.queues {
            for w in q.waiting.values() {
                let more = w.ringing.is_empty() || q.config.strategy.rings_many();
                if more {
                    let score = w.score_ms(q.config.priority_weight, now);
                    order.push((
                        w.pinned.is_none(),
                        std::cmp::Reverse(score),
                        w.seq,
                        w.call,
                        qid.clone(),
                    ));
                }
            }
        }
        order.sort();
        for (_, _, _, call, qid) in order {
            let agents = self.choose(call, &qid, now);
            if agents.is_empty() {
                continue;
            }
            for agent in &agents {
                let change = self
                    .agents
                    .get_mut(agent)
                    .expect("picked")
                    .reserve(call, now)
                    .expect("picked idle");
                self.emit(change);
            }
            let queue = self.queues.get_mut(&qid).expect("exists");
            let w = queue.waiting.get_mut(&call).expect("exists");
            if let Strategy::RingProgressively { step } = base(&queue.config.strategy) {
                // A memory-routed offer rings its agent alone: no steps until it fails.
                w.next_step = w.pinned.is_none().then(|| now + *step);
            }
            w.ringing.extend(agents.iter().cloned());
            w.retry_at = None;
            queue.last_rung = agents.last().cloned();
            return Some(Offer {
                call,
                queue: qid,
                agents,
            });
        }
        None
    }

    /// Which agents to add for `call` now (empty: none).
    fn choose(&mut self, call: CallId, qid: &QueueId, now: Instant) -> Vec<AgentId> {
        {
            // A due retry is consumed here whatever happens, so no past instant lingers in
            // `poll_timeout`.
            let w = self
                .queues
                .get_mut(qid)
                .expect("exists")
                .waiting
                .get_mut(&call)
                .expect("exists");
            match w.retry_at {
                Some(t) if t <= now => w.retry_at = None,
                Some(_) if w.ringing.is_empty() => return Vec::new(),
                _ => {}
            }
            // Call memory's agent is no longer idle: the caller goes by the strategy.
            if let Some(p) = &w.pinned {
                if w.ringing.is_empty() && !self.agents[p].is_idle() {
                    w.pinned = None;
                }
            }
        }
        let queue = &self.queues[qid];
        let w = &queue.waiting[&call];
        if let Some(p) = &w.pinned {
            if w.ringing.is_empty() && self.agents[p].is_idle() {
                return vec![p.clone()];
            }
            if w.ringing.contains(p) {
                return Vec::new();
            }
        }
        let mut members: Vec<Member<'_>> = self
            .agents
            .values()
            .filter_map(|agent| {
                let membership = *agent.config().skill_groups.get(qid)?;
                Some(Member { agent, membership })
            })
            .collect();
        members.sort_by(|a, b| {
            (a.membership.order, a.agent.id()).cmp(&(b.membership.order, b.agent.id()))
        });
        let ctx = PickContext {
            now,
            last_answered: queue.last_answered.as_ref(),
            last_rung: queue.last_rung.as_ref(),
            returning_agent: w
                .caller_number
                .as_ref()
                .and_then(|c| self.last_served.get(c)),
        };
        let strategy = if w.ringing.is_empty() {
            queue.config.strategy.clone()
        } else {
            match base(&queue.config.strategy) {
                Strategy::RingAll => Strategy::RingAll,
                Strategy::RingProgressively { .. } if w.next_step.is_none_or(|t| t <= now) => {
                    Strategy::Linear
                }
                _ => return Vec::new(),
            }
        };
        let excluded = |id: &AgentId| w.ringing.contains(id) || w.tried.contains(id);
        let picked = strategy::pick(&strategy, &members, &excluded, &ctx, &mut self.rng);
        if !picked.is_empty() || w.tried.is_empty() || !w.ringing.is_empty() {
            if picked.is_empty() && !w.ringing.is_empty() {
                // Progressive step with nobody to add: add as soon as someone is idle.
                let w = self
                    .queues
                    .get_mut(qid)
                    .expect("exists")
                    .waiting
                    .get_mut(&call)
                    .expect("exists");
                w.next_step = None;
            }
            return picked;
        }
        // Everyone callable has missed this caller: a new round after the retry delay.
        let again = strategy::pick(&strategy, &members, &|_| false, &ctx, &mut self.rng);
        if again.is_empty() {
            return again;
        }
        // At least a second between rounds: with no delay, an agent whose phone fails at once
        // (not registered) would be offered the same caller again in the same instant, forever.
        let retry_at =
            w.last_failure.unwrap_or(now) + queue.config.retry_delay.max(MIN_RETRY_DELAY);
        let w = self
            .queues
            .get_mut(qid)
            .expect("exists")
            .waiting
            .get_mut(&call)
            .expect("exists");
        if now >= retry_at {
            w.tried.clear();
            again
        } else {
            w.retry_at = Some(retry_at);
            Vec::new()
        }
    }

    /// The next event for the call layer or the records.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Acd::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let agents = self.agents.values().filter_map(Agent::poll_timeout);
        let callers = self.queues.values().flat_map(|q| {
            let progressive =
                matches!(base(&q.config.strategy), Strategy::RingProgressively { .. });
            q.waiting.values().flat_map(move |w| {
                let step = if progressive && !w.ringing.is_empty() && w.pinned.is_none() {
                    w.next_step
                } else {
                    None
                };
                [Some(w.deadline), w.next_announce, w.retry_at, step]
                    .into_iter()
                    .flatten()
            })
        });
        agents.chain(callers).min()
    }

    /// Everything due at `now`: wrap-up ends, ring timeouts, queue timeouts, announcements.
    /// Progressive ring steps and retries become offers at the next [`Acd::poll_offer`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<AgentId> = self.agents.keys().cloned().collect();
        for id in ids {
            let agent = self.agents.get_mut(&id).expect("listed");
            if let Some(change) = agent.handle_timeout(now) {
                self.emit(change);
            } else if let AgentState::Reserved { call, until, .. } = *agent.state() {
                if until <= now {
                    self.offer_failed(call, &id, OfferFailure::NoAnswer, now)
                        .expect("reserved for call");
                    self.events.push_back(Event::StopRinging {
                        call,
                        agent: id,
                        reason: StopReason::RingTimeout,
                    });
                }
            }
        }
        let expired: Vec<CallId> = self
            .queues
            .values()
            .flat_map(|q| {
                q.waiting
                    .values()
                    .filter(|w| w.deadline <= now)
                    .map(|w| w.call)
            })
            .collect();
        for call in expired {
            self.remove_waiting(call, QueueOutcome::Timeout, StopReason::QueueTimeout, now);
        }
        let qids: Vec<QueueId> = self.queues.keys().cloned().collect();
        for qid in qids {
            let available = self.available_members(&qid);
            let queue = self.queues.get_mut(&qid).expect("listed");
            let order = queue.order(now);
            for (i, call) in order.into_iter().enumerate() {
                let w = queue.waiting.get_mut(&call).expect("listed");
                let (Some(next), Some(every)) = (w.next_announce, w.announce_every) else {
                    continue;
                };
                if next > now {
                    continue;
                }
                let mut next = next;
                while next <= now {
                    next += every;
                }
                w.next_announce = Some(next);
                let position = i + 1;
                let estimated_wait = queue.estimated_wait(position, available);
                self.events.push_back(Event::Announce {
                    call,
                    queue: qid.clone(),
                    position,
                    estimated_wait,
                });
            }
        }
    }
}

/// The strategy under any "returning customer first" wrappers.
fn base(s: &Strategy) -> &Strategy {
    match s {
        Strategy::ReturningCustomer(inner) => base(inner),
        other => other,
    }
}
