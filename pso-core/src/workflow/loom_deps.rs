//! loom model of the dependency-counter hand-off (see [`super::run`],
//! "Bookkeeping"), on the real [`mark_failed`] / [`release_edge`].
//!
//! Predecessors finishing on different threads each write their result slot,
//! then release their edge into the successor's `deps` word. Invariants:
//! exactly one releaser sees the count reach zero (it alone starts the
//! successor); it sees the failed bit iff some predecessor failed and the
//! skip count equals the skipped predecessors; and it reads every
//! predecessor's slot after its write (loom's `UnsafeCell` reports a read
//! not ordered after the write).

use loom::cell::UnsafeCell;

use super::account::{mark_failed, release_edge};
use super::run::{FAILED_BIT, Release, SKIP_ONE};
use crate::sync::{Arc, AtomicU64, Ordering, thread};

struct Successor {
    deps: AtomicU64,
    slots: Vec<UnsafeCell<u64>>,
}

// SAFETY: a slot is written only by its own predecessor, before its release,
// and read only by the thread whose release brought the count to zero (which
// acquired every release): the very protocol under test. loom checks each
// access and fails the model if one is not ordered.
unsafe impl Sync for Successor {}

/// Predecessor `p` finishes with `kind`. Returns the `deps` word and the
/// slots as seen by the owner, if this release made the successor ready.
fn finish(s: &Successor, p: usize, kind: Release) -> Option<(u64, Vec<u64>)> {
    // SAFETY: only predecessor `p` writes slot `p` (see `Sync` above).
    s.slots[p].with_mut(|v| unsafe { *v = p as u64 + 1 });
    if kind == Release::Failed {
        mark_failed(&s.deps);
    }
    if !release_edge(&s.deps, kind) {
        return None;
    }
    let word = s.deps.load(Ordering::Relaxed);
    // SAFETY: the owner reads after acquiring every predecessor's release.
    let slots = s.slots.iter().map(|c| c.with(|v| unsafe { *v })).collect();
    Some((word, slots))
}

fn check(kinds: &'static [Release]) {
    loom::model(move || {
        let n = kinds.len();
        let s = Arc::new(Successor {
            deps: AtomicU64::new(n as u64),
            slots: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        });
        let others: Vec<_> = (1..n)
            .map(|p| {
                let s = s.clone();
                thread::spawn(move || finish(&s, p, kinds[p]))
            })
            .collect();
        let mut owners = vec![finish(&s, 0, kinds[0])];
        owners.extend(others.into_iter().map(|t| t.join().unwrap()));
        let owners: Vec<(u64, Vec<u64>)> = owners.into_iter().flatten().collect();
        assert_eq!(owners.len(), 1, "exactly one thread starts the successor");
        let (word, slots) = &owners[0];
        assert_eq!(*word as u32, 0, "no unfinished predecessor left");
        let failed = kinds.contains(&Release::Failed);
        assert_eq!(*word & FAILED_BIT != 0, failed);
        let skipped = kinds.iter().filter(|&&k| k == Release::Skipped).count() as u64;
        assert_eq!((*word & !FAILED_BIT) / SKIP_ONE, skipped);
        assert_eq!(*slots, (1..=n as u64).collect::<Vec<_>>());
    });
}

#[test]
fn loom_two_predecessors_one_failed() {
    check(&[Release::Ok, Release::Failed]);
}

#[test]
fn loom_two_skipped_predecessors() {
    check(&[Release::Skipped, Release::Skipped]);
}

#[test]
fn loom_three_predecessors_mixed() {
    check(&[Release::Ok, Release::Skipped, Release::Failed]);
}
