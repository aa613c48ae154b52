//! The platform harness: sits in front of an app's component and owns what every app needs.
//!
//! It checks the request's bearer token against the secret `token`, passes the request on to
//! the inner component with an `x-request-id` header, streams the inner's answer back with an
//! `x-harness-version` header naming this harness, and logs each call. WASI 0.2 gives a component
//! no way to create a `response-outparam`, so the inner is called through
//! `wasi:http/outgoing-handler`; weft bridges requests to `http://inner/` in-process to the
//! component the harness's link names `inner`.

use std::io::Write as _;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasi::io::poll::{poll, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/harness",
        generate_all,
    });
}

use bindings::wasi::logging::logging::{log, Level};
use bindings::wasmcloud::secrets::{reveal, store as secrets};

/// This harness's version, sent on every response it passes on. `WEFT_HARNESS_VERSION` at build
/// time overrides the crate's, so a platform team (and the tests) can stamp a patched build.
const VERSION: &str = match option_env!("WEFT_HARNESS_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
/// The authority the inner component answers on.
const INNER: &str = "inner";

wasi::http::proxy::export!(Harness);

struct Harness;

fn refuse(out: ResponseOutparam, status: u16, message: &str) {
    let headers = Fields::new();
    let _ = headers.set("x-harness-version", &[VERSION.as_bytes().to_vec()]);
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = body.write().expect("output stream is taken once");
        let _ = writeln!(stream, "{message}");
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}

fn expected_token() -> Result<Vec<u8>, String> {
    let secret = secrets::get("token").map_err(|e| format!("{e:?}"))?;
    Ok(match reveal::reveal(&secret) {
        secrets::SecretValue::String(s) => s.into_bytes(),
        secrets::SecretValue::Bytes(b) => b,
    })
}

fn authorized(request: &IncomingRequest, expected: &[u8]) -> bool {
    let presented = request.headers().get("authorization");
    presented
        .first()
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .is_some_and(|token| token == expected)
}

/// One direction of a relay: bytes move from `from` to `to` as fast as both allow, never
/// blocking, so the request and the response can stream at the same time. (An inner that echoes
/// while it reads would otherwise stall: its answer fills up while the request is still going.)
struct Pipe {
    from: InputStream,
    to: OutputStream,
    /// What the last step waited on: the source to have data, or the sink to have room.
    waiting_for_room: bool,
    done: bool,
}

impl Pipe {
    fn new(from: InputStream, to: OutputStream) -> Self {
        Pipe {
            from,
            to,
            waiting_for_room: false,
            done: false,
        }
    }

    /// Moves what can move now; marks the pipe done when the source has ended.
    fn step(&mut self) -> Result<(), String> {
        while !self.done {
            let room = self.to.check_write().map_err(|e| format!("{e:?}"))?;
            if room == 0 {
                self.waiting_for_room = true;
                return Ok(());
            }
            match self.from.read(room.min(64 * 1024)) {
                Ok(chunk) if chunk.is_empty() => {
                    self.waiting_for_room = false;
                    return Ok(());
                }
                Ok(chunk) => self.to.write(&chunk).map_err(|e| format!("{e:?}"))?,
                Err(StreamError::Closed) => {
                    self.to.blocking_flush().map_err(|e| format!("{e:?}"))?;
                    self.done = true;
                }
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        Ok(())
    }

    fn pollable(&self) -> Pollable {
        if self.waiting_for_room {
            self.to.subscribe()
        } else {
            self.from.subscribe()
        }
    }
}

/// Sends the request to the inner and relays both bodies at once; the inner's response goes
/// out through `out` with `x-harness-version` and `x-request-id` added.
fn relay(
    request: IncomingRequest,
    out: ResponseOutparam,
    request_id: &str,
) -> Result<u16, (ResponseOutparam, String)> {
    let headers = request.headers().clone();
    // The token stays here. (`host` needs no deleting: it is not among the headers a guest
    // sees, and the runtime sets it from the authority.)
    let _ = headers.delete("authorization");
    let _ = headers.set("x-request-id", &[request_id.as_bytes().to_vec()]);
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(&request.method());
    let _ = outgoing.set_scheme(Some(&Scheme::Http));
    let _ = outgoing.set_authority(Some(INNER));
    let _ = outgoing.set_path_with_query(request.path_with_query().as_deref());
    let Ok(request_sink) = outgoing.body() else {
        return Err((out, "request body taken twice".into()));
    };
    let pending = match outgoing_handler::handle(outgoing, None) {
        Ok(pending) => pending,
        Err(e) => return Err((out, format!("{e:?}"))),
    };
    let Ok(request_source) = request.consume() else {
        return Err((out, "request body taken twice".into()));
    };
    let (Ok(from), Ok(to)) = (request_source.stream(), request_sink.write()) else {
        return Err((out, "request streams taken twice".into()));
    };
    let mut upload = Some(Pipe::new(from, to));
    let mut bodies = Some((request_source, request_sink));
    let mut out = Some(out);
    let mut download: Option<(Pipe, IncomingBody, OutgoingBody)> = None;
    let mut status = 0;
    loop {
        if let Some(pipe) = upload.as_mut() {
            if let Err(e) = pipe.step() {
                log(
                    Level::Warn,
                    "harness",
                    &format!("{request_id}: request body cut short: {e}"),
                );
                upload = None;
            }
        }
        if upload.as_ref().is_some_and(|p| p.done) || (upload.is_none() && bodies.is_some()) {
            // Streams are children of their bodies: drop them before finishing the bodies.
            upload = None;
            if let Some((source, sink)) = bodies.take() {
                IncomingBody::finish(source);
                let _ = OutgoingBody::finish(sink, None);
            }
        }
        if download.is_none() {
            if let Some(result) = pending.get() {
                let response = match result {
                    Ok(Ok(response)) => response,
                    Ok(Err(e)) => {
                        return Err((out.take().expect("outparam unused"), format!("{e:?}")))
                    }
                    Err(()) => {
                        return Err((
                            out.take().expect("outparam unused"),
                            "response taken twice".into(),
                        ))
                    }
                };
                status = response.status();
                let headers = response.headers().clone();
                let _ = headers.set("x-harness-version", &[VERSION.as_bytes().to_vec()]);
                let _ = headers.set("x-request-id", &[request_id.as_bytes().to_vec()]);
                let answer = OutgoingResponse::new(headers);
                let _ = answer.set_status_code(status);
                let body = answer.body().expect("response body is taken once");
                ResponseOutparam::set(out.take().expect("outparam unused"), Ok(answer));
                let Ok(source) = response.consume() else {
                    let _ = OutgoingBody::finish(body, None);
                    return Ok(status);
                };
                let (Ok(from), Ok(to)) = (source.stream(), body.write()) else {
                    return Ok(status);
                };
                download = Some((Pipe::new(from, to), source, body));
            }
        }
        if let Some((pipe, _, _)) = download.as_mut() {
            if let Err(e) = pipe.step() {
                log(
                    Level::Warn,
                    "harness",
                    &format!("{request_id}: response body cut short: {e}"),
                );
                pipe.done = true;
            }
            if pipe.done && bodies.is_none() {
                let (pipe, source, body) = download.take().expect("download present");
                drop(pipe);
                drop(source);
                let _ = OutgoingBody::finish(body, None);
                return Ok(status);
            }
        }
        let mut waits = Vec::new();
        if let Some(pipe) = upload.as_ref() {
            waits.push(pipe.pollable());
        }
        match download.as_ref() {
            None => waits.push(pending.subscribe()),
            Some((pipe, _, _)) if !pipe.done => waits.push(pipe.pollable()),
            Some(_) => {}
        }
        if !waits.is_empty() {
            let refs: Vec<&Pollable> = waits.iter().collect();
            poll(&refs);
        }
    }
}

impl wasi::exports::http::incoming_handler::Guest for Harness {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let expected = match expected_token() {
            Ok(token) => token,
            Err(e) => {
                log(Level::Error, "harness", &format!("no token secret: {e}"));
                refuse(out, 500, "the harness has no token configured");
                return;
            }
        };
        if !authorized(&request, &expected) {
            log(Level::Info, "harness", &format!("401 {path}"));
            refuse(out, 401, "missing or wrong bearer token");
            return;
        }
        let request_id = format!("{:016x}", wasi::random::random::get_random_u64());
        match relay(request, out, &request_id) {
            Ok(status) => log(
                Level::Info,
                "harness",
                &format!("{request_id} {path} -> {status}"),
            ),
            Err((out, e)) => {
                log(
                    Level::Warn,
                    "harness",
                    &format!("{request_id} {path}: inner failed: {e}"),
                );
                refuse(
                    out,
                    502,
                    &format!("the app behind this harness failed: {e}"),
                );
            }
        }
    }
}
