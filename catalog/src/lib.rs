//! `ember-catalog`: the cluster's shared, persistent catalog.
//!
//! [`SharedCatalog`] is a DataFusion [`CatalogProvider`] whose schemas are
//! [`SharedSchema`]s: every session it is registered in sees the same
//! tables, and every change is written to its file (when it has one) before
//! it is acknowledged. A table is kept as the encoded plan of a scan of it
//! (Ember's logical codec, as queries travel to the cluster), and decoded
//! again, once, when first read after a restart.

mod file;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion_proto::logical_plan::AsLogicalPlan;
use datafusion_proto::protobuf::LogicalPlanNode;
use ember_core::EmberLogicalCodec;
use prost::Message;

pub use file::CatalogFile;
pub use store::CatalogError;

/// The schema every catalog has.
pub const DEFAULT_SCHEMA: &str = "public";

/// One table: its encoded scan, and the provider once decoded.
#[derive(Clone)]
struct TableEntry {
    encoded: Vec<u8>,
    provider: Option<Arc<dyn TableProvider>>,
}

/// What a catalog holds, shared by its schemas.
struct CatalogState {
    /// Where the catalog is kept; `None`: in memory only.
    path: Option<PathBuf>,
    /// Schema name -> table name -> table.
    schemas: RwLock<BTreeMap<String, BTreeMap<String, TableEntry>>>,
    /// The context tables are decoded in, built on first need.
    decode_context: OnceLock<Arc<TaskContext>>,
    /// The lock of the file, held as long as the catalog lives, so that no
    /// other process changes the file behind its back.
    _lock: Option<std::fs::File>,
}

/// A catalog every session of the process shares; see the crate
/// documentation.
#[derive(Clone)]
pub struct SharedCatalog {
    state: Arc<CatalogState>,
}

impl std::fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCatalog")
            .field("path", &self.state.path)
            .field("schemas", &self.schema_names())
            .finish()
    }
}

impl SharedCatalog {
    /// A catalog kept in memory only, with an empty `public` schema.
    pub fn in_memory() -> Self {
        Self::with_schemas(None, BTreeMap::new())
    }

    /// The catalog kept in the file at `path`: what it holds, or an empty
    /// `public` schema when the file does not exist yet (it is written at
    /// the first change).
    ///
    /// The file's lock is held as long as the catalog lives: a second
    /// process opening it fails with [`CatalogError::InUse`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, CatalogError> {
        let path = path.into();
        let lock = file::lock(&path)?;
        let stored = store::read(&path)?;
        let schemas = stored
            .into_iter()
            .map(|(schema, tables)| {
                let tables = tables
                    .into_iter()
                    .map(|(name, encoded)| {
                        let entry = TableEntry {
                            encoded,
                            provider: None,
                        };
                        (name, entry)
                    })
                    .collect();
                (schema, tables)
            })
            .collect();
        Ok(Self::with_schemas(Some((path, lock)), schemas))
    }

    fn with_schemas(
        file: Option<(PathBuf, std::fs::File)>,
        mut schemas: BTreeMap<String, BTreeMap<String, TableEntry>>,
    ) -> Self {
        let (path, lock) = file.unzip();
        schemas.entry(DEFAULT_SCHEMA.to_string()).or_default();
        Self {
            state: Arc::new(CatalogState {
                path,
                schemas: RwLock::new(schemas),
                decode_context: OnceLock::new(),
                _lock: lock,
            }),
        }
    }

    /// Where the catalog is kept, if anywhere.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.state.path.as_deref()
    }

    /// Every table, as (schema, table, encoded scan), sorted.
    pub fn encoded_tables(&self) -> Vec<(String, String, Vec<u8>)> {
        let schemas = self.state.read();
        schemas
            .iter()
            .flat_map(|(schema, tables)| {
                tables
                    .iter()
                    .map(move |(name, entry)| (schema.clone(), name.clone(), entry.encoded.clone()))
            })
            .collect()
    }

    /// Registers table `schema.table` from its encoded scan, replacing any
    /// table of that name; the schema is created if missing. The scan is
    /// decoded first, so that a corrupt one is refused.
    pub fn put_encoded(&self, schema: &str, table: &str, encoded: Vec<u8>) -> Result<()> {
        let context = self.state.decode_context()?;
        let provider = decode_table(&encoded, &context)?;
        let mut schemas = self.state.write();
        let previous = schemas.clone();
        schemas.entry(schema.to_string()).or_default().insert(
            table.to_string(),
            TableEntry {
                encoded,
                provider: Some(provider),
            },
        );
        if let Err(e) = self.state.persist(&schemas) {
            *schemas = previous;
            return Err(e);
        }
        tracing::info!(schema, table, "table registered in the shared catalog");
        Ok(())
    }

    /// Creates schema `name` if it does not exist.
    pub fn create_schema(&self, name: &str) -> Result<()> {
        let mut schemas = self.state.write();
        if schemas.contains_key(name) {
            return Ok(());
        }
        schemas.insert(name.to_string(), BTreeMap::new());
        if let Err(e) = self.state.persist(&schemas) {
            schemas.remove(name);
            return Err(e);
        }
        Ok(())
    }
}

