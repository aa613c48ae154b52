//! A WASI 0.3 service that has two things in flight at once: an outgoing HTTP request
//! (`wasi:http` 0.3's `client.send`, under the component's allow-list) and a read of weft's
//! key-value capability (`wasi:keyvalue/store@0.2.0-draft`). The key-value interface is
//! synchronous in its WIT, and the component model lowers a synchronous function only
//! synchronously (wasmtime 48 refuses `async` on it), so the read is a plain call made while
//! the request is out: the request is sent first, the read runs, then both are joined.
//!
//! - `PUT …/greeting` stores the request body under the key `greeting`.
//! - `GET …?url=URL` fetches URL while it reads `greeting`, and answers with both.
//! - `GET …?upload-then-trap=N&url=URL` PUTs a body to URL and panics after writing N pieces
//!   of it: a guest failing while its upload is out, which the server must not take for whole.

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "weft:fetch-p3/fetch-p3",
        generate_all,
    });
}

use bindings::exports::wasi::http::handler::Guest;
use bindings::wasi::http::client;
use bindings::wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use bindings::wasi::keyvalue::store;
use bindings::{wit_future, wit_stream};

struct FetchP3;

bindings::export!(FetchP3 with_types_in bindings);

fn respond(status: u16, body: String) -> Result<Response, ErrorCode> {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let (mut tx, contents) = wit_stream::new();
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(headers, Some(contents), trailers);
    let _ = response.set_status_code(status);
    wit_bindgen::spawn_local(async move {
        tx.write_all(body.into_bytes()).await;
    });
    Ok(response)
}

/// Reads the whole body of a request or response stream.
async fn read_all(mut body: wit_bindgen::StreamReader<u8>) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let (result, chunk) = body.read(Vec::with_capacity(16 * 1024)).await;
        all.extend_from_slice(&chunk);
        if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
            return all;
        }
    }
}

async fn greeting() -> Result<String, String> {
    let bucket = store::open("").map_err(|e| format!("{e:?}"))?;
    let value = bucket.get("greeting").map_err(|e| format!("{e:?}"))?;
    Ok(value.map_or_else(|| "(none)".into(), |v| String::from_utf8_lossy(&v).into_owned()))
}

/// A request for `url` with `method` and the body `contents` streams.
fn request_to(
    url: &str,
    method: Method,
    contents: Option<wit_bindgen::StreamReader<u8>>,
) -> Result<Request, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (request, _) = Request::new(Fields::new(), contents, trailers, None);
    let _ = request.set_method(&method);
    let _ = request.set_scheme(Some(&match scheme {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    }));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    Ok(request)
}

async fn fetch(url: &str) -> Result<(u16, String), String> {
    let request = request_to(url, Method::Get, None)?;
    let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.get_status_code();
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, _) = Response::consume_body(response, done);
    let body = read_all(body).await;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// PUTs a body to `url`, writing `pieces` pieces of it, then panics with the upload out.
async fn upload_then_trap(url: &str, pieces: u32) {
    let (mut contents, reader) = wit_stream::new();
    let request = match request_to(url, Method::Put, Some(reader)) {
        Ok(request) => request,
        Err(e) => panic!("{e}"),
    };
    wit_bindgen::spawn_local(async move {
        let _ = client::send(request).await;
    });
    for _ in 0..pieces {
        contents.write_all(b"a piece of an upload\n".to_vec()).await;
    }
    panic!("asked to trap halfway through an upload");
}

impl Guest for FetchP3 {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        if matches!(request.get_method(), Method::Put) && path.ends_with("/greeting") {
            let (_, done) = wit_future::new(|| Ok(()));
            let (body, _) = Request::consume_body(request, done);
            let value = read_all(body).await;
            let stored = store::open("").and_then(|bucket| bucket.set("greeting", &value));
            return match stored {
                Ok(()) => respond(200, "stored\n".into()),
                Err(e) => respond(503, format!("key-value: {e:?}\n")),
            };
        }
        let Some((_, url)) = path.split_once("url=") else {
            return respond(400, "give ?url=http://host:port/path\n".into());
        };
        if let Some((_, rest)) = path.split_once("upload-then-trap=") {
            let pieces: u32 = rest.split('&').next().and_then(|n| n.parse().ok()).unwrap_or(1);
            upload_then_trap(url, pieces).await;
        }
        // `join!` polls the request first: it is sent and in flight while the read runs.
        let (fetched, greeting) = futures::join!(fetch(url), greeting());
        let greeting = greeting.unwrap_or_else(|e| format!("key-value failed: {e}"));
        let fetched = match fetched {
            Ok((status, body)) => format!("{status} {}", body.lines().next().unwrap_or("")),
            Err(e) => format!("failed: {e}"),
        };
        respond(200, format!("greeting: {greeting}\nfetched: {fetched}\n"))
    }
}
