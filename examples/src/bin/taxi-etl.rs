//! A taxi-trip ETL: raw CSV (on S3 or local) is cleaned, enriched with a
//! join and aggregated into Parquet partitioned by day.
//!
//! ```text
//! taxi-etl [--master URL] --raw PATH --zones PATH --output PATH --rejects PATH
//!          [--functions LIB.wasm]
//! ```
//!
//! * `--raw`: CSV files with the header `trip_id,pickup_day,zone,fare`,
//!   read as text so that a malformed value is a row, not a failed job;
//! * `--zones`: CSV with the header `zone,borough`;
//! * rows whose fare is not a non-negative number, whose zone is not an
//!   integer or whose day is not a date are counted and written, with the
//!   reason, as CSV to `--rejects` (never silently dropped);
//! * the rest are joined with the zones (an unknown zone is borough
//!   `Unknown`) and aggregated per day and borough (trips, revenue, mean
//!   fare) into Parquet under `--output`, partitioned by `day`.
//!
//! With `--functions`, fares are parsed by `parse_fare` from a WebAssembly
//! library loaded at run time (`wasm/guest/examples/taxi_etl.rs`, the same
//! rule as the built-in `parse_double`): the output is the same, and the
//! cluster needs no rebuild for it.
//!
//! S3 is reached through the `AWS_*` environment (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, …). Each write is atomic: the job leaves complete
//! output or none.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{Expr, TryCast};
use datafusion::prelude::{coalesce, when};
use ember::dataset::{JoinType, avg, col, count, lit, sum};
use ember_examples::{JobArgs, run_job};

const USAGE: &str = "usage: taxi-etl [--master URL] --raw PATH --zones PATH --output PATH --rejects PATH \
     [--functions LIB.wasm]";

fn try_cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::TryCast(TryCast::new(Box::new(expr), data_type))
}

async fn etl(args: JobArgs) -> Result<(), String> {
    let required = |name: &str| {
        args.option(name)
            .map(str::to_string)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
    };
    let (raw_path, zones_path, output, rejects_path) = (
        required("raw")?,
        required("zones")?,
        required("output")?,
        required("rejects")?,
    );
    let ctx = args.context().await.map_err(|e| e.to_string())?;
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let raw_schema = Schema::new(vec![
        text("trip_id"),
        text("pickup_day"),
        text("zone"),
        text("fare"),
    ]);
    let raw = ctx
        .read_csv_with_schema(&raw_path, &raw_schema)
        .await
        .map_err(|e| e.to_string())?;
    let parser = match args.option("functions") {
        Some(module) => {
            ctx.register_wasm_library("taxi_etl", module)
                .await
                .map_err(|e| e.to_string())?;
            "parse_fare"
        }
        None => "parse_double",
    };
    let parse_double = ctx
        .call(parser, vec![col("fare")])
        .map_err(|e| e.to_string())?;
    let parsed = raw
        .with_column("fare_value", parse_double)
        .and_then(|d| d.with_column("zone_id", try_cast(col("zone"), DataType::Int64)))
        .and_then(|d| d.with_column("day", try_cast(col("pickup_day"), DataType::Date32)))
        .and_then(|d| {
            d.with_column(
                "reason",
                when(col("fare_value").is_null(), lit("fare is not a number"))
                    .when(col("fare_value").lt(lit(0.0)), lit("negative fare"))
                    .when(col("zone_id").is_null(), lit("zone is not an integer"))
                    .when(col("day").is_null(), lit("pickup_day is not a date"))
                    .end()
                    .map_err(ember::ClientError::from_datafusion)?,
            )
        })
        .map_err(|e| e.to_string())?;

    let rejects = parsed
        .filter(col("reason").is_not_null())
        .and_then(|d| d.select_columns(&["trip_id", "pickup_day", "zone", "fare", "reason"]))
        .map_err(|e| e.to_string())?;
    // Both counts in one pass over the raw data.
    #[derive(serde::Deserialize)]
    struct Counts {
        total: i64,
        rejected: i64,
    }
    let counts: Vec<Counts> = parsed
        .group_by(vec![])
        .agg(vec![
            count(lit(1)).alias("total"),
            count(col("reason")).alias("rejected"),
        ])
        .map_err(|e| e.to_string())?
        .collect_as()
        .await
        .map_err(|e| e.to_string())?;
    let (total, rejected) = counts.first().map_or((0, 0), |c| (c.total, c.rejected));
    rejects
        .write_csv(&rejects_path, &[])
        .await
        .map_err(|e| e.to_string())?;

    let zones = ctx
        .read_csv(&zones_path)
        .await
        .and_then(|d| d.with_column("zone_key", try_cast(col("zone"), DataType::Int64)))
        .and_then(|d| d.select_columns(&["zone_key", "borough"]))
        .map_err(|e| e.to_string())?;
    let by_day = parsed
        .filter(col("reason").is_null())
        .and_then(|d| d.join(&zones, JoinType::Left, &["zone_id"], &["zone_key"]))
        .and_then(|d| d.with_column("borough", coalesce(vec![col("borough"), lit("Unknown")])))
        .and_then(|d| {
            d.group_by(vec![col("day"), col("borough")]).agg(vec![
                count(lit(1)).alias("trips"),
                sum(col("fare_value")).alias("revenue"),
                avg(col("fare_value")).alias("mean_fare"),
            ])
        })
        .map_err(|e| e.to_string())?;
    by_day
        .write_parquet(&output, &["day"])
        .await
        .map_err(|e| e.to_string())?;
    println!("raw trips: {total}");
    println!("rejected: {rejected} (with reasons, in {rejects_path})");
    println!(
        "cleaned: {} (per day and borough, in {output})",
        total - rejected
    );
    Ok(())
}

fn main() {
    run_job(USAGE, etl);
}
