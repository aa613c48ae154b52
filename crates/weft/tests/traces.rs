//! OpenTelemetry traces end to end: hosts export OTLP/HTTP to a receiver built on the
//! collector's own message types; the client's `traceparent` is kept through the harness, the
//! app and its key-value calls, and across hosts.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use support::*;

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
    service: String,
}

/// An OTLP/HTTP trace receiver on a free loopback port.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    _runtime: tokio::runtime::Runtime,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl Receiver {
    fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let store = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                    };
                    let mut store = store.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(|kv| text(kv.value.as_ref()))
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            store.push(Span {
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent: hex::encode(&span.parent_span_id),
                                name: span.name,
                                kind: span.kind,
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                    (axum::http::StatusCode::OK, Vec::new())
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            endpoint,
            spans,
            _runtime: runtime,
        }
    }

    /// The variables a host exports to this receiver with, batches sent every 100 ms.
    fn env(&self) -> [(&str, &str); 2] {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]
    }

    /// The spans of `trace`, once `done` holds for them (or the time is up).
    fn trace(&self, trace: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace)
                .cloned()
                .collect();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn find<'a>(spans: &'a [Span], name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.name == name)
}

/// The one span named `name`, and it must be a child of `parent`.
fn child<'a>(spans: &'a [Span], name: &str, parent: &Span) -> &'a Span {
    let span = find(spans, name).unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"));
    assert_eq!(
        span.parent, parent.span_id,
        "`{name}` is not a child of `{}`: {spans:#?}",
        parent.name
    );
    span
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CLIENT_SPAN}-01")
}

/// The counter (key-value, config, secrets) behind the harness, routed at `/traced`.
fn traced_app(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let g = guests();
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: traced }}
spec:
  components:
{harness}    - name: counter
      type: component
      properties:
        image: {counter}
        config: [{{ name: greetings, properties: {{ greeting: hi }} }}]
        secrets: [{{ name: token, properties: {{ key: counter-token }} }}]
      traits:
        - type: link
          properties: {{ target: {{ name: kv }}, namespace: wasi, package: keyvalue, interfaces: [store, atomics, batch] }}
    - name: kv
      type: capability
      properties: {{ image: weft:keyvalue }}
{http}"#,
        harness = harness_node("counter"),
        counter = g.counter.display(),
        http = http_server("harness", port, "/traced"),
    );
    write_yaml(dir, "traced", &yaml)
}

#[test]
fn one_trace_runs_from_the_client_through_the_harness_and_the_app_to_its_key_value_calls() {
    let receiver = Receiver::start();
    let host = Host::start_with_env(&[], &receiver.env());
    let s = Scene::new();
    let _ = put_secret(&host, "platform-token", "let-me-in");
    let _ = put_secret(&host, "counter-token", "counter-secret-value");
    host.deploy(&traced_app(s.dir.path(), s.port));

    let response = http()
        .post(format!("http://127.0.0.1:{}/traced/visits", s.port))
        .bearer_auth("let-me-in")
        .header("traceparent", traceparent(TRACE))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().unwrap().trim(), "1");

    // Spans are exported as they end, in batches: a guest streaming its body may end after the
    // request's span, so the test waits for every one it checks.
    let spans = receiver.trace(TRACE, |spans| {
        let has = |name: &str| spans.iter().any(|s| s.name.starts_with(name));
        has("wasi:keyvalue/atomics increment")
            && has("POST /traced")
            && has("guest traced/harness")
            && has("guest traced/counter")
            && has("http client POST")
    });
    // The request's span continues the client's: same trace, the client's span its parent.
    let request = find(&spans, "POST /traced")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}\n{}", host.log()));
    assert_eq!(request.parent, CLIENT_SPAN, "{request:#?}");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.service, "weft");

    let harness = child(&spans, "guest traced/harness", request);
    assert_eq!(harness.attributes["weft.app"], "traced");
    assert_eq!(harness.attributes["weft.component"], "harness");
    // The harness reaches the app through its link: an HTTP client span, then the app.
    let link = spans
        .iter()
        .find(|s| s.name.starts_with("http client POST") && s.parent == harness.span_id)
        .unwrap_or_else(|| panic!("no link span under the harness in {spans:#?}"));
    assert_eq!(link.kind, SpanKind::Client as i32);
    let app = child(&spans, "guest traced/counter", link);

    // The counter's key-value calls are spans of the app's invocation, named after the WIT
    // function; their arguments (which could hold secrets) are not exported.
    let kv: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("wasi:keyvalue/"))
        .collect();
    assert!(!kv.is_empty(), "{spans:#?}");
    for call in &kv {
        assert_eq!(call.parent, app.span_id, "{call:#?}");
        assert!(
            call.attributes["weft.capability"].starts_with("wasi:keyvalue/"),
            "{call:#?}"
        );
    }
    assert!(
        kv.iter()
            .any(|s| s.name == "wasi:keyvalue/atomics increment"),
        "{kv:#?}"
    );

    // Revealing a secret is a span too, and the secret's value is nowhere in the export.
    let secret_trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let response = http()
        .get(format!("http://127.0.0.1:{}/traced/secret/token", s.port))
        .bearer_auth("let-me-in")
        .header("traceparent", traceparent(secret_trace))
        .send()
        .unwrap();
    // The harness keeps its token to itself, so the counter's check of its own fails, but only
    // after revealing its secret.
    assert_eq!(
        response.text().unwrap().trim(),
        "wrong or missing bearer token"
    );
    let spans = receiver.trace(secret_trace, |spans| {
        spans
            .iter()
            .any(|s| s.name.starts_with("wasmcloud:secrets/reveal"))
    });
    assert!(
        find(&spans, "wasmcloud:secrets/reveal reveal").is_some(),
        "{spans:#?}"
    );
    let exported = format!("{:?}", receiver.spans.lock().unwrap());
    assert!(
        !exported.contains("counter-secret-value") && !exported.contains("let-me-in"),
        "a secret was exported"
    );

    // A request with no trace context starts a trace of its own. Picked by its path: the
    // secret request's span (also a GET) may still be on its way to the receiver.
    let (code, _) = get(&format!("http://127.0.0.1:{}/traced/visits", s.port));
    assert_eq!(code, 401, "the harness refuses a request without the token");
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = loop {
        let spans = receiver.spans.lock().unwrap();
        if let Some(root) = spans
            .iter()
            .find(|s| {
                s.name == "GET /traced"
                    && s.attributes.get("url.path").map(String::as_str) == Some("/traced/visits")
            })
            .cloned()
        {
            break root;
        }
        drop(spans);
        assert!(Instant::now() < deadline, "no span of the second request");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(root.trace_id, TRACE);
    assert_eq!(root.parent, "", "{root:#?}");
    assert_eq!(root.attributes["http.response.status_code"], "401");
}

