//! A session and the shared catalog (`ember-catalog`): the scheduler's,
//! for a cluster session, or a catalog file, for an embedded session
//! started with `--catalog` ([`CatalogSource`]).
//!
//! Ember's client plans against its own session catalog and ships tables
//! inside each plan. So that what one client declares every other client
//! sees (and a Flight SQL dashboard too), a cluster session brings its
//! catalog up to date with the scheduler's before each statement
//! ([`SharedCatalogSync::pull`]), and sends what a DDL statement declared or
//! dropped to the scheduler after it ran ([`SharedCatalogSync::push`]).
//! Declaring a table the shared catalog already has replaces it there.
//! Tables of data the client holds (`CREATE TABLE … AS`, `VALUES`) stay in
//! the session: the catalog keeps definitions, not data. So do temporary
//! declarations (`CREATE TEMPORARY VIEW|TABLE|EXTERNAL TABLE`, which
//! DataFusion itself refuses: [`declare_temporary`]); they shadow a shared
//! table of the same name in this session only. `SET ember.shared_catalog =
//! false` keeps all of a session's declarations to itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::catalog::{CatalogProvider, MemorySchemaProvider};
use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;

use ember_catalog::CatalogFile;

use crate::cluster::{SchedulerConnection, catalog_delete, catalog_list, catalog_put};
use crate::error::{ClientError, Result};

/// Where a session's shared declarations are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CatalogSource<'a> {
    /// The scheduler's catalog, through its REST API.
    Scheduler(&'a SchedulerConnection),
    /// A catalog file, read and changed by this process (an embedded
    /// session's `--catalog`); changed only while no scheduler holds it.
    File(&'a CatalogFile),
}

impl CatalogSource<'_> {
    /// Every table, as (schema, table, encoded scan).
    async fn tables(self) -> Result<Vec<(String, String, Vec<u8>)>> {
        match self {
            Self::Scheduler(scheduler) => catalog_list(scheduler).await,
            Self::File(file) => Ok(file.tables()?),
        }
    }

    async fn put_table(self, schema: &str, table: &str, plan: &[u8]) -> Result<()> {
        match self {
            Self::Scheduler(scheduler) => {
                catalog_put(scheduler, &format!("{schema}/{table}"), Some(plan)).await
            }
            Self::File(file) => Ok(file.put_table(schema, table, plan.to_vec())?),
        }
    }

    async fn drop_table(self, schema: &str, table: &str) -> Result<()> {
        match self {
            Self::Scheduler(scheduler) => {
                catalog_delete(scheduler, &format!("{schema}/{table}")).await
            }
            Self::File(file) => Ok(file.drop_table(schema, table)?),
        }
    }

    async fn create_schema(self, schema: &str) -> Result<()> {
        match self {
            Self::Scheduler(scheduler) => catalog_put(scheduler, schema, None).await,
            Self::File(file) => Ok(file.create_schema(schema)?),
        }
    }

    async fn drop_schema(self, schema: &str) -> Result<()> {
        match self {
            Self::Scheduler(scheduler) => catalog_delete(scheduler, schema).await,
            Self::File(file) => Ok(file.drop_schema(schema)?),
        }
    }
}

/// A table of the catalog: (schema, table).
type TableKey = (String, String);

/// What a DDL statement changes in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CatalogChange {
    /// A table or view was declared.
    Declared(TableKey),
    /// A table or view was dropped.
    Dropped(TableKey),
    /// A schema was created.
    SchemaCreated(String),
    /// A schema was dropped.
    SchemaDropped(String),
}

/// (schema, table) of `reference`, in the session's default schema when it
/// names none.
fn key(reference: &TableReference, default_schema: &str) -> TableKey {
    (
        reference.schema().unwrap_or(default_schema).to_string(),
        reference.table().to_string(),
    )
}

