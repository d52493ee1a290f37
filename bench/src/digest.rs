//! Result digests that match `bench/peers/tpch_peers.py`'s, so that one
//! engine's answer can be compared with another's by a 16-character string.
//!
//! Each row becomes the JSON list Python's `json.dumps` writes for it after
//! normalizing: numbers (integers included) rounded to 2 decimals and
//! printed as Python prints floats, dates and timestamps as `YYYY-MM-DD`,
//! strings trimmed, NULL as `null`. The lines are sorted, joined with `\n`
//! and hashed with SHA-256, of which the first 16 hex digits are kept.
//!
//! [`result_answer`] writes the same rows unrounded, as a JSON list, for
//! `bench/peers/answers.py`, which compares answers within a tolerance.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::error::Result;
use sha2::{Digest, Sha256};

/// `x` rounded to 2 decimals, from its exact value.
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// `x` as Python's `repr(float)` writes it.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x != 0.0 && (x.abs() >= 1e16 || x.abs() < 1e-4) {
        // Python switches to exponent notation: 1.5e+16, 1e-05.
        let text = format!("{x:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let text = format!("{x}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// How numbers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// Rounded to 2 decimals, for digests.
    Rounded,
    /// As computed.
    Exact,
}

impl Numbers {
    fn apply(self, x: f64) -> f64 {
        match self {
            Numbers::Rounded => round2(x),
            Numbers::Exact => x,
        }
    }
}

/// One value as the Python runner's `normalize` and `json.dumps` write it.
fn value(array: &ArrayRef, row: usize, numbers: Numbers) -> Result<String> {
    if array.is_null(row) {
        return Ok("null".into());
    }
    let text = match array.data_type() {
        DataType::Boolean => {
            let v = array.as_boolean().value(row);
            (if v { "1" } else { "0" }).to_string()
        }
        DataType::Float64 => {
            python_float(numbers.apply(array.as_primitive::<Float64Type>().value(row)))
        }
        DataType::Float32 => {
            python_float(numbers.apply(array.as_primitive::<Float32Type>().value(row) as f64))
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => {
            let shown = array_value_to_string(array, row)?;
            python_float(numbers.apply(shown.trim().parse().unwrap_or(f64::NAN)))
        }
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            let shown = array_value_to_string(array, row)?;
            json_string(&shown.chars().take(10).collect::<String>())
        }
        _ => json_string(array_value_to_string(array, row)?.trim()),
    };
    Ok(text)
}

/// Each row of a result as a JSON list.
fn json_rows(batches: &[RecordBatch], numbers: Numbers) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| value(column, row, numbers))
                .collect::<Result<Vec<_>>>()?;
            lines.push(format!("[{}]", values.join(", ")));
        }
    }
    Ok(lines)
}

/// A query's result as a JSON list of rows, in the order they came, with
/// numbers as computed: what `bench/peers/answers.py` compares.
pub fn result_answer(batches: &[RecordBatch]) -> Result<String> {
    Ok(format!(
        "[{}]",
        json_rows(batches, Numbers::Exact)?.join(",\n")
    ))
}

/// The digest of a query's result, whatever order its rows came in.
pub fn result_digest(batches: &[RecordBatch]) -> Result<String> {
    let mut lines = json_rows(batches, Numbers::Rounded)?;
    lines.sort();
    let hash = Sha256::digest(lines.join("\n").as_bytes());
    Ok(hash.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        assert_eq!(python_float(5.0), "5.0");
        assert_eq!(python_float(-0.0), "-0.0");
        assert_eq!(python_float(0.05), "0.05");
        assert_eq!(python_float(37734107.0), "37734107.0");
        assert_eq!(python_float(1.5e16), "1.5e+16");
        assert_eq!(python_float(round2(2.675)), "2.67");
        assert_eq!(python_float(round2(1234.5678)), "1234.57");
    }

    #[test]
    fn digests_ignore_row_order_and_match_the_python_runner() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("flag", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("avg", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
        ]));
        let batch = |rows: [usize; 2]| {
            let pick = |values: &[i64]| rows.iter().map(|&r| values[r]).collect::<Vec<_>>();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(
                        rows.iter().map(|&r| ["A ", "N"][r]).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(pick(&[3, 1478493]))),
                    Arc::new(
                        Decimal128Array::from(
                            pick(&[12345, 5658655440073])
                                .into_iter()
                                .map(i128::from)
                                .collect::<Vec<_>>(),
                        )
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                    ),
                    Arc::new(Float64Array::from(vec![Some(25.522005853257337), None])),
                    Arc::new(Date32Array::from(
                        pick(&[9204, 0])
                            .iter()
                            .map(|&d| d as i32)
                            .collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        };
        let one = result_digest(&[batch([0, 1])]).unwrap();
        let other = result_digest(&[batch([1, 0])]).unwrap();
        assert_ne!(one, other, "the float column differs by row");
        // What `tpch_peers.py` computes for the rows
        //   ("A ", 3, Decimal("123.45"), 25.522005853257337, date(1995, 3, 15)),
        //   ("N", 1478493, Decimal("56586554400.73"), None, date(1970, 1, 1)):
        // json lines ["A", 3.0, 123.45, 25.52, "1995-03-15"] and
        // ["N", 1478493.0, 56586554400.73, null, "1970-01-01"].
        let lines = [
            r#"["A", 3.0, 123.45, 25.52, "1995-03-15"]"#,
            r#"["N", 1478493.0, 56586554400.73, null, "1970-01-01"]"#,
        ];
        let expected = Sha256::digest(lines.join("\n").as_bytes());
        let expected: String = expected
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(one, expected);
        assert_eq!(
            result_answer(&[batch([1, 0])]).unwrap(),
            "[[\"N\", 1478493.0, 56586554400.73, 25.522005853257337, \"1970-01-01\"],\n\
             [\"A\", 3.0, 123.45, null, \"1995-03-15\"]]"
        );
    }
}
