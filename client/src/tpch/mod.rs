//! TPC-H: data generated in-process (with the `tpchgen` crates) and the 22
//! benchmark queries.
//!
//! Ember uses TPC-H as its sample data set (the quickstart), in its
//! cross-process tests and in its benchmarks. The queries use the
//! specification's validation parameters; [`query_at_scale`] also sets the
//! one that depends on the scale factor. Where a query's `ORDER BY` can tie,
//! a unique key is appended to it, so that every engine returns rows in the
//! same order and results compare row by row.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// The eight TPC-H tables, smallest first.
pub const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

const QUERIES: [&str; 22] = [
    include_str!("queries/q1.sql"),
    include_str!("queries/q2.sql"),
    include_str!("queries/q3.sql"),
    include_str!("queries/q4.sql"),
    include_str!("queries/q5.sql"),
    include_str!("queries/q6.sql"),
    include_str!("queries/q7.sql"),
    include_str!("queries/q8.sql"),
    include_str!("queries/q9.sql"),
    include_str!("queries/q10.sql"),
    include_str!("queries/q11.sql"),
    include_str!("queries/q12.sql"),
    include_str!("queries/q13.sql"),
    include_str!("queries/q14.sql"),
    include_str!("queries/q15.sql"),
    include_str!("queries/q16.sql"),
    include_str!("queries/q17.sql"),
    include_str!("queries/q18.sql"),
    include_str!("queries/q19.sql"),
    include_str!("queries/q20.sql"),
    include_str!("queries/q21.sql"),
    include_str!("queries/q22.sql"),
];

/// The SQL text of TPC-H query `number` (1 to 22), with the validation
/// parameters of scale factor 1.
pub fn query(number: usize) -> Option<&'static str> {
    number.checked_sub(1).and_then(|i| QUERIES.get(i)).copied()
}

/// Q11's `FRACTION` in the text of [`query`]: the specification's value at
/// scale factor 1.
const Q11_FRACTION_AT_SF1: &str = "* 0.0001";

/// The SQL text of TPC-H query `number` (1 to 22) for data of
/// `scale_factor`.
///
/// One substitution parameter depends on the scale factor: Q11 keeps the
/// parts whose stock value exceeds `FRACTION` of the total, and the
/// specification sets `FRACTION` to 0.0001 / SF. Without it, Q11 returns
/// fewer rows as the data grows, and none at scale factor 10. The fraction is
/// written with 12 decimals (see [`q11_fraction`]), as the benchmark's
/// Python peers write it too, so that every engine runs the same query.
pub fn query_at_scale(number: usize, scale_factor: f64) -> Option<String> {
    let sql = query(number)?;
    if number != 11 {
        return Some(sql.to_string());
    }
    Some(sql.replacen(
        Q11_FRACTION_AT_SF1,
        &format!("* {}", q11_fraction(scale_factor)),
        1,
    ))
}

/// Q11's `FRACTION` for `scale_factor`, 0.0001 / SF, as a decimal literal
/// rounded to 12 decimals, with no trailing zeros.
pub fn q11_fraction(scale_factor: f64) -> String {
    let fixed = format!("{:.12}", 0.0001 / scale_factor);
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Errors raised while generating TPC-H data.
#[derive(Debug, thiserror::Error)]
pub enum TpchError {
    /// The table name is not one of [`TABLES`].
    #[error("unknown TPC-H table `{0}`")]
    UnknownTable(String),
    /// The scale factor is not positive.
    #[error("scale factor must be positive, got {0}")]
    ScaleFactor(f64),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Arrow or Parquet failed while encoding.
    #[error("cannot encode {path}: {message}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// File formats the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// Apache Parquet (Snappy-compressed).
    Parquet,
    /// CSV with a header row.
    Csv,
}

impl DataFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            DataFormat::Parquet => "parquet",
            DataFormat::Csv => "csv",
        }
    }

    /// The `STORED AS` keyword for `CREATE EXTERNAL TABLE`.
    pub fn stored_as(self) -> &'static str {
        match self {
            DataFormat::Parquet => "PARQUET",
            DataFormat::Csv => "CSV",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct TpchGenerator {
    /// TPC-H scale factor: 1.0 is about 1 GB of raw data; 0.01 is 60,000
    /// `lineitem` rows.
    pub scale_factor: f64,
    /// Files per table (the small `nation` and `region` tables always get one).
    pub parts: usize,
    /// Output format.
    pub format: DataFormat,
}

impl Default for TpchGenerator {
    fn default() -> Self {
        Self {
            scale_factor: 0.01,
            parts: 1,
            format: DataFormat::Parquet,
        }
    }
}

fn reader(
    table: &str,
    sf: f64,
    part: i32,
    parts: i32,
) -> Result<Box<dyn RecordBatchReader + Send>, TpchError> {
    Ok(match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, part, parts))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, part, parts))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, part, parts))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, part, parts))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(sf, part, parts))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, part, parts))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, part, parts))),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, part, parts))),
        other => return Err(TpchError::UnknownTable(other.to_string())),
    })
}

