//! The hub exports: publish, subscribe (callback or pull), receive,
//! unsubscribe, request/reply and the subscription status. Direct channels
//! and meshes are in `super::direct`; the message accessors of callbacks in
//! `super::message`.
//!
//! A `pso_subscription` names a [`SubCell`]: the core [`Subscription`] and a
//! clone of its [`Hub`]. `pso_unsubscribe` retires the handle and ends the
//! subscription through the hub (by id), so a receive blocked on another
//! thread wakes at once with `PSO_ERR_CLOSED` instead of keeping it alive;
//! the cell itself goes when the last call using it returns. Callbacks own
//! their `user_data` through [`super::handlers::UserData`]: the core drops a
//! callback only when no invocation of it runs, which frees `user_data` then.

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use pso_core::{Gather, Hub, HubError, Overflow, SubscribeOptions, Subscription};

use super::args::{Call, Wait, c_str, json_arg, opt_c_str, opt_out, opt_ref, out, required};
use super::handlers::pso_free_fn;
use super::message::{c_subscriber, message_json, pso_message_fn};
use super::serialize_error;
use crate::error::{Failure, pso_status};
use crate::handle::{SUBSCRIPTIONS, pso_orchestrator, pso_subscription};

/// Overflow policies of a subscription queue (`pso_subscribe_options.overflow`
/// and `pso_options.hub_overflow`, both `uint32_t`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pso_overflow {
    /// The hub's default policy (`pso_options.hub_overflow`; unless set
    /// there: `PSO_OVERFLOW_BLOCK` with a 1 s timeout).
    PSO_OVERFLOW_DEFAULT = 0,
    /// The publisher waits for room up to the block timeout, then gets
    /// `PSO_ERR_OVERFLOW` (the message is not queued for that subscription).
    PSO_OVERFLOW_BLOCK = 1,
    /// The oldest queued message is dropped to make room.
    PSO_OVERFLOW_DROP_OLDEST = 2,
    /// The new message is dropped.
    PSO_OVERFLOW_DROP_NEWEST = 3,
    /// The new message is refused: the publisher gets `PSO_ERR_OVERFLOW`
    /// (other subscriptions still got it).
    PSO_OVERFLOW_ERROR = 4,
}

/// Options of one subscription, for `pso_subscribe` and `pso_subscribe_pull`.
/// Zero (or NULL) means "the default" for every field, so
/// `pso_subscribe_options opts = {0};` (or passing NULL) gives the hub's
/// defaults.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pso_subscribe_options {
    /// Queue capacity (messages). 0: the hub's (`pso_options.hub_queue_capacity`,
    /// else 1024).
    pub capacity: usize,
    /// A `pso_overflow` value: what a publish does when the queue is full.
    pub overflow: u32,
    /// For `PSO_OVERFLOW_BLOCK`: how long a publisher waits for room, in
    /// milliseconds. 0: 1000. Must be 0 with any other policy.
    pub block_timeout_ms: u64,
    /// Queue group (nullable): each message matching any member of a group
    /// goes to one member only. Not empty.
    pub group: *const c_char,
    /// The receiving system (nullable): names the drop alert topic
    /// (`pso.alert.<owner>.dropped`) and the receiving end of edge rates.
    pub owner: *const c_char,
}

/// The core policy of a `pso_overflow` value and block timeout (`None`: the
/// default). `what` names the fields in messages.
pub(crate) fn overflow_policy(
    call: Call,
    what: (&str, &str),
    overflow: u32,
    block_timeout_ms: u64,
) -> Result<Option<Overflow>, Failure> {
    use pso_overflow::*;
    let policy = match overflow {
        o if o == PSO_OVERFLOW_DEFAULT as u32 => None,
        o if o == PSO_OVERFLOW_BLOCK as u32 => Some(Overflow::Block(Duration::from_millis(
            if block_timeout_ms == 0 {
                1000
            } else {
                block_timeout_ms
            },
        ))),
        o if o == PSO_OVERFLOW_DROP_OLDEST as u32 => Some(Overflow::DropOldest),
        o if o == PSO_OVERFLOW_DROP_NEWEST as u32 => Some(Overflow::DropNewest),
        o if o == PSO_OVERFLOW_ERROR as u32 => Some(Overflow::Error),
        other => {
            return Err(call.fail(
                pso_status::PSO_ERR_INVALID_ARGUMENT,
                format_args!(
                    "unknown overflow policy {other} in '{}' (expected PSO_OVERFLOW_DEFAULT (0), \
                     PSO_OVERFLOW_BLOCK (1), PSO_OVERFLOW_DROP_OLDEST (2), \
                     PSO_OVERFLOW_DROP_NEWEST (3) or PSO_OVERFLOW_ERROR (4))",
                    what.0
                ),
            ));
        }
    };
    if block_timeout_ms != 0 && !matches!(policy, Some(Overflow::Block(_))) {
        return Err(call.fail(
            pso_status::PSO_ERR_INVALID_ARGUMENT,
            format_args!(
                "'{}' is {block_timeout_ms} but '{}' is not PSO_OVERFLOW_BLOCK (a block timeout \
                 only applies to that policy)",
                what.1, what.0
            ),
        ));
    }
    Ok(policy)
}

