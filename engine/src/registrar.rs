//! The registrar (RFC 3261 §10.3), sans-IO.
//!
//! Bindings map an account (the address-of-record's user part — an account *is* its AOR in
//! Switchboard) to the contacts its phones registered, with expiry, q-value, and the
//! transport and source address the REGISTER really came from, so that calls reach a phone
//! behind NAT on the address it is reachable at. Time is wall-clock seconds passed in by the
//! caller: bindings are persisted and must survive a restart with their absolute expiry.
//!
//! [`Registrar::register`] decides; it does not store. It returns the change set, which the
//! shell makes durable before the 200 OK leaves (see `rt`), so an acknowledged registration
//! is never lost.
use crate::sip::msg::{HeaderName, NameAddr, Request};
use crate::sip::transport::{ConnId, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 7200,
            max_contacts: 10,
        }
    }
}

/// One registered contact of an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub aor: String,
    /// The Contact URI as registered (printed form, used as the binding's identity).
    pub contact: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// q-value in thousandths (RFC 3261 §20.10: 0 to 1 with up to three decimals).
    pub q: u16,
    pub call_id: String,
    pub cseq: u32,
    pub transport: Transport,
    /// Where the REGISTER came from — where requests for this contact are sent.
    pub source: SocketAddr,
    /// The listener it arrived on.
    pub local: SocketAddr,
    /// The stream connection it arrived on (not persisted: connections end with the process).
    pub conn: Option<ConnId>,
    pub user_agent: Option<String>,
    pub registered_at: u64,
}

impl Binding {
    pub fn remaining(&self, now_unix: u64) -> u64 {
        self.expires_at.saturating_sub(now_unix)
    }
}

/// What a REGISTER changed, to be made durable before it is acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Upsert(Binding),
    Remove { aor: String, contact: String },
}

/// A successful REGISTER: the account's bindings after it, and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub bindings: Vec<Binding>,
    pub changes: Vec<Change>,
    /// The account's bindings before this REGISTER, to put back with
    /// [`Registrar::set_bindings`] if the store cannot record the change.
    pub previous: Vec<Binding>,
}

/// Why a REGISTER is refused; each maps to one response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// 423 with `Min-Expires` (RFC 3261 §10.3 step 7).
    #[error("interval too brief, minimum {min} s")]
    IntervalTooBrief { min: u32 },
    /// 400: the Contact list or Expires is unreadable, or `*` is misused (§10.3 step 6).
    #[error("bad request: {reason}")]
    BadRequest { reason: &'static str },
    /// 400: same Call-ID with a CSeq not higher than the binding's (§10.3 step 7).
    #[error("out-of-order CSeq for an existing binding")]
    OutOfOrder,
    /// 403: more contacts than the account may register.
    #[error("more than {max} contacts")]
    TooManyContacts { max: usize },
}

impl RegisterError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterError::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterError::BadRequest { .. } => (400, "Bad Request"),
            RegisterError::OutOfOrder => (400, "Out Of Order CSeq"),
            RegisterError::TooManyContacts { .. } => (403, "Too Many Contacts"),
        }
    }
}

/// Where a REGISTER came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub conn: Option<ConnId>,
}

#[derive(Debug, Default)]
pub struct Registrar {
    config: RegistrarConfig,
    by_aor: HashMap<String, Vec<Binding>>,
    count: usize,
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Registrar {
        Registrar {
            config,
            by_aor: HashMap::new(),
            count: 0,
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Load bindings from the store at start-up, skipping those that expired meanwhile.
    pub fn restore(&mut self, bindings: impl IntoIterator<Item = Binding>, now_unix: u64) {
        for b in bindings {
            if b.expires_at > now_unix {
                self.by_aor.entry(b.aor.clone()).or_default().push(b);
                self.count += 1;
            }
        }
    }

    /// Live bindings of an account, best q first.
    pub fn lookup(&self, aor: &str, now_unix: u64) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .by_aor
            .get(aor)
            .map(|bs| bs.iter().filter(|b| b.expires_at > now_unix).collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.q));
        v
    }

