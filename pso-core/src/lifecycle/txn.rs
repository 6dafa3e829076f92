//! One lifecycle transaction: run the handlers of an ordered member set on the
//! worker pool, each as soon as its predecessors are done.
//!
//! # Protocol
//! Each member has an atomic predecessor counter. The thread that finishes a
//! member decrements its successors' counters; the one that brings a counter
//! to zero owns starting that successor (it runs one inline and spawns the
//! rest, so chains do not bounce through the queues). A failed or blocked
//! member marks its *hard* successors (`requires`) blocked before the
//! decrement; the `AcqRel` decrement chain makes that mark visible to
//! whichever thread starts the successor, which then skips its handler.
//!
//! Member status moves `PENDING -> RUNNING -> DONE`, or `RUNNING -> ABANDONED`
//! when the waiting caller sees its timeout pass, or `PENDING -> SKIPPED` when
//! blocked. Both the `RUNNING` claim and the `DONE`/`ABANDONED` resolution
//! happen together with the registry transition, under the registry write
//! lock, so exactly one of "handler finished" and "timed out" wins and the
//! recorded state always agrees with the member status. A handler that
//! returns after being abandoned has its result ignored (noted in
//! `last_error`). A worker resolves its member and claims the successor it
//! will run inline under one lock acquisition. Handler closures are never
//! dropped under the registry lock (a host finalizer may call back).
//!
//! # Memory ordering
//! `start_ns[i]` is stored before the `RUNNING` claim (release via the lock
//! and the CAS); the caller reads status with `Acquire` before reading it.

use std::sync::Arc as StdArc;
use std::time::{Duration, Instant, SystemTime};

use petgraph::stable_graph::NodeIndex;

use super::HandlerScope;
use super::report::{ActivationReport, Outcome, SystemOutcome};
use super::state::{
    ACTIVATE_FAILED, ACTIVATE_OK, DEACTIVATE_FAILED, DEACTIVATE_OK, Reason, SystemState,
    TRANSITION_TIMEOUT, Transitioned,
};
use crate::model::{HandlerError, LifecycleAction, LifecycleContext, LifecycleFn};
use crate::registry::{OrderedSet, Registry};
use crate::scheduler::{Job, Latch, Pool};
use crate::sync::{Arc, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, RwLock};
use crate::unwind;

pub(crate) const MEMBER_PENDING: u8 = 0;
pub(crate) const MEMBER_RUNNING: u8 = 1;
pub(crate) const MEMBER_DONE: u8 = 2;
pub(crate) const MEMBER_ABANDONED: u8 = 3;
pub(crate) const MEMBER_SKIPPED: u8 = 4;
const NONE: u32 = u32::MAX;

struct Member {
    idx: NodeIndex,
    name: StdArc<str>,
    /// Taken out before the handler runs and dropped right after, or drained
    /// before completion is signalled, so no closure outlives the call.
    handler: Mutex<Option<LifecycleFn>>,
    timeout: Duration,
    /// Scheduler priority class (the system's priority rank).
    class: usize,
    // Per-member run state, kept together so one member is one or two cache
    // lines (not one line in each of several parallel arrays).
    pending: AtomicU32,
    blocked_by: AtomicU32,
    status: AtomicU8,
    ready_ns: AtomicU64,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    result: Mutex<Option<Result<(), HandlerError>>>,
}

/// A running (or finished) lifecycle transaction.
pub(crate) struct Txn {
    orch_id: u64,
    registry: Arc<RwLock<Registry>>,
    pool: Arc<Pool>,
    action: LifecycleAction,
    /// The reason recorded with each member's first transition.
    start_reason: Reason,
    set: OrderedSet,
    members: Vec<Member>,
    remaining: AtomicUsize,
    done: Latch,
    t0: Instant,
    /// Wall-clock time at `t0`, so transitions need no system-clock read.
    wall0: SystemTime,
    clock: quanta::Clock,
    raw0: u64,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("action", &self.action)
            .field("members", &self.members.len())
            .finish()
    }
}

