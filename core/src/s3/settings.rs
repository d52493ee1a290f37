//! The `s3.*` session settings: how a session reaches S3 and S3-compatible
//! stores.
//!
//! Settings come from four places, each overriding the one before it:
//!
//! 1. the process environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//!    `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//!    `AWS_ALLOW_HTTP`, and the rest of the default credential chain that
//!    `object_store` reads: web identity, container and instance credentials);
//! 2. the client's command-line flags (`--s3-endpoint`, ...), which set the
//!    session settings below;
//! 3. `SET s3.<key> = <value>` in a session;
//! 4. `OPTIONS ('s3.<key>' '<value>')` on `CREATE EXTERNAL TABLE` or `COPY`,
//!    which the client turns into the per-bucket settings
//!    `s3.bucket.<bucket>.<key>` of the session.
//!
//! The session settings travel with every query to the scheduler and the
//! executors, so every process resolves a bucket the same way.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use datafusion::common::config_err;
use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::Result;
use datafusion::prelude::SessionConfig;

/// The prefix of per-bucket keys: `s3.bucket.<bucket>.<key>`.
const BUCKET_PREFIX: &str = "bucket.";

/// A value that must not be printed: `Debug` shows `****`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (signing requests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// How to reach one S3 bucket. `None` leaves a value to the layer below
/// (the environment, then `object_store`'s defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible store, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// Whether plain `http://` endpoints are allowed.
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style addressing (`bucket.host`) instead of path style
    /// (`host/bucket`). Path style is the default, as S3-compatible stores
    /// expect.
    pub virtual_hosted_style: Option<bool>,
    /// How many times a transient error (5xx, throttling, a reset connection)
    /// is retried, with exponential backoff.
    pub max_retries: Option<usize>,
    /// The longest time, in seconds, spent retrying one request.
    pub retry_timeout_secs: Option<u64>,
    /// Seconds to wait for a connection to the endpoint.
    pub connect_timeout_secs: Option<u64>,
}

/// The keys of [`S3Options`] whose values are secrets.
const SECRET_KEYS: &[&str] = &["secret_access_key", "session_token"];

/// The keys of [`S3Options`], with their descriptions.
const KEYS: &[(&str, &str)] = &[
    ("endpoint", "Endpoint URL of an S3-compatible store"),
    ("region", "AWS region"),
    ("access_key_id", "Access key id"),
    ("secret_access_key", "Secret access key"),
    ("session_token", "Session token of temporary credentials"),
    ("allow_http", "Allow plain http:// endpoints"),
    (
        "virtual_hosted_style",
        "Virtual-hosted-style addressing instead of path style",
    ),
    ("max_retries", "Retries of a transient S3 error"),
    (
        "retry_timeout_secs",
        "Longest time spent retrying one request",
    ),
    ("connect_timeout_secs", "Seconds to wait for a connection"),
];

/// Aliases accepted in table `OPTIONS`, as other DataFusion tools spell them.
fn canonical_key(key: &str) -> &str {
    match key {
        "endpoint_url" => "endpoint",
        "access_key" | "access_key_id" => "access_key_id",
        "secret_key" | "secret_access_key" => "secret_access_key",
        "token" | "session_token" => "session_token",
        other => other,
    }
}

