//! The greet example (Rust): answers `GET /greet?name=NAME&tags=a,b` by calling
//! `weft:greet/greeter`, which another component (the Python greeter) serves through a component
//! link. Strings, a list and a record cross between the two languages.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod bindings {
    wit_bindgen::generate!({
        path: "../greeter-py/wit",
        world: "weft:greet/caller",
        generate_all,
    });
}

use bindings::weft::greet::greeter;

wasi::http::proxy::export!(Greet);

struct Greet;

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.replace("%20", " "))
}

impl wasi::exports::http::incoming_handler::Guest for Greet {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let name = query_param(query, "name").unwrap_or_else(|| "world".to_string());
        let tags: Vec<String> = query_param(query, "tags")
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let greeting = greeter::greet(&name, &tags);

        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("response body is taken once");
        ResponseOutparam::set(out, Ok(response));
        {
            let mut stream = body.write().expect("output stream is taken once");
            let _ = writeln!(stream, "message: {}", greeting.message);
            let _ = writeln!(stream, "length: {}", greeting.length);
            let _ = writeln!(stream, "tags: {}", greeting.tags.join(","));
            let _ = stream.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
