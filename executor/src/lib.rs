//! `ember-executor`: Ballista's executor process, embedded and configured with
//! Ember's shared configuration, runtime, function registry, codecs and
//! [`EmberExecutionEngine`].
//!
//! An executor registers with the scheduler, receives stage tasks, decodes
//! their plans with Ember's codecs, runs them through the execution engine and
//! writes shuffle files into its work dir, which other executors and clients
//! fetch over Arrow Flight.

pub mod dynamic_filters;
pub mod engine;
pub mod flight;
pub mod job_watch;
mod modules;
pub mod ports;
mod preflight;
pub mod stage;
mod status;
pub mod transport_failure;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use ballista_core::extension::SessionConfigExt;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::prelude::SessionConfig;
use ember_auth::ClientSecurity;
use ember_core::scheduling::SchedulingPolicy;
use ember_core::settings_rewrite::SettingsRewrite;
use ember_core::{EmberLogicalCodec, EmberPhysicalCodec, SchedulerAddress};

pub use dynamic_filters::StageDynamicFilters;
pub use ember_memory::{ByteSize, ParseByteSizeError};
pub use engine::{EmberExecutionEngine, StagePlanRewrite};
pub use ports::ExecutorPorts;

/// Errors that stop an executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A flag has a value the executor cannot use.
    #[error("invalid --{flag}: {reason}")]
    InvalidFlag {
        /// The flag's name.
        flag: &'static str,
        /// Why its value was rejected.
        reason: String,
    },
    /// `--scheduler` is not an address.
    #[error("--scheduler: {0}")]
    SchedulerAddress(#[from] ember_core::address::InvalidAddress),
    /// The work dir could not be created.
    #[error("cannot create work dir {path}: {source}")]
    WorkDir {
        /// The directory that was tried.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// One of the executor's ports cannot be listened on.
    #[error("cannot listen on {address} (--{flag}): {source}")]
    Listen {
        /// The port's flag.
        flag: &'static str,
        /// The address asked for (port 0: any free port).
        address: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// One of the executor's services (such as its Arrow Flight service)
    /// failed while it ran, which stopped the executor.
    #[error("{0}")]
    ServiceFailed(String),
    /// Ballista's executor failed to start or stopped with an error.
    #[error("{0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    /// A token or TLS flag cannot be used.
    #[error("{0}")]
    Security(#[from] ember_auth::AuthError),
    /// Push scheduling was asked for on a secured cluster.
    #[error(
        "--scheduling-policy push cannot be secured (this executor would serve pushed tasks \
         in plain text, without a token); use pull, the default"
    )]
    InsecurePush,
    /// The scheduler refused this executor's token, or TLS failed between
    /// them.
    #[error("the scheduler at {scheduler} did not accept this executor: {reason}")]
    Refused {
        /// The scheduler's address.
        scheduler: String,
        /// Why, in words.
        reason: String,
    },
}

/// The executor's settings; every flag has an `EMBER_EXECUTOR_*` environment
/// equivalent (the scheduler's address is `EMBER_SCHEDULER`).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorOptions {
    /// The scheduler to register with, as host:port.
    #[arg(long, env = "EMBER_SCHEDULER", default_value = "localhost:50050")]
    pub scheduler: String,
    /// Address to listen on.
    #[arg(long, env = "EMBER_EXECUTOR_BIND", default_value = "127.0.0.1")]
    pub bind: String,
    /// Host name the scheduler, other executors and clients use to reach this
    /// executor (defaults to the bind address, or to the machine's host name
    /// when binding every interface, as in a container).
    #[arg(long, env = "EMBER_EXECUTOR_EXTERNAL_HOST")]
    pub external_host: Option<String>,
    /// Arrow Flight port, serving shuffle data and results (0 picks a free port).
    #[arg(long, env = "EMBER_EXECUTOR_PORT", default_value_t = 50051)]
    pub port: u16,
    /// gRPC port on which the scheduler pushes tasks (0 picks a free port).
    #[arg(long, env = "EMBER_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// HTTP port for `/healthz` and `/readyz` (0 picks a free port).
    #[arg(long, env = "EMBER_EXECUTOR_HEALTH_PORT", default_value_t = 50053)]
    pub health_port: u16,
    /// Task slots: how many tasks run at once (default: the number of CPU cores).
    #[arg(long, env = "EMBER_EXECUTOR_CORES")]
    pub cores: Option<usize>,
    /// Memory this executor may use, such as `4GiB` or `512MB`: its tasks'
    /// operators share 60% of it as their pool (split among the task slots)
    /// and spill beyond it; the rest is headroom for what the pool does not
    /// track (shuffle transfers, Parquet decoding, allocator slack). Default:
    /// the machine's or container's memory.
    #[arg(long, env = "EMBER_EXECUTOR_MEMORY")]
    pub memory: Option<ByteSize>,
    /// Directory for shuffle files and spills (default: a fresh directory
    /// under the system's temp dir, removed on exit).
    #[arg(long, env = "EMBER_EXECUTOR_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Directory for cached datasets' partitions written to disk
    /// (`persist(Disk)`, or `MemoryAndDisk` past `--cache-memory`); default:
    /// a fresh directory under the system's temp dir, removed on exit.
    #[arg(long, env = "EMBER_EXECUTOR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Memory for cached datasets' partitions, such as `2GiB`; beyond it they
    /// go to `--cache-dir` or, at level `Memory`, are not kept.
    #[arg(long, env = "EMBER_EXECUTOR_CACHE_MEMORY", default_value = "1GiB")]
    pub cache_memory: ByteSize,
    /// Seconds to keep retrying to reach the scheduler at start-up.
    #[arg(
        long,
        env = "EMBER_EXECUTOR_SCHEDULER_CONNECT_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub scheduler_connect_timeout_secs: u16,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, env = "EMBER_EXECUTOR_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// How this executor gets tasks: `pull` (it asks) or `push` (the
    /// scheduler sends); must match the scheduler's.
    #[arg(long, env = "EMBER_SCHEDULING_POLICY", default_value = "pull")]
    pub scheduling_policy: ember_core::scheduling::SchedulingPolicy,
    /// Largest gRPC message, in bytes.
    #[arg(long, env = "EMBER_EXECUTOR_GRPC_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub grpc_max_message_bytes: u32,
    /// The cluster's token and TLS: what this executor presents to the
    /// scheduler and its peers, and requires of whoever fetches from it.
    #[command(flatten)]
    pub security: ember_auth::SecurityOptions,
}

