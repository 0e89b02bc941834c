//! Outbound registration to a carrier (RFC 3261 §10.2), as a sans-IO state machine.
//!
//! ```text
//!   start ─▶ REGISTER ─▶ 401/407 ─▶ REGISTER + credentials ─▶ 200 ─▶ wait granted/2 ─▶ REGISTER …
//!                          │ (a second 401 is a failure,           │
//!                          │  unless the first was only stale)     │
//!                          └──── 4xx/5xx/6xx/timeout ──▶ failed ─▶ wait 30 s, 60 s, … 600 s ─▶ REGISTER
//! ```
//! The machine builds the requests and says when it wants to be woken; the endpoint sends them as
//! client transactions and hands back the final responses and timeouts.
//!
//! ## When to refresh
//! At half the granted expiry. RFC 3261 §10.2.1 leaves it to the client; half survives one lost
//! refresh (its retransmissions take at most 32 s) for any expiry the configuration allows
//! (at least 60 s), and it is what most phones do.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sip::msg::{HeaderName, Method, Request, Response, SyntaxError, Uri};

use super::auth::{Credentials, ReadChallenge};

/// The first retry after a failure; doubled on each further failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What one trunk registers, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterSettings {
    pub trunk: String,
    /// Where the REGISTERs go.
    pub target: SocketAddr,
    /// The Request-URI (`sip:carrier.example`).
    pub registrar_uri: String,
    /// The AOR's user and domain (From, To).
    pub user: String,
    pub domain: String,
    /// Asked for; the carrier may grant less.
    pub expires_s: u32,
    pub creds: Credentials,
}

impl RegisterSettings {
    /// The trunks of `config` that register, enabled ones only.
    pub fn from_config(config: &crate::config::Config) -> Vec<RegisterSettings> {
        config
            .trunks
            .iter()
            .filter(|t| t.enabled)
            .filter_map(|t| {
                let r = t.register.as_ref()?;
                Some(RegisterSettings {
                    trunk: t.name.clone(),
                    target: t.address,
                    registrar_uri: r.registrar_uri.clone(),
                    user: r.user.clone(),
                    domain: r.domain.clone(),
                    expires_s: r.expires_s,
                    creds: t.auth.clone()?,
                })
            })
            .collect()
    }
}

/// Where a registration stands, for the API and the `trunk_registered` gauge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// The first attempt is under way.
    Registering,
    /// The carrier holds our binding for this long from the last 200.
    Registered { expires_s: u32 },
    /// The last attempt failed; the next one is due after `retry_in`.
    Failed {
        /// The carrier's final status code; `None` for no answer.
        code: Option<u16>,
        reason: String,
        retry_in: Duration,
    },
    /// Un-registered at shutdown.
    Unregistered,
}

impl RegistrationStatus {
    pub fn is_registered(&self) -> bool {
        matches!(self, RegistrationStatus::Registered { .. })
    }
}

/// A change the endpoint logs and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    Registered {
        expires_s: u32,
    },
    Failed {
        code: Option<u16>,
        reason: String,
        retry_in: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `next_at` (not yet started when `None`).
    Idle,
    /// A REGISTER is out.
    Waiting,
    /// Un-registered; nothing more is sent.
    Stopped,
}

/// One trunk's registration.
#[derive(Debug)]
pub struct Registration {
    settings: RegisterSettings,
    uri: Uri,
    contact: Uri,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: State,
    next_at: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    status: RegistrationStatus,
    /// The expiry asked for: the configured one, or the carrier's Min-Expires after a 423.
    expires_s: u32,
    /// Challenges answered in the current attempt, and whether a stale one was among them.
    answered: u8,
    stale_retried: bool,
    /// The last challenge, reused (with the next nonce count) to un-register at shutdown.
    challenge: Option<ReadChallenge>,
    nc: u32,
    seed: u64,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    /// `local`: the address our Contact names (a listener the carrier can reach). `seed`: random
    /// bits for the Call-ID, tag and client nonces.
    pub fn new(
        settings: RegisterSettings,
        local: SocketAddr,
        seed: u64,
    ) -> Result<Registration, SyntaxError> {
        let uri = Uri::parse(&settings.registrar_uri)?;
        let contact = Uri::parse(&format!("sip:{}@{local}", settings.user))?;
        Ok(Registration {
            uri,
            contact,
            call_id: format!("{seed:016x}-reg@switchboard"),
            from_tag: format!("{:08x}", mix(seed) as u32),
            cseq: 0,
            state: State::Idle,
            next_at: None,
            failures: 0,
            status: RegistrationStatus::Registering,
            expires_s: settings.expires_s,
            answered: 0,
            stale_retried: false,
            challenge: None,
            nc: 0,
            seed,
            events: VecDeque::new(),
            settings,
        })
    }

