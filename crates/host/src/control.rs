//! The control API: JSON over HTTP on loopback, guarded by a bearer token kept in the state dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};

use crate::api::{ApiError, ControlEndpoint, DeployRequest};
use crate::lattice::{Member, MemberError};
use crate::{Host, HostError};

/// The largest component the control API accepts.
const MAX_COMPONENT_BYTES: usize = 512 * 1024 * 1024;

/// The file holding the control API's token.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control-token")
}

/// The file telling clients where the control API listens.
pub fn endpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.json")
}

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
    /// Set when the host is in a lattice: apps are the lattice's, not this host's alone.
    lattice: Option<Arc<Member>>,
    token: Arc<str>,
}

/// Binds the control API on `address` and writes `control.json`; returns the bound address and
/// the serving future.
pub async fn serve(
    host: Arc<Host>,
    lattice: Option<Arc<Member>>,
    address: SocketAddr,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    HostError,
> {
    let state_dir = host.state_dir().to_path_buf();
    let token = load_or_create_token(&state_dir)
        .map_err(|e| HostError::Setup(format!("cannot create the control token: {e}")))?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        HostError::Setup(format!(
            "cannot listen for the control API on {address}: {e}; pick another with --control-addr"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| HostError::Setup(e.to_string()))?;
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
        host,
        lattice,
        token: token.into(),
    };
    let app = Router::new()
        .route("/v1/host", get(host_status))
        .route("/v1/hosts", get(lattice_hosts))
        .route("/v1/hosts/{id}", get(lattice_host))
        .route("/v1/apps", get(list_apps).post(deploy))
        .route("/v1/apps/{name}", get(app_status).delete(undeploy))
        .route(
            "/v1/components/{digest}",
            put(put_component).head(has_component),
        )
        .route("/v1/secrets", get(secret_keys))
        .route("/v1/secrets/{key}", put(put_secret).delete(delete_secret))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    tracing::info!(url = %endpoint.url, "control API listening");
    Ok((bound, async move { axum::serve(listener, app).await }))
}

async fn authorize(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong control token; the CLI reads it from the state dir's control-token file",
        );
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

fn host_error(e: HostError) -> Response {
    let status = match &e {
        HostError::NotFound(_) | HostError::SecretNotFound(_) => StatusCode::NOT_FOUND,
        HostError::VersionConflict { .. } | HostError::InUse { .. } => StatusCode::CONFLICT,
        e if e.is_user_error() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn member_error(e: MemberError) -> Response {
    match e {
        MemberError::Host(e) => host_error(e),
        MemberError::Lattice(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e @ (MemberError::Name(..) | MemberError::Refused(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
    }
}

async fn host_status(State(state): State<ControlState>) -> Response {
    match &state.lattice {
        Some(member) => Json(member.host_status()).into_response(),
        None => Json(state.host.host_status()).into_response(),
    }
}

async fn lattice_hosts(State(state): State<ControlState>) -> Response {
    match &state.lattice {
        Some(member) => Json(member.lattice_hosts()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "this host is not in a lattice; start it with --nats URL to join one",
        ),
    }
}

async fn lattice_host(State(state): State<ControlState>, UrlPath(id): UrlPath<String>) -> Response {
    match &state.lattice {
        Some(member) => match member.lattice_host(&id).await {
            Ok(host) => Json(host).into_response(),
            Err(MemberError::Refused(message)) => error(StatusCode::NOT_FOUND, message),
            Err(e) => member_error(e),
        },
        None => error(
            StatusCode::NOT_FOUND,
            "this host is not in a lattice; start it with --nats URL to join one",
        ),
    }
}

async fn list_apps(State(state): State<ControlState>) -> Response {
    if let Some(member) = &state.lattice {
        return match member.app_statuses().await {
            Ok(apps) => Json(apps).into_response(),
            Err(e) => member_error(e),
        };
    }
    match state.host.list() {
        Ok(apps) => Json(apps).into_response(),
        Err(e) => host_error(e),
    }
}

async fn app_status(State(state): State<ControlState>, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(member) = &state.lattice {
        return match member.app_status(&name).await {
            Ok(status) => Json(status).into_response(),
            Err(e) => member_error(e),
        };
    }
    match state.host.status(&name) {
        Ok(status) => Json(status).into_response(),
        Err(e) => host_error(e),
    }
}

async fn deploy(State(state): State<ControlState>, body: Bytes) -> Response {
    let request: DeployRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad deploy request: {e}")),
    };
    if let Some(member) = &state.lattice {
        return match member.deploy(request).await {
            Ok(outcome) => Json(outcome).into_response(),
            Err(e) => {
                tracing::warn!("deploy refused: {e}");
                member_error(e)
            }
        };
    }
    match state.host.deploy(request).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => {
            tracing::warn!("deploy refused: {e}");
            host_error(e)
        }
    }
}

async fn undeploy(State(state): State<ControlState>, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(member) = &state.lattice {
        return match member.undeploy(&name).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => member_error(e),
        };
    }
    match state.host.undeploy(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => host_error(e),
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
        Ok(Err(e)) => host_error(e),
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
        Ok(Err(e)) => host_error(e),
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
        Ok(Err(e)) => host_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
