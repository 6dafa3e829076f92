//! What callers hold: a [`RunHandle`] while a run is going, a [`RunResult`]
//! once it is done.
//!
//! Both are cheap handles on the run (an `Arc`). A terminal step state never
//! changes, so a result read twice reads the same. When a run is done,
//! `accepted = succeeded + failed + cancelled + timed_out + skipped` — every
//! accepted step (workflow steps plus fan-out children) ended in exactly one
//! terminal state.

use crate::model::HandlerError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fanout::ChildGroup;
use super::run::{
    CANCELLED, CANCELLED_Q, FAILED, FANNED, PENDING, RETRY_WAIT, RUNNING, RunInner, SKIPPED,
    STOP_CANCEL, STOP_CLOSE, STOP_DEADLINE, STOP_NONE, SUCCEEDED, TIMED_OUT, TIMED_OUT_Q, split,
};
use crate::sync::{Arc, Ordering};
use crate::value::Value;

/// The state of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Still going.
    Running,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// A step failed or timed out (and the run was not cancelled).
    Failed,
    /// `cancel()` was called, or the orchestrator was closed.
    Cancelled,
    /// The run's deadline passed.
    TimedOut,
}

impl RunState {
    /// `"running"`, `"succeeded"`, `"failed"`, `"cancelled"`, `"timed_out"`.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The state of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for predecessors, a worker or a concurrency slot.
    Pending,
    /// Its function is running (or its fan-out children are).
    Running,
    /// Failed; waiting to be retried.
    WaitingRetry,
    /// Terminal: succeeded.
    Succeeded,
    /// Terminal: its function failed, panicked, raised or threw (after retries).
    Failed,
    /// Terminal: cancelled, or not run because a predecessor did not succeed.
    Cancelled,
    /// Terminal: it passed its timeout or the run's deadline.
    TimedOut,
    /// Terminal: its condition was false, or all its predecessors were skipped.
    Skipped,
}

impl StepState {
    /// Whether the state is terminal.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            StepState::Pending | StepState::Running | StepState::WaitingRetry
        )
    }

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::WaitingRetry => "waiting_retry",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::TimedOut => "timed_out",
            StepState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

pub(crate) fn public_state(st: u32) -> StepState {
    match st {
        PENDING => StepState::Pending,
        RUNNING | FANNED => StepState::Running,
        RETRY_WAIT => StepState::WaitingRetry,
        SUCCEEDED => StepState::Succeeded,
        FAILED => StepState::Failed,
        CANCELLED | CANCELLED_Q => StepState::Cancelled,
        TIMED_OUT | TIMED_OUT_Q => StepState::TimedOut,
        SKIPPED => StepState::Skipped,
        _ => StepState::Pending,
    }
}

pub(crate) fn state_name(st: u32) -> &'static str {
    public_state(st).name()
}

/// How many steps ended in each terminal state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StepCounts {
    /// Steps of the workflow plus fan-out children.
    pub accepted: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Timed out.
    pub timed_out: usize,
    /// Skipped.
    pub skipped: usize,
    /// Not yet terminal (0 once the run is done).
    pub unfinished: usize,
}

impl StepCounts {
    /// The sum of the terminal counts.
    pub fn terminal(&self) -> usize {
        self.succeeded + self.failed + self.cancelled + self.timed_out + self.skipped
    }

    fn add(&mut self, s: StepState) {
        match s {
            StepState::Succeeded => self.succeeded += 1,
            StepState::Failed => self.failed += 1,
            StepState::Cancelled => self.cancelled += 1,
            StepState::TimedOut => self.timed_out += 1,
            StepState::Skipped => self.skipped += 1,
            _ => self.unfinished += 1,
        }
    }
}

/// One step's history in a run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step (`parent[i]` for a fan-out child).
    pub name: String,
    /// The system, for system operations.
    pub system: Option<String>,
    /// The operation, for system operations.
    pub operation: Option<String>,
    /// The state.
    pub state: StepState,
    /// Why it failed, was cancelled or timed out.
    pub error: Option<String>,
    /// Attempts made (0 if it never started).
    pub attempts: u32,
    /// From ready (predecessors done) to start of its last attempt.
    #[serde(serialize_with = "ser_secs")]
    pub queued: Duration,
    /// Run time of its last attempt.
    #[serde(serialize_with = "ser_secs")]
    pub ran: Duration,
    /// The worker that ran it.
    pub worker: Option<usize>,
    /// The fan-out parent, for children.
    pub parent: Option<String>,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A running (or finished) workflow run.
///
/// It is a `Future` (runtime-agnostic: it registers the waker and is woken by
/// the worker that finishes the run) and can also be waited on from a thread.
/// Dropping it does not stop the run; [`RunHandle::cancel`] does.
#[derive(Clone)]
pub struct RunHandle {
    pub(crate) run: Arc<RunInner>,
}

impl fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.run.id)
            .field("workflow", &self.run.wf.name)
            .finish()
    }
}

