//! The control API: JSON over HTTP on loopback, guarded by a bearer token kept in the state dir.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use crate::api::{
    ApiError, BatchOutcome, BatchResult, ControlEndpoint, DeployBatch, DeployRequest,
};
use crate::apps::{apps_of, Apps, AppsError, Fault};
use crate::member::{Member, MemberError};
use crate::{Host, HostError};

/// The largest component the control API accepts.
const MAX_COMPONENT_BYTES: usize = 512 * 1024 * 1024;

/// The largest secret value.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The largest body of any other request.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The largest deploy: a batch carries thousands of manifests.
const MAX_DEPLOY_BYTES: usize = 64 * 1024 * 1024;

pub use weft_api::{endpoint_path, token_path};

/// Reads the state dir's token, creating one (readable by its owner only) on first use.
pub fn load_or_create_token(state_dir: &Path) -> std::io::Result<String> {
    let path = token_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let tmp = state_dir.join(".control-token.tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(token.as_bytes())?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

#[derive(Clone)]
struct ControlState {
    host: Arc<Host>,
    /// The apps this API manages: the lattice's when the host is a member, its own otherwise.
    apps: Arc<dyn Apps>,
    /// Set when the host is in a lattice, for what only a lattice has (its hosts).
    lattice: Option<Arc<Member>>,
    token: Arc<str>,
    /// `/metrics` answers without the token.
    metrics_open: bool,
    /// The dashboard's logged-in browsers.
    sessions: Arc<crate::dashboard::Sessions>,
    /// This API's own URL.
    url: Option<String>,
}

/// Who may read `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Only a client presenting the control token (Prometheus's `authorization` setting).
    #[default]
    Token,
    /// Anyone who can reach the address.
    Open,
}

/// Binds the control API on `address` and writes `control.json`; returns the bound address and
/// the serving future.
pub async fn serve(
    host: Arc<Host>,
    lattice: Option<Arc<Member>>,
    address: SocketAddr,
    metrics: MetricsAccess,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    HostError,
> {
    let state_dir = host.state_dir().to_path_buf();
    let token = token_of(&state_dir)?;
    let (listener, bound) = bind(address, "the control API", "--control-addr").await?;
    let endpoint = ControlEndpoint {
        url: format!("http://{bound}"),
        pid: std::process::id(),
    };
    let json = serde_json::to_vec_pretty(&endpoint).map_err(|e| HostError::Setup(e.to_string()))?;
    let tmp = state_dir.join(".control.json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, endpoint_path(&state_dir)))
        .map_err(|e| HostError::Setup(format!("cannot write control.json: {e}")))?;

    let state = ControlState {
        apps: apps_of(&host, lattice.as_ref()),
        host,
        lattice,
        token: token.into(),
        metrics_open: metrics == MetricsAccess::Open,
        sessions: Arc::default(),
        url: Some(endpoint.url.clone()),
    };
    let app = Router::new()
        .route("/", get(dashboard_page))
        .route("/login", post(dashboard_login))
        .route("/logout", post(dashboard_logout))
        .route("/v1/events", get(recent_events))
        .route("/metrics", get(metrics_text))
        .route("/v1/host", get(host_status))
        .route("/v1/hosts", get(lattice_hosts))
        .route("/v1/hosts/{id}", get(lattice_host))
        .route("/v1/apps", get(list_apps).post(deploy))
        .route("/v1/apps/{name}", get(app_status).delete(undeploy))
        .route("/v1/apps/{name}/components/{component}/call", post(call))
        .route(
            "/v1/components/{digest}",
            put(put_component).head(has_component).get(get_component),
        )
        .route("/v1/secrets", get(secret_keys))
        .route("/v1/secrets/{key}", put(put_secret).delete(delete_secret))
        .layer(middleware::from_fn(bound_body))
        // bound_body holds every route to its own limit instead.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    tracing::info!(url = %endpoint.url, "control API listening");
    Ok((bound, serve_connections(listener, app)))
}

/// Binds `address` for `/metrics` alone (Prometheus's scrape target), guarded by the state
/// dir's control token unless `access` is open; returns the bound address and the serving
/// future.
pub async fn serve_metrics(
    state_dir: &Path,
    address: SocketAddr,
    access: MetricsAccess,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    HostError,
> {
    let token: Arc<str> = token_of(state_dir)?.into();
    let (listener, bound) = bind(address, "metrics", "--metrics-addr").await?;
    let open = access == MetricsAccess::Open;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                if open || presents(&request, &token) {
                    next.run(request).await
                } else {
                    unauthorized()
                }
            }
        }));
    tracing::info!(address = %bound, open, "metrics listening");
    Ok((bound, serve_connections(listener, app)))
}

/// The state dir's control token, created on first use.
fn token_of(state_dir: &Path) -> Result<String, HostError> {
    load_or_create_token(state_dir)
        .map_err(|e| HostError::Setup(format!("cannot create the control token: {e}")))
}

