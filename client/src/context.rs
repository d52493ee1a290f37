//! [`EmberContext`]: where queries run, embedded or on a cluster.

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::planner::scans_only_information_schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::ListingTable;
use datafusion::prelude::SessionContext;
use ember_core::EmberConfig;
use ember_core::object_store::{EmberObjectStoreRegistry, runtime_env_with_registry};
use ember_core::s3::S3Settings;

use crate::copy_options::fold_copy_options;
use crate::s3_glob::expand_s3_globs;
use crate::statement::{
    PreparedStatement, gpu_cache_statement, prepare_statement, with_cached_locations,
};
use crate::write::PendingWrite;

use crate::cluster::{SchedulerAddress, cancel_jobs_named, check_reachable, wait_for_executors};
use crate::error::{ClientError, Result};

/// Where an [`EmberContext`] runs its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionMode {
    /// In this process, with DataFusion's own executor: no network hop, no
    /// shuffle files.
    Embedded,
    /// On the cluster behind this scheduler.
    Cluster(SchedulerAddress),
}

/// The entry point of the Ember client: a session that plans queries with
/// Ember's shared configuration and runs them embedded or on a cluster.
///
/// Tables registered on the context (for example with
/// `CREATE EXTERNAL TABLE`) live in the client's catalog; on a cluster their
/// definitions travel inside each query's plan.
#[derive(Clone)]
pub struct EmberContext {
    session: SessionContext,
    mode: ExecutionMode,
    /// The client's object stores: used to plan (listing files, inferring
    /// schemas) and to remove a failed write's staged files.
    stores: Arc<EmberObjectStoreRegistry>,
}

