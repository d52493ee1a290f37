//! Rust jobs: the lazy [`Dataset`] API.
//!
//! A [`Dataset`] is a plan, not data. Transformations (`select`, `filter`,
//! `join`, `group_by(..).agg(..)`, `repartition`, …) return a new dataset
//! and submit nothing; actions (`collect`, `count`, `take`, `show`,
//! `write_parquet`, …) plan the whole chain and run it, embedded or on the
//! cluster the [`EmberContext`] is connected to. The same job binary runs
//! either way: [`EmberContext::from_master`] takes `local` or a
//! `df://host:port` URL (and [`EmberContext::from_env`] reads it from
//! `EMBER_MASTER`).
//!
//! ```no_run
//! # async fn demo() -> ember::Result<()> {
//! use ember::EmberContext;
//! use ember::dataset::{col, count, lit};
//!
//! let ctx = EmberContext::from_env().await?;
//! let trips = ctx.read_parquet("data/trips/").await?;
//! let busy = trips
//!     .filter(col("passengers").gt(lit(2)))?
//!     .group_by(vec![col("zone")])
//!     .agg(vec![count(lit(1)).alias("trips")])?;
//! busy.show(10).await?;
//! # Ok(())
//! # }
//! ```

mod cache;
mod functions;
mod rows;
mod sources;

pub use sources::MASTER_ENV;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, Partitioning, SortExpr};
use serde::de::DeserializeOwned;

pub use cache::StorageLevel;
/// How two datasets are joined (inner, left, right, full, semi, anti).
pub use datafusion::common::JoinType;
pub use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
pub use datafusion::prelude::{col, lit};
pub use ember_core::cache::CacheStorage;
pub use rows::{batches_to_rows, rows_to_batch};

use crate::context::EmberContext;
use crate::error::{ClientError, Result};

/// A lazy, distributed collection of rows: a DataFusion logical plan bound
/// to the [`EmberContext`] that will run it.
#[derive(Clone)]
pub struct Dataset {
    ctx: EmberContext,
    frame: DataFrame,
    /// The cached table, when this is the dataset `cache`/`persist` returned.
    cached: Option<Arc<ember_core::cache::CachedDataset>>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("schema", self.frame.schema())
            .finish_non_exhaustive()
    }
}

fn planning(err: datafusion::error::DataFusionError) -> ClientError {
    ClientError::from_datafusion(err)
}

impl Dataset {
    /// A dataset over a planned DataFusion frame of `ctx`'s session.
    pub fn from_frame(ctx: &EmberContext, frame: DataFrame) -> Self {
        Self {
            ctx: ctx.clone(),
            frame,
            cached: None,
        }
    }

    fn with(&self, frame: DataFrame) -> Self {
        Self {
            ctx: self.ctx.clone(),
            frame,
            cached: None,
        }
    }

    /// The underlying DataFusion frame.
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    /// The rows' schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }

    // ---- Transformations: each returns a new dataset and runs nothing. ----

    /// `SELECT exprs`.
    pub fn select(&self, exprs: Vec<Expr>) -> Result<Self> {
        Ok(self.with(self.frame.clone().select(exprs).map_err(planning)?))
    }

