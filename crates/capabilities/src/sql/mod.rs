//! SQL databases, granted per link: an embedded SQLite file per capability by default, or a
//! PostgreSQL server. Guests use Spin's SQLite interface (`fermyon:spin/sqlite@2.0.0`): one
//! statement at a time, parameters always bound, never spliced into the text. Each link limits
//! how long a statement may run (`timeout`) and how many rows it may return (`max_rows`);
//! every failure reaches the guest as an error value, never a trap.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::sqlite as spin;
use crate::bindings::postgres::types::{PgValue, QueryError, ResultRow};
use crate::catalog::Kind;
use crate::settings::ConfigError;
use crate::CapabilityCtxView;

/// How long a statement may run when the link does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many rows a statement may return when the link does not say.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// One value, bound as a parameter or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// What a statement returned: its columns and rows (none for a statement that returns none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// Why a statement failed, for the guest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

/// A link's limits on each statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    pub timeout: Duration,
    pub max_rows: usize,
}

impl Limits {
    /// The limits a link's `timeout` and `max_rows` keys set, defaults for those absent.
    pub(crate) fn of(timeout: Option<&str>, max_rows: Option<&str>) -> Result<Self, ConfigError> {
        let timeout = match timeout {
            Some(text) => weft_manifest::parse_duration(text)
                .map_err(|e| ConfigError(format!("timeout: {e}")))?,
            None => DEFAULT_TIMEOUT,
        };
        let max_rows = match max_rows {
            Some(text) => text.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError(format!(
                    "max_rows: `{text}` is not a positive number of rows"
                ))
            })?,
            None => DEFAULT_MAX_ROWS,
        };
        Ok(Limits { timeout, max_rows })
    }

    /// The error of a statement that returned more rows than allowed.
    pub(crate) fn too_many_rows(&self) -> SqlError {
        SqlError(format!(
            "the statement returned more than {} rows, this link's max_rows; page through \
             the result with LIMIT and OFFSET, or raise max_rows",
            self.max_rows
        ))
    }

    /// The error of a statement that ran past the timeout.
    pub(crate) fn timed_out(&self) -> SqlError {
        SqlError(format!(
            "the statement ran longer than {:?}, this link's timeout, and was cancelled",
            self.timeout
        ))
    }
}

/// Why a statement that begins, ends or marks a transaction is refused.
pub(crate) const NO_TRANSACTIONS: &str =
    "each statement runs in a transaction of its own, and instances share connections, so a \
     transaction cannot span calls (BEGIN, COMMIT, ROLLBACK, SAVEPOINT); write the work as one \
     statement (INSERT … SELECT, a CTE, ON CONFLICT)";

/// Whether `statement` begins, ends or marks a transaction.
fn controls_transactions(statement: &str) -> bool {
    let first = statement
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "ABORT"
    )
}

/// Said by a backend asked for `wasmcloud:postgres`, which only PostgreSQL serves.
const ONLY_POSTGRES: &str = "wasmcloud:postgres is served by the postgres backend only";

/// One database.
#[async_trait::async_trait]
pub trait SqlDatabase: Send + Sync + 'static {
    /// Runs one statement with `params` bound to `$1`, `$2`… (SQLite: also `?`), within the
    /// link's limits.
    async fn execute(&self, statement: String, params: Vec<SqlValue>) -> Result<Rows, SqlError>;

    /// `wasmcloud:postgres`'s query: one statement, values in PostgreSQL's own types.
    async fn query_pg(
        &self,
        statement: String,
        params: Vec<PgValue>,
    ) -> Result<Vec<ResultRow>, QueryError> {
        let _ = (statement, params);
        Err(QueryError::Unexpected(ONLY_POSTGRES.into()))
    }

    /// Several statements with no parameters, e.g. a migration.
    async fn batch(&self, statements: String) -> Result<(), QueryError> {
        let _ = statements;
        Err(QueryError::Unexpected(ONLY_POSTGRES.into()))
    }

    /// Checks that `statement` prepares.
    async fn prepare(&self, statement: String) -> Result<(), String> {
        let _ = statement;
        Err(ONLY_POSTGRES.into())
    }

    /// Runs a prepared statement; returns the rows it affected.
    async fn exec(&self, statement: String, params: Vec<PgValue>) -> Result<u64, QueryError> {
        let _ = (statement, params);
        Err(QueryError::Unexpected(ONLY_POSTGRES.into()))
    }
}

