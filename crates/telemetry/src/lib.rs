//! weft's OpenTelemetry traces: an OTLP export set up from the standard `OTEL_*` variables (and
//! nothing when they are unset), the spans weft opens per request, guest invocation and
//! cross-host call, and the W3C trace context (`traceparent`) they carry across hosts and apps.

mod names;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported; when not, weft opens no spans at all, so they cost nothing.
pub fn enabled() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Why the trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "{0}=grpc: weft exports OTLP over HTTP only; set {0}=http/protobuf (or http/json) and \
         point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (usually 4318)"
    )]
    Grpc(&'static str),
    #[error("{0}={1}: the OTLP encodings are `http/protobuf` (the default) and `http/json`")]
    Protocol(&'static str, String),
    #[error(
        "OTEL_TRACES_EXPORTER={0}: weft exports traces with `otlp` only (or `none` for no export)"
    )]
    Exporter(String),
    #[error("cannot set up the OTLP trace export: {0}; check the OTEL_EXPORTER_OTLP_* variables")]
    Build(String),
}

/// The running export; dropping it sends the spans still queued and stops it.
pub struct Export {
    provider: SdkTracerProvider,
}

impl Drop for Export {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("the last spans could not be exported: {e}");
        }
    }
}

/// The layer that exports weft's spans, with the export it feeds, when the standard variables
/// ask for one: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) set, the SDK not
/// disabled (`OTEL_SDK_DISABLED`), the exporter `otlp` (`OTEL_TRACES_EXPORTER`). Sampling, batching,
/// headers, timeouts and the service name follow their `OTEL_*` variables; the service name is
/// `weft` unless `OTEL_SERVICE_NAME` says otherwise.
pub fn export_from_env<S>() -> Result<Option<(impl Layer<S>, Export)>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    if let Some(exporter) = var("OTEL_TRACES_EXPORTER") {
        match exporter.trim() {
            "otlp" => {}
            "none" => return Ok(None),
            other => return Err(TelemetryError::Exporter(other.to_string())),
        }
    }
    if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    // OTLP/HTTP's default encoding is protobuf, whichever encodings this build has.
    let mut protocol = opentelemetry_otlp::Protocol::HttpBinary;
    if let Some((name, value)) = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|value| (name, value)))
    {
        protocol = match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => opentelemetry_otlp::Protocol::HttpBinary,
            "http/json" => opentelemetry_otlp::Protocol::HttpJson,
            "grpc" => return Err(TelemetryError::Grpc(name)),
            _ => return Err(TelemetryError::Protocol(name, value)),
        };
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("weft");
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(names::CapabilityNames::new(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build(),
        ))
        .with_resource(resource.build())
        .build();
    // Source locations, threads and busy/idle times are weft's internals, not the user's.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("weft"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            // weft's own spans only (not every WASI call of a guest), and as span events only
            // warnings and errors: the generated capability bindings log arguments and results
            // at TRACE, and those may hold secrets.
            meta.target().starts_with("weft")
                && (meta.is_span() || *meta.level() <= tracing::Level::WARN)
        }));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Some((layer, Export { provider })))
}

/// The span of one HTTP request coming into the host, continuing the client's trace when its
/// headers carry a `traceparent`. Named after the route, not the path, so names stay few.
pub fn request_span<B>(request: &http::Request<B>, route: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "http request",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    continue_trace(&span, |name| {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    });
    span
}

/// Records the status a request was answered with on its span.
pub fn record_status(span: &Span, status: http::StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// The span of one invocation of a guest component: `guest` for an HTTP request, or what it
/// is handed (`message`, `key change`, `tick`).
pub fn guest_span(what: &'static str, app: &str, version: &str, component: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "guest",
        otel.name = format!("{what} {app}/{component}"),
        weft.invocation = what,
        weft.app = app,
        weft.app.version = version,
        weft.component = component,
        otel.status_code = tracing::field::Empty,
    )
}

/// Marks a span as failed, with the reason.
pub fn record_error(span: &Span, reason: &dyn std::fmt::Display) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "error");
    span.in_scope(|| tracing::warn!(target: "weft_telemetry", "{reason}"));
}

/// Marks a span as failed when `result` is an error, with the error as the reason.
pub fn record_result<T, E: std::fmt::Display>(span: &Span, result: &Result<T, E>) {
    if let Err(e) = result {
        record_error(span, e);
    }
}

/// The span of one HTTP request a guest sends, named after its method and host (never its
/// path or query, which may name users or carry tokens).
pub fn http_client_span(method: &http::Method, uri: &http::Uri) -> Span {
    if !enabled() {
        return Span::none();
    }
    let host = uri.host().unwrap_or_default();
    tracing::info_span!(
        "http client",
        otel.name = format!("http client {method} {host}"),
        otel.kind = "client",
        http.request.method = %method,
        server.address = host,
        otel.status_code = tracing::field::Empty,
    )
}

/// The span of one call to another host: a request forwarded to it or a component called
/// there. `kind` names it (`forward`, `remote call`).
pub fn client_span(kind: &'static str, name: impl std::fmt::Display) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        "client",
        otel.name = format!("{kind} {name}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
    )
}

/// The span of one request or call another host sent here, continuing the sender's trace.
pub fn remote_span<'h>(
    kind: &'static str,
    name: impl std::fmt::Display,
    host: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "served for another host",
        otel.name = format!("{kind} {name}"),
        otel.kind = "server",
        weft.host = host,
        otel.status_code = tracing::field::Empty,
    );
    continue_trace(&span, header);
    span
}

/// Writes `span`'s trace context (`traceparent`, `tracestate`) through `set`, so the next hop
/// continues its trace; nothing when traces are off.
pub fn inject(span: &Span, set: impl FnMut(&str, String)) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut Setter(set));
}

/// Writes the current span's trace context through `set`; nothing (not even a look at the
/// current span) when traces are off.
pub fn inject_current(set: impl FnMut(&str, String)) {
    if enabled() {
        inject(&Span::current(), set);
    }
}

/// Writes `span`'s trace context into HTTP headers, replacing any the request had.
pub fn inject_http(span: &Span, headers: &mut http::HeaderMap) {
    inject(span, |name, value| {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    });
}

fn continue_trace<'h>(span: &Span, header: impl Fn(&str) -> Option<&'h str>) {
    let parent = TraceContextPropagator::new().extract(&Getter(header, std::marker::PhantomData));
    use opentelemetry::trace::TraceContextExt as _;
    if parent.span().span_context().is_valid() {
        // Only fails when the span is disabled, which `enabled()` ruled out.
        let _ = span.set_parent(parent);
    }
}

struct Setter<F>(F);

impl<F: FnMut(&str, String)> Injector for Setter<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

struct Getter<'h, F>(F, std::marker::PhantomData<&'h str>);

impl<'h, F: Fn(&str) -> Option<&'h str>> Extractor for Getter<'h, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        // The W3C trace-context propagator asks for its two headers by name only.
        Vec::new()
    }
}
