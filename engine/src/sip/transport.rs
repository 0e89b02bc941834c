//! Transport-level vocabulary shared by the sans-IO core and the socket shell: which
//! transport a message travels on, where it goes, and the "transmit" output.
use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// RFC 3261 §17: on a reliable transport the transaction layer does not retransmit, and
    /// the "wait for retransmissions" timers (D, I, J, K) are zero.
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream connection, numbered by the shell that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a message is sent: a transport, a remote address, and for stream transports the
/// connection to prefer (RFC 3261 §18.2.2: a response goes back on the connection its request
/// came on while that is open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
    /// The local listener address the message should leave from.
    pub local: SocketAddr,
}

/// An encoded message to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub target: Target,
    pub payload: Bytes,
}