    /// Number of bindings held (expired ones count until [`Registrar::expire`] runs).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn aor_count(&self) -> usize {
        self.by_aor.len()
    }

    /// Drop expired bindings; returns them (the store deletes by time on its own).
    pub fn expire(&mut self, now_unix: u64) -> Vec<Binding> {
        let mut gone = Vec::new();
        self.by_aor.retain(|_, bs| {
            bs.retain(|b| {
                let live = b.expires_at > now_unix;
                if !live {
                    gone.push(b.clone());
                }
                live
            });
            !bs.is_empty()
        });
        self.count -= gone.len();
        gone
    }

    /// Apply an authenticated REGISTER for `aor` (RFC 3261 §10.3 steps 6–8).
    pub fn register(
        &mut self,
        aor: &str,
        req: &Request,
        source: Source,
        now_unix: u64,
    ) -> Result<Outcome, RegisterError> {
        let h = &req.headers;
        let call_id = h
            .call_id()
            .map_err(|_| RegisterError::BadRequest { reason: "Call-ID" })?;
        let cseq = h
            .cseq()
            .map_err(|_| RegisterError::BadRequest { reason: "CSeq" })?
            .seq;
        let header_expires = h
            .expires()
            .map_err(|_| RegisterError::BadRequest { reason: "Expires" })?;
        let contacts = h.contacts().map_err(|_| RegisterError::BadRequest {
            reason: "malformed Contact",
        })?;
        let user_agent = h.get_str(&HeaderName::UserAgent).map(str::to_owned);
        let previous = self.by_aor.get(aor).cloned().unwrap_or_default();
        let live: Vec<Binding> = previous
            .iter()
            .filter(|b| b.expires_at > now_unix)
            .cloned()
            .collect();

        let Some(contacts) = contacts else {
            // `Contact: *` — remove every binding; only with Expires: 0 (§10.3 step 6).
            if header_expires != Some(0) {
                return Err(RegisterError::BadRequest {
                    reason: "Contact: * requires Expires: 0",
                });
            }
            for b in &live {
                if b.call_id == call_id && cseq <= b.cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
            let changes = live
                .iter()
                .map(|b| Change::Remove {
                    aor: aor.to_owned(),
                    contact: b.contact.clone(),
                })
                .collect();
            self.replace(aor, Vec::new());
            return Ok(Outcome {
                bindings: Vec::new(),
                changes,
                previous,
            });
        };

        // Work out every contact's fate first: the request succeeds or fails as a whole.
        let mut plans: Vec<(String, u32, u16)> = Vec::with_capacity(contacts.len());
        for c in &contacts {
            let expires = contact_expires(c, header_expires, self.config.default_expires)?;
            if expires != 0 && expires < self.config.min_expires {
                return Err(RegisterError::IntervalTooBrief {
                    min: self.config.min_expires,
                });
            }
            let q = match c.param("q") {
                None | Some(None) => 1000,
                Some(Some(q)) => parse_q(q).ok_or(RegisterError::BadRequest { reason: "q" })?,
            };
            let key = contact_key(c);
            if let Some(b) = live.iter().find(|b| b.contact == key) {
                if b.call_id == call_id && cseq <= b.cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
            plans.push((key, expires.min(self.config.max_expires), q));
        }

        let mut next = live;
        let mut changes = Vec::with_capacity(plans.len());
        for (key, expires, q) in plans {
            next.retain(|b| b.contact != key);
            if expires == 0 {
                changes.push(Change::Remove {
                    aor: aor.to_owned(),
                    contact: key,
                });
                continue;
            }
            let b = Binding {
                aor: aor.to_owned(),
                contact: key,
                expires_at: now_unix + u64::from(expires),
                q,
                call_id: call_id.to_owned(),
                cseq,
                transport: source.transport,
                source: source.addr,
                local: source.local,
                conn: source.conn,
                user_agent: user_agent.clone(),
                registered_at: now_unix,
            };
            changes.push(Change::Upsert(b.clone()));
            next.push(b);
        }
        if next.len() > self.config.max_contacts {
            return Err(RegisterError::TooManyContacts {
                max: self.config.max_contacts,
            });
        }
        self.replace(aor, next.clone());
        Ok(Outcome {
            bindings: next,
            changes,
            previous,
        })
    }

    /// Put an account's bindings back as they were (when the store could not record a change).
    pub fn set_bindings(&mut self, aor: &str, bindings: Vec<Binding>) {
        self.replace(aor, bindings);
    }

    fn replace(&mut self, aor: &str, bindings: Vec<Binding>) {
        let old = match bindings.is_empty() {
            true => self.by_aor.remove(aor).map_or(0, |v| v.len()),
            false => self
                .by_aor
                .insert(aor.to_owned(), bindings.clone())
                .map_or(0, |v| v.len()),
        };
        self.count = self.count - old + bindings.len();
    }
}

/// The identity of a contact: its URI, printed canonically (host lower-cased), so that
/// re-registrations of the same URI refresh rather than duplicate (RFC 3261 §10.3 step 7
/// compares with §19.1.4 URI equality).
pub fn contact_key(c: &NameAddr) -> String {
    c.uri.to_string()
}

fn contact_expires(c: &NameAddr, header: Option<u32>, default: u32) -> Result<u32, RegisterError> {
    match c.param("expires") {
        None => Ok(header.unwrap_or(default)),
        Some(Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            // Larger than 2³²−1 means "as long as you allow" (RFC 3261 §20.19).
            Ok(v.parse::<u64>()
                .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32))
        }
        Some(_) => Err(RegisterError::BadRequest {
            reason: "Contact expires",
        }),
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{parse, Framing, Message};
    use bytes::Bytes;

    const NOW: u64 = 1_800_000_000;

    fn register(call_id: &str, cseq: u32, extra: &str) -> Request {
        let raw = format!(
            "REGISTER sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{cseq}\r\n\
             From: <sip:1001@switchboard>;tag=a\r\nTo: <sip:1001@switchboard>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\nUser-Agent: test-phone\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(Bytes::from(raw), Framing::Stream).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn src() -> Source {
        Source {
            transport: Transport::Udp,
            addr: "192.0.2.7:40000".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
        }
    }

    fn reg() -> Registrar {
        Registrar::new(RegistrarConfig::default())
    }

    #[test]
    fn binds_with_default_expiry_and_nat_source() {
        let mut r = reg();
        let out = r
            .register(
                "1001",
                &register("c1", 1, "Contact: <sip:1001@10.0.0.5:5062>\r\n"),
                src(),
                NOW,
            )
            .unwrap();
        assert_eq!(out.bindings.len(), 1);
        let b = &out.bindings[0];
        assert_eq!(b.expires_at, NOW + 3600);
        assert_eq!(b.source, src().addr);
        assert_eq!(b.user_agent.as_deref(), Some("test-phone"));
        assert_eq!(r.lookup("1001", NOW).len(), 1);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn too_brief_is_423_and_too_long_is_clamped() {
        let mut r = reg();
        let e = r
            .register(
                "1001",
                &register("c1", 1, "Contact: <sip:a@h>\r\nExpires: 30\r\n"),
                src(),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e, RegisterError::IntervalTooBrief { min: 60 });
        assert_eq!(e.status().0, 423);
        let out = r
            .register(
                "1001",
                &register("c1", 2, "Contact: <sip:a@h>;expires=99999\r\n"),
                src(),
                NOW,
            )
            .unwrap();
        assert_eq!(out.bindings[0].expires_at, NOW + 7200);
        assert!(!r.is_empty());
    }

    #[test]
    fn several_contacts_q_values_and_refresh() {
        let mut r = reg();
        r.register(
            "1001",
            &register("c1", 1, "Contact: <sip:a@h1>;q=0.5, <sip:b@h2>;q=1.0\r\n"),
            src(),
            NOW,
        )
        .unwrap();
        let l = r.lookup("1001", NOW);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].contact, "sip:b@h2");
        assert_eq!(l[1].q, 500);
        // Refresh of one contact keeps the other and moves its expiry.
        r.register(
            "1001",
            &register("c1", 2, "Contact: <sip:a@h1>;expires=120\r\n"),
            src(),
            NOW + 10,
        )
        .unwrap();
        let l = r.lookup("1001", NOW + 10);
        assert_eq!(l.len(), 2);
        let a = l.iter().find(|b| b.contact == "sip:a@h1").unwrap();
        assert_eq!(a.expires_at, NOW + 130);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn out_of_order_cseq_fails_whole_request() {
        let mut r = reg();
        r.register(
            "1001",
            &register("c1", 5, "Contact: <sip:a@h1>\r\n"),
            src(),
            NOW,
        )
        .unwrap();
        let e = r
            .register(
                "1001",
                &register("c1", 5, "Contact: <sip:a@h1>\r\n"),
                src(),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e, RegisterError::OutOfOrder);
        // A new Call-ID (a rebooted phone) may replace it with any CSeq.
        r.register(
            "1001",
            &register("c2", 1, "Contact: <sip:a@h1>\r\n"),
            src(),
            NOW,
        )
        .unwrap();
    }

    #[test]
    fn star_removes_all_only_with_expires_zero() {
        let mut r = reg();
        r.register(
            "1001",
            &register("c1", 1, "Contact: <sip:a@h1>, <sip:b@h2>\r\n"),
            src(),
            NOW,
        )
        .unwrap();
        let e = r
            .register("1001", &register("c2", 1, "Contact: *\r\n"), src(), NOW)
            .unwrap_err();
        assert!(matches!(e, RegisterError::BadRequest { .. }));
        let e = r
            .register(
                "1001",
                &register("c2", 1, "Contact: *, <sip:a@h1>\r\nExpires: 0\r\n"),
                src(),
                NOW,
            )
            .unwrap_err();
        assert!(matches!(e, RegisterError::BadRequest { .. }));
        let out = r
            .register(
                "1001",
                &register("c2", 1, "Contact: *\r\nExpires: 0\r\n"),
                src(),
                NOW,
            )
            .unwrap();
        assert!(out.bindings.is_empty());
        assert_eq!(out.changes.len(), 2);
        assert!(r.lookup("1001", NOW).is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn expires_zero_removes_one_and_query_lists() {
        let mut r = reg();
        r.register(
            "1001",
            &register("c1", 1, "Contact: <sip:a@h1>, <sip:b@h2>\r\n"),
            src(),
            NOW,
        )
        .unwrap();
        let out = r
            .register(
                "1001",
                &register("c1", 2, "Contact: <sip:a@h1>;expires=0\r\n"),
                src(),
                NOW,
            )
            .unwrap();
        assert_eq!(out.bindings.len(), 1);
        // A REGISTER without Contact is a query: nothing changes, bindings are listed.
        let out = r
            .register("1001", &register("c1", 3, ""), src(), NOW)
            .unwrap();
        assert_eq!(out.bindings.len(), 1);
        assert!(out.changes.is_empty());
    }

    #[test]
    fn expiry_and_restore() {
        let mut r = reg();
        r.register(
            "1001",
            &register("c1", 1, "Contact: <sip:a@h1>;expires=60\r\n"),
            src(),
            NOW,
        )
        .unwrap();
        let saved: Vec<Binding> = r.lookup("1001", NOW).into_iter().cloned().collect();
        assert!(r.expire(NOW + 59).is_empty());
        assert_eq!(r.expire(NOW + 60).len(), 1);
        assert!(r.is_empty());
        let mut again = reg();
        again.restore(saved.clone(), NOW + 30);
        assert_eq!(again.lookup("1001", NOW + 30).len(), 1);
        let mut late = reg();
        late.restore(saved, NOW + 61);
        assert!(late.is_empty());
    }

    #[test]
    fn max_contacts_and_bad_q() {
        let mut r = Registrar::new(RegistrarConfig {
            max_contacts: 2,
            ..RegistrarConfig::default()
        });
        let e = r
            .register(
                "1001",
                &register("c", 1, "Contact: <sip:a@h>, <sip:b@h>, <sip:c@h>\r\n"),
                src(),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e.status().0, 403);
        let e = r
            .register(
                "1001",
                &register("c", 2, "Contact: <sip:a@h>;q=2\r\n"),
                src(),
                NOW,
            )
            .unwrap_err();
        assert!(matches!(e, RegisterError::BadRequest { .. }));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.001"), None);
    }
}
