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

pub use lag::{LagCounts, LagHistogram, LagSnapshot};
pub use message::{InvalidationMessage, MessageError, SenderId};
pub use publisher::{Outbox, PublishError, Publisher, channel as publisher_channel, silence};
pub use receiver::{Caches, Receiver};
pub use sequence::{Continuity, Kind, Sequences};
pub use subscriber::{Listener, Subscriber, SubscriberState};

/// The channel every instance publishes to and listens on.
pub const CHANNEL: &str = "cache:invalidate";
