//! Secret settings stay hidden from `SHOW` and `information_schema`.
//!
//! A session's settings, S3 credentials among them, are DataFusion
//! configuration entries: they must hold the real values, because the
//! entries are what travels to the cluster with each query. DataFusion's
//! `information_schema.df_settings` (which `SHOW` reads) lists those same
//! entries, so [`mask_secret_settings`] points every scan of it at a copy
//! whose secret values read `****`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, TableScan};
use datafusion::physical_plan::collect;

/// How a secret value is shown.
const MASK: &str = "****";

/// Whether `scan` reads the session's settings.
fn reads_settings(scan: &TableScan) -> bool {
    scan.table_name.schema() == Some("information_schema")
        && scan.table_name.table() == "df_settings"
}

/// `plan` with every scan of `information_schema.df_settings` reading the
/// settings of `state` with secret values masked. Other plans come back
/// as they are.
pub(crate) async fn mask_secret_settings(
    state: &SessionState,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    let mut reads = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            reads |= reads_settings(scan);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    if !reads {
        return Ok(plan);
    }
    let masked = provider_as_source(Arc::new(masked_settings(state).await?));
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(scan) if reads_settings(&scan) => {
            Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                source: Arc::clone(&masked),
                ..scan
            })))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}

/// The session's settings table, read here, with secret values masked.
async fn masked_settings(state: &SessionState) -> Result<MemTable> {
    let table = TableReference::partial("information_schema", "df_settings");
    let provider = state
        .schema_for_ref(table)?
        .table("df_settings")
        .await?
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("no df_settings".into()))?;
    let plan = provider.scan(state, None, &[], None).await?;
    let batches = collect(plan, state.task_ctx()).await?;
    let masked = batches.iter().map(mask_batch).collect::<Result<Vec<_>>>()?;
    MemTable::try_new(provider.schema(), vec![masked])
}

/// A `df_settings` batch with the values of secret settings masked.
fn mask_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let (Ok(name_index), Ok(value_index)) = (schema.index_of("name"), schema.index_of("value"))
    else {
        return Ok(batch.clone());
    };
    let names = batch
        .column(name_index)
        .as_any()
        .downcast_ref::<StringArray>();
    let values = batch
        .column(value_index)
        .as_any()
        .downcast_ref::<StringArray>();
    let (Some(names), Some(values)) = (names, values) else {
        return Ok(batch.clone());
    };
    let masked: StringArray = (0..batch.num_rows())
        .map(|row| {
            let value = (!values.is_null(row)).then(|| values.value(row));
            match value {
                Some(value)
                    if !value.is_empty() && ember_core::is_secret_setting(names.value(row)) =>
                {
                    Some(MASK)
                }
                other => other,
            }
        })
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[value_index] = Arc::new(masked);
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use crate::EmberContext;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    async fn shown(ctx: &EmberContext, sql: &str) -> String {
        let batches = ctx.run_sql(sql).await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn show_and_information_schema_mask_secret_values() {
        let ctx = EmberContext::embedded().unwrap();
        ctx.run_sql("SET s3.secret_access_key = 'hidden-value-123'")
            .await
            .unwrap();
        ctx.run_sql("SET s3.region = 'eu-west-3'").await.unwrap();
        for sql in [
            "SHOW s3.secret_access_key",
            "SHOW ALL",
            "SELECT name, value FROM information_schema.df_settings WHERE name LIKE 's3.%'",
            "SELECT value FROM information_schema.df_settings",
        ] {
            let text = shown(&ctx, sql).await;
            assert!(!text.contains("hidden-value-123"), "{sql}: {text}");
        }
        assert!(
            shown(&ctx, "SHOW s3.secret_access_key")
                .await
                .contains("****")
        );
        // Other settings read as they are, and the secret still works.
        assert!(shown(&ctx, "SHOW s3.region").await.contains("eu-west-3"));
        let settings =
            ember_core::s3::S3Settings::from_session_config(&ctx.session().copied_config());
        assert_eq!(
            settings.defaults.secret_access_key.unwrap().expose(),
            "hidden-value-123"
        );
    }
}
