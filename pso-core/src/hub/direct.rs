//! Direct channels between pairs of systems, their promotion and demotion,
//! and mesh scopes.
//!
//! A pair `{A, B}` with a direct channel has two bounded single-producer
//! single-consumer rings (`rtrb`): `A -> B` and `B -> A`. Each side takes its
//! [`DirectEnd`] once (it holds its outgoing producer and incoming consumer),
//! so sends and receives never touch the hub, its locks or its router.
//! `rtrb` was chosen over `crossbeam-channel` and `crossbeam-queue` by
//! measurement (see the hub's design note).
//!
//! # States
//! A pair is open until `closed` is set (never cleared): by
//! [`DirectEnd::close`], dropping an end, [`Hub::demote`],
//! [`Hub::close_direct`], [`Hub::close_system`] (deactivation) or the end of
//! its mesh. After that sends fail with the value handed back (the caller can
//! publish it through the hub instead: routing reverts), and receives drain
//! what was sent before, then fail with `Closed`. The hub's registry drops a
//! closed pair lazily, recording the mode change with the close reason.
//!
//! # Blocking and memory ordering
//! Waiting uses an event count per direction, on one flag per waiting side
//! (`rx_parked`, `tx_parked`), with read-modify-writes on that same flag by
//! both sides (so the argument holds in the language's memory model, not
//! only on x86):
//! * the waiter locks the direction's mutex, `swap(1, AcqRel)`s its flag,
//!   re-checks the ring (and `closed`), and only then waits on the condition
//!   variable (which releases the mutex); it stores 0 when it wakes;
//! * the other side, after its push/pop, does `fetch_add(0, AcqRel)` on the
//!   flag and, only if it reads 1, takes the mutex and notifies.
//!
//! The two RMWs are ordered in the flag's modification order. If the
//! notifier's comes first, the waiter's swap reads from it, so the push/pop
//! before it happens-before the waiter's re-check, which sees it. If the
//! waiter's comes first, the notifier reads 1 and notifies; holding the
//! mutex to notify makes the notification wait until the waiter is in its
//! wait. So no wake-up is lost. On x86 the notifier's RMW is one `lock xadd`
//! on a line the other side only writes when it parks.

#![forbid(unsafe_code)]

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use rtrb::{PopError, PushError, RingBuffer};
use thiserror::Error;

use super::HubError;
use super::status::EdgeStats;
use crate::error::{ErrorKind, PsoError};
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Condvar, Mutex, Ordering};
use crate::value::Value;

/// Probes (with a pause, and a yield every 32) before a direct-channel wait
/// blocks. Measured: shorter exponential back-off parks more often, and each
/// park costs the other side a futex wake per message.
const SPIN: u32 = 256;

/// Why a direct send did not happen; the value is handed back.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DirectSendError {
    /// The ring is full (try_send).
    #[error("direct channel is full")]
    Full(Value),
    /// The ring stayed full until the timeout.
    #[error("direct channel stayed full until the timeout")]
    Timeout(Value),
    /// The channel is closed; publish through the hub instead.
    #[error("direct channel is closed")]
    Closed(Value),
}

impl DirectSendError {
    /// The value that was not sent.
    pub fn into_value(self) -> Value {
        match self {
            DirectSendError::Full(v) | DirectSendError::Timeout(v) | DirectSendError::Closed(v) => {
                v
            }
        }
    }
}

impl PsoError for DirectSendError {
    fn kind(&self) -> ErrorKind {
        match self {
            DirectSendError::Full(_) => ErrorKind::Overflow,
            DirectSendError::Timeout(_) => ErrorKind::Timeout,
            DirectSendError::Closed(_) => ErrorKind::Closed,
        }
    }
}

/// One direction of a pair.
#[derive(Debug)]
struct Dir {
    /// The consumer is (about to be) blocked waiting for a message.
    rx_parked: CachePadded<AtomicU32>,
    /// The producer is (about to be) blocked waiting for room.
    tx_parked: CachePadded<AtomicU32>,
    /// Sent so far (written by the producer only).
    sent: CachePadded<AtomicU64>,
    /// Received so far (written by the consumer only).
    received: CachePadded<AtomicU64>,
    lock: Mutex<()>,
    readable: Condvar,
    writable: Condvar,
    edge: Arc<EdgeStats>,
}

