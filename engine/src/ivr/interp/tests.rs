//! The interpreter on virtual time: flows built directly as [`Flow`] values (no YAML), events
//! fed one by one, actions and the IVR trail checked exactly.
use super::*;
use crate::ivr::model::{Calendar, DateRange, Node, SurveyQuestion};
use std::time::Duration;

/// Builds a flow by node name; the first node defined is the start node.
struct B {
    name: String,
    start: Option<NodeId>,
    names: Vec<String>,
    kinds: Vec<Option<NodeKind>>,
    calendars: BTreeMap<String, Arc<Calendar>>,
}

impl B {
    fn new(name: &str) -> B {
        B {
            name: name.into(),
            start: None,
            names: Vec::new(),
            kinds: Vec::new(),
            calendars: BTreeMap::new(),
        }
    }

    fn id(&mut self, name: &str) -> NodeId {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.into());
                self.kinds.push(None);
                self.names.len() - 1
            }
        };
        NodeId(i as u32)
    }

    fn node(&mut self, name: &str, kind: NodeKind) -> NodeId {
        let id = self.id(name);
        self.kinds[id.0 as usize] = Some(kind);
        self.start.get_or_insert(id);
        id
    }

    fn calendar(&mut self, cal: Calendar) {
        self.calendars.insert(cal.name.clone(), Arc::new(cal));
    }

    fn build(self) -> Arc<Flow> {
        let nodes = self
            .names
            .into_iter()
            .zip(self.kinds)
            .enumerate()
            .map(|(i, (name, kind))| Node {
                kind: kind.unwrap_or_else(|| panic!("node {name} has no kind")),
                name,
                line: i + 1,
            })
            .collect();
        Arc::new(Flow {
            name: self.name,
            version: "0".into(),
            start: self.start.expect("a node"),
            nodes,
            calendars: self.calendars,
            file: "test.yaml".into(),
        })
    }
}

struct Flows(Vec<Arc<Flow>>);

impl FlowSource for Flows {
    fn flow(&self, name: &str) -> Option<Arc<Flow>> {
        self.0.iter().find(|f| f.name == name).cloned()
    }
}

/// 2024-05-15 (a Wednesday) 10:00 in Shanghai.
const WEDNESDAY_10H_SHANGHAI: i64 = 1_715_738_400;

struct Call {
    it: Interpreter,
    now: Instant,
    flows: Flows,
}

impl Call {
    fn new(flow: Arc<Flow>) -> Call {
        Call::with(flow, vec![], WEDNESDAY_10H_SHANGHAI)
    }

    #[allow(clippy::disallowed_methods)] // the only clock: a base for virtual time
    fn with(flow: Arc<Flow>, others: Vec<Arc<Flow>>, local_unix: i64) -> Call {
        let now = Instant::now();
        let call = CallInfo {
            caller: "13800138000".into(),
            called: "4001".into(),
            vars: BTreeMap::from([("level".to_string(), "vip".to_string())]),
        };
        Call {
            it: Interpreter::new(flow, call, now, local_unix),
            now,
            flows: Flows(others),
        }
    }

    fn ev(&mut self, event: Event) -> Vec<Action> {
        self.it.handle(event, self.now, &self.flows)
    }

    fn start(&mut self) -> Vec<Action> {
        self.ev(Event::Start)
    }

    fn key(&mut self, key: char) -> Vec<Action> {
        self.ev(Event::Digit(key))
    }

    fn keys(&mut self, keys: &str) -> Vec<Action> {
        keys.chars().flat_map(|k| self.key(k)).collect()
    }

    /// Let virtual time pass, then fire the timer.
    fn fire(&mut self, timer: (u64, Duration)) -> Vec<Action> {
        self.now += timer.1;
        self.ev(Event::Timer(timer.0))
    }

    /// The trail as `node:exit` (`node` alone while no exit is known), with the flow name
    /// when it is not `main`.
    fn path(&self) -> Vec<String> {
        self.it
            .trail()
            .iter()
            .map(|s| {
                let node = if s.flow == "main" {
                    s.node.clone()
                } else {
                    format!("{}/{}", s.flow, s.node)
                };
                match &s.exit {
                    Some(e) => format!("{node}:{e}"),
                    None => node,
                }
            })
            .collect()
    }

    fn node(&self) -> Option<String> {
        let flow = &self.it.flow;
        self.it.current().map(|id| flow.node(id).name.clone())
    }
}

fn play(prompts: &[&str], barge_in: bool) -> Action {
    Action::Play {
        prompts: strings(prompts),
        barge_in,
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// The timer armed among `actions` (the last one).
fn timer(actions: &[Action]) -> (u64, Duration) {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::StartTimer { token, after } => Some((*token, *after)),
            _ => None,
        })
        .expect("a StartTimer action")
}

/// The actions without the timers (every key into a `collect` re-arms one).
fn untimed(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, Action::StartTimer { .. }))
        .collect()
}

fn hangup() -> NodeKind {
    NodeKind::Hangup {
        cause: HangupCause::Normal,
    }
}

const BYE: Action = Action::Hangup {
    cause: HangupCause::Normal,
};

fn end(cause: HangupCause) -> Option<&'static End> {
    Some(Box::leak(Box::new(End::Hangup(cause))))
}

/// A menu with `1` and `2`, one retry, 5 s timeout, and its own retry prompts.
fn menu(b: &mut B, retries: u32) -> NodeKind {
    NodeKind::Menu {
        prompts: strings(&["menu"]),
        choices: vec![('1', b.id("one")), ('2', b.id("two"))],
        timeout: Duration::from_secs(5),
        retries,
        no_input_prompts: strings(&["say_again"]),
        invalid_prompts: strings(&["not_valid"]),
        no_input: b.id("silent"),
        invalid: b.id("wrong"),
    }
}