/// A snapshot of a run's progress.
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct RunProgress {
    /// The run's state so far.
    pub state: RunState,
    /// Counts by state.
    pub counts: StepCounts,
}

impl RunHandle {
    /// The run's id (unique per orchestrator).
    pub fn id(&self) -> u64 {
        self.run.id
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.run.wf.name
    }

    /// Cancels the run: unstarted steps are cancelled at once, running ones
    /// are told through `StepContext::is_cancelled` and finish on their own.
    /// Returns false if the run had already finished or was stopped.
    pub fn cancel(&self) -> bool {
        self.run.stop_all(STOP_CANCEL)
    }

    /// Whether every step is terminal.
    pub fn is_finished(&self) -> bool {
        self.run.done.load(Ordering::Acquire)
    }

    /// Blocks until the run is done. On a worker thread of the same
    /// orchestrator it runs other work while waiting instead of blocking.
    pub fn wait(&self) -> RunResult {
        self.run.wait_done(None);
        RunResult {
            run: self.run.clone(),
        }
    }

    /// Waits at most `timeout`; `None` if the run is still going.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<RunResult> {
        let deadline = Instant::now().checked_add(timeout);
        self.run.wait_done(deadline).then(|| RunResult {
            run: self.run.clone(),
        })
    }

    /// The result if the run is done, without waiting.
    pub fn try_result(&self) -> Option<RunResult> {
        self.is_finished().then(|| RunResult {
            run: self.run.clone(),
        })
    }

    /// Counts of steps by state right now.
    pub fn progress(&self) -> RunProgress {
        RunProgress {
            state: run_state(&self.run),
            counts: counts(&self.run),
        }
    }
}

impl Future for RunHandle {
    type Output = RunResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunResult> {
        if self.run.register_waker(cx.waker()) {
            Poll::Ready(RunResult {
                run: self.run.clone(),
            })
        } else {
            Poll::Pending
        }
    }
}

fn run_state(run: &RunInner) -> RunState {
    let done = run.done.load(Ordering::Acquire);
    match run.stop.load(Ordering::Acquire) {
        STOP_DEADLINE if done => return RunState::TimedOut,
        STOP_CANCEL | STOP_CLOSE if done => return RunState::Cancelled,
        STOP_NONE | STOP_CANCEL | STOP_CLOSE | STOP_DEADLINE if !done => return RunState::Running,
        _ => {}
    }
    let any_bad = (0..run.wf.steps.len() as u32)
        .map(|i| public_state(run.step_state(i)))
        .any(|s| {
            matches!(
                s,
                StepState::Failed | StepState::TimedOut | StepState::Cancelled
            )
        });
    if any_bad {
        RunState::Failed
    } else {
        RunState::Succeeded
    }
}

fn counts(run: &RunInner) -> StepCounts {
    let mut c = StepCounts {
        accepted: run.accepted.load(Ordering::Acquire),
        ..StepCounts::default()
    };
    for i in 0..run.wf.steps.len() as u32 {
        c.add(public_state(run.step_state(i)));
    }
    for g in run.child_groups() {
        for k in 0..g.defs.len() {
            c.add(public_state(split(g.state[k].load(Ordering::Acquire)).1));
        }
    }
    c
}

/// The result of a finished run.
#[derive(Clone)]
pub struct RunResult {
    pub(crate) run: Arc<RunInner>,
}

impl fmt::Debug for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunResult")
            .field("workflow", &self.run.wf.name)
            .field("state", &self.state())
            .field("counts", &self.counts())
            .finish()
    }
}

impl RunResult {
    /// The run's id.
    pub fn id(&self) -> u64 {
        self.run.id
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.run.wf.name
    }

    /// How the run ended.
    pub fn state(&self) -> RunState {
        run_state(&self.run)
    }

    /// Whether it succeeded.
    pub fn is_success(&self) -> bool {
        self.state() == RunState::Succeeded
    }

    /// Counts by terminal state.
    pub fn counts(&self) -> StepCounts {
        counts(&self.run)
    }

