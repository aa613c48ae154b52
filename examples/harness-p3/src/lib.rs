//! The platform harness as a WASI 0.3 middleware: it imports `wasi:http/handler` (the next
//! handler, which weft links to the app's component) and exports its own. It checks the bearer
//! token against the secret `token`, passes the request on with an `x-request-id` header, and
//! hands back the inner's response with `x-harness-version` added. Bodies are passed as the
//! streams they are, never copied through the harness: the 0.2 harness relays them byte by byte
//! through `wasi:http/outgoing-handler`.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "weft:harness-p3/middleware-harness",
        generate_all,
    });
}

use std::sync::atomic::{AtomicU64, Ordering};

use bindings::exports::wasi::http::handler::Guest;
use bindings::wasi::http::handler as next;
use bindings::wasi::http::types::{ErrorCode, Fields, Request, Response};
use bindings::wasi::logging::logging::{log, Level};
use bindings::wasmcloud::secrets::{reveal, store as secrets};
use bindings::{wit_future, wit_stream};

/// This harness's version, sent on every response it passes on. `WEFT_HARNESS_VERSION` at build
/// time overrides the crate's, so a platform team (and the tests) can stamp a patched build.
const VERSION: &str = match option_env!("WEFT_HARNESS_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

struct Harness;

bindings::export!(Harness with_types_in bindings);

static REQUESTS: AtomicU64 = AtomicU64::new(0);

fn expected_token() -> Result<Vec<u8>, String> {
    let secret = secrets::get("token").map_err(|e| format!("{e:?}"))?;
    Ok(match reveal::reveal(&secret) {
        secrets::SecretValue::String(s) => s.into_bytes(),
        secrets::SecretValue::Bytes(b) => b,
    })
}

/// A short plain-text answer from the harness itself.
fn refuse(status: u16, message: &str) -> Result<Response, ErrorCode> {
    let headers = Fields::new();
    let _ = headers.set("x-harness-version", &[VERSION.as_bytes().to_vec()]);
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let (mut body, contents) = wit_stream::new();
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers, Some(contents), trailers);
    let _ = response.set_status_code(status);
    let message = format!("{message}\n").into_bytes();
    wit_bindgen::spawn_local(async move {
        body.write_all(message).await;
    });
    Ok(response)
}

impl Guest for Harness {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let expected = match expected_token() {
            Ok(token) => token,
            Err(e) => {
                log(Level::Error, "harness", &format!("no platform token: {e}"));
                return refuse(503, "the platform harness has no token configured");
            }
        };
        let headers = request.get_headers().clone();
        let presented = headers.get("authorization");
        let authorized = presented
            .first()
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .is_some_and(|token| token == expected.as_slice());
        if !authorized {
            return refuse(401, "missing or wrong bearer token");
        }
        let request_id = format!(
            "{:016x}-{}",
            bindings::wasi::random::random::get_random_u64(),
            REQUESTS.fetch_add(1, Ordering::Relaxed)
        );
        let _ = headers.delete("authorization");
        let _ = headers.set("x-request-id", &[request_id.as_bytes().to_vec()]);

        // The same request with new headers: its body stream moves over untouched.
        let method = request.get_method();
        let path = request.get_path_with_query();
        let scheme = request.get_scheme();
        let authority = request.get_authority();
        let (request_done, request_result) = wit_future::new(|| Ok(()));
        let (contents, trailers) = Request::consume_body(request, request_result);
        let (forwarded, _sent) = Request::new(headers, Some(contents), trailers, None);
        let _ = forwarded.set_method(&method);
        let _ = forwarded.set_path_with_query(path.as_deref());
        let _ = forwarded.set_scheme(scheme.as_ref());
        let _ = forwarded.set_authority(authority.as_deref());

        let response = match next::handle(forwarded).await {
            Ok(response) => response,
            Err(e) => {
                log(
                    Level::Warn,
                    "harness",
                    &format!("{request_id}: the app failed: {e:?}"),
                );
                return Err(e);
            }
        };
        drop(request_done);
        let status = response.get_status_code();
        let headers = response.get_headers().clone();
        let _ = headers.set("x-harness-version", &[VERSION.as_bytes().to_vec()]);
        let _ = headers.set("x-request-id", &[request_id.as_bytes().to_vec()]);
        let (response_done, response_result) = wit_future::new(|| Ok(()));
        let (contents, trailers) = Response::consume_body(response, response_result);
        let (passed, _sent) = Response::new(headers, Some(contents), trailers);
        let _ = passed.set_status_code(status);
        drop(response_done);
        log(
            Level::Info,
            "harness",
            &format!("{request_id}: {} {}", status, path.unwrap_or_default()),
        );
        Ok(passed)
    }
}
