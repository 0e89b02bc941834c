//! Distribution strategies: which idle agent(s) of a skill group to ring for a caller.
//!
//! [`pick`] sees the queue's members in *rank order* — [`Membership::order`] ascending, then
//! [`AgentId`] ascending — and considers only those that are [`Idle`](super::AgentState::Idle)
//! and not excluded for this call (already ringing for it or already tried). Every strategy
//! breaks ties by rank order, so identical inputs (and the same random source) always give the
//! same answer.

use std::time::{Duration, Instant};

use rand::Rng;

use super::agent::{Agent, AgentStatus, Membership};
use super::AgentId;

/// How a skill group distributes its callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// 回头客优先: the agent who last served this caller (any queue) if idle, else `base`.
    ReturningCustomer(Box<Strategy>),
    /// 轮流分配: the first idle member after the one who last *answered* a call from this
    /// queue, in rank order, cyclically — answered calls take turns.
    RoundRobin,
    /// Like round robin, but continues after the member last *rung* by this queue (answered
    /// or not), so a ring pass resumes where the previous one left off.
    RoundRobinMemory,
    /// 最小次数优先: fewest calls (inbound answered + outbound).
    FewestCalls,
    /// 最小呼入次数优先: fewest inbound calls answered.
    FewestInboundCalls,
    /// 最长空闲时间优先: longest total idle time since the counters began (current idle included).
    LongestTotalIdle,
    /// 最长空闲状态优先: longest in the current idle state (earliest `Idle { since }`).
    LongestIdleState,
    /// Least total talk time.
    LeastTalkTime,
    /// Top-down / linear: always the first idle member in rank order.
    Linear,
    /// Every idle member at once; idle members that become free while it rings are added.
    RingAll,
    /// Uniformly random among idle members.
    Random,
    /// Random, with probability proportional to [`Membership::weight`]; weight-0 members are
    /// chosen only when every idle member has weight 0 (then uniformly).
    WeightedRandom,
    /// Ring the first idle member in rank order, then add the next one every `step` while
    /// the earlier ones keep ringing.
    RingProgressively { step: Duration },
}

impl Strategy {
    /// Offers ring several agents for one caller.
    pub fn rings_many(&self) -> bool {
        match self {
            Strategy::RingAll | Strategy::RingProgressively { .. } => true,
            Strategy::ReturningCustomer(base) => base.rings_many(),
            _ => false,
        }
    }
}

/// A queue member as strategies see it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub agent: &'a Agent,
    pub membership: Membership,
}

/// Everything a pick depends on besides the members.
#[derive(Clone, Copy, Debug)]
pub struct PickContext<'a> {
    pub now: Instant,
    /// The member who last answered a call of this queue (round robin).
    pub last_answered: Option<&'a AgentId>,
    /// The member last rung by this queue (round robin with memory).
    pub last_rung: Option<&'a AgentId>,
    /// The agent who last served this caller (returning customer first).
    pub returning_agent: Option<&'a AgentId>,
}

