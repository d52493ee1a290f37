//! Running statements and scripts, and the catalog listings behind `\d`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::context::EmberContext;
use crate::error::{ClientError, Result};
use crate::format::{OutputFormat, write_batches};
use crate::progress::ProgressLine;
use crate::script::split_statements;

/// Runs statements on a context and prints their results.
#[derive(Debug)]
pub struct StatementRunner {
    /// Where statements run.
    pub context: EmberContext,
    /// How results are printed.
    pub format: OutputFormat,
    /// Whether to print each statement's elapsed time (on standard error).
    pub timing: bool,
    /// Whether to keep a progress line on standard error while a statement
    /// runs longer than [`PROGRESS_AFTER`] (for a terminal).
    pub progress: bool,
}

/// How long a statement runs before its progress line appears.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(1);

impl StatementRunner {
    /// A runner printing tables, without timing.
    pub fn new(context: EmberContext) -> Self {
        Self {
            context,
            format: OutputFormat::Table,
            timing: false,
            progress: false,
        }
    }

    /// Runs one statement and writes its result to `out`.
    pub async fn run_statement(&self, statement: &str, out: &mut dyn Write) -> Result<()> {
        let started = Instant::now();
        let line = self
            .progress
            .then(|| ProgressLine::start(self.context.clone(), PROGRESS_AFTER));
        let result = self
            .context
            .run_sql_until(statement, ember_core::process::shutdown_signal())
            .await;
        if let Some(line) = line {
            line.finish();
        }
        let batches = result?;
        write_batches(out, &batches, self.format)?;
        if self.timing {
            let elapsed = started.elapsed();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let spill = match self.context.last_statement_spill().await {
                Ok(Some(spill)) if spill.spilled() => format!(", {spill}"),
                Ok(_) => String::new(),
                Err(e) => {
                    tracing::warn!("cannot tell what the statement spilled: {e}");
                    String::new()
                }
            };
            eprintln!(
                "Time: {:.3}s ({rows} row{}{spill})",
                elapsed.as_secs_f64(),
                if rows == 1 { "" } else { "s" }
            );
        }
        Ok(())
    }

    /// Runs every statement of a script, in order, stopping at the first
    /// error. `source` names the script in error positions (`FILE:LINE:COL`).
    pub async fn run_script(&self, source: &str, text: &str, out: &mut dyn Write) -> Result<()> {
        for statement in split_statements(text) {
            self.run_statement(&statement.text, out)
                .await
                .map_err(|e| e.in_script(source, statement.line, statement.column))?;
        }
        Ok(())
    }

    /// The tables of every catalog and schema, except `information_schema`.
    pub fn list_tables(&self) -> Result<RecordBatch> {
        let session = self.context.session();
        let (mut catalogs, mut schemas, mut tables) = (Vec::new(), Vec::new(), Vec::new());
        let mut catalog_names = session.catalog_names();
        catalog_names.sort();
        for catalog_name in catalog_names {
            let Some(catalog) = session.catalog(&catalog_name) else {
                continue;
            };
            let mut schema_names = catalog.schema_names();
            schema_names.sort();
            for schema_name in schema_names
                .into_iter()
                .filter(|s| s != "information_schema")
            {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let mut table_names = schema.table_names();
                table_names.sort();
                for table in table_names {
                    catalogs.push(catalog_name.clone());
                    schemas.push(schema_name.clone());
                    tables.push(table);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("catalog", DataType::Utf8, false),
            Field::new("schema", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(catalogs)),
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(tables)),
            ],
        )
        .map_err(|e| ClientError::Output(e.to_string()))
    }

    /// The columns of one table: name, type and nullability.
    pub async fn describe_table(&self, name: &str) -> Result<RecordBatch> {
        let provider = self
            .context
            .session()
            .table_provider(name)
            .await
            .map_err(ClientError::from_datafusion)?;
        let table_schema = provider.schema();
        let fields = table_schema.fields();
        let schema = Arc::new(Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nullable", DataType::Boolean, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    fields.iter().map(|f| f.name().clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    fields.iter().map(|f| f.data_type().to_string()),
                )),
                Arc::new(BooleanArray::from(
                    fields.iter().map(|f| f.is_nullable()).collect::<Vec<_>>(),
                )),
            ],
        )
        .map_err(|e| ClientError::Output(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_a_script_and_reports_positions() {
        let runner = StatementRunner {
            context: EmberContext::embedded().unwrap(),
            format: OutputFormat::Csv,
            timing: false,
            progress: false,
        };
        let mut out = Vec::new();
        runner
            .run_script(
                "t.sql",
                "create table t as values (1, 'a'), (2, 'b');\nselect * from t order by 1;",
                &mut out,
            )
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "column1,column2\n1,a\n2,b\n"
        );

        let mut out = Vec::new();
        let err = runner
            .run_script("t.sql", "select 1;\n\n  selec 2;", &mut out)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("syntax error at t.sql:3:3:"), "{err}");
        assert_eq!(String::from_utf8(out).unwrap(), "Int64(1)\n1\n");
    }

    #[tokio::test]
    async fn lists_and_describes_tables() {
        let runner = StatementRunner::new(EmberContext::embedded().unwrap());
        runner
            .run_statement(
                "create table nums (n bigint not null, s varchar)",
                &mut Vec::new(),
            )
            .await
            .unwrap();
        let tables = runner.list_tables().unwrap();
        assert_eq!(tables.num_rows(), 1);
        let described = runner.describe_table("nums").await.unwrap();
        let mut out = Vec::new();
        write_batches(&mut out, &[described], OutputFormat::Csv).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "column,type,nullable\nn,Int64,false\ns,Utf8View,true\n"
        );
    }
}
