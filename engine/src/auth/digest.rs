//! HTTP Digest authentication for SIP, server side: parsing credentials, issuing challenges and
//! verifying responses, without I/O and without a clock.
//!
//! - RFC 7616 (HTTP Digest Access Authentication): the `Authorization` grammar (§3.4), the
//!   response computation (§3.4.1) and the challenge (§3.3).
//! - RFC 8760 (SIP Digest with SHA-256): the algorithm names `MD5` and `SHA-256`, and the rule that a
//!   server offering several algorithms lists the preferred one first (§2.4).
//! - RFC 3261 §22.4: SIP's use of Digest (`qop` optional for RFC 2069 clients, `uri` = Request-URI).
//!
//! ## Nonces are stateless
//! A nonce is `hex(issued_at ‖ salt ‖ MAC)`: the issue time in unix seconds, a 64-bit salt
//! (a per-verifier counter that starts at a random value) and the first 128 bits of
//! HMAC-SHA256(server secret, label ‖ realm ‖ issued_at ‖ salt). The server keeps no record of the
//! nonces it hands out: any nonce whose MAC checks was issued by a verifier holding the same secret
//! for the same realm, and its age tells whether it is stale. A forged or foreign nonce is
//! [`NonceStatus::Invalid`]; an authentic one older than the lifetime is [`NonceStatus::Stale`].
//!
//! ## Replay protection and its limits
//! With `qop=auth` every request carries a nonce count (`nc`). The verifier remembers, per nonce it
//! has *successfully* verified, the highest `nc` accepted and rejects a request whose `nc` is not
//! greater ([`FailReason::Replay`]). The table is bounded ([`DigestConfig::max_tracked_nonces`]);
//! expired nonces are dropped first, and if it is still full the oldest nonces are evicted and any
//! nonce issued no later than them is answered with [`Verdict::Stale`] (the client simply retries
//! with a fresh nonce), so eviction never re-opens a replay window.
//! Without `qop` (RFC 2069 clients, allowed by [`DigestConfig::allow_no_qop`]) there is no `nc`, so a
//! nonce serves exactly once: a second use is answered [`Verdict::Stale`] (a fresh challenge).
//!
//! ## Anti-enumeration
//! [`Verifier::verify`] does the same work for an unknown user as for a known one (it hashes
//! against a dummy secret) and returns the same [`FailReason::BadCredentials`] as for a wrong
//! password. Every other verdict depends only on the request and the nonce, never on whether the
//! account exists.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest algorithm (RFC 7616 §3.3, RFC 8760 §2.2). The `-sess` variants are not supported: no SIP
/// phone in the field needs them and they make HA1 depend on the client nonce, so a stored HA1
/// could no longer be used directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default when the `algorithm` parameter is absent.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token (case-insensitive).
    pub fn from_token(token: &str) -> Result<Self, ParseError> {
        if token.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else if token.len() > 5
            && token.as_bytes()[token.len() - 5..].eq_ignore_ascii_case(b"-sess")
        {
            Err(ParseError::SessAlgorithmUnsupported {
                algorithm: clip(token),
            })
        } else {
            Err(ParseError::UnknownAlgorithm {
                algorithm: clip(token),
            })
        }
    }

    /// `H(a:b:c…)` as lowercase hex (RFC 7616 §3.4.1 joins the fields with colons).
    fn hash_joined(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex::encode(d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }

    /// Length of a hex digest of this algorithm.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 7616 §3.3). Only `auth` is verified; `auth-int` parses (so the
/// verdict can say why it is refused) but the verifier rejects it — we never offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`.
    Auth,
    /// `auth-int` (integrity of the body): not offered, rejected.
    AuthInt,
}

impl Qop {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// Why an `Authorization` / `Proxy-Authorization` value could not be read.
///
/// [`ParseError::UnsupportedScheme`] means "not Digest": answer with a fresh challenge.
/// The others are malformed Digest credentials (RFC 3261 suggests 400 Bad Request; answering with a
/// fresh challenge is also acceptable and friendlier to buggy phones).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The value is empty or only whitespace.
    #[error("empty credentials")]
    Empty,
    /// The scheme is not `Digest` (e.g. `Basic`, `Bearer`).
    #[error("unsupported authentication scheme {scheme:?}")]
    UnsupportedScheme {
        /// The scheme as sent (clipped to 32 bytes).
        scheme: String,
    },
    /// The grammar was broken at byte offset `at`.
    #[error("malformed credentials at byte {at}: expected {expected}")]
    Syntax {
        /// Byte offset into the header value.
        at: usize,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A quoted string was not closed.
    #[error("unterminated quoted string starting at byte {at}")]
    UnterminatedQuotedString {
        /// Byte offset of the opening quote.
        at: usize,
    },
    /// A parameter appeared twice (RFC 7235 §2.1: each parameter name occurs once).
    #[error("duplicate parameter {name:?}")]
    DuplicateParameter {
        /// The parameter name, lowercased.
        name: String,
    },
    /// A mandatory parameter is absent.
    #[error("missing parameter {name:?}")]
    MissingParameter {
        /// The parameter name.
        name: &'static str,
    },
    /// `algorithm` names something we do not know.
    #[error("unknown digest algorithm {algorithm:?}")]
    UnknownAlgorithm {
        /// The algorithm as sent (clipped to 32 bytes).
        algorithm: String,
    },
    /// `algorithm` is `MD5-sess` or `SHA-256-sess`, which we do not implement.
    #[error("session digest algorithm {algorithm:?} is not supported")]
    SessAlgorithmUnsupported {
        /// The algorithm as sent (clipped to 32 bytes).
        algorithm: String,
    },
    /// `qop` is neither `auth` nor `auth-int`.
    #[error("invalid qop {value:?}")]
    InvalidQop {
        /// The value as sent (clipped to 32 bytes).
        value: String,
    },
    /// `nc` is not exactly 8 lowercase hex digits (RFC 7616 §3.4: `nc-value = 8LHEX`).
    #[error("invalid nonce count {value:?}")]
    InvalidNonceCount {
        /// The value as sent (clipped to 32 bytes).
        value: String,
    },
}

/// Parsed Digest credentials (RFC 7616 §3.4).
///
/// `algorithm` defaults to MD5 when absent. When `qop` is present, `cnonce` and `nc` are present too
/// (the parser enforces it). Parameters we do not use (`userhash`, `username*`, extensions) are
/// ignored; a `userhash=true` client therefore fails lookup and gets `BadCredentials`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, as issued by [`Verifier::challenge`].
    pub nonce: String,
    /// `uri` (the digest-uri). The caller compares it with the Request-URI.
    pub uri: String,
    /// `response`, hex.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `qop`.
    pub qop: Option<Qop>,
    /// `nc`.
    pub nc: Option<u32>,
    /// `opaque`.
    pub opaque: Option<String>,
}

// The response is a password-equivalent for this one request; keep it out of logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .field("uri", &self.uri)
            .field("response", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("cnonce", &self.cnonce)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .field("opaque", &self.opaque)
            .finish()
    }
}

