//! The WASI 0.3 hello: a `wasi:http/handler@0.3.0` service with native async. One instance
//! serves many requests at once, so every answer names the instance that gave it.
//!
//! - `GET /` answers hello.
//! - `GET /sleep?ms=N` awaits a timer for N ms (an I/O-bound handler: the instance serves
//!   others meanwhile) and answers when it fires.
//! - `GET /trap?ms=N` awaits N ms, then panics: the instance traps, and with it every request
//!   in flight on it.
//! - `GET /trap-midway?pieces=N` answers 200, writes N pieces of its body, then panics: the
//!   answer has started, so the client must see it cut off, never a short body that ends well.
//! - `GET /hog?mib=N` touches N MiB of memory, then answers (the memory limit holds).
//! - `GET /spin?ms=N` computes for N ms without awaiting (a CPU-bound guest: its timeout
//!   holds, and it shares its thread at every epoch tick).
//! - `POST /` echoes the request body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use wasip3::clocks::monotonic_clock;
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

struct Hello;

static SERVED: AtomicU64 = AtomicU64::new(0);

/// A random id drawn once per instance, so a client can tell instances apart.
fn instance_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(wasip3::random::random::get_random_u64)
}

fn query_ms(path: &str) -> u64 {
    query_number(path, "ms=")
}

/// The number after `key` in the query (`key` ends in `=`), or 0.
fn query_number(path: &str, key: &str) -> u64 {
    path.split_once(key)
        .and_then(|(_, rest)| rest.split('&').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A 200 whose body writer panics after `pieces` writes.
fn trap_midway(pieces: u64) -> Result<Response, ErrorCode> {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        for _ in 0..pieces {
            tx.write_all(b"a piece of an answer\n".to_vec()).await;
        }
        panic!("asked to trap halfway through the answer");
    });
    Ok(response)
}

fn respond(status: u16, body: Vec<u8>) -> Result<Response, ErrorCode> {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let _ = headers.set("x-instance", &[instance_id().to_string().into_bytes()]);
    let (mut tx, rx) = wit_stream::new();
    let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(rx), trailers_rx);
    let _ = response.set_status_code(status);
    wit_bindgen::spawn_local(async move {
        tx.write_all(body).await;
    });
    Ok(response)
}

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        if path.starts_with("/sleep") {
            let ms = query_ms(&path);
            monotonic_clock::wait_for(ms * 1_000_000).await;
            return respond(200, format!("slept {ms} ms\n").into_bytes());
        }
        if path.contains("/trap-midway") {
            return trap_midway(query_number(&path, "pieces=").max(1));
        }
        if path.starts_with("/trap") {
            monotonic_clock::wait_for(query_ms(&path) * 1_000_000).await;
            panic!("asked to trap by {path}");
        }
        if path.starts_with("/spin") {
            let ms = query_ms(&path);
            let until = monotonic_clock::now() + ms * 1_000_000;
            let mut turns = 0u64;
            while monotonic_clock::now() < until {
                turns = turns.wrapping_add(1);
            }
            return respond(200, format!("spun {ms} ms ({turns} turns)\n").into_bytes());
        }
        if path.starts_with("/hog") {
            let mib = path
                .split_once("mib=")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(1);
            let held = vec![1u8; mib << 20];
            return respond(200, format!("held {} MiB\n", held.len() >> 20).into_bytes());
        }
        if matches!(request.get_method(), wasip3::http::types::Method::Post) {
            let (_, trailers) = wit_future::new(|| Ok(()));
            let (mut body, _) = Request::consume_body(request, trailers);
            let mut received = Vec::new();
            loop {
                let (result, chunk) = body.read(Vec::with_capacity(16 * 1024)).await;
                received.extend_from_slice(&chunk);
                if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                    break;
                }
            }
            return respond(200, received);
        }
        respond(
            200,
            format!("Hello from a WASI 0.3 component! (request {served} of this instance)\n")
                .into_bytes(),
        )
    }
}
