//! Reading a statement before DataFusion plans it: S3 options on
//! `CREATE EXTERNAL TABLE` and `COPY` become per-bucket session settings.
//!
//! A table's `OPTIONS ('s3.endpoint' '…', 's3.access_key_id' '…')` (or the
//! `aws.` spelling other DataFusion tools use) must reach every process that
//! opens the table's files. They are therefore taken out of the statement,
//! where they would only reach the client (and would show in `EXPLAIN`), and
//! set as `s3.bucket.<bucket>.<key>` on the session, which travels with every
//! query to the scheduler and the executors.

use datafusion::execution::session_state::SessionState;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Value;
use ember_core::EmberConfig;
use ember_core::s3::S3Settings;
use url::Url;

use crate::error::{ClientError, Result};
use crate::statement_depth::check_expression_depth;

/// A parsed statement, ready to plan, and the session settings it implies.
#[derive(Debug)]
pub struct PreparedStatement {
    /// The statement, without its S3 options.
    pub statement: Statement,
    /// `(key, value)` session settings for the statement's bucket.
    pub bucket_settings: Vec<(String, String)>,
}

/// Parses `sql` with the session's dialect and moves S3 options out of it.
pub fn prepare_statement(state: &SessionState, sql: &str) -> Result<PreparedStatement> {
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(ClientError::from_datafusion)?;
    let limit = EmberConfig::from_session_config(state.config()).max_expression_depth;
    let mut statement = check_expression_depth(statement, limit)?;
    let (location, options) = match &mut statement {
        Statement::CreateExternalTable(create) => {
            (create.locations.first().cloned(), &mut create.options)
        }
        Statement::CopyTo(copy) => (Some(copy.target.clone()), &mut copy.options),
        _ => {
            return Ok(PreparedStatement {
                statement,
                bucket_settings: Vec::new(),
            });
        }
    };
    let texts: Vec<(String, String)> = options
        .iter()
        .map(|(key, value)| (key.clone(), value_text(value)))
        .collect();
    let (s3, _) = S3Settings::split_table_options(texts.iter().map(|(k, v)| (k, v)))
        .map_err(ClientError::from_datafusion)?;
    if s3.is_empty() {
        return Ok(PreparedStatement {
            statement,
            bucket_settings: Vec::new(),
        });
    }
    let bucket = location
        .as_deref()
        .and_then(|l| Url::parse(l).ok())
        .filter(|url| matches!(url.scheme(), "s3" | "s3a"))
        .and_then(|url| url.host_str().map(str::to_string))
        .ok_or_else(|| {
            ClientError::Process(format!(
                "S3 options apply to s3:// locations, not `{}`",
                location.as_deref().unwrap_or_default()
            ))
        })?;
    options.retain(|(key, _)| {
        let key = key.to_ascii_lowercase();
        !(key.starts_with("s3.") || key.starts_with("aws."))
    });
    Ok(PreparedStatement {
        statement,
        bucket_settings: S3Settings::bucket_keys(&bucket, &s3),
    })
}

/// `CACHE TABLE <name> ON GPU` (Ember's statement): the table's name, or
/// `None` for any other statement.
pub fn gpu_cache_statement(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    match words.as_slice() {
        [cache, table, name, on, gpu]
            if cache.eq_ignore_ascii_case("cache")
                && table.eq_ignore_ascii_case("table")
                && on.eq_ignore_ascii_case("on")
                && gpu.eq_ignore_ascii_case("gpu") =>
        {
            Some(name.to_string())
        }
        _ => None,
    }
}

/// `current` (a comma-separated `ember.gpu_cache_tables`) with `locations`
/// added, each once.
pub fn with_cached_locations(current: &str, locations: &[String]) -> String {
    let mut entries: Vec<String> = current
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    for location in locations {
        if !entries.contains(location) {
            entries.push(location.clone());
        }
    }
    entries.join(",")
}

fn value_text(value: &Value) -> String {
    match value {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::EmberContext;

    #[test]
    fn table_s3_options_become_bucket_settings() {
        let context = EmberContext::embedded().unwrap();
        let state = context.session().state();
        let prepared = prepare_statement(
            &state,
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 's3://lake/t/' \
             OPTIONS ('s3.endpoint' 'http://127.0.0.1:9000', 'aws.secret_access_key' 'k', 'format.has_header' 'true')",
        )
        .unwrap();
        assert_eq!(
            prepared.bucket_settings,
            vec![
                (
                    "s3.bucket.lake.endpoint".to_string(),
                    "http://127.0.0.1:9000".to_string()
                ),
                (
                    "s3.bucket.lake.secret_access_key".to_string(),
                    "k".to_string()
                ),
            ]
        );
        let Statement::CreateExternalTable(create) = prepared.statement else {
            panic!("still a CREATE EXTERNAL TABLE");
        };
        let keys: Vec<_> = create.options.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["format.has_header"]);
    }

    #[test]
    fn cache_table_on_gpu_is_recognised_and_adds_locations_once() {
        assert_eq!(
            gpu_cache_statement(" cache TABLE lineitem on gpu; "),
            Some("lineitem".to_string())
        );
        assert_eq!(gpu_cache_statement("CACHE TABLE lineitem"), None);
        assert_eq!(gpu_cache_statement("SELECT 1"), None);
        assert_eq!(
            with_cached_locations("file:///a/", &["file:///b/".into(), "file:///a/".into()]),
            "file:///a/,file:///b/"
        );
    }

    #[test]
    fn s3_options_on_a_local_path_are_refused() {
        let context = EmberContext::embedded().unwrap();
        let state = context.session().state();
        let err = prepare_statement(
            &state,
            "COPY (SELECT 1) TO '/tmp/x.csv' OPTIONS ('s3.region' 'eu-west-1')",
        )
        .unwrap_err();
        assert!(err.to_string().contains("/tmp/x.csv"), "{err}");
    }
}
