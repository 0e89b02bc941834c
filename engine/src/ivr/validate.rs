//! The flow validator: YAML text → [`Flow`], or every error at once.
//!
//! Two phases, like the configuration. Deserializing into [`syntax::FlowFile`] catches wrong
//! types, unknown keys and missing options; serde stops at the first of these, so that phase
//! reports one error. Then every semantic rule is checked and *all* failures are reported
//! together: exit targets, reachability, prompts, queues, flows, calendars, templates,
//! expressions, regular expressions, keys, and loops that would spin without the caller.
//!
//! Positions come from [`crate::yamlpos`], which records where each key path starts
//! (`nodes.menu.choices.1`); an error names the file, line, column, node and field:
//! ```text
//! ivr-flows/main.yaml:14:17: [menu] choices.2: no node named `suport`
//! ```
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::model::{
    Calendar, DateRange, DialTarget, Expr, Flow, HangupCause, HttpMethod, Node, NodeId, NodeKind,
    SurveyQuestion, Template,
};
use super::syntax::{
    CalendarSpec, FlowFile, HangupCauseSpec, HttpMethodSpec, NodeSpec, OrderedMap, Prompts,
};
use crate::yamlpos as locate;

/// What a flow may refer to outside itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Prompt names in the prompt library (file stems).
    pub prompts: BTreeSet<String>,
    /// Skill groups.
    pub queues: BTreeSet<String>,
    /// Other flows (file stems of the flows folder).
    pub flows: BTreeSet<String>,
    /// SIP accounts a `dial` may ring by extension.
    pub extensions: BTreeSet<String>,
}

/// One thing wrong with a flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The node the error is in, if any.
    pub node: Option<String>,
    /// The option, relative to the node (`choices.1`), or a top-level path (`calendars.office.time_zone`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(node) = &self.node {
            write!(f, "[{node}] ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FlowError {}

/// Validates one flow. `file` names the source in errors; the flow's name is its stem.
pub fn validate(file: &str, text: &str, ctx: &Context) -> Result<Flow, Vec<FlowError>> {
    let index = locate::Index::build(text);
    let spec: FlowFile = match serde_yaml::from_str(text) {
        Ok(spec) => spec,
        Err(err) => return Err(vec![deserialize_error(file, text, &index, &err)]),
    };
    let name = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut checker = Checker {
        file,
        flow: &name,
        index,
        ctx,
        errors: Vec::new(),
        names: spec.nodes.0.iter().map(|(n, _)| n.clone()).collect(),
        calendars: spec.calendars.0.iter().map(|(n, _)| n.clone()).collect(),
        edges: vec![Vec::new(); spec.nodes.len()],
        current: 0,
    };
    let flow = checker.flow(&spec, name.clone(), text);
    let mut errors = checker.errors;
    if errors.is_empty() {
        return Ok(flow);
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(errors)
}

/// Reads and validates one file.
pub fn load_file(path: &Path, ctx: &Context) -> Result<Flow, Vec<FlowError>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => validate(&file, &text, ctx),
        Err(e) => Err(vec![file_error(&file, format!("cannot read: {e}"))]),
    }
}

/// Validates every `*.yaml` directly in `dir` (sub-folders such as `tests/` are not flows).
/// `ctx.flows` is extended with the folder's file stems, so flows may refer to each other; a
/// `goto` naming a node of another flow is checked against that flow.
pub fn load_dir(dir: &Path, ctx: &Context) -> (Vec<Flow>, Vec<FlowError>) {
    let mut errors = Vec::new();
    let mut paths: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
            .collect(),
        Err(e) => {
            let dir = dir.display().to_string();
            return (
                Vec::new(),
                vec![file_error(&dir, format!("cannot read: {e}"))],
            );
        }
    };
    paths.sort();
    let mut ctx = ctx.clone();
    for p in &paths {
        if let Some(stem) = p.file_stem() {
            ctx.flows.insert(stem.to_string_lossy().into_owned());
        }
    }
    let mut flows = Vec::new();
    for path in &paths {
        match load_file(path, &ctx) {
            Ok(flow) => flows.push(flow),
            Err(e) => errors.extend(e),
        }
    }
    // A goto into another flow's node: that flow must have it.
    for flow in &flows {
        for node in &flow.nodes {
            let NodeKind::Goto {
                flow: target,
                node: Some(target_node),
            } = &node.kind
            else {
                continue;
            };
            if let Some(other) = flows.iter().find(|f| f.name == *target) {
                if other.find(target_node).is_none() {
                    errors.push(FlowError {
                        file: flow.file.clone(),
                        line: node.line,
                        column: 1,
                        node: Some(node.name.clone()),
                        field: "node".to_owned(),
                        message: format!("flow `{target}` has no node named `{target_node}`"),
                    });
                }
            }
        }
    }
    (flows, errors)
}