impl S3Options {
    /// Sets one option by its key (without the `s3.` prefix).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        match canonical_key(key) {
            "endpoint" => self.endpoint = parse_endpoint(key, value)?,
            "region" => self.region = non_empty(value),
            "access_key_id" => self.access_key_id = non_empty(value),
            "secret_access_key" => self.secret_access_key = non_empty(value).map(Secret),
            "session_token" => self.session_token = non_empty(value).map(Secret),
            "allow_http" => self.allow_http = parse_flag(key, value)?,
            "virtual_hosted_style" => self.virtual_hosted_style = parse_flag(key, value)?,
            "max_retries" => self.max_retries = parse_number(key, value)?,
            "retry_timeout_secs" => self.retry_timeout_secs = parse_number(key, value)?,
            "connect_timeout_secs" => self.connect_timeout_secs = parse_number(key, value)?,
            _ => {
                return config_err!(
                    "unknown S3 setting `s3.{key}`; known settings: {}",
                    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(())
    }

    /// The options as `(key, value)` pairs, secrets included: this is how
    /// they travel to the scheduler and executors.
    fn values(&self) -> Vec<(&'static str, Option<String>)> {
        fn text<T: ToString>(value: &Option<T>) -> Option<String> {
            value.as_ref().map(T::to_string)
        }
        let secret = |v: &Option<Secret>| v.as_ref().map(|s| s.0.clone());
        vec![
            ("endpoint", self.endpoint.clone()),
            ("region", self.region.clone()),
            ("access_key_id", self.access_key_id.clone()),
            ("secret_access_key", secret(&self.secret_access_key)),
            ("session_token", secret(&self.session_token)),
            ("allow_http", text(&self.allow_http)),
            ("virtual_hosted_style", text(&self.virtual_hosted_style)),
            ("max_retries", text(&self.max_retries)),
            ("retry_timeout_secs", text(&self.retry_timeout_secs)),
            ("connect_timeout_secs", text(&self.connect_timeout_secs)),
        ]
    }

    /// These options with every value that `over` sets replacing ours.
    pub fn overridden_by(&self, over: &S3Options) -> S3Options {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        S3Options {
            endpoint: pick(&self.endpoint, &over.endpoint),
            region: pick(&self.region, &over.region),
            access_key_id: pick(&self.access_key_id, &over.access_key_id),
            secret_access_key: pick(&self.secret_access_key, &over.secret_access_key),
            session_token: pick(&self.session_token, &over.session_token),
            allow_http: pick(&self.allow_http, &over.allow_http),
            virtual_hosted_style: pick(&self.virtual_hosted_style, &over.virtual_hosted_style),
            max_retries: pick(&self.max_retries, &over.max_retries),
            retry_timeout_secs: pick(&self.retry_timeout_secs, &over.retry_timeout_secs),
            connect_timeout_secs: pick(&self.connect_timeout_secs, &over.connect_timeout_secs),
        }
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        *self == S3Options::default()
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// An endpoint URL: `http://` or `https://`, with a host. A value that is
/// not one would fail deep inside the S3 client (which panics on a request
/// it cannot build), so it is refused where it is set.
fn parse_endpoint(key: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(Some(value.to_string()))
        }
        _ => config_err!(
            "`s3.{key}` must be an http:// or https:// URL with a host, such as http://127.0.0.1:9000, not `{value}`"
        ),
    }
}

fn parse_flag(key: &str, value: &str) -> Result<Option<bool>> {
    if value.is_empty() {
        return Ok(None);
    }
    match crate::config::parse_flag(value) {
        Some(flag) => Ok(Some(flag)),
        None => config_err!("`s3.{key}` must be true or false, not `{value}`"),
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<Option<T>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .or_else(|_| config_err!("`s3.{key}` must be a whole number, not `{value}`"))
}

/// The `s3.*` settings of a session: defaults for every bucket, and
/// per-bucket overrides (`s3.bucket.<bucket>.<key>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Options for every bucket.
    pub defaults: S3Options,
    /// Options for one bucket, over the defaults.
    pub buckets: BTreeMap<String, S3Options>,
}

impl ConfigExtension for S3Settings {
    const PREFIX: &'static str = "s3";
}

impl S3Settings {
    /// Reads the settings from a session configuration (empty when the
    /// extension is not registered).
    pub fn from_session_config(config: &SessionConfig) -> Self {
        config
            .options()
            .extensions
            .get::<S3Settings>()
            .cloned()
            .unwrap_or_default()
    }

    /// These settings without credentials (access key ids, secrets and
    /// session tokens, default and per bucket): what reaches a cluster that
    /// is to use its own.
    pub fn without_credentials(&self) -> Self {
        let strip = |options: &S3Options| S3Options {
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            ..options.clone()
        };
        let mut stripped = self.clone();
        stripped.defaults = strip(&self.defaults);
        for options in stripped.buckets.values_mut() {
            *options = strip(options);
        }
        stripped
    }

    /// The session's options for `bucket`: the defaults, then that bucket's
    /// overrides.
    pub fn for_bucket(&self, bucket: &str) -> S3Options {
        match self.buckets.get(bucket) {
            Some(over) => self.defaults.overridden_by(over),
            None => self.defaults.clone(),
        }
    }

    /// Splits `OPTIONS` keys that configure S3 (`s3.<key>`, or `aws.<key>`
    /// as other DataFusion tools spell them) from the rest. Returns the S3
    /// options and the remaining options.
    pub fn split_table_options<'a>(
        options: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(S3Options, Vec<(String, String)>)> {
        let mut s3 = S3Options::default();
        let mut rest = Vec::new();
        for (key, value) in options {
            let lower = key.to_ascii_lowercase();
            match lower
                .strip_prefix("s3.")
                .or_else(|| lower.strip_prefix("aws."))
            {
                Some(s3_key) => s3.set(s3_key, value)?,
                None => rest.push((key.clone(), value.clone())),
            }
        }
        Ok((s3, rest))
    }

    /// Whether the session setting `key` holds a secret (a secret access
    /// key or a session token, for every bucket or for one), whose value
    /// must never be shown.
    pub fn is_secret_key(key: &str) -> bool {
        let lower = key.to_ascii_lowercase();
        let Some(rest) = lower
            .strip_prefix("s3.")
            .or_else(|| lower.strip_prefix("aws."))
        else {
            return false;
        };
        let option = rest.rsplit('.').next().unwrap_or(rest);
        SECRET_KEYS.contains(&option)
    }

