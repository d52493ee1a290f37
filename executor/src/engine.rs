//! Ember's execution engine: the hook through which every stage plan passes on
//! an executor before it runs.

use std::fmt::Debug;
use std::sync::Arc;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use ember_core::settings_rewrite::SettingsRewrite;

use crate::job_watch::JobStatusSource;
use crate::stage::SupervisedStage;

/// A rewrite applied to each decoded stage plan on the executor, before it
/// runs (for example: replace a supported subtree by a GPU operator).
///
/// A rewrite must keep the plan's schema and partitioning, and must return
/// the plan unchanged when it does not apply.
pub trait StagePlanRewrite: Debug + Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Rewrites `plan` (a whole stage, rooted at its shuffle writer).
    fn rewrite(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

/// A settings-driven rewrite ([`SettingsRewrite`]) of each stage, as the
/// session's `ember.*` settings say: the GPU placement (`ember.gpu`;
/// `force` without a GPU fails the task with a clear error) and the
/// adaptive joins (`ember.adaptive_joins`: a task whose build side does not
/// fit its memory pool joins by a grace hash join that spills). The
/// rewritten stage still ends in the same shuffle writer, and the
/// scheduler's plan keeps the original operators node for node, so the
/// scheduler, the other executors and the stage metrics see no difference.
#[derive(Debug, Clone, Copy)]
pub struct SettingsStageRewrite(pub SettingsRewrite);

impl StagePlanRewrite for SettingsStageRewrite {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn rewrite(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &SessionConfig,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let settings = ember_core::EmberConfig::from_session_config(config);
        self.0.apply(plan, &settings)
    }
}

/// Ember's [`ExecutionEngine`]: applies its [`StagePlanRewrite`]s to every
/// stage plan, then hands it to Ballista's default engine (which wires the
/// shuffle readers and writers), so shuffle behaves exactly as in Ballista.
/// Each stage it returns is a [`SupervisedStage`]: it stops when its job
/// fails or is cancelled, and reports a broken connection to a peer as a
/// retryable error.
pub struct EmberExecutionEngine {
    inner: Arc<dyn ExecutionEngine>,
    rewrites: Vec<Arc<dyn StagePlanRewrite>>,
    jobs: Option<JobStatusSource>,
}

impl Debug for EmberExecutionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.rewrites.iter().map(|r| r.name()).collect();
        f.debug_struct("EmberExecutionEngine")
            .field("rewrites", &names)
            .finish()
    }
}

impl EmberExecutionEngine {
    /// An engine that delegates to `inner` (normally Ballista's default
    /// engine) with no rewrites.
    pub fn new(inner: Arc<dyn ExecutionEngine>) -> Self {
        Self {
            inner,
            rewrites: Vec::new(),
            jobs: None,
        }
    }

    /// An engine over Ballista's default engine.
    pub fn with_default_engine() -> Self {
        Self::new(Arc::new(DefaultExecutionEngine::new()))
    }

    /// Stops each stage when `jobs` says its job has failed or was
    /// cancelled; without it, stages run to their end.
    pub fn with_job_status_source(mut self, jobs: JobStatusSource) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Adds a stage plan rewrite; rewrites run in the order they were added.
    pub fn with_rewrite(mut self, rewrite: Arc<dyn StagePlanRewrite>) -> Self {
        self.rewrites.push(rewrite);
        self
    }
}

impl ExecutionEngine for EmberExecutionEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let mut plan = plan;
        for rewrite in &self.rewrites {
            plan = rewrite.rewrite(plan, config)?;
            tracing::debug!(%job_id, stage_id, task_id, rewrite = rewrite.name(), "stage plan rewritten");
        }
        let job = job_id.to_string();
        let stage = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(SupervisedStage::new(
            stage,
            job,
            self.jobs.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ballista_core::execution_plans::ShuffleWriterExec;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;

    use super::*;

    #[derive(Debug, Default)]
    struct CountingRewrite {
        calls: AtomicUsize,
    }

    impl StagePlanRewrite for CountingRewrite {
        fn name(&self) -> &str {
            "counting"
        }

        fn rewrite(
            &self,
            plan: Arc<dyn ExecutionPlan>,
            _config: &SessionConfig,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(plan)
        }
    }

    #[test]
    fn rewrites_run_before_the_default_engine() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let work_dir = tempfile::tempdir().unwrap();
        let writer = ShuffleWriterExec::try_new(
            JobId::new("job-1"),
            1,
            Arc::new(EmptyExec::new(schema)),
            work_dir.path().to_string_lossy().into_owned(),
        )
        .unwrap();
        let rewrite = Arc::new(CountingRewrite::default());
        let engine = EmberExecutionEngine::with_default_engine().with_rewrite(rewrite.clone());
        let stage = engine
            .create_query_stage_exec(
                JobId::new("job-1"),
                1,
                0,
                vec![0],
                Arc::new(writer),
                &work_dir.path().to_string_lossy(),
                &ember_core::distributed_session_config(),
            )
            .expect("the default engine accepts a shuffle writer stage");
        assert_eq!(rewrite.calls.load(Ordering::SeqCst), 1);
        assert!(stage.to_string().contains("ShuffleWriter"), "{stage}");
    }
}