/// The JSON Schema of the flow language, generated from [`syntax::FlowFile`]; shipped as
/// `ivr-flows/flow.schema.json`.
///
/// [`syntax::FlowFile`]: super::syntax::FlowFile
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(FlowFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

fn file_error(file: &str, message: String) -> FlowError {
    FlowError {
        file: file.to_owned(),
        line: 1,
        column: 1,
        node: None,
        field: String::new(),
        message,
    }
}

/// Splits a key path into (node, field relative to the node).
fn split_node(path: &str) -> (Option<String>, String) {
    if let Some(rest) = path.strip_prefix("nodes.") {
        // Node names hold no dots (checked), so the first dot or bracket ends the name.
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let field = rest[end..].trim_start_matches('.').to_owned();
        return (Some(rest[..end].to_owned()), field);
    }
    (None, path.to_owned())
}

/// serde_yaml places errors about the end of the document (a missing `nodes:`) just past the
/// last line when the text does not end with a line break; an editor has no such line, so such
/// positions move to the end of the last line. Lines are counted as YAML counts them (CR, LF
/// and CRLF each end a line).
fn clamp_to_text(text: &str, (line, column): (usize, usize)) -> (usize, usize) {
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let last = breaks + 1;
    if line <= last {
        return (line, column);
    }
    let tail = text.rsplit(['\n', '\r']).next().unwrap_or("");
    (last, tail.chars().count() + 1)
}

/// serde_yaml renders an error as `path: message at line L column C`; this takes it apart and
/// places it on the offending key. Inside a node (an internally tagged enum, which serde buffers)
/// serde_yaml only knows the node: the node's options are then tried one at a time to find the
/// one that fails.
fn deserialize_error(
    file: &str,
    text: &str,
    index: &locate::Index,
    err: &serde_yaml::Error,
) -> FlowError {
    let serde_pos = err.location().map(|l| (l.line(), l.column()));
    let mut shown = err.to_string();
    if let Some((line, column)) = serde_pos {
        shown = shown.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    let (path, message) = locate::split_serde_path(&shown);
    let mut path = path.to_owned();
    let mut nested = false;
    let mut duplicate_node = false;
    if path == "nodes" {
        if let Some(name) = locate::backticked(message, "duplicate field `") {
            // A node name given twice is about `nodes`, not about an option inside a node.
            duplicate_node = index.occurrence(&format!("nodes.{name}"), 1).is_some();
        }
        if !duplicate_node {
            if let Some((node, key)) = failing_node(text) {
                path = format!("nodes.{node}");
                nested = true;
                if let Some(key) = key {
                    path = locate::join(&path, &key);
                }
            }
        }
    }
    let (field, pos) = if let Some(name) = locate::backticked(message, "unknown field `") {
        let field = if path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            locate::join(&path, name)
        };
        let pos = index.occurrence(&field, 0).or_else(|| {
            // Deeper than the option serde_yaml could name (`second.bogus`).
            let suffix = format!(".{name}");
            index
                .entries
                .iter()
                .find(|e| e.path.starts_with(&path) && e.path.ends_with(&suffix))
                .map(|e| (e.line, e.column))
        });
        (field, pos)
    } else if let Some(name) = locate::backticked(message, "duplicate field `") {
        let field = locate::join(&path, name);
        let pos = index.occurrence(&field, 1);
        (field, pos)
    } else if !path.is_empty() {
        let pos = index
            .occurrence(&path, 0)
            .filter(|&(key_line, _)| nested || serde_pos.is_none_or(|(line, _)| key_line <= line));
        (path.clone(), pos)
    } else {
        let field = serde_pos
            .and_then(|(line, column)| index.field_at(line, column))
            .unwrap_or_default()
            .to_owned();
        (field, None)
    };
    let (line, column) = clamp_to_text(text, pos.or(serde_pos).unwrap_or((1, 1)));
    let (node, field) = split_node(&field);
    FlowError {
        file: file.to_owned(),
        line,
        column,
        node,
        field,
        message: message.to_owned(),
    }
}

/// The first node that fails to deserialize (serde reads them in document order), and the option
/// in it that fails: each option is tried alone with the node's `type` (alone, an option can only
/// fail by itself or by the absence of the others).
fn failing_node(text: &str) -> Option<(String, Option<String>)> {
    use serde_yaml::Value;
    let doc: Value = serde_yaml::from_str(text).ok()?;
    let nodes = doc.get("nodes")?.as_mapping()?;
    let (name, node) = nodes
        .iter()
        .find(|(_, v)| serde_yaml::from_value::<NodeSpec>((*v).clone()).is_err())?;
    let name = match name {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).ok()?.trim().to_owned(),
    };
    Some((name, node.as_mapping().and_then(failing_option)))
}

fn failing_option(node: &serde_yaml::Mapping) -> Option<String> {
    use serde_yaml::{Mapping, Value};
    let type_key = Value::String("type".to_owned());
    let mut alone = Mapping::new();
    if let Some(t) = node.get(&type_key) {
        alone.insert(type_key.clone(), t.clone());
    }
    let fails =
        |probe: &Mapping| match serde_yaml::from_value::<NodeSpec>(Value::Mapping(probe.clone())) {
            Ok(_) => false,
            Err(e) => !e.to_string().starts_with("missing field"),
        };
    if fails(&alone) {
        return Some("type".to_owned());
    }
    for (key, value) in node {
        if *key == type_key {
            continue;
        }
        let with = |v: &Value| {
            let mut probe = alone.clone();
            probe.insert(key.clone(), v.clone());
            fails(&probe)
        };
        if with(value) {
            return Some(format!("{}{}", key_text(key), narrow(&with, value, 0)));
        }
    }
    None
}

/// Within a failing option's value, the path to the entry or item that fails alone.
fn narrow(
    fails: &dyn Fn(&serde_yaml::Value) -> bool,
    value: &serde_yaml::Value,
    depth: usize,
) -> String {
    use serde_yaml::{Mapping, Value};
    if depth > 16 {
        return String::new();
    }
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let one = |inner: &Value| {
                    let mut m = Mapping::new();
                    m.insert(k.clone(), inner.clone());
                    fails(&Value::Mapping(m))
                };
                if one(v) {
                    return format!(".{}{}", key_text(k), narrow(&one, v, depth + 1));
                }
            }
            String::new()
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                let one = |inner: &Value| fails(&Value::Sequence(vec![inner.clone()]));
                if one(v) {
                    return format!("[{i}]{}", narrow(&one, v, depth + 1));
                }
            }
            String::new()
        }
        _ => String::new(),
    }
}

fn key_text(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// Keys a caller can press.
const KEYS: &str = "0123456789*#ABCD";
const MAX_INPUT_S: u32 = 600;
const MAX_CALL_S: u32 = 86_400;
const MAX_RETRIES: u32 = 10;
const MAX_DIGITS: u32 = 64;

struct Checker<'a> {
    file: &'a str,
    flow: &'a str,
    index: locate::Index,
    ctx: &'a Context,
    errors: Vec<FlowError>,
    names: Vec<String>,
    calendars: Vec<String>,
    /// Resolved exits per node, for reachability and loop checks.
    edges: Vec<Vec<usize>>,
    /// The node being checked.
    current: usize,
}

