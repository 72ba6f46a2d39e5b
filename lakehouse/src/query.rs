//! SQL over the lake, with DataFusion: read-only statements only.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::schema::TableKind;
use crate::table::LakeTable;

/// Statements a query may run: no DDL (`CREATE EXTERNAL TABLE` included), no DML
/// (`COPY` included), no `SET`, so SQL can never touch a file the lake does not own.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Turns a DataFusion error into a lakehouse error that says whose fault it is.
pub fn from_datafusion(error: DataFusionError) -> Error {
    let message = error.to_string();
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => Error::QueryLimit(message),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => Error::Storage(message),
        _ => Error::Query(message),
    }
}

/// Plans and runs SQL against the latest committed state of every table.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    tables: BTreeMap<TableKind, Arc<LakeTable>>,
}

impl QueryEngine {
    pub fn new(tables: BTreeMap<TableKind, Arc<LakeTable>>) -> QueryEngine {
        QueryEngine { tables }
    }

    /// A session with every table registered at its latest version.
    pub async fn context(&self) -> Result<SessionContext> {
        let mut config = SessionConfig::new().with_information_schema(true);
        {
            let parquet = &mut config.options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.reorder_filters = true;
            parquet.enable_page_index = true;
            parquet.bloom_filter_on_read = true;
        }
        let ctx = SessionContext::new_with_config(config);
        // Table functions that generate rows from nothing are a way to exhaust memory.
        ctx.deregister_udtf("generate_series");
        ctx.deregister_udtf("range");
        for (kind, table) in &self.tables {
            let delta = table.latest().await?;
            delta.update_datafusion_session(&ctx.state())?;
            let provider = delta.table_provider().await.map_err(from_datafusion)?;
            ctx.register_table(kind.name(), provider)
                .map_err(from_datafusion)?;
        }
        Ok(ctx)
    }

    /// Plans `sql` (checking it is read-only) without running it.
    pub async fn plan(&self, sql: &str) -> Result<DataFrame> {
        let ctx = self.context().await?;
        ctx.sql_with_options(sql, read_only())
            .await
            .map_err(from_datafusion)
    }

    /// The schema `sql` returns.
    pub async fn schema(&self, sql: &str) -> Result<SchemaRef> {
        let frame = self.plan(sql).await?;
        Ok(Arc::clone(frame.schema().inner()))
    }

    /// Runs `sql` and streams its result.
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let frame = self.plan(sql).await?;
        frame.execute_stream().await.map_err(from_datafusion)
    }
}
