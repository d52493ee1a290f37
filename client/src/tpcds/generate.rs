//! Writing the TPC-DS tables as Parquet, one directory per table.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatchReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpcdsgen::config::{Session, SessionBuilder, Table};
use tpcdsgen_arrow::{
    CallCenterArrow, CatalogPageArrow, CatalogReturnsArrow, CatalogSalesArrow,
    CustomerAddressArrow, CustomerArrow, CustomerDemographicsArrow, DateDimArrow,
    HouseholdDemographicsArrow, IncomeBandArrow, InventoryArrow, ItemArrow, PromotionArrow,
    ReasonArrow, ShipModeArrow, StoreArrow, StoreReturnsArrow, StoreSalesArrow, TimeDimArrow,
    WarehouseArrow, WebPageArrow, WebReturnsArrow, WebSalesArrow, WebSiteArrow,
};

use super::TpcdsError;

/// The 24 TPC-DS tables the queries read.
pub const TABLES: [&str; 24] = [
    "call_center",
    "catalog_page",
    "catalog_returns",
    "catalog_sales",
    "customer",
    "customer_address",
    "customer_demographics",
    "date_dim",
    "household_demographics",
    "income_band",
    "inventory",
    "item",
    "promotion",
    "reason",
    "ship_mode",
    "store",
    "store_returns",
    "store_sales",
    "time_dim",
    "warehouse",
    "web_page",
    "web_returns",
    "web_sales",
    "web_site",
];

