//! The SIP message model and its parser (RFC 3261 §7, §20, §25; RFC 4475; RFC 5118).
//!
//! Parsing is two-level. [`parse`] splits a message into a start line, raw header fields
//! (unfolded, names canonicalised, values kept as cheap [`Bytes`] slices of the input where no
//! line folding had to be undone) and a body, and validates the fields every transaction needs:
//! the top `Via`, `From`, `To`, `Call-ID`, `CSeq` and `Max-Forwards`. Everything else is typed
//! lazily, on first use, through the accessors on [`Headers`] and the parsers in this module
//! ([`NameAddr::parse`], [`Via::parse_list`], [`Uri::parse`]).
//!
//! A request that is broken but still readable enough to answer yields
//! [`ParseError::answerable`], which carries what a stateless 400/505 response needs. Nothing in
//! here panics on any input (see the fuzz target and the torture-suite tests).
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------------------------
// Methods and header names
// ---------------------------------------------------------------------------------------------

/// A request method. Method names are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other `token`: an extension method we do not implement (answered 501).
    Extension(Box<str>),
}

impl Method {
    pub fn parse(token: &[u8]) -> Option<Method> {
        if token.is_empty() || !token.iter().all(|&c| is_token_char(c)) {
            return None;
        }
        Some(match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            // Token characters are ASCII, so this cannot fail.
            other => Method::Extension(String::from_utf8_lossy(other).into()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Extension(s) => s,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The name of a method RFC 3261 or its extensions define; `None` for an extension
    /// method. Static, so it can label metrics without allocating.
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(_) => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! header_names {
    ($( $variant:ident => $canonical:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are matched case-insensitively, compact forms
        /// (RFC 3261 §7.3.3) included; printing always uses the long canonical form.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            /// Any other header, with its name as received.
            Other(Box<str>),
        }

        impl HeaderName {
            pub fn parse(name: &[u8]) -> HeaderName {
                $(
                    if name.eq_ignore_ascii_case($canonical.as_bytes()) $(|| name.eq_ignore_ascii_case($compact.as_bytes()))? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(String::from_utf8_lossy(name).into())
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    Contact => "Contact", "m";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    ContentEncoding => "Content-Encoding", "e";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    Allow => "Allow";
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    Supported => "Supported", "k";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    Route => "Route";
    RecordRoute => "Record-Route";
    UserAgent => "User-Agent";
    Server => "Server";
    Subject => "Subject", "s";
    Date => "Date";
    Timestamp => "Timestamp";
    Warning => "Warning";
    RetryAfter => "Retry-After";
    Event => "Event", "o";
    ReferTo => "Refer-To", "r";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HeaderName {
    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1) and that may appear
    /// more than once. The rest must appear at most once.
    fn is_single(&self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// One header field: its name and its value with line folding undone and outer LWS trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Bytes,
}

impl Header {
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Header {
        Header {
            name,
            value: value.into(),
        }
    }

    /// The value as text; non-UTF-8 octets (legal in some header values) are replaced.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// The header fields of a message, in the order received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.0.push(Header::new(name, value));
    }

    /// The first field with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&Bytes> {
        self.0.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// The first field with this name, as text.
    pub fn get_str(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every field with this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }

    /// Every comma-separated element of every field with this name (quotes and `<…>` respected).
    pub fn list<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(split_list)
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    pub fn remove_all(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Replace every field with this name by one field with `value`, kept at the position of
    /// the first (or appended).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(first) => {
                self.0[first].value = value;
                let mut i = first + 1;
                while i < self.0.len() {
                    if self.0[i].name == name {
                        self.0.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.push(name, value),
        }
    }

    /// The top (first) Via, parsed.
    pub fn top_via(&self) -> Result<Via, FieldError> {
        let raw = self
            .list(&HeaderName::Via)
            .next()
            .ok_or(FieldError::Missing(HeaderName::Via))?;
        Via::parse(raw).map_err(|_| FieldError::Invalid(HeaderName::Via))
    }

    /// Replace the top Via value (used to add `received`/`rport`, RFC 3261 §18.2.1, RFC 3581).
    pub fn set_top_via(&mut self, via: &Via) {
        let Some(idx) = self.0.iter().position(|h| h.name == HeaderName::Via) else {
            return;
        };
        let value = std::str::from_utf8(&self.0[idx].value).unwrap_or("");
        let mut rest: Vec<&str> = split_list(value).collect();
        let top = via.to_string();
        if rest.is_empty() {
            self.0[idx].value = Bytes::from(top);
        } else {
            rest.remove(0);
            let mut out = top;
            for r in rest {
                out.push_str(", ");
                out.push_str(r);
            }
            self.0[idx].value = Bytes::from(out);
        }
    }

    pub fn call_id(&self) -> Result<&str, FieldError> {
        let v = self
            .get_str(&HeaderName::CallId)
            .ok_or(FieldError::Missing(HeaderName::CallId))?;
        if v.is_empty() || v.bytes().any(|c| c.is_ascii_whitespace()) {
            return Err(FieldError::Invalid(HeaderName::CallId));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, FieldError> {
        let v = self
            .get(&HeaderName::CSeq)
            .ok_or(FieldError::Missing(HeaderName::CSeq))?;
        CSeq::parse(v).ok_or(FieldError::Invalid(HeaderName::CSeq))
    }

    pub fn from(&self) -> Result<NameAddr, FieldError> {
        self.name_addr(HeaderName::From)
    }

    pub fn to(&self) -> Result<NameAddr, FieldError> {
        self.name_addr(HeaderName::To)
    }

    fn name_addr(&self, name: HeaderName) -> Result<NameAddr, FieldError> {
        let v = self
            .get_str(&name)
            .ok_or_else(|| FieldError::Missing(name.clone()))?;
        NameAddr::parse(v).map_err(|_| FieldError::Invalid(name))
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, FieldError> {
        match self.get(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => parse_u32(v)
                .filter(|&n| n <= 255)
                .map(|n| Some(n as u8))
                .ok_or(FieldError::Invalid(HeaderName::MaxForwards)),
        }
    }

    /// `Expires` as delta-seconds. Values beyond 2³²−1 are clamped (RFC 3261 §20.19 allows
    /// treating them as the largest value).
    pub fn expires(&self) -> Result<Option<u32>, FieldError> {
        match self.get(&HeaderName::Expires) {
            None => Ok(None),
            Some(v) => parse_delta_seconds(v)
                .map(Some)
                .ok_or(FieldError::Invalid(HeaderName::Expires)),
        }
    }

    /// The Contact header values, parsed. `Ok(None)` for the `*` wildcard.
    pub fn contacts(&self) -> Result<Option<Vec<NameAddr>>, FieldError> {
        let mut out = Vec::new();
        let mut star = false;
        for raw in self.list(&HeaderName::Contact) {
            if raw.trim() == "*" {
                star = true;
                continue;
            }
            out.push(NameAddr::parse(raw).map_err(|_| FieldError::Invalid(HeaderName::Contact))?);
        }
        // The contact list must not be malformed (RFC 3261 §20.10): a list element that is
        // neither an address nor `*`, e.g. an empty one between two commas, is an error.
        if self
            .get_all(&HeaderName::Contact)
            .any(|v| split_list_raw(std::str::from_utf8(v).unwrap_or("")).any(|e| e.is_empty()))
        {
            return Err(FieldError::Invalid(HeaderName::Contact));
        }
        match (star, out.is_empty()) {
            (true, true) => Ok(None),
            (true, false) => Err(FieldError::Invalid(HeaderName::Contact)),
            (false, _) => Ok(Some(out)),
        }
    }

    /// Option tags listed in a header such as `Require` or `Supported`.
    pub fn tokens<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.list(name).map(str::trim).filter(|t| !t.is_empty())
    }
}

/// A header field that a message needs is missing or unreadable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("missing {0} header")]
    Missing(HeaderName),
    #[error("malformed {0} header")]
    Invalid(HeaderName),
    #[error("{0} header appears more than once")]
    Repeated(HeaderName),
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn encode(&self) -> Bytes {
        match self {
            Message::Request(r) => r.encode(),
            Message::Response(r) => r.encode(),
        }
    }
}

fn encode_headers_and_body(out: &mut BytesMut, headers: &Headers, body: &Bytes) {
    for h in &headers.0 {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.put_slice(h.name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(&h.value);
        out.put_slice(b"\r\n");
    }
    // Content-Length is always written, and always true: it is what frames the message on a
    // stream transport (RFC 3261 §18.3).
    let _ = write!(
        BytesMutWriter(out),
        "Content-Length: {}\r\n\r\n",
        body.len()
    );
    out.put_slice(body);
}

struct BytesMutWriter<'a>(&'a mut BytesMut);

impl fmt::Write for BytesMutWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(512 + self.body.len());
        let _ = write!(
            BytesMutWriter(&mut out),
            "{} {} SIP/2.0\r\n",
            self.method,
            self.uri
        );
        encode_headers_and_body(&mut out, &self.headers, &self.body);
        out.freeze()
    }
}

impl Response {
    /// A response to `req` as RFC 3261 §8.2.6.2 builds it: Via (all values, in order), From,
    /// To, Call-ID and CSeq copied; the caller adds a To tag where one is needed.
    pub fn for_request(req: &Request, code: u16) -> Response {
        Response::from_headers(&req.headers, code)
    }

    /// The same from a set of raw headers, e.g. those of a request that failed to parse.
    pub fn from_headers(headers: &Headers, code: u16) -> Response {
        let mut out = Headers(Vec::with_capacity(8));
        for h in &headers.0 {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                out.0.push(h.clone());
            }
        }
        Response {
            code,
            reason: default_reason(code).to_owned(),
            headers: out,
            body: Bytes::new(),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Response {
        self.reason = reason.into();
        self
    }

    /// Add a `tag` to the To header unless it already carries one.
    pub fn ensure_to_tag(&mut self, tag: &str) {
        let Some(to) = self.headers.get_str(&HeaderName::To) else {
            return;
        };
        if let Ok(na) = NameAddr::parse(to) {
            if na.param("tag").is_none() {
                let v = format!("{to};tag={tag}");
                self.headers.set(HeaderName::To, v);
            }
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(512 + self.body.len());
        let _ = write!(
            BytesMutWriter(&mut out),
            "SIP/2.0 {} {}\r\n",
            self.code,
            self.reason
        );
        encode_headers_and_body(&mut out, &self.headers, &self.body);
        out.freeze()
    }
}

/// The RFC 3261 §21 reason phrase for a status code.
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        429 => "Too Many Requests",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Parse errors
// ---------------------------------------------------------------------------------------------

/// Why a message could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("empty message")]
    Empty,
    #[error("malformed start line")]
    StartLine,
    #[error("unsupported SIP version")]
    Version,
    #[error("status code out of range")]
    StatusCode,
    #[error("malformed Request-URI")]
    RequestUri,
    #[error("malformed header line {line}")]
    HeaderLine { line: usize },
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    #[error("Content-Length is negative, repeated or not a number")]
    ContentLength,
    #[error("body shorter than Content-Length ({declared} declared, {actual} present)")]
    Truncated { declared: usize, actual: usize },
    #[error("header section not terminated by an empty line")]
    Unterminated,
}

/// What a server can still answer when a request did not parse: the status code to send and
/// the header fields that survived (the response echoes Via, From, To, Call-ID, CSeq).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answerable {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub method: Option<Method>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ErrorKind,
    /// `Some` for a request with enough left to answer statelessly; `None` means drop it
    /// (responses are never answered, RFC 3261 §18.1.2 / §18.2.2).
    pub answerable: Option<Box<Answerable>>,
}

impl ParseError {
    fn drop(kind: ErrorKind) -> ParseError {
        ParseError {
            kind,
            answerable: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The message parser
// ---------------------------------------------------------------------------------------------

/// How the message arrived, which decides what Content-Length means (RFC 3261 §18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A UDP datagram: octets beyond Content-Length are discarded; no Content-Length means
    /// the body runs to the end of the datagram.
    Datagram,
    /// An exact frame cut from a stream by [`crate::sip::framing`]: the body is what remains.
    Stream,
}

/// Parse one complete message.
pub fn parse(buf: Bytes, framing: Framing) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::drop(ErrorKind::Empty))?;
    let (head_end, body_start) = match find_head_end(&buf[start..]) {
        Some((h, b)) => (start + h, start + b),
        // A datagram without the empty line: read headers to its end (the peer will get a
        // 400 for whatever else is wrong, instead of silence).
        None if framing == Framing::Datagram => (buf.len(), buf.len()),
        None => return Err(ParseError::drop(ErrorKind::Unterminated)),
    };
    let head = &buf[start..head_end];
    let (first_line, rest) = split_line(head);
    let first_line = trim_cr(first_line);
    let is_response = first_line.starts_with(b"SIP/");

    let headers_result = parse_headers(&buf, start + (first_line_len(head)), rest.len());
    let start_result = if is_response {
        parse_status_line(first_line).map(Start::Response)
    } else {
        parse_request_line(first_line).map(Start::Request)
    };

    // A response that fails in any way is dropped; a request is answered if we can.
    let (start_line, headers) = match (start_result, headers_result) {
        (Ok(s), Ok(h)) => (s, h),
        (Err(kind), Ok(h)) if !is_response => return Err(answerable(kind, h, first_line)),
        (Ok(Start::Request(_)), Err((kind, partial))) => {
            return Err(answerable(kind, partial, first_line))
        }
        (Err(kind), _) | (_, Err((kind, _))) => return Err(ParseError::drop(kind)),
    };

    let check = check_core_fields(&start_line, &headers);
    let body = match check.and_then(|()| body_of(&buf, body_start, &headers, framing)) {
        Ok(b) => b,
        Err(kind) => {
            return Err(match start_line {
                Start::Request(_) => answerable(kind, headers, first_line),
                Start::Response(_) => ParseError::drop(kind),
            })
        }
    };
    Ok(match start_line {
        Start::Request((method, uri)) => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        Start::Response((code, reason)) => Message::Response(Response {
            code,
            reason,
            headers,
            body,
        }),
    })
}

enum Start {
    Request((Method, Uri)),
    Response((u16, String)),
}

fn answerable(kind: ErrorKind, headers: Headers, first_line: &[u8]) -> ParseError {
    let code = if kind == ErrorKind::Version { 505 } else { 400 };
    // The reason phrase says what was wrong, which is what a person reading a trace needs.
    let reason = match &kind {
        ErrorKind::Version => default_reason(505).to_owned(),
        k => format!("Bad Request ({k})"),
    };
    let method = first_line
        .split(|&c| c == b' ')
        .next()
        .and_then(Method::parse);
    ParseError {
        kind,
        answerable: Some(Box::new(Answerable {
            code,
            reason,
            headers,
            method,
        })),
    }
}

fn first_line_len(head: &[u8]) -> usize {
    match head.iter().position(|&c| c == b'\n') {
        Some(i) => i + 1,
        None => head.len(),
    }
}

/// The end of the header section: the index where the empty line starts and where the body
/// starts. Accepts CRLF and, leniently, bare LF line ends.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&c| c == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some((next, next + 1));
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some((next, next + 2));
        }
        i = next;
    }
    None
}

fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    match buf.iter().position(|&c| c == b'\n') {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (buf, &[]),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_request_line(line: &[u8]) -> Result<(Method, Uri), ErrorKind> {
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces
    // (RFC 4475 §3.1.2.8-10 lwsruri, lwsstart, trws are rejected).
    let mut parts = line.split(|&c| c == b' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ErrorKind::StartLine);
    };
    let method = Method::parse(m).ok_or(ErrorKind::StartLine)?;
    check_version(v)?;
    let uri = std::str::from_utf8(u).map_err(|_| ErrorKind::RequestUri)?;
    let uri = Uri::parse(uri).map_err(|_| ErrorKind::RequestUri)?;
    // Escaped headers have no meaning in a Request-URI (RFC 3261 §19.1.5; RFC 4475 escruri).
    if uri.headers.is_some() {
        return Err(ErrorKind::RequestUri);
    }
    Ok((method, uri))
}

fn check_version(v: &[u8]) -> Result<(), ErrorKind> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    // A well-formed but other version gets 505 (RFC 4475 §3.1.2.16 badvers).
    let rest = v.get(..4).filter(|p| p.eq_ignore_ascii_case(b"SIP/"));
    match rest.and_then(|_| v.get(4..)) {
        Some(num)
            if num.split(|&c| c == b'.').count() == 2
                && num
                    .split(|&c| c == b'.')
                    .all(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit)) =>
        {
            Err(ErrorKind::Version)
        }
        _ => Err(ErrorKind::StartLine),
    }
}

fn parse_status_line(line: &[u8]) -> Result<(u16, String), ErrorKind> {
    let mut parts = line.splitn(3, |&c| c == b' ');
    let (Some(v), Some(code)) = (parts.next(), parts.next()) else {
        return Err(ErrorKind::StartLine);
    };
    check_version(v)?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::StatusCode);
    }
    let code = u16::from(code[0] - b'0') * 100
        + u16::from(code[1] - b'0') * 10
        + u16::from(code[2] - b'0');
    if !(100..=699).contains(&code) {
        return Err(ErrorKind::StatusCode);
    }
    // The reason phrase may be empty and may hold UTF-8 (RFC 4475 unreason, noreason).
    let reason = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    Ok((code, reason))
}

/// Split the header lines of `buf[from..from+len]`, undoing line folding. On error returns
/// the fields read so far, so a 400 can still echo Via, From, To, Call-ID and CSeq.
fn parse_headers(buf: &Bytes, from: usize, len: usize) -> Result<Headers, (ErrorKind, Headers)> {
    let mut headers = Headers(Vec::with_capacity(16));
    let end = from + len;
    let mut pos = from;
    let mut line_no = 1;
    let mut error = None;
    while pos < end {
        // One logical header: a line and its continuation lines (starting with SP or HT).
        let mut stop = pos;
        let mut folded = false;
        loop {
            let nl = buf[stop..end]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(end, |i| stop + i);
            stop = nl;
            line_no += 1;
            if nl + 1 < end && matches!(buf[nl + 1], b' ' | b'\t') {
                folded = true;
                stop = nl + 1;
                continue;
            }
            break;
        }
        let raw = &buf[pos..stop];
        let next = (stop + 1).min(end);
        let raw = trim_cr(raw);
        if raw.is_empty() {
            pos = next;
            continue;
        }
        match raw.iter().position(|&c| c == b':') {
            Some(colon) if colon > 0 => {
                let name = trim_lws(&raw[..colon]);
                if name.is_empty() || !name.iter().all(|&c| is_token_char(c)) {
                    error.get_or_insert(ErrorKind::HeaderLine { line: line_no });
                } else {
                    let name = HeaderName::parse(name);
                    let value_start = pos + colon + 1;
                    let value_end = pos + raw.len();
                    let value = if folded {
                        Bytes::from(unfold(&buf[value_start..value_end]))
                    } else {
                        let v = &buf[value_start..value_end];
                        let lead = v.iter().take_while(|c| is_lws(**c)).count();
                        let trail = v[lead..].iter().rev().take_while(|c| is_lws(**c)).count();
                        buf.slice(value_start + lead..value_end - trail)
                    };
                    headers.0.push(Header { name, value });
                }
            }
            _ => {
                error.get_or_insert(ErrorKind::HeaderLine { line: line_no });
            }
        }
        pos = next;
    }
    match error {
        Some(e) => Err((e, headers)),
        None => Ok(headers),
    }
}

/// Replace each CRLF + whitespace run (and surrounding whitespace) with one SP
/// (RFC 3261 §7.3.1) and trim.
fn unfold(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut pending_space = false;
    for &c in v {
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            pending_space = true;
        } else {
            if pending_space && !out.is_empty() {
                out.push(b' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

fn check_core_fields(start: &Start, h: &Headers) -> Result<(), ErrorKind> {
    // Headers that may appear only once (RFC 4475 §3.3.8 multi01, §3.3.9 mcl01).
    for (i, hd) in h.0.iter().enumerate() {
        if hd.name.is_single() && h.0[..i].iter().any(|p| p.name == hd.name) {
            return Err(FieldError::Repeated(hd.name.clone()).into());
        }
    }
    let vias: Vec<&str> = h.list(&HeaderName::Via).collect();
    if vias.is_empty() {
        return Err(FieldError::Missing(HeaderName::Via).into());
    }
    // Only the top Via is ours to read; later ones are other hops' business, but a list
    // with empty elements (badinv01's `;;,;,,`) is malformed as a whole.
    h.top_via()?;
    for v in h.get_all(&HeaderName::Via) {
        if split_list_raw(std::str::from_utf8(v).unwrap_or("")).any(|e| e.trim().is_empty()) {
            return Err(FieldError::Invalid(HeaderName::Via).into());
        }
    }
    h.from()?;
    h.to()?;
    h.call_id()?;
    let cseq = h.cseq()?;
    h.max_forwards()?;
    if let Start::Request((method, _)) = start {
        // RFC 3261 §8.1.1.5: the CSeq method matches the request method (mismatch01/02).
        if &cseq.method != method {
            return Err(ErrorKind::CSeqMismatch);
        }
    }
    Ok(())
}

fn body_of(
    buf: &Bytes,
    body_start: usize,
    headers: &Headers,
    framing: Framing,
) -> Result<Bytes, ErrorKind> {
    let available = buf.len() - body_start;
    let declared = match headers.get(&HeaderName::ContentLength) {
        None => None,
        Some(v) => Some(
            parse_u32(v)
                .map(|n| n as usize)
                .ok_or(ErrorKind::ContentLength)?,
        ),
    };
    match (declared, framing) {
        (None, _) => Ok(buf.slice(body_start..)),
        (Some(n), _) if n > available => Err(ErrorKind::Truncated {
            declared: n,
            actual: available,
        }),
        // RFC 3261 §18.3: octets beyond Content-Length in a datagram are discarded.
        (Some(n), _) => Ok(buf.slice(body_start..body_start + n)),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed values: CSeq, URI, name-addr, Via
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(v: &[u8]) -> Option<CSeq> {
        let v = trim_lws(v);
        let split = v.iter().position(|&c| is_lws(c))?;
        let seq = parse_u32(&v[..split])?;
        let method = Method::parse(trim_lws(&v[split..]))?;
        Some(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme (RFC 4475 unkscm, novelsc): readable, but not one we route.
    Other(Box<str>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(Box<str>),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    pub fn parse(s: &str) -> Option<Host> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return inner.parse().ok().map(Host::V6);
        }
        if s.is_empty() {
            return None;
        }
        if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') && s.bytes().any(|c| c == b'.') {
            // Looks like an IPv4 address; if it is not one, it is not a host name either
            // (a toplabel must start with a letter).
            if let Ok(ip) = s.parse() {
                return Some(Host::V4(ip));
            }
        }
        let ok = s.split('.').enumerate().all(|(i, label)| {
            // A trailing dot (fully-qualified name) gives one empty last label.
            (label.is_empty() && i > 0 && s.ends_with('.'))
                || (!label.is_empty()
                    && label
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        });
        ok.then(|| Host::Name(s.to_ascii_lowercase().into()))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

/// A `;name=value` parameter list, names kept as received (compare case-insensitively).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Params(pub Vec<(Box<str>, Option<Box<str>>)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn set(&mut self, name: &str, value: Option<String>) {
        let value = value.map(Into::into);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.into(), value)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}")]
pub struct SyntaxError {
    pub what: &'static str,
}

fn syntax(what: &'static str) -> SyntaxError {
    SyntaxError { what }
}

/// A URI (RFC 3261 §19.1). SIP and SIPS URIs are fully typed; other schemes keep their
/// scheme-specific part opaque.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uri {
    pub scheme: Scheme,
    /// The user part as written (still %-escaped), e.g. `user;par=u%40example.net`.
    pub user: Option<Box<str>>,
    pub password: Option<Box<str>>,
    /// `None` for non-SIP schemes.
    pub host: Option<Host>,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?headers` part, as written.
    pub headers: Option<Box<str>>,
    /// For non-SIP schemes, everything after the colon.
    pub opaque: Option<Box<str>>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, SyntaxError> {
        let colon = s.find(':').ok_or(syntax("URI"))?;
        let scheme_str = &s[..colon];
        let rest = &s[colon + 1..];
        if scheme_str.is_empty()
            || !scheme_str.as_bytes()[0].is_ascii_alphabetic()
            || !scheme_str
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(syntax("URI scheme"));
        }
        if s.bytes()
            .any(|c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return Err(syntax("URI"));
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else {
            let scheme = if scheme_str.eq_ignore_ascii_case("tel") {
                Scheme::Tel
            } else {
                Scheme::Other(scheme_str.to_ascii_lowercase().into())
            };
            if rest.is_empty() {
                return Err(syntax("URI"));
            }
            return Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: None,
                port: None,
                params: Params::default(),
                headers: None,
                opaque: Some(rest.into()),
            });
        };
        // userinfo: nothing after it (host, params, headers) may contain '@', so the first
        // '@' ends it — the user part itself may hold ';' and '?' (RFC 4475 semiuri).
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() || !valid_escapes(u) || p.is_some_and(|p| !valid_escapes(p)) {
                    return Err(syntax("URI user part"));
                }
                (Some(u.into()), p.map(Into::into))
            }
        };
        let (hostport, headers) = match hostpart.find('?') {
            Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
            None => (hostpart, None),
        };
        let (hostport, params_str) = match hostport.find(';') {
            Some(sc) => (&hostport[..sc], Some(&hostport[sc..])),
            None => (hostport, None),
        };
        let (host, port) = split_host_port(hostport).ok_or(syntax("URI host"))?;
        let params = match params_str {
            Some(p) => parse_params(p, false)?,
            None => Params::default(),
        };
        if let Some(h) = headers {
            if h.is_empty() || !valid_escapes(h) {
                return Err(syntax("URI headers"));
            }
        }
        Ok(Uri {
            scheme,
            user,
            password,
            host: Some(host),
            port,
            params,
            headers: headers.map(Into::into),
            opaque: None,
        })
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The user part with %-escapes decoded (RFC 3261 §19.1.4 compares unescaped).
    pub fn user_decoded(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(percent_decode)
    }

    /// The address-of-record key of this URI: `user@host` with the user part in one canonical
    /// escaping and the host lower-cased, so that `sip:%75ser@Example.com` and
    /// `sip:user@example.com` name the same AOR while `%00` does not truncate anything
    /// (RFC 4475 escnull).
    pub fn aor(&self) -> Option<String> {
        let host = self.host.as_ref()?;
        let mut out = String::new();
        if let Some(user) = self.user_decoded() {
            for b in user {
                if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            out.push('@');
        }
        let _ = write!(out, "{host}");
        Some(out)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Sip => f.write_str("sip:")?,
            Scheme::Sips => f.write_str("sips:")?,
            Scheme::Tel => f.write_str("tel:")?,
            Scheme::Other(s) => write!(f, "{s}:")?,
        }
        if let Some(op) = &self.opaque {
            return f.write_str(op);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        if let Some(h) = &self.host {
            write!(f, "{h}")?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

fn split_host_port(s: &str) -> Option<(Host, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']')?;
        let after = &s[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&s[..=close], port)
    } else {
        match s.rfind(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    let host = Host::parse(host)?;
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Parse `;a=b;c` parameters (leading `;` included). With `lws`, whitespace around `;` and
/// `=` is allowed (header parameters); URI parameters allow none. Values may be tokens,
/// quoted strings (header parameters only) or bracketed IPv6 references.
fn parse_params(s: &str, lws: bool) -> Result<Params, SyntaxError> {
    let mut out = Params::default();
    let mut rest = s;
    loop {
        if lws {
            rest = rest.trim_start_matches([' ', '\t']);
        }
        if rest.is_empty() {
            return Ok(out);
        }
        rest = rest.strip_prefix(';').ok_or(syntax("parameter list"))?;
        if lws {
            rest = rest.trim_start_matches([' ', '\t']);
        }
        let name_len = rest
            .bytes()
            .take_while(|&c| {
                if lws {
                    is_token_char(c)
                } else {
                    is_param_char(c)
                }
            })
            .count();
        if name_len == 0 {
            return Err(syntax("parameter"));
        }
        let name = &rest[..name_len];
        rest = &rest[name_len..];
        let after_ws = if lws {
            rest.trim_start_matches([' ', '\t'])
        } else {
            rest
        };
        let value = if let Some(v) = after_ws.strip_prefix('=') {
            let v = if lws {
                v.trim_start_matches([' ', '\t'])
            } else {
                v
            };
            let len = if lws && v.starts_with('"') {
                quoted_len(v).ok_or(syntax("quoted parameter value"))?
            } else if v.starts_with('[') {
                v.find(']').ok_or(syntax("parameter value"))? + 1
            } else {
                v.bytes()
                    .take_while(|&c| {
                        if lws {
                            is_token_char(c) || c == b':' || c == b'[' || c == b']'
                        } else {
                            is_param_char(c)
                        }
                    })
                    .count()
            };
            if len == 0 {
                return Err(syntax("parameter value"));
            }
            rest = &v[len..];
            Some(&v[..len])
        } else {
            rest = after_ws;
            None
        };
        if !lws && !valid_escapes(name) || value.is_some_and(|v| !lws && !valid_escapes(v)) {
            return Err(syntax("parameter escape"));
        }
        out.0.push((name.into(), value.map(Into::into)));
    }
}

/// A `name-addr` or `addr-spec` with header parameters: the value of From, To, Contact,
/// Route, Record-Route, Refer-To (RFC 3261 §20.10, §25.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn parse(s: &str) -> Result<NameAddr, SyntaxError> {
        let s = s.trim_matches([' ', '\t']);
        let (display, uri_str, rest) = if let Some(lt) = find_unquoted(s, b'<') {
            let display = s[..lt].trim_matches([' ', '\t']);
            let display = if display.is_empty() {
                None
            } else if display.starts_with('"') {
                let len = quoted_len(display).ok_or(syntax("display name"))?;
                if len != display.len() {
                    return Err(syntax("display name"));
                }
                Some(unquote(display))
            } else {
                // An unquoted display name is a run of tokens (RFC 4475 baddn: a comma here
                // is an error, not a list separator).
                if !display
                    .bytes()
                    .all(|c| is_token_char(c) || c == b' ' || c == b'\t')
                {
                    return Err(syntax("display name"));
                }
                Some(display.to_owned())
            };
            let after = &s[lt + 1..];
            let gt = after.find('>').ok_or(syntax("name-addr"))?;
            (display, &after[..gt], &after[gt + 1..])
        } else {
            // addr-spec form: the URI ends at the first ';' — any parameters belong to the
            // header (RFC 3261 §20.10; RFC 4475 cparam01), and the URI may carry neither
            // parameters nor headers (RFC 4475 regbadct).
            let end = s.find(';').unwrap_or(s.len());
            let uri = s[..end].trim_end_matches([' ', '\t']);
            if uri.contains('?') || uri.contains(',') {
                return Err(syntax("addr-spec"));
            }
            (None, uri, &s[end..])
        };
        let uri = Uri::parse(uri_str)?;
        let params = parse_params(rest, true)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.get(name)
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// One Via value (RFC 3261 §20.42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, … or any other token).
    pub transport: Box<str>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, SyntaxError> {
        // sent-protocol = "SIP" SLASH "2.0" SLASH transport, with LWS allowed around SLASH.
        let mut rest = s.trim_start_matches([' ', '\t']);
        let mut proto = Vec::with_capacity(3);
        for i in 0..3 {
            let len = rest.bytes().take_while(|&c| is_token_char(c)).count();
            if len == 0 {
                return Err(syntax("Via protocol"));
            }
            proto.push(&rest[..len]);
            rest = rest[len..].trim_start_matches([' ', '\t']);
            if i < 2 {
                rest = rest
                    .strip_prefix('/')
                    .ok_or(syntax("Via protocol"))?
                    .trim_start_matches([' ', '\t']);
            }
        }
        if !proto[0].eq_ignore_ascii_case("SIP") || proto[1] != "2.0" {
            return Err(syntax("Via protocol"));
        }
        let end = rest.find(';').unwrap_or(rest.len());
        let sent_by = rest[..end].trim_matches([' ', '\t']);
        // LWS is allowed around the ':' of sent-by.
        let sent_by: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect();
        let (host, port) = split_host_port(&sent_by).ok_or(syntax("Via sent-by"))?;
        let params = parse_params(&rest[end..], true)?;
        Ok(Via {
            transport: proto[2].to_ascii_uppercase().into(),
            host,
            port,
            params,
        })
    }

    /// Every Via value of a header value.
    pub fn parse_list(s: &str) -> Result<Vec<Via>, SyntaxError> {
        split_list(s).map(Via::parse).collect()
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// `received`, leniently accepting a bracketed IPv6 address (RFC 5118 §4.5).
    pub fn received(&self) -> Option<IpAddr> {
        let v = self.params.get("received").flatten()?;
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v);
        v.parse().ok()
    }

    /// `Some(None)` when `rport` is present without a value (a request for RFC 3581).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr").flatten()
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexical helpers
// ---------------------------------------------------------------------------------------------

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Characters of a URI parameter name or value (`paramchar`, %-escapes checked separately).
fn is_param_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'[' | b']'
                | b'/'
                | b':'
                | b'&'
                | b'+'
                | b'$'
                | b'-'
                | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'%'
        )
}

fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_lws(v: &[u8]) -> &[u8] {
    let start = v.iter().take_while(|c| is_lws(**c)).count();
    let end = v.len() - v[start..].iter().rev().take_while(|c| is_lws(**c)).count();
    &v[start..end]
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    let v = trim_lws(v);
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        // Leading zeros are legal (RFC 4475 wsinv "0009"), but more than ten digits is either
        // zeros or out of range; handle the zero-padded case.
        let digits = v.iter().skip_while(|&&c| c == b'0').count();
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) || digits > 10 {
            return None;
        }
        return parse_u32(&v[v.len() - digits.max(1)..]);
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<u64>()
        .ok()?
        .try_into()
        .ok()
}

fn parse_delta_seconds(v: &[u8]) -> Option<u32> {
    let v = trim_lws(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(parse_u32(v).unwrap_or(u32::MAX))
}

/// Check that every `%` is followed by two hex digits.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The length of the quoted string at the start of `s` (quotes included), honouring
/// backslash escapes; `None` if it is not terminated (RFC 4475 quotbal).
fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let inner = &s[1..s.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Index of the first `needle` outside a quoted string.
fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i += quoted_len(&s[i..])?,
            c if c == needle => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Split a header value at the commas that separate list elements, skipping commas inside
/// quoted strings and `<…>`. Empty elements are kept (so callers can reject them). Lazy: this
/// runs for every list header a request is asked about, so it allocates nothing.
fn split_list_raw(s: &str) -> SplitList<'_> {
    SplitList {
        s,
        pos: 0,
        done: false,
    }
}

struct SplitList<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_angle = false;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += quoted_len(&self.s[i..]).unwrap_or(b.len() - i);
                    continue;
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    self.pos = i + 1;
                    return Some(self.s[start..i].trim_matches([' ', '\t']));
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(self.s[start..].trim_matches([' ', '\t']))
    }
}

/// [`split_list_raw`] without empty elements.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    split_list_raw(s).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests;
