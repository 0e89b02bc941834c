//! Dialogs (RFC 3261 §12–§15), both sides, sans-IO.
//!
//! A [`Dialog`] is the peer-to-peer state that outlives transactions: its [`DialogId`], the
//! local and remote URIs, the remote target, the route set and the two CSeq counters. It never
//! sends anything: it builds in-dialog requests ([`Dialog::request`], [`Dialog::ack_for`]) for
//! the TU to hand to `TransactionLayer::send_request`, and it checks incoming in-dialog
//! requests ([`Dialog::receive_request`]) and tells the TU which error status to answer.
//!
//! [`Uas2xx`] is the UAS core's 2xx retransmission machine (RFC 3261 §13.3.1.4), with the same
//! drive-loop contract as the transaction layer: `handle_timeout(now)` when `poll_timeout()`
//! is reached, then drain `poll_transmit()` and `poll_event()`.
//!
//! [`Dialogs`] indexes dialogs by [`DialogId`] and finds the one an incoming request or
//! response belongs to.
use crate::sip::msg::{
    CSeq, FieldError, HeaderName, Method, NameAddr, Request, Response, Scheme, Uri,
};
use crate::sip::transaction::TimerConfig;
use crate::sip::transport::Transmit;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// RFC 3261 §12: a dialog is named by its Call-ID and the two tags, seen from our side.
///
/// A peer that sends no tag (RFC 2543) gets an empty tag (§12.1.1: "the remote tag is null").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: Box<str>,
    pub local_tag: Box<str>,
    pub remote_tag: Box<str>,
}

impl DialogId {
    /// The dialog an incoming request claims (RFC 3261 §12.2.2): To tag local, From tag
    /// remote. `None` without a To tag: the request is outside any dialog.
    pub fn of_request(req: &Request) -> Option<DialogId> {
        let to = req.headers.to().ok()?;
        let from = req.headers.from().ok()?;
        Some(DialogId {
            call_id: req.headers.call_id().ok()?.into(),
            local_tag: to.tag()?.into(),
            remote_tag: from.tag().unwrap_or_default().into(),
        })
    }

    /// The dialog a response to one of our requests belongs to (RFC 3261 §12.1.2): From tag
    /// local, To tag remote. `None` without a To tag.
    pub fn of_response(resp: &Response) -> Option<DialogId> {
        let to = resp.headers.to().ok()?;
        let from = resp.headers.from().ok()?;
        Some(DialogId {
            call_id: resp.headers.call_id().ok()?.into(),
            local_tag: from.tag().unwrap_or_default().into(),
            remote_tag: to.tag()?.into(),
        })
    }
}

/// RFC 3261 §12: early on a provisional response with a To tag, confirmed on a 2xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Which side of the dialog-creating INVITE we were.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the INVITE, so we own the Call-ID (RFC 3261 §14.1).
    Uac,
    Uas,
}

/// Why a dialog could not be created or an in-dialog request was refused. For a refused
/// request, [`status`](DialogError::status) is the response code to answer it with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A dialog-creating message without a usable Contact (RFC 3261 §12.1.1, §12.1.2).
    #[error("no usable Contact")]
    NoContact,
    /// A response without a To tag, or one that does not create dialogs (only 101–299 do).
    #[error("response {code} creates no dialog")]
    NotDialogCreating { code: u16 },
    /// RFC 3261 §12.2.2: a CSeq lower than the last one seen from the peer.
    #[error("CSeq {seq} is lower than the last seen ({last})")]
    OutOfOrder { seq: u32, last: u32 },
    /// RFC 3261 §14.2: a re-INVITE while our own re-INVITE is in progress (glare).
    #[error("re-INVITE while our INVITE {ours} is in progress")]
    Glare { ours: u32 },
    /// RFC 3261 §14.2: a re-INVITE before our final response to the previous one.
    #[error("re-INVITE before the final response to INVITE {pending}")]
    InviteInProgress { pending: u32 },
    #[error("dialog terminated")]
    Terminated,
}

