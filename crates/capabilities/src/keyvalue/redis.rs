//! Key-value on a Redis server. The connection is made on first use and remade after a loss:
//! while Redis is down each call fails with an error the guest sees, and the host carries on.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;
use weft_manifest::Grant;

use crate::catalog::{check_config, Backend, BackendError, Opener};
use crate::settings::{typed, ServerConfig};

use super::{KeyValueStore, KvError, LIST_PAGE};

/// Where Redis is when the manifest does not say.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// A call waits this long for Redis before failing, so a stalled server cannot hang a request.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

struct Redis {
    client: redis::Client,
    /// The server, credentials hidden: errors reach guests, their clients and the log.
    url: String,
    connection: OnceCell<ConnectionManager>,
}

/// Key-value on a Redis server.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "redis",
    images: &["keyvalue-redis"],
    check: check_config::<ServerConfig>,
    open: |_, grant| open(grant),
};

fn open(grant: &Grant) -> Result<Opener<dyn KeyValueStore>, BackendError> {
    let url = typed::<ServerConfig>(&grant.settings)?.url_or(DEFAULT_URL);
    let shown = weft_lattice::redact_credentials(&url);
    let client = redis::Client::open(url.as_str()).map_err(|e| {
        BackendError(format!(
            "`{shown}` is not a Redis URL ({e}); use redis://HOST:PORT"
        ))
    })?;
    Ok((
        format!("redis:{url}"),
        Box::new(move || {
            Ok(Arc::new(Redis {
                client,
                url: shown,
                connection: OnceCell::new(),
            }) as Arc<dyn KeyValueStore>)
        }),
    ))
}

/// The Redis key of `key` in `bucket`: the bucket is a prefix, the unnamed bucket none.
fn redis_key(bucket: &str, key: &str) -> String {
    if bucket.is_empty() {
        key.to_string()
    } else {
        format!("{bucket}:{key}")
    }
}

/// Escapes Redis glob characters so a bucket name matches only itself in SCAN.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl Redis {
    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2);
        let connection = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|e| KvError(format!("Redis at {} is unreachable: {e}", self.url)))?;
        Ok(connection.clone())
    }

    fn failed(&self, e: redis::RedisError) -> KvError {
        KvError(format!("Redis at {}: {e}", self.url))
    }
}

#[async_trait::async_trait]
impl KeyValueStore for Redis {
    async fn open(&self, _bucket: &str) -> Result<(), KvError> {
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut c = self.connection().await?;
        c.get(redis_key(bucket, key))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut c = self.connection().await?;
        c.set(redis_key(bucket, key), value)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let mut c = self.connection().await?;
        c.del(redis_key(bucket, key))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let mut c = self.connection().await?;
        c.exists(redis_key(bucket, key))
            .await
            .map_err(|e| self.failed(e))
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let mut c = self.connection().await?;
        let prefix = redis_key(bucket, "");
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor.unwrap_or(0))
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(&prefix)))
            .arg("COUNT")
            .arg(LIST_PAGE)
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        let keys = keys
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .collect();
        Ok((keys, (next != 0).then_some(next)))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let mut c = self.connection().await?;
        let delta = i64::try_from(delta).map_err(|_| {
            KvError(format!(
                "cannot increment `{key}` by {delta}: Redis counters are signed 64-bit"
            ))
        })?;
        let next: i64 = c
            .incr(redis_key(bucket, key), delta)
            .await
            .map_err(|e| self.failed(e))?;
        u64::try_from(next).map_err(|_| KvError(format!("`{key}` holds a negative counter")))
    }

    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.connection().await?;
        let full: Vec<String> = keys.iter().map(|k| redis_key(bucket, k)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&full)
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut c = self.connection().await?;
        let full: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (redis_key(bucket, &k), v))
            .collect();
        c.mset(&full).await.map_err(|e| self.failed(e))
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = self.connection().await?;
        let full: Vec<String> = keys.iter().map(|k| redis_key(bucket, k)).collect();
        c.del(full).await.map_err(|e| self.failed(e))
    }
}
