//! The hello example: answers `GET /hello`, echoes a request body back (streamed both ways),
//! and on `/hello/count` tells how many requests this instance has served, which shows whether
//! the host reuses instances and whether a fresh one starts with memory a request left. On
//! `/hello/handle` it makes a resource it never drops and answers with its handle: a fresh
//! instance's handles start from the same place every time, whatever an earlier request left.
//! `/hello/clock` answers with its monotonic clock's reading in nanoseconds, `/hello/seed` with
//! its insecure random seed.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Hello);

struct Hello;

static SERVED: AtomicU64 = AtomicU64::new(0);

/// Words per 8 KiB: the marks `/count` leaves are two pages apart, so each is a region of its own.
const MARK_STRIDE: usize = 1024;
/// Marks `/count` leaves in this instance's memory: 64 disjoint dirtied pages, more than one
/// `PAGEMAP_SCAN` of a reset reports, so a reset that restored only some of them would show.
static MARKS: [AtomicU64; 64 * MARK_STRIDE] = [const { AtomicU64::new(0) }; 64 * MARK_STRIDE];

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("response body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("output stream is taken once");

        if matches!(request.method(), Method::Post | Method::Put) {
            // Echo: copy the request body to the response chunk by chunk, never holding it whole.
            let incoming = request.consume().expect("request body is consumed once");
            {
                let input = incoming.stream().expect("input stream is taken once");
                // Err is the end of the body (closed) or a failed read; both end the echo.
                while let Ok(chunk) = input.blocking_read(64 * 1024) {
                    if out.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
            IncomingBody::finish(incoming);
        } else if path.ends_with("/handle") {
            let leaked = Fields::new();
            let _ = writeln!(out, "{}", leaked.handle());
            std::mem::forget(leaked);
        } else if path.ends_with("/seed") {
            let (a, b) = wasi::random::insecure_seed::insecure_seed();
            let _ = writeln!(out, "{a:016x}{b:016x}");
        } else if path.ends_with("/clock") {
            let _ = writeln!(out, "{}", wasi::clocks::monotonic_clock::now());
        } else if path.ends_with("/count") {
            let marked = MARKS
                .iter()
                .step_by(MARK_STRIDE)
                .map(|mark| mark.fetch_add(1, Ordering::Relaxed) + 1)
                .max()
                .unwrap_or(0);
            let _ = writeln!(out, "{}", served.max(marked));
        } else {
            let _ = writeln!(out, "Hello from Rust! You asked for {path}");
        }
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}
