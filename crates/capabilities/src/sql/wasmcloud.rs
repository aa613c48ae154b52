//! `wasmcloud:postgres/{query,prepared}@0.1.1-draft` for guests, on the link's backend.

use super::{controls_transactions, NO_TRANSACTIONS, POSTGRES};
use crate::bindings::postgres::types::{
    PgValue, PreparedStatementExecError, QueryError, ResultRow, StatementPrepareError,
};
use crate::bindings::postgres::{prepared, query, types};
use crate::CapabilityCtxView;

impl types::Host for CapabilityCtxView<'_> {}

impl query::Host for CapabilityCtxView<'_> {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<PgValue>,
    ) -> wasmtime::Result<Result<Vec<ResultRow>, QueryError>> {
        let db = match self.ctx.linked(&POSTGRES) {
            Ok(db) => db,
            Err(why) => return Ok(Err(QueryError::Unexpected(why))),
        };
        if controls_transactions(&statement) {
            return Ok(Err(QueryError::InvalidQuery(NO_TRANSACTIONS.into())));
        }
        Ok(db.query_pg(statement, params).await)
    }

    async fn query_batch(
        &mut self,
        statements: String,
    ) -> wasmtime::Result<Result<(), QueryError>> {
        let db = match self.ctx.linked(&POSTGRES) {
            Ok(db) => db,
            Err(why) => return Ok(Err(QueryError::Unexpected(why))),
        };
        // A batch runs on one connection, so BEGIN … COMMIT inside it is its own transaction.
        Ok(db.batch(statements).await)
    }
}

impl prepared::Host for CapabilityCtxView<'_> {
    async fn prepare(
        &mut self,
        statement: String,
    ) -> wasmtime::Result<Result<String, StatementPrepareError>> {
        let db = match self.ctx.linked(&POSTGRES) {
            Ok(db) => db,
            Err(why) => return Ok(Err(StatementPrepareError::Unexpected(why))),
        };
        // The token is the statement itself: the pool prepares it once per connection.
        Ok(db
            .prepare(statement.clone())
            .await
            .map(|()| statement)
            .map_err(StatementPrepareError::Unexpected))
    }

    async fn exec(
        &mut self,
        token: String,
        params: Vec<PgValue>,
    ) -> wasmtime::Result<Result<u64, PreparedStatementExecError>> {
        let db = match self.ctx.linked(&POSTGRES) {
            Ok(db) => db,
            Err(why) => return Ok(Err(PreparedStatementExecError::Unexpected(why))),
        };
        if controls_transactions(&token) {
            return Ok(Err(PreparedStatementExecError::QueryError(
                QueryError::InvalidQuery(NO_TRANSACTIONS.into()),
            )));
        }
        Ok(db
            .exec(token, params)
            .await
            .map_err(PreparedStatementExecError::QueryError))
    }
}
