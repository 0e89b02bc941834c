//! Endpoint scenarios on virtual time: every torture vector through the transport entry
//! point, and the registrar/authentication flows a phone goes through.
use super::*;
use crate::auth::{compute_response, ha1, Algorithm, QopAuth};
use crate::sip::msg::{parse, Framing, Message, NameAddr};
use std::path::PathBuf;

const UNIX: u64 = 1_800_000_000;
const PHONE: &str = "127.0.0.1:5999";

#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

struct Harness {
    ep: Endpoint,
    now: Instant,
    unix: u64,
}

fn config(trusted: &[&str], accounts: &[(&str, &str)]) -> EndpointConfig {
    EndpointConfig {
        user_agent: Some("Switchboard-test".into()),
        timers: TimerConfig::default(),
        registrar: RegistrarConfig::default(),
        // Both algorithms, SHA-256 first (RFC 8760), so both paths are exercised.
        digest: DigestConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            ..DigestConfig::default()
        },
        lockout: LockoutConfig::default(),
        trusted: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        accounts: accounts
            .iter()
            .map(|(u, p)| {
                (
                    u.to_string(),
                    AccountSecret::from_password(u, "switchboard", p),
                )
            })
            .collect(),
        calls: crate::endpoint::CallSettings::default(),
    }
}

impl Harness {
    fn new(trusted: &[&str], accounts: &[(&str, &str)]) -> Harness {
        Harness {
            ep: Endpoint::new(
                config(trusted, accounts),
                ServerSecret::from_bytes([7; 32]),
                42,
            ),
            now: base(),
            unix: UNIX,
        }
    }

    fn demo() -> Harness {
        Harness::new(&[], &[("1001", "demo-1001"), ("1002", "demo-1002")])
    }

    /// Feed bytes as a UDP datagram from `from`; return what was transmitted in answer,
    /// completing any store write as successful.
    fn send_from(&mut self, from: &str, data: impl Into<Bytes>) -> Vec<(Target, Response)> {
        let received = Received {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: from.parse().unwrap(),
            conn: None,
        };
        self.ep
            .handle_message(self.now, self.unix, received, data.into());
        while let Some(Event::Persist { token, .. }) = self.ep.poll_event() {
            self.ep.handle_persisted(self.now, token, true);
        }
        self.drain()
    }

    fn send(&mut self, data: impl Into<Bytes>) -> Vec<(Target, Response)> {
        self.send_from(PHONE, data)
    }

    fn drain(&mut self) -> Vec<(Target, Response)> {
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            match parse(t.payload.clone(), Framing::Datagram) {
                Ok(Message::Response(r)) => out.push((t.target, r)),
                // A 400 echoes the broken header it complains about, so it may not parse
                // again; its status line always does.
                Err(_) if t.payload.starts_with(b"SIP/2.0 ") => {
                    let code = std::str::from_utf8(&t.payload[8..11])
                        .unwrap()
                        .parse()
                        .unwrap();
                    out.push((t.target, Response::from_headers(&Headers::new(), code)));
                }
                other => panic!("endpoint sent a non-response: {other:?}"),
            }
        }
        out
    }

    /// The single final response to a request (a 100 Trying may precede it).
    fn final_to(&mut self, data: impl Into<Bytes>) -> Response {
        let rs = self.send(data);
        let finals: Vec<Response> = rs
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.code >= 200)
            .collect();
        assert_eq!(
            finals.len(),
            1,
            "expected one final response, got {finals:?}"
        );
        finals.into_iter().next().unwrap()
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.unix += secs;
        self.ep.handle_timeout(self.now, self.unix);
        let _ = self.drain();
    }
}

fn vector(dir: &str, name: &str) -> Bytes {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/sip-torture")
        .join(dir)
        .join(format!("{name}.sip"));
    Bytes::from(std::fs::read(&p).unwrap())
}

