//! Taps on a hash join's inputs: the join reads its build and probe sides
//! through them, and the adaptive join can take both back, unread rows and
//! all, when the build side does not fit in memory.
//!
//! A partitioned join has one build input per partition; a broadcast
//! (`CollectLeft`) join has one build input that every partition shares.
//! Each partition has its own probe input.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::internal_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{Stream, StreamExt};

use super::grace::HASH_ENTRY_BYTES;

/// Which input of the join a tap sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinSide {
    /// The build side, which the hash join collects into memory.
    Build,
    /// The probe side, which it streams through the hash table.
    Probe,
}

/// One build input of an adaptive join.
pub(crate) struct BuildInput {
    /// The build side's stream, until it ends or the fallback takes it.
    stream: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    /// The batches the hash join has read, kept (they share the join's
    /// buffers, so they cost no memory) until the join starts probing, when
    /// it can no longer give up.
    read: Vec<RecordBatch>,
    /// Whether the build side itself failed: its rows are then lost, and
    /// nothing may run in the join's place.
    failed: bool,
    /// Whether a probe side was read: the table is built, the join is on
    /// its way.
    probed: bool,
    /// How much memory the build side may take (its batches and an estimate
    /// of the hash table over them), `None` for no limit of its own.
    budget: Option<usize>,
    /// What the build side read so far takes, by the same estimate.
    bytes: usize,
}

impl BuildInput {
    /// Whether the join can still hand this input to another operator.
    pub(crate) fn can_fall_back(&self) -> bool {
        !self.probed && !self.failed
    }

    /// Takes the input back: the rows already read followed by the rest of
    /// its stream; `None` once taken.
    pub(crate) fn take(&mut self) -> Option<SendableRecordBatchStream> {
        if !self.can_fall_back() {
            return None;
        }
        let read = futures::stream::iter(std::mem::take(&mut self.read).into_iter().map(Ok));
        let schema = Arc::clone(&self.schema);
        let stream: SendableRecordBatchStream = match self.stream.take() {
            Some(rest) => Box::pin(RecordBatchStreamAdapter::new(schema, read.chain(rest))),
            None => Box::pin(RecordBatchStreamAdapter::new(schema, read)),
        };
        // Once taken, the join cannot have it twice.
        self.failed = true;
        Some(stream)
    }

    /// Rows read so far.
    pub(crate) fn rows_read(&self) -> usize {
        self.read.iter().map(RecordBatch::num_rows).sum()
    }

    /// Notes a batch the join reads; an error, with the batch kept for the
    /// fallback, when it takes the build side past its budget.
    fn note_read(&mut self, batch: &RecordBatch) -> Option<DataFusionError> {
        self.read.push(batch.clone());
        self.bytes += batch.get_array_memory_size() + batch.num_rows() * HASH_ENTRY_BYTES;
        let budget = self.budget?;
        (self.bytes > budget).then(|| {
            DataFusionError::ResourcesExhausted(format!(
                "the hash join's build side needs more than its share of the memory pool \
                 ({budget} bytes)"
            ))
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RecordBatch>>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = stream.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                if let Some(over_budget) = self.note_read(batch) {
                    return Poll::Ready(Some(Err(over_budget)));
                }
            }
            Poll::Ready(Some(Err(_))) => self.failed = true,
            Poll::Ready(None) => self.stream = None,
            Poll::Pending => {}
        }
        polled
    }
}

/// One partition's probe input.
pub(crate) struct ProbeInput {
    stream: Option<SendableRecordBatchStream>,
    /// The build input whose table this partition probes.
    build: Arc<Mutex<BuildInput>>,
    /// Whether the hash join has started reading it.
    probing: bool,
}

impl ProbeInput {
    /// The build input this partition joins with.
    pub(crate) fn build(&self) -> &Arc<Mutex<BuildInput>> {
        &self.build
    }

    /// Takes the probe input back, unless the join has read from it.
    pub(crate) fn take(&mut self) -> Option<SendableRecordBatchStream> {
        if self.probing {
            return None;
        }
        self.stream.take()
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RecordBatch>>> {
        if !self.probing {
            // The build side is in the hash table now: the join can no
            // longer give its inputs up.
            self.probing = true;
            let mut build = lock(&self.build);
            build.probed = true;
            build.read = Vec::new();
        }
        match self.stream.as_mut() {
            Some(probe) => probe.poll_next_unpin(cx),
            None => Poll::Ready(Some(Err(DataFusionError::Internal(
                "the probe side of an adaptive join was taken".into(),
            )))),
        }
    }
}

/// Locks `input`, also after a panic elsewhere poisoned the lock.
pub(crate) fn lock<T>(input: &Mutex<T>) -> MutexGuard<'_, T> {
    input.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tapped inputs of one adaptive join, by the partition of the join's
/// input they come from.
#[derive(Default)]
pub(crate) struct InputTaps {
    builds: Mutex<HashMap<usize, Arc<Mutex<BuildInput>>>>,
    probes: Mutex<HashMap<usize, Arc<Mutex<ProbeInput>>>>,
}

impl fmt::Debug for InputTaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputTaps").finish_non_exhaustive()
    }
}

