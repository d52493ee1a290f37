//! Bound parameters of prepared statements.
//!
//! A Flight SQL client prepares `SELECT … WHERE n_regionkey = ?`, binds a
//! one-row Arrow batch of values (`DoPut`), and executes. Ballista's
//! frontend plans a prepared statement once and has no way to bind, so
//! Ember binds before planning: each placeholder is replaced by the SQL
//! literal of its value, written by DataFusion's unparser (strings are
//! quoted and escaped there, so a value can never become SQL), and the
//! bound text runs as a plain statement.
//!
//! Placeholders are `?` (numbered in the order they appear, as JDBC and
//! ADBC clients write them), `?N` and `$N` (numbered from 1). Positions come
//! from the SQL tokenizer, so a `?` inside a string literal or a comment is
//! left alone.

use std::ops::Range;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::lit;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
use datafusion::sql::unparser::Unparser;

/// Why a statement's parameters cannot be read or bound.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParameterError {
    /// The statement is not SQL the tokenizer reads.
    #[error("cannot read the statement's placeholders: {0}")]
    Tokenize(String),
    /// Both `?` and numbered placeholders appear.
    #[error("the statement mixes `?` with numbered placeholders (`$1`, `?1`); use one kind")]
    MixedPlaceholders,
    /// A numbered placeholder is `$0`.
    #[error("placeholder `{0}` is not numbered from 1")]
    ZeroIndex(String),
    /// The bound values are not as many as the placeholders.
    #[error("the statement has {expected} parameter(s) and {bound} value(s) were bound")]
    CountMismatch {
        /// The statement's parameters.
        expected: usize,
        /// The values bound.
        bound: usize,
    },
    /// Not exactly one row of values was bound.
    #[error("bind one row of parameter values per execution; {0} rows were bound")]
    Rows(usize),
    /// A value has no SQL literal.
    #[error("parameter {index} (a {data_type} value) cannot be bound: {reason}")]
    Literal {
        /// The parameter's position, from 1.
        index: usize,
        /// The value's Arrow type.
        data_type: String,
        /// What went wrong.
        reason: String,
    },
}

/// A statement's SQL with its placeholders found and numbered `$1`, `$2`, …
/// (the form DataFusion plans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterizedSql {
    /// The SQL with every placeholder written `$N`.
    numbered: String,
    /// Where each placeholder sits in `numbered`, and its number (from 1).
    placeholders: Vec<(Range<usize>, usize)>,
}

/// What a placeholder token is, if it is one Ember binds.
fn placeholder_number(text: &str) -> Option<Result<Option<usize>, ParameterError>> {
    let digits = text.strip_prefix('$').or_else(|| text.strip_prefix('?'))?;
    if digits.is_empty() {
        // A bare `?` (a bare `$` is not a placeholder token).
        return (text == "?").then_some(Ok(None));
    }
    let number: usize = digits.parse().ok()?;
    Some(if number == 0 {
        Err(ParameterError::ZeroIndex(text.to_string()))
    } else {
        Ok(Some(number))
    })
}

/// The byte offset in `sql` of a tokenizer location (line and column,
/// counted in characters from 1).
fn byte_offset(sql: &str, location: Location) -> Option<usize> {
    let line_start = if location.line <= 1 {
        0
    } else {
        sql.match_indices('\n')
            .nth(usize::try_from(location.line).ok()? - 2)?
            .0
            + 1
    };
    let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
    let line = &sql[line_start..];
    match line.char_indices().nth(column) {
        Some((offset, _)) => Some(line_start + offset),
        None => Some(sql.len()),
    }
}

impl ParameterizedSql {
    /// Finds the placeholders of `sql`.
    pub fn parse(sql: &str) -> Result<Self, ParameterError> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| ParameterError::Tokenize(e.to_string()))?;
        // (range in `sql`, number; None for a bare `?`)
        let mut found: Vec<(Range<usize>, Option<usize>)> = Vec::new();
        for token in tokens {
            let Token::Placeholder(text) = &token.token else {
                continue;
            };
            let Some(number) = placeholder_number(text) else {
                continue;
            };
            let start = byte_offset(sql, token.span.start)
                .filter(|start| sql[*start..].starts_with(text.as_str()))
                .ok_or_else(|| {
                    ParameterError::Tokenize(format!("cannot locate placeholder `{text}`"))
                })?;
            found.push((start..start + text.len(), number?));
        }
        let bare = found.iter().filter(|(_, n)| n.is_none()).count();
        if bare > 0 && bare < found.len() {
            return Err(ParameterError::MixedPlaceholders);
        }
        let mut numbered = String::with_capacity(sql.len() + found.len());
        let mut placeholders = Vec::with_capacity(found.len());
        let mut copied = 0;
        for (position, (range, number)) in found.into_iter().enumerate() {
            let number = number.unwrap_or(position + 1);
            numbered.push_str(&sql[copied..range.start]);
            let start = numbered.len();
            numbered.push_str(&format!("${number}"));
            placeholders.push((start..numbered.len(), number));
            copied = range.end;
        }
        numbered.push_str(&sql[copied..]);
        Ok(Self {
            numbered,
            placeholders,
        })
    }

    /// The SQL with every placeholder written `$N`.
    pub fn numbered(&self) -> &str {
        &self.numbered
    }

    /// How many values the statement takes: its highest placeholder number.
    pub fn parameter_count(&self) -> usize {
        self.placeholders.iter().map(|(_, n)| *n).max().unwrap_or(0)
    }

    /// The SQL with each placeholder `$N` replaced by `literals[N - 1]`.
    pub fn bind(&self, literals: &[String]) -> Result<String, ParameterError> {
        if literals.len() != self.parameter_count() {
            return Err(ParameterError::CountMismatch {
                expected: self.parameter_count(),
                bound: literals.len(),
            });
        }
        let mut bound = String::with_capacity(self.numbered.len());
        let mut copied = 0;
        for (range, number) in &self.placeholders {
            bound.push_str(&self.numbered[copied..range.start]);
            bound.push_str(&literals[number - 1]);
            copied = range.end;
        }
        bound.push_str(&self.numbered[copied..]);
        Ok(bound)
    }
}

