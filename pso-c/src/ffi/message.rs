//! Hub messages handed to C subscription callbacks, and their accessors.
//!
//! A `pso_message_fn` gets a `const pso_message *` that, like a
//! `pso_step_ctx`, is a *key* (from the same process-wide counter,
//! [`super::ops::next_key`]) and never a pointer into Rust memory. While the
//! callback runs, a [`Frame`] with that key sits on a thread-local stack of
//! the thread running it; the frame owns a clone of the core [`Message`] (a
//! reference count) and the C strings handed out for it. When the callback
//! returns, the frame is removed (also on unwind). So a message used after its
//! callback returned, or from another thread, finds no frame and gives
//! `PSO_ERR_STALE_HANDLE`: it is never dereferenced.
//!
//! It is a stack because a callback that waits on a worker thread (a
//! `pso_request`, a `pso_publish` blocked by a full queue) may run other
//! subscriptions' callbacks on that thread meanwhile (the core helps instead
//! of blocking the worker).

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_void};
use std::ptr;
use std::sync::Arc;

use pso_core::{HandlerError, Message};

use super::args::{Call, c_str, json_arg, out};
use super::handlers::{
    Ownership, UserData, in_c_callback, owned_user_data, pso_free_fn, status_error,
};
use super::ops::next_key;
use super::serialize_error;
use crate::error::{Failure, pso_status};

/// A message delivered to a subscription callback. Opaque: use it only
/// through the `pso_message_*` functions, only on the thread running the
/// callback, and only until the callback returns (afterwards, or on another
/// thread, those functions give `PSO_ERR_STALE_HANDLE`; it is a key, never
/// dereferenced, so this is never undefined behaviour).
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct pso_message {
    _opaque: [u8; 0],
}

/// A subscription callback (`pso_subscribe`): returns 0 on success.
///
/// Called on a PSO worker thread with the message `m` and the `user_data`
/// given to `pso_subscribe`. Per subscription, calls come one at a time, in
/// publish order; different subscriptions' callbacks run in parallel. While
/// it runs it may call `pso_message_topic`, `pso_message_sender`,
/// `pso_message_payload`, `pso_message_is_request` and `pso_message_reply`
/// with `m`, on this thread, and any other PSO function (publishing
/// included). A non-zero return is counted as a failure (`errors` in
/// `pso_hub_subscriptions`); delivery goes on.
#[allow(non_camel_case_types)]
pub type pso_message_fn =
    Option<unsafe extern "C" fn(m: *const pso_message, user_data: *mut c_void) -> i32>;

pub(crate) type RawMessageFn = unsafe extern "C" fn(*const pso_message, *mut c_void) -> i32;

/// One running callback's message.
struct Frame {
    key: usize,
    msg: Message,
    topic: Option<CString>,
    sender: Option<CString>,
}

