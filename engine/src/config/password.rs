//! The SIP account password policy.
//!
//! SIP digest (RFC 3261 §22, RFC 8760) lets anyone who can reach a listener guess passwords at line rate,
//! and scanners (SIPVicious and friends) try exactly the patterns below within minutes of a port being
//! exposed. So a password must be at least [`MIN_LENGTH`] characters and must not be guessable from a
//! short dictionary: a common password, a common word wrapped in digits or symbols (`Password123!`),
//! the user name, one short pattern repeated, or a keyboard/alphabet run.
//!
//! How the policy is applied lives in [`super`]: while every SIP listener is on loopback a weak
//! password is only a warning (the shipped demo relies on that), otherwise it rejects the config.

/// The minimum password length, in characters.
pub const MIN_LENGTH: usize = 12;

/// Why a password was refused. The variants never carry the password itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("it is {len} characters long, fewer than the {min} required")]
    TooShort { len: usize, min: usize },
    #[error("it contains the user name")]
    ContainsUser,
    #[error("it is a common password, or a common word with digits or symbols around it")]
    Common,
    #[error("it repeats one short pattern or uses too few distinct characters")]
    Repetitive,
    #[error("it is a keyboard, alphabet or number sequence")]
    Sequence,
}

/// Checks `password` for SIP account `user` against the policy; the first rule it breaks is returned.
pub fn check_password(user: &str, password: &str) -> Result<(), WeakPassword> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        return Err(WeakPassword::TooShort {
            len,
            min: MIN_LENGTH,
        });
    }
    let lower = password.to_lowercase();
    if contains_user(user, &lower) {
        return Err(WeakPassword::ContainsUser);
    }
    if is_common(&lower) {
        return Err(WeakPassword::Common);
    }
    let chars: Vec<char> = lower.chars().collect();
    if is_repetitive(&chars) {
        return Err(WeakPassword::Repetitive);
    }
    if is_sequence(&chars) {
        return Err(WeakPassword::Sequence);
    }
    Ok(())
}

fn contains_user(user: &str, lower: &str) -> bool {
    let user = user.to_lowercase();
    if user.is_empty() {
        return false;
    }
    // A one- or two-character user name occurs by chance in good passwords, so for those only
    // "the user name followed by digits or symbols" counts.
    if user.chars().count() >= 3 {
        lower.contains(&user)
    } else {
        lower
            .strip_prefix(&user)
            .is_some_and(|rest| rest.chars().all(|c| !c.is_alphabetic()))
    }
}

fn is_common(lower: &str) -> bool {
    if COMMON.contains(&lower) {
        return true;
    }
    // `Summer2024!`, `!!password123`, `P@ssw0rd99`: strip what surrounds the word, undo the usual
    // character substitutions, and look the word up.
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if core.is_empty() {
        return false;
    }
    if COMMON.contains(&core) {
        return true;
    }
    let unleet: String = core
        .chars()
        .map(|c| LEET.iter().find(|&&(l, _)| l == c).map_or(c, |&(_, r)| r))
        .collect();
    COMMON.contains(&unleet.as_str())
}

/// One short unit repeated (`aaaaaaaaaaaa`, `abcabcabcabc`, `passwordpassword`), or hardly any
/// distinct characters at all (`aabbaabbabab`).
fn is_repetitive(chars: &[char]) -> bool {
    let mut distinct = chars.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() <= 3 {
        return true;
    }
    let n = chars.len();
    // A shorter last chunk never equals the unit, so only units that divide the length can match.
    (1..=n / 2).any(|unit| chars.chunks(unit).all(|chunk| chunk == &chars[..unit]))
}

/// The password splits into at most two runs, each a stretch of a keyboard row, the alphabet or the
/// digits, forwards or backwards (`123456789012`, `qwertyuiop12`, `zyxwvutsrqpo`, `1qaz2wsx3edc`).
fn is_sequence(chars: &[char]) -> bool {
    let mut runs = 0;
    let mut start = 0;
    while start < chars.len() {
        let mut end = start + 1;
        while end < chars.len() && in_some_sequence(&chars[start..=end]) {
            end += 1;
        }
        runs += 1;
        if runs > 2 {
            return false;
        }
        start = end;
    }
    true
}