/// The core options of a (nullable) `pso_subscribe_options`.
///
/// # Safety
/// `group` and `owner` of `opts` are NULL or NUL-terminated strings, valid
/// during the call.
unsafe fn subscribe_options(
    call: Call,
    opts: Option<&pso_subscribe_options>,
) -> Result<SubscribeOptions, Failure> {
    let mut options = SubscribeOptions::new();
    let Some(opts) = opts else {
        return Ok(options);
    };
    if opts.capacity != 0 {
        options = options.capacity(opts.capacity);
    }
    if let Some(p) = overflow_policy(
        call,
        ("opts->overflow", "opts->block_timeout_ms"),
        opts.overflow,
        opts.block_timeout_ms,
    )? {
        options = options.overflow(p);
    }
    // SAFETY: forwarded from this function's contract.
    let (group, owner) = unsafe {
        (
            call.opt_str("opts->group", opts.group)?,
            call.opt_str("opts->owner", opts.owner)?,
        )
    };
    if let Some(group) = group {
        options = options.queue_group(group);
    }
    if let Some(owner) = owner {
        options = options.owner(owner);
    }
    Ok(options)
}

/// The value behind a `pso_subscription`.
#[derive(Debug)]
pub(crate) struct SubCell {
    sub: Subscription,
    hub: Hub,
}

/// Stores a new subscription and sets `*out`, or fails with `PSO_ERR_BUSY`
/// (unsubscribing it) if 2^32 subscription handles are live.
fn store(
    call: Call,
    sub: Subscription,
    hub: &Hub,
    out: &mut super::args::Out<'_, pso_subscription>,
) -> Result<(), Failure> {
    match SUBSCRIPTIONS.insert(Arc::new(SubCell {
        sub,
        hub: hub.clone(),
    })) {
        Ok(h) => {
            out.set(h);
            Ok(())
        }
        Err(cell) => {
            drop(cell);
            Err(call.fail(
                pso_status::PSO_ERR_BUSY,
                "too many subscription handles are live (2^32)",
            ))
        }
    }
}

/// Publishes the payload `json` to `topic` (dot-separated tokens, no
/// wildcards). `sender` (nullable) names the publishing system: receivers
/// see it (`pso_message_sender`) and the message counts on the edge from it
/// to each receiving subscription's `owner` (`pso_coordination_status`).
/// `*delivered` (nullable) receives the number of subscriptions that queued
/// it (0 if nobody listens: not an error). A full queue is handled by its
/// subscription's overflow policy; under `PSO_OVERFLOW_BLOCK` this call
/// waits up to the block timeout.
///
/// # Errors
/// `PSO_ERR_OVERFLOW` if a subscription with the `error` policy (or `block`,
/// after its timeout) refused it — the others still got it, and
/// `*delivered` counts them; `PSO_ERR_INVALID_ARGUMENT` (a bad topic: the
/// message names the token), `PSO_ERR_PARSE` (`json` is not JSON; line and
/// column), `PSO_ERR_NULL_POINTER` (`topic`, `json`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `topic`, `json` and `sender` are NULL or NUL-terminated strings;
/// `delivered` is NULL or points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_publish(
    o: pso_orchestrator,
    topic: *const c_char,
    json: *const c_char,
    sender: *const c_char,
    delivered: *mut usize,
) -> pso_status {
    ffi_boundary!(pso_publish, |call| {
        // SAFETY: per `# Safety`, `delivered` is NULL or writable and the
        // strings are NULL or valid C strings, for the whole call.
        let (delivered, topic, json, sender) = unsafe {
            (
                opt_out!(call, delivered, 0),
                c_str!(call, topic)?,
                c_str!(call, json)?,
                opt_c_str!(call, sender)?,
            )
        };
        let value = json_arg!(call, json)?;
        let orch = call.orchestrator(o)?;
        let hub = orch.hub();
        let result = match sender {
            Some(s) => hub.publish_from(s, topic, value),
            None => hub.publish(topic, value),
        };
        let n = match &result {
            Ok(n) => *n,
            Err(HubError::Overflow { delivered, .. }) => *delivered,
            Err(_) => 0,
        };
        if let Some(mut delivered) = delivered {
            delivered.set(n);
        }
        result?;
        Ok(())
    })
}