/// Listens on `address` for `what`; a failure names the `flag` that picks another address.
async fn bind(
    address: SocketAddr,
    what: &str,
    flag: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), HostError> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        HostError::Setup(format!(
            "cannot listen for {what} on {address}: {e}; pick another with {flag}"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| HostError::Setup(e.to_string()))?;
    Ok((listener, bound))
}

/// Every metric, in the format Prometheus scrapes.
async fn metrics_text() -> Response {
    if !weft_metrics::enabled() {
        return error(
            StatusCode::NOT_FOUND,
            "this host keeps no metrics: it was started with --no-metrics",
        );
    }
    let text = tokio::task::spawn_blocking(weft_metrics::encode)
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, weft_metrics::CONTENT_TYPE)], text).into_response()
}

/// Serves the control API on `listener` until the host stops.
async fn serve_connections(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    loop {
        let stream = crate::connections::accept(&listener).await;
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(crate::connections::serve(stream, service));
    }
}

/// The largest body a route accepts.
fn body_limit(path: &str) -> usize {
    if path == "/v1/apps" {
        MAX_DEPLOY_BYTES
    } else if path.starts_with("/v1/components/") {
        MAX_COMPONENT_BYTES
    } else if path.starts_with("/v1/secrets/") {
        MAX_SECRET_BYTES
    } else {
        MAX_REQUEST_BYTES
    }
}

/// Holds a request's body to its route's limit: a declared length over it is refused before
/// anything is read, and a body sent without one fails once it passes the limit.
async fn bound_body(request: Request, next: Next) -> Response {
    let max = body_limit(request.uri().path());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&len| len > max as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a body of {declared} bytes is larger than the {max} bytes {} accepts",
                request.uri().path()
            ),
        );
    }
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, max)));
    next.run(request).await
}

async fn authorize(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The page itself decides between the login form and the dashboard.
    let open =
        matches!(path, "/" | "/login" | "/logout") || (state.metrics_open && path == "/metrics");
    let allowed = open
        || presents(&request, &state.token)
        || (state.sessions.admits(request.headers()) && crate::dashboard::cookie_may(&request));
    if !allowed {
        return unauthorized();
    }
    next.run(request).await
}

async fn dashboard_page(State(state): State<ControlState>, headers: HeaderMap) -> Response {
    crate::dashboard::page(&state.sessions, &headers)
}

async fn dashboard_login(State(state): State<ControlState>, body: Bytes) -> Response {
    crate::dashboard::login(&state.sessions, &state.token, &body)
}

async fn dashboard_logout(State(state): State<ControlState>, headers: HeaderMap) -> Response {
    crate::dashboard::logout(&state.sessions, &headers)
}

async fn recent_events(State(state): State<ControlState>) -> Response {
    Json(state.host.events().recent()).into_response()
}

/// Whether `request` carries `token` as its bearer token.
fn presents(request: &Request, token: &str) -> bool {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong control token; the CLI reads it from the state dir's control-token file",
    )
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The one mapping from a failure to the status a client sees.
fn failed(e: impl Into<AppsError>) -> Response {
    let e = e.into();
    error(status_of(&e), e.to_string())
}