    /// The session keys (`s3.bucket.<bucket>.<key>`, value) that apply
    /// `options` to `bucket`.
    pub fn bucket_keys(bucket: &str, options: &S3Options) -> Vec<(String, String)> {
        options
            .values()
            .into_iter()
            .filter_map(|(key, value)| Some((format!("s3.{BUCKET_PREFIX}{bucket}.{key}"), value?)))
            .collect()
    }
}

impl ExtensionOptions for S3Settings {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.strip_prefix("s3.").unwrap_or(key);
        match key.strip_prefix(BUCKET_PREFIX) {
            // `bucket.<name>.<key>`: bucket names may contain dots, keys don't.
            Some(rest) => match rest.rsplit_once('.') {
                Some((bucket, option)) if !bucket.is_empty() => self
                    .buckets
                    .entry(bucket.to_string())
                    .or_default()
                    .set(option, value),
                _ => config_err!("expected `s3.bucket.<bucket>.<key>`, got `s3.{key}`"),
            },
            None => self.defaults.set(key, value),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        let describe = |key: &str| {
            KEYS.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, d)| *d)
                .unwrap_or("")
        };
        let mut entries: Vec<ConfigEntry> = self
            .defaults
            .values()
            .into_iter()
            .map(|(key, value)| ConfigEntry {
                key: format!("s3.{key}"),
                value,
                description: describe(key),
            })
            .collect();
        for (bucket, options) in &self.buckets {
            for (key, value) in options.values() {
                if value.is_some() {
                    entries.push(ConfigEntry {
                        key: format!("s3.{BUCKET_PREFIX}{bucket}.{key}"),
                        value,
                        description: describe(key),
                    });
                }
            }
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_in_every_spelling() {
        for key in [
            "s3.secret_access_key",
            "S3.Secret_Access_Key",
            "s3.session_token",
            "s3.bucket.my.data.secret_access_key",
            "aws.session_token",
        ] {
            assert!(S3Settings::is_secret_key(key), "{key}");
        }
        for key in [
            "s3.access_key_id",
            "s3.endpoint",
            "s3.bucket.secret_access_key.region",
            "datafusion.secret_access_key",
        ] {
            assert!(!S3Settings::is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn defaults_and_bucket_overrides_combine() {
        let mut settings = S3Settings::default();
        settings.set("endpoint", "http://a:9000").unwrap();
        settings.set("region", "eu-west-1").unwrap();
        settings
            .set("bucket.my.lake.endpoint", "http://b:9000")
            .unwrap();
        let lake = settings.for_bucket("my.lake");
        assert_eq!(lake.endpoint.as_deref(), Some("http://b:9000"));
        assert_eq!(lake.region.as_deref(), Some("eu-west-1"));
        let other = settings.for_bucket("other");
        assert_eq!(other.endpoint.as_deref(), Some("http://a:9000"));
    }

    #[test]
    fn entries_round_trip_with_full_keys() {
        let mut settings = S3Settings::default();
        settings.set("secret_access_key", "s3cr3t").unwrap();
        settings.set("bucket.lake.allow_http", "true").unwrap();
        let mut copy = S3Settings::default();
        for entry in settings.entries() {
            assert!(entry.key.starts_with("s3."), "{}", entry.key);
            if let Some(value) = entry.value {
                copy.set(&entry.key, &value).unwrap();
            }
        }
        assert_eq!(copy, settings);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut settings = S3Settings::default();
        settings.set("secret_access_key", "s3cr3t").unwrap();
        settings.set("session_token", "t0ken").unwrap();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0ken"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_and_keys_are_named() {
        let mut settings = S3Settings::default();
        let err = settings.set("allow_http", "maybe").unwrap_err().to_string();
        assert!(err.contains("s3.allow_http"), "{err}");
        let err = settings.set("endpiont", "x").unwrap_err().to_string();
        assert!(err.contains("s3.endpiont"), "{err}");
    }

    #[test]
    fn table_options_split_s3_and_aws_keys_from_format_options() {
        let options: BTreeMap<String, String> = [
            ("s3.endpoint", "http://h:1"),
            ("aws.secret_access_key", "k"),
            ("format.delimiter", ";"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (s3, rest) = S3Settings::split_table_options(&options).unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://h:1"));
        assert_eq!(s3.secret_access_key, Some(Secret::new("k")));
        assert_eq!(
            rest,
            vec![("format.delimiter".to_string(), ";".to_string())]
        );
        let keys = S3Settings::bucket_keys("lake", &s3);
        assert!(keys.contains(&(
            "s3.bucket.lake.endpoint".to_string(),
            "http://h:1".to_string()
        )));
    }
}
