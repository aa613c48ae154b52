//! An event handler: one component pre-instantiated for `wasmcloud:messaging/handler@0.2.0`,
//! `incoming-handler@0.3.0`, `wasi:keyvalue/watcher` or `weft:schedule/handler`, each message,
//! key change or tick delivered to a fresh instance under the component's limits.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime::component::InstancePre;
use weft_capabilities::handler_bindings::wasmcloud::messaging0_2_0::types::BrokerMessage;
use weft_capabilities::handler_bindings::{
    IncomingHandlerPre, KeyWatcherPre, MessageHandlerPre, ScheduledPre, Tick,
};
use weft_capabilities::keyvalue::{watch, Change, KeyValueStore};
use weft_capabilities::messaging::{v0_3, Broker, Message};

use crate::long_running::{CallRecord, Demotable, Pace};
use crate::state::{Access, InstanceState};
use crate::workload::{classify, Failure};
use crate::{CallFailed, Runtime};

/// What a handler is given: a message and the broker it came from (where a 0.3 handler's
/// `reply` goes), or a key change and the store and bucket it happened in.
pub enum Event {
    Message(Message, Arc<dyn Broker>),
    Change(Change, Arc<dyn KeyValueStore>, String),
    Tick(Tick),
}

/// The handler export a component has.
#[derive(Clone)]
pub(crate) enum HandlerPre {
    V0_2(MessageHandlerPre<InstanceState>),
    V0_3(IncomingHandlerPre<InstanceState>),
    Watcher(KeyWatcherPre<InstanceState>),
    Schedule(ScheduledPre<InstanceState>),
}

impl HandlerPre {
    /// The component's `watcher`, or why it has none.
    pub(crate) fn watcher(pre: InstancePre<InstanceState>) -> Result<Self, String> {
        KeyWatcherPre::new(pre)
            .map(HandlerPre::Watcher)
            .map_err(|e| format!("{e:#}"))
    }

    /// The component's schedule handler, or why it has none.
    pub(crate) fn schedule(pre: InstancePre<InstanceState>) -> Result<Self, String> {
        ScheduledPre::new(pre)
            .map(HandlerPre::Schedule)
            .map_err(|e| format!("{e:#}"))
    }

    /// The component's message handler of either version, or why it has neither.
    pub(crate) fn messages(pre: InstancePre<InstanceState>) -> Result<Self, String> {
        match MessageHandlerPre::new(pre.clone()) {
            Ok(pre) => Ok(HandlerPre::V0_2(pre)),
            Err(old) => IncomingHandlerPre::new(pre)
                .map(HandlerPre::V0_3)
                .map_err(|new| format!("{old:#}; {new:#}")),
        }
    }

    /// The engine its stores are made by.
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            HandlerPre::V0_2(pre) => pre.instance_pre().engine(),
            HandlerPre::V0_3(pre) => pre.instance_pre().engine(),
            HandlerPre::Watcher(pre) => pre.instance_pre().engine(),
            HandlerPre::Schedule(pre) => pre.instance_pre().engine(),
        }
    }
}

/// A component ready to handle messages or key changes.
pub struct EventHandler {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    pre: HandlerPre,
    limits: weft_manifest::Limits,
    access: Access,
    permits: Arc<Semaphore>,
    /// How long its calls usually run, to tell one that runs long.
    pace: Arc<Pace>,
    meter: weft_metrics::WorkloadMeter,
}

impl EventHandler {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: String,
        pre: HandlerPre,
        limits: weft_manifest::Limits,
        access: Access,
        meter: weft_metrics::WorkloadMeter,
    ) -> Self {
        EventHandler {
            meter,
            runtime,
            name: name.into(),
            permits: Arc::new(Semaphore::new(limits.max_instances as usize)),
            pace: Arc::default(),
            pre,
            limits,
            access,
        }
    }

    /// The name this handler was created under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the handler on one event in a fresh instance. A trap, timeout or memory overrun
    /// fails this delivery only; so does an error the handler returns.
    pub async fn deliver(&self, event: Event) -> Result<(), CallFailed> {
        let labels = self.meter.labels();
        let what = match &event {
            Event::Message(..) => "message",
            Event::Change(..) => "key change",
            Event::Tick(_) => "tick",
        };
        let span =
            weft_telemetry::guest_span(what, &labels.app, &labels.version, &labels.component);
        let result = self.deliver_metered(event).instrument(span.clone()).await;
        self.meter.delivery(result.is_err());
        weft_telemetry::record_result(&span, &result);
        result
    }

    async fn deliver_metered(&self, event: Event) -> Result<(), CallFailed> {
        let timeout = self.limits.timeout;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CallFailed("the handler is shutting down".into()))?;
        let mut store =
            self.runtime
                .limited_store(self.pre.engine(), &self.name, &self.limits, &self.access);
        let _live = self.meter.instance(true);
        let long_running = crate::restart_deadline(&mut store, timeout, &self.pace);
        let mut record = CallRecord::new(&self.pace, &long_running);
        let pre = self.pre.clone();
        let run = Demotable::new(
            async move {
                match (pre, event) {
                    (HandlerPre::V0_2(pre), Event::Message(message, _)) => {
                        let message = BrokerMessage {
                            subject: message.subject,
                            body: message.body.to_vec(),
                            reply_to: message.reply_to,
                        };
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance
                            .wasmcloud_messaging0_2_0_handler()
                            .call_handle_message(&mut store, &message)
                            .await
                    }
                    (HandlerPre::V0_3(pre), Event::Message(message, broker)) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        v0_3::handle(&instance, &mut store, message, broker).await
                    }
                    (HandlerPre::Watcher(pre), Event::Change(change, kv, bucket)) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        watch::notify(&instance, &mut store, change, kv, &bucket)
                            .await
                            .map(Ok)
                    }
                    (HandlerPre::Schedule(pre), Event::Tick(tick)) => {
                        let instance = pre.instantiate_async(&mut store).await?;
                        instance
                            .weft_schedule_handler()
                            .call_on_tick(&mut store, &tick)
                            .await
                    }
                    (_, Event::Message(..)) => Ok(Err("it handles no messages".to_string())),
                    (_, Event::Tick(..)) => Ok(Err("it runs on no schedule".to_string())),
                    (_, Event::Change(..)) => Ok(Err("it watches no keys".to_string())),
                }
            },
            long_running,
        );
        let finished = tokio::time::timeout(timeout, run).await;
        if matches!(finished, Ok(Ok(Ok(())))) {
            record.clean();
        }
        let failure = match finished {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(refused))) => {
                return Err(CallFailed(format!(
                    "the handler returned an error: {refused}"
                )))
            }
            Ok(Err(e)) => classify(e, timeout),
            Err(_) => Failure::Timeout(timeout),
        };
        Err(CallFailed(failure.to_string()))
    }
}
