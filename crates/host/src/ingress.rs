//! HTTP ingress: one listener per address, shared by every app routed on it; requests are routed
//! by Host header and path prefix through a table that deploys swap atomically.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tracing::Instrument as _;
use weft_manifest::HttpRoute;
use weft_runtime::{text_response, Workload, WorkloadBody};

/// The largest request body accepted by default.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;

/// A route bound to what serves it.
#[derive(Clone)]
pub struct RouteEntry {
    pub route: HttpRoute,
    pub target: RouteTarget,
}

/// Who serves a route: a workload on this host, or another host of the lattice.
#[derive(Clone)]
pub enum RouteTarget {
    Local(Arc<Workload>),
    Remote {
        app: Arc<str>,
        via: Arc<dyn Forward>,
    },
}

/// A request body as the ingress hands it on: limited to the host's maximum body size.
pub type IngressRequest = http::Request<LimitedBody>;

/// Carries a request for an app this host does not run to a host that does.
pub trait Forward: Send + Sync {
    /// Serves `req` for `app` elsewhere; failures come back as responses naming the problem.
    fn forward(
        self: Arc<Self>,
        app: &str,
        req: IngressRequest,
    ) -> futures::future::BoxFuture<'static, http::Response<WorkloadBody>>;
}

/// The routes of one listen address, keyed by (host, path prefix). A persistent map: a deploy
/// copies it in constant time and changes only its own routes, so the ten-thousandth app costs
/// what the first did.
#[derive(Default, Clone)]
struct RouteTable {
    routes: imbl::HashMap<RouteKey, RouteEntry>,
}

type RouteKey = (Option<String>, String);

impl RouteTable {
    fn find(&self, host: Option<&str>, path: &str) -> Option<&RouteEntry> {
        if self.routes.is_empty() {
            return None;
        }
        most_specific(|key| self.routes.get(key), host, path)
    }
}

/// The most specific entry for a request: one naming the host beats one that does not, then the
/// longest path prefix wins, prefixes ending on segment boundaries (`/hello` serves `/hello` and
/// `/hello/x`, never `/helloworld`). The walk goes through the path's prefixes from longest to
/// shortest, so its cost does not grow with the number of routes.
fn most_specific<'a, V: 'a>(
    get: impl Fn(&RouteKey) -> Option<&'a V>,
    host: Option<&str>,
    path: &str,
) -> Option<&'a V> {
    let hosts = host.map(str::to_string).into_iter().map(Some).chain([None]);
    for host in hosts {
        let mut key = (host, path.to_string());
        loop {
            if let Some(entry) = get(&key) {
                return Some(entry);
            }
            let prefix = &mut key.1;
            if prefix == "/" || prefix.is_empty() {
                break;
            }
            match prefix.rfind('/') {
                Some(0) | None => prefix.truncate(1),
                Some(i) => prefix.truncate(i),
            }
        }
    }
    None
}

struct Listener {
    table: Arc<ArcSwap<RouteTable>>,
    task: tokio::task::JoinHandle<()>,
}

/// Why routes could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("route http://{address}{host}{path} is already served by app `{other}`; undeploy it or pick another path")]
    Conflict {
        address: SocketAddr,
        host: String,
        path: String,
        other: String,
    },
}

/// The routes of every app, and each address's table built from them.
#[derive(Default)]
struct Routes {
    by_app: HashMap<String, Vec<RouteEntry>>,
    /// The table of each address, as last handed to its listener.
    tables: HashMap<SocketAddr, RouteTable>,
    /// Which app serves each (address, host, path), to find clashes without a scan.
    owners: HashMap<RoutePlace, String>,
}

/// Where a route is served: its address, host and path.
pub(crate) type RoutePlace = (SocketAddr, RouteKey);

/// The place `route` takes.
pub(crate) fn key_of(route: &HttpRoute) -> RoutePlace {
    (route.address, (route.host.clone(), route.path.clone()))
}

