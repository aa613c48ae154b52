//! The messaging example.
//!
//! As a handler it answers every message that has a reply subject with `re: BODY`. Over HTTP,
//! `POST /messages/request/SUBJECT` sends the body as a request and answers the reply, and
//! `POST /messages/publish/SUBJECT` publishes the body.

use std::io::{Read as _, Write as _};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/messenger",
        generate_all,
    });
}

use bindings::wasmcloud::messaging0_2_0::consumer;
use bindings::wasmcloud::messaging0_2_0::types::BrokerMessage;

bindings::export!(Messenger with_types_in bindings);
wasi::http::proxy::export!(Messenger);

struct Messenger;

impl bindings::exports::wasmcloud::messaging0_2_0::handler::Guest for Messenger {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let Some(reply_to) = msg.reply_to else {
            return Ok(());
        };
        let mut body = b"re: ".to_vec();
        body.extend_from_slice(&msg.body);
        consumer::publish(&BrokerMessage {
            subject: reply_to,
            body,
            reply_to: None,
        })
    }
}

/// The path after the first segment, which is the route the app is mounted on.
fn after_route(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.split_once('/').map_or("", |(_, rest)| rest)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("output stream is taken once");
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(mut stream) = incoming.stream() {
            let _ = stream.read_to_end(&mut body);
        }
        IncomingBody::finish(incoming);
    }
    body
}

impl wasi::exports::http::incoming_handler::Guest for Messenger {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let rest = after_route(&path).to_string();
        let body = read_body(request);
        if let Some(subject) = rest.strip_prefix("request/") {
            match consumer::request(subject, &body, 2000) {
                Ok(reply) => respond(out, 200, &reply.body),
                Err(e) => respond(out, 504, format!("request failed: {e}").as_bytes()),
            }
        } else if let Some(subject) = rest.strip_prefix("publish/") {
            let message = BrokerMessage {
                subject: subject.to_string(),
                body,
                reply_to: None,
            };
            match consumer::publish(&message) {
                Ok(()) => respond(out, 202, b"published"),
                Err(e) => respond(out, 502, format!("publish failed: {e}").as_bytes()),
            }
        } else {
            respond(
                out,
                404,
                b"use POST /messages/request/SUBJECT or /messages/publish/SUBJECT",
            );
        }
    }
}
