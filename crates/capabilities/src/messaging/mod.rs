//! `wasmcloud:messaging@0.2.0` over pluggable brokers: in-process (the app's own bus) and NATS
//! core. A component publishes and requests through `consumer` when linked to a messaging
//! capability; subscriptions named in a link from the capability to a component are delivered to
//! the component's `handler` export by the host.

mod in_process;
mod nats;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use weft_manifest::Grant;

use crate::bindings::messaging::{consumer, types};
use crate::{CapabilityCtxView, Placement};

/// A message on a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: Bytes,
    pub reply_to: Option<String>,
}

/// Messages a subscription buffers before the broker waits (in-process) or drops (NATS's own
/// slow-consumer rule) for a handler that falls behind.
pub const SUBSCRIPTION_BUFFER: usize = 1024;

/// The longest `request` may wait, whatever the guest asks.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One message broker.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    async fn publish(&self, message: Message) -> Result<(), String>;
    /// Publishes with a fresh reply subject and waits for the first reply.
    async fn request(
        &self,
        subject: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Message, String>;
    /// Messages on `subject` (NATS wildcards allowed) until the receiver is dropped.
    async fn subscribe(&self, subject: &str) -> Result<mpsc::Receiver<Message>, String>;
}

/// Picks the broker a messaging grant names.
pub(crate) fn open(at: &Placement<'_>, grant: &Grant) -> Result<crate::Opener<dyn Broker>, String> {
    match grant.backend.as_str() {
        "in-process" => Ok(in_process::open(at, grant)),
        "nats" => nats::open(grant),
        other => Err(format!("`{other}` is not a messaging backend")),
    }
}

const PACKAGE: &str = "wasmcloud:messaging";

impl CapabilityCtxView<'_> {
    fn broker(&self) -> Result<Arc<dyn Broker>, String> {
        self.ctx
            .linked(PACKAGE, &self.ctx.grants.messaging)
            .cloned()
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
        if !weft_manifest::valid_subject(&subject) || subject.contains(['*', '>']) {
            return Ok(Err(format!("`{subject}` is not a subject to send to")));
        }
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_REQUEST_TIMEOUT);
        Ok(broker
            .request(&subject, body.into(), timeout)
            .await
            .map(|reply| types::BrokerMessage {
                subject: reply.subject,
                body: reply.body.to_vec(),
                reply_to: reply.reply_to,
            }))
    }

    async fn publish(&mut self, msg: types::BrokerMessage) -> wasmtime::Result<Result<(), String>> {
        let broker = match self.broker() {
            Ok(broker) => broker,
            Err(e) => return Ok(Err(e)),
        };
        if !weft_manifest::valid_subject(&msg.subject) || msg.subject.contains(['*', '>']) {
            return Ok(Err(format!(
                "`{}` is not a subject to publish to",
                msg.subject
            )));
        }
        Ok(broker
            .publish(Message {
                subject: msg.subject,
                body: msg.body.into(),
                reply_to: msg.reply_to,
            })
            .await)
    }
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
