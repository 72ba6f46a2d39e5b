//! Arrow FlightSQL over the lake.
//!
//! A statement handle is the SQL text itself, as the `micromegas` Python client expects
//! (it calls `DoGet` directly with a `TicketStatementQuery` holding SQL, and re-runs a
//! prepared statement's handle as SQL), so any node can run any ticket.

mod params;

use datafusion::error::DataFusionError;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult, Nullable,
    ProstMessageExt, Searchable, SqlInfo, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tarn_lakehouse::error::Error as LakeError;
use tarn_lakehouse::query::{QueryEngine, QueryOptions, TimeRange, from_datafusion};
use tonic::{Request, Response, Status};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The gRPC status of a lakehouse error.
pub fn status_of(error: LakeError) -> Status {
    let message = error.to_string();
    match error {
        LakeError::Query(_) => Status::invalid_argument(message),
        LakeError::QueryLimit(_) => Status::resource_exhausted(message),
        LakeError::Busy { .. } | LakeError::Catalog(_) | LakeError::Storage(_) => {
            Status::unavailable(message)
        }
        LakeError::InvalidBatch(_) | LakeError::Config(_) => Status::internal(message),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(bytes)
        .map_err(|e| Status::invalid_argument(format!("handle is not UTF-8 SQL: {e}")))
}

/// A FlightInfo whose one endpoint's ticket is `command` (dispatched back to `do_get_*`).
fn flight_info<M: ProstMessageExt>(
    command: &M,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor))
}

/// The batches a query task sends, as a stream.
fn tokio_stream_of(
    receiver: tokio::sync::mpsc::Receiver<datafusion::error::Result<arrow::array::RecordBatch>>,
) -> impl Stream<Item = datafusion::error::Result<arrow::array::RecordBatch>> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

fn one_batch(
    schema: arrow::datatypes::SchemaRef,
    batch: Result<arrow::array::RecordBatch, FlightError>,
) -> DoGetStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from),
    )
}

/// Budgets every query runs within.
#[derive(Debug, Clone, Default)]
pub struct QueryLimits {
    pub memory_bytes: Option<usize>,
    pub timeout: Option<std::time::Duration>,
    pub max_rows: Option<usize>,
}

