//! Messaging on NATS core. The connection is made on first use; async-nats reconnects after a
//! loss and resubscribes, and calls made while NATS is away fail with an error the guest sees.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, OnceCell};
use weft_manifest::Grant;

use super::{gather_replies, Broker, Message, MessagingError, TimedOut, SUBSCRIPTION_BUFFER};
use crate::catalog::{Backend, BackendError, Opener};
use crate::settings::{check_nats_settings, nats_settings, NatsServer, NoOwnKeys};
use weft_lattice::JetStream;


struct Nats {
    server: NatsServer,
    client: OnceCell<async_nats::Client>,
}

/// Messaging on NATS core.
pub(super) const BACKEND: Backend<dyn Broker> = Backend {
    name: "nats",
    images: &["messaging-nats"],
    check: |settings| check_nats_settings::<NoOwnKeys>(settings, &[]),
    open: |_, grant| open(grant),
};

fn open(grant: &Grant) -> Result<Opener<dyn Broker>, BackendError> {
    let (server, NoOwnKeys {}) = nats_settings(&grant.settings, &[])?;
    Ok((
        format!("nats:{}", server.identity()),
        Box::new(move || {
            Ok(Arc::new(Nats {
                server,
                client: OnceCell::new(),
            }) as Arc<dyn Broker>)
        }),
    ))
}

impl Nats {
    async fn client(&self) -> Result<&async_nats::Client, MessagingError> {
        self.client
            .get_or_try_init(|| async {
                JetStream::connect(&self.server.url, &self.server.auth)
                    .await
                    .map(|js| js.client().clone())
                    .map_err(|e| MessagingError::new(e.to_string()))
            })
            .await
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> MessagingError {
        MessagingError::new(format!(
            "NATS at {}: {what}: {e}",
            weft_lattice::redact_credentials(&self.server.url)
        ))
    }
}

#[async_trait::async_trait]
impl Broker for Nats {
    async fn publish(&self, message: Message) -> Result<(), MessagingError> {
        let client = self.client().await?;
        let headers = nats_headers(&message.headers);
        let published = match (message.reply_to, headers) {
            (Some(reply), Some(headers)) => {
                client
                    .publish_with_reply_and_headers(message.subject, reply, headers, message.body)
                    .await
            }
            (Some(reply), None) => {
                client
                    .publish_with_reply(message.subject, reply, message.body)
                    .await
            }
            (None, Some(headers)) => {
                client
                    .publish_with_headers(message.subject, headers, message.body)
                    .await
            }
            (None, None) => client.publish(message.subject, message.body).await,
        };
        published.map_err(|e| self.failed("publish", e))?;
        // Flushed so a publish the guest saw succeed has left this host.
        client.flush().await.map_err(|e| self.failed("publish", e))
    }

    async fn request(
        &self,
        request: Message,
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Message>, MessagingError> {
        let client = self.client().await?;
        let subject = request.subject.clone();
        if replies > 1 {
            // More than one reply: the inbox is ours to read until enough came or time is up.
            let inbox = client.new_inbox();
            let mut feed = self.subscribe(&inbox).await?;
            self.publish(Message {
                reply_to: Some(inbox),
                ..request
            })
            .await?;
            return gather_replies(&mut feed, &subject, replies, timeout).await;
        }
        let mut ask = async_nats::Request::new()
            .payload(request.body)
            .timeout(Some(timeout));
        if let Some(headers) = nats_headers(&request.headers) {
            ask = ask.headers(headers);
        }
        let reply = client
            .send_request(subject.clone(), ask)
            .await
            .map_err(|e| {
                let timed_out = e.kind() == async_nats::RequestErrorKind::TimedOut;
                let failed = self.failed(&format!("request on `{subject}`"), e);
                MessagingError(failed.0, TimedOut(timed_out))
            })?;
        Ok(vec![from_nats(reply)])
    }

    async fn subscribe(&self, subject: &str) -> Result<mpsc::Receiver<Message>, MessagingError> {
        let client = self.client().await?;
        let mut subscriber = client
            .subscribe(subject.to_string())
            .await
            .map_err(|e| self.failed(&format!("subscribe to `{subject}`"), e))?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                if sender.send(from_nats(message)).await.is_err() {
                    break;
                }
            }
            let _ = subscriber.unsubscribe().await;
        });
        Ok(receiver)
    }
}

/// Headers for NATS, or `None` for a message that has none.
fn nats_headers(headers: &[(String, String)]) -> Option<async_nats::HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.append(name.as_str(), value.as_str());
    }
    Some(map)
}

fn from_nats(message: async_nats::Message) -> Message {
    let headers = message
        .headers
        .iter()
        .flat_map(|headers| headers.iter())
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_string()))
        })
        .collect();
    Message {
        subject: message.subject.to_string(),
        body: message.payload,
        reply_to: message.reply.map(|r| r.to_string()),
        headers,
    }
}
