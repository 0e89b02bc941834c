//! Client-side digest: answering a carrier's 401/407 on our INVITEs and REGISTERs
//! (RFC 3261 §22.2–22.3, RFC 7616 §3.4, RFC 8760 for SHA-256).
//!
//! The hashing and the challenge grammar are [`crate::auth::digest`]'s, shared with our own
//! verifier, so that what we send is exactly what we would accept.
use crate::auth::digest::{authorization, Challenge, ParseError, Qop};
use crate::auth::Algorithm;
use crate::sip::msg::{HeaderName, Response};

pub use crate::config::TrunkCredentials as Credentials;

/// Why a challenge can not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The response is neither 401 nor 407, or carries no challenge.
    #[error("no digest challenge")]
    NoChallenge,
    #[error("unreadable challenge: {0}")]
    Malformed(#[from] ParseError),
    /// Only `qop=auth-int` was offered: we do not sign bodies.
    #[error("the carrier requires qop=auth-int")]
    QopAuthIntOnly,
}

/// Which header a challenge arrived in, and so which header answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// 401 `WWW-Authenticate` → `Authorization`.
    Www,
    /// 407 `Proxy-Authenticate` → `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    pub fn answer_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        }
    }

    fn challenge_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
        }
    }
}

/// The value answering one challenge header value. `uri` is the Request-URI as sent; `cnonce`
/// and `nc` are used when the challenge offers `qop=auth`.
pub fn authorize(
    challenge: &str,
    method: &str,
    uri: &str,
    creds: &Credentials,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    let c = Challenge::parse(challenge)?;
    answer(&c, method, uri, creds, cnonce, nc)
}

fn answer(
    c: &Challenge,
    method: &str,
    uri: &str,
    creds: &Credentials,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    if !c.qop.is_empty() && !c.qop.contains(&Qop::Auth) {
        return Err(AuthError::QopAuthIntOnly);
    }
    Ok(authorization(
        c,
        method,
        uri,
        &creds.username,
        creds.password.expose(),
        cnonce,
        nc,
    ))
}

/// A challenge read from a 401/407, ready to be answered for each new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChallenge {
    pub kind: ChallengeKind,
    pub challenge: Challenge,
}

