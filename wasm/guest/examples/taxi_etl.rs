//! The `taxi-etl` example's functions as a WebAssembly library
//! (`taxi-etl --functions taxi_etl.wasm`): the same rules as Ember's
//! built-in `parse_double`, and a fare band for reports.

/// The text as a number, `None` (NULL) unless it is a finite one.
fn parse_fare(text: String) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `low` under 10, `mid` under 30, `high` from 30.
fn fare_band(fare: f64) -> String {
    let band = if fare < 10.0 {
        "low"
    } else if fare < 30.0 {
        "mid"
    } else {
        "high"
    };
    band.to_string()
}

/// One row per partition: its number of rows (to see skew), as the
/// built-in `partition_size`.
fn rows_per_partition(input: &ember_udf::Batch) -> Result<Vec<ember_udf::ColumnWriter>, String> {
    Ok(vec![ember_udf::ColumnWriter::from_values(
        "rows",
        vec![Some(input.rows() as i64)],
    )])
}

ember_udf::library! {
    partial parse_fare(String) -> f64;
    scalar fare_band(f64) -> String;
    partitions rows_per_partition -> (rows: i64);
}
