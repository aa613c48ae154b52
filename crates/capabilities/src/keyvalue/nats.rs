//! Key-value on NATS JetStream KV. A bucket is a JetStream KV bucket, created on first open.
//! `increment` is compare-and-set on the key's revision, retried on conflict, so concurrent
//! increments from any number of hosts are never lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::{Mutex, OnceCell};
use weft_manifest::Grant;

use super::{add, counter_value, page, KeyValueStore, KvError, Opener};

/// Where NATS is when the manifest does not say.
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// The bucket of `open("")`, unless the link config names one.
const DEFAULT_BUCKET: &str = "weft";
/// A call waits this long for NATS before failing.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Compare-and-set attempts before an increment gives up under contention.
const MAX_CAS_ATTEMPTS: usize = 10_000;

struct Nats {
    url: String,
    default_bucket: String,
    jetstream: OnceCell<async_nats::jetstream::Context>,
    buckets: Mutex<HashMap<String, kv::Store>>,
}

pub(super) fn open(grant: &Grant) -> Result<Opener<dyn KeyValueStore>, String> {
    let url = grant
        .settings
        .get("url")
        .cloned()
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let default_bucket = grant
        .settings
        .get("bucket")
        .cloned()
        .unwrap_or_else(|| DEFAULT_BUCKET.to_string());
    check_bucket(&default_bucket)?;
    Ok((
        format!("nats:{url}#{default_bucket}"),
        Box::new(move || {
            Ok(Arc::new(Nats {
                url,
                default_bucket,
                jetstream: OnceCell::new(),
                buckets: Mutex::default(),
            }) as Arc<dyn KeyValueStore>)
        }),
    ))
}

fn check_bucket(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a NATS KV bucket name; use letters, digits, `-` and `_`"
        ))
    }
}

impl Nats {
    async fn jetstream(&self) -> Result<&async_nats::jetstream::Context, KvError> {
        self.jetstream
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(CALL_TIMEOUT)
                    .request_timeout(Some(CALL_TIMEOUT))
                    .connect(self.url.as_str())
                    .await
                    .map_err(|e| KvError(format!("NATS at {} is unreachable: {e}", self.url)))?;
                let mut jetstream = async_nats::jetstream::new(client);
                jetstream.set_timeout(CALL_TIMEOUT);
                Ok(jetstream)
            })
            .await
    }

    async fn bucket(&self, bucket: &str) -> Result<kv::Store, KvError> {
        let name = if bucket.is_empty() {
            self.default_bucket.as_str()
        } else {
            bucket
        };
        let mut buckets = self.buckets.lock().await;
        if let Some(store) = buckets.get(name) {
            return Ok(store.clone());
        }
        check_bucket(name).map_err(KvError)?;
        let jetstream = self.jetstream().await?;
        let store = match jetstream.get_key_value(name).await {
            Ok(store) => store,
            Err(_) => jetstream
                .create_key_value(kv::Config {
                    bucket: name.to_string(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| self.failed(&format!("cannot create bucket `{name}`"), e))?,
        };
        buckets.insert(name.to_string(), store.clone());
        Ok(store)
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> KvError {
        KvError(format!("NATS at {}: {what}: {e}", self.url))
    }
}

#[async_trait::async_trait]
impl KeyValueStore for Nats {
    async fn open(&self, bucket: &str) -> Result<(), KvError> {
        self.bucket(bucket).await.map(|_| ())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let store = self.bucket(bucket).await?;
        let value = store.get(key).await.map_err(|e| self.failed("get", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let store = self.bucket(bucket).await?;
        store
            .put(key, Bytes::from(value))
            .await
            .map_err(|e| self.failed("set", e))?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let store = self.bucket(bucket).await?;
        store
            .delete(key)
            .await
            .map_err(|e| self.failed("delete", e))
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let store = self.bucket(bucket).await?;
        let keys = store
            .keys()
            .await
            .map_err(|e| self.failed("list-keys", e))?;
        let mut keys: Vec<String> = tokio::time::timeout(CALL_TIMEOUT, keys.try_collect())
            .await
            .map_err(|_| self.failed("list-keys", "timed out"))?
            .map_err(|e| self.failed("list-keys", e))?;
        keys.sort();
        Ok(page(keys, cursor))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let store = self.bucket(bucket).await?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = store
                .entry(key)
                .await
                .map_err(|e| self.failed("increment", e))?;
            let next;
            let written = match entry {
                Some(entry) if entry.operation == Operation::Put => {
                    next = add(key, counter_value(key, Some(&entry.value))?, delta)?;
                    store
                        .update(key, next.to_string().into(), entry.revision)
                        .await
                        .map_err(|e| {
                            (
                                e.kind() == UpdateErrorKind::WrongLastRevision,
                                e.to_string(),
                            )
                        })
                }
                _ => {
                    next = delta;
                    store
                        .create(key, next.to_string().into())
                        .await
                        .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string()))
                }
            };
            match written {
                Ok(_) => return Ok(next),
                Err((true, _)) => continue,
                Err((false, e)) => return Err(self.failed("increment", e)),
            }
        }
        Err(self.failed("increment", "too much contention on the key; try again"))
    }
}