fn menu_flow(retries: u32) -> Arc<Flow> {
    let mut b = B::new("main");
    let m = menu(&mut b, retries);
    b.node("menu", m);
    for n in ["one", "two", "silent", "wrong"] {
        b.node(n, hangup());
    }
    b.build()
}

// ---- play ----

#[test]
fn play_then_next() {
    let mut b = B::new("main");
    let bye = b.id("bye");
    b.node(
        "welcome",
        NodeKind::Play {
            prompts: strings(&["welcome", "thanks"]),
            barge_in: false,
            next: bye,
        },
    );
    b.node("bye", hangup());
    let mut c = Call::new(b.build());
    assert_eq!(c.start(), vec![play(&["welcome", "thanks"], false)]);
    assert_eq!(c.node().as_deref(), Some("welcome"));
    assert_eq!(c.path(), ["welcome"]);
    assert_eq!(c.ev(Event::PlayDone), vec![BYE]);
    assert_eq!(c.path(), ["welcome:next", "bye"]);
    assert_eq!(c.it.end(), end(HangupCause::Normal));
    // After the end nothing happens any more.
    assert_eq!(c.ev(Event::PlayDone), vec![]);
    assert_eq!(c.ev(Event::CallerHangup), vec![]);
    assert_eq!(c.it.end(), end(HangupCause::Normal));
}

#[test]
fn play_without_barge_in_ignores_keys_and_does_not_keep_them() {
    let mut b = B::new("main");
    let m = b.id("menu");
    b.node(
        "welcome",
        NodeKind::Play {
            prompts: strings(&["welcome"]),
            barge_in: false,
            next: m,
        },
    );
    let k = menu(&mut b, 0);
    b.node("menu", k);
    for n in ["one", "two", "silent", "wrong"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    c.start();
    assert_eq!(c.key('1'), vec![]);
    assert_eq!(c.ev(Event::PlayDone), vec![play(&["menu"], true)]);
    assert_eq!(c.path(), ["welcome:next", "menu"]);
}

#[test]
fn barge_in_stops_the_prompt_and_the_key_feeds_the_next_menu() {
    let mut b = B::new("main");
    let m = b.id("menu");
    b.node(
        "welcome",
        NodeKind::Play {
            prompts: strings(&["welcome"]),
            barge_in: true,
            next: m,
        },
    );
    let k = menu(&mut b, 0);
    b.node("menu", k);
    for n in ["one", "two", "silent", "wrong"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    c.start();
    // The menu prompt never plays: the type-ahead key answers it.
    assert_eq!(c.key('2'), vec![Action::Stop, BYE]);
    assert_eq!(c.path(), ["welcome:next", "menu:2", "two"]);
}

// ---- menu ----

#[test]
fn menu_key_during_the_prompt_stops_it_and_takes_its_exit() {
    let mut c = Call::new(menu_flow(1));
    assert_eq!(c.start(), vec![play(&["menu"], true)]);
    assert_eq!(c.key('1'), vec![Action::Stop, BYE]);
    assert_eq!(c.path(), ["menu:1", "one"]);
}

#[test]
fn menu_key_after_the_prompt() {
    let mut c = Call::new(menu_flow(1));
    c.start();
    let a = c.ev(Event::PlayDone);
    assert_eq!(
        a,
        vec![Action::StartTimer {
            token: timer(&a).0,
            after: Duration::from_secs(5)
        }]
    );
    assert_eq!(c.key('2'), vec![BYE]);
    assert_eq!(c.path(), ["menu:2", "two"]);
}

#[test]
fn menu_no_input_retries_with_its_prompt_then_exits() {
    let mut c = Call::new(menu_flow(1));
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![play(&["say_again"], true)]);
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![BYE]);
    assert_eq!(c.path(), ["menu:no_input", "silent"]);
}

#[test]
fn menu_invalid_retries_with_its_prompt_then_exits() {
    let mut c = Call::new(menu_flow(1));
    c.start();
    assert_eq!(c.key('9'), vec![Action::Stop, play(&["not_valid"], true)]);
    c.ev(Event::PlayDone);
    assert_eq!(c.key('#'), vec![BYE]);
    assert_eq!(c.path(), ["menu:invalid", "wrong"]);
}

#[test]
fn menu_retries_are_shared_between_no_input_and_invalid() {
    let mut c = Call::new(menu_flow(2));
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![play(&["say_again"], true)]); // retry 1
    c.ev(Event::PlayDone);
    assert_eq!(c.key('7'), vec![play(&["not_valid"], true)]); // retry 2
    c.ev(Event::PlayDone);
    assert_eq!(c.key('1'), vec![BYE]); // a good key still counts on the last try
    assert_eq!(c.path(), ["menu:1", "one"]);
}

#[test]
fn menu_retry_without_its_own_prompt_replays_the_menu() {
    let mut b = B::new("main");
    let mut m = menu(&mut b, 1);
    if let NodeKind::Menu {
        no_input_prompts, ..
    } = &mut m
    {
        no_input_prompts.clear();
    }
    b.node("menu", m);
    for n in ["one", "two", "silent", "wrong"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![play(&["menu"], true)]);
}

#[test]
fn stale_timer_tokens_are_ignored() {
    let mut c = Call::new(menu_flow(1));
    c.start();
    let first = timer(&c.ev(Event::PlayDone));
    c.key('9'); // invalid: retry, the first timer is now stale
    let second = timer(&c.ev(Event::PlayDone));
    assert_ne!(first.0, second.0);
    assert_eq!(c.fire(first), vec![]);
    assert_eq!(c.ev(Event::Timer(12345)), vec![]);
    assert_eq!(c.path(), ["menu"]);
    // The live timer: no input on the last try.
    assert_eq!(c.fire(second), vec![BYE]);
    assert_eq!(c.path(), ["menu:no_input", "silent"]);
}

