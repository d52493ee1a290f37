//! The runtime environment and the object-store registry shared by every
//! Ember process.
//!
//! A table location is a URL; the registry maps its scheme (and bucket) to an
//! [`ObjectStore`]:
//!
//! * `file://` (or a plain path): `object_store`'s `LocalFileSystem`;
//! * `s3://bucket/...` (and `s3a://`): an [`S3BucketStore`] configured from
//!   the session's `s3.*` settings over the `AWS_*` environment.
//!
//! Every other scheme is refused with an error that names it, so a table on
//! an unsupported store fails at `CREATE EXTERNAL TABLE` rather than
//! somewhere on an executor.
//!
//! Every store is wrapped in a [`HiddenFileFilter`]: listings skip entries
//! whose name, below the listed prefix, starts with `_` or `.`. That is how
//! readers ignore a write's `_temporary/` staging area and its `_SUCCESS`
//! marker, as Hadoop and Spark readers do.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};
use url::Url;

use crate::s3::{S3Settings, s3_bucket_store};

/// Ember's object-store registry: local files and S3 buckets, each store
/// created on first use and then reused.
#[derive(Debug)]
pub struct EmberObjectStoreRegistry {
    /// Stores registered explicitly, and the local file system.
    stores: DefaultObjectStoreRegistry,
    /// The session's `s3.*` settings, which choose each bucket's client.
    s3: RwLock<S3Settings>,
}

impl Default for EmberObjectStoreRegistry {
    fn default() -> Self {
        Self::new(S3Settings::default())
    }
}

impl EmberObjectStoreRegistry {
    /// A registry that serves `file://` from the local file system and
    /// `s3://` buckets as `s3` says.
    pub fn new(s3: S3Settings) -> Self {
        let stores = DefaultObjectStoreRegistry::new();
        let local = Url::parse("file://").expect("a valid URL");
        if let Ok(fs) = stores.get_store(&local) {
            stores.register_store(&local, Arc::new(HiddenFileFilter::new(fs)));
        }
        Self {
            stores,
            s3: RwLock::new(s3),
        }
    }

    /// Replaces the S3 settings (after `SET s3.…` in an embedded session).
    pub fn set_s3_settings(&self, settings: S3Settings) {
        *self.s3.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    fn s3_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            DataFusionError::Configuration(format!("`{url}` names no bucket (s3://bucket/path)"))
        })?;
        let options = self
            .s3
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .for_bucket(bucket);
        let store = s3_bucket_store(bucket, &options)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(HiddenFileFilter::new(store)))
    }
}

impl ObjectStoreRegistry for EmberObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .register_store(url, Arc::new(HiddenFileFilter::new(store)))
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.stores.get_store(url) {
            return Ok(store);
        }
        match url.scheme() {
            "s3" | "s3a" => self.s3_store(url),
            scheme => Err(DataFusionError::Configuration(format!(
                "no object store for `{scheme}://{}`: Ember reads local files (file://) and S3 (s3://)",
                url.authority()
            ))),
        }
    }
}

/// Builds the runtime environment of a session: Ember's object-store
/// registry configured from the session's `s3.*` settings, plus a spill
/// directory when one is given (an executor's work dir).
pub fn runtime_env(config: &SessionConfig, spill_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let registry = EmberObjectStoreRegistry::new(S3Settings::from_session_config(config));
    runtime_env_with_registry(Arc::new(registry), spill_dir)
}

/// Builds a runtime environment around a registry the caller keeps (an
/// embedded client updates its S3 settings after `SET s3.…`).
pub fn runtime_env_with_registry(
    registry: Arc<EmberObjectStoreRegistry>,
    spill_dir: Option<&str>,
) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(registry);
    if let Some(dir) = spill_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}

/// Whether `location`, relative to the listed `prefix`, passes through a
/// hidden directory or is a hidden file (a name starting with `_` or `.`).
pub fn is_hidden(prefix: Option<&Path>, location: &Path) -> bool {
    let hidden = |name: &str| name.starts_with('_') || name.starts_with('.');
    match prefix {
        Some(prefix) => location
            .prefix_match(prefix)
            .is_some_and(|mut rest| rest.any(|part| hidden(part.as_ref()))),
        None => location.parts().any(|part| hidden(part.as_ref())),
    }
}

