//! The two operators of a distributed write.
//!
//! * [`StagedWriteExec`] runs once per input partition, that is once per
//!   task: it writes its partition's rows with DataFusion's file sink
//!   (Parquet, CSV or JSON, hive-partitioned when asked, multipart uploads
//!   for large files) into its own staging directory, and returns the list
//!   of files it wrote.
//! * [`WriteCommitExec`] runs once, after every writer succeeded: it moves
//!   the staged files into the destination, writes the `_SUCCESS` marker,
//!   removes the staging area and returns the number of rows written, as
//!   DataFusion's `COPY` and `INSERT` do.
//!
//! A job that fails never reaches the commit, so the destination is left as
//! it was; the client then removes the staging area (see
//! [`StagingArea::remove`]).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ListArray, ListBuilder, StringBuilder, UInt64Array,
};
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::{FileSink, FileSinkConfig};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, SendableRecordBatchStream,
};
use datafusion_proto::protobuf;
use futures::stream::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use prost::Message;

use super::abandoned_writes::{TaskWriteGate, with_abandoned_writes_undone};
use super::staging::{SUCCESS_MARKER, StagingArea, UnfinishedTaskDir};
use crate::codec::single_input;

/// How many staged files the commit moves at once.
const COMMIT_CONCURRENCY: usize = 16;

/// DataFusion's file sink of a write, in its protobuf form: the format and
/// writer options, partition columns, output schema and destination. Each
/// task rebuilds a sink from it that points at its own staging directory.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    /// Parquet files.
    Parquet(Box<protobuf::ParquetSink>),
    /// CSV files.
    Csv(protobuf::CsvSink),
    /// Newline-delimited JSON files.
    Json(protobuf::JsonSink),
}

impl SinkSpec {
    /// The spec of one of DataFusion's file sinks; `None` for other sinks.
    pub fn from_sink(sink: &dyn DataSink) -> Result<Option<Self>> {
        Ok(if let Some(s) = sink.downcast_ref::<ParquetSink>() {
            Some(Self::Parquet(Box::new(s.try_into()?)))
        } else if let Some(s) = sink.downcast_ref::<CsvSink>() {
            Some(Self::Csv(s.try_into()?))
        } else if let Some(s) = sink.downcast_ref::<JsonSink>() {
            Some(Self::Json(s.try_into()?))
        } else {
            None
        })
    }

    fn config_proto(&self) -> Option<&protobuf::FileSinkConfig> {
        match self {
            Self::Parquet(s) => s.config.as_ref(),
            Self::Csv(s) => s.config.as_ref(),
            Self::Json(s) => s.config.as_ref(),
        }
    }

    /// The sink's configuration (destination, schema, partition columns).
    pub fn config(&self) -> Result<FileSinkConfig> {
        let proto = self
            .config_proto()
            .ok_or_else(|| DataFusionError::Internal("file sink without a config".into()))?;
        FileSinkConfig::try_from(proto)
    }

    /// Where the sink writes, and whether that is one file rather than a
    /// directory.
    pub fn destination(&self) -> Result<(ListingTableUrl, bool)> {
        let config = self.config()?;
        let destination =
            config.table_paths.first().cloned().ok_or_else(|| {
                DataFusionError::Internal("a file sink without a destination".into())
            })?;
        let single_file = config.file_output_mode.single_file_output(&destination);
        Ok((destination, single_file))
    }