crate::catalog::backends!(dyn SqlDatabase: sqlite, postgres);
mod pg_value;
mod wasmcloud;

/// `wasmcloud:postgres`'s backends: PostgreSQL, standing for wasmCloud's `sqldb-postgres`.
const WASMCLOUD_BACKENDS: &[crate::catalog::Backend<dyn SqlDatabase>] = &[postgres::WASMCLOUD];

/// The SQL capability: `fermyon:spin/sqlite` granted by a link to it.
pub static SQL: Kind<dyn SqlDatabase> = Kind {
    name: "sql",
    namespace: "fermyon",
    package: "spin",
    interfaces: &["sqlite"],
    own_keys: &[],
    backends: BACKENDS,
    delivery: None,
};

/// wasmCloud's PostgreSQL capability: `wasmcloud:postgres/{query,prepared}@0.1.1-draft`
/// granted by a link to a `weft:postgres` node or wasmCloud's `sqldb-postgres` provider image.
pub static POSTGRES: Kind<dyn SqlDatabase> = Kind {
    name: "postgres",
    namespace: "wasmcloud",
    package: "postgres",
    interfaces: &["query", "prepared", "types"],
    own_keys: &[],
    backends: WASMCLOUD_BACKENDS,
    delivery: None,
};

/// An open connection: the database of one link.
pub struct Connection(Arc<dyn SqlDatabase>);

impl spin::HostConnection for CapabilityCtxView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, spin::Error>> {
        let name = if database.is_empty() {
            weft_manifest::DEFAULT_LINK_NAME
        } else {
            &database
        };
        match self.ctx.linked_as(&SQL, name) {
            Ok(db) => Ok(Ok(self.table.push(Connection(db))?)),
            Err(why) => {
                // The interface's error carries no text: the reason goes to the log.
                tracing::warn!(workload = %self.ctx.grants.workload, "sqlite open(\"{database}\"): {why}");
                Ok(Err(spin::Error::NoSuchDatabase))
            }
        }
    }

    async fn execute(
        &mut self,
        this: Resource<Connection>,
        statement: String,
        parameters: Vec<spin::Value>,
    ) -> wasmtime::Result<Result<spin::QueryResult, spin::Error>> {
        let db = self.table.get(&this)?.0.clone();
        if controls_transactions(&statement) {
            return Ok(Err(spin::Error::Io(NO_TRANSACTIONS.to_string())));
        }
        let params = parameters.into_iter().map(SqlValue::from).collect();
        Ok(db
            .execute(statement, params)
            .await
            .map(|rows| spin::QueryResult {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|values| spin::RowResult {
                        values: values.into_iter().map(spin::Value::from).collect(),
                    })
                    .collect(),
            })
            .map_err(|e| spin::Error::Io(e.0)))
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl spin::Host for CapabilityCtxView<'_> {}

impl From<spin::Value> for SqlValue {
    fn from(value: spin::Value) -> Self {
        match value {
            spin::Value::Integer(i) => SqlValue::Integer(i),
            spin::Value::Real(r) => SqlValue::Real(r),
            spin::Value::Text(t) => SqlValue::Text(t),
            spin::Value::Blob(b) => SqlValue::Blob(b),
            spin::Value::Null => SqlValue::Null,
        }
    }
}

impl From<SqlValue> for spin::Value {
    fn from(value: SqlValue) -> Self {
        match value {
            SqlValue::Integer(i) => spin::Value::Integer(i),
            SqlValue::Real(r) => spin::Value::Real(r),
            SqlValue::Text(t) => spin::Value::Text(t),
            SqlValue::Blob(b) => spin::Value::Blob(b),
            SqlValue::Null => spin::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::controls_transactions;

    #[test]
    fn transaction_control_is_told_from_other_statements() {
        assert!(controls_transactions("BEGIN"));
        assert!(controls_transactions("  begin transaction;"));
        assert!(controls_transactions("COMMIT"));
        assert!(controls_transactions("savepoint a"));
        assert!(!controls_transactions("SELECT 'BEGIN'"));
        assert!(!controls_transactions("INSERT INTO beginnings VALUES (1)"));
    }
}
