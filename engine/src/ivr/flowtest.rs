//! Flow tests: YAML files next to the flows (`ivr-flows/tests/*.yaml`) that script a caller —
//! number, time of day, keys, HTTP answers, queue and dial outcomes — and say which nodes the
//! call passes and how it ends. The format is documented in `ivr-flows/README.md` ("Flow tests").
//!
//! The runner drives the real [`Interpreter`] on virtual time, answering its actions from the
//! script: every `Play` finishes at once (unless the caller barges in with a key), keys are
//! pressed when the call sits at a node that takes input (`menu`, `collect`, `survey`), timers
//! fire only when nothing else is pending (so a test that gives no key walks the `no_input`
//! path in microseconds), and `http`, `queue` and `legs` answers are used in order. A call that
//! is queued with no scripted queue outcome left ends the run: the call waits in that queue.
use super::interp::{
    Action, CallInfo, End, Event, FlowSource, Interpreter, LegOutcome, QueueOutcome, TrailStep,
};
use super::model::{Flow, HangupCause, NodeKind};
use crate::yamlpos as locate;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The call's wall-clock time when a test gives no `at`: Monday 5 January 2026, 10:00 in UTC+8.
pub const DEFAULT_AT: &str = "2026-01-05T10:00:00+08:00";

/// A run that has not ended after this many events is reported as a loop.
const MAX_EVENTS: usize = 10_000;

/// A test file that can not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// `file:line:column: field: message`, `field` a key path such as `tests[2].digits[0]`.
    #[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

// ---------------------------------------------------------------------------------------------
// The file format as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    flow: String,
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    called: Option<String>,
    #[serde(default)]
    at: Option<String>,
    tests: Vec<RawTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: String,
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    called: Option<String>,
    #[serde(default)]
    at: Option<String>,
    /// Call variables set before the flow starts.
    #[serde(default)]
    set: BTreeMap<String, Scalar>,
    #[serde(default)]
    digits: Vec<Scalar>,
    #[serde(default)]
    http: Vec<RawHttp>,
    #[serde(default)]
    queue: Vec<RawQueue>,
    #[serde(default)]
    legs: Vec<RawLeg>,
    /// The caller hangs up when the call reaches this node.
    #[serde(default)]
    hangup_at: Option<String>,
    expect: RawExpect,
}

