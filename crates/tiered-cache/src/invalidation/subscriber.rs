//! The invalidation subscriber: a dedicated pub/sub connection that is
//! re-established after any outage, however long.
//!
//! It deliberately does not rely on a client library's automatic
//! resubscription: after an outage longer than its retry budget such a
//! subscriber can stay disconnected for ever without a sound. This loop never
//! gives up (bounded backoff), and pings the connection so that a silently
//! dead one (network cut) is noticed within about a second.
//!
//! Whenever the subscription is lost, messages may have been lost with it:
//! the catalogue flushes and bypasses its near cache until the next
//! subscription is confirmed.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::backoff::Backoff;
use crate::cache::Refusals;

use super::CHANNEL;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberState {
    Subscribed,
    Disconnected,
}

impl SubscriberState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberState::Subscribed => "subscribed",
            SubscriberState::Disconnected => "disconnected",
        }
    }
}

/// Who the subscriber tells what happens on the channel. Narrow on purpose:
/// the subscriber keeps the subscription alive and knows nothing of what a
/// message means (the catalog does, in `catalog::receive`).
pub trait Listener: Clone + Send + Sync + 'static {
    /// The subscription is confirmed: messages flow from now on.
    fn subscribed(&self);
    /// The subscription is gone: messages may have been lost with it.
    fn subscription_lost(&self);
    /// One message from the channel, in the order Redis sent them.
    fn message(&self, payload: &[u8]) -> impl Future<Output = ()> + Send;
    /// Called at every ping while subscribed: time to look for senders that
    /// fell silent.
    fn tick(&self);
}

pub struct Subscriber<L> {
    client: redis::Client,
    listener: L,
    /// Where a `SUBSCRIBE` Redis refuses for good (no `&cache:invalidate`
    /// channel or `+subscribe` for the user) is reported.
    refusals: Arc<Refusals>,
    timeout: Duration,
    ping_interval: Duration,
    /// Read by `/health`; only this task writes it.
    state: watch::Sender<SubscriberState>,
}

struct LostOnExit<L: Listener>(L);

impl<L: Listener> Drop for LostOnExit<L> {
    fn drop(&mut self) {
        self.0.subscription_lost();
    }
}

enum SessionEnd {
    Cancelled,
    Lost(String),
}

impl<L: Listener> Subscriber<L> {
    /// `timeout` bounds connecting, subscribing and each ping; the
    /// connection is pinged every `ping_interval`, which should be short:
    /// until a dead connection is noticed the near cache may serve values
    /// whose invalidation was lost with it, and a `PING` costs Redis next to
    /// nothing.
    pub fn new(
        client: redis::Client,
        listener: L,
        refusals: Arc<Refusals>,
        timeout: Duration,
        ping_interval: Duration,
    ) -> Self {
        let (state, _) = watch::channel(SubscriberState::Disconnected);
        Self {
            client,
            listener,
            refusals,
            timeout,
            ping_interval,
            state,
        }
    }

    pub fn watch_state(&self) -> watch::Receiver<SubscriberState> {
        self.state.subscribe()
    }

    /// Listens until `cancel` fires, reconnecting whenever the connection is lost.
    pub async fn run(self, cancel: CancellationToken) {
        // However this task ends (a panic included), nothing listens any
        // more: the near cache must not be trusted.
        let _lost_on_exit = LostOnExit(self.listener.clone());
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let reason = match self.session(&cancel, &mut backoff).await {
                SessionEnd::Cancelled => return,
                SessionEnd::Lost(reason) => reason,
            };
            self.listener.subscription_lost();
            if self.state.send_replace(SubscriberState::Disconnected) == SubscriberState::Subscribed
            {
                tracing::warn!(%reason, channel = CHANNEL, "invalidation subscriber disconnected; reconnecting");
            } else {
                tracing::debug!(%reason, "invalidation subscriber still cannot connect");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn session(&self, cancel: &CancellationToken, backoff: &mut Backoff) -> SessionEnd {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            r = tokio::time::timeout(self.timeout, connect) => match r {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(err)) => {
                    self.refusals.note("SUBSCRIBE", "", &err);
                    return SessionEnd::Lost(err.to_string());
                }
                Err(_) => return SessionEnd::Lost("connect timed out".into()),
            },
        };
        let (mut sink, mut messages) = pubsub.split();
        self.refusals.accepted(["SUBSCRIBE"]);
        backoff.reset();
        self.listener.subscribed();
        self.state.send_replace(SubscriberState::Subscribed);
        tracing::info!(channel = CHANNEL, "subscribed to cache invalidations");

        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                // Messages first: after a pause (a busy machine), the ones
                // waiting must be read before silence is judged.
                biased;
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                message = messages.next() => match message {
                    Some(message) => {
                        self.listener.message(message.get_payload_bytes()).await;
                    }
                    None => return SessionEnd::Lost("connection closed".into()),
                },
                _ = ping.tick() => {
                    self.listener.tick();
                    match tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => return SessionEnd::Lost(err.to_string()),
                        Err(_) => return SessionEnd::Lost("ping timed out".into()),
                    }
                }
            }
        }
    }
}
