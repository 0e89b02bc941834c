//! A validated flow: what the interpreter runs. Built only by the validator; every reference
//! (exit targets, prompts, queues, sub-flows) has been checked, and node references are
//! indexes ([`NodeId`]) into [`Flow::nodes`].
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Index of a node in [`Flow::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A flow as published: its name (the file stem, e.g. `main`), a content hash that names this
/// version, and its nodes. Shared (`Arc`) by every call running it: a publish swaps in a new
/// `Arc<Flow>` for new calls while calls in progress keep theirs.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub name: String,
    /// Hex SHA-256 of the YAML text (first 16 hex digits are enough to show).
    pub version: String,
    /// Where a call enters the flow.
    pub start: NodeId,
    pub nodes: Vec<Node>,
    /// Named calendars the `hours` nodes and `in_hours(...)` conditions use.
    pub calendars: BTreeMap<String, Arc<Calendar>>,
    /// Where the flow came from, for messages: file path and the node's line.
    pub file: String,
}

impl Flow {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| NodeId(i as u32))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's id as written in YAML (the key under `nodes:`); shown in the IVR trail.
    pub name: String,
    /// 1-based line of the node in its file.
    pub line: usize,
    pub kind: NodeKind,
}

/// A prompt reference: a name in the prompt library (file stem), checked at validation.
pub type PromptName = String;

/// A template over call variables (minijinja syntax, e.g. `"{{ caller }}"`), kept as source;
/// compiled once when the flow is validated (syntax errors are validation errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(pub String);

/// A boolean expression over call variables (minijinja expression syntax, e.g.
/// `caller.startswith('138') and vars.level == 'vip'`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr(pub String);

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// Play prompts in order. `barge_in`: a key stops playback (and is kept for the next
    /// node that collects digits). Exit `next`.
    Play {
        prompts: Vec<PromptName>,
        barge_in: bool,
        next: NodeId,
    },
    /// A key menu. The prompt plays (barge-in always on); a key with a choice takes its exit; no
    /// key within `timeout` retries with `no_input_prompt`, a key without a choice retries with
    /// `invalid_prompt`; after `retries` retries the `no_input` or `invalid` exit.
    Menu {
        prompts: Vec<PromptName>,
        choices: Vec<(char, NodeId)>,
        timeout: Duration,
        retries: u32,
        no_input_prompts: Vec<PromptName>,
        invalid_prompts: Vec<PromptName>,
        no_input: NodeId,
        invalid: NodeId,
    },
    /// Collect digits into `variable`. Ends on `end_key` (not stored), on `max_digits`, or on
    /// the inter-digit timeout once at least `min_digits` were given. `pattern` (a regex over
    /// the digits, anchored) must match. Retries like a menu. `sensitive`: the CDR masks it.
    Collect {
        prompts: Vec<PromptName>,
        variable: String,
        min_digits: u32,
        max_digits: u32,
        end_key: Option<char>,
        first_digit_timeout: Duration,
        inter_digit_timeout: Duration,
        pattern: Option<String>,
        retries: u32,
        no_input_prompts: Vec<PromptName>,
        invalid_prompts: Vec<PromptName>,
        sensitive: bool,
        ok: NodeId,
        no_input: NodeId,
        invalid: NodeId,
    },
    /// Branch on a calendar at the call's local time.
    Hours {
        calendar: String,
        open: NodeId,
        closed: NodeId,
    },
    /// The first case whose condition holds, else `default`.
    Switch {
        cases: Vec<(Expr, NodeId)>,
        default: NodeId,
    },
    /// Set variables from templates, in order.
    Set {
        assignments: Vec<(String, Template)>,
        next: NodeId,
    },
    /// Call an external URL; JSON response fields (JSON pointers, e.g. `/customer/level`) into
    /// variables. A non-2xx status, a timeout or a body that is not JSON takes `error`.
    Http {
        method: HttpMethod,
        url: Template,
        headers: Vec<(String, Template)>,
        body: Option<Template>,
        timeout: Duration,
        extract: Vec<(String, String)>,
        ok: NodeId,
        error: NodeId,
    },
    /// Queue the caller to a skill group (the ACD picks the agent).
    Queue {
        queue: String,
        /// Higher is served first (VIP); evaluated when the caller is queued.
        priority: Option<Expr>,
        max_wait: Duration,
        /// Announce position and estimated wait this often (`None`: never).
        announce_every: Option<Duration>,
        music: Option<PromptName>,
        exit_key: Option<char>,
        /// The agent answered and the call later ended: where the flow goes (usually a survey).
        /// `None`: the call ends with the agent leg.
        after_agent: Option<NodeId>,
        timeout: NodeId,
        exit: NodeId,
        no_agents: NodeId,
        full: NodeId,
        /// Call memory's fallback: the caller's number is bound to an agent who is not
        /// available and the ACD is set to refuse rather than queue (`when_agent_unavailable:
        /// fallback`). `None`: the caller takes `no_agents`.
        agent_unavailable: Option<NodeId>,
    },
    /// Dial an extension (a SIP account), a number through a trunk, or a SIP URI.
    Dial {
        target: DialTarget,
        ring_timeout: Duration,
        /// The dialled party answered and then the call ended (the caller is gone too, or the
        /// flow continues if the callee hung up first).
        answered: NodeId,
        no_answer: NodeId,
        busy: NodeId,
        failed: NodeId,
    },
    /// Bridge the caller to a third-party system (a SIP URI), passing variables as SIP headers;
    /// when the third party hangs up the caller returns here and goes on at `returned`, with
    /// the listed response/BYE headers read into variables.
    Bridge {
        uri: Template,
        headers: Vec<(String, Template)>,
        /// (SIP header name, variable)
        result_headers: Vec<(String, String)>,
        ring_timeout: Duration,
        returned: NodeId,
        failed: NodeId,
    },
    /// Record a message (after an optional prompt and beep), up to `max_length`; `#` or silence
    /// ends it. The recording is linked to the call record.
    Voicemail {
        prompts: Vec<PromptName>,
        beep: bool,
        max_length: Duration,
        /// Voicemail box (e.g. a skill group or an account); recorded in the CDR.
        mailbox: String,
        done: NodeId,
    },
    /// A satisfaction survey: key → score; an optional second question.
    Survey {
        prompts: Vec<PromptName>,
        scores: Vec<(char, u8)>,
        timeout: Duration,
        second: Option<SurveyQuestion>,
        thanks: Vec<PromptName>,
        done: NodeId,
    },
    /// Continue in another flow (no return).
    Goto { flow: String, node: Option<String> },
    /// Run another flow; when it reaches a `return` node, continue at `next`.
    Subflow { flow: String, next: NodeId },
    /// End of a sub-flow: back to the caller flow's `next`. In a top-level flow: hang up.
    Return,
    /// End the call with a SIP cause (default 16 normal clearing → BYE).
    Hangup { cause: HangupCause },
}

