//! S3 clients: built from [`S3Options`] over the `AWS_*` environment, cached
//! per (bucket, options), and wrapped in [`S3BucketStore`], which turns
//! `object_store`'s errors into one-line messages that name the bucket, the
//! key and the endpoint, and never a credential.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    RetryConfig,
};
use tokio::sync::OnceCell;

use super::settings::S3Options;

/// Seconds to wait for a connection when no `s3.connect_timeout_secs` is set.
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Retries of a transient error when no `s3.max_retries` is set.
const DEFAULT_MAX_RETRIES: usize = 10;
/// Longest retrying of one request when no `s3.retry_timeout_secs` is set.
const DEFAULT_RETRY_TIMEOUT_SECS: u64 = 180;

/// An S3 access that failed for a reason the user can act on. Its message
/// names the bucket, the key (when there is one) and the endpoint, after
/// the marker [`S3AccessError::MARKER`].
#[derive(thiserror::Error)]
#[error("{}{}", Self::MARKER, .0)]
pub struct S3AccessError(String);

impl S3AccessError {
    /// How every message starts, so that the client can find it inside the
    /// `Debug` text of a failed cluster job.
    pub const MARKER: &'static str = "S3: ";
}

// Ballista reports executor errors with `Debug`; keep that one line too.
impl fmt::Debug for S3AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Clients already built in this process, by bucket and options.
type ClientCache = HashMap<(String, S3Options), Arc<S3BucketStore>>;
static CLIENTS: LazyLock<Mutex<ClientCache>> = LazyLock::new(Default::default);

/// The store for `bucket` under `options`: built on first use, then reused
/// by every session and task of this process that resolves the bucket the
/// same way.
pub fn s3_bucket_store(
    bucket: &str,
    options: &S3Options,
) -> Result<Arc<S3BucketStore>, S3AccessError> {
    let key = (bucket.to_string(), options.clone());
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(store) = clients.get(&key) {
        return Ok(store.clone());
    }
    let store = Arc::new(S3BucketStore::build(bucket, options)?);
    clients.insert(key, store.clone());
    Ok(store)
}

/// One S3 bucket, reached through `object_store`'s S3 client.
///
/// Transient failures (5xx, throttling, reset connections) are retried by the
/// client with exponential backoff. An endpoint that refuses connections is
/// reported at once: the first request checks that it accepts TCP
/// connections.
pub struct S3BucketStore {
    inner: Arc<dyn ObjectStore>,
    /// Shared with the `'static` streams that `list` and `delete_stream`
    /// return, which check reachability and explain errors too.
    bucket: Arc<BucketEndpoint>,
}

/// A bucket and where its requests go: what error messages name, and the
/// reachability check.
struct BucketEndpoint {
    bucket: String,
    /// Where requests go, for messages: the endpoint URL, or "AWS S3".
    endpoint: String,
    /// `host:port` to check before the first request, for explicit endpoints.
    probe_address: Option<String>,
    connect_timeout: Duration,
    reachable: OnceCell<()>,
}

impl fmt::Debug for S3BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BucketStore")
            .field("bucket", &self.bucket.bucket)
            .field("endpoint", &self.bucket.endpoint)
            .finish()
    }
}

impl fmt::Display for S3BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S3BucketStore(s3://{} at {})",
            self.bucket.bucket, self.bucket.endpoint
        )
    }
}

