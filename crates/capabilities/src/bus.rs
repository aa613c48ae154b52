//! `wasmcloud:bus/lattice` (1.0.0 and 2.0.0): `set-link-name` picks which named link later calls
//! to an interface use, for a component that links one interface twice (two key-value stores,
//! say). 2.0.0 also says when the component has no link by that name.

use wasmtime::component::Resource;

use crate::bindings::bus1_0_0::lattice as v1;
use crate::bindings::bus2_0_0::lattice as v2;
use crate::{CapabilityCtxView, CAPABILITIES};

/// An interface named by the guest: `namespace:package/interface`.
pub struct CallTargetInterface {
    namespace: String,
    package: String,
}

impl CapabilityCtxView<'_> {
    fn call_target(
        &mut self,
        namespace: String,
        package: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        Ok(self
            .table
            .push(CallTargetInterface { namespace, package })?)
    }

    /// Takes the interfaces out of the table, as `set-link-name` consumes them.
    fn take_targets(
        &mut self,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<Vec<CallTargetInterface>> {
        interfaces
            .into_iter()
            .map(|interface| Ok(self.table.delete(interface)?))
            .collect()
    }

    /// Links are granted per package, so the choice is too: naming `store` also moves `atomics`
    /// and `batch`, which act on the buckets `store` opens.
    fn choose_link(&mut self, name: &str, targets: &[CallTargetInterface]) {
        for target in targets {
            self.ctx.link_names.insert(
                format!("{}:{}", target.namespace, target.package),
                name.to_string(),
            );
        }
    }

    /// Why `name` names no link of a target's package, if it does not.
    fn missing_link(&self, name: &str, targets: &[CallTargetInterface]) -> Option<String> {
        targets.iter().find_map(|target| {
            let package = format!("{}:{}", target.namespace, target.package);
            let capability = CAPABILITIES.iter().find(|c| {
                c.gated_package()
                    .is_some_and(|(ns, pkg)| ns == target.namespace && pkg == target.package)
            })?;
            let links = self.ctx.grants.granted.get(capability.name());
            match links {
                Some(links) if links.contains_key(name) => None,
                _ => Some(crate::no_link(&package, name, links)),
            }
        })
    }
}

impl v1::HostCallTargetInterface for CapabilityCtxView<'_> {
    async fn new(
        &mut self,
        namespace: String,
        package: String,
        _interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        self.call_target(namespace, package)
    }

    async fn drop(&mut self, this: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl v1::Host for CapabilityCtxView<'_> {
    async fn set_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<()> {
        // 1.0.0 has no way to say a name is wrong: the next call through it says so instead.
        let targets = self.take_targets(interfaces)?;
        self.choose_link(&name, &targets);
        Ok(())
    }
}

impl v2::HostCallTargetInterface for CapabilityCtxView<'_> {
    async fn new(
        &mut self,
        namespace: String,
        package: String,
        _interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        self.call_target(namespace, package)
    }

    async fn drop(&mut self, this: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl v2::Host for CapabilityCtxView<'_> {
    async fn set_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<Result<(), String>> {
        let targets = self.take_targets(interfaces)?;
        if let Some(missing) = self.missing_link(&name, &targets) {
            return Ok(Err(missing));
        }
        self.choose_link(&name, &targets);
        Ok(Ok(()))
    }
}