/// What the server answers to each torture vector from an unauthenticated source, and why.
const TORTURE: &[(&str, &str, Option<u16>)] = &[
    // §3.1.1 valid messages: parsed, then answered by what they ask for.
    ("valid", "wsinv", Some(481)), // its To has a tag: a re-INVITE for no dialog
    ("valid", "intmeth", Some(501)), // unknown method
    ("valid", "esc01", Some(407)),
    ("valid", "escnull", Some(401)), // REGISTER: challenged
    ("valid", "esc02", Some(501)),   // RE%47IST%45R is not REGISTER
    ("valid", "lwsdisp", Some(200)),
    ("valid", "longreq", Some(407)),
    ("valid", "dblreq", Some(401)), // the trailing INVITE is ignored on UDP
    ("valid", "semiuri", Some(200)),
    ("valid", "transports", Some(200)),
    ("valid", "mpart01", Some(405)), // MESSAGE is not served
    ("valid", "unreason", None),     // responses matching nothing: dropped
    ("valid", "noreason", None),
    ("valid", "badbranch", Some(200)),
    // §3.3 semantic tests.
    ("valid", "unkscm", Some(416)),
    ("valid", "novelsc", Some(416)),
    ("valid", "unksm2", Some(416)), // a non-SIP AOR
    ("valid", "bext01", Some(420)),
    ("valid", "invut", Some(415)),
    ("valid", "regaut01", Some(401)), // unknown auth scheme: challenge
    ("valid", "bcast", None),         // never answered, least of all to a broadcast address
    ("valid", "zeromf", Some(200)),   // OPTIONS served locally despite Max-Forwards: 0
    ("valid", "cparam01", Some(401)),
    ("valid", "cparam02", Some(401)),
    ("valid", "regescrt", Some(401)),
    ("valid", "sdp01", Some(406)),
    ("valid", "inv2543", Some(407)),
    ("valid", "mult-ip-in-header", Some(481)), // BYE for no dialog
    // RFC 5118.
    ("valid", "ipv6-good", Some(401)),
    ("valid", "port-ambiguous", Some(401)),
    ("valid", "port-unambiguous", Some(401)),
    ("valid", "via-received-param-no-delim", Some(200)),
    ("valid", "ipv6-in-sdp", Some(407)),
    ("valid", "mult-ip-in-sdp", Some(407)),
    ("valid", "ipv4-mapped-ipv6", Some(407)),
    ("valid", "ipv6-correct-abnf-2-colons", Some(200)),
    // §3.1.2 invalid messages.
    ("invalid", "badinv01", Some(400)),
    ("invalid", "clerr", Some(400)),
    ("invalid", "ncl", Some(400)),
    ("invalid", "scalar02", Some(400)),
    ("invalid", "scalarlg", None), // a response: dropped
    ("invalid", "quotbal", Some(400)),
    ("invalid", "ltgtruri", Some(400)),
    ("invalid", "lwsruri", Some(400)),
    ("invalid", "lwsstart", Some(400)),
    ("invalid", "trws", Some(400)),
    ("invalid", "escruri", Some(400)),
    ("invalid", "baddate", Some(407)), // Date is not acted on, so it is ignored (allowed)
    ("invalid", "regbadct", Some(400)),
    ("invalid", "badaspec", Some(400)),
    ("invalid", "baddn", Some(400)),
    ("invalid", "badvers", Some(505)),
    ("invalid", "mismatch01", Some(400)),
    ("invalid", "mismatch02", Some(400)), // 501 or 400: the CSeq mismatch is found first
    ("invalid", "bigcode", None),
    ("invalid", "insuf", Some(400)),
    ("invalid", "multi01", Some(400)),
    ("invalid", "mcl01", Some(400)),
    ("invalid", "ipv6-bad", Some(400)),
    ("invalid", "ipv6-bug-abnf-3-colons", Some(400)),
    // RFC 5118 §4.5: parse the top Via and go on (a BYE for no dialog).
    ("invalid", "via-received-param-with-delim", Some(481)),
    ("extra", "test", None),
    ("extra", "baddn.with-final-crlf", Some(400)),
];