thread_local! {
    /// The frames of the callbacks running on this thread, innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Removes the frame `key` from this thread's stack when dropped (also if
/// the code around the callback unwinds).
struct PopFrame(usize);

impl Drop for PopFrame {
    fn drop(&mut self) {
        drop(remove_frame(self.0));
    }
}

fn remove_frame(key: usize) -> Option<Frame> {
    FRAMES
        .try_with(|frames| {
            let mut frames = frames.try_borrow_mut().ok()?;
            let i = frames.iter().rposition(|f| f.key == key)?;
            Some(frames.remove(i))
        })
        .ok()
        .flatten()
}

/// The core callback that calls `f` with `user_data`, and the ownership of
/// `user_data` to commit once the subscription exists.
pub(crate) fn c_subscriber(
    f: RawMessageFn,
    user_data: *mut c_void,
    free_user_data: pso_free_fn,
) -> (
    impl FnMut(&Message) -> Result<(), HandlerError> + Send + 'static,
    Ownership,
) {
    let (ud, ownership) = owned_user_data(user_data, free_user_data);
    let callback = move |m: &Message| invoke(f, &ud, m);
    (callback, ownership)
}

fn invoke(f: RawMessageFn, ud: &Arc<UserData>, msg: &Message) -> Result<(), HandlerError> {
    let key = next_key();
    let frame = Frame {
        key,
        msg: msg.clone(),
        topic: None,
        sender: None,
    };
    let pushed = FRAMES
        .try_with(|frames| {
            frames
                .try_borrow_mut()
                .map(|mut frames| frames.push(frame))
                .is_ok()
        })
        .unwrap_or(false);
    if !pushed {
        return Err(HandlerError::failed(
            "PSO could not set up the message (thread-local storage unavailable)",
        ));
    }
    let pop = PopFrame(key);
    let rc = in_c_callback(|| {
        // SAFETY: `f` is a non-null callback given to `pso_subscribe`, whose
        // contract makes it callable on any thread with this `user_data`
        // (kept alive by `ud`: the subscription's closure holds it). The
        // message is a key, which C never dereferences.
        unsafe { f(ptr::without_provenance(key), ud.ptr()) }
    });
    drop(pop);
    if rc == 0 {
        Ok(())
    } else {
        Err(status_error(rc, String::new()))
    }
}

/// The key of a message argument, or `PSO_ERR_NULL_POINTER`.
fn message_key(call: Call, m: *const pso_message) -> Result<usize, Failure> {
    if m.is_null() {
        return Err(call.null("m"));
    }
    Ok(m.addr())
}

/// Runs `f` on the frame `key` of this thread, or fails with
/// `PSO_ERR_STALE_HANDLE` if there is none (the callback returned, or this is
/// another thread).
fn with_frame<R>(
    call: Call,
    m: *const pso_message,
    f: impl FnOnce(&mut Frame) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let key = message_key(call, m)?;
    let stale = || {
        call.fail(
            pso_status::PSO_ERR_STALE_HANDLE,
            format_args!(
                "message {key:#x} is stale: its callback has returned, or it is used on another \
                 thread than the one running its callback"
            ),
        )
    };
    FRAMES
        .try_with(|frames| {
            let mut frames = frames.try_borrow_mut().map_err(|_| {
                call.fail(
                    pso_status::PSO_ERR_INTERNAL,
                    "the messages of this thread are in use",
                )
            })?;
            let frame = frames
                .iter_mut()
                .rev()
                .find(|fr| fr.key == key)
                .ok_or_else(stale)?;
            f(frame)
        })
        .unwrap_or_else(|_| Err(stale()))
}

/// A C copy of `text` (a topic or system name, which never contain NUL;
/// if one did, C would see the part before it).
fn c_text(text: &str) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let cut = e.nul_position();
        let mut bytes = e.into_vec();
        bytes.truncate(cut);
        CString::new(bytes).unwrap_or_default()
    })
}

/// `m` as the JSON object C receives from `pso_subscription_recv`,
/// `pso_request` and `pso_request_many`: `{"topic", "payload", "sender",
/// "is_request"}`, in that order.
pub(crate) fn message_json(call: Call, m: &Message) -> Result<String, Failure> {
    let topic = serde_json::to_string(m.topic()).map_err(|e| serialize_error(call, e))?;
    let sender = serde_json::to_string(&m.sender()).map_err(|e| serialize_error(call, e))?;
    Ok(format!(
        "{{\"topic\":{topic},\"payload\":{},\"sender\":{sender},\"is_request\":{}}}",
        m.payload().to_json(),
        m.is_request()
    ))
}

/// The message's topic (the published one, not the pattern). Owned by PSO,
/// valid until the callback returns.
///
/// Returns NULL if `m` is NULL or stale; `pso_last_error_message()` then
/// says why. Like status-returning calls, it clears the last error on
/// success.
#[unsafe(no_mangle)]
pub extern "C" fn pso_message_topic(m: *const pso_message) -> *const c_char {
    ffi_boundary!(pso_message_topic, or = ptr::null(), |call| {
        with_frame(call, m, |frame| {
            let topic = frame.topic.get_or_insert_with(|| c_text(frame.msg.topic()));
            Ok(topic.as_ptr())
        })
    })
}

/// The system the publisher named as sender (`sender` of `pso_publish`), or
/// NULL if it named none. Owned by PSO, valid until the callback returns.
///
/// Also returns NULL if `m` is NULL or stale; `pso_last_error_message()` is
/// then set (it is `""` when NULL only means "no sender").
#[unsafe(no_mangle)]
pub extern "C" fn pso_message_sender(m: *const pso_message) -> *const c_char {
    ffi_boundary!(pso_message_sender, or = ptr::null(), |call| {
        with_frame(call, m, |frame| {
            let Some(sender) = frame.msg.sender().map(c_text) else {
                return Ok(ptr::null());
            };
            Ok(frame.sender.get_or_insert(sender).as_ptr())
        })
    })
}

/// The payload as JSON text in `*json`; free it with `pso_string_free` (it
/// stays valid after the callback returns).
///
/// # Errors
/// `PSO_ERR_NULL_POINTER` (`m`, `json`), `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_message_payload(
    m: *const pso_message,
    json: *mut *mut c_char,
) -> pso_status {
    ffi_boundary!(pso_message_payload, |call| {
        // SAFETY: per `# Safety`, `json` is NULL or writable for the call.
        let mut json = unsafe { out!(call, json, ptr::null_mut())? };
        let text = with_frame(call, m, |frame| Ok(frame.msg.payload().to_json()))?;
        json.set(call.c_string(text)?);
        Ok(())
    })
}

