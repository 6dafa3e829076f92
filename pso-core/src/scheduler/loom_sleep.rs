//! loom models of worker park/unpark ([`super::sleep`]): no lost wake-up.
//!
//! A job push is modelled as a `Release` store (what a queue push gives) and
//! `has_work` as an `Acquire` load, so the models rely on exactly the
//! `sleepers` counter and the `SeqCst` fences of the protocol. A lost wake-up
//! leaves a worker waiting on the condvar with work queued and nobody left
//! to notify: loom reports it as a deadlock.

use super::sleep::Sleep;
use crate::sync::{Arc, AtomicUsize, Ordering, thread};

/// Takes one queued job if there is one.
fn try_take(jobs: &AtomicUsize) -> bool {
    let mut n = jobs.load(Ordering::Acquire);
    while n > 0 {
        match jobs.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(cur) => n = cur,
        }
    }
    false
}

/// A worker: parks until it has taken one job.
fn work_one(sleep: &Sleep, jobs: &AtomicUsize) {
    while !try_take(jobs) {
        sleep.park(|| jobs.load(Ordering::Acquire) > 0);
    }
}

fn submit(sleep: &Sleep, jobs: &AtomicUsize) {
    jobs.fetch_add(1, Ordering::Release);
    sleep.notify_one();
}

#[test]
fn loom_a_submit_wakes_a_parked_worker() {
    loom::model(|| {
        let sleep = Arc::new(Sleep::new());
        let jobs = Arc::new(AtomicUsize::new(0));
        let (s, j) = (sleep.clone(), jobs.clone());
        let submitter = thread::spawn(move || submit(&s, &j));
        work_one(&sleep, &jobs);
        submitter.join().unwrap();
        assert_eq!(jobs.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn loom_two_workers_two_submits_strand_nobody() {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(|| {
        let sleep = Arc::new(Sleep::new());
        let jobs = Arc::new(AtomicUsize::new(0));
        let spawn = |f: fn(&Sleep, &AtomicUsize)| {
            let (s, j) = (sleep.clone(), jobs.clone());
            thread::spawn(move || f(&s, &j))
        };
        let threads = [spawn(work_one), spawn(submit), spawn(submit)];
        work_one(&sleep, &jobs);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(jobs.load(Ordering::Relaxed), 0);
    });
}