/// Fails on the first of `routes` whose place `owner` says another app than `app` serves.
pub(crate) fn first_clash<'a>(
    app: &str,
    routes: &[HttpRoute],
    owner: impl Fn(&RoutePlace) -> Option<&'a String>,
) -> Result<(), IngressError> {
    for route in routes {
        if let Some(other) = owner(&key_of(route)).filter(|other| *other != app) {
            return Err(IngressError::Conflict {
                address: route.address,
                host: route
                    .host
                    .clone()
                    .map(|h| format!(" (host {h})"))
                    .unwrap_or_default(),
                path: route.path.clone(),
                other: other.clone(),
            });
        }
    }
    Ok(())
}

/// All listeners of the host and the routes of every app.
pub struct Ingress {
    listeners: Mutex<BTreeMap<SocketAddr, Listener>>,
    routes: Mutex<Routes>,
    max_request_body: u64,
}

impl Default for Ingress {
    fn default() -> Self {
        Ingress::new(DEFAULT_MAX_REQUEST_BODY)
    }
}

impl Ingress {
    /// An ingress with no listeners yet.
    pub fn new(max_request_body: u64) -> Self {
        Ingress {
            listeners: Mutex::default(),
            routes: Mutex::default(),
            max_request_body,
        }
    }

    fn routes_lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails when another app already serves one of `routes`.
    pub fn check_conflicts(&self, app: &str, routes: &[HttpRoute]) -> Result<(), IngressError> {
        let all = self.routes_lock();
        first_clash(app, routes, |key| all.owners.get(key))
    }

    /// Binds every address in `addresses` that has no listener yet.
    pub fn ensure_listeners(
        &self,
        addresses: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<(), IngressError> {
        // Routes before listeners, as `set_routes_of` takes them.
        let routes = self.routes_lock();
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for address in addresses {
            if listeners.contains_key(&address) {
                continue;
            }
            let bind = |address| -> std::io::Result<tokio::net::TcpListener> {
                let std_listener = std::net::TcpListener::bind(address)?;
                std_listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(std_listener)
            };
            let listener =
                bind(address).map_err(|source| IngressError::Bind { address, source })?;
            let current = routes.tables.get(&address).cloned().unwrap_or_default();
            let table = Arc::new(ArcSwap::from_pointee(current));
            let task = tokio::spawn(accept_loop(listener, table.clone(), self.max_request_body));
            tracing::info!(%address, "HTTP ingress listening");
            listeners.insert(address, Listener { table, task });
        }
        Ok(())
    }

    /// Replaces the routes of `app` (none: removes them); each affected address switches to its
    /// new table in one atomic swap, and in-flight requests finish on the workloads they hold.
    pub fn set_app_routes(&self, app: &str, entries: Vec<RouteEntry>) {
        self.set_routes_of(vec![(app.to_string(), entries)]);
    }

    /// Replaces the routes of many apps, swapping each affected listener's table once. The
    /// work is in the routes that change, not in the routes the host serves.
    pub fn set_routes_of(&self, apps: Vec<(String, Vec<RouteEntry>)>) {
        let mut all = self.routes_lock();
        let Routes {
            by_app,
            tables,
            owners,
        } = &mut *all;
        let mut affected: BTreeSet<SocketAddr> = BTreeSet::new();
        // Every old route goes before any new one goes in: within one call a route may move
        // from one app to another.
        for (app, _) in &apps {
            for old in by_app.remove(app).unwrap_or_default() {
                let (address, key) = key_of(&old.route);
                affected.insert(address);
                if owners.get(&(address, key.clone())) == Some(app) {
                    owners.remove(&(address, key.clone()));
                    if let Some(table) = tables.get_mut(&address) {
                        table.routes.remove(&key);
                    }
                }
            }
        }
        for (app, entries) in apps {
            for entry in &entries {
                let (address, key) = key_of(&entry.route);
                affected.insert(address);
                owners.insert((address, key.clone()), app.clone());
                tables
                    .entry(address)
                    .or_default()
                    .routes
                    .insert(key, entry.clone());
            }
            if !entries.is_empty() {
                by_app.insert(app, entries);
            }
        }
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for address in affected {
            if let (Some(listener), Some(table)) = (listeners.get(&address), tables.get(&address)) {
                listener.table.store(Arc::new(table.clone()));
            }
        }
    }

    /// The workload of `app` on this host serving `path` for `host`, if it runs here.
    pub fn local_workload(
        &self,
        app: &str,
        host: Option<&str>,
        path: &str,
    ) -> Option<Arc<Workload>> {
        let all = self.routes_lock();
        let routes: HashMap<RouteKey, Arc<Workload>> = all
            .by_app
            .get(app)?
            .iter()
            .filter_map(|e| match &e.target {
                RouteTarget::Local(w) => {
                    Some(((e.route.host.clone(), e.route.path.clone()), w.clone()))
                }
                RouteTarget::Remote { .. } => None,
            })
            .collect();
        most_specific(|key| routes.get(key), host, path).cloned()
    }

    /// The addresses being listened on.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners.keys().copied().collect()
    }
}