impl ReadChallenge {
    /// The best challenge of a 401/407: of several (RFC 8760 §2.4: one per algorithm), SHA-256
    /// before MD5; unreadable or unsupported ones (`-sess`, another scheme) are skipped.
    pub fn from_response(resp: &Response) -> Result<ReadChallenge, AuthError> {
        let kind = match resp.code {
            401 => ChallengeKind::Www,
            407 => ChallengeKind::Proxy,
            _ => return Err(AuthError::NoChallenge),
        };
        let header = kind.challenge_header();
        let mut best: Option<Challenge> = None;
        let mut first_error: Option<ParseError> = None;
        for raw in resp.headers.get_all(&header) {
            match Challenge::parse(&String::from_utf8_lossy(raw)) {
                Ok(c) => {
                    let better = match &best {
                        None => true,
                        Some(b) => {
                            b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256
                        }
                    };
                    if better {
                        best = Some(c);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (best, first_error) {
            (Some(challenge), _) => Ok(ReadChallenge { kind, challenge }),
            (None, Some(e)) => Err(AuthError::Malformed(e)),
            (None, None) => Err(AuthError::NoChallenge),
        }
    }

    /// The header and value to add to the retried request.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        creds: &Credentials,
        cnonce: &str,
        nc: u32,
    ) -> Result<(HeaderName, String), AuthError> {
        let value = answer(&self.challenge, method, uri, creds, cnonce, nc)?;
        Ok((self.kind.answer_header(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{
        AccountSecret, Credentials as Sent, DigestConfig, ServerSecret, Verdict, Verifier,
    };
    use crate::config::Password;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: Password::new(password),
        }
    }

    /// RFC 2617 §3.5: Mufasa, "Circle Of Life", GET /dir/index.html.
    #[test]
    fn rfc_2617_example() {
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let value = authorize(
            challenge,
            "GET",
            "/dir/index.html",
            &creds("Mufasa", "Circle Of Life"),
            "0a4f113b",
            1,
        )
        .unwrap();
        let sent = Sent::parse(&value).unwrap();
        assert_eq!(sent.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(sent.nc, Some(1));
        assert_eq!(sent.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(sent.qop, Some(Qop::Auth));
        assert_eq!(
            sent.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(value.contains("nc=00000001"), "{value}");
    }

    #[test]
    fn our_own_verifier_accepts_the_answer() {
        for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
            let mut verifier = Verifier::new(
                DigestConfig {
                    realm: "carrier.example".into(),
                    algorithms: vec![algorithm],
                    allow_no_qop: false,
                    ..DigestConfig::default()
                },
                ServerSecret::from_bytes([7; 32]),
            );
            let challenge = verifier.challenge(1_000, algorithm, false);
            let uri = "sip:carrier.example";
            let value = authorize(
                &challenge,
                "REGISTER",
                uri,
                &creds("sb-trunk", "s3cret"),
                "abc",
                1,
            )
            .unwrap();
            let sent = Sent::parse(&value).unwrap();
            assert_eq!(sent.algorithm, algorithm);
            let secret = AccountSecret::from_password("sb-trunk", "carrier.example", "s3cret");
            assert_eq!(
                verifier.verify("REGISTER", &sent, Some(&secret), 1_001),
                Verdict::Ok,
                "{algorithm}"
            );
            let wrong = authorize(
                &challenge,
                "REGISTER",
                uri,
                &creds("sb-trunk", "wrong"),
                "abc",
                2,
            )
            .unwrap();
            assert_ne!(
                verifier.verify(
                    "REGISTER",
                    &Sent::parse(&wrong).unwrap(),
                    Some(&secret),
                    1_001
                ),
                Verdict::Ok
            );
        }
    }

    #[test]
    fn rfc_2069_challenges_and_refusals() {
        // No qop offered: no cnonce or nc in the answer.
        let value = authorize(
            r#"Digest realm="r", nonce="n""#,
            "INVITE",
            "sip:1@r",
            &creds("u", "p"),
            "c",
            1,
        )
        .unwrap();
        assert!(!value.contains("cnonce"), "{value}");
        assert_eq!(
            authorize(
                r#"Digest realm="r", nonce="n", qop="auth-int""#,
                "INVITE",
                "sip:1@r",
                &creds("u", "p"),
                "c",
                1
            ),
            Err(AuthError::QopAuthIntOnly)
        );
        assert!(matches!(
            authorize(
                r#"Basic realm="r""#,
                "INVITE",
                "sip:1@r",
                &creds("u", "p"),
                "c",
                1
            ),
            Err(AuthError::Malformed(ParseError::UnsupportedScheme { .. }))
        ));
        assert!(matches!(
            authorize(
                r#"Digest realm="r""#,
                "INVITE",
                "sip:1@r",
                &creds("u", "p"),
                "c",
                1
            ),
            Err(AuthError::Malformed(ParseError::MissingParameter {
                name: "nonce"
            }))
        ));
    }

    #[test]
    fn sha256_is_preferred_and_the_header_follows_the_status() {
        let mut resp = Response {
            code: 407,
            reason: "Proxy Authentication Required".into(),
            headers: Default::default(),
            body: Default::default(),
        };
        resp.headers.push(
            HeaderName::ProxyAuthenticate,
            r#"Digest realm="r", nonce="a", algorithm=MD5, qop="auth""#,
        );
        resp.headers.push(
            HeaderName::ProxyAuthenticate,
            r#"Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth", stale=TRUE"#,
        );
        let read = ReadChallenge::from_response(&resp).unwrap();
        assert_eq!(read.challenge.algorithm, Algorithm::Sha256);
        assert!(read.challenge.stale);
        let (header, value) = read
            .answer("INVITE", "sip:1@r", &creds("u", "p"), "c", 1)
            .unwrap();
        assert_eq!(header, HeaderName::ProxyAuthorization);
        assert!(value.contains("nonce=\"b\""), "{value}");
        resp.code = 401;
        assert_eq!(
            ReadChallenge::from_response(&resp),
            Err(AuthError::NoChallenge)
        );
    }
}
