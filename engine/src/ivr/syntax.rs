//! The flow language as written: serde structs that mirror `ivr-flows/*.yaml` one to one.
//!
//! Everything here is what the admin typed, unchecked: node names are strings, durations are
//! whole seconds, templates are source text. [`super::validate`] turns a [`FlowFile`] into a
//! [`super::model::Flow`] or into the list of everything wrong with it. Every struct denies
//! unknown keys, so a misspelt option is an error and never silently falls back to a default.
//!
//! The same types generate the JSON Schema shipped as `ivr-flows/flow.schema.json`
//! ([`super::validate::json_schema`]); their doc comments become its descriptions, which editors
//! show while the admin types. The language itself is documented in `ivr-flows/README.md`.
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Default seconds a menu, a collect or a survey waits for the first key.
pub const DEFAULT_INPUT_TIMEOUT_S: u32 = 5;
/// Default seconds between two keys of a `collect`.
pub const DEFAULT_INTER_DIGIT_TIMEOUT_S: u32 = 3;
/// Default times a menu or a collect asks again after no input or invalid input.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default seconds an `http` node waits for the response.
pub const DEFAULT_HTTP_TIMEOUT_S: u32 = 5;
/// Default seconds a caller may wait in a queue before its `timeout` exit.
pub const DEFAULT_MAX_WAIT_S: u32 = 300;
/// Default seconds a `dial` or `bridge` rings before giving up.
pub const DEFAULT_RING_TIMEOUT_S: u32 = 30;
/// Default longest voicemail message, in seconds.
pub const DEFAULT_VOICEMAIL_MAX_S: u32 = 120;
/// Default `collect` bounds.
pub const DEFAULT_MIN_DIGITS: u32 = 1;
pub const DEFAULT_MAX_DIGITS: u32 = 20;

/// One flow file, `ivr-flows/<name>.yaml`; the flow's name is the file stem.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchboard IVR flow")]
pub struct FlowFile {
    /// What the flow is for (shown in listings; free text).
    #[serde(default)]
    pub description: Option<String>,
    /// The node a call enters first.
    #[serde(default)]
    pub start: Option<String>,
    /// Named service-hours calendars, used by `hours` nodes.
    #[serde(default)]
    pub calendars: OrderedMap<CalendarSpec>,
    /// The flow's nodes by name. A name is what exits refer to and what the call record's IVR
    /// trail shows.
    pub nodes: OrderedMap<NodeSpec>,
}

/// Service hours in a time zone. Precedence: special working days > holidays > weekly hours.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// IANA time zone, e.g. `Asia/Shanghai`, `Europe/Paris`, `UTC`.
    pub time_zone: String,
    /// Open hours per weekday: keys are `mon` … `sun` or a range such as `mon-fri`; values are
    /// lists of `HH:MM-HH:MM` intervals (`00:00-24:00` is the whole day). Days not listed are closed.
    #[serde(default)]
    pub weekly: OrderedMap<Vec<String>>,
    /// Closed days: `YYYY-MM-DD` or an inclusive range `YYYY-MM-DD..YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Working days that override holidays and the weekly hours: a date or a date range, with
    /// that day's open intervals.
    #[serde(default)]
    pub special_days: OrderedMap<Vec<String>>,
}

/// One prompt name or a list of them, played in order. A name is a file in the prompt library
/// without its extension (`welcome` for `prompts/welcome.wav`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl Prompts {
    pub fn names(&self) -> &[String] {
        match self {
            Prompts::One(name) => std::slice::from_ref(name),
            Prompts::Many(names) => names,
        }
    }
}

