//! What a component is, read from its bytes alone: its world as WIT, its size and digest, and
//! which part of weft would satisfy each of its imports (`weft inspect`).

use serde::Serialize;
use weft_capabilities::provides::{provider_of, Provider};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Resolve, WorldId, WorldItem, WorldKey};

/// Why a file cannot be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{what} {reason}")]
    NotAComponent {
        what: String,
        reason: weft_api::NotAComponent,
    },
    #[error("{what} is not a valid component: {reason}")]
    Invalid { what: String, reason: String },
}

/// One import and what satisfies it.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub name: String,
    pub provider: Provider,
}

/// A component described.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// What was inspected: a path, a reference or `app/component`.
    pub source: String,
    pub size: u64,
    /// sha256 of the bytes, in hex.
    pub digest: String,
    /// Bytes of data its largest core module puts in memory when instantiated.
    pub data_image: u64,
    pub imports: Vec<Import>,
    pub exports: Vec<String>,
    /// The component's world, as WIT.
    pub wit: String,
}

impl Inspection {
    /// The imports nothing in weft satisfies.
    pub fn unsatisfied(&self) -> impl Iterator<Item = &Import> {
        self.imports
            .iter()
            .filter(|i| matches!(i.provider, Provider::Nothing { .. }))
    }
}

/// Describes the component `bytes`, read from `source`.
pub fn inspect(source: &str, bytes: &[u8]) -> Result<Inspection, InspectError> {
    weft_api::check_component(bytes).map_err(|reason| InspectError::NotAComponent {
        what: source.to_string(),
        reason,
    })?;
    let invalid = |reason: String| InspectError::Invalid {
        what: source.to_string(),
        reason,
    };
    let (resolve, world) = match wit_parser::decoding::decode(bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(DecodedWasm::WitPackage(..)) => {
            return Err(invalid(
                "it is a WIT package, not a component that runs".into(),
            ))
        }
        Err(e) => return Err(invalid(format!("{e:#}"))),
    };
    let names = |items: &mut dyn Iterator<Item = (&WorldKey, &WorldItem)>| -> Vec<String> {
        items
            .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
            .map(|(key, _)| resolve.name_world_key(key))
            .collect()
    };
    let world_ref = &resolve.worlds[world];
    let imports = names(&mut world_ref.imports.iter())
        .into_iter()
        .map(|name| Import {
            provider: provider_of(&name),
            name,
        })
        .collect();
    let exports = names(&mut world_ref.exports.iter());
    Ok(Inspection {
        source: source.to_string(),
        size: bytes.len() as u64,
        digest: weft_api::digest_of(bytes),
        data_image: weft_api::largest_data_image(bytes),
        imports,
        exports,
        wit: print_world(&resolve, world).map_err(invalid)?,
    })
}

fn print_world(resolve: &Resolve, world: WorldId) -> Result<String, String> {
    let package = resolve.worlds[world]
        .package
        .ok_or_else(|| "its world belongs to no package".to_string())?;
    // The packages a reader cannot look up elsewhere: the component's own and third parties'
    // interfaces, in full; WASI's are only named.
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .filter(|(id, p)| *id != package && p.name.namespace != "wasi")
        .map(|(id, _)| id)
        .collect();
    let mut printer = wit_component::WitPrinter::default();
    printer.emit_docs(false);
    printer
        .print(resolve, package, &nested)
        .map_err(|e| format!("cannot print its world: {e:#}"))?;
    Ok(printer.output.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_module_is_named_as_one() {
        let error = inspect("m.wasm", b"\0asm\x01\0\0\0").unwrap_err();
        assert!(
            error.to_string().contains("core WebAssembly module"),
            "{error}"
        );
        let error = inspect("t.txt", b"hello").unwrap_err();
        assert!(
            error.to_string().contains("not a WebAssembly file"),
            "{error}"
        );
    }
}