impl Txn {
    /// Prepares a transaction over `set`, reading handlers and timeouts from
    /// `reg` (the caller holds its read lock).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        orch_id: u64,
        reg: &Registry,
        registry: Arc<RwLock<Registry>>,
        pool: Arc<Pool>,
        action: LifecycleAction,
        reason: String,
        set: OrderedSet,
        default_timeout: Duration,
        clock: &quanta::Clock,
    ) -> Arc<Txn> {
        let n = set.members.len();
        let members = set
            .members
            .iter()
            .enumerate()
            .map(|(p, &idx)| {
                let node = reg.node(idx);
                Member {
                    idx,
                    name: node.name.clone(),
                    handler: Mutex::new(node.handlers.for_action(action).cloned()),
                    timeout: node.info.timeout.unwrap_or(default_timeout),
                    class: node.info.priority.rank() as usize,
                    pending: AtomicU32::new(set.pred_count[p]),
                    blocked_by: AtomicU32::new(NONE),
                    status: AtomicU8::new(MEMBER_PENDING),
                    ready_ns: AtomicU64::new(0),
                    start_ns: AtomicU64::new(0),
                    end_ns: AtomicU64::new(0),
                    result: Mutex::new(None),
                }
            })
            .collect();
        Arc::new(Txn {
            orch_id,
            registry,
            pool,
            action,
            start_reason: StdArc::from(format!(
                "{}: {reason}",
                match action {
                    LifecycleAction::Activate => "activating",
                    LifecycleAction::Deactivate => "deactivating",
                }
            )),
            remaining: AtomicUsize::new(n),
            done: Latch::new(),
            t0: Instant::now(),
            wall0: SystemTime::now(),
            raw0: clock.raw(),
            clock: clock.clone(),
            set,
            members,
        })
    }

    fn now_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.raw0, self.clock.raw())
    }

    fn wall(&self, ns: u64) -> SystemTime {
        self.wall0 + Duration::from_nanos(ns)
    }

    /// Runs the transaction to completion on the pool and returns the report.
    pub(crate) fn run(self: &Arc<Self>, target: String) -> ActivationReport {
        if self.members.is_empty() {
            self.signal_done();
        }
        let roots: Vec<u32> = (0..self.members.len() as u32)
            .filter(|&i| self.set.pred_count[i as usize] == 0)
            .collect();
        self.spawn_all(&roots);
        self.wait();
        self.report(target)
    }

    fn spawn_all(self: &Arc<Self>, ready: &[u32]) {
        let now = self.now_ns();
        for &i in ready {
            self.members[i as usize]
                .ready_ns
                .store(now, Ordering::Relaxed);
            let txn = self.clone();
            self.pool.spawn(
                Job::boxed(move || txn.drive(i)),
                self.members[i as usize].class,
            );
        }
    }

    /// Runs member `i`, then keeps running one newly ready successor inline
    /// (claimed under the same lock that resolved its predecessor).
    fn drive(self: &Arc<Self>, first: u32) {
        let mut next = Some((first, false));
        while let Some((i, claimed)) = next {
            next = self.step(i, claimed);
        }
    }

    /// Claims member `i` (status RUNNING and its Activating/Deactivating
    /// transition), under the registry lock the caller holds. An illegal
    /// transition marks it DONE with an error instead.
    fn claim_locked(&self, reg: &mut Registry, i: u32) {
        let iu = i as usize;
        let now = self.now_ns();
        self.members[iu].start_ns.store(now, Ordering::Relaxed);
        let claimed = self.members[iu].status.compare_exchange(
            MEMBER_PENDING,
            MEMBER_RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        debug_assert!(claimed.is_ok(), "a member is started once");
        let to = match self.action {
            LifecycleAction::Activate => SystemState::Activating,
            LifecycleAction::Deactivate => SystemState::Deactivating,
        };
        let life = &mut reg.node_mut(self.members[iu].idx).life;
        if life.transition(to, &self.start_reason, self.wall(now)) == Transitioned::Rejected {
            let err = HandlerError::failed(format!(
                "cannot start {} from state {}",
                self.action,
                life.state.name()
            ));
            self.members[iu]
                .status
                .store(MEMBER_DONE, Ordering::Release);
            *self.members[iu].result.lock() = Some(Err(err));
            self.members[iu].end_ns.store(now, Ordering::Relaxed);
        }
    }

    /// Runs or skips member `i` (already claimed if `claimed`); returns the
    /// successor to run inline and whether it is already claimed.
    fn step(self: &Arc<Self>, i: u32, claimed: bool) -> Option<(u32, bool)> {
        let iu = i as usize;
        if !claimed {
            if self.members[iu].blocked_by.load(Ordering::Acquire) != NONE {
                self.members[iu]
                    .status
                    .store(MEMBER_SKIPPED, Ordering::Release);
                return self.finish(i, true).map(|n| (n, false));
            }
            self.claim_locked(&mut self.registry.write(), i);
        }
        if self.members[iu].status.load(Ordering::Acquire) == MEMBER_DONE {
            // The claim was refused (illegal transition): already recorded.
            return self.finish(i, true).map(|n| (n, false));
        }
        let m = &self.members[iu];
        let handler = m.handler.lock().take();
        let result = match &handler {
            None => Ok(()),
            Some(h) => {
                let deadline = self
                    .deadline(iu)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
                let ctx = LifecycleContext {
                    system: &m.name,
                    action: self.action,
                    deadline,
                    status: &self.members[iu].status,
                };
                let _scope = HandlerScope::enter(self.orch_id);
                unwind::run_handler(|| h(&ctx))
            }
        };
        drop(handler);

        let failed = result.is_err();
        let mut reg = self.registry.write();
        let resolved = self.members[iu].status.compare_exchange(
            MEMBER_RUNNING,
            MEMBER_DONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let now = self.now_ns();
        let life = &mut reg.node_mut(m.idx).life;
        if resolved.is_err() {
            // Abandoned after its timeout: the caller already recorded the
            // failure and moved on. Keep the timeout as the error and note
            // the late result after it (a handler that gave up because it
            // was abandoned adds nothing).
            let took = Duration::from_nanos(
                now.saturating_sub(self.members[iu].start_ns.load(Ordering::Relaxed)),
            );
            let late = match &result {
                Err(HandlerError::TimedOut { .. }) => None,
                Ok(()) => Some("success".to_owned()),
                Err(e) => Some(format!("error: {e}")),
            };
            if let (Some(late), Some(err)) = (late, life.last_error.as_mut()) {
                err.push_str(&format!(
                    " (it returned later, after {}, with {late}; result ignored)",
                    humantime::format_duration(round_ms(took))
                ));
            }
            return None;
        }
        let applied = match (&result, self.action) {
            (Ok(()), LifecycleAction::Activate) => {
                life.transition(SystemState::Active, &ACTIVATE_OK, self.wall(now))
            }
            (Ok(()), LifecycleAction::Deactivate) => {
                life.transition(SystemState::Inactive, &DEACTIVATE_OK, self.wall(now))
            }
            (Err(e), action) => {
                let why = if action == LifecycleAction::Activate {
                    &ACTIVATE_FAILED
                } else {
                    &DEACTIVATE_FAILED
                };
                life.transition(
                    SystemState::Failed {
                        reason: format!("{action} handler failed: {e}"),
                    },
                    why,
                    self.wall(now),
                )
            }
        };
        debug_assert_eq!(applied, Transitioned::Applied);
        if result.is_ok() && self.action == LifecycleAction::Activate {
            // Activation counts as use (minimalist mode's idle sweep); done
            // here, where the node is at hand, rather than by name after
            // the transaction.
            reg.node(m.idx).slots.touch();
        }
        self.members[iu].end_ns.store(now, Ordering::Relaxed);
        *self.members[iu].result.lock() = Some(result);
        let (next, last) = self.release(i, failed, true);
        // Claim the inline successor while the lock is held.
        let next = match next {
            Some(k) if self.members[k as usize].blocked_by.load(Ordering::Acquire) == NONE => {
                self.claim_locked(&mut reg, k);
                Some((k, true))
            }
            other => other.map(|k| (k, false)),
        };
        drop(reg);
        if last {
            self.signal_done();
        }
        next
    }

    /// Drops every handler still held (members that never ran), then wakes
    /// the caller.
    fn signal_done(&self) {
        let leftovers: Vec<LifecycleFn> = self
            .members
            .iter()
            .filter_map(|m| m.handler.lock().take())
            .collect();
        drop(leftovers);
        self.done.set();
    }

    fn deadline(&self, i: usize) -> Option<Instant> {
        let start =
            self.t0 + Duration::from_nanos(self.members[i].start_ns.load(Ordering::Relaxed));
        start.checked_add(self.members[i].timeout)
    }

    /// Releases the successors of `i`; returns one to run inline (if
    /// `inline` allows; the others are spawned) and whether `i` was the last
    /// member (the caller then calls `signal_done`, outside any lock).
    fn release(self: &Arc<Self>, i: u32, failed: bool, inline: bool) -> (Option<u32>, bool) {
        let iu = i as usize;
        let (a, b) = (
            self.set.succ_start[iu] as usize,
            self.set.succ_start[iu + 1] as usize,
        );
        let mut ready: Vec<u32> = Vec::new();
        for k in a..b {
            let s = self.set.succ[k] as usize;
            if failed && self.set.succ_hard[k] {
                let _ = self.members[s].blocked_by.compare_exchange(
                    NONE,
                    i,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            if self.members[s].pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                ready.push(s as u32);
            }
        }
        let keep = if inline { ready.pop() } else { None };
        if let Some(k) = keep {
            self.members[k as usize]
                .ready_ns
                .store(self.now_ns(), Ordering::Relaxed);
        }
        if !ready.is_empty() {
            self.spawn_all(&ready);
        }
        (keep, self.remaining.fetch_sub(1, Ordering::AcqRel) == 1)
    }

    /// [`Txn::release`], then `signal_done` if that was the last member.
    fn finish(self: &Arc<Self>, i: u32, failed: bool) -> Option<u32> {
        let (next, last) = self.release(i, failed, true);
        if last {
            self.signal_done();
        }
        next
    }

    /// Waits for every member, abandoning handlers that overrun their timeout.
    fn wait(self: &Arc<Self>) {
        let min_timeout = self
            .members
            .iter()
            .map(|m| m.timeout)
            .min()
            .unwrap_or(Duration::MAX);
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for i in 0..self.members.len() {
                if self.members[i].status.load(Ordering::Acquire) != MEMBER_RUNNING {
                    continue;
                }
                match self.deadline(i) {
                    Some(d) if d <= now => self.abandon(i as u32),
                    Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                    None => {}
                }
            }
            // A member that starts after this scan has a deadline at least
            // `min_timeout` away, so waking then is soon enough.
            let wake = [next, now.checked_add(min_timeout)]
                .into_iter()
                .flatten()
                .min();
            if self.done.wait_until(wake, &self.pool) {
                return;
            }
        }
    }

    fn abandon(self: &Arc<Self>, i: u32) {
        let iu = i as usize;
        let m = &self.members[iu];
        {
            let mut reg = self.registry.write();
            if self.members[iu]
                .status
                .compare_exchange(
                    MEMBER_RUNNING,
                    MEMBER_ABANDONED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                return; // it finished just now
            }
            let after = m.timeout;
            let reason = format!(
                "{} handler timed out after {}",
                self.action,
                humantime::format_duration(after)
            );
            let now = self.now_ns();
            let _ = reg.node_mut(m.idx).life.transition(
                SystemState::Failed { reason },
                &TRANSITION_TIMEOUT,
                self.wall(now),
            );
            self.members[iu].end_ns.store(now, Ordering::Relaxed);
            *self.members[iu].result.lock() = Some(Err(HandlerError::TimedOut { after }));
        }
        let (_, last) = self.release(i, true, false);
        if last {
            self.signal_done();
        }
    }

    /// Builds the report and records why blocked members did not run.
    fn report(&self, target: String) -> ActivationReport {
        let n = self.members.len();
        let mut outcomes = Vec::with_capacity(n);
        let mut blocked_notes = Vec::new();
        for i in 0..n {
            let m = &self.members[i];
            let status = self.members[i].status.load(Ordering::Acquire);
            let ns = |v: &AtomicU64| v.load(Ordering::Relaxed);
            let (ready, start, end) = (
                ns(&self.members[i].ready_ns),
                ns(&self.members[i].start_ns),
                ns(&self.members[i].end_ns),
            );
            let result = self.members[i].result.lock().clone();
            let outcome = match (status, result) {
                (MEMBER_SKIPPED, _) => {
                    let chain = self.chain(i);
                    blocked_notes.push((m.idx, chain.clone()));
                    Outcome::Blocked { chain }
                }
                (_, Some(Err(HandlerError::TimedOut { after }))) => Outcome::TimedOut { after },
                (_, Some(Err(error))) => Outcome::Failed { error },
                (_, Some(Ok(()))) => match self.action {
                    LifecycleAction::Activate => Outcome::Activated,
                    LifecycleAction::Deactivate => Outcome::Deactivated,
                },
                (_, None) => Outcome::Failed {
                    error: HandlerError::failed("member did not complete"),
                },
            };
            let error = match &outcome {
                Outcome::Blocked { chain } => Some(self.blocked_message(chain)),
                other => other.error().map(|e| e.to_string()),
            };
            let ran = if status == MEMBER_SKIPPED {
                0
            } else {
                end.saturating_sub(start)
            };
            outcomes.push(SystemOutcome {
                system: m.name.to_string(),
                outcome,
                error,
                level: self.set.level_of[i] as usize,
                queued: Duration::from_nanos(if status == MEMBER_SKIPPED {
                    0
                } else {
                    start.saturating_sub(ready)
                }),
                ran: Duration::from_nanos(ran),
            });
        }
        if !blocked_notes.is_empty() {
            let mut reg = self.registry.write();
            for (idx, chain) in blocked_notes {
                reg.node_mut(idx).life.last_error = Some(self.blocked_message(&chain));
            }
        }
        ActivationReport {
            target,
            action: self.action,
            outcomes,
            elapsed: self.t0.elapsed(),
        }
    }

    /// The requirement chain from member `i` down to the member that failed.
    fn chain(&self, mut i: usize) -> Vec<String> {
        let mut chain = vec![self.members[i].name.to_string()];
        loop {
            let b = self.members[i].blocked_by.load(Ordering::Acquire);
            if b == NONE || chain.len() > self.members.len() {
                return chain;
            }
            i = b as usize;
            chain.push(self.members[i].name.to_string());
        }
    }

    fn blocked_message(&self, chain: &[String]) -> String {
        let root = chain.last().map(String::as_str).unwrap_or("?");
        let root_i = self.members.iter().position(|m| &*m.name == root);
        let why = root_i
            .and_then(|r| {
                self.members[r]
                    .result
                    .lock()
                    .as_ref()
                    .and_then(|res| res.as_ref().err().map(|e| e.to_string()))
            })
            .unwrap_or_else(|| "it failed".to_owned());
        let path: Vec<String> = chain
            .windows(2)
            .map(|w| format!("{} requires {}", w[0], w[1]))
            .collect();
        format!("not activated: {}, which failed: {why}", path.join(", "))
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