#[test]
fn torture_vectors_get_the_answers_the_rfcs_describe() {
    let mut seen = std::collections::HashSet::new();
    for (dir, name, want) in TORTURE {
        seen.insert(format!("{dir}/{name}"));
        let mut h = Harness::demo();
        let answers = h.send(vector(dir, name));
        let finals: Vec<&Response> = answers
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.code >= 200)
            .collect();
        match want {
            None => assert!(
                answers.is_empty(),
                "{dir}/{name}: expected silence, got {answers:?}"
            ),
            Some(code) => {
                assert_eq!(finals.len(), 1, "{dir}/{name}: {answers:?}");
                assert_eq!(finals[0].code, *code, "{dir}/{name}: {}", finals[0].reason);
                // Every answer goes back to the loopback sender, never to a Via host.
                for (t, _) in &answers {
                    assert_eq!(t.addr.ip().to_string(), "127.0.0.1", "{dir}/{name}");
                }
            }
        }
    }
    // The table covers every file of the suite.
    for dir in ["valid", "invalid", "extra"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/vectors/sip-torture")
            .join(dir);
        for e in std::fs::read_dir(p).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().replace(".sip", "");
            assert!(
                seen.contains(&format!("{dir}/{n}")),
                "{dir}/{n} has no expectation"
            );
        }
    }
}

#[test]
fn torture_answers_carry_what_the_rfc_asks_for() {
    let mut h = Harness::demo();
    let r = h.final_to(vector("valid", "bext01"));
    assert_eq!(
        r.headers.get_str(&HeaderName::Unsupported),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    let r = h.final_to(vector("valid", "intmeth"));
    assert_eq!(r.headers.get_str(&HeaderName::Allow), Some(ALLOW));
    let r = h.final_to(vector("valid", "invut"));
    assert_eq!(
        r.headers.get_str(&HeaderName::Accept),
        Some("application/sdp")
    );
    // A 400 still echoes the transaction identifiers and gets a To tag.
    let r = h.final_to(vector("invalid", "mismatch01"));
    assert_eq!(r.code, 400);
    assert!(r.headers.top_via().is_ok());
    assert!(r.headers.to().unwrap().tag().is_some());
}

/// Answer a torture REGISTER's challenge as its account would: the same message with
/// credentials added (challenges are stateless, so the same branch is a new transaction).
fn authenticated(h: &mut Harness, raw: Bytes, user: &str, password: &str) -> Response {
    let challenge = h.final_to(raw.clone());
    assert_eq!(challenge.code, 401, "{}", challenge.reason);
    let mut phone = Phone::new(user, password);
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:example.com",
        Algorithm::Md5,
    );
    let text = raw.to_vec();
    let eol = text.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut with = text[..eol].to_vec();
    with.extend_from_slice(format!("Authorization: {auth}\r\n").as_bytes());
    with.extend_from_slice(&text[eol..]);
    h.final_to(with)
}

#[test]
fn torture_registers_bind_as_the_rfc_says() {
    let accounts = || Harness::new(&[], &[("watson", "pw-watson"), ("user", "pw-user")]);
    // cparam01's `unknownparam` is a header parameter, cparam02's a URI parameter. (The two
    // share branch and sent-by, so one server would rightly take the second for a
    // retransmission of the first: each gets its own.)
    for (name, uri) in [
        ("cparam01", "sip:+19725552222@gw1.example.net"),
        ("cparam02", "sip:+19725552222@gw1.example.net;unknownparam"),
    ] {
        let mut h = accounts();
        let r = authenticated(&mut h, vector("valid", name), "watson", "pw-watson");
        assert_eq!(r.code, 200, "{name}: {}", r.reason);
        let watson = h.ep.registrar().lookup("watson", UNIX);
        assert_eq!(watson.len(), 1, "{watson:?}");
        assert_eq!(watson[0].contact, uri, "{name}");
    }
    let mut h = accounts();
    let r = authenticated(&mut h, vector("valid", "regescrt"), "user", "pw-user");
    assert_eq!(r.code, 200, "{}", r.reason);
    let user = h.ep.registrar().lookup("user", UNIX);
    assert!(
        user[0].contact.contains("?Route=%3Csip:sip.example.com%3E"),
        "{user:?}"
    );
}

