//! SQL on a PostgreSQL server, through a pool of connections made on first use: while the
//! server is down each statement fails with an error the guest sees, and connections are made
//! again once it is back. A statement past the link's timeout is cancelled on the server.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;
use weft_manifest::Grant;

use super::pg_value::{carried as pg_carried, row_of, PgParam};
use super::{Limits, Rows, SqlDatabase, SqlError, SqlValue};
use crate::bindings::postgres::types::{PgValue, QueryError, ResultRow};
use crate::catalog::{Backend, BackendError, Opener};
use crate::settings::{typed, ConfigError};

/// SQL on PostgreSQL.
pub(super) const BACKEND: Backend<dyn SqlDatabase> = Backend {
    name: "postgres",
    images: &[],
    check: |settings| typed::<PostgresConfig>(settings)?.checked().map(|_| ()),
    open: |_, grant| open(grant),
};

/// The same backend as wasmCloud's `sqldb-postgres` provider image names it, for
/// `wasmcloud:postgres`.
pub(super) const WASMCLOUD: Backend<dyn SqlDatabase> = Backend {
    images: &["sqldb-postgres"],
    ..BACKEND
};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_POOL_SIZE: usize = 16;
/// How long a statement waits to connect before failing, so a server that is away cannot hang
/// a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresConfig {
    url: Option<String>,
    pool_size: Option<String>,
    timeout: Option<String>,
    max_rows: Option<String>,
    /// wasmCloud's provider's keys, read when there is no `url` (a `POSTGRES_PASSWORD` is best
    /// kept as `secret:KEY`).
    #[serde(rename = "POSTGRES_HOST")]
    host: Option<String>,
    #[serde(rename = "POSTGRES_PORT")]
    port: Option<String>,
    #[serde(rename = "POSTGRES_USERNAME")]
    username: Option<String>,
    #[serde(rename = "POSTGRES_PASSWORD")]
    password: Option<String>,
    #[serde(rename = "POSTGRES_DATABASE")]
    database: Option<String>,
    #[serde(rename = "POSTGRES_TLS_REQUIRED")]
    tls_required: Option<String>,
    #[serde(rename = "POSTGRES_POOL_SIZE")]
    wasmcloud_pool_size: Option<String>,
}

impl PostgresConfig {
    /// The server's config, the pool's size and the limits, checked.
    fn checked(&self) -> Result<(tokio_postgres::Config, usize, Limits), ConfigError> {
        if self
            .tls_required
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("true"))
        {
            return Err(ConfigError(
                "POSTGRES_TLS_REQUIRED: weft connects to PostgreSQL without TLS only, so far"
                    .into(),
            ));
        }
        let config = match (&self.url, &self.host) {
            (Some(url), _) => url.parse().map_err(|e| {
                ConfigError(format!(
                    "url: `{}` is not a PostgreSQL URL ({e}); use \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    weft_lattice::redact_credentials(url)
                ))
            })?,
            (None, Some(host)) => {
                let mut config = tokio_postgres::Config::new();
                config.host(host);
                if let Some(port) = &self.port {
                    config.port(port.trim().parse().map_err(|_| {
                        ConfigError(format!("POSTGRES_PORT: `{port}` is not a port"))
                    })?);
                }
                if let Some(user) = &self.username {
                    config.user(user);
                }
                if let Some(password) = &self.password {
                    config.password(password);
                }
                if let Some(database) = &self.database {
                    config.dbname(database);
                }
                config
            }
            (None, None) => DEFAULT_URL.parse().expect("the default URL parses"),
        };
        let pool_size = match self.pool_size.as_ref().or(self.wasmcloud_pool_size.as_ref()) {
            Some(text) => text.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError(format!("pool_size: `{text}` is not a positive number"))
            })?,
            None => DEFAULT_POOL_SIZE,
        };
        let limits = Limits::of(self.timeout.as_deref(), self.max_rows.as_deref())?;
        Ok((config, pool_size, limits))
    }
}

struct Postgres {
    pool: Pool,
    /// The server, credentials hidden: errors reach guests, their clients and the log.
    url: String,
    limits: Limits,
}

