//! A SQLite file as weft keeps one (key-value's `sqlite` backend, SQL's): its directory made,
//! WAL mode, every commit synced, and a wait for another process's lock instead of an error.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::catalog::BackendError;

/// How long a statement waits for another process holding the file's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (or creates) the file at `path` and runs `setup` on it.
pub(crate) fn open(path: &Path, setup: &str) -> Result<Connection, BackendError> {
    let fail =
        |e: &dyn std::fmt::Display| BackendError(format!("cannot open {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let connection = Connection::open(path).map_err(|e| fail(&e))?;
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .and_then(|()| connection.busy_timeout(BUSY_TIMEOUT))
        .and_then(|()| connection.execute_batch(setup))
        .map_err(|e| fail(&e))?;
    Ok(connection)
}
