//! The bounded queue of one subscription and its overflow policies.
//!
//! One `Mutex<State>` guards the buffer, the `closed` flag, the mailbox's
//! `scheduled` flag and the counts of blocked readers and writers; two
//! condition variables wake pull readers (`readable`) and publishers blocked
//! by the `block` policy (`writable`).
//!
//! # Invariants
//! * `buf.len() <= capacity` at every unlock.
//! * Once `closed` is set it is never cleared; nothing is queued after it,
//!   and everyone waiting is woken.
//! * `scheduled` (callback subscriptions) is set by the offer that finds it
//!   clear, which then must spawn the mailbox; it is cleared only by the
//!   mailbox, under the lock, when it finds the buffer empty. So at most one
//!   mailbox job exists per subscription, and a queued message always has
//!   one coming (see [`super::deliver`]).
//! * Messages removed from the buffer (evicted, or left at close) are handed
//!   back to the caller and dropped after the unlock: dropping a request's
//!   last handle wakes its requester, which takes another lock.
//! * A wait inside a worker of the hub's pool runs queued jobs instead of
//!   blocking the worker (the job it waits for may be queued behind it).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::message::Message;
use crate::scheduler::Pool;
use crate::sync::{Condvar, Mutex};

/// How long a waiting worker blocks before looking for jobs to help with.
const HELP_SLICE: Duration = Duration::from_micros(200);

/// What a subscription does with a message that finds its queue full.
///
/// Every message not queued because of the policy is counted as dropped in
/// the subscription's status and raises a (rate-limited) alert event on
/// `pso.alert.<system>.dropped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// The publisher waits for room up to this long; then the message is not
    /// queued for this subscription and the publisher gets
    /// [`HubError::Overflow`](super::HubError::Overflow). A publisher that is
    /// a worker runs other queued jobs while it waits, so a callback may
    /// publish to a full subscription — except its own, whose mailbox it is
    /// running: that waits out the timeout.
    Block(Duration),
    /// The oldest queued message is dropped to make room.
    DropOldest,
    /// The new message is dropped.
    DropNewest,
    /// The new message is refused and the publisher gets
    /// [`HubError::Overflow`](super::HubError::Overflow).
    Error,
}

impl Overflow {
    /// The policy's name: `block`, `drop_oldest`, `drop_newest` or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            Overflow::Block(_) => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
            Overflow::Error => "error",
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overflow::Block(d) => write!(f, "block({})", humantime::format_duration(*d)),
            other => f.write_str(other.name()),
        }
    }
}

impl Serialize for Overflow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How an offer may treat a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Apply the subscription's policy.
    Policy,
    /// Apply the policy, but never block: `block` acts like `drop_newest`
    /// (hub-generated alerts must not stall a publisher).
    NoBlock,
    /// Queue only if there is room; otherwise do nothing (queue groups probe
    /// their members before applying the chosen member's policy).
    IfRoom,
}

/// The message an offer queues: borrowed (cloned if queued) or owned (the
/// last recipient of a publish takes the publisher's handle, saving a
/// reference-count round trip). An owned message that is not queued is
/// dropped after the queue's lock is released.
#[derive(Debug)]
pub(crate) enum Give<'a> {
    Ref(&'a Message),
    Own(Message),
}

impl Give<'_> {
    fn into_message(self) -> Message {
        match self {
            Give::Ref(m) => m.clone(),
            Give::Own(m) => m,
        }
    }
}

/// What an offer did.
#[must_use]
#[derive(Debug)]
pub(crate) enum Offer {
    /// Queued. If `schedule`, the caller must spawn the mailbox.
    Queued { schedule: bool },
    /// Queued after evicting the oldest message, which the caller counts as
    /// dropped and drops after the unlock (it is inside `evicted`).
    Evicted { evicted: Message, schedule: bool },
    /// Not queued: dropped by `drop_newest` (or `block` under [`Mode::NoBlock`]).
    DroppedNewest,
    /// Not queued: refused by `error`, or `block` timed out (`timed_out`).
    Refused { timed_out: bool },
    /// Not queued: no room ([`Mode::IfRoom`] only).
    NoRoom,
    /// Not queued: the subscription is closed.
    Closed,
}

/// How long a take may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until this instant.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

/// Why a take returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeEnd {
    /// The deadline passed (or, for a try, nothing was queued).
    Empty,
    /// The subscription is closed and drained.
    Closed,
}

