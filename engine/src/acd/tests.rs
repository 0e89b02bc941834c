//! Facade scenarios on virtual time, and a seeded stress test of the invariants.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn id(s: &str) -> AgentId {
    AgentId::from(s)
}

/// An ACD on virtual time with everything it emitted.
struct Harness {
    acd: Acd,
    t0: Instant,
    now: Instant,
    offers: Vec<Offer>,
    events: Vec<Event>,
}

impl Harness {
    fn new(queue: QueueConfig, agents: &[&str], tweak: impl Fn(&mut AgentConfig)) -> Self {
        Self::with_config(AcdConfig::default(), queue, agents, tweak)
    }

    fn with_config(
        config: AcdConfig,
        queue: QueueConfig,
        agents: &[&str],
        tweak: impl Fn(&mut AgentConfig),
    ) -> Self {
        let t0 = super::test_epoch();
        let mut acd = Acd::new(config, 7);
        let qid = queue.id.clone();
        acd.add_queue(queue).unwrap();
        for (i, a) in agents.iter().enumerate() {
            let mut c = AgentConfig::new(*a).in_queue_with(qid.clone(), i as u32, 1);
            tweak(&mut c);
            acd.add_agent(c).unwrap();
            acd.login(&id(a), t0).unwrap();
        }
        let mut h = Harness {
            acd,
            t0,
            now: t0,
            offers: Vec::new(),
            events: Vec::new(),
        };
        h.drain();
        h.events.clear();
        h
    }

    /// Drain offers and events, as the driver does after every input.
    fn drain(&mut self) {
        while let Some(e) = self.acd.poll_event() {
            self.events.push(e);
        }
        while let Some(o) = self.acd.poll_offer(self.now) {
            self.offers.push(o);
        }
        while let Some(e) = self.acd.poll_event() {
            self.events.push(e);
        }
    }