impl TpchGenerator {
    /// Writes every table under `dir`, one directory per table
    /// (`dir/lineitem/part-0.parquet`, ...), and returns the table
    /// directories. Each file is written under a temporary name and renamed
    /// when complete, so a failed run leaves no truncated file behind.
    pub fn write_all(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>, TpchError> {
        TABLES
            .iter()
            .map(|table| Ok((table.to_string(), self.write_table(table, dir)?)))
            .collect()
    }

    /// Writes one table under `dir/<table>/` and returns that directory.
    pub fn write_table(&self, table: &str, dir: &Path) -> Result<PathBuf, TpchError> {
        // Also refuses NaN.
        if self.scale_factor.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(TpchError::ScaleFactor(self.scale_factor));
        }
        let table_dir = dir.join(table);
        std::fs::create_dir_all(&table_dir).map_err(|source| TpchError::Io {
            path: table_dir.clone(),
            source,
        })?;
        let parts = if matches!(table, "nation" | "region") {
            1
        } else {
            self.parts.max(1)
        };
        for part in 0..parts {
            let batches = reader(table, self.scale_factor, part as i32 + 1, parts as i32)?;
            let path = table_dir.join(format!("part-{part}.{}", self.format.extension()));
            self.write_file(batches, &path)?;
        }
        Ok(table_dir)
    }

    fn write_file(
        &self,
        batches: Box<dyn RecordBatchReader + Send>,
        path: &Path,
    ) -> Result<(), TpchError> {
        let tmp = path.with_extension("tmp");
        let io = |source| TpchError::Io {
            path: tmp.clone(),
            source,
        };
        let encode = |e: &dyn std::fmt::Display| TpchError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let file = File::create(&tmp).map_err(io)?;
        let schema: SchemaRef = batches.schema();
        match self.format {
            DataFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
                    .map_err(|e| encode(&e))?;
                for batch in batches {
                    writer
                        .write(&batch.map_err(|e| encode(&e))?)
                        .map_err(|e| encode(&e))?;
                }
                writer.close().map_err(|e| encode(&e))?;
            }
            DataFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file);
                for batch in batches {
                    writer
                        .write(&batch.map_err(|e| encode(&e))?)
                        .map_err(|e| encode(&e))?;
                }
            }
        }
        std::fs::rename(&tmp, path).map_err(|source| TpchError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// `CREATE EXTERNAL TABLE` statements for tables written under `dir`.
    pub fn create_table_statements(&self, dir: &Path) -> Vec<String> {
        self.create_table_statements_at(&dir.display().to_string())
    }

    /// `CREATE EXTERNAL TABLE` statements for the tables stored under
    /// `base`, a directory or a URL such as `s3://bucket/tpch`.
    ///
    /// CSV tables are declared with the TPC-H column types (see
    /// [`column_definitions`]): inferred from the text, prices would be
    /// floating point, whose sums depend on the order of their terms, and
    /// Q15's `total_revenue = max(total_revenue)` could then match no row.
    pub fn create_table_statements_at(&self, base: &str) -> Vec<String> {
        let base = base.trim_end_matches('/');
        TABLES
            .iter()
            .map(|table| match self.format {
                DataFormat::Parquet => {
                    format!(
                        "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{base}/{table}/'"
                    )
                }
                DataFormat::Csv => format!(
                    "CREATE EXTERNAL TABLE {table} ({}) STORED AS CSV LOCATION '{base}/{table}/' \
                     OPTIONS ('format.has_header' 'true')",
                    column_definitions(table).unwrap_or_default(),
                ),
            })
            .collect()
    }
}

/// The column list of TPC-H `table` for `CREATE EXTERNAL TABLE`, in SQL
/// types: `r_regionkey BIGINT NOT NULL, r_name VARCHAR NOT NULL, ...`.
/// `None` for a name that is not a TPC-H table.
pub fn column_definitions(table: &str) -> Option<String> {
    // Readers are lazy: building one generates nothing.
    let schema = reader(table, 1.0, 1, 1).ok()?.schema();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|field| {
            let null = if field.is_nullable() { "" } else { " NOT NULL" };
            format!("{} {}{null}", field.name(), sql_type(field.data_type()))
        })
        .collect();
    Some(columns.join(", "))
}

