//! The Flight SQL service an Ember scheduler serves: Ballista's frontend,
//! with bound parameters, the cluster token as a bearer token, and
//! cancellation answered.
//!
//! Every call Ballista's frontend implements is passed to it unchanged but
//! for two things:
//!
//! - a bearer token equal to the cluster's token (a client configured with
//!   a fixed `authorization` header instead of the handshake) is taken off,
//!   so that the frontend serves the call in its shared session; the
//!   scheduler's token layer has already checked it;
//! - a prepared statement keeps its SQL here (its `?` placeholders
//!   numbered `$N`), takes its parameters' values by `DoPut`, and executes
//!   as that SQL with the values bound, planned afresh (so that it sees the
//!   catalog as it is, and its job is named by its SQL).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData,
    FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use ballista_core::flight_proxy_service::BallistaFlightProxyService;
use ballista_flight_sql::{BallistaFlightSqlService, QueryBackend};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use ember_auth::ClusterToken;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::TokenAuthenticator;
use crate::parameters::{ParameterError, ParameterizedSql, row_literals};

/// The Flight RPC action that cancels a `FlightInfo`'s query.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// The scheduler session in which prepared statements' parameter types
/// are inferred.
const PARAMETER_SESSION: &str = "ember-flight-sql-parameter-types";

/// How long a prepared statement with parameters is kept unused: as long
/// as Ballista's frontend keeps its sessions.
const PREPARED_TTL: Duration = Duration::from_secs(30 * 60);

type ActionStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send>>;

/// A prepared statement's SQL, with its placeholders and what was bound.
struct PreparedSql {
    sql: ParameterizedSql,
    /// The literals last bound, one per parameter.
    bound: Option<Vec<String>>,
    /// The `authorization` header it was prepared with: only the same
    /// caller may bind or run it.
    caller: Option<String>,
    last_used: Instant,
}

/// Arrow Flight SQL on an Ember cluster: Ballista's frontend with bound
/// parameters, bearer tokens and cancellation (see the module docs).
pub struct EmberFlightSqlService<B: QueryBackend> {
    inner: BallistaFlightSqlService<B>,
    backend: Arc<B>,
    token: Option<ClusterToken>,
    prepared: Mutex<HashMap<String, PreparedSql>>,
}

impl<B: QueryBackend> EmberFlightSqlService<B> {
    /// Serves Ballista's frontend over `backend`, fetching results through
    /// `proxy`; clients present `token` (when the cluster has one) as the
    /// handshake's password or as a bearer token.
    pub fn new(
        backend: Arc<B>,
        proxy: BallistaFlightProxyService,
        token: Option<ClusterToken>,
    ) -> Self {
        let inner = BallistaFlightSqlService::new(backend.clone(), proxy)
            .with_authenticator(Arc::new(TokenAuthenticator::new(token.clone())));
        Self {
            inner,
            backend,
            token,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// `request`, without its bearer token when that is the cluster's own:
    /// the frontend then serves it in its shared session.
    fn admitted<T>(&self, mut request: Request<T>) -> Request<T> {
        let Some(token) = &self.token else {
            return request;
        };
        let is_cluster_token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(ember_auth::bearer_token)
            .is_some_and(|bearer| token.matches(bearer));
        if is_cluster_token {
            request.metadata_mut().remove("authorization");
        }
        request
    }

    fn caller<T>(request: &Request<T>) -> Option<String> {
        request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }

    fn prepared_handle(bytes: &[u8]) -> Result<String, Status> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Status::invalid_argument("the prepared statement handle is not UTF-8"))
    }

    /// Runs `with` on the prepared statement `handle` of the caller,
    /// if there is one.
    fn with_prepared<R>(
        &self,
        handle: &str,
        caller: &Option<String>,
        with: impl FnOnce(&mut PreparedSql) -> R,
    ) -> Result<Option<R>, Status> {
        let mut statements = self
            .prepared
            .lock()
            .map_err(|_| Status::internal("the prepared statements' lock is poisoned"))?;
        let Some(statement) = statements.get_mut(handle) else {
            return Ok(None);
        };
        if statement.caller != *caller {
            return Err(Status::not_found(
                "unknown prepared statement handle for this session",
            ));
        }
        statement.last_used = Instant::now();
        Ok(Some(with(statement)))
    }