    /// The format's name, for plan displays.
    pub fn format_name(&self) -> &'static str {
        match self {
            Self::Parquet(_) => "parquet",
            Self::Csv(_) => "csv",
            Self::Json(_) => "json",
        }
    }

    /// A sink like this one that writes to `url` instead (a directory when
    /// it ends in `/`, else one file).
    fn retargeted(&self, url: &str, single_file: bool) -> Result<Arc<dyn DataSink>> {
        let mode = if single_file {
            protobuf::FileOutputMode::SingleFile
        } else {
            protobuf::FileOutputMode::Directory
        };
        let retarget = |config: &Option<protobuf::FileSinkConfig>| {
            let mut config = config.clone().unwrap_or_default();
            config.table_paths = vec![url.to_string()];
            config.file_groups.clear();
            config.file_output_mode = mode.into();
            Some(config)
        };
        Ok(match self {
            Self::Parquet(s) => {
                let mut s = s.clone();
                s.config = retarget(&s.config);
                Arc::new(ParquetSink::try_from(s.as_ref())?)
            }
            Self::Csv(s) => {
                let mut s = s.clone();
                s.config = retarget(&s.config);
                let decoded = CsvSink::try_from(&s)?;
                let options = without_empty_formats(decoded.writer_options().clone());
                Arc::new(CsvSink::new(decoded.config().clone(), options))
            }
            Self::Json(s) => {
                let mut s = s.clone();
                s.config = retarget(&s.config);
                Arc::new(JsonSink::try_from(&s)?)
            }
        })
    }

    /// Encodes the spec into Ember's `StagedWrite` message.
    pub fn encode(&self, write_id: &str) -> Vec<u8> {
        use ember_proto::staged_write::Sink;
        let sink = match self {
            Self::Parquet(s) => Sink::Parquet(s.encode_to_vec()),
            Self::Csv(s) => Sink::Csv(s.encode_to_vec()),
            Self::Json(s) => Sink::Json(s.encode_to_vec()),
        };
        ember_proto::StagedWrite {
            write_id: write_id.to_string(),
            sink: Some(sink),
        }
        .encode_to_vec()
    }

    /// Decodes a `StagedWrite` message into the spec and the write id.
    pub fn decode(payload: &[u8]) -> Result<(Self, String)> {
        use ember_proto::staged_write::Sink;
        let bad = |e: prost::DecodeError| {
            DataFusionError::Internal(format!("cannot decode a staged write: {e}"))
        };
        let message = ember_proto::StagedWrite::decode(payload).map_err(bad)?;
        let spec = match message.sink {
            Some(Sink::Parquet(b)) => {
                Self::Parquet(Box::new(Message::decode(b.as_slice()).map_err(bad)?))
            }
            Some(Sink::Csv(b)) => Self::Csv(Message::decode(b.as_slice()).map_err(bad)?),
            Some(Sink::Json(b)) => Self::Json(Message::decode(b.as_slice()).map_err(bad)?),
            None => {
                return Err(DataFusionError::Internal(
                    "staged write without a sink".into(),
                ));
            }
        };
        Ok((spec, message.write_id))
    }
}

/// CSV writer options as they were before their protobuf round trip.
///
/// The protobuf form stores "no date format" as an empty string, which
/// decodes to an empty format and writes every date (and time, timestamp)
/// as an empty field. Empty formats are dropped here, so arrow's defaults
/// (ISO 8601) apply, as they do when DataFusion writes in one process.
fn without_empty_formats(options: CsvWriterOptions) -> CsvWriterOptions {
    let old = &options.writer_options;
    let mut builder = WriterBuilder::new()
        .with_header(old.header())
        .with_delimiter(old.delimiter())
        .with_quote(old.quote())
        .with_escape(old.escape())
        .with_double_quote(old.double_quote())
        .with_null(old.null().to_string())
        .with_quote_style(old.quote_style())
        .with_ignore_leading_whitespace(old.ignore_leading_whitespace())
        .with_ignore_trailing_whitespace(old.ignore_trailing_whitespace());
    let keep = |format: Option<&str>| format.filter(|f| !f.is_empty()).map(str::to_string);
    if let Some(f) = keep(old.date_format()) {
        builder = builder.with_date_format(f);
    }
    if let Some(f) = keep(old.datetime_format()) {
        builder = builder.with_datetime_format(f);
    }
    if let Some(f) = keep(old.time_format()) {
        builder = builder.with_time_format(f);
    }
    if let Some(f) = keep(old.timestamp_format()) {
        builder = builder.with_timestamp_format(f);
    }
    if let Some(f) = keep(old.timestamp_tz_format()) {
        builder = builder.with_timestamp_tz_format(f);
    }
    CsvWriterOptions {
        writer_options: builder,
        ..options
    }
}

