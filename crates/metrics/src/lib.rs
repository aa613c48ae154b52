//! weft's Prometheus metrics: one registry per process. Series of a workload are labelled by
//! app, version and component, created on first use and removed when the last workload with
//! those labels goes, so the scrape holds live apps only (bounded cardinality); causes, status
//! classes, capabilities and backends are closed sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds: 0.25 ms to 30 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    30.0,
];

/// Which app, version and component a series belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    pub app: String,
    pub version: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    app: String,
    version: String,
    component: String,
    code: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    app: String,
    version: String,
    component: String,
    cause: Cause,
}

/// A response's status class.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum StatusClass {
    C1xx,
    C2xx,
    C3xx,
    C4xx,
    C5xx,
}

impl StatusClass {
    const ALL: [StatusClass; 5] = [
        StatusClass::C1xx,
        StatusClass::C2xx,
        StatusClass::C3xx,
        StatusClass::C4xx,
        StatusClass::C5xx,
    ];

    fn of(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::C1xx,
            200..=299 => StatusClass::C2xx,
            300..=399 => StatusClass::C3xx,
            400..=499 => StatusClass::C4xx,
            _ => StatusClass::C5xx,
        }
    }
}

/// Why weft answered a request on a guest's behalf.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Cause {
    /// The guest trapped or returned without a response.
    Trap,
    /// The guest ran past its execution timeout.
    Timeout,
    /// The guest passed its memory limit.
    Memory,
    /// The host's memory budget was spent.
    HostMemory,
    /// The component was at its concurrent-instance limit.
    InstanceLimit,
    /// The request body was over the host's limit.
    TooLarge,
}

impl Cause {
    const ALL: [Cause; 6] = [
        Cause::Trap,
        Cause::Timeout,
        Cause::Memory,
        Cause::HostMemory,
        Cause::InstanceLimit,
        Cause::TooLarge,
    ];
}

/// Label values written as Prometheus users expect them (`2xx`, `instance_limit`).
macro_rules! label_values {
    ($($ty:ident { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                use std::fmt::Write as _;
                encoder.write_str(match self { $($ty::$variant => $text),+ })
            }
        }
    )+};
}

label_values! {
    StatusClass { C1xx => "1xx", C2xx => "2xx", C3xx => "3xx", C4xx => "4xx", C5xx => "5xx" }
    Cause {
        Trap => "trap",
        Timeout => "timeout",
        Memory => "memory",
        HostMemory => "host_memory",
        InstanceLimit => "instance_limit",
        TooLarge => "too_large",
    }
    Outcome { Ok => "ok", Error => "error" }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppOutcome {
    app: String,
    outcome: Outcome,
}

/// How a request or call carried to another host ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Failed, or not answered.
    Error,
}

/// Every metric weft keeps.
struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    errors: Family<CauseLabels, Counter>,
    instances_live: Family<WorkloadLabels, Gauge>,
    instances_created: Family<WorkloadLabels, Counter>,
    warm_hits: Family<WorkloadLabels, Counter>,
    unrouted: Counter,
    compilations: Counter,
    compile_cache_hits: Counter,
    capability_calls: Family<CapabilityLabels, Counter>,
    messages: Family<WorkloadLabels, Counter>,
    message_failures: Family<WorkloadLabels, Counter>,
    remote_calls: Family<AppOutcome, Counter>,
    forwarded: Family<AppOutcome, Counter>,
    /// How many live meters hold each workload's labels.
    owners: Mutex<HashMap<WorkloadLabels, usize>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("weft");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            instances_live: Family::default(),
            instances_created: Family::default(),
            warm_hits: Family::default(),
            unrouted: Counter::default(),
            compilations: Counter::default(),
            compile_cache_hits: Counter::default(),
            capability_calls: Family::default(),
            messages: Family::default(),
            message_failures: Family::default(),
            remote_calls: Family::default(),
            forwarded: Family::default(),
            owners: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by status class",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response headers",
            m.latency.clone(),
        );
        registry.register(
            "http_errors",
            "Requests weft answered on a guest's behalf, by cause",
            m.errors.clone(),
        );
        registry.register(
            "instances_live",
            "Instances running right now",
            m.instances_live.clone(),
        );
        registry.register(
            "instances_created",
            "Fresh instances created",
            m.instances_created.clone(),
        );
        registry.register(
            "warm_hits",
            "Requests served by a reused warm instance",
            m.warm_hits.clone(),
        );
        registry.register(
            "http_unrouted",
            "Requests no app's route matched",
            m.unrouted.clone(),
        );
        registry.register(
            "compilations",
            "Components compiled (compile-cache misses)",
            m.compilations.clone(),
        );
        registry.register(
            "compile_cache_hits",
            "Components loaded without compiling (held in memory or in the compile cache)",
            m.compile_cache_hits.clone(),
        );
        registry.register(
            "capability_calls",
            "Host-function calls of capabilities by guests (resource drops included), by \
             capability and the backend of the link in force",
            m.capability_calls.clone(),
        );
        registry.register(
            "messages_delivered",
            "Messages, key changes and ticks delivered to components",
            m.messages.clone(),
        );
        registry.register(
            "message_failures",
            "Deliveries whose handler failed",
            m.message_failures.clone(),
        );
        registry.register(
            "remote_calls",
            "Component-link calls carried to another host",
            m.remote_calls.clone(),
        );
        registry.register(
            "forwarded_requests",
            "HTTP requests carried to another host",
            m.forwarded.clone(),
        );
        Metrics { registry, ..m }
    })
}

