//! The web dashboard at `/` of the control API: a login with the control token that sets a
//! session cookie (the token never goes in a URL), then one page that reads the same API as the
//! CLI (`/v1/host`, `/v1/hosts`, `/v1/apps`, `/v1/events`) and `/metrics`, and can deploy and
//! undeploy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

/// The session cookie's name.
const COOKIE: &str = "weft_session";

/// How long a session lasts after login.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The header the dashboard's script sends with every call: a cross-site form cannot set it,
/// so a cookie alone never changes anything.
pub(crate) const DASHBOARD_HEADER: &str = "x-weft-dashboard";

const PAGE: &str = include_str!("dashboard.html");

/// Live dashboard sessions, by their random id.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// Starts a session; returns its id.
    fn start(&self) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, started| now.duration_since(*started) < SESSION_LIFETIME);
        live.insert(id.clone(), now);
        id
    }

    fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Whether the request's cookie names a live session.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_of(headers) else {
            return false;
        };
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id)
            .is_some_and(|started| started.elapsed() < SESSION_LIFETIME)
    }
}

/// The session id in a request's cookies.
fn session_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether a request authenticated by its session cookie may go on: reads always, changes only
/// from the dashboard's own script.
pub(crate) fn cookie_may(request: &Request) -> bool {
    matches!(*request.method(), Method::GET | Method::HEAD)
        || request.headers().contains_key(DASHBOARD_HEADER)
}

/// `/`: the dashboard for a live session, the login form otherwise.
pub(crate) fn page(sessions: &Sessions, headers: &HeaderMap) -> Response {
    let body = if sessions.admits(headers) {
        PAGE.replace("{{VIEW}}", "dashboard")
    } else {
        PAGE.replace("{{VIEW}}", "login")
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
        ],
        Html(body),
    )
        .into_response()
}

/// `POST /login` with the form field `token`: a session cookie when it is the control token.
pub(crate) fn login(sessions: &Sessions, token: &str, form: &[u8]) -> Response {
    let presented = form_urlencoded::parse(form)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    if !crate::control::constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(PAGE.replace("{{VIEW}}", "login-failed")),
        )
            .into_response();
    }
    let id = sessions.start();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// `POST /logout`: ends the session and clears its cookie.
pub(crate) fn logout(sessions: &Sessions, headers: &HeaderMap) -> Response {
    if let Some(id) = session_of(headers) {
        sessions.end(id);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "other=1; weft_session=abc; more=2".parse().unwrap(),
        );
        assert_eq!(session_of(&headers), Some("abc"));
        let sessions = Sessions::default();
        assert!(!sessions.admits(&headers));
        let id = sessions.start();
        headers.insert(
            header::COOKIE,
            format!("weft_session={id}").parse().unwrap(),
        );
        assert!(sessions.admits(&headers));
        sessions.end(&id);
        assert!(!sessions.admits(&headers));
    }
}
