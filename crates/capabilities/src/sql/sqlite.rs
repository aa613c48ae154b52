//! SQL in an embedded SQLite file, one per capability (`<state>/sql/<app>/<capability>.db`
//! unless `path` says), in WAL mode; the file can be read with any SQLite tool. One connection
//! per file, statements one at a time off the async threads; a statement past the link's
//! timeout is interrupted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode};
use weft_manifest::Grant;

use super::{Limits, Rows, SqlDatabase, SqlError, SqlValue};
use crate::catalog::{Backend, BackendError, Opener, Placement};
use crate::settings::{state_file, typed, ConfigError};

/// SQL in a SQLite file.
pub(super) const BACKEND: Backend<dyn SqlDatabase> = Backend {
    name: "sqlite",
    images: &[],
    check: |settings| typed::<SqliteConfig>(settings)?.limits().map(|_| ()),
    open,
};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqliteConfig {
    path: Option<PathBuf>,
    timeout: Option<String>,
    max_rows: Option<String>,
}

impl SqliteConfig {
    fn limits(&self) -> Result<Limits, ConfigError> {
        Limits::of(self.timeout.as_deref(), self.max_rows.as_deref())
    }
}

struct Sqlite {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    limits: Limits,
}

fn open(at: &Placement<'_>, grant: &Grant) -> Result<Opener<dyn SqlDatabase>, BackendError> {
    let config = typed::<SqliteConfig>(&grant.settings)?;
    let limits = config.limits()?;
    let path = config
        .path
        .unwrap_or_else(|| state_file(at, grant, "db"));
    Ok((
        format!("sqlite:{}:{limits:?}", path.display()),
        Box::new(move || {
            let connection = crate::sqlite_file::open(&path, "")?;
            Ok(Arc::new(Sqlite {
                connection: Arc::new(Mutex::new(connection)),
                path,
                limits,
            }) as Arc<dyn SqlDatabase>)
        }),
    ))
}

#[async_trait::async_trait]
impl SqlDatabase for Sqlite {
    async fn execute(&self, statement: String, params: Vec<SqlValue>) -> Result<Rows, SqlError> {
        let connection = self.connection.clone();
        let limits = self.limits;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + limits.timeout;
            let fail = |e: rusqlite::Error| SqlError(format!("{}: {e}", path.display()));
            connection
                .progress_handler(1000, Some(move || Instant::now() > deadline))
                .map_err(fail)?;
            let result = run(&connection, &statement, params, &limits);
            connection
                .progress_handler(0, None::<fn() -> bool>)
                .map_err(fail)?;
            if !connection.is_autocommit() {
                // Other instances share this connection: a transaction must not outlive a call.
                let _ = connection.execute_batch("ROLLBACK");
                return Err(SqlError(super::NO_TRANSACTIONS.to_string()));
            }
            result.map_err(|e| match e {
                Failure::Sql(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == ErrorCode::OperationInterrupted =>
                {
                    limits.timed_out()
                }
                Failure::Sql(e) => fail(e),
                Failure::Refused(e) => e,
            })
        })
        .await
        .map_err(|e| SqlError(format!("the statement's task failed: {e}")))?
    }
}

enum Failure {
    Sql(rusqlite::Error),
    Refused(SqlError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

fn run(
    connection: &Connection,
    statement: &str,
    params: Vec<SqlValue>,
    limits: &Limits,
) -> Result<Rows, Failure> {
    let mut prepared = connection.prepare(statement)?;
    let mut needed = 0;
    for index in 1..=prepared.parameter_count() {
        // `$N` and `?N` name the N-th value wherever they stand; a bare `?` takes the next.
        let position = match prepared.parameter_name(index) {
            None => index,
            Some(name) => name[1..]
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0 && name.starts_with(['$', '?']))
                .ok_or_else(|| {
                    Failure::Refused(SqlError(format!(
                        "parameter `{name}`: name parameters by position, $1, $2…"
                    )))
                })?,
        };
        needed = needed.max(position);
        let value = params.get(position - 1).cloned().unwrap_or(SqlValue::Null);
        prepared.raw_bind_parameter(index, value_of(value))?;
    }
    if params.len() != needed {
        return Err(Failure::Refused(SqlError(format!(
            "the statement takes {needed} parameter(s); {} given",
            params.len()
        ))));
    }
    let columns: Vec<String> = prepared.column_names().map(str::to_string).collect();
    let mut rows = Vec::new();
    let mut cursor = prepared.raw_query();
    while let Some(row) = cursor.next()? {
        if rows.len() == limits.max_rows {
            return Err(Failure::Refused(limits.too_many_rows()));
        }
        let values = (0..columns.len())
            .map(|i| row.get_ref(i).map(from_ref))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

fn value_of(value: SqlValue) -> Value {
    match value {
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(r) => Value::Real(r),
        SqlValue::Text(t) => Value::Text(t),
        SqlValue::Blob(b) => Value::Blob(b),
        SqlValue::Null => Value::Null,
    }
}

fn from_ref(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn database(limits: Limits) -> Sqlite {
        Sqlite {
            connection: Arc::new(Mutex::new(Connection::open_in_memory().unwrap())),
            path: PathBuf::from(":memory:"),
            limits,
        }
    }

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(10),
        max_rows: 100,
    };

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_wherever_they_stand() {
        let db = database(LIMITS);
        let rows = db
            .execute(
                "SELECT $2 AS second, $1 AS first, $2 || '!' AS again".into(),
                vec![SqlValue::Integer(1), SqlValue::Text("two".into())],
            )
            .await
            .unwrap();
        assert_eq!(rows.columns, ["second", "first", "again"]);
        assert_eq!(
            rows.rows,
            [[
                SqlValue::Text("two".into()),
                SqlValue::Integer(1),
                SqlValue::Text("two!".into())
            ]]
        );
        let missing = db
            .execute("SELECT $1, $2".into(), vec![SqlValue::Null])
            .await
            .unwrap_err();
        assert!(missing.0.contains("takes 2 parameter(s); 1 given"), "{missing}");
        let named = db
            .execute("SELECT :name".into(), vec![SqlValue::Null])
            .await
            .unwrap_err();
        assert!(named.0.contains("by position"), "{named}");
    }

    #[tokio::test]
    async fn a_statement_past_its_timeout_is_interrupted_and_the_next_one_runs() {
        let db = database(Limits {
            timeout: Duration::from_millis(200),
            ..LIMITS
        });
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let started = Instant::now();
        let err = db.execute(endless.into(), vec![]).await.unwrap_err();
        assert!(err.0.contains("ran longer than 200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let rows = db.execute("SELECT 1".into(), vec![]).await.unwrap();
        assert_eq!(rows.rows, [[SqlValue::Integer(1)]]);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_and_refused() {
        let db = database(LIMITS);
        db.execute("CREATE TABLE t (x INTEGER)".into(), vec![])
            .await
            .unwrap();
        let err = db.execute("BEGIN".into(), vec![]).await.unwrap_err();
        assert!(err.0.contains("cannot span calls"), "{err}");
        db.execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await
            .unwrap();
        let rows = db.execute("SELECT x FROM t".into(), vec![]).await.unwrap();
        assert_eq!(rows.rows, [[SqlValue::Integer(1)]]);
    }
}
