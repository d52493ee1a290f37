//! Writing query results as a table, CSV, a JSON array or NDJSON.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::error::{ClientError, Result};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table (the default).
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of objects.
    Json,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "ndjson" => Ok(Self::Ndjson),
            other => Err(format!(
                "unknown format `{other}` (table, csv, json, ndjson)"
            )),
        }
    }
}

fn output_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Output(e.to_string())
}

/// Writes `batches` to `out` in `format`. A result with no columns (the
/// result of DDL or `SET`) prints nothing.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    let Some(first) = batches.first() else {
        if format == OutputFormat::Json {
            writeln!(out, "[]").map_err(output_error)?;
        }
        return Ok(());
    };
    if first.num_columns() == 0 {
        return Ok(());
    }
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches(batches).map_err(output_error)?;
            writeln!(out, "{table}").map_err(output_error)?;
        }
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(output_error)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(output_error)?;
            }
            writer.finish().map_err(output_error)?;
            writeln!(out).map_err(output_error)?;
        }
        OutputFormat::Ndjson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(output_error)?;
            }
            writer.finish().map_err(output_error)?;
        }
    }
    out.flush().map_err(output_error)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap()
    }

    fn render(format: OutputFormat) -> String {
        let mut out = Vec::new();
        write_batches(&mut out, &[batch()], format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_format() {
        assert_eq!(render(OutputFormat::Csv), "n,s\n1,a\n2,\n");
        assert_eq!(
            render(OutputFormat::Json),
            "[{\"n\":1,\"s\":\"a\"},{\"n\":2}]\n"
        );
        assert_eq!(
            render(OutputFormat::Ndjson),
            "{\"n\":1,\"s\":\"a\"}\n{\"n\":2}\n"
        );
        let table = render(OutputFormat::Table);
        assert!(table.contains("| n | s |"), "{table}");
    }

    #[test]
    fn empty_json_is_an_empty_array() {
        let empty = batch().slice(0, 0);
        let mut out = Vec::new();
        write_batches(&mut out, &[empty], OutputFormat::Json).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
    }
}
