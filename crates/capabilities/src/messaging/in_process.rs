//! The in-process broker: one bus per app and capability, inside the host. Subjects and
//! wildcards behave as in NATS core, so an app moves to NATS by changing its backend alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use weft_manifest::Grant;

use super::{gather_replies, subject_matches, Broker, Message, MessagingError, SUBSCRIPTION_BUFFER};
use crate::catalog::{check_config, Backend, NoConfig, Opener};
use crate::Placement;

#[derive(Default)]
struct InProcess {
    subscribers: Mutex<Vec<(String, mpsc::Sender<Message>)>>,
}

/// The app's own bus inside the host, the default.
pub(super) const BACKEND: Backend<dyn Broker> = Backend {
    name: "in-process",
    images: &[],
    check: check_config::<NoConfig>,
    open: |at, grant| Ok(open(at, grant)),
};

fn open(at: &Placement<'_>, grant: &Grant) -> Opener<dyn Broker> {
    (
        format!("in-process:{}/{}", at.app, grant.capability),
        Box::new(|| Ok(Arc::new(InProcess::default()) as Arc<dyn Broker>)),
    )
}

impl InProcess {
    fn matching(&self, subject: &str) -> Vec<mpsc::Sender<Message>> {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|(_, sender)| !sender.is_closed());
        subscribers
            .iter()
            .filter(|(pattern, _)| subject_matches(pattern, subject))
            .map(|(_, sender)| sender.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl Broker for InProcess {
    async fn publish(&self, message: Message) -> Result<(), MessagingError> {
        for sender in self.matching(&message.subject) {
            // A subscriber that went away between lookup and send just misses the message.
            let _ = sender.send(message.clone()).await;
        }
        Ok(())
    }

    async fn request(
        &self,
        request: Message,
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Message>, MessagingError> {
        let inbox = format!("_INBOX.{:016x}", rand::random::<u64>());
        let mut inbox_feed = self.subscribe(&inbox).await?;
        let subject = request.subject.clone();
        if self.matching(&subject).is_empty() {
            return Err(MessagingError::new(format!("no responders on `{subject}`")));
        }
        self.publish(Message {
            reply_to: Some(inbox),
            ..request
        })
        .await?;
        gather_replies(&mut inbox_feed, &subject, replies, timeout).await
    }

    async fn subscribe(&self, subject: &str) -> Result<mpsc::Receiver<Message>, MessagingError> {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((subject.to_string(), sender));
        Ok(receiver)
    }
}