static OFF: AtomicBool = AtomicBool::new(false);

/// Stops counting, for a host run with metrics off: every recording call returns at once.
pub fn turn_off() {
    OFF.store(true, Ordering::Relaxed);
}

/// Whether metrics are kept.
pub fn enabled() -> bool {
    !OFF.load(Ordering::Relaxed)
}

/// Every metric in the OpenMetrics text format Prometheus scrapes.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}

/// The metrics of one workload (an app's component at one version); its series go when the
/// last meter with its labels is dropped.
pub struct WorkloadMeter {
    labels: WorkloadLabels,
    // Each series is looked up once, on first use (so an idle app costs the scrape nothing),
    // and then counted through its handle, with no label hashing per request.
    latency: OnceLock<Histogram>,
    requests: [OnceLock<Counter>; 5],
    live: OnceLock<Gauge>,
    created: OnceLock<Counter>,
    warm_hits: OnceLock<Counter>,
}

impl WorkloadMeter {
    /// The app, version and component it counts for.
    pub fn labels(&self) -> &WorkloadLabels {
        &self.labels
    }

    /// The meter of `labels`, sharing series with any live meter of the same labels.
    pub fn new(labels: WorkloadLabels) -> Self {
        let m = metrics();
        *m.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(labels.clone())
            .or_default() += 1;
        WorkloadMeter {
            latency: OnceLock::new(),
            requests: Default::default(),
            live: OnceLock::new(),
            created: OnceLock::new(),
            warm_hits: OnceLock::new(),
            labels,
        }
    }