/// Schema name -> table name -> table.
type Schemas = BTreeMap<String, BTreeMap<String, TableEntry>>;

impl CatalogState {
    /// The schemas, to read.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Schemas> {
        self.schemas.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The schemas, to change.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Schemas> {
        self.schemas.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the catalog to its file, if it has one.
    fn persist(&self, schemas: &BTreeMap<String, BTreeMap<String, TableEntry>>) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stored = schemas
            .iter()
            .map(|(schema, tables)| {
                let tables = tables
                    .iter()
                    .map(|(name, entry)| (name.clone(), entry.encoded.clone()))
                    .collect();
                (schema.clone(), tables)
            })
            .collect();
        store::write(path, &stored).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The context tables are decoded in: Ember's distributed session.
    fn decode_context(&self) -> Result<Arc<TaskContext>> {
        if let Some(context) = self.decode_context.get() {
            return Ok(Arc::clone(context));
        }
        let config = ember_core::distributed_session_config();
        let runtime = ember_core::runtime_env(&config, None)?;
        let state = ember_core::session_state(config, runtime)?;
        Ok(Arc::clone(
            self.decode_context.get_or_init(|| state.task_ctx()),
        ))
    }
}

/// The encoded plan of a scan of `provider` named `name`: how the catalog
/// keeps a table, and how a client sends one to it.
pub fn encode_table(name: &str, provider: Arc<dyn TableProvider>) -> Result<Vec<u8>> {
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?.build()?;
    let node = LogicalPlanNode::try_from_logical_plan(&plan, &EmberLogicalCodec::default())?;
    Ok(node.encode_to_vec())
}

/// The provider of an encoded scan ([`encode_table`]), decoded in
/// `context` (whose object stores it will read).
pub fn decode_table(encoded: &[u8], context: &TaskContext) -> Result<Arc<dyn TableProvider>> {
    let node = LogicalPlanNode::decode(encoded)
        .map_err(|e| DataFusionError::Internal(format!("a catalog entry is corrupt: {e}")))?;
    match node.try_into_logical_plan(context, &EmberLogicalCodec::default())? {
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source),
        // A view's scan is its plan, under the view's name.
        LogicalPlan::SubqueryAlias(alias) => {
            Ok(Arc::new(ViewTable::new(alias.input.as_ref().clone(), None)))
        }
        other => Ok(Arc::new(ViewTable::new(other, None))),
    }
}

