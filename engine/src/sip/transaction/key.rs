//! Transaction matching: which transaction a request or a response belongs to.
//!
//! Every key is computed once from the message and looked up in a `HashMap`, so matching costs
//! the same with one transaction alive or a million.
use crate::sip::msg::{HeaderName, Host, Method, Request, Response, Via};

/// The RFC 3261 branch prefix (§8.1.1.7): a branch that starts with it was built to be unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Whether `branch` identifies an RFC 3261 transaction on its own. A branch that is only the
/// cookie (RFC 4475 §3.2.1 `badbranch`) carries no uniqueness at all — two unrelated requests
/// from one sender would share it — so it gets the RFC 2543 fallback like a missing branch.
pub fn is_rfc3261_branch(branch: &str) -> bool {
    branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE)
}

/// The key of a server transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// RFC 3261 §17.2.3: the top Via's branch and sent-by, and the method — ACK maps to INVITE,
    /// CANCEL keeps its own method (it is a transaction of its own).
    Branch {
        branch: Box<str>,
        host: Host,
        port: Option<u16>,
        method: Method,
    },
    /// RFC 3261 §17.2.3, last paragraphs: a request from an RFC 2543 element (no cookie).
    Legacy(Box<LegacyKey>),
}

/// RFC 2543 matching: Request-URI, To tag, From tag, Call-ID, CSeq and the top Via.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LegacyKey {
    uri: Box<str>,
    to_tag: Option<Box<str>>,
    from_tag: Option<Box<str>>,
    call_id: Box<str>,
    seq: u32,
    method: Method,
    /// The top Via, printed from its parsed form (so spacing and case differences between a
    /// request and its retransmission do not matter, parameter order does).
    via: Box<str>,
}

impl ServerKey {
    /// The key of the transaction `request` belongs to, taking `method` as the method of the
    /// request that created the transaction (INVITE for an ACK, or for a CANCEL when looking for
    /// the transaction it cancels, RFC 3261 §9.2). `None` if the fields matching needs are
    /// missing or unreadable.
    pub fn of(request: &Request, via: &Via, method: Method) -> Option<ServerKey> {
        if let Some(branch) = via.branch().filter(|b| is_rfc3261_branch(b)) {
            return Some(ServerKey::Branch {
                branch: branch.into(),
                host: via.host.clone(),
                port: via.port,
                method,
            });
        }
        let h = &request.headers;
        let cseq = h.cseq().ok()?;
        Some(ServerKey::Legacy(Box::new(LegacyKey {
            uri: request.uri.to_string().into(),
            to_tag: h.to().ok()?.tag().map(Into::into),
            from_tag: h.from().ok()?.tag().map(Into::into),
            call_id: h.call_id().ok()?.into(),
            seq: cseq.seq,
            method,
            via: via.to_string().into(),
        })))
    }

    /// For an RFC 2543 INVITE transaction that sent a final response with To tag `to_tag`: the
    /// key its ACK has (RFC 3261 §17.2.3: "the To tag of the ACK matches the To tag of the
    /// response sent by the server transaction").
    pub fn legacy_ack(&self, to_tag: Option<&str>) -> Option<ServerKey> {
        match self {
            ServerKey::Branch { .. } => None,
            ServerKey::Legacy(k) => Some(ServerKey::Legacy(Box::new(LegacyKey {
                to_tag: to_tag.map(Into::into),
                ..(**k).clone()
            }))),
        }
    }
}

/// The dialog-level identity of an ACK for a 2xx: Call-ID, both tags and the CSeq number. An
/// ACK for a 2xx is a transaction of its own (new branch, RFC 3261 §13.2.2.4), so this is the
/// only way to tie it to the INVITE server transaction in Accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogAckKey {
    call_id: Box<str>,
    from_tag: Option<Box<str>>,
    to_tag: Option<Box<str>>,
    seq: u32,
}

impl DialogAckKey {
    /// From the INVITE's headers and the To tag of the 2xx sent for it.
    pub fn for_invite(invite: &crate::sip::msg::Headers, to_tag: Option<&str>) -> Option<Self> {
        Some(DialogAckKey {
            call_id: invite.call_id().ok()?.into(),
            from_tag: invite.from().ok()?.tag().map(Into::into),
            to_tag: to_tag.map(Into::into),
            seq: invite.cseq().ok()?.seq,
        })
    }

    pub fn with_to_tag(self, to_tag: Option<&str>) -> Self {
        DialogAckKey {
            to_tag: to_tag.map(Into::into),
            ..self
        }
    }

    pub fn of_ack(ack: &Request) -> Option<Self> {
        let h = &ack.headers;
        Some(DialogAckKey {
            call_id: h.call_id().ok()?.into(),
            from_tag: h.from().ok()?.tag().map(Into::into),
            to_tag: h.to().ok()?.tag().map(Into::into),
            seq: h.cseq().ok()?.seq,
        })
    }
}

/// The key of a client transaction, RFC 3261 §17.1.3: the top Via branch (which we generated,
/// so it is unique) and the CSeq method (a CANCEL shares its INVITE's branch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    branch: Box<str>,
    method: Method,
}

impl ClientKey {
    pub fn new(branch: &str, method: Method) -> ClientKey {
        ClientKey {
            branch: branch.into(),
            method,
        }
    }

    /// `None` for a response without a readable top Via branch or CSeq: it matches nothing.
    pub fn of_response(response: &Response) -> Option<ClientKey> {
        let via = response.headers.top_via().ok()?;
        let cseq = response.headers.cseq().ok()?;
        Some(ClientKey::new(via.branch()?, cseq.method))
    }
}

/// The To tag of a response we send, if any.
pub fn to_tag(response: &Response) -> Option<String> {
    response.headers.to().ok()?.tag().map(str::to_owned)
}

/// The raw first element of the top Via field (the ACK of §17.1.1.3 copies it verbatim).
pub fn raw_top_via(request: &Request) -> Option<&str> {
    request.headers.list(&HeaderName::Via).next()
}