#[test]
fn trusted_sources_place_calls_without_digest_but_never_register() {
    let trusted = || Harness::new(&["127.0.0.0/8"], &[("watson", "pw-watson")]);
    // A trusted INVITE passes authentication and finds no route.
    assert_eq!(trusted().final_to(vector("valid", "esc01")).code, 404);
    // A REGISTER from the same range is challenged like any other: a spoofed datagram from a
    // carrier's address must not take over a phone's binding.
    let mut h = trusted();
    assert_eq!(h.final_to(vector("valid", "cparam01")).code, 401);
    assert!(h.ep.registrar().is_empty());
}

// ---------------------------------------------------------------------------------------------
// A phone registering
// ---------------------------------------------------------------------------------------------

struct Phone {
    user: String,
    password: String,
    call_id: String,
    cseq: u32,
    nc: u32,
}

impl Phone {
    fn new(user: &str, password: &str) -> Phone {
        Phone {
            user: user.into(),
            password: password.into(),
            call_id: format!("reg-{user}"),
            cseq: 0,
            nc: 0,
        }
    }

    fn register(&mut self, extra: &str) -> String {
        self.cseq += 1;
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKp{c}{ci}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@switchboard>;tag=ft{u}\r\nTo: <sip:{u}@switchboard>\r\n\
             Call-ID: {ci}\r\nCSeq: {c} REGISTER\r\nContact: <sip:{u}@127.0.0.1:5999>\r\n{extra}Content-Length: 0\r\n\r\n",
            c = self.cseq,
            u = self.user,
            ci = self.call_id
        )
    }

    /// Answer the first challenge of `resp` with the given algorithm.
    fn authorization(
        &mut self,
        resp: &Response,
        header: &HeaderName,
        method: &str,
        uri: &str,
        alg: Algorithm,
    ) -> String {
        let ch = resp
            .headers
            .get_all(header)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .find(|c| c.contains(&format!("algorithm={}", alg.as_str())))
            .expect("challenge for the algorithm");
        let nonce = param(&ch, "nonce");
        let opaque = param(&ch, "opaque");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let ha1 = ha1(alg, &self.user, "switchboard", &self.password);
        let response = compute_response(
            alg,
            &ha1,
            method,
            uri,
            &nonce,
            Some(QopAuth {
                nc: self.nc,
                cnonce: "c0ffee",
            }),
        );
        format!(
            "Digest username=\"{}\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}, opaque=\"{opaque}\"",
            self.user,
            alg.as_str()
        )
    }
}

fn param(challenge: &str, name: &str) -> String {
    let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let end = challenge[start..].find('"').unwrap();
    challenge[start..start + end].to_owned()
}

fn register_with(h: &mut Harness, phone: &mut Phone, alg: Algorithm) -> Response {
    let challenge = h.final_to(phone.register(""));
    assert_eq!(challenge.code, 401);
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        alg,
    );
    h.final_to(phone.register(&format!("Authorization: {auth}\r\n")))
}

#[test]
fn register_challenge_then_bind_with_md5_and_sha256() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register(""));
    assert_eq!(challenge.code, 401);
    let offered: Vec<String> = challenge
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(offered.len(), 2);
    assert!(
        offered[0].contains("algorithm=SHA-256"),
        "RFC 8760: strongest first"
    );
    assert!(offered[1].contains("algorithm=MD5"));

    let ok = register_with(&mut h, &mut phone, Algorithm::Md5);
    assert_eq!(ok.code, 200, "{}", ok.reason);
    let contact = NameAddr::parse(ok.headers.get_str(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.param("expires"), Some(Some("3600")));
    assert!(ok.headers.contains(&HeaderName::Date));
    let b = h.ep.registrar().lookup("1001", UNIX);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, PHONE.parse().unwrap());

    let mut phone2 = Phone::new("1002", "demo-1002");
    assert_eq!(
        register_with(&mut h, &mut phone2, Algorithm::Sha256).code,
        200
    );
    assert_eq!(h.ep.registrar().len(), 2);
}

