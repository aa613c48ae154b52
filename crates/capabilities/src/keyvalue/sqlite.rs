//! Durable key-value in a SQLite file: one table of (bucket, key, value), in WAL mode, each write
//! its own transaction, so an acknowledged write survives a crash or restart, and the file can be
//! read with any SQLite tool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use weft_manifest::Grant;

use super::watch::Announced;
use super::{add, counter_value, page, KeyValueStore, KvError};
use crate::catalog::{check_config, Backend, BackendError, Opener, Placement};
use crate::settings::{typed, FileConfig};

/// Key-value in a SQLite file.
pub(super) const BACKEND: Backend<dyn KeyValueStore> = Backend {
    name: "sqlite",
    images: &["keyvalue-sqlite"],
    check: check_config::<FileConfig>,
    open,
};

struct Sqlite {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

/// The file a grant names: `path` from config, else `<state>/keyvalue/<app>/<capability>.sqlite`.
fn open(at: &Placement<'_>, grant: &Grant) -> Result<Opener<dyn KeyValueStore>, BackendError> {
    let path = typed::<FileConfig>(&grant.settings)?.path_or_state(at, grant, "sqlite");
    Ok((
        format!("sqlite:{}", path.display()),
        Box::new(move || {
            let connection = crate::sqlite_file::open(
                &path,
                "CREATE TABLE IF NOT EXISTS kv (
                     bucket TEXT NOT NULL,
                     key TEXT NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (bucket, key)
                 ) WITHOUT ROWID;",
            )?;
            Ok(Arc::new(Announced::new(Sqlite {
                connection: Arc::new(Mutex::new(connection)),
                path,
            })) as Arc<dyn KeyValueStore>)
        }),
    ))
}

impl Sqlite {
    /// Runs blocking SQLite work off the async executor, in one transaction: committed when `f`
    /// succeeds, rolled back (nothing written) when it fails.
    async fn run<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, KvError> + Send + 'static,
    ) -> Result<R, KvError> {
        let connection = self.connection.clone();
        let path = self.path.clone();
        let sql = move |e: rusqlite::Error| KvError(format!("{what} in {}: {e}", path.display()));
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            let txn = connection.transaction().map_err(&sql)?;
            let result = f(&txn)?;
            txn.commit().map_err(&sql)?;
            Ok(result)
        })
        .await
        .map_err(|e| KvError::new(what, e))?
    }
}

fn get(txn: &rusqlite::Transaction<'_>, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
    txn.query_row(
        "SELECT value FROM kv WHERE bucket = ?1 AND key = ?2",
        params![bucket, key],
        |row| row.get(0),
    )
    .optional()
    .map_err(|e| KvError::new("get", e))
}

fn set(txn: &rusqlite::Transaction<'_>, bucket: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
    txn.execute(
        "INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
        params![bucket, key, value],
    )
    .map(|_| ())
    .map_err(|e| KvError::new("set", e))
}

fn delete(txn: &rusqlite::Transaction<'_>, bucket: &str, key: &str) -> Result<(), KvError> {
    txn.execute(
        "DELETE FROM kv WHERE bucket = ?1 AND key = ?2",
        params![bucket, key],
    )
    .map(|_| ())
    .map_err(|e| KvError::new("delete", e))
}

#[async_trait::async_trait]
impl KeyValueStore for Sqlite {
    async fn open(&self, _bucket: &str) -> Result<(), KvError> {
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run("get", move |txn| get(txn, &bucket, &key)).await
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run("set", move |txn| set(txn, &bucket, &key, &value))
            .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run("delete", move |txn| delete(txn, &bucket, &key))
            .await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let bucket = bucket.to_string();
        let keys = self
            .run("list-keys", move |txn| {
                let fail = |e: rusqlite::Error| KvError::new("list-keys", e);
                let mut statement = txn
                    .prepare("SELECT key FROM kv WHERE bucket = ?1 ORDER BY key")
                    .map_err(fail)?;
                let keys = statement
                    .query_map(params![bucket], |row| row.get::<_, String>(0))
                    .map_err(fail)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail)?;
                Ok(keys)
            })
            .await?;
        Ok(page(keys, cursor))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run("increment", move |txn| {
            let current = get(txn, &bucket, &key)?;
            let next = add(&key, counter_value(&key, current.as_deref())?, delta)?;
            set(txn, &bucket, &key, next.to_string().as_bytes())?;
            Ok(next)
        })
        .await
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        let bucket = bucket.to_string();
        // One transaction: the batch is written whole or not at all.
        self.run("set-many", move |txn| {
            entries
                .iter()
                .try_for_each(|(key, value)| set(txn, &bucket, key, value))
        })
        .await
    }

    async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), KvError> {
        let bucket = bucket.to_string();
        self.run("delete-many", move |txn| {
            keys.iter().try_for_each(|key| delete(txn, &bucket, key))
        })
        .await
    }
}