#[derive(Debug)]
struct State {
    buf: VecDeque<Message>,
    closed: bool,
    scheduled: bool,
    readers: u32,
    writers: u32,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct SubQueue {
    state: Mutex<State>,
    readable: Condvar,
    writable: Condvar,
    capacity: usize,
    policy: Overflow,
}

impl SubQueue {
    pub(crate) fn new(capacity: usize, policy: Overflow) -> Self {
        let capacity = capacity.max(1);
        SubQueue {
            state: Mutex::new(State {
                buf: VecDeque::with_capacity(capacity.min(64)),
                closed: false,
                scheduled: false,
                readers: 0,
                writers: 0,
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
            capacity,
            policy,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn policy(&self) -> Overflow {
        self.policy
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// Offers `msg`. `mailbox` says the subscription is a callback one (so
    /// the offer may have to schedule it). `pool` lets a blocked publisher
    /// that is a worker help instead of blocking.
    pub(crate) fn offer(&self, msg: Give<'_>, mailbox: bool, mode: Mode, pool: &Pool) -> Offer {
        let mut st = self.state.lock();
        if st.closed {
            return Offer::Closed;
        }
        if st.buf.len() < self.capacity {
            return self.push(st, msg, mailbox, None);
        }
        if mode == Mode::IfRoom {
            return Offer::NoRoom;
        }
        match self.policy {
            Overflow::DropNewest => Offer::DroppedNewest,
            Overflow::Error => Offer::Refused { timed_out: false },
            Overflow::DropOldest => {
                let evicted = st.buf.pop_front();
                self.push(st, msg, mailbox, evicted)
            }
            Overflow::Block(_) if mode == Mode::NoBlock => Offer::DroppedNewest,
            Overflow::Block(timeout) => {
                let deadline = Instant::now() + timeout;
                let helping = pool.on_worker();
                loop {
                    st.writers += 1;
                    if helping {
                        drop(st);
                        let helped = pool.help_once();
                        st = self.state.lock();
                        if !helped && !st.closed && st.buf.len() >= self.capacity {
                            let slice = deadline.min(Instant::now() + HELP_SLICE);
                            let _ = self.writable.wait_until(&mut st, slice);
                        }
                    } else {
                        let _ = self.writable.wait_until(&mut st, deadline);
                    }
                    st.writers -= 1;
                    if st.closed {
                        return Offer::Closed;
                    }
                    if st.buf.len() < self.capacity {
                        return self.push(st, msg, mailbox, None);
                    }
                    if Instant::now() >= deadline {
                        return Offer::Refused { timed_out: true };
                    }
                }
            }
        }
    }

    fn push(
        &self,
        mut st: crate::sync::MutexGuard<'_, State>,
        msg: Give<'_>,
        mailbox: bool,
        evicted: Option<Message>,
    ) -> Offer {
        st.buf.push_back(msg.into_message());
        let schedule = mailbox && !st.scheduled;
        if schedule {
            st.scheduled = true;
        }
        let wake = st.readers > 0;
        drop(st);
        if wake {
            self.readable.notify_one();
        }
        match evicted {
            Some(evicted) => Offer::Evicted { evicted, schedule },
            None => Offer::Queued { schedule },
        }
    }

    /// Mailbox side: moves up to `max` messages into `out`. If none are
    /// queued, clears `scheduled` and returns `false`: the mailbox must stop
    /// (the next offer schedules a new one).
    pub(crate) fn drain(&self, max: usize, out: &mut Vec<Message>) -> bool {
        let mut st = self.state.lock();
        if st.buf.is_empty() || st.closed {
            st.scheduled = false;
            return false;
        }
        let n = st.buf.len().min(max);
        out.extend(st.buf.drain(..n));
        let wake = st.writers > 0;
        drop(st);
        if wake {
            self.writable.notify_all();
        }
        true
    }

    /// Mailbox side, after a batch: keeps `scheduled` and returns `true` if
    /// more messages wait (the mailbox reschedules itself); otherwise clears
    /// `scheduled` and returns `false`.
    pub(crate) fn more(&self) -> bool {
        let mut st = self.state.lock();
        if st.buf.is_empty() || st.closed {
            st.scheduled = false;
            false
        } else {
            true
        }
    }

    /// Pull side: takes the oldest message, waiting as `wait` allows.
    pub(crate) fn take(&self, wait: Wait, pool: &Pool) -> Result<Message, TakeEnd> {
        let mut st = self.state.lock();
        if let Some(m) = st.buf.pop_front() {
            let wake = st.writers > 0;
            drop(st);
            if wake {
                self.writable.notify_one();
            }
            return Ok(m);
        }
        let deadline = match wait {
            Wait::No if !st.closed => return Err(TakeEnd::Empty),
            Wait::No | Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
        let helping = pool.on_worker();
        loop {
            if let Some(m) = st.buf.pop_front() {
                let wake = st.writers > 0;
                drop(st);
                if wake {
                    self.writable.notify_one();
                }
                return Ok(m);
            }
            if st.closed {
                return Err(TakeEnd::Closed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TakeEnd::Empty);
            }
            st.readers += 1;
            if helping {
                drop(st);
                let helped = pool.help_once();
                st = self.state.lock();
                if !helped && st.buf.is_empty() && !st.closed {
                    let slice = Instant::now() + HELP_SLICE;
                    let _ = self
                        .readable
                        .wait_until(&mut st, deadline.map_or(slice, |d| d.min(slice)));
                }
            } else {
                match deadline {
                    Some(d) => {
                        let _ = self.readable.wait_until(&mut st, d);
                    }
                    None => self.readable.wait(&mut st),
                }
            }
            st.readers -= 1;
        }
    }

    /// Closes the queue and wakes every waiter. Returns what was still
    /// queued, for the caller to drop after the unlock.
    pub(crate) fn close(&self) -> VecDeque<Message> {
        let mut st = self.state.lock();
        st.closed = true;
        let left = std::mem::take(&mut st.buf);
        drop(st);
        self.readable.notify_all();
        self.writable.notify_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Arc;
    use crate::value::Value;

    fn msg(i: i64) -> Message {
        Message::detached("t", Value::Int(i))
    }

    fn ints(q: &SubQueue, pool: &Pool) -> Vec<i64> {
        let mut v = Vec::new();
        while let Ok(m) = q.take(Wait::No, pool) {
            v.push(m.payload().as_int().unwrap());
        }
        v
    }

    #[test]
    fn policies_when_full() {
        let pool = Pool::new(1, "q").unwrap();
        let q = SubQueue::new(2, Overflow::DropOldest);
        for i in 0..4 {
            match q.offer(Give::Own(msg(i)), false, Mode::Policy, &pool) {
                Offer::Queued { .. } => assert!(i < 2),
                Offer::Evicted { evicted, .. } => {
                    assert_eq!(evicted.payload().as_int(), Some(i - 2))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ints(&q, &pool), [2, 3]);

        let q = SubQueue::new(2, Overflow::DropNewest);
        for i in 0..4 {
            let o = q.offer(Give::Own(msg(i)), false, Mode::Policy, &pool);
            assert_eq!(matches!(o, Offer::DroppedNewest), i >= 2);
        }
        assert_eq!(ints(&q, &pool), [0, 1]);

        let q = SubQueue::new(1, Overflow::Error);
        assert!(matches!(
            q.offer(Give::Own(msg(0)), false, Mode::Policy, &pool),
            Offer::Queued { .. }
        ));
        assert!(matches!(
            q.offer(Give::Own(msg(1)), false, Mode::Policy, &pool),
            Offer::Refused { timed_out: false }
        ));
        assert!(matches!(
            q.offer(Give::Own(msg(1)), false, Mode::IfRoom, &pool),
            Offer::NoRoom
        ));

        let q = SubQueue::new(1, Overflow::Block(Duration::from_millis(5)));
        assert!(matches!(
            q.offer(Give::Own(msg(0)), false, Mode::Policy, &pool),
            Offer::Queued { .. }
        ));
        assert!(matches!(
            q.offer(Give::Own(msg(1)), false, Mode::Policy, &pool),
            Offer::Refused { timed_out: true }
        ));
        assert!(matches!(
            q.offer(Give::Own(msg(1)), false, Mode::NoBlock, &pool),
            Offer::DroppedNewest
        ));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn blocked_publisher_proceeds_when_room_appears() {
        let pool = Arc::new(Pool::new(1, "q").unwrap());
        let q = Arc::new(SubQueue::new(1, Overflow::Block(Duration::from_secs(30))));
        assert!(matches!(
            q.offer(Give::Own(msg(0)), false, Mode::Policy, &pool),
            Offer::Queued { .. }
        ));
        let (q2, p2) = (q.clone(), pool.clone());
        let t = std::thread::spawn(move || {
            matches!(
                q2.offer(Give::Own(msg(1)), false, Mode::Policy, &p2),
                Offer::Queued { .. }
            )
        });
        // Take both; the second arrives only after the publisher unblocked.
        let deadline = Wait::Until(Instant::now() + Duration::from_secs(30));
        assert_eq!(q.take(deadline, &pool).unwrap().payload().as_int(), Some(0));
        assert_eq!(q.take(deadline, &pool).unwrap().payload().as_int(), Some(1));
        assert!(t.join().unwrap());
    }

    #[test]
    fn mailbox_flag_and_close() {
        let pool = Pool::new(1, "q").unwrap();
        let q = SubQueue::new(4, Overflow::DropNewest);
        assert!(matches!(
            q.offer(Give::Own(msg(0)), true, Mode::Policy, &pool),
            Offer::Queued { schedule: true }
        ));
        assert!(matches!(
            q.offer(Give::Own(msg(1)), true, Mode::Policy, &pool),
            Offer::Queued { schedule: false }
        ));
        let mut out = Vec::new();
        assert!(q.drain(1, &mut out));
        assert_eq!(out.len(), 1);
        assert!(q.more());
        assert!(q.drain(8, &mut out));
        assert!(!q.more(), "empty: scheduled cleared");
        assert!(matches!(
            q.offer(Give::Own(msg(2)), true, Mode::Policy, &pool),
            Offer::Queued { schedule: true }
        ));
        assert_eq!(q.close().len(), 1);
        assert!(matches!(
            q.offer(Give::Own(msg(3)), true, Mode::Policy, &pool),
            Offer::Closed
        ));
        assert_eq!(q.take(Wait::Forever, &pool).unwrap_err(), TakeEnd::Closed);
    }
}
