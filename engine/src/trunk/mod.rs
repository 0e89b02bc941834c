//! Trunks as a carrier sees them: which trunk an outbound call takes, the callee's number in the
//! carrier's format, the display number (外显号), the outbound blacklist, the quota (欠费) and
//! the channel cap; digest credentials for the carrier's challenges; registration to the carrier.
//!
//! All of it is pure logic on values: [`Trunks::plan_outbound`] is the one entry point the call
//! code asks before dialling out; [`register::Registration`] is the REGISTER client the endpoint
//! drives (`endpoint/trunks.rs`).
//!
//! - [`numbers`]: E.164 inside, carrier format on the wire.
//! - [`callerid`]: region lookup (longest prefix) and display number groups with rotation.
//! - [`quota`]: outbound minutes per calendar day or month.
//! - [`auth`]: answering `WWW-Authenticate` / `Proxy-Authenticate`.
//! - [`register`]: the REGISTER state machine.
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::cdr::MissedReason;
use crate::config::{Blacklist, CallerIdPolicy, Config, NumberFormat, Trunk};

pub mod auth;
pub mod callerid;
pub mod numbers;
pub mod quota;
pub mod register;

pub use auth::{authorize, AuthError, ChallengeKind, Credentials, ReadChallenge};
pub use callerid::{CallerIdGroup, Region, RegionTable};
pub use numbers::{normalize, to_carrier, InvalidNumber, E164};
pub use quota::{Quota, QuotaLimit};
pub use register::{RegisterSettings, Registration, RegistrationEvent, RegistrationStatus};

/// How an outbound call goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPlan {
    pub trunk: String,
    pub address: SocketAddr,
    pub callee_e164: String,
    /// The callee in the carrier's format, for the Request-URI and To.
    pub callee_wire: String,
    /// The display number, E.164; `None` when the trunk has no `caller_id:` policy (or the policy
    /// found none): the call code keeps its own From.
    pub caller_id: Option<String>,
    /// The display number in the carrier's format, for From (and P-Asserted-Identity).
    pub caller_id_wire: Option<String>,
}

/// Why an outbound call is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefusal {
    #[error("not a valid number: {0}")]
    InvalidNumber(InvalidNumber),
    #[error("the number is on the outbound blacklist")]
    Blacklisted,
    #[error("no such trunk, or no trunk configured")]
    NoTrunk,
    #[error("the trunk is disabled")]
    TrunkDisabled,
    /// The display number the policy chose is a disabled trunk number.
    #[error("the display number {number} is a disabled trunk number")]
    TrunkNumberDisabled { number: String },
    #[error("the trunk's quota for this period is used up")]
    Arrears,
    /// `max_concurrent_calls` reached.
    #[error("every channel of the trunk is busy")]
    Busy,
}

impl OutboundRefusal {
    /// The missed-call reason the call record carries.
    ///
    /// Busy and an unusable trunk are the carrier side failing to carry the call (中继故障),
    /// as a 503 from the carrier would be.
    pub fn missed_reason(&self) -> MissedReason {
        match self {
            OutboundRefusal::InvalidNumber(_) => MissedReason::InvalidNumber,
            OutboundRefusal::Blacklisted => MissedReason::OutboundBlacklisted,
            OutboundRefusal::NoTrunk | OutboundRefusal::TrunkDisabled | OutboundRefusal::Busy => {
                MissedReason::TrunkFailure
            }
            OutboundRefusal::TrunkNumberDisabled { .. } => MissedReason::TrunkNumberDisabled,
            OutboundRefusal::Arrears => MissedReason::Arrears,
        }
    }
}

/// The trunks, with the state outbound calls share: display number rotation, quota usage and
/// channel counts. One owner (the endpoint); nothing here reads a clock.
#[derive(Debug, Clone)]
pub struct Trunks {
    trunks: Vec<Trunk>,
    groups: HashMap<String, CallerIdGroup>,
    regions: RegionTable,
    quota: Quota,
    active: HashMap<String, u32>,
    blacklist: Blacklist,
}

