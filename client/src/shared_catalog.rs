//! A cluster session and the scheduler's shared catalog (`ember-catalog`).
//!
//! Ember's client plans against its own session catalog and ships tables
//! inside each plan. So that what one client declares every other client
//! sees (and a Flight SQL dashboard too), a cluster session brings its
//! catalog up to date with the scheduler's before each statement
//! ([`SharedCatalogSync::pull`]), and sends what a DDL statement declared or
//! dropped to the scheduler after it ran ([`SharedCatalogSync::push`]).
//! Declaring a table the shared catalog already has replaces it there.
//! Tables of data the client holds (`CREATE TABLE … AS`, `VALUES`) stay in
//! the session: the catalog keeps definitions, not data. `SET
//! ember.shared_catalog = false` keeps all of a session's declarations to
//! itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::catalog::{CatalogProvider, MemorySchemaProvider};
use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;

use crate::cluster::{SchedulerConnection, catalog_delete, catalog_list, catalog_put};
use crate::error::{ClientError, Result};

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

/// What a session took from the shared catalog.
#[derive(Debug, Default)]
pub(crate) struct SharedCatalogSync {
    /// Each table registered from the shared catalog (declared by another
    /// client), with the encoded scan it was registered from.
    synced: Mutex<HashMap<TableKey, Vec<u8>>>,
    /// Each table this session declared and shared, with the encoded scan
    /// it sent: declaring it again is a duplicate, as in any session.
    declared: Mutex<HashMap<TableKey, Vec<u8>>>,
}

impl SharedCatalogSync {
    fn synced(&self) -> std::sync::MutexGuard<'_, HashMap<TableKey, Vec<u8>>> {
        self.synced.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, HashMap<TableKey, Vec<u8>>> {
        self.declared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings `session`'s default catalog up to date with the scheduler's:
    /// tables another client declared or replaced are registered, tables
    /// dropped there are dropped here.
    pub(crate) async fn pull(
        &self,
        scheduler: &SchedulerConnection,
        session: &SessionContext,
    ) -> Result<()> {
        let shared = catalog_list(scheduler).await?;
        let Some(catalog) = default_catalog(session) else {
            return Ok(());
        };
        let task = session.task_ctx();
        let mut seen = std::collections::HashSet::new();
        for (schema, table, plan) in shared {
            let key = (schema.clone(), table.clone());
            seen.insert(key.clone());
            if self.synced().get(&key) == Some(&plan) || self.declared().get(&key) == Some(&plan) {
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
        for (schema, table) in gone {
            if let Some(provider) = catalog.schema(&schema) {
                let _ = provider.deregister_table(&table);
            }
            self.synced().remove(&(schema, table));
        }
        // Dropped by another client: gone here too.
        let dropped: Vec<TableKey> = self
            .declared()
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for (schema, table) in dropped {
            if let Some(provider) = catalog.schema(&schema) {
                let _ = provider.deregister_table(&table);
            }
            self.declared().remove(&(schema, table));
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
        if self.synced().remove(key).is_none() {
            return;
        }
        if let Some(schema) = default_catalog(session).and_then(|catalog| catalog.schema(&key.0)) {
            let _ = schema.deregister_table(&key.1);
        }
    }

    /// Sends what a DDL statement changed to the scheduler's catalog.
    pub(crate) async fn push(
        &self,
        change: &CatalogChange,
        scheduler: &SchedulerConnection,
        session: &SessionContext,
    ) -> Result<()> {
        match change {
            CatalogChange::Declared((schema, table)) => {
                let reference = TableReference::partial(schema.as_str(), table.as_str());
                let provider = session
                    .table_provider(reference)
                    .await
                    .map_err(ClientError::from_datafusion)?;
                let plan = ember_catalog::encode_table(table, provider).map_err(|e| {
                    ClientError::Process(format!(
                        "{schema}.{table} was declared in this session but cannot be shared \
                         with the cluster's catalog: {e} (SET ember.shared_catalog = false \
                         keeps declarations in the session)"
                    ))
                })?;
                catalog_put(scheduler, &format!("{schema}/{table}"), Some(&plan)).await?;
                self.declared()
                    .insert((schema.clone(), table.clone()), plan);
            }
            CatalogChange::Dropped((schema, table)) => {
                catalog_delete(scheduler, &format!("{schema}/{table}")).await?;
                let key = (schema.clone(), table.clone());
                self.synced().remove(&key);
                self.declared().remove(&key);
            }
            CatalogChange::SchemaCreated(schema) => {
                catalog_put(scheduler, schema, None).await?;
            }
            CatalogChange::SchemaDropped(schema) => {
                catalog_delete(scheduler, schema).await?;
                self.synced().retain(|(s, _), _| s != schema);
                self.declared().retain(|(s, _), _| s != schema);
            }
        }
        Ok(())
    }
}
