//! The `Message` class (pso-core `hub/message.rs`): what subscribers and
//! requesters receive. It wraps the core message (shared, never copied);
//! `payload` is converted to a fresh JS value on each read.

use napi::Env;
use napi::bindgen_prelude::Unknown;
use napi_derive::napi;
use pso_core::Message;

use crate::hub::hub_error;
use crate::orchestrator::guard;
use crate::value;

/// A message on the hub: `topic`, `payload`, `sender`, `isRequest`, and
/// `reply(payload)` for requests.
#[napi(js_name = "Message")]
pub struct JsMessage {
    inner: Message,
}

impl std::fmt::Debug for JsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.inner.topic())
            .finish_non_exhaustive()
    }
}

impl JsMessage {
    pub(crate) fn new(inner: Message) -> Self {
        JsMessage { inner }
    }
}

#[napi]
impl JsMessage {
    /// The topic it was published on.
    #[napi(getter)]
    pub fn topic(&self) -> String {
        self.inner.topic().to_owned()
    }

    /// The payload, as a fresh JS value.
    #[napi(getter, ts_return_type = "Value")]
    pub fn payload<'e>(&self, env: &'e Env) -> napi::Result<Unknown<'e>> {
        value::to_js(env, self.inner.payload())
    }

    /// The sending system, if the publisher named one.
    #[napi(getter)]
    pub fn sender(&self) -> Option<String> {
        self.inner.sender().map(str::to_owned)
    }

    /// Whether it is a request (it can be replied to).
    #[napi(getter)]
    pub fn is_request(&self) -> bool {
        self.inner.is_request()
    }

    /// Replies to a request. Returns false if the requester no longer waits
    /// (it timed out or already has its replies). `PSO_INVALID_ARGUMENT` if
    /// it is not a request or the payload cannot be carried.
    #[napi(ts_args_type = "payload: ValueInput")]
    pub fn reply(&self, env: &Env, payload: Unknown<'_>) -> napi::Result<bool> {
        guard(env, || {
            let v = crate::hub::payload(env, payload, "the reply")?;
            self.inner.reply(v).map_err(|e| hub_error(env, &e))
        })
    }

    /// `"Message(topic)"`.
    #[napi(js_name = "toString")]
    pub fn to_string_js(&self) -> String {
        format!("Message({})", self.inner.topic())
    }
}