    pub fn settings(&self) -> &RegisterSettings {
        &self.settings
    }

    pub fn status(&self) -> &RegistrationStatus {
        &self.status
    }

    /// Register as soon as the endpoint next calls [`Registration::handle_timeout`].
    pub fn start(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.next_at = Some(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => self.next_at,
            State::Waiting | State::Stopped => None,
        }
    }

    /// The REGISTER to send, when one is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        if self.state != State::Idle || self.next_at.is_none_or(|t| t > now) {
            return None;
        }
        self.next_at = None;
        self.answered = 0;
        self.stale_retried = false;
        self.state = State::Waiting;
        Some(self.request(self.expires_s))
    }

    /// A final (or provisional) response to our REGISTER; maybe a REGISTER to send at once.
    pub fn handle_response(&mut self, now: Instant, resp: &Response) -> Option<Request> {
        if self.state != State::Waiting || resp.code < 200 {
            return None;
        }
        match resp.code {
            200..=299 => {
                let granted = self.granted(resp);
                if granted == 0 {
                    self.fail(now, Some(resp.code), "the carrier granted no expiry".into());
                    return None;
                }
                self.failures = 0;
                self.state = State::Idle;
                self.next_at = Some(now + Duration::from_secs(u64::from(granted.div_ceil(2))));
                self.status = RegistrationStatus::Registered { expires_s: granted };
                self.events
                    .push_back(RegistrationEvent::Registered { expires_s: granted });
                None
            }
            401 | 407 => {
                let read = match ReadChallenge::from_response(resp) {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail(
                            now,
                            Some(resp.code),
                            format!("cannot answer the challenge: {e}"),
                        );
                        return None;
                    }
                };
                // Once per challenge: a second challenge means the credentials were refused,
                // unless it only says our nonce went stale (RFC 7616 §3.3), which gets one retry.
                let stale_retry = read.challenge.stale && !self.stale_retried;
                if self.answered > 0 && !stale_retry {
                    self.fail(now, Some(resp.code), "credentials refused".into());
                    return None;
                }
                if self.answered > 0 {
                    self.stale_retried = true;
                }
                self.answered += 1;
                self.nc = 0;
                self.challenge = Some(read);
                let req = self.request(self.expires_s);
                match self.authorize(req) {
                    Ok(req) => Some(req),
                    Err(reason) => {
                        self.fail(now, Some(resp.code), reason);
                        None
                    }
                }
            }
            // RFC 3261 §10.2.8: ask again with at least Min-Expires.
            423 => {
                let min = resp
                    .headers
                    .get_str(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires_s && self.answered < 3 => {
                        self.expires_s = min;
                        self.answered += 1;
                        let req = self.request(self.expires_s);
                        if self.challenge.is_some() {
                            self.authorize(req).ok()
                        } else {
                            Some(req)
                        }
                    }
                    _ => {
                        self.fail(now, Some(423), resp.reason.clone());
                        None
                    }
                }
            }
            code => {
                self.fail(now, Some(code), resp.reason.clone());
                None
            }
        }
    }

    /// No answer (Timer F) or the transport failed.
    pub fn handle_no_response(&mut self, now: Instant) {
        if self.state == State::Waiting {
            self.fail(now, None, "no response".into());
        }
    }

    /// A REGISTER with `Expires: 0` removing our binding (shutdown), when we hold one. The last
    /// challenge is answered pre-emptively; a carrier that wants a fresh one just lets the
    /// binding expire.
    pub fn unregister(&mut self) -> Option<Request> {
        let registered = self.status.is_registered();
        self.state = State::Stopped;
        self.next_at = None;
        self.status = RegistrationStatus::Unregistered;
        if !registered {
            return None;
        }
        let req = self.request(0);
        Some(if self.challenge.is_some() {
            self.authorize(req.clone()).unwrap_or(req)
        } else {
            req
        })
    }

    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, now: Instant, code: Option<u16>, reason: String) {
        let shift = self.failures.min(5);
        let retry_in = (FIRST_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        self.state = State::Idle;
        self.next_at = Some(now + retry_in);
        self.status = RegistrationStatus::Failed {
            code,
            reason: reason.clone(),
            retry_in,
        };
        self.events.push_back(RegistrationEvent::Failed {
            code,
            reason,
            retry_in,
        });
    }

    /// The expiry the 200 grants our Contact: its `expires` parameter, else the Expires header,
    /// else what we asked for (RFC 3261 §10.2.4).
    fn granted(&self, resp: &Response) -> u32 {
        let from_contact = resp.headers.contacts().ok().flatten().and_then(|cs| {
            cs.iter()
                .find(|c| c.uri == self.contact)
                .and_then(|c| c.params.get("expires").flatten())
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
        from_contact
            .or_else(|| resp.headers.expires().ok().flatten())
            .unwrap_or(self.expires_s)
    }

    fn request(&mut self, expires: u32) -> Request {
        self.cseq += 1;
        let s = &self.settings;
        let aor = format!("<sip:{}@{}>", s.user, s.domain);
        let mut req = Request::new(Method::Register, self.uri.clone());
        let h = &mut req.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{aor};tag={}", self.from_tag));
        h.push(HeaderName::To, aor);
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        h.push(HeaderName::Contact, format!("<{}>", self.contact));
        h.push(HeaderName::Expires, expires.to_string());
        req
    }

    fn authorize(&mut self, mut req: Request) -> Result<Request, String> {
        let Some(read) = &self.challenge else {
            return Ok(req);
        };
        self.nc += 1;
        let cnonce = format!("{:016x}", mix(self.seed ^ u64::from(self.cseq)));
        let (header, value) = read
            .answer(
                "REGISTER",
                &self.uri.to_string(),
                &self.settings.creds,
                &cnonce,
                self.nc,
            )
            .map_err(|e| format!("cannot answer the challenge: {e}"))?;
        req.headers.push(header, value);
        Ok(req)
    }
}

/// splitmix64: spreads a seed into unrelated-looking bits for tags and client nonces.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do: the machine only ever compares instants it was given.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }
    use crate::auth::{
        AccountSecret, Credentials as Sent, DigestConfig, ServerSecret, Verdict, Verifier,
    };
    use crate::config::Password;

    fn settings() -> RegisterSettings {
        RegisterSettings {
            trunk: "carrier".into(),
            target: "192.0.2.1:5060".parse().unwrap(),
            registrar_uri: "sip:carrier.example".into(),
            user: "sb-trunk".into(),
            domain: "carrier.example".into(),
            expires_s: 3600,
            creds: Credentials {
                username: "sb-trunk".into(),
                password: Password::new("s3cret"),
            },
        }
    }

    fn response(req: &Request, code: u16) -> Response {
        let mut r = crate::sip::msg::Response::from_headers(&req.headers, code);
        r.reason = "x".into();
        r
    }

    fn header<'a>(req: &'a Request, name: &HeaderName) -> Option<&'a str> {
        req.headers.get_str(name)
    }

    /// The carrier's verifier, so that the answer is checked, not just present.
    fn carrier() -> Verifier {
        Verifier::new(
            DigestConfig {
                realm: "carrier.example".into(),
                ..DigestConfig::default()
            },
            ServerSecret::from_bytes([1; 32]),
        )
    }

    #[test]
    fn challenge_then_200_then_refresh_at_half_then_403_then_back_off() {
        let t0 = start();
        let mut reg =
            Registration::new(settings(), "198.51.100.7:5060".parse().unwrap(), 42).unwrap();
        assert_eq!(reg.poll_timeout(), None);
        reg.start(t0);
        assert_eq!(reg.poll_timeout(), Some(t0));
        let first = reg.handle_timeout(t0).expect("a REGISTER at start");
        assert_eq!(first.uri.to_string(), "sip:carrier.example");
        assert_eq!(
            header(&first, &HeaderName::To),
            Some("<sip:sb-trunk@carrier.example>")
        );
        assert_eq!(
            header(&first, &HeaderName::Contact),
            Some("<sip:sb-trunk@198.51.100.7:5060>")
        );
        assert_eq!(header(&first, &HeaderName::Expires), Some("3600"));
        assert_eq!(header(&first, &HeaderName::Authorization), None);
        assert_eq!(reg.poll_timeout(), None, "nothing while waiting");

        // 401: answered once, with credentials the carrier accepts.
        let mut v = carrier();
        let mut challenge = response(&first, 401);
        challenge.headers.push(
            HeaderName::WwwAuthenticate,
            v.challenge(1_000, crate::auth::Algorithm::Md5, false),
        );
        let second = reg
            .handle_response(t0, &challenge)
            .expect("an authorized REGISTER");
        assert_eq!(header(&second, &HeaderName::CSeq), Some("2 REGISTER"));
        assert_eq!(
            header(&second, &HeaderName::CallId),
            header(&first, &HeaderName::CallId)
        );
        let sent = Sent::parse(header(&second, &HeaderName::Authorization).unwrap()).unwrap();
        let secret = AccountSecret::from_password("sb-trunk", "carrier.example", "s3cret");
        assert_eq!(
            v.verify("REGISTER", &sent, Some(&secret), 1_000),
            Verdict::Ok
        );

        // 200 granting 600 s on our Contact (less than asked): refresh at 300 s.
        let mut ok = response(&second, 200);
        ok.headers.push(
            HeaderName::Contact,
            "<sip:sb-trunk@198.51.100.7:5060>;expires=600",
        );
        ok.headers.push(HeaderName::Expires, "3600");
        assert_eq!(reg.handle_response(t0, &ok), None);
        assert_eq!(
            reg.status(),
            &RegistrationStatus::Registered { expires_s: 600 }
        );
        assert_eq!(
            reg.poll_event(),
            Some(RegistrationEvent::Registered { expires_s: 600 })
        );
        let refresh_at = t0 + Duration::from_secs(300);
        assert_eq!(reg.poll_timeout(), Some(refresh_at));
        assert_eq!(
            reg.handle_timeout(refresh_at - Duration::from_millis(1)),
            None
        );
        let refresh = reg.handle_timeout(refresh_at).expect("a refresh");
        assert_eq!(header(&refresh, &HeaderName::CSeq), Some("3 REGISTER"));

        // 403: failed, retried after 30 s, then 60 s, … capped at 600 s.
        assert_eq!(
            reg.handle_response(refresh_at, &response(&refresh, 403)),
            None
        );
        assert!(!reg.status().is_registered());
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Failed { code: Some(403), retry_in, .. }) if retry_in == Duration::from_secs(30)
        ));
        let mut at = refresh_at;
        for expected in [30, 60, 120, 240, 480, 600, 600] {
            let next = at + Duration::from_secs(expected);
            assert_eq!(reg.poll_timeout(), Some(next), "back-off {expected}");
            at = next;
            let retry = reg.handle_timeout(at).expect("a retry");
            reg.handle_no_response(at);
            let _ = retry;
        }
        // Success resets the back-off.
        at += Duration::from_secs(600);
        let retry = reg.handle_timeout(at).unwrap();
        let mut ok = response(&retry, 200);
        ok.headers.push(HeaderName::Expires, "120");
        reg.handle_response(at, &ok);
        assert_eq!(reg.poll_timeout(), Some(at + Duration::from_secs(60)));
    }

    #[test]
    fn a_second_challenge_is_a_failure_not_a_loop() {
        let t0 = start();
        let mut reg =
            Registration::new(settings(), "198.51.100.7:5060".parse().unwrap(), 1).unwrap();
        reg.start(t0);
        let first = reg.handle_timeout(t0).unwrap();
        let challenge = |req: &Request, stale: bool| {
            let mut r = response(req, 407);
            let stale = if stale { ", stale=true" } else { "" };
            r.headers.push(
                HeaderName::ProxyAuthenticate,
                format!(
                    "Digest realm=\"carrier.example\", nonce=\"n{}\", qop=\"auth\"{stale}",
                    req.headers.get_str(&HeaderName::CSeq).unwrap_or("")
                ),
            );
            r
        };
        let second = reg.handle_response(t0, &challenge(&first, false)).unwrap();
        assert!(header(&second, &HeaderName::ProxyAuthorization).is_some());
        // Stale: one more try with the fresh nonce.
        let third = reg.handle_response(t0, &challenge(&second, true)).unwrap();
        assert!(header(&third, &HeaderName::ProxyAuthorization).is_some());
        // Then refused again: failure, retried later.
        assert_eq!(reg.handle_response(t0, &challenge(&third, true)), None);
        assert!(matches!(
            reg.status(),
            RegistrationStatus::Failed {
                code: Some(407),
                ..
            }
        ));
        assert_eq!(reg.poll_timeout(), Some(t0 + FIRST_BACKOFF));
    }

    #[test]
    fn interval_too_brief_asks_again_with_min_expires_and_shutdown_unregisters() {
        let t0 = start();
        let mut s = settings();
        s.expires_s = 60;
        let mut reg = Registration::new(s, "198.51.100.7:5060".parse().unwrap(), 1).unwrap();
        // Nothing to remove before registering.
        reg.start(t0);
        let first = reg.handle_timeout(t0).unwrap();
        let mut brief = response(&first, 423);
        brief.headers.push(HeaderName::MinExpires, "300");
        let second = reg.handle_response(t0, &brief).unwrap();
        assert_eq!(header(&second, &HeaderName::Expires), Some("300"));
        reg.handle_response(t0, &response(&second, 200));
        assert_eq!(
            reg.status(),
            &RegistrationStatus::Registered { expires_s: 300 }
        );
        let bye = reg.unregister().expect("an un-REGISTER");
        assert_eq!(header(&bye, &HeaderName::Expires), Some("0"));
        assert_eq!(reg.status(), &RegistrationStatus::Unregistered);
        assert_eq!(reg.poll_timeout(), None);
        assert_eq!(reg.unregister(), None);
    }
}