/// A `CREATE TEMPORARY …` plan as the same declaration without
/// `TEMPORARY` (which DataFusion refuses), and the table it declares; any
/// other plan unchanged, with `None`.
pub(crate) fn declare_temporary(
    plan: LogicalPlan,
    default_schema: &str,
) -> (LogicalPlan, Option<TableKey>) {
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateView(mut create)) if create.temporary => {
            create.temporary = false;
            let key = key(&create.name, default_schema);
            (
                LogicalPlan::Ddl(DdlStatement::CreateView(create)),
                Some(key),
            )
        }
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(mut create)) if create.temporary => {
            create.temporary = false;
            let key = key(&create.name, default_schema);
            let plan = LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create));
            (plan, Some(key))
        }
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(mut create)) if create.temporary => {
            create.temporary = false;
            let key = key(&create.name, default_schema);
            let plan = LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create));
            (plan, Some(key))
        }
        other => (other, None),
    }
}

impl CatalogChange {
    /// What `plan` changes, if it is DDL the shared catalog keeps.
    pub(crate) fn of(plan: &LogicalPlan, default_schema: &str) -> Option<Self> {
        let LogicalPlan::Ddl(ddl) = plan else {
            return None;
        };
        Some(match ddl {
            DdlStatement::CreateExternalTable(create) => {
                Self::Declared(key(&create.name, default_schema))
            }
            DdlStatement::CreateView(create) => Self::Declared(key(&create.name, default_schema)),
            DdlStatement::DropTable(drop) => Self::Dropped(key(&drop.name, default_schema)),
            DdlStatement::DropView(drop) => Self::Dropped(key(&drop.name, default_schema)),
            DdlStatement::CreateCatalogSchema(create) => {
                Self::SchemaCreated(create.schema_name.clone())
            }
            DdlStatement::DropCatalogSchema(drop) => {
                Self::SchemaDropped(drop.name.schema_name().to_string())
            }
            _ => return None,
        })
    }
}

/// The session's default catalog, where unqualified tables live.
fn default_catalog(session: &SessionContext) -> Option<Arc<dyn CatalogProvider>> {
    let name = session
        .copied_config()
        .options()
        .catalog
        .default_catalog
        .clone();
    session.catalog(&name)
}

/// Removes `schema.table` from `session`'s default catalog, if it is there.
fn deregister(session: &SessionContext, (schema, table): &TableKey) {
    if let Some(provider) = default_catalog(session).and_then(|catalog| catalog.schema(schema)) {
        let _ = provider.deregister_table(table);
    }
}

/// What a session took from the shared catalog.
#[derive(Debug, Default)]
pub(crate) struct SharedCatalogSync {
    /// Each table registered from the shared catalog (declared by another
    /// client), with the encoded scan it was registered from.
    synced: Mutex<HashMap<TableKey, Vec<u8>>>,
    /// Each table this session declared and shared, with the encoded scan
    /// it sent: declaring it again is a duplicate, as in any session.
    declared: Mutex<HashMap<TableKey, Vec<u8>>>,
    /// Each table this session declared `TEMPORARY`: never shared, never
    /// replaced by the shared catalog's table of that name.
    temporary: Mutex<HashSet<TableKey>>,
}

