//! Outbound registration to carriers: the endpoint's side of [`crate::trunk::register`].
//!
//! Each registering trunk has a [`Registration`] machine. Its REGISTERs leave as ordinary client
//! transactions; their responses and timeouts are taken out of the transaction events before the
//! call code sees them ([`Endpoint::trunk_tx_event`]). Status changes become a log line and the
//! `trunk_registered{trunk}` gauge (1 registered, 0 not).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::Endpoint;
use crate::sip::msg::{Header, HeaderName, Request};
use crate::sip::transaction::{ClientTxId, TxEvent, TxKey};
use crate::sip::transport::{Target, Transport};
use crate::trunk::{RegisterSettings, Registration, RegistrationEvent, RegistrationStatus};

/// The registering trunks and their REGISTERs in flight.
#[derive(Debug, Default)]
pub(super) struct TrunkRegistrations {
    regs: Vec<(Registration, Target)>,
    by_tx: HashMap<ClientTxId, usize>,
}

impl TrunkRegistrations {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.regs.iter().filter_map(|(r, _)| r.poll_timeout()).min()
    }
}

impl Endpoint {
    /// Register the trunks in `settings` from now on. `local` is the UDP listener the REGISTERs
    /// leave from and our Contact names (its port is the real one, after binding).
    pub fn start_trunk_registrations(
        &mut self,
        now: Instant,
        settings: Vec<RegisterSettings>,
        local: SocketAddr,
    ) {
        let contact = if local.ip().is_unspecified() {
            SocketAddr::new(self.call_cfg.media_address, local.port())
        } else {
            local
        };
        for s in settings {
            let target = Target {
                transport: Transport::Udp,
                addr: s.target,
                conn: None,
                local,
            };
            let trunk = s.trunk.clone();
            let seed = (u64::from(self.tags.next_u32()) << 32) | u64::from(self.tags.next_u32());
            match Registration::new(s, contact, seed) {
                Ok(mut reg) => {
                    reg.start(now);
                    metrics::gauge!("trunk_registered", "trunk" => trunk).set(0.0);
                    self.trunk_regs.regs.push((reg, target));
                }
                Err(e) => {
                    tracing::warn!(%trunk, error = %e, "trunk registration not started: bad URI");
                }
            }
        }
    }

    /// Each registering trunk and where its registration stands, in configuration order.
    pub fn trunk_status(&self) -> Vec<(String, RegistrationStatus)> {
        self.trunk_regs
            .regs
            .iter()
            .map(|(r, _)| (r.settings().trunk.clone(), r.status().clone()))
            .collect()
    }

    /// Remove our bindings at the carriers (REGISTER with `Expires: 0`) before shutting down.
    /// The answers are not waited for: a carrier that misses it lets the binding expire.
    pub fn unregister_trunks(&mut self, now: Instant) {
        for i in 0..self.trunk_regs.regs.len() {
            let (reg, _) = &mut self.trunk_regs.regs[i];
            let trunk = reg.settings().trunk.clone();
            if let Some(req) = reg.unregister() {
                tracing::info!(%trunk, "un-registering from the trunk");
                self.send_register(now, i, req);
            }
            metrics::gauge!("trunk_registered", "trunk" => trunk).set(0.0);
        }
    }

    /// Registrations whose time has come.
    pub(super) fn trunk_timeouts(&mut self, now: Instant) {
        for i in 0..self.trunk_regs.regs.len() {
            if let Some(req) = self.trunk_regs.regs[i].0.handle_timeout(now) {
                self.send_register(now, i, req);
            }
        }
    }

    /// Takes the events of our REGISTER transactions; gives back every other event.
    pub(super) fn trunk_tx_event(&mut self, now: Instant, ev: TxEvent) -> Option<TxEvent> {
        let id = match &ev {
            TxEvent::Response { id, .. } | TxEvent::ClientTimeout { id } => *id,
            TxEvent::Terminated(TxKey::Client(id)) => *id,
            _ => return Some(ev),
        };
        let Some(&i) = self.trunk_regs.by_tx.get(&id) else {
            return Some(ev);
        };
        match ev {
            TxEvent::Response { response, .. } => {
                if let Some(req) = self.trunk_regs.regs[i].0.handle_response(now, &response) {
                    self.send_register(now, i, req);
                }
            }
            TxEvent::ClientTimeout { .. } => self.trunk_regs.regs[i].0.handle_no_response(now),
            _ => {
                self.trunk_regs.by_tx.remove(&id);
            }
        }
        self.trunk_reports(i);
        None
    }