    /// Advance virtual time to `t0 + s`, firing every timeout on the way.
    fn at(&mut self, s: u64) {
        let target = self.t0 + secs(s);
        let mut guard = 0;
        while let Some(t) = self.acd.poll_timeout().filter(|t| *t <= target) {
            guard += 1;
            assert!(guard < 10_000, "a timeout that never goes away: {t:?}");
            self.now = t.max(self.now);
            self.acd.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.drain();
    }

    fn enqueue(&mut self, call: u64, priority: i64) -> Result<Enqueued, EnqueueError> {
        let mut req = EnqueueRequest::new(CallId(call), "q");
        req.priority = priority;
        req.caller_number = Some(format!("caller{call}"));
        let r = self.acd.enqueue(req, self.now);
        self.drain();
        r
    }

    fn take_offers(&mut self) -> Vec<(u64, Vec<String>)> {
        self.offers
            .drain(..)
            .map(|o| (o.call.0, o.agents.into_iter().map(|a| a.0).collect()))
            .collect()
    }

    fn status(&self, a: &str) -> AgentStatus {
        self.acd.agent(&id(a)).unwrap().state().status()
    }

    fn answer(&mut self, call: u64, a: &str) {
        self.acd
            .offer_answered(CallId(call), &id(a), self.now)
            .unwrap();
        self.drain();
    }

    fn fail(&mut self, call: u64, a: &str, why: OfferFailure) {
        self.acd
            .offer_failed(CallId(call), &id(a), why, self.now)
            .unwrap();
        self.drain();
    }

    fn end(&mut self, call: u64) {
        self.acd.call_ended(CallId(call), self.now).unwrap();
        self.drain();
    }

    fn exits(&self) -> Vec<(u64, QueueOutcome)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::QueueExit { call, outcome, .. } => Some((call.0, outcome.clone())),
                _ => None,
            })
            .collect()
    }

    fn stops(&self) -> Vec<(u64, String, StopReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::StopRinging {
                    call,
                    agent,
                    reason,
                } => Some((call.0, agent.0.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn stats(&self) -> QueueStats {
        self.acd.queue(&QueueId::from("q")).unwrap().stats().clone()
    }
}

fn linear() -> QueueConfig {
    QueueConfig::new("q", Strategy::Linear)
}

fn one(call: u64, agents: &[&str]) -> (u64, Vec<String>) {
    (call, agents.iter().map(|s| s.to_string()).collect())
}

#[test]
fn a_caller_is_offered_answered_and_the_agent_wraps_up_for_exactly_its_time() {
    let mut h = Harness::new(linear(), &["a", "b"], |c| c.wrap_up = secs(30));
    let e = h.enqueue(1, 0).unwrap();
    assert_eq!(
        e,
        Enqueued {
            position: 1,
            memory_agent: None
        }
    );
    assert_eq!(h.take_offers(), vec![one(1, &["a"])]);
    assert_eq!(h.status("a"), AgentStatus::Ringing);
    h.at(4);
    h.answer(1, "a");
    assert_eq!(
        h.exits(),
        vec![(1, QueueOutcome::Answered { agent: id("a") })]
    );
    h.at(64);
    h.end(1);
    assert_eq!(h.status("a"), AgentStatus::WrapUp);
    assert_eq!(h.acd.poll_timeout(), Some(h.t0 + secs(94)));
    assert_eq!(
        h.acd.set_idle(&id("a"), h.now),
        Err(AcdError::WrapUpNotOver {
            agent: id("a"),
            until: h.t0 + secs(94)
        })
    );
    h.at(93);
    assert_eq!(h.status("a"), AgentStatus::WrapUp, "never early");
    h.at(94);
    assert_eq!(h.status("a"), AgentStatus::Idle, "always ends");
    let st = h.stats();
    assert_eq!((st.entered, st.answered, st.answered_within_sl), (1, 1, 1));
    assert_eq!(st.answered_wait, secs(4));
    // Handle time = talk 60 + wrap-up 30.
    assert_eq!(
        h.acd.queue(&"q".into()).unwrap().mean_handle_time(),
        secs(90)
    );
    // Every transition was reported, in order.
    let changes: Vec<(AgentStatus, AgentStatus)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AgentStateChanged(c) if c.agent == id("a") => {
                Some((c.from.clone(), c.to.clone()))
            }
            _ => None,
        })
        .collect();
    use AgentStatus::*;
    assert_eq!(
        changes,
        vec![
            (Idle, Ringing),
            (Ringing, Talking),
            (Talking, WrapUp),
            (WrapUp, Idle)
        ]
    );
}

#[test]
fn no_answer_by_max_ring_time_moves_on_and_releases_the_agent() {
    let mut h = Harness::new(linear(), &["a", "b"], |c| c.max_ring = secs(15));
    h.enqueue(1, 0).unwrap();
    assert_eq!(h.take_offers(), vec![one(1, &["a"])]);
    h.at(14);
    assert_eq!(h.status("a"), AgentStatus::Ringing);
    h.at(15);
    assert_eq!(h.status("a"), AgentStatus::Idle);
    assert_eq!(h.stops(), vec![(1, "a".into(), StopReason::RingTimeout)]);
    assert_eq!(h.take_offers(), vec![one(1, &["b"])], "next agent");
    assert_eq!(h.acd.agent(&id("a")).unwrap().stats().missed, 1);
    // Rejected by b too: every member has missed; a new round after the retry delay (5 s).
    h.fail(1, "b", OfferFailure::Rejected);
    assert!(h.take_offers().is_empty());
    assert_eq!(h.acd.poll_timeout(), Some(h.t0 + secs(20)));
    h.at(20);
    assert_eq!(h.take_offers(), vec![one(1, &["a"])]);
}

#[test]
fn auto_busy_after_consecutive_misses() {
    let mut h = Harness::new(linear(), &["a", "b"], |c| c.auto_busy_after = Some(2));
    h.enqueue(1, 0).unwrap();
    h.fail(1, "a", OfferFailure::NoAnswer);
    h.fail(1, "b", OfferFailure::Busy);
    h.at(5);
    h.fail(1, "a", OfferFailure::NoAnswer);
    assert_eq!(h.status("a"), AgentStatus::Busy);
    // The new round: a, then b (a is busy now and never offered again).
    assert_eq!(
        h.take_offers(),
        vec![
            one(1, &["a"]),
            one(1, &["b"]),
            one(1, &["a"]),
            one(1, &["b"])
        ]
    );
}

