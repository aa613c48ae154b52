//! Durable key-value in an embedded redb file: one table per bucket, each write its own
//! committed transaction, so an acknowledged write survives a crash or restart.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use weft_manifest::Grant;

use crate::catalog::{check_config, Backend, BackendError, Opener};
use crate::settings::{typed, FileConfig};

use super::watch::Announced;
use super::{add, counter_value, page, KeyValueStore, KvError};
use crate::Placement;

struct File {
    db: Arc<redb::Database>,
    path: PathBuf,
}

/// Key-value in a redb file.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "file",
    images: &["keyvalue-file", "keyvalue-redb"],
    check: check_config::<FileConfig>,
    open,
};

/// The file a grant names: `path` from config, else `<state>/keyvalue/<app>/<capability>.redb`.
fn open(at: &Placement<'_>, grant: &Grant) -> Result<Opener<dyn KeyValueStore>, BackendError> {
    let path = typed::<FileConfig>(&grant.settings)?.path_or_state(at, grant, "redb");
    let identity = format!("file:{}", path.display());
    Ok((
        identity,
        Box::new(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| BackendError(format!("cannot create {}: {e}", dir.display())))?;
            }
            let db = redb::Database::create(&path)
                .map_err(|e| BackendError(format!("cannot open {}: {e}", path.display())))?;
            Ok(Arc::new(Announced::new(File {
                db: Arc::new(db),
                path,
            })) as Arc<dyn KeyValueStore>)
        }),
    ))
}

/// redb table names cannot be empty; the unnamed bucket gets a fixed one.
fn table_name(bucket: &str) -> String {
    if bucket.is_empty() {
        "default".to_string()
    } else {
        format!("bucket:{bucket}")
    }
}

impl File {
    /// Runs blocking redb work off the async executor.
    async fn run<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&redb::Database) -> Result<R, redb::Error> + Send + 'static,
    ) -> Result<R, KvError> {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| KvError::new(what, e))?
            .map_err(|e| KvError(format!("{what} in {}: {e}", path.display())))
    }

    async fn read<R: Send + 'static>(
        &self,
        bucket: &str,
        what: &'static str,
        empty: R,
        f: impl FnOnce(&redb::ReadOnlyTable<&str, &[u8]>) -> Result<R, redb::Error> + Send + 'static,
    ) -> Result<R, KvError> {
        let name = table_name(bucket);
        self.run(what, move |db| {
            let txn = db.begin_read()?;
            let table = match txn.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(empty),
                Err(e) => return Err(e.into()),
            };
            f(&table)
        })
        .await
    }

    async fn write<R: Send + 'static>(
        &self,
        bucket: &str,
        what: &'static str,
        f: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>) -> Result<R, KvError> + Send + 'static,
    ) -> Result<R, KvError> {
        let name = table_name(bucket);
        let result = self
            .run(what, move |db| {
                let txn = db.begin_write()?;
                let result = {
                    let mut table = txn.open_table(TableDefinition::<&str, &[u8]>::new(&name))?;
                    f(&mut table)
                };
                // A refused operation (a non-numeric counter) writes nothing.
                if result.is_ok() {
                    txn.commit()?;
                }
                Ok(result)
            })
            .await?;
        result
    }
}

#[async_trait::async_trait]
impl KeyValueStore for File {
    async fn open(&self, _bucket: &str) -> Result<(), KvError> {
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_string();
        self.read(bucket, "get", None, move |t| {
            Ok(t.get(key.as_str())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let key = key.to_string();
        self.write(bucket, "set", move |t| {
            t.insert(key.as_str(), value.as_slice())
                .map_err(|e| KvError::new("set", e))?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let key = key.to_string();
        self.write(bucket, "delete", move |t| {
            t.remove(key.as_str())
                .map_err(|e| KvError::new("delete", e))?;
            Ok(())
        })
        .await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let keys = self
            .read(bucket, "list-keys", Vec::new(), |t| {
                let mut keys = Vec::new();
                for entry in t.iter()? {
                    keys.push(entry?.0.value().to_string());
                }
                Ok(keys)
            })
            .await?;
        Ok(page(keys, cursor))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let key = key.to_string();
        self.write(bucket, "increment", move |t| {
            let current = t
                .get(key.as_str())
                .map_err(|e| KvError::new("increment", e))?
                .map(|v| v.value().to_vec());
            let next = add(&key, counter_value(&key, current.as_deref())?, delta)?;
            t.insert(key.as_str(), next.to_string().as_bytes())
                .map_err(|e| KvError::new("increment", e))?;
            Ok(next)
        })
        .await
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        // One transaction: the batch is written whole or not at all.
        self.write(bucket, "set-many", move |t| {
            for (key, value) in &entries {
                t.insert(key.as_str(), value.as_slice())
                    .map_err(|e| KvError::new("set-many", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        self.write(bucket, "delete-many", move |t| {
            for key in &keys {
                t.remove(key.as_str())
                    .map_err(|e| KvError::new("delete-many", e))?;
            }
            Ok(())
        })
        .await
    }
}
