use super::*;
use crate::ivr::graph::tests::demo;
use crate::ivr::model::NodeId;

struct Flows(BTreeMap<String, Arc<Flow>>);

impl FlowSource for Flows {
    fn flow(&self, name: &str) -> Option<Arc<Flow>> {
        self.0.get(name).cloned()
    }
}

fn flows() -> Flows {
    Flows(BTreeMap::from([("main".to_owned(), Arc::new(demo()))]))
}

fn run(text: &str) -> Vec<TestOutcome> {
    parse("t.yaml", text).expect("parses").run(&flows())
}

fn error(text: &str) -> String {
    parse("t.yaml", text).expect_err("rejected").to_string()
}

// Monday 10:00 in Shanghai is open; the demo calendar is Monday to Friday 09:00-18:00.
const HEAD: &str = "flow: main\ncaller: \"13800000000\"\ncalled: \"4000\"\nat: \"2026-11-23T10:00:00+08:00\"\ntests:\n";

#[test]
fn parses_the_documented_example() {
    let file = parse(
        "t.yaml",
        r#"flow: main
tests:
  - name: digit 1 goes to sales
    caller: "13800000000"
    called: "4000"
    at: "2026-11-23T10:00:00+08:00"
    digits: ["1", 2, "1#", ""]
    http: [{status: 200, body: '{"level":"vip"}'}, {fail: timeout}]
    queue: [no_agents, exit]
    legs: [answered, {outcome: returned, headers: {X-Result: ok}}]
    set: {source: web}
    expect:
      trail: [hours, menu, sales_queue, ...]
      end: { queue: sales }
      vars: { level: vip, count: 3 }
"#,
    )
    .unwrap();
    let t = &file.tests[0];
    assert_eq!(t.line, 3);
    assert_eq!(t.at_unix, 1_795_399_200);
    assert_eq!(t.digits, ["1", "2", "1#", ""]);
    assert_eq!(
        t.http,
        [
            HttpAnswer::Response {
                status: 200,
                body: r#"{"level":"vip"}"#.into()
            },
            HttpAnswer::Failed {
                reason: "timeout".into()
            }
        ]
    );
    assert_eq!(t.queue, [QueueOutcome::NoAgents, QueueOutcome::Exited]);
    assert_eq!(t.legs[1].0, LegOutcome::AnsweredThenHungUp);
    assert_eq!(t.legs[1].1, [("X-Result".to_owned(), "ok".to_owned())]);
    assert_eq!(
        t.expect.trail,
        Some(TrailPattern {
            nodes: vec!["hours".into(), "menu".into(), "sales_queue".into()],
            prefix: true
        })
    );
    assert_eq!(t.expect.end, Some(ExpectedEnd::Queue("sales".into())));
    assert_eq!(t.expect.vars["count"], "3");
    assert_eq!(t.set["source"], "web");
}

