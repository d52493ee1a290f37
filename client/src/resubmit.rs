//! Submitting a query again when the scheduler asks for it.
//!
//! When an executor is lost while a stage is running, Ballista's recovery
//! would count the rows of that stage's finished tasks twice; Ember's
//! scheduler fails such a job instead, with a message that starts
//! [`RESUBMIT_MARKER`]. [`ResubmittingQueryPlanner`] wraps the cluster
//! session's planner so that every query it plans runs in a
//! [`ResubmittingExec`], which submits the query again (at most
//! [`MAX_RESUBMISSIONS`] times) when its first answer is such a failure. A
//! distributed query answers only once its job has finished, so nothing has
//! been returned when the failure arrives.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use ember_core::RESUBMIT_MARKER;
use ember_core::operator::only_child;

use crate::empty_relation::with_portable_empty_relations;
use futures::{StreamExt, TryStreamExt};
use tracing::warn;

/// How many times one query is submitted again before its failure is
/// returned.
pub const MAX_RESUBMISSIONS: usize = 3;

/// A query planner that runs every plan of `inner` in a
/// [`ResubmittingExec`]. The logical plan it hands `inner` has its empty
/// relations in a form the scheduler decodes whole
/// ([`with_portable_empty_relations`]).
#[derive(Debug)]
pub struct ResubmittingQueryPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
}

impl ResubmittingQueryPlanner {
    /// Wraps the planner `inner` (Ballista's, for a cluster session).
    pub fn new(inner: Arc<dyn QueryPlanner + Send + Sync>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl QueryPlanner for ResubmittingQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let logical_plan = with_portable_empty_relations(logical_plan)?;
        let plan = self
            .inner
            .create_physical_plan(&logical_plan, session_state)
            .await?;
        Ok(Arc::new(ResubmittingExec::new(plan)))
    }
}

/// Runs its input again when the input's first answer is an error that
/// starts [`RESUBMIT_MARKER`]; see the module documentation.
#[derive(Debug)]
pub struct ResubmittingExec {
    input: Arc<dyn ExecutionPlan>,
}

impl ResubmittingExec {
    /// Runs `input`, submitting it again when asked to.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

/// Whether `error` is the scheduler's request to submit the query again.
pub fn asks_for_resubmission(error: &DataFusionError) -> bool {
    error.to_string().contains(RESUBMIT_MARKER)
}

impl DisplayAs for ResubmittingExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ResubmittingExec")
    }
}

impl ExecutionPlan for ResubmittingExec {
    fn name(&self) -> &str {
        "ResubmittingExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(only_child(self.name(), children)?)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.clone();
        let schema = input.schema();
        // What travels with the query: without S3 credentials when the
        // session keeps them at home.
        let context = match ember_core::config_to_ship(context.session_config()) {
            Some(config) => {
                ember_memory::task_context_with(&context, config, context.runtime_env())
            }
            None => context,
        };
        let first_answer = async move {
            let mut resubmissions = 0;
            loop {
                let mut stream = input.execute(partition, context.clone())?;
                match stream.next().await {
                    Some(Err(error))
                        if resubmissions < MAX_RESUBMISSIONS && asks_for_resubmission(&error) =>
                    {
                        resubmissions += 1;
                        warn!("submitting the query again ({resubmissions}): {error}");
                    }
                    first => {
                        return Ok::<_, DataFusionError>(
                            futures::stream::iter(first).chain(stream),
                        );
                    }
                }
            }
        };
        let stream = futures::stream::once(first_answer).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::EquivalenceProperties;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::common::collect;
    use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};

    use super::*;

    /// A plan whose first `failures` executions fail with `message`, and
    /// which then answers one row: what a resubmitted query looks like to
    /// the client. (A stand-in for a cluster job; the scheduler's side is
    /// tested with real processes.)
    #[derive(Debug)]
    struct FailsThenAnswers {
        failures: usize,
        message: String,
        executions: AtomicUsize,
        properties: Arc<PlanProperties>,
    }

    impl FailsThenAnswers {
        fn new(failures: usize, message: &str) -> Self {
            let schema = schema();
            Self {
                failures,
                message: message.to_owned(),
                executions: AtomicUsize::new(0),
                properties: Arc::new(PlanProperties::new(
                    EquivalenceProperties::new(schema),
                    Partitioning::UnknownPartitioning(1),
                    EmissionType::Final,
                    Boundedness::Bounded,
                )),
            }
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
    }

    impl DisplayAs for FailsThenAnswers {
        fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "FailsThenAnswers")
        }
    }

    impl ExecutionPlan for FailsThenAnswers {
        fn name(&self) -> &str {
            "FailsThenAnswers"
        }
        fn properties(&self) -> &Arc<PlanProperties> {
            &self.properties
        }
        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
        ) -> Result<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            vec![]
        }
        fn with_new_children(
            self: Arc<Self>,
            _: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }
        fn execute(&self, _: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
            let execution = self.executions.fetch_add(1, Ordering::SeqCst);
            let answer = if execution < self.failures {
                Err(DataFusionError::Execution(format!(
                    "Job j{execution} failed: {}",
                    self.message
                )))
            } else {
                Ok(RecordBatch::try_new(
                    schema(),
                    vec![Arc::new(Int64Array::from(vec![execution as i64]))],
                )?)
            };
            Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema(),
                futures::stream::iter([answer]),
            )))
        }
    }

    async fn run(input: Arc<FailsThenAnswers>) -> Result<Vec<RecordBatch>> {
        let exec = ResubmittingExec::new(input);
        collect(exec.execute(0, Arc::new(TaskContext::default()))?).await
    }

    fn answered(batches: &[RecordBatch]) -> i64 {
        let column = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        column.expect("an Int64 column").value(0)
    }

    #[tokio::test]
    async fn a_requested_resubmission_runs_the_query_again() {
        let message = format!("{RESUBMIT_MARKER} executor lost while stage 3 was running");
        let input = Arc::new(FailsThenAnswers::new(2, &message));
        let batches = run(input.clone()).await.unwrap();
        assert_eq!(answered(&batches), 2);
        assert_eq!(input.executions.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_failures_are_returned_at_once() {
        let input = Arc::new(FailsThenAnswers::new(1, "Cancelled"));
        let error = run(input.clone()).await.unwrap_err();
        assert!(error.to_string().contains("Cancelled"), "{error}");
        assert_eq!(input.executions.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn resubmission_stops_after_the_limit() {
        let message = format!("{RESUBMIT_MARKER} executor lost");
        let input = Arc::new(FailsThenAnswers::new(10, &message));
        let error = run(input.clone()).await.unwrap_err();
        assert!(asks_for_resubmission(&error), "{error}");
        assert_eq!(
            input.executions.load(Ordering::SeqCst),
            MAX_RESUBMISSIONS + 1
        );
    }
}
