//! The catalog's file: `{"version": 1, "schemas": {schema: {table: base64}}}`,
//! replaced atomically (written beside, then renamed) at every change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Schema name -> table name -> encoded table.
pub(crate) type StoredSchemas = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// The version of the file's layout this build reads and writes.
const VERSION: u64 = 1;

/// Why the catalog's file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// It could not be read or written.
    #[error("catalog file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process holds it: a scheduler, for as long as it runs.
    #[error(
        "catalog file {path} is held by another process (a running scheduler keeps its \
         catalog file for itself): declare tables through that cluster"
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// It is not a catalog this build can read.
    #[error("catalog file {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CatalogFile {
    version: u64,
    schemas: BTreeMap<String, BTreeMap<String, String>>,
}

/// What the file at `path` holds; nothing when it does not exist.
pub(crate) fn read(path: &Path) -> Result<StoredSchemas, CatalogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoredSchemas::new()),
        Err(source) => {
            return Err(CatalogError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |reason: String| CatalogError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file: CatalogFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != VERSION {
        return Err(corrupt(format!(
            "version {} (this build reads version {VERSION})",
            file.version
        )));
    }
    file.schemas
        .into_iter()
        .map(|(schema, tables)| {
            let tables = tables
                .into_iter()
                .map(|(name, encoded)| {
                    STANDARD
                        .decode(encoded)
                        .map(|bytes| (name.clone(), bytes))
                        .map_err(|e| corrupt(format!("table {schema}.{name}: {e}")))
                })
                .collect::<Result<_, _>>()?;
            Ok((schema, tables))
        })
        .collect()
}

/// Replaces the file at `path` with `schemas`.
pub(crate) fn write(path: &Path, schemas: &StoredSchemas) -> Result<(), CatalogError> {
    let io = |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = CatalogFile {
        version: VERSION,
        schemas: schemas
            .iter()
            .map(|(schema, tables)| {
                let tables = tables
                    .iter()
                    .map(|(name, bytes)| (name.clone(), STANDARD.encode(bytes)))
                    .collect();
                (schema.clone(), tables)
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let staged = path.with_extension("json.tmp");
    std::fs::write(&staged, text).map_err(io)?;
    std::fs::rename(&staged, path).map_err(io)
}
