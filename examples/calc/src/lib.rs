//! The calc example: an app with no route, only functions to call with `weft call`, e.g.
//! `weft call calc/calc weft:calc/calc.divide 1.0 4.0`.

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "weft:calc/calculator" });
}

use bindings::exports::weft::calc::calc::{Guest, Point, Unit};

struct Calc;

impl Guest for Calc {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    fn divide(a: f64, b: f64) -> Result<f64, String> {
        if b == 0.0 {
            Err(format!("cannot divide {a} by zero"))
        } else {
            Ok(a / b)
        }
    }

    fn find(names: Vec<String>, wanted: String) -> Option<u32> {
        names.iter().position(|n| *n == wanted).map(|i| i as u32)
    }

    fn move_by(p: Point, dx: i32, unit: Unit) -> Point {
        let dx = match unit {
            Unit::Metres => dx,
            // A foot is 0.3048 m; points are kept in whole metres.
            Unit::Feet => (f64::from(dx) * 0.3048).round() as i32,
        };
        Point {
            x: p.x.wrapping_add(dx),
            y: p.y,
        }
    }

    fn shout(words: Vec<String>, suffix: Option<String>) -> String {
        let mut text = words.join(" ").to_uppercase();
        text.push_str(suffix.as_deref().unwrap_or("!"));
        text
    }
}

bindings::export!(Calc with_types_in bindings);