/// The tables split into [`TpcdsGenerator::parts`] files; the others are
/// small and get one.
const SPLIT_TABLES: [&str; 7] = [
    "catalog_returns",
    "catalog_sales",
    "inventory",
    "store_returns",
    "store_sales",
    "web_returns",
    "web_sales",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct TpcdsGenerator {
    /// TPC-DS scale factor: 1.0 is about 1 GB of raw data. The dimension
    /// tables keep a minimum size at small scales (`customer_demographics`
    /// has 1.9 million rows at any scale).
    pub scale_factor: f64,
    /// Files per fact table (the returns, sales and inventory tables).
    pub parts: usize,
}

impl Default for TpcdsGenerator {
    fn default() -> Self {
        Self {
            scale_factor: 0.01,
            parts: 1,
        }
    }
}

/// A reader for `table`'s source rows `rows` (1-based, inclusive), or all
/// of them.
fn reader(
    table: &str,
    session: Session,
    rows: Option<(u64, u64)>,
) -> Result<Box<dyn RecordBatchReader + Send>, TpcdsError> {
    macro_rules! table_reader {
        ($arrow:ty) => {{
            let generator = <$arrow>::new(session);
            match rows {
                Some((first, last)) => Box::new(generator.with_source_row_range(first, last)),
                None => Box::new(generator),
            }
        }};
    }
    Ok(match table {
        "call_center" => table_reader!(CallCenterArrow),
        "catalog_page" => table_reader!(CatalogPageArrow),
        "catalog_returns" => table_reader!(CatalogReturnsArrow),
        "catalog_sales" => table_reader!(CatalogSalesArrow),
        "customer" => table_reader!(CustomerArrow),
        "customer_address" => table_reader!(CustomerAddressArrow),
        "customer_demographics" => table_reader!(CustomerDemographicsArrow),
        "date_dim" => table_reader!(DateDimArrow),
        "household_demographics" => table_reader!(HouseholdDemographicsArrow),
        "income_band" => table_reader!(IncomeBandArrow),
        "inventory" => table_reader!(InventoryArrow),
        "item" => table_reader!(ItemArrow),
        "promotion" => table_reader!(PromotionArrow),
        "reason" => table_reader!(ReasonArrow),
        "ship_mode" => table_reader!(ShipModeArrow),
        "store" => table_reader!(StoreArrow),
        "store_returns" => table_reader!(StoreReturnsArrow),
        "store_sales" => table_reader!(StoreSalesArrow),
        "time_dim" => table_reader!(TimeDimArrow),
        "warehouse" => table_reader!(WarehouseArrow),
        "web_page" => table_reader!(WebPageArrow),
        "web_returns" => table_reader!(WebReturnsArrow),
        "web_sales" => table_reader!(WebSalesArrow),
        "web_site" => table_reader!(WebSiteArrow),
        other => return Err(TpcdsError::UnknownTable(other.to_string())),
    })
}

/// The generator's table whose source rows `table`'s rows come from: the
/// returns tables are generated from their sales tables' rows.
fn source_table(table: &str) -> Option<Table> {
    Some(match table {
        "catalog_returns" | "catalog_sales" => Table::CatalogSales,
        "store_returns" | "store_sales" => Table::StoreSales,
        "web_returns" | "web_sales" => Table::WebSales,
        "inventory" => Table::Inventory,
        _ => return None,
    })
}

impl TpcdsGenerator {
    fn session(&self, table: &str) -> Result<Session, TpcdsError> {
        SessionBuilder::new()
            .with_scale_factor(self.scale_factor)
            .build()
            .map_err(|e| TpcdsError::Generator {
                table: table.to_string(),
                message: e.to_string(),
            })
    }

    /// Writes every table under `dir`, one directory per table
    /// (`dir/store_sales/part-0.parquet`, ...), and returns the table
    /// directories. Each file is written under a temporary name and renamed
    /// when complete, so a failed run leaves no truncated file behind.
    pub fn write_all(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>, TpcdsError> {
        TABLES
            .iter()
            .map(|table| Ok((table.to_string(), self.write_table(table, dir)?)))
            .collect()
    }

    /// Writes one table under `dir/<table>/` and returns that directory.
    pub fn write_table(&self, table: &str, dir: &Path) -> Result<PathBuf, TpcdsError> {
        // Also refuses NaN.
        if self.scale_factor.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(TpcdsError::ScaleFactor(self.scale_factor));
        }
        if !TABLES.contains(&table) {
            return Err(TpcdsError::UnknownTable(table.to_string()));
        }
        let table_dir = dir.join(table);
        std::fs::create_dir_all(&table_dir).map_err(|source| TpcdsError::Io {
            path: table_dir.clone(),
            source,
        })?;
        let ranges = self.row_ranges(table)?;
        for (part, rows) in ranges.into_iter().enumerate() {
            let batches = reader(table, self.session(table)?, rows)?;
            write_parquet(batches, &table_dir.join(format!("part-{part}.parquet")))?;
        }
        Ok(table_dir)
    }

    /// The source row ranges of `table`'s files: `[None]` for one file.
    fn row_ranges(&self, table: &str) -> Result<Vec<Option<(u64, u64)>>, TpcdsError> {
        let parts = self.parts.max(1) as u64;
        let source = match source_table(table) {
            Some(source) if parts > 1 && SPLIT_TABLES.contains(&table) => source,
            _ => return Ok(vec![None]),
        };
        let total = self.session(table)?.get_scaling().get_row_count(source);
        if total < parts {
            return Ok(vec![None]);
        }
        let per_part = total.div_ceil(parts);
        Ok((0..parts)
            .map(|part| {
                let first = part * per_part + 1;
                Some((first, ((part + 1) * per_part).min(total)))
            })
            .filter(|range| range.is_some_and(|(first, last)| first <= last))
            .collect())
    }

    /// `CREATE EXTERNAL TABLE` statements for the tables written under
    /// `dir`.
    pub fn create_table_statements(&self, dir: &Path) -> Vec<String> {
        let base = dir.display().to_string();
        let base = base.trim_end_matches('/');
        TABLES
            .iter()
            .map(|table| {
                format!(
                    "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{base}/{table}/'"
                )
            })
            .collect()
    }
}

fn write_parquet(
    batches: Box<dyn RecordBatchReader + Send>,
    path: &Path,
) -> Result<(), TpcdsError> {
    let tmp = path.with_extension("tmp");
    let encode = |e: &dyn std::fmt::Display| TpcdsError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(&tmp).map_err(|source| TpcdsError::Io {
        path: tmp.clone(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&batches.schema()), Some(props))
        .map_err(|e| encode(&e))?;
    for batch in batches {
        writer
            .write(&batch.map_err(|e| encode(&e))?)
            .map_err(|e| encode(&e))?;
    }
    writer.close().map_err(|e| encode(&e))?;
    std::fs::rename(&tmp, path).map_err(|source| TpcdsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_split_fact_tables_and_single_file_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let generator = TpcdsGenerator {
            scale_factor: 0.01,
            parts: 2,
        };
        generator.write_table("store_sales", dir.path()).unwrap();
        generator.write_table("store", dir.path()).unwrap();
        assert!(dir.path().join("store_sales/part-1.parquet").is_file());
        assert!(dir.path().join("store/part-0.parquet").is_file());
        assert!(!dir.path().join("store/part-1.parquet").exists());
        assert!(matches!(
            generator.write_table("stores", dir.path()),
            Err(TpcdsError::UnknownTable(_))
        ));
        let zero = TpcdsGenerator {
            scale_factor: 0.0,
            parts: 1,
        };
        assert!(matches!(
            zero.write_table("store", dir.path()),
            Err(TpcdsError::ScaleFactor(_))
        ));
    }
}
