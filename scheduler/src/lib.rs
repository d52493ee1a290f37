//! `ember-scheduler`: Ballista's scheduler, embedded and configured with
//! Ember's shared session configuration, session builder and codecs.
//!
//! The scheduler receives a client's optimized logical plan, plans it
//! physically, splits it into stages at shuffle boundaries and hands tasks to
//! executors. Ember does not fork Ballista's scheduler: it fills the
//! [`SchedulerConfig`] override hooks with what `ember-core` builds, so that
//! the scheduler decodes, plans and encodes exactly as the client and the
//! executors do.
//!
//! The same port serves gRPC (clients and executors), Ballista's REST API
//! (`/api/state`, `/api/executors`, `/api/jobs`, ...) with secret session
//! settings masked, Ember's own routes (cached datasets, a job's spill
//! totals) and the health probes (`/healthz`, `/readyz`); the `server`
//! module composes them.

mod cache;
mod catalog_routes;
mod function_routes;
mod job_metrics;
mod liveness;
mod long_poll;
mod metrics;
mod plan_depth;
mod retention;
mod server;
mod stale_outputs;
mod ui_view;

pub use liveness::ProbeSettings;
pub use retention::RetentionSettings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use ember_auth::{ClientSecurity, ServerSecurity};
use ember_catalog::SharedCatalog;

/// The shared catalog's file in `--state-dir`.
const CATALOG_FILE: &str = "catalog.json";
/// The directory of the state dir that holds WebAssembly modules (by hash).
const WASM_DIR: &str = "wasm";
/// The declared WebAssembly libraries, in [`WASM_DIR`].
const FUNCTIONS_FILE: &str = "functions.json";
use ember_core::exchange_properties::CarryExchangeProperties;
use ember_core::{EmberLogicalCodec, EmberPhysicalCodec};
use tokio::net::TcpListener;

/// What the scheduler requires of its peers, and presents to them.
#[derive(Debug, Clone)]
pub(crate) struct Security {
    /// Required of clients and executors.
    pub(crate) server: ServerSecurity,
    /// Presented to executors.
    pub(crate) peer: ClientSecurity,
}

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was tried.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// Ballista refused the configuration or failed to start.
    #[error("scheduler failed: {0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    /// Serving the port failed.
    #[error("scheduler stopped serving: {0}")]
    Serve(std::io::Error),
    /// The job history's directory cannot be used.
    #[error("{0}")]
    History(#[from] ember_ui::HistoryError),
    /// A token or TLS flag cannot be used.
    #[error("{0}")]
    Security(#[from] ember_auth::AuthError),
    /// The shared catalog's file cannot be used.
    #[error("{0}")]
    Catalog(#[from] ember_catalog::CatalogError),
    /// The WebAssembly modules' directory or function catalog cannot be
    /// used.
    #[error("{0}")]
    Functions(#[from] ember_wasm::WasmError),
    /// Push scheduling was asked for on a secured cluster.
    #[error(
        "--scheduling-policy push cannot be secured (executors would serve pushed tasks in \
         plain text, without a token); use pull, the default"
    )]
    InsecurePush,
}

/// How tasks are spread over executor slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskDistribution {
    /// Fill each executor's free slots before moving on to the next one.
    Bias,
    /// Hand out tasks one executor at a time, spreading them evenly.
    RoundRobin,
}

