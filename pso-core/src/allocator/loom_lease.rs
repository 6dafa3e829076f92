//! loom models of the lease hand-off to a waiter (see the module docs of
//! `lease.rs`), on the real [`WaitSlot`].
//!
//! * An outcome completed on one thread reaches a waiter parked on another,
//!   exactly once (no lost wake-up, no second take).
//! * The table protocol: a granter removes the slot from the table under the
//!   table lock and completes it after unlocking; a withdrawing waiter that
//!   finds the slot already gone waits for the outcome and takes it. In every
//!   interleaving the grant is handled exactly once — taken by the waiter, or
//!   released by the granter as an orphan when the waiter withdrew first.
//!   (Without the wait, the interleaving "granter removed, waiter withdrew,
//!   granter completed" leaves the grant in a slot nobody reads: the leak
//!   `tests/issue_lease_handoff.rs` reproduces on the real allocator.)

use std::sync::Arc as StdArc;

use super::{ResourceError, WaitSlot};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, thread};

#[test]
fn loom_a_completed_outcome_reaches_a_parked_waiter() {
    loom::model(|| {
        let slot = StdArc::new(WaitSlot::new());
        let s = slot.clone();
        let t = thread::spawn(move || s.complete(Ok(Vec::new())));
        slot.wait_until(None);
        assert!(matches!(slot.take(), Some(Ok(_))));
        assert!(slot.take().is_none(), "an outcome is taken once");
        t.join().unwrap();
        // A late second completion does not resurrect it.
        slot.complete(Err(ResourceError::Closed));
        assert!(slot.take().is_none());
    });
}

#[test]
fn loom_a_grant_racing_a_withdrawal_is_handled_once() {
    loom::model(|| {
        let slot = StdArc::new(WaitSlot::new());
        let table = Arc::new(Mutex::new(Some(slot.clone())));
        // How many times the grant was given back (by either side) or
        // returned to the waiter: must be exactly once.
        let handled = Arc::new(AtomicUsize::new(0));
        let (tb, h) = (table.clone(), handled.clone());
        let granter = thread::spawn(move || {
            let removed = tb.lock().take();
            match removed {
                Some(s) => s.complete(Ok(Vec::new())),
                // The waiter withdrew first: the grant is an orphan.
                None => {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // The waiter withdraws (`PendingLease::withdraw`).
        let removed = table.lock().take();
        match removed {
            Some(s) => {
                s.complete(Err(ResourceError::Closed));
                assert!(matches!(s.take(), Some(Err(_))));
            }
            None => {
                slot.wait_until(None);
                match slot.take() {
                    Some(Ok(_)) => {
                        handled.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("the grant was lost: {other:?}"),
                }
            }
        }
        granter.join().unwrap();
        assert_eq!(handled.load(Ordering::Relaxed), 1);
    });
}
