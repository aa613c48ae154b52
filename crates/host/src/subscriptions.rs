//! Message subscriptions of deployed apps: each subject's messages are delivered to the
//! subscribed component's handler, each in a fresh instance, concurrently up to its instance
//! limit. Tasks stop when the app version that started them is replaced or undeployed.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_capabilities::messaging::Message;
use weft_runtime::MessageHandler;

/// Subscriptions made while preparing a deploy; they deliver nothing until started.
#[derive(Default)]
pub(crate) struct Pending {
    feeds: Vec<(String, mpsc::Receiver<Message>, Arc<MessageHandler>)>,
}

impl Pending {
    pub(crate) fn add(
        &mut self,
        subject: String,
        feed: mpsc::Receiver<Message>,
        handler: Arc<MessageHandler>,
    ) {
        self.feeds.push((subject, feed, handler));
    }

    /// Starts delivering; the returned set stops every delivery task when dropped.
    pub(crate) fn start(self) -> Running {
        let tasks = self
            .feeds
            .into_iter()
            .map(|(subject, feed, handler)| tokio::spawn(deliver(subject, feed, handler)))
            .collect();
        Running { tasks }
    }
}

/// Delivery tasks of one app version.
#[derive(Default)]
pub(crate) struct Running {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn deliver(subject: String, mut feed: mpsc::Receiver<Message>, handler: Arc<MessageHandler>) {
    while let Some(message) = feed.recv().await {
        let handler = handler.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            let on = message.subject.clone();
            if let Err(reason) = handler.deliver(message).await {
                tracing::warn!(workload = %handler.name(), subscription = %subject, subject = %on, %reason, "message not handled");
            }
        });
    }
    tracing::debug!(workload = %handler.name(), %subject, "subscription ended");
}