    /// Counts a request answered with `status` after `elapsed`.
    pub fn request(&self, status: u16, elapsed: Duration) {
        if !enabled() {
            return;
        }
        let code = StatusClass::of(status);
        self.requests[code as usize]
            .get_or_init(|| {
                metrics().requests.get_or_create_owned(&StatusLabels {
                    app: self.labels.app.clone(),
                    version: self.labels.version.clone(),
                    component: self.labels.component.clone(),
                    code,
                })
            })
            .inc();
        self.latency
            .get_or_init(|| metrics().latency.get_or_create_owned(&self.labels))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a request weft answered because of `cause`.
    pub fn error(&self, cause: Cause) {
        if !enabled() {
            return;
        }
        let labels = CauseLabels {
            app: self.labels.app.clone(),
            version: self.labels.version.clone(),
            component: self.labels.component.clone(),
            cause,
        };
        metrics().errors.get_or_create(&labels).inc();
    }

    /// Counts an instance starting; it is live until the guard drops.
    pub fn instance(&self, fresh: bool) -> Option<LiveInstance> {
        if !enabled() {
            return None;
        }
        let m = metrics();
        let (counter, family) = if fresh {
            (&self.created, &m.instances_created)
        } else {
            (&self.warm_hits, &m.warm_hits)
        };
        counter
            .get_or_init(|| family.get_or_create_owned(&self.labels))
            .inc();
        let live = self
            .live
            .get_or_init(|| m.instances_live.get_or_create_owned(&self.labels))
            .clone();
        live.inc();
        Some(LiveInstance(live))
    }

    /// Counts a delivery (message, key change, tick) to the component and whether it failed.
    pub fn delivery(&self, failed: bool) {
        if !enabled() {
            return;
        }
        let m = metrics();
        m.messages.get_or_create(&self.labels).inc();
        if failed {
            m.message_failures.get_or_create(&self.labels).inc();
        }
    }
}

impl Drop for WorkloadMeter {
    fn drop(&mut self) {
        let m = metrics();
        let mut owners = m.owners.lock().unwrap_or_else(|e| e.into_inner());
        let Some(count) = owners.get_mut(&self.labels) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        owners.remove(&self.labels);
        let l = &self.labels;
        m.latency.remove(l);
        m.instances_live.remove(l);
        m.instances_created.remove(l);
        m.warm_hits.remove(l);
        m.messages.remove(l);
        m.message_failures.remove(l);
        for code in StatusClass::ALL {
            m.requests.remove(&StatusLabels {
                app: l.app.clone(),
                version: l.version.clone(),
                component: l.component.clone(),
                code,
            });
        }
        for cause in Cause::ALL {
            m.errors.remove(&CauseLabels {
                app: l.app.clone(),
                version: l.version.clone(),
                component: l.component.clone(),
                cause,
            });
        }
    }
}

/// An instance counted live until dropped.
pub struct LiveInstance(Gauge);

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a request no route matched.
pub fn unrouted() {
    if !enabled() {
        return;
    }
    metrics().unrouted.inc();
}

/// Counts a component load: compiled, or found compiled.
pub fn component_loaded(compiled: bool) {
    if !enabled() {
        return;
    }
    let m = metrics();
    if compiled {
        m.compilations.inc();
    } else {
        m.compile_cache_hits.inc();
    }
}

/// Counts a guest's call of `capability` served by `backend`.
pub fn capability_call(capability: &str, backend: &str) {
    if !enabled() {
        return;
    }
    let labels = CapabilityLabels {
        capability: capability.to_string(),
        backend: backend.to_string(),
    };
    metrics().capability_calls.get_or_create(&labels).inc();
}

/// Counts a component-link call carried to another host for `app`.
pub fn remote_call(app: &str, outcome: Outcome) {
    count_carried(&metrics().remote_calls, app, outcome);
}

/// Counts an HTTP request carried to another host for `app`.
pub fn forwarded(app: &str, outcome: Outcome) {
    count_carried(&metrics().forwarded, app, outcome);
}

fn count_carried(family: &Family<AppOutcome, Counter>, app: &str, outcome: Outcome) {
    if !enabled() {
        return;
    }
    let labels = AppOutcome {
        app: app.to_string(),
        outcome,
    };
    family.get_or_create(&labels).inc();
}

/// Drops the per-app series of cross-host traffic for an app that left the lattice.
pub fn forget_app(app: &str) {
    let m = metrics();
    for outcome in [Outcome::Ok, Outcome::Error] {
        let labels = AppOutcome {
            app: app.to_string(),
            outcome,
        };
        m.remote_calls.remove(&labels);
        m.forwarded.remove(&labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(app: &str) -> WorkloadLabels {
        WorkloadLabels {
            app: app.into(),
            version: "v1".into(),
            component: "c".into(),
        }
    }

    #[test]
    fn a_workload_s_series_live_as_long_as_one_of_its_meters() {
        let first = WorkloadMeter::new(labels("kept"));
        first.request(200, Duration::from_millis(3));
        let second = WorkloadMeter::new(labels("kept"));
        second.request(503, Duration::from_millis(1));
        second.error(Cause::Timeout);
        drop(first);
        let text = encode();
        assert!(
            text.contains(
                r#"weft_http_requests_total{app="kept",version="v1",component="c",code="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"cause="timeout"} 1"#), "{text}");
        assert!(
            text.contains(r#"weft_http_request_duration_seconds_count{app="kept",version="v1",component="c"} 2"#),
            "{text}"
        );
        drop(second);
        assert!(!encode().contains(r#"app="kept""#));
    }

    #[test]
    fn live_instances_go_down_when_they_end() {
        let meter = WorkloadMeter::new(labels("live"));
        let a = meter.instance(true);
        let b = meter.instance(false);
        assert!(
            encode().contains(r#"weft_instances_live{app="live",version="v1",component="c"} 2"#)
        );
        drop((a, b));
        let text = encode();
        assert!(text.contains(r#"weft_instances_live{app="live",version="v1",component="c"} 0"#));
        assert!(text.contains(r#"weft_warm_hits_total{app="live",version="v1",component="c"} 1"#));
    }
}