/// Inside an `impl ObjectStore` block of a store that wraps another in its
/// field `inner`: the methods it passes straight through (reads of named
/// objects, deletes, copies, renames). Their signatures are the ones
/// `async_trait` gives the trait's methods, so the inner store's futures
/// are returned as they are.
macro_rules! forward_to_inner_store {
    () => {
        fn get_opts<'life0, 'life1, 'async_trait>(
            &'life0 self,
            location: &'life1 object_store::path::Path,
            options: object_store::GetOptions,
        ) -> futures::future::BoxFuture<'async_trait, object_store::Result<object_store::GetResult>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.get_opts(location, options)
        }

        fn get_ranges<'life0, 'life1, 'life2, 'async_trait>(
            &'life0 self,
            location: &'life1 object_store::path::Path,
            ranges: &'life2 [std::ops::Range<u64>],
        ) -> futures::future::BoxFuture<'async_trait, object_store::Result<Vec<bytes::Bytes>>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            'life2: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.get_ranges(location, ranges)
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.inner.delete_stream(locations)
        }

        fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
            &'life0 self,
            from: &'life1 object_store::path::Path,
            to: &'life2 object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> futures::future::BoxFuture<'async_trait, object_store::Result<()>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            'life2: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.copy_opts(from, to, options)
        }

        fn rename_opts<'life0, 'life1, 'life2, 'async_trait>(
            &'life0 self,
            from: &'life1 object_store::path::Path,
            to: &'life2 object_store::path::Path,
            options: object_store::RenameOptions,
        ) -> futures::future::BoxFuture<'async_trait, object_store::Result<()>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            'life2: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.rename_opts(from, to, options)
        }
    };
}
pub(crate) use forward_to_inner_store;

/// A store whose listings skip hidden entries (see [`is_hidden`]): a
/// write's `_temporary/` staging area, `_SUCCESS` markers, dot files. Reads
/// and writes of a named object pass straight through.
#[derive(Debug)]
pub struct HiddenFileFilter {
    inner: Arc<dyn ObjectStore>,
}

impl HiddenFileFilter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Display for HiddenFileFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HiddenFileFilter({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for HiddenFileFilter {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    forward_to_inner_store!();

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix_owned = prefix.cloned();
        self.inner
            .list(prefix)
            .try_filter(move |meta| {
                futures::future::ready(!is_hidden(prefix_owned.as_ref(), &meta.location))
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result
            .objects
            .retain(|meta| !is_hidden(prefix, &meta.location));
        result.common_prefixes.retain(|dir| !is_hidden(prefix, dir));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn local_files_resolve() {
        let registry = EmberObjectStoreRegistry::default();
        let url = Url::parse("file:///tmp/data.parquet").unwrap();
        assert!(registry.get_store(&url).is_ok());
    }

    #[test]
    fn unknown_scheme_names_the_scheme_and_bucket() {
        let registry = EmberObjectStoreRegistry::default();
        let url = Url::parse("gs://lake/events/").unwrap();
        let err = registry.get_store(&url).unwrap_err().to_string();
        assert!(err.contains("gs://lake"), "{err}");
    }

    #[test]
    fn s3_buckets_resolve_from_settings() {
        let mut settings = S3Settings::default();
        use datafusion::config::ExtensionOptions;
        settings.set("endpoint", "http://127.0.0.1:9").unwrap();
        settings.set("region", "us-east-1").unwrap();
        let registry = EmberObjectStoreRegistry::new(settings);
        let url = Url::parse("s3://lake/events/").unwrap();
        let store = registry.get_store(&url).unwrap();
        assert!(
            store
                .to_string()
                .contains("s3://lake at http://127.0.0.1:9"),
            "{store}"
        );
    }

    #[test]
    fn hidden_entries_are_relative_to_the_prefix() {
        let table = Path::from("out");
        assert!(is_hidden(Some(&table), &Path::from("out/_SUCCESS")));
        assert!(is_hidden(
            Some(&table),
            &Path::from("out/_temporary/1/a.parquet")
        ));
        assert!(is_hidden(
            Some(&table),
            &Path::from("out/k=1/.a.parquet.crc")
        ));
        assert!(!is_hidden(Some(&table), &Path::from("out/k=1/a.parquet")));
        // Listing inside a staging area sees its files.
        let staging = Path::from("out/_temporary/1");
        assert!(!is_hidden(
            Some(&staging),
            &Path::from("out/_temporary/1/a.parquet")
        ));
    }

    #[tokio::test]
    async fn listings_skip_hidden_files_but_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let fs =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let store = HiddenFileFilter::new(fs);
        for name in [
            "t/a.csv",
            "t/_SUCCESS",
            "t/_temporary/x/b.csv",
            "t/k=1/c.csv",
        ] {
            store.put(&Path::from(name), "1\n".into()).await.unwrap();
        }
        let mut listed: Vec<String> = store
            .list(Some(&Path::from("t")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(listed, vec!["t/a.csv", "t/k=1/c.csv"]);
        let dirs = store
            .list_with_delimiter(Some(&Path::from("t")))
            .await
            .unwrap();
        let prefixes: Vec<String> = dirs.common_prefixes.iter().map(|p| p.to_string()).collect();
        assert_eq!(prefixes, vec!["t/k=1"]);
        assert!(store.head(&Path::from("t/_SUCCESS")).await.is_ok());
    }
}