#[test]
fn the_200_waits_for_the_store() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register(""));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    let received = Received {
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: PHONE.parse().unwrap(),
        conn: None,
    };
    h.ep.handle_message(
        h.now,
        h.unix,
        received,
        Bytes::from(phone.register(&format!("Authorization: {auth}\r\n"))),
    );
    let finals: Vec<_> = h
        .drain()
        .into_iter()
        .filter(|(_, r)| r.code >= 200)
        .collect();
    assert!(
        finals.is_empty(),
        "answered before the binding was stored: {finals:?}"
    );
    let Some(Event::Persist { token, changes }) = h.ep.poll_event() else {
        panic!("no persist event")
    };
    assert!(matches!(&changes[..], [Change::Upsert(b)] if b.aor == "1001"));
    // The store failed: the phone hears 500 and will retry, rather than a 200 we cannot keep.
    h.ep.handle_persisted(h.now, token, false);
    let rs = h.drain();
    let last = &rs.last().unwrap().1;
    assert_eq!(last.code, 500);
    assert!(last.headers.contains(&HeaderName::RetryAfter));
    // …and memory is put back as it was: no binding the store does not hold.
    assert!(h.ep.registrar().lookup("1001", UNIX).is_empty());
    assert_eq!(h.ep.registrar().len(), 0);
}

#[test]
fn rejections_before_authentication_leave_no_state() {
    let mut h = Harness::demo();
    for name in [
        "bext01", "intmeth", "mpart01", "invut", "sdp01", "unkscm", "wsinv",
    ] {
        let r = h.final_to(vector("valid", name));
        assert!(r.code >= 400, "{name}");
        assert_eq!(h.ep.transactions(), 0, "{name} left a transaction behind");
    }
}

#[test]
fn rport_and_received_route_the_answer_back_through_nat() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let rs = h.send_from("127.0.0.9:40123", phone.register(""));
    let (target, resp) = &rs[0];
    assert_eq!(target.addr, "127.0.0.9:40123".parse().unwrap());
    let via = resp.headers.top_via().unwrap();
    assert_eq!(via.rport(), Some(Some(40123)));
    assert_eq!(via.received(), Some("127.0.0.9".parse().unwrap()));
    // Without rport a UDP answer goes to the source address and the Via port.
    let opts = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKo1\r\n\
                From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let rs = h.send_from("127.0.0.9:40123", opts);
    assert_eq!(rs[0].0.addr, "127.0.0.9:5070".parse().unwrap());
    // Regression (found by fuzzing): a Via port of 0 made the answer go to port 0. It now goes
    // back to the port the request came from.
    let rs = h.send_from(
        "127.0.0.9:40123",
        opts.replace(
            "192.0.2.1:5070;branch=z9hG4bKo1",
            "192.0.2.1:0;branch=z9hG4bKo2",
        ),
    );
    assert_eq!(rs[0].0.addr, "127.0.0.9:40123".parse().unwrap());
    assert_eq!(
        rs[0].1.headers.top_via().unwrap().received(),
        Some("127.0.0.9".parse().unwrap())
    );
}

#[test]
fn retransmitted_register_is_absorbed_and_answered_again() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    // Challenges are stateless (RFC 3261 §8.2.7): a retransmission earns a fresh one, and no
    // transaction is left behind.
    let req = phone.register("");
    let first = h.final_to(req.clone());
    let again = h.final_to(req);
    assert_eq!((first.code, again.code), (401, 401));
    assert_eq!(h.ep.transactions(), 0);
    // The authenticated REGISTER is stateful: its retransmission is absorbed and answered with
    // the same 200 — not taken for a replayed nonce count.
    let auth = phone.authorization(
        &again,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    let req = phone.register(&format!("Authorization: {auth}\r\n"));
    let ok = h.final_to(req.clone());
    let ok_again = h.final_to(req);
    assert_eq!(ok.code, 200);
    assert_eq!(ok.encode(), ok_again.encode());
    assert_eq!(h.ep.transactions(), 1);
}

