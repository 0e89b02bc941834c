//! `acd:`, `skill_groups:` and `agents:` — the ACD as admins configure it, validated into the
//! types [`crate::acd`] runs on.
//!
//! The raw structs mirror the file; [`validate`] checks every value and reference (skill
//! groups named by agents, SIP accounts that ring, trunks for mobile agents, feature codes that
//! collide with nothing dialable) and builds an [`AcdSection`]. Past that point a skill group an
//! agent names exists, each account rings at most one agent and each PIN opens one agent.
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{
    is_dial_number, is_flow_name, seconds, Account, CallsConfig, ConfigError, Ctx, ServiceNumber,
    Trunk, DAY_S, MAX_NAME_LEN, MAX_NUMBER_LEN,
};
use crate::acd::schedule::{Schedule, Shift, DAY_MINUTES};
use crate::acd::{
    Acd, AcdConfig, AgentConfig, AgentId, AnswerMode, InitialState, Membership, MemoryConfig,
    QueueConfig, QueueId, Strategy,
};

/// Call memory's default validity: a week.
pub const DEFAULT_MEMORY_VALIDITY: Duration = Duration::from_secs(7 * 86_400);

/// The ACD as configured: `acd:`, `skill_groups:` and `agents:` together. The default (all three
/// sections absent) has no skill groups, no agents, no break states, feature codes 0000/0001 and
/// call memory off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcdSection {
    /// Admin-defined break states (小休), the names reports show.
    pub break_states: BTreeSet<String>,
    pub feature_codes: FeatureCodes,
    /// `validity` is `None` when `call_memory.enabled` is false.
    pub memory: MemoryConfig,
    /// One per skill group, in file order; ids are unique.
    pub queues: Vec<QueueConfig>,
    /// In file order; ids, PINs and desk-phone accounts are unique.
    pub agents: Vec<ConfiguredAgent>,
}

impl AcdSection {
    /// The ACD-wide settings [`Acd::new`] takes.
    pub fn acd_config(&self) -> AcdConfig {
        AcdConfig {
            break_names: self.break_states.clone(),
            memory: self.memory.clone(),
        }
    }

    /// An ACD with every configured queue and agent (all logged out). `seed` drives the random
    /// strategies.
    pub fn build_acd(&self, seed: u64) -> Acd {
        let mut acd = Acd::new(self.acd_config(), seed);
        for q in &self.queues {
            acd.add_queue(q.clone())
                .expect("validated: skill group names are unique");
        }
        for a in &self.agents {
            acd.add_agent(a.config.clone())
                .expect("validated: agent ids are unique and name configured skill groups");
        }
        acd
    }

    /// The agent a feature-code login with `pin` opens.
    pub fn agent_by_pin(&self, pin: &str) -> Option<&ConfiguredAgent> {
        self.agents.iter().find(|a| a.pin.as_deref() == Some(pin))
    }

    pub fn agent(&self, id: &AgentId) -> Option<&ConfiguredAgent> {
        self.agents.iter().find(|a| &a.config.id == id)
    }

    /// The agent whose desk phone `account` (a SIP account's user) is, as configured.
    pub fn agent_by_account(&self, account: &str) -> Option<&ConfiguredAgent> {
        self.agents.iter().find(|a| match &a.config.answer_mode {
            AnswerMode::DeskPhone { accounts } => accounts.iter().any(|x| x == account),
            _ => false,
        })
    }
}

/// Desk-phone feature codes: `login` followed by a PIN logs the agent with that PIN in on the
/// dialling phone; `logout` alone logs out the agent on the dialling phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    /// Digits, `*` and `#`.
    pub login: String,
    pub logout: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            login: "0000".to_owned(),
            logout: "0001".to_owned(),
        }
    }
}

/// An agent with what the ACD core does not need: how people and phones find it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfiguredAgent {
    pub config: AgentConfig,
    pub name: Option<String>,
    /// 4 to 8 digits, unique; `Debug` never shows it.
    pub pin: Option<String>,
    /// The trunk a mobile agent is rung through (resolved: the first trunk unless the file names
    /// one); `None` for other answer modes.
    pub mobile_trunk: Option<String>,
    /// The number shown on the agent's outbound calls (外显号).
    pub caller_id: Option<String>,
    pub sign_in: SignIn,
}

/// Written by hand so that a PIN never reaches a log line or a panic message.
impl fmt::Debug for ConfiguredAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredAgent")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .field("mobile_trunk", &self.mobile_trunk)
            .field("caller_id", &self.caller_id)
            .field("sign_in", &self.sign_in)
            .finish()
    }
}

/// How an agent gets logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// By feature code or the control API.
    Manual,
    /// When the engine starts.
    AtStart,
    /// In and out by the shifts of a weekly schedule.
    Schedule(Schedule),
}

// ---- the file format ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawAcd {
    pub break_states: Vec<String>,
    pub feature_codes: RawFeatureCodes,
    pub call_memory: RawCallMemory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawFeatureCodes {
    pub login: String,
    pub logout: String,
}

