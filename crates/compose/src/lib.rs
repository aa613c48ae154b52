//! `weft compose`: joins components statically into one — each plug's exports satisfy the
//! socket's imports of the same interfaces — with wac-graph, so any component runtime can serve
//! the result. The same join a component link makes at deploy time, done ahead of time.

use wac_graph::types::Package;
use wac_graph::{plug, CompositionGraph, EncodeOptions, PlugError};

/// Why components cannot be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{name} is not a WebAssembly component: {reason}")]
    NotAComponent { name: String, reason: String },
    #[error(
        "{socket} calls {plug} through wasi:http/outgoing-handler, and {plug} exports \
         wasi:http/incoming-handler: only a host can bridge the two in WASI 0.2 (a component \
         cannot create the response-outparam a handler needs). Deploy the pair with a component \
         link instead; WASI 0.3's middleware world makes a static join possible"
    )]
    HttpChain { socket: String, plug: String },
    #[error(
        "nothing to join: {socket} imports none of the interfaces the others export \
         (it imports: {imports}; they export: {exports})"
    )]
    NothingToPlug {
        socket: String,
        imports: String,
        exports: String,
    },
    #[error("cannot compose: {0}")]
    Graph(String),
}

/// A component to compose: a name for messages and its bytes.
pub struct Part<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// Composes `socket` with `plugs`: every import of `socket` that a plug exports is served by that
/// plug; the result exports what `socket` exports and imports whatever is left.
pub fn compose(socket: &Part<'_>, plugs: &[Part<'_>]) -> Result<Vec<u8>, ComposeError> {
    let mut graph = CompositionGraph::new();
    let mut register = |index: usize, part: &Part<'_>| {
        let package = Package::from_bytes(
            &format!("weft:part{index}"),
            None,
            part.bytes.to_vec(),
            graph.types_mut(),
        )
        .map_err(|e| ComposeError::NotAComponent {
            name: part.name.to_string(),
            reason: format!("{e:#}"),
        })?;
        graph
            .register_package(package)
            .map_err(|e| ComposeError::Graph(e.to_string()))
    };
    let socket_id = register(0, socket)?;
    let mut plug_ids = Vec::new();
    for (i, part) in plugs.iter().enumerate() {
        plug_ids.push(register(i + 1, part)?);
    }
    let names = |id: wac_graph::PackageId, imports: bool| -> Vec<String> {
        let ty = &graph.types()[graph[id].ty()];
        let map = if imports { &ty.imports } else { &ty.exports };
        map.keys().cloned().collect()
    };
    let socket_imports = names(socket_id, true);
    let plug_exports: Vec<(usize, Vec<String>)> = plug_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i, names(*id, false)))
        .collect();
    match plug(&mut graph, plug_ids, socket_id) {
        Ok(()) => {}
        Err(PlugError::NoPlugHappened) => {
            let calls_out = socket_imports
                .iter()
                .any(|i| i.starts_with("wasi:http/outgoing-handler"));
            let handler = plug_exports.iter().find(|(_, exports)| {
                exports
                    .iter()
                    .any(|e| e.starts_with("wasi:http/incoming-handler"))
            });
            if let (true, Some((i, _))) = (calls_out, handler) {
                return Err(ComposeError::HttpChain {
                    socket: socket.name.to_string(),
                    plug: plugs[*i].name.to_string(),
                });
            }
            return Err(ComposeError::NothingToPlug {
                socket: socket.name.to_string(),
                imports: socket_imports.join(", "),
                exports: plug_exports
                    .iter()
                    .flat_map(|(_, e)| e.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Err(e) => return Err(ComposeError::Graph(format!("{e:#}"))),
    }
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| ComposeError::Graph(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plug_serves_the_socket_import_of_its_export() {
        let plug_bytes = wat::parse_str(
            r#"(component
                (core module $m (func (export "f") (result i32) i32.const 7))
                (core instance $i (instantiate $m))
                (func $f (result u32) (canon lift (core func $i "f")))
                (instance $api (export "get" (func $f)))
                (export "acme:demo/api@1.0.0" (instance $api)))"#,
        )
        .unwrap();
        let socket_bytes = wat::parse_str(
            r#"(component
                (import "acme:demo/api@1.0.0" (instance $api (export "get" (func (result u32)))))
                (alias export $api "get" (func $get))
                (export "run" (func $get)))"#,
        )
        .unwrap();
        let joined = compose(
            &Part {
                name: "socket",
                bytes: &socket_bytes,
            },
            &[Part {
                name: "plug",
                bytes: &plug_bytes,
            }],
        )
        .unwrap();
        assert!(wasmparser_is_component(&joined));
        let none = compose(
            &Part {
                name: "socket",
                bytes: &socket_bytes,
            },
            &[Part {
                name: "other",
                bytes: &wat::parse_str("(component)").unwrap(),
            }],
        )
        .unwrap_err();
        assert!(matches!(none, ComposeError::NothingToPlug { .. }), "{none}");
        let bad = compose(
            &Part {
                name: "text",
                bytes: b"hello",
            },
            &[],
        )
        .unwrap_err();
        assert!(matches!(bad, ComposeError::NotAComponent { .. }), "{bad}");
    }

    fn wasmparser_is_component(bytes: &[u8]) -> bool {
        bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00])
    }
}
