//! Event feeds of deployed apps: each subject's messages, each watch's key changes and each
//! schedule's ticks are delivered to the component's handler, each in a fresh instance,
//! concurrently up to its instance limit. Tasks stop when the app version that started them is
//! replaced or undeployed.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weft_capabilities::handler_bindings::Tick;
use weft_capabilities::keyvalue::{Change, KeyValueStore};
use weft_capabilities::messaging::{Broker, Message};
use weft_capabilities::schedule::{next_due, unix_millis};
use weft_manifest::{KeyWatch, Schedule};
use weft_runtime::{Event, EventHandler};

/// Decides which host handles a schedule's tick: every host running the component asks, one is
/// told yes. A single host always is; a lattice member claims the tick in the lattice's store.
pub trait ClaimTicks: Send + Sync {
    /// Whether this host handles the tick of `schedule` (app, schedule, component) due at
    /// `due_ms`; false when another host has it, or an error.
    fn claim(&self, schedule: [&str; 3], due_ms: u64) -> BoxFuture<'static, Result<bool, String>>;
}

/// A host alone handles every tick.
pub(crate) struct Alone;

impl ClaimTicks for Alone {
    fn claim(&self, _: [&str; 3], _: u64) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async { Ok(true) })
    }
}

/// Where a feed's events come from.
enum Source {
    /// One subject's messages and the broker they come from.
    Messages(mpsc::Receiver<Message>, Arc<dyn Broker>),
    /// A store's changes, of which the watch picks some.
    Changes(mpsc::Receiver<Change>, Arc<dyn KeyValueStore>, KeyWatch),
    /// A schedule's ticks of one app, each claimed before it is handled.
    Ticks(Ticker),
}

/// One schedule's ticks.
struct Ticker {
    app: String,
    schedule: Schedule,
    claims: Arc<dyn ClaimTicks>,
    /// The last tick handed on: a wake-up a little early never yields it twice.
    last: SystemTime,
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

    /// The ticks of `app`'s `schedule` this host claims, for `handler`.
    pub(crate) fn add_schedule(
        &mut self,
        app: &str,
        schedule: Schedule,
        claims: Arc<dyn ClaimTicks>,
        handler: Arc<EventHandler>,
    ) {
        self.feeds.push(Feed {
            label: format!("schedule {}", schedule.capability),
            source: Source::Ticks(Ticker {
                app: app.to_string(),
                schedule,
                claims,
                last: SystemTime::UNIX_EPOCH,
            }),
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
            Source::Ticks(ticker) => ticker.next().await,
        }
    }
}

impl Ticker {
    /// The next tick this host claims; None when the schedule has no more.
    async fn next(&mut self) -> Option<(String, Event)> {
        loop {
            let due = next_due(&self.schedule.when, SystemTime::now().max(self.last))?;
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
            self.last = due;
            let due_ms = unix_millis(due);
            let schedule = &self.schedule;
            let key = [self.app.as_str(), &schedule.capability, &schedule.component];
            match self.claims.claim(key, due_ms).await {
                Ok(true) => {
                    let tick = Tick {
                        schedule: schedule.capability.clone(),
                        due_ms,
                    };
                    return Some((format!("tick {due_ms}"), Event::Tick(tick)));
                }
                Ok(false) => {}
                Err(reason) => tracing::warn!(
                    app = %self.app, schedule = %schedule.capability, due_ms, %reason,
                    "tick not claimed, so not handled"
                ),
            }
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