impl S3BucketStore {
    fn build(bucket: &str, options: &S3Options) -> Result<Self, S3AccessError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let virtual_hosted = options.virtual_hosted_style.unwrap_or(false);
        if let Some(endpoint) = &options.endpoint {
            let endpoint = if virtual_hosted {
                virtual_hosted_endpoint(endpoint, bucket)
            } else {
                endpoint.clone()
            };
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(flag) = options.virtual_hosted_style {
            builder = builder.with_virtual_hosted_style_request(flag);
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token.expose());
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .filter(|e| !e.is_empty());
        // An explicit http:// endpoint is a request for plain HTTP.
        let allow_http = options.allow_http.unwrap_or_else(|| {
            endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
                || builder
                    .get_config_value(&AmazonS3ConfigKey::Client(
                        object_store::ClientConfigKey::AllowHttp,
                    ))
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        });
        let connect_timeout = Duration::from_secs(
            options
                .connect_timeout_secs
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        );
        let retry = RetryConfig {
            max_retries: options.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            retry_timeout: Duration::from_secs(
                options
                    .retry_timeout_secs
                    .unwrap_or(DEFAULT_RETRY_TIMEOUT_SECS),
            ),
            ..RetryConfig::default()
        };
        builder = builder
            .with_allow_http(allow_http)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_connect_timeout(connect_timeout),
            );
        let shown_endpoint = endpoint.clone().unwrap_or_else(|| "AWS S3".to_string());
        let inner = builder.build().map_err(|e| {
            S3AccessError(format!(
                "cannot configure S3 for bucket `{bucket}` at {shown_endpoint}: {}",
                scrub(&e.to_string(), options)
            ))
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            bucket: Arc::new(BucketEndpoint {
                bucket: bucket.to_string(),
                probe_address: endpoint.as_deref().and_then(host_and_port),
                endpoint: shown_endpoint,
                connect_timeout,
                reachable: OnceCell::new(),
            }),
        })
    }
}

impl BucketEndpoint {
    /// Fails fast when an explicit endpoint does not accept connections,
    /// instead of letting the client retry for minutes. Checked once; a
    /// failure is checked again on the next request.
    async fn check_reachable(&self) -> object_store::Result<()> {
        let Some(address) = &self.probe_address else {
            return Ok(());
        };
        self.reachable
            .get_or_try_init(|| async {
                let attempt = tokio::time::timeout(
                    self.connect_timeout,
                    tokio::net::TcpStream::connect(address.as_str()),
                )
                .await;
                let reason = match attempt {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {}s", self.connect_timeout.as_secs()),
                };
                Err(generic(format!(
                    "cannot reach the S3 endpoint {} for bucket `{}`: {reason}",
                    self.endpoint, self.bucket
                )))
            })
            .await
            .map(|_| ())
    }

    /// Rewrites an `object_store` error into one that names the bucket, the
    /// key and the endpoint, with the S3 error code when there is one.
    fn explain(&self, err: object_store::Error, location: Option<&Path>) -> object_store::Error {
        let text = err.to_string();
        let code = s3_error_code(&text);
        let object = match location {
            Some(path) if !path.as_ref().is_empty() => format!("s3://{}/{}", self.bucket, path),
            _ => format!("s3://{}", self.bucket),
        };
        let at = &self.endpoint;
        let code_note = code.map(|c| format!(" ({c})")).unwrap_or_default();
        match (&err, code) {
            (_, Some("NoSuchBucket")) => generic(format!(
                "no such bucket `{}` at {at}{code_note}",
                self.bucket
            )),
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                _,
            )
            | (_, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
                generic(format!(
                    "access denied to {object} at {at}{code_note}: check the S3 credentials"
                ))
            }
            (object_store::Error::NotFound { path, .. }, _) => object_store::Error::NotFound {
                path: path.clone(),
                source: Box::new(S3AccessError(format!("no such key {object} at {at}"))),
            },
            (object_store::Error::AlreadyExists { .. }, _)
            | (object_store::Error::Precondition { .. }, _)
            | (object_store::Error::NotModified { .. }, _)
            | (object_store::Error::NotImplemented { .. }, _)
            | (object_store::Error::NotSupported { .. }, _) => err,
            _ => generic(format!(
                "S3 request for {object} at {at} failed: {}",
                first_line(&text)
            )),
        }
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(S3AccessError(message)),
    }
}

/// `http://host:port/...` → `host:port` (the scheme's port when none).
fn host_and_port(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// `http://host:9000` → `http://bucket.host:9000`, as virtual-hosted-style
/// requests expect.
fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) if !rest.starts_with(&format!("{bucket}.")) => {
            format!("{scheme}://{bucket}.{rest}")
        }
        _ => endpoint.to_string(),
    }
}

