//! {{name}}'s harness: what every request passes through before the app. It adds an
//! `x-request-id` header on the way in and an `x-harness` header on the way out, and answers 503
//! itself when the app cannot be reached. Put what your platform needs here (auth, logging,
//! rate limits); the app stays as it is.
//!
//! WASI 0.2 gives a component no way to call another's handler directly, so the harness sends the
//! request to `http://inner/` with `wasi:http/outgoing-handler`: weft serves that in-process
//! with the component its `inner` link names (see app.yaml).

use std::io::Write as _;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasi::http::proxy::export!(Harness);

struct Harness;

/// Copies a body from `from` to `to` until it ends.
fn copy(from: &wasi::io::streams::InputStream, to: &wasi::io::streams::OutputStream) -> bool {
    loop {
        match from.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if to.blocking_write_and_flush(&chunk).is_err() {
                    return false;
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => return true,
            Err(_) => return false,
        }
    }
}

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::new();
    let _ = headers.set("x-harness", &[b"{{name}}".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = body.write().expect("output stream is taken once");
        let _ = writeln!(stream, "{text}");
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}

/// A request id from the clock: unique enough to follow one request through the logs.
fn request_id() -> String {
    let now = wasi::clocks::wall_clock::now();
    format!("{:x}{:08x}", now.seconds, now.nanoseconds)
}

impl wasi::exports::http::incoming_handler::Guest for Harness {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let headers = request.headers().clone();
        let _ = headers.delete("host");
        let _ = headers.set("x-request-id", &[request_id().into_bytes()]);
        let inner = OutgoingRequest::new(headers);
        let _ = inner.set_method(&request.method());
        let _ = inner.set_scheme(Some(&Scheme::Http));
        let _ = inner.set_authority(Some("inner"));
        let _ = inner.set_path_with_query(request.path_with_query().as_deref());
        let sink = inner.body().expect("request body is taken once");
        let pending = match outgoing_handler::handle(inner, None) {
            Ok(pending) => pending,
            Err(e) => return answer(out, 503, &format!("the app cannot be reached: {e:?}")),
        };
        // The request body, then the answer.
        let source = request.consume().expect("request body is consumed once");
        {
            let from = source.stream().expect("request stream is taken once");
            let to = sink.write().expect("request sink is taken once");
            copy(&from, &to);
        }
        IncomingBody::finish(source);
        let _ = OutgoingBody::finish(sink, None);
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return answer(out, 503, &format!("the app failed: {e:?}")),
            _ => return answer(out, 503, "the app gave no answer"),
        };
        let headers = response.headers().clone();
        let _ = headers.set("x-harness", &[b"{{name}}".to_vec()]);
        let outgoing = OutgoingResponse::new(headers);
        let _ = outgoing.set_status_code(response.status());
        let body = outgoing.body().expect("response body is taken once");
        ResponseOutparam::set(out, Ok(outgoing));
        let incoming = response.consume().expect("response body is consumed once");
        {
            let from = incoming.stream().expect("response stream is taken once");
            let to = body.write().expect("response sink is taken once");
            copy(&from, &to);
        }
        IncomingBody::finish(incoming);
        let _ = OutgoingBody::finish(body, None);
    }
}
