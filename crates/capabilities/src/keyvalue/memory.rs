//! In-memory key-value: one store per app and capability, kept while the host runs and across
//! redeploys of the app, gone when the host stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use weft_manifest::Grant;

use crate::catalog::{check_config, Backend, NoConfig, Opener};

use super::watch::Announced;
use super::{add, counter_value, page, KeyValueStore, KvError};
use crate::Placement;

#[derive(Default)]
struct Memory {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

/// Key-value in the host's memory, the default.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "memory",
    images: &[],
    check: check_config::<NoConfig>,
    open: |at, grant| Ok(open(at, grant)),
};

fn open(at: &Placement<'_>, grant: &Grant) -> Opener<dyn KeyValueStore> {
    (
        format!("memory:{}/{}", at.app, grant.capability),
        Box::new(|| Ok(Arc::new(Announced::new(Memory::default())) as Arc<dyn KeyValueStore>)),
    )
}

impl Memory {
    fn with<R>(&self, bucket: &str, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> R {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        f(buckets.entry(bucket.to_string()).or_default())
    }
}

#[async_trait::async_trait]
impl KeyValueStore for Memory {
    async fn open(&self, _bucket: &str) -> Result<(), KvError> {
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(bucket, |b| b.get(key).cloned()))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.with(bucket, |b| b.insert(key.to_string(), value));
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.with(bucket, |b| b.remove(key));
        Ok(())
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        Ok(page(
            self.with(bucket, |b| b.keys().cloned().collect()),
            cursor,
        ))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        self.with(bucket, |b| {
            let next = add(
                key,
                counter_value(key, b.get(key).map(Vec::as_slice))?,
                delta,
            )?;
            b.insert(key.to_string(), next.to_string().into_bytes());
            Ok(next)
        })
    }
}
