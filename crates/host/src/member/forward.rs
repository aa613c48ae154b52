//! HTTP requests between hosts over NATS request/reply: forwarding a request for an app that
//! runs elsewhere, and serving the requests other hosts forward here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use tracing::Instrument as _;
use weft_lattice::{frame, unframe, Directory, Placements, RequestHead, ResponseHead, Subjects};
use weft_runtime::{text_response, WorkloadBody};

use crate::{Forward, IngressRequest};

use super::{Member, Serving, FORWARD_TIMEOUT, HEAD_ROOM, LIVENESS_CHECK};

/// How long a stopped subscription waits for the server to confirm it delivered everything.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Member {
    /// Takes this host's share of the app's forwarded requests.
    pub(super) async fn serve_other_hosts(self: &Arc<Self>, app: &str) -> Option<Serving> {
        let subject = self.subjects.http(app, &self.options.host_id);
        let mut subscriber = match self.js.client().subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, "cannot take forwarded requests: {e}");
                return None;
            }
        };
        let calls_subject = self.subjects.calls_of(app, &self.options.host_id);
        let mut calls = match self.js.client().subscribe(calls_subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(subject = %calls_subject, "cannot take calls: {e}");
                return None;
            }
        };
        let member = Arc::downgrade(self);
        let app: Arc<str> = app.into();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let answer = |message: async_nats::Message, call: bool| {
                let member = member.upgrade();
                let app = app.clone();
                async move {
                    let Some(member) = member else { return };
                    if call {
                        member.answer_call(&app, message).await
                    } else {
                        member.answer(&app, message).await
                    }
                }
            };
            loop {
                let (message, call) = tokio::select! {
                    _ = &mut stopped => break,
                    Some(m) = subscriber.next() => (m, false),
                    Some(m) = calls.next() => (m, true),
                    else => return,
                };
                tokio::spawn(answer(message, call));
            }
            // Stopped: the server delivers nothing new, and what it already sent still gets an
            // answer (served, or "no longer runs here") instead of leaving its sender waiting.
            for subscription in [&mut subscriber, &mut calls] {
                if let Err(e) = subscription.drain().await {
                    tracing::debug!("cannot drain a subscription: {e}");
                }
            }
            let mut rest =
                futures::stream::select(subscriber.map(|m| (m, false)), calls.map(|m| (m, true)));
            while let Ok(Some((message, call))) = tokio::time::timeout(DRAIN, rest.next()).await {
                tokio::spawn(answer(message, call));
            }
        });
        Some(Serving { task, _stop: stop })
    }

    /// Serves one forwarded request on this host and replies with the whole response.
    pub(super) async fn answer(&self, app: &str, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let span = weft_telemetry::remote_span(
            "forwarded request",
            app,
            &self.options.host_id,
            trace_header(&message),
        );
        let response = match unframe::<RequestHead>(&message.payload) {
            Ok((head, body)) => {
                self.serve_here(app, head, body)
                    .instrument(span.clone())
                    .await
            }
            Err(e) => text_response(
                http::StatusCode::BAD_REQUEST,
                format!("malformed forwarded request: {e}"),
            ),
        };
        weft_telemetry::record_status(&span, response.status());
        let (parts, body) = response.into_parts();
        let limit = self.forwarder.max_payload.saturating_sub(HEAD_ROOM);
        let framed = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(body) => frame(
                &ResponseHead {
                    status: parts.status.as_u16(),
                    headers: end_to_end(&parts.headers),
                },
                &body.to_bytes(),
            ),
            Err(e) => {
                let status = http::StatusCode::BAD_GATEWAY;
                let message = format!(
                    "app `{app}` on host {}: the response could not be carried back: {e} \
                     (at most {limit} bytes cross hosts)\n",
                    self.options.host_id
                );
                frame(
                    &ResponseHead {
                        status: status.as_u16(),
                        headers: vec![("content-type".into(), b"text/plain".to_vec())],
                    },
                    message.as_bytes(),
                )
            }
        };
        if let Err(e) = self.js.client().publish(reply, framed).await {
            tracing::warn!(%app, "cannot reply to a forwarded request: {e}");
        }
    }

    pub(super) async fn serve_here(
        &self,
        app: &str,
        head: RequestHead,
        body: Bytes,
    ) -> http::Response<WorkloadBody> {
        let mut builder = http::Request::builder()
            .method(head.method.as_str())
            .uri(head.uri.as_str());
        for (name, value) in &head.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let body = Full::new(body).map_err(|never| -> weft_runtime::HttpError { match never {} });
        let req = match builder.body(body) {
            Ok(req) => req,
            Err(e) => {
                return text_response(
                    http::StatusCode::BAD_REQUEST,
                    format!("malformed forwarded request: {e}"),
                )
            }
        };
        let host = crate::ingress::request_host(req.headers());
        match self
            .host
            .local_workload(app, host.as_deref(), req.uri().path())
        {
            Some(workload) => workload.serve(req).await,
            None => text_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "app `{app}` no longer runs on host {}; try again",
                    self.options.host_id
                ),
            ),
        }
    }
}