#[test]
fn every_way_out_of_the_queue_releases_ringing_agents() {
    let q = QueueConfig {
        max_wait: secs(60),
        ..QueueConfig::new("q", Strategy::RingAll)
    };
    for (how, outcome, reason) in [
        ("left", QueueOutcome::Abandoned, StopReason::CallerLeft),
        ("exit", QueueOutcome::Exited, StopReason::Exited),
        ("timeout", QueueOutcome::Timeout, StopReason::QueueTimeout),
    ] {
        let mut h = Harness::new(q.clone(), &["a", "b"], |c| c.max_ring = secs(120));
        h.enqueue(1, 0).unwrap();
        assert_eq!(h.take_offers(), vec![one(1, &["a", "b"])]);
        match how {
            "left" => h.acd.caller_left(CallId(1), h.now).unwrap(),
            "exit" => h.acd.leave(CallId(1), h.now).unwrap(),
            _ => h.at(60),
        }
        h.drain();
        assert_eq!(h.exits(), vec![(1, outcome.clone())], "{how}");
        assert_eq!(
            h.stops(),
            vec![(1, "a".into(), reason), (1, "b".into(), reason)],
            "{how}"
        );
        assert_eq!(
            (h.status("a"), h.status("b")),
            (AgentStatus::Idle, AgentStatus::Idle),
            "{how}"
        );
        assert_eq!(
            h.acd.agent(&id("a")).unwrap().stats().missed,
            0,
            "not a miss"
        );
        assert!(!h.acd.is_active(CallId(1)));
        assert_eq!(
            h.acd.leave(CallId(1), h.now),
            Err(AcdError::UnknownCall { call: CallId(1) })
        );
    }
}

#[test]
fn ring_all_answer_releases_the_others_and_late_answers_are_refused() {
    let mut h = Harness::new(
        QueueConfig::new("q", Strategy::RingAll),
        &["a", "b", "c"],
        |_| {},
    );
    h.acd.set_busy(&id("c"), h.now).unwrap();
    h.enqueue(1, 0).unwrap();
    assert_eq!(h.take_offers(), vec![one(1, &["a", "b"])]);
    // c becomes free while it rings: ring-all adds it.
    h.acd.set_idle(&id("c"), h.now).unwrap();
    h.drain();
    assert_eq!(h.take_offers(), vec![one(1, &["c"])]);
    h.answer(1, "b");
    assert_eq!(
        h.stops(),
        vec![
            (1, "a".into(), StopReason::AnsweredElsewhere),
            (1, "c".into(), StopReason::AnsweredElsewhere)
        ]
    );
    assert_eq!(
        h.acd.offer_answered(CallId(1), &id("a"), h.now),
        Err(AcdError::NotOffered {
            agent: id("a"),
            call: CallId(1)
        })
    );
    assert_eq!(
        (h.status("a"), h.status("b"), h.status("c")),
        (AgentStatus::Idle, AgentStatus::Talking, AgentStatus::Idle)
    );
}

#[test]
fn progressive_ringing_adds_one_agent_every_step() {
    let q = QueueConfig::new("q", Strategy::RingProgressively { step: secs(10) });
    let mut h = Harness::new(q, &["a", "b", "c", "d"], |c| c.max_ring = secs(60));
    h.acd.set_busy(&id("c"), h.now).unwrap();
    h.enqueue(1, 0).unwrap();
    let mut schedule = vec![(0, h.take_offers())];
    for s in [9, 10, 19, 20, 30] {
        h.at(s);
        schedule.push((s, h.take_offers()));
    }
    assert_eq!(
        schedule,
        vec![
            (0, vec![one(1, &["a"])]),
            (9, vec![]),
            (10, vec![one(1, &["b"])]),
            (19, vec![]),
            (20, vec![one(1, &["d"])]),
            (30, vec![]), // nobody idle to add: c is added as soon as it is free
        ]
    );
    h.at(35);
    h.acd.set_idle(&id("c"), h.now).unwrap();
    h.drain();
    assert_eq!(h.take_offers(), vec![one(1, &["c"])]);
    h.answer(1, "d");
    assert_eq!(h.stops().len(), 3);
}