#[test]
fn errors_name_line_and_field() {
    let e = error(&format!(
        "{HEAD}  - name: a\n    digits: [\"1\"]\n    expect:\n      trial: [menu]\n"
    ));
    assert!(
        e.starts_with("t.yaml:9:7: tests[0].expect.trial: unknown field `trial`"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}  - name: a\n    digits: [\"1x\"]\n    expect: {{end: {{hangup: normal}}}}\n"
    ));
    assert!(
        e.starts_with("t.yaml:7:") && e.contains("tests[0].digits[0]: 'x' is not a key"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}  - name: a\n    at: tomorrow\n    expect: {{end: {{hangup: normal}}}}\n"
    ));
    assert!(
        e.starts_with("t.yaml:7:5: tests[0].at: expected an RFC 3339 time"),
        "{e}"
    );
    let e = error(&format!("{HEAD}  - name: a\n    expect: {{}}\n"));
    assert!(e.contains("tests[0].expect: expect nothing?"), "{e}");
    let e = error(&format!("{HEAD}  - name: a\n    expect: {{end: {{queue: x}}}}\n  - name: a\n    expect: {{end: {{queue: x}}}}\n"));
    assert!(
        e.starts_with("t.yaml:8:") && e.contains("already used on line 6"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}  - name: a\n    expect: {{trail: [a, ..., b]}}\n"
    ));
    assert!(e.contains("`...` may only end the trail"), "{e}");
    let e = error(&format!(
        "{HEAD}  - name: a\n    http: [{{status: 200, fail: x}}]\n    expect: {{trail: [a]}}\n"
    ));
    assert!(e.contains("tests[0].http[0]: give either"), "{e}");
    let e = error(&format!(
        "{HEAD}  - name: a\n    queue: [lost]\n    expect: {{trail: [a]}}\n"
    ));
    assert!(
        e.starts_with("t.yaml:7:") && e.contains("unknown variant `lost`"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}  - name: a\n    expect: {{end: {{gone: x}}}}\n"
    ));
    assert!(
        e.contains("tests[0].expect.end.gone: unknown field `gone`"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}  - name: a\n    expect: {{end: {{queue: a, hangup: busy}}}}\n"
    ));
    assert!(
        e.contains("tests[0].expect.end: give exactly one of"),
        "{e}"
    );
    let e = error("flow: main\nbogus: 1\ntests: []\n");
    assert!(
        e.starts_with("t.yaml:2:1: bogus: unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn rfc3339_times() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339("1970-01-01T08:00:00+08:00"), Ok(0));
    assert_eq!(
        parse_rfc3339("2000-02-29 12:00:00.250-01:30"),
        Ok(951_825_600 + 5400)
    );
    assert_eq!(
        parse_rfc3339("2026-11-23T10:00:00+08:00"),
        Ok(1_795_399_200)
    );
    for bad in [
        "2026-02-29T10:00:00Z",
        "2026-11-23T10:00:00",
        "2026-11-23T24:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-11-23T10:00:00+8:00",
        "2026-1-23T10:00:00Z",
        "2026-11-23T10:00:00.Z",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad}");
    }
}

#[test]
fn each_menu_branch() {
    let outcomes = run(&format!(
        r#"{HEAD}  - name: sales
    digits: ["1"]
    http: [{{status: 200, body: '{{"level":"vip"}}'}}]
    expect:
      trail: [hours, lookup, menu, sales_queue]
      end: {{queue: sales}}
      vars: {{level: vip}}
  - name: support, then no agents, voicemail
    digits: [2]
    http: [{{fail: timeout}}]
    queue: [no_agents]
    expect:
      trail: [hours, lookup, menu, support_queue, voicemail, goodbye]
      end: {{voicemail: sales}}
  - name: voicemail
    digits: ["0"]
    http: [{{status: 500}}]
    expect:
      trail: [hours, lookup, menu, voicemail, ...]
      end: {{voicemail: sales}}
"#
    ));
    for o in &outcomes {
        assert!(o.passed(), "{o}");
    }
    assert_eq!(outcomes.len(), 3);
}

#[test]
fn the_queue_can_answer_that_the_callers_own_agent_is_unavailable() {
    let text = format!(
        r#"{HEAD}  - name: support, the caller's own agent is on a break
    digits: [2]
    http: [{{fail: timeout}}]
    queue: [agent_unavailable]
    expect:
      trail: [hours, lookup, menu, support_queue, NEXT, ...]
"#
    );
    // The demo's queues have no fallback exit: the caller goes on as if nobody were logged in.
    let outcomes = run(&text.replace("NEXT", "voicemail"));
    assert!(outcomes[0].passed(), "{}", outcomes[0]);

    // With the exit, the flow's own fallback.
    let mut flow = demo();
    let goodbye = NodeId(flow.nodes.iter().position(|n| n.name == "goodbye").unwrap() as u32);
    let support = flow
        .nodes
        .iter_mut()
        .find(|n| n.name == "support_queue")
        .unwrap();
    if let NodeKind::Queue {
        agent_unavailable, ..
    } = &mut support.kind
    {
        *agent_unavailable = Some(goodbye);
    }
    let flows = Flows(BTreeMap::from([("main".to_owned(), Arc::new(flow))]));
    let outcomes = parse("t.yaml", &text.replace("NEXT", "goodbye"))
        .expect("parses")
        .run(&flows);
    assert!(outcomes[0].passed(), "{}", outcomes[0]);
    assert_eq!(outcomes.len(), 1);
}

