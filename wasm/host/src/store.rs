//! Modules by content: each process keeps the modules it was given or
//! fetched under their SHA-256 (in memory, and in a directory where it has
//! one), compiles each once, and rebuilds a library from a plan's
//! descriptor without the module travelling with every task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ember_core::functions::{FunctionLibrary, LibraryLoader};
use sha2::{Digest, Sha256};

use crate::error::{Result, WasmError};
use crate::library::{LibraryDescriptor, function_library};
use crate::runtime::{CompiledModule, Limits};

/// Where a process fetches a module it does not hold (an executor asks its
/// scheduler).
pub trait ModuleFetcher: Send + Sync {
    /// The bytes of the module whose SHA-256 is `sha256`. Called from a
    /// plan decoder, outside any async context it could block: it may
    /// block.
    fn fetch(&self, sha256: &str) -> std::result::Result<Vec<u8>, String>;
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` is a SHA-256 in lowercase hex (and so a safe file name).
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A process's modules, by hash.
#[derive(Default)]
pub struct ModuleStore {
    dir: Option<PathBuf>,
    fetcher: Option<Arc<dyn ModuleFetcher>>,
    bytes: Mutex<HashMap<String, Arc<[u8]>>>,
    compiled: Mutex<HashMap<(String, Limits), Arc<CompiledModule>>>,
    libraries: Mutex<HashMap<LibraryDescriptorKey, FunctionLibrary>>,
}

type LibraryDescriptorKey = (String, String, Limits);

impl std::fmt::Debug for ModuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleStore")
            .field("dir", &self.dir)
            .field("fetches", &self.fetcher.is_some())
            .finish_non_exhaustive()
    }
}

impl ModuleStore {
    /// A store that keeps modules in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A store that also keeps modules in `dir` (as `<sha256>.wasm`), so
    /// that they outlive the process.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| WasmError::Io {
            what: format!("cannot create the module directory {}", dir.display()),
            source,
        })?;
        Ok(Self {
            dir: Some(dir),
            ..Self::default()
        })
    }

    /// This store, asking `fetcher` for modules it does not hold.
    pub fn with_fetcher(mut self, fetcher: Arc<dyn ModuleFetcher>) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{sha256}.wasm")))
    }

    /// Keeps `bytes`, which must have the SHA-256 `expected` when one is
    /// given; returns their hash.
    pub fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String> {
        let actual = sha256_hex(bytes);
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(WasmError::HashMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        if let Some(path) = self.path(&actual)
            && !path.exists()
        {
            write_atomically(&path, bytes)?;
        }
        if let Ok(mut held) = self.bytes.lock() {
            held.entry(actual.clone()).or_insert_with(|| bytes.into());
        }
        Ok(actual)
    }

    /// Whether the store holds the module `sha256` without fetching it.
    pub fn holds(&self, sha256: &str) -> bool {
        let in_memory = self.bytes.lock().is_ok_and(|b| b.contains_key(sha256));
        in_memory || self.path(sha256).is_some_and(|p| p.exists())
    }

    /// The bytes of module `sha256`: held, read from the directory, or
    /// fetched (and then kept).
    pub fn get(&self, sha256: &str) -> Result<Arc<[u8]>> {
        let unavailable = |reason: String| WasmError::Unavailable {
            hash: sha256.to_string(),
            reason,
        };
        if !is_sha256(sha256) {
            return Err(unavailable("that is not a SHA-256".into()));
        }
        if let Some(bytes) = self.bytes.lock().ok().and_then(|b| b.get(sha256).cloned()) {
            return Ok(bytes);
        }
        if let Some(path) = self.path(sha256)
            && let Ok(bytes) = std::fs::read(&path)
        {
            // A damaged file is fetched again rather than trusted.
            if sha256_hex(&bytes) == sha256 {
                let bytes: Arc<[u8]> = bytes.into();
                if let Ok(mut held) = self.bytes.lock() {
                    held.insert(sha256.to_string(), Arc::clone(&bytes));
                }
                return Ok(bytes);
            }
        }
        let Some(fetcher) = &self.fetcher else {
            return Err(unavailable("this process was never given it".into()));
        };
        tracing::info!(module = sha256, "fetching a WebAssembly module");
        let bytes = fetcher.fetch(sha256).map_err(unavailable)?;
        self.put(&bytes, Some(sha256))?;
        Ok(bytes.into())
    }

    /// Module `sha256` compiled under `limits` (once per process).
    pub fn compiled(&self, sha256: &str, limits: Limits) -> Result<Arc<CompiledModule>> {
        let key = (sha256.to_string(), limits);
        if let Some(module) = self.compiled.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(module);
        }
        let bytes = self.get(sha256)?;
        let module = CompiledModule::compile(sha256, &bytes, limits)?;
        if let Ok(mut compiled) = self.compiled.lock() {
            compiled.insert(key, Arc::clone(&module));
        }
        Ok(module)
    }

    /// The library `descriptor` describes.
    pub fn library(&self, descriptor: &LibraryDescriptor) -> Result<FunctionLibrary> {
        let key = (
            descriptor.library.clone(),
            descriptor.sha256.clone(),
            descriptor.limits(),
        );
        if let Some(library) = self
            .libraries
            .lock()
            .ok()
            .and_then(|l| l.get(&key).cloned())
        {
            return Ok(library);
        }
        let module = self.compiled(&descriptor.sha256, descriptor.limits())?;
        let library = function_library(&descriptor.library, module);
        if let Ok(mut libraries) = self.libraries.lock() {
            libraries.insert(key, library.clone());
        }
        Ok(library)
    }

    /// Keeps `bytes` and returns them as the library `name`, run under
    /// `limits`.
    pub fn load(&self, name: &str, bytes: &[u8], limits: Limits) -> Result<FunctionLibrary> {
        let sha256 = self.put(bytes, None)?;
        self.library(&LibraryDescriptor {
            library: name.to_string(),
            sha256,
            memory_mib: limits.memory_mib,
            time_ms: limits.time_ms,
        })
    }
}

impl LibraryLoader for ModuleStore {
    fn load(&self, descriptor: &[u8]) -> datafusion::error::Result<FunctionLibrary> {
        let descriptor = LibraryDescriptor::decode(descriptor)?;
        Ok(self.library(&descriptor)?)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let staged = path.with_extension(format!("wasm.{}.tmp", std::process::id()));
    std::fs::write(&staged, bytes)
        .and_then(|()| std::fs::rename(&staged, path))
        .map_err(|source| WasmError::Io {
            what: format!("cannot write the module {}", path.display()),
            source,
        })
}

fn process_slot() -> &'static RwLock<Option<Arc<ModuleStore>>> {
    static STORE: OnceLock<RwLock<Option<Arc<ModuleStore>>>> = OnceLock::new();
    STORE.get_or_init(RwLock::default)
}

/// Makes `store` this process's module store, and the loader its plans'
/// WebAssembly functions are rebuilt with.
pub fn install_module_store(store: Arc<ModuleStore>) {
    if let Ok(mut slot) = process_slot().write() {
        *slot = Some(Arc::clone(&store));
    }
    ember_core::functions::install_library_loader(store);
}

/// This process's module store (an in-memory one, installed on first use,
/// unless the process installed its own).
pub fn module_store() -> Arc<ModuleStore> {
    if let Some(store) = process_slot().read().ok().and_then(|s| s.clone()) {
        return store;
    }
    let store = Arc::new(ModuleStore::in_memory());
    install_module_store(Arc::clone(&store));
    store
}
