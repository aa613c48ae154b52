//! Event feeds of deployed apps: each subject's messages, and each watch's key changes, are
//! delivered to the component's handler, each in a fresh instance, concurrently up to its
//! instance limit. Tasks stop when the app version that started them is replaced or undeployed.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_capabilities::keyvalue::{Change, KeyValueStore};
use weft_capabilities::messaging::{Broker, Message};
use weft_manifest::KeyWatch;
use weft_runtime::{Event, EventHandler};

/// Where a feed's events come from.
enum Source {
    /// One subject's messages and the broker they come from.
    Messages(mpsc::Receiver<Message>, Arc<dyn Broker>),
    /// A store's changes, of which the watch picks some.
    Changes(mpsc::Receiver<Change>, Arc<dyn KeyValueStore>, KeyWatch),
}

/// One feed: its events and the handler they go to.
struct Feed {
    /// The subject or the watched keys, for log lines.
    label: String,
    source: Source,
    handler: Arc<EventHandler>,
}

/// Feeds made while preparing a deploy; they deliver nothing until started.
#[derive(Default)]
pub(crate) struct Pending {
    feeds: Vec<Feed>,
}

impl Pending {
    /// Messages on `subject` from `broker`, for `handler`.
    pub(crate) fn add(
        &mut self,
        subject: String,
        messages: mpsc::Receiver<Message>,
        broker: Arc<dyn Broker>,
        handler: Arc<EventHandler>,
    ) {
        self.feeds.push(Feed {
            label: subject,
            source: Source::Messages(messages, broker),
            handler,
        });
    }

    /// The changes of `store` that `watch` names, for `handler`.
    pub(crate) fn add_watch(
        &mut self,
        watch: KeyWatch,
        changes: mpsc::Receiver<Change>,
        store: Arc<dyn KeyValueStore>,
        handler: Arc<EventHandler>,
    ) {
        let keys = watch.on_set.iter().map(|k| format!("SET@{k}"));
        let label = keys
            .chain(watch.on_delete.iter().map(|k| format!("DEL@{k}")))
            .collect::<Vec<_>>()
            .join(",");
        self.feeds.push(Feed {
            label,
            source: Source::Changes(changes, store, watch),
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

impl Source {
    /// The next event, skipping changes the watch did not ask for; None when the feed ended.
    async fn next(&mut self) -> Option<(String, Event)> {
        match self {
            Source::Messages(messages, broker) => {
                let message = messages.recv().await?;
                Some((
                    message.subject.clone(),
                    Event::Message(message, broker.clone()),
                ))
            }
            Source::Changes(changes, store, watch) => loop {
                let change = changes.recv().await?;
                if change.wanted_by(watch) {
                    let key = change.key().to_string();
                    break Some((key, Event::Change(change, store.clone(), String::new())));
                }
            },
        }
    }
}

async fn deliver(feed: Feed) {
    let Feed {
        label,
        mut source,
        handler,
    } = feed;
    while let Some((on, event)) = source.next().await {
        let handler = handler.clone();
        let label = label.clone();
        tokio::spawn(async move {
            if let Err(reason) = handler.deliver(event).await {
                tracing::warn!(workload = %handler.name(), feed = %label, on = %on, %reason, "event not handled");
            }
        });
    }
    tracing::debug!(workload = %handler.name(), feed = %label, "feed ended");
}
