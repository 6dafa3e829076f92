//! Resources through the orchestrator: leases, waiting and waking, typed
//! rejections, TTLs, preemption, gangs, status, optimize_resources, step
//! leases in workflows, and many threads at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pso_core::{
    ErrorKind, Orchestrator, Priority, PsoError, ResourceAction, ResourceError, ResourceRequest,
    RunState, StepSpec, SystemSpec, Value, Workflow,
};

fn orch(systems: &[&str]) -> Orchestrator {
    let o = Orchestrator::builder()
        .workers(2)
        .preemption_grace(Duration::from_millis(50))
        .idle_lease_after(Duration::from_millis(50))
        .resource_aging_step(Duration::from_millis(200))
        .build()
        .unwrap();
    for s in systems {
        o.register(SystemSpec::new(*s)).unwrap();
    }
    o
}

fn cpu(n: u64) -> ResourceRequest {
    ResourceRequest::new().amount("cpu", n)
}

fn free(o: &Orchestrator, dim: &str) -> u64 {
    o.resource_status().dimension(dim).unwrap().free
}

/// Polls `f` until it holds (bounded): for effects of other threads.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_lease_is_released_on_drop_and_by_release() {
    let o = orch(&["a"]);
    o.set_capacity("cpu", 8).unwrap();
    o.set_capacity("memory", 4096).unwrap();
    let l = o
        .allocate_resources("a", &cpu(3).amount("memory", 1024))
        .unwrap();
    assert_eq!(l.system(), "a");
    assert_eq!(
        l.id(),
        1,
        "lease ids are serial numbers (safe in JavaScript)"
    );
    assert!(l.is_held());
    assert_eq!(
        l.amounts(),
        vec![("cpu".to_owned(), 3), ("memory".to_owned(), 1024)]
    );
    assert_eq!((free(&o, "cpu"), free(&o, "memory")), (5, 3072));
    let held = &o.status("a").unwrap().resources_held;
    assert_eq!(held.get("cpu"), Some(&3));
    assert_eq!(held.get("memory"), Some(&1024));
    let st = o.resource_status();
    assert_eq!(st.leases.len(), 1);
    assert_eq!(st.leases[0].id, l.id());
    drop(l);
    assert_eq!((free(&o, "cpu"), free(&o, "memory")), (8, 4096));
    assert!(o.system_status()[0].resources_held.is_empty());
    let l = o.allocate_resources("a", &cpu(8)).unwrap();
    assert_eq!(l.id(), 2, "never reused");
    assert!(l.release());
    assert_eq!(free(&o, "cpu"), 8);
}

