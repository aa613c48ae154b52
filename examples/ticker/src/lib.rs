//! The ticker example: a scheduled job. At each tick of the schedules linked to it, it adds one
//! to `ticks` in its key-value store, records the tick's due time in `last-tick`, and logs
//! `tick SCHEDULE DUE_MS`.
//!
//! Over HTTP, `GET /ticker` answers `ticks=N` and `last-tick=DUE_MS`.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/ticker",
        generate_all,
    });
}

use bindings::exports::weft::schedule::handler::Tick;
use bindings::wasi::keyvalue::{atomics, store};
use bindings::wasi::logging::logging::{log, Level};

struct Ticker;

wasi::http::proxy::export!(Ticker);
bindings::export!(Ticker with_types_in bindings);

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(message) => message,
    }
}

impl bindings::exports::weft::schedule::handler::Guest for Ticker {
    fn on_tick(tick: Tick) -> Result<(), String> {
        let bucket = store::open("").map_err(kv_error)?;
        atomics::increment(&bucket, "ticks", 1).map_err(kv_error)?;
        bucket
            .set("last-tick", tick.due_ms.to_string().as_bytes())
            .map_err(kv_error)?;
        log(
            Level::Info,
            "ticker",
            &format!("tick {} {}", tick.schedule, tick.due_ms),
        );
        Ok(())
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("output stream is taken once");
        let _ = writeln!(stream, "{body}");
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn read(bucket: &store::Bucket, key: &str) -> Result<String, String> {
    Ok(bucket
        .get(key)
        .map_err(kv_error)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "0".to_string()))
}

impl wasi::exports::http::incoming_handler::Guest for Ticker {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get) {
            return respond(out, 405, "GET only");
        }
        let answer = store::open("").and_then(|bucket| {
            let ticks = read(&bucket, "ticks").map_err(store::Error::Other)?;
            let last = read(&bucket, "last-tick").map_err(store::Error::Other)?;
            Ok(format!("ticks={ticks}\nlast-tick={last}"))
        });
        match answer {
            Ok(body) => respond(out, 200, &body),
            Err(e) => respond(out, 500, &kv_error(e)),
        }
    }
}