/// Subscribes the callback `func` to `pattern` (dot-separated tokens; `*`
/// matches one token, `>` the rest and must be last). `func` runs on PSO
/// worker threads, one message at a time per subscription, in publish order
/// (see `pso_message_fn`). `opts` (nullable) sets the queue and its
/// overflow policy, a queue group and the owning system. On success `*out`
/// is the subscription; end it with `pso_unsubscribe`.
///
/// Ownership of `user_data`: on `PSO_OK`, PSO owns it and calls
/// `free_user_data(user_data)` (if not NULL) exactly once, on any thread,
/// when no call of `func` runs any more: after `pso_unsubscribe` (before it
/// returns, unless `func` is running then: right after that call returns),
/// or when the orchestrator is closed (before `pso_orchestrator_close`
/// returns). On any error PSO does not take `user_data` and never calls
/// `free_user_data`.
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` (a bad pattern: the message names the token;
/// an unknown overflow value; a block timeout without `PSO_OVERFLOW_BLOCK`;
/// an empty group), `PSO_ERR_NULL_POINTER` (`pattern`, `func`, `out`),
/// `PSO_ERR_INVALID_UTF8` (`pattern`, `opts->group`, `opts->owner`),
/// `PSO_ERR_STALE_HANDLE`, `PSO_ERR_CLOSED`.
///
/// # Safety
/// `pattern` is NULL or a NUL-terminated string; `opts` is NULL or points to
/// a readable `pso_subscribe_options` whose strings are NULL or
/// NUL-terminated; `out` is NULL or points to a writable `pso_subscription`.
/// `func` is NULL or a function with the `pso_message_fn` signature,
/// callable from any thread with `user_data` until `free_user_data` runs (or
/// until the subscription ended, when it is NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_subscribe(
    o: pso_orchestrator,
    pattern: *const c_char,
    opts: *const pso_subscribe_options,
    func: pso_message_fn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
    out: *mut pso_subscription,
) -> pso_status {
    ffi_boundary!(pso_subscribe, |call| {
        // SAFETY: per `# Safety`, `out` is NULL or writable, `pattern` NULL or
        // a valid C string, and `opts` NULL or readable with valid strings,
        // for the whole call.
        let (mut out, pattern, opts) = unsafe {
            (
                out!(call, out, pso_subscription::default())?,
                c_str!(call, pattern)?,
                opt_ref!(call, opts),
            )
        };
        // SAFETY: as above.
        let options = unsafe { subscribe_options(call, opts)? };
        let func = required!(call, func)?;
        let orch = call.orchestrator(o)?;
        let (callback, ownership) = c_subscriber(func, user_data, free_user_data);
        // On error (or a panic) `ownership` is dropped uncommitted, which
        // disarms `free_user_data` before the callback goes away.
        let sub = orch.hub().subscribe_with(pattern, options, callback)?;
        // From here on a callback may have run: PSO keeps `user_data` even in
        // the (2^32 live handles) failure below, which unsubscribes.
        ownership.commit();
        store(call, sub, orch.hub(), &mut out)
    })
}

/// Subscribes a pull receiver to `pattern` (see `pso_subscribe` for
/// patterns and `opts`): messages wait in its queue until
/// `pso_subscription_recv` takes them. On success `*out` is the subscription;
/// end it with `pso_unsubscribe`.
///
/// # Errors
/// As `pso_subscribe` (without `func`).
///
/// # Safety
/// As `pso_subscribe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_subscribe_pull(
    o: pso_orchestrator,
    pattern: *const c_char,
    opts: *const pso_subscribe_options,
    out: *mut pso_subscription,
) -> pso_status {
    ffi_boundary!(pso_subscribe_pull, |call| {
        // SAFETY: per `# Safety`, as in `pso_subscribe`.
        let (mut out, pattern, opts) = unsafe {
            (
                out!(call, out, pso_subscription::default())?,
                c_str!(call, pattern)?,
                opt_ref!(call, opts),
            )
        };
        // SAFETY: as above.
        let options = unsafe { subscribe_options(call, opts)? };
        let orch = call.orchestrator(o)?;
        let sub = orch.hub().subscribe_pull_with(pattern, options)?;
        store(call, sub, orch.hub(), &mut out)
    })
}

