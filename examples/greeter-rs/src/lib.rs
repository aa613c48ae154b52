//! The greeter in Rust: exports `weft:greet/greeter` (the same WIT the Python greeter serves), so
//! the greet example can call either, in-process or on another host of a lattice.

mod bindings {
    wit_bindgen::generate!({
        path: "../greeter-py/wit",
        world: "weft:greet/greeter-py",
    });
}

use bindings::exports::weft::greet::greeter::{Greeting, Guest};

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String, tags: Vec<String>) -> Greeting {
        let message = format!("Hello, {name}! (from Rust)");
        Greeting {
            length: message.chars().count() as u32,
            message,
            tags: tags.iter().map(|t| t.to_uppercase()).collect(),
        }
    }
}

bindings::export!(Greeter with_types_in bindings);
