//! Key-value on NATS JetStream KV, through the lattice crate's JetStream client (JetStream's
//! request/reply API, so it works with every JetStream server, Debian's 2.9 included). A bucket
//! is created on first open as `nats kv add` makes it. `increment` is compare-and-set on the
//! key's revision, retried on conflict, so concurrent increments from any number of hosts are
//! never lost.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, Mutex, OnceCell};
use weft_lattice::{JetStream, Kv, LatticeError};
use weft_manifest::Grant;

use serde::Deserialize;

use crate::catalog::{Backend, BackendError, Opener};
use crate::settings::{check_nats_settings, nats_settings, NatsServer};

use super::watch::WATCH_BUFFER;
use super::{add, counter_value, page, Change, KeyValueStore, KvError};

/// The bucket of `open("")`, unless the link config names one.
const DEFAULT_BUCKET: &str = "weft";
/// Compare-and-set attempts before an increment gives up under contention.
const MAX_CAS_ATTEMPTS: usize = 10_000;

struct Nats {
    server: NatsServer,
    default_bucket: String,
    js: OnceCell<JetStream>,
    /// Buckets opened (and created when missing) by this host.
    buckets: Mutex<HashMap<String, Kv>>,
}

/// Key-value on NATS JetStream KV.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "nats",
    images: &["keyvalue-nats"],
    check: |settings| check_nats_settings::<Config>(settings, OWN_KEYS),
    open: |_, grant| open(grant),
};

/// The keys this backend takes beside the connection's.
const OWN_KEYS: &[&str] = &["bucket"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The bucket of `open("")`.
    bucket: Option<String>,
}

fn open(grant: &Grant) -> Result<Opener<dyn KeyValueStore>, BackendError> {
    let (server, config) = nats_settings::<Config>(&grant.settings, OWN_KEYS)?;
    let default_bucket = config
        .bucket
        .unwrap_or_else(|| DEFAULT_BUCKET.to_string());
    if !weft_lattice::is_valid_token(&default_bucket) {
        return Err(BackendError(format!(
            "`{default_bucket}` is not a NATS KV bucket name; use letters, digits, `-` and `_`"
        )));
    }
    Ok((
        format!("nats:{}#{default_bucket}", server.identity()),
        Box::new(move || {
            Ok(Arc::new(Nats {
                server,
                default_bucket,
                js: OnceCell::new(),
                buckets: Mutex::default(),
            }) as Arc<dyn KeyValueStore>)
        }),
    ))
}

fn kv_error(e: LatticeError) -> KvError {
    KvError(e.to_string())
}

impl Nats {
    /// The bucket's store, its stream created when this host has not opened it yet.
    async fn bucket(&self, bucket: &str) -> Result<Kv, KvError> {
        let name = if bucket.is_empty() {
            self.default_bucket.as_str()
        } else {
            bucket
        };
        if let Some(kv) = self.buckets.lock().await.get(name) {
            return Ok(kv.clone());
        }
        let js = self
            .js
            .get_or_try_init(|| JetStream::connect(&self.server.url, &self.server.auth))
            .await
            .map_err(kv_error)?;
        let kv = js.kv(name).await.map_err(kv_error)?;
        self.buckets
            .lock()
            .await
            .insert(name.to_string(), kv.clone());
        Ok(kv)
    }
}

#[async_trait::async_trait]
impl KeyValueStore for Nats {
    async fn open(&self, bucket: &str) -> Result<(), KvError> {
        self.bucket(bucket).await.map(|_| ())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let kv = self.bucket(bucket).await?;
        Ok(kv.get(key).await.map_err(kv_error)?.map(|v| v.to_vec()))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let kv = self.bucket(bucket).await?;
        kv.put(key, value.into()).await.map_err(kv_error)?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let kv = self.bucket(bucket).await?;
        kv.delete(key).await.map_err(kv_error)
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let kv = self.bucket(bucket).await?;
        Ok(page(kv.keys("").await.map_err(kv_error)?, cursor))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let kv = self.bucket(bucket).await?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = kv.entry(key).await.map_err(kv_error)?;
            let (expected, current) = match &entry {
                Some(e) => (e.revision, counter_value(key, e.value.as_deref())?),
                None => (0, 0),
            };
            let next = add(key, current, delta)?;
            match kv
                .update(key, next.to_string().into(), expected)
                .await
                .map_err(kv_error)?
            {
                Ok(_) => return Ok(next),
                Err(_) => continue,
            }
        }
        Err(KvError(format!(
            "NATS at {}: increment: too much contention on `{key}`; try again",
            weft_lattice::redact_credentials(&self.server.url)
        )))
    }

    /// Every write to the bucket from any client reaches the server's `$KV.<bucket>.<key>`
    /// subject, so watching is a subscription there; delete markers become deletions.
    async fn watch(
        &self,
        bucket: &str,
        _keys: &[String],
    ) -> Result<mpsc::Receiver<Change>, KvError> {
        let kv = self.bucket(bucket).await?;
        let mut writes = kv.watch().await.map_err(kv_error)?;
        let prefix = format!(
            "$KV.{}.",
            if bucket.is_empty() {
                &self.default_bucket
            } else {
                bucket
            }
        );
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            while let Some(write) = writes.next().await {
                let Some(key) = write.subject.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let operation = write
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .map(|v| v.as_str().to_string());
                let change = match operation.as_deref() {
                    Some("DEL" | "PURGE") => Change::Delete {
                        key: key.to_string(),
                    },
                    _ => Change::Set {
                        key: key.to_string(),
                        value: write.payload.to_vec(),
                    },
                };
                if sender.send(change).await.is_err() {
                    break;
                }
            }
            let _ = writes.unsubscribe().await;
        });
        Ok(receiver)
    }
}