impl Checker<'_> {
    /// An error at `nodes.<node>.<field>` (`node` given) or at the top-level path `field`.
    fn error(&mut self, node: Option<&str>, field: &str, message: impl Into<String>) {
        let path = match node {
            Some(n) if field.is_empty() => format!("nodes.{n}"),
            Some(n) => format!("nodes.{n}.{field}"),
            None => field.to_owned(),
        };
        let (line, column) = self.index.nearest(&path);
        self.errors.push(FlowError {
            file: self.file.to_owned(),
            line,
            column,
            node: node.map(str::to_owned),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn flow(&mut self, spec: &FlowFile, name: String, text: &str) -> Flow {
        let mut calendars = std::collections::BTreeMap::new();
        for (cal_name, cal) in spec.calendars.iter() {
            if !is_name(cal_name) {
                self.error(
                    None,
                    &format!("calendars.{cal_name}"),
                    "a calendar name is letters, digits, `_` and `-`",
                );
            }
            let calendar = self.calendar(cal_name, cal);
            calendars.insert(cal_name.to_owned(), Arc::new(calendar));
        }
        if spec.nodes.is_empty() {
            self.error(None, "nodes", "a flow needs at least one node");
        }
        let mut nodes = Vec::with_capacity(spec.nodes.len());
        for (i, (node_name, node)) in spec.nodes.iter().enumerate() {
            self.current = i;
            if !is_name(node_name) {
                self.error(
                    Some(node_name),
                    "",
                    "a node name is letters, digits, `_` and `-`",
                );
            }
            let kind = self.node(node_name, node);
            let line = self.index.nearest(&format!("nodes.{node_name}")).0;
            nodes.push(Node {
                name: node_name.to_owned(),
                line,
                kind,
            });
        }
        let start = match spec.start.as_deref() {
            None => {
                self.error(None, "start", "missing: which node a call enters first");
                None
            }
            Some(s) => match self.names.iter().position(|n| n == s) {
                Some(i) => Some(i),
                None => {
                    self.error(None, "start", format!("no node named `{s}`"));
                    None
                }
            },
        };
        if let Some(start) = start {
            self.unreachable(start);
        }
        self.spin_loops(&nodes);
        Flow {
            name,
            version: hex::encode(Sha256::digest(text.as_bytes())),
            start: NodeId(start.unwrap_or(0) as u32),
            nodes,
            calendars,
            file: self.file.to_owned(),
        }
    }

    /// Resolves an exit of the current node.
    fn target(&mut self, node: &str, field: &str, target: &str) -> NodeId {
        match self.names.iter().position(|n| n == target) {
            Some(i) => {
                self.edges[self.current].push(i);
                NodeId(i as u32)
            }
            None => {
                self.error(Some(node), field, format!("no node named `{target}`"));
                NodeId(0)
            }
        }
    }

    fn prompts(&mut self, node: &str, field: &str, prompts: &Prompts) -> Vec<String> {
        match prompts {
            Prompts::One(p) => self.prompt(node, field, p),
            Prompts::Many(list) => {
                if list.is_empty() {
                    self.error(Some(node), field, "name at least one prompt");
                }
                for (i, p) in list.iter().enumerate() {
                    self.prompt(node, &format!("{field}[{i}]"), p);
                }
            }
        }
        prompts.names().to_vec()
    }

    fn optional_prompts(&mut self, node: &str, field: &str, p: Option<&Prompts>) -> Vec<String> {
        p.map(|p| self.prompts(node, field, p)).unwrap_or_default()
    }

    fn prompt(&mut self, node: &str, field: &str, name: &str) {
        if !self.ctx.prompts.contains(name) {
            self.error(
                Some(node),
                field,
                format!("no prompt named `{name}` in the prompt library"),
            );
        }
    }

    fn template(&mut self, node: &str, field: &str, source: &str) -> Template {
        let env = minijinja::Environment::new();
        if let Err(e) = env.template_from_str(source) {
            self.error(
                Some(node),
                field,
                format!("bad template: {}", jinja_detail(&e)),
            );
        }
        Template(source.to_owned())
    }

    fn expression(&mut self, node: &str, field: &str, source: &str) -> Expr {
        let env = minijinja::Environment::new();
        if let Err(e) = env.compile_expression(source) {
            self.error(
                Some(node),
                field,
                format!("bad expression: {}", jinja_detail(&e)),
            );
        }
        Expr(source.to_owned())
    }

    fn key(&mut self, node: &str, field: &str, key: &str) -> Option<char> {
        let mut chars = key.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if KEYS.contains(c) => Some(c),
            _ => {
                self.error(
                    Some(node),
                    field,
                    format!("`{key}` is not a key: one of 0-9, *, #, A-D"),
                );
                None
            }
        }
    }

    fn variable(&mut self, node: &str, field: &str, name: &str) {
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.error(
                Some(node),
                field,
                format!("`{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"),
            );
        }
    }

    fn seconds(&mut self, node: &str, field: &str, value: u32, max: u32) -> Duration {
        if value == 0 || value > max {
            self.error(
                Some(node),
                field,
                format!("{value} is out of range: 1 to {max} seconds"),
            );
        }
        Duration::from_secs(u64::from(value))
    }

    fn retries(&mut self, node: &str, value: u32) -> u32 {
        if value > MAX_RETRIES {
            self.error(
                Some(node),
                "retries",
                format!("{value} is more than {MAX_RETRIES}"),
            );
        }
        value
    }

    fn templates(
        &mut self,
        node: &str,
        field: &str,
        map: &OrderedMap<String>,
    ) -> Vec<(String, Template)> {
        map.iter()
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    self.template(node, &format!("{field}.{k}"), v),
                )
            })
            .collect()
    }

    fn scores(&mut self, node: &str, field: &str, scores: &OrderedMap<u8>) -> Vec<(char, u8)> {
        if scores.is_empty() {
            self.error(Some(node), field, "give at least one key");
        }
        scores
            .iter()
            .filter_map(|(k, v)| self.key(node, &format!("{field}.{k}"), k).map(|c| (c, *v)))
            .collect()
    }

    fn flow_ref(&mut self, node: &str, flow: &str) {
        if flow != self.flow && !self.ctx.flows.contains(flow) {
            self.error(Some(node), "flow", format!("no flow named `{flow}`"));
        }
    }

    fn node(&mut self, n: &str, spec: &NodeSpec) -> NodeKind {
        match spec {
            NodeSpec::Play {
                prompt,
                barge_in,
                next,
            } => NodeKind::Play {
                prompts: self.prompts(n, "prompt", prompt),
                barge_in: *barge_in,
                next: self.target(n, "next", next),
            },
            NodeSpec::Menu {
                prompt,
                choices,
                timeout_s,
                retries,
                no_input_prompt,
                invalid_prompt,
                no_input,
                invalid,
            } => {
                if choices.is_empty() {
                    self.error(Some(n), "choices", "give at least one key");
                }
                let choices = choices
                    .iter()
                    .filter_map(|(k, target)| {
                        let field = format!("choices.{k}");
                        let key = self.key(n, &field, k);
                        let target = self.target(n, &field, target);
                        key.map(|k| (k, target))
                    })
                    .collect();
                NodeKind::Menu {
                    prompts: self.prompts(n, "prompt", prompt),
                    choices,
                    timeout: self.seconds(n, "timeout_s", *timeout_s, MAX_INPUT_S),
                    retries: self.retries(n, *retries),
                    no_input_prompts: self.optional_prompts(
                        n,
                        "no_input_prompt",
                        no_input_prompt.as_ref(),
                    ),
                    invalid_prompts: self.optional_prompts(
                        n,
                        "invalid_prompt",
                        invalid_prompt.as_ref(),
                    ),
                    no_input: self.target(n, "no_input", no_input),
                    invalid: self.target(n, "invalid", invalid),
                }
            }
            NodeSpec::Collect {
                prompt,
                variable,
                min_digits,
                max_digits,
                end_key,
                first_digit_timeout_s,
                inter_digit_timeout_s,
                pattern,
                retries,
                no_input_prompt,
                invalid_prompt,
                sensitive,
                ok,
                no_input,
                invalid,
            } => {
                self.variable(n, "variable", variable);
                if *min_digits == 0 {
                    self.error(Some(n), "min_digits", "must be at least 1");
                }
                if *max_digits > MAX_DIGITS {
                    self.error(
                        Some(n),
                        "max_digits",
                        format!("{max_digits} is more than {MAX_DIGITS}"),
                    );
                }
                if min_digits > max_digits {
                    self.error(
                        Some(n),
                        "min_digits",
                        format!("{min_digits} is more than max_digits ({max_digits})"),
                    );
                }
                let end_key = if end_key.is_empty() {
                    None
                } else {
                    self.key(n, "end_key", end_key)
                };
                if let Some(p) = pattern {
                    if let Err(e) = regex_lite::Regex::new(&format!("^(?:{p})$")) {
                        self.error(Some(n), "pattern", format!("bad regular expression: {e}"));
                    }
                }
                NodeKind::Collect {
                    prompts: self.prompts(n, "prompt", prompt),
                    variable: variable.clone(),
                    min_digits: *min_digits,
                    max_digits: *max_digits,
                    end_key,
                    first_digit_timeout: self.seconds(
                        n,
                        "first_digit_timeout_s",
                        *first_digit_timeout_s,
                        MAX_INPUT_S,
                    ),
                    inter_digit_timeout: self.seconds(
                        n,
                        "inter_digit_timeout_s",
                        *inter_digit_timeout_s,
                        MAX_INPUT_S,
                    ),
                    pattern: pattern.clone(),
                    retries: self.retries(n, *retries),
                    no_input_prompts: self.optional_prompts(
                        n,
                        "no_input_prompt",
                        no_input_prompt.as_ref(),
                    ),
                    invalid_prompts: self.optional_prompts(
                        n,
                        "invalid_prompt",
                        invalid_prompt.as_ref(),
                    ),
                    sensitive: *sensitive,
                    ok: self.target(n, "ok", ok),
                    no_input: self.target(n, "no_input", no_input),
                    invalid: self.target(n, "invalid", invalid),
                }
            }
            NodeSpec::Hours {
                calendar,
                open,
                closed,
            } => {
                if !self.calendars.contains(calendar) {
                    self.error(
                        Some(n),
                        "calendar",
                        format!("no calendar named `{calendar}` under `calendars:`"),
                    );
                }
                NodeKind::Hours {
                    calendar: calendar.clone(),
                    open: self.target(n, "open", open),
                    closed: self.target(n, "closed", closed),
                }
            }
            NodeSpec::Switch { cases, default } => {
                let cases = cases
                    .iter()
                    .enumerate()
                    .map(|(i, case)| {
                        let when = self.expression(n, &format!("cases[{i}].when"), &case.when);
                        (
                            when,
                            self.target(n, &format!("cases[{i}].goto"), &case.goto),
                        )
                    })
                    .collect();
                NodeKind::Switch {
                    cases,
                    default: self.target(n, "default", default),
                }
            }
            NodeSpec::Set { vars, next } => {
                for (k, _) in vars.iter() {
                    self.variable(n, &format!("vars.{k}"), k);
                }
                NodeKind::Set {
                    assignments: self.templates(n, "vars", vars),
                    next: self.target(n, "next", next),
                }
            }
            NodeSpec::Http {
                method,
                url,
                headers,
                body,
                timeout_s,
                extract,
                ok,
                error,
            } => {
                let extract = extract
                    .iter()
                    .map(|(var, pointer)| {
                        let field = format!("extract.{var}");
                        self.variable(n, &field, var);
                        if !pointer.is_empty() && !pointer.starts_with('/') {
                            self.error(
                                Some(n),
                                &field,
                                format!(
                                    "`{pointer}` is not a JSON pointer (like `/customer/level`)"
                                ),
                            );
                        }
                        (var.to_owned(), pointer.clone())
                    })
                    .collect();
                NodeKind::Http {
                    method: match method {
                        HttpMethodSpec::Get => HttpMethod::Get,
                        HttpMethodSpec::Post => HttpMethod::Post,
                        HttpMethodSpec::Put => HttpMethod::Put,
                    },
                    url: self.template(n, "url", url),
                    headers: self.templates(n, "headers", headers),
                    body: body.as_ref().map(|b| self.template(n, "body", b)),
                    timeout: self.seconds(n, "timeout_s", *timeout_s, MAX_INPUT_S),
                    extract,
                    ok: self.target(n, "ok", ok),
                    error: self.target(n, "error", error),
                }
            }
            NodeSpec::Queue {
                queue,
                priority,
                max_wait_s,
                announce_every_s,
                music,
                exit_key,
                after_agent,
                timeout,
                exit,
                no_agents,
                full,
                agent_unavailable,
            } => {
                if !self.ctx.queues.contains(queue) {
                    self.error(Some(n), "queue", format!("no queue named `{queue}`"));
                }
                if let Some(m) = music {
                    self.prompt(n, "music", m);
                }
                let exit_key = exit_key.as_ref().and_then(|k| self.key(n, "exit_key", k));
                let timeout = self.target(n, "timeout", timeout);
                let exit = match (exit, exit_key) {
                    (Some(exit), _) => {
                        if exit_key.is_none() && self.errors_at(n, "exit_key") {
                            timeout
                        } else {
                            if exit_key.is_none() {
                                self.error(Some(n), "exit", "never taken: set `exit_key` too");
                            }
                            self.target(n, "exit", exit)
                        }
                    }
                    (None, Some(_)) => {
                        self.error(Some(n), "exit_key", "needs an `exit` to go to");
                        timeout
                    }
                    (None, None) => timeout,
                };
                NodeKind::Queue {
                    queue: queue.clone(),
                    priority: priority.as_ref().map(|p| self.expression(n, "priority", p)),
                    max_wait: self.seconds(n, "max_wait_s", *max_wait_s, MAX_CALL_S),
                    announce_every: announce_every_s
                        .map(|s| self.seconds(n, "announce_every_s", s, MAX_INPUT_S)),
                    music: music.clone(),
                    exit_key,
                    after_agent: after_agent
                        .as_ref()
                        .map(|a| self.target(n, "after_agent", a)),
                    timeout,
                    exit,
                    no_agents: self.target(n, "no_agents", no_agents),
                    full: self.target(n, "full", full),
                    agent_unavailable: agent_unavailable
                        .as_ref()
                        .map(|a| self.target(n, "agent_unavailable", a)),
                }
            }
            NodeSpec::Dial {
                extension,
                number,
                trunk,
                uri,
                ring_timeout_s,
                answered,
                no_answer,
                busy,
                failed,
            } => {
                let given = [extension.is_some(), number.is_some(), uri.is_some()];
                if given.iter().filter(|g| **g).count() != 1 {
                    self.error(
                        Some(n),
                        "",
                        "give exactly one of `extension`, `number` (with `trunk`) or `uri`",
                    );
                }
                if trunk.is_some() && number.is_none() {
                    self.error(Some(n), "trunk", "only used with `number`");
                }
                let target = if let Some(ext) = extension {
                    if !ext.contains("{{") && !self.ctx.extensions.contains(ext) {
                        self.error(Some(n), "extension", format!("no SIP account `{ext}`"));
                    }
                    DialTarget::Extension(self.template(n, "extension", ext))
                } else if let Some(number) = number {
                    DialTarget::Number {
                        number: self.template(n, "number", number),
                        trunk: trunk.clone(),
                    }
                } else {
                    DialTarget::Uri(self.template(n, "uri", uri.as_deref().unwrap_or_default()))
                };
                NodeKind::Dial {
                    target,
                    ring_timeout: self.seconds(n, "ring_timeout_s", *ring_timeout_s, MAX_INPUT_S),
                    answered: self.target(n, "answered", answered),
                    no_answer: self.target(n, "no_answer", no_answer),
                    busy: self.target(n, "busy", busy),
                    failed: self.target(n, "failed", failed),
                }
            }
            NodeSpec::Bridge {
                uri,
                headers,
                result_headers,
                ring_timeout_s,
                returned,
                failed,
            } => {
                let result_headers = result_headers
                    .iter()
                    .map(|(header, var)| {
                        self.variable(n, &format!("result_headers.{header}"), var);
                        (header.to_owned(), var.clone())
                    })
                    .collect();
                NodeKind::Bridge {
                    uri: self.template(n, "uri", uri),
                    headers: self.templates(n, "headers", headers),
                    result_headers,
                    ring_timeout: self.seconds(n, "ring_timeout_s", *ring_timeout_s, MAX_INPUT_S),
                    returned: self.target(n, "returned", returned),
                    failed: self.target(n, "failed", failed),
                }
            }
            NodeSpec::Voicemail {
                prompt,
                beep,
                max_length_s,
                mailbox,
                done,
            } => NodeKind::Voicemail {
                prompts: self.optional_prompts(n, "prompt", prompt.as_ref()),
                beep: *beep,
                max_length: self.seconds(n, "max_length_s", *max_length_s, MAX_INPUT_S),
                mailbox: mailbox.clone(),
                done: self.target(n, "done", done),
            },
            NodeSpec::Survey {
                prompt,
                scores,
                timeout_s,
                second,
                thanks,
                done,
            } => NodeKind::Survey {
                prompts: self.prompts(n, "prompt", prompt),
                scores: self.scores(n, "scores", scores),
                timeout: self.seconds(n, "timeout_s", *timeout_s, MAX_INPUT_S),
                second: second.as_ref().map(|q| SurveyQuestion {
                    prompts: self.prompts(n, "second.prompt", &q.prompt),
                    scores: self.scores(n, "second.scores", &q.scores),
                }),
                thanks: self.optional_prompts(n, "thanks", thanks.as_ref()),
                done: self.target(n, "done", done),
            },
            NodeSpec::Goto { flow, node } => {
                self.flow_ref(n, flow);
                if flow == self.flow {
                    if let Some(target) = node {
                        self.target(n, "node", target);
                    }
                }
                NodeKind::Goto {
                    flow: flow.clone(),
                    node: node.clone(),
                }
            }
            NodeSpec::Subflow { flow, next } => {
                self.flow_ref(n, flow);
                if flow == self.flow {
                    self.error(Some(n), "flow", "a flow cannot run itself as a sub-flow");
                }
                NodeKind::Subflow {
                    flow: flow.clone(),
                    next: self.target(n, "next", next),
                }
            }
            NodeSpec::Return {} => NodeKind::Return,
            NodeSpec::Hangup { cause } => NodeKind::Hangup {
                cause: match cause {
                    HangupCauseSpec::Normal => HangupCause::Normal,
                    HangupCauseSpec::Busy => HangupCause::Busy,
                    HangupCauseSpec::Rejected => HangupCause::Rejected,
                    HangupCauseSpec::Unavailable => HangupCause::Unavailable,
                },
            },
        }
    }

    /// Whether an error was already reported on this node's field.
    fn errors_at(&self, node: &str, field: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.node.as_deref() == Some(node) && e.field == field)
    }

    fn unreachable(&mut self, start: usize) {
        let mut seen = vec![false; self.names.len()];
        let mut todo = VecDeque::from([start]);
        seen[start] = true;
        while let Some(i) = todo.pop_front() {
            for &j in &self.edges[i] {
                if !seen[j] {
                    seen[j] = true;
                    todo.push_back(j);
                }
            }
        }
        for i in (0..seen.len()).filter(|&i| !seen[i]) {
            let name = self.names[i].clone();
            self.error(
                Some(&name),
                "",
                "unreachable: no exit leads here from `start`",
            );
        }
    }

    /// A cycle of exits through nodes that never wait for the caller or the outside world would
    /// run forever within one instant: refuse it.
    fn spin_loops(&mut self, nodes: &[Node]) {
        let n = nodes.len();
        let passes = |i: usize| !waits(&nodes[i].kind);
        // reach[i]: nodes reachable from i in one or more steps through passing nodes only.
        let reach: Vec<Vec<bool>> = (0..n)
            .map(|i| {
                let mut seen = vec![false; n];
                if !passes(i) {
                    return seen;
                }
                let mut todo = vec![i];
                while let Some(v) = todo.pop() {
                    for &w in &self.edges[v] {
                        if passes(w) && !seen[w] {
                            seen[w] = true;
                            todo.push(w);
                        }
                    }
                }
                seen
            })
            .collect();
        let mut reported = vec![false; n];
        for i in 0..n {
            if reported[i] || !reach[i][i] {
                continue;
            }
            let members: Vec<usize> = (0..n).filter(|&j| reach[i][j] && reach[j][i]).collect();
            for &j in &members {
                reported[j] = true;
            }
            let list = members
                .iter()
                .map(|&j| format!("`{}`", nodes[j].name))
                .collect::<Vec<_>>()
                .join(" → ");
            let name = nodes[i].name.clone();
            self.error(
                Some(&name),
                "",
                format!(
                    "loop with no caller input would spin forever: {list} → `{name}`; put a node that waits (menu, collect, queue…) in it"
                ),
            );
        }
    }

    fn calendar(&mut self, name: &str, spec: &CalendarSpec) -> Calendar {
        let base = format!("calendars.{name}");
        if jiff::tz::TimeZone::get(&spec.time_zone).is_err() {
            self.error(
                None,
                &format!("{base}.time_zone"),
                format!(
                    "unknown time zone `{}` (an IANA name such as `Asia/Shanghai`)",
                    spec.time_zone
                ),
            );
        }
        let mut weekly: [Vec<(u16, u16)>; 7] = Default::default();
        // Per day: (interval, field) to name the entry that overlaps.
        let mut per_day: [Vec<((u16, u16), String)>; 7] = Default::default();
        for (days, intervals) in spec.weekly.iter() {
            let field = format!("{base}.weekly.{days}");
            let Some(day_list) = parse_days(days) else {
                self.error(
                    None,
                    &field,
                    format!(
                        "`{days}` is not a day (`mon` … `sun`), a range (`mon-fri`) or `daily`"
                    ),
                );
                continue;
            };
            let parsed = self.intervals(&field, intervals);
            for d in day_list {
                per_day[d].extend(parsed.iter().map(|iv| (*iv, field.clone())));
            }
        }
        for (day, list) in per_day.iter_mut().enumerate() {
            list.sort_by_key(|(iv, _)| *iv);
            for pair in list.windows(2) {
                if pair[1].0 .0 < pair[0].0 .1 {
                    let (field, message) = overlap(&pair[0], &pair[1], DAYS[day]);
                    self.error(None, &field, message);
                }
            }
            weekly[day] = list.iter().map(|(iv, _)| *iv).collect();
        }
        let holidays = spec
            .holidays
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.date_range(&format!("{base}.holidays[{i}]"), h))
            .collect();
        let mut special_days: Vec<(DateRange, Vec<(u16, u16)>)> = Vec::new();
        for (dates, intervals) in spec.special_days.iter() {
            let field = format!("{base}.special_days.{dates}");
            let range = self.date_range(&field, dates);
            let mut parsed = self.intervals(&field, intervals);
            parsed.sort();
            if parsed.windows(2).any(|w| w[1].0 < w[0].1) {
                self.error(None, &field, "intervals overlap");
            }
            if let Some(range) = range {
                if special_days
                    .iter()
                    .any(|(r, _)| r.from <= range.to && range.from <= r.to)
                {
                    self.error(None, &field, "overlaps another special day");
                }
                special_days.push((range, parsed));
            }
        }
        Calendar {
            name: name.to_owned(),
            time_zone: spec.time_zone.clone(),
            weekly,
            holidays,
            special_days,
        }
    }

    fn intervals(&mut self, field: &str, intervals: &[String]) -> Vec<(u16, u16)> {
        intervals
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let parsed = parse_interval(text);
                if parsed.is_none() {
                    self.error(
                        None,
                        &format!("{field}[{i}]"),
                        format!("`{text}` is not an interval `HH:MM-HH:MM` (start before end, up to 24:00)"),
                    );
                }
                parsed
            })
            .collect()
    }

    fn date_range(&mut self, field: &str, text: &str) -> Option<DateRange> {
        let parse = |s: &str| s.trim().parse::<jiff::civil::Date>().ok();
        let range = match text.split_once("..") {
            Some((a, b)) => parse(a).zip(parse(b)),
            None => parse(text).map(|d| (d, d)),
        };
        match range {
            Some((from, to)) if from <= to => Some(DateRange {
                from: (from.year(), from.month(), from.day()),
                to: (to.year(), to.month(), to.day()),
            }),
            Some(_) => {
                self.error(
                    None,
                    field,
                    format!("`{text}`: the range ends before it starts"),
                );
                None
            }
            None => {
                self.error(
                    None,
                    field,
                    format!(
                        "`{text}` is not a date `YYYY-MM-DD` or a range `YYYY-MM-DD..YYYY-MM-DD`"
                    ),
                );
                None
            }
        }
    }
}

