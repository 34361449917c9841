//! Cross-instance invalidation over Redis pub/sub (`cache:invalidate`): the
//! message format, the publisher, the subscriber that keeps listening
//! through outages, what a message received means (`receiver`, against a
//! narrow interface the catalog implements), the per-sender sequence check
//! that notices lost messages, and the publish-to-apply lag histogram.

mod lag;
mod message;
mod publisher;
mod receiver;
mod sequence;
mod subscriber;

pub(crate) use lag::LagHistogram;
pub use lag::{LagCounts, LagSnapshot};
pub use message::MessageError;
pub(crate) use message::SenderId;
pub use publisher::silence;
pub(crate) use publisher::{Outbox, PublishError, Publisher, channel as publisher_channel};
pub(crate) use receiver::{Caches, Receiver};
pub use subscriber::SubscriberState;
pub(crate) use subscriber::{Listener, Subscriber};

/// The channel every instance publishes to and listens on.
pub const CHANNEL: &str = "cache:invalidate";
