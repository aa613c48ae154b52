//! `wasi:config` (`store`, and its earlier name `runtime`): the component's own config from the
//! manifest. Reads nothing else, so it needs no link.

use crate::bindings::config::{runtime, store};
use crate::CapabilityCtxView;

impl store::Host for CapabilityCtxView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.ctx.grants.config.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self.ctx.grants.config.clone().into_iter().collect()))
    }
}

impl runtime::Host for CapabilityCtxView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, runtime::ConfigError>> {
        Ok(Ok(self.ctx.grants.config.get(&key).cloned()))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, runtime::ConfigError>> {
        Ok(Ok(self.ctx.grants.config.clone().into_iter().collect()))
    }
}
