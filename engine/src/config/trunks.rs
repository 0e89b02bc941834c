//! What a carrier needs of a trunk: outbound credentials and registration, the trunk numbers
//! (中继号码), the carrier's number format, the display number policy (外显号), a quota, a channel
//! cap; and the top-level `caller_id_groups:` (外显号码组) and `regions:` (号码归属地) that the
//! region policy picks from.
//!
//! The raw structs mirror the YAML like those in `raw`; the validation here produces the typed
//! values [`super::Trunk`] and [`super::Config`] carry. Numbers are E.164 (`+` then 6–15 digits)
//! everywhere in the file: the carrier's format is applied on the wire only.
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, ConfigWarning, Ctx, Password, Trunk};

/// Outbound digest credentials: answer the carrier's 401/407 on our INVITEs and REGISTERs.
/// `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkCredentials {
    pub username: String,
    pub password: Password,
}

/// `register:` — REGISTER to the carrier, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegister {
    /// The expiry asked for, in seconds.
    pub expires_s: u32,
    /// The AOR `sip:user@domain` (From and To).
    pub user: String,
    pub domain: String,
    /// The Request-URI: `sip:<domain>` (RFC 3261 §10.2), or `sip:<address>` when the domain is
    /// the address' host, so that a non-default port is kept.
    pub registrar_uri: String,
}

/// A trunk number (中继号码, DID) the trunk carries, E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkNumber {
    pub number: String,
    /// `false`: calls to it and calls showing it are refused as "trunk number disabled".
    pub enabled: bool,
}

/// How numbers are written on the wire towards the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// `+8613800000000`.
    E164,
    /// `008613800000000`: the international prefix, then the country code.
    International,
    /// `013800000000`, `01088880000`: the national prefix, then the national number; numbers of
    /// other countries go out in the international format.
    National,
    /// `8613800000000`: E.164 without the `+`.
    Digits,
}

/// `number_format:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberFormat {
    /// Digits only (`86`).
    pub country_code: String,
    /// The trunk prefix dialled before an area code (`0`); may be empty.
    pub national_prefix: String,
    /// The prefix dialled before a country code (`00`).
    pub international_prefix: String,
    pub outbound: WireFormat,
}

impl Default for NumberFormat {
    fn default() -> Self {
        NumberFormat {
            country_code: "86".into(),
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            outbound: WireFormat::E164,
        }
    }
}

/// `caller_id:` — which display number (外显号) the called customer sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CallerIdPolicy {
    /// No `caller_id:`: Switchboard sets none; the call code keeps what it has.
    #[default]
    Unset,
    /// Always this number.
    Fixed { number: String },
    /// The agent's exclusive number, else `fallback`.
    Agent { fallback: Option<String> },
    /// A number of the group by the callee's region, else `fallback`.
    Region {
        group: String,
        fallback: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    Day,
    #[default]
    Month,
}

/// `quota:` — outbound minutes per calendar period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkQuota {
    pub outbound_minutes: u64,
    pub period: QuotaPeriod,
    /// An IANA zone name (`Asia/Shanghai`) whose calendar the period follows; `UTC` by default.
    pub timezone: String,
}

/// `caller_id_groups:` entry (外显号码组).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdGroupConfig {
    pub name: String,
    pub numbers: Vec<GroupNumber>,
    /// Used when no number is in the callee's city or its province's capital.
    pub default: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNumber {
    pub number: String,
    pub city: String,
}

/// `regions:` — E.164 prefixes to city and province; provinces to their capital.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionsConfig {
    pub prefixes: Vec<RegionPrefix>,
    /// Province → capital city, sorted by province.
    pub capitals: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPrefix {
    /// `+` and digits.
    pub prefix: String,
    pub city: String,
    pub province: String,
}

// ---------------------------------------------------------------------------------------------
// The file format
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawTrunkAuth {
    pub username: String,
    pub password: String,
}