/// The agent(s) to ring: empty when no member is callable; one agent for every strategy but
/// [`Strategy::RingAll`] (all candidates, rank order). `members` must be in rank order;
/// `excluded` removes members already ringing for or tried by this caller.
pub fn pick<R: Rng + ?Sized>(
    strategy: &Strategy,
    members: &[Member<'_>],
    excluded: &dyn Fn(&AgentId) -> bool,
    ctx: &PickContext<'_>,
    rng: &mut R,
) -> Vec<AgentId> {
    let callable = |m: &Member<'_>| m.agent.is_idle() && !excluded(m.agent.id());
    let candidates: Vec<Member<'_>> = members.iter().copied().filter(callable).collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let now = ctx.now;
    // `min_by_key` keeps the first of equal keys, i.e. the best-ranked.
    let min_by = |key: &dyn Fn(&Agent) -> (u64, Duration)| {
        candidates
            .iter()
            .min_by_key(|m| key(m.agent))
            .map(|m| m.agent.id().clone())
    };
    let one = match strategy {
        Strategy::ReturningCustomer(base) => {
            match ctx
                .returning_agent
                .and_then(|r| candidates.iter().find(|m| m.agent.id() == r))
            {
                Some(m) => Some(m.agent.id().clone()),
                None => return pick(base, members, excluded, ctx, rng),
            }
        }
        Strategy::RingAll => return candidates.iter().map(|m| m.agent.id().clone()).collect(),
        Strategy::Linear | Strategy::RingProgressively { .. } => {
            Some(candidates[0].agent.id().clone())
        }
        Strategy::RoundRobin => after(members, &candidates, ctx.last_answered),
        Strategy::RoundRobinMemory => after(members, &candidates, ctx.last_rung),
        Strategy::FewestCalls => min_by(&|a| (a.total_calls(), Duration::ZERO)),
        Strategy::FewestInboundCalls => min_by(&|a| (a.stats().answered, Duration::ZERO)),
        Strategy::LeastTalkTime => min_by(&|a| (0, a.time_in(&AgentStatus::Talking, now))),
        Strategy::LongestTotalIdle => candidates
            .iter()
            .rev()
            .max_by_key(|m| m.agent.time_in(&AgentStatus::Idle, now))
            .map(|m| m.agent.id().clone()),
        Strategy::LongestIdleState => candidates
            .iter()
            .rev()
            .max_by_key(|m| now.saturating_duration_since(idle_since(m.agent, now)))
            .map(|m| m.agent.id().clone()),
        Strategy::Random => Some(
            candidates[rng.random_range(0..candidates.len())]
                .agent
                .id()
                .clone(),
        ),
        Strategy::WeightedRandom => {
            let total: u64 = candidates
                .iter()
                .map(|m| u64::from(m.membership.weight))
                .sum();
            if total == 0 {
                Some(
                    candidates[rng.random_range(0..candidates.len())]
                        .agent
                        .id()
                        .clone(),
                )
            } else {
                let mut ticket = rng.random_range(0..total);
                candidates
                    .iter()
                    .find(|m| {
                        let w = u64::from(m.membership.weight);
                        if ticket < w {
                            true
                        } else {
                            ticket -= w;
                            false
                        }
                    })
                    .map(|m| m.agent.id().clone())
            }
        }
    };
    one.into_iter().collect()
}

fn idle_since(agent: &Agent, now: Instant) -> Instant {
    match agent.state() {
        super::AgentState::Idle { since } => *since,
        _ => now,
    }
}

/// The first candidate strictly after `cursor` in the members' cyclic rank order; from the
/// top when there is no cursor or it is no longer a member.
fn after(
    members: &[Member<'_>],
    candidates: &[Member<'_>],
    cursor: Option<&AgentId>,
) -> Option<AgentId> {
    let start = cursor
        .and_then(|c| members.iter().position(|m| m.agent.id() == c))
        .map_or(0, |i| i + 1);
    (0..members.len())
        .map(|k| members[(start + k) % members.len()].agent.id())
        .find(|id| candidates.iter().any(|c| c.agent.id() == *id))
        .cloned()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::agent::AgentConfig;
    use super::super::CallId;
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Four idle members a..d in rank order, all logged in at `t`.
    struct Scene {
        t: Instant,
        agents: Vec<Agent>,
    }

    impl Scene {
        fn new() -> Self {
            let t = super::super::test_epoch();
            let agents = ["a", "b", "c", "d"]
                .iter()
                .map(|id| {
                    let mut a = Agent::new(AgentConfig::new(*id));
                    a.login(t).unwrap();
                    a
                })
                .collect();
            Scene { t, agents }
        }

        fn agent(&mut self, id: &str) -> &mut Agent {
            self.agents.iter_mut().find(|a| a.id().0 == id).unwrap()
        }

        /// `id` takes a call lasting `talk` from `at` (no wrap-up).
        fn serve(&mut self, id: &str, at: Instant, talk: Duration) {
            let call = CallId(at.duration_since(self.t).as_millis() as u64 + 1000);
            let a = self.agent(id);
            a.reserve(call, at).unwrap();
            a.answer(call, at).unwrap();
            a.hang_up(call, at + talk).unwrap();
        }

        fn pick_at(&self, strategy: &Strategy, now: Instant, ctx: PickContext<'_>) -> Vec<AgentId> {
            self.pick_weighted(strategy, now, ctx, &[1, 1, 1, 1], 0)
        }

        fn pick_weighted(
            &self,
            strategy: &Strategy,
            now: Instant,
            ctx: PickContext<'_>,
            weights: &[u32],
            seed: u64,
        ) -> Vec<AgentId> {
            let members: Vec<Member<'_>> = self
                .agents
                .iter()
                .zip(weights)
                .map(|(agent, &weight)| Member {
                    agent,
                    membership: Membership { order: 0, weight },
                })
                .collect();
            let ctx = PickContext { now, ..ctx };
            pick(
                strategy,
                &members,
                &|_| false,
                &ctx,
                &mut StdRng::seed_from_u64(seed),
            )
        }
    }

    fn ctx(now: Instant) -> PickContext<'static> {
        PickContext {
            now,
            last_answered: None,
            last_rung: None,
            returning_agent: None,
        }
    }

    fn ids(v: &[&str]) -> Vec<AgentId> {
        v.iter().map(|s| AgentId::from(*s)).collect()
    }

    #[test]
    fn only_idle_members_are_ever_picked() {
        let mut s = Scene::new();
        let t = s.t;
        s.agent("a").set_busy(t).unwrap();
        s.agent("b").set_break("lunch", t).unwrap();
        s.agent("c").reserve(CallId(1), t).unwrap();
        s.agent("d").logout(t).unwrap();
        for strategy in all_strategies() {
            assert!(s.pick_at(&strategy, t, ctx(t)).is_empty(), "{strategy:?}");
        }
        s.agent("d").login(t).unwrap();
        for strategy in all_strategies() {
            assert_eq!(s.pick_at(&strategy, t, ctx(t)), ids(&["d"]), "{strategy:?}");
        }
    }

    #[test]
    fn excluded_members_are_skipped() {
        let s = Scene::new();
        let members: Vec<Member<'_>> = s
            .agents
            .iter()
            .map(|agent| Member {
                agent,
                membership: Membership::default(),
            })
            .collect();
        let excluded = |id: &AgentId| id.0 == "a" || id.0 == "c";
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            pick(&Strategy::Linear, &members, &excluded, &ctx(s.t), &mut rng),
            ids(&["b"])
        );
        assert_eq!(
            pick(&Strategy::RingAll, &members, &excluded, &ctx(s.t), &mut rng),
            ids(&["b", "d"])
        );
    }

    fn all_strategies() -> Vec<Strategy> {
        vec![
            Strategy::ReturningCustomer(Box::new(Strategy::Linear)),
            Strategy::RoundRobin,
            Strategy::RoundRobinMemory,
            Strategy::FewestCalls,
            Strategy::FewestInboundCalls,
            Strategy::LongestTotalIdle,
            Strategy::LongestIdleState,
            Strategy::LeastTalkTime,
            Strategy::Linear,
            Strategy::RingAll,
            Strategy::Random,
            Strategy::WeightedRandom,
            Strategy::RingProgressively { step: secs(5) },
        ]
    }

    #[test]
    fn ties_go_to_the_best_ranked_member() {
        let s = Scene::new();
        let t = s.t;
        for strategy in [
            Strategy::RoundRobin,
            Strategy::RoundRobinMemory,
            Strategy::FewestCalls,
            Strategy::FewestInboundCalls,
            Strategy::LongestTotalIdle,
            Strategy::LongestIdleState,
            Strategy::LeastTalkTime,
            Strategy::Linear,
            Strategy::RingProgressively { step: secs(5) },
        ] {
            assert_eq!(
                s.pick_at(&strategy, t + secs(1), ctx(t)),
                ids(&["a"]),
                "{strategy:?}"
            );
        }
        assert_eq!(
            s.pick_at(&Strategy::RingAll, t, ctx(t)),
            ids(&["a", "b", "c", "d"])
        );
    }

    #[test]
    fn fewest_calls_counts_outbound_and_fewest_inbound_does_not() {
        let mut s = Scene::new();
        let t = s.t;
        s.serve("a", t, secs(1));
        s.serve("b", t, secs(1));
        s.serve("c", t, secs(1));
        s.agent("d").start_outbound(CallId(50), t).unwrap();
        s.agent("d").hang_up(CallId(50), t).unwrap();
        s.agent("d").start_outbound(CallId(51), t).unwrap();
        s.agent("d").hang_up(CallId(51), t).unwrap();
        s.serve("a", t, secs(1));
        // calls: a 2, b 1, c 1, d 2 ; inbound: a 2, b 1, c 1, d 0
        let now = t + secs(10);
        assert_eq!(
            s.pick_at(&Strategy::FewestCalls, now, ctx(now)),
            ids(&["b"])
        );
        assert_eq!(
            s.pick_at(&Strategy::FewestInboundCalls, now, ctx(now)),
            ids(&["d"])
        );
    }

    #[test]
    fn longest_total_idle_versus_longest_current_idle() {
        let mut s = Scene::new();
        let t = s.t;
        // a: idle 0..100 then a call 100..101, idle again from 101 → total 199 at 200, current 99.
        s.serve("a", t + secs(100), secs(1));
        // b, c, d: busy from 50, idle again at 60/70/80 → totals 190/180/170, current 140/130/120.
        for (id, back) in [("b", 60), ("c", 70), ("d", 80)] {
            s.agent(id).set_busy(t + secs(50)).unwrap();
            s.agent(id).set_idle(t + secs(back)).unwrap();
        }
        let now = t + secs(200);
        assert_eq!(
            s.pick_at(&Strategy::LongestTotalIdle, now, ctx(now)),
            ids(&["a"])
        );
        assert_eq!(
            s.pick_at(&Strategy::LongestIdleState, now, ctx(now)),
            ids(&["b"])
        );
    }

    #[test]
    fn least_talk_time() {
        let mut s = Scene::new();
        let t = s.t;
        s.serve("a", t, secs(30));
        s.serve("b", t, secs(10));
        s.serve("c", t, secs(20));
        s.serve("d", t, secs(40));
        let now = t + secs(100);
        assert_eq!(
            s.pick_at(&Strategy::LeastTalkTime, now, ctx(now)),
            ids(&["b"])
        );
    }

    #[test]
    fn round_robin_continues_after_the_cursor_cyclically() {
        let mut s = Scene::new();
        let t = s.t;
        let c = AgentId::from("c");
        let d = AgentId::from("d");
        let b = AgentId::from("b");
        let answered_c = PickContext {
            last_answered: Some(&c),
            ..ctx(t)
        };
        assert_eq!(s.pick_at(&Strategy::RoundRobin, t, answered_c), ids(&["d"]));
        let answered_d = PickContext {
            last_answered: Some(&d),
            ..ctx(t)
        };
        assert_eq!(
            s.pick_at(&Strategy::RoundRobin, t, answered_d),
            ids(&["a"]),
            "wraps"
        );
        s.agent("d").set_busy(t).unwrap();
        assert_eq!(
            s.pick_at(&Strategy::RoundRobin, t, answered_c),
            ids(&["a"]),
            "skips busy d"
        );
        // With memory the cursor is the last member rung, not the last who answered.
        let both = PickContext {
            last_answered: Some(&c),
            last_rung: Some(&b),
            ..ctx(t)
        };
        assert_eq!(s.pick_at(&Strategy::RoundRobinMemory, t, both), ids(&["c"]));
        assert_eq!(s.pick_at(&Strategy::RoundRobin, t, both), ids(&["a"]));
        let gone = AgentId::from("zz");
        let unknown = PickContext {
            last_answered: Some(&gone),
            ..ctx(t)
        };
        assert_eq!(
            s.pick_at(&Strategy::RoundRobin, t, unknown),
            ids(&["a"]),
            "unknown cursor: top"
        );
    }

    #[test]
    fn returning_customer_first_then_the_base_strategy() {
        let mut s = Scene::new();
        let t = s.t;
        let c = AgentId::from("c");
        let strategy = Strategy::ReturningCustomer(Box::new(Strategy::Linear));
        let returning = PickContext {
            returning_agent: Some(&c),
            ..ctx(t)
        };
        assert_eq!(s.pick_at(&strategy, t, returning), ids(&["c"]));
        assert_eq!(
            s.pick_at(&strategy, t, ctx(t)),
            ids(&["a"]),
            "new caller: base"
        );
        s.agent("c").set_busy(t).unwrap();
        assert_eq!(
            s.pick_at(&strategy, t, returning),
            ids(&["a"]),
            "agent not idle: base"
        );
        let ring_all = Strategy::ReturningCustomer(Box::new(Strategy::RingAll));
        assert!(ring_all.rings_many());
        assert_eq!(s.pick_at(&ring_all, t, returning), ids(&["a", "b", "d"]));
    }

    #[test]
    fn random_is_uniform_and_seeded() {
        let s = Scene::new();
        let t = s.t;
        let mut counts = std::collections::BTreeMap::new();
        for seed in 0..400 {
            let got = s.pick_weighted(&Strategy::Random, t, ctx(t), &[1, 1, 1, 1], seed);
            assert_eq!(
                got,
                s.pick_weighted(&Strategy::Random, t, ctx(t), &[1, 1, 1, 1], seed),
                "seeded"
            );
            *counts.entry(got[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&n| n > 60), "{counts:?}");
    }

    #[test]
    fn weighted_random_follows_the_weights() {
        let s = Scene::new();
        let t = s.t;
        let mut counts = std::collections::BTreeMap::new();
        for seed in 0..1000 {
            let got = s.pick_weighted(&Strategy::WeightedRandom, t, ctx(t), &[0, 1, 3, 0], seed);
            *counts.entry(got[0].0.clone()).or_insert(0) += 1;
        }
        assert_eq!(
            counts.keys().cloned().collect::<Vec<_>>(),
            vec!["b".to_owned(), "c".to_owned()]
        );
        let (b, c) = (counts["b"], counts["c"]);
        assert!((180..320).contains(&b) && b + c == 1000, "{counts:?}");
        // All zero: uniform among them.
        let got = s.pick_weighted(&Strategy::WeightedRandom, t, ctx(t), &[0, 0, 0, 0], 3);
        assert_eq!(got.len(), 1);
    }
}