    /// `SELECT columns` by name.
    pub fn select_columns(&self, columns: &[&str]) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .select_columns(columns)
                .map_err(planning)?,
        ))
    }

    /// Keeps the rows where `predicate` is true.
    pub fn filter(&self, predicate: Expr) -> Result<Self> {
        Ok(self.with(self.frame.clone().filter(predicate).map_err(planning)?))
    }

    /// Adds (or replaces) the column `name` computed by `expr`.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .with_column(name, expr)
                .map_err(planning)?,
        ))
    }

    /// Removes columns by name.
    pub fn drop(&self, columns: &[&str]) -> Result<Self> {
        Ok(self.with(self.frame.clone().drop_columns(columns).map_err(planning)?))
    }

    /// Renames the column `from` to `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .with_column_renamed(from, to)
                .map_err(planning)?,
        ))
    }

    /// Joins with `right` where `left_columns` equal `right_columns`
    /// (inner, left, right, full, semi or anti, as `how` says).
    pub fn join(
        &self,
        right: &Dataset,
        how: JoinType,
        left_columns: &[&str],
        right_columns: &[&str],
    ) -> Result<Self> {
        let frame = self
            .frame
            .clone()
            .join(right.frame.clone(), how, left_columns, right_columns, None)
            .map_err(planning)?;
        Ok(self.with(frame))
    }

    /// Groups by `keys`; [`GroupedDataset::agg`] then aggregates.
    pub fn group_by(&self, keys: Vec<Expr>) -> GroupedDataset {
        GroupedDataset {
            dataset: self.clone(),
            keys,
        }
    }

    /// Distinct rows.
    pub fn distinct(&self) -> Result<Self> {
        Ok(self.with(self.frame.clone().distinct().map_err(planning)?))
    }

    /// The rows of both datasets (`UNION ALL`; follow with
    /// [`Dataset::distinct`] for `UNION`). Columns match by position.
    pub fn union(&self, other: &Dataset) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .union(other.frame.clone())
                .map_err(planning)?,
        ))
    }

    /// Sorts by `keys` (`col("a").sort(true, false)` is ascending, nulls
    /// last).
    pub fn sort(&self, keys: Vec<SortExpr>) -> Result<Self> {
        Ok(self.with(self.frame.clone().sort(keys).map_err(planning)?))
    }

    /// The first `n` rows (of the order, if sorted).
    pub fn limit(&self, n: usize) -> Result<Self> {
        Ok(self.with(self.frame.clone().limit(0, Some(n)).map_err(planning)?))
    }

    /// A Bernoulli sample: each row is kept with probability `fraction`
    /// (a new draw each time the dataset is computed).
    pub fn sample(&self, fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ClientError::Process(format!(
                "sample: the fraction must be between 0 and 1, not {fraction}"
            )));
        }
        let random = datafusion::functions::math::expr_fn::random();
        self.filter(random.lt(lit(fraction)))
    }

    /// Redistributes the rows round-robin into `partitions` partitions.
    pub fn repartition(&self, partitions: usize) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .repartition(Partitioning::RoundRobinBatch(partitions))
                .map_err(planning)?,
        ))
    }

    /// Redistributes the rows into `partitions` partitions by the hash of
    /// `keys`: equal keys land in the same partition.
    pub fn repartition_by(&self, keys: Vec<Expr>, partitions: usize) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .repartition(Partitioning::Hash(keys, partitions))
                .map_err(planning)?,
        ))
    }

    // ---- Actions: each plans the chain and runs it. ----

    /// Runs the plan; its rows as Arrow record batches.
    pub async fn collect(&self) -> Result<Vec<RecordBatch>> {
        self.ctx.collect(self.frame.clone()).await
    }

    /// Runs the plan; its rows as `T`s, by column name (numbers, strings,
    /// booleans and options of them; decimals and dates arrive as strings).
    pub async fn collect_as<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        batches_to_rows(&self.collect().await?)
    }

    /// The number of rows.
    pub async fn count(&self) -> Result<usize> {
        let counted = self
            .frame
            .clone()
            .aggregate(vec![], vec![count(lit(1)).alias("count")])
            .map_err(planning)?;
        let batches = self.ctx.collect(counted).await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        Ok(value as usize)
    }

    /// The first `n` rows.
    pub async fn take(&self, n: usize) -> Result<Vec<RecordBatch>> {
        self.limit(n)?.collect().await
    }

    /// The first row, if any, as a one-row batch.
    pub async fn first(&self) -> Result<Option<RecordBatch>> {
        Ok(self
            .take(1)
            .await?
            .into_iter()
            .find(|batch| batch.num_rows() > 0))
    }

    /// Prints the first `n` rows as a table on standard output.
    pub async fn show(&self, n: usize) -> Result<()> {
        let batches = self.take(n).await?;
        let table = pretty_format_batches(&batches).map_err(|e| planning(e.into()))?;
        println!("{table}");
        Ok(())
    }

    /// The logical plan, the optimized plan and the physical plan, as
    /// text; on a cluster, followed by the distributed stages the physical
    /// plan splits into (each ends in a shuffle writer; later stages read
    /// earlier ones through `UnresolvedShuffleExec`).
    pub async fn explain(&self) -> Result<String> {
        let explained = self.frame.clone().explain(false, false).map_err(planning)?;
        let batches = self.ctx.collect(explained).await?;
        let table = pretty_format_batches(&batches).map_err(|e| planning(e.into()))?;
        let mut text = table.to_string();
        if matches!(self.ctx.mode(), crate::context::ExecutionMode::Cluster(_)) {
            text.push('\n');
            text.push_str(&self.distributed_stages().await?);
        }
        Ok(text)
    }

    /// The stages this dataset's physical plan splits into on a cluster,
    /// planned here the way the scheduler plans them.
    async fn distributed_stages(&self) -> Result<String> {
        use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
        use datafusion::physical_plan::displayable;

        // The client's session plans remotely; plan locally with the same
        // settings and Ember's query planner, as the scheduler does.
        let (state, plan) = self.frame.clone().into_parts();
        let mut config = state.config().clone();
        ember_core::apply_cluster_defaults(&mut config);
        let local = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .with_query_planner(Arc::new(ember_core::write::EmberQueryPlanner))
            .build();
        let physical = local.create_physical_plan(&plan).await.map_err(planning)?;
        let job = ballista_core::JobId::new("explain");
        let stages = DefaultDistributedPlanner::new()
            .plan_query_stages(&job, physical, local.config().options())
            .map_err(|e| ClientError::Process(format!("planning distributed stages: {e}")))?;
        let mut text = format!("distributed plan: {} stages\n", stages.len());
        for stage in stages {
            text.push_str(&format!(
                "stage {} ({} input partitions):\n{}\n",
                stage.stage_id(),
                stage.input_partition_count(),
                displayable(stage.as_ref()).indent(false)
            ));
        }
        Ok(text)
    }

    /// Writes the rows as Parquet under `path` (a directory, local or
    /// `s3://`), optionally partitioned by columns. The write is atomic:
    /// its files appear together with `_SUCCESS`, or, if it fails, nothing.
    pub async fn write_parquet(&self, path: &str, partition_by: &[&str]) -> Result<()> {
        self.write(path, "parquet", partition_by).await
    }

    /// Writes the rows as CSV (with a header) under `path`; see
    /// [`Dataset::write_parquet`].
    pub async fn write_csv(&self, path: &str, partition_by: &[&str]) -> Result<()> {
        self.write(path, "csv", partition_by).await
    }

    /// Writes the rows as newline-delimited JSON under `path`; see
    /// [`Dataset::write_parquet`].
    pub async fn write_json(&self, path: &str, partition_by: &[&str]) -> Result<()> {
        self.write(path, "json", partition_by).await
    }

    async fn write(&self, path: &str, format: &str, partition_by: &[&str]) -> Result<()> {
        let (state, plan) = self.frame.clone().into_parts();
        let format_factory = state
            .get_file_format_factory(format)
            .ok_or_else(|| ClientError::Process(format!("no `{format}` writer")))?;
        let mut settings = std::collections::HashMap::new();
        if format == "csv" {
            settings.insert("format.has_header".to_string(), "true".to_string());
        }
        let plan = LogicalPlanBuilder::copy_to(
            plan,
            path.to_string(),
            datafusion::datasource::file_format::format_as_file_type(format_factory),
            settings,
            partition_by.iter().map(|c| c.to_string()).collect(),
        )
        .and_then(|b| b.build())
        .map_err(planning)?;
        self.ctx.collect(DataFrame::new(state, plan)).await?;
        Ok(())
    }

    /// Writes the rows as Parquet under `path` and returns a dataset that
    /// reads them back: later actions start from the files, not from the
    /// lineage (Spark's `checkpoint`, to reliable storage).
    pub async fn checkpoint(&self, path: &str) -> Result<Dataset> {
        self.write_parquet(path, &[]).await?;
        self.ctx.read_parquet(path).await
    }

    /// Writes the rows as Parquet under `location` and registers them as the
    /// table `name` in the context's catalog (Spark's `saveAsTable`, with
    /// the location given).
    pub async fn save_as_table(&self, name: &str, location: &str) -> Result<()> {
        let plain = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !plain {
            return Err(ClientError::Process(format!(
                "save_as_table: `{name}` is not a plain table name (letters, digits, _)"
            )));
        }
        self.write_parquet(location, &[]).await?;
        let location = location.replace('\'', "''");
        self.ctx
            .run_sql(&format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{location}'"
            ))
            .await?;
        Ok(())
    }

    /// Registers the dataset as the view `name` in its context, so that SQL
    /// and [`EmberContext::table`] can read it (the plan, not a copy).
    pub fn create_view(&self, name: &str) -> Result<()> {
        self.ctx
            .session()
            .register_table(TableReference::bare(name), self.frame.clone().into_view())
            .map_err(planning)?;
        Ok(())
    }
}

/// A dataset grouped by keys, waiting for its aggregates.
#[derive(Debug, Clone)]
pub struct GroupedDataset {
    dataset: Dataset,
    keys: Vec<Expr>,
}

impl GroupedDataset {
    /// One row per group: the keys, then `aggregates` (`sum(col("x"))`,
    /// `count(lit(1))`, …).
    pub fn agg(&self, aggregates: Vec<Expr>) -> Result<Dataset> {
        let frame = self
            .dataset
            .frame
            .clone()
            .aggregate(self.keys.clone(), aggregates)
            .map_err(planning)?;
        Ok(self.dataset.with(frame))
    }
}