/// The host name this executor advertises: `--external-host` if given;
/// otherwise the bind address, unless that is a wildcard (`0.0.0.0`, `::`),
/// which no peer can dial: then the machine's host name, which container
/// networks (compose, Kubernetes with a headless service) resolve.
fn advertised_host(options: &ExecutorOptions) -> String {
    if let Some(host) = &options.external_host {
        return host.clone();
    }
    let wildcard = options
        .bind
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if wildcard && let Some(name) = machine_host_name() {
        return name;
    }
    options.bind.clone()
}

/// The machine's host name, if it has a usable one.
fn machine_host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for `buffer.len()` bytes; gethostname
    // writes at most that many and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// The configuration producer installed on executors: Ember's distributed
/// configuration, with the hook that dresses the channels a task's shuffle
/// readers open to other executors in the cluster's TLS and token.
fn executor_session_config(peer: &ClientSecurity) -> SessionConfig {
    let config = ember_core::distributed_session_config();
    if peer.is_secured() {
        config.with_ballista_override_create_grpc_client_endpoint(peer.endpoint_override())
    } else {
        config
    }
}

/// An executor ready to start: Ballista's process configuration with Ember's
/// hooks installed, and the work dir it owns.
pub struct PreparedExecutor {
    /// Ballista's executor configuration.
    pub config: ExecutorProcessConfig,
    /// The ports in use.
    pub ports: ExecutorPorts,
    /// The work dir; when Ember created it, dropping this removes it.
    work_dir: WorkDir,
    /// Where cached partitions are written; likewise removed when owned.
    cache_dir: WorkDir,
    /// The gRPC and health sockets, held until Ballista binds them.
    held: Vec<ports::ReservedPort>,
    /// Why a service stopped the executor, when one failed.
    service_failure: Arc<OnceLock<String>>,
    /// How this executor reaches the scheduler and its peers.
    peer: ClientSecurity,
    /// How long to keep trying to reach the scheduler at start.
    scheduler_connect_timeout: std::time::Duration,
}

enum WorkDir {
    Given(PathBuf),
    Owned(tempfile::TempDir),
}

impl WorkDir {
    fn path(&self) -> &std::path::Path {
        match self {
            WorkDir::Given(path) => path,
            WorkDir::Owned(dir) => dir.path(),
        }
    }
}

