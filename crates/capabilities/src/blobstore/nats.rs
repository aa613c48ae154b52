//! Blobstore on NATS JetStream object stores, one per container, in the layout NATS's own
//! clients and wasmCloud's blobstore-nats provider use: objects written here are read by
//! `nats object get`, and the other way round. The connection is made on first use.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::OnceCell;
use weft_lattice::{JetStream, LatticeError, ObjectStore};
use weft_manifest::Grant;

use super::{slice, BlobError, BlobStore, Stat};
use crate::catalog::{Backend, BackendError, Opener};
use crate::settings::{check_nats_settings, nats_settings, NatsServer, NoOwnKeys};

struct Nats {
    server: NatsServer,
    js: OnceCell<JetStream>,
}

/// Blobstore on NATS JetStream object stores.
pub(super) const BACKEND: Backend<dyn BlobStore> = Backend {
    name: "nats",
    images: &["blobstore-nats"],
    check: |settings| check_nats_settings::<NoOwnKeys>(settings, &[]),
    open: |_, grant| open(grant),
};

fn open(grant: &Grant) -> Result<Opener<dyn BlobStore>, BackendError> {
    let (server, NoOwnKeys {}) = nats_settings(&grant.settings, &[])?;
    Ok((
        format!("nats:{}", server.identity()),
        Box::new(move || {
            Ok(Arc::new(Nats {
                server,
                js: OnceCell::new(),
            }) as Arc<dyn BlobStore>)
        }),
    ))
}

fn failed(e: LatticeError) -> BlobError {
    BlobError(e.to_string())
}

/// Seconds since the Unix epoch of an RFC 3339 time; 0 when unreadable.
fn seconds(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

impl Nats {
    async fn js(&self) -> Result<&JetStream, BlobError> {
        self.js
            .get_or_try_init(|| JetStream::connect(&self.server.url, &self.server.auth))
            .await
            .map_err(failed)
    }

    async fn store(&self, container: &str, create: bool) -> Result<Option<ObjectStore>, BlobError> {
        self.js()
            .await?
            .object_store(container, create)
            .await
            .map_err(failed)
    }

    async fn existing(&self, container: &str) -> Result<ObjectStore, BlobError> {
        self.store(container, false)
            .await?
            .ok_or_else(|| BlobError(format!("container `{container}` does not exist")))
    }
}

#[async_trait::async_trait]
impl BlobStore for Nats {
    async fn create_container(&self, container: &str) -> Result<(), BlobError> {
        if self.store(container, false).await?.is_some() {
            return Err(BlobError(format!("container `{container}` already exists")));
        }
        self.store(container, true).await.map(|_| ())
    }

    async fn container_exists(&self, container: &str) -> Result<bool, BlobError> {
        Ok(self.store(container, false).await?.is_some())
    }

    async fn container_info(&self, container: &str) -> Result<Stat, BlobError> {
        let created = self.existing(container).await?.created().await.map_err(failed)?;
        Ok(Stat {
            created_at: seconds(&created.unwrap_or_default()),
            size: 0,
        })
    }

    async fn delete_container(&self, container: &str) -> Result<(), BlobError> {
        self.existing(container).await?;
        self.js()
            .await?
            .delete_object_store(container)
            .await
            .map_err(failed)
    }

    async fn read(
        &self,
        container: &str,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError> {
        let data = self
            .existing(container)
            .await?
            .get(object)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                BlobError(format!("object `{object}` is not in container `{container}`"))
            })?;
        Ok(slice(&data, start, end))
    }

    async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        self.existing(container)
            .await?
            .put(object, &data)
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        let objects = self.existing(container).await?.list().await.map_err(failed)?;
        Ok(objects.into_iter().map(|o| o.name).collect())
    }

    async fn delete(&self, container: &str, object: &str) -> Result<(), BlobError> {
        self.existing(container)
            .await?
            .delete(object)
            .await
            .map_err(failed)
    }

    async fn stat(&self, container: &str, object: &str) -> Result<Option<Stat>, BlobError> {
        let info = self
            .existing(container)
            .await?
            .info(object)
            .await
            .map_err(failed)?;
        Ok(info.map(|info| Stat {
            created_at: seconds(&info.mtime),
            size: info.size,
        }))
    }
}