#[test]
fn a_request_forwarded_to_another_host_stays_in_the_client_s_trace() {
    let receiver = Receiver::start();
    let nats = Server::nats();
    let s = Scene::new();
    let ports = [free_port(), free_port()];
    let hosts: Vec<Host> = ["h1", "h2"]
        .iter()
        .zip(ports)
        .map(|(id, port)| {
            let zone = if *id == "h1" { "zone=a" } else { "zone=b" };
            let http_addr = format!("127.0.0.1:{port}");
            let nats_url = nats.url();
            Host::start_with_env(
                &[
                    "--nats",
                    &nats_url,
                    "--lattice",
                    "traced",
                    "--label",
                    zone,
                    "--host-id",
                    id,
                    "--http",
                    &http_addr,
                ],
                &receiver.env(),
            )
        })
        .collect();
    // The app runs on h1 only; h2 forwards its requests there.
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: hello, annotations: {{ version: v1 }} }}
spec:
  components:
    - name: hello
      type: component
      properties: {{ image: {image} }}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread: [{{ name: east, requirements: {{ zone: a }} }}]
{http}"#,
        image = guests().hello.display(),
        http = http_server("hello", s.port, "/hello"),
    );
    let manifest = write_yaml(s.dir.path(), "hello", &yaml);
    hosts[1].cli_ok(&["app", "deploy", manifest.to_str().unwrap()]);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let url = format!("http://127.0.0.1:{}/hello", ports[1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http()
            .get(&url)
            .header("traceparent", traceparent(trace))
            .send()
            .unwrap();
        if response.status().is_success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "h2 never served /hello: {}",
            response.text().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Each host exports its own spans, in its own batches: wait for both hosts' parts.
    // Each host exports its own spans, in its own batches: wait for the whole chain, from the
    // guest on h1 up to h2's request span.
    let spans = receiver.trace(trace, |spans| {
        let parent_of = |span: &Span| spans.iter().find(|s| s.span_id == span.parent);
        spans
            .iter()
            .filter(|s| s.name == "guest hello/hello")
            .filter_map(parent_of)
            .filter_map(parent_of)
            .filter_map(parent_of)
            .any(|request| request.parent == CLIENT_SPAN)
    });
    // Requests that failed while the app was still being placed are in the trace too; the one
    // that was answered is the request span whose forward reached h1.
    let served = find(&spans, "forwarded request hello")
        .unwrap_or_else(|| panic!("h1 served nothing of this trace: {spans:#?}"));
    assert_eq!(served.attributes["weft.host"], "h1");
    assert_eq!(served.kind, SpanKind::Server as i32);
    let forward = spans
        .iter()
        .find(|s| s.span_id == served.parent)
        .unwrap_or_else(|| panic!("the forwarded request's parent is not exported: {spans:#?}"));
    assert_eq!(forward.name, "forward hello");
    assert_eq!(forward.kind, SpanKind::Client as i32);
    let request = spans
        .iter()
        .find(|s| s.span_id == forward.parent)
        .unwrap_or_else(|| panic!("the forward's parent is not exported: {spans:#?}"));
    assert_eq!(request.name, "GET /hello");
    assert_eq!(request.parent, CLIENT_SPAN);
    child(&spans, "guest hello/hello", served);
    drop(hosts);
}

#[test]
fn each_scheduled_tick_is_a_trace_of_its_own_with_its_key_value_calls() {
    let receiver = Receiver::start();
    let host = Host::start_with_env(&[], &receiver.env());
    let s = Scene::new();
    host.deploy(&ticker_app(&s, "tick", "1s", "{ backend: memory }"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let (tick, spans) = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let tick = spans.iter().find(|tick| {
            tick.name == "tick tick/ticker"
                && spans
                    .iter()
                    .any(|s| s.parent == tick.span_id && s.name.starts_with("wasi:keyvalue/"))
        });
        if let Some(tick) = tick {
            break (tick.clone(), spans);
        }
        assert!(
            Instant::now() < deadline,
            "no tick with its key-value calls in {spans:#?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(tick.parent, "", "a tick starts its own trace: {tick:#?}");
    assert_eq!(tick.attributes["weft.invocation"], "tick");
    assert_eq!(tick.attributes["weft.component"], "ticker");
    let calls: Vec<&Span> = spans.iter().filter(|s| s.parent == tick.span_id).collect();
    assert!(
        calls.iter().all(|s| s.trace_id == tick.trace_id),
        "{calls:#?}"
    );
}
