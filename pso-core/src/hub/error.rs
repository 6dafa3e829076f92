//! The hub's error type and its mapping to [`ErrorKind`].

#![forbid(unsafe_code)]

use std::time::Duration;

use thiserror::Error;

use super::SubscriptionId;
use crate::error::{ErrorKind, PsoError};

/// Why a hub operation failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum HubError {
    /// A topic or pattern is malformed; names the bad token.
    #[error("invalid {syntax} '{input}': {reason} (token {index}: '{token}')")]
    InvalidTopic {
        /// `topic` or `pattern`.
        syntax: &'static str,
        /// The whole input.
        input: String,
        /// The bad token.
        token: String,
        /// Its position (0-based).
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request matched no subscription.
    #[error("no responders for '{topic}'")]
    NoResponders {
        /// The request's topic.
        topic: String,
    },
    /// Every receiver of a request dropped it without replying.
    #[error("request on '{topic}' was dropped by all {receivers} receiver(s) without a reply")]
    Unanswered {
        /// The request's topic.
        topic: String,
        /// How many subscriptions received it.
        receivers: usize,
    },
    /// A deadline passed (request, receive).
    #[error("nothing on '{topic}' within {}", humantime::format_duration(*after))]
    Timeout {
        /// The topic, pattern or channel waited on.
        topic: String,
        /// The timeout.
        after: Duration,
    },
    /// A subscription's full queue refused the message (`error` policy, or
    /// `block` timed out). Other subscriptions may have received it.
    #[error(
        "subscription {subscription} ('{pattern}') is full ({capacity}): message on '{topic}' {} ({delivered} other subscription(s) received it)",
        if *timed_out { "not queued within the block timeout" } else { "refused" }
    )]
    Overflow {
        /// The published topic.
        topic: String,
        /// The refusing subscription.
        subscription: SubscriptionId,
        /// Its pattern.
        pattern: String,
        /// Its capacity.
        capacity: usize,
        /// Whether the `block` policy's timeout passed.
        timed_out: bool,
        /// Subscriptions that did queue the message.
        delivered: usize,
    },
    /// [`Message::reply`](super::Message::reply) on a message that is not a request.
    #[error("message on '{topic}' is not a request; there is nobody to reply to")]
    NotARequest {
        /// Its topic.
        topic: String,
    },
    /// The subscription was unsubscribed (or the hub closed).
    #[error("subscription {id} ('{pattern}') is closed")]
    SubscriptionClosed {
        /// Its id.
        id: SubscriptionId,
        /// Its pattern.
        pattern: String,
    },
    /// The direct channel is closed.
    #[error("direct channel {a}<->{b} is closed: {reason}")]
    ChannelClosed {
        /// This side.
        a: String,
        /// The peer.
        b: String,
        /// Why it closed.
        reason: String,
    },
    /// Something named does not exist (a direct pair).
    #[error("{what} does not exist")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// Something exists already (a direct pair, a taken endpoint).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What.
        what: String,
    },
    /// An argument is malformed.
    #[error("{message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// The hub is closed.
    #[error("the hub is closed")]
    Closed,
    /// The hub's worker threads could not be started.
    #[error("cannot start the hub's worker threads: {message}")]
    Io {
        /// The OS error.
        message: String,
    },
}

impl PsoError for HubError {
    fn kind(&self) -> ErrorKind {
        match self {
            HubError::InvalidTopic { .. }
            | HubError::NotARequest { .. }
            | HubError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            HubError::NoResponders { .. } | HubError::Unanswered { .. } => ErrorKind::NoResponders,
            HubError::Timeout { .. } => ErrorKind::Timeout,
            HubError::Overflow { .. } => ErrorKind::Overflow,
            HubError::SubscriptionClosed { .. }
            | HubError::ChannelClosed { .. }
            | HubError::Closed => ErrorKind::Closed,
            HubError::NotFound { .. } => ErrorKind::NotFound,
            HubError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            HubError::Io { .. } => ErrorKind::Io,
        }
    }
}

/// Lets a callback use `?` on hub calls: the error becomes a handler
/// failure with the hub error's message.
impl From<HubError> for crate::model::HandlerError {
    fn from(e: HubError) -> Self {
        crate::model::HandlerError::failed(e.to_string())
    }
}
