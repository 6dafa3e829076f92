//! The lease exports (`pso_lease_*`) and preemption callbacks implemented in
//! C.
//!
//! A `pso_lease` names a [`LeaseCell`] in the lease table
//! ([`crate::handle::LEASES`]). Every call but the release runs one core
//! [`pso_core::Lease`] getter under the cell's lock; `pso_lease_release`
//! retires the handle, takes the lease out of the cell and gives it back to
//! the allocator with nothing locked (a release can grant waiters and fire
//! preemption callbacks, which may call back into PSO with any handle).
//!
//! # Preemption callbacks
//! `pso_lease_on_preempt` installs a core callback that owns the C
//! `user_data` (through [`UserData`], as for lifecycle handlers). The core
//! drops it exactly once: replaced by another `pso_lease_on_preempt`, after
//! it fired, or with the lease (released, expired, or revoked). Its `Drop`
//! calls `free_user_data`. When it fired, the free is made at once after the
//! C callback returns ([`frees_now`]: the allocator delivers notices with no
//! lock held); anywhere else inside an export it waits for the end of that
//! export, like every other free.

use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use pso_core::PreemptNotice;

use super::args::{opt_out, out};
use super::handlers::{UserData, frees_now, in_c_callback, owned_user_data, pso_free_fn};
use super::serialize_error;
use crate::error::pso_status;
use crate::handle::{LEASES, pso_lease};

/// What the holder of a preempted lease is told (see `pso_lease_on_preempt`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pso_preempt_notice {
    /// The lease id (as `pso_lease_id` and the `id` of the leases in
    /// `pso_resource_status`).
    pub lease: u64,
    /// The holding system. Owned by PSO, valid only during the callback.
    pub system: *const c_char,
    /// Milliseconds left (rounded down) before the lease is revoked and its
    /// resources go to the request that preempted it. 0 for a rebalance by
    /// `pso_optimize_resources` with `apply`, which revokes at once.
    pub grace_ms: u64,
}

/// A preemption callback: the lease it was installed on is being revoked.
///
/// Called at most once per `pso_lease_on_preempt`, with the `user_data`
/// given there and the notice (valid only during the call). It runs on the
/// thread that caused the preemption, with no PSO lock held: a PSO timer
/// thread (aging), a workflow worker (a step's lease), or the thread of the
/// `pso_` call that did (`pso_allocate_resources` or `pso_allocate_gang` of
/// a higher class, `pso_lease_release` or `pso_set_capacity` letting a
/// waiter in, `pso_optimize_resources` with `apply`), inside that call. So it
/// must not wait for anything that thread may hold; keep it short (set a
/// flag, release the lease). It may call PSO functions, including
/// `pso_lease_release` on its own lease, which hands the resources over at
/// once instead of at the end of the grace period.
#[allow(non_camel_case_types)]
pub type pso_preempt_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, notice: *const pso_preempt_notice)>;

type RawPreemptFn = unsafe extern "C" fn(*mut c_void, *const pso_preempt_notice);

/// Calls the C callback with the notice: lease `lease` of `system`, revoked
/// in `grace`.
fn notify(f: RawPreemptFn, ud: &UserData, lease: u64, system: &str, grace: Duration) {
    // A system name never contains NUL (names are validated at registration);
    // if one did, C would see the part before it.
    let system = CString::new(system).unwrap_or_else(|e| {
        let cut = e.nul_position();
        let mut bytes = e.into_vec();
        bytes.truncate(cut);
        CString::new(bytes).unwrap_or_default()
    });
    let c_notice = pso_preempt_notice {
        lease,
        system: system.as_ptr(),
        grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
    };
    in_c_callback(|| {
        // SAFETY: `f` is a non-null callback given to `pso_lease_on_preempt`,
        // whose contract makes it callable on any thread with this
        // `user_data` (kept alive by `ud` until after this call). `c_notice`
        // and the string it points to outlive the call.
        unsafe { f(ud.ptr(), &c_notice) }
    });
}

/// The lease id of `l` in `*out`: a serial number, unique among the leases
/// of its orchestrator, never reused, below 2^53; the `id` of this lease in `pso_resource_status`
/// and in preemption notices. (The handle's own `id` field is something
/// else.) Also for a lease that expired or was preempted.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE` (released).
///
/// # Safety
/// `out` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_lease_id(l: pso_lease, out: *mut u64) -> pso_status {
    ffi_boundary!(pso_lease_id, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable for the call.
        let mut out = unsafe { out!(call, out, 0)? };
        out.set(call.with_lease(l, |lease| lease.id())?);
        Ok(())
    })
}

