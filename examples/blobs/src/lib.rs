//! The blobstore example: objects over HTTP in the container `files`.
//!
//! `PUT /blobs/NAME` stores the body, `GET /blobs/NAME` returns it, `DELETE /blobs/NAME` removes
//! it, `GET /blobs/` lists the names, one per line.

use std::io::{Read as _, Write as _};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/blobs",
        with: {
            "wasi:io/error@0.2.4": ::wasi::io::error,
            "wasi:io/poll@0.2.4": ::wasi::io::poll,
            "wasi:io/streams@0.2.4": ::wasi::io::streams,
        },
        generate_all,
    });
}

use bindings::wasi::blobstore::blobstore;
use bindings::wasi::blobstore::container::Container;
use bindings::wasi::blobstore::types::{IncomingValue, OutgoingValue};

const CONTAINER: &str = "files";

wasi::http::proxy::export!(Blobs);

struct Blobs;

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("output stream is taken once");
        for chunk in body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// The path after the first segment, which is the route the app is mounted on.
fn after_route(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.split_once('/').map_or("", |(_, rest)| rest)
}

fn container() -> Result<Container, String> {
    if blobstore::container_exists(CONTAINER)? {
        blobstore::get_container(CONTAINER)
    } else {
        blobstore::create_container(CONTAINER)
    }
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, String> {
    let incoming = request
        .consume()
        .map_err(|()| "no request body".to_string())?;
    let mut body = Vec::new();
    {
        let mut stream = incoming
            .stream()
            .map_err(|()| "no request body".to_string())?;
        stream.read_to_end(&mut body).map_err(|e| e.to_string())?;
    }
    IncomingBody::finish(incoming);
    Ok(body)
}

fn handle(request: IncomingRequest) -> Result<(u16, Vec<u8>), String> {
    let path = request.path_with_query().unwrap_or_default();
    let name = after_route(&path).to_string();
    let files = container()?;
    match (request.method(), name.as_str()) {
        (Method::Get, "") => {
            let names = files.list_objects()?;
            let mut all = Vec::new();
            loop {
                let (batch, done) = names.read_stream_object_names(100)?;
                all.extend(batch);
                if done {
                    break;
                }
            }
            Ok((200, all.join("\n").into_bytes()))
        }
        (_, "") => Ok((400, b"name an object: /blobs/NAME".to_vec())),
        (Method::Put, _) => {
            let body = read_body(request)?;
            let value = OutgoingValue::new_outgoing_value();
            {
                let mut stream = value
                    .outgoing_value_write_body()
                    .map_err(|()| "no value body".to_string())?;
                stream.write_all(&body).map_err(|e| e.to_string())?;
                stream.flush().map_err(|e| e.to_string())?;
            }
            files.write_data(&name, &value)?;
            OutgoingValue::finish(value)?;
            Ok((
                201,
                format!("stored {} bytes as {name}", body.len()).into_bytes(),
            ))
        }
        (Method::Get, _) => {
            if !files.has_object(&name)? {
                return Ok((404, format!("no object {name}").into_bytes()));
            }
            let value = files.get_data(&name, 0, u64::MAX)?;
            Ok((200, IncomingValue::incoming_value_consume_sync(value)?))
        }
        (Method::Delete, _) => {
            files.delete_object(&name)?;
            Ok((204, Vec::new()))
        }
        _ => Ok((405, b"use GET, PUT or DELETE".to_vec())),
    }
}

impl wasi::exports::http::incoming_handler::Guest for Blobs {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match handle(request) {
            Ok((status, body)) => respond(out, status, &body),
            Err(e) => respond(out, 503, format!("blobstore failed: {e}").as_bytes()),
        }
    }
}
