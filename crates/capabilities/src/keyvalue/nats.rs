//! Key-value on NATS JetStream KV, spoken over JetStream's request/reply API so it works with
//! every JetStream server (Debian's 2.9 included). A bucket is the stream `KV_<bucket>` on subjects
//! `$KV.<bucket>.>`, created on first open with one value kept per key, as `nats kv add` makes
//! it. `increment` is compare-and-set on the key's last sequence, retried on conflict, so
//! concurrent increments from any number of hosts are never lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderMap;
use bytes::Bytes;
use tokio::sync::{Mutex, OnceCell};
use weft_manifest::Grant;

use crate::{setting, Opener};

use super::{add, counter_value, page, KeyValueStore, KvError};

/// Where NATS is when the manifest does not say.
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// The bucket of `open("")`, unless the link config names one.
const DEFAULT_BUCKET: &str = "weft";
/// A call waits this long for NATS before failing.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Compare-and-set attempts before an increment gives up under contention.
const MAX_CAS_ATTEMPTS: usize = 10_000;
/// JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check.
const WRONG_LAST_SEQUENCE: u64 = 10071;

struct Nats {
    url: String,
    default_bucket: String,
    client: OnceCell<async_nats::Client>,
    /// Buckets whose stream is known to exist.
    ready: Mutex<HashSet<String>>,
}

