//! Regression: a resource grant racing with the waiter's cancel (or its wait
//! timing out, or its drop) must not leak the granted lease.
//!
//! The granting thread removes the waiter's slot from the allocator under the
//! lock and completes it just after unlocking. A waiter that withdrew in that
//! window found its slot gone (so "decided"), found no outcome in it yet, and
//! returned — the grant then landed in a slot nobody would read, and its
//! resources stayed allocated forever. Invariant checked here: after every
//! round, nothing is allocated and no lease is listed.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use pso_core::{Orchestrator, ResourceRequest, SystemSpec};

const ROUNDS: usize = 3_000;

fn race(withdraw: fn(pso_core::PendingLease)) {
    let o = Orchestrator::builder().workers(1).build().unwrap();
    o.register(SystemSpec::new("a")).unwrap();
    o.set_capacity("cpu", 1).unwrap();
    let req = ResourceRequest::new().amount("cpu", 1);
    let barrier = Arc::new(Barrier::new(2));
    for round in 0..ROUNDS {
        let held = o.allocate_resources("a", &req).unwrap();
        let pending = o.request_resources(&[("a", &req)]).unwrap();
        let b = barrier.clone();
        let releaser = std::thread::spawn(move || {
            b.wait();
            drop(held);
        });
        barrier.wait();
        withdraw(pending);
        releaser.join().unwrap();
        let st = o.resource_status();
        assert_eq!(
            st.dimension("cpu").unwrap().allocated,
            0,
            "round {round}: a lease leaked: {:?}",
            st.leases
        );
        assert!(
            st.leases.is_empty() && st.waiters.is_empty(),
            "round {round}"
        );
    }
    o.close();
}

#[test]
fn cancel_racing_a_grant_leaks_nothing() {
    race(|p| {
        let _ = p.cancel();
    });
}

#[test]
fn drop_racing_a_grant_leaks_nothing() {
    race(drop);
}

#[test]
fn timeout_racing_a_grant_leaks_nothing() {
    // A granted outcome is returned as a lease and dropped here.
    race(|p| drop(p.wait_timeout(Duration::ZERO)));
}