/// The scheduler's settings; every flag has an `EMBER_SCHEDULER_*`
/// environment equivalent.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// Address to listen on.
    #[arg(long, env = "EMBER_SCHEDULER_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// Port for gRPC, the REST API and health probes (0 picks a free port).
    #[arg(long, env = "EMBER_SCHEDULER_PORT", default_value_t = 50050)]
    pub port: u16,
    /// Host name that executors and clients use to reach this scheduler.
    #[arg(
        long,
        env = "EMBER_SCHEDULER_EXTERNAL_HOST",
        default_value = "localhost"
    )]
    pub external_host: String,
    /// How tasks are spread over executors.
    #[arg(
        long,
        env = "EMBER_SCHEDULER_TASK_DISTRIBUTION",
        value_enum,
        default_value = "round-robin"
    )]
    pub task_distribution: TaskDistribution,
    /// How executors get tasks: `pull` (executors ask) or `push` (the
    /// scheduler sends). Executors must use the same policy.
    #[arg(long, env = "EMBER_SCHEDULING_POLICY", default_value = "pull")]
    pub scheduling_policy: ember_core::scheduling::SchedulingPolicy,
    /// Seconds without a heartbeat after which an executor is considered dead.
    #[arg(
        long,
        env = "EMBER_SCHEDULER_EXECUTOR_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub executor_timeout_secs: u64,
    /// Serve query results through the scheduler (Arrow Flight proxy) so
    /// clients need not reach executors directly.
    #[arg(long, env = "EMBER_SCHEDULER_FLIGHT_PROXY", default_value_t = false)]
    pub flight_proxy: bool,
    /// Serve Arrow Flight SQL on the scheduler's port, for ADBC, JDBC and BI
    /// tools: the cluster's token is the password of the Flight handshake.
    /// Query results are then served through the scheduler, as with
    /// --flight-proxy.
    #[arg(long, env = "EMBER_SCHEDULER_FLIGHT_SQL", default_value_t = false)]
    pub flight_sql: bool,
    /// Largest gRPC message, in bytes, on every scheduler connection.
    #[arg(long, env = "EMBER_SCHEDULER_GRPC_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub grpc_max_message_bytes: u32,
    /// Milliseconds between two TCP probes of every executor's Flight port;
    /// an executor that refuses or ignores `--executor-probe-failures`
    /// probes in a row is removed at once and its tasks run elsewhere,
    /// without waiting for the heartbeat timeout. 0 turns probing off.
    #[arg(long, env = "EMBER_SCHEDULER_EXECUTOR_PROBE_MS", default_value_t = DEFAULT_PROBE_MS)]
    pub executor_probe_ms: u64,
    /// Failed probes in a row after which an executor counts as lost.
    #[arg(long, env = "EMBER_SCHEDULER_EXECUTOR_PROBE_FAILURES", default_value_t = DEFAULT_PROBE_FAILURES)]
    pub executor_probe_failures: u32,
    /// Seconds a finished job's state (plan, stages, metrics) stays in
    /// memory and on `/api/jobs` after it ends.
    #[arg(long, env = "EMBER_SCHEDULER_FINISHED_JOB_SECS", default_value_t = DEFAULT_FINISHED_JOB_SECS)]
    pub finished_job_secs: u64,
    /// Most finished jobs kept in memory; the oldest are dropped first.
    #[arg(long, env = "EMBER_SCHEDULER_FINISHED_JOBS", default_value_t = DEFAULT_FINISHED_JOBS)]
    pub finished_jobs: usize,
    /// Deepest a submitted plan's expressions may nest; deeper plans are
    /// refused before they are planned, whatever the client's own limit
    /// (`ember.max_expression_depth`) was set to.
    #[arg(long, env = "EMBER_SCHEDULER_MAX_PLAN_DEPTH", default_value_t = DEFAULT_MAX_PLAN_DEPTH)]
    pub max_plan_depth: usize,
    /// Also serve `/healthz` and `/readyz`, and nothing else, in plain
    /// HTTP on this port: for probes that cannot speak TLS (0 picks a free
    /// port). The main port serves them too.
    #[arg(long, env = "EMBER_SCHEDULER_HEALTH_PORT")]
    pub health_port: Option<u16>,
    /// Directory for what the scheduler keeps across restarts: the shared
    /// catalog (`catalog.json`), where tables, views and schemas that any
    /// session declares are kept. Without it, the catalog lives in memory.
    #[arg(long, env = "EMBER_SCHEDULER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Directory of the job history: each finished job's view for the web
    /// UI (`<job>.job.json`) and Ballista's event log of its tasks
    /// (`<job>.eventlog`), so that the UI shows finished jobs after a
    /// restart. Defaults to `history` in `--state-dir`; without either,
    /// finished jobs are shown only while the scheduler keeps them.
    #[arg(long, env = "EMBER_SCHEDULER_HISTORY_DIR", value_name = "DIR")]
    pub history_dir: Option<std::path::PathBuf>,
    /// Seconds a finished job stays in the history.
    #[arg(long, env = "EMBER_SCHEDULER_HISTORY_SECS", default_value_t = DEFAULT_HISTORY_SECS)]
    pub history_secs: u64,
    /// The cluster's token and TLS: what clients and executors must present.
    #[command(flatten)]
    pub security: ember_auth::SecurityOptions,
}