impl Credentials {
    /// Parses the value of an `Authorization` or `Proxy-Authorization` header (the text after the
    /// colon). Never panics.
    ///
    /// Accepted: case-insensitive scheme and parameter names, linear whitespace (including folded
    /// CRLF) around `=` and `,`, empty list elements, quoted strings with backslash escapes, and —
    /// for robustness with sloppy phones — unquoted values containing any character but
    /// whitespace, `,` and `"`.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut p = Cursor::digest(value)?;
        // Unknown parameter names seen so far (rare; known ones are tracked by their slots),
        // so that any repeated parameter is refused.
        let mut unknown: Vec<&str> = Vec::new();
        let mut raw = RawParams::default();
        while let Some((name, value)) = p.next_param()? {
            let duplicate = match raw.slot(name) {
                Some(slot) => slot.replace(value).is_some(),
                // Unknown parameters are ignored (RFC 7616 §3.4), but not repeated.
                None if unknown.iter().any(|u| u.eq_ignore_ascii_case(name)) => true,
                None => {
                    unknown.push(name);
                    false
                }
            };
            if duplicate {
                return Err(ParseError::DuplicateParameter {
                    name: clip(&name.to_ascii_lowercase()),
                });
            }
        }
        raw.finish()
    }
}

/// Values collected while parsing, before the required ones are checked.
#[derive(Default)]
struct RawParams {
    username: Option<String>,
    realm: Option<String>,
    nonce: Option<String>,
    uri: Option<String>,
    response: Option<String>,
    algorithm: Option<String>,
    cnonce: Option<String>,
    qop: Option<String>,
    nc: Option<String>,
    opaque: Option<String>,
}

impl RawParams {
    /// The slot of a known parameter, matched case-insensitively without allocating.
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        let slots: [(&str, &mut Option<String>); 10] = [
            ("username", &mut self.username),
            ("realm", &mut self.realm),
            ("nonce", &mut self.nonce),
            ("uri", &mut self.uri),
            ("response", &mut self.response),
            ("algorithm", &mut self.algorithm),
            ("cnonce", &mut self.cnonce),
            ("qop", &mut self.qop),
            ("nc", &mut self.nc),
            ("opaque", &mut self.opaque),
        ];
        slots
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, slot)| slot)
    }

    fn finish(self) -> Result<Credentials, ParseError> {
        fn req(v: Option<String>, name: &'static str) -> Result<String, ParseError> {
            v.ok_or(ParseError::MissingParameter { name })
        }
        let algorithm = match &self.algorithm {
            Some(a) => Algorithm::from_token(a)?,
            None => Algorithm::Md5,
        };
        let qop = match &self.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
            Some(q) => return Err(ParseError::InvalidQop { value: clip(q) }),
        };
        let nc = match &self.nc {
            None => None,
            Some(n) => Some(parse_nc(n)?),
        };
        // RFC 7616 §3.4: cnonce and nc MUST be sent with qop, and only with it.
        if qop.is_some() {
            if self.cnonce.is_none() {
                return Err(ParseError::MissingParameter { name: "cnonce" });
            }
            if nc.is_none() {
                return Err(ParseError::MissingParameter { name: "nc" });
            }
        }
        Ok(Credentials {
            username: req(self.username, "username")?,
            realm: req(self.realm, "realm")?,
            nonce: req(self.nonce, "nonce")?,
            uri: req(self.uri, "uri")?,
            response: req(self.response, "response")?,
            algorithm,
            cnonce: self.cnonce,
            qop,
            nc,
            opaque: self.opaque,
        })
    }
}

/// `nc-value = 8LHEX`. Strict, because the response hashes the text as sent and we re-create it
/// with `{:08x}`: accepting `1` or `0000000A` would only turn into a puzzling `BadCredentials`.
fn parse_nc(text: &str) -> Result<u32, ParseError> {
    let ok = text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(ParseError::InvalidNonceCount { value: clip(text) });
    }
    u32::from_str_radix(text, 16).map_err(|_| ParseError::InvalidNonceCount { value: clip(text) })
}

