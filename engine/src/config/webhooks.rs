//! `webhooks:` — where call events are pushed ([`crate::webhook`] delivers them).
//!
//! Each entry names a receiver URL, the HMAC secret the bodies are signed with, the event kinds it
//! wants and its retry policy. The secret is a [`Password`]: it prints as `<redacted>` and no error
//! message quotes it.
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx, Password, MAX_NAME_LEN};
use crate::events::CallEventKind;

/// Below this an HMAC key is guessable; 16 characters of a random string is still short for a
/// password manager to generate, so the bound costs nobody anything.
pub const MIN_SECRET_LEN: usize = 16;
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 1_000;
const DEFAULT_BACKOFF_MAX_MS: u64 = 300_000;
/// A receiver that takes longer than this is down, whatever it says later.
const MAX_TIMEOUT_MS: u64 = 300_000;
/// Retries at least once a day, so that a receiver that comes back is noticed the same day.
const MAX_BACKOFF_MS: u64 = 86_400_000;

/// One receiver of call events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Letters, digits, `-` and `_`; unique. Names the outbox rows, logs and metrics.
    pub name: String,
    /// `http` or `https`, with a host.
    pub url: reqwest::Url,
    /// The HMAC-SHA256 key, at least [`MIN_SECRET_LEN`] characters.
    pub secret: Password,
    /// The kinds sent to this receiver, without duplicates; all of them unless the file lists some.
    pub events: Vec<CallEventKind>,
    /// One attempt (connect, send, response headers) taking longer fails.
    pub timeout: Duration,
    /// After this many failed attempts an event is given up; `None` retries forever.
    pub max_attempts: Option<NonZeroU32>,
    /// The wait after the first failure; each further failure doubles it…
    pub backoff_initial: Duration,
    /// …up to this. Never below `backoff_initial`.
    pub backoff_max: Duration,
}