/// Default of [`SchedulerOptions::executor_probe_ms`].
const DEFAULT_PROBE_MS: u64 = 1000;
/// Default of [`SchedulerOptions::executor_probe_failures`].
const DEFAULT_PROBE_FAILURES: u32 = 3;
/// Default of [`SchedulerOptions::finished_job_secs`].
const DEFAULT_FINISHED_JOB_SECS: u64 = 600;
/// Default of [`SchedulerOptions::finished_jobs`].
const DEFAULT_FINISHED_JOBS: usize = 100;
/// Default of [`SchedulerOptions::history_secs`]: a week.
const DEFAULT_HISTORY_SECS: u64 = 7 * 24 * 3600;
/// Where Ballista's redirect to its online terminal UI is served (its
/// default is `/`, which Ember's web UI takes).
const BALLISTA_TUI_ROUTE: &str = "/api/ballista/tui";
/// The history's directory in `--state-dir`.
const HISTORY_DIR: &str = "history";
/// Default of [`SchedulerOptions::max_plan_depth`]: twice the client's
/// default limit, for the levels planning adds (casts, aliases).
const DEFAULT_MAX_PLAN_DEPTH: usize = 2000;

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".to_string(),
            port: 50050,
            external_host: "localhost".to_string(),
            task_distribution: TaskDistribution::RoundRobin,
            scheduling_policy: Default::default(),
            executor_timeout_secs: 60,
            flight_proxy: false,
            flight_sql: false,
            grpc_max_message_bytes: 64 * 1024 * 1024,
            executor_probe_ms: DEFAULT_PROBE_MS,
            executor_probe_failures: DEFAULT_PROBE_FAILURES,
            finished_job_secs: DEFAULT_FINISHED_JOB_SECS,
            finished_jobs: DEFAULT_FINISHED_JOBS,
            max_plan_depth: DEFAULT_MAX_PLAN_DEPTH,
            health_port: None,
            state_dir: None,
            history_dir: None,
            history_secs: DEFAULT_HISTORY_SECS,
            security: ember_auth::SecurityOptions::default(),
        }
    }
}

impl SchedulerOptions {
    /// The executor probe's settings; `None` when probing is off.
    pub fn probe_settings(&self) -> Option<ProbeSettings> {
        (self.executor_probe_ms > 0).then(|| {
            let interval = Duration::from_millis(self.executor_probe_ms);
            ProbeSettings {
                interval,
                connect_timeout: interval.min(Duration::from_secs(2)),
                failures_to_remove: self.executor_probe_failures.max(1),
            }
        })
    }

    /// The job history's directory: `--history-dir`, else `history` in
    /// `--state-dir`.
    pub fn history_dir(&self) -> Option<std::path::PathBuf> {
        self.history_dir
            .clone()
            .or_else(|| self.state_dir.as_ref().map(|dir| dir.join(HISTORY_DIR)))
    }

    /// How long, and how many, finished jobs are kept.
    pub fn retention_settings(&self) -> RetentionSettings {
        RetentionSettings {
            keep_for: Duration::from_secs(self.finished_job_secs),
            keep_at_most: self.finished_jobs,
            interval: Duration::from_secs(self.finished_job_secs.clamp(1, 10)),
        }
    }
}

/// The configuration producer installed on the scheduler: Ember's
/// distributed session configuration.
fn scheduler_session_config() -> SessionConfig {
    ember_core::distributed_session_config()
}

/// The session builder installed on the scheduler: Ember's session state,
/// plus the one physical optimizer rule only a planner that cuts plans into
/// stages needs (`CarryExchangeProperties`: what is known about the data
/// before a shuffle stays known after it).
/// Every session's default catalog is the cluster's shared one
/// (`catalog`), so that what one session declares (a Flight SQL client's
/// `CREATE EXTERNAL TABLE`) every other session sees.
fn scheduler_session_state(
    config: SessionConfig,
    catalog: &SharedCatalog,
) -> datafusion::error::Result<SessionState> {
    let runtime = ember_core::runtime_env(&config, None)?;
    let state = ember_core::session_state(config, runtime)?;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rule(Arc::new(CarryExchangeProperties))
        .build();
    let default_catalog = state.config().options().catalog.default_catalog.clone();
    state
        .catalog_list()
        .register_catalog(default_catalog, Arc::new(catalog.clone()));
    Ok(state)
}

