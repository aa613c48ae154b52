//! Component→component links for interfaces of an app's own (not WASI, not a capability): the
//! source's import is served by the target's export, both instantiated in one `Store` per
//! request, calls forwarded in-process with the component model's values. Strings, records,
//! lists, variants and the like cross intact, whatever language each side is written in.

use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker, Val};

use crate::{InstanceState, LoadedComponent, Runtime, RuntimeError};

/// A linked component to instantiate beside the source, and the interfaces it serves.
#[derive(Clone)]
pub struct Peer {
    pub(crate) pre: InstancePre<InstanceState>,
    /// Full import names (`acme:ledger/books@1.0.0`) this peer's instance answers.
    pub(crate) interfaces: Vec<String>,
}

/// A source component linked to its peers: its own pre-instantiation and theirs.
pub struct Linked {
    pub(crate) pre: InstancePre<InstanceState>,
    pub(crate) peers: Vec<Peer>,
}

/// A link's target as the runtime needs it.
pub struct LinkTarget<'a> {
    pub name: &'a str,
    pub loaded: &'a LoadedComponent,
    /// `namespace:package/interface`, without version.
    pub interfaces: &'a [String],
}

/// Why a call into a component failed: a trap, a timeout, a bad argument, a host that is gone.
/// The message is what the caller (a guest, another host) is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CallFailed(pub String);

impl From<String> for CallFailed {
    fn from(message: String) -> Self {
        CallFailed(message)
    }
}

/// Calls a function exported by a component running elsewhere (another host of the lattice):
/// `params` and the result are the function's values in the wire encoding (see `wire`).
pub trait RemoteCall: Send + Sync {
    /// Calls `function` of `interface` (its full name, `@version` included).
    fn call(
        &self,
        interface: &str,
        function: &str,
        params: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, CallFailed>>;
}

/// A link's target running elsewhere, reached through `via`.
pub struct RemoteTarget<'a> {
    pub name: &'a str,
    /// `namespace:package/interface`, without version.
    pub interfaces: &'a [String],
    pub via: Arc<dyn RemoteCall>,
}

/// Strips `@version` from an import or export name.
fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

