//! [`EmberContext`]: where queries run, embedded or on a cluster.

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::planner::scans_only_information_schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::listing::ListingTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use ember_core::EmberConfig;
use ember_core::object_store::{EmberObjectStoreRegistry, runtime_env_with_registry};
use ember_core::s3::S3Settings;
use ember_core::settings_rewrite::SettingsRewrite;
use ember_memory::SpillTotals;

use crate::copy_options::fold_copy_options;
use crate::resubmit::ResubmittingQueryPlanner;
use crate::s3_glob::expand_s3_globs;
use crate::statement::{
    PreparedStatement, gpu_cache_statement, prepare_statement, with_cached_locations,
};
use crate::table_files::check_parquet_footers;
use crate::wasm_functions::{SessionLibraries, parse_function_statement};
use crate::write::PendingWrite;

use crate::cluster::{
    SchedulerAddress, SchedulerConnection, cancel_jobs_named, check_access, check_reachable,
    wait_for_executors,
};
use crate::error::{ClientError, Result};
use crate::progress::{RunningStatement, StatementProgress};
use crate::shared_catalog::{CatalogChange, CatalogSource, SharedCatalogSync, declare_temporary};
use ballista_core::extension::SessionConfigExt;
use datafusion::prelude::SessionConfig;
use ember_auth::{ClientSecurity, SecurityOptions};
use ember_catalog::CatalogFile;

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
    /// On a cluster: its scheduler, and the TLS and token this client
    /// presents to it.
    scheduler: Option<Arc<SchedulerConnection>>,
    /// The client's object stores: used to plan (listing files, inferring
    /// schemas) and to remove a failed write's staged files.
    stores: Arc<EmberObjectStoreRegistry>,
    /// The statement that ran last, for what it spilled.
    last_run: Arc<std::sync::Mutex<Option<LastRun>>>,
    /// What this session took from the cluster's shared catalog.
    catalog_sync: Arc<SharedCatalogSync>,
    /// Embedded, with `--catalog`: the catalog file it follows.
    catalog_file: Option<Arc<CatalogFile>>,
    /// The statement running now, for [`EmberContext::statement_progress`].
    running: Arc<std::sync::Mutex<Option<RunningStatement>>>,
    /// Woken by [`EmberContext::interrupt`]: the statement running now
    /// stops.
    interrupt: Arc<tokio::sync::Notify>,
    /// The WebAssembly libraries this session holds.
    libraries: Arc<SessionLibraries>,
}

/// Where to find what the last statement spilled.
#[derive(Debug, Clone)]
enum LastRun {
    /// Embedded: its plan's operators, after it ran.
    Embedded(SpillTotals),
    /// On a cluster: its job, by name.
    Cluster(String),
}

