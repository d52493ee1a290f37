//! The libraries a cluster holds: what `CREATE FUNCTION … LANGUAGE wasm`
//! declared on it, kept by the scheduler (in `functions.json` beside the
//! modules, when it has a state directory) so that every client sees them
//! and they survive a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Result, WasmError};
use crate::library::LibraryDescriptor;

/// One declared library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryEntry {
    /// The module, name and limits.
    pub descriptor: LibraryDescriptor,
    /// For `CREATE FUNCTION name`: the one function of the module the
    /// library stands for; `None` for `CREATE FUNCTION LIBRARY`, all of
    /// them.
    #[serde(default)]
    pub only: Option<String>,
}

/// The declared libraries, by name.
#[derive(Debug, Clone, Default)]
pub struct LibraryCatalog {
    file: Option<PathBuf>,
    entries: Arc<Mutex<BTreeMap<String, LibraryEntry>>>,
}

impl LibraryCatalog {
    /// A catalog kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A catalog kept in `file` (read now if it exists).
    pub fn open(file: impl Into<PathBuf>) -> Result<Self> {
        let file = file.into();
        let entries = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| WasmError::Io {
                what: format!("cannot read the function catalog {}", file.display()),
                source: std::io::Error::other(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(WasmError::Io {
                    what: format!("cannot read the function catalog {}", file.display()),
                    source,
                });
            }
        };
        Ok(Self {
            file: Some(file),
            entries: Arc::new(Mutex::new(entries)),
        })
    }

    /// Every declared library.
    pub fn entries(&self) -> Vec<LibraryEntry> {
        self.entries
            .lock()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Declares (or replaces) a library.
    pub fn put(&self, entry: LibraryEntry) -> Result<()> {
        self.change(|entries| {
            entries.insert(entry.descriptor.library.clone(), entry);
        })
    }

    /// Drops the library `name`; whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let mut removed = false;
        self.change(|entries| removed = entries.remove(name).is_some())?;
        Ok(removed)
    }

    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, LibraryEntry>)) -> Result<()> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        edit(&mut entries);
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(&*entries).unwrap_or_default();
        let staged = file.with_extension("json.tmp");
        std::fs::write(&staged, text)
            .and_then(|()| std::fs::rename(&staged, file))
            .map_err(|source| WasmError::Io {
                what: format!("cannot write the function catalog {}", file.display()),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_libraries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("functions.json");
        let catalog = LibraryCatalog::open(&file).unwrap();
        let entry = LibraryEntry {
            descriptor: LibraryDescriptor {
                library: "trips".into(),
                sha256: "ab".repeat(32),
                memory_mib: 64,
                time_ms: 500,
            },
            only: Some("fare_band".into()),
        };
        catalog.put(entry.clone()).unwrap();
        assert_eq!(LibraryCatalog::open(&file).unwrap().entries(), vec![entry]);
        assert!(catalog.remove("trips").unwrap());
        assert!(!catalog.remove("trips").unwrap());
        assert!(LibraryCatalog::open(&file).unwrap().entries().is_empty());
    }
}
