//! Supervision timers: probes (on the pool with a timeout, or inline in
//! virtual time), watchdog deadlines, and the end of flapping.

use std::time::{Duration, Instant};

use crate::metrics::Probe;
use crate::model::HandlerError;
use crate::orchestrator::{Inner, Orchestrator};
use crate::scheduler::Job;
use crate::supervise::monitor::Flap;
use crate::supervise::{HealthReport, HealthStatus};
use crate::sync::Arc;
use crate::unwind;

/// Schedules the next probe of generation `generation` of `system`.
pub(super) fn schedule_probe(
    inner: &Arc<Inner>,
    system: &str,
    generation: u64,
    interval: Duration,
) {
    let weak = Arc::downgrade(inner);
    let name = system.to_owned();
    inner.sup.clock.after(interval, move || {
        let Some(inner) = weak.upgrade() else { return };
        let probe = {
            let mons = inner.sup.monitors.lock();
            match mons.get(&name) {
                Some(m) if m.generation == generation && m.active => m.check.clone(),
                _ => None,
            }
        };
        let Some(check) = probe else { return };
        let Some(f) = check.probe.clone() else { return };
        run_probe(&inner, &name, generation, f, check.timeout);
        schedule_probe(&inner, &name, generation, check.interval);
    });
}

/// Runs one probe: inline in virtual time, else on the pool with a timeout.
fn run_probe(
    inner: &Arc<Inner>,
    system: &str,
    generation: u64,
    f: crate::supervise::ProbeFn,
    timeout: Duration,
) {
    let call = {
        let name = system.to_owned();
        move || -> Result<HealthReport, String> {
            match unwind::run_handler(|| f(&name)) {
                Ok(r) => Ok(r),
                Err(HandlerError::Failed { message }) => Err(message),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    if inner.sup.clock.is_virtual() {
        let started = Instant::now();
        let result = call();
        record_probe(inner, system, &result, started.elapsed());
        Orchestrator {
            inner: inner.clone(),
        }
        .probe_done(system, generation, result);
        return;
    }
    // Whichever comes first, the answer or the timeout, is recorded.
    let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w1, w2) = (Arc::downgrade(inner), Arc::downgrade(inner));
    let (n1, n2) = (system.to_owned(), system.to_owned());
    let o2 = once.clone();
    let timer = inner.sup.clock.after(timeout, move || {
        if !o2.swap(true, std::sync::atomic::Ordering::AcqRel)
            && let Some(inner) = w2.upgrade()
        {
            inner.metrics.probe(&n2, Probe::TimedOut, timeout);
            Orchestrator { inner }.probe_done(
                &n2,
                generation,
                Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
            );
        }
    });
    let clock = inner.sup.clock.clone();
    inner.pool.spawn(
        Job::boxed(move || {
            let started = Instant::now();
            let result = call();
            let latency = started.elapsed();
            if !once.swap(true, std::sync::atomic::Ordering::AcqRel) {
                if let Some(t) = timer {
                    clock.cancel(t);
                }
                if let Some(inner) = w1.upgrade() {
                    record_probe(&inner, &n1, &result, latency);
                    Orchestrator { inner }.probe_done(&n1, generation, result);
                }
            }
        }),
        1,
    );
}

/// Counts a probe that answered, with its latency.
fn record_probe(
    inner: &Inner,
    system: &str,
    result: &Result<HealthReport, String>,
    latency: Duration,
) {
    let kind = match result {
        Ok(r) => match r.status {
            HealthStatus::Healthy => Probe::Healthy,
            HealthStatus::Degraded => Probe::Degraded,
            HealthStatus::Unhealthy => Probe::Unhealthy,
        },
        Err(_) => Probe::Failed,
    };
    inner.metrics.probe(system, kind, latency);
}

/// Arms the watchdog deadline of generation `generation` of `system`,
/// counted from the check-in at `from`.
pub(super) fn schedule_watchdog(
    inner: &Arc<Inner>,
    system: &str,
    generation: u64,
    from: Instant,
    deadline: Duration,
) {
    let weak = Arc::downgrade(inner);
    let name = system.to_owned();
    inner.sup.clock.schedule(from + deadline, move || {
        let Some(inner) = weak.upgrade() else { return };
        let missed = {
            let mut mons = inner.sup.monitors.lock();
            match mons.get_mut(&name) {
                // A later check-in armed a later deadline.
                Some(m)
                    if m.generation == generation && m.active && m.last_check_in == Some(from) =>
                {
                    let why = format!(
                        "missed its watchdog deadline: no check-in for {}",
                        humantime::format_duration(deadline)
                    );
                    m.force_unhealthy(&why);
                    Some(why)
                }
                _ => None,
            }
        };
        if let Some(why) = missed {
            let orch = Orchestrator { inner };
            orch.note_change(&name);
            orch.alert(&name, "watchdog", &why);
            orch.unhealthy(&name, &why);
        }
    });
}

/// Checks every half window whether a flapping system calmed down.
pub(super) fn schedule_flap_settle(inner: &Arc<Inner>, system: &str) {
    let weak = Arc::downgrade(inner);
    let name = system.to_owned();
    let half = inner.sup.flap.window / 2;
    inner
        .sup
        .clock
        .after(half.max(Duration::from_millis(1)), move || {
            let Some(inner) = weak.upgrade() else { return };
            let now = inner.sup.clock.now();
            let flap = inner
                .sup
                .monitors
                .lock()
                .get_mut(&name)
                .map_or(Flap::Ended, |m| m.settle_flapping(now, inner.sup.flap));
            match flap {
                Flap::Ended => Orchestrator { inner }.publish_alert(
                    &name,
                    "flapping_ended",
                    "no health or state change for a whole window",
                    0,
                ),
                _ => schedule_flap_settle(&inner, &name),
            }
        });
}
