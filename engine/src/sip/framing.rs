//! Message framing on stream transports (RFC 3261 §18.3): check, then parse, then advance.
//!
//! [`check`] looks at the bytes buffered from a TCP connection and says whether a whole
//! message is there and how long it is, without building anything — the shape of a
//! `Frame::check` in mini-redis. Only a complete frame is handed to
//! [`crate::sip::msg::parse`]. Keeping [`FrameError::Incomplete`] (wait for more bytes) apart
//! from [`FrameError::Invalid`] (the stream cannot be resynchronised: close it) is what lets
//! the connection task treat the two correctly.

/// What sits at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many octets.
    Message(usize),
    /// An RFC 5626 §3.5.1 keep-alive "ping" (a double CRLF) of this many octets: answer with
    /// a single CRLF "pong".
    Ping(usize),
    /// Stray CRLFs of this many octets before a start line (RFC 3261 §7.5): skip them.
    Skip(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("incomplete message")]
    Incomplete,
    #[error("message larger than {limit} octets")]
    TooLarge { limit: usize },
    #[error("unframeable message: {reason}")]
    Invalid { reason: &'static str },
}

/// Find the frame at the start of `buf`. `max` bounds a message's size (headers and body),
/// so a peer cannot make us buffer without end.
pub fn check(buf: &[u8], max: usize) -> Result<Frame, FrameError> {
    let crlfs = buf.chunks(2).take_while(|c| *c == b"\r\n").count();
    if crlfs >= 2 {
        return Ok(Frame::Ping(crlfs * 2));
    }
    if crlfs == 1 {
        return if buf.len() > 2 {
            Ok(Frame::Skip(2))
        } else {
            Err(FrameError::Incomplete)
        };
    }
    let Some(head_len) = head_length(buf) else {
        return Err(if buf.len() > max {
            FrameError::TooLarge { limit: max }
        } else {
            FrameError::Incomplete
        });
    };
    let body_len = content_length(&buf[..head_len])?;
    let total = head_len
        .checked_add(body_len)
        .ok_or(FrameError::TooLarge { limit: max })?;
    if total > max {
        return Err(FrameError::TooLarge { limit: max });
    }
    if buf.len() < total {
        return Err(FrameError::Incomplete);
    }
    Ok(Frame::Message(total))
}

/// The length of the start line and header section, including the empty line.
fn head_length(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&c| c == b'\n') {
        let next = i + off + 1;
        match buf.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => i = next,
        }
    }
    None
}

/// The one Content-Length of a header section. On a stream it is mandatory (§18.3), and a
/// missing, repeated, negative or non-numeric one leaves no way to find the next message.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found = None;
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::Invalid {
                reason: "Content-Length is not a number",
            });
        }
        if found.is_some() {
            return Err(FrameError::Invalid {
                reason: "Content-Length appears more than once",
            });
        }
        // ≤ 10 ASCII digits always fit in u64.
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        found = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    found.ok_or(FrameError::Invalid {
        reason: "no Content-Length on a stream transport",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_535;

    #[test]
    fn whole_message_with_body() {
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nabcdNEXT";
        assert_eq!(check(m, MAX), Ok(Frame::Message(m.len() - 4)));
    }

    #[test]
    fn compact_content_length_and_bare_lf() {
        let m = b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nab";
        assert_eq!(check(m, MAX), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let m = b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nContent-Length: 3\r\n\r\nxyz";
        for cut in 1..m.len() {
            let r = check(&m[..cut], MAX);
            assert!(
                matches!(r, Err(FrameError::Incomplete)),
                "prefix of {cut} octets gave {r:?}"
            );
        }
    }

    #[test]
    fn keep_alive_ping_and_stray_crlf() {
        assert_eq!(check(b"\r\n\r\n", MAX), Ok(Frame::Ping(4)));
        assert_eq!(check(b"\r\nINVITE", MAX), Ok(Frame::Skip(2)));
        assert_eq!(check(b"\r\n", MAX), Err(FrameError::Incomplete));
    }

    #[test]
    fn missing_repeated_or_negative_length_is_invalid() {
        for m in [
            &b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -999\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            assert!(
                matches!(check(m, MAX), Err(FrameError::Invalid { .. })),
                "{m:?}"
            );
        }
    }

    #[test]
    fn size_limit_applies_to_headers_and_body() {
        let big_head = vec![b'a'; MAX + 1];
        assert_eq!(
            check(&big_head, MAX),
            Err(FrameError::TooLarge { limit: MAX })
        );
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 70000\r\n\r\n";
        assert_eq!(check(m, MAX), Err(FrameError::TooLarge { limit: MAX }));
    }

    #[test]
    fn folded_line_is_not_mistaken_for_content_length() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nSubject: x\r\n l: 5\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(m, MAX), Ok(Frame::Message(m.len())));
    }
}