fn open(grant: &Grant) -> Result<Opener<dyn SqlDatabase>, BackendError> {
    let config = typed::<PostgresConfig>(&grant.settings)?;
    let (mut server, pool_size, limits) = config.checked()?;
    let url = match (config.url, config.host) {
        (Some(url), _) => url,
        (None, Some(host)) => format!(
            "postgres://{}@{host}:{}/{}",
            config.username.unwrap_or_default(),
            config.port.unwrap_or_else(|| "5432".into()),
            config.database.unwrap_or_default()
        ),
        (None, None) => DEFAULT_URL.to_string(),
    };
    server.connect_timeout(CONNECT_TIMEOUT);
    Ok((
        format!("postgres:{url}:{pool_size}:{limits:?}"),
        Box::new(move || {
            let manager = Manager::from_config(
                server,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(pool_size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(limits.timeout))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| BackendError(format!("cannot make a PostgreSQL pool: {e}")))?;
            Ok(Arc::new(Postgres {
                pool,
                url: weft_lattice::redact_credentials(&url),
                limits,
            }) as Arc<dyn SqlDatabase>)
        }),
    ))
}

#[async_trait::async_trait]
impl SqlDatabase for Postgres {
    async fn execute(&self, statement: String, params: Vec<SqlValue>) -> Result<Rows, SqlError> {
        let client = self.client().await.map_err(SqlError)?;
        let limits = self.limits;
        let failed = |e: tokio_postgres::Error| SqlError(describe(&e, &self.url));
        self.within_timeout(&client, async {
            let prepared = client.prepare_cached(&statement).await.map_err(failed)?;
            if prepared.params().len() != params.len() {
                return Err(SqlError(format!(
                    "the statement takes {} parameter(s); {} given",
                    prepared.params().len(),
                    params.len()
                )));
            }
            let columns: Vec<(String, Type)> = prepared
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().clone()))
                .collect();
            if let Some((name, ty)) = columns.iter().find(|(_, ty)| !carried(ty)) {
                return Err(SqlError(format!(
                    "column `{name}` is of type {ty}, which the SQLite interface cannot carry; \
                     cast it in the statement (`{name}::text`)"
                )));
            }
            let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
            let stream = client
                .query_raw(&prepared, bound.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(failed)?;
            pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.try_next().await.map_err(failed)? {
                if rows.len() == limits.max_rows {
                    return Err(limits.too_many_rows());
                }
                let values = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| read(&row, i, ty))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(failed)?;
                rows.push(values);
            }
            let columns = columns.into_iter().map(|(name, _)| name).collect();
            Ok(Rows { columns, rows })
        })
        .await
    }

    async fn query_pg(
        &self,
        statement: String,
        params: Vec<PgValue>,
    ) -> Result<Vec<ResultRow>, QueryError> {
        self.query_rows(statement, params).await
    }

    async fn batch(&self, statements: String) -> Result<(), QueryError> {
        let client = self.client().await.map_err(QueryError::Unexpected)?;
        self.within_timeout(&client, async {
            client
                .batch_execute(&statements)
                .await
                .map_err(|e| self.failed(&e))
        })
        .await
    }

    async fn prepare(&self, statement: String) -> Result<(), String> {
        let client = self.client().await?;
        client
            .prepare_cached(&statement)
            .await
            .map(|_| ())
            .map_err(|e| describe(&e, &self.url))
    }

    async fn exec(&self, statement: String, params: Vec<PgValue>) -> Result<u64, QueryError> {
        let client = self.client().await.map_err(QueryError::Unexpected)?;
        self.within_timeout(&client, async {
            let prepared = client
                .prepare_cached(&statement)
                .await
                .map_err(|e| self.failed(&e))?;
            let params = bound(&prepared, &params)?;
            client
                .execute_raw(&prepared, params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(|e| bind_failure(&e, &self.url).unwrap_or_else(|| self.failed(&e)))
        })
        .await
    }
}

/// PostgreSQL's own message (and its detail) when it gave one, else the client's.
fn describe(e: &tokio_postgres::Error, url: &str) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => format!("PostgreSQL at {url}: {e}"),
    }
}

/// Whether a column of type `ty` fits one of the interface's values.
fn carried(ty: &Type) -> bool {
    [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::OID,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::BYTEA,
    ]
    .contains(ty)
        || <&str as tokio_postgres::types::FromSql>::accepts(ty)
}

fn read(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Result<SqlValue, tokio_postgres::Error> {
    fn or_null<T>(value: Option<T>, f: impl FnOnce(T) -> SqlValue) -> SqlValue {
        value.map_or(SqlValue::Null, f)
    }
    Ok(match *ty {
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?, |b| {
            SqlValue::Integer(b.into())
        }),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?, |n| {
            SqlValue::Integer(n.into())
        }),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?, |n| {
            SqlValue::Integer(n.into())
        }),
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?, SqlValue::Integer),
        Type::OID => or_null(row.try_get::<_, Option<u32>>(i)?, |n| {
            SqlValue::Integer(n.into())
        }),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, |r| {
            SqlValue::Real(r.into())
        }),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, SqlValue::Real),
        Type::BYTEA => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?, SqlValue::Blob),
        _ => or_null(row.try_get::<_, Option<String>>(i)?, SqlValue::Text),
    })
}

