//! A catalog file seen from outside the scheduler: an embedded session
//! reads the tables a cluster declared (`ember sql --catalog FILE`), and,
//! when no scheduler holds the file, declares its own there.
//!
//! The file's owner is whoever holds the lock beside it
//! (`catalog.json.lock`): a scheduler holds it for its whole life
//! ([`crate::SharedCatalog::open`]), because it keeps the catalog in memory
//! and would overwrite changes made behind its back. An embedded session
//! takes it only for the moment of a change, which it makes on what the
//! file holds at that moment.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::store::{self, CatalogError, StoredSchemas};

/// The lock file beside the catalog file at `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of the catalog file at `path`, or says who holds it.
pub(crate) fn lock(path: &Path) -> Result<File, CatalogError> {
    let lock = lock_path(path);
    let io = |source| CatalogError::Io {
        path: lock.clone(),
        source,
    };
    if let Some(dir) = lock.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(CatalogError::InUse {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(io(source)),
    }
}

/// A catalog file that other processes may hold or change; see the module
/// documentation.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    path: PathBuf,
}

impl CatalogFile {
    /// The catalog file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every table the file holds now, as (schema, table, encoded scan).
    pub fn tables(&self) -> Result<Vec<(String, String, Vec<u8>)>, CatalogError> {
        Ok(store::read(&self.path)?
            .into_iter()
            .flat_map(|(schema, tables)| {
                tables
                    .into_iter()
                    .map(move |(table, encoded)| (schema.clone(), table, encoded))
            })
            .collect())
    }

    /// Registers `schema.table` (replacing a table of that name), creating
    /// the schema if needed.
    pub fn put_table(
        &self,
        schema: &str,
        table: &str,
        encoded: Vec<u8>,
    ) -> Result<(), CatalogError> {
        self.change(|schemas| {
            schemas
                .entry(schema.to_string())
                .or_default()
                .insert(table.to_string(), encoded);
        })
    }

    /// Drops `schema.table`, if the file has it.
    pub fn drop_table(&self, schema: &str, table: &str) -> Result<(), CatalogError> {
        self.change(|schemas| {
            if let Some(tables) = schemas.get_mut(schema) {
                tables.remove(table);
            }
        })
    }

    /// Creates schema `name`, if the file lacks it.
    pub fn create_schema(&self, name: &str) -> Result<(), CatalogError> {
        self.change(|schemas| {
            schemas.entry(name.to_string()).or_default();
        })
    }

    /// Drops schema `name` and its tables.
    pub fn drop_schema(&self, name: &str) -> Result<(), CatalogError> {
        self.change(|schemas| {
            schemas.remove(name);
        })
    }

    /// Makes `change` to what the file holds, under its lock.
    fn change(&self, change: impl FnOnce(&mut StoredSchemas)) -> Result<(), CatalogError> {
        let _lock = lock(&self.path)?;
        let mut schemas = store::read(&self.path)?;
        schemas
            .entry(crate::DEFAULT_SCHEMA.to_string())
            .or_default();
        change(&mut schemas);
        store::write(&self.path, &schemas)
    }
}
