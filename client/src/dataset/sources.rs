//! Where datasets come from: files, SQL, the catalog, and data the driver
//! holds (`parallelize`), plus the master URL that picks embedded or
//! cluster execution.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};
use futures::StreamExt;
use serde::Serialize;

use super::{Dataset, planning, rows_to_batch};
use crate::context::EmberContext;
use crate::error::{ClientError, Result};

/// The environment variable naming the master: `local` or a scheduler URL.
pub const MASTER_ENV: &str = "EMBER_MASTER";

impl EmberContext {
    /// A context for `master`: `local` (or `local[N]`, or empty) runs
    /// embedded in this process; `df://host:port` (or `host:port`)
    /// connects to that cluster's scheduler.
    pub async fn from_master(master: &str) -> Result<Self> {
        let master = master.trim();
        if master.is_empty() || master == "local" || master.starts_with("local[") {
            Self::embedded()
        } else {
            Self::connect(master).await
        }
    }

    /// [`EmberContext::from_master`] with the `EMBER_MASTER` environment
    /// variable (embedded when it is unset), so that one job binary runs on
    /// a laptop or a cluster unchanged.
    pub async fn from_env() -> Result<Self> {
        let master = std::env::var(MASTER_ENV).unwrap_or_default();
        Self::from_master(&master).await
    }

    /// Fails, naming `path`, unless it holds at least one file ending in
    /// `extension`: reading nothing is almost always a typo.
    async fn require_files(&self, path: &str, extension: &str) -> Result<()> {
        let url = ListingTableUrl::parse(path).map_err(planning)?;
        let state = self.session().state();
        let store = state
            .runtime_env()
            .object_store(url.object_store())
            .map_err(planning)?;
        let mut files = url
            .list_all_files(&state, store.as_ref(), extension)
            .await
            .map_err(planning)?;
        match files.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(planning(e)),
            None => Err(ClientError::Process(format!(
                "no input files at `{path}`{}",
                if extension.is_empty() {
                    String::new()
                } else {
                    format!(" (looking for *{extension})")
                }
            ))),
        }
    }

    /// The Parquet files at `path`: a file, a directory, or a glob, local or
    /// `s3://`.
    pub async fn read_parquet(&self, path: &str) -> Result<Dataset> {
        self.require_files(path, ".parquet").await?;
        let frame = self
            .session()
            .read_parquet(path, ParquetReadOptions::default())
            .await
            .map_err(planning)?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// The CSV files (with a header row) at `path`.
    pub async fn read_csv(&self, path: &str) -> Result<Dataset> {
        self.read_csv_files(path, ".csv", CsvReadOptions::new().has_header(true))
            .await
    }

    /// The files at `path` with `extension` (empty: any), read as CSV with
    /// `options`.
    async fn read_csv_files(
        &self,
        path: &str,
        extension: &str,
        options: CsvReadOptions<'_>,
    ) -> Result<Dataset> {
        self.require_files(path, extension).await?;
        let frame = self
            .session()
            .read_csv(path, options)
            .await
            .map_err(planning)?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// The CSV files (with a header row) at `path`, read with `schema`
    /// instead of an inferred one: for raw data, declare every column
    /// `Utf8` and clean it with expressions, so that a malformed value is a
    /// row to set aside, not a failed job.
    pub async fn read_csv_with_schema(&self, path: &str, schema: &Schema) -> Result<Dataset> {
        let options = CsvReadOptions::new().has_header(true).schema(schema);
        self.read_csv_files(path, ".csv", options).await
    }

    /// The newline-delimited JSON files at `path`.
    pub async fn read_json(&self, path: &str) -> Result<Dataset> {
        self.require_files(path, ".json").await?;
        let frame = self
            .session()
            .read_json(path, JsonReadOptions::default())
            .await
            .map_err(planning)?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// Text files at `path` (a file, a directory or a glob), one row per
    /// line in the column `line` (Spark's `textFile`).
    pub async fn read_text(&self, path: &str) -> Result<Dataset> {
        let schema = Schema::new(vec![Field::new("line", DataType::Utf8, true)]);
        // Lines are whole values: separators and quotes no text uses.
        let options = CsvReadOptions::new()
            .has_header(false)
            .delimiter(0x1f)
            .quote(0x1e)
            .file_extension("")
            .schema(&schema);
        self.read_csv_files(path, "", options).await
    }

    /// A table (or view) of the context's catalog.
    pub async fn table(&self, name: &str) -> Result<Dataset> {
        let frame = self.session().table(name).await.map_err(planning)?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// The result of a SQL query, as a dataset to transform further.
    pub async fn query(&self, sql: &str) -> Result<Dataset> {
        let frame = self.sql(sql).await?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// Record batches held by this program, split into `partitions`
    /// partitions of about equal rows. On a cluster the data travels inside
    /// the plan (Arrow IPC), so executors can read it.
    pub fn parallelize(&self, batches: Vec<RecordBatch>, partitions: usize) -> Result<Dataset> {
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Err(ClientError::Process(
                "parallelize: no batches (an empty dataset needs a schema)".to_string(),
            ));
        };
        let split = split_rows(&batches, partitions.max(1));
        let table = MemTable::try_new(schema, split).map_err(planning)?;
        let frame = self
            .session()
            .read_table(Arc::new(table))
            .map_err(planning)?;
        Ok(Dataset::from_frame(self, frame))
    }

    /// Rows held by this program (any `serde` structs of numbers, strings,
    /// booleans and options), split into `partitions` partitions. The
    /// schema is inferred from the rows.
    pub fn parallelize_rows<T: Serialize>(&self, rows: &[T], partitions: usize) -> Result<Dataset> {
        let batch = rows_to_batch(rows)?;
        self.parallelize(vec![batch], partitions)
    }
}

/// `batches` cut into `partitions` runs of consecutive rows, as equal as
/// rows allow (slices: no copy).
fn split_rows(batches: &[RecordBatch], partitions: usize) -> Vec<Vec<RecordBatch>> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per = total.div_ceil(partitions).max(1);
    let mut split: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
    let mut row = 0usize;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let part = (row / per).min(partitions - 1);
            let room = per - row % per;
            let take = room.min(batch.num_rows() - offset);
            split[part].push(batch.slice(offset, take));
            offset += take;
            row += take;
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn rows_split_into_equal_consecutive_runs() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |range: std::ops::Range<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(range))],
            )
            .unwrap()
        };
        let split = split_rows(&[batch(0..7), batch(7..10)], 3);
        let values: Vec<Vec<i64>> = split
            .iter()
            .map(|part| {
                part.iter()
                    .flat_map(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap()
                            .values()
                            .to_vec()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(values, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!(split_rows(&[batch(0..2)], 4).len(), 4);
    }
}