// ---- collect ----

fn collect(b: &mut B) -> NodeKind {
    NodeKind::Collect {
        prompts: strings(&["enter_account"]),
        variable: "account".into(),
        min_digits: 4,
        max_digits: 6,
        end_key: Some('#'),
        first_digit_timeout: Duration::from_secs(8),
        inter_digit_timeout: Duration::from_secs(3),
        pattern: None,
        retries: 1,
        no_input_prompts: strings(&["say_again"]),
        invalid_prompts: strings(&["not_valid"]),
        sensitive: false,
        ok: b.id("ok"),
        no_input: b.id("silent"),
        invalid: b.id("wrong"),
    }
}

fn collect_flow(edit: impl FnOnce(&mut NodeKind)) -> Arc<Flow> {
    let mut b = B::new("main");
    let mut k = collect(&mut b);
    edit(&mut k);
    b.node("account", k);
    for n in ["ok", "silent", "wrong"] {
        b.node(n, hangup());
    }
    b.build()
}

fn input(value: &str) -> Action {
    Action::Input {
        node: "account".into(),
        variable: "account".into(),
        value: value.into(),
    }
}

#[test]
fn collect_ends_on_the_end_key_which_is_not_stored() {
    let mut c = Call::new(collect_flow(|_| {}));
    assert_eq!(c.start(), vec![play(&["enter_account"], true)]);
    let a = c.key('1');
    assert_eq!(a[0], Action::Stop);
    assert_eq!(timer(&a).1, Duration::from_secs(3));
    assert_eq!(timer(&c.keys("234")).1, Duration::from_secs(3));
    assert_eq!(c.key('#'), vec![input("1234"), BYE]);
    assert_eq!(c.it.vars()["account"], "1234");
    assert_eq!(c.path(), ["account:ok", "ok"]);
}

#[test]
fn collect_ends_at_max_digits() {
    let mut c = Call::new(collect_flow(|_| {}));
    c.start();
    c.ev(Event::PlayDone);
    let a = c.keys("123456");
    assert_eq!(a.last(), Some(&BYE));
    assert!(a.contains(&input("123456")));
    assert_eq!(c.path(), ["account:ok", "ok"]);
}

#[test]
fn collect_inter_digit_timeout_ends_once_min_digits_are_in() {
    let mut c = Call::new(collect_flow(|_| {}));
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(t.1, Duration::from_secs(8)); // first-digit timeout
    let t = timer(&c.keys("12345"));
    assert_eq!(c.fire(t), vec![input("12345"), BYE]);
}

#[test]
fn collect_too_few_digits_is_invalid_and_retried() {
    let mut c = Call::new(collect_flow(|_| {}));
    c.start();
    c.ev(Event::PlayDone);
    let t = timer(&c.keys("12"));
    assert_eq!(c.fire(t), vec![play(&["not_valid"], true)]);
    // The retry starts from scratch.
    c.ev(Event::PlayDone);
    assert_eq!(untimed(c.keys("98#")), vec![BYE]);
    assert_eq!(c.path(), ["account:invalid", "wrong"]);
    assert!(!c.it.vars().contains_key("account"));
}

#[test]
fn collect_first_digit_timeout_is_no_input() {
    let mut c = Call::new(collect_flow(|k| {
        if let NodeKind::Collect { retries, .. } = k {
            *retries = 0;
        }
    }));
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![BYE]);
    assert_eq!(c.path(), ["account:no_input", "silent"]);
}

#[test]
fn collect_end_key_alone_is_invalid() {
    let mut c = Call::new(collect_flow(|_| {}));
    c.start();
    assert_eq!(c.key('#'), vec![Action::Stop, play(&["not_valid"], true)]);
}

#[test]
fn collect_checks_the_pattern_anchored() {
    let mut c = Call::new(collect_flow(|k| {
        if let NodeKind::Collect { pattern, .. } = k {
            *pattern = Some("9[0-9]+".into());
        }
    }));
    c.start();
    // Contains a match but does not match as a whole.
    assert_eq!(
        untimed(c.keys("1999#")),
        [Action::Stop, play(&["not_valid"], true)]
    );
    c.ev(Event::PlayDone);
    assert_eq!(untimed(c.keys("9999#")), vec![input("9999"), BYE]);
    assert_eq!(c.path(), ["account:ok", "ok"]);
}

#[test]
fn sensitive_input_is_masked_in_the_record_not_in_the_variable() {
    let mut c = Call::new(collect_flow(|k| {
        if let NodeKind::Collect {
            sensitive,
            max_digits,
            ..
        } = k
        {
            *sensitive = true;
            *max_digits = 18;
        }
    }));
    c.start();
    let a = c.keys("101101199001011010");
    assert!(a.contains(&input("10**************10")), "{a:?}");
    assert_eq!(c.it.vars()["account"], "101101199001011010");
}

#[test]
fn masking_keeps_two_at_each_end_and_hides_short_values() {
    assert_eq!(mask("110105199001011234"), "11**************34");
    assert_eq!(mask("12345"), "12*45");
    assert_eq!(mask("1234"), "****");
    assert_eq!(mask(""), "");
}