impl Trunks {
    pub fn new(config: &Config) -> Trunks {
        let mut quota = Quota::new();
        for t in &config.trunks {
            if let Some(q) = &t.quota {
                if let Some(limit) = QuotaLimit::new(q.outbound_minutes, q.period, &q.timezone) {
                    quota.set_limit(&t.name, limit);
                }
            }
        }
        Trunks {
            trunks: config.trunks.clone(),
            groups: config
                .caller_id_groups
                .iter()
                .map(|g| (g.name.clone(), CallerIdGroup::new(g)))
                .collect(),
            regions: RegionTable::new(&config.regions),
            quota,
            active: HashMap::new(),
            blacklist: config.blacklist.clone(),
        }
    }

    fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Plan an outbound call to what a person dialled. `trunk`: a trunk name, or `None` for the
    /// first enabled trunk. `agent_caller_id`: the agent's exclusive display number, if any.
    ///
    /// Checked in this order: trunk, number, blacklist, quota, channels, display number. Nothing
    /// is counted: call [`Trunks::call_started`] when the INVITE leaves.
    pub fn plan_outbound(
        &mut self,
        dialled: &str,
        trunk: Option<&str>,
        agent_caller_id: Option<&str>,
        unix_ms: i64,
    ) -> Result<OutboundPlan, OutboundRefusal> {
        let Trunks {
            trunks,
            groups,
            regions,
            quota,
            active,
            blacklist,
        } = self;
        let t = match trunk {
            Some(name) => trunks
                .iter()
                .find(|t| t.name == name)
                .ok_or(OutboundRefusal::NoTrunk)?,
            None => trunks
                .iter()
                .find(|t| t.enabled)
                .ok_or(OutboundRefusal::NoTrunk)?,
        };
        if !t.enabled {
            return Err(OutboundRefusal::TrunkDisabled);
        }
        let callee =
            normalize(dialled, &t.number_format).map_err(OutboundRefusal::InvalidNumber)?;
        // Both forms: a list written in E.164 and a list written as people dial.
        if blacklist.blocks_outbound(callee.as_str()) || blacklist.blocks_outbound(dialled) {
            return Err(OutboundRefusal::Blacklisted);
        }
        if quota.over_quota(&t.name, unix_ms) {
            return Err(OutboundRefusal::Arrears);
        }
        if let Some(max) = t.max_concurrent_calls {
            if active.get(&t.name).copied().unwrap_or(0) >= max {
                return Err(OutboundRefusal::Busy);
            }
        }
        let disabled = |n: &str| t.numbers.iter().any(|x| x.number == n && !x.enabled);
        let caller_id = match &t.caller_id {
            CallerIdPolicy::Unset => None,
            CallerIdPolicy::Fixed { number } => Some(number.clone()),
            CallerIdPolicy::Agent { fallback } => agent_caller_id
                .and_then(|a| normalize(a, &t.number_format).ok())
                .map(E164::into_string)
                .or_else(|| fallback.clone()),
            CallerIdPolicy::Region { group, fallback } => groups
                .get_mut(group)
                .and_then(|g| g.pick_where(callee.as_str(), regions, |n| !disabled(n)))
                .or_else(|| fallback.clone()),
        };
        if let Some(number) = caller_id.as_deref().filter(|n| disabled(n)) {
            return Err(OutboundRefusal::TrunkNumberDisabled {
                number: number.to_owned(),
            });
        }
        let fmt = &t.number_format;
        let caller_id_wire = caller_id
            .as_deref()
            .and_then(E164::parse)
            .map(|n| to_carrier(&n, fmt));
        Ok(OutboundPlan {
            trunk: t.name.clone(),
            address: t.address,
            callee_wire: to_carrier(&callee, fmt),
            callee_e164: callee.into_string(),
            caller_id,
            caller_id_wire,
        })
    }

    /// An outbound call through `trunk` has left (its INVITE is out).
    pub fn call_started(&mut self, trunk: &str) {
        *self.active.entry(trunk.to_owned()).or_insert(0) += 1;
    }

    /// An outbound call through `trunk` ended at `unix_ms` after `talk_seconds` of conversation.
    pub fn call_ended(&mut self, trunk: &str, talk_seconds: u64, unix_ms: i64) {
        if let Some(n) = self.active.get_mut(trunk) {
            *n = n.saturating_sub(1);
        }
        self.quota.add_usage(trunk, talk_seconds, unix_ms);
    }

    /// Calls through `trunk` in progress.
    pub fn active_calls(&self, trunk: &str) -> u32 {
        self.active.get(trunk).copied().unwrap_or(0)
    }