/// Builds Ballista's scheduler configuration with Ember's hooks installed:
/// `peer` is how the scheduler reaches executors, `catalog` the catalog
/// every session shares.
pub fn scheduler_config(
    options: &SchedulerOptions,
    peer: &ClientSecurity,
    catalog: SharedCatalog,
) -> SchedulerConfig {
    let distribution = match options.task_distribution {
        TaskDistribution::Bias => TaskDistributionPolicy::Bias,
        TaskDistribution::RoundRobin => TaskDistributionPolicy::RoundRobin,
    };
    let mut config = SchedulerConfig::default()
        .with_hostname(options.external_host.clone())
        .with_port(options.port)
        .with_task_distribution(distribution)
        .with_enable_embedded_flight_proxy(options.flight_proxy)
        .with_grpc_server_max_decoding_message_size(options.grpc_max_message_bytes)
        .with_grpc_server_max_encoding_message_size(options.grpc_max_message_bytes)
        .with_grpc_client_max_message_size(options.grpc_max_message_bytes)
        .with_override_config_producer(Arc::new(scheduler_session_config))
        .with_override_session_builder(Arc::new(move |config| {
            scheduler_session_state(config, &catalog)
        }));
    config.bind_host = options.bind.clone();
    config.scheduling_policy = options.scheduling_policy.ballista();
    config.executor_timeout_seconds = options.executor_timeout_secs;
    // Heartbeats are checked often; the probe notices a killed executor
    // sooner still.
    config.expire_dead_executor_interval_seconds = (options.executor_timeout_secs / 4).clamp(1, 15);
    // Finished jobs are dropped by Ember's retention (see `retention`), by
    // time and by count, rather than by one timer per job an hour later.
    config.finished_job_state_clean_up_interval_seconds = 0;
    config.no_executors_grace_period_seconds = options.executor_timeout_secs;
    // `/` is Ember's web UI; Ballista's redirect to its online TUI moves
    // out of the way.
    config.web_tui_route = BALLISTA_TUI_ROUTE.to_string();
    // Ballista's event log of each job's tasks, beside the UI's history.
    config.event_log_dir = options
        .history_dir()
        .map(|dir| dir.to_string_lossy().into_owned());
    config.override_logical_codec = Some(Arc::new(EmberLogicalCodec::default()));
    config.override_physical_codec = Some(Arc::new(EmberPhysicalCodec::default()));
    if peer.is_secured() {
        config.override_create_grpc_client_endpoint = Some(peer.endpoint_override());
    }
    config
}

/// A scheduler bound to its address, ready to serve.
pub struct BoundScheduler {
    listener: TcpListener,
    /// `--health-port`'s listener, when given.
    health_listener: Option<TcpListener>,
    security: Security,
    config: SchedulerConfig,
    probe: Option<ProbeSettings>,
    retention: RetentionSettings,
    max_plan_depth: usize,
    /// Whether Arrow Flight SQL is served.
    flight_sql: bool,
    /// The catalog every session shares.
    catalog: SharedCatalog,
    /// The WebAssembly libraries declared on the cluster.
    functions: ember_wasm::LibraryCatalog,
    /// Finished jobs kept for the web UI, when a directory is given.
    history: Option<Arc<ember_ui::JobHistory>>,
}

