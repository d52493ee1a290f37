//! The engines the runner measures in Rust: Ember embedded, a local Ember
//! cluster, and single-process DataFusion.

use std::path::Path;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::EmberContext;
use ember::local_cluster::{LocalCluster, LocalClusterOptions};
use ember_memory::ByteSize;

use crate::{BenchError, Suite};

/// Which engine to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Ember in this process (`EmberContext::embedded`).
    Embedded,
    /// A scheduler and `executors` executors on 127.0.0.1.
    Cluster {
        /// How many executors.
        executors: usize,
    },
    /// DataFusion's own `SessionContext`, the version Ember embeds.
    DataFusion,
}

impl EngineKind {
    /// The engine's name in records.
    pub fn name(self) -> String {
        match self {
            EngineKind::Embedded => "ember-embedded".into(),
            EngineKind::Cluster { executors } => format!("ember-cluster-{executors}"),
            EngineKind::DataFusion => "datafusion".into(),
        }
    }
}

enum Session {
    Ember(EmberContext),
    DataFusion(SessionContext),
}

/// A started engine with the TPC-H tables registered.
pub struct BenchEngine {
    kind: EngineKind,
    /// The memory limit it was started with, as the user wrote it.
    memory_label: Option<String>,
    session: Session,
    processes: Vec<(String, u32)>,
    // Kept for their Drop: the cluster's processes and its state dir.
    _cluster: Option<(LocalCluster, tempfile::TempDir)>,
}

impl BenchEngine {
    /// Starts `kind` over `suite`'s Parquet tables under `data`, using
    /// `threads` cores in all; cluster binaries come from `bin_dir`.
    /// `memory` limits an embedded session, or each executor of a cluster
    /// (its label, as the user wrote it, joins the engine's name).
    pub async fn start(
        kind: EngineKind,
        suite: Suite,
        data: &Path,
        threads: usize,
        bin_dir: &Path,
        memory: Option<(&str, ByteSize)>,
    ) -> Result<Self, BenchError> {
        let memory_label = memory.map(|(label, _)| label.to_string());
        let memory = memory.map(|(_, size)| size);
        let threads = threads.max(1);
        let own = std::process::id();
        match kind {
            EngineKind::DataFusion => {
                let config = SessionConfig::new().with_target_partitions(threads);
                let ctx = SessionContext::new_with_config(config);
                for &table in suite.tables() {
                    let path = data.join(table);
                    ctx.register_parquet(
                        table,
                        &format!("{}/", path.display()),
                        ParquetReadOptions::default(),
                    )
                    .await?;
                }
                Ok(Self {
                    kind,
                    memory_label,
                    session: Session::DataFusion(ctx),
                    processes: vec![("bench".into(), own)],
                    _cluster: None,
                })
            }
            EngineKind::Embedded => {
                let ctx = EmberContext::embedded()?;
                if let Some(memory) = memory {
                    ctx.set_process_memory(memory)?;
                }
                ctx.set_option(
                    "datafusion.execution.target_partitions",
                    &threads.to_string(),
                )?;
                for statement in suite.create_table_statements(data) {
                    ctx.run_sql(&statement).await?;
                }
                Ok(Self {
                    kind,
                    memory_label,
                    session: Session::Ember(ctx),
                    processes: vec![("bench".into(), own)],
                    _cluster: None,
                })
            }
            EngineKind::Cluster { executors } => {
                let state = tempfile::tempdir().map_err(|source| BenchError::Io {
                    path: std::env::temp_dir().display().to_string(),
                    source,
                })?;
                let mut options = LocalClusterOptions::new(bin_dir, executors, state.path());
                options.cores_per_executor = (threads / executors.max(1)).max(1);
                options.executor_memory = memory;
                options.log_filter = "warn".into();
                let cluster = LocalCluster::start(&options).await?;
                let ctx = EmberContext::connect(&cluster.address().to_string()).await?;
                for statement in suite.create_table_statements(data) {
                    ctx.run_sql(&statement).await?;
                }
                let mut processes = vec![("client".to_string(), own)];
                processes.extend(
                    cluster
                        .scheduler_pid()
                        .map(|p| ("scheduler".to_string(), p)),
                );
                processes.extend(
                    cluster
                        .executor_pids()
                        .into_iter()
                        .enumerate()
                        .map(|(n, p)| (format!("executor-{n}"), p)),
                );
                Ok(Self {
                    kind,
                    memory_label,
                    session: Session::Ember(ctx),
                    processes,
                    _cluster: Some((cluster, state)),
                })
            }
        }
    }

    /// The engine's name in records: its kind's, then `@` and its memory
    /// limit when it was given one.
    pub fn name(&self) -> String {
        match &self.memory_label {
            Some(label) => format!("{}@{label}", self.kind.name()),
            None => self.kind.name(),
        }
    }

    /// Sets a session setting (Ember only; DataFusion keeps its defaults).
    pub fn set(&self, key: &str, value: &str) -> Result<(), BenchError> {
        match &self.session {
            Session::Ember(ctx) => Ok(ctx.set_option(key, value)?),
            Session::DataFusion(_) => Ok(()),
        }
    }

    /// Bytes the last query's operators spilled to disk (Ember only).
    pub async fn last_spilled_bytes(&self) -> Option<u64> {
        match &self.session {
            Session::Ember(ctx) => match ctx.last_statement_spill().await {
                Ok(spill) => spill.map(|s| s.bytes as u64),
                Err(e) => {
                    eprintln!("cannot tell what the query spilled: {e}");
                    None
                }
            },
            Session::DataFusion(_) => None,
        }
    }

    /// The engine's version.
    pub fn version(&self) -> String {
        match self.kind {
            EngineKind::DataFusion => datafusion::DATAFUSION_VERSION.to_string(),
            _ => env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The engine's processes, by name (the runner's own process included
    /// where the engine runs in it).
    pub fn processes(&self) -> &[(String, u32)] {
        &self.processes
    }

    /// Runs one query and returns its result.
    pub async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>, BenchError> {
        match &self.session {
            Session::Ember(ctx) => Ok(ctx.run_sql(sql).await?),
            Session::DataFusion(ctx) => Ok(ctx.sql(sql).await?.collect().await?),
        }
    }
}