    /// The SQL, values bound, of the prepared statement `handle`, if this
    /// service prepared it.
    fn bound_sql(&self, handle: &str, caller: &Option<String>) -> Result<Option<String>, Status> {
        self.with_prepared(handle, caller, |statement| {
            let count = statement.sql.parameter_count();
            let literals = match &statement.bound {
                Some(literals) => literals.as_slice(),
                None if count == 0 => &[],
                None => {
                    return Err(Status::failed_precondition(format!(
                        "the prepared statement has {count} parameter(s): bind their values first"
                    )));
                }
            };
            statement
                .sql
                .bind(literals)
                .map_err(|e| Status::invalid_argument(e.to_string()))
        })?
        .transpose()
    }

    /// Reads the one row of values a client binds, and keeps their literals
    /// for the prepared statement `handle`. A statement without
    /// parameters accepts an empty row.
    async fn bind(
        &self,
        handle: &str,
        caller: &Option<String>,
        stream: &mut PeekableFlightDataStream,
    ) -> Result<(), Status> {
        // One row of values: small enough to read whole before decoding.
        let messages: Vec<FlightData> = stream.try_collect().await?;
        let messages = futures::stream::iter(messages.into_iter().map(Ok));
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(messages)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the bound values: {e}")))?;
        let columns = batches.first().map_or(0, RecordBatch::num_columns);
        let bound = self.with_prepared(handle, caller, |statement| {
            if statement.sql.parameter_count() == 0 && columns == 0 {
                return Ok(());
            }
            let literals =
                row_literals(&batches).map_err(|e| Status::invalid_argument(e.to_string()))?;
            statement
                .sql
                .bind(&literals)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            statement.bound = Some(literals);
            Ok::<_, Status>(())
        })?;
        match bound {
            Some(result) => result,
            None if columns == 0 => Ok(()),
            None => Err(Status::invalid_argument(format!(
                "the prepared statement has no parameters; {columns} value(s) were bound"
            ))),
        }
    }

    /// Forgets prepared statements unused for longer than
    /// [`PREPARED_TTL`].
    fn expire_prepared(&self) {
        if let Ok(mut statements) = self.prepared.lock() {
            statements.retain(|_, statement| statement.last_used.elapsed() < PREPARED_TTL);
        }
    }

    /// The parameter schema of `sql`: one nullable field per parameter,
    /// named `$N`, typed as DataFusion infers it when the statement is
    /// planned in a fresh session (which sees the cluster's shared
    /// catalog), and untyped (`Null`) where it cannot tell.
    async fn parameter_schema(&self, sql: &ParameterizedSql) -> Schema {
        let types = match self.backend.session(PARAMETER_SESSION).await {
            Ok(ctx) => match ctx.state().create_logical_plan(sql.numbered()).await {
                Ok(plan) => plan.get_parameter_types().unwrap_or_default(),
                Err(e) => {
                    tracing::debug!("the parameters' types are unknown: {e}");
                    HashMap::new()
                }
            },
            Err(e) => {
                tracing::warn!("no session to type a statement's parameters in: {e}");
                HashMap::new()
            }
        };
        Schema::new(
            (1..=sql.parameter_count())
                .map(|n| {
                    let name = format!("${n}");
                    let data_type = types
                        .get(&name)
                        .cloned()
                        .flatten()
                        .unwrap_or(DataType::Null);
                    Field::new(name, data_type, true)
                })
                .collect::<Vec<_>>(),
        )
    }
}

fn encode_schema(schema: &Schema) -> Result<Vec<u8>, Status> {
    let message: arrow_flight::IpcMessage =
        arrow_flight::SchemaAsIpc::new(schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| Status::internal(format!("cannot encode the parameter schema: {e}")))?;
    Ok(message.0.to_vec())
}

