//! Fuzz targets over the places untrusted bytes enter weft: a manifest, the control API's JSON
//! bodies, a cross-host call's values in the wire encoding, and a forwarded request's framing.
//! Each target takes any bytes and must neither panic nor hang; where a decoder has an encoder,
//! what decodes must encode and decode to the same thing. `fuzz/` runs them under libFuzzer
//! (`cargo fuzz`); `tests/replay.rs` replays the checked-in corpus and mutates it for a while
//! on every test run.

use std::sync::OnceLock;

use bytes::Bytes;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Type};

/// A fuzz target: any bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("control_json", control_json),
    ("wire", wire),
    ("frame", frame),
];

/// A manifest as `weft app deploy` sends it: parsed, checked and locked against the
/// capability catalog.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = weft_manifest::parse_app(text, "fuzz.yaml", weft_capabilities::catalog::catalog());
}

/// The control API's request bodies, and for a deploy what the host does next with it.
pub fn control_json(data: &[u8]) {
    let parse = |request: &weft_api::DeployRequest| {
        let _ = weft_manifest::parse_app(
            &request.manifest,
            &request.origin,
            weft_capabilities::catalog::catalog(),
        );
    };
    if let Ok(request) = serde_json::from_slice::<weft_api::DeployRequest>(data) {
        parse(&request);
    }
    if let Ok(batch) = serde_json::from_slice::<weft_api::DeployBatch>(data) {
        batch.apps.iter().for_each(parse);
    }
    let _ = serde_json::from_slice::<weft_api::CallRequest>(data);
}

/// The parameter types of one function using every kind of value that may cross hosts.
fn wire_types() -> &'static Vec<Type> {
    static TYPES: OnceLock<Vec<Type>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let engine = wasmtime::Engine::default();
        let component = Component::new(&engine, WIRE_WAT).expect("the fuzz component is valid");
        let ty = component.component_type();
        let Some(ComponentItem::ComponentFunc(function)) =
            ty.get_import(&engine, "f").map(|import| import.ty)
        else {
            panic!("the fuzz component imports function f");
        };
        function.params().map(|(_, ty)| ty).collect()
    })
}

const WIRE_WAT: &str = r#"
(component
  (type $p (record (field "x" s32) (field "y" float64)))
  (import "point" (type $point (eq $p)))
  (type $s (variant (case "circle" float32) (case "dot") (case "poly" (list $point))))
  (import "shape" (type $shape (eq $s)))
  (type $c (enum "red" "green" "blue"))
  (import "color" (type $color (eq $c)))
  (type $fl (flags "read" "write" "exec"))
  (import "perm" (type $perm (eq $fl)))
  (import "f" (func
    (param "a" $shape)
    (param "b" (option string))
    (param "c" (result u64 (error $color)))
    (param "d" (tuple char s8 u16 $perm))
    (param "e" (list (list u8)))
    (param "g" bool)
    (param "h" float32)
    (param "i" s64)))
)
"#;

/// A cross-host call's arguments: what decodes re-encodes to bytes that decode to the same.
pub fn wire(data: &[u8]) {
    use weft_runtime::wire::{decode_all, encode_all};
    let types = wire_types();
    let Ok(values) = decode_all(types.iter().cloned(), data) else {
        return;
    };
    let encoded =
        encode_all(&values, types.iter().cloned()).expect("a decoded value encodes again");
    let again = decode_all(types.iter().cloned(), &encoded).expect("an encoded value decodes");
    let re_encoded =
        encode_all(&again, types.iter().cloned()).expect("a decoded value encodes again");
    assert_eq!(encoded, re_encoded, "the wire encoding does not round-trip");
}

/// A forwarded request, a cross-host call and their replies as NATS messages: each head that
/// unframes frames again to the same head.
pub fn frame(data: &[u8]) {
    use weft_lattice::{frame, unframe, CallHead, CallReply, RequestHead, ResponseHead};
    let message = Bytes::copy_from_slice(data);
    if let Ok((head, body)) = unframe::<RequestHead>(&message) {
        let (again, again_body) = unframe::<RequestHead>(&frame(&head, &body)).unwrap();
        assert_eq!(
            (again.method, again.uri, again.headers, again_body),
            (head.method, head.uri, head.headers, body)
        );
    }
    if let Ok((head, body)) = unframe::<CallHead>(&message) {
        let (again, _) = unframe::<CallHead>(&frame(&head, &body)).unwrap();
        assert_eq!(again.path(), head.path());
    }
    let _ = unframe::<ResponseHead>(&message);
    let _ = unframe::<CallReply>(&message);
}
