//! `Publisher`: this instance's one voice on the invalidation channel.
//!
//! Every message goes through one task (the [`Outbox`]), which numbers them
//! and sends them in that order: concurrent writers numbering their own
//! messages could send them out of order, and every receiver would take the
//! swap for lost messages. Messages waiting together go out in one pipeline,
//! so ordering costs no throughput. When nothing else was sent for a second,
//! the outbox sends a heartbeat with the last number used: a receiver learns
//! of a lost (or unpublished) message within about a second even when this
//! instance writes nothing more, and notices when this instance falls silent.
//! At a clean stop it says goodbye.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::message::{InvalidationMessage, SenderId};
use crate::cache::{CacheKey, KeyPattern, RedisCache, RedisFailure};

/// Silence after which a sender that did not say goodbye is taken for lost,
/// when senders beat every `heartbeat`: three missed heartbeats, and room
/// for a slow hop through Redis.
pub fn silence(heartbeat: Duration) -> Duration {
    heartbeat * 3 + Duration::from_millis(500)
}

/// Most messages sent in one pipeline.
const BATCH: usize = 256;

/// Cheap to clone; every clone feeds the same outbox.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Request>,
}

/// The task end: run it with [`Outbox::run`].
pub struct Outbox {
    rx: mpsc::UnboundedReceiver<Request>,
    sender: SenderId,
    /// Longest silence between two messages.
    heartbeat: Duration,
    /// The last number used, sent or not.
    last_seq: u64,
}

struct Request {
    key: Option<CacheKey>,
    pattern: Option<KeyPattern>,
    done: oneshot::Sender<Result<(), PublishError>>,
    /// The caller's span: the `PUBLISH` belongs to its trace.
    span: tracing::Span,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Redis(Arc<RedisFailure>),
    #[error("the invalidation publisher has stopped")]
    Stopped,
}

/// A publisher and the outbox that serves it.
pub fn channel(sender: SenderId, heartbeat: Duration) -> (Publisher, Outbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Publisher { tx },
        Outbox {
            rx,
            sender,
            heartbeat,
            last_seq: 0,
        },
    )
}

impl Publisher {
    /// Publishes an invalidation of `key` and/or `pattern`; returns once Redis
    /// has taken it (or refused).
    pub async fn publish(
        &self,
        key: Option<&CacheKey>,
        pattern: Option<&KeyPattern>,
    ) -> Result<(), PublishError> {
        let (done, answer) = oneshot::channel();
        let request = Request {
            key: key.cloned(),
            pattern: pattern.cloned(),
            done,
            span: tracing::Span::current(),
        };
        self.tx.send(request).map_err(|_| PublishError::Stopped)?;
        answer.await.unwrap_or(Err(PublishError::Stopped))
    }
}

impl Outbox {
    /// Sends what is published, in order, until `cancel` fires; then says
    /// goodbye.
    pub async fn run(mut self, l2: RedisCache, channel: &'static str, cancel: CancellationToken) {
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                request = self.rx.recv() => {
                    let Some(first) = request else { break };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match self.rx.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    self.send(&l2, channel, batch).await;
                    last_sent = Instant::now();
                }
                _ = heartbeat.tick() => {
                    if last_sent.elapsed() >= self.heartbeat {
                        self.beat(&l2, channel, false).await;
                        last_sent = Instant::now();
                    }
                }
            }
        }
        self.beat(&l2, channel, true).await;
    }

    async fn send(&mut self, l2: &RedisCache, channel: &str, batch: Vec<Request>) {
        let payloads: Vec<String> = batch
            .iter()
            .map(|request| {
                self.last_seq += 1;
                let message = InvalidationMessage::new(
                    request.key.as_ref(),
                    request.pattern.as_ref(),
                    &self.sender,
                    self.last_seq,
                );
                message.to_json()
            })
            .collect();
        // One pipeline serves several callers: it goes in the first one's
        // trace, linked from the others'.
        let span = match &batch[..] {
            [only] => only.span.clone(),
            [first, others @ ..] => {
                let span = tracing::info_span!(
                    parent: &first.span,
                    "invalidation batch",
                    otel.name = "cache:invalidate send",
                    messages = batch.len(),
                );
                for other in others {
                    span.follows_from(&other.span);
                }
                span
            }
            [] => tracing::Span::none(),
        };
        let outcome = l2
            .publish_all(channel, &payloads, true)
            .instrument(span)
            .await
            .map_err(|failure| PublishError::Redis(Arc::new(failure)));
        for request in batch {
            let _ = request.done.send(outcome.clone());
        }
    }

    async fn beat(&self, l2: &RedisCache, channel: &str, bye: bool) {
        let message = InvalidationMessage::heartbeat(&self.sender, self.last_seq, bye);
        if let Err(failure) = l2.publish_all(channel, &[message.to_json()], false).await {
            tracing::debug!(error = %failure, bye, "invalidation heartbeat not published");
        }
    }
}