/// A node: `type` says which kind, the other keys are its options and its exits (the names of
/// the nodes to go to).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeSpec {
    /// Play prompts, then go to `next`.
    Play {
        prompt: Prompts,
        /// A key stops the playback and is kept for the next node that reads keys. Default false.
        #[serde(default)]
        barge_in: bool,
        next: String,
    },
    /// A key menu: play `prompt`, then take the exit of the key pressed.
    Menu {
        prompt: Prompts,
        /// Key (`0`-`9`, `*`, `#`, `A`-`D`) → node.
        choices: OrderedMap<String>,
        /// Seconds to wait for a key after the prompt. Default 5.
        #[serde(default = "input_timeout")]
        timeout_s: u32,
        /// How often to ask again after no key or a wrong key. Default 2.
        #[serde(default = "retries")]
        retries: u32,
        /// Played before asking again after no key (default: `prompt` again).
        #[serde(default)]
        no_input_prompt: Option<Prompts>,
        /// Played before asking again after a wrong key (default: `prompt` again).
        #[serde(default)]
        invalid_prompt: Option<Prompts>,
        /// Where to go when the retries are used up without a key.
        no_input: String,
        /// Where to go when the retries are used up with wrong keys.
        invalid: String,
    },
    /// Collect several digits (an account or ID number) into a variable.
    Collect {
        prompt: Prompts,
        /// Variable the digits go into (`vars.<name>` in templates).
        variable: String,
        /// Default 1.
        #[serde(default = "min_digits")]
        min_digits: u32,
        /// Input ends by itself at this many digits. Default 20.
        #[serde(default = "max_digits")]
        max_digits: u32,
        /// The key that ends input (not stored). Default `#`; `""` for none.
        #[serde(default = "end_key")]
        end_key: String,
        /// Seconds to wait for the first digit. Default 5.
        #[serde(default = "input_timeout")]
        first_digit_timeout_s: u32,
        /// Seconds to wait for each further digit. Default 3.
        #[serde(default = "inter_digit_timeout")]
        inter_digit_timeout_s: u32,
        /// A regular expression the whole input must match (e.g. `1[3-9][0-9]{9}`).
        #[serde(default)]
        pattern: Option<String>,
        /// Default 2.
        #[serde(default = "retries")]
        retries: u32,
        #[serde(default)]
        no_input_prompt: Option<Prompts>,
        #[serde(default)]
        invalid_prompt: Option<Prompts>,
        /// The call record shows the input masked (`10**************10`). Default false.
        #[serde(default)]
        sensitive: bool,
        ok: String,
        no_input: String,
        invalid: String,
    },
    /// Branch on a calendar at the call's local time.
    Hours {
        /// A name under `calendars:`.
        calendar: String,
        open: String,
        closed: String,
    },
    /// The first case whose condition holds, else `default`.
    Switch { cases: Vec<Case>, default: String },
    /// Set variables from templates, in order.
    Set {
        /// Variable → template (e.g. `"{{ caller[-4:] }}"`).
        vars: OrderedMap<String>,
        next: String,
    },
    /// Call a web service; fields of its JSON answer go into variables.
    Http {
        /// Default GET.
        #[serde(default)]
        method: HttpMethodSpec,
        /// A template.
        url: String,
        /// Header → template.
        #[serde(default)]
        headers: OrderedMap<String>,
        /// A template; usually JSON.
        #[serde(default)]
        body: Option<String>,
        /// Default 5.
        #[serde(default = "http_timeout")]
        timeout_s: u32,
        /// Variable → JSON pointer into the response (e.g. `/customer/level`).
        #[serde(default)]
        extract: OrderedMap<String>,
        ok: String,
        error: String,
    },
    /// Put the caller in a skill group's queue.
    Queue {
        /// The skill group.
        queue: String,
        /// An expression; higher is served first (e.g. `10 if vars.level == 'vip' else 0`).
        #[serde(default)]
        priority: Option<String>,
        /// Default 300.
        #[serde(default = "max_wait")]
        max_wait_s: u32,
        /// Announce the caller's position this often (default: never).
        #[serde(default)]
        announce_every_s: Option<u32>,
        /// Prompt played while waiting (default: the queue's own).
        #[serde(default)]
        music: Option<String>,
        /// A key that leaves the queue by the `exit` exit.
        #[serde(default)]
        exit_key: Option<String>,
        /// After the agent hangs up, continue here (e.g. a survey); default: the call ends.
        #[serde(default)]
        after_agent: Option<String>,
        timeout: String,
        /// Required with `exit_key`.
        #[serde(default)]
        exit: Option<String>,
        no_agents: String,
        full: String,
        /// Call memory's fallback: the caller is bound to an agent who is not available and
        /// the ACD refuses rather than queues (`when_agent_unavailable: fallback`). Default:
        /// `no_agents`.
        #[serde(default)]
        agent_unavailable: Option<String>,
    },
    /// Ring an extension, a number through a trunk, or a SIP URI (exactly one).
    Dial {
        /// A SIP account of this server (template).
        #[serde(default)]
        extension: Option<String>,
        /// An outside number (template), through `trunk`.
        #[serde(default)]
        number: Option<String>,
        /// Default: the default trunk.
        #[serde(default)]
        trunk: Option<String>,
        /// A SIP URI (template).
        #[serde(default)]
        uri: Option<String>,
        /// Default 30.
        #[serde(default = "ring_timeout")]
        ring_timeout_s: u32,
        answered: String,
        no_answer: String,
        busy: String,
        failed: String,
    },
    /// Hand the caller to a third-party system; when it hangs up the caller comes back.
    Bridge {
        /// SIP URI (template).
        uri: String,
        /// SIP header → template, sent on the INVITE.
        #[serde(default)]
        headers: OrderedMap<String>,
        /// SIP header → variable, read from the far end's answer and BYE.
        #[serde(default)]
        result_headers: OrderedMap<String>,
        /// Default 30.
        #[serde(default = "ring_timeout")]
        ring_timeout_s: u32,
        returned: String,
        failed: String,
    },
    /// Record a message.
    Voicemail {
        #[serde(default)]
        prompt: Option<Prompts>,
        /// Play a beep before recording. Default true.
        #[serde(default = "yes")]
        beep: bool,
        /// Default 120.
        #[serde(default = "voicemail_max")]
        max_length_s: u32,
        /// Whose box (a skill group, an account); recorded in the call record.
        mailbox: String,
        done: String,
    },
    /// A satisfaction survey: key → score, optionally a second question.
    Survey {
        prompt: Prompts,
        /// Key → score.
        scores: OrderedMap<u8>,
        /// Default 5.
        #[serde(default = "input_timeout")]
        timeout_s: u32,
        #[serde(default)]
        second: Option<SurveyQuestionSpec>,
        #[serde(default)]
        thanks: Option<Prompts>,
        done: String,
    },
    /// Continue in another flow, with no return.
    Goto {
        flow: String,
        /// Default: that flow's `start`.
        #[serde(default)]
        node: Option<String>,
    },
    /// Run another flow; its `return` node brings the caller back to `next`.
    Subflow { flow: String, next: String },
    /// End of a sub-flow (in a top-level flow: hang up).
    Return {},
    /// End the call.
    Hangup {
        /// Default normal.
        #[serde(default)]
        cause: HangupCauseSpec,
    },
}

