//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch; `watcher` in [`watch`]) over pluggable
//! backends: in memory, a redb file, Redis, NATS JetStream KV, SQLite. Counters are stored as decimal text, as Redis `INCRBY`
//! does, so a value written by `increment` reads the same from every backend.

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::component::Resource;

use crate::bindings::keyvalue::{atomics, batch, store};
use crate::catalog::Kind;
use crate::CapabilityCtxView;

/// A failure of a backend, shown to the guest as `error::other`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

impl KvError {
    pub(crate) fn new(context: &str, e: impl std::fmt::Display) -> Self {
        KvError(format!("{context}: {e}"))
    }
}

/// Keys returned by one `list-keys` call at most; the cursor continues from there.
pub const LIST_PAGE: usize = 1000;

/// One key-value backend. Buckets are namespaces inside it.
#[async_trait::async_trait]
pub trait KeyValueStore: Send + Sync + 'static {
    /// Checks a bucket can be used (and creates it where the backend needs that).
    async fn open(&self, bucket: &str) -> Result<(), KvError>;
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError>;
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key).await?.is_some())
    }
    /// A page of keys after `cursor`, and the cursor of the next page when there is one.
    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError>;
    /// Adds `delta` to the number stored at `key` (0 when absent), atomically.
    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError>;
    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.get(bucket, &key).await?;
            found.push(value.map(|v| (key, v)));
        }
        Ok(found)
    }
    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in entries {
            self.set(bucket, &key, value).await?;
        }
        Ok(())
    }
    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            self.delete(bucket, &key).await?;
        }
        Ok(())
    }
    /// Changes to `bucket` from now on (at least those to `keys`) until the receiver is
    /// dropped.
    async fn watch(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<mpsc::Receiver<Change>, KvError> {
        let _ = (bucket, keys);
        Err(KvError("this backend cannot watch keys".to_string()))
    }
}

/// Parses a stored counter; a value that is not a number cannot be incremented.
pub(crate) fn counter_value(key: &str, bytes: Option<&[u8]>) -> Result<u64, KvError> {
    match bytes {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                KvError(format!(
                    "cannot increment `{key}`: its value is not a number"
                ))
            }),
    }
}

/// Adds with overflow as an error rather than a wrap.
pub(crate) fn add(key: &str, current: u64, delta: u64) -> Result<u64, KvError> {
    current.checked_add(delta).ok_or_else(|| {
        KvError(format!(
            "cannot increment `{key}`: the counter would overflow"
        ))
    })
}

/// Pages a sorted key list by offset.
pub(crate) fn page(keys: Vec<String>, cursor: Option<u64>) -> (Vec<String>, Option<u64>) {
    let start = cursor.unwrap_or(0) as usize;
    let end = (start + LIST_PAGE).min(keys.len());
    let next = (end < keys.len()).then_some(end as u64);
    let page = keys
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    (page, next)
}

crate::catalog::backends!(dyn KeyValueStore: memory, file, redis, nats, sqlite);

pub mod watch;
pub use watch::Change;

/// The key-value capability: `wasi:keyvalue/{store,atomics,batch}` granted by a link to it,
/// changes to the keys a link from it names delivered to the component's `watcher`.
pub static KEYVALUE: Kind<dyn KeyValueStore> = Kind {
    name: "keyvalue",
    namespace: "wasi",
    package: "keyvalue",
    interfaces: &["store", "atomics", "batch"],
    own_keys: &["watch"],
    backends: BACKENDS,
    delivery: Some(watch::DELIVERY),
};

/// The `bucket` resource: a backend and the bucket's name in it.
pub struct Bucket {
    store: Arc<dyn KeyValueStore>,
    name: String,
}

fn other(e: KvError) -> store::Error {
    store::Error::Other(e.0)
}

impl store::Host for CapabilityCtxView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let backend = match self.ctx.linked(&KEYVALUE) {
            Ok(backend) => backend,
            Err(message) => {
                tracing::debug!(%message, "keyvalue open refused");
                return Ok(Err(store::Error::NoSuchStore));
            }
        };
        if let Err(e) = backend.open(&identifier).await {
            return Ok(Err(other(e)));
        }
        let bucket = self.table.push(Bucket {
            store: backend,
            name: identifier,
        })?;
        Ok(Ok(bucket))
    }
}

/// Looks a bucket up and clones what a call needs, so no table borrow is held across an await.
fn bucket(
    view: &CapabilityCtxView<'_>,
    bucket: &Resource<Bucket>,
) -> wasmtime::Result<(Arc<dyn KeyValueStore>, String)> {
    let bucket = view.table.get(bucket)?;
    Ok((bucket.store.clone(), bucket.name.clone()))
}

impl store::HostBucket for CapabilityCtxView<'_> {
    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.get(&name, &key).await.map_err(other))
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.set(&name, &key, value).await.map_err(other))
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.delete(&name, &key).await.map_err(other))
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.exists(&name, &key).await.map_err(other))
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store
            .list_keys(&name, cursor)
            .await
            .map(|(keys, cursor)| store::KeyResponse { keys, cursor })
            .map_err(other))
    }

    async fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for CapabilityCtxView<'_> {
    async fn increment(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.increment(&name, &key, delta).await.map_err(other))
    }
}

impl batch::Host for CapabilityCtxView<'_> {
    async fn get_many(
        &mut self,
        this: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.get_many(&name, keys).await.map_err(other))
    }

    async fn set_many(
        &mut self,
        this: Resource<Bucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.set_many(&name, entries).await.map_err(other))
    }

    async fn delete_many(
        &mut self,
        this: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (store, name) = bucket(self, &this)?;
        Ok(store.delete_many(&name, keys).await.map_err(other))
    }
}