impl CatalogProvider for SharedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let schemas = self.state.read();
        schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let schemas = self.state.read();
        schemas.contains_key(name).then(|| {
            Arc::new(SharedSchema {
                state: Arc::clone(&self.state),
                name: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        // `CREATE SCHEMA` hands over an empty in-memory schema: the shared
        // one takes its place (and its tables, if it has any).
        let mut tables = BTreeMap::new();
        for table in schema.table_names() {
            if let Some(provider) = resolve_at_once(schema.table(&table))? {
                let encoded = encode_table(&table, Arc::clone(&provider))?;
                tables.insert(
                    table,
                    TableEntry {
                        encoded,
                        provider: Some(provider),
                    },
                );
            }
        }
        let mut schemas = self.state.write();
        let previous = schemas.insert(name.to_string(), tables);
        if let Err(e) = self.state.persist(&schemas) {
            match previous {
                Some(previous) => schemas.insert(name.to_string(), previous),
                None => schemas.remove(name),
            };
            return Err(e);
        }
        drop(schemas);
        tracing::info!(schema = name, "schema registered in the shared catalog");
        Ok(None)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        let mut schemas = self.state.write();
        let Some(tables) = schemas.get(name) else {
            return Ok(None);
        };
        if !tables.is_empty() && !cascade {
            return Err(DataFusionError::Plan(format!(
                "schema {name} holds tables; drop them first, or DROP SCHEMA {name} CASCADE"
            )));
        }
        let removed = schemas.remove(name);
        if let Err(e) = self.state.persist(&schemas) {
            if let Some(removed) = removed {
                schemas.insert(name.to_string(), removed);
            }
            return Err(e);
        }
        Ok(Some(Arc::new(SharedSchema {
            state: Arc::clone(&self.state),
            name: name.to_string(),
        })))
    }
}

/// Reads a table of an in-memory schema handed to `register_schema`: such
/// schemas answer at once, so their future is polled to completion here.
fn resolve_at_once<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(DataFusionError::NotImplemented(
            "registering a schema whose tables are not at hand".into(),
        )),
    }
}

/// One schema of a [`SharedCatalog`].
pub struct SharedSchema {
    state: Arc<CatalogState>,
    name: String,
}

impl std::fmt::Debug for SharedSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSchema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SharedSchema {
    fn with_tables<T>(&self, read: impl FnOnce(&BTreeMap<String, TableEntry>) -> T) -> T {
        let schemas = self.state.read();
        match schemas.get(&self.name) {
            Some(tables) => read(tables),
            None => read(&BTreeMap::new()),
        }
    }
}

#[async_trait]
impl SchemaProvider for SharedSchema {
    fn table_names(&self) -> Vec<String> {
        self.with_tables(|tables| tables.keys().cloned().collect())
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(entry) = self.with_tables(|tables| tables.get(name).cloned()) else {
            return Ok(None);
        };
        if let Some(provider) = entry.provider {
            return Ok(Some(provider));
        }
        let context = self.state.decode_context()?;
        let provider = decode_table(&entry.encoded, &context).map_err(|e| {
            e.context(format!(
                "cannot read table {}.{name} of the catalog",
                self.name
            ))
        })?;
        let mut schemas = self.state.write();
        if let Some(kept) = schemas.get_mut(&self.name).and_then(|t| t.get_mut(name))
            && kept.encoded == entry.encoded
        {
            kept.provider = Some(Arc::clone(&provider));
        }
        Ok(Some(provider))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let encoded = encode_table(&name, Arc::clone(&table)).map_err(|e| {
            e.context(format!(
                "cannot keep table {name} in the shared catalog (a table the cluster cannot \
                 carry cannot be shared)"
            ))
        })?;
        let mut schemas = self.state.write();
        let tables = schemas.entry(self.name.clone()).or_default();
        let previous = tables.insert(
            name.clone(),
            TableEntry {
                encoded,
                provider: Some(table),
            },
        );
        if let Err(e) = self.state.persist(&schemas) {
            let tables = schemas.entry(self.name.clone()).or_default();
            match &previous {
                Some(previous) => tables.insert(name, previous.clone()),
                None => tables.remove(&name),
            };
            return Err(e);
        }
        tracing::info!(schema = %self.name, table = %name, "table registered in the shared catalog");
        Ok(previous.and_then(|entry| entry.provider))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut schemas = self.state.write();
        let Some(removed) = schemas.get_mut(&self.name).and_then(|t| t.remove(name)) else {
            return Ok(None);
        };
        if let Err(e) = self.state.persist(&schemas) {
            schemas
                .entry(self.name.clone())
                .or_default()
                .insert(name.to_string(), removed);
            return Err(e);
        }
        tracing::info!(schema = %self.name, table = %name, "table dropped from the shared catalog");
        Ok(removed.provider)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.with_tables(|tables| tables.contains_key(name))
    }
}

#[cfg(test)]
mod tests;
