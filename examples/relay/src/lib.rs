//! The relay example: wasmCloud's newer interface versions in one component.
//!
//! Paths are relative to the route the app is mounted on (`/relay` in app.yaml).
//!
//! - `GET /relay/config/KEY` answers config value KEY, read through `wasi:config/runtime`.
//! - `PUT /relay/kv/KEY` stores the body, `GET /relay/kv/KEY` reads it; `?store=NAME` picks the
//!   key-value link named NAME through `wasmcloud:bus/lattice@2.0.0`, which says when there is
//!   no such link (404).
//! - `POST /relay/send/SUBJECT` sends the body with `wasmcloud:messaging/producer@0.3.0`, as
//!   `text/plain` with the metadata `sent-by: relay`.
//! - `POST /relay/request/SUBJECT?replies=N` sends the body as a request and answers the replies
//!   (up to N, one per line, sorted); 504 when none came.
//!
//! - `DELETE /relay/kv/KEY` deletes the key.
//!
//! As a `wasmcloud:messaging/incoming-handler@0.3.0` it replies `relay: BODY [CONTENT-TYPE]
//! METADATA` to a message with a reply subject, and stores a message without one under the
//! key-value key `last.SUBJECT`.

use std::io::{Read as _, Write as _};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/relay",
        generate_all,
    });
}

use bindings::wasi::keyvalue::store;
use bindings::wasmcloud::bus2_0_0::lattice;
use bindings::wasmcloud::messaging0_3_0::producer;
use bindings::wasmcloud::messaging0_3_0::request_reply::{self, RequestOptions};
use bindings::wasmcloud::messaging0_3_0::types::{Client, Error, Message};

bindings::export!(Relay with_types_in bindings);
wasi::http::proxy::export!(Relay);

struct Relay;

impl bindings::exports::wasmcloud::messaging0_3_0::incoming_handler::Guest for Relay {
    fn handle(message: Message) -> Result<(), Error> {
        let body = String::from_utf8_lossy(&message.data()).into_owned();
        let content_type = message.content_type().unwrap_or_default();
        let mut metadata: Vec<String> = message
            .metadata()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        metadata.sort();
        let answer = Message::new(
            format!("relay: {body} [{content_type}] {}", metadata.join(",")).as_bytes(),
        );
        match request_reply::reply(&message, answer) {
            Ok(()) => Ok(()),
            // No reply subject: keep the message where HTTP can read it.
            Err(_) => {
                let topic = message.topic().unwrap_or_default();
                let bucket = store::open("").map_err(|e| Error::Other(kv_error(e)))?;
                bucket
                    .set(&format!("last.{topic}"), body.as_bytes())
                    .map_err(|e| Error::Other(kv_error(e)))
            }
        }
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
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(mut stream) = incoming.stream() {
            let _ = stream.read_to_end(&mut body);
        }
        let _ = IncomingBody::finish(incoming);
    }
    body
}

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(message) => message,
    }
}

fn messaging_error(e: &Error) -> (u16, String) {
    match e {
        Error::Timeout => (504, "no reply in time".to_string()),
        Error::Connection(e) => (503, format!("connection: {e}")),
        Error::PermissionDenied(e) => (403, format!("permission denied: {e}")),
        Error::Other(e) => (502, e.clone()),
    }
}

/// The path after the first segment, which is the route the app is mounted on.
fn after_route(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.split_once('/').map_or("", |(_, rest)| rest)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn keyvalue(method: &Method, key: &str, query: &str, body: Vec<u8>) -> (u16, String) {
    if let Some(name) = query_param(query, "store") {
        let targets = vec![lattice::CallTargetInterface::new(
            "wasi", "keyvalue", "store",
        )];
        if let Err(e) = lattice::set_link_name(name, targets) {
            return (404, e);
        }
    }
    let bucket = match store::open("") {
        Ok(bucket) => bucket,
        Err(e) => return (503, kv_error(e)),
    };
    match method {
        Method::Put | Method::Post => match bucket.set(key, &body) {
            Ok(()) => (200, "stored".to_string()),
            Err(e) => (503, kv_error(e)),
        },
        Method::Delete => match bucket.delete(key) {
            Ok(()) => (200, "deleted".to_string()),
            Err(e) => (503, kv_error(e)),
        },
        _ => match bucket.get(key) {
            Ok(Some(value)) => (200, String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => (404, format!("no key `{key}`")),
            Err(e) => (503, kv_error(e)),
        },
    }
}

fn send(subject: &str, body: Vec<u8>) -> (u16, String) {
    let client = match Client::connect("") {
        Ok(client) => client,
        Err(e) => return messaging_error(&e),
    };
    let message = Message::new(&body);
    message.set_content_type("text/plain");
    message.add_metadata("sent-by", "relay");
    match producer::send(&client, subject, message) {
        Ok(()) => (200, "sent".to_string()),
        Err(e) => messaging_error(&e),
    }
}

fn request(subject: &str, query: &str, body: Vec<u8>) -> (u16, String) {
    let client = match Client::connect("") {
        Ok(client) => client,
        Err(e) => return messaging_error(&e),
    };
    let message = Message::new(&body);
    message.set_content_type("text/plain");
    message.add_metadata("sent-by", "relay");
    let options = RequestOptions::new();
    options.set_timeout_ms(2000);
    if let Some(replies) = query_param(query, "replies").and_then(|n| n.parse().ok()) {
        options.set_expected_replies(replies);
    }
    match request_reply::request(&client, subject, &message, Some(options)) {
        Ok(replies) => {
            let mut lines: Vec<String> = replies
                .iter()
                .map(|reply| String::from_utf8_lossy(&reply.data()).into_owned())
                .collect();
            lines.sort();
            (200, lines.join("\n"))
        }
        Err(e) => messaging_error(&e),
    }
}

impl wasi::exports::http::incoming_handler::Guest for Relay {
    fn handle(request_in: IncomingRequest, out: ResponseOutparam) {
        let path_and_query = request_in.path_with_query().unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((&path_and_query, ""));
        let rest = after_route(path);
        let method = request_in.method();
        let body = read_body(&request_in);
        let (status, answer) = if let Some(key) = rest.strip_prefix("config/") {
            match bindings::wasi::config::runtime::get(key) {
                Ok(Some(value)) => (200, value),
                Ok(None) => (404, format!("no config value `{key}`")),
                Err(e) => (500, format!("config: {e:?}")),
            }
        } else if let Some(key) = rest.strip_prefix("kv/") {
            keyvalue(&method, key, query, body)
        } else if let Some(subject) = rest.strip_prefix("send/") {
            send(subject, body)
        } else if let Some(subject) = rest.strip_prefix("request/") {
            request(subject, query, body)
        } else {
            (
                404,
                "try config/KEY, kv/KEY, send/SUBJECT or request/SUBJECT".to_string(),
            )
        };
        respond(out, status, &answer);
    }
}