/// Keeps attacker-sized strings out of errors and logs.
fn clip(s: &str) -> String {
    const MAX: usize = 32;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A byte cursor. Every position it stops at is an ASCII byte or the end, so slicing the input
/// there is always on a char boundary.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The start shared by credentials and challenges: the `Digest` scheme and the whitespace
    /// after it.
    fn digest(value: &'a str) -> Result<Cursor<'a>, ParseError> {
        let mut p = Cursor {
            s: value.as_bytes(),
            pos: 0,
        };
        p.skip_lws();
        if p.at_end() {
            return Err(ParseError::Empty);
        }
        let scheme = p.token().ok_or(ParseError::Syntax {
            at: p.pos,
            expected: "an authentication scheme",
        })?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(ParseError::UnsupportedScheme {
                scheme: clip(scheme),
            });
        }
        if !p.skip_lws() && !p.at_end() {
            return Err(ParseError::Syntax {
                at: p.pos,
                expected: "whitespace after the scheme",
            });
        }
        Ok(p)
    }

    /// The next `name=value` of a parameter list, `None` at its end. Empty list elements are
    /// skipped (RFC 7230 §7); parameters are separated by `,`.
    fn next_param(&mut self) -> Result<Option<(&'a str, String)>, ParseError> {
        loop {
            self.skip_lws();
            if self.at_end() {
                return Ok(None);
            }
            if !self.eat(b',') {
                break;
            }
        }
        let name = self.token().ok_or(ParseError::Syntax {
            at: self.pos,
            expected: "a parameter name",
        })?;
        self.skip_lws();
        if !self.eat(b'=') {
            return Err(ParseError::Syntax {
                at: self.pos,
                expected: "'=' after a parameter name",
            });
        }
        self.skip_lws();
        let value = if self.peek() == Some(b'"') {
            self.quoted_string()?
        } else {
            self.bare_value().ok_or(ParseError::Syntax {
                at: self.pos,
                expected: "a parameter value",
            })?
        };
        self.skip_lws();
        if !self.at_end() && !self.eat(b',') {
            return Err(ParseError::Syntax {
                at: self.pos,
                expected: "',' between parameters",
            });
        }
        Ok(Some((name, value)))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips SP, HTAB, CR and LF (folded header lines arrive here unfolded or not). Returns
    /// whether anything was skipped.
    fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// RFC 7230 `token` (1*tchar).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        self.slice(start)
    }

    /// An unquoted parameter value: anything up to whitespace, `,` or `"`.
    fn bare_value(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'"'))
        {
            self.pos += 1;
        }
        self.slice(start).map(str::to_owned)
    }

    fn slice(&self, start: usize) -> Option<&'a str> {
        if self.pos == start {
            return None;
        }
        std::str::from_utf8(self.s.get(start..self.pos)?).ok()
    }

    /// RFC 7230 `quoted-string`; the cursor is on the opening quote. A backslash escapes the next
    /// byte; the result is UTF-8 because only ASCII backslashes are removed from UTF-8 input.
    fn quoted_string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::UnterminatedQuotedString { at: open }),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(ParseError::UnterminatedQuotedString { at: open }),
                        Some(b) => {
                            out.push(b);
                            self.pos += 1;
                        }
                    }
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `s` as an RFC 7230 quoted-string.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` value (RFC 7616 §3.3), for the client side:
/// a trunk answering its carrier's challenge. Parameters a client does not need (`domain`,
/// `userhash`, `charset`, extensions) are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The offered qops (`qop="auth,auth-int"`); empty for an RFC 2069 challenge.
    pub qop: Vec<Qop>,
    /// `stale=true`: the previous credentials were right, only the nonce had expired.
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge with the grammar of [`Credentials::parse`]. Never panics.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let mut p = Cursor::digest(value)?;
        let mut params: Vec<(&str, String)> = Vec::new();
        while let Some((name, value)) = p.next_param()? {
            if params.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(ParseError::DuplicateParameter {
                    name: clip(&name.to_ascii_lowercase()),
                });
            }
            params.push((name, value));
        }
        let take = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let algorithm = match take("algorithm") {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };
        let mut qop = Vec::new();
        for q in take("qop").iter().flat_map(|q| q.split(',')) {
            let q = q.trim();
            if q.eq_ignore_ascii_case("auth") {
                qop.push(Qop::Auth);
            } else if q.eq_ignore_ascii_case("auth-int") {
                qop.push(Qop::AuthInt);
            }
            // Unknown qop tokens are ignored (RFC 7616 §3.3: clients ignore what they don't know).
        }
        Ok(Challenge {
            realm: take("realm").ok_or(ParseError::MissingParameter { name: "realm" })?,
            nonce: take("nonce").ok_or(ParseError::MissingParameter { name: "nonce" })?,
            opaque: take("opaque"),
            algorithm,
            qop,
            stale: take("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// An `Authorization` / `Proxy-Authorization` value answering `challenge` (RFC 7616 §3.4), with
/// `qop=auth` when offered (RFC 2069 style otherwise). The client side of [`Verifier::verify`].
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    challenge: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let ha1 = ha1(challenge.algorithm, username, &challenge.realm, password);
    let with_qop = challenge.qop.contains(&Qop::Auth);
    let qop = with_qop.then_some(QopAuth { nc, cnonce });
    let response = compute_response(
        challenge.algorithm,
        &ha1,
        method,
        uri,
        &challenge.nonce,
        qop,
    );
    let mut out = String::with_capacity(256);
    out.push_str("Digest username=");
    push_quoted(&mut out, username);
    out.push_str(", realm=");
    push_quoted(&mut out, &challenge.realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, &challenge.nonce);
    out.push_str(", uri=");
    push_quoted(&mut out, uri);
    out.push_str(", response=\"");
    out.push_str(&response);
    out.push_str("\", algorithm=");
    out.push_str(challenge.algorithm.as_str());
    if with_qop {
        out.push_str(", qop=auth, nc=");
        out.push_str(&format!("{nc:08x}"));
        out.push_str(", cnonce=");
        push_quoted(&mut out, cnonce);
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(", opaque=");
        push_quoted(&mut out, opaque);
    }
    out
}

/// `qop=auth` parameters of a response: the nonce count and the client nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// `nc`.
    pub nc: u32,
    /// `cnonce`.
    pub cnonce: &'a str,
}

/// HA1 = H(username:realm:password), lowercase hex (RFC 7616 §3.4.2, non-`-sess`).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_joined(&[username, realm, password])
}

/// The `response` value (RFC 7616 §3.4.1), from a precomputed HA1 (lowercase hex).
///
/// HA2 = H(method:digest-uri); with `qop=auth` response = H(HA1:nonce:nc:cnonce:auth:HA2), without
/// qop (RFC 2069) response = H(HA1:nonce:HA2). Also usable by a client (trunk registration).
pub fn compute_response(
    algorithm: Algorithm,
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
) -> String {
    let ha2 = algorithm.hash_joined(&[method, uri]);
    match qop {
        Some(q) => {
            let nc = format!("{:08x}", q.nc);
            algorithm.hash_joined(&[ha1, nonce, &nc, q.cnonce, Qop::Auth.as_str(), &ha2])
        }
        None => algorithm.hash_joined(&[ha1, nonce, &ha2]),
    }
}

/// Constant-time equality of two byte strings of public length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`. Hand-written over `sha2` (twelve
/// lines) rather than adding the `hmac` crate; checked against RFC 4231 in the tests.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Why [`AccountSecret::from_ha1`] refused a stored HA1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The HA1 is not hex of the algorithm's digest length.
    #[error("stored {algorithm} HA1 must be {expected} hex digits (got {len} characters)")]
    InvalidHa1 {
        /// Which HA1.
        algorithm: Algorithm,
        /// Expected number of hex digits.
        expected: usize,
        /// Characters received.
        len: usize,
    },
}

/// An account's Digest secret: HA1 for MD5 and for SHA-256 (lowercase hex), so a request costs
/// two hashes, not three, and the password itself need not be stored. HA1 is bound to the
/// username and realm: change either and it must be recomputed. `Debug` redacts it; there is no
/// `PartialEq`, so nobody compares secrets in variable time by accident.
#[derive(Clone)]
pub struct AccountSecret {
    md5: String,
    sha256: String,
}

impl fmt::Debug for AccountSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountSecret(<redacted>)")
    }
}

impl AccountSecret {
    /// Computes both HA1s from a cleartext password.
    pub fn from_password(username: &str, realm: &str, password: &str) -> Self {
        AccountSecret {
            md5: ha1(Algorithm::Md5, username, realm, password),
            sha256: ha1(Algorithm::Sha256, username, realm, password),
        }
    }

    /// Uses stored HA1 values (hex, either case).
    pub fn from_ha1(md5_hex: &str, sha256_hex: &str) -> Result<Self, SecretError> {
        fn check(algorithm: Algorithm, s: &str) -> Result<String, SecretError> {
            let expected = algorithm.hex_len();
            if s.len() != expected || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(SecretError::InvalidHa1 {
                    algorithm,
                    expected,
                    len: s.chars().count(),
                });
            }
            Ok(s.to_ascii_lowercase())
        }
        Ok(AccountSecret {
            md5: check(Algorithm::Md5, md5_hex)?,
            sha256: check(Algorithm::Sha256, sha256_hex)?,
        })
    }

    /// The HA1 for `algorithm`, lowercase hex (what an account store persists).
    pub fn ha1_hex(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }
}

/// The key nonces are authenticated with. Nodes that share it accept each other's nonces (the
/// replay table stays per node). `Debug` redacts it.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

impl ServerSecret {
    /// A fresh random secret (from the OS-seeded thread RNG). Nonces issued before a restart with
    /// a new secret become `Invalid`; clients get a fresh challenge and retry.
    pub fn random() -> Self {
        ServerSecret(rand::random())
    }

    /// A configured secret (for several nodes behind one proxy, or for tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ServerSecret(bytes)
    }
}

/// Verifier settings. Plain struct with `Default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// Our realm; credentials for another realm fail with [`FailReason::RealmMismatch`].
    pub realm: String,
    /// How long a nonce stays valid. Older authentic nonces are stale.
    pub nonce_lifetime: Duration,
    /// Accept RFC 2069 responses (no `qop`). Default `true`: many old phones and SIPp scenarios
    /// omit qop. Such nonces are replayable until they expire (see the module docs).
    pub allow_no_qop: bool,
    /// Bound on the nonce-count table (entries are a few dozen bytes).
    pub max_tracked_nonces: usize,
    /// The algorithms offered, one challenge each, most preferred first (RFC 8760 §2.4).
    /// Credentials computed with an algorithm not listed here are refused.
    pub algorithms: Vec<Algorithm>,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            realm: "switchboard".to_owned(),
            nonce_lifetime: Duration::from_secs(300),
            allow_no_qop: true,
            // About 40 bytes each: 40 MB at most. At 20,000 authentications a second that is
            // 50 s of nonces — longer than any client takes to answer its challenge — so
            // eviction's "stale" answer only ever meets a client that waited that long.
            max_tracked_nonces: 1_000_000,
            algorithms: vec![Algorithm::Md5],
        }
    }
}