#[test]
fn rejections_are_typed_and_name_the_numbers() {
    let o = orch(&["a"]);
    o.set_capacity("memory", 1024).unwrap();
    let e = o
        .allocate_resources("a", &ResourceRequest::new().amount("memory", 2048))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExceedsCapacity);
    assert_eq!(
        e.to_string(),
        "a asks for 2048 memory, more than the whole capacity of 1024"
    );
    let e = o.allocate_resources("a", &cpu(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "unknown resource dimension 'cpu' (declared: memory)"
    );
    let e = o
        .allocate_resources("ghost", &ResourceRequest::new().amount("memory", 1))
        .unwrap_err();
    assert_eq!(
        e,
        ResourceError::UnknownSystem {
            system: "ghost".into()
        }
    );
    o.set_group_quota("batch", "memory", Some(256)).unwrap();
    let e = o
        .allocate_resources(
            "a",
            &ResourceRequest::new().amount("memory", 512).group("batch"),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExceedsQuota);
    assert!(
        e.to_string().contains("exceeds group batch's quota of 256"),
        "{e}"
    );
    assert_eq!(
        o.set_capacity("", 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        o.set_resource_weight("a", 0.0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(o.resource_status().leases.is_empty());
}

#[test]
fn a_waiter_is_woken_by_a_release_and_a_timeout_says_why_it_waited() {
    let o = orch(&["a", "b"]);
    o.set_capacity("memory", 2560).unwrap();
    let held = o
        .allocate_resources("a", &ResourceRequest::new().amount("memory", 2048))
        .unwrap();
    // Not waiting at all: an immediate answer.
    let e = o
        .allocate_resources(
            "b",
            &ResourceRequest::new()
                .amount("memory", 2048)
                .wait(Duration::ZERO),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("needs 2048 memory, 512 free"), "{e}");
    // A bounded wait that runs out.
    let t = Instant::now();
    let e = o
        .allocate_resources(
            "b",
            &ResourceRequest::new()
                .amount("memory", 2048)
                .wait(Duration::from_millis(50)),
        )
        .unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(e.to_string().starts_with("b waited"), "{e}");
    assert!(
        !e.to_string().contains("us "),
        "rounded to milliseconds: {e}"
    );
    assert!(
        o.resource_status().waiters.is_empty(),
        "a timed-out waiter is gone"
    );
    // A waiter on another thread is granted the moment the lease goes.
    let o2 = o.clone();
    let waiter = thread::spawn(move || {
        o2.allocate_resources("b", &ResourceRequest::new().amount("memory", 2048))
            .map(|l| l.id())
    });
    eventually("b waits", || o.resource_status().waiters.len() == 1);
    let w = &o.resource_status().waiters[0];
    assert_eq!(w.systems, ["b"]);
    assert_eq!(w.reason, "needs 2048 memory, 512 free");
    drop(held);
    assert!(waiter.join().unwrap().is_ok());
    assert_eq!(
        free(&o, "memory"),
        2560,
        "b's lease was dropped on its thread"
    );
}

#[test]
fn pending_requests_are_futures_and_can_be_cancelled() {
    let o = orch(&["a", "b"]);
    o.set_capacity("cpu", 1).unwrap();
    let held = o.allocate_resources("a", &cpu(1)).unwrap();
    let p = o.request_resources(&[("b", &cpu(1))]).unwrap();
    assert!(!p.is_ready());
    assert_eq!(o.resource_status().waiters.len(), 1);
    assert!(p.cancel());
    assert!(o.resource_status().waiters.is_empty());
    // Dropping a pending request withdraws it too.
    drop(o.request_resources(&[("b", &cpu(1))]).unwrap());
    assert!(o.resource_status().waiters.is_empty());
    // As a future: polled to completion by a tiny executor.
    let p = o.request_resources(&[("b", &cpu(1))]).unwrap();
    let o2 = o.clone();
    let releaser = thread::spawn(move || {
        eventually("b waits", || o2.resource_status().waiters.len() == 1);
        drop(held);
    });
    let leases = block_on(p).unwrap();
    releaser.join().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].system(), "b");
}

#[test]
fn gangs_are_all_or_nothing() {
    let o = orch(&["trainer", "loader", "other"]);
    o.set_capacity("gpu", 4).unwrap();
    o.set_capacity("cpu", 8).unwrap();
    let other = o
        .allocate_resources("other", &ResourceRequest::new().amount("gpu", 2))
        .unwrap();
    let t = ResourceRequest::new().amount("gpu", 2).amount("cpu", 2);
    let l = ResourceRequest::new().amount("gpu", 1).amount("cpu", 4);
    let p = o
        .request_resources(&[("trainer", &t), ("loader", &l)])
        .unwrap();
    thread::sleep(Duration::from_millis(20));
    let st = o.resource_status();
    assert_eq!(
        st.dimension("cpu").unwrap().allocated,
        0,
        "no part is held while the gang waits"
    );
    assert_eq!(st.waiters[0].systems, ["trainer", "loader"]);
    assert_eq!(st.waiters[0].reason, "needs 3 gpu, 2 free");
    drop(other);
    let leases = p.wait().unwrap();
    assert_eq!(
        leases.iter().map(|l| l.system()).collect::<Vec<_>>(),
        ["trainer", "loader"]
    );
    assert_eq!(free(&o, "gpu"), 1);
    assert_eq!(free(&o, "cpu"), 2);
    // A gang that could never fit together is rejected at once.
    let big = ResourceRequest::new().amount("gpu", 3);
    let e = o
        .allocate_gang(&[("trainer", &big), ("loader", &big)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ExceedsCapacity);
}

#[test]
fn a_ttl_revokes_the_lease_and_wakes_waiters() {
    let o = orch(&["a", "b"]);
    o.set_capacity("cpu", 1).unwrap();
    let l = o
        .allocate_resources("a", &cpu(1).ttl(Duration::from_millis(30)))
        .unwrap();
    assert!(l.expires_in().unwrap() <= Duration::from_millis(30));
    let t = Instant::now();
    let b = o.allocate_resources("b", &cpu(1)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert!(!l.is_held(), "expired");
    // A callback set on a lease already gone is dropped at once — even one
    // that owns a lease (its release takes the allocator's lock).
    o.set_capacity("mem", 10).unwrap();
    let other = o
        .allocate_resources("a", &ResourceRequest::new().amount("mem", 1))
        .unwrap();
    l.on_preempt(move |_| drop(other));
    assert_eq!(
        free(&o, "mem"),
        10,
        "the unused callback (and its lease) was dropped"
    );
    assert!(!l.release(), "releasing an expired lease does nothing");
    assert!(b.is_held());
    assert_eq!(free(&o, "cpu"), 0, "b's lease is not double-counted");
}

#[test]
fn a_higher_class_preempts_preemptible_holders_after_a_grace_period() {
    let o = orch(&["batch", "online"]);
    o.set_capacity("cpu", 4).unwrap();
    let lease = o
        .allocate_resources(
            "batch",
            &cpu(4).priority(Priority::Background).preemptible(true),
        )
        .unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    lease.on_preempt(move |notice| {
        let name = thread::current().name().unwrap_or("").to_owned();
        n.lock().unwrap().push((notice, name));
    });
    let t = Instant::now();
    let online = o
        .allocate_resources("online", &cpu(2).priority(Priority::High))
        .unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(40),
        "the grace period ({waited:?})"
    );
    let notices = notices.lock().unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].0.system, "batch");
    assert!(notices[0].0.grace <= Duration::from_millis(50));
    assert!(
        notices[0].1.starts_with("pso-worker"),
        "delivered on a worker, not in the requester's call ({})",
        notices[0].1
    );
    assert!(!lease.is_held());
    assert!(online.is_held());
    assert_eq!(free(&o, "cpu"), 2);
}