impl SharedCatalogSync {
    fn synced(&self) -> std::sync::MutexGuard<'_, HashMap<TableKey, Vec<u8>>> {
        self.synced.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, HashMap<TableKey, Vec<u8>>> {
        self.declared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn temporary(&self) -> std::sync::MutexGuard<'_, HashSet<TableKey>> {
        self.temporary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this session declared `key` temporary.
    pub(crate) fn declared_temporary(&self, key: TableKey) {
        self.temporary().insert(key);
    }

    /// Whether `change` drops one of this session's temporary tables
    /// (which is then forgotten: the drop stays in the session).
    pub(crate) fn drops_temporary(&self, change: &CatalogChange) -> bool {
        match change {
            CatalogChange::Dropped(key) => self.temporary().remove(key),
            _ => false,
        }
    }

    /// Brings `session`'s default catalog up to date with the scheduler's:
    /// tables another client declared or replaced are registered, tables
    /// dropped there are dropped here.
    pub(crate) async fn pull(
        &self,
        source: CatalogSource<'_>,
        session: &SessionContext,
    ) -> Result<()> {
        let shared = source.tables().await?;
        let Some(catalog) = default_catalog(session) else {
            return Ok(());
        };
        let task = session.task_ctx();
        let mut seen = std::collections::HashSet::new();
        for (schema, table, plan) in shared {
            let key = (schema.clone(), table.clone());
            seen.insert(key.clone());
            if self.temporary().contains(&key)
                || self.synced().get(&key) == Some(&plan)
                || self.declared().get(&key) == Some(&plan)
            {
                continue;
            }
            // Another client declared it, or replaced this session's.
            self.declared().remove(&key);
            let provider = match ember_catalog::decode_table(&plan, &task) {
                Ok(provider) => provider,
                Err(e) => {
                    tracing::warn!(%schema, %table, "cannot read a table of the shared catalog: {e}");
                    continue;
                }
            };
            let schema_provider = match catalog.schema(&schema) {
                Some(provider) => provider,
                None => {
                    let provider = Arc::new(MemorySchemaProvider::new());
                    catalog
                        .register_schema(&schema, provider.clone())
                        .map_err(ClientError::from_datafusion)?;
                    provider
                }
            };
            // Replaced elsewhere: the new definition takes the old one's place.
            let _ = schema_provider.deregister_table(&table);
            schema_provider
                .register_table(table, provider)
                .map_err(ClientError::from_datafusion)?;
            self.synced().insert(key, plan);
        }
        let gone: Vec<TableKey> = self
            .synced()
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            deregister(session, &key);
            self.synced().remove(&key);
        }
        // Dropped by another client: gone here too.
        let dropped: Vec<TableKey> = self
            .declared()
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in dropped {
            deregister(session, &key);
            self.declared().remove(&key);
        }
        Ok(())
    }

    /// Before a statement declares `change`'s table: a table of that name
    /// another client declared is let go here, so that the declaration
    /// replaces it rather than failing as a duplicate (one this session
    /// declared itself stays, and declaring it again fails as anywhere).
    pub(crate) fn before(&self, change: &CatalogChange, session: &SessionContext) {
        let CatalogChange::Declared(key) = change else {
            return;
        };
        if self.synced().remove(key).is_some() {
            deregister(session, key);
        }
    }

    /// Before a temporary declaration of `key`: the shared table of that
    /// name, whoever declared it, is let go in this session (it comes back
    /// when the temporary one is dropped).
    pub(crate) fn shadow(&self, key: &TableKey, session: &SessionContext) {
        let shared = self.synced().remove(key).is_some() | self.declared().remove(key).is_some();
        if shared {
            deregister(session, key);
        }
    }

    /// Sends what a DDL statement changed to the scheduler's catalog.
    pub(crate) async fn push(
        &self,
        change: &CatalogChange,
        source: CatalogSource<'_>,
        session: &SessionContext,
    ) -> Result<()> {
        match change {
            CatalogChange::Declared((schema, table)) => {
                let reference = TableReference::partial(schema.as_str(), table.as_str());
                let provider = session
                    .table_provider(reference)
                    .await
                    .map_err(ClientError::from_datafusion)?;
                // A declaration the shared catalog does not take is undone
                // here too: the statement fails as a whole.
                let undo = || deregister(session, &(schema.clone(), table.clone()));
                let plan = match ember_catalog::encode_table(table, provider) {
                    Ok(plan) => plan,
                    Err(e) => {
                        undo();
                        return Err(ClientError::Process(format!(
                            "{schema}.{table} cannot be kept in the shared catalog: {e} \
                             (CREATE TEMPORARY …, or SET ember.shared_catalog = false, keeps \
                             declarations in the session)"
                        )));
                    }
                };
                if let Err(e) = source.put_table(schema, table, &plan).await {
                    undo();
                    return Err(e);
                }
                self.declared()
                    .insert((schema.clone(), table.clone()), plan);
            }
            CatalogChange::Dropped((schema, table)) => {
                source.drop_table(schema, table).await?;
                let key = (schema.clone(), table.clone());
                self.synced().remove(&key);
                self.declared().remove(&key);
            }
            CatalogChange::SchemaCreated(schema) => {
                source.create_schema(schema).await?;
            }
            CatalogChange::SchemaDropped(schema) => {
                source.drop_schema(schema).await?;
                self.synced().retain(|(s, _), _| s != schema);
                self.declared().retain(|(s, _), _| s != schema);
            }
        }
        Ok(())
    }
}
