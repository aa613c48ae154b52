//! `wasi:blobstore@0.2.0-draft` over pluggable backends: in memory, a directory on disk, or NATS
//! JetStream object stores.
//! Values cross to the guest through `wasi:io` streams held in memory, bounded by
//! [`MAX_OBJECT_SIZE`].

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bindings::blobstore::{blobstore, container, types};
use crate::catalog::Kind;
use crate::CapabilityCtxView;

/// The largest object one write may carry.
pub const MAX_OBJECT_SIZE: usize = 64 * 1024 * 1024;

/// Object names one `read-stream-object-names` call returns at most, whatever the guest asks.
const MAX_NAMES_PER_READ: u64 = 10_000;

/// A backend's failure, shown to the guest as the blobstore's string error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BlobError(pub String);

impl From<String> for BlobError {
    fn from(message: String) -> Self {
        BlobError(message)
    }
}

impl From<BlobError> for String {
    fn from(e: BlobError) -> Self {
        e.0
    }
}

/// When a container or object was created, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub size: u64,
}

/// One blobstore backend: containers of named objects.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn create_container(&self, container: &str) -> Result<(), BlobError>;
    async fn container_exists(&self, container: &str) -> Result<bool, BlobError>;
    /// When the container was created; an error when it does not exist.
    async fn container_info(&self, container: &str) -> Result<Stat, BlobError>;
    async fn delete_container(&self, container: &str) -> Result<(), BlobError>;
    /// Bytes `start..=end` of an object (clipped to its size).
    async fn read(
        &self,
        container: &str,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError>;
    /// Creates or replaces an object, whole: a reader never sees half of it.
    async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError>;
    /// Object names in a container, sorted.
    async fn list(&self, container: &str) -> Result<Vec<String>, BlobError>;
    /// Deletes an object; no error when it did not exist.
    async fn delete(&self, container: &str, object: &str) -> Result<(), BlobError>;
    async fn stat(&self, container: &str, object: &str) -> Result<Option<Stat>, BlobError>;
    async fn clear(&self, container: &str) -> Result<(), BlobError> {
        for object in self.list(container).await? {
            self.delete(container, &object).await?;
        }
        Ok(())
    }
}

crate::catalog::backends!(dyn BlobStore: memory, filesystem, nats);

/// The blobstore capability: `wasi:blobstore/{blobstore,container,types}`.
pub static BLOBSTORE: Kind<dyn BlobStore> = Kind {
    name: "blobstore",
    namespace: "wasi",
    package: "blobstore",
    interfaces: &["blobstore", "container", "types"],
    own_keys: &[],
    backends: BACKENDS,
    delivery: None,
};

/// The `container` resource.
pub struct Container {
    store: Arc<dyn BlobStore>,
    name: String,
}

/// The `stream-object-names` resource: names listed when it was made, handed out in order.
pub struct ObjectNames {
    names: std::vec::IntoIter<String>,
}

/// The `outgoing-value` resource: the guest writes into `pipe`, `write-data` stores its bytes.
pub struct OutgoingValue {
    pipe: MemoryOutputPipe,
}

/// The `incoming-value` resource: bytes read from the store.
pub struct IncomingValue {
    data: Bytes,
}

impl CapabilityCtxView<'_> {
    fn blobstore(&self) -> Result<Arc<dyn BlobStore>, String> {
        self.ctx.linked(&BLOBSTORE)
    }

    fn container(
        &self,
        this: &Resource<Container>,
    ) -> wasmtime::Result<(Arc<dyn BlobStore>, String)> {
        let c = self.table.get(this)?;
        Ok((c.store.clone(), c.name.clone()))
    }
}