impl Dir {
    fn new(edge: Arc<EdgeStats>) -> Self {
        Dir {
            rx_parked: CachePadded::new(AtomicU32::new(0)),
            tx_parked: CachePadded::new(AtomicU32::new(0)),
            sent: CachePadded::new(AtomicU64::new(0)),
            received: CachePadded::new(AtomicU64::new(0)),
            lock: Mutex::new(()),
            readable: Condvar::new(),
            writable: Condvar::new(),
            edge,
        }
    }

    fn queued(&self) -> usize {
        let s = self.sent.load(Ordering::Relaxed);
        let r = self.received.load(Ordering::Relaxed);
        s.saturating_sub(r) as usize
    }
}

/// State shared by both ends of a pair and the hub's registry.
#[derive(Debug)]
pub(crate) struct PairShared {
    closed: AtomicBool,
    close_reason: Mutex<Option<String>>,
    /// `[a -> b, b -> a]`.
    dirs: [Dir; 2],
}

/// A new open channel between `names[0]` and `names[1]`: its shared state
/// and both ends. `edges` are the rate counters of `a -> b` and `b -> a`.
pub(crate) fn channel(
    names: &[Arc<str>; 2],
    edges: [Arc<EdgeStats>; 2],
    capacity: usize,
) -> (Arc<PairShared>, DirectEnd, DirectEnd) {
    let (p_ab, c_ab) = RingBuffer::<Value>::new(capacity.max(1));
    let (p_ba, c_ba) = RingBuffer::<Value>::new(capacity.max(1));
    let [e_ab, e_ba] = edges;
    let shared = Arc::new(PairShared {
        closed: AtomicBool::new(false),
        close_reason: Mutex::new(None),
        dirs: [Dir::new(e_ab), Dir::new(e_ba)],
    });
    let end_a = DirectEnd {
        me: names[0].clone(),
        peer: names[1].clone(),
        tx: p_ab,
        rx: c_ba,
        shared: shared.clone(),
        out: 0,
    };
    let end_b = DirectEnd {
        me: names[1].clone(),
        peer: names[0].clone(),
        tx: p_ba,
        rx: c_ab,
        shared: shared.clone(),
        out: 1,
    };
    (shared, end_a, end_b)
}

impl PairShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Why it closed, once closed.
    pub(crate) fn close_reason(&self) -> Option<String> {
        self.close_reason.lock().clone()
    }

    /// Messages sent so far in direction `dir` (0: a -> b).
    pub(crate) fn sent(&self, dir: usize) -> u64 {
        self.dirs[dir].sent.load(Ordering::Relaxed)
    }

    /// Messages waiting in direction `dir`.
    pub(crate) fn queued(&self, dir: usize) -> usize {
        self.dirs[dir].queued()
    }

    /// Closes the pair (first reason wins) and wakes every waiter.
    pub(crate) fn close(&self, reason: &str) {
        {
            let mut r = self.close_reason.lock();
            if r.is_none() {
                *r = Some(reason.to_owned());
            }
        }
        self.closed.store(true, Ordering::SeqCst);
        for d in &self.dirs {
            let _g = d.lock.lock();
            d.readable.notify_all();
            d.writable.notify_all();
        }
    }
}

/// One side of a direct channel: sends to the peer and receives from it,
/// bypassing the hub's routing. Not `Sync`: one thread at a time uses an end
/// (wrap it in a mutex to share it). Dropping an end closes the channel.
pub struct DirectEnd {
    me: Arc<str>,
    peer: Arc<str>,
    tx: rtrb::Producer<Value>,
    rx: rtrb::Consumer<Value>,
    shared: Arc<PairShared>,
    /// Index of the outgoing direction in `shared.dirs`.
    out: usize,
}

