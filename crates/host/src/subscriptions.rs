//! Message subscriptions of deployed apps: each subject's messages are delivered to the
//! subscribed component's handler, each in a fresh instance, concurrently up to its instance
//! limit. Tasks stop when the app version that started them is replaced or undeployed.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_capabilities::messaging::{Broker, Message};
use weft_runtime::MessageHandler;

/// One subject's messages, the broker they come from and the handler they go to.
struct Feed {
    subject: String,
    messages: mpsc::Receiver<Message>,
    broker: Arc<dyn Broker>,
    handler: Arc<MessageHandler>,
}

/// Subscriptions made while preparing a deploy; they deliver nothing until started.
#[derive(Default)]
pub(crate) struct Pending {
    feeds: Vec<Feed>,
}

impl Pending {
    pub(crate) fn add(
        &mut self,
        subject: String,
        messages: mpsc::Receiver<Message>,
        broker: Arc<dyn Broker>,
        handler: Arc<MessageHandler>,
    ) {
        self.feeds.push(Feed {
            subject,
            messages,
            broker,
            handler,
        });
    }

    /// Starts delivering; the returned set stops every delivery task when dropped.
    pub(crate) fn start(self) -> Running {
        let tasks = self
            .feeds
            .into_iter()
            .map(|feed| tokio::spawn(deliver(feed)))
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

async fn deliver(feed: Feed) {
    let Feed {
        subject,
        mut messages,
        broker,
        handler,
    } = feed;
    while let Some(message) = messages.recv().await {
        let handler = handler.clone();
        let subject = subject.clone();
        let broker = broker.clone();
        tokio::spawn(async move {
            let on = message.subject.clone();
            if let Err(reason) = handler.deliver(message, &broker).await {
                tracing::warn!(workload = %handler.name(), subscription = %subject, subject = %on, %reason, "message not handled");
            }
        });
    }
    tracing::debug!(workload = %handler.name(), %subject, "subscription ended");
}