#[test]
fn status_lists_leases_and_waiters_in_policy_order_with_reasons() {
    let o = orch(&["a", "b", "c"]);
    o.set_capacity("memory", 2560).unwrap();
    let _held = o
        .allocate_resources(
            "a",
            &ResourceRequest::new()
                .amount("memory", 2048)
                .ttl(Duration::from_secs(60)),
        )
        .unwrap();
    let high = o
        .request_resources(&[(
            "b",
            &ResourceRequest::new()
                .amount("memory", 1024)
                .priority(Priority::High),
        )])
        .unwrap();
    let normal = o
        .request_resources(&[("c", &ResourceRequest::new().amount("memory", 2048))])
        .unwrap();
    let st = o.resource_status();
    assert_eq!(st.waiters.len(), 2);
    assert_eq!(st.waiters[0].systems, ["b"]);
    assert_eq!(
        st.waiters[1].reason,
        "needs 2048 memory, 512 free; 1 request ahead"
    );
    assert_eq!(st.leases[0].ttl_remaining.map(|d| d.as_secs()), Some(59));
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(json["dimensions"][0]["free"], 512);
    assert_eq!(json["leases"][0]["system"], "a");
    assert_eq!(json["waiters"][1]["priority"], "normal");
    drop((high, normal));
    assert!(o.resource_status().waiters.is_empty());
}