impl Ingress {
    /// Stops accepting connections on every address; connections already open keep being served.
    pub fn stop_accepting(&self) {
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for listener in listeners.values() {
            listener.task.abort();
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let listeners = self.listeners.get_mut().unwrap_or_else(|e| e.into_inner());
        for listener in listeners.values() {
            listener.task.abort();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    table: Arc<ArcSwap<RouteTable>>,
    max_request_body: u64,
) {
    loop {
        let stream = crate::connections::accept(&listener).await;
        let table = table.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let table = table.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(dispatch(&table, req, max_request_body).await)
                }
            });
            crate::connections::serve(stream, service).await;
        });
    }
}

/// The host a request names (its Host header without the port, lowercased), for routing.
pub(crate) fn request_host(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(name, _)| name)
                .to_ascii_lowercase()
        })
}

async fn dispatch(
    table: &ArcSwap<RouteTable>,
    req: http::Request<Incoming>,
    max_request_body: u64,
) -> http::Response<WorkloadBody> {
    if let Some((status, message)) = crate::connections::head_beyond_limits(&req) {
        return text_response(status, message);
    }
    let host = request_host(req.headers());
    let (target, span) = {
        let table = table.load();
        match table.find(host.as_deref(), req.uri().path()) {
            Some(entry) => (
                Some(entry.target.clone()),
                weft_telemetry::request_span(&req, &entry.route.path),
            ),
            None => (None, tracing::Span::none()),
        }
    };
    let response = route(target, req, max_request_body)
        .instrument(span.clone())
        .await;
    weft_telemetry::record_status(&span, response.status());
    response
}

async fn route(
    target: Option<RouteTarget>,
    req: http::Request<Incoming>,
    max_request_body: u64,
) -> http::Response<WorkloadBody> {
    let Some(target) = target else {
        weft_metrics::unrouted();
        return text_response(
            http::StatusCode::NOT_FOUND,
            format!("no app serves {} on this address", req.uri().path()),
        );
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_request_body) {
        if let RouteTarget::Local(workload) = &target {
            workload.meter().request(413, std::time::Duration::ZERO);
        }
        return too_large(&target, max_request_body);
    }
    // A declared length is held to by hyper; only a body sent without one can pass the limit.
    let exceeded = (declared.is_none() && !req.body().is_end_stream())
        .then(|| Arc::new(AtomicBool::new(false)));
    let expects_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut req = req.map(|body| LimitedBody {
        inner: body,
        early: None,
        remaining: max_request_body,
        limit: max_request_body,
        exceeded: exceeded.clone(),
    });
    if expects_continue {
        req.body_mut().ask_for_body();
        // The connection writes `100 Continue` when it next turns, which is after this request
        // yields; a guest run before could have its answer out first.
        tokio::task::yield_now().await;
    }
    let response = match &target {
        RouteTarget::Local(workload) => workload.serve(req).await,
        RouteTarget::Remote { app, via } => via.clone().forward(app, req).await,
    };
    let Some(exceeded) = exceeded else {
        return response;
    };
    // Whatever the guest made of the part it saw, the client must not take the answer for a
    // whole one: 413 if the guest has not answered yet, else its answer is cut off unfinished.
    if exceeded.load(Ordering::Relaxed) {
        return too_large(&target, max_request_body);
    }
    response.map(|body| {
        CutWhenExceeded {
            inner: body,
            exceeded,
            limit: max_request_body,
        }
        .boxed_unsync()
    })
}