fn in_some_sequence(run: &[char]) -> bool {
    let run: String = run.iter().collect();
    let reversed: String = run.chars().rev().collect();
    SEQUENCES.iter().any(|seq| {
        // Twice over, so that runs may wrap around (`7890123456`).
        let doubled = seq.repeat(2);
        doubled.contains(&run) || doubled.contains(&reversed)
    })
}

const SEQUENCES: &[&str] = &[
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "azertyuiop",
    "!@#$%^&*()",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "qazwsxedcrfvtgbyhnujmikolp",
];

/// Substitutions scanners try first (`p@ssw0rd`, `$ecret`).
const LEET: &[(char, char)] = &[
    ('@', 'a'),
    ('4', 'a'),
    ('8', 'b'),
    ('(', 'c'),
    ('3', 'e'),
    ('6', 'g'),
    ('1', 'i'),
    ('!', 'i'),
    ('0', 'o'),
    ('$', 's'),
    ('5', 's'),
    ('7', 't'),
    ('+', 't'),
    ('2', 'z'),
];

/// The most common passwords and the words they are built from, lowercased: the heads of the public
/// breach-corpus lists, plus the words a telephony server invites (`sip`, `voip`, `switchboard`, `demo`).
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111", "1234567", "dragon",
    "123123", "baseball", "abc123", "football", "monkey", "letmein", "696969", "shadow", "master", "666666",
    "qwertyuiop", "123321", "mustang", "1234567890", "michael", "654321", "superman", "1qaz2wsx", "7777777",
    "121212", "000000", "qazwsx", "123qwe", "killer", "trustno1", "jordan", "jennifer", "zxcvbnm", "asdfgh",
    "hunter", "buster", "soccer", "harley", "batman", "andrew", "tigger", "sunshine", "iloveyou", "charlie",
    "robert", "thomas", "hockey", "ranger", "daniel", "starwars", "klaster", "112233", "george", "computer",
    "michelle", "jessica", "pepper", "zxcvbn", "555555", "11111111", "131313", "freedom", "777777", "pass",
    "maggie", "159753", "aaaaaa", "ginger", "princess", "joshua", "cheese", "amanda", "summer", "winter",
    "spring", "autumn", "love", "ashley", "nicole", "chelsea", "biteme", "matthew", "access", "yankees",
    "987654321", "dallas", "austin", "thunder", "taylor", "matrix", "william", "corvette", "hello", "martin",
    "heather", "secret", "merlin", "diamond", "hammer", "silver", "anthony", "justin", "test", "bailey",
    "q1w2e3r4t5", "patrick", "internet", "scooter", "orange", "golfer", "cookie", "richard", "samantha",
    "bigdog", "guitar", "jackson", "whatever", "mickey", "chicken", "sparky", "snoopy", "maverick", "phoenix",
    "camaro", "peanut", "morgan", "welcome", "falcon", "cowboy", "ferrari", "samsung", "andrea", "smokey",
    "steelers", "joseph", "mercedes", "dakota", "arsenal", "eagles", "melissa", "boomer", "booboo", "spider",
    "nascar", "monster", "tigers", "yellow", "xxxxxx", "123123123", "gateway", "marina", "diablo", "bulldog",
    "qwer1234", "compaq", "purple", "hardcore", "banana", "junior", "hannah", "123654", "porsche", "lakers",
    "iceman", "money", "cowboys", "987654", "london", "tennis", "999999", "ncc1701", "coffee", "scooby",
    "0000", "miller", "boston", "q1w2e3r4", "brandon", "yamaha", "chester", "mother", "forever", "johnny",
    "edward", "333333", "oliver", "redsox", "player", "nikita", "knight", "fender", "barney", "midnight",
    "please", "brandy", "chicago", "badboy", "slayer", "rangers", "sophie", "qwerty123", "password1",
    "password123", "passw0rd", "p@ssw0rd", "admin", "administrator", "root", "toor", "changeme", "default",
    "guest", "user", "login", "welcome1", "secret123", "letmein123", "iloveyou123", "qwertyuiop123",
    "1q2w3e4r5t6y", "1q2w3e4r5t", "zaq12wsx", "asdfghjkl", "asdf1234", "abcd1234", "aa123456", "qwe123",
    "1qazxsw2", "football123", "monkey123", "dragon123", "sunshine123", "princess123", "passwordpassword",
    "mypassword", "letmeinplease", "trustnoone", "starwars123", "pokemon", "minecraft", "superman123",
    "batman123", "liverpool", "manchester", "chelseafc", "barcelona", "america", "canada", "germany", "china",
    "beijing", "shanghai", "wodemima", "woaini", "woaini1314", "aini1314", "5201314", "1314520", "zhang",
    "wang", "qwerasdf", "qwerasdfzxcv", "sip", "voip", "phone", "telephone", "asterisk", "freeswitch",
    "kamailio", "opensips", "switchboard", "demo", "sipuser", "sippass", "extension", "voicemail", "company",
    "office", "support", "sales", "service", "callcenter", "contact",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_passwords_are_refused_with_their_length() {
        assert_eq!(
            check_password("1001", "demo-1001"),
            Err(WeakPassword::TooShort { len: 9, min: 12 })
        );
        // Characters, not bytes.
        assert_eq!(
            check_password("1001", "ßßßßßßßßßßß"),
            Err(WeakPassword::TooShort { len: 11, min: 12 })
        );
    }

    #[test]
    fn the_user_name_is_refused_inside_a_password() {
        assert_eq!(
            check_password("1001", "Xk9-1001-Lm3q"),
            Err(WeakPassword::ContainsUser)
        );
        assert_eq!(
            check_password("alice", "ALICE2024!!!x"),
            Err(WeakPassword::ContainsUser)
        );
        // A short user name only counts as a prefix followed by digits.
        assert_eq!(
            check_password("7", "7000000000001"),
            Err(WeakPassword::ContainsUser)
        );
        assert_eq!(check_password("7", "Vr7-tkq9-LmZp"), Ok(()));
    }

    #[test]
    fn common_passwords_and_decorated_words_are_refused() {
        for pw in [
            "password1234",
            "Password123!",
            "P@ssw0rd2024!!",
            "!!Summer2024!!",
            "qwertyuiop123",
            "1q2w3e4r5t6y",
            "Switchboard2024",
            "iloveyou1234",
        ] {
            assert_eq!(
                check_password("1001", pw),
                Err(WeakPassword::Common),
                "{pw}"
            );
        }
    }

    #[test]
    fn repeated_patterns_are_refused() {
        for pw in [
            "aaaaaaaaaaaa",
            "abcabcabcabc",
            "xK9#xK9#xK9#",
            "aabbaabbabab",
            "zebrazebra12zebrazebra12",
        ] {
            assert_eq!(
                check_password("1001", pw),
                Err(WeakPassword::Repetitive),
                "{pw}"
            );
        }
    }

    #[test]
    fn sequences_are_refused() {
        for pw in [
            "123456789012",
            "abcdefghijkl",
            "zyxwvutsrqpo",
            "7890123456789",
            "1qaz2wsx3edc4rfv",
            "mnbvcxzlkjhg",
        ] {
            assert_eq!(
                check_password("1001", pw),
                Err(WeakPassword::Sequence),
                "{pw}"
            );
        }
    }

    #[test]
    fn strong_passwords_pass() {
        for pw in [
            "Vr7-tkq9-LmZp",
            "correct horse battery staple",
            "h8Jz!q2mW#x4",
            "tR0ub4dor&3xQ",
        ] {
            assert_eq!(check_password("1001", pw), Ok(()), "{pw}");
        }
    }

    #[test]
    fn messages_never_contain_the_password() {
        let pw = "demo-1001";
        let err = check_password("1001", pw).unwrap_err();
        assert!(!err.to_string().contains(pw));
    }
}