    /// Wall time from start to the last step.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.run.elapsed_ns.load(Ordering::Relaxed))
    }

    /// The output of a succeeded step (`None` otherwise). O(steps).
    pub fn output(&self, step: &str) -> Option<&Value> {
        let i = self.index(step)?;
        (self.run.step_state(i) == SUCCEEDED).then(|| &self.run.slot(i).output)
    }

    /// Outputs of every succeeded step, by name.
    pub fn outputs(&self) -> Value {
        Value::Map(
            (0..self.run.wf.steps.len() as u32)
                .filter(|&i| self.run.step_state(i) == SUCCEEDED)
                .map(|i| {
                    (
                        self.run.wf.name_of(i).into_owned(),
                        self.run.slot(i).output.clone(),
                    )
                })
                .collect(),
        )
    }

    /// The state of a step. O(steps).
    pub fn step_state(&self, step: &str) -> Option<StepState> {
        self.index(step)
            .map(|i| public_state(self.run.step_state(i)))
    }

    fn index(&self, step: &str) -> Option<u32> {
        self.run.wf.index_of(step)
    }

    /// One record per step (in workflow order), then per fan-out child.
    pub fn steps(&self) -> Vec<StepRecord> {
        let run = &*self.run;
        let wf = &*run.wf;
        let mut out = Vec::with_capacity(wf.steps.len());
        for i in 0..wf.steps.len() as u32 {
            let (attempts, st) = split(run.state_word(i));
            let t = &run.bufs.times[i as usize];
            out.push(StepRecord {
                name: wf.name_of(i).into_owned(),
                system: wf.step_system(i).map(str::to_owned),
                operation: wf.step_op(i).map(|o| o.name.to_string()),
                state: public_state(st),
                error: self.error_text(i, st),
                attempts,
                queued: run.ticks(t.queued.load(Ordering::Relaxed)),
                ran: run.ticks(t.ran.load(Ordering::Relaxed)),
                worker: worker_of(run, t),
                parent: None,
            });
        }
        for g in run.child_groups() {
            out.extend(child_records(run, &g));
        }
        out
    }

    /// The record of one step.
    pub fn step(&self, name: &str) -> Option<StepRecord> {
        self.steps().into_iter().find(|r| r.name == name)
    }

    fn error_text(&self, i: u32, st: u32) -> Option<String> {
        let run = &*self.run;
        if let Some(e) = &run.slot(i).error {
            return Some(e.to_string());
        }
        match st {
            CANCELLED | CANCELLED_Q => {
                let bad: Vec<std::borrow::Cow<'_, str>> = run
                    .wf
                    .preds_of(i)
                    .iter()
                    .filter(|&&p| {
                        matches!(
                            run.step_state(p),
                            FAILED | CANCELLED | CANCELLED_Q | TIMED_OUT | TIMED_OUT_Q
                        )
                    })
                    .map(|&p| run.wf.name_of(p))
                    .collect();
                Some(if !bad.is_empty() {
                    format!(
                        "upstream step {} did not succeed",
                        bad.iter()
                            .map(|b| format!("'{b}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else if run.stop.load(Ordering::Acquire) == STOP_CLOSE {
                    "the orchestrator was closed".to_owned()
                } else {
                    "the run was cancelled".to_owned()
                })
            }
            TIMED_OUT | TIMED_OUT_Q => Some("run deadline passed".to_owned()),
            _ => None,
        }
    }

    /// The error text of a step that did not succeed.
    pub fn error(&self, step: &str) -> Option<String> {
        let i = self.index(step)?;
        self.error_text(i, self.run.step_state(i))
    }

    /// The error a step's function (or condition) returned, as it returned
    /// it — with a binding's host exception in [`HandlerError::host_payload`].
    /// `None` for a step that did not fail by its own error (succeeded,
    /// skipped, cancelled because of upstream), and for fan-out children.
    pub fn handler_error(&self, step: &str) -> Option<&HandlerError> {
        let i = self.index(step)?;
        self.run.slot(i).error.as_deref()
    }

    /// The run's input.
    pub fn input(&self) -> &Value {
        &self.run.input
    }

    /// The result as JSON: state, counts, elapsed seconds, outputs and steps.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct J<'a> {
            id: u64,
            workflow: &'a str,
            state: RunState,
            counts: StepCounts,
            elapsed: f64,
            outputs: Value,
            steps: Vec<StepRecord>,
        }
        serde_json::to_string(&J {
            id: self.id(),
            workflow: self.workflow(),
            state: self.state(),
            counts: self.counts(),
            elapsed: self.elapsed().as_secs_f64(),
            outputs: self.outputs(),
            steps: self.steps(),
        })
        .expect("result serializes")
    }
}

fn worker_of(run: &RunInner, t: &super::buffers::StepTimes) -> Option<usize> {
    match t.worker.load(Ordering::Relaxed) {
        0 => None,
        w if run.timing => Some(w as usize - 1),
        _ => None,
    }
}

fn child_records(run: &RunInner, g: &ChildGroup) -> Vec<StepRecord> {
    let parent = run.wf.name_of(g.parent);
    (0..g.defs.len())
        .map(|k| {
            let (attempts, st) = split(g.state[k].load(Ordering::Acquire));
            let slot = g.slot(k);
            let t = &g.times[k];
            let error = slot
                .error
                .as_ref()
                .map(|e| e.to_string())
                .or_else(|| match st {
                    CANCELLED | CANCELLED_Q => Some("the run was cancelled".to_owned()),
                    TIMED_OUT | TIMED_OUT_Q => Some("run deadline passed".to_owned()),
                    _ => None,
                });
            StepRecord {
                name: format!("{parent}[{k}]"),
                system: g.defs[k].system.as_deref().map(str::to_owned),
                operation: g.defs[k].op.as_deref().map(str::to_owned),
                state: public_state(st),
                error,
                attempts,
                queued: run.ticks(t.queued.load(Ordering::Relaxed)),
                ran: run.ticks(t.ran.load(Ordering::Relaxed)),
                worker: worker_of(run, t),
                parent: Some(parent.to_string()),
            }
        })
        .collect()
}