/// `given`, created if missing, or a fresh directory under the system's temp
/// dir named with `prefix`, removed when dropped.
fn owned_or_given(given: Option<&PathBuf>, prefix: &str) -> Result<WorkDir, ExecutorError> {
    match given {
        Some(path) => {
            std::fs::create_dir_all(path).map_err(|source| ExecutorError::WorkDir {
                path: path.clone(),
                source,
            })?;
            Ok(WorkDir::Given(path.clone()))
        }
        None => tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map(WorkDir::Owned)
            .map_err(|source| ExecutorError::WorkDir {
                path: std::env::temp_dir(),
                source,
            }),
    }
}

/// The prefix of the directories DataFusion spills into, one per task's
/// runtime, created inside the work dir and removed when the task ends.
const SPILL_DIR_PREFIX: &str = "datafusion-";

/// Removes the spill directories a previous executor left in `work_dir`
/// when it was killed mid-task: no task of this one has started yet, so
/// every spill directory there is stale. Returns how many were removed.
fn remove_stale_spill_dirs(work_dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_spill_dir = entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPILL_DIR_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_spill_dir {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(
                "cannot remove the stale spill directory {}: {e}",
                entry.path().display()
            ),
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} spill director{} left in {} by an earlier executor",
            if removed == 1 { "y" } else { "ies" },
            work_dir.display()
        );
    }
    removed
}

