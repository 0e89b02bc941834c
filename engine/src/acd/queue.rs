//! One skill group's queue: its configuration, waiting callers, ordering, estimates and
//! service-level counters.
//!
//! ## Order of service
//! A waiting caller's score at `now`, in milliseconds:
//!
//! ```text
//! score = priority × priority_weight + time waited
//! ```
//!
//! Highest score first; equal scores by arrival (enqueue sequence). With the default
//! `priority_weight` of 60 s, a priority-1 (VIP) caller counts as having waited one minute
//! more than an ordinary caller, so an ordinary caller who has waited over a minute longer
//! still goes first — waiting time always catches up; priority is never absolute unless the
//! weight is made very large. Negative priorities push a caller back the same way.
//!
//! ## Estimated wait
//! ```text
//! estimated_wait = mean handle time × position ÷ agents available
//! ```
//! *Mean handle time* is the mean of talk time + the agent's configured wrap-up over the
//! queue's last [`RECENT_CALLS`] answered calls, or [`QueueConfig::default_handle_time`]
//! before any. *Agents available* are members logged in and not busy or on a break (idle,
//! ringing, talking or in wrap-up: they will come back to the queue). With none the estimate
//! is unknown (`None`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::strategy::Strategy;
use super::{AgentId, CallId, QueueId};

/// Calls the mean handle time is taken over.
pub const RECENT_CALLS: usize = 20;

/// A skill group's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub id: QueueId,
    pub strategy: Strategy,
    /// Callers waiting at most; one more is refused [`super::Refusal::Full`].
    pub max_len: Option<usize>,
    /// Default max wait when the enqueue does not give one (→ [`super::QueueOutcome::Timeout`]).
    pub max_wait: Duration,
    /// Default announcement interval when the enqueue does not give one.
    pub announce_every: Option<Duration>,
    /// Service-level threshold: answered within this counts as within service level.
    pub service_level: Duration,
    /// Score weight of one priority point (see the module docs).
    pub priority_weight: Duration,
    /// When every callable member has already missed this caller, wait this long after the
    /// last miss before ringing them again.
    pub retry_delay: Duration,
    /// Handle time assumed before the queue has answered any call.
    pub default_handle_time: Duration,
}

impl QueueConfig {
    /// Defaults: 300 s max wait, no limit on length, no announcements, 20 s service level,
    /// 60 s per priority point, 5 s retry delay, 180 s assumed handle time.
    pub fn new(id: impl Into<QueueId>, strategy: Strategy) -> Self {
        QueueConfig {
            id: id.into(),
            strategy,
            max_len: None,
            max_wait: Duration::from_secs(300),
            announce_every: None,
            service_level: Duration::from_secs(20),
            priority_weight: Duration::from_secs(60),
            retry_delay: Duration::from_secs(5),
            default_handle_time: Duration::from_secs(180),
        }
    }
}

/// Per-queue counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Callers accepted into the queue.
    pub entered: u64,
    pub answered: u64,
    /// Answered with a wait ≤ the service-level threshold.
    pub answered_within_sl: u64,
    /// Hung up while waiting.
    pub abandoned: u64,
    /// Hung up within the service-level threshold (short abandons).
    pub abandoned_within_sl: u64,
    pub timeouts: u64,
    /// Left by the exit key.
    pub exited: u64,
    /// Removed because the last logged-in member logged out.
    pub no_agents: u64,
    pub refused_full: u64,
    pub refused_no_agents: u64,
    /// Sum of the waits of answered callers.
    pub answered_wait: Duration,
}

impl QueueStats {
    /// answered within threshold ÷ (answered + abandoned + timeouts); `None` before any.
    pub fn service_level(&self) -> Option<f64> {
        let total = self.answered + self.abandoned + self.timeouts;
        (total > 0).then(|| self.answered_within_sl as f64 / total as f64)
    }
}

/// A caller in the queue.
#[derive(Clone, Debug)]
pub(super) struct Waiting {
    pub call: CallId,
    pub priority: i64,
    pub caller_number: Option<String>,
    pub seq: u64,
    pub enqueued_at: Instant,
    pub deadline: Instant,
    pub announce_every: Option<Duration>,
    pub next_announce: Option<Instant>,
    /// Call memory: ring only this agent first.
    pub pinned: Option<AgentId>,
    /// Agents currently reserved for this caller.
    pub ringing: BTreeSet<AgentId>,
    /// Agents who missed this caller in the current round.
    pub tried: BTreeSet<AgentId>,
    pub last_failure: Option<Instant>,
    /// Every callable member missed; ring again from here.
    pub retry_at: Option<Instant>,
    /// Progressive ringing: when the next agent is added. `None` while ringing: add as soon
    /// as a member is idle (the step has passed).
    pub next_step: Option<Instant>,
}

impl Waiting {
    pub fn score_ms(&self, weight: Duration, now: Instant) -> i128 {
        i128::from(self.priority) * weight.as_millis() as i128
            + now.saturating_duration_since(self.enqueued_at).as_millis() as i128
    }
}

