//! Answers in one form for every engine, and their comparison.
//!
//! Ember's Arrow batches and DuckDB's Python values are both turned into
//! rows of [`Value`]s: integers exact, other numbers as doubles compared
//! within a relative tolerance (DECIMAL and DOUBLE answers of the same sum
//! differ in the last digits), dates and midnight timestamps as
//! `YYYY-MM-DD` (DuckDB's date plus an interval is a TIMESTAMP, Ember's a
//! DATE), NULL as NULL.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// One value of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer, compared exactly with integers.
    Int(i128),
    /// Any other number.
    Number(f64),
    /// Text, dates and timestamps.
    Text(String),
}

/// Rows of values.
pub type Rows = Vec<Vec<Value>>;

/// Relative tolerance of numbers that are not both integers.
const TOLERANCE: f64 = 1e-6;

impl Value {
    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Number(x) => Some(*x),
            _ => None,
        }
    }

    /// Whether two values are the same answer.
    pub fn matches(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            _ => match (self.number(), other.number()) {
                (Some(a), Some(b)) => {
                    (a.is_nan() && b.is_nan())
                        || a == b
                        || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
                }
                _ => false,
            },
        }
    }

    /// A key that sorts rows the same way whatever engine gave them.
    fn sort_key(&self) -> (u8, f64, &str) {
        match self {
            Value::Null => (0, 0.0, ""),
            Value::Bool(b) => (1, f64::from(u8::from(*b)), ""),
            Value::Int(_) | Value::Number(_) => {
                let x = self.number().unwrap_or(0.0);
                // Rounded, so that nearly equal numbers sort alike.
                let rounded = format!("{x:.9e}").parse().unwrap_or(x);
                (2, rounded, "")
            }
            Value::Text(t) => (3, 0.0, t.as_str()),
        }
    }
}

/// A date or timestamp's text with a midnight time of day dropped, so that
/// a DATE and a TIMESTAMP of the same day compare equal.
pub fn temporal_text(text: &str) -> String {
    let text = text.replace('T', " ");
    match text.strip_suffix(" 00:00:00") {
        Some(day) => day.to_string(),
        None => text,
    }
}

/// The rows of Arrow batches as values.
pub fn rows_of_batches(batches: &[RecordBatch]) -> Rows {
    let mut rows = Vec::new();
    let options = FormatOptions::default();
    for batch in batches {
        let columns: Vec<Vec<Value>> = batch
            .columns()
            .iter()
            .map(|column| column_values(column.as_ref(), &options))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[row].clone()).collect());
        }
    }
    rows
}

fn column_values(column: &dyn Array, options: &FormatOptions) -> Vec<Value> {
    macro_rules! ints {
        ($t:ty) => {{
            let values = column.as_primitive::<$t>();
            (0..column.len())
                .map(|i| {
                    if values.is_null(i) {
                        Value::Null
                    } else {
                        Value::Int(values.value(i) as i128)
                    }
                })
                .collect()
        }};
    }
    match column.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Float32 | DataType::Float64 => {
            let floats: Vec<Option<f64>> = if *column.data_type() == DataType::Float32 {
                column
                    .as_primitive::<Float32Type>()
                    .iter()
                    .map(|v| v.map(f64::from))
                    .collect()
            } else {
                column.as_primitive::<Float64Type>().iter().collect()
            };
            floats
                .into_iter()
                .map(|v| v.map_or(Value::Null, Value::Number))
                .collect()
        }
        DataType::Boolean => column
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        data_type => {
            let decimal = matches!(
                data_type,
                DataType::Decimal32(..)
                    | DataType::Decimal64(..)
                    | DataType::Decimal128(..)
                    | DataType::Decimal256(..)
            );
            let temporal = data_type.is_temporal();
            let formatter = match ArrayFormatter::try_new(column, options) {
                Ok(formatter) => formatter,
                Err(e) => return vec![Value::Text(format!("<unformattable: {e}>")); column.len()],
            };
            (0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        return Value::Null;
                    }
                    let text = formatter.value(i).to_string();
                    if decimal {
                        match text.parse::<i128>() {
                            Ok(int) => Value::Int(int),
                            Err(_) => text.parse().map_or(Value::Text(text), Value::Number),
                        }
                    } else if temporal {
                        Value::Text(temporal_text(&text))
                    } else {
                        Value::Text(text)
                    }
                })
                .collect()
        }
    }
}

