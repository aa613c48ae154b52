//! The counter example: HTTP in front of key-value atomics, with config, logging and secrets.
//!
//! Paths are relative to the route the app is mounted on (`/counter` in app.yaml).
//!
//! - `POST /counter/KEY` adds one to KEY and answers the new count; `GET /counter/KEY` reads it.
//!   `?store=NAME` picks the key-value link named NAME (wasmcloud:bus set-link-name).
//! - `DELETE /counter/KEY` deletes KEY.
//! - `GET /counter/many/K1,K2,…` reads several keys in one `wasi:keyvalue/batch` call, one
//!   `KEY=VALUE` line each (0 when absent), and logs how many it read.
//! - As a `wasi:keyvalue/watcher` it records each change of a watched key (the link from the
//!   store names them) in the same bucket: `seen.KEY` holds the value set last, `gone.KEY`
//!   says `deleted` once the key is deleted; `GET /counter/seen.KEY` reads it.
//! - `GET /counter/config/KEY` answers the component's config value KEY.
//! - `GET /counter/secret/NAME` checks the request's bearer token against secret NAME: 200 when
//!   it matches, 401 when not, 404 when the secret is not granted. The value is never echoed.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/capabilities/wit",
        world: "weft:capabilities/counter",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasi::logging::logging::{log, Level};
use bindings::wasmcloud::bus1_0_0::lattice;
use bindings::wasmcloud::secrets::{reveal, store as secrets};

wasi::http::proxy::export!(Counter);
bindings::export!(Counter with_types_in bindings);

impl bindings::exports::wasi::keyvalue::watcher::Guest for Counter {
    fn on_set(bucket: store::Bucket, key: String, value: Vec<u8>) {
        let _ = bucket.set(&format!("seen.{key}"), &value);
    }

    fn on_delete(bucket: store::Bucket, key: String) {
        let _ = bucket.set(&format!("gone.{key}"), b"deleted");
    }
}

struct Counter;

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

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(message) => message,
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

fn bearer(request: &IncomingRequest) -> Option<Vec<u8>> {
    let values = request.headers().get("authorization");
    let value = values.first()?;
    value.strip_prefix(b"Bearer ").map(<[u8]>::to_vec)
}

fn read_many(keys: &str) -> Result<String, String> {
    let keys: Vec<String> = keys.split(',').map(str::to_string).collect();
    let bucket = store::open("").map_err(kv_error)?;
    let found = batch::get_many(&bucket, &keys).map_err(kv_error)?;
    log(
        Level::Info,
        "counter",
        &format!("read {} keys in one batch", keys.len()),
    );
    Ok(keys
        .iter()
        .zip(found)
        .map(|(key, value)| {
            let value = value.map_or("0".to_string(), |(_, v)| {
                String::from_utf8_lossy(&v).into_owned()
            });
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

fn count(method: &Method, key: &str, query: &str) -> Result<String, String> {
    if let Some(name) = query_param(query, "store") {
        let targets = vec![
            lattice::CallTargetInterface::new("wasi", "keyvalue", "store"),
            lattice::CallTargetInterface::new("wasi", "keyvalue", "atomics"),
        ];
        lattice::set_link_name(name, targets);
    }
    let bucket = store::open("").map_err(kv_error)?;
    match method {
        Method::Delete => {
            bucket.delete(key).map_err(kv_error)?;
            Ok("deleted".to_string())
        }
        Method::Post => {
            let value = atomics::increment(&bucket, key, 1).map_err(kv_error)?;
            log(Level::Debug, "counter", &format!("{key} is now {value}"));
            Ok(value.to_string())
        }
        _ => match bucket.get(key).map_err(kv_error)? {
            Some(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            None => Ok("0".to_string()),
        },
    }
}

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_and_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((&path_and_query, ""));
        let rest = after_route(path);

        if let Some(key) = rest.strip_prefix("config/") {
            match bindings::wasi::config::store::get(key) {
                Ok(Some(value)) => respond(out, 200, &value),
                Ok(None) => respond(out, 404, &format!("no config value `{key}`")),
                Err(e) => respond(out, 500, &format!("config: {e:?}")),
            }
            return;
        }
        if let Some(keys) = rest.strip_prefix("many/") {
            match read_many(keys) {
                Ok(lines) => respond(out, 200, &lines),
                Err(e) => respond(out, 503, &format!("key-value store failed: {e}")),
            }
            return;
        }
        if let Some(name) = rest.strip_prefix("secret/") {
            let secret = match secrets::get(name) {
                Ok(secret) => secret,
                Err(secrets::SecretsError::NotFound) => {
                    respond(
                        out,
                        404,
                        &format!("secret `{name}` is not granted to this component"),
                    );
                    return;
                }
                Err(e) => {
                    respond(out, 500, &format!("secret store: {e:?}"));
                    return;
                }
            };
            let expected = match reveal::reveal(&secret) {
                secrets::SecretValue::String(s) => s.into_bytes(),
                secrets::SecretValue::Bytes(b) => b,
            };
            if bearer(&request).as_deref() == Some(expected.as_slice()) {
                respond(out, 200, "authorized");
            } else {
                respond(out, 401, "wrong or missing bearer token");
            }
            return;
        }
        if rest.is_empty() {
            respond(
                out,
                400,
                "name a key: POST /counter/KEY to count, GET /counter/KEY to read",
            );
            return;
        }
        match count(&request.method(), rest, query) {
            Ok(value) => respond(out, 200, &value),
            Err(e) => {
                log(Level::Warn, "counter", &format!("{rest}: {e}"));
                respond(out, 503, &format!("key-value store failed: {e}"));
            }
        }
    }
}