/// What a nonce is worth, judged from its own bytes and the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Issued by us, not expired.
    Valid {
        /// Issue time, unix seconds.
        issued_at: u64,
    },
    /// Issued by us, expired: challenge again with `stale=true`.
    Stale,
    /// Not ours (forged, garbled, other realm or other secret).
    Invalid,
}

/// The outcome of [`Verifier::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated.
    Ok,
    /// The response was right but the nonce is stale: challenge again with `stale=true` (RFC 7616
    /// §3.3: the client retries without asking the user). Never returned for a wrong password or
    /// an unknown user.
    Stale,
    /// Not authenticated: challenge again (stale=false).
    Fail(FailReason),
}

/// Why a verification failed. Only [`FailReason::BadCredentials`] depends on the account; it is
/// the same whether the user is unknown or the password is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Wrong password, unknown user, or a response for a different method/uri.
    BadCredentials,
    /// `realm` is not ours.
    RealmMismatch,
    /// The nonce is not one we issued.
    InvalidNonce,
    /// `opaque` was sent but is not the one we issued.
    OpaqueMismatch,
    /// No `qop`, and [`DigestConfig::allow_no_qop`] is off.
    QopRequired,
    /// `qop=auth-int`, which we never offer.
    UnsupportedQop,
    /// An algorithm that is not in [`DigestConfig::algorithms`].
    AlgorithmNotOffered,
    /// A correct response whose `nc` is not above the last accepted one for this nonce.
    Replay,
}

impl FailReason {
    /// Whether this failure is a password guess that should feed the lock-out
    /// ([`super::Lockout::record_failure`]). Only `BadCredentials` is: the others carry no guess
    /// (a replay needs a captured valid response), and counting them would let protocol quirks
    /// lock out honest phones.
    pub fn counts_as_failure(self) -> bool {
        matches!(self, FailReason::BadCredentials)
    }
}

/// Where a nonce's `nc` stands in the replay table.
enum NcOutcome {
    Fresh,
    Replay,
    Evicted,
}

/// Highest accepted `nc` per nonce, keyed by (issued_at, salt) and ordered by issue time so the
/// oldest go first. See the module docs for the eviction rule.
struct NonceCounts {
    map: BTreeMap<(u64, u64), u32>,
    capacity: usize,
    /// Nonces issued at or before this time may have been evicted: treat unknown ones as stale.
    evicted_up_to: Option<u64>,
}

impl NonceCounts {
    fn accept(&mut self, key: (u64, u64), nc: u32, unix_secs: u64, lifetime: u64) -> NcOutcome {
        if let Some(last) = self.map.get_mut(&key) {
            if nc <= *last {
                return NcOutcome::Replay;
            }
            *last = nc;
            return NcOutcome::Fresh;
        }
        if self.evicted_up_to.is_some_and(|floor| key.0 <= floor) {
            return NcOutcome::Evicted;
        }
        if self.map.len() >= self.capacity {
            self.prune(unix_secs, lifetime);
            while self.map.len() >= self.capacity {
                let Some(((issued, _), _)) = self.map.pop_first() else {
                    break;
                };
                self.evicted_up_to = Some(self.evicted_up_to.map_or(issued, |f| f.max(issued)));
            }
        }
        self.map.insert(key, nc);
        NcOutcome::Fresh
    }

    /// Drops nonces that are stale anyway (age > lifetime); they can no longer be replayed.
    fn prune(&mut self, unix_secs: u64, lifetime: u64) {
        let cutoff = unix_secs.saturating_sub(lifetime);
        self.map = self.map.split_off(&(cutoff, 0));
    }
}

/// Label that separates nonce MACs from any other use of the server secret.
const NONCE_LABEL: &[u8] = b"switchboard digest nonce v1\0";
const OPAQUE_LABEL: &[u8] = b"switchboard digest opaque v1\0";
/// Nonce layout: issued_at (8) ‖ salt (8) ‖ MAC (16), hex-encoded.
const NONCE_BYTES: usize = 32;