impl PreparedExecutor {
    /// Validates the options and builds the executor's configuration.
    pub fn prepare(options: &ExecutorOptions) -> Result<Self, ExecutorError> {
        let scheduler = SchedulerAddress::parse(&options.scheduler)?;
        if options.cores == Some(0) {
            return Err(ExecutorError::InvalidFlag {
                flag: "cores",
                reason: "must be at least 1".into(),
            });
        }
        let server = options.security.server()?;
        let peer = options.security.peer_client(&server)?;
        if server.is_secured() && options.scheduling_policy == SchedulingPolicy::Push {
            return Err(ExecutorError::InsecurePush);
        }
        let work_dir = owned_or_given(options.work_dir.as_ref(), "ember-executor-")?;
        remove_stale_spill_dirs(work_dir.path());
        let cache_dir = owned_or_given(options.cache_dir.as_ref(), "ember-cache-")?;
        let reserved = ports::ReservedPorts::bind(
            &options.bind,
            options.port,
            options.grpc_port,
            options.health_port,
        )?;
        let ports = reserved.ports();
        let work_dir_str = work_dir.path().to_string_lossy().into_owned();
        modules::install(work_dir.path(), &scheduler.host, scheduler.port, &peer).map_err(|e| {
            ExecutorError::InvalidFlag {
                flag: "work-dir",
                reason: e.to_string(),
            }
        })?;

        let jobs = job_watch::JobStatusSource::new(&scheduler.host, scheduler.port, &peer)
            .map_err(|e| ExecutorError::InvalidFlag {
                flag: "scheduler",
                reason: e.to_string(),
            })?;
        let mut config = ExecutorProcessConfig {
            bind_host: options.bind.clone(),
            external_host: Some(advertised_host(options)),
            port: ports.flight,
            grpc_port: ports.grpc,
            scheduler_host: scheduler.host,
            scheduler_port: scheduler.port,
            scheduler_connect_timeout_seconds: options.scheduler_connect_timeout_secs,
            work_dir: Some(work_dir_str.clone()),
            executor_heartbeat_interval_seconds: options.heartbeat_secs,
            task_scheduling_policy: options.scheduling_policy.ballista(),
            grpc_max_decoding_message_size: options.grpc_max_message_bytes,
            grpc_max_encoding_message_size: options.grpc_max_message_bytes,
            job_data_clean_up_interval_seconds: 60,
            job_data_ttl_seconds: 24 * 3600,
            memory_pool_size: options
                .memory
                .map(|memory| ember_memory::pool_for_process(memory).bytes()),
            // Without `--memory`, the budget is the machine's or container's
            // memory, and the pool the same share of it.
            memory_pool_fraction: ember_memory::POOL_FRACTION,
            print_thread_info: false,
            ..ExecutorProcessConfig::default()
        };
        if let Some(cores) = options.cores {
            config.vcores = cores;
        }

        // Everything the executor decodes, resolves and reads goes through
        // ember-core, exactly as on the client and the scheduler.
        let base = executor_session_config(&peer);
        let runtime = ember_core::runtime_env(&base, Some(&work_dir_str))
            .map_err(|e| ExecutorError::Ballista(e.into()))?;
        let state = ember_core::session_state(base, runtime)
            .map_err(|e| ExecutorError::Ballista(e.into()))?;
        let producer_peer = peer.clone();
        config.override_config_producer =
            Some(Arc::new(move || executor_session_config(&producer_peer)));
        if peer.is_secured() {
            // The executor's own connection to the scheduler.
            config.override_create_grpc_client_endpoint = Some(peer.endpoint_override());
        }
        config.override_runtime_producer = Some(Arc::new(move |session_config: &SessionConfig| {
            ember_core::runtime_env(session_config, Some(&work_dir_str))
        }));
        // Build each task's runtime from that task's settings: a session may
        // change its `s3.*` settings between queries, and a runtime cached
        // per session would keep the old ones. S3 clients themselves are
        // cached per process (see `ember_core::s3`), so this costs little.
        config.session_runtime_cache_capacity = 0;
        config.override_function_registry = Some(ember_core::function_registry(&state));
        config.override_logical_codec = Some(Arc::new(EmberLogicalCodec::default()));
        config.override_physical_codec = Some(Arc::new(EmberPhysicalCodec::default()));
        config.override_execution_engine = Some(Arc::new(
            EmberExecutionEngine::with_default_engine()
                .with_job_status_source(jobs)
                .with_rewrite(Arc::new(engine::SettingsStageRewrite(
                    SettingsRewrite::GPU_PLACEMENT,
                )))
                // Before the adaptive joins, as embedded (DataFusion's
                // filter pushdown runs before Ember's rules), so that the
                // joins they wrap keep their filters.
                .with_rewrite(Arc::new(StageDynamicFilters))
                .with_rewrite(Arc::new(engine::SettingsStageRewrite(
                    SettingsRewrite::ADAPTIVE_JOINS,
                ))),
        ));
        // Cached partitions live in this process's block store, served to
        // peers by the Flight service beside shuffle data.
        if !ember_core::cache::BlockStore::configure_global(
            cache_dir.path(),
            options.cache_memory.bytes() as usize,
        ) {
            tracing::debug!("the block store was configured already");
        }
        let endpoint = format!("{}:{}", advertised_host(options), ports.flight);
        let max_message_bytes = options.grpc_max_message_bytes as usize;
        let flight_listener = Mutex::new(Some(reserved.flight.into_listener()));
        let service_failure = Arc::new(OnceLock::new());
        let failure = Arc::clone(&service_failure);
        config.override_arrow_flight_service =
            Some(Arc::new(move |work_dir, address, shutdown, grpc_config| {
                // The socket bound at preparation; Ballista asks once.
                let listener = flight_listener.lock().ok().and_then(|mut held| held.take());
                let service = flight::EmberFlightService::new(work_dir, endpoint.clone());
                let failure = Arc::clone(&failure);
                let server = server.clone();
                tokio::spawn(async move {
                    let result = service
                        .serve(
                            flight::FlightListener {
                                listener,
                                address,
                                security: server,
                            },
                            shutdown,
                            grpc_config,
                            max_message_bytes,
                        )
                        .await;
                    if let Err(e) = &result {
                        let _ = failure
                            .set(format!("the Arrow Flight service on {address} failed: {e}"));
                    }
                    result
                })
            }));

        Ok(Self {
            config,
            ports,
            work_dir,
            cache_dir,
            held: vec![reserved.grpc, reserved.health],
            service_failure,
            peer,
            scheduler_connect_timeout: std::time::Duration::from_secs(u64::from(
                options.scheduler_connect_timeout_secs,
            )),
        })
    }

    /// The executor's work dir.
    pub fn work_dir(&self) -> &std::path::Path {
        self.work_dir.path()
    }