impl NodeSpec {
    /// The `type:` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeSpec::Play { .. } => "play",
            NodeSpec::Menu { .. } => "menu",
            NodeSpec::Collect { .. } => "collect",
            NodeSpec::Hours { .. } => "hours",
            NodeSpec::Switch { .. } => "switch",
            NodeSpec::Set { .. } => "set",
            NodeSpec::Http { .. } => "http",
            NodeSpec::Queue { .. } => "queue",
            NodeSpec::Dial { .. } => "dial",
            NodeSpec::Bridge { .. } => "bridge",
            NodeSpec::Voicemail { .. } => "voicemail",
            NodeSpec::Survey { .. } => "survey",
            NodeSpec::Goto { .. } => "goto",
            NodeSpec::Subflow { .. } => "subflow",
            NodeSpec::Return {} => "return",
            NodeSpec::Hangup { .. } => "hangup",
        }
    }
}

/// One `switch` case.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// An expression over `caller`, `called` and `vars` (e.g. `caller.startswith('138')`).
    pub when: String,
    /// The node to go to when it holds.
    pub goto: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyQuestionSpec {
    pub prompt: Prompts,
    pub scores: OrderedMap<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethodSpec {
    #[default]
    #[serde(alias = "get")]
    Get,
    #[serde(alias = "post")]
    Post,
    #[serde(alias = "put")]
    Put,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HangupCauseSpec {
    /// Normal clearing (BYE).
    #[default]
    Normal,
    /// 486 Busy Here.
    Busy,
    /// 403 Forbidden.
    Rejected,
    /// 503 Service Unavailable.
    Unavailable,
}

/// A YAML mapping with string keys, kept in document order (node order, `set` order, choice
/// order matter to the reader and to the interpreter). A key given twice is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    let key = key.0;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate field `{key}`"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A mapping key: a string, or a plain number or boolean taken as written (`1: sales`).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

impl<V: JsonSchema> JsonSchema for OrderedMap<V> {
    fn schema_name() -> Cow<'static, str> {
        <std::collections::BTreeMap<String, V>>::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        <std::collections::BTreeMap<String, V>>::schema_id()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <std::collections::BTreeMap<String, V>>::json_schema(generator)
    }
}

fn input_timeout() -> u32 {
    DEFAULT_INPUT_TIMEOUT_S
}
fn inter_digit_timeout() -> u32 {
    DEFAULT_INTER_DIGIT_TIMEOUT_S
}
fn retries() -> u32 {
    DEFAULT_RETRIES
}
fn min_digits() -> u32 {
    DEFAULT_MIN_DIGITS
}
fn max_digits() -> u32 {
    DEFAULT_MAX_DIGITS
}
fn end_key() -> String {
    "#".to_owned()
}
fn http_timeout() -> u32 {
    DEFAULT_HTTP_TIMEOUT_S
}
fn max_wait() -> u32 {
    DEFAULT_MAX_WAIT_S
}
fn ring_timeout() -> u32 {
    DEFAULT_RING_TIMEOUT_S
}
fn voicemail_max() -> u32 {
    DEFAULT_VOICEMAIL_MAX_S
}
fn yes() -> bool {
    true
}
