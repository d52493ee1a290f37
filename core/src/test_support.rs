//! Helpers the unit tests of Ember's session rules share: an Ember session
//! over in-memory tables and Parquet files, its physical plans and their
//! results.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::object_store::runtime_env;
use crate::session::session_state;

/// A session with Ember's state (its rules included) under `config`.
pub(crate) fn ember_context(config: SessionConfig) -> SessionContext {
    let runtime = runtime_env(&config, None).unwrap();
    SessionContext::new_with_state(session_state(config, runtime).unwrap())
}

/// A session on `partitions` partitions with the setting `key` = `value`:
/// Ember's (on a cluster's configuration with `cluster`), or, with `ember`
/// false, DataFusion's own, which the rules' answers are compared with
/// (the setting is then not set).
pub(crate) fn session_with_setting(
    ember: bool,
    cluster: bool,
    partitions: usize,
    (key, value): (&str, &str),
) -> SessionContext {
    if !ember {
        return SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(partitions),
        );
    }
    let mut config = if cluster {
        crate::config::distributed_session_config()
    } else {
        crate::config::session_config()
    }
    .with_target_partitions(partitions);
    config.options_mut().set(key, value).unwrap();
    ember_context(config)
}

/// A 64-bit integer column of `values`.
pub(crate) fn int64(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

/// A table of one batch holding `columns`.
pub(crate) fn memory_table(columns: Vec<(&str, ArrayRef)>) -> Arc<MemTable> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap())
}

/// The physical plan of `sql` in `ctx`.
pub(crate) async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// `plan`, one operator per indented line.
pub(crate) fn shown(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(false).to_string()
}

/// What running `plan` in `ctx` returns, as a printed table.
pub(crate) async fn printed_result(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> String {
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// The printed one-row result `n = count, total = sum` that the rules'
/// tests ask their queries for.
pub(crate) fn printed_count_and_total(count: usize, sum: i64) -> String {
    let batch = RecordBatch::try_from_iter(vec![
        ("n", int64(std::iter::once(count as i64))),
        ("total", int64(std::iter::once(sum))),
    ])
    .unwrap();
    pretty_format_batches(&[batch]).unwrap().to_string()
}

/// `batch` as the Parquet file `name` in `dir`, whose statistics give each
/// column's minimum and maximum (an in-memory table's give neither), and
/// the file's path.
pub(crate) async fn parquet_file(
    dir: &tempfile::TempDir,
    name: &str,
    batch: RecordBatch,
) -> String {
    let file = dir.path().join(name);
    SessionContext::new()
        .read_batch(batch)
        .unwrap()
        .write_parquet(file.to_str().unwrap(), DataFrameWriteOptions::new(), None)
        .await
        .unwrap();
    file.to_str().unwrap().to_string()
}