fn overlap(a: &((u16, u16), String), b: &((u16, u16), String), day: &str) -> (String, String) {
    let show =
        |(s, e): (u16, u16)| format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60);
    (
        b.1.clone(),
        format!("{} overlaps {} on {day}", show(b.0), show(a.0)),
    )
}

/// Nodes that wait for the caller or the outside world (a sub-flow counts: it is checked on its own).
fn waits(kind: &NodeKind) -> bool {
    matches!(
        kind,
        NodeKind::Menu { .. }
            | NodeKind::Collect { .. }
            | NodeKind::Survey { .. }
            | NodeKind::Queue { .. }
            | NodeKind::Dial { .. }
            | NodeKind::Bridge { .. }
            | NodeKind::Voicemail { .. }
            | NodeKind::Http { .. }
            | NodeKind::Subflow { .. }
    )
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn jinja_detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `mon`, `mon-fri` (wrapping: `sat-mon`), `daily` → day indexes (0 = Monday).
fn parse_days(text: &str) -> Option<Vec<usize>> {
    let day = |s: &str| DAYS.iter().position(|d| *d == s.trim());
    if text == "daily" {
        return Some((0..7).collect());
    }
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (day(a)?, day(b)?);
            let len = (b + 7 - a) % 7 + 1;
            Some((0..len).map(|i| (a + i) % 7).collect())
        }
        None => day(text).map(|d| vec![d]),
    }
}