/// 1 if the message is a request (`pso_request`; answer it with
/// `pso_message_reply`), 0 if it is a plain publish.
///
/// Also returns 0 if `m` is NULL or stale, with the reason in
/// `pso_last_error_message()`; it clears the last error otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn pso_message_is_request(m: *const pso_message) -> i32 {
    ffi_boundary!(pso_message_is_request, or = 0, |call| {
        with_frame(call, m, |frame| Ok(i32::from(frame.msg.is_request())))
    })
}

/// Answers a request with the payload `json` (parsed and copied now). The
/// reply goes straight to the requester, without routing. Succeeds also when
/// the requester no longer takes it (it already has its answer from another
/// subscriber, or gave up).
///
/// # Errors
/// `PSO_ERR_INVALID_ARGUMENT` if the message is not a request;
/// `PSO_ERR_PARSE` if `json` is not JSON (the message has the line and
/// column); `PSO_ERR_NULL_POINTER` (`m`, `json`), `PSO_ERR_INVALID_UTF8`,
/// `PSO_ERR_STALE_HANDLE`.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pso_message_reply(
    m: *const pso_message,
    json: *const c_char,
) -> pso_status {
    ffi_boundary!(pso_message_reply, |call| {
        message_key(call, m)?;
        // SAFETY: per `# Safety`, `json` is NULL or a valid C string for the
        // whole call.
        let json = unsafe { c_str!(call, json)? };
        let value = json_arg!(call, json)?;
        // The reply is delivered outside the frame borrow: a requester that
        // runs on this thread's pool could, in principle, run callbacks here.
        let msg = with_frame(call, m, |frame| Ok(frame.msg.clone()))?;
        msg.reply(value)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pso_core::{Hub, HubConfig, Value};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn last_error() -> String {
        crate::error::last_error()
    }

    #[test]
    fn null_and_unknown_messages_are_refused() {
        assert!(pso_message_topic(ptr::null()).is_null());
        assert_eq!(last_error(), "pso_message_topic: argument 'm' is NULL");
        let unknown: *const pso_message = ptr::without_provenance(next_key());
        assert!(pso_message_topic(unknown).is_null());
        assert!(last_error().contains("is stale"), "{}", last_error());
        assert_eq!(pso_message_is_request(unknown), 0);
        assert!(last_error().contains("is stale"));
        // SAFETY: a valid C string.
        let st = unsafe { pso_message_reply(unknown, c"1".as_ptr()) };
        assert_eq!(st, pso_status::PSO_ERR_STALE_HANDLE);
    }

    /// What the test callback saw, kept for checks on the test thread.
    #[derive(Default)]
    struct Seen {
        keys: Mutex<Vec<usize>>,
        topics: Mutex<Vec<String>>,
        calls: AtomicUsize,
        freed: AtomicUsize,
    }

    unsafe extern "C" fn record(m: *const pso_message, ud: *mut c_void) -> i32 {
        // SAFETY: the test passes a live `Seen`.
        let seen = unsafe { &*(ud as *const Seen) };
        seen.keys.lock().unwrap().push(m.addr());
        let t = pso_message_topic(m);
        // SAFETY: a live frame's topic is a valid C string until we return.
        let topic = unsafe { std::ffi::CStr::from_ptr(t) };
        seen.topics
            .lock()
            .unwrap()
            .push(topic.to_str().unwrap().to_owned());
        // The sender is NULL without an error when there is none.
        assert!(pso_message_sender(m).is_null());
        assert_eq!(last_error(), "");
        if pso_message_is_request(m) == 1 {
            // SAFETY: a valid C string.
            let st = unsafe { pso_message_reply(m, c"{\"ok\": true}".as_ptr()) };
            assert_eq!(st, pso_status::PSO_OK);
        }
        seen.calls.fetch_add(1, Ordering::SeqCst);
        7
    }

    unsafe extern "C" fn count_free(ud: *mut c_void) {
        // SAFETY: the test passes a live `Seen`.
        let seen = unsafe { &*(ud as *const Seen) };
        seen.freed.fetch_add(1, Ordering::SeqCst);
    }

    /// A message kept past its callback is stale on every thread, and the
    /// non-zero return is counted as an error, not a panic.
    #[test]
    fn a_message_is_stale_after_its_callback_and_failures_are_counted() {
        let hub = Hub::new(HubConfig::new().workers(1)).unwrap();
        let seen = Seen::default();
        let p = &seen as *const Seen as *mut c_void;
        let (cb, own) = c_subscriber(record, p, Some(count_free));
        own.commit();
        let sub = hub.subscribe("t.*", cb).unwrap();
        hub.publish("t.a", 1).unwrap();
        let reply = hub
            .request("t.b", Value::Null, Duration::from_secs(10))
            .unwrap();
        assert_eq!(reply.payload().to_json(), r#"{"ok":true}"#);
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while seen.calls.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < end);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*seen.topics.lock().unwrap(), ["t.a", "t.b"]);
        let keys = seen.keys.lock().unwrap().clone();
        assert_ne!(keys[0], keys[1], "each call gets its own key");
        for k in keys {
            let m: *const pso_message = ptr::without_provenance(k);
            assert!(pso_message_topic(m).is_null());
            assert!(last_error().contains("is stale"));
            let mut json = ptr::null_mut();
            // SAFETY: a valid out-pointer.
            let st = unsafe { pso_message_payload(m, &mut json) };
            assert_eq!(st, pso_status::PSO_ERR_STALE_HANDLE);
            assert!(json.is_null());
        }
        let status = sub.status();
        assert_eq!((status.errors, status.panics), (2, 0));
        assert_eq!(seen.freed.load(Ordering::SeqCst), 0);
        sub.unsubscribe();
        assert_eq!(seen.freed.load(Ordering::SeqCst), 1, "freed once");
        hub.close();
        assert_eq!(seen.freed.load(Ordering::SeqCst), 1);
    }

    /// Nested callbacks on one thread (a callback that waits and helps run
    /// other mailboxes) find their own frames; the inner one's frame is gone
    /// after it returns while the outer one's stays.
    #[test]
    fn nested_frames_are_found_by_key() {
        let msg = |t: &str| {
            let hub = Hub::new(HubConfig::new().workers(1)).unwrap();
            let sub = hub.subscribe_pull(t).unwrap();
            hub.publish(t, Value::from(t)).unwrap();
            sub.recv_timeout(Duration::from_secs(5)).unwrap()
        };
        let (outer, inner) = (next_key(), next_key());
        FRAMES.with(|f| {
            f.borrow_mut().push(Frame {
                key: outer,
                msg: msg("outer"),
                topic: None,
                sender: None,
            });
            f.borrow_mut().push(Frame {
                key: inner,
                msg: msg("inner"),
                topic: None,
                sender: None,
            });
        });
        let topic = |k: usize| {
            let p = pso_message_topic(ptr::without_provenance(k));
            // SAFETY: a live frame's topic is a valid C string while it lives.
            (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_owned())
        };
        assert_eq!(topic(outer).unwrap().to_str().unwrap(), "outer");
        assert_eq!(topic(inner).unwrap().to_str().unwrap(), "inner");
        drop(PopFrame(inner));
        assert!(topic(inner).is_none());
        assert_eq!(topic(outer).unwrap().to_str().unwrap(), "outer");
        drop(PopFrame(outer));
        assert!(topic(outer).is_none());
        FRAMES.with(|f| assert!(f.borrow().is_empty()));
    }

    #[test]
    fn a_frame_is_removed_when_the_code_around_the_callback_unwinds() {
        let key = next_key();
        let r = std::panic::catch_unwind(|| {
            let hub = Hub::new(HubConfig::new().workers(1)).unwrap();
            let sub = hub.subscribe_pull("x").unwrap();
            hub.publish("x", 1).unwrap();
            let m = sub.recv_timeout(Duration::from_secs(5)).unwrap();
            FRAMES.with(|f| {
                f.borrow_mut().push(Frame {
                    key,
                    msg: m,
                    topic: None,
                    sender: None,
                })
            });
            let _pop = PopFrame(key);
            panic!("unwinding past the frame");
        });
        assert!(r.is_err());
        assert!(remove_frame(key).is_none());
    }

    #[test]
    fn message_json_has_every_field() {
        let hub = Hub::new(HubConfig::new().workers(1)).unwrap();
        let sub = hub.subscribe_pull("a.>").unwrap();
        hub.publish_from("PAES", "a.b.c", Value::from(vec![1u8, 2]))
            .unwrap();
        let m = sub.recv_timeout(Duration::from_secs(5)).unwrap();
        let text = message_json(Call::new("pso_test"), &m).unwrap();
        assert_eq!(
            text,
            r#"{"topic":"a.b.c","payload":[1,2],"sender":"PAES","is_request":false}"#
        );
    }
}
