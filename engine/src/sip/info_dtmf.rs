//! DTMF carried in SIP INFO bodies, for phones and gateways that neither send RFC 4733 events
//! nor in-band tones. Nothing standardises these bodies (RFC 6086 only defines the INFO method
//! and its Info Packages); two de-facto formats cover the equipment in the field:
//!
//! - `application/dtmf-relay` (Cisco's format, also sent by Polycom, Yealink, Grandstream,
//!   Asterisk): `key=value` lines, `Signal=5` and `Duration=160` (milliseconds).
//! - `application/dtmf`: the body is the key itself (`5`, `#`) or its RFC 4733 event code.
//!
//! Sans-IO: the transaction layer hands over the `Content-Type` value and the body; this module
//! only turns bytes into an [`InfoDigit`] and back. Any input is either parsed or rejected with
//! an [`InfoDtmfError`]; none panics.

use std::time::Duration;

use switchboard_media::dtmf::rfc4733::Digit;

/// `Content-Type` of the key/value format.
pub const DTMF_RELAY: &str = "application/dtmf-relay";
/// `Content-Type` of the bare-digit format.
pub const DTMF: &str = "application/dtmf";
/// Duration assumed when a `dtmf-relay` body has none (and always for `application/dtmf`,
/// which cannot carry one): 250 ms is what Cisco and Asterisk assume.
pub const DEFAULT_DURATION: Duration = Duration::from_millis(250);

/// One key press reported in an INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDigit {
    pub digit: Digit,
    pub duration: Duration,
}

/// Why an INFO body is not a DTMF key press.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoDtmfError {
    /// The `Content-Type` is neither `application/dtmf-relay` nor `application/dtmf`; the INFO
    /// belongs to some other package (media control XML, `application/broadsoft`…).
    #[error("content type {content_type:?} carries no DTMF")]
    UnsupportedType { content_type: String },
    /// No `Signal` line (`dtmf-relay`) or an empty body (`dtmf`).
    #[error("DTMF body has no signal")]
    NoSignal,
    /// The signal is not one of `0-9 * # A-D` nor an event code 0–15 (16 is hook flash, which
    /// is not a key).
    #[error("DTMF signal {value:?} is not a key")]
    BadDigit { value: String },
    /// `Duration` is not a whole number of milliseconds.
    #[error("DTMF duration {value:?} is not a number of milliseconds")]
    BadDuration { value: String },
}

/// Parses an INFO body. `content_type` is the header value; media-type parameters (`;charset=`)
/// are ignored and the comparison is case-insensitive (RFC 3261 §7.3.1, RFC 2045 §5.1).
pub fn parse(content_type: &str, body: &[u8]) -> Result<InfoDigit, InfoDtmfError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(DTMF_RELAY) {
        parse_relay(body)
    } else if media_type.eq_ignore_ascii_case(DTMF) {
        parse_bare(body)
    } else {
        Err(InfoDtmfError::UnsupportedType {
            content_type: content_type.to_owned(),
        })
    }
}

/// Builds an `application/dtmf-relay` body in the form every implementation reads:
/// `Signal=5\r\nDuration=160\r\n`. Returns the `Content-Type` value to send with it.
pub fn build_dtmf_relay(digit: Digit, duration: Duration) -> (&'static str, Vec<u8>) {
    let body = format!(
        "Signal={}\r\nDuration={}\r\n",
        digit.as_char(),
        duration.as_millis()
    );
    (DTMF_RELAY, body.into_bytes())
}

/// `key=value` lines, CRLF or LF. Keys are case-insensitive and unknown keys are ignored
/// (some phones add `Volume=` or vendor fields); the first `Signal` and `Duration` count.
fn parse_relay(body: &[u8]) -> Result<InfoDigit, InfoDtmfError> {
    let text = String::from_utf8_lossy(body);
    let (mut signal, mut duration) = (None, None);
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("signal") {
            signal.get_or_insert(value);
        } else if key.eq_ignore_ascii_case("duration") {
            duration.get_or_insert(value);
        }
    }
    let digit = parse_signal(signal.ok_or(InfoDtmfError::NoSignal)?)?;
    let duration = match duration {
        None => DEFAULT_DURATION,
        Some(value) => value
            .parse::<u32>()
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .map_err(|_| InfoDtmfError::BadDuration {
                value: value.to_owned(),
            })?,
    };
    Ok(InfoDigit { digit, duration })
}

