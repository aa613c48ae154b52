//! A component's exported functions served to callers on other hosts: each call runs in a fresh
//! instance under the component's limits, arguments and results in the wire encoding.

use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::component::{InstancePre, Val};

use crate::long_running::{CallRecord, Demotable, Pace};
use crate::state::{Access, InstanceState};
use crate::workload::{classify, Failure};
use crate::{CallFailed, Runtime};

/// A component ready to serve calls to its exports.
pub struct ExportServer {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    pre: InstancePre<InstanceState>,
    component: wasmtime::component::Component,
    limits: weft_manifest::Limits,
    access: Access,
    permits: Arc<Semaphore>,
    /// How long its calls usually run, to tell one that runs long.
    pace: Arc<Pace>,
}

impl ExportServer {
    /// Calls `function` of `interface` with `params` (encoded) in a fresh instance; returns
    /// the encoded results, or why the call failed (a trap, a timeout, a bad argument).
    pub async fn call(
        &self,
        interface: &str,
        function: &str,
        params: &[u8],
    ) -> Result<Vec<u8>, CallFailed> {
        let timeout = self.limits.timeout;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CallFailed("the component is shutting down".into()))?;
        let function_index = if interface.is_empty() {
            self.component
                .get_export_index(None, function)
                .ok_or_else(|| format!("{} exports no function `{function}`", self.name))?
        } else {
            let interface_index = self
                .component
                .get_export_index(None, interface)
                .ok_or_else(|| format!("{} does not export `{interface}`", self.name))?;
            self.component
                .get_export_index(Some(&interface_index), function)
                .ok_or_else(|| {
                    format!(
                        "{} has no function `{function}` in `{interface}`",
                        self.name
                    )
                })?
        };
        let mut store =
            self.runtime
                .limited_store(self.pre.engine(), &self.name, &self.limits, &self.access);
        let long_running = crate::restart_deadline(&mut store, timeout, &self.pace);
        let mut record = CallRecord::new(&self.pace, &long_running);
        let pre = self.pre.clone();
        let params = params.to_vec();
        let function = function.to_string();
        let run = Demotable::new(
            async move {
                let instance = pre.instantiate_async(&mut store).await?;
                let func = instance
                    .get_func(&mut store, function_index)
                    .ok_or_else(|| wasmtime::format_err!("`{function}` is not a function"))?;
                let ty = func.ty(&store);
                let params = crate::wire::decode_all(ty.params().map(|(_, t)| t), &params)
                    .map_err(|e| wasmtime::format_err!("bad arguments for `{function}`: {e}"))?;
                let mut results = vec![Val::Bool(false); ty.results().len()];
                func.call_async(&mut store, &params, &mut results).await?;
                crate::wire::encode_all(&results, ty.results()).map_err(|e| {
                    wasmtime::format_err!("cannot send the results of `{function}`: {e}")
                })
            },
            long_running,
        );
        let finished = tokio::time::timeout(timeout, run).await;
        if matches!(finished, Ok(Ok(_))) {
            record.clean();
        }
        let failure = match finished {
            Ok(Ok(encoded)) => return Ok(encoded),
            Ok(Err(e)) => classify(e, timeout),
            Err(_) => Failure::Timeout(timeout),
        };
        Err(CallFailed(format!("{}: {failure}", self.name)))
    }
}

impl ExportServer {
    /// The signature of the export at `path` (`interface.function`, or a top-level function).
    pub fn signature(&self, path: &str) -> Result<crate::wave::Signature, CallFailed> {
        crate::wave::signature(&self.component, path)
    }

    /// Calls the export at `path` with arguments written in WAVE; returns its results in WAVE.
    pub async fn call_wave(&self, path: &str, args: &[String]) -> Result<Vec<String>, CallFailed> {
        let signature = self.signature(path)?;
        let values = signature.parse_args(args)?;
        let params =
            crate::wire::encode_all(&values, signature.params.iter().map(|(_, t)| t.clone()))
                .map_err(|e| CallFailed(format!("cannot pass the arguments: {e}")))?;
        // The signature's path is the export's full name (a version the caller left out added).
        let path = signature.path.as_str();
        let (interface, function) = match path.rsplit_once('.') {
            Some((interface, function)) if interface.contains('/') => (interface, function),
            _ => ("", path),
        };
        let encoded = self.call(interface, function, &params).await?;
        let results = crate::wire::decode_all(signature.results.iter().cloned(), &encoded)
            .map_err(|e| CallFailed(format!("cannot read the results: {e}")))?;
        crate::wave::print(&results)
    }
}

impl Runtime {
    /// Serves `loaded`'s exports to other hosts, with its grants, under its limits.
    pub fn export_server(
        self: &Arc<Self>,
        what: &str,
        loaded: &crate::LoadedComponent,
        limits: weft_manifest::Limits,
        access: Access,
    ) -> Result<Arc<ExportServer>, crate::RuntimeError> {
        self.check_imports(what, loaded, &access)?;
        let pre = self.instance_pre(what, loaded)?;
        Ok(Arc::new(ExportServer {
            runtime: self.clone(),
            name: what.into(),
            component: loaded.code.component.clone(),
            permits: Arc::new(Semaphore::new(limits.max_instances as usize)),
            pace: Arc::default(),
            pre,
            limits,
            access,
        }))
    }
}
