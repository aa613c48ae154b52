//! Messaging on Redis pub/sub channels (Spin's Redis trigger, as a weft messaging backend): a
//! subscription delivers what any client `PUBLISH`es on its channels to the component's
//! handler, and the component publishes with `PUBLISH`. Subjects keep NATS's wildcards (`*` one
//! dot-separated token, `>` the rest), matched on channel names. Redis carries a body only: no
//! reply subject (so no request/reply) and no headers.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use weft_manifest::Grant;

use super::{subject_matches, Broker, Message, MessagingError, SUBSCRIPTION_BUFFER};
use crate::catalog::{check_config, Backend, BackendError, Opener};
use crate::redis_server::{glob_escape, pubsub, RedisServer};
use crate::settings::ServerConfig;

/// How long a lost subscription waits before subscribing again.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

struct RedisChannels(RedisServer);

/// Messaging on Redis pub/sub.
pub(super) const BACKEND: Backend<dyn Broker> = Backend {
    name: "redis",
    images: &[],
    check: check_config::<ServerConfig>,
    open: |_, grant| open(grant),
};

fn open(grant: &Grant) -> Result<Opener<dyn Broker>, BackendError> {
    let (identity, server) = RedisServer::of(grant)?;
    Ok((
        identity,
        Box::new(move || Ok(Arc::new(RedisChannels(server)) as Arc<dyn Broker>)),
    ))
}

/// What to subscribe to for the subject pattern `subject`: the channel itself, or a glob
/// pattern wide enough for its wildcards (narrowed by [`subject_matches`] on each message).
fn subscription_of(subject: &str) -> (Vec<String>, Vec<String>) {
    if !subject.split('.').any(|t| t == "*" || t == ">") {
        return (vec![subject.to_string()], Vec::new());
    }
    let glob = subject
        .split('.')
        .map(|token| match token {
            "*" | ">" => "*".to_string(),
            literal => glob_escape(literal),
        })
        .collect::<Vec<_>>()
        .join(".");
    (Vec::new(), vec![glob])
}

#[async_trait::async_trait]
impl Broker for RedisChannels {
    async fn publish(&self, message: Message) -> Result<(), MessagingError> {
        if message.reply_to.is_some() {
            return Err(MessagingError::new(
                "Redis channels carry no reply subject; publish without one, or use a nats \
                 messaging backend for request/reply",
            ));
        }
        let mut c = self.0.connection().await.map_err(MessagingError::new)?;
        let _receivers: u64 = c
            .publish(&message.subject, message.body.as_ref())
            .await
            .map_err(|e| MessagingError::new(self.0.failed(e)))?;
        Ok(())
    }

    async fn request(
        &self,
        request: Message,
        _replies: usize,
        _timeout: Duration,
    ) -> Result<Vec<Message>, MessagingError> {
        Err(MessagingError::new(format!(
            "cannot request on `{}`: Redis pub/sub has no replies; use a nats or in-process \
             messaging backend for request/reply",
            request.subject
        )))
    }

    async fn subscribe(&self, subject: &str) -> Result<mpsc::Receiver<Message>, MessagingError> {
        let (channels, patterns) = subscription_of(subject);
        let first = pubsub(&self.0.client, &channels, &patterns)
            .await
            .map_err(|e| MessagingError::new(self.0.failed(e)))?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let feed = Feed {
            client: self.0.client.clone(),
            url: self.0.url.clone(),
            subject: subject.to_string(),
            channels,
            patterns,
            sender,
        };
        tokio::spawn(feed.run(first));
        Ok(receiver)
    }
}

/// One subscription's task: hands on the messages of its channels until its receiver is
/// dropped, subscribing again after a lost connection.
struct Feed {
    client: redis::Client,
    url: String,
    subject: String,
    channels: Vec<String>,
    patterns: Vec<String>,
    sender: mpsc::Sender<Message>,
}

impl Feed {
    async fn run(self, mut messages: redis::aio::PubSubStream) {
        loop {
            while let Some(published) = messages.next().await {
                let channel = published.get_channel_name();
                if !subject_matches(&self.subject, channel) {
                    continue;
                }
                let message = Message::new(channel, published.get_payload_bytes().to_vec());
                match self.sender.try_send(message) {
                    Ok(()) => {}
                    // As NATS does with a slow consumer: the handler is behind, this one is lost.
                    Err(TrySendError::Full(_)) => tracing::warn!(
                        url = %self.url, subject = %self.subject,
                        "handler behind by {SUBSCRIPTION_BUFFER} messages; dropped one"
                    ),
                    Err(TrySendError::Closed(_)) => return,
                }
            }
            tracing::warn!(url = %self.url, subject = %self.subject, "lost the Redis subscription; subscribing again");
            messages = loop {
                if self.sender.is_closed() {
                    return;
                }
                tokio::time::sleep(RESUBSCRIBE_EVERY).await;
                if let Ok(messages) = pubsub(&self.client, &self.channels, &self.patterns).await {
                    tracing::info!(url = %self.url, subject = %self.subject, "subscribed again");
                    break messages;
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subscription_of;

    #[test]
    fn wildcards_become_globs_and_literals_stay_literal() {
        assert_eq!(
            subscription_of("orders:new"),
            (vec!["orders:new".to_string()], vec![])
        );
        assert_eq!(
            subscription_of("orders.*.eu"),
            (vec![], vec!["orders.*.eu".to_string()])
        );
        assert_eq!(
            subscription_of("a[1].>"),
            (vec![], vec!["a\\[1\\].*".to_string()])
        );
    }
}