/// A response body that fails (so the connection ends without the body's last chunk) once the
/// request body it answers has passed the limit.
struct CutWhenExceeded {
    inner: WorkloadBody,
    exceeded: Arc<AtomicBool>,
    limit: u64,
}

impl Body for CutWhenExceeded {
    type Data = Bytes;
    type Error = weft_runtime::HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if this.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(weft_runtime::HttpError::HttpRequestBodySize(
                Some(this.limit),
            ))));
        }
        frame
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn too_large(target: &RouteTarget, max_request_body: u64) -> http::Response<WorkloadBody> {
    if let RouteTarget::Local(workload) = target {
        workload.meter().error(weft_metrics::Cause::TooLarge);
    }
    text_response(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than the limit of {max_request_body} bytes"),
    )
}

/// A request body that fails once more than `limit` bytes have arrived, for bodies whose size
/// was not declared up front; the guest sees a body-size error, and `exceeded` tells the
/// ingress to answer 413.
pub struct LimitedBody {
    inner: Incoming,
    /// What the body gave when it was asked for early (see [`LimitedBody::ask_for_body`]).
    early: Option<Option<Result<Frame<Bytes>, hyper::Error>>>,
    remaining: u64,
    limit: u64,
    exceeded: Option<Arc<AtomicBool>>,
}

impl LimitedBody {
    /// Tells a client that sent `Expect: 100-continue` to send its body, now that the request
    /// goes to an app: hyper answers `100 Continue` when the body is first asked for, and only
    /// while no response has started. A guest that answers before it reads (a streaming echo)
    /// had its answer go out first, and the client waited out its expect timeout (curl: 1 s)
    /// before it sent the body.
    fn ask_for_body(&mut self) {
        // The poll that asks; whoever reads the body next polls again with its own waker.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(&mut cx) {
            self.early = Some(frame);
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = weft_runtime::HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = match this.early.take() {
            Some(frame) => Poll::Ready(frame),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        if let Some(exceeded) = &this.exceeded {
                            exceeded.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err(
                            weft_runtime::HttpError::HttpRequestBodySize(Some(this.limit)),
                        )));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.early {
            Some(frame) => frame.is_none(),
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let early = match &self.early {
            Some(Some(Ok(frame))) => frame.data_ref().map_or(0, |data| data.len() as u64),
            _ => 0,
        };
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + early);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + early);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(routes: &[(Option<&str>, &str)], host: Option<&str>, path: &str) -> Option<String> {
        let keyed: HashMap<RouteKey, String> = routes
            .iter()
            .map(|(h, p)| {
                let key = (h.map(str::to_string), p.to_string());
                (key, format!("{}{p}", h.unwrap_or("*")))
            })
            .collect();
        most_specific(|key| keyed.get(key), host, path).cloned()
    }

