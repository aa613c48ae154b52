//! Fetches a URL on the guest's behalf through `wasi:http/outgoing-handler`:
//! `GET /fetch?http://host:port/path` answers with that response's body, or 502 and the error
//! the host gave (a host not granted to this component is refused).

use std::io::Write as _;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasi::http::proxy::export!(Fetch);

struct Fetch;

impl wasi::exports::http::incoming_handler::Guest for Fetch {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, url)| url.to_string()))
            .unwrap_or_default();
        let (status, body) = match fetch(&target) {
            Ok(body) => (200, body),
            Err(error) => (
                502,
                format!("fetch {target} failed: {error}\n").into_bytes(),
            ),
        };
        let response = OutgoingResponse::new(Fields::new());
        let _ = response.set_status_code(status);
        let out_body = response.body().expect("response body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = out_body.write().expect("output stream is taken once");
        let _ = out.write_all(&body);
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(out_body, None);
    }
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are fetched")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let incoming = response.consume().map_err(|()| "body taken twice")?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "stream taken twice")?;
        // Err is the end of the body (closed) or a failed read; both end the copy.
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    IncomingBody::finish(incoming);
    Ok(body)
}