/// The rows of DuckDB's answer, as the runner script writes them in JSON:
/// integers, doubles, strings, booleans and nulls.
pub fn rows_of_json(rows: &[serde_json::Value]) -> Result<Rows, String> {
    rows.iter()
        .map(|row| {
            let values = row.as_array().ok_or_else(|| format!("not a row: {row}"))?;
            values.iter().map(value_of_json).collect()
        })
        .collect()
}

fn value_of_json(value: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i128::from(i)),
            None => match n.as_u64() {
                Some(u) => Value::Int(i128::from(u)),
                None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        // The runner writes integers beyond 64 bits, NaN and infinities as
        // objects, since JSON has no numbers for them.
        Json::Object(map) => match (map.get("int"), map.get("float")) {
            (Some(Json::String(text)), _) => Value::Int(
                text.parse()
                    .map_err(|_| format!("not an integer: {text}"))?,
            ),
            (_, Some(Json::String(text))) => {
                Value::Number(text.parse().map_err(|_| format!("not a number: {text}"))?)
            }
            _ => return Err(format!("unexpected value {value}")),
        },
        Json::String(text) => Value::Text(text.clone()),
        Json::Array(_) => return Err(format!("unexpected value {value}")),
    })
}

fn compare_rows(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.sort_key(), y.sort_key());
        let order =
            x.0.cmp(&y.0)
                .then(x.1.total_cmp(&y.1))
                .then_with(|| x.2.cmp(y.2));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn show(row: &[Value]) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|v| match v {
            Value::Null => "NULL".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Number(x) => x.to_string(),
            Value::Text(t) => format!("{t:?}"),
        })
        .collect();
    format!("({})", cells.join(", "))
}

/// Compares two answers: the same number of rows and columns, and the same
/// rows, in order when `ordered`, else as multisets. The error describes
/// the first difference.
pub fn compare(expected: &Rows, actual: &Rows, ordered: bool) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!("{} rows against {}", expected.len(), actual.len()));
    }
    let (mut expected, mut actual) = (expected.clone(), actual.clone());
    if !ordered {
        expected.sort_by(|a, b| compare_rows(a, b));
        actual.sort_by(|a, b| compare_rows(a, b));
    }
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        if e.len() != a.len() {
            return Err(format!("{} columns against {}", e.len(), a.len()));
        }
        if !e.iter().zip(a).all(|(x, y)| x.matches(y)) {
            return Err(format!("row {i}: {} against {}", show(e), show(a)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_within_the_tolerance_and_integers_exactly() {
        assert!(Value::Number(1.0).matches(&Value::Int(1)));
        assert!(Value::Number(1234567.891).matches(&Value::Number(1234567.8910001)));
        assert!(!Value::Number(1.5).matches(&Value::Number(1.6)));
        assert!(!Value::Int(9007199254740993).matches(&Value::Int(9007199254740992)));
        assert!(!Value::Null.matches(&Value::Int(0)));
        assert!(!Value::Text("1".into()).matches(&Value::Int(1)));
    }

    #[test]
    fn unordered_answers_compare_as_multisets() {
        let a = vec![vec![Value::Int(1)], vec![Value::Null], vec![Value::Int(2)]];
        let b = vec![vec![Value::Int(2)], vec![Value::Int(1)], vec![Value::Null]];
        assert!(compare(&a, &b, false).is_ok());
        let error = compare(&a, &b, true).expect_err("order differs");
        assert!(error.starts_with("row 0"), "{error}");
        let c = vec![vec![Value::Int(2)], vec![Value::Int(2)], vec![Value::Null]];
        assert!(compare(&a, &c, false).is_err());
    }

    #[test]
    fn midnight_timestamps_read_as_dates() {
        assert_eq!(temporal_text("1995-03-15T00:00:00"), "1995-03-15");
        assert_eq!(temporal_text("1995-03-15 10:00:00"), "1995-03-15 10:00:00");
    }

    #[test]
    fn json_rows_keep_big_integers_exact() {
        let json: Vec<serde_json::Value> = serde_json::from_str(
            r#"[[1, 2.5, "x", null, true, {"int": "170141183460469231731687303715884105727"}]]"#,
        )
        .expect("json");
        let rows = rows_of_json(&json).expect("rows");
        assert_eq!(rows[0][0], Value::Int(1));
        assert_eq!(rows[0][5], Value::Int(i128::MAX));
    }
}