/// A YAML scalar read as text, so `digits: [1, 2]` and `vars: {count: 3}` work unquoted.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    body: Option<String>,
    /// The request failed without an answer (timeout, connection refused): the reason.
    #[serde(default)]
    fail: Option<String>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawQueue {
    AgentDone,
    Timeout,
    #[serde(alias = "exit")]
    Exited,
    NoAgents,
    Full,
    /// Call memory's fallback: the caller's own agent is not available.
    AgentUnavailable,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawLegOutcome {
    #[serde(alias = "answered_then_hangup", alias = "returned")]
    Answered,
    NoAnswer,
    Busy,
    Failed,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLeg {
    Outcome(RawLegOutcome),
    WithHeaders(RawLegHeaders),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLegHeaders {
    outcome: RawLegOutcome,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    trail: Option<Vec<String>>,
    #[serde(default)]
    end: Option<RawEnd>,
    #[serde(default)]
    vars: BTreeMap<String, Scalar>,
}

/// `{queue: sales}`: one key. A struct rather than an enum, since serde_yaml reads enums only
/// from `!tag` syntax.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    voicemail: Option<String>,
    #[serde(default)]
    hangup: Option<Cause>,
    #[serde(default)]
    caller_hangup: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl RawEnd {
    fn into_end(self) -> Option<ExpectedEnd> {
        let ends = [
            self.queue.map(ExpectedEnd::Queue),
            self.voicemail.map(ExpectedEnd::Voicemail),
            self.hangup.map(ExpectedEnd::Hangup),
            self.caller_hangup.map(ExpectedEnd::CallerHangup),
            self.error.map(ExpectedEnd::Error),
        ];
        let mut ends = ends.into_iter().flatten();
        match (ends.next(), ends.next()) {
            (Some(end), None) => Some(end),
            _ => None,
        }
    }
}

/// How a call ended (or where it waits), as a test writes it under `expect.end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedEnd {
    Queue(String),
    Voicemail(String),
    Hangup(Cause),
    CallerHangup(String),
    Error(String),
}

/// [`HangupCause`] as written in a test.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Normal,
    Busy,
    Rejected,
    Unavailable,
}

impl From<HangupCause> for Cause {
    fn from(c: HangupCause) -> Cause {
        match c {
            HangupCause::Normal => Cause::Normal,
            HangupCause::Busy => Cause::Busy,
            HangupCause::Rejected => Cause::Rejected,
            HangupCause::Unavailable => Cause::Unavailable,
        }
    }
}

impl fmt::Display for ExpectedEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedEnd::Queue(q) => write!(f, "{{queue: {q}}}"),
            ExpectedEnd::Voicemail(b) => write!(f, "{{voicemail: {b}}}"),
            ExpectedEnd::Hangup(c) => write!(f, "{{hangup: {}}}", format!("{c:?}").to_lowercase()),
            ExpectedEnd::CallerHangup(n) => write!(f, "{{caller_hangup: {n}}}"),
            ExpectedEnd::Error(e) => write!(f, "{{error: {e:?}}}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checked file.

/// A parsed test file.
#[derive(Clone, Debug)]
pub struct TestFile {
    pub file: String,
    /// The flow under test (its name, e.g. `main`).
    pub flow: String,
    pub tests: Vec<FlowTest>,
}

/// One scripted call.
#[derive(Clone, Debug)]
pub struct FlowTest {
    pub name: String,
    /// 1-based line of the test in its file.
    pub line: usize,
    pub caller: String,
    pub called: String,
    /// The call's wall-clock start, Unix seconds.
    pub at_unix: i64,
    pub set: BTreeMap<String, String>,
    /// One entry per input opportunity; `""` lets that opportunity time out.
    pub digits: Vec<String>,
    pub http: Vec<HttpAnswer>,
    pub queue: Vec<QueueOutcome>,
    pub legs: Vec<(LegOutcome, Vec<(String, String)>)>,
    pub hangup_at: Option<String>,
    pub expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpAnswer {
    Response { status: u16, body: String },
    Failed { reason: String },
}

#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub trail: Option<TrailPattern>,
    pub end: Option<ExpectedEnd>,
    pub vars: BTreeMap<String, String>,
}

/// Node names in order; `prefix`: the list ended with `...`, later nodes are not checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailPattern {
    pub nodes: Vec<String>,
    pub prefix: bool,
}

/// Parses and checks a test file; every problem names its line.
pub fn parse(file: &str, text: &str) -> Result<TestFile, TestFileError> {
    let ctx = Ctx {
        file,
        index: locate::Index::build(text),
    };
    let raw: RawFile = serde_yaml::from_str(text).map_err(|e| ctx.deserialize_error(&e))?;
    let default_at = raw.at.as_deref().unwrap_or(DEFAULT_AT);
    let default_at = parse_rfc3339(default_at).map_err(|m| ctx.error("at", m))?;
    if raw.tests.is_empty() {
        return Err(ctx.error("tests", "no tests"));
    }
    let mut tests: Vec<FlowTest> = Vec::with_capacity(raw.tests.len());
    for (i, t) in raw.tests.into_iter().enumerate() {
        let path = format!("tests[{i}]");
        let field = |f: &str| format!("{path}.{f}");
        if let Some(first) = tests.iter().find(|x| x.name == t.name) {
            return Err(ctx.error(
                &field("name"),
                format!(
                    "the test name {:?} is already used on line {}",
                    t.name, first.line
                ),
            ));
        }
        let at_unix = match &t.at {
            Some(at) => parse_rfc3339(at).map_err(|m| ctx.error(&field("at"), m))?,
            None => default_at,
        };
        let mut digits = Vec::with_capacity(t.digits.len());
        for (j, d) in t.digits.iter().enumerate() {
            let d = d.text();
            if let Some(bad) = d.chars().find(|c| !is_dtmf(*c)) {
                return Err(ctx.error(
                    &format!("{path}.digits[{j}]"),
                    format!("{bad:?} is not a key: use 0-9, *, # or A-D (\"\" for no key)"),
                ));
            }
            digits.push(d);
        }
        let mut http = Vec::with_capacity(t.http.len());
        for (j, h) in t.http.into_iter().enumerate() {
            http.push(match (h.status, h.fail) {
                (Some(status), None) => HttpAnswer::Response {
                    status,
                    body: h.body.unwrap_or_default(),
                },
                (None, Some(reason)) if h.body.is_none() => HttpAnswer::Failed { reason },
                _ => {
                    return Err(ctx.error(
                        &format!("{path}.http[{j}]"),
                        "give either `status` (and `body`) or `fail`",
                    ))
                }
            });
        }
        let trail = match t.expect.trail {
            Some(mut nodes) => {
                if let Some(j) = nodes.iter().position(|n| n == "...") {
                    if j + 1 != nodes.len() {
                        return Err(ctx.error(
                            &format!("{path}.expect.trail[{j}]"),
                            "`...` may only end the trail",
                        ));
                    }
                    nodes.pop();
                    Some(TrailPattern {
                        nodes,
                        prefix: true,
                    })
                } else {
                    Some(TrailPattern {
                        nodes,
                        prefix: false,
                    })
                }
            }
            None => None,
        };
        let end = match t.expect.end {
            Some(raw) => Some(raw.into_end().ok_or_else(|| {
                ctx.error(
                    &format!("{path}.expect.end"),
                    "give exactly one of `queue`, `voicemail`, `hangup`, `caller_hangup`, `error`",
                )
            })?),
            None => None,
        };
        let expect = Expect {
            trail,
            end,
            vars: t
                .expect
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
        };
        if expect.trail.is_none() && expect.end.is_none() && expect.vars.is_empty() {
            return Err(ctx.error(
                &field("expect"),
                "expect nothing? give at least one of `trail`, `end` or `vars`",
            ));
        }
        tests.push(FlowTest {
            name: t.name,
            line: ctx.index.nearest(&path).0,
            caller: t.caller.or_else(|| raw.caller.clone()).unwrap_or_default(),
            called: t.called.or_else(|| raw.called.clone()).unwrap_or_default(),
            at_unix,
            set: t.set.iter().map(|(k, v)| (k.clone(), v.text())).collect(),
            digits,
            http,
            queue: t
                .queue
                .into_iter()
                .map(|q| match q {
                    RawQueue::AgentDone => QueueOutcome::AgentDone,
                    RawQueue::Timeout => QueueOutcome::Timeout,
                    RawQueue::Exited => QueueOutcome::Exited,
                    RawQueue::NoAgents => QueueOutcome::NoAgents,
                    RawQueue::Full => QueueOutcome::Full,
                    RawQueue::AgentUnavailable => QueueOutcome::AgentUnavailable,
                })
                .collect(),
            legs: t
                .legs
                .into_iter()
                .map(|l| {
                    let (outcome, headers) = match l {
                        RawLeg::Outcome(o) => (o, Vec::new()),
                        RawLeg::WithHeaders(h) => (h.outcome, h.headers.into_iter().collect()),
                    };
                    let outcome = match outcome {
                        RawLegOutcome::Answered => LegOutcome::AnsweredThenHungUp,
                        RawLegOutcome::NoAnswer => LegOutcome::NoAnswer,
                        RawLegOutcome::Busy => LegOutcome::Busy,
                        RawLegOutcome::Failed => LegOutcome::Failed,
                    };
                    (outcome, headers)
                })
                .collect(),
            hangup_at: t.hangup_at,
            expect,
        });
    }
    Ok(TestFile {
        file: file.to_owned(),
        flow: raw.flow,
        tests,
    })
}

/// The flow a test file names under `flow:`, read leniently (the rest of the file may not
/// parse): lets a caller pick the files that target one flow and still report the broken ones.
pub fn target_flow(text: &str) -> Option<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    doc.get("flow")?.as_str().map(str::to_owned)
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

// ---------------------------------------------------------------------------------------------
// Running.

/// How one test went.
#[derive(Clone, Debug)]
pub struct TestOutcome {
    pub file: String,
    pub line: usize,
    pub name: String,
    /// Empty when the test passed; otherwise each mismatch, readable as it is.
    pub failures: Vec<String>,
    /// What the call did.
    pub trail: Vec<TrailStep>,
    pub end: Option<ExpectedEnd>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "ok  " } else { "FAIL" };
        write!(f, "{verdict} {}:{}: {}", self.file, self.line, self.name)?;
        for failure in &self.failures {
            for line in failure.lines() {
                write!(f, "\n     {line}")?;
            }
        }
        Ok(())
    }
}