/// The SQL name of one of the Arrow types that the TPC-H tables use.
fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Int32 => "INT".to_string(),
        DataType::Int64 => "BIGINT".to_string(),
        DataType::Decimal128(precision, scale) => format!("DECIMAL({precision}, {scale})"),
        DataType::Date32 => "DATE".to_string(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "VARCHAR".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_is_there_and_numbered() {
        for n in 1..=22 {
            let sql = query(n).unwrap();
            assert!(sql.trim_end().ends_with(';'), "q{n}");
        }
        assert!(query(0).is_none());
        assert!(query(23).is_none());
    }

    #[test]
    fn q11_fraction_follows_the_scale_factor() {
        assert_eq!(q11_fraction(1.0), "0.0001");
        assert_eq!(q11_fraction(10.0), "0.00001");
        assert_eq!(q11_fraction(0.01), "0.01");
        assert_eq!(q11_fraction(3.0), "0.000033333333");
        let sf10 = query_at_scale(11, 10.0).unwrap();
        assert!(sf10.contains("* 0.00001\n"), "{sf10}");
        assert!(!sf10.contains("0.0001"), "{sf10}");
        assert_eq!(query_at_scale(11, 1.0).unwrap(), query(11).unwrap());
        assert_eq!(query_at_scale(6, 10.0).unwrap(), query(6).unwrap());
        assert!(query_at_scale(23, 1.0).is_none());
    }

    #[test]
    fn generates_parquet_tables() {
        let dir = tempfile::tempdir().unwrap();
        let generator = TpchGenerator {
            scale_factor: 0.001,
            parts: 2,
            format: DataFormat::Parquet,
        };
        let tables = generator.write_all(dir.path()).unwrap();
        assert_eq!(tables.len(), 8);
        assert!(dir.path().join("lineitem/part-1.parquet").is_file());
        assert!(dir.path().join("nation/part-0.parquet").is_file());
        assert!(!dir.path().join("nation/part-1.parquet").exists());
        let leftovers = std::fs::read_dir(dir.path().join("orders"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "tmp")
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn csv_tables_are_declared_with_the_tpch_types() {
        let lineitem = column_definitions("lineitem").unwrap();
        assert!(
            lineitem.starts_with("l_orderkey BIGINT NOT NULL, "),
            "{lineitem}"
        );
        assert!(lineitem.contains("l_linenumber INT NOT NULL"), "{lineitem}");
        assert!(
            lineitem.contains("l_extendedprice DECIMAL(15, 2) NOT NULL"),
            "{lineitem}"
        );
        assert!(lineitem.contains("l_shipdate DATE NOT NULL"), "{lineitem}");
        assert!(
            lineitem.ends_with("l_comment VARCHAR NOT NULL"),
            "{lineitem}"
        );
        assert!(column_definitions("lineitems").is_none());
        let csv = TpchGenerator {
            format: DataFormat::Csv,
            ..TpchGenerator::default()
        };
        let statements = csv.create_table_statements_at("s3://tpch/csv/");
        assert_eq!(
            statements[0],
            "CREATE EXTERNAL TABLE region (r_regionkey BIGINT NOT NULL, r_name VARCHAR NOT NULL, \
             r_comment VARCHAR NOT NULL) STORED AS CSV LOCATION 's3://tpch/csv/region/' \
             OPTIONS ('format.has_header' 'true')"
        );
    }

    /// The CSV files read back, through their declared columns, as the
    /// Parquet files do: same types, same values.
    #[tokio::test]
    async fn csv_tables_read_back_as_the_parquet_tables() {
        let dir = tempfile::tempdir().unwrap();
        let query = "SELECT l_returnflag, sum(l_extendedprice * (1 - l_discount)) AS revenue, \
                     max(l_shipdate) AS last_ship, sum(l_linenumber) AS lines \
                     FROM lineitem GROUP BY l_returnflag ORDER BY l_returnflag";
        let mut results = Vec::new();
        for format in [DataFormat::Parquet, DataFormat::Csv] {
            let generator = TpchGenerator {
                scale_factor: 0.001,
                parts: 1,
                format,
            };
            let data = dir.path().join(format.extension());
            generator.write_table("lineitem", &data).unwrap();
            let ctx = datafusion::prelude::SessionContext::new();
            let create = generator
                .create_table_statements(&data)
                .into_iter()
                .find(|s| s.contains(" lineitem "))
                .unwrap();
            ctx.sql(&create).await.unwrap().collect().await.unwrap();
            let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
            results.push(
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(results[0], results[1]);
        assert!(results[0].contains("| R "), "{}", results[0]);
    }

    #[test]
    fn rejects_bad_scale_factor() {
        let dir = tempfile::tempdir().unwrap();
        let generator = TpchGenerator {
            scale_factor: 0.0,
            ..TpchGenerator::default()
        };
        assert!(matches!(
            generator.write_table("nation", dir.path()),
            Err(TpchError::ScaleFactor(_))
        ));
    }
}