impl fmt::Debug for DirectEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectEnd")
            .field("me", &self.me)
            .field("peer", &self.peer)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl DirectEnd {
    /// This side's system.
    pub fn system(&self) -> &str {
        &self.me
    }

    /// The other side's system.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the channel is closed (receives still drain what was sent).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Ring capacity per direction.
    pub fn capacity(&self) -> usize {
        self.tx.buffer().capacity()
    }

    /// Closes the channel for both sides.
    pub fn close(&self) {
        self.shared.close(&format!("closed by {}", self.me));
    }

    fn out_dir(&self) -> &Dir {
        &self.shared.dirs[self.out]
    }

    fn in_dir(&self) -> &Dir {
        &self.shared.dirs[1 - self.out]
    }

    /// Sends without waiting.
    ///
    /// # Errors
    /// [`DirectSendError::Full`] or [`DirectSendError::Closed`], with the value.
    #[inline]
    pub fn try_send(&mut self, value: Value) -> Result<(), DirectSendError> {
        if self.shared.is_closed() {
            return Err(DirectSendError::Closed(value));
        }
        match self.tx.push(value) {
            Ok(()) => {
                self.sent_one();
                Ok(())
            }
            Err(PushError::Full(v)) => Err(DirectSendError::Full(v)),
        }
    }

    #[inline]
    fn sent_one(&self) {
        let d = self.out_dir();
        d.sent
            .store(d.sent.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        d.edge.count_direct(1);
        if d.rx_parked.fetch_add(0, Ordering::AcqRel) != 0 {
            let _g = d.lock.lock();
            d.readable.notify_one();
        }
    }

    /// Moves as many values as there is room for from the front of `values`
    /// into the channel in one step; returns how many. Cheaper per message
    /// than [`DirectEnd::try_send`] (one index update and one wake-up check
    /// per batch). Values that did not fit stay in `values`.
    ///
    /// # Errors
    /// [`HubError::ChannelClosed`]; `values` is left untouched.
    pub fn try_send_batch(&mut self, values: &mut Vec<Value>) -> Result<usize, HubError> {
        if self.shared.is_closed() {
            return Err(self.closed_error());
        }
        let n = self.tx.slots().min(values.len());
        if n == 0 {
            return Ok(0);
        }
        let chunk = self.tx.write_chunk_uninit(n).expect("slots() were free");
        let written = chunk.fill_from_iter(values.drain(..n));
        debug_assert_eq!(written, n);
        let d = self.out_dir();
        d.sent
            .store(d.sent.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
        d.edge.count_direct(n as u64);
        if d.rx_parked.fetch_add(0, Ordering::AcqRel) != 0 {
            let _g = d.lock.lock();
            d.readable.notify_one();
        }
        Ok(n)
    }

    /// Sends, waiting for room as long as needed.
    ///
    /// # Errors
    /// [`DirectSendError::Closed`] with the value.
    pub fn send(&mut self, value: Value) -> Result<(), DirectSendError> {
        self.send_until(value, None)
    }

    /// Sends, waiting up to `timeout` for room.
    ///
    /// # Errors
    /// [`DirectSendError::Timeout`] or [`DirectSendError::Closed`], with the value.
    pub fn send_timeout(&mut self, value: Value, timeout: Duration) -> Result<(), DirectSendError> {
        self.send_until(value, Some(Instant::now() + timeout))
    }

    fn send_until(
        &mut self,
        mut value: Value,
        deadline: Option<Instant>,
    ) -> Result<(), DirectSendError> {
        let mut spins = 0u32;
        loop {
            match self.try_send(value) {
                Err(DirectSendError::Full(v)) => value = v,
                other => return other,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(DirectSendError::Timeout(value));
            }
            if spins < SPIN {
                spins += 1;
                if spins.is_multiple_of(32) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let d = &self.shared.dirs[self.out];
            let mut g = d.lock.lock();
            d.tx_parked.swap(1, Ordering::AcqRel);
            if self.tx.slots() == 0 && !self.shared.is_closed() {
                match deadline {
                    Some(dl) => {
                        let _ = d.writable.wait_until(&mut g, dl);
                    }
                    None => d.writable.wait(&mut g),
                }
            }
            d.tx_parked.store(0, Ordering::Relaxed);
        }
    }

    /// The next message if one is waiting.
    ///
    /// # Errors
    /// [`HubError::ChannelClosed`] once closed and drained.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Option<Value>, HubError> {
        match self.rx.pop() {
            Ok(v) => {
                self.received_one();
                Ok(Some(v))
            }
            Err(PopError::Empty) => {
                if self.shared.is_closed() {
                    // A send may have landed just before the close.
                    if let Ok(v) = self.rx.pop() {
                        self.received_one();
                        return Ok(Some(v));
                    }
                    return Err(self.closed_error());
                }
                Ok(None)
            }
        }
    }

    #[inline]
    fn received_one(&self) {
        let d = self.in_dir();
        d.received
            .store(d.received.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if d.tx_parked.fetch_add(0, Ordering::AcqRel) != 0 {
            let _g = d.lock.lock();
            d.writable.notify_one();
        }
    }

    /// Moves up to `max` waiting messages into `out` in one step; returns how
    /// many. Cheaper per message than [`DirectEnd::try_recv`].
    ///
    /// # Errors
    /// [`HubError::ChannelClosed`] once closed and drained.
    pub fn try_recv_batch(&mut self, out: &mut Vec<Value>, max: usize) -> Result<usize, HubError> {
        let n = self.rx.slots().min(max);
        if n == 0 {
            return match self.try_recv()? {
                Some(v) => {
                    out.push(v);
                    Ok(1)
                }
                None => Ok(0),
            };
        }
        let chunk = self.rx.read_chunk(n).expect("slots() were available");
        out.extend(chunk);
        let d = self.in_dir();
        d.received.store(
            d.received.load(Ordering::Relaxed) + n as u64,
            Ordering::Relaxed,
        );
        if d.tx_parked.fetch_add(0, Ordering::AcqRel) != 0 {
            let _g = d.lock.lock();
            d.writable.notify_one();
        }
        Ok(n)
    }

    /// Waits for the next message.
    ///
    /// # Errors
    /// [`HubError::ChannelClosed`] once closed and drained.
    pub fn recv(&mut self) -> Result<Value, HubError> {
        self.recv_until(None, Duration::ZERO)
    }

    /// Waits up to `timeout` for the next message.
    ///
    /// # Errors
    /// [`HubError::Timeout`], or [`HubError::ChannelClosed`] once closed and
    /// drained.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Value, HubError> {
        self.recv_until(Some(Instant::now() + timeout), timeout)
    }

    fn recv_until(
        &mut self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<Value, HubError> {
        let mut spins = 0u32;
        loop {
            if let Some(v) = self.try_recv()? {
                return Ok(v);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(HubError::Timeout {
                    topic: format!("direct {} -> {}", self.peer, self.me),
                    after: timeout,
                });
            }
            if spins < SPIN {
                spins += 1;
                if spins.is_multiple_of(32) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let d = &self.shared.dirs[1 - self.out];
            let mut g = d.lock.lock();
            d.rx_parked.swap(1, Ordering::AcqRel);
            if self.rx.is_empty() && !self.shared.is_closed() {
                match deadline {
                    Some(dl) => {
                        let _ = d.readable.wait_until(&mut g, dl);
                    }
                    None => d.readable.wait(&mut g),
                }
            }
            d.rx_parked.store(0, Ordering::Relaxed);
        }
    }

    fn closed_error(&self) -> HubError {
        HubError::ChannelClosed {
            a: self.me.to_string(),
            b: self.peer.to_string(),
            reason: self
                .shared
                .close_reason
                .lock()
                .clone()
                .unwrap_or_else(|| "closed".into()),
        }
    }
}

impl Drop for DirectEnd {
    fn drop(&mut self) {
        if !self.shared.is_closed() {
            self.shared
                .close(&format!("endpoint of {} dropped", self.me));
        }
    }
}
