//! The runtime environment and the object-store registry shared by every
//! Ember process.
//!
//! A table location is a URL; the registry maps its scheme (and bucket) to an
//! [`ObjectStore`]. Local files (`file://`, or a plain path) are served by
//! `object_store`'s `LocalFileSystem`. Every other scheme is refused with an
//! error that names it, so a table on an unsupported store fails at
//! `CREATE EXTERNAL TABLE` rather than somewhere on an executor. Object stores such as S3 register
//! here: a store resolver per scheme, built from the session's settings.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionConfig;
use object_store::ObjectStore;
use url::Url;

/// Ember's object-store registry: local files today, one store per scheme
/// and bucket, created on first use and then reused.
#[derive(Debug)]
pub struct EmberObjectStoreRegistry {
    /// Stores registered explicitly or created on first use, keyed by
    /// scheme and authority.
    stores: DefaultObjectStoreRegistry,
}

impl Default for EmberObjectStoreRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl EmberObjectStoreRegistry {
    /// A registry that serves `file://` from the local file system
    /// (DataFusion's default registry starts with that store).
    pub fn new() -> Self {
        Self {
            stores: DefaultObjectStoreRegistry::new(),
        }
    }
}

impl ObjectStoreRegistry for EmberObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores.get_store(url).map_err(|_| {
            DataFusionError::Configuration(format!(
                "no object store for `{}://{}`: Ember reads local files (file://) in this build",
                url.scheme(),
                url.authority()
            ))
        })
    }
}

/// Builds the runtime environment of a session: Ember's object-store
/// registry, plus a spill directory when one is given (an executor's
/// work dir).
///
/// The `config` is the session's configuration; stores that depend on session
/// settings read them from there.
pub fn runtime_env(_config: &SessionConfig, spill_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(EmberObjectStoreRegistry::new()));
    if let Some(dir) = spill_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_resolve() {
        let registry = EmberObjectStoreRegistry::new();
        let url = Url::parse("file:///tmp/data.parquet").unwrap();
        assert!(registry.get_store(&url).is_ok());
    }

    #[test]
    fn unknown_scheme_names_the_scheme_and_bucket() {
        let registry = EmberObjectStoreRegistry::new();
        let url = Url::parse("gs://lake/events/").unwrap();
        let err = registry.get_store(&url).unwrap_err().to_string();
        assert!(err.contains("gs://lake"), "{err}");
    }
}