#[test]
fn vip_is_served_first_but_waiting_time_catches_up() {
    let mut h = Harness::new(linear(), &["a"], |_| {});
    h.acd.set_busy(&id("a"), h.now).unwrap();
    h.enqueue(1, 0).unwrap();
    h.at(30);
    h.enqueue(2, 1).unwrap(); // score 60 vs 30
    h.at(100);
    h.enqueue(3, 1).unwrap(); // at 100: 1 → 100, 2 → 130, 3 → 60
    assert_eq!(h.acd.position(CallId(2), h.now), Some(1));
    assert_eq!(h.acd.position(CallId(1), h.now), Some(2));
    assert_eq!(h.acd.position(CallId(3), h.now), Some(3));
    let mut served = Vec::new();
    h.acd.set_idle(&id("a"), h.now).unwrap();
    h.drain();
    for _ in 0..3 {
        let (call, _) = h.take_offers().remove(0);
        served.push(call);
        h.answer(call, "a");
        h.end(call);
    }
    assert_eq!(served, vec![2, 1, 3]);
}

#[test]
fn full_no_agents_and_unknown_queue() {
    let q = QueueConfig {
        max_len: Some(1),
        ..linear()
    };
    let mut h = Harness::new(q, &["a"], |_| {});
    h.acd.set_break(&id("a"), "lunch", h.now).unwrap_err();
    h.acd.set_busy(&id("a"), h.now).unwrap();
    h.enqueue(1, 0).unwrap();
    assert_eq!(h.enqueue(2, 0), Err(EnqueueError::Refused(Refusal::Full)));
    assert_eq!(
        h.enqueue(1, 0),
        Err(EnqueueError::Invalid(AcdError::DuplicateCall {
            call: CallId(1)
        }))
    );
    let mut r = EnqueueRequest::new(CallId(9), "nope");
    r.priority = 0;
    assert_eq!(
        h.acd.enqueue(r, h.now),
        Err(EnqueueError::Invalid(AcdError::UnknownQueue {
            queue: "nope".into()
        }))
    );
    // The last member logs out: the waiting caller leaves with NoAgents, new ones are refused.
    h.acd.logout(&id("a"), h.now).unwrap();
    h.drain();
    assert_eq!(h.exits(), vec![(1, QueueOutcome::NoAgents)]);
    assert_eq!(
        h.enqueue(3, 0),
        Err(EnqueueError::Refused(Refusal::NoAgents))
    );
    let st = h.stats();
    assert_eq!(
        (
            st.entered,
            st.refused_full,
            st.refused_no_agents,
            st.no_agents
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn queue_timeout_abandon_and_service_level_counters() {
    let q = QueueConfig {
        max_wait: secs(100),
        service_level: secs(20),
        ..linear()
    };
    let mut h = Harness::new(q, &["a"], |_| {});
    h.acd.set_busy(&id("a"), h.now).unwrap();
    h.enqueue(1, 0).unwrap(); // times out at 100
    h.at(10);
    h.enqueue(2, 0).unwrap(); // abandons at 35 (after the threshold)
    h.enqueue(3, 0).unwrap(); // abandons at 15 (short)
    let mut r = EnqueueRequest::new(CallId(4), "q");
    r.max_wait = Some(secs(500));
    h.acd.enqueue(r, h.now).unwrap(); // answered at 40 (wait 30)
    h.at(15);
    h.acd.caller_left(CallId(3), h.now).unwrap();
    h.at(35);
    h.acd.caller_left(CallId(2), h.now).unwrap();
    h.at(40);
    h.enqueue(5, 5).unwrap(); // VIP, answered at 40 (wait 0)
    h.acd.set_idle(&id("a"), h.now).unwrap();
    h.drain();
    assert_eq!(h.take_offers(), vec![one(5, &["a"])]);
    h.answer(5, "a");
    h.end(5);
    assert_eq!(h.take_offers(), vec![one(1, &["a"])]);
    h.fail(1, "a", OfferFailure::Rejected);
    assert_eq!(h.take_offers(), vec![one(4, &["a"])]);
    h.answer(4, "a");
    h.at(100);
    assert_eq!(
        h.exits(),
        vec![
            (3, QueueOutcome::Abandoned),
            (2, QueueOutcome::Abandoned),
            (5, QueueOutcome::Answered { agent: id("a") }),
            (4, QueueOutcome::Answered { agent: id("a") }),
            (1, QueueOutcome::Timeout),
        ]
    );
    let st = h.stats();
    assert_eq!(
        (
            st.entered,
            st.answered,
            st.answered_within_sl,
            st.abandoned,
            st.abandoned_within_sl,
            st.timeouts
        ),
        (5, 2, 1, 2, 1, 1)
    );
    assert_eq!(st.service_level(), Some(0.2));
}

#[test]
fn announcements_at_the_interval_with_position_and_estimated_wait() {
    let q = QueueConfig {
        announce_every: Some(secs(30)),
        max_wait: secs(1000),
        ..linear()
    };
    let mut h = Harness::new(q, &["a", "b"], |_| {});
    h.acd.set_busy(&id("b"), h.now).unwrap();
    h.enqueue(1, 0).unwrap(); // rings a
    h.enqueue(2, 0).unwrap();
    h.answer(1, "a");
    h.at(61);
    let announced: Vec<Event> = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Announce { .. }))
        .cloned()
        .collect();
    // One agent available (a, talking; b is busy): default 180 s × 1 ÷ 1.
    let ann = |s| Event::Announce {
        call: CallId(2),
        queue: "q".into(),
        position: 1,
        estimated_wait: Some(secs(s)),
    };
    assert_eq!(announced, vec![ann(180), ann(180)]);
    assert_eq!(h.acd.poll_timeout(), Some(h.t0 + secs(90)));
}

#[test]
fn call_memory_hit_miss_expiry_and_fallback() {
    let config = AcdConfig {
        break_names: BTreeSet::new(),
        memory: MemoryConfig {
            validity: Some(secs(3600)),
            service_numbers: ["4001".to_owned()].into(),
            refuse_when_unavailable: true,
        },
    };
    let mut h = Harness::with_config(config, linear(), &["a", "b"], |_| {});
    let req = |call: u64, service: &str| EnqueueRequest {
        caller_number: Some("138".into()),
        service_number: Some(service.into()),
        ..EnqueueRequest::new(CallId(call), "q")
    };
    // b calls the customer: bound.
    h.acd
        .outbound_started(&id("b"), CallId(100), Some("138"), h.now)
        .unwrap();
    h.end(100);
    // Hit: straight to b, although linear would pick a.
    let e = h.acd.enqueue(req(1, "4001"), h.now).unwrap();
    assert_eq!(e.memory_agent, Some(id("b")));
    h.drain();
    assert_eq!(h.take_offers(), vec![one(1, &["b"])]);
    // b is ringing: unavailable → the flow's fallback.
    assert_eq!(
        h.acd.enqueue(req(2, "4001"), h.now),
        Err(EnqueueError::Refused(Refusal::MemoryAgentUnavailable {
            agent: id("b")
        }))
    );
    // Another service number: the binding does not apply, the queue's strategy does.
    let e = h.acd.enqueue(req(3, "4002"), h.now).unwrap();
    assert_eq!(e.memory_agent, None);
    h.drain();
    assert_eq!(h.take_offers(), vec![one(3, &["a"])]);
    // b misses the memory call: it goes on by the strategy (a is ringing; nobody else).
    h.fail(1, "b", OfferFailure::NoAnswer);
    assert!(h.take_offers().is_empty());
    h.acd.caller_left(CallId(1), h.now).unwrap();
    h.acd.caller_left(CallId(3), h.now).unwrap();
    h.drain();
    // Expired: a normal caller.
    h.at(3600);
    let e = h.acd.enqueue(req(4, "4001"), h.now).unwrap();
    assert_eq!(e.memory_agent, None);
    h.drain();
    assert_eq!(h.take_offers(), vec![one(4, &["a"])]);
    // Answering binds again (serving a customer counts as well as calling them).
    h.answer(4, "a");
    assert_eq!(
        h.acd.memory().lookup("138", Some("4001"), h.now),
        Some(&id("a"))
    );
}

#[test]
fn call_memory_without_fallback_queues_normally() {
    let config = AcdConfig {
        break_names: BTreeSet::new(),
        memory: MemoryConfig {
            validity: Some(secs(60)),
            ..MemoryConfig::default()
        },
    };
    let mut h = Harness::with_config(config, linear(), &["a", "b"], |_| {});
    h.acd.remember("138", &id("b"), h.now);
    h.acd.set_busy(&id("b"), h.now).unwrap();
    let req = EnqueueRequest {
        caller_number: Some("138".into()),
        ..EnqueueRequest::new(CallId(1), "q")
    };
    assert_eq!(h.acd.enqueue(req, h.now).unwrap().memory_agent, None);
    h.drain();
    assert_eq!(h.take_offers(), vec![one(1, &["a"])]);
}

#[test]
fn returning_customer_goes_back_to_the_agent_who_served_them() {
    let q = QueueConfig::new("q", Strategy::ReturningCustomer(Box::new(Strategy::Linear)));
    let mut h = Harness::new(q, &["a", "b"], |_| {});
    h.acd.set_busy(&id("a"), h.now).unwrap();
    h.enqueue(1, 0).unwrap();
    h.answer(1, "b");
    h.end(1);
    h.acd.set_idle(&id("a"), h.now).unwrap();
    // Same caller number ("caller1") under a new call id.
    let req = EnqueueRequest {
        caller_number: Some("caller1".into()),
        ..EnqueueRequest::new(CallId(2), "q")
    };
    h.acd.enqueue(req, h.now).unwrap();
    h.drain();
    assert_eq!(h.take_offers(), vec![one(1, &["b"]), one(2, &["b"])]);
}

#[test]
fn round_robin_takes_turns_across_calls() {
    let mut h = Harness::new(
        QueueConfig::new("q", Strategy::RoundRobin),
        &["a", "b", "c"],
        |_| {},
    );
    let mut got = Vec::new();
    for call in 1..=4 {
        h.enqueue(call, 0).unwrap();
        let offers = h.take_offers();
        let agent = offers[0].1[0].clone();
        got.push(agent.clone());
        h.answer(call, &agent);
        h.end(call);
    }
    assert_eq!(got, vec!["a", "b", "c", "a"]);
}

#[test]
fn breaks_are_reported_by_the_admins_names() {
    let config = AcdConfig {
        break_names: ["午餐".to_owned()].into(),
        ..AcdConfig::default()
    };
    let mut h = Harness::with_config(config, linear(), &["a"], |_| {});
    h.at(10);
    h.acd.set_break(&id("a"), "午餐", h.now).unwrap();
    assert_eq!(
        h.acd.set_break(&id("a"), "smoke", h.now),
        Err(AcdError::UnknownBreak {
            name: "smoke".into()
        })
    );
    h.at(70);
    h.acd.set_idle(&id("a"), h.now).unwrap();
    h.drain();
    let a = h.acd.agent(&id("a")).unwrap();
    assert_eq!(
        a.time_in(&AgentStatus::Break("午餐".into()), h.now),
        secs(60)
    );
    assert_eq!(a.time_in(&AgentStatus::Idle, h.now), secs(10));
    assert!(h.events.contains(&Event::AgentStateChanged(StateChange {
        agent: id("a"),
        from: AgentStatus::Idle,
        to: AgentStatus::Break("午餐".into()),
        at: h.t0 + secs(10),
    })));
    assert!(matches!(
        h.acd.login(&id("zz"), h.now),
        Err(AcdError::UnknownAgent { .. })
    ));
}

/// Random callers, agents and failures on three queues with several strategies; after every
/// step the invariants hold, and at the end every caller has exactly one queue outcome.
#[test]
fn stress_invariants_hold_under_random_inputs() {
    for seed in 0..20 {
        stress(seed);
    }
}

fn stress(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = super::test_epoch();
    let config = AcdConfig {
        break_names: ["lunch".to_owned()].into(),
        memory: MemoryConfig {
            validity: Some(secs(600)),
            refuse_when_unavailable: seed % 2 == 0,
            ..Default::default()
        },
    };
    let mut acd = Acd::new(config, seed);
    let strategies = [
        Strategy::RingAll,
        Strategy::RingProgressively { step: secs(3) },
        Strategy::ReturningCustomer(Box::new(Strategy::WeightedRandom)),
        Strategy::RoundRobinMemory,
        Strategy::LongestIdleState,
    ];
    let queues: Vec<QueueId> = (0..3).map(|i| QueueId(format!("q{i}"))).collect();
    for (i, q) in queues.iter().enumerate() {
        let mut c = QueueConfig::new(
            q.clone(),
            strategies[(seed as usize + i) % strategies.len()].clone(),
        );
        c.max_len = Some(8);
        c.max_wait = secs(rng.random_range(20..120));
        c.announce_every = Some(secs(15));
        acd.add_queue(c).unwrap();
    }
    let agents: Vec<AgentId> = (0..8).map(|i| AgentId(format!("a{i}"))).collect();
    for a in &agents {
        let mut c = AgentConfig::new(a.clone());
        for q in &queues {
            if rng.random_bool(0.6) {
                c = c.in_queue_with(q.clone(), rng.random_range(0..3), rng.random_range(0..4));
            }
        }
        c.wrap_up = secs(rng.random_range(0..10));
        c.max_ring = secs(rng.random_range(5..20));
        c.auto_busy_after = rng.random_bool(0.5).then_some(3);
        acd.add_agent(c).unwrap();
    }

    let mut now = t0;
    let mut accepted: BTreeMap<CallId, u32> = BTreeMap::new();
    let mut exits: BTreeMap<CallId, u32> = BTreeMap::new();
    let mut ringing: BTreeMap<AgentId, CallId> = BTreeMap::new();
    let mut talking: Vec<CallId> = Vec::new();
    let mut next_call = 0u64;
    for _ in 0..3000 {
        now += Duration::from_millis(rng.random_range(0..2000));
        // Fire due timeouts first, like a driver would.
        let mut guard = 0;
        while let Some(t) = acd.poll_timeout().filter(|t| *t <= now) {
            guard += 1;
            assert!(
                guard < 10_000,
                "seed {seed}: a timeout that never goes away"
            );
            acd.handle_timeout(t.max(t0));
            drain(&mut acd, t, &mut ringing, &mut exits);
        }
        let a = &agents[rng.random_range(0..agents.len())];
        match rng.random_range(0..14) {
            0 | 1 => {
                next_call += 1;
                let call = CallId(next_call);
                let req = EnqueueRequest {
                    priority: rng.random_range(-1..3),
                    caller_number: Some(format!("c{}", rng.random_range(0..10))),
                    service_number: Some("4001".into()),
                    ..EnqueueRequest::new(call, queues[rng.random_range(0..queues.len())].clone())
                };
                if acd.enqueue(req, now).is_ok() {
                    accepted.insert(call, 1);
                }
            }
            2 => _ = acd.login(a, now),
            3 => _ = acd.logout(a, now),
            4 => _ = acd.set_idle(a, now),
            5 => _ = acd.set_busy(a, now),
            6 => _ = acd.set_break(a, "lunch", now),
            7 | 8 => {
                if let Some(call) = ringing.get(a).copied() {
                    acd.offer_answered(call, a, now).unwrap();
                    talking.push(call);
                }
            }
            9 => {
                if let Some(call) = ringing.get(a).copied() {
                    let why = [
                        OfferFailure::NoAnswer,
                        OfferFailure::Rejected,
                        OfferFailure::Busy,
                    ][rng.random_range(0..3)];
                    acd.offer_failed(call, a, why, now).unwrap();
                }
            }
            10 | 11 => {
                if !talking.is_empty() {
                    let call = talking.swap_remove(rng.random_range(0..talking.len()));
                    acd.call_ended(call, now).unwrap();
                }
            }
            12 => {
                if next_call > 0 {
                    let call = CallId(rng.random_range(1..=next_call));
                    let r = acd.caller_left(call, now);
                    if r.is_ok() {
                        talking.retain(|c| *c != call);
                    }
                }
            }
            _ => {
                if next_call > 0 {
                    _ = acd.leave(CallId(rng.random_range(1..=next_call)), now);
                }
            }
        }
        // Random garbage never panics and never changes anything it should not.
        let _ = acd.offer_answered(CallId(1_000_000 + rng.random_range(0..50)), a, now);
        let _ = acd.call_ended(CallId(1_000_000), now);
        drain(&mut acd, now, &mut ringing, &mut exits);
        check(&acd, &ringing);
    }
    // Wind down: everybody hangs up, time runs out.
    for call in talking {
        acd.call_ended(call, now).unwrap();
    }
    now += secs(1000);
    let mut guard = 0;
    while let Some(t) = acd.poll_timeout().filter(|t| *t <= now) {
        guard += 1;
        assert!(
            guard < 100_000,
            "seed {seed}: a timeout that never goes away"
        );
        acd.handle_timeout(t);
        drain(&mut acd, t, &mut ringing, &mut exits);
    }
    for a in acd.agents() {
        assert!(
            matches!(
                a.state(),
                AgentState::LoggedOut
                    | AgentState::Idle { .. }
                    | AgentState::Busy { .. }
                    | AgentState::Break { .. }
            ),
            "seed {seed}: {:?} left {:?}",
            a.id(),
            a.state()
        );
    }
    assert_eq!(
        accepted, exits,
        "seed {seed}: each accepted caller has exactly one outcome"
    );
    assert!(!accepted.is_empty());
}

fn drain(
    acd: &mut Acd,
    now: Instant,
    ringing: &mut BTreeMap<AgentId, CallId>,
    exits: &mut BTreeMap<CallId, u32>,
) {
    // The documented order: events (releases first), offers, then the offers' events.
    loop {
        let mut progressed = false;
        while let Some(e) = acd.poll_event() {
            progressed = true;
            match e {
                Event::QueueExit { call, .. } => *exits.entry(call).or_default() += 1,
                Event::AgentStateChanged(c) if c.from == AgentStatus::Ringing => {
                    ringing.remove(&c.agent);
                }
                Event::AgentStateChanged(c) if c.to == AgentStatus::Ringing => {
                    assert!(
                        ringing.contains_key(&c.agent),
                        "reservations come with an offer"
                    );
                }
                _ => {}
            }
        }
        while let Some(offer) = acd.poll_offer(now) {
            progressed = true;
            for a in offer.agents {
                assert!(
                    ringing.insert(a, offer.call).is_none(),
                    "offered while ringing"
                );
            }
        }
        if !progressed {
            break;
        }
    }
}

fn check(acd: &Acd, ringing: &BTreeMap<AgentId, CallId>) {
    let mut in_call: BTreeMap<CallId, Vec<&AgentId>> = BTreeMap::new();
    for a in acd.agents() {
        match a.state() {
            AgentState::Reserved { call, .. } => {
                assert_eq!(
                    ringing.get(a.id()),
                    Some(call),
                    "{:?} reserved without an offer",
                    a.id()
                );
                assert!(
                    acd.waiting.contains_key(call),
                    "reserved for a call not waiting"
                );
                in_call.entry(*call).or_default().push(a.id());
            }
            AgentState::Talking { call, .. } => {
                assert!(!ringing.contains_key(a.id()));
                assert!(acd.connected.get(call).is_some_and(|c| &c.agent == a.id()));
                assert!(
                    in_call.insert(*call, vec![a.id()]).is_none(),
                    "two agents talking on one call"
                );
            }
            _ => assert!(
                !ringing.contains_key(a.id()),
                "{:?} ringing but {:?}",
                a.id(),
                a.state()
            ),
        }
    }
    for (call, qid) in &acd.waiting {
        let w = &acd.queues[qid].waiting[call];
        for a in &w.ringing {
            assert!(
                matches!(acd.agents[a].state(), AgentState::Reserved { call: c, .. } if c == call)
            );
        }
        assert!(!acd.connected.contains_key(call));
    }
}