pub(super) fn open(grant: &Grant) -> Result<Opener<dyn KeyValueStore>, String> {
    let url = setting(grant, "url", DEFAULT_URL);
    let default_bucket = setting(grant, "bucket", DEFAULT_BUCKET);
    check_bucket(&default_bucket)?;
    Ok((
        format!("nats:{url}#{default_bucket}"),
        Box::new(move || {
            Ok(Arc::new(Nats {
                url,
                default_bucket,
                client: OnceCell::new(),
                ready: Mutex::default(),
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

/// Keys are subject tokens: no spaces or wildcards, no empty tokens.
fn check_key(key: &str) -> Result<(), KvError> {
    let ok = !key.is_empty()
        && key.split('.').all(|t| !t.is_empty())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '=' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KvError(format!(
            "`{key}` is not a NATS KV key; use letters, digits and `-_/=.`"
        )))
    }
}

/// A JetStream API reply: an `error` object or the payload.
fn api_error(reply: &serde_json::Value) -> Option<(u64, String)> {
    let error = reply.get("error")?;
    Some((
        error.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0),
        error
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("unknown JetStream error")
            .to_string(),
    ))
}

/// The latest entry of a key: its sequence and value, None for a deleted key.
struct Entry {
    sequence: u64,
    value: Option<Bytes>,
}

impl Nats {
    async fn client(&self) -> Result<&async_nats::Client, KvError> {
        self.client
            .get_or_try_init(|| async {
                async_nats::ConnectOptions::new()
                    .connection_timeout(CALL_TIMEOUT)
                    .request_timeout(Some(CALL_TIMEOUT))
                    .connect(self.url.as_str())
                    .await
                    .map_err(|e| KvError(format!("NATS at {} is unreachable: {e}", self.url)))
            })
            .await
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> KvError {
        KvError(format!("NATS at {}: {what}: {e}", self.url))
    }

    async fn api(
        &self,
        what: &str,
        subject: String,
        body: String,
    ) -> Result<serde_json::Value, KvError> {
        let client = self.client().await?;
        let reply = client
            .request(subject, body.into())
            .await
            .map_err(|e| self.failed(what, e))?;
        serde_json::from_slice(&reply.payload).map_err(|e| self.failed(what, e))
    }

    /// The bucket's name, its stream created when this host has not seen it yet.
    async fn bucket(&self, bucket: &str) -> Result<String, KvError> {
        let name = if bucket.is_empty() {
            self.default_bucket.clone()
        } else {
            bucket.to_string()
        };
        if self.ready.lock().await.contains(&name) {
            return Ok(name);
        }
        check_bucket(&name).map_err(KvError)?;
        let config = serde_json::json!({
            "name": format!("KV_{name}"),
            "subjects": [format!("$KV.{name}.>")],
            "max_msgs_per_subject": 1,
            "discard": "new",
            "allow_rollup_hdrs": true,
            "deny_delete": true,
            "allow_direct": true,
            "storage": "file",
            "num_replicas": 1,
        });
        let reply = self
            .api(
                "create bucket",
                format!("$JS.API.STREAM.CREATE.KV_{name}"),
                config.to_string(),
            )
            .await?;
        // 10058: the stream exists already (made by another host, or `nats kv add`).
        match api_error(&reply) {
            None | Some((10058, _)) => {}
            Some((_, description)) => {
                return Err(self.failed(&format!("cannot create bucket `{name}`"), description))
            }
        }
        self.ready.lock().await.insert(name.clone());
        Ok(name)
    }

    async fn entry(&self, bucket: &str, key: &str) -> Result<Option<Entry>, KvError> {
        check_key(key)?;
        let client = self.client().await?;
        let request = serde_json::json!({ "last_by_subj": format!("$KV.{bucket}.{key}") });
        let reply = client
            .request(
                format!("$JS.API.DIRECT.GET.KV_{bucket}"),
                request.to_string().into(),
            )
            .await
            .map_err(|e| self.failed("get", e))?;
        if reply.status.is_some_and(|s| s.as_u16() == 404) {
            return Ok(None);
        }
        if let Some(status) = reply.status.filter(|s| s.as_u16() >= 300) {
            return Err(self.failed("get", format!("status {status}")));
        }
        let Some(headers) = reply.headers.as_ref() else {
            return Err(self.failed("get", "a reply without headers"));
        };
        let sequence = headers
            .get("Nats-Sequence")
            .and_then(|s| s.as_str().parse().ok())
            .ok_or_else(|| self.failed("get", "a reply without Nats-Sequence"))?;
        let deleted = headers
            .get("KV-Operation")
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        Ok(Some(Entry {
            sequence,
            value: (!deleted).then_some(reply.payload),
        }))
    }

    /// Publishes to the key's subject and waits for JetStream's acknowledgement.
    async fn write(
        &self,
        what: &str,
        bucket: &str,
        key: &str,
        value: Bytes,
        headers: HeaderMap,
    ) -> Result<Result<(), (u64, String)>, KvError> {
        check_key(key)?;
        let client = self.client().await?;
        let reply = client
            .request_with_headers(format!("$KV.{bucket}.{key}"), headers, value)
            .await
            .map_err(|e| self.failed(what, e))?;
        let ack: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| self.failed(what, e))?;
        Ok(match api_error(&ack) {
            None => Ok(()),
            Some(error) => Err(error),
        })
    }

    /// Keys of a bucket whose latest entry is a value.
    async fn keys(&self, bucket: &str) -> Result<Vec<String>, KvError> {
        let request = serde_json::json!({ "subjects_filter": format!("$KV.{bucket}.>") });
        let info = self
            .api(
                "list-keys",
                format!("$JS.API.STREAM.INFO.KV_{bucket}"),
                request.to_string(),
            )
            .await?;
        if let Some((_, description)) = api_error(&info) {
            return Err(self.failed("list-keys", description));
        }
        let prefix = format!("$KV.{bucket}.");
        let subjects: Vec<String> = info
            .pointer("/state/subjects")
            .and_then(|s| s.as_object())
            .map(|s| {
                s.keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut keys = Vec::with_capacity(subjects.len());
        for key in subjects {
            if self
                .entry(bucket, &key)
                .await?
                .is_some_and(|e| e.value.is_some())
            {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl KeyValueStore for Nats {
    async fn open(&self, bucket: &str) -> Result<(), KvError> {
        self.bucket(bucket).await.map(|_| ())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let bucket = self.bucket(bucket).await?;
        Ok(self
            .entry(&bucket, key)
            .await?
            .and_then(|e| e.value)
            .map(|v| v.to_vec()))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let bucket = self.bucket(bucket).await?;
        self.write("set", &bucket, key, value.into(), HeaderMap::new())
            .await?
            .map_err(|(_, e)| self.failed("set", e))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let bucket = self.bucket(bucket).await?;
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        self.write("delete", &bucket, key, Bytes::new(), headers)
            .await?
            .map_err(|(_, e)| self.failed("delete", e))
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let bucket = self.bucket(bucket).await?;
        Ok(page(self.keys(&bucket).await?, cursor))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let bucket = self.bucket(bucket).await?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.entry(&bucket, key).await?;
            let (expected, current) = match &entry {
                Some(e) => (e.sequence, counter_value(key, e.value.as_deref())?),
                None => (0, 0),
            };
            let next = add(key, current, delta)?;
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expected.to_string().as_str(),
            );
            match self
                .write("increment", &bucket, key, next.to_string().into(), headers)
                .await?
            {
                Ok(()) => return Ok(next),
                Err((WRONG_LAST_SEQUENCE, _)) => continue,
                Err((_, e)) => return Err(self.failed("increment", e)),
            }
        }
        Err(self.failed("increment", "too much contention on the key; try again"))
    }
}