/// Takes the next message of a pull subscription, waiting up to
/// `timeout_ms` milliseconds (0: do not wait; `PSO_WAIT_FOREVER`: no limit),
/// and puts it in `*message_json` (free it with `pso_string_free`):
/// `{"topic": "...", "payload": <JSON>, "sender": "..." | null,
/// "is_request": false}`. A request received this way cannot be answered
/// from C (`is_request` is true; its requester gets `PSO_ERR_NO_RESPONDERS`
/// once every receiver dropped it): answer requests with a callback
/// subscription.
///
/// # Errors
/// `PSO_ERR_TIMEOUT` when no message came in time; `PSO_ERR_CLOSED` once it
/// was unsubscribed (also by `pso_unsubscribe` on another thread during the
/// wait) or its orchestrator closed, and drained; `PSO_ERR_INVALID_ARGUMENT`
/// on a callback subscription; `PSO_ERR_NULL_POINTER` (`message_json`),
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `message_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_subscription_recv(
    s: pso_subscription,
    timeout_ms: u64,
    message_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_subscription_recv, |call| {
        // SAFETY: per `# Safety`, `message_json` is NULL or writable.
        let mut message_json = unsafe { out!(call, message_json, ptr::null_mut())? };
        let cell = SUBSCRIPTIONS.get(s).ok_or_else(|| call.stale(s))?;
        let msg = match Wait::from_ms(timeout_ms) {
            Wait::Now => cell.sub.try_recv()?.ok_or_else(|| {
                call.fail(
                    pso_status::PSO_ERR_TIMEOUT,
                    format_args!(
                        "nothing queued for subscription {} ('{}')",
                        cell.sub.id(),
                        cell.sub.pattern()
                    ),
                )
            })?,
            Wait::For(d) => cell.sub.recv_timeout(d)?,
            Wait::Forever => cell.sub.recv()?,
        };
        message_json.set(call.c_string(super::message::message_json(call, &msg)?)?);
        Ok(())
    })
}

/// Ends a subscription and retires its handle: further calls with it (or any
/// copy) give `PSO_ERR_STALE_HANDLE`. Nothing more is queued or delivered;
/// queued messages are dropped; a `pso_subscription_recv` waiting on another
/// thread returns `PSO_ERR_CLOSED`. A callback that is running finishes, and
/// `free_user_data` runs after it (at once when none runs). It may be called
/// from inside the subscription's own callback. Works after the orchestrator
/// was closed (the subscription had ended then).
///
/// # Errors
/// `PSO_ERR_STALE_HANDLE` if already unsubscribed (or never issued).
#[unsafe(no_mangle)]
pub extern "C" fn pso_unsubscribe(s: pso_subscription) -> pso_status {
    ffi_boundary!(pso_unsubscribe, |call| {
        let cell = SUBSCRIPTIONS.remove(s).ok_or_else(|| call.stale(s))?;
        cell.hub.unsubscribe(cell.sub.id());
        drop(cell);
        Ok(())
    })
}

/// Sends the request `json` to `topic` and waits up to `timeout_ms`
/// milliseconds for the first reply (`PSO_WAIT_FOREVER`: 100 years), which
/// goes to `*reply_json` (free it with `pso_string_free`) as a message
/// object: `{"topic", "payload", "sender", "is_request": false}` (the reply's
/// payload is `payload`).
///
/// # Errors
/// `PSO_ERR_NO_RESPONDERS` at once if no subscription matches `topic` (or as
/// soon as every receiver dropped it without replying); `PSO_ERR_TIMEOUT` if
/// subscriptions got it but none replied in time; `PSO_ERR_OVERFLOW` if no
/// subscription could queue it; `PSO_ERR_INVALID_ARGUMENT` (bad topic),
/// `PSO_ERR_PARSE` (`json`), `PSO_ERR_NULL_POINTER` (`topic`, `json`,
/// `reply_json`), `PSO_ERR_INVALID_UTF8`, `PSO_ERR_STALE_HANDLE`,
/// `PSO_ERR_CLOSED`.
///
/// # Safety
/// `topic` and `json` are NULL or NUL-terminated strings; `reply_json` is
/// NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_request(
    o: pso_orchestrator,
    topic: *const c_char,
    json: *const c_char,
    timeout_ms: u64,
    reply_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_request, |call| {
        // SAFETY: per `# Safety`, `reply_json` is NULL or writable and the
        // strings NULL or valid C strings, for the whole call.
        let (mut reply_json, topic, json) = unsafe {
            (
                out!(call, reply_json, ptr::null_mut())?,
                c_str!(call, topic)?,
                c_str!(call, json)?,
            )
        };
        let value = json_arg!(call, json)?;
        let orch = call.orchestrator(o)?;
        let reply = orch
            .hub()
            .request(topic, value, Wait::from_ms(timeout_ms).duration())?;
        reply_json.set(call.c_string(message_json(call, &reply)?)?);
        Ok(())
    })
}