impl blobstore::Host for CapabilityCtxView<'_> {
    async fn create_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, String>> {
        let store = match self.blobstore() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = store.create_container(&name).await {
            return Ok(Err(e.into()));
        }
        Ok(Ok(self.table.push(Container { store, name })?))
    }

    async fn get_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, String>> {
        let store = match self.blobstore() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        match store.container_exists(&name).await {
            Ok(true) => Ok(Ok(self.table.push(Container { store, name })?)),
            Ok(false) => Ok(Err(format!("container `{name}` does not exist"))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn delete_container(&mut self, name: String) -> wasmtime::Result<Result<(), String>> {
        match self.blobstore() {
            Ok(store) => Ok(store.delete_container(&name).await.map_err(String::from)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn container_exists(&mut self, name: String) -> wasmtime::Result<Result<bool, String>> {
        match self.blobstore() {
            Ok(store) => Ok(store.container_exists(&name).await.map_err(String::from)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn copy_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> wasmtime::Result<Result<(), String>> {
        let store = match self.blobstore() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        Ok(copy(&*store, &src, &dest).await.map_err(String::from))
    }

    async fn move_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> wasmtime::Result<Result<(), String>> {
        let store = match self.blobstore() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = copy(&*store, &src, &dest).await {
            return Ok(Err(e.into()));
        }
        if src.container == dest.container && src.object == dest.object {
            return Ok(Ok(()));
        }
        Ok(store
            .delete(&src.container, &src.object)
            .await
            .map_err(String::from))
    }
}

async fn copy(
    store: &dyn BlobStore,
    src: &types::ObjectId,
    dest: &types::ObjectId,
) -> Result<(), BlobError> {
    if !store.container_exists(&dest.container).await? {
        return Err(format!("container `{}` does not exist", dest.container).into());
    }
    if store.stat(&src.container, &src.object).await?.is_none() {
        return Err(format!(
            "object `{}` is not in container `{}`",
            src.object, src.container
        )
        .into());
    }
    let data = store.read(&src.container, &src.object, 0, u64::MAX).await?;
    store.write(&dest.container, &dest.object, data).await
}

impl container::Host for CapabilityCtxView<'_> {}

impl container::HostContainer for CapabilityCtxView<'_> {
    async fn name(
        &mut self,
        this: Resource<Container>,
    ) -> wasmtime::Result<Result<String, String>> {
        Ok(Ok(self.table.get(&this)?.name.clone()))
    }

    async fn info(
        &mut self,
        this: Resource<Container>,
    ) -> wasmtime::Result<Result<types::ContainerMetadata, String>> {
        let (store, name) = self.container(&this)?;
        Ok(store
            .container_info(&name)
            .await
            .map(|stat| types::ContainerMetadata {
                name,
                created_at: stat.created_at,
            })
            .map_err(String::from))
    }

    async fn get_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> wasmtime::Result<Result<Resource<IncomingValue>, String>> {
        let (store, container) = self.container(&this)?;
        if start > end {
            return Ok(Err(format!("start {start} is after end {end}")));
        }
        if store.stat(&container, &name).await.ok().flatten().is_none() {
            return Ok(Err(format!(
                "object `{name}` is not in container `{container}`"
            )));
        }
        match store.read(&container, &name, start, end).await {
            Ok(data) => Ok(Ok(self.table.push(IncomingValue { data })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn write_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), String>> {
        let (store, container) = self.container(&this)?;
        let bytes = self.table.get(&data)?.pipe.contents();
        Ok(store
            .write(&container, &name, bytes)
            .await
            .map_err(String::from))
    }

    async fn list_objects(
        &mut self,
        this: Resource<Container>,
    ) -> wasmtime::Result<Result<Resource<ObjectNames>, String>> {
        let (store, container) = self.container(&this)?;
        match store.list(&container).await {
            Ok(names) => Ok(Ok(self.table.push(ObjectNames {
                names: names.into_iter(),
            })?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn delete_object(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let (store, container) = self.container(&this)?;
        Ok(store.delete(&container, &name).await.map_err(String::from))
    }

    async fn delete_objects(
        &mut self,
        this: Resource<Container>,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        let (store, container) = self.container(&this)?;
        for name in names {
            if let Err(e) = store.delete(&container, &name).await {
                return Ok(Err(e.into()));
            }
        }
        Ok(Ok(()))
    }

    async fn has_object(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<bool, String>> {
        let (store, container) = self.container(&this)?;
        Ok(store
            .stat(&container, &name)
            .await
            .map(|s| s.is_some())
            .map_err(String::from))
    }

    async fn object_info(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<types::ObjectMetadata, String>> {
        let (store, container) = self.container(&this)?;
        Ok(match store.stat(&container, &name).await {
            Ok(Some(stat)) => Ok(types::ObjectMetadata {
                name,
                container,
                created_at: stat.created_at,
                size: stat.size,
            }),
            Ok(None) => Err(format!("object `{name}` is not in container `{container}`")),
            Err(e) => Err(e.into()),
        })
    }

    async fn clear(&mut self, this: Resource<Container>) -> wasmtime::Result<Result<(), String>> {
        let (store, container) = self.container(&this)?;
        Ok(store.clear(&container).await.map_err(String::from))
    }

    async fn drop(&mut self, this: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for CapabilityCtxView<'_> {
    async fn read_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        len: u64,
    ) -> wasmtime::Result<Result<(Vec<String>, bool), String>> {
        let names = &mut self.table.get_mut(&this)?.names;
        let batch: Vec<String> = names
            .by_ref()
            .take(len.min(MAX_NAMES_PER_READ) as usize)
            .collect();
        Ok(Ok((batch, names.len() == 0)))
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        num: u64,
    ) -> wasmtime::Result<Result<(u64, bool), String>> {
        let names = &mut self.table.get_mut(&this)?.names;
        let skipped = names.by_ref().take(num as usize).count() as u64;
        Ok(Ok((skipped, names.len() == 0)))
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for CapabilityCtxView<'_> {}

impl types::HostOutgoingValue for CapabilityCtxView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue {
            pipe: MemoryOutputPipe::new(MAX_OBJECT_SIZE),
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let pipe = self.table.get(&this)?.pipe.clone();
        let stream: DynOutputStream = Box::new(pipe);
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.table.delete(this)?;
        Ok(Ok(()))
    }

    async fn drop(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::HostIncomingValue for CapabilityCtxView<'_> {
    async fn incoming_value_consume_sync(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(Ok(self.table.delete(this)?.data.to_vec()))
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, String>> {
        let data = self.table.delete(this)?.data;
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(data));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.data.len() as u64)
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// Seconds since the Unix epoch, for creation times.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes `start..=end` of `data`, clipped to its length.
pub(crate) fn slice(data: &Bytes, start: u64, end: u64) -> Bytes {
    let len = data.len() as u64;
    let start = start.min(len) as usize;
    let end = end.saturating_add(1).min(len) as usize;
    data.slice(start..end.max(start))
}