/// Every test file of a folder, run.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: Vec<(PathBuf, Result<Vec<TestOutcome>, TestFileError>)>,
}

impl Summary {
    pub fn passed(&self) -> usize {
        self.outcomes().filter(|o| o.passed()).count()
    }

    /// Failed tests, plus files that could not be run.
    pub fn failed(&self) -> usize {
        self.outcomes().filter(|o| !o.passed()).count()
            + self.files.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// Every test passed (and there was at least one).
    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.passed() > 0
    }

    pub fn outcomes(&self) -> impl Iterator<Item = &TestOutcome> {
        self.files
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
    }
}

/// One line per test (failures with their details), then `N passed, N failed`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (_, result) in &self.files {
            match result {
                Ok(outcomes) => {
                    for o in outcomes {
                        writeln!(f, "{o}")?;
                    }
                }
                Err(e) => writeln!(f, "FAIL {e}")?,
            }
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs every `*.yaml` file in `dir` (sorted by name) against `flows`.
pub fn run_dir(dir: &Path, flows: &dyn FlowSource) -> std::io::Result<Summary> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
        })
        .collect();
    paths.sort();
    let files = paths
        .into_iter()
        .map(|p| {
            let result = run_file(&p, flows);
            (p, result)
        })
        .collect();
    Ok(Summary { files })
}