fn status_of(e: &AppsError) -> StatusCode {
    match e.fault() {
        Fault::NotFound => StatusCode::NOT_FOUND,
        Fault::Conflict => StatusCode::CONFLICT,
        Fault::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Fault::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Fault::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn host_status(State(state): State<ControlState>) -> Response {
    Json(state.apps.host_status()).into_response()
}

async fn lattice_hosts(State(state): State<ControlState>) -> Response {
    match &state.lattice {
        Some(member) => Json(member.lattice_hosts()).into_response(),
        None => match local_host(&state) {
            Ok(host) => Json(vec![host]).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

/// A host not in a lattice, as `weft get hosts` lists one: itself.
fn local_host(state: &ControlState) -> Result<weft_api::LatticeHost, MemberError> {
    let id = crate::member::host_id(state.host.state_dir(), None)?;
    Ok(state.host.as_lattice_host(&id, state.url.clone()))
}

async fn lattice_host(State(state): State<ControlState>, UrlPath(id): UrlPath<String>) -> Response {
    match &state.lattice {
        Some(member) => match member.lattice_host(&id).await {
            Ok(host) => Json(host).into_response(),
            Err(MemberError::Refused(message)) => error(StatusCode::NOT_FOUND, message),
            Err(e) => failed(e),
        },
        None => match local_host(&state) {
            Ok(host) if host.id == id => Json(host).into_response(),
            Ok(host) => error(
                StatusCode::NOT_FOUND,
                format!(
                    "no host `{id}`: this host (`{}`) is not in a lattice",
                    host.id
                ),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

async fn list_apps(State(state): State<ControlState>) -> Response {
    match state.apps.list().await {
        Ok(apps) => Json(apps).into_response(),
        Err(e) => failed(e),
    }
}

async fn app_status(State(state): State<ControlState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.apps.status(&name).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => failed(e),
    }
}

async fn deploy(State(state): State<ControlState>, body: Bytes) -> Response {
    /// Only whether the body is a batch: its apps are skipped over, not kept.
    #[derive(serde::Deserialize)]
    struct Shape {
        apps: Option<serde::de::IgnoredAny>,
    }
    let bad =
        |e: serde_json::Error| error(StatusCode::BAD_REQUEST, format!("bad deploy request: {e}"));
    match serde_json::from_slice::<Shape>(&body) {
        Ok(Shape { apps: Some(_) }) => {
            return match serde_json::from_slice::<DeployBatch>(&body) {
                Ok(batch) => Json(deploy_batch(&state, batch).await).into_response(),
                Err(e) => bad(e),
            }
        }
        Ok(Shape { apps: None }) => {}
        Err(e) => return bad(e),
    }
    let request: DeployRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return bad(e),
    };
    // A deploy runs to its end even when its client goes away: it is not cut between storing
    // a version and switching to it, or before the apps using it are re-linked.
    let apps = state.apps.clone();
    let deployed = match tokio::spawn(async move { apps.deploy(request).await }).await {
        Ok(deployed) => deployed,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("deploy failed: {e}"),
            )
        }
    };
    match deployed {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => {
            tracing::warn!("deploy refused: {e}");
            failed(e)
        }
    }
}

/// Deploys every app of a batch; each refused one is answered with what its own deploy would
/// have said.
async fn deploy_batch(state: &ControlState, batch: DeployBatch) -> BatchOutcome {
    let origins: Vec<String> = batch.apps.iter().map(|r| r.origin.clone()).collect();
    let apps = state.apps.clone();
    let results = tokio::spawn(async move { apps.deploy_many(batch.apps).await })
        .await
        .unwrap_or_else(|e| {
            let failed = || {
                Err(AppsError::Host(HostError::Setup(format!(
                    "deploy failed: {e}"
                ))))
            };
            origins.iter().map(|_| failed()).collect()
        });
    let results = results
        .into_iter()
        .zip(origins)
        .map(|(result, origin)| match result {
            Ok(outcome) => BatchResult::Deployed(outcome),
            Err(e) => {
                tracing::warn!(%origin, "deploy refused: {e}");
                BatchResult::Refused {
                    origin,
                    status: status_of(&e).as_u16(),
                    error: e.to_string(),
                }
            }
        })
        .collect();
    BatchOutcome { results }
}

async fn call(
    State(state): State<ControlState>,
    UrlPath((name, component)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let request: weft_api::CallRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad call request: {e}")),
    };
    match state
        .apps
        .call(&name, &component, &request.function, &request.args)
        .await
    {
        Ok(results) => Json(weft_api::CallResult { results }).into_response(),
        Err(e) => failed(e),
    }
}

async fn undeploy(State(state): State<ControlState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.apps.undeploy(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(e),
    }
}

async fn has_component(
    State(state): State<ControlState>,
    UrlPath(digest): UrlPath<String>,
) -> Response {
    match state.host.blobs().contains(&digest) {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn get_component(
    State(state): State<ControlState>,
    UrlPath(digest): UrlPath<String>,
) -> Response {
    let host = state.host.clone();
    let wanted = digest.clone();
    let local = tokio::task::spawn_blocking(move || match host.blobs().get(&wanted) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(crate::BlobError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    })
    .await;
    let found = match local {
        Ok(Ok(Some(bytes))) => Some(Bytes::from(bytes)),
        Ok(Ok(None)) => match &state.lattice {
            Some(member) => match member.component_bytes(&digest).await {
                Ok(found) => found,
                Err(e) => return failed(e),
            },
            None => None,
        },
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match found {
        Some(bytes) => ([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no component sha256:{digest} is stored here"),
        ),
    }
}

async fn put_component(
    State(state): State<ControlState>,
    UrlPath(digest): UrlPath<String>,
    body: Bytes,
) -> Response {
    let host = state.host.clone();
    let result = tokio::task::spawn_blocking(move || host.blobs().put(&digest, &body)).await;
    match result {
        Ok(Ok(())) => StatusCode::CREATED.into_response(),
        Ok(Err(e @ crate::BlobError::Io { .. })) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn secret_keys(State(state): State<ControlState>) -> Response {
    let host = state.host.clone();
    match tokio::task::spawn_blocking(move || host.secret_keys()).await {
        Ok(Ok(keys)) => Json(keys).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Stores the request body as the secret's value. The value is never echoed, logged or listed.
async fn put_secret(
    State(state): State<ControlState>,
    UrlPath(key): UrlPath<String>,
    body: Bytes,
) -> Response {
    let host = state.host.clone();
    match tokio::task::spawn_blocking(move || host.put_secret(&key, body.to_vec())).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete_secret(
    State(state): State<ControlState>,
    UrlPath(key): UrlPath<String>,
) -> Response {
    let host = state.host.clone();
    match tokio::task::spawn_blocking(move || host.delete_secret(&key)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