/// The schema of [`StagedWriteExec`]'s output: one row per task.
fn staged_files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "files",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

/// The schema of a write's result: the number of rows written.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// Writes each input partition into its own staging directory; see the
/// module documentation.
#[derive(Debug)]
pub struct StagedWriteExec {
    input: Arc<dyn ExecutionPlan>,
    sink: SinkSpec,
    write_id: String,
    destination: ListingTableUrl,
    single_file: bool,
    staging: StagingArea,
    properties: Arc<PlanProperties>,
}

impl StagedWriteExec {
    /// A writer of `input` to the sink's destination, staged under write id
    /// `write_id`.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        sink: SinkSpec,
        write_id: String,
    ) -> Result<Self> {
        let (destination, single_file) = sink.destination()?;
        let staging = StagingArea::new(&destination, single_file, &write_id);
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(staged_files_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            sink,
            write_id,
            destination,
            single_file,
            staging,
            properties,
        })
    }

    /// The sink this writer writes with.
    pub fn sink(&self) -> &SinkSpec {
        &self.sink
    }

    /// The write's id.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }
}

impl DisplayAs for StagedWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StagedWriteExec: format={}, destination={}, write_id={}",
            self.sink.format_name(),
            self.destination,
            self.write_id
        )
    }
}

impl ExecutionPlan for StagedWriteExec {
    fn name(&self) -> &str {
        "StagedWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(&children, "StagedWriteExec")?;
        Ok(Arc::new(Self::try_new(
            input,
            self.sink.clone(),
            self.write_id.clone(),
        )?))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let task_dir = self.staging.task_dir(partition, &attempt[..12]);
        let target = if self.single_file {
            let name = self
                .staging
                .single_file
                .as_ref()
                .and_then(|f| f.filename())
                .unwrap_or("part")
                .to_string();
            self.staging.url_of(&task_dir.clone().join(name), false)
        } else {
            self.staging.url_of(&task_dir, true)
        };
        let sink = self.sink.retargeted(&target, self.single_file)?;
        // Parallelism comes from the tasks: one open file per task is enough.
        let mut config = context.session_config().clone();
        config
            .options_mut()
            .set("datafusion.execution.minimum_parallel_output_files", "1")?;
        // A task dropped mid-write (its job cancelled or failed) must not
        // land a file after the client has cleaned the staging area.
        let gate = Arc::new(TaskWriteGate::default());
        let runtime = with_abandoned_writes_undone(&context.runtime_env(), Arc::clone(&gate));
        let write_context = ember_memory::task_context_with(&context, config, runtime);
        let store = self.staging.store(&context.runtime_env())?;
        let unfinished =
            UnfinishedTaskDir::new(&self.staging, Arc::clone(&store), task_dir.clone(), gate);
        let schema = staged_files_schema();
        let output_schema = schema.clone();
        let written = futures::stream::once(async move {
            let rows = sink.write_all(input, &write_context).await?;
            let mut files: Vec<String> = store
                .list(Some(&task_dir))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await?;
            files.sort();
            unfinished.finish();
            tracing::debug!(
                partition,
                files = files.len(),
                rows,
                "staged write task done"
            );
            staged_files_batch(&output_schema, files, rows)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, written)))
    }
}

