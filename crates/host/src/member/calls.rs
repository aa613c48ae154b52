//! Component-link calls between hosts: a link to another app's component that runs elsewhere
//! is called over NATS.

use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::Instrument as _;
use weft_lattice::{frame, unframe, CallHead, CallReply};
use weft_runtime::CallFailed;

use super::forward::{trace_header, Missed};
use super::{Member, MemberError, NatsForward, HEAD_ROOM};

impl Member {
    /// Runs one call to an export of a component of `app` here and replies with its results.
    pub(super) async fn answer_call(&self, app: &str, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        // weft.<lattice>.rpc.call.<app>.<component>.<host>
        let component = message.subject.split('.').nth(5).unwrap_or_default();
        let result = match unframe::<CallHead>(&message.payload) {
            Ok((head, params)) => match self.host.export_server(app, component) {
                Some(server) => {
                    let span = weft_telemetry::remote_span(
                        "call",
                        format_args!("{app}/{component} {}.{}", head.interface, head.function),
                        &self.options.host_id,
                        trace_header(&message),
                    );
                    let result = if head.wave {
                        call_wave(&server, &head, &params)
                            .instrument(span.clone())
                            .await
                    } else {
                        server
                            .call(&head.interface, &head.function, &params)
                            .instrument(span.clone())
                            .await
                    };
                    weft_telemetry::record_result(&span, &result);
                    result
                }
                None => Err(CallFailed(format!(
                    "component `{component}` of app `{app}` exports nothing callable here"
                ))),
            },
            Err(e) => Err(CallFailed(format!("malformed call: {e}"))),
        };
        let framed = match result {
            Ok(results) => frame(&CallReply { error: None }, &results),
            Err(CallFailed(error)) => frame(&CallReply { error: Some(error) }, &[]),
        };
        if let Err(e) = self.js.client().publish(reply, framed).await {
            tracing::warn!(%app, "cannot reply to a call: {e}");
        }
    }
}

/// Calls a component's exports on whichever live host runs its app.
pub(super) struct NatsCall {
    forward: Arc<NatsForward>,
    app: String,
    component: String,
}

impl weft_runtime::RemoteCall for NatsCall {
    fn call(
        &self,
        interface: &str,
        function: &str,
        params: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallFailed>> {
        let forward = self.forward.clone();
        let (app, component) = (self.app.clone(), self.component.clone());
        let head = CallHead {
            interface: interface.to_string(),
            function: function.to_string(),
            wave: false,
        };
        let carried = async move { forward.call_app(&app, &component, &head, &params).await };
        let span = weft_telemetry::client_span(
            "remote call",
            format_args!("{}/{} {interface}.{function}", self.app, self.component),
        );
        let app = self.app.clone();
        Box::pin(async move {
            let result = carried.instrument(span.clone()).await;
            weft_telemetry::record_result(&span, &result);
            let outcome = match result {
                Ok(_) => weft_metrics::Outcome::Ok,
                Err(_) => weft_metrics::Outcome::Error,
            };
            weft_metrics::remote_call(&app, outcome);
            result
        })
    }
}

/// Runs a call whose arguments are WAVE texts (a JSON array); its results go back the same way.
async fn call_wave(
    server: &weft_runtime::ExportServer,
    head: &CallHead,
    params: &[u8],
) -> Result<Vec<u8>, CallFailed> {
    let args: Vec<String> = serde_json::from_slice(params)
        .map_err(|e| CallFailed(format!("malformed call arguments: {e}")))?;
    let results = server.call_wave(&head.path(), &args).await?;
    serde_json::to_vec(&results).map_err(|e| CallFailed(e.to_string()))
}

impl NatsForward {
    /// Sends a call to `component` of `app` on the first host running the app that takes it
    /// (this one included); returns the reply's body.
    async fn call_app(
        &self,
        app: &str,
        component: &str,
        head: &CallHead,
        params: &[u8],
    ) -> Result<Vec<u8>, CallFailed> {
        let payload = frame(head, params);
        let limit = self.max_payload.saturating_sub(HEAD_ROOM);
        if payload.len() > limit {
            return Err(CallFailed(format!(
                "the arguments take {} bytes; at most {limit} cross hosts",
                payload.len()
            )));
        }
        for host in self.candidates_with_self(app) {
            let subject = self.subjects.call(app, component, &host);
            match self.send_to(app, &host, subject, payload.clone()).await {
                Ok(reply) => {
                    let (head, body) =
                        unframe::<CallReply>(&reply).map_err(|e| format!("host {host}: {e}"))?;
                    return match head.error {
                        None => Ok(body.to_vec()),
                        Some(error) => Err(CallFailed(format!("host {host}: {error}"))),
                    };
                }
                Err(Missed::NotDelivered) => continue,
                Err(Missed::Failed(response)) => {
                    return Err(CallFailed(format!(
                        "host {host}: the call failed ({})",
                        response.status()
                    )))
                }
            }
        }
        Err(CallFailed(format!(
            "no host runs app `{app}` right now; `weft app status {app}` says why"
        )))
    }
}

impl Member {
    /// The component with `digest` from the lattice's blob store, if it was deployed.
    pub async fn component_bytes(&self, digest: &str) -> Result<Option<bytes::Bytes>, MemberError> {
        Ok(self.blobs.get(digest).await?)
    }

    /// Calls an export of `component` of `app` with WAVE arguments, here when the app runs here,
    /// else on a host that runs it.
    pub async fn call(
        &self,
        app: &str,
        component: &str,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, MemberError> {
        if self.host.export_server(app, component).is_some() {
            return Ok(self.host.call(app, component, path, args).await?);
        }
        // Unknown apps and components are named before anything crosses the bus.
        let status = self.app_status(app).await?;
        if !status.components.iter().any(|c| c.name == component) {
            return Err(crate::HostError::no_component(app, component, &status).into());
        }
        let head = CallHead::of_path(path, true);
        let params = serde_json::to_vec(args).map_err(|e| MemberError::Refused(e.to_string()))?;
        let reply = self
            .forwarder
            .call_app(app, component, &head, &params)
            .await
            .map_err(|CallFailed(e)| crate::HostError::Call(e))?;
        serde_json::from_slice(&reply)
            .map_err(|e| crate::HostError::Call(format!("malformed results: {e}")).into())
    }
}

/// This host's way to other apps' components: calls through the forwarder's choice of host.
pub(super) struct RemoteCalls(pub(super) Arc<NatsForward>);

impl crate::RemoteLinks for RemoteCalls {
    fn caller(&self, app: &str, component: &str) -> Arc<dyn weft_runtime::RemoteCall> {
        Arc::new(NatsCall {
            forward: self.0.clone(),
            app: app.to_string(),
            component: component.to_string(),
        })
    }
}