#[test]
fn no_input_and_invalid_paths() {
    let outcomes = run(&format!(
        r#"{HEAD}  - name: silence
    http: [{{status: 404}}]
    expect:
      trail: [hours, lookup, menu, goodbye]
      end: {{hangup: normal}}
  - name: a wrong key, then the right one
    digits: ["9", "1"]
    http: [{{status: 404}}]
    expect:
      trail: [hours, lookup, menu, sales_queue]
  - name: silence, then a key
    digits: ["", "2"]
    http: [{{status: 404}}]
    expect:
      end: {{queue: support}}
  - name: three wrong keys
    digits: ["9", "8", "7"]
    http: [{{status: 404}}]
    expect:
      trail: [hours, lookup, menu, goodbye]
"#
    ));
    for o in &outcomes {
        assert!(o.passed(), "{o}");
    }
}

#[test]
fn after_hours_and_caller_hangup() {
    let outcomes = run(&format!(
        r#"{HEAD}  - name: sunday
    at: "2026-11-22T10:00:00+08:00"
    expect:
      trail: [hours, closed, voicemail, goodbye]
      end: {{voicemail: sales}}
  - name: hangs up in the menu
    http: [{{status: 404}}]
    hangup_at: menu
    expect:
      end: {{caller_hangup: menu}}
"#
    ));
    for o in &outcomes {
        assert!(o.passed(), "{o}");
    }
}

#[test]
fn failures_are_readable() {
    let outcomes = run(&format!(
        r#"{HEAD}  - name: wrong branch
    digits: ["2"]
    http: [{{status: 404}}]
    expect:
      trail: [hours, lookup, menu, sales_queue]
      end: {{queue: sales}}
      vars: {{level: vip}}
  - name: missing http answer
    digits: ["1"]
    expect:
      end: {{queue: sales}}
  - name: unused script
    digits: ["1", "2"]
    http: [{{status: 404}}]
    expect:
      end: {{queue: sales}}
"#
    ));
    let text = outcomes[0].to_string();
    assert!(text.starts_with("FAIL t.yaml:6: wrong branch"), "{text}");
    assert!(
        text.contains("    menu (2)\n       - sales_queue\n       + support_queue"),
        "{text}"
    );
    assert!(
        text.contains("end: expected {queue: sales}, got {queue: support}"),
        "{text}"
    );
    assert!(
        text.contains("vars.level: expected \"vip\", not set"),
        "{text}"
    );
    let text = outcomes[1].to_string();
    assert!(
        text.contains("node lookup makes an HTTP request and `http` has no answer left"),
        "{text}"
    );
    assert!(
        text.contains("trail taken: hours (open) → lookup"),
        "{text}"
    );
    let text = outcomes[2].to_string();
    assert!(
        text.contains("script left unused: digits [\"2\"]"),
        "{text}"
    );
}

#[test]
fn unknown_flow_fails_every_test() {
    let file = parse(
        "t.yaml",
        "flow: nope\ntests:\n  - name: a\n    expect: {end: {hangup: normal}}\n",
    )
    .unwrap();
    let outcomes = file.run(&flows());
    assert_eq!(outcomes[0].failures, ["no flow named \"nope\" is loaded"]);
}

#[test]
fn run_dir_summarises_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        format!("{HEAD}  - name: silence\n    http: [{{status: 404}}]\n    expect: {{end: {{hangup: normal}}}}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yaml"), "flow: main\ntests: [\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a test").unwrap();
    let summary = run_dir(dir.path(), &flows()).unwrap();
    assert_eq!(summary.files.len(), 2);
    assert_eq!((summary.passed(), summary.failed()), (1, 1));
    assert!(!summary.ok());
    let text = summary.to_string();
    assert!(text.ends_with("1 passed, 1 failed"), "{text}");
    assert!(text.contains("b.yaml:"), "{text}");
}

/// Corpus: every test file in `ivr-flows/tests/` passes against the shipped flows.
#[test]
fn shipped_flow_tests_pass() {
    use crate::ivr::validate::{load_dir, Context};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let prompts = std::fs::read_dir(root.join("prompts"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    let ctx = Context {
        prompts,
        queues: ["sales", "support"].map(String::from).into(),
        flows: Default::default(),
        extensions: (1001..=1020).map(|n| n.to_string()).collect(),
    };
    let (loaded, errors) = load_dir(&root.join("ivr-flows"), &ctx);
    assert!(errors.is_empty(), "{errors:#?}");
    let flows = Flows(
        loaded
            .into_iter()
            .map(|f| (f.name.clone(), Arc::new(f)))
            .collect(),
    );
    let summary = run_dir(&root.join("ivr-flows/tests"), &flows).unwrap();
    assert!(summary.ok(), "{summary}");
    assert!(summary.passed() >= 15, "{summary}");
}
