//! The grace hash join an adaptive join runs when its build side does not
//! fit: both inputs are hash-partitioned on the join keys into buckets on
//! disk, then each bucket pair is joined by an in-memory hash join.
//!
//! Equal keys land in the same bucket, so the union of the buckets' joins is
//! the whole join, for every join type (a row with no match in its bucket
//! has none anywhere). A bucket whose build side is still too large, or that
//! the pool refuses, is split again with another hash seed, up to
//! [`MAX_DEPTH`] times; past that (one key holding most rows) it is joined by
//! a sort-merge join, whose sorts spill.

use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::spill_file::SpillFile;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::SpillMetrics;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{EmptyRecordBatchStream, ExecutionPlan, SpillManager};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};

use super::fallback::{TakenInputExec, sort_merge_plan};
use super::is_resources_exhausted;

/// Buckets each input is split into, at every level.
pub(crate) const FANOUT: usize = 16;

/// How many times a bucket may be split again before it is joined by a
/// sort-merge join instead.
pub(crate) const MAX_DEPTH: usize = 3;

/// Bytes the hash join's table takes per build row, roughly: a hash and a
/// row index in the map, and a link in its chain of equal hashes.
pub(crate) const HASH_ENTRY_BYTES: usize = 24;

/// The seed of the bucket hash at `depth`: unlike the hash the plan's
/// repartitioning used (whose partition's rows all share a residue) and
/// unlike every other level's.
fn seed(depth: usize) -> u64 {
    0x6e6d_6265_7200_0000 + depth as u64
}

/// One input, split into [`FANOUT`] buckets on disk.
pub(crate) struct Buckets {
    files: Vec<Option<Arc<dyn SpillFile>>>,
    /// In-memory size of each bucket's rows (their table's share, roughly).
    bytes: Vec<usize>,
    rows: Vec<usize>,
}

impl Buckets {
    /// Rows in all buckets.
    pub(crate) fn rows(&self) -> usize {
        self.rows.iter().sum()
    }
}

/// What a grace join needs besides its inputs.
#[derive(Clone)]
pub(crate) struct GraceJoin {
    /// The join to compute (its keys, type, filter and projection).
    pub(crate) join: Arc<HashJoinExec>,
    pub(crate) context: Arc<TaskContext>,
    /// The most a bucket's build side (rows and table) may take, `None`
    /// when the pool has no limit.
    pub(crate) budget: Option<usize>,
    pub(crate) build_spill: SpillManager,
    pub(crate) probe_spill: SpillManager,
    /// Where the sort-merge plans of skewed buckets go, for their metrics.
    pub(crate) sort_merge_plans: Arc<std::sync::Mutex<Vec<Arc<dyn ExecutionPlan>>>>,
}

impl GraceJoin {
    /// A grace join of `join` whose spill files count in `metrics` as
    /// `partition`'s.
    pub(crate) fn new(
        join: Arc<HashJoinExec>,
        context: Arc<TaskContext>,
        budget: Option<usize>,
        metrics: &datafusion::physical_plan::metrics::ExecutionPlanMetricsSet,
        partition: usize,
        sort_merge_plans: Arc<std::sync::Mutex<Vec<Arc<dyn ExecutionPlan>>>>,
    ) -> Self {
        let spill_metrics = SpillMetrics::new(metrics, partition);
        let compression = context.session_config().spill_compression();
        let manager = |schema: SchemaRef| {
            SpillManager::new(context.runtime_env(), spill_metrics.clone(), schema)
                .with_compression_type(compression)
        };
        Self {
            build_spill: manager(join.left().schema()),
            probe_spill: manager(join.right().schema()),
            join,
            context,
            budget,
            sort_merge_plans,
        }
    }

    fn keys(&self, side: usize) -> Vec<PhysicalExprRef> {
        self.join
            .on()
            .iter()
            .map(|(l, r)| Arc::clone(if side == 0 { l } else { r }))
            .collect()
    }

    /// Splits a whole build side into buckets on disk.
    pub(crate) async fn split_build(&self, build: SendableRecordBatchStream) -> Result<Buckets> {
        split(build, &self.keys(0), 0, &self.build_spill).await
    }

    /// Joins `probe` with a build side already split by
    /// [`Self::split_build`]: the probe side is split the same way (reading
    /// it whole), then the bucket pairs are joined one by one as the output
    /// is read.
    pub(crate) async fn join_with(
        self,
        build: Arc<Buckets>,
        probe: SendableRecordBatchStream,
    ) -> Result<SendableRecordBatchStream> {
        let probe = split(probe, &self.keys(1), 0, &self.probe_spill).await?;
        Ok(self.join_pairs(&build, probe, 0))
    }