impl std::fmt::Debug for EmberContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmberContext")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl EmberContext {
    /// A context that runs everything in this process, its queries holding
    /// at most the default share of the machine's memory
    /// ([`ember_memory::default_embedded_limit`]) before they spill to the
    /// system's temporary directory.
    pub fn embedded() -> Result<Self> {
        let config = ember_core::session_config();
        let stores = Arc::new(EmberObjectStoreRegistry::new(S3Settings::default()));
        let runtime = runtime_env_with_registry(stores.clone(), None)?;
        let state = ember_core::session_state(config, runtime)?;
        // Embedded plans go through the same GPU placement and adaptive
        // joins as an executor's stages.
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rule(Arc::new(SettingsRewrite::GPU_PLACEMENT))
            .with_physical_optimizer_rule(Arc::new(SettingsRewrite::ADAPTIVE_JOINS))
            .build();
        let context = Self {
            session: SessionContext::new_with_state(state),
            mode: ExecutionMode::Embedded,
            scheduler: None,
            catalog_sync: Arc::default(),
            catalog_file: None,
            running: Arc::default(),
            interrupt: Arc::default(),
            stores,
            last_run: Arc::default(),
            libraries: Arc::default(),
        };
        if let Some(limit) = ember_memory::default_embedded_limit() {
            context.set_memory_limit(limit)?;
        }
        Ok(context)
    }

    /// Limits the memory this embedded session's queries may hold: beyond
    /// it, sorts, aggregates and joins spill to disk, and a query that cannot
    /// fail with an error naming the operator. `SET
    /// datafusion.runtime.memory_limit = '2GiB'` does the same. On a cluster,
    /// each executor's `--memory` sets its limit instead, and this fails.
    pub fn set_memory_limit(&self, limit: ember_memory::ByteSize) -> Result<()> {
        if self.mode != ExecutionMode::Embedded {
            return Err(ClientError::Process(format!(
                "a memory limit ({limit}) applies to embedded sessions; on a cluster, \
                 start the executors with --memory"
            )));
        }
        let state_ref = self.session.state_ref();
        let mut state = state_ref.write();
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(ember_memory::memory_pool(limit))
            .build_arc()
            .map_err(ClientError::from_datafusion)?;
        *state = datafusion::execution::SessionStateBuilder::from(state.clone())
            .with_runtime_env(runtime)
            .build();
        // Sorts set aside a share of the pool, not a fixed 10 MiB, to merge
        // their spill files.
        let execution = &mut state.config_mut().options_mut().execution;
        execution.sort_spill_reservation_bytes =
            ember_memory::sort_merge_reservation(limit, execution.sort_spill_reservation_bytes);
        Ok(())
    }

    /// Lets this embedded session use `memory` in all, as `ember sql
    /// --memory` does: its queries' operators hold
    /// [`ember_memory::POOL_FRACTION`] of it (the rest covers what the pool
    /// does not track), exactly as an executor given the same `--memory`.
    pub fn set_process_memory(&self, memory: ember_memory::ByteSize) -> Result<()> {
        self.set_memory_limit(ember_memory::pool_for_process(memory))
    }

    /// The memory this session's queries may hold, `None` when unlimited
    /// (or on a cluster, where each executor has its own).
    pub fn memory_limit(&self) -> Option<ember_memory::ByteSize> {
        match self.session.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(bytes) => Some(ember_memory::ByteSize::new(bytes as u64)),
            _ => None,
        }
    }

    /// A context that runs queries on the cluster whose scheduler listens at
    /// `address` (`host:port`, `df://host:port`, or `https://host:port` for
    /// TLS), presenting the token and TLS files the environment names
    /// (`EMBER_TOKEN` or `EMBER_TOKEN_FILE`, `EMBER_TLS_CA`, ...; see
    /// [`SecurityOptions`]), so that a job runs unchanged on a secured
    /// cluster.
    ///
    /// Fails, within `ember.client_connect_timeout_secs`, when nothing
    /// answers there, and at once when the scheduler refuses the token or
    /// TLS fails. Executors are checked for when a query runs (see
    /// [`EmberContext::check_executors`]).
    pub async fn connect(address: &str) -> Result<Self> {
        Self::connect_with(address, &SecurityOptions::from_env()?).await
    }

    /// [`EmberContext::connect`] with the token and TLS files of `security`
    /// (as `ember sql`'s flags give them) instead of the environment's.
    pub async fn connect_with(address: &str, security: &SecurityOptions) -> Result<Self> {
        let scheduler = SchedulerConnection::from_options(address, security)?;
        let addr = scheduler.address().clone();
        let config = with_cluster_security(ember_core::session_config(), scheduler.security());
        let settings = EmberConfig::from_session_config(&config);
        let connect_timeout = Duration::from_secs(settings.client_connect_timeout_secs);
        check_reachable(&scheduler, connect_timeout).await?;
        check_access(&scheduler, connect_timeout).await?;
        let stores = Arc::new(EmberObjectStoreRegistry::new(S3Settings::default()));
        let runtime = runtime_env_with_registry(stores.clone(), None)?;
        let state = ember_core::session_state(config, runtime)?;
        let session = SessionContext::remote_with_state(&addr.ballista_url(), state).await?;
        // Queries the scheduler fails for resubmission run again (see
        // `resubmit`).
        let state = session.state();
        let planner = ResubmittingQueryPlanner::new(state.query_planner().clone());
        let session = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state)
                .with_query_planner(Arc::new(planner))
                .build(),
        );
        ember_core::apply_cluster_defaults(session.state_ref().write().config_mut());
        // Ballista's client session resets the function lists.
        ember_core::functions::register_into(&session);
        let context = Self {
            session,
            mode: ExecutionMode::Cluster(addr),
            scheduler: Some(Arc::new(scheduler)),
            catalog_sync: Arc::default(),
            catalog_file: None,
            running: Arc::default(),
            interrupt: Arc::default(),
            stores,
            last_run: Arc::default(),
            libraries: Arc::default(),
        };
        // The WebAssembly libraries declared on the cluster, callable at once.
        context.pull_declared_libraries().await?;
        Ok(context)
    }

    /// This embedded context, following the catalog file at `path` (as a
    /// scheduler's `--state-dir` keeps it, `catalog.json`): the tables,
    /// views and schemas it holds are visible, read again before each
    /// statement, and what the session declares is written to it, unless
    /// a running scheduler holds the file (then a declaration fails, saying
    /// so; `SET ember.shared_catalog = false` keeps declarations in the
    /// session). A cluster session follows its scheduler's catalog
    /// instead, and refuses this.
    pub fn with_catalog_file(mut self, path: impl Into<std::path::PathBuf>) -> Result<Self> {
        if let ExecutionMode::Cluster(addr) = &self.mode {
            return Err(ClientError::Process(format!(
                "a catalog file is for embedded sessions: the cluster at {addr} keeps its \
                 scheduler's catalog (ember-scheduler --state-dir)"
            )));
        }
        let file = CatalogFile::new(path);
        // Unreadable files are named now rather than at the first statement.
        file.tables()?;
        self.catalog_file = Some(Arc::new(file));
        Ok(self)
    }

    /// Embedded when `scheduler` is `None`, else connected to that scheduler.
    pub async fn new(scheduler: Option<&str>) -> Result<Self> {
        match scheduler {
            None => Self::embedded(),
            Some(address) => Self::connect(address).await,
        }
    }

    /// The WebAssembly libraries this session holds.
    pub(crate) fn libraries(&self) -> &SessionLibraries {
        &self.libraries
    }

    /// On a cluster, its scheduler and how this client reaches it.
    pub fn scheduler(&self) -> Option<&SchedulerConnection> {
        self.scheduler.as_deref()
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
        if let Some(scheduler) = &self.scheduler {
            let wait = Duration::from_secs(self.settings().client_executor_wait_secs);
            wait_for_executors(scheduler, 1, wait).await?;
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
        let text = statement;
        if let Some(table) = gpu_cache_statement(statement) {
            return self.cache_table_on_gpu(&table).await;
        }
        if let Some(function_statement) = parse_function_statement(statement) {
            return self.run_function_statement(function_statement?).await;
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
        // What other clients declared on the cluster, visible here.
        let shared = self.shared_catalog();
        if let Some(source) = shared {
            self.catalog_sync.pull(source, &self.session).await?;
        }
        self.pull_declared_libraries().await?;
        let mut state = self.session.state();
        // Spark's dialect sorts NULLs first in ascending order.
        if let Some(ordering) = self.settings().dialect.default_null_ordering() {
            state
                .config_mut()
                .options_mut()
                .sql_parser
                .default_null_ordering = ordering.to_string();
        }
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(ClientError::from_datafusion)?;
        if let Some(limit) = memory_limit_statement(&plan)? {
            self.set_memory_limit(limit)?;
            return self
                .session
                .read_empty()
                .map_err(ClientError::from_datafusion);
        }
        let created = match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                check_parquet_footers(&state, create).await?;
                Some((create.name.to_string(), create.locations.join(", ")))
            }
            _ => None,
        };
        let default_schema = state.config().options().catalog.default_schema.clone();
        let (plan, temporary) = declare_temporary(plan, &default_schema);
        let catalog_change = match &temporary {
            // A temporary declaration stays in the session, shadowing a
            // shared table of its name.
            Some(key) => {
                self.catalog_sync.shadow(key, &self.session);
                None
            }
            None => shared
                .and_then(|_| CatalogChange::of(&plan, &default_schema))
                .filter(|change| !self.catalog_sync.drops_temporary(change)),
        };
        if let Some(change) = &catalog_change {
            self.catalog_sync.before(change, &self.session);
        }
        let (plan, statement_settings) = fold_copy_options(&state, plan)?;
        let plan = crate::settings_view::mask_secret_settings(&state, plan)
            .await
            .map_err(ClientError::from_datafusion)?;
        let frame =
            self.session
                .execute_logical_plan(plan)
                .await
                .map_err(|source| match created {
                    // A table's files are read here: say which table and where.
                    Some((name, location)) if !matches!(source, DataFusionError::SQL(..)) => {
                        ClientError::CreateTable {
                            name,
                            location,
                            source,
                        }
                    }
                    _ => ClientError::from_datafusion(source),
                })?;
        let frame = with_settings(frame, &statement_settings)?;
        let frame = match self.mode {
            ExecutionMode::Cluster(_) => with_settings(frame, &[statement_text_setting(text)])?,
            ExecutionMode::Embedded => frame,
        };
        // A `SET s3.…` took effect while planning.
        self.sync_object_stores();
        if let Some(key) = temporary {
            self.catalog_sync.declared_temporary(key);
        }
        // DDL ran as it was planned: share what it declared.
        if let (Some(change), Some(source)) = (&catalog_change, shared) {
            self.catalog_sync
                .push(change, source, &self.session)
                .await?;
        }
        Ok(frame)
    }

    /// The shared catalog this session follows, unless
    /// `ember.shared_catalog` is off: its scheduler's on a cluster, its
    /// catalog file embedded with one.
    fn shared_catalog(&self) -> Option<CatalogSource<'_>> {
        if !self.settings().shared_catalog {
            return None;
        }
        match (&self.scheduler, &self.catalog_file) {
            (Some(scheduler), _) => Some(CatalogSource::Scheduler(scheduler)),
            (None, Some(file)) => Some(CatalogSource::File(file)),
            (None, None) => None,
        }
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

    /// Stops the statement this context (or a clone of it) is running now,
    /// as Ctrl-C does in `ember sql`: it fails with
    /// [`ClientError::Cancelled`], its cluster job is cancelled and a
    /// write's staged files are removed. Nothing happens when no statement
    /// runs (call it again if one was about to start). For callers that
    /// cannot pass a cancellation future, such as the Python binding.
    pub fn interrupt(&self) {
        self.interrupt.notify_waiters();
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
            result = run_frame(frame, &self.running, job_name.as_deref()) => Ok(result),
            signal = cancel => Err(signal.to_string()),
            () = self.interrupt.notified() => Err(INTERRUPTED_BY.to_string()),
        };
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match outcome {
            Ok(Ok((batches, spill))) => {
                let last = match job_name {
                    Some(name) => LastRun::Cluster(name),
                    None => LastRun::Embedded(spill),
                };
                *self.last_run.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
                Ok(batches)
            }
            Ok(Err(err)) => {
                if let Some(write) = write {
                    write.discard(&self.session.runtime_env()).await;
                }
                let remedy = match self.mode {
                    ExecutionMode::Embedded => crate::error::EMBEDDED_MEMORY_REMEDY,
                    ExecutionMode::Cluster(_) => crate::error::CLUSTER_MEMORY_REMEDY,
                };
                Err(crate::error::out_of_memory(&err, remedy)
                    .unwrap_or_else(|| ClientError::from_datafusion(err)))
            }
            Err(signal) => {
                tracing::info!(%signal, "cancelling the running statement");
                if let (Some(scheduler), Some(name)) = (&self.scheduler, &job_name) {
                    let wait = Duration::from_secs(JOB_CANCEL_WAIT_SECS);
                    if let Err(e) = cancel_jobs_named(scheduler, name, wait).await {
                        tracing::warn!("cannot cancel the job on the cluster: {e}");
                    }
                }
                if let Some(write) = write {
                    write.discard(&self.session.runtime_env()).await;
                }
                Err(ClientError::Cancelled { signal })
            }
        }
    }

    /// How far the statement running now has got (for a progress line):
    /// `None` when none runs, or while its cluster job is not listed yet or
    /// the scheduler cannot say.
    pub async fn statement_progress(&self) -> Option<StatementProgress> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        match running {
            RunningStatement::Embedded(plan) => Some(StatementProgress::Embedded {
                rows_read: crate::progress::rows_read(plan.as_ref()),
            }),
            RunningStatement::Cluster(name) => {
                let scheduler = self.scheduler.as_deref()?;
                match crate::cluster::job_progress(scheduler, &name).await {
                    Ok(progress) => progress,
                    Err(e) => {
                        tracing::debug!("cannot read the job's progress: {e}");
                        None
                    }
                }
            }
        }
    }

    /// What the last statement that ran to its end spilled to disk: from
    /// its plan's operators embedded, from the scheduler on a cluster.
    /// `None` before any statement ran, or when the scheduler no longer
    /// knows its job.
    pub async fn last_statement_spill(&self) -> Result<Option<SpillTotals>> {
        let last = self
            .last_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (last, &self.scheduler) {
            (None, _) => Ok(None),
            (Some(LastRun::Embedded(spill)), _) => Ok(Some(spill)),
            (Some(LastRun::Cluster(name)), Some(scheduler)) => {
                crate::cluster::job_spill(scheduler, &name).await
            }
            (Some(LastRun::Cluster(_)), None) => Ok(None),
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

/// Plans and runs `frame`, returning its rows and what its operators
/// spilled (on a cluster, the client's plan spills nothing: the scheduler
/// knows what the job's did). While it runs, `running` says what it is:
/// its plan embedded, its job (`job_name`) on a cluster.
async fn run_frame(
    frame: DataFrame,
    running: &std::sync::Mutex<Option<RunningStatement>>,
    job_name: Option<&str>,
) -> datafusion::error::Result<(Vec<RecordBatch>, SpillTotals)> {
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await?;
    *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(match job_name {
        Some(name) => RunningStatement::Cluster(name.to_string()),
        None => RunningStatement::Embedded(Arc::clone(&plan)),
    });
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task).await?;
    Ok((batches, SpillTotals::of_plan(&plan)))
}

/// The setting DataFusion users know for an embedded session's memory.
const MEMORY_LIMIT_SETTING: &str = "datafusion.runtime.memory_limit";

/// `SET datafusion.runtime.memory_limit = '…'`: the limit it sets. Ember
/// takes it over from DataFusion, which would install a pool that does not
/// share memory fairly between the operators that spill, and reads sizes as
/// `--memory` does (`512MiB`, `2GB`, `4g`).
fn memory_limit_statement(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Option<ember_memory::ByteSize>> {
    use datafusion::logical_expr::{LogicalPlan, Statement};
    let LogicalPlan::Statement(Statement::SetVariable(set)) = plan else {
        return Ok(None);
    };
    if !set.variable.eq_ignore_ascii_case(MEMORY_LIMIT_SETTING) {
        return Ok(None);
    }
    set.value
        .parse()
        .map(Some)
        .map_err(|e| ClientError::Process(format!("{MEMORY_LIMIT_SETTING}: {e}")))
}

/// The session setting that carries a statement's SQL text to the
/// scheduler's web UI.
const STATEMENT_TEXT_KEY: &str = "ember.statement_text";

/// The most of a statement's text a job carries.
const STATEMENT_TEXT_MAX_BYTES: usize = 16 * 1024;

/// The `ember.statement_text` setting for `text`: secret values masked,
/// cut to [`STATEMENT_TEXT_MAX_BYTES`].
fn statement_text_setting(text: &str) -> (String, String) {
    let mut masked = ember_ui::mask_sql_secrets(text.trim());
    if masked.len() > STATEMENT_TEXT_MAX_BYTES {
        let mut end = STATEMENT_TEXT_MAX_BYTES;
        while !masked.is_char_boundary(end) {
            end -= 1;
        }
        masked.truncate(end);
        masked.push_str(" …");
    }
    (STATEMENT_TEXT_KEY.to_string(), masked)
}

/// What an interrupted statement was cancelled by.
const INTERRUPTED_BY: &str = "an interrupt (Ctrl-C)";

/// The session setting that names a cluster job.
const JOB_NAME_KEY: &str = "ballista.job.name";

/// How long a cancelled statement waits for its cluster job to stop.
const JOB_CANCEL_WAIT_SECS: u64 = 10;

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

/// `config` with the hooks through which Ballista's client presents
/// `security` to the cluster: the token as gRPC metadata on scheduler
/// requests, and TLS plus the token on every channel it opens (to the
/// scheduler, and to executors for results).
fn with_cluster_security(config: SessionConfig, security: &ClientSecurity) -> SessionConfig {
    if !security.is_secured() {
        return config;
    }
    config
        .with_ballista_grpc_metadata(security.grpc_metadata())
        .with_ballista_override_create_grpc_client_endpoint(security.endpoint_override())
}
