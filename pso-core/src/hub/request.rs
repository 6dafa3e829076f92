//! Request/reply: the requester's reply slot and the gather options.
//!
//! A request is a publish whose message carries an `Arc<ReplySlot>`.
//! Responders answer with [`Message::reply`](super::Message::reply), which
//! goes straight into the slot (no routing, no inbox subscription, so a
//! request never touches the subscription tree).
//!
//! # Slot states
//! `open` until the requester stops waiting (answered, gathered enough,
//! deadline, quiet gap); a reply to a closed slot is refused (`false`).
//! `abandoned` is set when the request message's last handle is dropped:
//! every receiver is done with it, so no reply can come and the requester
//! returns at once instead of waiting for its deadline.
//!
//! # Waiting
//! The requester first spins briefly on `ready` (a reply from a worker that
//! is already running usually lands within a microsecond or two, much less
//! than a futex wake-up), then blocks on the condition variable. Inside a
//! worker of the hub's pool it runs queued jobs instead of blocking, since
//! the responder's mailbox may be queued behind it.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use super::message::Message;
use crate::scheduler::Pool;
use crate::sync::{AtomicBool, Condvar, Mutex, Ordering};

/// Spin iterations before blocking.
const SPIN: u32 = 2_000;
/// How long a waiting worker blocks before looking for jobs to help with.
const HELP_SLICE: Duration = Duration::from_micros(200);

/// When [`Hub::request_many`](super::Hub::request_many) stops gathering.
///
/// It stops at the first of: `max` replies, the `timeout` after the request,
/// a `quiet` gap after the latest reply (counted from the first reply on),
/// or every receiver having dropped the request.
///
/// # Examples
/// ```
/// use pso_core::Gather;
/// use std::time::Duration;
/// let g = Gather::new(Duration::from_secs(1)).max(3).quiet(Duration::from_millis(50));
/// # let _ = g;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gather {
    pub(crate) timeout: Duration,
    pub(crate) max: Option<usize>,
    pub(crate) quiet: Option<Duration>,
}

impl Gather {
    /// Gathers until `timeout` has passed (and no other limit was hit first).
    pub fn new(timeout: Duration) -> Self {
        Gather {
            timeout,
            max: None,
            quiet: None,
        }
    }

    /// Stops after this many replies (at least 1).
    pub fn max(mut self, replies: usize) -> Self {
        self.max = Some(replies.max(1));
        self
    }

    /// Stops when no reply came for this long after the latest one.
    pub fn quiet(mut self, gap: Duration) -> Self {
        self.quiet = Some(gap);
        self
    }
}

#[derive(Debug)]
struct State {
    replies: Vec<Message>,
    open: bool,
    abandoned: bool,
    last_reply: Option<Instant>,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Enough replies, or a quiet gap.
    Done,
    /// The deadline passed.
    Deadline,
    /// Every receiver dropped the request.
    Abandoned,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ReplySlot {
    state: Mutex<State>,
    cv: Condvar,
    /// Set (Release) whenever `state` changed in a way a waiter cares about.
    ready: AtomicBool,
    want: usize,
}

impl ReplySlot {
    /// A slot that accepts up to `want` replies.
    pub(crate) fn new(want: usize) -> Self {
        ReplySlot {
            state: Mutex::new(State {
                replies: Vec::new(),
                open: true,
                abandoned: false,
                last_reply: None,
            }),
            cv: Condvar::new(),
            ready: AtomicBool::new(false),
            want: want.max(1),
        }
    }

    /// A responder's reply; `false` if the slot no longer takes replies.
    pub(crate) fn deliver(&self, reply: Message) -> bool {
        let mut st = self.state.lock();
        if !st.open || st.replies.len() >= self.want {
            return false;
        }
        st.replies.push(reply);
        st.last_reply = Some(Instant::now());
        self.ready.store(true, Ordering::Release);
        drop(st);
        self.cv.notify_one();
        true
    }

    /// The request's last handle was dropped.
    pub(crate) fn abandon(&self) {
        let mut st = self.state.lock();
        st.abandoned = true;
        self.ready.store(true, Ordering::Release);
        drop(st);
        self.cv.notify_one();
    }

    /// Waits for replies until `want` arrived, `deadline`, a `quiet` gap
    /// after a reply, or abandonment. Closes the slot and returns the replies
    /// with the reason it stopped.
    pub(crate) fn wait(
        &self,
        deadline: Instant,
        quiet: Option<Duration>,
        pool: &Pool,
    ) -> (Vec<Message>, End) {
        for i in 0..SPIN {
            if self.ready.load(Ordering::Acquire) {
                break;
            }
            if i % 32 == 31 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let helping = pool.on_worker();
        let mut st = self.state.lock();
        let end = loop {
            if st.replies.len() >= self.want {
                break End::Done;
            }
            if st.abandoned {
                break End::Abandoned;
            }
            let now = Instant::now();
            if now >= deadline {
                break End::Deadline;
            }
            let mut until = deadline;
            if let (Some(q), Some(last)) = (quiet, st.last_reply) {
                if now >= last + q {
                    break End::Done;
                }
                until = until.min(last + q);
            }
            self.ready.store(false, Ordering::Relaxed);
            if helping {
                drop(st);
                let helped = pool.help_once();
                st = self.state.lock();
                if !helped && !self.ready.load(Ordering::Acquire) {
                    let _ = self
                        .cv
                        .wait_until(&mut st, until.min(Instant::now() + HELP_SLICE));
                }
            } else {
                let _ = self.cv.wait_until(&mut st, until);
            }
        };
        st.open = false;
        (std::mem::take(&mut st.replies), end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Arc;
    use crate::value::Value;

    fn msg(i: i64) -> Message {
        Message::detached("r", Value::Int(i))
    }

    #[test]
    fn one_reply_then_closed() {
        let pool = Pool::new(1, "r").unwrap();
        let slot = ReplySlot::new(1);
        assert!(slot.deliver(msg(1)));
        assert!(
            !slot.deliver(msg(2)),
            "a single request takes the first reply"
        );
        let (r, end) = slot.wait(Instant::now() + Duration::from_secs(5), None, &pool);
        assert_eq!((r.len(), end), (1, End::Done));
        assert!(!slot.deliver(msg(3)), "closed after the wait");
    }

    #[test]
    fn deadline_quiet_and_abandon() {
        let pool = Pool::new(1, "r").unwrap();
        let slot = ReplySlot::new(1);
        let (r, end) = slot.wait(Instant::now() + Duration::from_millis(5), None, &pool);
        assert_eq!((r.len(), end), (0, End::Deadline));

        let slot = ReplySlot::new(10);
        assert!(slot.deliver(msg(1)));
        let (r, end) = slot.wait(
            Instant::now() + Duration::from_secs(30),
            Some(Duration::from_millis(5)),
            &pool,
        );
        assert_eq!((r.len(), end), (1, End::Done));

        let slot = Arc::new(ReplySlot::new(1));
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.abandon());
        let (r, end) = slot.wait(Instant::now() + Duration::from_secs(30), None, &pool);
        t.join().unwrap();
        assert_eq!((r.len(), end), (0, End::Abandoned));
    }
}
