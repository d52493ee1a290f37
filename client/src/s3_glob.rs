//! Globs in S3 table locations:
//! `CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://lake/trips/2026-*.parquet'`.
//!
//! DataFusion expands globs in local paths only. For `s3://` (and `s3a://`)
//! locations the client lists the literal prefix before the first wildcard,
//! keeps the keys the glob matches (`*` and `?` do not cross `/`, as in a
//! shell) and gives the table those files as its locations. The table is
//! therefore a snapshot of the files that matched when it was created, and
//! its locations, being plain file URLs, reach the cluster unchanged.

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::sql::parser::Statement;
use futures::TryStreamExt;
use glob::{MatchOptions, Pattern};
use object_store::path::Path;

use crate::error::{ClientError, Result};

/// The characters that make a location a glob.
const GLOB_CHARS: &[char] = &['*', '?', '['];

/// An S3 location with a glob, split into its parts.
#[derive(Debug, PartialEq, Eq)]
struct S3Glob<'a> {
    /// `s3` or `s3a`.
    scheme: &'a str,
    bucket: &'a str,
    /// The key's literal part, up to the last `/` before the first wildcard.
    prefix: &'a str,
    /// The whole key, wildcards included.
    pattern: &'a str,
}

impl<'a> S3Glob<'a> {
    /// `Some` for an `s3://` or `s3a://` location whose key has a wildcard.
    fn parse(location: &'a str) -> Option<Self> {
        let (scheme, rest) = location.split_once("://")?;
        if !matches!(scheme, "s3" | "s3a") {
            return None;
        }
        let (bucket, pattern) = rest.split_once('/')?;
        let first_wildcard = pattern.find(GLOB_CHARS)?;
        let prefix = &pattern[..pattern[..first_wildcard].rfind('/').map_or(0, |i| i + 1)];
        Some(Self {
            scheme,
            bucket,
            prefix,
            pattern,
        })
    }
}

/// Replaces each globbed S3 location of a `CREATE EXTERNAL TABLE` with the
/// files it matches, listed through `runtime`'s object stores. Other
/// statements are left alone.
pub async fn expand_s3_globs(statement: &mut Statement, runtime: &RuntimeEnv) -> Result<()> {
    let Statement::CreateExternalTable(create) = statement else {
        return Ok(());
    };
    if !create.locations.iter().any(|l| S3Glob::parse(l).is_some()) {
        return Ok(());
    }
    if !create.table_partition_cols.is_empty() {
        return Err(ClientError::Process(
            "PARTITIONED BY needs the table's root directory as its location, not a glob"
                .to_string(),
        ));
    }
    let mut expanded = Vec::new();
    for location in &create.locations {
        match S3Glob::parse(location) {
            Some(glob) => expanded.extend(matching_files(location, &glob, runtime).await?),
            None => expanded.push(location.clone()),
        }
    }
    create.locations = expanded;
    Ok(())
}

/// The URLs of the files `glob` matches, sorted.
async fn matching_files(
    location: &str,
    glob: &S3Glob<'_>,
    runtime: &RuntimeEnv,
) -> Result<Vec<String>> {
    let pattern = Pattern::new(glob.pattern)
        .map_err(|e| ClientError::Process(format!("invalid glob `{location}`: {e}")))?;
    let store_url = ObjectStoreUrl::parse(format!("{}://{}", glob.scheme, glob.bucket))
        .map_err(ClientError::from_datafusion)?;
    let store = runtime
        .object_store(&store_url)
        .map_err(ClientError::from_datafusion)?;
    let prefix = (!glob.prefix.is_empty()).then(|| Path::from(glob.prefix));
    let keys: Vec<String> = store
        .list(prefix.as_ref())
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .map_err(|e| ClientError::from_datafusion(e.into()))?;
    let options = MatchOptions {
        require_literal_separator: true,
        ..MatchOptions::default()
    };
    let mut files: Vec<String> = keys
        .into_iter()
        .filter(|key| pattern.matches_with(key, options))
        .map(|key| format!("{}://{}/{key}", glob.scheme, glob.bucket))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ClientError::Process(format!("no files match `{location}`")));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_s3_globs_at_the_last_literal_directory() {
        assert_eq!(
            S3Glob::parse("s3://lake/trips/2026-*/part-?.parquet"),
            Some(S3Glob {
                scheme: "s3",
                bucket: "lake",
                prefix: "trips/",
                pattern: "trips/2026-*/part-?.parquet",
            })
        );
        assert_eq!(
            S3Glob::parse("s3a://lake/*.csv").map(|g| g.prefix),
            Some("")
        );
        assert_eq!(S3Glob::parse("s3://lake/trips/"), None);
        assert_eq!(
            S3Glob::parse("/data/*.csv"),
            None,
            "local globs are DataFusion's"
        );
        assert_eq!(S3Glob::parse("gs://lake/*.csv"), None);
    }

    #[test]
    fn wildcards_stay_within_a_directory() {
        let pattern = Pattern::new("t/part-*.parquet").unwrap();
        let options = MatchOptions {
            require_literal_separator: true,
            ..MatchOptions::default()
        };
        assert!(pattern.matches_with("t/part-1.parquet", options));
        assert!(!pattern.matches_with("t/sub/part-1.parquet", options));
    }
}