    /// Whether `number_e164` is one of `trunk`'s numbers and switched off (中继号码停用).
    pub fn inbound_number_disabled(&self, trunk: &str, number_e164: &str) -> bool {
        self.trunk(trunk).is_some_and(|t| {
            t.numbers
                .iter()
                .any(|n| n.number == number_e164 && !n.enabled)
        })
    }

    /// A From or To user part received from `trunk`, as E.164 by the trunk's number format
    /// (`None` for an unknown trunk or something that is not a number).
    pub fn normalize_inbound(&self, trunk: &str, number: &str) -> Option<E164> {
        let fmt: NumberFormat = self.trunk(trunk)?.number_format.clone();
        normalize(number, &fmt).ok()
    }

    pub fn credentials(&self, trunk: &str) -> Option<&Credentials> {
        self.trunk(trunk)?.auth.as_ref()
    }

    /// The outbound blacklist [`Trunks::plan_outbound`] checks from now on.
    pub fn set_blacklist(&mut self, blacklist: Blacklist) {
        self.blacklist = blacklist;
    }

    /// The quota counters, to seed at start-up ([`Quota::period_start_ms`], [`Quota::seed`]).
    pub fn quota_mut(&mut self) -> &mut Quota {
        &mut self.quota
    }

    pub fn regions(&self) -> &RegionTable {
        &self.regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
trunks:
  - name: carrier
    address: "192.0.2.1:5060"
    auth: { username: "sb-trunk", password: "s3cret" }
    numbers:
      - { number: "+861088880000", enabled: true }
      - { number: "+862188880000", enabled: false }
    number_format:
      country_code: "86"
      national_prefix: "0"
      outbound: national
    caller_id:
      mode: region
      number: "+861088880000"
      group: main
    quota:
      outbound_minutes: 1
      period: day
    max_concurrent_calls: 2
  - name: fixed
    address: "192.0.2.2:5060"
    caller_id: { mode: fixed, number: "+862188880001" }
    number_format: { outbound: e164 }
  - name: agents
    address: "192.0.2.3:5060"
    caller_id: { mode: agent, number: "+862188880002" }
  - name: off
    address: "192.0.2.4:5060"
    enabled: false
caller_id_groups:
  - name: main
    numbers:
      - { number: "+861088880000", city: Beijing }
      - { number: "+862188880000", city: Shanghai }
      - { number: "+862088880000", city: Guangzhou }
    default: ["+861088880000"]
regions:
  prefixes:
    - { prefix: "+8610", city: Beijing, province: Beijing }
    - { prefix: "+8621", city: Shanghai, province: Shanghai }
    - { prefix: "+8620", city: Guangzhou, province: Guangdong }
    - { prefix: "+86769", city: Dongguan, province: Guangdong }
  capitals: { Guangdong: Guangzhou }
blacklist:
  outbound: ["+8613900000000", "+86139111*"]
"#;

    fn trunks() -> Trunks {
        Trunks::new(&Config::from_yaml_str(CONFIG, "t.yaml").unwrap())
    }

    const NOON: i64 = 1_773_144_000_000; // 2026-03-10T12:00:00Z

    #[test]
    fn a_call_by_region_in_the_carriers_format() {
        let mut t = trunks();
        let plan = t.plan_outbound("0769 1234 5678", None, None, NOON).unwrap();
        assert_eq!(
            plan,
            OutboundPlan {
                trunk: "carrier".into(),
                address: "192.0.2.1:5060".parse().unwrap(),
                callee_e164: "+8676912345678".into(),
                callee_wire: "076912345678".into(),
                caller_id: Some("+862088880000".into()),
                caller_id_wire: Some("02088880000".into()),
            }
        );
        // Shanghai's number is disabled on this trunk: the default list instead.
        let plan = t.plan_outbound("021 1234 5678", None, None, NOON).unwrap();
        assert_eq!(plan.caller_id.as_deref(), Some("+861088880000"));
    }

    #[test]
    fn fixed_and_agent_display_numbers() {
        let mut t = trunks();
        let plan = t
            .plan_outbound("13800000000", Some("fixed"), Some("+861012345678"), NOON)
            .unwrap();
        assert_eq!(plan.caller_id.as_deref(), Some("+862188880001"));
        assert_eq!(plan.callee_wire, "+8613800000000");
        let plan = t
            .plan_outbound("13800000000", Some("agents"), Some("010 1234 5678"), NOON)
            .unwrap();
        assert_eq!(plan.caller_id.as_deref(), Some("+861012345678"));
        let plan = t
            .plan_outbound("13800000000", Some("agents"), None, NOON)
            .unwrap();
        assert_eq!(plan.caller_id.as_deref(), Some("+862188880002"));
    }

    #[test]
    fn refusals_and_their_missed_call_reasons() {
        let mut t = trunks();
        let refused = |t: &mut Trunks, dialled: &str, trunk: Option<&str>| {
            t.plan_outbound(dialled, trunk, None, NOON).unwrap_err()
        };
        let r = refused(&mut t, "12ab", None);
        assert!(matches!(r, OutboundRefusal::InvalidNumber(_)));
        assert_eq!(r.missed_reason(), MissedReason::InvalidNumber);
        for blocked in ["13900000000", "+86 139 0000 0000", "13911100000"] {
            let r = refused(&mut t, blocked, None);
            assert_eq!(r, OutboundRefusal::Blacklisted, "{blocked}");
            assert_eq!(r.missed_reason(), MissedReason::OutboundBlacklisted);
        }
        assert!(t.plan_outbound("13911200000", None, None, NOON).is_ok());
        let r = refused(&mut t, "13800000000", Some("nowhere"));
        assert_eq!(r, OutboundRefusal::NoTrunk);
        assert_eq!(r.missed_reason(), MissedReason::TrunkFailure);
        assert_eq!(
            refused(&mut t, "13800000000", Some("off")),
            OutboundRefusal::TrunkDisabled
        );

        // Two channels.
        t.call_started("carrier");
        t.call_started("carrier");
        let r = refused(&mut t, "13800000000", None);
        assert_eq!(r, OutboundRefusal::Busy);
        t.call_ended("carrier", 59, NOON);
        assert!(t.plan_outbound("13800000000", None, None, NOON).is_ok());
        // One minute a day: 59 s used, 1 s left; then arrears until midnight UTC.
        t.call_ended("carrier", 1, NOON);
        assert_eq!(t.active_calls("carrier"), 0);
        let r = refused(&mut t, "13800000000", None);
        assert_eq!(r, OutboundRefusal::Arrears);
        assert_eq!(r.missed_reason(), MissedReason::Arrears);
        let tomorrow = NOON + 12 * 3_600_000;
        assert!(t.plan_outbound("13800000000", None, None, tomorrow).is_ok());
    }

    #[test]
    fn a_blacklist_set_at_run_time_replaces_the_configured_one() {
        let mut t = trunks();
        assert!(t.plan_outbound("13700000000", None, None, NOON).is_ok());
        t.set_blacklist(Blacklist {
            inbound: Vec::new(),
            outbound: vec![crate::config::NumberPattern::parse("+86137*").unwrap()],
        });
        assert_eq!(
            t.plan_outbound("137 0000 0000", None, None, NOON),
            Err(OutboundRefusal::Blacklisted)
        );
        assert!(t.plan_outbound("13900000000", None, None, NOON).is_ok());
    }

    #[test]
    fn a_disabled_display_number_refuses_the_call() {
        let text = CONFIG.replace(
            "caller_id: { mode: fixed, number: \"+862188880001\" }",
            "caller_id: { mode: fixed, number: \"+862188880001\" }\n    numbers: [{ number: \"+862188880001\", enabled: false }]",
        );
        let mut t = Trunks::new(&Config::from_yaml_str(&text, "t.yaml").unwrap());
        let r = t
            .plan_outbound("13800000000", Some("fixed"), None, NOON)
            .unwrap_err();
        assert_eq!(r.missed_reason(), MissedReason::TrunkNumberDisabled);
    }

    #[test]
    fn inbound_numbers_and_credentials() {
        let t = trunks();
        assert!(t.inbound_number_disabled("carrier", "+862188880000"));
        assert!(!t.inbound_number_disabled("carrier", "+861088880000"));
        assert!(!t.inbound_number_disabled("carrier", "+869999999999"));
        assert_eq!(
            t.normalize_inbound("carrier", "02188880000")
                .map(E164::into_string),
            Some("+862188880000".into())
        );
        assert_eq!(
            t.credentials("carrier").map(|c| c.username.as_str()),
            Some("sb-trunk")
        );
        assert!(t.credentials("fixed").is_none());
        // The password never shows in Debug output.
        let shown = format!("{:?}", t.credentials("carrier"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