/// Sends the request `json` to `topic` and gathers replies: until
/// `timeout_ms` passed, or `max` replies came (0: no limit), or no reply came
/// for `quiet_ms` after the latest one (0: no such limit), whichever is
/// first. `*replies_json` (free it with `pso_string_free`) is a JSON array
/// of message objects as for `pso_request`, in arrival order; reaching the
/// timeout is not an error (the array may be empty).
///
/// # Errors
/// `PSO_ERR_NO_RESPONDERS` at once if no subscription matches (or every
/// receiver dropped it without replying); otherwise as `pso_request`.
///
/// # Safety
/// As `pso_request` (`replies_json` for `reply_json`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_request_many(
    o: pso_orchestrator,
    topic: *const c_char,
    json: *const c_char,
    timeout_ms: u64,
    max: usize,
    quiet_ms: u64,
    replies_json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_request_many, |call| {
        // SAFETY: per `# Safety`, `replies_json` is NULL or writable and the
        // strings NULL or valid C strings, for the whole call.
        let (mut replies_json, topic, json) = unsafe {
            (
                out!(call, replies_json, ptr::null_mut())?,
                c_str!(call, topic)?,
                c_str!(call, json)?,
            )
        };
        let value = json_arg!(call, json)?;
        let orch = call.orchestrator(o)?;
        let mut gather = Gather::new(Wait::from_ms(timeout_ms).duration());
        if max != 0 {
            gather = gather.max(max);
        }
        if quiet_ms != 0 {
            gather = gather.quiet(Wait::from_ms(quiet_ms).duration());
        }
        let replies = orch.hub().request_many(topic, value, gather)?;
        let mut text = String::from("[");
        for (i, r) in replies.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&message_json(call, r)?);
        }
        text.push(']');
        replies_json.set(call.c_string(text)?);
        Ok(())
    })
}

/// The status of every live subscription, by id, as a JSON array in `*json`
/// (free it with `pso_string_free`). Each element: `id`, `pattern`, `group`,
/// `owner`, `kind` (`callback` or `pull`), `queue_len`, `capacity`, `policy`
/// (`block(1s)`, `drop_oldest`, `drop_newest`, `error`), `delivered`,
/// `dropped` (every message the overflow policy dropped or refused),
/// `panics`, `errors` (callbacks that returned non-zero), `closed`.
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_hub_subscriptions(
    o: pso_orchestrator,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_hub_subscriptions, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let orch = call.orchestrator(o)?;
        let text = serde_json::to_string(&orch.hub().subscriptions())
            .map_err(|e| serialize_error(call, e))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_values_are_validated() {
        let call = Call::new("pso_test");
        let w = ("o", "t");
        assert_eq!(overflow_policy(call, w, 0, 0).unwrap(), None);
        assert_eq!(
            overflow_policy(call, w, 1, 0).unwrap(),
            Some(Overflow::Block(Duration::from_secs(1)))
        );
        assert_eq!(
            overflow_policy(call, w, 1, 20).unwrap(),
            Some(Overflow::Block(Duration::from_millis(20)))
        );
        assert_eq!(
            overflow_policy(call, w, 2, 0).unwrap(),
            Some(Overflow::DropOldest)
        );
        assert_eq!(
            overflow_policy(call, w, 3, 0).unwrap(),
            Some(Overflow::DropNewest)
        );
        assert_eq!(
            overflow_policy(call, w, 4, 0).unwrap(),
            Some(Overflow::Error)
        );
        let e = overflow_policy(call, w, 5, 0).unwrap_err();
        assert_eq!(e.status, pso_status::PSO_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("unknown overflow policy 5 in 'o'"));
        for p in [0, 2, 3, 4] {
            let e = overflow_policy(call, w, p, 5).unwrap_err();
            assert!(
                e.message
                    .contains("'t' is 5 but 'o' is not PSO_OVERFLOW_BLOCK")
            );
        }
    }
}