    /// Splits both inputs at `depth` and joins the bucket pairs.
    fn split_and_join(
        self,
        build: SendableRecordBatchStream,
        probe: SendableRecordBatchStream,
        depth: usize,
    ) -> BoxFuture<'static, Result<SendableRecordBatchStream>> {
        async move {
            let build = split(build, &self.keys(0), depth, &self.build_spill).await?;
            let probe = split(probe, &self.keys(1), depth, &self.probe_spill).await?;
            Ok(self.join_pairs(&build, probe, depth))
        }
        .boxed()
    }

    /// The join of every pair of buckets with rows, one after the other.
    fn join_pairs(
        self,
        build: &Buckets,
        probe: Buckets,
        depth: usize,
    ) -> SendableRecordBatchStream {
        tracing::debug!(
            depth,
            build_rows = build.rows(),
            probe_rows = probe.rows(),
            "grace hash join: inputs split into {FANOUT} buckets"
        );
        let pairs = (0..FANOUT)
            .filter(|&b| build.files[b].is_some() || probe.files[b].is_some())
            .map(|b| BucketPair {
                build: build.files[b].clone(),
                probe: probe.files[b].clone(),
                build_bytes: build.bytes[b] + build.rows[b] * HASH_ENTRY_BYTES,
            })
            .collect::<Vec<_>>();
        let schema = self.join.schema();
        let joins = futures::stream::iter(pairs)
            .then(move |pair| self.clone().join_bucket(pair, depth))
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, joins))
    }

    /// Joins one pair of buckets: in memory when the build bucket fits,
    /// otherwise split again (or, past [`MAX_DEPTH`], by sort-merge).
    async fn join_bucket(
        self,
        pair: BucketPair,
        depth: usize,
    ) -> Result<SendableRecordBatchStream> {
        let fits = self.budget.is_none_or(|budget| pair.build_bytes <= budget);
        if fits {
            let build = self.read(&pair.build, &self.build_spill)?;
            let probe = self.read(&pair.probe, &self.probe_spill)?;
            let join = self.bucket_hash_join(build, probe)?;
            let mut stream = join.execute(0, Arc::clone(&self.context))?;
            // The pool may still refuse the table (other operators hold
            // memory); the files are still there to split further.
            match stream.next().await {
                Some(Err(error)) if is_resources_exhausted(&error) => {
                    tracing::debug!(depth, "a grace join bucket does not fit: {error}");
                }
                first => {
                    let rest = stream;
                    let schema = self.join.schema();
                    let first = futures::stream::iter(first);
                    return Ok(Box::pin(RecordBatchStreamAdapter::new(
                        schema,
                        first.chain(rest),
                    )));
                }
            }
        }
        let build = self.read(&pair.build, &self.build_spill)?;
        let probe = self.read(&pair.probe, &self.probe_spill)?;
        if depth + 1 < MAX_DEPTH {
            return self.split_and_join(build, probe, depth + 1).await;
        }
        tracing::info!(
            depth,
            build_bytes = pair.build_bytes,
            "a grace join bucket still does not fit (skewed keys): joining it by sort-merge"
        );
        let plan = sort_merge_plan(&self.join, build, probe)?;
        let stream = plan.execute(0, Arc::clone(&self.context))?;
        self.sort_merge_plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(plan);
        Ok(stream)
    }

    /// The rows of one bucket file, or none.
    fn read(
        &self,
        file: &Option<Arc<dyn SpillFile>>,
        spill: &SpillManager,
    ) -> Result<SendableRecordBatchStream> {
        match file {
            Some(file) => spill.read_spill_as_stream(Arc::clone(file), None),
            None => Ok(Box::pin(EmptyRecordBatchStream::new(Arc::clone(
                spill.schema(),
            )))),
        }
    }

    /// The join as a one-partition hash join over one bucket pair.
    fn bucket_hash_join(
        &self,
        build: SendableRecordBatchStream,
        probe: SendableRecordBatchStream,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let join = self
            .join
            .builder()
            .reset_state()
            .with_partition_mode(PartitionMode::Partitioned)
            .with_new_children(vec![
                Arc::new(TakenInputExec::new(build)),
                Arc::new(TakenInputExec::new(probe)),
            ])?
            .build()?;
        Ok(Arc::new(join))
    }
}

struct BucketPair {
    build: Option<Arc<dyn SpillFile>>,
    probe: Option<Arc<dyn SpillFile>>,
    /// What the build bucket's rows and hash table take in memory.
    build_bytes: usize,
}

/// The bucket of a row whose key hashed to `hash`.
fn bucket_of(hash: u64) -> usize {
    // The high bits: the low ones may be shared by a partition's rows.
    ((hash >> 40) as usize) % FANOUT
}

/// Reads `input` whole, writing each row to the spill file of its bucket.
async fn split(
    mut input: SendableRecordBatchStream,
    keys: &[PhysicalExprRef],
    depth: usize,
    spill: &SpillManager,
) -> Result<Buckets> {
    let mut writers: Vec<Option<_>> = (0..FANOUT).map(|_| None).collect();
    let mut bytes = vec![0; FANOUT];
    let mut rows = vec![0; FANOUT];
    let state = RandomState::with_seed(seed(depth));
    let mut hashes: Vec<u64> = Vec::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let arrays = keys
            .iter()
            .map(|key| key.evaluate(&batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        hashes.clear();
        hashes.resize(batch.num_rows(), 0);
        create_hashes(&arrays, &state, &mut hashes)?;
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); FANOUT];
        for (row, hash) in hashes.iter().enumerate() {
            indices[bucket_of(*hash)].push(row as u32);
        }
        for (bucket, selected) in indices.into_iter().enumerate() {
            if selected.is_empty() {
                continue;
            }
            let part: RecordBatch = take_record_batch(&batch, &UInt32Array::from(selected))?;
            let writer = match &mut writers[bucket] {
                Some(writer) => writer,
                slot => slot.insert(spill.create_in_progress_file("AdaptiveJoin bucket")?),
            };
            bytes[bucket] += writer.append_batch(&part)?;
            rows[bucket] += part.num_rows();
        }
    }
    let files = writers
        .into_iter()
        .map(|writer| match writer {
            Some(mut writer) => writer.finish(),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Buckets { files, bytes, rows })
}
