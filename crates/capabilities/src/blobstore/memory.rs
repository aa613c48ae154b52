//! In-memory blobstore: one per app and capability, kept across redeploys, gone at host stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use weft_manifest::Grant;

use super::{now, slice, BlobError, BlobStore, Stat};
use crate::catalog::{check_config, Backend, NoConfig, Opener};
use crate::Placement;

struct Object {
    data: Bytes,
    created_at: u64,
}

struct Bucket {
    created_at: u64,
    objects: BTreeMap<String, Object>,
}

#[derive(Default)]
struct Memory {
    containers: Mutex<HashMap<String, Bucket>>,
}

/// Blobs in the host's memory, the default.
pub(super) const BACKEND: Backend<dyn BlobStore> = Backend {
    name: "memory",
    images: &[],
    check: check_config::<NoConfig>,
    open: |at, grant| Ok(open(at, grant)),
};

fn open(at: &Placement<'_>, grant: &Grant) -> Opener<dyn BlobStore> {
    (
        format!("memory:{}/{}", at.app, grant.capability),
        Box::new(|| Ok(Arc::new(Memory::default()) as Arc<dyn BlobStore>)),
    )
}

fn missing(container: &str) -> BlobError {
    BlobError(format!("container `{container}` does not exist"))
}

impl Memory {
    fn with<R>(
        &self,
        container: &str,
        f: impl FnOnce(&mut Bucket) -> Result<R, BlobError>,
    ) -> Result<R, BlobError> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        f(containers
            .get_mut(container)
            .ok_or_else(|| missing(container))?)
    }
}

#[async_trait::async_trait]
impl BlobStore for Memory {
    async fn create_container(&self, container: &str) -> Result<(), BlobError> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if containers.contains_key(container) {
            return Err(format!("container `{container}` already exists").into());
        }
        containers.insert(
            container.to_string(),
            Bucket {
                created_at: now(),
                objects: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn container_exists(&self, container: &str) -> Result<bool, BlobError> {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(containers.contains_key(container))
    }

    async fn container_info(&self, container: &str) -> Result<Stat, BlobError> {
        self.with(container, |b| {
            Ok(Stat {
                created_at: b.created_at,
                size: b.objects.values().map(|o| o.data.len() as u64).sum(),
            })
        })
    }

    async fn delete_container(&self, container: &str) -> Result<(), BlobError> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        containers
            .remove(container)
            .map(|_| ())
            .ok_or_else(|| missing(container))
    }

    async fn read(
        &self,
        container: &str,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError> {
        self.with(container, |b| {
            let found = b
                .objects
                .get(object)
                .ok_or_else(|| format!("object `{object}` is not in container `{container}`"))?;
            Ok(slice(&found.data, start, end))
        })
    }

    async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        self.with(container, |b| {
            b.objects.insert(
                object.to_string(),
                Object {
                    data,
                    created_at: now(),
                },
            );
            Ok(())
        })
    }

    async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        self.with(container, |b| Ok(b.objects.keys().cloned().collect()))
    }

    async fn delete(&self, container: &str, object: &str) -> Result<(), BlobError> {
        self.with(container, |b| {
            b.objects.remove(object);
            Ok(())
        })
    }

    async fn stat(&self, container: &str, object: &str) -> Result<Option<Stat>, BlobError> {
        self.with(container, |b| {
            Ok(b.objects.get(object).map(|o| Stat {
                created_at: o.created_at,
                size: o.data.len() as u64,
            }))
        })
    }

    async fn clear(&self, container: &str) -> Result<(), BlobError> {
        self.with(container, |b| {
            b.objects.clear();
            Ok(())
        })
    }
}