/// Reads, checks and runs one test file.
pub fn run_file(path: &Path, flows: &dyn FlowSource) -> Result<Vec<TestOutcome>, TestFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        file: file.clone(),
        source,
    })?;
    Ok(parse(&file, &text)?.run(flows))
}

impl TestFile {
    pub fn run(&self, flows: &dyn FlowSource) -> Vec<TestOutcome> {
        self.tests.iter().map(|t| self.run_one(t, flows)).collect()
    }

    fn run_one(&self, test: &FlowTest, flows: &dyn FlowSource) -> TestOutcome {
        let mut outcome = TestOutcome {
            file: self.file.clone(),
            line: test.line,
            name: test.name.clone(),
            failures: Vec::new(),
            trail: Vec::new(),
            end: None,
        };
        let Some(flow) = flows.flow(&self.flow) else {
            outcome
                .failures
                .push(format!("no flow named {:?} is loaded", self.flow));
            return outcome;
        };
        let run = drive(flow, test, flows);
        outcome.failures = check(&self.flow, test, &run);
        outcome.trail = run.trail;
        outcome.end = run.end;
        outcome
    }
}

/// What a scripted call did.
struct Run {
    trail: Vec<TrailStep>,
    vars: BTreeMap<String, String>,
    end: Option<ExpectedEnd>,
    /// The script could not go on (an answer is missing, the flow loops…).
    problem: Option<String>,
    unused: Vec<String>,
}

/// The origin of a run's virtual clock. Only differences from it are ever used, so this reads
/// the clock once for a value that no result depends on.
#[allow(clippy::disallowed_methods)]
fn virtual_origin() -> Instant {
    Instant::now()
}