/// Reads the trace context another host sent with `message`.
pub(super) fn trace_header<'m>(
    message: &'m async_nats::Message,
) -> impl Fn(&str) -> Option<&'m str> + 'm {
    move |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str())
    }
}

/// The headers that describe the message itself, not one connection's framing of it (the
/// body crosses hosts whole, so its framing is the next connection's business).
pub(super) fn end_to_end(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Forwards requests over NATS request/reply to a host running the app, picked in turn among
/// the live hosts the app is placed on.
pub(super) struct NatsForward {
    pub(super) client: async_nats::Client,
    pub(super) subjects: Subjects,
    pub(super) max_payload: usize,
    pub(super) host_id: String,
    /// The placements as last applied.
    pub(super) placements: Arc<Mutex<Placements>>,
    pub(super) directory: Arc<Directory>,
    pub(super) next: AtomicUsize,
}

/// Why a forwarded request got no reply from one host.
pub(super) enum Missed {
    /// Nobody took it: it never ran, so another host may take it.
    NotDelivered,
    /// It may have run; the response says what is known.
    Failed(http::Response<WorkloadBody>),
}

impl NatsForward {
    /// The live hosts `app` is placed on, this host included, starting with the next in turn.
    pub(super) fn candidates_with_self(&self, app: &str) -> Vec<String> {
        self.pick(app, true)
    }

    /// The live hosts other than this one `app` is placed on, starting with the next in turn.
    pub(super) fn candidates(&self, app: &str) -> Vec<String> {
        self.pick(app, false)
    }

    pub(super) fn pick(&self, app: &str, with_self: bool) -> Vec<String> {
        let alive: BTreeSet<String> = self.directory.alive().into_iter().map(|h| h.host).collect();
        let mut hosts: Vec<String> = self
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apps
            .get(app)
            .map(|p| {
                p.hosts
                    .keys()
                    .filter(|h| alive.contains(*h) && (with_self || **h != self.host_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !hosts.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % hosts.len();
            hosts.rotate_left(start);
        }
        hosts
    }

    /// Sends the request to `host` and waits for its reply, giving up as soon as the host
    /// stops sending heartbeats.
    pub(super) async fn send_to(
        &self,
        app: &str,
        host: &str,
        subject: String,
        payload: Bytes,
    ) -> Result<Bytes, Missed> {
        let mut request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(FORWARD_TIMEOUT));
        let mut trace = async_nats::HeaderMap::new();
        weft_telemetry::inject_current(|name, value| trace.insert(name, value.as_str()));
        if !trace.is_empty() {
            request = request.headers(trace);
        }
        let reply = self.client.send_request(subject, request);
        tokio::pin!(reply);
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        let result = loop {
            tokio::select! {
                result = &mut reply => break result,
                _ = check.tick() => {
                    if !self.directory.alive().iter().any(|h| h.host == host) {
                        return Err(Missed::Failed(text_response(
                            http::StatusCode::BAD_GATEWAY,
                            format!(
                                "host {host} running app `{app}` was lost while serving this \
                                 request; it may or may not have taken effect"
                            ),
                        )));
                    }
                }
            }
        };
        match result {
            Ok(reply) => Ok(reply.payload),
            Err(e) => {
                use async_nats::RequestErrorKind as Kind;
                Err(match e.kind() {
                    Kind::NoResponders => Missed::NotDelivered,
                    Kind::TimedOut => Missed::Failed(text_response(
                        http::StatusCode::GATEWAY_TIMEOUT,
                        format!("host {host} running app `{app}` did not answer in time"),
                    )),
                    _ => Missed::Failed(text_response(
                        http::StatusCode::BAD_GATEWAY,
                        format!("cannot reach host {host} running app `{app}`: {e}"),
                    )),
                })
            }
        }
    }
}

impl Forward for NatsForward {
    fn forward(
        self: Arc<Self>,
        app: &str,
        req: IngressRequest,
    ) -> BoxFuture<'static, http::Response<WorkloadBody>> {
        let this = self.clone();
        let limit = self.max_payload.saturating_sub(HEAD_ROOM);
        let app = app.to_string();
        let label = app.clone();
        let carried = async move {
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return not_carried(text_response(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "app `{app}` runs on another host and this request cannot be carried \
                             there: {e} (at most {limit} bytes cross hosts)"
                        ),
                    ))
                }
            };
            let head = RequestHead {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: end_to_end(&parts.headers),
            };
            let payload = frame(&head, &body);
            let mut reply = None;
            // A host that took no delivery never ran the request: the next one may.
            for host in this.candidates(&app) {
                let subject = this.subjects.http(&app, &host);
                match this.send_to(&app, &host, subject, payload.clone()).await {
                    Ok(payload) => {
                        reply = Some(payload);
                        break;
                    }
                    Err(Missed::NotDelivered) => continue,
                    Err(Missed::Failed(response)) => return not_carried(response),
                }
            }
            let Some(reply) = reply else {
                return not_carried(text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("no host runs app `{app}` right now; `weft app status {app}` says why"),
                ));
            };
            match unframe::<ResponseHead>(&reply) {
                Ok((head, body)) => {
                    let mut response = http::Response::new(
                        Full::new(body)
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    );
                    *response.status_mut() = http::StatusCode::from_u16(head.status)
                        .unwrap_or(http::StatusCode::BAD_GATEWAY);
                    for (name, value) in head.headers {
                        if let (Ok(name), Ok(value)) = (
                            http::HeaderName::from_bytes(name.as_bytes()),
                            http::HeaderValue::from_bytes(&value),
                        ) {
                            response.headers_mut().append(name, value);
                        }
                    }
                    response
                }
                Err(e) => not_carried(text_response(
                    http::StatusCode::BAD_GATEWAY,
                    format!("malformed reply from the host running app `{app}`: {e}"),
                )),
            }
        };
        let span = weft_telemetry::client_span("forward", &label);
        Box::pin(async move {
            let response = carried.instrument(span.clone()).await;
            // The other host's own answers come back with its status; weft's failures to carry
            // a request are the 502/503/504/413s it writes itself, marked by the extension.
            let outcome = if response.extensions().get::<NotCarried>().is_some() {
                weft_telemetry::record_error(&span, &response.status());
                weft_metrics::Outcome::Error
            } else {
                weft_metrics::Outcome::Ok
            };
            weft_metrics::forwarded(&label, outcome);
            response
        })
    }
}

/// Marks a response weft wrote because a request could not be carried to another host.
#[derive(Clone, Copy)]
struct NotCarried;

/// `response`, marked as a failure to carry the request.
fn not_carried(mut response: http::Response<WorkloadBody>) -> http::Response<WorkloadBody> {
    response.extensions_mut().insert(NotCarried);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_end_to_end_headers_cross_hosts() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        headers.append("x-tag", "a".parse().unwrap());
        headers.append("x-tag", "b".parse().unwrap());
        let crossed = end_to_end(&headers);
        let names: Vec<&str> = crossed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-tag", "x-tag"]);
    }
}
