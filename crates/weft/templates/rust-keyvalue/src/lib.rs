//! {{name}}: counters in key-value. `POST /{{name}}/KEY` adds one to KEY and answers the new
//! count; `GET /{{name}}/KEY` reads it. The store is the `kv` node of app.yaml (a file on the
//! host; switch `backend:` to memory, redis or nats).

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "weft:component/component", generate_all });
}

use bindings::wasi::keyvalue::{atomics, store};

wasi::http::proxy::export!(Component);

struct Component;

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("response body is taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = body.write().expect("output stream is taken once");
        let _ = writeln!(stream, "{text}");
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(message) => message,
    }
}

fn count(method: &Method, key: &str) -> Result<u64, String> {
    let bucket = store::open("").map_err(describe)?;
    match method {
        Method::Post => atomics::increment(&bucket, key, 1).map_err(describe),
        _ => {
            let value = bucket.get(key).map_err(describe)?;
            Ok(value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        }
    }
}

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        // The first segment is the route the app is mounted on.
        let key = path.trim_start_matches('/').split_once('/').map_or("", |(_, k)| k);
        if key.is_empty() {
            return respond(response_out, 400, "name a key: /{{name}}/KEY");
        }
        match count(&request.method(), key) {
            Ok(n) => respond(response_out, 200, &n.to_string()),
            Err(e) => respond(response_out, 500, &e),
        }
    }
}
