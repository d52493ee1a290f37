//! Queries the fuzzer once found answered differently, kept in
//! `fuzz/regressions.sql` so that they stay fixed: [`crate::run`] runs them
//! all before the generated queries.

use crate::query::{Query, Shape};

/// The corpus, as committed.
const CORPUS: &str = include_str!("../regressions.sql");

/// One kept query: where it was found, and what it found.
#[derive(Debug, Clone)]
pub struct Regression {
    /// The header line's text after `-- `: seed, query number, whether its
    /// order is defined, and what it found.
    pub origin: String,
    /// The query, with its order flag.
    pub query: Query,
}

/// Every query of `fuzz/regressions.sql`, in its order.
///
/// # Panics
/// Never on the committed corpus; a malformed entry is a bug that the
/// module's test catches.
pub fn regressions() -> Vec<Regression> {
    parse(CORPUS).unwrap_or_else(|e| panic!("fuzz/regressions.sql: {e}"))
}

/// The entries of a corpus: a header line (`-- seed S, query N,
/// ordered|unordered: what it found`) and then the query, up to its `;`.
fn parse(corpus: &str) -> Result<Vec<Regression>, String> {
    let mut entries = Vec::new();
    let mut header: Option<(String, bool)> = None;
    let mut sql = String::new();
    for (number, line) in corpus.lines().enumerate() {
        let line = line.trim();
        if let Some(text) = line.strip_prefix("-- seed ") {
            if header.is_some() {
                return Err(format!(
                    "line {}: a header before the last query ended",
                    number + 1
                ));
            }
            let ordered = if text.contains(", ordered:") {
                true
            } else if text.contains(", unordered:") {
                false
            } else {
                return Err(format!(
                    "line {}: the header says neither ordered nor unordered",
                    number + 1
                ));
            };
            header = Some((format!("seed {text}"), ordered));
            continue;
        }
        if line.starts_with("--") || line.is_empty() {
            continue;
        }
        let Some((_, ordered)) = &header else {
            return Err(format!("line {}: a query without a header", number + 1));
        };
        let ordered = *ordered;
        if !sql.is_empty() {
            sql.push(' ');
        }
        sql.push_str(line);
        if let Some(text) = sql.strip_suffix(';') {
            let (origin, _) = header.take().unwrap_or_default();
            entries.push(Regression {
                origin,
                query: Query {
                    sql: text.to_string(),
                    shape: Shape::Regression,
                    ordered,
                },
            });
            sql.clear();
        }
    }
    if header.is_some() {
        return Err("the last query has no closing semicolon".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_corpus_parses() {
        let entries = regressions();
        assert!(entries.len() >= 8, "{} entries", entries.len());
        for entry in &entries {
            assert!(
                entry.query.sql.starts_with("SELECT "),
                "{}",
                entry.query.sql
            );
            assert!(!entry.query.sql.contains(';'), "{}", entry.query.sql);
            assert!(entry.origin.starts_with("seed "), "{}", entry.origin);
        }
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert!(parse("SELECT 1;").is_err());
        assert!(parse("-- seed 1, query 2: no flag\nSELECT 1;").is_err());
        assert!(parse("-- seed 1, query 2, ordered: x\nSELECT 1").is_err());
        let entries = parse("-- seed 1, query 2, unordered: x\nSELECT\n  1;\n").unwrap();
        assert_eq!(entries[0].query.sql, "SELECT 1");
        assert!(!entries[0].query.ordered);
    }
}