impl WebhookConfig {
    /// Whether events of `kind` go to this receiver.
    pub fn subscribes(&self, kind: CallEventKind) -> bool {
        self.events.contains(&kind)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawWebhook {
    pub name: String,
    pub url: String,
    pub secret: String,
    /// Absent: every kind.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `0`: retry forever.
    #[serde(default)]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

/// Written by hand so that the secret never reaches a log line or a panic message.
impl fmt::Debug for RawWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawWebhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .finish()
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_backoff_initial_ms() -> u64 {
    DEFAULT_BACKOFF_INITIAL_MS
}

fn default_backoff_max_ms() -> u64 {
    DEFAULT_BACKOFF_MAX_MS
}

pub(super) fn validate_webhooks(
    raw: Vec<RawWebhook>,
    ctx: &Ctx<'_>,
) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut hooks: Vec<WebhookConfig> = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        let at = |key: &str| format!("webhooks[{i}].{key}");
        let name_ok = !w.name.is_empty()
            && w.name.len() <= MAX_NAME_LEN
            && w.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !name_ok {
            return Err(ctx.error(
                &at("name"),
                format!(
                    "a webhook name must be 1 to {MAX_NAME_LEN} letters, digits or `-_`, got {:?}",
                    w.name
                ),
            ));
        }
        if let Some(first) = hooks.iter().position(|h| h.name == w.name) {
            let (line, _) = ctx.index.nearest(&format!("webhooks[{first}].name"));
            return Err(ctx.error(
                &at("name"),
                format!(
                    "webhook {} is already defined (webhooks[{first}], line {line})",
                    w.name
                ),
            ));
        }
        let url = reqwest::Url::parse(w.url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ctx.error(
                    &at("url"),
                    format!(
                        "expected an http:// or https:// URL such as `https://crm.example.com/switchboard/events`, got {:?}",
                        w.url
                    ),
                )
            })?;
        if w.secret.chars().count() < MIN_SECRET_LEN || w.secret.chars().any(char::is_control) {
            return Err(ctx.error(
                &at("secret"),
                format!(
                    "a secret must be at least {MIN_SECRET_LEN} characters without control characters"
                ),
            ));
        }
        let events = match w.events {
            None => CallEventKind::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(ctx.error(
                    &at("events"),
                    "subscribes to nothing: leave the key out for every event, or remove the webhook",
                ));
            }
            Some(names) => {
                let mut kinds = Vec::with_capacity(names.len());
                for (e, name) in names.iter().enumerate() {
                    let field = format!("webhooks[{i}].events[{e}]");
                    let kind = CallEventKind::from_code(name).ok_or_else(|| {
                        let known: Vec<&str> =
                            CallEventKind::ALL.iter().map(|k| k.code()).collect();
                        ctx.error(
                            &field,
                            format!(
                                "unknown event {name:?}, expected one of {}",
                                known.join(", ")
                            ),
                        )
                    })?;
                    if kinds.contains(&kind) {
                        return Err(ctx.error(&field, format!("{name} is listed twice")));
                    }
                    kinds.push(kind);
                }
                kinds
            }
        };
        let millis = |key: &str, value: u64, max: u64| -> Result<Duration, ConfigError> {
            if value == 0 || value > max {
                return Err(ctx.error(
                    &at(key),
                    format!("must be between 1 and {max} milliseconds, got {value}"),
                ));
            }
            Ok(Duration::from_millis(value))
        };
        let timeout = millis("timeout_ms", w.timeout_ms, MAX_TIMEOUT_MS)?;
        let backoff_initial = millis("backoff_initial_ms", w.backoff_initial_ms, MAX_BACKOFF_MS)?;
        let backoff_max = millis("backoff_max_ms", w.backoff_max_ms, MAX_BACKOFF_MS)?;
        if backoff_max < backoff_initial {
            return Err(ctx.error(
                &at("backoff_max_ms"),
                format!(
                    "backoff_max_ms ({}) must not be below backoff_initial_ms ({})",
                    w.backoff_max_ms, w.backoff_initial_ms
                ),
            ));
        }
        hooks.push(WebhookConfig {
            name: w.name,
            url,
            secret: Password::new(w.secret),
            events,
            timeout,
            max_attempts: NonZeroU32::new(w.max_attempts),
            backoff_initial,
            backoff_max,
        });
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const SECRET: &str = "at-least-16-chars-secret";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, "t.yaml")
    }

    /// The error's Display, after checking it is an `Invalid` at `line` naming `field` and that it
    /// does not give the secret away.
    fn rejected(text: &str, line: usize, field: &str) -> String {
        let err = load(text).expect_err("config should be rejected");
        let shown = err.to_string();
        match &err {
            ConfigError::Invalid {
                line: l, field: f, ..
            } => assert_eq!((*l, f.as_str()), (line, field), "{shown}"),
            ConfigError::Io { .. } => panic!("{shown}"),
        }
        assert!(shown.starts_with(&format!("t.yaml:{line}:")), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        shown
    }

    fn hook(extra: &str) -> String {
        format!(
            "webhooks:\n  - name: crm\n    url: \"https://crm.example.com/switchboard/events\"\n    secret: \"{SECRET}\"\n{extra}"
        )
    }

    #[test]
    fn a_full_entry_loads_and_defaults_fill_the_rest() {
        let text = "\
webhooks:
  - name: crm
    url: \"https://crm.example.com/switchboard/events\"
    secret: \"at-least-16-chars-secret\"
    events: [inbound_ringing, outbound_ringing, answered, hangup, cdr_written]
    timeout_ms: 2500
    max_attempts: 12
    backoff_initial_ms: 500
    backoff_max_ms: 60000
  - name: ticketing_2
    url: \"http://10.0.0.5:8080/hook?source=switchboard\"
    secret: \"another-secret-of-length\"
    events:
      - hangup
      - cdr_written
";
        let config = load(text).unwrap();
        assert_eq!(config.webhooks.len(), 2);
        let crm = &config.webhooks[0];
        assert_eq!(crm.name, "crm");
        assert_eq!(
            crm.url.as_str(),
            "https://crm.example.com/switchboard/events"
        );
        assert_eq!(crm.secret.expose(), SECRET);
        assert_eq!(crm.events, CallEventKind::ALL);
        assert_eq!(crm.timeout, Duration::from_millis(2500));
        assert_eq!(crm.max_attempts, NonZeroU32::new(12));
        assert_eq!(crm.backoff_initial, Duration::from_millis(500));
        assert_eq!(crm.backoff_max, Duration::from_secs(60));
        let ticketing = &config.webhooks[1];
        assert_eq!(
            ticketing.events,
            [CallEventKind::Hangup, CallEventKind::CdrWritten]
        );
        assert!(ticketing.subscribes(CallEventKind::Hangup));
        assert!(!ticketing.subscribes(CallEventKind::Answered));
        assert_eq!(ticketing.timeout, Duration::from_secs(5));
        assert_eq!(ticketing.max_attempts, None);
        assert_eq!(ticketing.backoff_initial, Duration::from_secs(1));
        assert_eq!(ticketing.backoff_max, Duration::from_secs(300));
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(load("").unwrap().webhooks.is_empty());
    }

    /// The shipped file carries a commented-out example; uncommented, it must load as documented.
    #[test]
    fn the_shipped_example_loads_when_uncommented() {
        const SHIPPED: &str = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sip-config/switchboard.yaml"
        ));
        let start = SHIPPED
            .find("# webhooks:\n")
            .expect("the example is shipped");
        let example: String = SHIPPED[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let config = load(&example).unwrap();
        assert_eq!(config.webhooks.len(), 1);
        assert_eq!(config.webhooks[0].name, "crm");
        assert_eq!(config.webhooks[0].events, CallEventKind::ALL);
    }

    #[test]
    fn bad_urls_are_rejected_on_their_line() {
        for bad in [
            "\"crm.example.com/events\"",
            "\"ftp://crm.example.com/events\"",
            "\"https://\"",
            "\"\"",
            "\"http://exa mple.com/\"",
        ] {
            let text =
                format!("webhooks:\n  - name: crm\n    url: {bad}\n    secret: \"{SECRET}\"\n");
            let shown = rejected(&text, 3, "webhooks[0].url");
            assert!(
                shown.starts_with(
                    "t.yaml:3:5: webhooks[0].url: expected an http:// or https:// URL"
                ),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_rejected_without_being_shown() {
        let text = "webhooks:\n  - name: crm\n    url: \"https://crm.example.com/\"\n    secret: \"fifteen-chars-x\"\n";
        let shown = rejected(text, 4, "webhooks[0].secret");
        assert!(shown.contains("at least 16 characters"), "{shown}");
        assert!(!shown.contains("fifteen-chars-x"), "{shown}");
        // Sixteen characters, counted as characters rather than bytes.
        let text = text.replace("fifteen-chars-x", "ünicode-secret-1");
        assert_eq!(
            load(&text).unwrap().webhooks[0]
                .secret
                .expose()
                .chars()
                .count(),
            16
        );
    }

    #[test]
    fn unknown_and_repeated_events_are_rejected_on_their_item() {
        let shown = rejected(
            &hook("    events: [answered, ringing]\n"),
            5,
            "webhooks[0].events[1]",
        );
        assert!(
            shown.contains("unknown event \"ringing\", expected one of inbound_ringing, outbound_ringing, answered, hangup, cdr_written"),
            "{shown}"
        );
        rejected(
            &hook("    events:\n      - hangup\n      - hangup\n"),
            7,
            "webhooks[0].events[1]",
        );
        let shown = rejected(&hook("    events: []\n"), 5, "webhooks[0].events");
        assert!(shown.contains("subscribes to nothing"), "{shown}");
    }

    #[test]
    fn names_are_checked_and_unique() {
        let twice = format!(
            "{}  - name: crm\n    url: \"https://other.example.com/\"\n    secret: \"{SECRET}\"\n",
            hook("")
        );
        let shown = rejected(&twice, 5, "webhooks[1].name");
        assert!(
            shown.contains("webhook crm is already defined (webhooks[0], line 2)"),
            "{shown}"
        );
        let text = hook("").replace("name: crm", "name: \"crm.events\"");
        rejected(&text, 2, "webhooks[0].name");
    }

    #[test]
    fn retry_settings_are_checked() {
        rejected(&hook("    timeout_ms: 0\n"), 5, "webhooks[0].timeout_ms");
        rejected(
            &hook("    timeout_ms: 300001\n"),
            5,
            "webhooks[0].timeout_ms",
        );
        rejected(
            &hook("    backoff_initial_ms: 0\n"),
            5,
            "webhooks[0].backoff_initial_ms",
        );
        let shown = rejected(
            &hook("    backoff_initial_ms: 5000\n    backoff_max_ms: 1000\n"),
            6,
            "webhooks[0].backoff_max_ms",
        );
        assert!(
            shown.ends_with("backoff_max_ms (1000) must not be below backoff_initial_ms (5000)"),
            "{shown}"
        );
        rejected(
            &hook("    max_attempts: -1\n"),
            5,
            "webhooks[0].max_attempts",
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_rejected() {
        let shown = rejected(&hook("    retries: 3\n"), 5, "webhooks[0].retries");
        assert!(shown.contains("unknown field `retries`"), "{shown}");
        let shown = rejected(
            "webhooks:\n  - name: crm\n    url: \"https://crm.example.com/\"\n",
            2,
            "webhooks[0]",
        );
        assert!(shown.contains("missing field `secret`"), "{shown}");
    }
}
