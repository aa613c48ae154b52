//! `wasi:keyvalue/watcher`: changes to watched keys, delivered by the host to a component's
//! `watcher` export. A link from a key-value node to a component names the keys in its config
//! the way wasmCloud's Redis provider reads them: `watch: "SET@key,DEL@key"`.
//!
//! A backend only this host writes to (memory, file, SQLite) announces its own writes; Redis
//! and NATS, which others write to too, are watched at the server.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use wasmtime::component::Resource;
use wasmtime::Store;
use weft_manifest::{CapabilityLink, Delivered, KeyWatch, Settings, SpecError};

use super::{Bucket, KeyValueStore, KvError};
use crate::CapabilityView;

/// Changes a watch buffers for a watcher that falls behind; later ones are dropped, logged.
pub const WATCH_BUFFER: usize = 1024;

/// One change to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Change {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Set { key, .. } | Change::Delete { key } => key,
        }
    }

    /// Whether `watch` asked for this change.
    pub fn wanted_by(&self, watch: &KeyWatch) -> bool {
        let keys = match self {
            Change::Set { .. } => &watch.on_set,
            Change::Delete { .. } => &watch.on_delete,
        };
        keys.iter().any(|k| k == self.key())
    }
}

/// A link from a key-value node to a component: the keys in its `watch` config.
pub(super) fn key_watch(
    link: &CapabilityLink<'_>,
    backend: &str,
    mut settings: Settings,
) -> Result<Delivered, SpecError> {
    let spec = settings.remove("watch").unwrap_or_default();
    let (mut on_set, mut on_delete) = (Vec::new(), Vec::new());
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| {
            SpecError::at(
                "config watch",
                format!("`{entry}` {why}; write SET@KEY or DEL@KEY, comma-separated"),
            )
        };
        let (event, key) = entry.split_once('@').ok_or_else(|| bad("names no event"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("names no key"));
        }
        match event.trim().to_ascii_uppercase().as_str() {
            "SET" => on_set.push(key.to_string()),
            "DEL" | "DELETE" => on_delete.push(key.to_string()),
            _ => return Err(bad("is neither SET nor DEL")),
        }
    }
    Ok(Delivered::Watch(KeyWatch {
        component: link.component.to_string(),
        capability: link.node.name.clone(),
        backend: backend.to_string(),
        settings,
        on_set,
        on_delete,
    }))
}

/// Calls an instance's `on-set` or `on-delete` for `change` to `bucket` of `store`.
pub async fn notify<T: CapabilityView>(
    watcher: &crate::handler_bindings::KeyWatcher,
    instance_store: &mut Store<T>,
    change: Change,
    store: Arc<dyn KeyValueStore>,
    bucket: &str,
) -> wasmtime::Result<()> {
    let handle: Resource<Bucket> = instance_store
        .data_mut()
        .capabilities()
        .table
        .push(Bucket {
            store,
            name: bucket.to_string(),
        })?;
    let watcher = watcher.wasi_keyvalue_watcher();
    match change {
        Change::Set { key, value } => {
            watcher
                .call_on_set(instance_store, handle, &key, &value)
                .await
        }
        Change::Delete { key } => watcher.call_on_delete(instance_store, handle, &key).await,
    }
}

/// Wraps a backend whose only writer is this host: each write it makes is announced to the
/// watchers of its bucket.
pub(crate) struct Announced<B> {
    inner: B,
    watchers: Mutex<Vec<(String, mpsc::Sender<Change>)>>,
}

impl<B: KeyValueStore> Announced<B> {
    pub(crate) fn new(inner: B) -> Self {
        Announced {
            inner,
            watchers: Mutex::default(),
        }
    }

    fn announce(&self, bucket: &str, changes: impl IntoIterator<Item = Change>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.retain(|(_, sender)| !sender.is_closed());
        if watchers.is_empty() {
            return;
        }
        for change in changes {
            for (_, sender) in watchers.iter().filter(|(b, _)| b == bucket) {
                if sender.try_send(change.clone()).is_err() {
                    tracing::warn!(key = %change.key(), "a key watcher is behind; change dropped");
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<B: KeyValueStore> KeyValueStore for Announced<B> {
    async fn open(&self, bucket: &str) -> Result<(), KvError> {
        self.inner.open(bucket).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(bucket, key).await
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.inner.set(bucket, key, value.clone()).await?;
        let key = key.to_string();
        self.announce(bucket, [Change::Set { key, value }]);
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        self.inner.delete(bucket, key).await?;
        let key = key.to_string();
        self.announce(bucket, [Change::Delete { key }]);
        Ok(())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        self.inner.exists(bucket, key).await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        self.inner.list_keys(bucket, cursor).await
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let value = self.inner.increment(bucket, key, delta).await?;
        let change = Change::Set {
            key: key.to_string(),
            value: value.to_string().into_bytes(),
        };
        self.announce(bucket, [change]);
        Ok(value)
    }

    async fn get_many(
        &self,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        self.inner.get_many(bucket, keys).await
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        self.inner.set_many(bucket, entries.clone()).await?;
        let changes = entries
            .into_iter()
            .map(|(key, value)| Change::Set { key, value });
        self.announce(bucket, changes);
        Ok(())
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        self.inner.delete_many(bucket, keys.clone()).await?;
        self.announce(bucket, keys.into_iter().map(|key| Change::Delete { key }));
        Ok(())
    }

    async fn watch(
        &self,
        bucket: &str,
        _keys: &[String],
    ) -> Result<mpsc::Receiver<Change>, KvError> {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((bucket.to_string(), sender));
        Ok(receiver)
    }
}

/// The key-value capability's delivery: key changes to a `watcher` export.
pub(super) const DELIVERY: crate::catalog::Delivery = crate::catalog::Delivery {
    exports: &["watcher"],
    handed: &["store"],
    not_a_component: "key changes are delivered to components",
    make: key_watch,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let mut settings = Settings::new();
        settings.insert("watch".into(), spec.into());
        let link = weft_manifest::Link {
            target: "app".into(),
            namespace: "wasi".into(),
            package: "keyvalue".into(),
            interfaces: vec!["watcher".into()],
            name: None,
            source_config: Vec::new(),
            target_config: Vec::new(),
        };
        let node = weft_manifest::Capability {
            name: "kv".into(),
            kind: "keyvalue".into(),
            backend: "memory".into(),
            config: Vec::new(),
            provider: None,
        };
        let capability_link = CapabilityLink {
            component: "app",
            link: &link,
            node: &node,
            to_component: true,
        };
        match key_watch(&capability_link, "memory", settings) {
            Ok(Delivered::Watch(w)) => Ok((w.on_set, w.on_delete)),
            Ok(_) => Err("not a watch".into()),
            Err(e) => Err(e.message),
        }
    }

    #[test]
    fn watch_config_reads_like_wasmclouds_redis_provider() {
        assert_eq!(
            parse("SET@a, del@b,DELETE@c").unwrap(),
            (
                vec!["a".to_string()],
                vec!["b".to_string(), "c".to_string()]
            )
        );
        assert_eq!(
            parse("").unwrap(),
            (vec![], vec![]),
            "a warning, as wasmCloud accepts it"
        );
        assert!(parse("SET").unwrap_err().contains("names no event"));
        assert!(parse("PUT@a").unwrap_err().contains("neither SET nor DEL"));
        assert!(parse("SET@").unwrap_err().contains("names no key"));
    }
}
