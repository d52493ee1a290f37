//! The operator that lets several uses of one subplan read one run of it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Statistics;
use datafusion::common::internal_err;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::spill_file::SpillFile;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::SpillManager;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet, SpillMetrics};
use datafusion::physical_plan::statistics::ChildStats;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions, StatisticsArgs,
};
use futures::StreamExt;
use tokio::sync::Notify;

use crate::operator::only_child;

/// One use of a subplan that appears several times in a plan. Every use
/// holds an equal copy of the subplan as its child and the same
/// [`SharedResults`]; the first use to run starts one run of its own copy,
/// every partition at once, and all uses read that run's batches.
#[derive(Debug)]
pub struct SharedSubplanExec {
    input: Arc<dyn ExecutionPlan>,
    results: Arc<SharedResults>,
}

impl SharedSubplanExec {
    /// One use of `input`, sharing `results` with the others.
    pub fn new(input: Arc<dyn ExecutionPlan>, results: Arc<SharedResults>) -> Self {
        Self { input, results }
    }

    /// Its copy of the shared subplan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// What it shares with the other uses.
    pub fn results(&self) -> &Arc<SharedResults> {
        &self.results
    }
}

/// What the uses of one shared subplan have in common: which subplan of
/// the plan it is, how many uses read it, and the run they read.
#[derive(Debug)]
pub struct SharedResults {
    id: usize,
    uses: usize,
    run: Mutex<Option<Arc<SharedRun>>>,
    /// What its runs spilled.
    metrics: ExecutionPlanMetricsSet,
}

impl SharedResults {
    /// The results of the plan's shared subplan number `id`, read by `uses`
    /// operators.
    pub fn new(id: usize, uses: usize) -> Self {
        Self {
            id,
            uses,
            run: Mutex::new(None),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Which shared subplan of its plan this is (0 for the first).
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many operators read it.
    pub fn uses(&self) -> usize {
        self.uses
    }

    fn current_run(&self) -> MutexGuard<'_, Option<Arc<SharedRun>>> {
        self.run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The run in progress, or a new one of `input` if there is none.
    fn join_run(
        &self,
        input: &Arc<dyn ExecutionPlan>,
        context: &Arc<TaskContext>,
    ) -> Arc<SharedRun> {
        let mut current = self.current_run();
        if let Some(run) = current.as_ref() {
            return Arc::clone(run);
        }
        let run = Arc::new(SharedRun::start(self, input, context));
        *current = Some(Arc::clone(&run));
        run
    }

    /// Notes that one use has finished reading one partition of `run`
    /// (or stopped early). Once every use has read every partition the run
    /// is let go, so its batches are freed and running the plan again
    /// starts a new run.
    fn read_finished(&self, run: &Arc<SharedRun>) {
        let finished = run.finished_reads.fetch_add(1, Ordering::AcqRel) + 1;
        if finished < self.uses * run.partitions.len() {
            return;
        }
        let mut current = self.current_run();
        if current.as_ref().is_some_and(|held| Arc::ptr_eq(held, run)) {
            *current = None;
        }
    }
}

/// One run of a shared subplan: a buffer per partition, each filled by its
/// own task, and how many reads of its partitions have ended.
struct SharedRun {
    partitions: Vec<Arc<PartitionBuffer>>,
    finished_reads: AtomicUsize,
    /// Aborted when the run is dropped, as when every use stopped early.
    _producers: Vec<SpawnedTask<()>>,
}

impl fmt::Debug for SharedRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRun")
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

impl SharedRun {
    /// Starts running every partition of `input`.
    fn start(
        results: &SharedResults,
        input: &Arc<dyn ExecutionPlan>,
        context: &Arc<TaskContext>,
    ) -> Self {
        let count = input.output_partitioning().partition_count();
        let mut partitions = Vec::with_capacity(count);
        let mut producers = Vec::with_capacity(count);
        for partition in 0..count {
            let reservation =
                MemoryConsumer::new(format!("SharedSubplanExec[{}.{partition}]", results.id))
                    .with_can_spill(true)
                    .register(context.memory_pool());
            let spill = SpillManager::new(
                context.runtime_env(),
                SpillMetrics::new(&results.metrics, partition),
                input.schema(),
            );
            let buffer = Arc::new(PartitionBuffer::new(reservation, spill));
            producers.push(SpawnedTask::spawn(produce(
                Arc::clone(input),
                partition,
                Arc::clone(context),
                Arc::clone(&buffer),
            )));
            partitions.push(buffer);
        }
        Self {
            partitions,
            finished_reads: AtomicUsize::new(0),
            _producers: producers,
        }
    }
}

/// Runs one partition of `input` into `buffer`.
async fn produce(
    input: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
    buffer: Arc<PartitionBuffer>,
) {
    let mut ending = EndOnDrop(Some(Arc::clone(&buffer)));
    let outcome = async {
        let mut stream = input.execute(partition, context)?;
        while let Some(batch) = stream.next().await {
            buffer.push(batch?)?;
        }
        Ok(())
    }
    .await;
    if let Some(buffer) = ending.0.take() {
        buffer.end(outcome.map_err(Arc::new));
    }
}

/// Ends a buffer whose producer stopped without ending it (it panicked),
/// so that its readers do not wait for ever.
struct EndOnDrop(Option<Arc<PartitionBuffer>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(buffer) = self.0.take() {
            buffer.end(Err(Arc::new(DataFusionError::Execution(
                "a shared subplan's task stopped before its end".to_string(),
            ))));
        }
    }
}

/// One piece of a partition's output: a batch held in memory or, once the
/// memory pool had no room for more, a batch written to a spill file.
#[derive(Clone)]
enum Segment {
    Held(RecordBatch),
    Spilled(Arc<dyn SpillFile>),
}

/// The output of one partition of a run, as it comes, and how it ended.
struct PartitionBuffer {
    contents: Mutex<BufferContents>,
    grown: Notify,
    spill: SpillManager,
}

struct BufferContents {
    segments: Vec<Segment>,
    /// Set once the pool refused a batch: every later batch is spilled too,
    /// so that the output keeps its order.
    spilling: bool,
    end: Option<std::result::Result<(), Arc<DataFusionError>>>,
    reservation: MemoryReservation,
}

impl PartitionBuffer {
    fn new(reservation: MemoryReservation, spill: SpillManager) -> Self {
        Self {
            contents: Mutex::new(BufferContents {
                segments: Vec::new(),
                spilling: false,
                end: None,
                reservation,
            }),
            grown: Notify::new(),
            spill,
        }
    }