    #[test]
    fn the_most_specific_route_wins() {
        let routes = [
            (None, "/"),
            (None, "/hello"),
            (None, "/hello/deep"),
            (Some("a.test"), "/hello"),
        ];
        let f = |host, path| find(&routes, host, path);
        assert_eq!(f(None, "/hello").as_deref(), Some("*/hello"));
        assert_eq!(f(None, "/hello/x").as_deref(), Some("*/hello"));
        assert_eq!(f(None, "/hello/deep/x").as_deref(), Some("*/hello/deep"));
        assert_eq!(f(None, "/helloworld").as_deref(), Some("*/"));
        assert_eq!(
            f(Some("a.test"), "/hello/x").as_deref(),
            Some("a.test/hello")
        );
        assert_eq!(f(Some("a.test"), "/other").as_deref(), Some("*/"));
        assert_eq!(f(Some("b.test"), "/hello").as_deref(), Some("*/hello"));
    }

    #[test]
    fn prefixes_end_on_segment_boundaries() {
        let routes = [(None, "/hello")];
        assert_eq!(find(&routes, None, "/helloworld"), None);
        assert_eq!(find(&routes, None, "/"), None);
        assert_eq!(find(&routes, None, "/hello/").as_deref(), Some("*/hello"));
    }

    /// Stands for another host: only which app a route names matters here.
    struct Elsewhere;

    impl Forward for Elsewhere {
        fn forward(
            self: Arc<Self>,
            _app: &str,
            _req: IngressRequest,
        ) -> futures::future::BoxFuture<'static, http::Response<WorkloadBody>> {
            Box::pin(async { text_response(http::StatusCode::BAD_GATEWAY, "elsewhere") })
        }
    }

    fn entry(app: &str, path: &str) -> RouteEntry {
        RouteEntry {
            route: HttpRoute {
                component: app.into(),
                address: "127.0.0.1:1".parse().unwrap(),
                host: None,
                path: path.into(),
            },
            target: RouteTarget::Remote {
                app: app.into(),
                via: Arc::new(Elsewhere),
            },
        }
    }

    /// The app serving `path`, as the listener's table says.
    fn served_by(ingress: &Ingress, path: &str) -> Option<String> {
        let routes = ingress.routes_lock();
        let table = routes.tables.get(&"127.0.0.1:1".parse().unwrap())?;
        match &table.find(None, path)?.target {
            RouteTarget::Remote { app, .. } => Some(app.to_string()),
            RouteTarget::Local(_) => None,
        }
    }

    #[test]
    fn routes_change_per_app_and_may_move_between_apps_in_one_swap() {
        let ingress = Ingress::default();
        ingress.set_app_routes("a", vec![entry("a", "/x"), entry("a", "/y")]);
        ingress.set_app_routes("b", vec![entry("b", "/z")]);
        let clash = ingress
            .check_conflicts("c", &[entry("c", "/x").route])
            .unwrap_err();
        assert!(
            matches!(&clash, IngressError::Conflict { other, path, .. } if other == "a" && path == "/x"),
            "{clash}"
        );
        assert!(ingress
            .check_conflicts("a", &[entry("a", "/x").route])
            .is_ok());
        // `/x` moves from a to b in one change.
        ingress.set_routes_of(vec![
            ("a".into(), vec![entry("a", "/y")]),
            ("b".into(), vec![entry("b", "/z"), entry("b", "/x")]),
        ]);
        assert_eq!(served_by(&ingress, "/x/deep").as_deref(), Some("b"));
        assert!(ingress
            .check_conflicts("b", &[entry("b", "/x").route])
            .is_ok());
        assert!(ingress
            .check_conflicts("a", &[entry("a", "/x").route])
            .is_err());
        ingress.set_app_routes("a", Vec::new());
        assert_eq!(served_by(&ingress, "/y"), None);
        assert_eq!(served_by(&ingress, "/x").as_deref(), Some("b"));
        assert!(ingress
            .check_conflicts("c", &[entry("c", "/y").route])
            .is_ok());
        assert!(ingress.local_workload("b", None, "/x").is_none());
    }
}
