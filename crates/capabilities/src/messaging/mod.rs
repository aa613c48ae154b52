//! `wasmcloud:messaging` (0.2.0 here, 0.3.0 in [`v0_3`]) over pluggable brokers: in-process (the
//! app's own bus) and NATS core. A component publishes and requests through `consumer` (0.3.0:
//! `producer`, `request-reply`) when linked to a messaging capability; subscriptions named in a
//! link from the capability to a component are delivered by the host to the component's
//! `handler` export (0.3.0: `incoming-handler`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use weft_manifest::{CapabilityLink, Delivered, Settings, SpecError, Subscription};

use crate::bindings::messaging0_2_0::{consumer, types};
use crate::catalog::{Delivery, Kind};
use crate::CapabilityCtxView;

/// A message on a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: Bytes,
    pub reply_to: Option<String>,
    /// NATS headers: `wasmcloud:messaging@0.3.0` metadata and content type.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// A message with no reply subject and no headers.
    pub fn new(subject: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            subject: subject.into(),
            body: body.into(),
            reply_to: None,
            headers: Vec::new(),
        }
    }
}

/// Messages a subscription buffers before the broker waits (in-process) or drops (NATS's own
/// slow-consumer rule) for a handler that falls behind.
pub const SUBSCRIPTION_BUFFER: usize = 1024;

/// The longest `request` may wait, whatever the guest asks.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker's failure, shown to the guest as the messaging interface's string error (0.3.0:
/// `timeout` when no reply came in time, `other` else).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MessagingError(pub String, pub TimedOut);

/// Whether a failure is a request that got no reply in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut(pub bool);

impl MessagingError {
    /// A failure other than a timeout.
    pub fn new(message: impl Into<String>) -> Self {
        MessagingError(message.into(), TimedOut(false))
    }

    /// A request that got no reply within its timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        MessagingError(message.into(), TimedOut(true))
    }
}

/// Why `subject` is no subject to send to (a wildcard, or not a subject), if it is not.
pub(crate) fn unsendable(subject: &str) -> Option<String> {
    (!weft_manifest::valid_subject(subject) || subject.contains(['*', '>']))
        .then(|| format!("`{subject}` is not a subject to send to"))
}

/// One message broker.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    async fn publish(&self, message: Message) -> Result<(), MessagingError>;
    /// Publishes `request` with a fresh reply subject and gathers replies until `replies` have
    /// come or `timeout` passes; fails when none came.
    async fn request(
        &self,
        request: Message,
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Message>, MessagingError>;
    /// Messages on `subject` (NATS wildcards allowed) until the receiver is dropped.
    async fn subscribe(&self, subject: &str) -> Result<mpsc::Receiver<Message>, MessagingError>;
}

crate::catalog::backends!(dyn Broker: in_process, nats, redis);

pub mod v0_3;

/// The messaging capability: `wasmcloud:messaging/consumer` granted by a link to it, the
/// `handler` export called for the subjects a link from it names.
pub static MESSAGING: Kind<dyn Broker> = Kind {
    name: "messaging",
    namespace: "wasmcloud",
    package: "messaging",
    interfaces: &["consumer", "types", "producer", "request-reply"],
    own_keys: &["subscriptions"],
    backends: BACKENDS,
    delivery: Some(Delivery {
        exports: &["handler", "incoming-handler"],
        handed: &["types"],
        not_a_component: "messages are delivered to components",
        make: subscription,
    }),
};

/// A link from a messaging node to a component: the subjects in its `subscriptions` key.
fn subscription(
    link: &CapabilityLink<'_>,
    backend: &str,
    mut settings: Settings,
) -> Result<Delivered, SpecError> {
    let subjects: Vec<String> = settings
        .remove("subscriptions")
        .map(|s| {
            s.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if subjects.is_empty() {
        return Err(SpecError::new(
            "name the subjects to deliver in the link's source config: \
             subscriptions: \"orders.*,audit.>\"",
        ));
    }
    if let Some(bad) = subjects.iter().find(|s| !weft_manifest::valid_subject(s)) {
        return Err(SpecError::at(
            "config subscriptions",
            format!(
                "`{bad}` is not a subject: use dot-separated tokens, `*` for one token, `>` \
                 last for the rest"
            ),
        ));
    }
    Ok(Delivered::Subscription(Subscription {
        component: link.component.to_string(),
        capability: link.node.name.clone(),
        kind: MESSAGING.name.to_string(),
        backend: backend.to_string(),
        settings,
        subjects,
    }))
}

impl CapabilityCtxView<'_> {
    fn broker(&self) -> Result<Arc<dyn Broker>, String> {
        self.ctx.linked(&MESSAGING)
    }
}

impl types::Host for CapabilityCtxView<'_> {}

impl consumer::Host for CapabilityCtxView<'_> {
    async fn request(
        &mut self,
        subject: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<types::BrokerMessage, String>> {
        let broker = match self.broker() {
            Ok(broker) => broker,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(refused) = unsendable(&subject) {
            return Ok(Err(refused));
        }
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_REQUEST_TIMEOUT);
        Ok(broker
            .request(Message::new(subject, body), 1, timeout)
            .await
            .map(|mut replies| {
                let reply = replies.swap_remove(0);
                types::BrokerMessage {
                    subject: reply.subject,
                    body: reply.body.to_vec(),
                    reply_to: reply.reply_to,
                }
            })
            .map_err(|e| e.0))
    }

    async fn publish(&mut self, msg: types::BrokerMessage) -> wasmtime::Result<Result<(), String>> {
        let broker = match self.broker() {
            Ok(broker) => broker,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(refused) = unsendable(&msg.subject) {
            return Ok(Err(refused));
        }
        Ok(broker
            .publish(Message {
                reply_to: msg.reply_to,
                ..Message::new(msg.subject, msg.body)
            })
            .await
            .map_err(|e| e.0))
    }
}

/// Gathers up to `wanted` replies from `inbox` until `timeout`; fails when none came.
pub(crate) async fn gather_replies(
    inbox: &mut mpsc::Receiver<Message>,
    subject: &str,
    wanted: usize,
    timeout: Duration,
) -> Result<Vec<Message>, MessagingError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut replies = Vec::new();
    while replies.len() < wanted.max(1) {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(reply)) => replies.push(reply),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    if replies.is_empty() {
        return Err(MessagingError::timeout(format!(
            "no reply on `{subject}` within {timeout:?}"
        )));
    }
    Ok(replies)
}

/// Whether `subject` matches the subscription `pattern` (`*` one token, `>` the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("*.b", "x.b"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }
}