    fn send_register(&mut self, now: Instant, i: usize, mut req: Request) {
        let target = self.trunk_regs.regs[i].1;
        let host = if target.local.ip().is_unspecified() {
            SocketAddr::new(self.call_cfg.media_address, target.local.port())
        } else {
            target.local
        };
        let via = format!(
            "SIP/2.0/{} {host};branch={};rport",
            target.transport,
            self.tx.new_branch()
        );
        req.headers.0.insert(0, Header::new(HeaderName::Via, via));
        if let Some(ua) = &self.user_agent {
            req.headers.push(HeaderName::UserAgent, ua.clone());
        }
        let tx = self.tx.send_request(now, req, target);
        self.trunk_regs.by_tx.insert(tx, i);
    }

    /// Logs and counts what the machine reports. Never the credentials.
    fn trunk_reports(&mut self, i: usize) {
        let reg = &mut self.trunk_regs.regs[i].0;
        let trunk = reg.settings().trunk.clone();
        while let Some(event) = reg.poll_event() {
            match event {
                RegistrationEvent::Registered { expires_s } => {
                    tracing::info!(%trunk, expires_s, "registered with the trunk");
                    metrics::gauge!("trunk_registered", "trunk" => trunk.clone()).set(1.0);
                }
                RegistrationEvent::Failed {
                    code,
                    reason,
                    retry_in,
                } => {
                    tracing::warn!(
                        %trunk,
                        code = code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
                        %reason,
                        retry_in_s = retry_in.as_secs(),
                        "registration with the trunk failed"
                    );
                    metrics::gauge!("trunk_registered", "trunk" => trunk.clone()).set(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do: the machine only ever compares instants it was given.
    #[allow(clippy::disallowed_methods)]
    fn start() -> Instant {
        Instant::now()
    }
    use crate::auth::ServerSecret;
    use crate::config::Password;
    use crate::endpoint::Received;
    use crate::sip::msg::{self, Framing, Message};
    use crate::trunk::Credentials;
    use bytes::Bytes;

    fn endpoint() -> Endpoint {
        let config = crate::rt::endpoint_config(&crate::config::Config::default());
        Endpoint::new(config, ServerSecret::from_bytes([3; 32]), 9)
    }

    fn settings() -> RegisterSettings {
        RegisterSettings {
            trunk: "carrier".into(),
            target: "127.0.0.1:5080".parse().unwrap(),
            registrar_uri: "sip:127.0.0.1:5080".into(),
            user: "sb-trunk".into(),
            domain: "127.0.0.1".into(),
            expires_s: 3600,
            creds: Credentials {
                username: "sb-trunk".into(),
                password: Password::new("s3cret"),
            },
        }
    }

    fn sent(ep: &mut Endpoint) -> Vec<msg::Request> {
        let mut out = Vec::new();
        while let Some(t) = ep.poll_transmit() {
            if let Ok(Message::Request(r)) = msg::parse(t.payload, Framing::Datagram) {
                out.push(r);
            }
        }
        out
    }

    fn answer(
        ep: &mut Endpoint,
        now: Instant,
        req: &msg::Request,
        code: u16,
        extra: &[(HeaderName, &str)],
    ) {
        let mut resp = msg::Response::from_headers(&req.headers, code);
        for (n, v) in extra {
            resp.headers.push(n.clone(), v.to_string());
        }
        let from = Received {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5080".parse().unwrap(),
            conn: None,
        };
        ep.handle_message(now, 1_000, from, Bytes::from(resp.encode().to_vec()));
    }

    #[test]
    fn the_endpoint_registers_answers_the_challenge_and_reports() {
        let t0 = start();
        let mut ep = endpoint();
        ep.start_trunk_registrations(t0, vec![settings()], "127.0.0.1:5060".parse().unwrap());
        assert_eq!(ep.poll_timeout(), Some(t0));
        ep.handle_timeout(t0, 1_000);
        let reqs = sent(&mut ep);
        assert_eq!(reqs.len(), 1);
        let first = &reqs[0];
        assert_eq!(first.method, msg::Method::Register);
        assert!(first.headers.top_via().is_ok());
        answer(
            &mut ep,
            t0,
            first,
            401,
            &[(
                HeaderName::WwwAuthenticate,
                r#"Digest realm="carrier", nonce="abc", qop="auth""#,
            )],
        );
        let reqs = sent(&mut ep);
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].headers.get(&HeaderName::Authorization).is_some());
        answer(&mut ep, t0, &reqs[0], 200, &[(HeaderName::Expires, "120")]);
        assert_eq!(
            ep.trunk_status(),
            vec![(
                "carrier".to_owned(),
                RegistrationStatus::Registered { expires_s: 120 }
            )]
        );
        // Shutdown: one un-REGISTER.
        ep.unregister_trunks(t0);
        let reqs = sent(&mut ep);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].headers.expires().unwrap(), Some(0));
    }
}
