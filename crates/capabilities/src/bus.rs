//! `wasmcloud:bus/lattice`: `set-link-name` picks which named link later calls to an interface
//! use, for a component that links one interface twice (two key-value stores, say).

use wasmtime::component::Resource;

use crate::bindings::bus::lattice;
use crate::CapabilityCtxView;

/// An interface named by the guest: `namespace:package/interface`.
pub struct CallTargetInterface {
    namespace: String,
    package: String,
}

impl lattice::HostCallTargetInterface for CapabilityCtxView<'_> {
    async fn new(
        &mut self,
        namespace: String,
        package: String,
        _interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        Ok(self
            .table
            .push(CallTargetInterface { namespace, package })?)
    }

    async fn drop(&mut self, this: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl lattice::Host for CapabilityCtxView<'_> {
    async fn set_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<()> {
        // Links are granted per package, so the choice is too: naming `store` also moves
        // `atomics` and `batch`, which act on the buckets `store` opens.
        for interface in interfaces {
            let target = self.table.delete(interface)?;
            self.ctx.link_names.insert(
                format!("{}:{}", target.namespace, target.package),
                name.clone(),
            );
        }
        Ok(())
    }
}