#[test]
fn interval_too_brief_names_the_minimum() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register("Expires: 10\r\n"));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    let r = h.final_to(phone.register(&format!("Expires: 10\r\nAuthorization: {auth}\r\n")));
    assert_eq!(r.code, 423);
    assert_eq!(r.headers.get_str(&HeaderName::MinExpires), Some("60"));
}

#[test]
fn one_account_cannot_register_another() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register(""));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    let req = phone
        .register(&format!("Authorization: {auth}\r\n"))
        .replace("To: <sip:1001@switchboard>", "To: <sip:1002@switchboard>");
    assert_eq!(h.final_to(req).code, 403);
    assert!(h.ep.registrar().lookup("1002", UNIX).is_empty());
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_true() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register(""));
    h.advance(301);
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    let r = h.final_to(phone.register(&format!("Authorization: {auth}\r\n")));
    assert_eq!(r.code, 401);
    assert!(r
        .headers
        .get_all(&HeaderName::WwwAuthenticate)
        .all(|c| String::from_utf8_lossy(c).contains("stale=true")));
}

#[test]
fn replayed_nonce_count_is_refused() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register(""));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    assert_eq!(
        h.final_to(phone.register(&format!("Authorization: {auth}\r\n")))
            .code,
        200
    );
    // The same credentials (same nc) in a new transaction: a replay.
    assert_eq!(
        h.final_to(phone.register(&format!("Authorization: {auth}\r\n")))
            .code,
        401
    );
}

/// The shape of an answer with every random value and the user name blanked: what an
/// attacker can compare.
fn shape(r: &Response, user: &str) -> String {
    let mut out = format!("{} {}\n", r.code, r.reason);
    for hd in &r.headers.0 {
        let v = hd.value_str();
        let v = match hd.name {
            HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate => {
                let mut v = v.into_owned();
                for p in ["nonce", "opaque"] {
                    if let Some(s) = v.find(&format!("{p}=\"")) {
                        let e = v[s + p.len() + 2..].find('"').unwrap() + s + p.len() + 2;
                        v.replace_range(s..e, &format!("{p}=\"*"));
                    }
                }
                v
            }
            HeaderName::To => "<to>".into(),
            _ => v.into_owned(),
        };
        out.push_str(&format!("{}: {}\n", hd.name, v.replace(user, "<user>")));
    }
    out
}

fn wrong_password_attempts(h: &mut Harness, user: &str, n: usize) -> Vec<String> {
    let mut phone = Phone::new(user, "not-the-password");
    let mut out = Vec::new();
    let mut challenge = h.final_to(phone.register(""));
    for _ in 0..n {
        let auth = phone.authorization(
            &challenge,
            &HeaderName::WwwAuthenticate,
            "REGISTER",
            "sip:127.0.0.1",
            Algorithm::Md5,
        );
        let r = h.final_to(phone.register(&format!("Authorization: {auth}\r\n")));
        out.push(shape(&r, user));
        if r.code == 401 {
            challenge = r;
        }
    }
    out
}

#[test]
fn wrong_password_is_rechallenged_then_locked_out() {
    let mut h = Harness::demo();
    let answers = wrong_password_attempts(&mut h, "1001", 7);
    let codes: Vec<&str> = answers.iter().map(|a| &a[..3]).collect();
    assert_eq!(codes, ["401", "401", "401", "401", "401", "403", "403"]);
    // While locked, even the right password is refused without being checked.
    let mut phone = Phone::new("1001", "demo-1001");
    phone.call_id = "other".into();
    let challenge = h.final_to(phone.register(""));
    assert_eq!(challenge.code, 401);
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    assert_eq!(
        h.final_to(phone.register(&format!("Authorization: {auth}\r\n")))
            .code,
        403
    );
    // After the cool-down the right password works again.
    h.advance(301);
    let challenge = h.final_to(phone.register(""));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    assert_eq!(
        h.final_to(phone.register(&format!("Authorization: {auth}\r\n")))
            .code,
        200
    );
}