/// The whole body is the signal, surrounding whitespace (a trailing CRLF) aside.
fn parse_bare(body: &[u8]) -> Result<InfoDigit, InfoDtmfError> {
    let text = String::from_utf8_lossy(body);
    Ok(InfoDigit {
        digit: parse_signal(text.trim())?,
        duration: DEFAULT_DURATION,
    })
}

/// A key character (`5`, `*`, `b`) or an RFC 4733 event code (`10` is `*`, `11` is `#`,
/// 12–15 are A–D), as some phones send codes instead of characters.
fn parse_signal(value: &str) -> Result<Digit, InfoDtmfError> {
    if value.is_empty() {
        return Err(InfoDtmfError::NoSignal);
    }
    let mut chars = value.chars();
    let single = match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c),
        _ => None,
    };
    single
        .or_else(|| value.parse::<u8>().ok().and_then(Digit::from_code))
        .ok_or_else(|| InfoDtmfError::BadDigit {
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(body: &str) -> Result<InfoDigit, InfoDtmfError> {
        parse("application/dtmf-relay", body.as_bytes())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    #[test]
    fn vendor_bodies() {
        let cases: &[(&str, char, u64)] = &[
            // Cisco IOS / CUCM.
            ("Signal=1\r\nDuration=100\r\n", '1', 100),
            // Polycom: space after '='.
            ("Signal= 5\r\nDuration= 160\r\n", '5', 160),
            // Yealink: LF only, no final newline.
            ("Signal=#\nDuration=250", '#', 250),
            // Grandstream / Asterisk with a space before the value and keys lower-case.
            ("signal= *\r\nduration= 120\r\n", '*', 120),
            // Event codes for the star and pound keys.
            ("Signal=10\r\nDuration=160\r\n", '*', 160),
            ("Signal=11\r\nDuration=160\r\n", '#', 160),
            ("Signal=15\r\nDuration=40\r\n", 'D', 40),
            // Letters, either case.
            ("Signal=a\r\nDuration=80\r\n", 'A', 80),
            ("SIGNAL=C\r\nDURATION=80\r\n", 'C', 80),
            // Extra whitespace everywhere, blank lines, unknown keys ignored.
            (
                "\r\n  Signal  =  9  \r\n\r\nVolume=10\r\nX-Vendor=abc=def\r\n  Duration =  300 \r\n",
                '9',
                300,
            ),
            // Duration first.
            ("Duration=200\r\nSignal=0\r\n", '0', 200),
            // Duration zero is a number, kept as is.
            ("Signal=3\r\nDuration=0\r\n", '3', 0),
        ];
        for &(body, digit, duration) in cases {
            assert_eq!(
                relay(body),
                Ok(InfoDigit {
                    digit: key(digit),
                    duration: ms(duration),
                }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn missing_duration_defaults_to_250_ms() {
        assert_eq!(relay("Signal=7\r\n").unwrap().duration, ms(250));
        assert_eq!(relay("Signal=7").unwrap().duration, DEFAULT_DURATION);
    }

    #[test]
    fn first_signal_wins() {
        assert_eq!(relay("Signal=1\nSignal=2\n").unwrap().digit, Digit::D1);
    }

    #[test]
    fn content_type_is_case_insensitive_and_parameters_are_ignored() {
        for ct in [
            "application/dtmf-relay",
            "Application/DTMF-Relay",
            "application/dtmf-relay;charset=utf-8",
            "  application/dtmf-relay ; foo=bar",
        ] {
            assert_eq!(
                parse(ct, b"Signal=4\r\n").map(|d| d.digit),
                Ok(Digit::D4),
                "{ct}"
            );
        }
        for ct in ["application/dtmf", "APPLICATION/DTMF; x=y"] {
            assert_eq!(parse(ct, b"4").map(|d| d.digit), Ok(Digit::D4), "{ct}");
        }
    }

    #[test]
    fn bare_dtmf_bodies() {
        let cases: &[(&[u8], char)] = &[
            (b"5", '5'),
            (b"#", '#'),
            (b"*\r\n", '*'),
            (b" 11 ", '#'),
            (b"10", '*'),
            (b"0", '0'),
            (b"d", 'D'),
            (b"12", 'A'),
        ];
        for &(body, digit) in cases {
            assert_eq!(
                parse("application/dtmf", body),
                Ok(InfoDigit {
                    digit: key(digit),
                    duration: DEFAULT_DURATION,
                }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            parse("application/sdp", b"Signal=1"),
            Err(InfoDtmfError::UnsupportedType {
                content_type: "application/sdp".into()
            })
        );
        // A prefix of the media type is not the media type.
        assert!(matches!(
            parse("application/dtmf-relayx", b"Signal=1"),
            Err(InfoDtmfError::UnsupportedType { .. })
        ));
        assert_eq!(relay(""), Err(InfoDtmfError::NoSignal));
        assert_eq!(relay("Duration=100\r\n"), Err(InfoDtmfError::NoSignal));
        assert_eq!(relay("Signal=\r\n"), Err(InfoDtmfError::NoSignal));
        assert_eq!(
            parse("application/dtmf", b" \r\n"),
            Err(InfoDtmfError::NoSignal)
        );
        for bad in ["16", "E", "12345", "1 2", "-1", "0x5", "%", "ä"] {
            assert_eq!(
                relay(&format!("Signal={bad}\r\n")),
                Err(InfoDtmfError::BadDigit { value: bad.into() }),
                "{bad}"
            );
        }
        for bad in ["-5", "abc", "1.5", "99999999999", "160ms"] {
            assert_eq!(
                relay(&format!("Signal=1\r\nDuration={bad}\r\n")),
                Err(InfoDtmfError::BadDuration { value: bad.into() }),
                "{bad}"
            );
        }
        // Prose, XML and binary are not DTMF bodies.
        assert_eq!(relay("hello world"), Err(InfoDtmfError::NoSignal));
        assert!(parse("application/dtmf", b"<dtmf>5</dtmf>").is_err());
        assert!(parse("application/dtmf-relay", &[0xff, 0xfe, 0x00, 0x3d]).is_err());
    }

    #[test]
    fn build_round_trips_every_key() {
        for digit in Digit::ALL {
            let (ct, body) = build_dtmf_relay(digit, ms(160));
            assert_eq!(ct, "application/dtmf-relay");
            assert_eq!(
                parse(ct, &body),
                Ok(InfoDigit {
                    digit,
                    duration: ms(160)
                })
            );
        }
        let (_, body) = build_dtmf_relay(Digit::Pound, ms(100));
        assert_eq!(body, b"Signal=#\r\nDuration=100\r\n");
    }

    /// Malformed input must be rejected, never panic: random bytes, random bytes from the
    /// format's own alphabet, and valid bodies with bytes flipped or cut short.
    #[test]
    fn arbitrary_bodies_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"Signal=Duration0123456789*#ABCDabcd \r\n=;\t\xff\x00";
        let valid = b"Signal=5\r\nDuration=160\r\n";
        let types = ["application/dtmf-relay", "application/dtmf", "text/plain"];
        let mut parsed = 0;
        for i in 0..20_000 {
            let len = (next() % 48) as usize;
            let body: Vec<u8> = match i % 3 {
                0 => (0..len).map(|_| next() as u8).collect(),
                1 => (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
                _ => {
                    let mut b = valid[..len.min(valid.len())].to_vec();
                    if !b.is_empty() {
                        let at = (next() % b.len() as u64) as usize;
                        b[at] = next() as u8;
                    }
                    b
                }
            };
            let ct = types[(next() % 3) as usize];
            if parse(ct, &body).is_ok() {
                parsed += 1;
            }
        }
        // The mutated valid bodies keep parsing often enough to exercise the success path.
        assert!(parsed > 100, "{parsed}");
    }
}