/// The server side of Digest: issues challenges, verifies credentials, remembers nonce counts.
/// Sans-IO: time arrives as `unix_secs` (wall-clock seconds; nonces outlive restarts and may be
/// checked by another node, so a monotonic `Instant` would not do).
pub struct Verifier {
    config: DigestConfig,
    secret: ServerSecret,
    opaque: String,
    next_salt: u64,
    counts: NonceCounts,
    /// Stand-in secret for unknown users, so they cost the same work as known ones.
    dummy: AccountSecret,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("tracked_nonces", &self.counts.map.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `config.realm`, authenticating nonces with `secret`.
    pub fn new(config: DigestConfig, secret: ServerSecret) -> Self {
        let opaque =
            hex::encode(&hmac_sha256(&secret.0, &[OPAQUE_LABEL, config.realm.as_bytes()])[..16]);
        // A random starting salt keeps nonces unique across restarts and across nodes that share
        // the secret; the MAC, not the salt, is what makes nonces unforgeable.
        let next_salt = rand::random();
        let dummy_password: [u8; 16] = rand::random();
        let dummy = AccountSecret::from_password("", &config.realm, &hex::encode(dummy_password));
        let counts = NonceCounts {
            map: BTreeMap::new(),
            capacity: config.max_tracked_nonces.max(1),
            evicted_up_to: None,
        };
        Verifier {
            config,
            secret,
            opaque,
            next_salt,
            counts,
            dummy,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// Number of nonces in the replay table.
    pub fn tracked_nonces(&self) -> usize {
        self.counts.map.len()
    }

    /// Drops replay-table entries for expired nonces. Optional: the table also prunes itself when
    /// full. A shell may call it on a slow timer to return memory early.
    pub fn prune(&mut self, unix_secs: u64) {
        self.counts
            .prune(unix_secs, self.config.nonce_lifetime.as_secs());
    }

    fn mac(&self, issued_at: u64, salt: u64) -> [u8; 32] {
        let realm = self.config.realm.as_bytes();
        let realm_len = (realm.len() as u64).to_be_bytes();
        hmac_sha256(
            &self.secret.0,
            &[
                NONCE_LABEL,
                &realm_len,
                realm,
                &issued_at.to_be_bytes(),
                &salt.to_be_bytes(),
            ],
        )
    }

    /// Issues a fresh nonce stamped with `unix_secs`.
    pub fn issue_nonce(&mut self, unix_secs: u64) -> String {
        let salt = self.next_salt;
        self.next_salt = self.next_salt.wrapping_add(1);
        let mac = self.mac(unix_secs, salt);
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&unix_secs.to_be_bytes());
        raw[8..16].copy_from_slice(&salt.to_be_bytes());
        raw[16..].copy_from_slice(&mac[..16]);
        hex::encode(raw)
    }

    /// Decodes and authenticates a nonce, returning its (issued_at, salt).
    fn open_nonce(&self, nonce: &str) -> Option<(u64, u64)> {
        if nonce.len() != NONCE_BYTES * 2 {
            return None;
        }
        let mut raw = [0u8; NONCE_BYTES];
        hex::decode_to_slice(nonce, &mut raw).ok()?;
        let issued_at = u64::from_be_bytes(raw[..8].try_into().ok()?);
        let salt = u64::from_be_bytes(raw[8..16].try_into().ok()?);
        let mac = self.mac(issued_at, salt);
        ct_eq(&mac[..16], &raw[16..]).then_some((issued_at, salt))
    }

    /// Judges a nonce at `unix_secs`. A nonce stamped in the future (the wall clock stepped back)
    /// counts as age 0: it is authentic, and refusing it would only cause a challenge loop.
    pub fn check_nonce(&self, nonce: &str, unix_secs: u64) -> NonceStatus {
        match self.open_nonce(nonce) {
            None => NonceStatus::Invalid,
            Some((issued_at, _)) if self.is_expired(issued_at, unix_secs) => NonceStatus::Stale,
            Some((issued_at, _)) => NonceStatus::Valid { issued_at },
        }
    }

    fn is_expired(&self, issued_at: u64, unix_secs: u64) -> bool {
        unix_secs.saturating_sub(issued_at) > self.config.nonce_lifetime.as_secs()
    }

    /// One `WWW-Authenticate` / `Proxy-Authenticate` value (RFC 7616 §3.3), with a fresh nonce:
    /// `Digest realm="…", nonce="…", opaque="…", algorithm=MD5, qop="auth"[, stale=true]`.
    pub fn challenge(&mut self, unix_secs: u64, algorithm: Algorithm, stale: bool) -> String {
        let nonce = self.issue_nonce(unix_secs);
        let mut out = String::with_capacity(160);
        out.push_str("Digest realm=");
        push_quoted(&mut out, &self.config.realm);
        out.push_str(", nonce=\"");
        out.push_str(&nonce);
        out.push_str("\", opaque=\"");
        out.push_str(&self.opaque);
        out.push_str("\", algorithm=");
        out.push_str(algorithm.as_str());
        out.push_str(", qop=\"auth\"");
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// The challenges to send, one header each, in the configured order (by default SHA-256
    /// first, then MD5: RFC 8760 §2.4 puts the preferred algorithm first, and clients that only
    /// know MD5 are to skip the SHA-256 one).
    pub fn challenges(&mut self, unix_secs: u64, stale: bool) -> Vec<String> {
        let algorithms = self.config.algorithms.clone();
        algorithms
            .into_iter()
            .map(|a| self.challenge(unix_secs, a, stale))
            .collect()
    }

    /// Verifies `creds` for a request with `method`. `lookup` is the account's secret, or `None`
    /// when the username is unknown (anti-enumeration: same work, same verdict as a wrong
    /// password).
    ///
    /// Checked here: realm equals ours, qop policy, opaque, nonce authenticity and age, the
    /// response, and (with qop) nonce-count replay. **Not** checked here: that `creds.uri` matches
    /// the Request-URI (RFC 3261 §22.4) — the caller holds the request and must compare. The
    /// response hashes `creds.uri`, so a mismatch the caller misses cannot be used to authenticate
    /// a different URI than the one the client signed, only the same one re-sent elsewhere.
    pub fn verify(
        &mut self,
        method: &str,
        creds: &Credentials,
        lookup: Option<&AccountSecret>,
        unix_secs: u64,
    ) -> Verdict {
        if creds.realm != self.config.realm {
            return Verdict::Fail(FailReason::RealmMismatch);
        }
        if !self.config.algorithms.contains(&creds.algorithm) {
            return Verdict::Fail(FailReason::AlgorithmNotOffered);
        }
        match creds.qop {
            Some(Qop::AuthInt) => return Verdict::Fail(FailReason::UnsupportedQop),
            None if !self.config.allow_no_qop => return Verdict::Fail(FailReason::QopRequired),
            _ => {}
        }
        if creds.opaque.as_deref().is_some_and(|o| o != self.opaque) {
            return Verdict::Fail(FailReason::OpaqueMismatch);
        }
        let Some(key) = self.open_nonce(&creds.nonce) else {
            return Verdict::Fail(FailReason::InvalidNonce);
        };
        let stale = self.is_expired(key.0, unix_secs);

        let qop = match (creds.qop, creds.nc, creds.cnonce.as_deref()) {
            (Some(_), Some(nc), Some(cnonce)) => Some(QopAuth { nc, cnonce }),
            _ => None,
        };
        let secret = lookup.unwrap_or(&self.dummy);
        let expected = compute_response(
            creds.algorithm,
            secret.ha1_hex(creds.algorithm),
            method,
            &creds.uri,
            &creds.nonce,
            qop,
        );
        let matches = ct_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        );
        if !(matches & lookup.is_some()) {
            return Verdict::Fail(FailReason::BadCredentials);
        }
        if stale {
            return Verdict::Stale;
        }
        let lifetime = self.config.nonce_lifetime.as_secs();
        let Some(q) = qop else {
            // Without qop there is no nonce count, and the response signs neither the Contact
            // nor anything else that changes: a sniffed REGISTER could be replayed with another
            // Contact for the nonce's whole lifetime. So such a nonce serves once; reusing it
            // earns a fresh challenge (stale=true), which old phones follow.
            return match self.counts.accept(key, 0, unix_secs, lifetime) {
                NcOutcome::Fresh => Verdict::Ok,
                NcOutcome::Replay | NcOutcome::Evicted => Verdict::Stale,
            };
        };
        match self.counts.accept(key, q.nc, unix_secs, lifetime) {
            NcOutcome::Fresh => Verdict::Ok,
            NcOutcome::Replay => Verdict::Fail(FailReason::Replay),
            NcOutcome::Evicted => Verdict::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const T0: u64 = 1_700_000_000;

    /// Both algorithms offered, SHA-256 first (RFC 8760), so both paths are tested.
    fn both() -> DigestConfig {
        DigestConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            ..DigestConfig::default()
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(both(), ServerSecret::from_bytes([7; 32]))
    }

    /// Builds what a phone would send for `challenge` (the value of one WWW-Authenticate).
    fn answer(
        challenge: &str,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: Option<u32>,
    ) -> Credentials {
        let chal = Credentials::parse(&format!(
            "{challenge}, username=\"x\", uri=\"x\", response=\"x\", nc=00000001, cnonce=\"x\""
        ))
        .expect("our challenge parses with the credential grammar");
        let ha1 = ha1(chal.algorithm, user, &chal.realm, password);
        let cnonce = "0a4f113b";
        let qop = nc.map(|nc| QopAuth { nc, cnonce });
        Credentials {
            username: user.to_owned(),
            realm: chal.realm.clone(),
            nonce: chal.nonce.clone(),
            uri: uri.to_owned(),
            response: compute_response(chal.algorithm, &ha1, method, uri, &chal.nonce, qop),
            algorithm: chal.algorithm,
            cnonce: nc.map(|_| cnonce.to_owned()),
            qop: nc.map(|_| Qop::Auth),
            nc,
            opaque: chal.opaque,
        }
    }

    fn account() -> AccountSecret {
        AccountSecret::from_password("1001", "switchboard", "demo-1001")
    }

    #[test]
    fn rfc7616_example_vectors() {
        // RFC 7616 §3.9.1, qop=auth, GET /dir/index.html.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let q = Some(QopAuth {
            nc: 1,
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        });
        let realm = "http-auth@example.org";
        let md5 = ha1(Algorithm::Md5, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            compute_response(Algorithm::Md5, &md5, "GET", "/dir/index.html", nonce, q),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let sha = ha1(Algorithm::Sha256, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            compute_response(Algorithm::Sha256, &sha, "GET", "/dir/index.html", nonce, q),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sip_register_vectors_match_python_hashlib() {
        // Computed independently with python3 hashlib:
        //   ha1 = H("1001:switchboard:demo-1001"); ha2 = H("REGISTER:sip:127.0.0.1")
        //   H(f"{ha1}:0123456789abcdef:00000001:0a4f113b:auth:{ha2}") and H(f"{ha1}:0123456789abcdef:{ha2}")
        let s = account();
        assert_eq!(
            s.ha1_hex(Algorithm::Md5),
            "488c4f3b0dc0f6f9f774d2c6566c296d"
        );
        assert_eq!(
            s.ha1_hex(Algorithm::Sha256),
            "3a4cd171c3f59d9fabf3974374d4aea088bfa1a8a994f70b42ab352b46f4804e"
        );
        let q = Some(QopAuth {
            nc: 1,
            cnonce: "0a4f113b",
        });
        let r = |alg, q| {
            compute_response(
                alg,
                s.ha1_hex(alg),
                "REGISTER",
                "sip:127.0.0.1",
                "0123456789abcdef",
                q,
            )
        };
        assert_eq!(r(Algorithm::Md5, q), "d7049e8ad3894ad3e49f3f537335d758");
        assert_eq!(r(Algorithm::Md5, None), "726de52926f0068905ef9ec25737bbf3");
        assert_eq!(
            r(Algorithm::Sha256, q),
            "d6ea63186cefc00cb3d1d198925de92618cbdbb2883a1087c68aa3871edf81e5"
        );
        assert_eq!(
            r(Algorithm::Sha256, None),
            "c9cc291074fe579d5db3f19554717ceea11397cfd6f4ad278649946d475dca46"
        );
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test cases 2 and 6 (key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya ", b"want for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn full_exchange_both_algorithms_with_and_without_qop() {
        let mut v = verifier();
        let s = account();
        for nc in [Some(1), None] {
            for chal in v.challenges(T0, false) {
                let c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:127.0.0.1", nc);
                assert_eq!(
                    v.verify("REGISTER", &c, Some(&s), T0 + 10),
                    Verdict::Ok,
                    "{chal}"
                );
            }
        }
    }

    #[test]
    fn challenges_offer_sha256_first_then_md5() {
        let mut v = verifier();
        let ch = v.challenges(T0, false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].starts_with("Digest realm=\"switchboard\", nonce=\""));
        assert!(ch[0].contains("algorithm=SHA-256, qop=\"auth\""));
        assert!(ch[1].contains("algorithm=MD5, qop=\"auth\""));
        assert!(!ch[0].contains("stale"));
        assert_ne!(ch[0], ch[1], "each challenge has its own nonce");
        assert!(v
            .challenge(T0, Algorithm::Md5, true)
            .ends_with(", stale=true"));
    }

    #[test]
    fn wrong_password_and_wrong_method_fail() {
        let mut v = verifier();
        let chal = v.challenge(T0, Algorithm::Md5, false);
        let c = answer(&chal, "1001", "nope", "REGISTER", "sip:127.0.0.1", Some(1));
        assert_eq!(
            v.verify("REGISTER", &c, Some(&account()), T0),
            Verdict::Fail(FailReason::BadCredentials)
        );
        let c = answer(
            &chal,
            "1001",
            "demo-1001",
            "REGISTER",
            "sip:127.0.0.1",
            Some(2),
        );
        assert_eq!(
            v.verify("INVITE", &c, Some(&account()), T0),
            Verdict::Fail(FailReason::BadCredentials)
        );
    }

    #[test]
    fn unknown_user_is_indistinguishable_from_wrong_password() {
        let mut v = verifier();
        let chal = v.challenge(T0, Algorithm::Sha256, false);
        let wrong = answer(&chal, "1001", "guess", "REGISTER", "sip:127.0.0.1", Some(1));
        let unknown = answer(&chal, "7777", "guess", "REGISTER", "sip:127.0.0.1", Some(1));
        let a = v.verify("REGISTER", &wrong, Some(&account()), T0);
        let b = v.verify("REGISTER", &unknown, None, T0);
        assert_eq!(a, Verdict::Fail(FailReason::BadCredentials));
        assert_eq!(a, b);
        // Also on a stale nonce: a right password would get Stale, but unknown users never do.
        let unknown = answer(&chal, "7777", "guess", "REGISTER", "sip:127.0.0.1", Some(2));
        assert_eq!(v.verify("REGISTER", &unknown, None, T0 + 301), a);
        // Even a response computed with the dummy's empty username cannot succeed for None.
        let mut forged = unknown.clone();
        forged.response = compute_response(
            Algorithm::Sha256,
            v.dummy.ha1_hex(Algorithm::Sha256),
            "REGISTER",
            &forged.uri,
            &forged.nonce,
            Some(QopAuth {
                nc: 3,
                cnonce: "0a4f113b",
            }),
        );
        forged.nc = Some(3);
        assert_eq!(v.verify("REGISTER", &forged, None, T0), a);
    }

    #[test]
    fn stale_nonce_with_right_password_is_stale() {
        let mut v = verifier();
        let chal = v.challenge(T0, Algorithm::Md5, false);
        let c = answer(
            &chal,
            "1001",
            "demo-1001",
            "REGISTER",
            "sip:127.0.0.1",
            Some(1),
        );
        assert_eq!(
            v.check_nonce(&c.nonce, T0 + 300),
            NonceStatus::Valid { issued_at: T0 }
        );
        assert_eq!(v.check_nonce(&c.nonce, T0 + 301), NonceStatus::Stale);
        assert_eq!(
            v.verify("REGISTER", &c, Some(&account()), T0 + 301),
            Verdict::Stale
        );
        // A wrong password on a stale nonce is not told "stale" (RFC 7616 §3.3).
        let c = answer(&chal, "1001", "bad", "REGISTER", "sip:127.0.0.1", Some(1));
        assert_eq!(
            v.verify("REGISTER", &c, Some(&account()), T0 + 301),
            Verdict::Fail(FailReason::BadCredentials)
        );
    }

    #[test]
    fn forged_and_foreign_nonces_are_invalid() {
        let mut v = verifier();
        let chal = v.challenge(T0, Algorithm::Md5, false);
        let good = answer(
            &chal,
            "1001",
            "demo-1001",
            "REGISTER",
            "sip:127.0.0.1",
            Some(1),
        );
        // Flip the timestamp to make an old nonce look young: the MAC no longer matches.
        let mut raw = hex::decode(&good.nonce).unwrap();
        raw[7] ^= 1;
        for nonce in [
            hex::encode(&raw),
            "0".repeat(64),
            "zz".repeat(32),
            String::new(),
            "é".repeat(32),
            good.nonce[..62].to_owned(),
        ] {
            assert_eq!(v.check_nonce(&nonce, T0), NonceStatus::Invalid, "{nonce}");
            let mut c = good.clone();
            c.nonce = nonce;
            assert_eq!(
                v.verify("REGISTER", &c, Some(&account()), T0),
                Verdict::Fail(FailReason::InvalidNonce)
            );
        }
        // Another secret, or another realm with the same secret: not ours either.
        let other = Verifier::new(both(), ServerSecret::from_bytes([8; 32]));
        assert_eq!(other.check_nonce(&good.nonce, T0), NonceStatus::Invalid);
        let realm2 = Verifier::new(
            DigestConfig {
                realm: "other".into(),
                ..both()
            },
            ServerSecret::from_bytes([7; 32]),
        );
        assert_eq!(realm2.check_nonce(&good.nonce, T0), NonceStatus::Invalid);
        // A node sharing the secret accepts it (several nodes behind one proxy).
        let peer = verifier();
        assert_eq!(
            peer.check_nonce(&good.nonce, T0),
            NonceStatus::Valid { issued_at: T0 }
        );
    }

    #[test]
    fn replayed_nonce_count_is_rejected() {
        let mut v = verifier();
        let s = account();
        let chal = v.challenge(T0, Algorithm::Md5, false);
        let uri = "sip:127.0.0.1";
        let c1 = answer(&chal, "1001", "demo-1001", "REGISTER", uri, Some(1));
        assert_eq!(v.verify("REGISTER", &c1, Some(&s), T0), Verdict::Ok);
        assert_eq!(
            v.verify("REGISTER", &c1, Some(&s), T0),
            Verdict::Fail(FailReason::Replay)
        );
        let c3 = answer(&chal, "1001", "demo-1001", "REGISTER", uri, Some(3));
        assert_eq!(v.verify("REGISTER", &c3, Some(&s), T0 + 1), Verdict::Ok);
        let c2 = answer(&chal, "1001", "demo-1001", "REGISTER", uri, Some(2));
        assert_eq!(
            v.verify("REGISTER", &c2, Some(&s), T0 + 1),
            Verdict::Fail(FailReason::Replay)
        );
        // A wrong guess with a high nc must not burn the counter for the honest phone.
        let bad = answer(&chal, "1001", "x", "REGISTER", uri, Some(0xffff_ffff));
        assert_eq!(
            v.verify("REGISTER", &bad, Some(&s), T0 + 1),
            Verdict::Fail(FailReason::BadCredentials)
        );
        let c4 = answer(&chal, "1001", "demo-1001", "REGISTER", uri, Some(4));
        assert_eq!(v.verify("REGISTER", &c4, Some(&s), T0 + 2), Verdict::Ok);
        // Without qop a nonce serves once: a replay (say, with another Contact) is sent to a
        // fresh challenge. A nonce already used with qop cannot be reused without it either.
        let fresh = v.challenge(T0 + 2, Algorithm::Md5, false);
        let n = answer(&fresh, "1001", "demo-1001", "REGISTER", uri, None);
        assert_eq!(v.verify("REGISTER", &n, Some(&s), T0 + 2), Verdict::Ok);
        assert_eq!(v.verify("REGISTER", &n, Some(&s), T0 + 3), Verdict::Stale);
        let n = answer(&chal, "1001", "demo-1001", "REGISTER", uri, None);
        assert_eq!(v.verify("REGISTER", &n, Some(&s), T0 + 3), Verdict::Stale);
    }

    #[test]
    fn nonce_table_is_bounded_and_eviction_answers_stale() {
        let mut v = Verifier::new(
            DigestConfig {
                max_tracked_nonces: 3,
                ..both()
            },
            ServerSecret::from_bytes([7; 32]),
        );
        let s = account();
        let uri = "sip:127.0.0.1";
        let chals: Vec<String> = (0..5)
            .map(|i| v.challenge(T0 + i, Algorithm::Md5, false))
            .collect();
        for (i, ch) in chals.iter().enumerate() {
            let c = answer(ch, "1001", "demo-1001", "REGISTER", uri, Some(1));
            assert_eq!(
                v.verify("REGISTER", &c, Some(&s), T0 + 10),
                Verdict::Ok,
                "{i}"
            );
            assert!(v.tracked_nonces() <= 3);
        }
        // The first two were evicted: replaying them must not pass; the client is sent to a fresh nonce.
        let c = answer(&chals[0], "1001", "demo-1001", "REGISTER", uri, Some(1));
        assert_eq!(v.verify("REGISTER", &c, Some(&s), T0 + 10), Verdict::Stale);
        // Expired entries are dropped by prune.
        v.prune(T0 + 10_000);
        assert_eq!(v.tracked_nonces(), 0);
    }

    #[test]
    fn qop_policy_realm_and_opaque() {
        let mut v = Verifier::new(
            DigestConfig {
                allow_no_qop: false,
                ..both()
            },
            ServerSecret::from_bytes([7; 32]),
        );
        let s = account();
        let chal = v.challenge(T0, Algorithm::Md5, false);
        let c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:a", None);
        assert_eq!(
            v.verify("REGISTER", &c, Some(&s), T0),
            Verdict::Fail(FailReason::QopRequired)
        );
        let mut c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:a", Some(1));
        c.qop = Some(Qop::AuthInt);
        assert_eq!(
            v.verify("REGISTER", &c, Some(&s), T0),
            Verdict::Fail(FailReason::UnsupportedQop)
        );
        let mut c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:a", Some(1));
        c.realm = "elsewhere".into();
        assert_eq!(
            v.verify("REGISTER", &c, Some(&s), T0),
            Verdict::Fail(FailReason::RealmMismatch)
        );
        let mut c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:a", Some(1));
        c.opaque = Some("deadbeef".into());
        assert_eq!(
            v.verify("REGISTER", &c, Some(&s), T0),
            Verdict::Fail(FailReason::OpaqueMismatch)
        );
        // opaque omitted by a sloppy phone is tolerated; uppercase hex response too.
        let mut c = answer(&chal, "1001", "demo-1001", "REGISTER", "sip:a", Some(1));
        c.opaque = None;
        c.response = c.response.to_ascii_uppercase();
        assert_eq!(v.verify("REGISTER", &c, Some(&s), T0), Verdict::Ok);
    }

    #[test]
    fn account_secret_from_stored_ha1() {
        let s = account();
        let t = AccountSecret::from_ha1(
            &s.ha1_hex(Algorithm::Md5).to_ascii_uppercase(),
            s.ha1_hex(Algorithm::Sha256),
        )
        .unwrap();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            assert_eq!(s.ha1_hex(alg), t.ha1_hex(alg));
        }
        assert_eq!(
            AccountSecret::from_ha1("abc", s.ha1_hex(Algorithm::Sha256)).unwrap_err(),
            SecretError::InvalidHa1 {
                algorithm: Algorithm::Md5,
                expected: 32,
                len: 3
            }
        );
        assert!(AccountSecret::from_ha1(s.ha1_hex(Algorithm::Md5), &"g".repeat(64)).is_err());
        assert_eq!(format!("{s:?}"), "AccountSecret(<redacted>)");
        assert_eq!(
            format!("{:?}", ServerSecret::from_bytes([1; 32])),
            "ServerSecret(<redacted>)"
        );
    }

    #[test]
    fn parses_a_typical_sip_header() {
        let c = Credentials::parse(
            "Digest username=\"1001\", realm=\"switchboard\", nonce=\"abc\", uri=\"sip:127.0.0.1\", \
             response=\"0123\", algorithm=MD5, cnonce=\"xyz\", qop=auth, nc=00000001, opaque=\"op\"",
        )
        .unwrap();
        assert_eq!(
            c,
            Credentials {
                username: "1001".into(),
                realm: "switchboard".into(),
                nonce: "abc".into(),
                uri: "sip:127.0.0.1".into(),
                response: "0123".into(),
                algorithm: Algorithm::Md5,
                cnonce: Some("xyz".into()),
                qop: Some(Qop::Auth),
                nc: Some(1),
                opaque: Some("op".into()),
            }
        );
        assert!(!format!("{c:?}").contains("0123"), "response is redacted");
    }

    #[test]
    fn parser_edge_cases() {
        // Case-insensitive scheme and names, odd whitespace and folding, empty list elements,
        // escapes, unknown parameters, quoted qop, SHA-256, algorithm absent → MD5.
        let c = Credentials::parse(
            " dIGEST\tUserName = \"a\\\"b\\\\c\" ,,REALM=\"r\",\r\n nonce=n ,uri=\"sip:x;a=b,c\",\
             response=\"R\", qop=\"auth\", nc=0000000a, cnonce=\"c\", algorithm=sha-256, foo=\"bar\", baz=qux,",
        )
        .unwrap();
        assert_eq!(c.username, "a\"b\\c");
        assert_eq!(c.realm, "r");
        assert_eq!(c.nonce, "n");
        assert_eq!(c.uri, "sip:x;a=b,c");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.qop, Some(Qop::Auth));
        let c = Credentials::parse(
            "Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"u\",response=\"r\"",
        )
        .unwrap();
        assert_eq!(
            (c.algorithm, c.qop, c.nc, c.cnonce),
            (Algorithm::Md5, None, None, None)
        );
        // A non-ASCII username survives.
        let c = Credentials::parse(
            "Digest username=\"jörg\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"r\"",
        )
        .unwrap();
        assert_eq!(c.username, "jörg");

        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"r\"";
        let err = |s: &str| Credentials::parse(s).unwrap_err();
        assert_eq!(err(""), ParseError::Empty);
        assert_eq!(err("  \r\n"), ParseError::Empty);
        assert_eq!(
            err("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            ParseError::UnsupportedScheme {
                scheme: "Basic".into()
            }
        );
        assert_eq!(
            err(&format!("Digest {base}, REALM=\"x\"")),
            ParseError::DuplicateParameter {
                name: "realm".into()
            }
        );
        assert_eq!(
            err(&format!("Digest {base}, x=1, X=2")),
            ParseError::DuplicateParameter { name: "x".into() }
        );
        assert_eq!(
            err("Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"r\""),
            ParseError::MissingParameter { name: "username" }
        );
        assert_eq!(
            err(&format!("Digest {base}, qop=auth, nc=00000001")),
            ParseError::MissingParameter { name: "cnonce" }
        );
        assert_eq!(
            err(&format!("Digest {base}, qop=auth, cnonce=\"c\"")),
            ParseError::MissingParameter { name: "nc" }
        );
        assert_eq!(
            err(&format!("Digest {base}, algorithm=MD5-sess")),
            ParseError::SessAlgorithmUnsupported {
                algorithm: "MD5-sess".into()
            }
        );
        assert_eq!(
            err(&format!("Digest {base}, algorithm=SHA-256-sess")),
            ParseError::SessAlgorithmUnsupported {
                algorithm: "SHA-256-sess".into()
            }
        );
        assert_eq!(
            err(&format!("Digest {base}, algorithm=SHA-512-256")),
            ParseError::UnknownAlgorithm {
                algorithm: "SHA-512-256".into()
            }
        );
        assert_eq!(
            err(&format!(
                "Digest {base}, qop=\"auth,auth-int\", nc=00000001, cnonce=c"
            )),
            ParseError::InvalidQop {
                value: "auth,auth-int".into()
            }
        );
        for nc in ["1", "0000000A", "000000001", "0000000g"] {
            assert_eq!(
                err(&format!("Digest {base}, qop=auth, cnonce=c, nc={nc}")),
                ParseError::InvalidNonceCount { value: nc.into() }
            );
        }
        assert_eq!(
            err("Digest username=\"u"),
            ParseError::UnterminatedQuotedString { at: 16 }
        );
        assert_eq!(
            err("Digest username=\"u\\"),
            ParseError::UnterminatedQuotedString { at: 16 }
        );
        assert!(matches!(
            err("Digest username"),
            ParseError::Syntax { at: 15, .. }
        ));
        assert!(matches!(
            err("Digest username="),
            ParseError::Syntax { at: 16, .. }
        ));
        assert!(matches!(
            err("Digest username=\"a\" realm=\"r\""),
            ParseError::Syntax { at: 20, .. }
        ));
        assert!(matches!(err("Digest =x"), ParseError::Syntax { at: 7, .. }));
        assert!(matches!(
            err("Digest\"x\""),
            ParseError::Syntax { at: 6, .. }
        ));
        assert!(matches!(
            err("\"Digest\""),
            ParseError::Syntax { at: 0, .. }
        ));
        // Attacker-sized strings are clipped in errors.
        let long = "A".repeat(10_000);
        match err(&long) {
            ParseError::UnsupportedScheme { scheme } => assert!(scheme.len() < 40),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn parser_never_panics_on_garbage() {
        // str0m's rule: a panic is a bug in us, never bad input. Random bytes, random mixes of
        // grammar fragments, and every truncation of a valid header.
        let valid = "Digest username=\"1001\", realm=\"switchboard\", nonce=\"abc\", \
                     uri=\"sip:127.0.0.1\", response=\"0123\", algorithm=SHA-256, cnonce=\"x\\\"y\", \
                     qop=auth, nc=00000001, opaque=\"op\"";
        for end in 0..=valid.len() {
            let _ = Credentials::parse(&valid[..end]);
        }
        let pieces: [&[u8]; 16] = [
            b"Digest ",
            b"username",
            b"=",
            b"\"",
            b"\\",
            b",",
            b" ",
            b"\r\n",
            b"nc=",
            b"qop=",
            b"auth",
            b"algorithm=",
            b"MD5-sess",
            b"\xc3\xa9",
            b"\xff",
            b"00000001",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            if rng.random_bool(0.5) {
                for _ in 0..rng.random_range(0..40) {
                    buf.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
                }
            } else {
                for _ in 0..rng.random_range(0..80) {
                    buf.push(rng.random());
                }
            }
            let _ = Credentials::parse(&String::from_utf8_lossy(&buf));
        }
        // Random mutations of the valid header.
        for _ in 0..20_000 {
            let mut buf = valid.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..buf.len());
                match rng.random_range(0..3) {
                    0 => buf[i] = rng.random(),
                    1 => {
                        buf.remove(i);
                    }
                    _ => buf.insert(i, pieces[rng.random_range(0..pieces.len())][0]),
                }
            }
            let _ = Credentials::parse(&String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn default_offers_md5_only_and_refuses_algorithms_not_offered() {
        let mut md5_only =
            Verifier::new(DigestConfig::default(), ServerSecret::from_bytes([7; 32]));
        let ch = md5_only.challenges(T0, false);
        assert_eq!(ch.len(), 1);
        assert!(ch[0].contains("algorithm=MD5"));
        // Credentials computed with SHA-256 against a nonce this server issued: refused, and not
        // counted as a password failure (the client chose an algorithm it was not offered).
        let sha = verifier().challenge(T0, Algorithm::Sha256, false);
        let s = AccountSecret::from_password("1001", "switchboard", "demo-1001");
        let c = answer(
            &sha,
            "1001",
            "demo-1001",
            "REGISTER",
            "sip:127.0.0.1",
            Some(1),
        );
        let v = md5_only.verify("REGISTER", &c, Some(&s), T0 + 1);
        assert_eq!(v, Verdict::Fail(FailReason::AlgorithmNotOffered));
        assert!(!FailReason::AlgorithmNotOffered.counts_as_failure());
    }
}