#[tonic::async_trait]
impl<B: QueryBackend> FlightSqlService for EmberFlightSqlService<B> {
    type FlightService = EmberFlightSqlService<B>;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        self.inner.do_handshake(request).await
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner.do_get_fallback(request, message).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_statement(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        match self.bound_sql(&handle, &Self::caller(&request))? {
            Some(sql) => {
                let statement = CommandStatementQuery {
                    query: sql,
                    transaction_id: None,
                };
                self.inner
                    .get_flight_info_statement(statement, self.admitted(request))
                    .await
            }
            None => {
                self.inner
                    .get_flight_info_prepared_statement(query, self.admitted(request))
                    .await
            }
        }
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_catalogs(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_schemas(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_tables(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_table_types(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_sql_info(query, self.admitted(request))
            .await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.inner
            .get_flight_info_xdbc_type_info(query, self.admitted(request))
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_statement(ticket, self.admitted(request))
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_catalogs(query, self.admitted(request))
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_schemas(query, self.admitted(request))
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_tables(query, self.admitted(request))
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_table_types(query, self.admitted(request))
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_sql_info(query, self.admitted(request))
            .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.inner
            .do_get_xdbc_type_info(query, self.admitted(request))
            .await
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.inner
            .do_put_statement_update(ticket, self.admitted(request))
            .await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        mut request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let caller = Self::caller(&request);
        self.bind(&handle, &caller, request.get_mut()).await?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        mut request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let caller = Self::caller(&request);
        self.bind(&handle, &caller, request.get_mut()).await?;
        let sql = match self.bound_sql(&handle, &caller)? {
            Some(sql) => sql,
            None => {
                return Err(Status::unimplemented(
                    "run a prepared statement without parameters as a plain statement update",
                ));
            }
        };
        let statement = CommandStatementUpdate {
            query: sql,
            transaction_id: None,
        };
        self.inner
            .do_put_statement_update(statement, self.admitted(request))
            .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let sql = match ParameterizedSql::parse(&query.query) {
            Ok(sql) => sql,
            // SQL the tokenizer cannot read: the frontend's planner says why.
            Err(ParameterError::Tokenize(_)) => {
                return self
                    .inner
                    .do_action_create_prepared_statement(query, self.admitted(request))
                    .await;
            }
            Err(e) => return Err(Status::invalid_argument(e.to_string())),
        };
        self.expire_prepared();
        let caller = Self::caller(&request);
        let numbered = ActionCreatePreparedStatementRequest {
            query: sql.numbered().to_string(),
            transaction_id: query.transaction_id,
        };
        let mut prepared = self
            .inner
            .do_action_create_prepared_statement(numbered, self.admitted(request))
            .await?;
        if sql.parameter_count() > 0 {
            prepared.parameter_schema = encode_schema(&self.parameter_schema(&sql).await)?.into();
        }
        let handle = Self::prepared_handle(&prepared.prepared_statement_handle)?;
        self.prepared
            .lock()
            .map_err(|_| Status::internal("the prepared statements' lock is poisoned"))?
            .insert(
                handle,
                PreparedSql {
                    sql,
                    bound: None,
                    caller,
                    last_used: Instant::now(),
                },
            );
        Ok(prepared)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let handle = Self::prepared_handle(&query.prepared_statement_handle)?;
        let caller = Self::caller(&request);
        if let Ok(mut statements) = self.prepared.lock()
            && statements
                .get(&handle)
                .is_some_and(|statement| statement.caller == caller)
        {
            statements.remove(&handle);
        }
        self.inner
            .do_action_close_prepared_statement(query, self.admitted(request))
            .await
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        // A FlightInfo is answered once its job has finished: there is
        // nothing left to cancel. (A query still running is cancelled by
        // abandoning the GetFlightInfo call.)
        // `CancelResult` numbers its outcomes as `CancelStatus` does.
        Ok(ActionCancelQueryResult {
            result: CancelStatus::NotCancellable as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return self.inner.do_action_fallback(self.admitted(request)).await;
        }
        CancelFlightInfoRequest::decode(request.get_ref().body.clone()).map_err(|e| {
            Status::invalid_argument(format!("cannot read the CancelFlightInfo request: {e}"))
        })?;
        // As for CancelQuery: the FlightInfo's job has already finished.
        let result = CancelFlightInfoResult {
            status: CancelStatus::NotCancellable as i32,
        };
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        let stream: ActionStream = Box::pin(futures::stream::once(async move { Ok(body) }));
        Ok(Response::new(stream))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: CANCEL_FLIGHT_INFO.to_string(),
            description: "Cancel a query from its FlightInfo (Ember answers once the query \
                          has finished, so there is nothing left to cancel)"
                .to_string(),
        })])
    }

    async fn register_sql_info(&self, id: i32, result: &SqlInfo) {
        self.inner.register_sql_info(id, result).await;
    }
}
