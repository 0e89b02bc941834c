//! Transaction timers: their RFC names and values, the two slots a transaction arms them in,
//! and the layer-wide schedule.
//!
//! One [`BinaryHeap`] holds every armed timer of every transaction, with lazy invalidation: a
//! transaction remembers, per slot, which timer it armed for which instant, and a heap entry
//! that no longer agrees with its transaction (stopped, re-armed, or the transaction is gone)
//! is stale and is dropped when it reaches the top. The layer drops stale tops after every
//! input, so `Schedule::peek` — and so `poll_timeout` — is O(1) and arming is O(log n) with
//! hundreds of thousands of transactions alive (20,000 REGISTERs/s × Timer J = 32 s on UDP is
//! 640,000). A per-kind FIFO would be O(1) for the fixed-duration timers, but the
//! retransmission timers A, E and G back off, so their deadlines are not monotonic.
use super::TxKey;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The timers of RFC 3261 §17 (Table 4), RFC 6026's L and M, and the 200 ms timer after which
/// an INVITE server transaction answers 100 Trying on its own (RFC 3261 §17.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmission, T1 doubling (unreliable transports only).
    A,
    /// INVITE client: transaction timeout in Calling, 64·T1.
    B,
    /// INVITE client: wait time for response retransmissions in Completed (≥ 32 s; 0 reliable).
    D,
    /// Non-INVITE client: request retransmission, T1 doubling up to T2 (unreliable only).
    E,
    /// Non-INVITE client: transaction timeout, 64·T1.
    F,
    /// INVITE server: final response retransmission, T1 doubling up to T2 (unreliable only).
    G,
    /// INVITE server: wait time for the ACK in Completed, 64·T1.
    H,
    /// INVITE server: wait time for ACK retransmissions in Confirmed, T4 (0 reliable).
    I,
    /// Non-INVITE server: wait time for request retransmissions in Completed, 64·T1 (0 reliable).
    J,
    /// Non-INVITE client: wait time for response retransmissions in Completed, T4 (0 reliable).
    K,
    /// INVITE server, RFC 6026 §7.1: wait time in Accepted for INVITE retransmissions and ACKs, 64·T1.
    L,
    /// INVITE client, RFC 6026 §7.2: wait time in Accepted for 2xx retransmissions, 64·T1.
    M,
    /// INVITE server: send 100 Trying if the TU has not sent a provisional response within
    /// 200 ms (RFC 3261 §17.2.1).
    Trying,
}

/// How long the TU may stay silent before an INVITE server transaction sends 100 Trying itself.
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The smallest retransmission interval: a zero T1 must not make the layer spin.
const MIN_RETRANSMIT: Duration = Duration::from_millis(1);

impl Timer {
    /// At most two timers run at once in any state of any machine: one retransmission timer
    /// (A, E, G — or the 100 Trying timer, which only runs before any of them) and one timer
    /// that ends the state (B, D, F, H, I, J, K, L, M).
    fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G | Timer::Trying => 0,
            _ => 1,
        }
    }
}

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, Table 4). Every other timer derives from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate: the first retransmission interval. Default 500 ms.
    pub t1: Duration,
    /// The cap on non-INVITE and response retransmission intervals. Default 4 s.
    pub t2: Duration,
    /// How long a message may live in the network. Default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The first retransmission interval (Timers A, E, G): T1.
    pub(super) fn first_retransmit(&self) -> Duration {
        self.t1.max(MIN_RETRANSMIT)
    }

    /// The next interval of a retransmission timer that backs off: doubled, and capped at T2
    /// where the RFC caps it (E, G and the 2xx retransmissions of §13.3.1.4; not A).
    pub(super) fn back_off(&self, interval: Duration, capped: bool) -> Duration {
        let next = interval.saturating_mul(2).max(MIN_RETRANSMIT);
        if capped {
            next.min(self.t2.max(MIN_RETRANSMIT))
        } else {
            next
        }
    }

    /// The value of a timer that ends a state. Zero means "move on at once": the
    /// wait-for-retransmissions timers D, I, J and K are zero on reliable transports.
    pub fn duration(&self, timer: Timer, reliable: bool) -> Duration {
        match timer {
            Timer::A | Timer::E | Timer::G => self.first_retransmit(),
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M => self.timeout(),
            Timer::D if reliable => Duration::ZERO,
            // "at least 32 seconds" for unreliable transports.
            Timer::D => Duration::from_secs(32).max(self.timeout()),
            Timer::I | Timer::K if reliable => Duration::ZERO,
            Timer::I | Timer::K => self.t4,
            Timer::J if reliable => Duration::ZERO,
            Timer::J => self.timeout(),
            Timer::Trying => TRYING_DELAY,
        }
    }
}

/// The timers one transaction has armed: one per slot (see [`Timer::slot`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TimerTable([Option<(Timer, Instant)>; 2]);

impl TimerTable {
    /// Whether `timer` is armed for exactly `at` (a heap entry that says so is live).
    pub fn is_armed(&self, timer: Timer, at: Instant) -> bool {
        self.0[timer.slot()] == Some((timer, at))
    }

    /// Disarm `timer` if it is armed for `at`; true if it was (the entry fires).
    pub fn take(&mut self, timer: Timer, at: Instant) -> bool {
        let live = self.is_armed(timer, at);
        if live {
            self.0[timer.slot()] = None;
        }
        live
    }

    pub fn stop(&mut self, timer: Timer) {
        let slot = &mut self.0[timer.slot()];
        if slot.is_some_and(|(t, _)| t == timer) {
            *slot = None;
        }
    }

    pub fn stop_all(&mut self) {
        self.0 = [None, None];
    }

    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.slot()] = Some((timer, at));
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub at: Instant,
    /// Arming order: ties on `at` fire in the order they were armed.
    seq: u64,
    pub key: TxKey,
    pub timer: Timer,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Every armed timer of the layer, earliest first; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Schedule {
    /// Arm `timer` of transaction `key` in `table` for `at`, replacing whatever ran in its slot.
    pub fn arm(&mut self, table: &mut TimerTable, key: TxKey, timer: Timer, at: Instant) {
        table.set(timer, at);
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            key,
            timer,
        }));
    }

    pub fn peek(&self) -> Option<&Entry> {
        self.heap.peek().map(|Reverse(e)| e)
    }

    pub fn pop(&mut self) -> Option<Entry> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// The earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        if self.peek()?.at <= now {
            self.pop()
        } else {
            None
        }
    }

    /// Heap entries, live and stale (for tests and diagnostics).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}