/// The `<Code>` of an S3 error response quoted in `text`, or a code named
/// in it plainly.
fn s3_error_code(text: &str) -> Option<&str> {
    if let Some(start) = text.find("<Code>") {
        let rest = &text[start + "<Code>".len()..];
        if let Some(end) = rest.find("</Code>") {
            return Some(&rest[..end]);
        }
    }
    [
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]
    .into_iter()
    .find(|code| text.contains(code))
}

fn first_line(text: &str) -> String {
    // Response bodies are XML documents; the message before them says enough.
    let cut = text.find("<?xml").unwrap_or(text.len());
    text[..cut]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(':')
        .to_string()
}

/// Removes credentials from a message, in case a library quoted them.
fn scrub(text: &str, options: &S3Options) -> String {
    let mut text = text.to_string();
    for secret in [&options.secret_access_key, &options.session_token]
        .into_iter()
        .flatten()
    {
        if !secret.expose().is_empty() {
            text = text.replace(secret.expose(), "****");
        }
    }
    text
}

#[async_trait]
impl ObjectStore for S3BucketStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.bucket.check_reachable().await?;
        self.inner
            .put_opts(location, payload, opts)
            .await
            .map_err(|e| self.bucket.explain(e, Some(location)))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.bucket.check_reachable().await?;
        self.inner
            .put_multipart_opts(location, opts)
            .await
            .map_err(|e| self.bucket.explain(e, Some(location)))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.bucket.check_reachable().await?;
        self.inner
            .get_opts(location, options)
            .await
            .map_err(|e| self.bucket.explain(e, Some(location)))
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.bucket.check_reachable().await?;
        self.inner
            .get_ranges(location, ranges)
            .await
            .map_err(|e| self.bucket.explain(e, Some(location)))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let bucket = self.bucket.clone();
        self.inner
            .delete_stream(locations)
            .map_err(move |e| bucket.explain(e, None))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let probe = self.bucket.clone();
        let bucket = self.bucket.clone();
        let prefix_owned = prefix.cloned();
        let listing = self.inner.list(prefix);
        futures::stream::once(async move { probe.check_reachable().await.map(|_| listing) })
            .try_flatten()
            .map_err(move |e| bucket.explain(e, prefix_owned.as_ref()))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.bucket.check_reachable().await?;
        self.inner
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.bucket.explain(e, prefix))
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.bucket.check_reachable().await?;
        self.inner
            .copy_opts(from, to, options)
            .await
            .map_err(|e| self.bucket.explain(e, Some(from)))
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.bucket.check_reachable().await?;
        self.inner
            .rename_opts(from, to, options)
            .await
            .map_err(|e| self.bucket.explain(e, Some(from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::settings::Secret;

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        assert_eq!(
            virtual_hosted_endpoint("http://minio.local:9000", "lake"),
            "http://lake.minio.local:9000"
        );
        assert_eq!(
            virtual_hosted_endpoint("https://lake.r2.example", "lake"),
            "https://lake.r2.example"
        );
    }

    #[test]
    fn probe_address_has_a_port() {
        assert_eq!(
            host_and_port("http://127.0.0.1:9000").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(
            host_and_port("https://s3.example.com").as_deref(),
            Some("s3.example.com:443")
        );
    }

    #[test]
    fn error_codes_are_read_from_response_bodies() {
        let body = "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><AWSAccessKeyId>AKIA</AWSAccessKeyId></Error>";
        assert_eq!(s3_error_code(body), Some("InvalidAccessKeyId"));
        assert_eq!(first_line(body), "Client error with status 403 Forbidden");
    }

    #[test]
    fn secrets_are_scrubbed() {
        let options = S3Options {
            secret_access_key: Some(Secret::new("hunter2")),
            ..Default::default()
        };
        assert_eq!(scrub("bad key hunter2", &options), "bad key ****");
    }

    #[test]
    fn clients_are_cached_per_bucket_and_options() {
        let options = S3Options {
            endpoint: Some("http://127.0.0.1:9".to_string()),
            region: Some("us-east-1".to_string()),
            ..Default::default()
        };
        let a = s3_bucket_store("cache-test", &options).unwrap();
        let b = s3_bucket_store("cache-test", &options).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = S3Options {
            region: Some("eu-west-1".to_string()),
            ..options
        };
        let c = s3_bucket_store("cache-test", &other).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
