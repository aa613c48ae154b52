//! `wasmcloud:secrets`: a component reads the secrets its manifest grants it, by the names given
//! there. Values live in weft's secret store, encrypted at rest with ChaCha20-Poly1305 under a
//! key kept beside it (`secrets.key`, mode 0600): a copied state database or backup without that
//! file reveals nothing. A value is never logged and the CLI never prints one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use wasmtime::component::Resource;

use crate::bindings::secrets::{reveal, store};
use crate::CapabilityCtxView;

const SECRETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("secrets");
const NONCE_LEN: usize = 12;
const TAG_STRING: u8 = 0;
const TAG_BYTES: u8 = 1;

/// Why the secret store failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret store {}: {reason}", path.display())]
    Store { path: PathBuf, reason: String },
    #[error(
        "secret `{0}` cannot be decrypted: it was written under another key (was {1} replaced?)"
    )]
    Undecryptable(String, String),
}

/// A secret's value. Its `Debug` shows no content, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    String(String),
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl SecretValue {
    /// Text when the bytes are UTF-8, bytes otherwise.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => SecretValue::String(text),
            Err(e) => SecretValue::Bytes(e.into_bytes()),
        }
    }
}

/// The host's encrypted secret store.
pub struct SecretStore {
    /// Values already read, so a secret checked on every request costs no disk read or
    /// decryption; `put` and `delete` keep it in step.
    cache: std::sync::RwLock<std::collections::HashMap<String, SecretValue>>,
    db: redb::Database,
    cipher: ChaCha20Poly1305,
    path: PathBuf,
    key_path: PathBuf,
}

impl SecretStore {
    /// Opens (creating when absent) `secrets.redb` and its key `secrets.key` under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Arc<Self>, SecretError> {
        let path = state_dir.join("secrets.redb");
        let key_path = state_dir.join("secrets.key");
        let fail = |reason: String| SecretError::Store {
            path: path.clone(),
            reason,
        };
        let key = load_or_create_key(&key_path).map_err(&fail)?;
        let db = redb::Database::create(&path).map_err(|e| fail(e.to_string()))?;
        Ok(Arc::new(SecretStore {
            cache: Default::default(),
            db,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            path,
            key_path,
        }))
    }

    fn fail(&self, e: impl std::fmt::Display) -> SecretError {
        SecretError::Store {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn put(&self, key: &str, value: &SecretValue) -> Result<(), SecretError> {
        let (tag, plain) = match value {
            SecretValue::String(s) => (TAG_STRING, s.as_bytes()),
            SecretValue::Bytes(b) => (TAG_BYTES, b.as_slice()),
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut message = Vec::with_capacity(plain.len() + 1);
        message.push(tag);
        message.extend_from_slice(plain);
        // The key name is authenticated with the value, so a value moved to another name fails.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &message,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| self.fail("encryption failed"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = txn.open_table(SECRETS).map_err(|e| self.fail(e))?;
            table
                .insert(key, stored.as_slice())
                .map_err(|e| self.fail(e))?;
        }
        txn.commit().map_err(|e| self.fail(e))?;
        self.cache_lock().insert(key.to_string(), value.clone());
        Ok(())
    }

    fn cache_lock(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<String, SecretValue>> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key` when it has been read before.
    pub fn cached(&self, key: &str) -> Option<SecretValue> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(key).cloned()
    }

    /// The value under `key`, if there is one.
    pub fn get(&self, key: &str) -> Result<Option<SecretValue>, SecretError> {
        if let Some(value) = self.cached(key) {
            return Ok(Some(value));
        }
        let value = self.read(key)?;
        if let Some(value) = &value {
            self.cache_lock().insert(key.to_string(), value.clone());
        }
        Ok(value)
    }

    fn read(&self, key: &str) -> Result<Option<SecretValue>, SecretError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match txn.open_table(SECRETS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let Some(stored) = table.get(key).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        let stored = stored.value();
        let undecryptable =
            || SecretError::Undecryptable(key.to_string(), self.key_path.display().to_string());
        if stored.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let message = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())?;
        match message.split_first() {
            Some((&TAG_STRING, text)) => String::from_utf8(text.to_vec())
                .map(|s| Some(SecretValue::String(s)))
                .map_err(|_| undecryptable()),
            Some((&TAG_BYTES, bytes)) => Ok(Some(SecretValue::Bytes(bytes.to_vec()))),
            _ => Err(undecryptable()),
        }
    }

    /// The keys in the store, never their values.
    pub fn keys(&self) -> Result<Vec<String>, SecretError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match txn.open_table(SECRETS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(e)),
        };
        let mut keys = Vec::new();
        for entry in table.iter().map_err(|e| self.fail(e))? {
            keys.push(entry.map_err(|e| self.fail(e))?.0.value().to_string());
        }
        Ok(keys)
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&self, key: &str) -> Result<bool, SecretError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        let existed = {
            let mut table = txn.open_table(SECRETS).map_err(|e| self.fail(e))?;
            let existed = table.remove(key).map_err(|e| self.fail(e))?.is_some();
            existed
        };
        txn.commit().map_err(|e| self.fail(e))?;
        self.cache_lock().remove(key);
        Ok(existed)
    }
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| format!("{} is not a 32-byte key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private(path, &key)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a file only its owner can read, created with that mode so it is never exposed.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A secret granted to a component: the store and the key its grant names.
#[derive(Clone)]
pub struct SecretSource {
    store: Arc<SecretStore>,
    key: String,
}

impl SecretSource {
    /// The secret stored under `key`.
    pub fn new(store: Arc<SecretStore>, key: String) -> Self {
        SecretSource { store, key }
    }
}

/// The `secret` resource: a value fetched by `get`, released only by `reveal`.
pub struct Secret {
    value: SecretValue,
}

impl store::Host for CapabilityCtxView<'_> {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Secret>, store::SecretsError>> {
        // Only names the manifest granted this component resolve; others look absent, so a
        // component learns nothing about secrets it was not given.
        let Some(source) = self.ctx.grants.secrets.get(&name).cloned() else {
            return Ok(Err(store::SecretsError::NotFound));
        };
        let found = match source.store.cached(&source.key) {
            Some(value) => Ok(Some(value)),
            None => tokio::task::spawn_blocking(move || source.store.get(&source.key)).await?,
        };
        match found {
            Ok(Some(value)) => Ok(Ok(self.table.push(Secret { value })?)),
            Ok(None) => {
                tracing::warn!(workload = %self.ctx.grants.workload, secret = %name,
                    "a granted secret is not in the store; set it with `weft secret put`");
                Ok(Err(store::SecretsError::NotFound))
            }
            Err(e) => Ok(Err(store::SecretsError::Io(e.to_string()))),
        }
    }
}

impl store::HostSecret for CapabilityCtxView<'_> {
    async fn drop(&mut self, this: Resource<Secret>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl reveal::Host for CapabilityCtxView<'_> {
    async fn reveal(&mut self, secret: Resource<Secret>) -> wasmtime::Result<store::SecretValue> {
        Ok(match &self.table.get(&secret)?.value {
            SecretValue::String(s) => store::SecretValue::String(s.clone()),
            SecretValue::Bytes(b) => store::SecretValue::Bytes(b.clone()),
        })
    }
}