impl DialogError {
    /// The response code for a refused in-dialog request. For
    /// [`InviteInProgress`](DialogError::InviteInProgress) the TU must add a `Retry-After` of
    /// a random 0–10 s (RFC 3261 §14.2).
    pub fn status(&self) -> u16 {
        match self {
            DialogError::Field(_) | DialogError::NoContact => 400,
            DialogError::NotDialogCreating { .. } => 400,
            DialogError::OutOfOrder { .. } | DialogError::InviteInProgress { .. } => 500,
            DialogError::Glare { .. } => 491,
            DialogError::Terminated => 481,
        }
    }
}

/// One dialog (RFC 3261 §12.1). Fields are private: the state changes only through the
/// methods that implement the RFC rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    role: Role,
    /// Our From (requests we send) with our tag.
    local: NameAddr,
    /// Our To (requests we send) with the peer's tag.
    remote: NameAddr,
    local_contact: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    /// The CSeq number the next request we send will carry (ACK and CANCEL excepted).
    local_cseq: u32,
    /// The last CSeq number seen from the peer (RFC 3261 §12.2.2).
    remote_cseq: Option<u32>,
    secure: bool,
    /// Our INVITE whose client transaction has no final response yet.
    invite_out: Option<u32>,
    /// The peer's INVITE we have not answered finally yet.
    invite_in: Option<u32>,
    /// The CSeq of the last INVITE we sent, for its ACK.
    last_invite: Option<u32>,
}

fn first_contact(headers: &crate::sip::msg::Headers) -> Result<Option<NameAddr>, DialogError> {
    match headers.contacts()? {
        Some(list) => Ok(list.into_iter().next()),
        None => Err(DialogError::NoContact),
    }
}

fn routes(headers: &crate::sip::msg::Headers) -> Result<Vec<NameAddr>, DialogError> {
    headers
        .list(&HeaderName::RecordRoute)
        .map(|r| {
            NameAddr::parse(r).map_err(|_| FieldError::Invalid(HeaderName::RecordRoute).into())
        })
        .collect()
}