/// The time range a client asks for in `query_range_begin` / `query_range_end`; a
/// missing end is open (the `micromegas` client sends only a begin for "since").
fn time_range<T>(request: &Request<T>) -> Result<Option<TimeRange>, Status> {
    let header = |name: &str| {
        request
            .metadata()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    match (header("query_range_begin"), header("query_range_end")) {
        (None, None) => Ok(None),
        (begin, end) => TimeRange::parse_open(begin.as_deref(), end.as_deref())
            .map(Some)
            .map_err(status_of),
    }
}

/// The FlightSQL service.
#[derive(Clone)]
pub struct TarnFlightSql {
    engine: QueryEngine,
    sql_info: Arc<SqlInfoData>,
    xdbc_types: Arc<XdbcTypeInfoData>,
    limits: QueryLimits,
    /// Queries run here, apart from the ingest runtime, so heavy SQL cannot stall ingest.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for TarnFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarnFlightSql")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl TarnFlightSql {
    pub fn new(
        engine: QueryEngine,
        limits: QueryLimits,
        runtime: tokio::runtime::Handle,
    ) -> Result<TarnFlightSql, FlightError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "tarn");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        Ok(TarnFlightSql {
            engine,
            sql_info: Arc::new(info.build()?),
            xdbc_types: Arc::new(xdbc_types()?),
            limits,
            runtime,
        })
    }

    /// The tonic service, with message size limits.
    pub fn into_server(self) -> FlightServiceServer<TarnFlightSql> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    async fn schema_of(
        &self,
        sql: &str,
        range: Option<TimeRange>,
    ) -> Result<arrow::datatypes::SchemaRef, Status> {
        let engine = self.engine.clone();
        let sql = sql.to_owned();
        self.runtime
            .spawn(async move { engine.schema(&sql, range).await })
            .await
            .map_err(|e| Status::internal(format!("planning task failed: {e}")))?
            .map_err(status_of)
    }

    /// The result schema of `sql` and the schema of its parameters (`$1`, `$2`, ... in
    /// order, typed where the statement implies a type, else Null).
    async fn prepare(
        &self,
        sql: &str,
        range: Option<TimeRange>,
    ) -> Result<(arrow::datatypes::SchemaRef, Schema), Status> {
        let engine = self.engine.clone();
        let sql = sql.to_owned();
        self.runtime
            .spawn(async move {
                let frame = engine.plan(&sql, range).await?;
                let types = frame
                    .logical_plan()
                    .get_parameter_types()
                    .map_err(from_datafusion)?;
                let mut names: Vec<(usize, String)> = types
                    .keys()
                    .filter_map(|name| {
                        name.strip_prefix('$')
                            .and_then(|number| number.parse().ok())
                            .map(|number: usize| (number, name.clone()))
                    })
                    .collect();
                names.sort();
                let fields: Vec<arrow::datatypes::Field> = names
                    .into_iter()
                    .map(|(_, name)| {
                        let data_type = types
                            .get(&name)
                            .cloned()
                            .flatten()
                            .unwrap_or(arrow::datatypes::DataType::Null);
                        arrow::datatypes::Field::new(name, data_type, true)
                    })
                    .collect();
                Ok((Arc::clone(frame.schema().inner()), Schema::new(fields)))
            })
            .await
            .map_err(|e| Status::internal(format!("planning task failed: {e}")))?
            .map_err(status_of)
    }

    /// Runs `sql` on the query runtime and streams its batches back; dropping the stream
    /// (the client went away) stops the query.
    async fn run(&self, sql: &str, range: Option<TimeRange>) -> Result<DoGetStream, Status> {
        let engine = self.engine.clone();
        let sql = sql.to_owned();
        let options = QueryOptions {
            range,
            memory_limit: self.limits.memory_bytes,
            timeout: self.limits.timeout,
            max_rows: self.limits.max_rows,
        };
        let (started, ready) = tokio::sync::oneshot::channel();
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let span = tracing::info_span!("query");
        self.runtime.spawn(tracing::Instrument::instrument(
            async move {
                let begun = std::time::Instant::now();
                match engine.execute(&sql, &options).await {
                    Err(error) => {
                        crate::metrics::query("error", begun.elapsed());
                        let _gone = started.send(Err(error));
                    }
                    Ok(mut stream) => {
                        if started.send(Ok(stream.schema())).is_err() {
                            return;
                        }
                        let mut outcome = "ok";
                        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
                            if let Err(error) = &batch {
                                outcome = match error {
                                    DataFusionError::ResourcesExhausted(_) => "limit",
                                    _ => "error",
                                };
                            }
                            if sender.send(batch).await.is_err() {
                                outcome = "cancelled";
                                break;
                            }
                        }
                        crate::metrics::query(outcome, begun.elapsed());
                    }
                }
            },
            span,
        ));
        let schema = ready
            .await
            .map_err(|_| Status::internal("query task ended early"))?
            .map_err(status_of)?;
        let batches = tokio_stream_of(receiver)
            .map_err(|e| FlightError::Tonic(Box::new(status_of(from_datafusion(e)))));
        Ok(Box::pin(
            FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .build(batches)
                .map_err(Status::from),
        ))
    }
}