/// What the runner owes the interpreter an answer for.
enum Pending {
    None,
    Http,
    Queue(String),
    Leg,
    Record,
}

fn drive(flow: Arc<Flow>, test: &FlowTest, flows: &dyn FlowSource) -> Run {
    let origin = virtual_origin();
    let mut now = origin;
    let call = CallInfo {
        caller: test.caller.clone(),
        called: test.called.clone(),
        vars: test.set.clone(),
    };
    let top = flow.name.clone();
    let mut interp = Interpreter::new(flow.clone(), call, now, test.at_unix);

    let mut digits: VecDeque<String> = test.digits.iter().cloned().collect();
    let mut http: VecDeque<HttpAnswer> = test.http.iter().cloned().collect();
    let mut queue: VecDeque<QueueOutcome> = test.queue.iter().copied().collect();
    let mut legs: VecDeque<_> = test.legs.iter().cloned().collect();

    let mut keys: VecDeque<char> = VecDeque::new();
    let mut playing: Option<bool> = None;
    let mut timers: Vec<(Instant, u64)> = Vec::new();
    let mut pending = Pending::None;
    let mut voicemail: Option<String> = None;
    let mut queued_in: Option<String> = None;
    // A new chance to press keys: a node entered, a prompt started, a timeout taken.
    let mut input_open = true;
    let mut hung_up = false;
    let mut problem = None;

    let mut actions = interp.handle(Event::Start, now, flows);
    let mut trail_len = 0;
    let mut events = 0;
    loop {
        if interp.trail().len() != trail_len {
            trail_len = interp.trail().len();
            input_open = true;
        }
        for action in actions.drain(..) {
            match action {
                Action::Play { barge_in, .. } => {
                    playing = Some(barge_in);
                    input_open = true;
                }
                Action::Stop => playing = None,
                Action::StartTimer { token, after } => timers.push((now + after, token)),
                Action::Http(_) => pending = Pending::Http,
                Action::Enqueue { queue, .. } => pending = Pending::Queue(queue),
                Action::Dial { .. } => pending = Pending::Leg,
                Action::Record { mailbox, .. } => {
                    voicemail = Some(mailbox);
                    pending = Pending::Record;
                }
                Action::Hangup { .. } | Action::Input { .. } | Action::Score { .. } => {}
            }
        }
        if interp.end().is_some() {
            break;
        }
        events += 1;
        if events > MAX_EVENTS {
            problem = Some(format!(
                "the call did not end after {MAX_EVENTS} events: a loop the script keeps feeding?"
            ));
            break;
        }
        let here = interp.trail().last().cloned();
        let at_input = here
            .as_ref()
            .and_then(|step| node_kind(&flow, flows, &step.flow, &step.node))
            .is_some_and(|k| {
                matches!(
                    k,
                    NodeKind::Menu { .. } | NodeKind::Collect { .. } | NodeKind::Survey { .. }
                )
            });

        if let (Some(target), Some(step), false) = (&test.hangup_at, &here, hung_up) {
            if step_name(&top, step) == *target {
                hung_up = true;
                actions = interp.handle(Event::CallerHangup, now, flows);
                continue;
            }
        }
        let event = if let Some(key) = keys.pop_front() {
            Event::Digit(key)
        } else {
            match std::mem::replace(&mut pending, Pending::None) {
                Pending::Http => match http.pop_front() {
                    Some(HttpAnswer::Response { status, body }) => {
                        Event::HttpResponse { status, body }
                    }
                    Some(HttpAnswer::Failed { reason }) => Event::HttpFailed { reason },
                    None => {
                        problem = Some(format!(
                            "{} makes an HTTP request and `http` has no answer left",
                            here_name(&top, &here)
                        ));
                        break;
                    }
                },
                Pending::Queue(name) => match queue.pop_front() {
                    Some(o) => {
                        queued_in = None;
                        Event::Queue(o)
                    }
                    None => {
                        // The caller waits in the queue: where the script ends.
                        queued_in = Some(name);
                        break;
                    }
                },
                Pending::Leg => match legs.pop_front() {
                    Some((outcome, headers)) => Event::Leg { outcome, headers },
                    None => {
                        problem = Some(format!(
                            "{} dials and `legs` has no outcome left",
                            here_name(&top, &here)
                        ));
                        break;
                    }
                },
                Pending::Record => Event::Recorded {
                    path: format!("{}.wav", voicemail.as_deref().unwrap_or("voicemail")),
                    duration: Duration::from_secs(10),
                },
                Pending::None => {
                    let mut press = None;
                    if at_input && input_open && playing != Some(false) {
                        if let Some(entry) = digits.pop_front() {
                            input_open = false;
                            keys.extend(entry.chars());
                            press = keys.pop_front();
                        }
                    }
                    if let Some(key) = press {
                        Event::Digit(key)
                    } else if playing.take().is_some() {
                        Event::PlayDone
                    } else if let Some(i) = earliest(&timers) {
                        let (at, token) = timers.swap_remove(i);
                        now = now.max(at);
                        let before = interp.trail().len();
                        actions = interp.handle(Event::Timer(token), now, flows);
                        // A stale timer changes nothing and opens no new chance for keys.
                        if !actions.is_empty() || interp.trail().len() != before {
                            input_open = true;
                        }
                        continue;
                    } else {
                        problem = Some(format!(
                            "{} waits and the script has nothing left to give it{}",
                            here_name(&top, &here),
                            if at_input { " (no keys left)" } else { "" }
                        ));
                        break;
                    }
                }
            }
        };
        actions = interp.handle(event, now, flows);
    }

    let end = match (interp.end(), queued_in) {
        (Some(End::CallerHangup { node }), _) => Some(ExpectedEnd::CallerHangup(node.clone())),
        (Some(End::Hangup(cause)), _) => Some(match voicemail {
            Some(mailbox) => ExpectedEnd::Voicemail(mailbox),
            None => ExpectedEnd::Hangup((*cause).into()),
        }),
        (Some(End::Error(e)), _) => Some(ExpectedEnd::Error(e.clone())),
        (None, Some(q)) => Some(ExpectedEnd::Queue(q)),
        (None, None) => None,
    };
    let mut unused = Vec::new();
    if !digits.is_empty() || !keys.is_empty() {
        let mut left: Vec<String> = Vec::new();
        if !keys.is_empty() {
            left.push(keys.iter().collect());
        }
        left.extend(digits.iter().cloned());
        unused.push(format!("digits {left:?}"));
    }
    if !http.is_empty() {
        unused.push(format!("{} http answer(s)", http.len()));
    }
    if !queue.is_empty() {
        unused.push(format!("queue outcomes {queue:?}"));
    }
    if !legs.is_empty() {
        unused.push(format!("{} leg outcome(s)", legs.len()));
    }
    if test.hangup_at.is_some() && !hung_up {
        unused.push("hangup_at (the call never reached that node)".to_owned());
    }
    Run {
        trail: interp.trail().to_vec(),
        vars: interp.vars().clone(),
        end,
        problem,
        unused,
    }
}

