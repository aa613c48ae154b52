//! A message handler: one component pre-instantiated for `wasmcloud:messaging/handler`, each
//! message delivered to a fresh instance under the component's limits.

use std::sync::Arc;

use tokio::sync::Semaphore;
use weft_capabilities::handler_bindings::wasmcloud::messaging::types::BrokerMessage;
use weft_capabilities::handler_bindings::MessageHandlerPre;
use weft_capabilities::messaging::Message;

use crate::long_running::{CallRecord, Demotable, Pace};
use crate::state::{Access, InstanceState};
use crate::workload::{classify, Failure};
use crate::{CallFailed, Runtime};

/// A component ready to handle messages.
pub struct MessageHandler {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    pre: MessageHandlerPre<InstanceState>,
    limits: weft_manifest::Limits,
    access: Access,
    permits: Arc<Semaphore>,
    /// How long its calls usually run, to tell one that runs long.
    pace: Arc<Pace>,
}

impl MessageHandler {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: String,
        pre: MessageHandlerPre<InstanceState>,
        limits: weft_manifest::Limits,
        access: Access,
    ) -> Self {
        MessageHandler {
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

    /// Runs the handler on one message in a fresh instance. A trap, timeout or memory overrun
    /// fails this delivery only; so does an error the handler returns.
    pub async fn deliver(&self, message: Message) -> Result<(), CallFailed> {
        let timeout = self.limits.timeout;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CallFailed("the handler is shutting down".into()))?;
        let mut store = self
            .runtime
            .limited_store(&self.name, &self.limits, &self.access);
        let message = BrokerMessage {
            subject: message.subject,
            body: message.body.to_vec(),
            reply_to: message.reply_to,
        };
        let long_running = crate::restart_deadline(&mut store, timeout, &self.pace);
        let mut record = CallRecord::new(&self.pace, &long_running);
        let pre = self.pre.clone();
        let run = Demotable::new(
            async move {
                let instance = pre.instantiate_async(&mut store).await?;
                instance
                    .wasmcloud_messaging_handler()
                    .call_handle_message(&mut store, &message)
                    .await
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