/// `09:00-18:00` → minutes `[540, 1080)`; `24:00` only as an end.
fn parse_interval(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.split_once('-')?;
    let time = |s: &str| -> Option<u16> {
        let (h, m) = s.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (time(a)?, time(b)?);
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOWS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ivr-flows");
    const PROMPTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ctx() -> Context {
        Context {
            prompts: set(&["welcome", "goodbye", "hold", "beep"]),
            queues: set(&["sales", "support"]),
            flows: set(&["survey"]),
            extensions: set(&["1001", "1002"]),
        }
    }

    /// The shipped prompt library's names and the demo's queues.
    fn shipped_ctx() -> Context {
        let prompts = std::fs::read_dir(PROMPTS_DIR)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "wav")
                    .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .collect();
        Context {
            prompts,
            queues: set(&["sales", "support"]),
            flows: BTreeSet::new(),
            extensions: (1001..=1020).map(|n| n.to_string()).collect(),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        validate("t.yaml", text, &ctx())
            .expect_err("the flow should be refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[track_caller]
    fn assert_has(errors: &[String], expected: &str) {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected {expected}\nin {errors:#?}"
        );
    }

    const GOOD: &str = "\
start: menu
nodes:
  menu:
    type: menu
    prompt: welcome
    choices: { \"1\": bye, \"2\": bye }
    no_input: bye
    invalid: bye
  bye:
    type: hangup
";

    #[test]
    fn a_small_flow_builds_its_model() {
        let flow = validate("flows/demo.yaml", GOOD, &ctx()).unwrap();
        assert_eq!(flow.name, "demo");
        assert_eq!(flow.version.len(), 64);
        assert_eq!(flow.start, NodeId(0));
        assert_eq!(flow.node(NodeId(1)).line, 9);
        match &flow.node(NodeId(0)).kind {
            NodeKind::Menu {
                choices,
                timeout,
                retries,
                ..
            } => {
                assert_eq!(choices, &[('1', NodeId(1)), ('2', NodeId(1))]);
                assert_eq!(*timeout, Duration::from_secs(5));
                assert_eq!(*retries, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_targets_name_node_and_field() {
        let text = GOOD
            .replace("\"2\": bye", "\"2\": nowhere")
            .replace("invalid: bye", "invalid: gone");
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert_eq!(
            errs[0],
            "t.yaml:6:26: [menu] choices.2: no node named `nowhere`"
        );
        assert_eq!(errs[1], "t.yaml:8:5: [menu] invalid: no node named `gone`");
    }

    #[test]
    fn start_is_required_and_must_exist() {
        let errs = errors(&GOOD.replace("start: menu\n", ""));
        assert_has(&errs, "t.yaml:1:1: start: missing");
        let errs = errors(&GOOD.replace("start: menu", "start: nope"));
        assert_has(&errs, "t.yaml:1:1: start: no node named `nope`");
    }

    #[test]
    fn unreachable_nodes_are_errors() {
        let text = format!("{GOOD}  orphan:\n    type: hangup\n");
        let errs = errors(&text);
        assert_eq!(
            errs,
            ["t.yaml:11:3: [orphan] unreachable: no exit leads here from `start`"]
        );
    }

    #[test]
    fn prompts_queues_and_flows_must_exist() {
        let text = "\
start: q
nodes:
  q:
    type: queue
    queue: billing
    music: jazz
    timeout: s
    no_agents: s
    full: s
  s:
    type: subflow
    flow: nosuch
    next: p
  p:
    type: play
    prompt: [welcome, missing]
    next: g
  g:
    type: goto
    flow: other
";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "t.yaml:5:5: [q] queue: no queue named `billing`",
                "t.yaml:6:5: [q] music: no prompt named `jazz` in the prompt library",
                "t.yaml:12:5: [s] flow: no flow named `nosuch`",
                "t.yaml:16:23: [p] prompt[1]: no prompt named `missing` in the prompt library",
                "t.yaml:20:5: [g] flow: no flow named `other`",
            ]
        );
    }

    #[test]
    fn the_call_memory_fallback_exit_is_optional_and_checked() {
        let text = "\
start: q
nodes:
  q:
    type: queue
    queue: sales
    timeout: bye
    no_agents: bye
    full: bye
    agent_unavailable: personal
  bye:
    type: hangup
  personal:
    type: hangup
    cause: busy
";
        let flow = validate("t.yaml", text, &ctx()).unwrap();
        let exit = |flow: &Flow| match &flow.node(NodeId(0)).kind {
            NodeKind::Queue {
                agent_unavailable, ..
            } => *agent_unavailable,
            other => panic!("{other:?}"),
        };
        assert_eq!(exit(&flow), Some(NodeId(2)));

        let errs =
            errors(&text.replace("agent_unavailable: personal", "agent_unavailable: persnal"));
        // The exit counts for reachability: `personal` is reached only through it.
        assert_eq!(
            errs,
            [
                "t.yaml:9:5: [q] agent_unavailable: no node named `persnal`",
                "t.yaml:12:3: [personal] unreachable: no exit leads here from `start`",
            ]
        );

        // Without it the node is the same as before call memory existed.
        let text = text
            .replace("    agent_unavailable: personal\n", "")
            .replace("  personal:\n    type: hangup\n    cause: busy\n", "");
        let flow = validate("t.yaml", &text, &ctx()).unwrap();
        assert_eq!(exit(&flow), None);
    }

    const CALENDAR_FLOW: &str = "\
start: h
calendars:
  office:
    time_zone: Mars/Olympus
    weekly:
      mon-fri: [\"09:00-18:00\", \"17:00-19:00\"]
      funday: [\"09:00-10:00\"]
      sat: [\"10:00-25:00\"]
    holidays: [\"2026-10-07..2026-10-01\", \"2026-02-30\"]
    special_days: { \"2026-10-10\": [\"09:00-18:00\"] }
nodes:
  h: { type: hours, calendar: offise, open: x, closed: x }
  x: { type: hangup }
";

    #[test]
    fn calendars_are_checked() {
        let errs = errors(CALENDAR_FLOW);
        assert_eq!(
            errs,
            [
                "t.yaml:4:5: calendars.office.time_zone: unknown time zone `Mars/Olympus` (an IANA name such as `Asia/Shanghai`)",
                "t.yaml:6:7: calendars.office.weekly.mon-fri: 17:00-19:00 overlaps 09:00-18:00 on mon",
                "t.yaml:6:7: calendars.office.weekly.mon-fri: 17:00-19:00 overlaps 09:00-18:00 on tue",
                "t.yaml:6:7: calendars.office.weekly.mon-fri: 17:00-19:00 overlaps 09:00-18:00 on wed",
                "t.yaml:6:7: calendars.office.weekly.mon-fri: 17:00-19:00 overlaps 09:00-18:00 on thu",
                "t.yaml:6:7: calendars.office.weekly.mon-fri: 17:00-19:00 overlaps 09:00-18:00 on fri",
                "t.yaml:7:7: calendars.office.weekly.funday: `funday` is not a day (`mon` … `sun`), a range (`mon-fri`) or `daily`",
                "t.yaml:8:13: calendars.office.weekly.sat[0]: `10:00-25:00` is not an interval `HH:MM-HH:MM` (start before end, up to 24:00)",
                "t.yaml:9:16: calendars.office.holidays[0]: `2026-10-07..2026-10-01`: the range ends before it starts",
                "t.yaml:9:42: calendars.office.holidays[1]: `2026-02-30` is not a date `YYYY-MM-DD` or a range `YYYY-MM-DD..YYYY-MM-DD`",
                "t.yaml:12:21: [h] calendar: no calendar named `offise` under `calendars:`",
            ]
        );
    }

    #[test]
    fn a_good_calendar_becomes_minutes_and_dates() {
        let text = CALENDAR_FLOW
            .replace("Mars/Olympus", "Asia/Shanghai")
            .replace(", \\\"17:00-19:00\\\"", "")
            .replace("\"17:00-19:00\"", "\"18:00-19:00\"")
            .replace("      funday: [\"09:00-10:00\"]\n", "")
            .replace("25:00", "24:00")
            .replace(
                "\"2026-10-07..2026-10-01\", \"2026-02-30\"",
                "\"2026-10-01..2026-10-07\"",
            )
            .replace("offise", "office");
        let flow = validate("t.yaml", &text, &ctx()).unwrap();
        let cal = &flow.calendars["office"];
        assert_eq!(cal.weekly[0], [(540, 1080), (1080, 1140)]);
        assert_eq!(cal.weekly[5], [(600, 1440)]);
        assert!(cal.weekly[6].is_empty());
        assert_eq!(
            cal.holidays,
            [DateRange {
                from: (2026, 10, 1),
                to: (2026, 10, 7)
            }]
        );
        assert_eq!(cal.special_days.len(), 1);
    }

    #[test]
    fn collect_options_templates_expressions_and_keys() {
        let text = "\
start: c
nodes:
  c:
    type: collect
    prompt: welcome
    variable: 2fa
    min_digits: 6
    max_digits: 4
    end_key: X
    pattern: \"[0-9\"
    ok: s
    no_input: s
    invalid: s
  s:
    type: switch
    cases:
      - { when: \"caller.startswith('138') and\", goto: v }
    default: v
  v:
    type: set
    vars: { greeting: \"{{ caller \" }
    next: m
  m:
    type: menu
    prompt: welcome
    choices: { \"12\": c, E: c }
    no_input: c
    invalid: c
";
        let errs = errors(text);
        assert_eq!(errs.len(), 8, "{errs:#?}");
        assert_has(
            &errs,
            "t.yaml:6:5: [c] variable: `2fa` is not a variable name",
        );
        assert_has(
            &errs,
            "t.yaml:7:5: [c] min_digits: 6 is more than max_digits (4)",
        );
        assert_has(&errs, "t.yaml:9:5: [c] end_key: `X` is not a key");
        assert_has(&errs, "t.yaml:10:5: [c] pattern: bad regular expression");
        assert_has(
            &errs,
            "t.yaml:17:11: [s] cases[0].when: bad expression: syntax error",
        );
        assert_has(
            &errs,
            "t.yaml:21:13: [v] vars.greeting: bad template: syntax error",
        );
        assert_has(&errs, "t.yaml:26:16: [m] choices.12: `12` is not a key");
        assert_has(&errs, "t.yaml:26:25: [m] choices.E: `E` is not a key");
    }

    #[test]
    fn loops_without_caller_input_would_spin() {
        let text = "\
start: a
nodes:
  a: { type: set, vars: { n: \"1\" }, next: b }
  b:
    type: switch
    cases: [{ when: \"vars.n == '1'\", goto: c }]
    default: a
  c: { type: play, prompt: welcome, next: a }
";
        let errs = errors(text);
        assert_eq!(
            errs,
            ["t.yaml:3:3: [a] loop with no caller input would spin forever: `a` → `b` → `c` → `a`; put a node that waits (menu, collect, queue…) in it"]
        );
        // The same loop through a menu is how menus repeat: fine.
        let text = text.replace("default: a", "default: c").replace(
            "c: { type: play, prompt: welcome, next: a }",
            "c: { type: menu, prompt: welcome, choices: { \"1\": a }, no_input: a, invalid: a }",
        );
        validate("t.yaml", &text, &ctx()).unwrap();
    }

    #[test]
    fn dial_takes_exactly_one_target() {
        let text = "\
start: d
nodes:
  d:
    type: dial
    extension: \"1009\"
    uri: \"sip:bot@example.com\"
    answered: e
    no_answer: e
    busy: e
    failed: e
  e: { type: hangup, cause: busy }
";
        let errs = errors(text);
        assert_eq!(
            errs,
            [
                "t.yaml:3:3: [d] give exactly one of `extension`, `number` (with `trunk`) or `uri`",
                "t.yaml:5:5: [d] extension: no SIP account `1009`",
            ]
        );
    }

    #[test]
    fn an_error_at_the_end_of_a_text_without_a_final_break_stays_on_its_last_line() {
        // Found by fuzzing: serde_yaml puts "missing field" one line past the end.
        let errors = validate("main.yaml", "# only a comment", &Context::default()).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (1, 17), "{}", errors[0]);
    }

    #[test]
    fn deserialize_errors_point_at_the_option() {
        let wrong_type = GOOD.replace(
            "    no_input: bye",
            "    timeout_s: soon\n    no_input: bye",
        );
        assert_eq!(
            errors(&wrong_type),
            ["t.yaml:7:5: [menu] timeout_s: invalid type: string \"soon\", expected u32"]
        );
        let unknown = GOOD.replace("    no_input: bye", "    no_imput: bye");
        let errs = errors(&unknown);
        assert!(
            errs[0].starts_with("t.yaml:7:5: [menu] no_imput: unknown field `no_imput`"),
            "{errs:?}"
        );
        let missing = GOOD.replace("    invalid: bye\n", "");
        assert_eq!(
            errors(&missing),
            ["t.yaml:3:3: [menu] missing field `invalid`"]
        );
        let kind = GOOD.replace("type: hangup", "type: hangoff");
        assert!(errors(&kind)[0].starts_with("t.yaml:10:5: [bye] type: unknown variant `hangoff`"));
        let deep = "start: s\nnodes:\n  s:\n    type: survey\n    prompt: welcome\n    scores: { \"1\": 5 }\n    second: { prompt: welcome, scores: { \"1\": 5 }, extra: 1 }\n    done: s\n";
        let errs = errors(deep);
        assert!(
            errs[0].starts_with("t.yaml:7:52: [s] second.extra: unknown field `extra`"),
            "{errs:?}"
        );
        let dup = format!("{GOOD}  bye:\n    type: hangup\n");
        let errs = errors(&dup);
        assert!(
            errs[0].starts_with("t.yaml:11:3: [bye] duplicate field `bye`"),
            "{errs:?}"
        );
        let top = format!("{GOOD}bogus: 1\n");
        assert!(errors(&top)[0].starts_with("t.yaml:11:1: bogus: unknown field `bogus`"));
    }

    #[test]
    fn shipped_flows_validate() {
        let (flows, errs) = load_dir(Path::new(FLOWS_DIR), &shipped_ctx());
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(shown.is_empty(), "{shown:#?}");
        let names: Vec<&str> = flows.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["main", "survey"]);
        let main = &flows[0];
        assert_eq!(main.node(main.start).name, "hours");
        let NodeKind::Menu { choices, .. } = &main.node(main.find("menu").unwrap()).kind else {
            panic!("menu is a menu")
        };
        let target = |k: char| &main.node(choices.iter().find(|c| c.0 == k).unwrap().1).name;
        assert_eq!(
            (
                target('1').as_str(),
                target('2').as_str(),
                target('0').as_str()
            ),
            ("sales", "support", "voicemail")
        );
    }

    /// Every mapping of every shipped flow, in turn, gets a key nobody knows; each must be
    /// refused on that key's line (as the configuration's corpus test does).
    #[test]
    fn a_bogus_key_in_any_mapping_of_the_shipped_flows_is_rejected() {
        const BOGUS: &str = "bogus_key_for_test";
        let ctx = shipped_ctx();
        let mut ctx_flows = ctx.clone();
        ctx_flows.flows = set(&["main", "survey"]);
        let mut checked = 0;
        for name in ["main", "survey"] {
            let file = format!("{FLOWS_DIR}/{name}.yaml");
            let text = std::fs::read_to_string(&file).unwrap();
            let index = locate::Index::build(&text);
            let mut mappings: Vec<&str> = Vec::new();
            for entry in &index.entries {
                if let locate::Kind::Key { .. } = entry.kind {
                    let parent = locate::parent(&entry.path).unwrap();
                    if !mappings.contains(&parent) {
                        mappings.push(parent);
                    }
                }
            }
            let lines: Vec<&str> = text.lines().collect();
            for mapping in mappings {
                let keys: Vec<&locate::Entry> = index
                    .entries
                    .iter()
                    .filter(|e| matches!(e.kind, locate::Kind::Key { .. }))
                    .filter(|e| locate::parent(&e.path) == Some(mapping))
                    .collect();
                let mut mutated: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
                let first = keys[0];
                let line = if matches!(
                    first.kind,
                    locate::Kind::Key {
                        first_on_line: true,
                        ..
                    }
                ) {
                    // A block mapping: a line of its own before the first key.
                    mutated.insert(
                        first.line - 1,
                        format!("{}{BOGUS}: 1", " ".repeat(first.column - 1)),
                    );
                    first.line
                } else {
                    // A flow mapping `{ ... }`: a key first inside the braces.
                    let l = &mut mutated[first.line - 1];
                    let at = l
                        .char_indices()
                        .nth(first.column - 1)
                        .map(|(i, _)| i)
                        .unwrap();
                    l.insert_str(at, &format!("{BOGUS}: 1, "));
                    first.line
                };
                let text = mutated.join("\n");
                let errs =
                    validate(&file, &text, &ctx_flows).expect_err(&format!("{name}: {mapping}"));
                assert!(
                    errs.iter().any(|e| e.line == line),
                    "{name}: bogus key in `{mapping}` at line {line}, got {errs:#?}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked}");
    }

    #[test]
    fn the_shipped_schema_is_current() {
        let path = format!("{FLOWS_DIR}/flow.schema.json");
        let generated = json_schema();
        if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == generated,
            "ivr-flows/flow.schema.json is stale: run `SWITCHBOARD_BLESS=1 cargo test -p switchboard-engine the_shipped_schema_is_current`"
        );
        assert!(generated.contains("\"menu\""), "{generated}");
    }
}