impl InputTaps {
    /// The build input of build partition `partition`, installed from
    /// `open` (with `budget`) unless it is installed already and `shared`
    /// (a broadcast build side, opened once for every partition).
    pub(crate) fn build(
        &self,
        partition: usize,
        shared: bool,
        budget: Option<usize>,
        open: impl FnOnce() -> Result<SendableRecordBatchStream>,
    ) -> Result<Arc<Mutex<BuildInput>>> {
        let mut builds = lock(&self.builds);
        if shared && let Some(build) = builds.get(&partition) {
            return Ok(Arc::clone(build));
        }
        let stream = open()?;
        let build = Arc::new(Mutex::new(BuildInput {
            schema: stream.schema(),
            stream: Some(stream),
            read: Vec::new(),
            failed: false,
            probed: false,
            budget,
            bytes: 0,
        }));
        builds.insert(partition, Arc::clone(&build));
        Ok(build)
    }

    /// Installs partition `partition`'s probe input, joined with `build`.
    pub(crate) fn probe(
        &self,
        partition: usize,
        stream: SendableRecordBatchStream,
        build: Arc<Mutex<BuildInput>>,
    ) -> Arc<Mutex<ProbeInput>> {
        let probe = Arc::new(Mutex::new(ProbeInput {
            stream: Some(stream),
            build,
            probing: false,
        }));
        lock(&self.probes).insert(partition, Arc::clone(&probe));
        probe
    }

    /// Forgets partition `partition`'s inputs once its join is done, unless
    /// the partition was started again since; a shared build input stays
    /// for the other partitions.
    pub(crate) fn remove(&self, partition: usize, probe: &Arc<Mutex<ProbeInput>>, shared: bool) {
        let mut probes = lock(&self.probes);
        if !probes
            .get(&partition)
            .is_some_and(|installed| Arc::ptr_eq(installed, probe))
        {
            return;
        }
        probes.remove(&partition);
        if !shared {
            lock(&self.builds).remove(&partition);
        }
    }

    fn stream(&self, side: JoinSide, partition: usize) -> Result<TapStream> {
        let input = match side {
            JoinSide::Build => lock(&self.builds)
                .get(&partition)
                .cloned()
                .map(Tapped::Build),
            JoinSide::Probe => lock(&self.probes)
                .get(&partition)
                .cloned()
                .map(Tapped::Probe),
        };
        match input {
            Some(input) => Ok(TapStream { input }),
            None => internal_err!(
                "InputTapExec: no {side:?} input installed for partition {partition}; \
                 only an AdaptiveJoinExec may execute it"
            ),
        }
    }
}

/// The leaf a tapped hash join reads one of its inputs from. It shows the
/// real input as its child, so that plan walks (such as the hash join's
/// search for the scan its dynamic filter feeds) see the whole tree, but it
/// never executes it: the adaptive join installs the input's stream first.
#[derive(Debug)]
pub(crate) struct InputTapExec {
    input: Arc<dyn ExecutionPlan>,
    side: JoinSide,
    taps: Arc<InputTaps>,
}

impl InputTapExec {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, side: JoinSide, taps: Arc<InputTaps>) -> Self {
        Self { input, side, taps }
    }
}

impl DisplayAs for InputTapExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "InputTapExec: side={:?}", self.side)
    }
}

impl ExecutionPlan for InputTapExec {
    fn name(&self) -> &str {
        "InputTapExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("InputTapExec takes one child, got {}", children.len());
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.side,
            Arc::clone(&self.taps),
        )))
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

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.taps.stream(self.side, partition)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream,
        )))
    }
}

enum Tapped {
    Build(Arc<Mutex<BuildInput>>),
    Probe(Arc<Mutex<ProbeInput>>),
}

/// Reads one tapped input, noting what the join has read.
struct TapStream {
    input: Tapped,
}

impl Stream for TapStream {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Only the join polls its taps, one input at a time.
        match &self.input {
            Tapped::Build(build) => lock(build).poll(cx),
            Tapped::Probe(probe) => lock(probe).poll(cx),
        }
    }
}
