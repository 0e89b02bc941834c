//! Numbers: E.164 inside Switchboard, the carrier's format on the wire.
//!
//! People type numbers every way (`+86 10 8888 0000`, `010-8888-0000`, `13800000000`) and carriers
//! send them every way too (`008610…`, `8610…`). Everything that compares numbers (blacklists,
//! trunk numbers, regions, records) works on one form, E.164 (`+861088880000`); [`to_carrier`]
//! writes the form the trunk's carrier expects in the Request-URI, To and From.
use std::fmt;

use crate::config::{NumberFormat, WireFormat};

/// A number in E.164 form: `+`, then 6 to 15 digits, the first not `0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// `text` as it is, if it is already E.164.
    pub fn parse(text: &str) -> Option<E164> {
        crate::config::trunks::is_e164(text).then(|| E164(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a dialled or received number could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNumber {
    #[error("no digits")]
    Empty,
    #[error("{ch:?} is not a digit")]
    BadCharacter { ch: char },
    /// The E.164 form would have this many digits, outside 6 to 15.
    #[error("{digits} digits after the country code is not a valid E.164 number")]
    Length { digits: usize },
}

/// Digits-only input at least this long that starts with the country code is taken as an
/// international number written without prefix (`8613800000000`): no national number in the plans
/// we serve (China's mobiles, North America, most of Europe) is longer than 11 digits, so such a
/// string can not be a national number.
const MAX_NATIONAL_DIGITS: usize = 11;

/// What a person dialled or a carrier sent, as E.164.
///
/// Separators (spaces, `-`, `.`, `(`, `)`) are dropped. Then, in this order:
/// `+…` is already international; the international prefix (`00`) is followed by a country code;
/// the national prefix (`0`) is followed by an area code or mobile number of our country; a
/// digits-only string longer than a national number that starts with our country code is
/// international without prefix; anything else is a national number written without its prefix
/// (a mobile `13800000000`, an area code without `0`).
pub fn normalize(dialled: &str, fmt: &NumberFormat) -> Result<E164, InvalidNumber> {
    let mut plus = false;
    let mut digits = String::with_capacity(dialled.len());
    for (i, ch) in dialled.trim().chars().enumerate() {
        match ch {
            '0'..='9' => digits.push(ch),
            '+' if i == 0 => plus = true,
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return Err(InvalidNumber::BadCharacter { ch }),
        }
    }
    if digits.is_empty() {
        return Err(InvalidNumber::Empty);
    }
    let international: String = if plus {
        digits
    } else if let Some(rest) = strip_nonempty(&digits, &fmt.international_prefix) {
        rest.to_owned()
    } else if let Some(rest) = strip_nonempty(&digits, &fmt.national_prefix) {
        format!("{}{rest}", fmt.country_code)
    } else if digits.len() > MAX_NATIONAL_DIGITS && digits.starts_with(&fmt.country_code) {
        digits
    } else {
        format!("{}{digits}", fmt.country_code)
    };
    let e164 = format!("+{international}");
    E164::parse(&e164).ok_or(InvalidNumber::Length {
        digits: international.len(),
    })
}

/// `prefix` stripped from `s`, if `prefix` is non-empty and something follows it.
fn strip_nonempty<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return None;
    }
    s.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

/// `e164` as the carrier expects it (`number_format.outbound`).
pub fn to_carrier(e164: &E164, fmt: &NumberFormat) -> String {
    let digits = e164.digits();
    match fmt.outbound {
        WireFormat::E164 => e164.as_str().to_owned(),
        WireFormat::Digits => digits.to_owned(),
        WireFormat::International => format!("{}{digits}", fmt.international_prefix),
        WireFormat::National => match digits.strip_prefix(fmt.country_code.as_str()) {
            Some(national) => format!("{}{national}", fmt.national_prefix),
            None => format!("{}{digits}", fmt.international_prefix),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cn(outbound: WireFormat) -> NumberFormat {
        NumberFormat {
            outbound,
            ..NumberFormat::default()
        }
    }

    #[test]
    fn what_people_type_becomes_e164() {
        let fmt = cn(WireFormat::National);
        let table = [
            ("+861088880000", "+861088880000"),
            ("+86 10 8888 0000", "+861088880000"),
            ("008610 8888 0000", "+861088880000"),
            ("010-8888-0000", "+861088880000"),
            ("(010) 8888.0000", "+861088880000"),
            ("1088880000", "+861088880000"),
            ("13800000000", "+8613800000000"),
            ("013800000000", "+8613800000000"),
            ("8613800000000", "+8613800000000"),
            ("+86 138 0000 0000", "+8613800000000"),
            ("0755 8888 0000", "+8675588880000"),
            ("+1 212 555 0100", "+12125550100"),
            ("0012125550100", "+12125550100"),
            ("  13800000000 ", "+8613800000000"),
        ];
        for (input, expected) in table {
            assert_eq!(
                normalize(input, &fmt).map(E164::into_string),
                Ok(expected.to_owned()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn what_is_not_a_number_is_refused() {
        let fmt = NumberFormat::default();
        assert_eq!(normalize("", &fmt), Err(InvalidNumber::Empty));
        assert_eq!(normalize(" - ", &fmt), Err(InvalidNumber::Empty));
        assert_eq!(
            normalize("1380000abcd", &fmt),
            Err(InvalidNumber::BadCharacter { ch: 'a' })
        );
        assert_eq!(
            normalize("138+0000", &fmt),
            Err(InvalidNumber::BadCharacter { ch: '+' })
        );
        // A service code is too short for E.164; a run of digits too long.
        assert_eq!(
            normalize("110", &fmt),
            Err(InvalidNumber::Length { digits: 5 })
        );
        assert_eq!(
            normalize("+1234567890123456", &fmt),
            Err(InvalidNumber::Length { digits: 16 })
        );
        assert!(normalize("+0123456789", &fmt).is_err());
    }

    #[test]
    fn the_carrier_gets_its_format() {
        let beijing = E164::parse("+861088880000").unwrap();
        let mobile = E164::parse("+8613800000000").unwrap();
        let abroad = E164::parse("+12125550100").unwrap();
        let table = [
            (WireFormat::E164, &beijing, "+861088880000"),
            (WireFormat::International, &beijing, "00861088880000"),
            (WireFormat::National, &beijing, "01088880000"),
            (WireFormat::National, &mobile, "013800000000"),
            (WireFormat::National, &abroad, "0012125550100"),
            (WireFormat::Digits, &mobile, "8613800000000"),
        ];
        for (outbound, number, expected) in table {
            assert_eq!(to_carrier(number, &cn(outbound)), expected, "{outbound:?}");
        }
    }

    #[test]
    fn the_wire_form_reads_back_as_the_same_number() {
        for outbound in [
            WireFormat::E164,
            WireFormat::International,
            WireFormat::National,
            WireFormat::Digits,
        ] {
            let fmt = cn(outbound);
            for n in ["+861088880000", "+8613800000000", "+12125550100"] {
                // Bare digits can not tell a foreign number from a national one: a carrier
                // that wants digits only carries domestic calls.
                if outbound == WireFormat::Digits && !n.starts_with("+86") {
                    continue;
                }
                let e = E164::parse(n).unwrap();
                assert_eq!(
                    normalize(&to_carrier(&e, &fmt), &fmt),
                    Ok(e),
                    "{outbound:?}"
                );
            }
        }
    }
}