/// A skill group's runtime queue.
#[derive(Clone, Debug)]
pub struct Queue {
    pub(super) config: QueueConfig,
    pub(super) waiting: BTreeMap<CallId, Waiting>,
    pub(super) stats: QueueStats,
    pub(super) last_answered: Option<AgentId>,
    pub(super) last_rung: Option<AgentId>,
    pub(super) recent_handle: VecDeque<Duration>,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Self {
        Queue {
            config,
            waiting: BTreeMap::new(),
            stats: QueueStats::default(),
            last_answered: None,
            last_rung: None,
            recent_handle: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// How long the caller waiting longest has waited (`None`: nobody waits).
    pub fn longest_wait(&self, now: Instant) -> Option<Duration> {
        self.waiting
            .values()
            .map(|w| now.saturating_duration_since(w.enqueued_at))
            .max()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn contains(&self, call: CallId) -> bool {
        self.waiting.contains_key(&call)
    }

    /// Waiting calls in order of service at `now` (highest score first, ties by arrival).
    pub fn order(&self, now: Instant) -> Vec<CallId> {
        let w = self.config.priority_weight;
        let mut v: Vec<&Waiting> = self.waiting.values().collect();
        v.sort_by_key(|c| (std::cmp::Reverse(c.score_ms(w, now)), c.seq));
        v.into_iter().map(|c| c.call).collect()
    }

    /// 1-based position of `call` at `now`.
    pub fn position(&self, call: CallId, now: Instant) -> Option<usize> {
        self.order(now)
            .iter()
            .position(|c| *c == call)
            .map(|i| i + 1)
    }

    /// Mean handle time of the recent answered calls (or the configured default).
    pub fn mean_handle_time(&self) -> Duration {
        if self.recent_handle.is_empty() {
            return self.config.default_handle_time;
        }
        self.recent_handle.iter().sum::<Duration>() / self.recent_handle.len() as u32
    }

    /// See the module docs; `available` agents as defined there.
    pub fn estimated_wait(&self, position: usize, available: usize) -> Option<Duration> {
        if available == 0 {
            return None;
        }
        let aht = self.mean_handle_time().as_millis();
        Some(Duration::from_millis(
            (aht * position as u128 / available as u128) as u64,
        ))
    }

    pub(super) fn record_handle_time(&mut self, handle: Duration) {
        if self.recent_handle.len() == RECENT_CALLS {
            self.recent_handle.pop_front();
        }
        self.recent_handle.push_back(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(call: u64, priority: i64, seq: u64, at: Instant) -> Waiting {
        Waiting {
            call: CallId(call),
            priority,
            caller_number: None,
            seq,
            enqueued_at: at,
            deadline: at + Duration::from_secs(600),
            announce_every: None,
            next_announce: None,
            pinned: None,
            ringing: BTreeSet::new(),
            tried: BTreeSet::new(),
            last_failure: None,
            retry_at: None,
            next_step: None,
        }
    }

    #[test]
    fn vip_goes_first_until_waiting_time_catches_up() {
        let t = super::super::test_epoch();
        let s = Duration::from_secs;
        let mut q = Queue::new(QueueConfig::new("q", Strategy::Linear));
        q.waiting.insert(CallId(1), waiting(1, 0, 1, t));
        q.waiting.insert(CallId(2), waiting(2, 0, 2, t + s(10)));
        q.waiting.insert(CallId(3), waiting(3, 1, 3, t + s(30)));
        // At 30 s: scores 30, 20, 60 → VIP first, then by waiting time.
        assert_eq!(q.order(t + s(30)), vec![CallId(3), CallId(1), CallId(2)]);
        assert_eq!(q.position(CallId(1), t + s(30)), Some(2));
        // A VIP arriving at 90 s scores 60 against the first caller's 90.
        q.waiting.insert(CallId(4), waiting(4, 1, 4, t + s(90)));
        assert_eq!(
            q.order(t + s(90)),
            vec![CallId(3), CallId(1), CallId(2), CallId(4)]
        );
        // Equal scores (10 at 100 s): arrival order, and 6 has the lower sequence.
        q.waiting.insert(CallId(5), waiting(5, 0, 5, t + s(90)));
        q.waiting.insert(CallId(6), waiting(6, -1, 0, t + s(30)));
        assert_eq!(
            q.order(t + s(100)),
            vec![
                CallId(3),
                CallId(1),
                CallId(2),
                CallId(4),
                CallId(6),
                CallId(5)
            ]
        );
    }

    #[test]
    fn estimated_wait_from_recent_handle_times() {
        let s = Duration::from_secs;
        let mut q = Queue::new(QueueConfig::new("q", Strategy::Linear));
        assert_eq!(q.estimated_wait(2, 0), None);
        assert_eq!(
            q.estimated_wait(2, 3),
            Some(s(120)),
            "default 180 s × 2 ÷ 3"
        );
        for _ in 0..RECENT_CALLS {
            q.record_handle_time(s(1000));
        }
        q.record_handle_time(s(100));
        q.record_handle_time(s(100));
        // Only the last 20 count: 18 × 1000 + 2 × 100 = 18200 / 20 = 910.
        assert_eq!(q.mean_handle_time(), s(910));
        assert_eq!(q.estimated_wait(1, 2), Some(s(455)));
    }

    #[test]
    fn service_level_ratio() {
        let mut st = QueueStats::default();
        assert_eq!(st.service_level(), None);
        st.answered = 3;
        st.answered_within_sl = 2;
        st.abandoned = 1;
        assert_eq!(st.service_level(), Some(0.5));
    }
}
