//! Key-value on a Redis server. The connection is made on first use and remade after a loss:
//! while Redis is down each call fails with an error the guest sees, and the host carries on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use weft_manifest::Grant;

use crate::catalog::{check_config, Backend, BackendError, Opener};
use crate::redis_server::{glob_escape, pubsub, RedisServer};
use crate::settings::ServerConfig;

use super::watch::WATCH_BUFFER;
use super::{Change, KeyValueStore, KvError, LIST_PAGE};

struct Redis(RedisServer);

/// Key-value on a Redis server.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "redis",
    images: &["keyvalue-redis"],
    check: check_config::<ServerConfig>,
    open: |_, grant| open(grant),
};

fn open(grant: &Grant) -> Result<Opener<dyn KeyValueStore>, BackendError> {
    let (identity, server) = RedisServer::of(grant)?;
    Ok((
        identity,
        Box::new(move || Ok(Arc::new(Redis(server)) as Arc<dyn KeyValueStore>)),
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

impl Redis {
    async fn connection(&self) -> Result<ConnectionManager, KvError> {
        self.0.connection().await.map_err(KvError)
    }

    fn failed(&self, e: redis::RedisError) -> KvError {
        KvError(self.0.failed(e))
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

    /// Redis's keyspace notifications, which the server must be set to publish (as wasmCloud's
    /// Redis provider also needs); every client's writes are seen. A lost connection is remade.
    async fn watch(&self, bucket: &str, keys: &[String]) -> Result<mpsc::Receiver<Change>, KvError> {
        let mut c = self.connection().await?;
        let config: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut c)
            .await
            .map_err(|e| self.failed(e))?;
        let flags = config.get(1).map(String::as_str).unwrap_or_default();
        if !publishes_key_changes(flags) {
            return Err(KvError(format!(
                "Redis at {} does not publish keyspace events (notify-keyspace-events is \
                 `{flags}`); run `CONFIG SET notify-keyspace-events K$g` on it, or start it \
                 with `--notify-keyspace-events K$g`",
                self.0.url
            )));
        }
        let db = self.0.client.get_connection_info().redis_settings().db();
        let channels: Vec<(String, String)> = keys
            .iter()
            .map(|k| (format!("__keyspace@{db}__:{}", redis_key(bucket, k)), k.clone()))
            .collect();
        let first = self.subscribe(&channels).await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher {
            client: self.0.client.clone(),
            url: self.0.url.clone(),
            connection: c,
            bucket: bucket.to_string(),
            channels,
            sender,
        };
        tokio::spawn(watcher.run(first));
        Ok(receiver)
    }
}

/// Whether `notify-keyspace-events` flags publish key-space events of string and generic
/// commands: `K`, and `$` and `g` (or `A`, their union).
fn publishes_key_changes(flags: &str) -> bool {
    let all = flags.contains('A');
    flags.contains('K') && (all || (flags.contains('$') && flags.contains('g')))
}

impl Redis {
    async fn subscribe(
        &self,
        channels: &[(String, String)],
    ) -> Result<redis::aio::PubSubStream, KvError> {
        subscribe(&self.0.client, channels)
            .await
            .map_err(|e| self.failed(e))
    }
}

async fn subscribe(
    client: &redis::Client,
    channels: &[(String, String)],
) -> Result<redis::aio::PubSubStream, redis::RedisError> {
    let channels: Vec<String> = channels.iter().map(|(c, _)| c.clone()).collect();
    pubsub(client, &channels, &[]).await
}

/// One watch's task: turns keyspace events into changes until its receiver is dropped.
struct Watcher {
    client: redis::Client,
    url: String,
    connection: ConnectionManager,
    bucket: String,
    channels: Vec<(String, String)>,
    sender: mpsc::Sender<Change>,
}

impl Watcher {
    async fn run(mut self, mut events: redis::aio::PubSubStream) {
        loop {
            while let Some(event) = events.next().await {
                let Some(change) = self.change(&event).await else {
                    continue;
                };
                if self.sender.send(change).await.is_err() {
                    return;
                }
            }
            tracing::warn!(url = %self.url, "lost Redis keyspace events; resubscribing");
            events = loop {
                if self.sender.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(events) = subscribe(&self.client, &self.channels).await {
                    break events;
                }
            };
        }
    }

    /// The change an event reports; a write is reported with the value it left.
    async fn change(&mut self, event: &redis::Msg) -> Option<Change> {
        let channel = event.get_channel_name();
        let key = self
            .channels
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, k)| k.clone())?;
        let command: String = event.get_payload().ok()?;
        match command.as_str() {
            "del" | "expired" | "evicted" | "unlink" => Some(Change::Delete { key }),
            "set" | "incrby" | "incrbyfloat" | "append" | "setrange" | "incr" | "decrby" => {
                let value: Option<Vec<u8>> = self
                    .connection
                    .get(redis_key(&self.bucket, &key))
                    .await
                    .ok()?;
                // Gone again before it was read: its deletion follows.
                value.map(|value| Change::Set { key, value })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::publishes_key_changes;

    #[test]
    fn keyspace_events_of_strings_and_generic_commands_are_needed() {
        assert!(publishes_key_changes("K$g"));
        assert!(publishes_key_changes("gK$xe"));
        assert!(publishes_key_changes("KA"));
        assert!(!publishes_key_changes(""));
        assert!(!publishes_key_changes("E$g"), "keyevent, not keyspace");
        assert!(!publishes_key_changes("K$"), "deletions are generic events");
    }
}