impl std::fmt::Debug for EmberContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmberContext")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl EmberContext {
    /// A context that runs everything in this process.
    pub fn embedded() -> Result<Self> {
        let config = ember_core::session_config();
        let stores = Arc::new(EmberObjectStoreRegistry::new(S3Settings::default()));
        let runtime = runtime_env_with_registry(stores.clone(), None)?;
        let state = ember_core::session_state(config, runtime)?;
        // Embedded plans go through the same GPU placement as an
        // executor's stages (it does nothing without a GPU).
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rule(Arc::new(ember_core::gpu::GpuPlacementRule))
            .build();
        Ok(Self {
            session: SessionContext::new_with_state(state),
            mode: ExecutionMode::Embedded,
            stores,
        })
    }

    /// A context that runs queries on the cluster whose scheduler listens at
    /// `address` (`host:port` or `df://host:port`).
    ///
    /// Fails, within `ember.client_connect_timeout_secs`, when nothing
    /// answers there. Executors are checked for when a query runs (see
    /// [`EmberContext::check_executors`]).
    pub async fn connect(address: &str) -> Result<Self> {
        let addr = SchedulerAddress::parse(address)?;
        let config = ember_core::session_config();
        let settings = EmberConfig::from_session_config(&config);
        check_reachable(
            &addr,
            Duration::from_secs(settings.client_connect_timeout_secs),
        )
        .await?;
        let stores = Arc::new(EmberObjectStoreRegistry::new(S3Settings::default()));
        let runtime = runtime_env_with_registry(stores.clone(), None)?;
        let state = ember_core::session_state(config, runtime)?;
        let session = SessionContext::remote_with_state(&addr.ballista_url(), state).await?;
        ember_core::apply_cluster_defaults(session.state_ref().write().config_mut());
        // Ballista's client session resets the function lists.
        ember_core::functions::register_into(&session);
        Ok(Self {
            session,
            mode: ExecutionMode::Cluster(addr),
            stores,
        })
    }

    /// Embedded when `scheduler` is `None`, else connected to that scheduler.
    pub async fn new(scheduler: Option<&str>) -> Result<Self> {
        match scheduler {
            None => Self::embedded(),
            Some(address) => Self::connect(address).await,
        }
    }

    /// Where queries run.
    pub fn mode(&self) -> &ExecutionMode {
        &self.mode
    }

    /// The underlying DataFusion session (catalog, settings, functions).
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// The session's current Ember settings.
    pub fn settings(&self) -> EmberConfig {
        EmberConfig::from_session_config(&self.session.copied_config())
    }

    /// On a cluster, fails unless at least one executor is registered within
    /// `ember.client_executor_wait_secs`. Embedded, does nothing.
    pub async fn check_executors(&self) -> Result<()> {
        if let ExecutionMode::Cluster(addr) = &self.mode {
            let wait = Duration::from_secs(self.settings().client_executor_wait_secs);
            wait_for_executors(addr, 1, wait).await?;
        }
        Ok(())
    }

    /// Sets one session setting, as `SET key = value` does (for example
    /// `s3.endpoint`); on a cluster it travels with every query.
    pub fn set_option(&self, key: &str, value: &str) -> Result<()> {
        self.session
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set(key, value)
            .map_err(ClientError::from_datafusion)?;
        self.sync_object_stores();
        Ok(())
    }

    /// Points the client's object stores at the session's current `s3.*`
    /// settings.
    fn sync_object_stores(&self) {
        let settings = S3Settings::from_session_config(&self.session.copied_config());
        self.stores.set_s3_settings(settings);
    }

    /// Plans one SQL statement. DDL and `SET` take effect here; a query
    /// returns a lazy [`DataFrame`] that runs when collected.
    ///
    /// S3 options given to `CREATE EXTERNAL TABLE` or `COPY`
    /// (`OPTIONS ('s3.endpoint' '…')`) become the session's settings for
    /// that bucket, so that the scheduler and executors reach it the same way.
    pub async fn sql(&self, statement: &str) -> Result<DataFrame> {
        if let Some(table) = gpu_cache_statement(statement) {
            return self.cache_table_on_gpu(&table).await;
        }
        let state = self.session.state();
        let PreparedStatement {
            mut statement,
            bucket_settings,
        } = prepare_statement(&state, statement)?;
        for (key, value) in &bucket_settings {
            self.set_option(key, value)?;
        }
        self.sync_object_stores();
        expand_s3_globs(&mut statement, &self.session.runtime_env()).await?;
        let state = self.session.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(ClientError::from_datafusion)?;
        let (plan, statement_settings) = fold_copy_options(&state, plan)?;
        let frame = self
            .session
            .execute_logical_plan(plan)
            .await
            .map_err(ClientError::from_datafusion)?;
        let frame = with_settings(frame, &statement_settings)?;
        // A `SET s3.…` took effect while planning.
        self.sync_object_stores();
        Ok(frame)
    }

    /// `CACHE TABLE <name> ON GPU`: adds the table's locations to
    /// `ember.gpu_cache_tables`, so that GPU operators keep its columns in
    /// device memory from the next query that reads it on.
    async fn cache_table_on_gpu(&self, name: &str) -> Result<DataFrame> {
        let provider = self
            .session
            .table_provider(name)
            .await
            .map_err(ClientError::from_datafusion)?;
        let Some(listing) = provider.downcast_ref::<ListingTable>() else {
            return Err(ClientError::Process(format!(
                "CACHE TABLE {name} ON GPU: only tables of files can be cached on the GPU"
            )));
        };
        let locations: Vec<String> = listing
            .table_paths()
            .iter()
            .map(|url| url.as_str().to_string())
            .collect();
        let current = EmberConfig::from_session_config(&self.session.copied_config());
        let setting = with_cached_locations(&current.gpu_cache_tables, &locations);
        self.set_option("ember.gpu_cache_tables", &setting)?;
        tracing::debug!("GPU cache: ember.gpu_cache_tables = {setting}");
        self.session
            .read_empty()
            .map_err(ClientError::from_datafusion)
    }

    /// Plans and runs one SQL statement and collects its result.
    ///
    /// A write (`COPY`, `INSERT INTO`) that fails leaves nothing at its
    /// destination: its staged files are removed before the error returns.
    pub async fn run_sql(&self, statement: &str) -> Result<Vec<RecordBatch>> {
        let frame = self.sql(statement).await?;
        self.collect(frame).await
    }

    /// [`EmberContext::run_sql`], cancelled when `cancel` resolves first
    /// (see [`EmberContext::collect_until`]).
    pub async fn run_sql_until<S: std::fmt::Display>(
        &self,
        statement: &str,
        cancel: impl Future<Output = S>,
    ) -> Result<Vec<RecordBatch>> {
        let frame = self.sql(statement).await?;
        self.collect_until(frame, cancel).await
    }

    /// Runs a planned frame and collects its result, removing a failed
    /// write's staged files.
    pub async fn collect(&self, frame: DataFrame) -> Result<Vec<RecordBatch>> {
        self.collect_until(frame, std::future::pending::<&str>())
            .await
    }

    /// Runs a planned frame and collects its result, unless `cancel`
    /// resolves first (for example on Ctrl-C): then the query stops, its
    /// job on a cluster is cancelled and waited for, a write's staged files
    /// are removed, and [`ClientError::Cancelled`] names what `cancel`
    /// returned.
    ///
    /// A failed write's staged files are removed too. A write whose commit
    /// had already finished when the cancellation arrived keeps its output.
    pub async fn collect_until<S: std::fmt::Display>(
        &self,
        frame: DataFrame,
        cancel: impl Future<Output = S>,
    ) -> Result<Vec<RecordBatch>> {
        if is_query(&frame) {
            self.check_executors().await?;
        }
        let (frame, write) = PendingWrite::prepare(frame)?;
        let (frame, job_name) = self.name_job(frame)?;
        let outcome = tokio::select! {
            result = frame.collect() => Ok(result),
            signal = cancel => Err(signal.to_string()),
        };
        match outcome {
            Ok(Ok(batches)) => Ok(batches),
            Ok(Err(err)) => {
                if let Some(write) = write {
                    write.abort(&self.session.runtime_env()).await;
                }
                Err(ClientError::from_datafusion(err))
            }
            Err(signal) => {
                tracing::info!(%signal, "cancelling the running statement");
                if let (ExecutionMode::Cluster(addr), Some(name)) = (&self.mode, &job_name) {
                    let wait = Duration::from_secs(JOB_CANCEL_WAIT_SECS);
                    if let Err(e) = cancel_jobs_named(addr, name, wait).await {
                        tracing::warn!("cannot cancel the job on the cluster: {e}");
                    }
                }
                if let Some(write) = write {
                    let runtime = self.session.runtime_env();
                    write.abort(&runtime).await;
                    // Tasks stop at their next await point, and executors
                    // stop a cancelled job's tasks once they see it has
                    // failed: a file opened in the meantime is removed by a
                    // later pass. Passes go on until one finds nothing.
                    let started = std::time::Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_millis(LATE_FILE_GRACE_MILLIS)).await;
                        let removed = write.abort(&runtime).await;
                        if removed == 0
                            || started.elapsed() >= Duration::from_secs(JOB_CANCEL_WAIT_SECS)
                        {
                            break;
                        }
                    }
                }
                Err(ClientError::Cancelled { signal })
            }
        }
    }

    /// On a cluster, gives the frame's job a name of its own (the
    /// `ballista.job.name` setting, after any name the session set), by
    /// which it can be found and cancelled.
    fn name_job(&self, frame: DataFrame) -> Result<(DataFrame, Option<String>)> {
        if self.mode == ExecutionMode::Embedded {
            return Ok((frame, None));
        }
        let given = frame
            .task_ctx()
            .session_config()
            .options()
            .entries()
            .into_iter()
            .find(|entry| entry.key == JOB_NAME_KEY)
            .and_then(|entry| entry.value)
            .unwrap_or_default();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = if given.is_empty() {
            format!("ember-{id}")
        } else {
            format!("{given} (ember-{id})")
        };
        let frame = with_settings(frame, &[(JOB_NAME_KEY.to_string(), name.clone())])?;
        Ok((frame, Some(name)))
    }
}