    /// Runs the executor (and its health endpoint) until it is stopped by
    /// SIGTERM, Ctrl-C or the scheduler. An owned work dir is removed after.
    pub async fn run(self) -> Result<(), ExecutorError> {
        let health_addr = format!("{}:{}", self.config.bind_host, self.ports.health)
            .parse()
            .map_err(|e| ExecutorError::InvalidFlag {
                flag: "bind",
                reason: format!("{e}"),
            })?;
        // TLS and the token are checked once, with a clear answer, before
        // Ballista's registration (which would only retry and time out).
        preflight::check_scheduler(
            &self.peer,
            &self.config.scheduler_host,
            self.config.scheduler_port,
            self.scheduler_connect_timeout,
        )
        .await?;
        // Fetches of cached partitions from peers present the same.
        ember_auth::set_peer_security(self.peer.clone());
        // Ballista binds the gRPC and health ports itself: let go of them
        // just before.
        drop(self.held);
        if let Some(metrics) = status::ExecutorMetrics::global() {
            // Without `--memory`, Ballista sizes the pool as this share of
            // the machine's (or container's) memory.
            let fraction = self.config.memory_pool_fraction;
            let pool = self.config.memory_pool_size.or_else(|| {
                ember_memory::machine_memory().map(|m| (m.total.bytes() as f64 * fraction) as u64)
            });
            metrics.configure(self.work_dir.path(), self.cache_dir.path(), pool);
        }
        let (health_stop, health_stopped) = tokio::sync::oneshot::channel();
        let health =
            status::spawn_health_server(health_addr, self.config.health.clone(), health_stopped);
        let result = start_executor_process(Arc::new(self.config)).await;
        let _ = health_stop.send(());
        let _ = health.await;
        drop(self.work_dir);
        drop(self.cache_dir);
        result.map_err(ExecutorError::from)?;
        // Ballista stops the executor when a service fails, and returns
        // success; the failure is the reason the process exits.
        match self.service_failure.get() {
            Some(reason) => Err(ExecutorError::ServiceFailed(reason.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ExecutorOptions {
        ExecutorOptions {
            scheduler: "127.0.0.1:50050".into(),
            bind: "127.0.0.1".into(),
            external_host: None,
            port: 0,
            grpc_port: 0,
            health_port: 0,
            cores: Some(2),
            memory: Some("256MiB".parse().unwrap()),
            work_dir: None,
            cache_dir: None,
            cache_memory: "64MiB".parse().unwrap(),
            scheduler_connect_timeout_secs: 1,
            heartbeat_secs: 5,
            scheduling_policy: Default::default(),
            grpc_max_message_bytes: 1 << 20,
            security: Default::default(),
        }
    }

    #[test]
    fn prepare_installs_ember_hooks_and_free_ports() {
        let prepared = PreparedExecutor::prepare(&options()).unwrap();
        assert!(prepared.config.override_execution_engine.is_some());
        assert!(prepared.config.override_function_registry.is_some());
        assert_eq!(prepared.config.vcores, 2);
        // 60% of --memory is the operators' pool; the rest is headroom.
        let pool = (256.0 * 1024.0 * 1024.0 * ember_memory::POOL_FRACTION) as u64;
        assert_eq!(prepared.config.memory_pool_size, Some(pool));
        assert_ne!(prepared.ports.flight, 0);
        assert_ne!(prepared.ports.grpc, 0);
        assert!(prepared.work_dir().is_dir());
    }

    #[test]
    fn owned_work_dir_is_removed_when_dropped() {
        let prepared = PreparedExecutor::prepare(&options()).unwrap();
        let dir = prepared.work_dir().to_path_buf();
        drop(prepared);
        assert!(!dir.exists());
    }

    #[test]
    fn bad_scheduler_address_names_the_flag() {
        let mut opts = options();
        opts.scheduler = "nowhere:x".into();
        let err = PreparedExecutor::prepare(&opts).err().unwrap().to_string();
        assert_eq!(
            err,
            "--scheduler: invalid scheduler address `nowhere:x`: expected host:port (for example localhost:50050)"
        );
    }

    #[test]
    fn advertised_host_is_the_external_host_then_a_dialable_bind_address() {
        let mut opts = options();
        assert_eq!(advertised_host(&opts), "127.0.0.1");
        opts.external_host = Some("executor-7".into());
        assert_eq!(advertised_host(&opts), "executor-7");
        opts.external_host = None;
        for wildcard in ["0.0.0.0", "::", "[::]"] {
            opts.bind = wildcard.into();
            let host = advertised_host(&opts);
            assert_eq!(Some(host), machine_host_name(), "bind {wildcard}");
        }
    }

    #[test]
    fn stale_spill_dirs_are_removed_from_a_given_work_dir_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("datafusion-abc123");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join(".tmpXYZ"), b"spilled rows").unwrap();
        let shuffle = dir.path().join("job-1");
        std::fs::create_dir(&shuffle).unwrap();
        let mut opts = options();
        opts.work_dir = Some(dir.path().to_path_buf());
        let prepared = PreparedExecutor::prepare(&opts).unwrap();
        assert!(!stale.exists(), "the stale spill dir is removed");
        assert!(shuffle.exists(), "other job data stays");
        drop(prepared);
        assert!(dir.path().exists(), "a given work dir is kept");
    }

    #[test]
    fn zero_cores_is_rejected() {
        let mut opts = options();
        opts.cores = Some(0);
        assert!(PreparedExecutor::prepare(&opts).is_err());
    }
}
