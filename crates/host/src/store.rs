//! The embedded state store: deployed app versions, kept in redb inside the state dir, so a
//! restarted host serves the same apps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Current version of each app: app name → version.
const CURRENT: TableDefinition<'_, &str, &str> = TableDefinition::new("current");
/// Every stored version: "app\0version" → JSON of [`StoredApp`].
const VERSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("versions");

/// One version of an app as deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApp {
    pub name: String,
    pub version: String,
    /// The manifest text as the user wrote it.
    pub manifest: String,
    /// Where the manifest came from, for messages.
    pub origin: String,
    /// Image reference as written → sha256 of the component bytes.
    pub images: BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Component → its concurrent-instance cap on this host, when a lattice placement gave it
    /// a share of the manifest's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caps: BTreeMap<String, u32>,
    /// The app as validated and locked at deploy; absent in state written before weft stored
    /// it, which [`StoredApp::locked`] parses from `manifest` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<weft_manifest::App>,
}

impl StoredApp {
    /// This record without its locked app: what a host keeps in memory beside the app it runs,
    /// so a thousand apps do not each hold their app twice.
    pub(crate) fn without_app(mut self) -> Self {
        self.app = None;
        self
    }

    /// The locked app: as stored, or parsed and locked again from state of an older weft.
    pub fn locked(&self) -> Result<weft_manifest::App, weft_manifest::ManifestError> {
        match &self.app {
            Some(app) => Ok(app.clone()),
            None => {
                weft_manifest::parse_app(&self.manifest, &self.origin, weft_capabilities::catalog())
            }
        }
    }
}

/// Why the state store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    path: String,
    message: String,
}

/// The redb database of app versions.
pub struct StateStore {
    db: Database,
    path: String,
}

fn key(app: &str, version: &str) -> String {
    format!("{app}\0{version}")
}

