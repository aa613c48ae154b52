//! The inbox example: a handler of messages published on Redis channels (or any messaging
//! backend). Each message adds one to `received` in key-value and becomes `last`; a message
//! whose body is `panic` makes the handler trap, to show that one failed message stops none of
//! the ones after it.
//!
//! Over HTTP, `GET /inbox` answers `received=N` and `last=BODY` (`last-subject=SUBJECT`).

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/inbox",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, store};
use bindings::wasi::logging::logging::{log, Level};
use bindings::wasmcloud::messaging0_2_0::types::BrokerMessage;

struct Inbox;

wasi::http::proxy::export!(Inbox);
bindings::export!(Inbox with_types_in bindings);

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(message) => message,
    }
}

impl bindings::exports::wasmcloud::messaging0_2_0::handler::Guest for Inbox {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        if msg.body == b"panic" {
            panic!("asked to panic by a message on {}", msg.subject);
        }
        let bucket = store::open("").map_err(kv_error)?;
        let received = atomics::increment(&bucket, "received", 1).map_err(kv_error)?;
        bucket.set("last", &msg.body).map_err(kv_error)?;
        bucket
            .set("last-subject", msg.subject.as_bytes())
            .map_err(kv_error)?;
        log(
            Level::Info,
            "inbox",
            &format!("message {received} on {}", msg.subject),
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

fn read(bucket: &store::Bucket, key: &str, absent: &str) -> Result<String, store::Error> {
    Ok(bucket
        .get(key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| absent.to_string()))
}

impl wasi::exports::http::incoming_handler::Guest for Inbox {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get) {
            return respond(out, 405, "GET only");
        }
        let answer = store::open("").and_then(|bucket| {
            Ok(format!(
                "received={}\nlast={}\nlast-subject={}",
                read(&bucket, "received", "0")?,
                read(&bucket, "last", "")?,
                read(&bucket, "last-subject", "")?
            ))
        });
        match answer {
            Ok(body) => respond(out, 200, &body),
            Err(e) => respond(out, 500, &kv_error(e)),
        }
    }
}
