//! Cross-instance invalidation over Redis pub/sub (`cache:invalidate`): the
//! message format and the subscriber that keeps listening through outages.

mod message;
mod subscriber;

pub use message::{InvalidationMessage, MessageError};
pub use subscriber::{Subscriber, SubscriberState};

/// The channel every instance publishes to and listens on.
pub const CHANNEL: &str = "cache:invalidate";