impl Runtime {
    /// Links `source`'s imports of each target's interfaces to that target's exports: local
    /// targets are instantiated beside the source, remote ones called through their `via`.
    pub fn link_components(
        &self,
        what: &str,
        source: &LoadedComponent,
        targets: &[LinkTarget<'_>],
        remotes: &[RemoteTarget<'_>],
    ) -> Result<Arc<Linked>, RuntimeError> {
        let fail = |reason: String| RuntimeError::Link {
            what: what.into(),
            reason,
        };
        let kind = source.code.kind();
        let engine = source.code.component.engine();
        let mut linker: Linker<InstanceState> = self.side(kind).linker.clone();
        let mut peers = Vec::new();
        let source_type = source.code.component.component_type();
        for target in targets {
            if target.loaded.code.kind().generation() != kind.generation() {
                return Err(fail(format!(
                    "it is a {} component and `{}` a {} one; a link runs both in one store, \
                     which takes one generation: build them for the same WASI version, or \
                     reach `{}` over HTTP (an http link) instead",
                    kind.generation(),
                    target.name,
                    target.loaded.code.kind().generation(),
                    target.name
                )));
            }
            if target.loaded.code.kind() != kind {
                return Err(fail(format!(
                    "`{}` was compiled for another engine than it ({:?} and {:?}); load both \
                     with `Runtime::load_for` of one engine",
                    target.name,
                    target.loaded.code.kind(),
                    kind
                )));
            }
            let target_type = target.loaded.code.component.component_type();
            let exports: Vec<String> = target_type
                .exports(engine)
                .map(|(name, _)| name.to_string())
                .collect();
            let mut served = Vec::new();
            for interface in target.interfaces {
                let (import_name, functions) =
                    imported_functions(engine, &source_type, interface).map_err(fail)?;
                let import_name = import_name.as_str();
                let target_component = &target.loaded.code.component;
                let interface_index = target_component.get_export_index(None, import_name);
                let Some(interface_index) = interface_index else {
                    return Err(fail(format!(
                        "it imports `{import_name}`, which `{}` does not export (it exports: {})",
                        target.name,
                        exports.join(", ")
                    )));
                };
                let mut instance = linker
                    .instance(import_name)
                    .map_err(|e| fail(format!("{e:#}")))?;
                for func_name in &functions {
                    let func_name = func_name.as_str();
                    // Resolved once here, so a call costs a map lookup, not a name search.
                    let function = target_component
                        .get_export_index(Some(&interface_index), func_name)
                        .ok_or_else(|| {
                            fail(format!(
                                "`{}` exports `{import_name}` without `{func_name}`",
                                target.name
                            ))
                        })?;
                    let interface = import_name.to_string();
                    instance
                        .func_new_async(func_name, move |mut store, _ty, params, results| {
                            let (interface, function) = (interface.clone(), function);
                            Box::new(async move {
                                forward(&mut store, &interface, &function, params, results).await
                            })
                        })
                        .map_err(|e| fail(format!("{e:#}")))?;
                }
                served.push(import_name.to_string());
            }
            let pre = self.instance_pre(target.name, target.loaded)?;
            peers.push(Peer {
                pre,
                interfaces: served,
            });
        }
        for remote in remotes {
            for interface in remote.interfaces {
                let (import_name, functions) =
                    imported_functions(engine, &source_type, interface).map_err(fail)?;
                let mut instance = linker
                    .instance(&import_name)
                    .map_err(|e| fail(format!("{e:#}")))?;
                for func_name in &functions {
                    let func_name = func_name.as_str();
                    let interface = import_name.to_string();
                    let function = func_name.to_string();
                    let via = remote.via.clone();
                    instance
                        .func_new_async(func_name, move |_store, ty, params, results| {
                            let (interface, function, via) =
                                (interface.clone(), function.clone(), via.clone());
                            Box::new(async move {
                                call_remote(&*via, &interface, &function, &ty, params, results)
                                    .await
                            })
                        })
                        .map_err(|e| fail(format!("{e:#}")))?;
                }
            }
        }
        let pre = linker
            .instantiate_pre(&source.code.component)
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(Arc::new(Linked { pre, peers }))
    }
}

/// The full name of `source`'s import of `interface` (unversioned) and the functions in it.
/// Records, variants and the like are types of values and cross; anything else (a resource, a
/// nested instance) is refused, naming it.
fn imported_functions(
    engine: &wasmtime::Engine,
    source: &wasmtime::component::types::Component,
    interface: &str,
) -> Result<(String, Vec<String>), String> {
    let import = source
        .imports(engine)
        .find(|(name, _)| unversioned(name) == interface);
    let Some((import_name, ComponentItem::ComponentInstance(import_type))) =
        import.map(|(name, ext)| (name, ext.ty))
    else {
        return Err(format!(
            "the link names `{interface}`, which it does not import"
        ));
    };
    let mut functions = Vec::new();
    for (func_name, item) in import_type.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => functions.push(func_name.to_string()),
            ComponentItem::Type(_) => {}
            _ => {
                return Err(format!(
                    "`{import_name}` exports `{func_name}`, a resource or nested item; component \
                     links carry functions of plain values so far"
                ))
            }
        }
    }
    Ok((import_name.to_string(), functions))
}

/// Calls `function` of the peer instance serving `interface` in this store.
async fn forward(
    store: &mut wasmtime::StoreContextMut<'_, InstanceState>,
    interface: &str,
    function: &ComponentExportIndex,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let instance = *store
        .data()
        .peers
        .get(interface)
        .ok_or_else(|| wasmtime::format_err!("no linked instance serves `{interface}`"))?;
    let func = instance
        .get_func(&mut *store, function)
        .ok_or_else(|| wasmtime::format_err!("a function of `{interface}` is missing"))?;
    func.call_async(&mut *store, params, results).await
}

/// Calls `function` on another host: arguments encoded, results decoded into `results`.
async fn call_remote(
    via: &dyn RemoteCall,
    interface: &str,
    function: &str,
    ty: &wasmtime::component::types::ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let encoded = crate::wire::encode_all(params, ty.params().map(|(_, t)| t))
        .map_err(|e| wasmtime::format_err!("cannot send the arguments of `{function}`: {e}"))?;
    let reply = via
        .call(interface, function, encoded)
        .await
        .map_err(|e| wasmtime::format_err!("`{interface}#{function}` on another host: {e}"))?;
    let values = crate::wire::decode_all(ty.results(), &reply)
        .map_err(|e| wasmtime::format_err!("unreadable results of `{function}`: {e}"))?;
    for (slot, value) in results.iter_mut().zip(values) {
        *slot = value;
    }
    Ok(())
}