fn earliest(timers: &[(Instant, u64)]) -> Option<usize> {
    timers
        .iter()
        .enumerate()
        .min_by_key(|(_, (at, token))| (*at, *token))
        .map(|(i, _)| i)
}

fn node_kind(top: &Flow, flows: &dyn FlowSource, flow: &str, node: &str) -> Option<NodeKind> {
    if flow == top.name {
        return top.find(node).map(|id| top.node(id).kind.clone());
    }
    let other = flows.flow(flow)?;
    other.find(node).map(|id| other.node(id).kind.clone())
}

/// A trail step as tests write it: the node's name, `flow:node` for another flow's node.
fn step_name(top: &str, step: &TrailStep) -> String {
    if step.flow == top {
        step.node.clone()
    } else {
        format!("{}:{}", step.flow, step.node)
    }
}

fn here_name(top: &str, here: &Option<TrailStep>) -> String {
    match here {
        Some(step) => format!("node {}", step_name(top, step)),
        None => "the flow".to_owned(),
    }
}

fn check(top: &str, test: &FlowTest, run: &Run) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(problem) = &run.problem {
        failures.push(problem.clone());
    }
    let actual: Vec<String> = run.trail.iter().map(|s| step_name(top, s)).collect();
    let mut trail_shown = false;
    if let Some(pattern) = &test.expect.trail {
        let compared = if pattern.prefix {
            &actual[..actual.len().min(pattern.nodes.len())]
        } else {
            &actual[..]
        };
        if compared != pattern.nodes.as_slice() {
            let what = if pattern.prefix {
                "trail starts differently"
            } else {
                "trail differs"
            };
            failures.push(format!(
                "{what} (- expected, + actual):\n{}",
                trail_diff(&pattern.nodes, &run.trail, top, compared.len())
            ));
            trail_shown = true;
        }
    }
    if let Some(expected) = &test.expect.end {
        match &run.end {
            Some(end) if end == expected => {}
            Some(end) => failures.push(format!("end: expected {expected}, got {end}")),
            None => failures.push(format!("end: expected {expected}, the call had not ended")),
        }
    }
    for (name, expected) in &test.expect.vars {
        match run.vars.get(name) {
            Some(value) if value == expected => {}
            Some(value) => {
                failures.push(format!("vars.{name}: expected {expected:?}, got {value:?}"))
            }
            None => failures.push(format!("vars.{name}: expected {expected:?}, not set")),
        }
    }
    if !failures.is_empty() || !run.unused.is_empty() {
        if !run.unused.is_empty() {
            failures.push(format!("script left unused: {}", run.unused.join(", ")));
        }
        if !trail_shown {
            // Show the path taken whenever something failed; it is what explains it.
            failures.push(format!("trail taken: {}", trail_line(&run.trail, top)));
        }
    }
    failures
}

