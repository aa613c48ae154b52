//! {{name}}'s app: what answers behind the harness. Requests reach it from the harness
//! (through the harness's `inner` link), never straight from the listener.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Component);

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("response body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        {
            let mut out = body.write().expect("output stream is taken once");
            let _ = writeln!(out, "Hello from {{name}}'s app! You asked for {path}");
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
