//! A guest that misbehaves on request, so tests can prove the host contains it:
//! `/trap` panics, `/loop` spins forever, `/hog` allocates until memory runs out,
//! `/sleep/MS` waits MS milliseconds (an instance held in flight), `/hold/MIB` keeps MIB MiB
//! of touched memory until it answers (`/hold/100/sleep/3000` holds 100 MiB for 3 s), `/spam`
//! prints 1,000 lines to stderr before answering, `/oversized-write` writes 256 KiB to its
//! response body in one write without asking how much the host takes (`check-write`),
//! `/trap-midway/N` writes N pieces of its answer and then panics, anything else answers `ok`.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Misbehave);

struct Misbehave;

impl wasi::exports::http::incoming_handler::Guest for Misbehave {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.ends_with("/trap") {
            panic!("misbehave: trapping on purpose");
        }
        if path.ends_with("/loop") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if path.ends_with("/hog") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really used, not only reserved.
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        if path.ends_with("/spam") {
            let mut stderr = std::io::stderr();
            for i in 0..1_000 {
                let _ = writeln!(stderr, "misbehave: spam line {i}");
            }
        }
        let held: Vec<u8> = path
            .split_once("/hold/")
            .and_then(|(_, rest)| rest.split('/').next()?.parse::<usize>().ok())
            .map(|mib| vec![0xA5; mib << 20])
            .unwrap_or_default();
        if let Some(ms) = path
            .rsplit_once("/sleep/")
            .and_then(|(_, ms)| ms.parse::<u64>().ok())
        {
            wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
        }
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("response body is taken once");
        let mut out = body.write().expect("output stream is taken once");
        if path.ends_with("/oversized-write") {
            // Before the response is set, so the host's refusal is the answer the client sees.
            let _ = out.write(&vec![0xA5; 256 << 10]);
        }
        ResponseOutparam::set(response_out, Ok(response));
        if let Some((_, pieces)) = path.rsplit_once("/trap-midway/") {
            for _ in 0..pieces.parse::<usize>().unwrap_or(1) {
                let _ = out.write_all(b"a piece of an answer\n");
                let _ = out.flush();
            }
            panic!("misbehave: trapping halfway through the answer");
        }
        let _ = out.write_all(b"ok\n");
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
        drop(std::hint::black_box(held));
    }
}