fn trail_line(trail: &[TrailStep], top: &str) -> String {
    trail
        .iter()
        .map(|s| match &s.exit {
            Some(exit) => format!("{} ({exit})", step_name(top, s)),
            None => step_name(top, s),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// A line diff of node names (longest common subsequence), actual steps shown with their exit.
fn trail_diff(expected: &[String], actual: &[TrailStep], top: &str, upto: usize) -> String {
    let names: Vec<String> = actual.iter().map(|s| step_name(top, s)).collect();
    let a = expected;
    let b = &names[..upto];
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let shown = |j: usize| match &actual[j].exit {
        Some(exit) => format!("{} ({exit})", b[j]),
        None => b[j].clone(),
    };
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!("    {}", shown(j)));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("  - {}", a[i]));
            i += 1;
        } else {
            out.push(format!("  + {}", shown(j)));
            j += 1;
        }
    }
    if upto < actual.len() {
        out.push(format!("    … {} more", actual.len() - upto));
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Errors with positions, as the configuration reports them.

struct Ctx<'a> {
    file: &'a str,
    index: locate::Index,
}

impl Ctx<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> TestFileError {
        let (line, column) = self.index.nearest(field);
        TestFileError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A serde_yaml error, placed on the key it blames.
    fn deserialize_error(&self, err: &serde_yaml::Error) -> TestFileError {
        let placed = locate::place_serde_error(&self.index, err);
        TestFileError::Invalid {
            file: self.file.to_owned(),
            line: placed.line,
            column: placed.column,
            field: placed.field,
            message: placed.message,
        }
    }
}

/// `2026-11-23T10:00:00+08:00` (or `Z`, optional fraction, `T` or a space) → Unix seconds.
fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad =
        || format!("expected an RFC 3339 time such as \"2026-11-23T10:00:00+08:00\", got {s:?}");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap(year) => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