#[test]
fn optimize_resources_plans_then_reclaims_idle_leases() {
    let o = orch(&["a", "b"]);
    o.set_capacity("cpu", 4).unwrap();
    let idle = o.allocate_resources("a", &cpu(2)).unwrap();
    let busy = o.allocate_resources("b", &cpu(1)).unwrap();
    thread::sleep(Duration::from_millis(60));
    busy.touch();
    let plan = o.optimize_resources(false).unwrap();
    assert!(!plan.applied);
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    assert!(
        matches!(&plan.actions[0], ResourceAction::ReclaimIdle { system, .. } if system == "a")
    );
    assert!(idle.is_held(), "a dry run changes nothing");
    let plan = o.optimize_resources(true).unwrap();
    assert!(plan.applied);
    assert!(!idle.is_held());
    assert!(busy.is_held());
    assert_eq!(free(&o, "cpu"), 3);
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(json["actions"][0]["action"], "reclaim_idle");
}

#[test]
fn optimize_resources_grows_a_concurrency_limit_that_makes_steps_wait() {
    let o = orch(&["svc"]);
    o.set_operation("svc", "work", |_| {
        thread::sleep(Duration::from_millis(5));
        Ok(Value::Null)
    })
    .unwrap();
    o.set_concurrency_limit("svc", Some(1)).unwrap();
    o.activate_system("svc").unwrap();
    let mut b = Workflow::builder("w");
    for i in 0..6 {
        b = b.step(StepSpec::op(format!("s{i}"), "svc", "work"));
    }
    let wf = b.build(&o).unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.state(), RunState::Succeeded);
    let plan = o.optimize_resources(true).unwrap();
    let resize = plan
        .actions
        .iter()
        .find_map(|a| match a {
            ResourceAction::ResizeConcurrency {
                system,
                from,
                to,
                reason,
            } => Some((system.clone(), *from, *to, reason.clone())),
            _ => None,
        })
        .expect("a resize");
    assert_eq!((resize.0.as_str(), resize.1, resize.2), ("svc", 1, 2));
    assert!(resize.3.contains("waited a mean of"), "{}", resize.3);
    // Applied: the measurements start over, so nothing more is proposed.
    assert!(o.optimize_resources(false).unwrap().actions.is_empty());
}

#[test]
fn workflow_steps_lease_only_while_they_run() {
    let o = orch(&["gpu-svc", "prep"]);
    o.set_capacity("gpu", 2).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    o.set_operation("gpu-svc", "train", move |_| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(10));
        r.fetch_sub(1, Ordering::SeqCst);
        Ok(Value::Null)
    })
    .unwrap();
    let o2 = o.clone();
    o.set_operation("prep", "load", move |_| {
        // Downstream steps wait on this one: they must hold nothing yet.
        assert_eq!(o2.resource_status().dimension("gpu").unwrap().allocated, 0);
        Ok(Value::Null)
    })
    .unwrap();
    o.set_step_resources("gpu-svc", Some(ResourceRequest::new().amount("gpu", 1)))
        .unwrap();
    o.activate_all().unwrap();
    let mut b = Workflow::builder("train").step(StepSpec::op("load", "prep", "load"));
    for i in 0..6 {
        b = b.step(StepSpec::op(format!("t{i}"), "gpu-svc", "train").after("load"));
    }
    let wf = b.build(&o).unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.state(), RunState::Succeeded, "{r:?}");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "two gpus, two steps at a time"
    );
    assert_eq!(free(&o, "gpu"), 2, "every lease returned");
}