/// Every stored version of `app` in `versions`: its key and its JSON.
fn versions_of(
    versions: &impl ReadableTable<&'static str, &'static [u8]>,
    app: &str,
) -> Result<Vec<(String, Vec<u8>)>, redb::StorageError> {
    let prefix = key(app, "");
    let mut found = Vec::new();
    for entry in versions.range(prefix.as_str()..)? {
        let (k, v) = entry?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        found.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(found)
}

impl StateStore {
    /// Opens (or creates) the store at `path`, compacting it: pages freed by versions pruned
    /// since the last start are given back to the file system.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let mut db = Database::create(path).map_err(|e| StoreError {
            path: shown.clone(),
            message: format!(
                "{e}; is another `weft up` using this state dir? (use --state-dir to pick another)"
            ),
        })?;
        if let Err(e) = db.compact() {
            // Only the file's size is at stake; the data is whole either way.
            tracing::warn!(path = %shown, "cannot compact the state store: {e}");
        }
        let store = StateStore { db, path: shown };
        // Create the tables up front so read transactions never meet a missing table.
        store.write(|txn| {
            txn.open_table(CURRENT)?;
            txn.open_table(VERSIONS)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        f(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// Records `app` as a version and makes it current, in one transaction, keeping the app's
    /// `keep` most recent versions (the current one always) and dropping older ones; returns
    /// how many it dropped.
    pub fn put_current(&self, app: &StoredApp, keep: usize) -> Result<usize, StoreError> {
        self.put_current_many(&[app], keep)
    }

    /// [`put_current`](Self::put_current) for many apps in one transaction: one commit (one
    /// sync to disk) however many apps, all stored or none.
    pub fn put_current_many(&self, apps: &[&StoredApp], keep: usize) -> Result<usize, StoreError> {
        let mut dropped = 0;
        let records: Vec<Vec<u8>> = apps
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        self.write(|txn| {
            let mut versions = txn.open_table(VERSIONS)?;
            let mut current = txn.open_table(CURRENT)?;
            for (app, json) in apps.iter().zip(&records) {
                versions.insert(key(&app.name, &app.version).as_str(), json.as_slice())?;
                current.insert(app.name.as_str(), app.version.as_str())?;
                let mut older: Vec<(u64, String)> = Vec::new();
                for (k, v) in versions_of(&versions, &app.name)? {
                    let Ok(stored) = serde_json::from_slice::<StoredApp>(&v) else {
                        continue;
                    };
                    if stored.version != app.version {
                        older.push((stored.deployed_at, k));
                    }
                }
                older.sort();
                let excess = (older.len() + 1).saturating_sub(keep.max(1));
                for (_, k) in older.into_iter().take(excess) {
                    versions.remove(k.as_str())?;
                }
                dropped += excess;
            }
            Ok(())
        })?;
        Ok(dropped)
    }

    /// The component digests some stored version of some app uses.
    pub fn referenced_digests(&self) -> Result<BTreeSet<String>, StoreError> {
        /// Only the images of a stored version: its manifest and locked app are skipped over.
        #[derive(Deserialize)]
        struct Images {
            images: BTreeMap<String, String>,
        }
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let versions = txn.open_table(VERSIONS).map_err(|e| self.err(e))?;
        let mut digests = BTreeSet::new();
        for entry in versions.iter().map_err(|e| self.err(e))? {
            let (_, v) = entry.map_err(|e| self.err(e))?;
            let stored: Images = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            digests.extend(stored.images.into_values());
        }
        Ok(digests)
    }

    /// Forgets an app: its current pointer and every stored version.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let mut existed = false;
        self.write(|txn| {
            existed = txn.open_table(CURRENT)?.remove(name)?.is_some();
            let mut versions = txn.open_table(VERSIONS)?;
            for (k, _) in versions_of(&versions, name)? {
                versions.remove(k.as_str())?;
            }
            Ok(())
        })?;
        Ok(existed)
    }

    /// The current version of every app.
    pub fn current_apps(&self) -> Result<Vec<StoredApp>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let current = txn.open_table(CURRENT).map_err(|e| self.err(e))?;
        let versions = txn.open_table(VERSIONS).map_err(|e| self.err(e))?;
        let mut apps = Vec::new();
        for entry in current.iter().map_err(|e| self.err(e))? {
            let (name, version) = entry.map_err(|e| self.err(e))?;
            let record = versions
                .get(key(name.value(), version.value()).as_str())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| {
                    self.err(format!("app {} lost its current version", name.value()))
                })?;
            apps.push(serde_json::from_slice(record.value()).map_err(|e| self.err(e))?);
        }
        Ok(apps)
    }

    /// The versions stored for one app, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<StoredApp>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let versions = txn.open_table(VERSIONS).map_err(|e| self.err(e))?;
        let mut out: Vec<StoredApp> = Vec::new();
        for (_, v) in versions_of(&versions, name).map_err(|e| self.err(e))? {
            out.push(serde_json::from_slice(&v).map_err(|e| self.err(e))?);
        }
        out.sort_by_key(|a| a.deployed_at);
        Ok(out)
    }

    /// One stored version, if present.
    pub fn version(&self, name: &str, version: &str) -> Result<Option<StoredApp>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let versions = txn.open_table(VERSIONS).map_err(|e| self.err(e))?;
        let record = versions
            .get(key(name, version).as_str())
            .map_err(|e| self.err(e))?;
        record
            .map(|r| serde_json::from_slice(r.value()).map_err(|e| self.err(e)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, version: &str, at: u64) -> StoredApp {
        StoredApp {
            name: name.into(),
            version: version.into(),
            manifest: "m".into(),
            origin: "o".into(),
            images: BTreeMap::new(),
            deployed_at: at,
            caps: BTreeMap::new(),
            app: None,
        }
    }

    /// The versions kept of `name`, oldest first.
    fn versions_of_app(store: &StateStore, name: &str) -> Vec<String> {
        store
            .versions(name)
            .unwrap()
            .into_iter()
            .map(|a| a.version)
            .collect()
    }

    #[test]
    fn versions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = StateStore::open(&path).unwrap();
            store.put_current(&app("a", "v1", 1), 10).unwrap();
            store.put_current(&app("a", "v2", 2), 10).unwrap();
            store.put_current(&app("ab", "v1", 3), 10).unwrap();
        }
        let store = StateStore::open(&path).unwrap();
        let current = store.current_apps().unwrap();
        assert_eq!(current, vec![app("a", "v2", 2), app("ab", "v1", 3)]);
        let versions = versions_of_app(&store, "a");
        assert_eq!(versions, ["v1", "v2"]);
        assert!(store.remove("a").unwrap());
        assert!(store.versions("a").unwrap().is_empty());
        assert_eq!(store.versions("ab").unwrap().len(), 1);
        assert!(!store.remove("a").unwrap());
    }

    #[test]
    fn only_the_last_versions_are_kept_and_reopening_gives_the_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let big = |version: u64| StoredApp {
            manifest: format!("{version}").repeat(20_000),
            images: BTreeMap::from([("x.wasm".into(), format!("digest-{version}"))]),
            ..app("a", &format!("v{version}"), version)
        };
        let grown = {
            let store = StateStore::open(&path).unwrap();
            for version in 1..=300 {
                store.put_current(&big(version), 3).unwrap();
            }
            store.put_current(&app("b", "v1", 1), 3).unwrap();
            let kept = versions_of_app(&store, "a");
            assert_eq!(kept, ["v298", "v299", "v300"]);
            assert_eq!(
                store.referenced_digests().unwrap(),
                BTreeSet::from([
                    "digest-298".into(),
                    "digest-299".into(),
                    "digest-300".into()
                ])
            );
            std::fs::metadata(&path).unwrap().len()
        };
        let store = StateStore::open(&path).unwrap();
        let compacted = std::fs::metadata(&path).unwrap().len();
        assert!(
            compacted < grown,
            "{compacted} bytes after compaction, {grown} before"
        );
        assert_eq!(store.current_apps().unwrap().len(), 2);
        assert_eq!(store.versions("a").unwrap().len(), 3);
    }

    #[test]
    fn many_apps_go_in_one_transaction_and_keep_their_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = StateStore::open(&path).unwrap();
            store.put_current(&app("a", "v1", 1), 2).unwrap();
            store.put_current(&app("a", "v2", 2), 2).unwrap();
            let batch: Vec<StoredApp> = (0..500)
                .map(|i| app(&format!("app{i}"), "v1", 3))
                .chain([app("a", "v3", 3)])
                .collect();
            let batch: Vec<&StoredApp> = batch.iter().collect();
            assert_eq!(store.put_current_many(&batch, 2).unwrap(), 1);
        }
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.current_apps().unwrap().len(), 501);
        let kept = versions_of_app(&store, "a");
        assert_eq!(kept, ["v2", "v3"]);
        assert_eq!(
            store.version("app499", "v1").unwrap(),
            Some(app("app499", "v1", 3))
        );
    }
}