impl BoundScheduler {
    /// Binds the listening socket. With port 0 the operating system picks a
    /// free port; [`BoundScheduler::local_addr`] tells which.
    pub async fn bind(options: &SchedulerOptions) -> Result<Self, SchedulerError> {
        let addr = format!("{}:{}", options.bind, options.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| SchedulerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| SchedulerError::Bind { addr, source })?;
        let health_listener = match options.health_port {
            Some(port) => {
                let addr = format!("{}:{port}", options.bind);
                Some(
                    TcpListener::bind(&addr)
                        .await
                        .map_err(|source| SchedulerError::Bind { addr, source })?,
                )
            }
            None => None,
        };
        let server = options.security.server()?;
        let peer = options.security.peer_client(&server)?;
        if server.is_secured()
            && options.scheduling_policy == ember_core::scheduling::SchedulingPolicy::Push
        {
            return Err(SchedulerError::InsecurePush);
        }
        let catalog = match &options.state_dir {
            Some(dir) => SharedCatalog::open(dir.join(CATALOG_FILE))?,
            None => SharedCatalog::in_memory(),
        };
        // WebAssembly modules by hash, and the libraries declared of them,
        // kept with the catalog.
        let (modules, functions) = match &options.state_dir {
            Some(dir) => (
                ember_wasm::ModuleStore::in_dir(dir.join(WASM_DIR))?,
                ember_wasm::LibraryCatalog::open(dir.join(WASM_DIR).join(FUNCTIONS_FILE))?,
            ),
            None => (
                ember_wasm::ModuleStore::in_memory(),
                ember_wasm::LibraryCatalog::in_memory(),
            ),
        };
        ember_wasm::install_module_store(Arc::new(modules));
        let history = match options.history_dir() {
            Some(dir) => Some(Arc::new(ember_ui::JobHistory::open(
                dir,
                Duration::from_secs(options.history_secs),
            )?)),
            None => None,
        };
        let mut config = scheduler_config(options, &peer, catalog.clone());
        config.bind_port = local.port();
        Ok(Self {
            listener,
            health_listener,
            security: Security { server, peer },
            config,
            probe: options.probe_settings(),
            retention: options.retention_settings(),
            max_plan_depth: options.max_plan_depth,
            flight_sql: options.flight_sql,
            catalog,
            functions,
            history,
        })
    }

    /// The address the scheduler listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of `--health-port`'s plain-HTTP probes, when given.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves gRPC, REST and health requests until the future is dropped or
    /// serving fails.
    pub async fn serve(self) -> Result<(), SchedulerError> {
        let mut config = self.config;
        // Idle executors' polls wait for this (see `long_poll`).
        let work_available = Arc::new(tokio::sync::Notify::new());
        let notify = work_available.clone();
        config.on_work_available = Some(Arc::new(move |_reason| notify.notify_waiters()));
        config.validate()?;
        let config = Arc::new(config);
        let cluster = BallistaCluster::new_from_config(&config).await?;
        let jobs = cluster.job_state();
        let scheduler =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config).await?;
        // Both background tasks end with the runtime that serves.
        if let Some(probe) = self.probe {
            tokio::spawn(liveness::ExecutorProbe::new(scheduler.clone(), probe).run());
        }
        tokio::spawn(retention::FinishedJobRetention::new(jobs.clone(), self.retention).run());
        let guard = stale_outputs::StaleOutputGuard::default();
        if scheduler.state.config.is_push_staged_scheduling() {
            // No poll precedes a pushed task; look as often as a poll would.
            tokio::spawn(guard.clone().watch(scheduler.clone()));
        }
        let view = Arc::new(ui_view::SchedulerClusterView::new(
            Arc::new(scheduler.clone()),
            jobs.clone(),
        ));
        if let Some(history) = &self.history {
            tokio::spawn(ui_view::HistoryRecorder::new(view.clone(), history.clone()).run());
        }
        let plans = plan_depth::PlanDepthGuard::new(self.max_plan_depth);
        // Fetches of cached partitions from executors present the same.
        ember_auth::set_peer_security(self.security.peer.clone());
        let parts = server::SchedulerParts {
            scheduler,
            jobs,
            work_available,
            guard,
            plans,
            flight_sql: self.flight_sql,
            catalog: self.catalog,
            functions: self.functions,
            view,
            history: self.history,
        };
        server::serve(self.listener, self.health_listener, parts, self.security)
            .await
            .map_err(SchedulerError::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_installs_ember_hooks() {
        let config = scheduler_config(
            &SchedulerOptions::default(),
            &ClientSecurity::default(),
            SharedCatalog::in_memory(),
        );
        assert!(config.override_config_producer.is_some());
        assert!(config.override_session_builder.is_some());
        let codec = config.override_physical_codec.expect("physical codec");
        assert!(format!("{codec:?}").contains("EmberPhysicalCodec"));
        let produced = (config.override_config_producer.unwrap())();
        assert!(
            produced
                .options()
                .extensions
                .get::<ember_core::EmberConfig>()
                .is_some()
        );
    }

    #[tokio::test]
    async fn binding_port_zero_reports_the_real_port() {
        let options = SchedulerOptions {
            port: 0,
            ..SchedulerOptions::default()
        };
        let bound = BoundScheduler::bind(&options).await.unwrap();
        let port = bound.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(bound.config.bind_port, port);
    }
}
