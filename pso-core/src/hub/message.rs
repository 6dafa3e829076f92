//! The message handle shared by every receiver of one publish.
//!
//! A publish allocates one `Arc<Inner>`; each matching subscription's queue
//! holds a clone of the handle, never a copy of the payload. The topic is
//! shared too: the message keeps the publish's cached match set, which owns
//! the topic text (one reference count per publish instead of two). A request's
//! message also carries the requester's reply slot. When the last handle of a
//! request is dropped, nobody can answer it any more, so the drop tells the
//! slot (see [`super::request`]): the requester stops waiting at once.

#![forbid(unsafe_code)]

use std::fmt;

use super::request::ReplySlot;
use super::{HubError, SubMatches};
use crate::sync::Arc;
use crate::value::Value;

/// A message delivered by the hub: a topic, a payload, the sending system if
/// the publisher named one, and, for a request, a way to reply.
///
/// Cloning is cheap (a reference count); every subscriber of one publish sees
/// the same payload.
#[derive(Clone)]
pub struct Message(Arc<Inner>);

struct Inner {
    route: Arc<SubMatches>,
    payload: Value,
    sender: Option<Arc<str>>,
    reply: Option<Arc<ReplySlot>>,
    /// The sender's interned id, or [`NO_SENDER`].
    sender_id: u32,
    /// When it was published, in the hub metrics' ns, if its latency is
    /// sampled (else 0).
    sent: u64,
}

/// `sender_id` of a message without a (known) sender id.
pub(crate) const NO_SENDER: u32 = u32::MAX;

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(slot) = self.reply.take() {
            slot.abandon();
        }
    }
}

impl Message {
    pub(crate) fn new(
        route: Arc<SubMatches>,
        payload: Value,
        sender: Option<Arc<str>>,
        reply: Option<Arc<ReplySlot>>,
    ) -> Message {
        Self::stamped(route, payload, sender, reply, NO_SENDER, 0)
    }

    /// A published message: with its sender's id and its sample stamp.
    pub(crate) fn stamped(
        route: Arc<SubMatches>,
        payload: Value,
        sender: Option<Arc<str>>,
        reply: Option<Arc<ReplySlot>>,
        sender_id: u32,
        sent: u64,
    ) -> Message {
        Message(Arc::new(Inner {
            route,
            payload,
            sender,
            reply,
            sender_id,
            sent,
        }))
    }

    /// The sender's interned id, if the publisher named one.
    pub(crate) fn sender_id(&self) -> Option<u32> {
        (self.0.sender_id != NO_SENDER).then_some(self.0.sender_id)
    }

    /// The sample stamp (0: not sampled).
    pub(crate) fn sent(&self) -> u64 {
        self.0.sent
    }

    /// A message on `topic` outside any publish (tests).
    #[cfg(test)]
    pub(crate) fn detached(topic: &str, payload: Value) -> Message {
        Message::new(Arc::new(SubMatches::empty(topic)), payload, None, None)
    }

    /// The match set it was published with (owns the topic).
    pub(crate) fn route(&self) -> &Arc<SubMatches> {
        &self.0.route
    }

    /// The topic it was published to.
    pub fn topic(&self) -> &str {
        &self.0.route.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Value {
        &self.0.payload
    }

    /// The system that published it, if the publisher named one.
    pub fn sender(&self) -> Option<&str> {
        self.0.sender.as_deref()
    }

    /// Whether it is a request (so [`Message::reply`] can answer it).
    pub fn is_request(&self) -> bool {
        self.0.reply.is_some()
    }

    /// Answers a request. The reply goes straight to the requester, without
    /// routing. Returns whether the requester took it: `false` once it has
    /// its answer (a single request takes the first reply), gave up (timeout)
    /// or gathered enough replies.
    ///
    /// # Errors
    /// [`HubError::NotARequest`] if the message is not a request.
    ///
    /// # Examples
    /// ```
    /// use pso_core::{Hub, HubConfig, Value};
    /// use std::time::Duration;
    /// let hub = Hub::new(HubConfig::new().workers(1))?;
    /// let _svc = hub.subscribe("math.double", |m| {
    ///     let n = m.payload().as_int().unwrap_or(0);
    ///     let _ = m.reply(n * 2)?;
    ///     Ok(())
    /// })?;
    /// let answer = hub.request("math.double", 21, Duration::from_secs(5))?;
    /// assert_eq!(answer.payload(), &Value::Int(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply(&self, payload: impl Into<Value>) -> Result<bool, HubError> {
        self.reply_as(None, payload)
    }

    /// Like [`Message::reply`], naming the replying system.
    ///
    /// # Errors
    /// [`HubError::NotARequest`] if the message is not a request.
    pub fn reply_from(&self, system: &str, payload: impl Into<Value>) -> Result<bool, HubError> {
        self.reply_as(Some(system.into()), payload)
    }

    fn reply_as(
        &self,
        sender: Option<Arc<str>>,
        payload: impl Into<Value>,
    ) -> Result<bool, HubError> {
        let Some(slot) = &self.0.reply else {
            return Err(HubError::NotARequest {
                topic: self.topic().to_owned(),
            });
        };
        let reply = Message::new(self.0.route.clone(), payload.into(), sender, None);
        Ok(slot.deliver(reply))
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("payload", self.payload())
            .field("sender", &self.sender())
            .field("request", &self.is_request())
            .finish()
    }
}