#[tonic::async_trait]
impl FlightSqlService for TarnFlightSql {
    type FlightService = TarnFlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.schema_of(&query.query, time_range(&request)?).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        Ok(Response::new(flight_info(
            &ticket,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&ticket.statement_handle)?;
        Ok(Response::new(self.run(sql, time_range(&request)?).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        // `?` placeholders become `$1`, `$2`, ...: the handle is SQL DataFusion can plan.
        let sql = params::number_placeholders(&query.query).map_err(Status::invalid_argument)?;
        let (schema, parameters) = self.prepare(&sql, time_range(&request)?).await?;
        let ipc = |schema: &Schema| {
            IpcMessage::try_from(SchemaAsIpc::new(schema, &IpcWriteOptions::default()))
                .map(|IpcMessage(bytes)| bytes)
                .map_err(|e| Status::internal(format!("encoding schema: {e}")))
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: sql.into_bytes().into(),
            dataset_schema: ipc(&schema)?,
            parameter_schema: if parameters.fields().is_empty() {
                Default::default()
            } else {
                ipc(&parameters)?
            },
        })
    }

    /// Binds parameters: the new handle is the statement with their values as literals.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let sql = utf8(&query.prepared_statement_handle)?.to_owned();
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut parameters: Option<arrow::array::RecordBatch> = None;
        while let Some(batch) = batches
            .try_next()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading parameters: {e}")))?
        {
            if batch.num_rows() == 0 {
                continue;
            }
            if parameters.is_some() || batch.num_rows() > 1 {
                return Err(Status::invalid_argument(
                    "a query takes one row of parameters",
                ));
            }
            parameters = Some(batch);
        }
        let bound = match parameters {
            Some(batch) => params::bind(&sql, &batch).map_err(Status::invalid_argument)?,
            None => sql,
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.into_bytes().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self
            .schema_of(
                utf8(&command.prepared_statement_handle)?,
                time_range(&request)?,
            )
            .await?;
        let ticket = TicketStatementQuery {
            statement_handle: command.prepared_statement_handle.clone(),
        };
        Ok(Response::new(flight_info(
            &ticket,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&command.prepared_statement_handle)?;
        Ok(Response::new(self.run(sql, time_range(&request)?).await?))
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are the SQL text: nothing is held per statement.
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = self.engine.context(None).await.map_err(status_of)?;
        let mut builder = query.into_builder();
        for catalog in ctx.catalog_names() {
            builder.append(catalog);
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = self.engine.context(None).await.map_err(status_of)?;
        let mut builder = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema_name in catalog.schema_names() {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = self.engine.context(None).await.map_err(status_of)?;
        let mut builder = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let table = schema
                        .table(&table_name)
                        .await
                        .map_err(|e| status_of(from_datafusion(e)))?;
                    if let Some(table) = table {
                        let kind = match table.table_type() {
                            datafusion::logical_expr::TableType::View => "VIEW",
                            _ => "TABLE",
                        };
                        builder
                            .append(
                                &catalog_name,
                                &schema_name,
                                &table_name,
                                kind,
                                table.schema().as_ref(),
                            )
                            .map_err(Status::from)?;
                    }
                }
            }
        }
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc_types).schema();
        Ok(Response::new(flight_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.xdbc_types);
        let schema = builder.schema();
        Ok(Response::new(one_batch(schema, builder.build())))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        match request.get_ref().r#type.as_str() {
            // Sessions hold nothing here (statements are their SQL): closing one succeeds.
            "CloseSession" => Ok(Response::new(Box::pin(futures::stream::empty()))),
            other => Err(Status::unimplemented(format!(
                "action {other} is not supported"
            ))),
        }
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The SQL types of the tables' columns, for GetXdbcTypeInfo.
fn xdbc_types() -> Result<XdbcTypeInfoData, FlightError> {
    let mut builder = XdbcTypeInfoDataBuilder::new();
    let types = [
        ("BOOLEAN", XdbcDataType::XdbcBit, None, None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("BIGINT UNSIGNED", XdbcDataType::XdbcBigint, Some(20), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")),
        ("BINARY", XdbcDataType::XdbcBinary, None, None),
        ("DATE", XdbcDataType::XdbcDate, None, Some("DATE '")),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            None,
            Some("TIMESTAMP '"),
        ),
    ];
    for (name, data_type, precision, prefix) in types {
        builder.append(XdbcTypeInfo {
            type_name: name.to_owned(),
            data_type,
            column_size: precision,
            literal_prefix: prefix.map(str::to_owned),
            literal_suffix: prefix.map(|_| "'".to_owned()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: name == "VARCHAR",
            searchable: Searchable::Full,
            unsigned_attribute: precision.map(|_| name.ends_with("UNSIGNED")),
            fixed_prec_scale: false,
            auto_increment: None,
            local_type_name: Some(name.to_owned()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: precision.map(|_| 10),
            interval_precision: None,
        });
    }
    builder.build()
}