#[test]
fn collect_takes_type_ahead_keys_and_skips_its_prompt() {
    let mut b = B::new("main");
    let acc = b.id("account");
    b.node(
        "welcome",
        NodeKind::Play {
            prompts: strings(&["welcome"]),
            barge_in: true,
            next: acc,
        },
    );
    let k = collect(&mut b);
    b.node("account", k);
    for n in ["ok", "silent", "wrong"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    c.start();
    let a = c.key('5');
    assert_eq!(a[0], Action::Stop);
    assert_eq!(
        timer(&a).1,
        Duration::from_secs(3),
        "inter-digit, no prompt"
    );
    assert!(!a.iter().any(|a| matches!(a, Action::Play { .. })));
    assert_eq!(untimed(c.keys("678#")), vec![input("5678"), BYE]);
    assert_eq!(c.path(), ["welcome:next", "account:ok", "ok"]);
}

// ---- hours ----

fn office() -> Calendar {
    let day = vec![(9 * 60, 18 * 60)];
    Calendar {
        name: "office".into(),
        time_zone: "Asia/Shanghai".into(),
        weekly: [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ],
        holidays: vec![DateRange {
            from: (2024, 5, 1),
            to: (2024, 5, 5),
        }],
        special_days: vec![(
            DateRange {
                from: (2024, 5, 11),
                to: (2024, 5, 11),
            },
            vec![(9 * 60, 12 * 60)],
        )],
    }
}

fn hours_flow() -> Arc<Flow> {
    let mut b = B::new("main");
    let (open, closed) = (b.id("open"), b.id("closed"));
    let h = b.id("hours");
    b.node(
        "wait",
        NodeKind::Play {
            prompts: strings(&["welcome"]),
            barge_in: false,
            next: h,
        },
    );
    b.node(
        "hours",
        NodeKind::Hours {
            calendar: "office".into(),
            open,
            closed,
        },
    );
    b.node("open", hangup());
    b.node(
        "closed",
        NodeKind::Hangup {
            cause: HangupCause::Unavailable,
        },
    );
    b.calendar(office());
    b.build()
}

fn hours_at(unix: i64) -> Vec<String> {
    let mut c = Call::with(hours_flow(), vec![], unix);
    c.start();
    c.ev(Event::PlayDone);
    c.path()
}

#[test]
fn hours_open_and_closed() {
    let h = 3600;
    assert_eq!(hours_at(WEDNESDAY_10H_SHANGHAI)[1], "hours:open");
    assert_eq!(hours_at(WEDNESDAY_10H_SHANGHAI + 9 * h)[1], "hours:closed");
    // Saturday 2024-05-11 10:00 is a special working day (9–12); Sunday the 12th is not.
    assert_eq!(hours_at(WEDNESDAY_10H_SHANGHAI - 96 * h)[1], "hours:open");
    assert_eq!(
        hours_at(WEDNESDAY_10H_SHANGHAI - 96 * h + 3 * h)[1],
        "hours:closed"
    );
    assert_eq!(hours_at(WEDNESDAY_10H_SHANGHAI - 72 * h)[1], "hours:closed");
    // Thursday 2024-05-02 10:00 is a holiday.
    assert_eq!(
        hours_at(WEDNESDAY_10H_SHANGHAI - 13 * 24 * h)[1],
        "hours:closed"
    );
}

#[test]
fn hours_are_evaluated_when_the_node_is_reached() {
    // The call starts at 17:59 local; the prompt takes two minutes.
    let mut c = Call::with(
        hours_flow(),
        vec![],
        WEDNESDAY_10H_SHANGHAI + 7 * 3600 + 59 * 60,
    );
    c.start();
    c.now += Duration::from_secs(120);
    assert_eq!(
        c.ev(Event::PlayDone),
        vec![Action::Hangup {
            cause: HangupCause::Unavailable
        }]
    );
    assert_eq!(c.path(), ["wait:next", "hours:closed", "closed"]);
}

// ---- switch, set ----

fn switch_flow(cases: &[&str]) -> Arc<Flow> {
    let mut b = B::new("main");
    let cases = cases
        .iter()
        .enumerate()
        .map(|(i, e)| (Expr(e.to_string()), b.id(&format!("c{}", i + 1))))
        .collect::<Vec<_>>();
    let n = cases.len();
    let default = b.id("other");
    b.node("route", NodeKind::Switch { cases, default });
    for i in 1..=n {
        b.node(&format!("c{i}"), hangup());
    }
    b.node("other", hangup());
    b.build()
}

fn switch_path(cases: &[&str]) -> String {
    let mut c = Call::new(switch_flow(cases));
    c.start();
    c.path()[0].clone()
}

#[test]
fn switch_takes_the_first_true_case() {
    assert_eq!(
        switch_path(&[
            "caller.startswith('139')",
            "caller.startswith('138')",
            "true"
        ]),
        "route:case2"
    );
    assert_eq!(switch_path(&["vars.level == 'vip'"]), "route:case1");
    assert_eq!(
        switch_path(&["caller is startingwith('138') and called == '4001'"]),
        "route:case1"
    );
    assert_eq!(
        switch_path(&["caller is matches('1[3-9][0-9]{9}')"]),
        "route:case1"
    );
    assert_eq!(switch_path(&["caller is matches('138')"]), "route:default");
    assert_eq!(switch_path(&["in_hours('nope')"]), "route:default");
    assert_eq!(switch_path(&["vars.missing == 'x'"]), "route:default");
}

#[test]
fn switch_treats_an_evaluation_error_as_false() {
    // Attribute of an undefined value, a bad regex, an unknown function: errors, not true.
    assert_eq!(
        switch_path(&[
            "vars.missing.deeper",
            "caller is matches('(')",
            "nope()",
            "1 == 1"
        ]),
        "route:case4"
    );
}

#[test]
fn switch_can_ask_a_calendar() {
    let mut b = B::new("main");
    let (open, closed) = (b.id("open"), b.id("closed"));
    b.node(
        "route",
        NodeKind::Switch {
            cases: vec![(Expr("in_hours('office')".into()), open)],
            default: closed,
        },
    );
    b.node("open", hangup());
    b.node("closed", hangup());
    b.calendar(office());
    let flow = b.build();
    let mut c = Call::with(flow.clone(), vec![], WEDNESDAY_10H_SHANGHAI);
    c.start();
    assert_eq!(c.path()[0], "route:case1");
    let mut c = Call::with(flow, vec![], WEDNESDAY_10H_SHANGHAI + 12 * 3600);
    c.start();
    assert_eq!(c.path()[0], "route:default");
}

#[test]
fn set_renders_templates_in_order() {
    let mut b = B::new("main");
    let bye = b.id("bye");
    b.node(
        "set",
        NodeKind::Set {
            assignments: vec![
                ("who".into(), Template("{{ caller }}>{{ called }}".into())),
                (
                    "tag".into(),
                    Template("{{ vars.who }}/{{ vars.level | upper }}".into()),
                ),
                ("broken".into(), Template("{{ caller".into())),
            ],
            next: bye,
        },
    );
    b.node("bye", hangup());
    let mut c = Call::new(b.build());
    assert_eq!(c.start(), vec![BYE]);
    assert_eq!(c.it.vars()["who"], "13800138000>4001");
    assert_eq!(c.it.vars()["tag"], "13800138000>4001/VIP");
    assert!(!c.it.vars().contains_key("broken"));
    assert_eq!(c.path(), ["set:next", "bye"]);
}

// ---- http ----

fn http_flow() -> Arc<Flow> {
    let mut b = B::new("main");
    let (ok, error) = (b.id("ok"), b.id("error"));
    b.node(
        "lookup",
        NodeKind::Http {
            method: HttpMethod::Post,
            url: Template("https://crm.example/customers/{{ caller }}".into()),
            headers: vec![("X-Called".into(), Template("{{ called }}".into()))],
            body: Some(Template(r#"{"level":"{{ vars.level }}"}"#.into())),
            timeout: Duration::from_secs(2),
            extract: vec![
                ("name".into(), "/customer/name".into()),
                ("orders".into(), "/customer/orders".into()),
                ("vip".into(), "/customer/vip".into()),
                ("missing".into(), "/customer/nothing".into()),
                ("none".into(), "/customer/none".into()),
            ],
            ok,
            error,
        },
    );
    b.node("ok", hangup());
    b.node("error", hangup());
    b.build()
}

#[test]
fn http_request_is_rendered_and_json_fields_become_variables() {
    let mut c = Call::new(http_flow());
    assert_eq!(
        c.start(),
        vec![Action::Http(HttpRequest {
            method: HttpMethod::Post,
            url: "https://crm.example/customers/13800138000".into(),
            headers: vec![("X-Called".into(), "4001".into())],
            body: Some(r#"{"level":"vip"}"#.into()),
            timeout: Duration::from_secs(2),
        })]
    );
    let body = r#"{"customer":{"name":"Li Lei","orders":3,"vip":true,"none":null}}"#;
    c.ev(Event::HttpResponse {
        status: 200,
        body: body.into(),
    });
    assert_eq!(c.path(), ["lookup:ok", "ok"]);
    let vars = c.it.vars();
    assert_eq!(vars["name"], "Li Lei");
    assert_eq!(vars["orders"], "3");
    assert_eq!(vars["vip"], "true");
    assert!(!vars.contains_key("missing"));
    assert!(!vars.contains_key("none"));
}

#[test]
fn http_errors() {
    for event in [
        Event::HttpResponse {
            status: 500,
            body: "{}".into(),
        },
        Event::HttpResponse {
            status: 200,
            body: "<html>".into(),
        },
        Event::HttpFailed {
            reason: "timeout".into(),
        },
    ] {
        let mut c = Call::new(http_flow());
        c.start();
        assert_eq!(c.ev(event), vec![BYE]);
        assert_eq!(c.path(), ["lookup:error", "error"]);
    }
}

#[test]
fn keys_during_an_http_request_are_type_ahead() {
    let mut b = B::new("main");
    let (ok, error) = (b.id("menu"), b.id("error"));
    b.node(
        "lookup",
        NodeKind::Http {
            method: HttpMethod::Get,
            url: Template("https://crm.example/".into()),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(2),
            extract: vec![],
            ok,
            error,
        },
    );
    let m = menu(&mut b, 0);
    b.node("menu", m);
    for n in ["error", "one", "two", "silent", "wrong"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    c.start();
    assert_eq!(c.key('1'), vec![]);
    let a = c.ev(Event::HttpResponse {
        status: 204,
        body: "{}".into(),
    });
    assert_eq!(a, vec![BYE]);
    assert_eq!(c.path(), ["lookup:ok", "menu:1", "one"]);
}

// ---- queue ----

fn queue_flow(after_agent: bool) -> Arc<Flow> {
    queue_flow_with(after_agent, false)
}

/// `agent_unavailable`: the node has call memory's fallback exit (to `personal`).
fn queue_flow_with(after_agent: bool, agent_unavailable: bool) -> Arc<Flow> {
    let mut b = B::new("main");
    let after = after_agent.then(|| b.id("survey"));
    let personal = agent_unavailable.then(|| b.id("personal"));
    let exits = ["timeout", "exit", "no_agents", "full"].map(|n| b.id(n));
    b.node(
        "queue",
        NodeKind::Queue {
            queue: "sales".into(),
            priority: Some(Expr("10 if vars.level == 'vip' else 0".into())),
            max_wait: Duration::from_secs(300),
            announce_every: Some(Duration::from_secs(60)),
            music: Some("hold".into()),
            exit_key: Some('*'),
            after_agent: after,
            timeout: exits[0],
            exit: exits[1],
            no_agents: exits[2],
            full: exits[3],
            agent_unavailable: personal,
        },
    );
    for n in ["timeout", "exit", "no_agents", "full"] {
        b.node(n, hangup());
    }
    if after_agent {
        b.node("survey", hangup());
    }
    if agent_unavailable {
        b.node("personal", hangup());
    }
    b.build()
}

#[test]
fn queue_enqueues_with_the_priority_expression() {
    let mut c = Call::new(queue_flow(true));
    assert_eq!(
        c.start(),
        vec![Action::Enqueue {
            queue: "sales".into(),
            priority: 10,
            max_wait: Duration::from_secs(300),
            announce_every: Some(Duration::from_secs(60)),
            music: Some("hold".into()),
            exit_key: Some('*'),
        }]
    );
    // Keys belong to the queue (its exit key is the call's business), not to the flow.
    assert_eq!(c.key('*'), vec![]);
}

#[test]
fn queue_outcomes_take_their_exits() {
    for (outcome, exit) in [
        (QueueOutcome::Timeout, "timeout"),
        (QueueOutcome::Exited, "exit"),
        (QueueOutcome::NoAgents, "no_agents"),
        (QueueOutcome::Full, "full"),
        (QueueOutcome::AgentDone, "agent_done"),
    ] {
        let mut c = Call::new(queue_flow(true));
        c.start();
        assert_eq!(c.ev(Event::Queue(outcome)), vec![BYE]);
        let next = if exit == "agent_done" { "survey" } else { exit };
        assert_eq!(c.path(), [format!("queue:{exit}"), next.to_string()]);
    }
}

#[test]
fn call_memory_fallback_takes_its_own_exit_or_no_agents() {
    // The caller's own agent is on a break: the flow's fallback for that case.
    let mut c = Call::new(queue_flow_with(false, true));
    c.start();
    assert_eq!(
        c.ev(Event::Queue(QueueOutcome::AgentUnavailable)),
        vec![BYE]
    );
    assert_eq!(c.path(), ["queue:agent_unavailable", "personal"]);

    // A flow written without call memory in mind: nobody can take the call, as with no agents.
    let mut c = Call::new(queue_flow_with(false, false));
    c.start();
    assert_eq!(
        c.ev(Event::Queue(QueueOutcome::AgentUnavailable)),
        vec![BYE]
    );
    assert_eq!(c.path(), ["queue:no_agents", "no_agents"]);
}

#[test]
fn queue_without_after_agent_ends_with_the_agent() {
    let mut c = Call::new(queue_flow(false));
    c.start();
    assert_eq!(c.ev(Event::Queue(QueueOutcome::AgentDone)), vec![BYE]);
    assert_eq!(c.path(), ["queue:agent_done"]);
    assert_eq!(c.it.end(), end(HangupCause::Normal));
}

#[test]
fn queue_priority_defaults_to_zero() {
    let mut b = B::new("main");
    let exits = ["timeout", "exit", "no_agents", "full"].map(|n| b.id(n));
    b.node(
        "queue",
        NodeKind::Queue {
            queue: "sales".into(),
            priority: Some(Expr("'high'".into())),
            max_wait: Duration::from_secs(300),
            announce_every: None,
            music: None,
            exit_key: None,
            after_agent: None,
            timeout: exits[0],
            exit: exits[1],
            no_agents: exits[2],
            full: exits[3],
            agent_unavailable: None,
        },
    );
    for n in ["timeout", "exit", "no_agents", "full"] {
        b.node(n, hangup());
    }
    let mut c = Call::new(b.build());
    let a = c.start();
    assert!(
        matches!(a[..], [Action::Enqueue { priority: 0, .. }]),
        "{a:?}"
    );
}

// ---- dial, bridge ----

fn dial_flow() -> Arc<Flow> {
    let mut b = B::new("main");
    let exits = ["answered", "no_answer", "busy", "failed"].map(|n| b.id(n));
    b.node(
        "dial",
        NodeKind::Dial {
            target: DialTarget::Number {
                number: Template("0{{ vars.mobile }}".into()),
                trunk: Some("carrier".into()),
            },
            ring_timeout: Duration::from_secs(30),
            answered: exits[0],
            no_answer: exits[1],
            busy: exits[2],
            failed: exits[3],
        },
    );
    for n in ["answered", "no_answer", "busy", "failed"] {
        b.node(n, hangup());
    }
    b.build()
}

#[test]
fn dial_renders_its_target_and_takes_the_leg_outcome() {
    for (outcome, exit) in [
        (LegOutcome::AnsweredThenHungUp, "answered"),
        (LegOutcome::NoAnswer, "no_answer"),
        (LegOutcome::Busy, "busy"),
        (LegOutcome::Failed, "failed"),
    ] {
        let mut c = Call::new(dial_flow());
        c.it.vars.insert("mobile".into(), "13912345678".into());
        assert_eq!(
            c.start(),
            vec![Action::Dial {
                target: DialSpec::Number {
                    number: "013912345678".into(),
                    trunk: Some("carrier".into())
                },
                ring_timeout: Duration::from_secs(30),
                headers: vec![],
            }]
        );
        let a = c.ev(Event::Leg {
            outcome,
            headers: vec![],
        });
        assert_eq!(a, vec![BYE]);
        assert_eq!(c.path(), [format!("dial:{exit}"), exit.to_string()]);
    }
}

fn bridge_flow() -> Arc<Flow> {
    let mut b = B::new("main");
    let (returned, failed) = (b.id("back"), b.id("failed"));
    b.node(
        "bot",
        NodeKind::Bridge {
            uri: Template("sip:bot@voicebot.example".into()),
            headers: vec![
                ("X-Caller".into(), Template("{{ caller }}".into())),
                ("X-Level".into(), Template("{{ vars.level }}".into())),
            ],
            result_headers: vec![
                ("X-Intent".into(), "intent".into()),
                ("X-Absent".into(), "absent".into()),
            ],
            ring_timeout: Duration::from_secs(20),
            returned,
            failed,
        },
    );
    b.node("back", hangup());
    b.node("failed", hangup());
    b.build()
}

#[test]
fn bridge_passes_headers_and_reads_result_headers_on_return() {
    let mut c = Call::new(bridge_flow());
    assert_eq!(
        c.start(),
        vec![Action::Dial {
            target: DialSpec::Uri("sip:bot@voicebot.example".into()),
            ring_timeout: Duration::from_secs(20),
            headers: vec![
                ("X-Caller".into(), "13800138000".into()),
                ("X-Level".into(), "vip".into())
            ],
        }]
    );
    let a = c.ev(Event::Leg {
        outcome: LegOutcome::AnsweredThenHungUp,
        headers: vec![
            ("x-intent".into(), "answer-only".into()),
            ("X-INTENT".into(), "billing".into()),
        ],
    });
    assert_eq!(a, vec![BYE]);
    assert_eq!(c.path(), ["bot:returned", "back"]);
    assert_eq!(c.it.vars()["intent"], "billing");
    assert!(!c.it.vars().contains_key("absent"));
}

#[test]
fn bridge_failures() {
    for outcome in [LegOutcome::NoAnswer, LegOutcome::Busy, LegOutcome::Failed] {
        let mut c = Call::new(bridge_flow());
        c.start();
        c.ev(Event::Leg {
            outcome,
            headers: vec![],
        });
        assert_eq!(c.path(), ["bot:failed", "failed"]);
    }
}

// ---- voicemail, survey ----

#[test]
fn voicemail_plays_records_and_links_the_recording() {
    let mut b = B::new("main");
    let done = b.id("bye");
    b.node(
        "vm",
        NodeKind::Voicemail {
            prompts: strings(&["leave_message"]),
            beep: true,
            max_length: Duration::from_secs(120),
            mailbox: "sales".into(),
            done,
        },
    );
    b.node("bye", hangup());
    let mut c = Call::new(b.build());
    assert_eq!(c.start(), vec![play(&["leave_message"], false)]);
    assert_eq!(c.key('1'), vec![]);
    assert_eq!(
        c.ev(Event::PlayDone),
        vec![Action::Record {
            mailbox: "sales".into(),
            beep: true,
            max_length: Duration::from_secs(120)
        }]
    );
    let a = c.ev(Event::Recorded {
        path: "/var/vm/1.wav".into(),
        duration: Duration::from_millis(42_700),
    });
    assert_eq!(a, vec![BYE]);
    assert_eq!(c.it.vars()["voicemail_path"], "/var/vm/1.wav");
    assert_eq!(c.it.vars()["voicemail_duration_s"], "42");
    assert_eq!(c.path(), ["vm:done", "bye"]);
}

fn survey_flow(second: bool) -> Arc<Flow> {
    let mut b = B::new("main");
    let done = b.id("bye");
    b.node(
        "survey",
        NodeKind::Survey {
            prompts: strings(&["rate_agent"]),
            scores: vec![('1', 5), ('2', 3), ('3', 1)],
            timeout: Duration::from_secs(6),
            second: second.then(|| SurveyQuestion {
                prompts: strings(&["rate_solved"]),
                scores: vec![('1', 1), ('2', 0)],
            }),
            thanks: strings(&["thanks"]),
            done,
        },
    );
    b.node("bye", hangup());
    b.build()
}

#[test]
fn survey_two_questions() {
    let mut c = Call::new(survey_flow(true));
    assert_eq!(c.start(), vec![play(&["rate_agent"], true)]);
    assert_eq!(
        c.key('2'),
        vec![
            Action::Stop,
            Action::Score {
                question: 1,
                score: 3
            },
            play(&["rate_solved"], true)
        ]
    );
    c.ev(Event::PlayDone);
    assert_eq!(
        c.key('1'),
        vec![
            Action::Score {
                question: 2,
                score: 1
            },
            play(&["thanks"], false)
        ]
    );
    assert_eq!(c.key('1'), vec![], "no barge-in on the thanks");
    assert_eq!(c.ev(Event::PlayDone), vec![BYE]);
    assert_eq!(c.path(), ["survey:done", "bye"]);
}

#[test]
fn survey_timeout_and_invalid_key_give_no_score() {
    let mut c = Call::new(survey_flow(true));
    c.start();
    let t = timer(&c.ev(Event::PlayDone));
    assert_eq!(c.fire(t), vec![play(&["rate_solved"], true)]);
    c.ev(Event::PlayDone);
    assert_eq!(c.key('9'), vec![play(&["thanks"], false)]);
    assert_eq!(c.ev(Event::PlayDone), vec![BYE]);
    assert_eq!(c.path(), ["survey:done", "bye"]);
}

#[test]
fn survey_single_question() {
    let mut c = Call::new(survey_flow(false));
    c.start();
    c.ev(Event::PlayDone);
    assert_eq!(
        c.key('1'),
        vec![
            Action::Score {
                question: 1,
                score: 5
            },
            play(&["thanks"], false)
        ]
    );
}

// ---- goto, subflow, return, hangup ----

fn other_flow() -> Arc<Flow> {
    let mut b = B::new("other");
    let bye = b.id("bye");
    b.node(
        "first",
        NodeKind::Play {
            prompts: strings(&["other"]),
            barge_in: false,
            next: bye,
        },
    );
    b.node(
        "bye",
        NodeKind::Hangup {
            cause: HangupCause::Busy,
        },
    );
    b.build()
}

fn goto_flow(flow: &str, node: Option<&str>) -> Arc<Flow> {
    let mut b = B::new("main");
    b.node(
        "jump",
        NodeKind::Goto {
            flow: flow.into(),
            node: node.map(Into::into),
        },
    );
    b.build()
}

#[test]
fn goto_continues_in_the_other_flow() {
    let mut c = Call::with(goto_flow("other", None), vec![other_flow()], 0);
    assert_eq!(c.start(), vec![play(&["other"], false)]);
    assert_eq!(c.path(), ["jump:goto", "other/first"]);
    c.ev(Event::PlayDone);
    assert_eq!(c.it.end(), end(HangupCause::Busy));

    let mut c = Call::with(goto_flow("other", Some("bye")), vec![other_flow()], 0);
    assert_eq!(
        c.start(),
        vec![Action::Hangup {
            cause: HangupCause::Busy
        }]
    );
    assert_eq!(c.path(), ["jump:goto", "other/bye"]);
}

#[test]
fn goto_a_missing_flow_or_node_is_an_error_end() {
    for (flow, node) in [("gone", None), ("other", Some("gone"))] {
        let mut c = Call::with(goto_flow(flow, node), vec![other_flow()], 0);
        assert_eq!(
            c.start(),
            vec![Action::Hangup {
                cause: HangupCause::Unavailable
            }]
        );
        assert!(
            matches!(c.it.end(), Some(End::Error(_))),
            "{:?}",
            c.it.end()
        );
    }
}

#[test]
fn subflow_returns_to_the_calling_flow() {
    let mut sub = B::new("lookup");
    let ret = sub.id("done");
    sub.node(
        "mark",
        NodeKind::Set {
            assignments: vec![("looked_up".into(), Template("yes".into()))],
            next: ret,
        },
    );
    sub.node("done", NodeKind::Return);
    let sub = sub.build();

    let mut b = B::new("main");
    let after = b.id("after");
    b.node(
        "call",
        NodeKind::Subflow {
            flow: "lookup".into(),
            next: after,
        },
    );
    b.node(
        "after",
        NodeKind::Play {
            prompts: strings(&["bye"]),
            barge_in: false,
            next: NodeId(2),
        },
    );
    b.node("end", NodeKind::Return); // top level: hang up
    let mut c = Call::with(b.build(), vec![sub], 0);
    assert_eq!(c.start(), vec![play(&["bye"], false)]);
    assert_eq!(
        c.path(),
        [
            "call:subflow",
            "lookup/mark:next",
            "lookup/done:return",
            "after"
        ]
    );
    assert_eq!(c.it.vars()["looked_up"], "yes");
    assert_eq!(c.ev(Event::PlayDone), vec![BYE]);
    assert_eq!(c.it.end(), end(HangupCause::Normal));
}

#[test]
fn subflow_missing_is_an_error_end() {
    let mut b = B::new("main");
    let bye = b.id("bye");
    b.node(
        "call",
        NodeKind::Subflow {
            flow: "gone".into(),
            next: bye,
        },
    );
    b.node("bye", hangup());
    let mut c = Call::new(b.build());
    c.start();
    assert!(matches!(c.it.end(), Some(End::Error(_))));
}

#[test]
fn hangup_with_its_cause() {
    let mut b = B::new("main");
    b.node(
        "reject",
        NodeKind::Hangup {
            cause: HangupCause::Rejected,
        },
    );
    let mut c = Call::new(b.build());
    assert_eq!(
        c.start(),
        vec![Action::Hangup {
            cause: HangupCause::Rejected
        }]
    );
    assert_eq!(c.it.end(), end(HangupCause::Rejected));
    assert_eq!(c.path(), ["reject"]);
}

// ---- guards and hang-ups ----

/// A flow changed under a running call could loop without caller input (the validator
/// rejects such loops within one flow, but two flows can goto each other).
#[test]
fn runaway_chains_end_the_call_instead_of_spinning() {
    let a = goto_flow("ping", None);
    let mut ping = B::new("ping");
    ping.node(
        "back",
        NodeKind::Goto {
            flow: "main".into(),
            node: None,
        },
    );
    let mut c = Call::with(a.clone(), vec![a, ping.build()], 0);
    assert_eq!(
        c.start(),
        vec![Action::Hangup {
            cause: HangupCause::Unavailable
        }]
    );
    assert!(matches!(c.it.end(), Some(End::Error(e)) if e.contains("without caller input")));
    assert_eq!(c.it.trail().len(), MAX_CHAIN);
}

#[test]
fn caller_hang_up_mid_node_ends_quietly_at_that_node() {
    let mut c = Call::new(menu_flow(1));
    c.start();
    c.ev(Event::PlayDone);
    assert_eq!(c.ev(Event::CallerHangup), vec![]);
    assert_eq!(
        c.it.end(),
        Some(&End::CallerHangup {
            node: "menu".into()
        })
    );
    assert_eq!(c.key('1'), vec![]);
    assert_eq!(c.ev(Event::Timer(1)), vec![]);
    assert_eq!(c.path(), ["menu"]);
}

#[test]
fn events_before_start_and_a_second_start_are_ignored() {
    let mut c = Call::new(menu_flow(1));
    assert_eq!(c.key('1'), vec![]);
    assert_eq!(c.ev(Event::PlayDone), vec![]);
    assert!(c.it.trail().is_empty());
    assert_eq!(c.start(), vec![play(&["menu"], true)]);
    assert_eq!(c.start(), vec![]);
    assert_eq!(c.path(), ["menu"]);
}