    fn contents(&self) -> MutexGuard<'_, BufferContents> {
        self.contents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `batch` for every reader: in memory while the session's pool
    /// has room, on disk after that.
    fn push(&self, batch: RecordBatch) -> Result<()> {
        let held = {
            let mut contents = self.contents();
            let fits = !contents.spilling
                && contents
                    .reservation
                    .try_grow(batch.get_array_memory_size())
                    .is_ok();
            contents.spilling = !fits;
            fits
        };
        let segment = if held {
            Segment::Held(batch)
        } else {
            match self
                .spill
                .spill_record_batch_and_finish(&[batch], "SharedSubplanExec")?
            {
                Some(file) => Segment::Spilled(file),
                None => return Ok(()),
            }
        };
        self.contents().segments.push(segment);
        self.grown.notify_waiters();
        Ok(())
    }

    fn end(&self, outcome: std::result::Result<(), Arc<DataFusionError>>) {
        self.contents().end = Some(outcome);
        self.grown.notify_waiters();
    }
}

/// One use's read of one partition of a run.
struct BufferReader {
    results: Arc<SharedResults>,
    run: Arc<SharedRun>,
    partition: usize,
    /// The next segment to read.
    next: usize,
    /// The spill file being read, if any.
    spilled: Option<SendableRecordBatchStream>,
    done: bool,
}

impl BufferReader {
    /// The next batch, waiting for the producer where the reader has
    /// caught up with it; `None` at the end.
    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        let buffer = Arc::clone(&self.run.partitions[self.partition]);
        while !self.done {
            if let Some(spilled) = self.spilled.as_mut() {
                match spilled.next().await {
                    Some(Ok(batch)) => return Some(Ok(batch)),
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => self.spilled = None,
                }
            }
            // Registered before looking, so a batch pushed in between wakes it.
            let grown = buffer.grown.notified();
            let segment = {
                let contents = buffer.contents();
                match (contents.segments.get(self.next), &contents.end) {
                    (Some(segment), _) => Some(segment.clone()),
                    (None, Some(Ok(()))) => {
                        self.done = true;
                        return None;
                    }
                    (None, Some(Err(e))) => {
                        self.done = true;
                        return Some(Err(DataFusionError::Shared(Arc::clone(e))));
                    }
                    (None, None) => None,
                }
            };
            match segment {
                Some(Segment::Held(batch)) => {
                    self.next += 1;
                    return Some(Ok(batch));
                }
                Some(Segment::Spilled(file)) => {
                    self.next += 1;
                    match buffer.spill.read_spill_as_stream_unbuffered(file, None) {
                        Ok(stream) => self.spilled = Some(stream),
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
                None => grown.await,
            }
        }
        None
    }
}

impl Drop for BufferReader {
    fn drop(&mut self) {
        self.results.read_finished(&self.run);
    }
}

impl DisplayAs for SharedSubplanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SharedSubplanExec: id={}, uses={}",
            self.results.id, self.results.uses
        )
    }
}

impl ExecutionPlan for SharedSubplanExec {
    fn name(&self) -> &str {
        "SharedSubplanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: only_child(self.name(), children)?,
            results: Arc::clone(&self.results),
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.results.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(match input_stats.first() {
            Some(stats) => Arc::clone(stats),
            None => Arc::new(Statistics::new_unknown(&self.schema())),
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.input.output_partitioning().partition_count();
        if partition >= partitions {
            return internal_err!(
                "SharedSubplanExec has {partitions} partitions, asked for {partition}"
            );
        }
        let results = Arc::clone(&self.results);
        let input = Arc::clone(&self.input);
        // The run starts at the first poll, inside the query's runtime.
        let batches = futures::stream::once(async move {
            let run = results.join_run(&input, &context);
            let reader = BufferReader {
                results,
                run,
                partition,
                next: 0,
                spilled: None,
                done: false,
            };
            futures::stream::unfold(reader, |mut reader| async move {
                let batch = reader.next_batch().await?;
                Some((batch, reader))
            })
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}