#[test]
fn a_step_whose_lease_is_rejected_fails_and_a_failing_step_returns_its_lease() {
    let o = orch(&["svc"]);
    o.set_capacity("cpu", 2).unwrap();
    o.set_operation("svc", "boom", |_| {
        Err(pso_core::HandlerError::failed("boom"))
    })
    .unwrap();
    o.activate_system("svc").unwrap();
    o.set_step_resources("svc", Some(cpu(2))).unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("a", "svc", "boom"))
        .build(&o)
        .unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    assert_eq!(r.state(), RunState::Failed);
    assert_eq!(free(&o, "cpu"), 2);
    o.set_step_resources("svc", Some(cpu(3))).unwrap();
    let r = o.coordinate_systems(&wf).unwrap().wait();
    let err = r.step("a").unwrap().error.unwrap();
    assert!(err.contains("more than the whole capacity of 2"), "{err}");
}

#[test]
fn cancelling_a_run_withdraws_its_parked_steps() {
    let o = orch(&["svc", "hog"]);
    o.set_capacity("cpu", 1).unwrap();
    o.set_operation("svc", "work", |_| Ok(Value::Null)).unwrap();
    o.activate_system("svc").unwrap();
    o.set_step_resources("svc", Some(cpu(1))).unwrap();
    let hog = o.allocate_resources("hog", &cpu(1)).unwrap();
    let wf = Workflow::builder("w")
        .step(StepSpec::op("a", "svc", "work"))
        .step(StepSpec::op("b", "svc", "work"))
        .build(&o)
        .unwrap();
    let run = o.coordinate_systems(&wf).unwrap();
    eventually("both steps wait", || o.resource_status().waiters.len() == 2);
    run.cancel();
    let r = run.wait();
    assert_eq!(r.state(), RunState::Cancelled);
    assert!(o.resource_status().waiters.is_empty());
    drop(hog);
    assert_eq!(free(&o, "cpu"), 1);
}

#[test]
fn many_threads_allocating_and_releasing_balance_at_the_end() {
    let o = orch(&["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]);
    o.set_capacity("cpu", 10).unwrap();
    o.set_capacity("memory", 100).unwrap();
    o.set_group_quota("g", "memory", Some(40)).unwrap();
    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let o = o.clone();
            let granted = granted.clone();
            thread::spawn(move || {
                let mut rng = t as u64 * 7919 + 1;
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for _ in 0..200 {
                    let mut req = ResourceRequest::new()
                        .amount("cpu", 1 + next() % 4)
                        .amount("memory", 1 + next() % 30)
                        .priority(Priority::ALL[(next() % 5) as usize]);
                    if next() % 3 == 0 {
                        req = req.group("g");
                    }
                    if next() % 4 == 0 {
                        req = req.wait(Duration::from_micros(next() % 500));
                    }
                    let sys = format!("s{}", next() % 8);
                    if let Ok(l) = o.allocate_resources(&sys, &req) {
                        granted.fetch_add(1, Ordering::Relaxed);
                        let st = o.resource_status();
                        assert!(st.dimensions.iter().all(|d| d.allocated <= d.capacity));
                        thread::sleep(Duration::from_micros(next() % 300));
                        drop(l);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(granted.load(Ordering::Relaxed) > 800);
    let st = o.resource_status();
    assert!(st.leases.is_empty() && st.waiters.is_empty());
    assert!(st.dimensions.iter().all(|d| d.allocated == 0));
    assert!(st.groups.iter().all(|g| g.allocated.is_empty()));
}

#[test]
fn closing_rejects_waiters_and_new_requests() {
    let o = orch(&["a", "b"]);
    o.set_capacity("cpu", 1).unwrap();
    let held = o.allocate_resources("a", &cpu(1)).unwrap();
    let o2 = o.clone();
    let waiter = thread::spawn(move || o2.allocate_resources("b", &cpu(1)).map(|_| ()));
    eventually("b waits", || o.resource_status().waiters.len() == 1);
    o.close();
    assert_eq!(
        waiter.join().unwrap().unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        o.allocate_resources("a", &cpu(1)).unwrap_err().kind(),
        ErrorKind::Closed
    );
    drop(held); // still releasable after close
}

/// A minimal executor for one future (no runtime dependency).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}