/// The SQL literal of `value`: what DataFusion's unparser writes for it,
/// in parentheses when it starts with a sign (so that `x-?` bound to `-1`
/// cannot become the comment `x--1`).
pub fn sql_literal(value: ScalarValue, index: usize) -> Result<String, ParameterError> {
    let data_type = value.data_type().to_string();
    let literal = Unparser::default()
        .expr_to_sql(&lit(value))
        .map_err(|e| ParameterError::Literal {
            index,
            data_type: data_type.clone(),
            reason: e.to_string(),
        })?
        .to_string();
    Ok(if literal.starts_with(['-', '+']) {
        format!("({literal})")
    } else {
        literal
    })
}

/// The SQL literals of the one row of values bound in `batches`, one per
/// column, in column order.
pub fn row_literals(batches: &[RecordBatch]) -> Result<Vec<String>, ParameterError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(ParameterError::Rows(rows));
    }
    let batch = batches
        .iter()
        .find(|batch| batch.num_rows() == 1)
        .ok_or(ParameterError::Rows(0))?;
    batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value =
                ScalarValue::try_from_array(column, 0).map_err(|e| ParameterError::Literal {
                    index: i + 1,
                    data_type: column.data_type().to_string(),
                    reason: e.to_string(),
                })?;
            sql_literal(value, i + 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn question_marks_are_numbered_in_order() {
        let sql = ParameterizedSql::parse("SELECT a FROM t WHERE b = ? AND c < ? LIMIT ?").unwrap();
        assert_eq!(
            sql.numbered(),
            "SELECT a FROM t WHERE b = $1 AND c < $2 LIMIT $3"
        );
        assert_eq!(sql.parameter_count(), 3);
        let bound = sql.bind(&["'x'".into(), "2".into(), "10".into()]).unwrap();
        assert_eq!(bound, "SELECT a FROM t WHERE b = 'x' AND c < 2 LIMIT 10");
    }

    #[test]
    fn numbered_placeholders_may_repeat_and_strings_and_comments_are_left_alone() {
        let text = "SELECT '?', $2 -- what ?\nFROM t WHERE a = $1 OR b = $1";
        let sql = ParameterizedSql::parse(text).unwrap();
        assert_eq!(sql.numbered(), text);
        assert_eq!(sql.parameter_count(), 2);
        assert_eq!(
            sql.bind(&["1".into(), "'two'".into()]).unwrap(),
            "SELECT '?', 'two' -- what ?\nFROM t WHERE a = 1 OR b = 1"
        );
        let unicode = ParameterizedSql::parse("SELECT 'é', ?\n, 'ü' = ?").unwrap();
        assert_eq!(unicode.numbered(), "SELECT 'é', $1\n, 'ü' = $2");
    }

    #[test]
    fn statements_without_placeholders_bind_nothing() {
        let sql = ParameterizedSql::parse("SELECT 1").unwrap();
        assert_eq!(sql.parameter_count(), 0);
        assert_eq!(sql.bind(&[]).unwrap(), "SELECT 1");
    }

    #[test]
    fn bad_placeholders_and_counts_are_refused() {
        assert_eq!(
            ParameterizedSql::parse("SELECT ?, $1"),
            Err(ParameterError::MixedPlaceholders)
        );
        assert_eq!(
            ParameterizedSql::parse("SELECT $0"),
            Err(ParameterError::ZeroIndex("$0".into()))
        );
        let sql = ParameterizedSql::parse("SELECT ?").unwrap();
        assert_eq!(
            sql.bind(&[]),
            Err(ParameterError::CountMismatch {
                expected: 1,
                bound: 0
            })
        );
    }

    #[test]
    fn values_become_escaped_literals() {
        let quoted = sql_literal(ScalarValue::Utf8(Some("O'Hara; DROP".into())), 1).unwrap();
        assert_eq!(quoted, "'O''Hara; DROP'");
        assert_eq!(
            sql_literal(ScalarValue::Int64(Some(-3)), 1).unwrap(),
            "(-3)"
        );
        assert_eq!(sql_literal(ScalarValue::Null, 1).unwrap(), "NULL");
        let date = sql_literal(ScalarValue::Date32(Some(9131)), 1).unwrap();
        assert!(date.contains("1995-01-01"), "{date}");
    }

    #[test]
    fn one_row_of_values_is_read_per_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("0", DataType::Int64, true),
            Field::new("1", DataType::Utf8, true),
            Field::new("2", DataType::Float64, true),
            Field::new("3", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["GERMANY"])),
                Arc::new(Float64Array::from(vec![0.5])),
                Arc::new(Date32Array::from(vec![0])),
            ],
        )
        .unwrap();
        let literals = row_literals(std::slice::from_ref(&batch)).unwrap();
        assert_eq!(literals[..3], ["7", "'GERMANY'", "0.5"]);
        assert!(literals[3].contains("1970-01-01"), "{}", literals[3]);
        let two = datafusion::arrow::compute::concat_batches(&schema, [&batch, &batch]).unwrap();
        assert_eq!(row_literals(&[two]), Err(ParameterError::Rows(2)));
        assert_eq!(row_literals(&[]), Err(ParameterError::Rows(0)));
    }
}