impl Default for RawFeatureCodes {
    fn default() -> Self {
        let d = FeatureCodes::default();
        RawFeatureCodes {
            login: d.login,
            logout: d.logout,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawCallMemory {
    pub enabled: bool,
    pub validity_s: u64,
    pub service_numbers: Vec<String>,
    pub when_agent_unavailable: WhenUnavailable,
}

impl Default for RawCallMemory {
    fn default() -> Self {
        RawCallMemory {
            enabled: false,
            validity_s: DEFAULT_MEMORY_VALIDITY.as_secs(),
            service_numbers: Vec::new(),
            when_agent_unavailable: WhenUnavailable::Queue,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WhenUnavailable {
    Queue,
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawStrategy {
    ReturningCustomer,
    RoundRobin,
    RoundRobinMemory,
    FewestCalls,
    FewestInboundCalls,
    LongestTotalIdle,
    LongestIdleState,
    LeastTalkTime,
    Linear,
    RingAll,
    Random,
    WeightedRandom,
    RingProgressively,
}

/// `ring_step_s` when absent.
const DEFAULT_RING_STEP_S: u64 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawSkillGroup {
    pub name: String,
    #[serde(default = "round_robin")]
    pub strategy: RawStrategy,
    #[serde(default)]
    pub base_strategy: Option<RawStrategy>,
    #[serde(default)]
    pub ring_step_s: Option<u64>,
    #[serde(default)]
    pub max_waiting: Option<usize>,
    // The rest default to `QueueConfig::new`'s values, so file and engine can not drift apart.
    #[serde(default)]
    pub max_wait_s: Option<u64>,
    #[serde(default)]
    pub announce_every_s: Option<u64>,
    #[serde(default)]
    pub service_level_s: Option<u64>,
    #[serde(default)]
    pub priority_weight_s: Option<u64>,
    #[serde(default)]
    pub retry_delay_s: Option<u64>,
    #[serde(default)]
    pub default_handle_time_s: Option<u64>,
}

fn round_robin() -> RawStrategy {
    RawStrategy::RoundRobin
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAnswerMode {
    #[default]
    DeskPhone,
    Mobile,
    Softphone,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawInitialState {
    #[default]
    Idle,
    Busy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawSignIn {
    #[default]
    Manual,
    AtStart,
    Schedule,
}

/// A PIN as read; `Debug` never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct RawPin(String);

impl fmt::Debug for RawPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawAgent {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pin: Option<RawPin>,
    #[serde(default)]
    pub answer_mode: RawAnswerMode,
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub mobile_trunk: Option<String>,
    #[serde(default)]
    pub skill_groups: Vec<RawMembership>,
    #[serde(default)]
    pub initial_state: RawInitialState,
    // Default to `AgentConfig::new`'s values.
    #[serde(default)]
    pub wrap_up_s: Option<u64>,
    #[serde(default)]
    pub max_ring_s: Option<u64>,
    #[serde(default)]
    pub auto_busy_after: Option<u32>,
    #[serde(default)]
    pub caller_id: Option<String>,
    #[serde(default)]
    pub sign_in: RawSignIn,
    #[serde(default)]
    pub schedule: Option<RawSchedule>,
}

/// A skill group an agent answers for: its name alone, or `{name, order, weight}`.
#[derive(Debug)]
pub(super) struct RawMembership {
    pub name: String,
    /// `None` for the bare-name form (the field path then ends at the item).
    pub order: Option<u32>,
    pub weight: Option<u32>,
    pub mapping: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
struct RawMembershipMap {
    name: String,
    #[serde(default)]
    order: Option<u32>,
    #[serde(default)]
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for RawMembership {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMembership;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a skill group name or a mapping {name, order, weight}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMembership, E> {
                Ok(RawMembership {
                    name: v.to_owned(),
                    order: None,
                    weight: None,
                    mapping: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawMembership, A::Error> {
                // Through the derived struct, so unknown and missing keys are reported as usual.
                let m = RawMembershipMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawMembership {
                    name: m.name,
                    order: m.order,
                    weight: m.weight,
                    mapping: true,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawSchedule {
    pub timezone: String,
    pub shifts: Vec<RawShift>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawShift {
    pub days: Vec<RawDay>,
    pub from: String,
    pub to: String,
}

/// Monday first, like [`Shift::days`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawDay {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// The three top-level sections, as read.
pub(super) struct RawSections {
    pub acd: RawAcd,
    pub skill_groups: Vec<RawSkillGroup>,
    pub agents: Vec<RawAgent>,
}

/// What the rest of the configuration tells the ACD's validation.
pub(super) struct Known<'a> {
    pub accounts: &'a [Account],
    pub trunks: &'a [Trunk],
    pub calls: &'a CallsConfig,
    pub numbers: &'a [ServiceNumber],
}

// ---- validation --------------------------------------------------------------------------

/// Names an agent state already has; a break state must not be mistaken for one in reports.
const STATE_NAMES: [&str; 7] = crate::acd::AgentStatus::CODES;

pub(super) fn validate(
    raw: RawSections,
    known: &Known<'_>,
    ctx: &Ctx<'_>,
) -> Result<AcdSection, ConfigError> {
    let break_states = validate_break_states(&raw.acd.break_states, ctx)?;
    let feature_codes = validate_feature_codes(raw.acd.feature_codes, known, ctx)?;
    let memory = validate_memory(raw.acd.call_memory, known, ctx)?;
    let queues = validate_skill_groups(raw.skill_groups, ctx)?;
    let agents = validate_agents(raw.agents, &queues, known, ctx)?;
    Ok(AcdSection {
        break_states,
        feature_codes,
        memory,
        queues,
        agents,
    })
}

/// "`what` is already defined (`first_item`, line N)", N being the line of `first_field`.
fn already(ctx: &Ctx<'_>, what: &str, first_field: &str, first_item: &str) -> String {
    let (line, _) = ctx.index.nearest(first_field);
    format!("{what} is already defined ({first_item}, line {line})")
}

fn validate_break_states(raw: &[String], ctx: &Ctx<'_>) -> Result<BTreeSet<String>, ConfigError> {
    let mut names = BTreeSet::new();
    for (i, name) in raw.iter().enumerate() {
        let field = format!("acd.break_states[{i}]");
        if !is_flow_name(name) {
            return Err(ctx.error(
                &field,
                format!("a break state must be 1 to {MAX_NAME_LEN} letters, digits or `-_`, got {name:?}"),
            ));
        }
        if STATE_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ctx.error(
                &field,
                format!("{name} is the name of a built-in agent state; pick another name"),
            ));
        }
        if let Some(first) = raw[..i].iter().position(|x| x == name) {
            let (line, _) = ctx.index.nearest(&format!("acd.break_states[{first}]"));
            return Err(ctx.error(
                &field,
                format!(
                    "break state {name} is listed twice (acd.break_states[{first}], line {line})"
                ),
            ));
        }
        names.insert(name.clone());
    }
    Ok(names)
}

/// What else a dialled `code` would reach, if anything: an account, the test line or a service
/// number. With `pins`, `code` followed by 4 to 8 digits counts too (the login code's dial
/// strings).
fn dialled_collision(code: &str, pins: bool, known: &Known<'_>) -> Option<String> {
    let hits = |number: &str| {
        number == code
            || (pins
                && number.strip_prefix(code).is_some_and(|pin| {
                    (4..=8).contains(&pin.len()) && pin.chars().all(|c| c.is_ascii_digit())
                }))
    };
    if let Some(i) = known.accounts.iter().position(|a| hits(&a.user)) {
        return Some(format!(
            "the user of accounts[{i}] ({})",
            known.accounts[i].user
        ));
    }
    if let Some(t) = known.calls.test_line.as_ref().filter(|t| hits(&t.number)) {
        return Some(format!("the test line's number ({})", t.number));
    }
    if let Some(i) = known.numbers.iter().position(|n| hits(&n.number)) {
        return Some(format!(
            "the service number numbers[{i}] ({})",
            known.numbers[i].number
        ));
    }
    None
}

const MAX_CODE_LEN: usize = 16;

fn validate_feature_codes(
    raw: RawFeatureCodes,
    known: &Known<'_>,
    ctx: &Ctx<'_>,
) -> Result<FeatureCodes, ConfigError> {
    for (key, code) in [("login", &raw.login), ("logout", &raw.logout)] {
        let field = format!("acd.feature_codes.{key}");
        let ok = !code.is_empty()
            && code.len() <= MAX_CODE_LEN
            && code.chars().all(|c| c.is_ascii_digit() || "*#".contains(c));
        if !ok {
            return Err(ctx.error(
                &field,
                format!("a feature code must be 1 to {MAX_CODE_LEN} digits, `*` or `#` (quote it), got {code:?}"),
            ));
        }
        if let Some(other) = dialled_collision(code, key == "login", known) {
            let what = if key == "login" {
                format!("{code} (or {code} followed by a PIN)")
            } else {
                code.clone()
            };
            return Err(ctx.error(
                &field,
                format!("dialling {what} would also reach {other}; a dialled number must reach one thing"),
            ));
        }
    }
    let shadowed = raw.logout == raw.login
        || raw
            .logout
            .strip_prefix(raw.login.as_str())
            .is_some_and(|pin| {
                (4..=8).contains(&pin.len()) && pin.chars().all(|c| c.is_ascii_digit())
            });
    if shadowed {
        return Err(ctx.error(
            "acd.feature_codes.logout",
            format!(
                "{} would also be read as the login code {} (followed by a PIN)",
                raw.logout, raw.login
            ),
        ));
    }
    Ok(FeatureCodes {
        login: raw.login,
        logout: raw.logout,
    })
}

fn validate_memory(
    raw: RawCallMemory,
    known: &Known<'_>,
    ctx: &Ctx<'_>,
) -> Result<MemoryConfig, ConfigError> {
    let validity = seconds(
        ctx,
        "acd.call_memory.validity_s",
        raw.validity_s,
        1,
        365 * DAY_S,
    )?;
    let mut service_numbers = BTreeSet::new();
    for (i, number) in raw.service_numbers.iter().enumerate() {
        let field = format!("acd.call_memory.service_numbers[{i}]");
        if !known.numbers.iter().any(|n| &n.number == number) {
            return Err(ctx.error(
                &field,
                format!("{number:?} is not a configured service number (numbers:)"),
            ));
        }
        if !service_numbers.insert(number.clone()) {
            return Err(ctx.error(&field, format!("{number} is listed twice")));
        }
    }
    Ok(MemoryConfig {
        validity: raw.enabled.then_some(validity),
        service_numbers,
        refuse_when_unavailable: matches!(raw.when_agent_unavailable, WhenUnavailable::Fallback),
    })
}

fn strategy_name(s: RawStrategy) -> &'static str {
    match s {
        RawStrategy::ReturningCustomer => "returning_customer",
        RawStrategy::RoundRobin => "round_robin",
        RawStrategy::RoundRobinMemory => "round_robin_memory",
        RawStrategy::FewestCalls => "fewest_calls",
        RawStrategy::FewestInboundCalls => "fewest_inbound_calls",
        RawStrategy::LongestTotalIdle => "longest_total_idle",
        RawStrategy::LongestIdleState => "longest_idle_state",
        RawStrategy::LeastTalkTime => "least_talk_time",
        RawStrategy::Linear => "linear",
        RawStrategy::RingAll => "ring_all",
        RawStrategy::Random => "random",
        RawStrategy::WeightedRandom => "weighted_random",
        RawStrategy::RingProgressively => "ring_progressively",
    }
}

/// A strategy other than `returning_customer`; `step` only for `ring_progressively`.
fn simple_strategy(s: RawStrategy, step: Duration) -> Strategy {
    match s {
        RawStrategy::ReturningCustomer | RawStrategy::RoundRobin => Strategy::RoundRobin,
        RawStrategy::RoundRobinMemory => Strategy::RoundRobinMemory,
        RawStrategy::FewestCalls => Strategy::FewestCalls,
        RawStrategy::FewestInboundCalls => Strategy::FewestInboundCalls,
        RawStrategy::LongestTotalIdle => Strategy::LongestTotalIdle,
        RawStrategy::LongestIdleState => Strategy::LongestIdleState,
        RawStrategy::LeastTalkTime => Strategy::LeastTalkTime,
        RawStrategy::Linear => Strategy::Linear,
        RawStrategy::RingAll => Strategy::RingAll,
        RawStrategy::Random => Strategy::Random,
        RawStrategy::WeightedRandom => Strategy::WeightedRandom,
        RawStrategy::RingProgressively => Strategy::RingProgressively { step },
    }
}

fn validate_skill_groups(
    raw: Vec<RawSkillGroup>,
    ctx: &Ctx<'_>,
) -> Result<Vec<QueueConfig>, ConfigError> {
    let mut queues: Vec<QueueConfig> = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let f = |key: &str| format!("skill_groups[{i}].{key}");
        if !is_flow_name(&g.name) {
            return Err(ctx.error(
                &f("name"),
                format!(
                    "a skill group name must be 1 to {MAX_NAME_LEN} letters, digits or `-_`, got {:?}",
                    g.name
                ),
            ));
        }
        if let Some(first) = queues.iter().position(|q| q.id.0 == g.name) {
            let what = format!("skill group {}", g.name);
            let msg = already(
                ctx,
                &what,
                &format!("skill_groups[{first}].name"),
                &format!("skill_groups[{first}]"),
            );
            return Err(ctx.error(&f("name"), msg));
        }
        let base = match (g.strategy, g.base_strategy) {
            (RawStrategy::ReturningCustomer, None) => RawStrategy::RoundRobin,
            (RawStrategy::ReturningCustomer, Some(RawStrategy::ReturningCustomer)) => {
                return Err(ctx.error(
                    &f("base_strategy"),
                    "the base of returning_customer must be another strategy",
                ));
            }
            (RawStrategy::ReturningCustomer, Some(base)) => base,
            (other, None) => other,
            (other, Some(_)) => {
                return Err(ctx.error(
                    &f("base_strategy"),
                    format!(
                        "only with strategy: returning_customer (this group's strategy is {})",
                        strategy_name(other)
                    ),
                ));
            }
        };
        let step = match (base, g.ring_step_s) {
            (RawStrategy::RingProgressively, step) => seconds(
                ctx,
                &f("ring_step_s"),
                step.unwrap_or(DEFAULT_RING_STEP_S),
                1,
                600,
            )?,
            (_, None) => Duration::ZERO,
            (other, Some(_)) => {
                return Err(ctx.error(
                    &f("ring_step_s"),
                    format!(
                        "only with ring_progressively (this group distributes by {})",
                        strategy_name(other)
                    ),
                ));
            }
        };
        let inner = simple_strategy(base, step);
        let strategy = if g.strategy == RawStrategy::ReturningCustomer {
            Strategy::ReturningCustomer(Box::new(inner))
        } else {
            inner
        };
        let mut q = QueueConfig::new(g.name.as_str(), strategy);
        if let Some(n) = g.max_waiting {
            if !(1..=100_000).contains(&n) {
                return Err(ctx.error(
                    &f("max_waiting"),
                    format!("must be between 1 and 100000 (leave it out for no limit), got {n}"),
                ));
            }
            q.max_len = Some(n);
        }
        let secs =
            |key: &str, value: Option<u64>, default: Duration, min: u64, max: u64| match value {
                Some(v) => seconds(ctx, &f(key), v, min, max),
                None => Ok(default),
            };
        q.max_wait = secs("max_wait_s", g.max_wait_s, q.max_wait, 1, DAY_S)?;
        q.announce_every = match g.announce_every_s {
            None | Some(0) => q.announce_every,
            Some(s) => Some(seconds(ctx, &f("announce_every_s"), s, 5, 3600)?),
        };
        q.service_level = secs(
            "service_level_s",
            g.service_level_s,
            q.service_level,
            1,
            3600,
        )?;
        q.priority_weight = secs(
            "priority_weight_s",
            g.priority_weight_s,
            q.priority_weight,
            0,
            DAY_S,
        )?;
        q.retry_delay = secs("retry_delay_s", g.retry_delay_s, q.retry_delay, 1, 3600)?;
        q.default_handle_time = secs(
            "default_handle_time_s",
            g.default_handle_time_s,
            q.default_handle_time,
            1,
            DAY_S,
        )?;
        queues.push(q);
    }
    Ok(queues)
}

fn is_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAME_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

fn validate_agents(
    raw: Vec<RawAgent>,
    queues: &[QueueConfig],
    known: &Known<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<ConfiguredAgent>, ConfigError> {
    let mut agents: Vec<ConfiguredAgent> = Vec::with_capacity(raw.len());
    // Desk-phone account → the agent (index) it rings.
    let mut phones: Vec<(String, usize)> = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let f = |key: &str| format!("agents[{i}].{key}");
        if !is_agent_id(&a.id) {
            return Err(ctx.error(
                &f("id"),
                format!(
                    "an agent id must be 1 to {MAX_NAME_LEN} letters, digits or `.-_` (quote it), got {:?}",
                    a.id
                ),
            ));
        }
        if let Some(first) = agents.iter().position(|x| x.config.id.0 == a.id) {
            let msg = already(
                ctx,
                &format!("agent {}", a.id),
                &format!("agents[{first}].id"),
                &format!("agents[{first}]"),
            );
            return Err(ctx.error(&f("id"), msg));
        }
        if let Some(name) = &a.name {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(ctx.error(
                    &f("name"),
                    "must be non-empty and free of control characters",
                ));
            }
        }
        let pin = match a.pin {
            None => None,
            Some(RawPin(pin)) => {
                if !(4..=8).contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()) {
                    // The PIN itself is not repeated: error messages end up in logs.
                    return Err(ctx.error(&f("pin"), "a PIN must be 4 to 8 digits (quote it)"));
                }
                if let Some(first) = agents.iter().position(|x| x.pin.as_ref() == Some(&pin)) {
                    let (line, _) = ctx.index.nearest(&format!("agents[{first}].pin"));
                    return Err(ctx.error(
                        &f("pin"),
                        format!(
                            "agents[{first}] (line {line}) has the same PIN; PINs must be unique"
                        ),
                    ));
                }
                Some(pin)
            }
        };
        let answer_mode = match a.answer_mode {
            RawAnswerMode::DeskPhone => {
                for key in ["mobile", "mobile_trunk"] {
                    let given = if key == "mobile" {
                        a.mobile.is_some()
                    } else {
                        a.mobile_trunk.is_some()
                    };
                    if given {
                        return Err(ctx.error(
                            &f(key),
                            "only with answer_mode: mobile (this agent answers on a desk phone)",
                        ));
                    }
                }
                let accounts = a.accounts.unwrap_or_default();
                for (j, user) in accounts.iter().enumerate() {
                    let field = format!("agents[{i}].accounts[{j}]");
                    if !known.accounts.iter().any(|x| &x.user == user) {
                        return Err(ctx.error(
                            &field,
                            format!("no SIP account has the user {user:?} (accounts:)"),
                        ));
                    }
                    if accounts[..j].contains(user) {
                        return Err(ctx.error(&field, format!("{user} is listed twice")));
                    }
                    if let Some((_, other)) = phones.iter().find(|(u, _)| u == user) {
                        let (line, _) = ctx.index.nearest(&format!("agents[{other}].accounts"));
                        return Err(ctx.error(
                            &field,
                            format!("account {user} already rings agents[{other}] (line {line}); a phone belongs to one agent"),
                        ));
                    }
                }
                phones.extend(accounts.iter().map(|u| (u.clone(), i)));
                AnswerMode::DeskPhone { accounts }
            }
            RawAnswerMode::Mobile => {
                if a.accounts.is_some() {
                    return Err(ctx.error(
                        &f("accounts"),
                        "only with answer_mode: desk_phone (this agent answers on a mobile)",
                    ));
                }
                let Some(number) = a.mobile else {
                    return Err(ctx.error(
                        &f("answer_mode"),
                        "answer_mode: mobile needs `mobile`, the number to ring",
                    ));
                };
                if !is_dial_number(&number) {
                    return Err(ctx.error(
                        &f("mobile"),
                        format!("a number must be 1 to {MAX_NUMBER_LEN} digits, `*`, `#` or `+`, got {number:?}"),
                    ));
                }
                AnswerMode::Mobile { number }
            }
            RawAnswerMode::Softphone => {
                for (key, given) in [
                    ("accounts", a.accounts.is_some()),
                    ("mobile", a.mobile.is_some()),
                    ("mobile_trunk", a.mobile_trunk.is_some()),
                ] {
                    if given {
                        return Err(ctx.error(
                            &f(key),
                            "not with answer_mode: softphone (the agent answers in the browser)",
                        ));
                    }
                }
                AnswerMode::Softphone
            }
        };
        let mobile_trunk = match (&answer_mode, a.mobile_trunk) {
            (AnswerMode::Mobile { .. }, Some(trunk)) => {
                if !known.trunks.iter().any(|t| t.name == trunk) {
                    return Err(
                        ctx.error(&f("mobile_trunk"), format!("no trunk is named {trunk:?}"))
                    );
                }
                Some(trunk)
            }
            (AnswerMode::Mobile { .. }, None) => match known.trunks.first() {
                Some(t) => Some(t.name.clone()),
                None => {
                    return Err(ctx.error(
                        &f("answer_mode"),
                        "answer_mode: mobile rings through a trunk, and no trunk is configured (trunks:)",
                    ));
                }
            },
            _ => None,
        };
        let mut config = AgentConfig::new(a.id.as_str());
        config.answer_mode = answer_mode;
        for (j, m) in a.skill_groups.iter().enumerate() {
            let field = if m.mapping {
                format!("agents[{i}].skill_groups[{j}].name")
            } else {
                format!("agents[{i}].skill_groups[{j}]")
            };
            if !queues.iter().any(|q| q.id.0 == m.name) {
                return Err(ctx.error(
                    &field,
                    format!("no skill group is named {:?} (skill_groups:)", m.name),
                ));
            }
            let id = QueueId(m.name.clone());
            if config.skill_groups.contains_key(&id) {
                return Err(ctx.error(&field, format!("skill group {} is listed twice", m.name)));
            }
            let d = Membership::default();
            config.skill_groups.insert(
                id,
                Membership {
                    order: m.order.unwrap_or(d.order),
                    weight: m.weight.unwrap_or(d.weight),
                },
            );
        }
        config.initial_state = match a.initial_state {
            RawInitialState::Idle => InitialState::Idle,
            RawInitialState::Busy => InitialState::Busy,
        };
        if let Some(s) = a.wrap_up_s {
            config.wrap_up = seconds(ctx, &f("wrap_up_s"), s, 0, 3600)?;
        }
        if let Some(s) = a.max_ring_s {
            config.max_ring = seconds(ctx, &f("max_ring_s"), s, 1, 600)?;
        }
        if let Some(n) = a.auto_busy_after {
            if !(1..=100).contains(&n) {
                return Err(ctx.error(
                    &f("auto_busy_after"),
                    format!(
                        "must be between 1 and 100 missed offers (leave it out to never), got {n}"
                    ),
                ));
            }
            config.auto_busy_after = Some(n);
        }
        if let Some(number) = &a.caller_id {
            if !is_dial_number(number) {
                return Err(ctx.error(
                    &f("caller_id"),
                    format!("a number must be 1 to {MAX_NUMBER_LEN} digits, `*`, `#` or `+`, got {number:?}"),
                ));
            }
        }
        let sign_in = match (a.sign_in, a.schedule) {
            (RawSignIn::Manual, None) => SignIn::Manual,
            (RawSignIn::AtStart, None) => SignIn::AtStart,
            (RawSignIn::Schedule, Some(s)) => SignIn::Schedule(validate_schedule(s, i, ctx)?),
            (RawSignIn::Schedule, None) => {
                return Err(ctx.error(
                    &f("sign_in"),
                    "sign_in: schedule needs a `schedule` (timezone and shifts)",
                ));
            }
            (_, Some(_)) => {
                return Err(ctx.error(&f("schedule"), "only with sign_in: schedule"));
            }
        };
        agents.push(ConfiguredAgent {
            config,
            name: a.name,
            pin,
            mobile_trunk,
            caller_id: a.caller_id,
            sign_in,
        });
    }
    Ok(agents)
}

/// `HH:MM`, 00:00 to 23:59; `24:00` too where `end_of_day` allows it.
fn minutes_of_day(text: &str, end_of_day: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    let minutes = h.checked_mul(60)? + m;
    let ok = m < 60 && (h < 24 || (end_of_day && minutes == DAY_MINUTES));
    ok.then_some(minutes)
}

fn validate_schedule(
    raw: RawSchedule,
    agent: usize,
    ctx: &Ctx<'_>,
) -> Result<Schedule, ConfigError> {
    let f = |key: &str| format!("agents[{agent}].schedule.{key}");
    if jiff::tz::TimeZone::get(&raw.timezone).is_err() {
        return Err(ctx.error(
            &f("timezone"),
            format!(
                "unknown time zone {:?}: expected an IANA name such as `Asia/Shanghai` or `UTC`",
                raw.timezone
            ),
        ));
    }
    if raw.shifts.is_empty() {
        return Err(ctx.error(&f("shifts"), "at least one shift is required"));
    }
    let mut shifts = Vec::with_capacity(raw.shifts.len());
    for (k, s) in raw.shifts.iter().enumerate() {
        let sf = |key: &str| format!("agents[{agent}].schedule.shifts[{k}].{key}");
        if s.days.is_empty() {
            return Err(ctx.error(
                &sf("days"),
                "at least one day is required (mon, tue, wed, thu, fri, sat, sun)",
            ));
        }
        let mut days = [false; 7];
        for (d, day) in s.days.iter().enumerate() {
            let slot = &mut days[*day as usize];
            if *slot {
                return Err(ctx.error(&format!("{}[{d}]", sf("days")), "listed twice"));
            }
            *slot = true;
        }
        let from = minutes_of_day(&s.from, false).ok_or_else(|| {
            ctx.error(
                &sf("from"),
                format!(
                    "expected a time of day HH:MM such as \"09:00\", got {:?}",
                    s.from
                ),
            )
        })?;
        let to = minutes_of_day(&s.to, true).ok_or_else(|| {
            ctx.error(
                &sf("to"),
                format!("expected a time of day HH:MM such as \"18:00\" (\"24:00\" for midnight), got {:?}", s.to),
            )
        })?;
        if from == to {
            return Err(ctx.error(
                &sf("to"),
                "a shift must not end when it starts (to earlier than from runs past midnight)",
            ));
        }
        shifts.push(Shift { days, from, to });
    }
    // Every rule `Schedule::new` checks was checked above, with the file's positions.
    Schedule::new(&raw.timezone, shifts).map_err(|e| ctx.error(&f("shifts"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Two accounts, a trunk, the default test line (9999) and service number 4000.
    const BASE: &str = "\
accounts:
  - user: \"1001\"
    password: \"demo-1001\"
  - user: \"1002\"
    password: \"demo-1002\"
trunks:
  - name: carrier
    address: \"127.0.0.1:5080\"
numbers:
  - number: \"4000\"
    flow: main
";

    fn load(extra: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(&format!("{BASE}{extra}"), "t.yaml")
    }

    /// The error's Display, after checking that it points at `field` on the line of the text
    /// containing `needle` (counted in BASE + `extra`).
    fn rejected(extra: &str, needle: &str, field: &str) -> String {
        let text = format!("{BASE}{extra}");
        let line = text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
            + 1;
        let err = load(extra).expect_err("config should be rejected");
        let shown = err.to_string();
        match &err {
            ConfigError::Invalid {
                line: l, field: f, ..
            } => assert_eq!((*l, f.as_str()), (line, field), "{shown}"),
            ConfigError::Io { .. } => panic!("{shown}"),
        }
        assert!(shown.starts_with(&format!("t.yaml:{line}:")), "{shown}");
        shown
    }

    const GROUPS: &str = "\
skill_groups:
  - name: sales
  - name: support
    strategy: ring_progressively
";

    #[test]
    fn absent_sections_mean_no_acd() {
        let config = load("").unwrap();
        assert_eq!(config.acd, AcdSection::default());
        assert_eq!(config.acd.feature_codes.login, "0000");
        assert_eq!(config.acd.feature_codes.logout, "0001");
        assert_eq!(config.acd.memory.validity, None);
        assert_eq!(config.acd.acd_config(), AcdConfig::default());
    }

    #[test]
    fn a_full_configuration_becomes_the_acd_types() {
        let text = "\
acd:
  break_states: [lunch, training, meeting]
  feature_codes:
    login: \"*50\"
    logout: \"*51\"
  call_memory:
    enabled: true
    validity_s: 3600
    service_numbers: [\"4000\"]
    when_agent_unavailable: fallback
skill_groups:
  - name: sales
    strategy: returning_customer
    base_strategy: ring_progressively
    ring_step_s: 7
    max_waiting: 50
    max_wait_s: 120
    announce_every_s: 30
    service_level_s: 15
    priority_weight_s: 90
    retry_delay_s: 2
    default_handle_time_s: 240
  - name: support
    strategy: returning_customer
agents:
  - id: \"8001\"
    name: \"Alice\"
    pin: \"4821\"
    answer_mode: desk_phone
    accounts: [\"1001\", \"1002\"]
    skill_groups:
      - sales
      - {name: support, order: 2, weight: 3}
    initial_state: busy
    wrap_up_s: 10
    max_ring_s: 20
    auto_busy_after: 3
    caller_id: \"+861088880001\"
    sign_in: schedule
    schedule:
      timezone: \"Asia/Shanghai\"
      shifts:
        - days: [mon, tue, wed, thu, fri]
          from: \"09:00\"
          to: \"18:00\"
  - id: bob.m
    answer_mode: mobile
    mobile: \"+8613800000001\"
    skill_groups: [support]
    sign_in: at_start
  - id: carol
    answer_mode: softphone
";
        let acd = load(text).unwrap().acd;
        assert_eq!(
            acd.break_states,
            ["lunch", "meeting", "training"].map(String::from).into()
        );
        assert_eq!(
            acd.feature_codes,
            FeatureCodes {
                login: "*50".into(),
                logout: "*51".into()
            }
        );
        assert_eq!(
            acd.memory,
            MemoryConfig {
                validity: Some(Duration::from_secs(3600)),
                service_numbers: ["4000".to_owned()].into(),
                refuse_when_unavailable: true,
            }
        );
        let mut sales = QueueConfig::new(
            "sales",
            Strategy::ReturningCustomer(Box::new(Strategy::RingProgressively {
                step: Duration::from_secs(7),
            })),
        );
        sales.max_len = Some(50);
        sales.max_wait = Duration::from_secs(120);
        sales.announce_every = Some(Duration::from_secs(30));
        sales.service_level = Duration::from_secs(15);
        sales.priority_weight = Duration::from_secs(90);
        sales.retry_delay = Duration::from_secs(2);
        sales.default_handle_time = Duration::from_secs(240);
        let support = QueueConfig::new(
            "support",
            Strategy::ReturningCustomer(Box::new(Strategy::RoundRobin)),
        );
        assert_eq!(acd.queues, [sales, support]);

        let alice = &acd.agents[0];
        let mut expected = AgentConfig::new("8001")
            .in_queue("sales")
            .in_queue_with("support", 2, 3);
        expected.answer_mode = AnswerMode::DeskPhone {
            accounts: vec!["1001".into(), "1002".into()],
        };
        expected.initial_state = InitialState::Busy;
        expected.wrap_up = Duration::from_secs(10);
        expected.max_ring = Duration::from_secs(20);
        expected.auto_busy_after = Some(3);
        assert_eq!(alice.config, expected);
        assert_eq!(alice.name.as_deref(), Some("Alice"));
        assert_eq!(alice.caller_id.as_deref(), Some("+861088880001"));
        assert_eq!(alice.mobile_trunk, None);
        let SignIn::Schedule(schedule) = &alice.sign_in else {
            panic!("{:?}", alice.sign_in);
        };
        assert_eq!(schedule.timezone(), "Asia/Shanghai");
        assert_eq!(
            schedule.shifts(),
            [Shift {
                days: [true, true, true, true, true, false, false],
                from: 9 * 60,
                to: 18 * 60
            }]
        );
        // The PIN opens Alice, and is never printed.
        assert_eq!(
            acd.agent_by_pin("4821").map(|a| &a.config.id.0[..]),
            Some("8001")
        );
        assert!(acd.agent_by_pin("0000").is_none());
        let debug = format!("{acd:?}");
        assert!(!debug.contains("4821"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(
            acd.agent_by_account("1002").map(|a| &a.config.id.0[..]),
            Some("8001")
        );

        let bob = &acd.agents[1];
        assert_eq!(
            bob.config.answer_mode,
            AnswerMode::Mobile {
                number: "+8613800000001".into()
            }
        );
        // The first trunk by default.
        assert_eq!(bob.mobile_trunk.as_deref(), Some("carrier"));
        assert_eq!(bob.sign_in, SignIn::AtStart);
        let carol = &acd.agents[2];
        assert_eq!(carol.config.answer_mode, AnswerMode::Softphone);
        assert_eq!(carol.sign_in, SignIn::Manual);
        assert!(carol.config.skill_groups.is_empty());
        // Agent defaults are the ACD core's.
        let d = AgentConfig::new("carol");
        assert_eq!(
            (
                carol.config.wrap_up,
                carol.config.max_ring,
                carol.config.auto_busy_after
            ),
            (d.wrap_up, d.max_ring, d.auto_busy_after)
        );

        // The engine builds its ACD from it: queues and agents, all logged out.
        let built = acd.build_acd(1);
        assert!(built.queue(&QueueId::from("sales")).is_some());
        assert_eq!(built.agents().count(), 3);
        assert!(built
            .agents()
            .all(|a| *a.state() == crate::acd::AgentState::LoggedOut));
    }

    #[test]
    fn strategies_and_their_options() {
        let shown = rejected(
            "skill_groups:\n  - name: sales\n    strategy: fastest\n",
            "strategy: fastest",
            "skill_groups[0].strategy",
        );
        assert!(shown.contains("unknown variant `fastest`"), "{shown}");
        let shown = rejected(
            "skill_groups:\n  - name: sales\n    strategy: linear\n    base_strategy: random\n",
            "base_strategy",
            "skill_groups[0].base_strategy",
        );
        assert!(
            shown.contains("only with strategy: returning_customer"),
            "{shown}"
        );
        rejected(
            "skill_groups:\n  - name: sales\n    strategy: returning_customer\n    base_strategy: returning_customer\n",
            "base_strategy",
            "skill_groups[0].base_strategy",
        );
        let shown = rejected(
            "skill_groups:\n  - name: sales\n    strategy: ring_all\n    ring_step_s: 3\n",
            "ring_step_s",
            "skill_groups[0].ring_step_s",
        );
        assert!(shown.contains("only with ring_progressively"), "{shown}");
        rejected(
            "skill_groups:\n  - name: sales\n    strategy: ring_progressively\n    ring_step_s: 0\n",
            "ring_step_s",
            "skill_groups[0].ring_step_s",
        );
        // Every documented name is read.
        for name in [
            "round_robin",
            "round_robin_memory",
            "fewest_calls",
            "fewest_inbound_calls",
            "longest_total_idle",
            "longest_idle_state",
            "least_talk_time",
            "linear",
            "ring_all",
            "random",
            "weighted_random",
            "ring_progressively",
            "returning_customer",
        ] {
            let config = load(&format!(
                "skill_groups:\n  - name: q\n    strategy: {name}\n"
            ))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let s = &config.acd.queues[0].strategy;
            if name == "ring_progressively" {
                assert_eq!(
                    *s,
                    Strategy::RingProgressively {
                        step: Duration::from_secs(5)
                    }
                );
            }
        }
        let config = load(GROUPS).unwrap();
        assert_eq!(config.acd.queues[0].strategy, Strategy::RoundRobin);
        // 0 or absent: never announce.
        let config = load("skill_groups:\n  - name: q\n    announce_every_s: 0\n").unwrap();
        assert_eq!(config.acd.queues[0].announce_every, None);
    }

    #[test]
    fn skill_group_names_are_unique_and_well_formed() {
        let shown = rejected_last(
            "skill_groups:\n  - name: sales\n  - name: support\n  - name: sales\n",
            "name: sales",
            "skill_groups[2].name",
        );
        assert!(
            shown.ends_with("skill group sales is already defined (skill_groups[0], line 13)"),
            "{shown}"
        );
        rejected(
            "skill_groups:\n  - name: \"sales team\"\n",
            "sales team",
            "skill_groups[0].name",
        );
        rejected(
            "skill_groups:\n  - name: q\n    max_waiting: 0\n",
            "max_waiting",
            "skill_groups[0].max_waiting",
        );
    }

    /// `rejected` on the last line containing `needle` (for duplicates of earlier lines).
    fn rejected_last(extra: &str, needle: &str, field: &str) -> String {
        let text = format!("{BASE}{extra}");
        let line = text
            .lines()
            .collect::<Vec<_>>()
            .iter()
            .rposition(|l| l.contains(needle))
            .expect("needle")
            + 1;
        let err = load(extra).expect_err("config should be rejected");
        let shown = err.to_string();
        let ConfigError::Invalid {
            line: l, field: f, ..
        } = &err
        else {
            panic!("{shown}");
        };
        assert_eq!((*l, f.as_str()), (line, field), "{shown}");
        shown
    }

    #[test]
    fn agents_are_unique_by_id_pin_and_phone() {
        let shown = rejected_last(
            &format!("{GROUPS}agents:\n  - id: \"8001\"\n  - id: \"8002\"\n  - id: \"8001\"\n"),
            "id: \"8001\"",
            "agents[2].id",
        );
        assert!(
            shown.contains("agent 8001 is already defined (agents[0], line 17)"),
            "{shown}"
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: \"80 01\"\n"),
            "80 01",
            "agents[0].id",
        );
        let shown = rejected_last(
            &format!(
                "{GROUPS}agents:\n  - id: a\n    pin: \"4821\"\n  - id: b\n    pin: \"4821\"\n"
            ),
            "pin:",
            "agents[1].pin",
        );
        assert!(shown.contains("agents[0]"), "{shown}");
        assert!(!shown.contains("4821"), "a PIN is never shown: {shown}");
        for bad in ["\"123\"", "\"123456789\"", "\"12a4\""] {
            let shown = rejected(
                &format!("{GROUPS}agents:\n  - id: a\n    pin: {bad}\n"),
                "pin:",
                "agents[0].pin",
            );
            assert!(shown.contains("4 to 8 digits"), "{shown}");
        }
        let shown = rejected(
            &format!(
                "{GROUPS}agents:\n  - id: a\n    accounts: [\"1001\"]\n  - id: b\n    accounts: [\"1002\", \"1001\"]\n"
            ),
            "\"1002\", \"1001\"",
            "agents[1].accounts[1]",
        );
        assert!(
            shown.contains("account 1001 already rings agents[0]"),
            "{shown}"
        );
        let shown = rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    accounts: [\"1003\"]\n"),
            "1003",
            "agents[0].accounts[0]",
        );
        assert!(
            shown.contains("no SIP account has the user \"1003\""),
            "{shown}"
        );
    }

    #[test]
    fn agents_name_configured_skill_groups() {
        let shown = rejected(
            &format!(
                "{GROUPS}agents:\n  - id: a\n    skill_groups:\n      - sales\n      - billing\n"
            ),
            "billing",
            "agents[0].skill_groups[1]",
        );
        assert!(
            shown.contains("no skill group is named \"billing\""),
            "{shown}"
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    skill_groups:\n      - sales\n      - {{name: billing, order: 1}}\n"),
            "billing",
            "agents[0].skill_groups[1].name",
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    skill_groups: [sales, sales]\n"),
            "skill_groups: [sales",
            "agents[0].skill_groups[1]",
        );
        let shown = rejected(
            &format!(
                "{GROUPS}agents:\n  - id: a\n    skill_groups:\n      - {{name: sales, rank: 1}}\n"
            ),
            "rank",
            "agents[0].skill_groups[0].rank",
        );
        assert!(shown.contains("unknown field `rank`"), "{shown}");
    }

    #[test]
    fn answer_modes_need_their_own_keys() {
        let shown = rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    answer_mode: mobile\n"),
            "answer_mode: mobile",
            "agents[0].answer_mode",
        );
        assert!(shown.contains("needs `mobile`"), "{shown}");
        let shown = rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    answer_mode: mobile\n    mobile: \"138\"\n    mobile_trunk: telco\n"),
            "mobile_trunk",
            "agents[0].mobile_trunk",
        );
        assert!(shown.contains("no trunk is named \"telco\""), "{shown}");
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    mobile: \"138\"\n"),
            "mobile:",
            "agents[0].mobile",
        );
        rejected_last(
            &format!("{GROUPS}agents:\n  - id: a\n    answer_mode: mobile\n    mobile: \"138\"\n    accounts: [\"1001\"]\n"),
            "accounts:",
            "agents[0].accounts",
        );
        rejected_last(
            &format!("{GROUPS}agents:\n  - id: a\n    answer_mode: softphone\n    accounts: []\n"),
            "accounts:",
            "agents[0].accounts",
        );
        rejected(
            &format!(
                "{GROUPS}agents:\n  - id: a\n    answer_mode: mobile\n    mobile: \"call me\"\n"
            ),
            "call me",
            "agents[0].mobile",
        );
        // Without any trunk a mobile agent can not be rung.
        let err = Config::from_yaml_str(
            "agents:\n  - id: a\n    answer_mode: mobile\n    mobile: \"138\"\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "t.yaml:3:5: agents[0].answer_mode: answer_mode: mobile rings through a trunk"
            ),
            "{err}"
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    answer_mode: pager\n"),
            "pager",
            "agents[0].answer_mode",
        );
    }

    #[test]
    fn break_states_are_unique_names() {
        let shown = rejected_last(
            "acd:\n  break_states:\n    - lunch\n    - training\n    - lunch\n",
            "- lunch",
            "acd.break_states[2]",
        );
        assert!(
            shown.contains("break state lunch is listed twice"),
            "{shown}"
        );
        rejected(
            "acd:\n  break_states: [idle]\n",
            "break_states",
            "acd.break_states[0]",
        );
        rejected(
            "acd:\n  break_states: [\"coffee break\"]\n",
            "break_states",
            "acd.break_states[0]",
        );
    }

    #[test]
    fn feature_codes_reach_nothing_else() {
        let codes = |login: &str, logout: &str| {
            format!("acd:\n  feature_codes:\n    login: \"{login}\"\n    logout: \"{logout}\"\n")
        };
        rejected(&codes("00a0", "0001"), "login:", "acd.feature_codes.login");
        rejected(&codes("0000", ""), "logout:", "acd.feature_codes.logout");
        let shown = rejected(
            &codes("0000", "0000"),
            "logout:",
            "acd.feature_codes.logout",
        );
        assert!(
            shown.contains("would also be read as the login code"),
            "{shown}"
        );
        // An account, the test line or a service number.
        let shown = rejected(&codes("1001", "0001"), "login:", "acd.feature_codes.login");
        assert!(shown.contains("the user of accounts[0] (1001)"), "{shown}");
        let shown = rejected(
            &codes("0000", "9999"),
            "logout:",
            "acd.feature_codes.logout",
        );
        assert!(shown.contains("the test line's number"), "{shown}");
        let shown = rejected(
            &codes("0000", "4000"),
            "logout:",
            "acd.feature_codes.logout",
        );
        assert!(
            shown.contains("the service number numbers[0] (4000)"),
            "{shown}"
        );
        // The login code followed by a PIN-shaped tail would be ambiguous with an account.
        let err = Config::from_yaml_str(
            "accounts:\n  - user: \"88881234\"\n    password: \"demo-1001\"\nacd:\n  feature_codes:\n    login: \"8888\"\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("t.yaml:6:5: acd.feature_codes.login: dialling 8888 (or 8888 followed by a PIN) would also reach the user of accounts[0] (88881234)"),
            "{err}"
        );
        // A tail too short to be a PIN is no collision.
        load(&codes("10", "0001")).unwrap();
        // Star codes are fine.
        let acd = load(&codes("*50", "*51#")).unwrap().acd;
        assert_eq!(acd.feature_codes.logout, "*51#");
    }

    #[test]
    fn call_memory_settings() {
        let config = load("acd:\n  call_memory:\n    validity_s: 60\n").unwrap();
        assert_eq!(config.acd.memory.validity, None, "off unless enabled");
        let config = load("acd:\n  call_memory:\n    enabled: true\n").unwrap();
        assert_eq!(config.acd.memory.validity, Some(DEFAULT_MEMORY_VALIDITY));
        assert!(!config.acd.memory.refuse_when_unavailable);
        rejected(
            "acd:\n  call_memory:\n    enabled: true\n    validity_s: 0\n",
            "validity_s",
            "acd.call_memory.validity_s",
        );
        let shown = rejected(
            "acd:\n  call_memory:\n    service_numbers: [\"4000\", \"5000\"]\n",
            "service_numbers",
            "acd.call_memory.service_numbers[1]",
        );
        assert!(shown.contains("not a configured service number"), "{shown}");
        rejected(
            "acd:\n  call_memory:\n    when_agent_unavailable: wait\n",
            "when_agent_unavailable",
            "acd.call_memory.when_agent_unavailable",
        );
    }

    #[test]
    fn schedules_go_with_sign_in_schedule() {
        let agent = |sign_in: &str, schedule: &str| {
            format!("agents:\n  - id: a\n    answer_mode: softphone\n    sign_in: {sign_in}\n{schedule}")
        };
        let shift = |days: &str, from: &str, to: &str| {
            format!("    schedule:\n      timezone: \"Asia/Shanghai\"\n      shifts:\n        - days: {days}\n          from: \"{from}\"\n          to: \"{to}\"\n")
        };
        let shown = rejected(&agent("schedule", ""), "sign_in", "agents[0].sign_in");
        assert!(shown.contains("needs a `schedule`"), "{shown}");
        rejected(
            &agent("at_start", &shift("[mon]", "09:00", "18:00")),
            "schedule:",
            "agents[0].schedule",
        );
        let shown = rejected(
            &agent(
                "schedule",
                "    schedule:\n      timezone: \"Mars/Olympus_Mons\"\n      shifts: []\n",
            ),
            "Mars",
            "agents[0].schedule.timezone",
        );
        assert!(shown.contains("unknown time zone"), "{shown}");
        rejected(
            &agent(
                "schedule",
                "    schedule:\n      timezone: UTC\n      shifts: []\n",
            ),
            "shifts",
            "agents[0].schedule.shifts",
        );
        for bad in ["9:00", "25:00", "09:60", "24:00", "nine"] {
            let shown = rejected(
                &agent("schedule", &shift("[mon]", bad, "18:00")),
                "from:",
                "agents[0].schedule.shifts[0].from",
            );
            assert!(shown.contains("HH:MM"), "{shown}");
        }
        rejected(
            &agent("schedule", &shift("[mon]", "09:00", "24:01")),
            "to:",
            "agents[0].schedule.shifts[0].to",
        );
        rejected(
            &agent("schedule", &shift("[mon]", "09:00", "09:00")),
            "to:",
            "agents[0].schedule.shifts[0].to",
        );
        let shown = rejected(
            &agent("schedule", &shift("[]", "09:00", "18:00")),
            "days:",
            "agents[0].schedule.shifts[0].days",
        );
        assert!(shown.contains("at least one day"), "{shown}");
        rejected(
            &agent("schedule", &shift("[mon, funday]", "09:00", "18:00")),
            "days:",
            "agents[0].schedule.shifts[0].days[1]",
        );
        // An overnight shift and a whole day are fine.
        let config = load(&agent("schedule", &shift("[fri]", "22:00", "06:00"))).unwrap();
        assert!(matches!(config.acd.agents[0].sign_in, SignIn::Schedule(_)));
        load(&agent("schedule", &shift("[sat, sun]", "00:00", "24:00"))).unwrap();
    }

    #[test]
    fn timing_bounds() {
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    max_ring_s: 0\n"),
            "max_ring_s",
            "agents[0].max_ring_s",
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    auto_busy_after: 0\n"),
            "auto_busy_after",
            "agents[0].auto_busy_after",
        );
        rejected(
            &format!("{GROUPS}agents:\n  - id: a\n    caller_id: \"+86 10\"\n"),
            "caller_id",
            "agents[0].caller_id",
        );
        rejected(
            "skill_groups:\n  - name: q\n    max_wait_s: 0\n",
            "max_wait_s",
            "skill_groups[0].max_wait_s",
        );
    }
}