fn is_target_refresh(method: &Method) -> bool {
    // RFC 3261 §12.2 (INVITE), RFC 3311 (UPDATE), RFC 6665 (SUBSCRIBE, NOTIFY), RFC 3515 (REFER).
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

impl Dialog {
    /// RFC 3261 §12.1.1: the UAS side, created when we send a 1xx with a To tag or a 2xx to
    /// `invite`. The dialog starts Early; report the responses we send with
    /// [`response_sent`](Dialog::response_sent) (a 2xx confirms it).
    ///
    /// Route set: the INVITE's Record-Route as is. Remote target: its Contact. Our first CSeq
    /// is 1 (the UAS has no local sequence number yet, §12.1.1).
    pub fn uas_from_invite(
        invite: &Request,
        local_tag: &str,
        local_contact: NameAddr,
    ) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let call_id = h.call_id()?;
        let remote = h.from()?;
        let mut local = h.to()?;
        local.params.set("tag", Some(local_tag.to_owned()));
        let cseq = h.cseq()?;
        let target = first_contact(h)?.ok_or(DialogError::NoContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.into(),
                local_tag: local_tag.into(),
                remote_tag: remote.tag().unwrap_or_default().into(),
            },
            state: DialogState::Early,
            role: Role::Uas,
            local,
            remote,
            local_contact,
            remote_target: target.uri,
            route_set: routes(h)?,
            local_cseq: 1,
            remote_cseq: Some(cseq.seq),
            secure: invite.uri.scheme == Scheme::Sips,
            invite_out: None,
            invite_in: Some(cseq.seq),
            last_invite: None,
        })
    }

    /// RFC 3261 §12.1.2: the UAC side, created on a 101–199 with a To tag (Early) or a 2xx
    /// (Confirmed) to `invite`. With forking, each distinct To tag is a dialog of its own: call
    /// this for every response whose [`DialogId::of_response`] is not yet known, and
    /// [`response_received`](Dialog::response_received) for the others.
    ///
    /// Route set: the response's Record-Route reversed. Remote target: its Contact (a
    /// provisional response without one keeps the INVITE's Request-URI until a later one).
    pub fn uac_from_response(invite: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let not_creating = DialogError::NotDialogCreating { code: resp.code };
        if !(101..300).contains(&resp.code) {
            return Err(not_creating);
        }
        let h = &resp.headers;
        let remote = h.to()?;
        let remote_tag: Box<str> = remote.tag().ok_or(not_creating)?.into();
        let local = invite.headers.from()?;
        let cseq = invite.headers.cseq()?;
        let target = match first_contact(h)? {
            Some(c) => c.uri,
            None if resp.code < 200 => invite.uri.clone(),
            None => return Err(DialogError::NoContact),
        };
        let local_contact = first_contact(&invite.headers)?.ok_or(DialogError::NoContact)?;
        let mut route_set = routes(h)?;
        route_set.reverse();
        let confirmed = resp.code >= 200;
        Ok(Dialog {
            id: DialogId {
                call_id: invite.headers.call_id()?.into(),
                local_tag: local.tag().unwrap_or_default().into(),
                remote_tag,
            },
            state: if confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            role: Role::Uac,
            local,
            remote,
            local_contact,
            remote_target: target,
            route_set,
            local_cseq: cseq.seq.wrapping_add(1),
            remote_cseq: None,
            secure: invite.uri.scheme == Scheme::Sips,
            invite_out: (!confirmed).then_some(cseq.seq),
            invite_in: None,
            last_invite: Some(cseq.seq),
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn local_uri(&self) -> &Uri {
        &self.local.uri
    }

    pub fn remote_uri(&self) -> &Uri {
        &self.remote.uri
    }

    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// The CSeq number the next request will carry.
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// True while an INVITE in either direction has no final response (RFC 3261 §14).
    pub fn invite_pending(&self) -> bool {
        self.invite_out.is_some() || self.invite_in.is_some()
    }

    /// End the dialog locally (e.g. after sending BYE, or on `AckTimeout`).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// RFC 3261 §12.2.1.1: a request within the dialog. The CSeq is the next local one (an
    /// ACK reuses the last INVITE's, see [`ack_for`](Dialog::ack_for)); target-refresh methods
    /// carry our Contact. No Via: `TransactionLayer::send_request` adds it with its branch.
    ///
    /// Not for CANCEL: that copies its INVITE's Request-URI, Via and CSeq number (RFC 3261
    /// §9.1). An ACK from a dialog that never sent an INVITE carries `local_cseq − 1`.
    ///
    /// Routing: loose (`;lr` on the first route) → Request-URI = remote target, Route = route
    /// set; strict → Request-URI = first route, Route = the rest plus the remote target.
    pub fn request(&mut self, method: Method) -> Request {
        let seq = match method {
            Method::Ack => self.last_invite.unwrap_or(self.local_cseq.wrapping_sub(1)),
            _ => {
                let seq = self.local_cseq;
                self.local_cseq = self.local_cseq.wrapping_add(1);
                seq
            }
        };
        if method == Method::Invite {
            self.invite_out = Some(seq);
            self.last_invite = Some(seq);
        }
        self.build(method, seq)
    }

    /// RFC 3261 §13.2.2.4: the ACK for a 2xx to our INVITE numbered `invite_cseq`.
    pub fn ack_for(&self, invite_cseq: u32) -> Request {
        self.build(Method::Ack, invite_cseq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let (uri, route): (Uri, Vec<String>) = match self.route_set.split_first() {
            Some((first, rest)) if first.uri.params.get("lr").is_none() => {
                // Strict routing (RFC 3261 §12.2.1.1): the first route is the Request-URI
                // (without the parameters not allowed there, §19.1.1), and the remote target
                // goes last in Route.
                let mut uri = first.uri.clone();
                uri.headers = None;
                uri.params
                    .0
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("method"));
                let mut route: Vec<String> = rest.iter().map(|r| r.to_string()).collect();
                route.push(format!("<{}>", self.remote_target));
                (uri, route)
            }
            _ => {
                let route = self.route_set.iter().map(|r| r.to_string()).collect();
                (self.remote_target.clone(), route)
            }
        };
        let mut req = Request::new(method.clone(), uri);
        let h = &mut req.headers;
        for r in route {
            h.push(HeaderName::Route, r);
        }
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.local.to_string());
        h.push(HeaderName::To, self.remote.to_string());
        h.push(HeaderName::CallId, self.id.call_id.to_string());
        h.push(
            HeaderName::CSeq,
            CSeq {
                seq,
                method: method.clone(),
            }
            .to_string(),
        );
        if is_target_refresh(&method) {
            h.push(HeaderName::Contact, self.local_contact.to_string());
        }
        req
    }

    /// RFC 3261 §12.2.2: check and absorb an in-dialog request from the peer. On `Err`, answer
    /// the request with [`DialogError::status`]. ACK and CANCEL are not ordered (they carry
    /// their INVITE's number).
    pub fn receive_request(&mut self, req: &Request) -> Result<(), DialogError> {
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let seq = req.headers.cseq()?.seq;
        if let Some(last) = self.remote_cseq {
            if seq < last {
                return Err(DialogError::OutOfOrder { seq, last });
            }
        }
        // Read the Contact before committing anything: a malformed one refuses the request.
        let contact = if is_target_refresh(&req.method) {
            req.headers.contacts()?.and_then(|c| c.into_iter().next())
        } else {
            None
        };
        self.remote_cseq = Some(seq);
        if req.method == Method::Invite {
            if let Some(ours) = self.invite_out {
                return Err(DialogError::Glare { ours });
            }
            if let Some(pending) = self.invite_in {
                return Err(DialogError::InviteInProgress { pending });
            }
            self.invite_in = Some(seq);
        }
        if let Some(c) = contact {
            self.remote_target = c.uri;
        }
        if req.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// A response to `req`, a request the peer sent on this dialog (or its dialog-creating
    /// INVITE): RFC 3261 §8.2.6.2 copies plus our To tag. For 101–299 to an INVITE (or another
    /// target refresh) it also carries our Contact, and for the INVITE that created the dialog
    /// the Record-Route copied as is (§12.1.1), which the UAS must echo.
    pub fn response_to(&self, req: &Request, code: u16) -> Response {
        let mut resp = Response::for_request(req, code);
        resp.ensure_to_tag(&self.id.local_tag);
        if (101..300).contains(&code) && is_target_refresh(&req.method) {
            if req.headers.to().is_ok_and(|to| to.tag().is_none()) {
                for rr in req.headers.get_all(&HeaderName::RecordRoute) {
                    resp.headers.push(HeaderName::RecordRoute, rr.clone());
                }
            }
            resp.headers
                .push(HeaderName::Contact, self.local_contact.to_string());
        }
        resp
    }

    /// Report a response we sent on this dialog (UAS side): a final response to the peer's
    /// INVITE ends it as pending; a 2xx confirms an early dialog, a 300–699 ends one.
    pub fn response_sent(&mut self, resp: &Response) {
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Invite || resp.code < 200 {
            return;
        }
        if self.invite_in == Some(cseq.seq) {
            self.invite_in = None;
        }
        if self.state == DialogState::Early {
            self.state = if resp.code < 300 {
                DialogState::Confirmed
            } else {
                DialogState::Terminated
            };
        }
    }

    /// RFC 3261 §12.2.1.2, §13.2.2.4: a response to a request we sent on this dialog.
    /// A 2xx to INVITE confirms an early dialog and recomputes its route set; a 2xx to a
    /// target refresh updates the remote target; 481 and 408 end the dialog; a final
    /// non-2xx to the INVITE ends an early dialog.
    pub fn response_received(&mut self, resp: &Response) {
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        if matches!(resp.code, 408 | 481) {
            self.state = DialogState::Terminated;
            return;
        }
        if cseq.method == Method::Invite && resp.code >= 200 && self.invite_out == Some(cseq.seq) {
            self.invite_out = None;
        }
        if (200..300).contains(&resp.code) {
            if self.state == DialogState::Early && cseq.method == Method::Invite {
                self.state = DialogState::Confirmed;
                if let Ok(mut r) = routes(&resp.headers) {
                    r.reverse();
                    self.route_set = r;
                }
            }
            if is_target_refresh(&cseq.method) {
                if let Ok(Some(c)) = first_contact(&resp.headers) {
                    self.remote_target = c.uri;
                }
            }
        } else if resp.code >= 300
            && cseq.method == Method::Invite
            && self.state == DialogState::Early
        {
            self.state = DialogState::Terminated;
        }
    }

    /// RFC 3261 §14.1: how long to wait before retrying a re-INVITE that got 491. We own the
    /// Call-ID if we were the UAC of the dialog.
    pub fn glare_backoff(&self, random: u32) -> Duration {
        glare_backoff(self.role == Role::Uac, random)
    }
}

/// RFC 3261 §14.1: the wait after a 491 — for the owner of the Call-ID a random 2.1–4 s, for
/// the other side 0–2 s, both in units of 10 ms. `random` is any uniformly random value.
pub fn glare_backoff(call_id_owner: bool, random: u32) -> Duration {
    let tens_of_ms = if call_id_owner {
        210 + random % 191
    } else {
        random % 201
    };
    Duration::from_millis(u64::from(tens_of_ms) * 10)
}

/// What became of a [`Uas2xx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uas2xxEvent {
    /// RFC 3261 §13.3.1.4: no ACK within 64·T1. The dialog is confirmed but the session
    /// should end: the TU sends BYE.
    AckTimeout,
}

/// RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx to an INVITE at T1, 2·T1, … capped at
/// T2, until the ACK arrives, and gives up 64·T1 after the first send.
///
/// The core retransmits on every transport, reliable ones included: the RFC puts no condition
/// on it, because a proxy on the path may forward over UDP.
///
/// Drive-loop: [`handle_timeout`](Uas2xx::handle_timeout) at [`poll_timeout`](Uas2xx::poll_timeout),
/// then drain [`poll_transmit`](Uas2xx::poll_transmit) and [`poll_event`](Uas2xx::poll_event).
#[derive(Clone, Debug)]
pub struct Uas2xx {
    transmit: Transmit,
    t2: Duration,
    interval: Duration,
    next: Option<Instant>,
    deadline: Instant,
    pending: VecDeque<Transmit>,
    events: VecDeque<Uas2xxEvent>,
}

impl Uas2xx {
    /// The 2xx `transmit` was sent (once, by the TU) at `now`.
    pub fn new(now: Instant, transmit: Transmit, timers: &TimerConfig) -> Uas2xx {
        // A zero T1 must not make the machine spin.
        let t1 = timers.t1.max(Duration::from_millis(1));
        Uas2xx {
            transmit,
            t2: timers.t2.max(t1),
            interval: t1,
            next: Some(now + t1),
            deadline: now + timers.timeout(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The ACK for this 2xx arrived: stop.
    pub fn ack_received(&mut self) {
        self.next = None;
        self.pending.clear();
    }

    /// True once the ACK arrived or the machine gave up.
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }

    /// Fire what is due at `now` (early or late calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(mut next) = self.next else {
            return;
        };
        while next <= now {
            if next >= self.deadline {
                self.next = None;
                self.events.push_back(Uas2xxEvent::AckTimeout);
                return;
            }
            self.pending.push_back(self.transmit.clone());
            self.interval = (self.interval * 2).min(self.t2);
            next = (next + self.interval).min(self.deadline);
        }
        self.next = Some(next);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.pending.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Uas2xxEvent> {
        self.events.pop_front()
    }
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The dialogs of one owner (a call actor, a B2BUA leg set), keyed by [`DialogId`].
#[derive(Clone, Debug, Default)]
pub struct Dialogs {
    map: Map<DialogId, Dialog>,
}

impl Dialogs {
    pub fn new() -> Dialogs {
        Dialogs::default()
    }

    /// Add a dialog; returns the one it replaces, if its id was already known.
    pub fn insert(&mut self, dialog: Dialog) -> Option<Dialog> {
        self.map.insert(dialog.id.clone(), dialog)
    }

    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.map.get_mut(id)
    }

    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.map.remove(id)
    }

    /// The dialog an incoming request belongs to (Call-ID, To tag local, From tag remote).
    pub fn find(&mut self, req: &Request) -> Option<&mut Dialog> {
        let id = DialogId::of_request(req)?;
        self.map.get_mut(&id)
    }

    /// The dialog a response belongs to (Call-ID, From tag local, To tag remote).
    pub fn find_response(&mut self, resp: &Response) -> Option<&mut Dialog> {
        let id = DialogId::of_response(resp)?;
        self.map.get_mut(&id)
    }

    /// Drop every terminated dialog.
    pub fn remove_terminated(&mut self) {
        self.map.retain(|_, d| d.state != DialogState::Terminated);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dialog> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests;