fn staged_files_batch(schema: &SchemaRef, files: Vec<String>, rows: u64) -> Result<RecordBatch> {
    let mut list = ListBuilder::new(StringBuilder::new());
    for file in &files {
        list.values().append_value(file);
    }
    list.append(true);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(list.finish()),
        Arc::new(UInt64Array::from(vec![rows])),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Commits a staged write; see the module documentation.
#[derive(Debug)]
pub struct WriteCommitExec {
    input: Arc<dyn ExecutionPlan>,
    staging: StagingArea,
    write_id: String,
    destination: ListingTableUrl,
    single_file: bool,
    properties: Arc<PlanProperties>,
}

impl WriteCommitExec {
    /// The commit of the write `write_id` to `destination`, whose staged
    /// files `input` (a [`StagedWriteExec`], gathered into one partition)
    /// lists.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        destination: ListingTableUrl,
        single_file: bool,
        write_id: String,
    ) -> Self {
        let staging = StagingArea::new(&destination, single_file, &write_id);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            staging,
            write_id,
            destination,
            single_file,
            properties,
        }
    }

    /// The write's id.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }

    /// Where the committed files go.
    pub fn destination(&self) -> &ListingTableUrl {
        &self.destination
    }

    /// Whether the destination is one file.
    pub fn single_file(&self) -> bool {
        self.single_file
    }
}

impl DisplayAs for WriteCommitExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WriteCommitExec: destination={}, write_id={}",
            self.destination, self.write_id
        )
    }
}

impl ExecutionPlan for WriteCommitExec {
    fn name(&self) -> &str {
        "WriteCommitExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = single_input(&children, "WriteCommitExec")?;
        Ok(Arc::new(Self::new(
            input,
            self.destination.clone(),
            self.single_file,
            self.write_id.clone(),
        )))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "WriteCommitExec has one partition, not {partition}"
            )));
        }
        let input = self.input.execute(0, context.clone())?;
        let staging = self.staging.clone();
        let single_file = self.single_file;
        let schema = count_schema();
        let committed = futures::stream::once(async move {
            let reports: Vec<RecordBatch> = input.try_collect().await?;
            let runtime = context.runtime_env();
            let rows = commit(&staging, single_file, &reports, &runtime).await?;
            Ok(RecordBatch::try_new(
                count_schema(),
                vec![Arc::new(UInt64Array::from(vec![rows]))],
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, committed)))
    }
}

/// Moves every reported file into the destination, marks it, removes the
/// staging area; returns the rows written.
async fn commit(
    staging: &StagingArea,
    single_file: bool,
    reports: &[RecordBatch],
    runtime: &Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<u64> {
    let mut staged = Vec::new();
    let mut rows = 0u64;
    for batch in reports {
        let files = batch
            .column(0)
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| DataFusionError::Internal("bad staged-files report".into()))?;
        let counts = batch
            .column(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| DataFusionError::Internal("bad staged-rows report".into()))?;
        rows += counts.values().iter().sum::<u64>();
        for row in 0..files.len() {
            let names = files.value(row);
            let names = names
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .ok_or_else(|| DataFusionError::Internal("bad staged-file names".into()))?;
            staged.extend(names.iter().flatten().map(Path::from));
        }
    }
    if single_file && staged.len() > 1 {
        return Err(DataFusionError::Internal(format!(
            "a single-file write staged {} files",
            staged.len()
        )));
    }
    let store = staging.store(runtime)?;
    let moves = staged
        .iter()
        .map(|from| Ok::<_, DataFusionError>((from.clone(), staging.committed_path(from)?)))
        .collect::<Result<Vec<_>>>()?;
    let moved = moves.len();
    futures::stream::iter(moves)
        .map(|(from, to)| {
            let store = store.clone();
            async move { store.rename(&from, &to).await }
        })
        .buffer_unordered(COMMIT_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    if !single_file {
        let marker = staging.destination_dir.clone().join(SUCCESS_MARKER);
        store.put(&marker, Vec::<u8>::new().into()).await?;
    }
    let leftovers = staging.remove(runtime).await?;
    tracing::info!(
        destination = %staging.url_of(&staging.destination_dir, true),
        files = moved,
        rows,
        leftovers,
        "write committed"
    );
    Ok(rows)
}