/// Written by hand so that a password never reaches a log line or a panic message.
impl fmt::Debug for RawTrunkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawTrunkAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawTrunkRegister {
    pub enabled: bool,
    pub expires_s: u64,
    /// Absent: `auth.username`.
    pub user: Option<String>,
    /// Absent: the host of the trunk's address.
    pub domain: Option<String>,
}

impl Default for RawTrunkRegister {
    fn default() -> Self {
        RawTrunkRegister {
            enabled: true,
            expires_s: 3600,
            user: None,
            domain: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawTrunkNumber {
    pub number: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawNumberFormat {
    pub country_code: String,
    pub national_prefix: String,
    pub international_prefix: String,
    pub outbound: WireFormat,
}

impl Default for RawNumberFormat {
    fn default() -> Self {
        let d = NumberFormat::default();
        RawNumberFormat {
            country_code: d.country_code,
            national_prefix: d.national_prefix,
            international_prefix: d.international_prefix,
            outbound: d.outbound,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CallerIdMode {
    Fixed,
    Agent,
    Region,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawCallerId {
    pub mode: CallerIdMode,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawQuota {
    pub outbound_minutes: u64,
    #[serde(default)]
    pub period: QuotaPeriod,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawCallerIdGroup {
    pub name: String,
    pub numbers: Vec<RawGroupNumber>,
    #[serde(default)]
    pub default: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawGroupNumber {
    pub number: String,
    pub city: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping")]
pub(super) struct RawRegions {
    pub prefixes: Vec<RawRegionPrefix>,
    pub capitals: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawRegionPrefix {
    pub prefix: String,
    pub city: String,
    pub province: String,
}

fn enabled() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// The carrier-facing part of one trunk, validated.
pub(super) struct TrunkExtras {
    pub auth: Option<TrunkCredentials>,
    pub register: Option<TrunkRegister>,
    pub numbers: Vec<TrunkNumber>,
    pub number_format: NumberFormat,
    pub caller_id: CallerIdPolicy,
    pub quota: Option<TrunkQuota>,
    pub max_concurrent_calls: Option<u32>,
}

/// The raw carrier-facing keys of `trunks[i]`.
pub(super) struct RawTrunkExtras {
    pub auth: Option<RawTrunkAuth>,
    pub register: Option<RawTrunkRegister>,
    pub numbers: Vec<RawTrunkNumber>,
    pub number_format: RawNumberFormat,
    pub caller_id: Option<RawCallerId>,
    pub quota: Option<RawQuota>,
    pub max_concurrent_calls: Option<u32>,
}

/// RFC 3261 does not bound the expiry; these keep a typo (`expires_s: 36`) from flooding the
/// carrier and a huge value from never refreshing.
const MIN_REGISTER_EXPIRES_S: u64 = 60;
const MAX_REGISTER_EXPIRES_S: u64 = 7 * 86_400;

pub(super) fn validate_extras(
    i: usize,
    raw: RawTrunkExtras,
    address: SocketAddr,
    ctx: &Ctx<'_>,
) -> Result<TrunkExtras, ConfigError> {
    let at = |key: &str| format!("trunks[{i}].{key}");
    let auth = match raw.auth {
        None => None,
        Some(a) => {
            if a.username.is_empty() || a.username.chars().any(|c| c.is_control() || c == '"') {
                return Err(ctx.error(
                    &at("auth.username"),
                    "must be non-empty, without quotes or control characters",
                ));
            }
            if a.password.is_empty() {
                return Err(ctx.error(&at("auth.password"), "must not be empty"));
            }
            Some(TrunkCredentials {
                username: a.username,
                password: Password::new(a.password),
            })
        }
    };
    let register = match raw.register {
        Some(r) if r.enabled => {
            let Some(creds) = &auth else {
                return Err(ctx.error(
                    &at("register"),
                    "registering needs credentials: add `auth: { username, password }` to the trunk",
                ));
            };
            if !(MIN_REGISTER_EXPIRES_S..=MAX_REGISTER_EXPIRES_S).contains(&r.expires_s) {
                return Err(ctx.error(
                    &at("register.expires_s"),
                    format!(
                        "must be between {MIN_REGISTER_EXPIRES_S} and {MAX_REGISTER_EXPIRES_S} seconds, got {}",
                        r.expires_s
                    ),
                ));
            }
            let user = r.user.unwrap_or_else(|| creds.username.clone());
            if !super::is_user_part(&user) {
                return Err(ctx.error(
                    &at("register.user"),
                    format!("expected a SIP user part (letters, digits, `.-_+`), got {user:?}"),
                ));
            }
            let (domain, registrar_uri) = match r.domain {
                Some(d) => {
                    if !super::is_host(&d) {
                        return Err(ctx.error(
                            &at("register.domain"),
                            format!("expected a host name or IP address, got {d:?}"),
                        ));
                    }
                    let uri = format!("sip:{d}");
                    (d, uri)
                }
                None => {
                    let host = match address {
                        SocketAddr::V4(a) => a.ip().to_string(),
                        SocketAddr::V6(a) => format!("[{}]", a.ip()),
                    };
                    (host, format!("sip:{address}"))
                }
            };
            Some(TrunkRegister {
                expires_s: r.expires_s as u32,
                user,
                domain,
                registrar_uri,
            })
        }
        _ => None,
    };
    let mut numbers: Vec<TrunkNumber> = Vec::with_capacity(raw.numbers.len());
    for (n, num) in raw.numbers.into_iter().enumerate() {
        let field = at(&format!("numbers[{n}].number"));
        let number = e164(ctx, &field, &num.number)?;
        if numbers.iter().any(|x| x.number == number) {
            return Err(ctx.error(&field, format!("{number} is listed twice")));
        }
        numbers.push(TrunkNumber {
            number,
            enabled: num.enabled,
        });
    }
    let f = raw.number_format;
    let digits = |key: &str, v: &str, min: usize, max: usize| {
        if v.len() < min || v.len() > max || !v.chars().all(|c| c.is_ascii_digit()) {
            Err(ctx.error(
                &at(&format!("number_format.{key}")),
                format!("expected {min} to {max} digits, got {v:?}"),
            ))
        } else {
            Ok(())
        }
    };
    digits("country_code", &f.country_code, 1, 3)?;
    digits("national_prefix", &f.national_prefix, 0, 2)?;
    digits("international_prefix", &f.international_prefix, 1, 4)?;
    let number_format = NumberFormat {
        country_code: f.country_code,
        national_prefix: f.national_prefix,
        international_prefix: f.international_prefix,
        outbound: f.outbound,
    };
    let caller_id = match raw.caller_id {
        None => CallerIdPolicy::Unset,
        Some(c) => {
            let number = match &c.number {
                Some(n) => Some(e164(ctx, &at("caller_id.number"), n)?),
                None => None,
            };
            match c.mode {
                CallerIdMode::Fixed => match number {
                    Some(number) => CallerIdPolicy::Fixed { number },
                    None => {
                        return Err(ctx.error(
                            &at("caller_id"),
                            "mode fixed needs `number`: the display number every call shows",
                        ))
                    }
                },
                CallerIdMode::Agent => CallerIdPolicy::Agent { fallback: number },
                CallerIdMode::Region => match c.group {
                    // Whether the group exists is checked once the groups are read.
                    Some(group) => CallerIdPolicy::Region {
                        group,
                        fallback: number,
                    },
                    None => {
                        return Err(ctx.error(
                            &at("caller_id"),
                            "mode region needs `group`: a caller_id_groups name",
                        ))
                    }
                },
            }
        }
    };
    let quota = match raw.quota {
        None => None,
        Some(q) => {
            let timezone = q.timezone.unwrap_or_else(|| "UTC".to_owned());
            if jiff::tz::TimeZone::get(&timezone).is_err() {
                return Err(ctx.error(
                    &at("quota.timezone"),
                    format!("unknown time zone {timezone:?}; expected an IANA name such as \"Asia/Shanghai\""),
                ));
            }
            Some(TrunkQuota {
                outbound_minutes: q.outbound_minutes,
                period: q.period,
                timezone,
            })
        }
    };
    if raw.max_concurrent_calls == Some(0) {
        return Err(ctx.error(
            &at("max_concurrent_calls"),
            "must be at least 1 (leave it out for no cap)",
        ));
    }
    Ok(TrunkExtras {
        auth,
        register,
        numbers,
        number_format,
        caller_id,
        quota,
        max_concurrent_calls: raw.max_concurrent_calls,
    })
}

/// A trunk number belongs to one trunk: the inbound call's trunk and the outbound caller ID must
/// say which carrier a number is on.
pub(super) fn check_numbers_across_trunks(
    trunks: &[Trunk],
    ctx: &Ctx<'_>,
) -> Result<(), ConfigError> {
    for (t, trunk) in trunks.iter().enumerate() {
        for (n, number) in trunk.numbers.iter().enumerate() {
            let earlier = trunks[..t]
                .iter()
                .enumerate()
                .find(|(_, o)| o.numbers.iter().any(|x| x.number == number.number));
            if let Some((o, other)) = earlier {
                let (line, _) = ctx.index.nearest(&format!("trunks[{o}].numbers"));
                return Err(ctx.error(
                    &format!("trunks[{t}].numbers[{n}].number"),
                    format!(
                        "{} is already a number of trunk {} (trunks[{o}], line {line})",
                        number.number, other.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `regions:` and `caller_id_groups:`, then the trunks' references to groups.
///
/// A group number whose city no region prefix names is a warning, not an error: it can still be
/// picked as a province's capital or from the default list, and a table of regions is often
/// completed after the numbers are bought.
pub(super) fn validate_caller_id(
    raw_groups: Vec<RawCallerIdGroup>,
    raw_regions: RawRegions,
    trunks: &[Trunk],
    ctx: &Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(Vec<CallerIdGroupConfig>, RegionsConfig), ConfigError> {
    let mut prefixes: Vec<RegionPrefix> = Vec::with_capacity(raw_regions.prefixes.len());
    for (i, p) in raw_regions.prefixes.into_iter().enumerate() {
        let field = format!("regions.prefixes[{i}].prefix");
        let ok = p.prefix.strip_prefix('+').is_some_and(|d| {
            !d.is_empty() && d.len() <= MAX_E164_DIGITS && d.chars().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(ctx.error(
                &field,
                format!(
                    "expected `+` and 1 to {MAX_E164_DIGITS} digits (`+8610`), got {:?}",
                    p.prefix
                ),
            ));
        }
        if prefixes.iter().any(|x| x.prefix == p.prefix) {
            return Err(ctx.error(&field, format!("prefix {} is listed twice", p.prefix)));
        }
        for (key, v) in [("city", &p.city), ("province", &p.province)] {
            if v.trim().is_empty() {
                return Err(ctx.error(&format!("regions.prefixes[{i}].{key}"), "must not be empty"));
            }
        }
        prefixes.push(RegionPrefix {
            prefix: p.prefix,
            city: p.city,
            province: p.province,
        });
    }
    let mut capitals = Vec::with_capacity(raw_regions.capitals.len());
    for (province, city) in raw_regions.capitals {
        if !prefixes.iter().any(|p| p.city == city) {
            return Err(ctx.error(
                &format!("regions.capitals.{province}"),
                format!("{city} is not the city of any regions.prefixes entry"),
            ));
        }
        capitals.push((province, city));
    }
    let regions = RegionsConfig { prefixes, capitals };

    let mut groups: Vec<CallerIdGroupConfig> = Vec::with_capacity(raw_groups.len());
    for (g, raw) in raw_groups.into_iter().enumerate() {
        let name_field = format!("caller_id_groups[{g}].name");
        if raw.name.is_empty() || raw.name.len() > super::MAX_NAME_LEN {
            return Err(ctx.error(&name_field, "must be 1 to 64 characters"));
        }
        if groups.iter().any(|x| x.name == raw.name) {
            return Err(ctx.error(
                &name_field,
                format!("group {} is already defined", raw.name),
            ));
        }
        let mut numbers: Vec<GroupNumber> = Vec::with_capacity(raw.numbers.len());
        for (n, num) in raw.numbers.into_iter().enumerate() {
            let field = format!("caller_id_groups[{g}].numbers[{n}].number");
            let number = e164(ctx, &field, &num.number)?;
            if numbers.iter().any(|x| x.number == number) {
                return Err(ctx.error(&field, format!("{number} is listed twice")));
            }
            if !regions.prefixes.iter().any(|p| p.city == num.city) {
                warnings.push(ctx.warning(
                    &format!("caller_id_groups[{g}].numbers[{n}].city"),
                    format!(
                        "no regions.prefixes entry names the city {}: this number is only picked as a capital's or from the default list",
                        num.city
                    ),
                ));
            }
            numbers.push(GroupNumber {
                number,
                city: num.city,
            });
        }
        let mut default = Vec::with_capacity(raw.default.len());
        for (n, d) in raw.default.iter().enumerate() {
            default.push(e164(
                ctx,
                &format!("caller_id_groups[{g}].default[{n}]"),
                d,
            )?);
        }
        if numbers.is_empty() && default.is_empty() {
            return Err(ctx.error(
                &format!("caller_id_groups[{g}].numbers"),
                "a group needs at least one number",
            ));
        }
        groups.push(CallerIdGroupConfig {
            name: raw.name,
            numbers,
            default,
        });
    }
    for (t, trunk) in trunks.iter().enumerate() {
        if let CallerIdPolicy::Region { group, .. } = &trunk.caller_id {
            if !groups.iter().any(|g| &g.name == group) {
                return Err(ctx.error(
                    &format!("trunks[{t}].caller_id.group"),
                    format!("no caller_id_groups entry is named {group:?}"),
                ));
            }
        }
    }
    Ok((groups, regions))
}

/// E.164 allows at most 15 digits after the `+` (ITU-T E.164 §6).
const MAX_E164_DIGITS: usize = 15;
/// Shorter than this is a service code (`+86110`), not a number a trunk carries.
const MIN_E164_DIGITS: usize = 6;

/// Whether `text` is `+` then 6 to 15 digits, the first not `0`.
pub fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|d| {
        (MIN_E164_DIGITS..=MAX_E164_DIGITS).contains(&d.len())
            && d.chars().all(|c| c.is_ascii_digit())
            && !d.starts_with('0')
    })
}

fn e164(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<String, ConfigError> {
    if is_e164(text) {
        Ok(text.to_owned())
    } else {
        Err(ctx.error(
            field,
            format!("expected an E.164 number: `+` then {MIN_E164_DIGITS} to {MAX_E164_DIGITS} digits (`+861088880000`), got {text:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, "t.yaml")
    }

    /// The error's Display, after checking it is an `Invalid` at `line` naming `field`.
    fn rejected(text: &str, line: usize, field: &str) -> String {
        let err = load(text).expect_err("config should be rejected");
        let shown = err.to_string();
        match &err {
            ConfigError::Invalid {
                line: l, field: f, ..
            } => assert_eq!((*l, f.as_str()), (line, field), "{shown}"),
            ConfigError::Io { .. } => panic!("{shown}"),
        }
        shown
    }

    const FULL: &str = r#"trunks:
  - name: carrier
    address: "192.0.2.1:5080"
    auth:
      username: "sb-trunk"
      password: "s3cret"
    register:
      enabled: true
      expires_s: 1800
    numbers:
      - number: "+861088880000"
      - number: "+862188880000"
        enabled: false
    number_format:
      outbound: international
      international_prefix: "00"
    caller_id:
      mode: region
      number: "+861088880000"
      group: main
    quota:
      outbound_minutes: 10000
      period: day
      timezone: "Asia/Shanghai"
    max_concurrent_calls: 30
caller_id_groups:
  - name: main
    numbers:
      - number: "+861088880000"
        city: Beijing
      - number: "+862188880000"
        city: Hangzhou
    default: ["+861088880000"]
regions:
  prefixes:
    - prefix: "+8610"
      city: Beijing
      province: Beijing
    - prefix: "+86755"
      city: Shenzhen
      province: Guangdong
  capitals:
    Beijing: Beijing
blacklist:
  outbound: ["+8613900000000", "+86139111*"]
"#;

    #[test]
    fn a_full_trunk_resolves() {
        let config = load(FULL).unwrap();
        let t = &config.trunks[0];
        assert_eq!(t.auth.as_ref().unwrap().username, "sb-trunk");
        assert_eq!(t.auth.as_ref().unwrap().password.expose(), "s3cret");
        assert_eq!(
            t.register,
            Some(TrunkRegister {
                expires_s: 1800,
                user: "sb-trunk".into(),
                domain: "192.0.2.1".into(),
                registrar_uri: "sip:192.0.2.1:5080".into(),
            })
        );
        assert_eq!(
            t.numbers,
            [
                TrunkNumber {
                    number: "+861088880000".into(),
                    enabled: true
                },
                TrunkNumber {
                    number: "+862188880000".into(),
                    enabled: false
                },
            ]
        );
        assert_eq!(t.number_format.outbound, WireFormat::International);
        assert_eq!(t.number_format.country_code, "86");
        assert_eq!(
            t.caller_id,
            CallerIdPolicy::Region {
                group: "main".into(),
                fallback: Some("+861088880000".into())
            }
        );
        assert_eq!(
            t.quota,
            Some(TrunkQuota {
                outbound_minutes: 10000,
                period: QuotaPeriod::Day,
                timezone: "Asia/Shanghai".into()
            })
        );
        assert_eq!(t.max_concurrent_calls, Some(30));
        assert_eq!(config.caller_id_groups[0].default, ["+861088880000"]);
        assert_eq!(config.regions.prefixes.len(), 2);
        assert_eq!(
            config.regions.capitals,
            [("Beijing".to_owned(), "Beijing".to_owned())]
        );
        assert!(config.blacklist.blocks_outbound("+86 139 1110 0000"));
        assert!(!config.blacklist.blocks("+8613900000000"));
        // Hangzhou is in no prefix: a warning on its line, not an error.
        let w = &config.warnings[0];
        assert_eq!(
            (w.line, w.field.as_str()),
            (32, "caller_id_groups[0].numbers[1].city")
        );
        assert!(w.message.contains("Hangzhou"), "{w}");
        // The password never shows.
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn a_trunk_without_the_new_keys_is_as_before() {
        let config = load("trunks:\n  - name: carrier\n    address: \"192.0.2.1:5060\"\n").unwrap();
        let t = &config.trunks[0];
        assert_eq!((&t.auth, &t.register, t.numbers.len()), (&None, &None, 0));
        assert_eq!(t.caller_id, CallerIdPolicy::Unset);
        assert_eq!(t.number_format, NumberFormat::default());
        // `register: { enabled: false }` needs no credentials.
        let config = load(
            "trunks:\n  - name: carrier\n    address: \"192.0.2.1:5060\"\n    register:\n      enabled: false\n",
        )
        .unwrap();
        assert_eq!(config.trunks[0].register, None);
    }

    #[test]
    fn semantic_errors_name_line_and_field() {
        let cases: &[(&str, &str, &str, usize, &str)] = &[
            // (replace, with, field, line, message fragment)
            (
                "- number: \"+861088880000\"\n      - number",
                "- number: \"861088880000\"\n      - number",
                "trunks[0].numbers[0].number",
                11,
                "E.164",
            ),
            (
                "group: main",
                "group: nowhere",
                "trunks[0].caller_id.group",
                20,
                "no caller_id_groups entry",
            ),
            (
                "      number: \"+861088880000\"\n      group: main\n",
                "",
                "trunks[0].caller_id",
                17,
                "needs `group`",
            ),
            (
                "mode: region\n      number: \"+861088880000\"",
                "mode: fixed",
                "trunks[0].caller_id",
                17,
                "needs `number`",
            ),
            (
                "    auth:\n      username: \"sb-trunk\"\n      password: \"s3cret\"\n",
                "",
                "trunks[0].register",
                4,
                "needs credentials",
            ),
            (
                "expires_s: 1800",
                "expires_s: 10",
                "trunks[0].register.expires_s",
                9,
                "between 60",
            ),
            (
                "timezone: \"Asia/Shanghai\"",
                "timezone: \"Mars/Olympus\"",
                "trunks[0].quota.timezone",
                24,
                "unknown time zone",
            ),
            (
                "max_concurrent_calls: 30",
                "max_concurrent_calls: 0",
                "trunks[0].max_concurrent_calls",
                25,
                "at least 1",
            ),
            (
                "Beijing: Beijing",
                "Beijing: Xian",
                "regions.capitals.Beijing",
                43,
                "Xian is not the city",
            ),
            (
                "prefix: \"+86755\"",
                "prefix: \"86755\"",
                "regions.prefixes[1].prefix",
                39,
                "expected `+`",
            ),
            (
                "default: [\"+861088880000\"]",
                "default: [\"+86\"]",
                "caller_id_groups[0].default[0]",
                33,
                "E.164",
            ),
            (
                "\"+86139111*\"",
                "\"+86139x*\"",
                "blacklist.outbound[1]",
                45,
                "digits only",
            ),
        ];
        for (from, to, field, line, fragment) in cases {
            assert_eq!(FULL.matches(from).count(), 1, "{from}");
            let text = FULL.replace(from, to);
            let shown = rejected(&text, *line, field);
            assert!(shown.contains(fragment), "{shown}");
        }
        let shown = rejected(
            &FULL.replace(
                "outbound: international",
                "outbound: national\n      country_code: \"8a\"",
            ),
            16,
            "trunks[0].number_format.country_code",
        );
        assert!(shown.contains("digits"), "{shown}");
    }

    #[test]
    fn a_number_belongs_to_one_trunk() {
        let text = format!(
            "{FULL}  - name: backup\n    address: \"192.0.2.2:5080\"\n    numbers:\n      - number: \"+862188880000\"\n"
        )
        .replace("blacklist:\n  outbound: [\"+8613900000000\", \"+86139111*\"]\n", "")
        .replace("caller_id_groups:", "TRUNKS_END\ncaller_id_groups:");
        // Keep the second trunk inside `trunks:`: move it before the groups.
        let (head, rest) = text.split_once("TRUNKS_END\n").unwrap();
        let (groups, second) = rest.split_once("  - name: backup").unwrap();
        let text = format!("{head}  - name: backup{second}{groups}");
        let line = text
            .lines()
            .position(|l| l.contains("- number: \"+862188880000\""))
            .map(|_| {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains("- number: \"+862188880000\""))
                    .nth(1)
                    .unwrap()
                    .0
                    + 1
            })
            .unwrap();
        let shown = rejected(&text, line, "trunks[1].numbers[0].number");
        assert!(
            shown.contains("already a number of trunk carrier (trunks[0], line 10)"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_where_they_are() {
        let shown = rejected(
            &FULL.replace(
                "    max_concurrent_calls: 30\n",
                "    max_concurrent_calls: 30\n    channels: 3\n",
            ),
            26,
            "trunks[0].channels",
        );
        assert!(shown.contains("unknown field `channels`"), "{shown}");
        rejected(
            &FULL.replace("      period: day\n", "      period: week\n"),
            23,
            "trunks[0].quota.period",
        );
        rejected(
            &FULL.replace(
                "      expires_s: 1800\n",
                "      expires_s: 1800\n      refresh: 10\n",
            ),
            10,
            "trunks[0].register.refresh",
        );
    }
}