#[derive(Clone, Debug, PartialEq)]
pub struct SurveyQuestion {
    pub prompts: Vec<PromptName>,
    pub scores: Vec<(char, u8)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DialTarget {
    /// A SIP account of this server (its registered phones ring).
    Extension(Template),
    /// A number through a trunk (`None`: the default trunk).
    Number {
        number: Template,
        trunk: Option<String>,
    },
    Uri(Template),
}

/// Why the flow ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangupCause {
    /// BYE after answer (or 480 before).
    Normal,
    /// 486 Busy Here before answer.
    Busy,
    /// 403 Forbidden before answer.
    Rejected,
    /// 503 Service Unavailable before answer.
    Unavailable,
}

/// Service hours (DOMAIN.md): weekly regular hours, holidays and special working days, in a
/// time zone. Precedence: special working day > holiday > regular hours.
#[derive(Clone, Debug, PartialEq)]
pub struct Calendar {
    pub name: String,
    /// IANA zone name, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Per weekday (0 = Monday … 6 = Sunday): open intervals in minutes since local midnight,
    /// `[start, end)`, sorted, non-overlapping.
    pub weekly: [Vec<(u16, u16)>; 7],
    /// Closed all day (or in the given intervals' complement: holidays are whole days).
    pub holidays: Vec<DateRange>,
    /// Working days that override holidays and the weekly pattern, with their own hours.
    pub special_days: Vec<(DateRange, Vec<(u16, u16)>)>,
}

/// Inclusive range of local dates (year, month, day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub from: (i16, i8, i8),
    pub to: (i16, i8, i8),
}