/// The lease as JSON in `*json` (free it with `pso_string_free`):
/// `{"id": n, "system": "...", "amounts": {"cpu": 2, ...}, "held": true,
/// "expires_in_ms": n | null}`. `amounts` is `{}` and `held` false once the
/// lease expired or was preempted; `expires_in_ms` (rounded down) is null
/// without a TTL.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE` (released).
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_lease_info(l: pso_lease, json: *mut *mut c_char) -> pso_status {
    ffi_boundary!(pso_lease_info, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable for the call.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let info = call.with_lease(l, |lease| {
            let held = lease.is_held();
            let amounts: serde_json::Map<String, serde_json::Value> = lease
                .amounts()
                .into_iter()
                .map(|(d, a)| (d, a.into()))
                .collect();
            serde_json::json!({
                "id": lease.id(),
                "system": lease.system(),
                "amounts": amounts,
                "held": held,
                "expires_in_ms": lease
                    .expires_in()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        })?;
        let text = serde_json::to_string(&info).map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// Whether the lease is still held, in `*out`: 0 once it expired (TTL) or was
/// preempted (the handle stays valid until `pso_lease_release`).
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`out`), `PSO_ERR_STALE_HANDLE` (released).
///
/// # Safety
/// `out` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_lease_held(l: pso_lease, out: *mut bool) -> pso_status {
    ffi_boundary!(pso_lease_held, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable for the call.
        let mut out = unsafe { out!(call, out, false)? };
        out.set(call.with_lease(l, |lease| lease.is_held())?);
        Ok(())
    })
}

/// Marks the lease as in use now: `pso_optimize_resources` proposes
/// reclaiming leases untouched for longer than `idle_lease_after_ms`. Does
/// nothing (and succeeds) for a lease no longer held.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` (released).
#[unsafe(no_mangle)]
pub extern "C" fn pso_lease_touch(l: pso_lease) -> pso_status {
    ffi_boundary!(pso_lease_touch, |call| {
        call.with_lease(l, |lease| lease.touch())
    })
}

/// Sets (replaces) the callback told when this lease is chosen for
/// preemption (a request of a higher class needs its resources; only
/// `preemptible` leases are). It is called once, with the grace period left
/// before the lease is revoked; see `pso_preempt_fn` for the thread it runs
/// on. `func` NULL removes the callback.
///
/// Ownership of `user_data`: on `PSO_OK`, PSO owns it and calls
/// `free_user_data(user_data)` (if not NULL) exactly once, never while
/// `func` runs: right after `func` returns when it fired; when the callback
/// is replaced or removed by another `pso_lease_on_preempt` (before that
/// call returns); or when the lease goes without the callback firing —
/// released (before `pso_lease_release` returns), expired, or already gone
/// when this function is called (before it returns). With `func` NULL it is
/// called before this function returns. It may run on any thread. On any
/// error, PSO does not take `user_data` and never calls `free_user_data`.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` (released).
///
/// # Safety
/// `func` is NULL or a function with the `pso_preempt_fn` signature,
/// callable from any thread with `user_data` until `free_user_data` runs (or
/// for the lease's lifetime, when it is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_lease_on_preempt(
    l: pso_lease,
    func: pso_preempt_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> pso_status {
    ffi_boundary!(pso_lease_on_preempt, |call| {
        let cell = call.lease(l)?;
        let (ud, ownership) = owned_user_data(user_data, free_user_data);
        let installed = match func {
            Some(f) => cell.with(move |lease| {
                lease.on_preempt(move |notice: PreemptNotice| {
                    notify(f, &ud, notice.lease, &notice.system, notice.grace);
                    // Fired: the callback is done with `user_data`, and no PSO
                    // lock is held where notices are delivered.
                    frees_now(move || drop::<Arc<UserData>>(ud));
                });
            }),
            None => {
                drop(ud);
                cell.with(|lease| lease.on_preempt(|_| {}))
            }
        };
        // Released by another thread since the lookup: the callback was
        // dropped unused and `ownership`, dropped uncommitted, gives
        // `user_data` back to the caller.
        installed.ok_or_else(|| call.stale(l))?;
        ownership.commit();
        Ok(())
    })
}

/// Releases the lease (its resources go to the waiters that now fit, at
/// once) and retires the handle: further calls with it (or any copy) return
/// `PSO_ERR_STALE_HANDLE`. Succeeds also for a lease that had already expired
/// or been preempted; `*was_held` (nullable) then receives 0, and 1 if this
/// call gave the resources back (the `bool` that `release()` returns in the
/// other languages). Works after the orchestrator was closed.
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if the handle was already released (double
/// release) or never issued.
///
/// # Safety
/// `was_held` is NULL or points to a writable `bool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_lease_release(l: pso_lease, was_held: *mut bool) -> pso_status {
    ffi_boundary!(pso_lease_release, |call| {
        // SAFETY: per `# Safety`, `was_held` is NULL or writable for the call.
        let was_held = unsafe { opt_out!(call, was_held, false) };
        let cell = LEASES.remove(l).ok_or_else(|| call.stale(l))?;
        // Only this call removed the handle, so only it takes the lease; the
        // release runs unlocked (it may fire callbacks that call back in).
        let held = cell.take().is_some_and(|lease| lease.release());
        if let Some(mut was_held) = was_held {
            was_held.set(held);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::args::Call;
    use crate::ffi::resources::{pso_allocate_resources, pso_set_capacity};
    use crate::ffi::{pso_orchestrator_close, pso_orchestrator_new, pso_register_system};
    use crate::handle::pso_orchestrator;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An orchestrator with system "a" and 4 cpu, and one lease of 1 cpu.
    fn one_lease() -> (pso_orchestrator, pso_lease) {
        let mut o = pso_orchestrator::default();
        let mut l = pso_lease::default();
        // SAFETY: valid out-pointers and C strings.
        unsafe {
            assert_eq!(
                pso_orchestrator_new(ptr::null(), &mut o),
                pso_status::PSO_OK
            );
            assert_eq!(
                pso_register_system(o, c"a".as_ptr(), ptr::null(), ptr::null()),
                pso_status::PSO_OK
            );
            assert_eq!(pso_set_capacity(o, c"cpu".as_ptr(), 4), pso_status::PSO_OK);
            assert_eq!(
                pso_allocate_resources(
                    o,
                    c"a".as_ptr(),
                    c"{\"amounts\": {\"cpu\": 1}}".as_ptr(),
                    &mut l
                ),
                pso_status::PSO_OK
            );
        }
        (o, l)
    }

    #[test]
    fn a_lease_released_between_lookup_and_use_is_stale_and_released_once() {
        let (o, l) = one_lease();
        // Another thread's call looked the cell up; then this release ran.
        let cell = Call::new("pso_test").lease(l).unwrap();
        let mut was = false;
        // SAFETY: valid out-pointer.
        let st = unsafe { pso_lease_release(l, &mut was) };
        assert_eq!(st, pso_status::PSO_OK);
        assert!(was);
        assert!(cell.with(|lease| lease.id()).is_none(), "taken");
        let e = Call::new("pso_test").with_lease(l, |_| ()).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_STALE_HANDLE);
        assert!(
            cell.take().is_none(),
            "the lease is taken (and released) once"
        );
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
    }

    #[test]
    fn an_on_preempt_that_loses_the_race_with_a_release_gives_user_data_back() {
        let (o, l) = one_lease();
        let n = AtomicUsize::new(0);
        let p = &n as *const AtomicUsize as *mut c_void;
        // Released after this call found the cell: the callback is dropped
        // unused, the call fails, and user_data stays the caller's.
        let cell = Call::new("pso_test").lease(l).unwrap();
        drop(cell.take());
        // SAFETY: `count` and `count_free` accept `p`, which outlives the call.
        let st = unsafe { pso_lease_on_preempt(l, Some(count), p, Some(count_free)) };
        assert_eq!(st, pso_status::PSO_ERR_STALE_HANDLE);
        assert_eq!(n.load(Ordering::SeqCst), 0, "not freed: not taken");
        // SAFETY: NULL is allowed for `was_held`.
        let st = unsafe { pso_lease_release(l, ptr::null_mut()) };
        assert_eq!(st, pso_status::PSO_OK);
        assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
    }

    #[test]
    fn concurrent_releases_and_reads_release_exactly_once() {
        for _ in 0..50 {
            let (o, l) = one_lease();
            let released = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        let mut held = false;
                        // SAFETY: valid out-pointer.
                        let st = unsafe { pso_lease_held(l, &mut held) };
                        assert!(st == pso_status::PSO_OK || st == pso_status::PSO_ERR_STALE_HANDLE);
                        let mut was = false;
                        // SAFETY: valid out-pointer.
                        match unsafe { pso_lease_release(l, &mut was) } {
                            pso_status::PSO_OK => {
                                assert!(was);
                                released.fetch_add(1, Ordering::SeqCst);
                            }
                            st => assert_eq!(st, pso_status::PSO_ERR_STALE_HANDLE),
                        }
                    });
                }
            });
            assert_eq!(released.into_inner(), 1);
            assert_eq!(pso_orchestrator_close(o), pso_status::PSO_OK);
        }
    }

    unsafe extern "C" fn count(p: *mut c_void, notice: *const pso_preempt_notice) {
        // SAFETY: the test passes a live AtomicUsize and PSO a valid notice.
        let (n, notice) = unsafe { (&*(p as *const AtomicUsize), &*notice) };
        // SAFETY: the notice's string is valid during the call.
        let system = unsafe { std::ffi::CStr::from_ptr(notice.system) };
        assert_eq!(system.to_str().unwrap(), "batch");
        assert_eq!(notice.grace_ms, 1500);
        n.fetch_add(10, Ordering::SeqCst);
    }

    unsafe extern "C" fn count_free(p: *mut c_void) {
        // SAFETY: the test passes a live AtomicUsize.
        let n = unsafe { &*(p as *const AtomicUsize) };
        n.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_notice_reaches_c_and_the_free_runs_right_after_even_inside_an_export() {
        let n = AtomicUsize::new(0);
        let p = &n as *const AtomicUsize as *mut c_void;
        let (ud, own) = owned_user_data(p, Some(count_free));
        own.commit();
        // As the closure installed by pso_lease_on_preempt does, inside an
        // export (where other frees wait for its end).
        let seen = super::super::handlers::deferring_frees(|| {
            notify(count, &ud, 7, "batch", Duration::from_micros(1_500_999));
            frees_now(move || drop(ud));
            n.load(Ordering::SeqCst)
        });
        assert_eq!(seen, 11, "called, then freed before the export ended");
        assert_eq!(n.load(Ordering::SeqCst), 11, "freed once");
    }
}