/// The frame with `settings` (`(key, value)`) set in its own session
/// configuration, which travels with its job; the context's session is
/// left as it is.
pub(crate) fn with_settings(frame: DataFrame, settings: &[(String, String)]) -> Result<DataFrame> {
    if settings.is_empty() {
        return Ok(frame);
    }
    let (mut state, plan) = frame.into_parts();
    for (key, value) in settings {
        state
            .config_mut()
            .options_mut()
            .set(key, value)
            .map_err(ClientError::from_datafusion)?;
    }
    Ok(DataFrame::new(state, plan))
}

/// The session setting that names a cluster job.
const JOB_NAME_KEY: &str = "ballista.job.name";

/// How long a cancelled statement waits for its cluster job to stop.
const JOB_CANCEL_WAIT_SECS: u64 = 10;

/// How long after each clean-up of a cancelled write's staging area it is
/// cleaned again (until a clean-up finds nothing).
const LATE_FILE_GRACE_MILLIS: u64 = 500;

/// Whether running this frame needs executors: it executes a plan (DDL and
/// `SET` took effect while planning) that reads more than the client's own
/// catalog (`information_schema` queries run on the client).
pub fn is_query(frame: &DataFrame) -> bool {
    use datafusion::logical_expr::LogicalPlan;
    let plan = frame.logical_plan();
    let runs_a_plan = !matches!(
        plan,
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::EmptyRelation(_)
    );
    runs_a_plan && !scans_only_information_schema(plan).unwrap_or(false)
}
