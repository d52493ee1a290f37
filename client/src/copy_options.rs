//! `COPY … OPTIONS (…)` that survive the trip to a cluster.
//!
//! DataFusion keeps a `COPY`'s format options (`'format.compression'`,
//! `'format.max_row_group_size'`, `'format.delimiter'`, …) in the logical
//! plan's `CopyTo::options`, which its protobuf encoding drops: on a cluster
//! the scheduler would plan the write with default format options, and with
//! defaults that ignore the client's session settings too.
//! [`fold_copy_options`] resolves the options on the client, against its
//! session, into the format itself (`ParquetFormatFactory`,
//! `CsvFormatFactory`, `JsonFormatFactory` with their options), which the
//! codecs do carry.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::file_options::file_type::FileType;
use datafusion::datasource::file_format::csv::{CsvFormat, CsvFormatFactory};
use datafusion::datasource::file_format::json::{JsonFormat, JsonFormatFactory};
use datafusion::datasource::file_format::parquet::{ParquetFormat, ParquetFormatFactory};
use datafusion::datasource::file_format::{
    FileFormat, FileFormatFactory, file_type_to_format, format_as_file_type,
};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::CopyTo;

use crate::error::{ClientError, Result};

/// `COPY` options that configure the sink rather than the format; DataFusion
/// reads them from the plan's options, so they stay there.
const SINK_OPTIONS: &[&str] = &["single_file_output", KEEP_PARTITION_BY_COLUMNS];

/// The sink option that has a session setting of the same meaning.
const KEEP_PARTITION_BY_COLUMNS: &str = "execution.keep_partition_by_columns";

/// Resolves a `COPY` plan's format options, with the session's defaults,
/// into its file format; any other plan is returned unchanged.
///
/// `'execution.keep_partition_by_columns'`, which the plan's encoding would
/// drop as well, comes back as a session setting for the statement, the
/// second value returned.
pub fn fold_copy_options(
    state: &SessionState,
    plan: LogicalPlan,
) -> Result<(LogicalPlan, Vec<(String, String)>)> {
    let LogicalPlan::Copy(copy) = plan else {
        return Ok((plan, Vec::new()));
    };
    let (sink_options, format_options): (HashMap<_, _>, HashMap<_, _>) = copy
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(key, _)| SINK_OPTIONS.contains(&key.as_str()));
    let settings: Vec<(String, String)> = sink_options
        .get(KEEP_PARTITION_BY_COLUMNS)
        .map(|v| {
            (
                format!("datafusion.{KEEP_PARTITION_BY_COLUMNS}"),
                v.trim().to_string(),
            )
        })
        .into_iter()
        .collect();
    let file_type = resolved_file_type(state, &copy.file_type, &format_options)?
        .unwrap_or_else(|| copy.file_type.clone());
    let folded = LogicalPlan::Copy(CopyTo::new(
        copy.input,
        copy.output_url,
        copy.partition_by,
        file_type,
        sink_options,
    ));
    Ok((folded, settings))
}

/// The file type with `options` resolved into it, for the formats whose
/// options the codecs carry; `None` for any other format.
fn resolved_file_type(
    state: &SessionState,
    file_type: &Arc<dyn FileType>,
    options: &HashMap<String, String>,
) -> Result<Option<Arc<dyn FileType>>> {
    let format = file_type_to_format(file_type)
        .and_then(|factory| factory.create(state, options))
        .map_err(ClientError::from_datafusion)?;
    let format: &dyn FileFormat = format.as_ref();
    let factory: Arc<dyn FileFormatFactory> =
        if let Some(parquet) = format.downcast_ref::<ParquetFormat>() {
            Arc::new(ParquetFormatFactory::new_with_options(
                parquet.options().clone(),
            ))
        } else if let Some(csv) = format.downcast_ref::<CsvFormat>() {
            Arc::new(CsvFormatFactory::new_with_options(csv.options().clone()))
        } else if let Some(json) = format.downcast_ref::<JsonFormat>() {
            Arc::new(JsonFormatFactory::new_with_options(json.options().clone()))
        } else {
            return Ok(None);
        };
    Ok(Some(format_as_file_type(factory)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn copy_plan(ctx: &SessionContext, options: &str) -> LogicalPlan {
        ctx.state()
            .create_logical_plan(&format!(
                "COPY (SELECT 1 AS a) TO '/tmp/out/' STORED AS PARQUET OPTIONS ({options})"
            ))
            .await
            .unwrap()
    }

    fn parquet_options(
        plan: &LogicalPlan,
    ) -> Option<datafusion::common::config::TableParquetOptions> {
        let LogicalPlan::Copy(copy) = plan else {
            panic!("not a COPY: {plan}")
        };
        let factory = file_type_to_format(&copy.file_type).unwrap();
        factory
            .as_ref()
            .downcast_ref::<ParquetFormatFactory>()
            .and_then(|f| f.options.clone())
    }

    #[tokio::test]
    async fn format_options_move_into_the_format_and_sink_options_stay() {
        let ctx = SessionContext::new();
        ctx.sql("SET datafusion.execution.parquet.compression = 'zstd(3)'")
            .await
            .unwrap();
        let plan = copy_plan(
            &ctx,
            "'format.max_row_group_size' '4096', 'execution.keep_partition_by_columns' 'true'",
        )
        .await;
        assert_eq!(parquet_options(&plan), None, "DataFusion keeps them aside");
        let (folded, settings) = fold_copy_options(&ctx.state(), plan).unwrap();
        assert_eq!(
            settings,
            vec![(
                "datafusion.execution.keep_partition_by_columns".to_string(),
                "true".to_string()
            )]
        );
        let options = parquet_options(&folded).expect("options in the format");
        assert_eq!(options.global.max_row_group_size, 4096);
        assert_eq!(
            options.global.compression.as_deref(),
            Some("zstd(3)"),
            "the session's settings are resolved too"
        );
        let LogicalPlan::Copy(copy) = folded else {
            unreachable!()
        };
        assert_eq!(
            copy.options,
            HashMap::from([(
                "execution.keep_partition_by_columns".to_string(),
                "true".to_string()
            )])
        );
    }

    #[tokio::test]
    async fn other_plans_pass_through() {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan("SELECT 1").await.unwrap();
        let folded = fold_copy_options(&ctx.state(), plan.clone()).unwrap();
        assert_eq!(folded, (plan, Vec::new()));
    }

    #[tokio::test]
    async fn a_bad_option_is_an_error_naming_it() {
        let ctx = SessionContext::new();
        let plan = copy_plan(&ctx, "'format.no_such_option' '1'").await;
        let err = fold_copy_options(&ctx.state(), plan)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_option"), "{err}");
    }
}