/// A value bound to a parameter of whatever type PostgreSQL inferred for it, converted when
/// that loses nothing, refused naming both types when not.
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let refused = |what: &str| -> Box<dyn std::error::Error + Sync + Send> {
            format!("a parameter of type {ty} cannot take {what}").into()
        };
        match (self.0, ty) {
            (SqlValue::Null, _) => Ok(IsNull::Yes),
            (SqlValue::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (SqlValue::Integer(i), &Type::INT4) => i32::try_from(*i)
                .map_err(|_| refused(&format!("the integer {i}")))?
                .to_sql(ty, out),
            (SqlValue::Integer(i), &Type::INT2) => i16::try_from(*i)
                .map_err(|_| refused(&format!("the integer {i}")))?
                .to_sql(ty, out),
            (SqlValue::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (SqlValue::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (SqlValue::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (SqlValue::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
            (SqlValue::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
            (SqlValue::Text(t), _) if <&str as ToSql>::accepts(ty) => t.as_str().to_sql(ty, out),
            (SqlValue::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (SqlValue::Integer(_), _) => Err(refused("an integer")),
            (SqlValue::Real(_), _) => Err(refused("a real")),
            (SqlValue::Text(_), _) => Err(refused("text")),
            (SqlValue::Blob(_), _) => Err(refused("a blob")),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Postgres {
    /// A connection from the pool, or why there is none.
    async fn client(&self) -> Result<deadpool_postgres::Object, String> {
        self.pool
            .get()
            .await
            .map_err(|e| format!("PostgreSQL at {} is unreachable: {e}", self.url))
    }

    /// Runs `work` on `client` within the link's timeout, cancelling it on the server past it.
    async fn within_timeout<T, E: From<SqlError>>(
        &self,
        client: &deadpool_postgres::Object,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(answer) => answer,
            Err(_) => {
                let _ = client.cancel_token().cancel_query(NoTls).await;
                Err(self.limits.timed_out().into())
            }
        }
    }

    fn failed(&self, e: &tokio_postgres::Error) -> QueryError {
        match e.as_db_error() {
            Some(_) => QueryError::InvalidQuery(describe(e, &self.url)),
            None => QueryError::Unexpected(describe(e, &self.url)),
        }
    }
}

/// The parameters of `prepared`, checked against what it takes.
fn bound<'a>(
    prepared: &tokio_postgres::Statement,
    params: &'a [PgValue],
) -> Result<Vec<PgParam<'a>>, QueryError> {
    if prepared.params().len() != params.len() {
        return Err(QueryError::InvalidParams(format!(
            "the statement takes {} parameter(s); {} given",
            prepared.params().len(),
            params.len()
        )));
    }
    Ok(params.iter().map(PgParam).collect())
}

/// A failure to bind a parameter is the guest's (invalid params); others are the query's.
fn bind_failure(e: &tokio_postgres::Error, url: &str) -> Option<QueryError> {
    let text = e.to_string();
    (e.as_db_error().is_none() && text.contains("serializing parameter"))
        .then(|| QueryError::InvalidParams(describe(e, url)))
}

impl Postgres {
    async fn query_rows(
        &self,
        statement: String,
        params: Vec<PgValue>,
    ) -> Result<Vec<ResultRow>, QueryError> {
        let client = self.client().await.map_err(QueryError::Unexpected)?;
        let limits = self.limits;
        self.within_timeout(&client, async {
            let prepared = client
                .prepare_cached(&statement)
                .await
                .map_err(|e| self.failed(&e))?;
            if let Some(column) = prepared.columns().iter().find(|c| !pg_carried(c.type_())) {
                return Err(QueryError::Unexpected(format!(
                    "column `{}` is of type {}, which is not carried yet; cast it in the \
                     statement (`{}::text`)",
                    column.name(),
                    column.type_(),
                    column.name()
                )));
            }
            let params = bound(&prepared, &params)?;
            let stream = client
                .query_raw(&prepared, params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(|e| bind_failure(&e, &self.url).unwrap_or_else(|| self.failed(&e)))?;
            pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.try_next().await.map_err(|e| self.failed(&e))? {
                if rows.len() == limits.max_rows {
                    return Err(limits.too_many_rows().into());
                }
                rows.push(row_of(&row).map_err(|e| self.failed(&e))?);
            }
            Ok(rows)
        })
        .await
    }
}

/// A statement's failure outside PostgreSQL itself (a limit), as `wasmcloud:postgres` says it.
impl From<SqlError> for QueryError {
    fn from(e: SqlError) -> Self {
        QueryError::Unexpected(e.0)
    }
}