#[test]
fn unknown_user_gets_exactly_what_a_wrong_password_gets() {
    let mut known = Harness::demo();
    let mut unknown = Harness::demo();
    let a = wrong_password_attempts(&mut known, "1001", 7);
    let b = wrong_password_attempts(&mut unknown, "1099", 7);
    assert_eq!(a.len(), 7);
    assert_eq!(a, b);
}

#[test]
fn invite_is_challenged_with_407_then_finds_no_route() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let invite = |extra: &str, cseq: u32| {
        format!(
            "INVITE sip:5555@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKi{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=inv\r\nTo: <sip:5555@switchboard>\r\n\
             Call-ID: call-1\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@127.0.0.1:5999>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let challenge = h.final_to(invite("", 1));
    assert_eq!(challenge.code, 407);
    assert!(challenge.headers.contains(&HeaderName::ProxyAuthenticate));
    // The INVITE's final response is ACKed (in-transaction ACK for a non-2xx)…
    let ack = "ACK sip:5555@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKi1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=inv\r\nTo: <sip:5555@switchboard>;tag=TAG\r\n\
               Call-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        .replace("TAG", challenge.headers.to().unwrap().tag().unwrap());
    assert!(h.send(ack).is_empty(), "an ACK is never answered");
    let auth = phone.authorization(
        &challenge,
        &HeaderName::ProxyAuthenticate,
        "INVITE",
        "sip:5555@127.0.0.1",
        Algorithm::Sha256,
    );
    let r = h.final_to(invite(&format!("Proxy-Authorization: {auth}\r\n"), 2));
    assert_eq!(r.code, 404);
}

#[test]
fn options_is_answered_without_authentication() {
    let mut h = Harness::demo();
    let r = h.final_to(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.code, 200);
    assert_eq!(r.headers.get_str(&HeaderName::Allow), Some(ALLOW));
    assert_eq!(
        r.headers.get_str(&HeaderName::Accept),
        Some("application/sdp")
    );
    assert!(r.headers.contains(&HeaderName::Supported));
    assert_eq!(
        r.headers.get_str(&HeaderName::Server),
        Some("Switchboard-test")
    );
}

#[test]
fn cancel_after_the_final_answer_is_200_without_effect() {
    // RFC 3261 §9.2: the CANCEL matches the INVITE's transaction, which already answered
    // (404: no route), so the CANCEL succeeds and changes nothing.
    let mut h = Harness::new(&["127.0.0.0/8"], &[]);
    let invite = "INVITE sip:5555@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKcx1\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=c1\r\nTo: <sip:5555@switchboard>\r\n\
                  Call-ID: cancel-late\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(h.final_to(invite).code, 404);
    let cancel = invite
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    assert_eq!(h.final_to(cancel).code, 200);
}

#[test]
fn cancel_for_nothing_is_481() {
    let mut h = Harness::demo();
    let r = h.final_to(
        "CANCEL sip:5555@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKnone\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@switchboard>;tag=x\r\nTo: <sip:5555@switchboard>\r\n\
         Call-ID: nothing\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.code, 481);
}

#[test]
fn bindings_expire_on_time() {
    let mut h = Harness::demo();
    let mut phone = Phone::new("1001", "demo-1001");
    let challenge = h.final_to(phone.register("Expires: 60\r\n"));
    let auth = phone.authorization(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        "sip:127.0.0.1",
        Algorithm::Md5,
    );
    assert_eq!(
        h.final_to(phone.register(&format!("Expires: 60\r\nAuthorization: {auth}\r\n")))
            .code,
        200
    );
    assert_eq!(h.ep.registrar().len(), 1);
    h.advance(59);
    assert_eq!(h.ep.registrar().len(), 1);
    h.advance(2);
    assert_eq!(h.ep.registrar().len(), 0);
}

#[test]
fn http_date_is_imf_fixdate() {
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(1_800_000_000), "Fri, 15 Jan 2027 08:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
}
